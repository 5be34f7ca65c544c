//! The dependency graph and how each observed change moves it (upstream's `graph.go` and
//! `graph_builder.go`, `processGraphChanges` and `processTransitions`), as pure functions:
//! an observation in, the work it makes for the collector out.
//!
//! Nodes are keyed by uid. The dependents of an owner are kept by the owner's uid whether or
//! not the owner itself was observed, which stands in for upstream's "virtual" nodes: a
//! dependent whose owner the graph has not seen is handed to the collector, which looks the
//! owner up live.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizers the garbage collector acts on (`metav1.FinalizerOrphanDependents`,
/// `metav1.FinalizerDeleteDependents`).
pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// Which monitored resource an object came from: `(group, version, plural)`.
pub type ResourceKey = (String, String, String);

/// What identifies an object (upstream's `objectReference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// One observed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub resource: ResourceKey,
    pub owners: Vec<OwnerReference>,
    /// `deletionTimestamp` is set.
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    /// From an object's metadata, as a watch of `resource` delivered it.
    pub fn from_meta(
        resource: ResourceKey,
        api_version: &str,
        kind: &str,
        meta: &ObjectMeta,
    ) -> Option<Node> {
        Some(Node {
            identity: Identity {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
                name: meta.name.clone()?,
                uid: meta.uid.clone()?,
            },
            resource,
            owners: meta.owner_references.clone().unwrap_or_default(),
            being_deleted: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waits for its dependents
    /// (upstream's `isDeletingDependents`).
    pub fn deleting_dependents(&self) -> bool {
        self.being_deleted && self.has(FOREGROUND)
    }

    /// Being deleted with its dependents to be orphaned first.
    pub fn orphaning(&self) -> bool {
        self.being_deleted && self.has(ORPHAN)
    }
}

/// Work for the collector's workers, deduplicated by value in its queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// Look at this object: delete it if its owners are gone, drop references to absent
    /// owners, or, for an owner deleting in the foreground, finish once nothing blocks it.
    AttemptToDelete(String),
    /// Remove this owner's references from its dependents, then its `orphan` finalizer.
    AttemptToOrphan(String),
}

/// The graph of every observed object and its owner references.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid → uids of the observed objects that reference it.
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The observed objects that name `owner` among their owners.
    pub fn dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid))
            .collect()
    }

    /// The dependents whose reference to `owner` has `blockOwnerDeletion: true` (upstream's
    /// `blockingDependents`).
    pub fn blocking_dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents(owner)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// The uids of the objects observed through `resource`.
    pub fn uids_of(&self, resource: &ResourceKey) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| &n.resource == resource)
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// An object was added or updated.
    pub fn observe(&mut self, node: Node) -> Vec<Work> {
        let uid = node.identity.uid.clone();
        let old = self.nodes.remove(&uid);
        let mut work = Vec::new();
        let old_owners = old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        for r in &old_owners {
            if let Some(deps) = self.dependents.get_mut(&r.uid) {
                deps.remove(&uid);
                if deps.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        // An owner the graph has not seen may be gone: the collector checks it live
        // (upstream verifies its virtual node). So does an owner seen in another namespace
        // than the dependent's, which the reference cannot name (upstream's
        // `partitionDependents`): the collector reports it.
        if node.owners.iter().any(|r| match self.nodes.get(&r.uid) {
            None => true,
            Some(owner) => {
                owner.identity.namespace.is_some()
                    && owner.identity.namespace != node.identity.namespace
            }
        }) {
            work.push(Work::AttemptToDelete(uid.clone()));
        }
        // An owner waiting in the foreground looks again when a reference that blocked it
        // went away or stopped blocking (upstream's `addUnblockedOwnersToDeleteQueue`).
        for r in &old_owners {
            let still_blocks = node
                .owners
                .iter()
                .any(|n| n.uid == r.uid && n.block_owner_deletion == Some(true));
            if r.block_owner_deletion == Some(true) && !still_blocks {
                if let Some(owner) = self.nodes.get(&r.uid) {
                    if owner.deleting_dependents() {
                        work.push(Work::AttemptToDelete(r.uid.clone()));
                    }
                }
            }
        }
        // processTransitions: an owner starting (or still in) an orphaning or foreground
        // deletion.
        if node.orphaning() {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if node.deleting_dependents() {
            for dep in self.dependents.get(&uid).into_iter().flatten() {
                work.push(Work::AttemptToDelete(dep.clone()));
            }
            work.push(Work::AttemptToDelete(uid.clone()));
        }
        // A dependent being deleted in the foreground itself may be what its owners wait
        // for; and an object now being deleted is what blocks its foreground owners.
        if node.being_deleted {
            for r in &node.owners {
                if self
                    .nodes
                    .get(&r.uid)
                    .is_some_and(Node::deleting_dependents)
                {
                    work.push(Work::AttemptToDelete(r.uid.clone()));
                }
            }
        }
        self.nodes.insert(uid, node);
        dedup(work)
    }

    /// An object is gone (a watch said so, a relist no longer shows it, or a live read
    /// found it absent).
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work = Vec::new();
        for r in &node.owners {
            if let Some(deps) = self.dependents.get_mut(&r.uid) {
                deps.remove(uid);
                if deps.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(Node::deleting_dependents)
            {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        // Its dependents may have lost their last owner.
        for dep in self.dependents.get(uid).into_iter().flatten() {
            work.push(Work::AttemptToDelete(dep.clone()));
        }
        dedup(work)
    }
}

fn dedup(work: Vec<Work>) -> Vec<Work> {
    let mut seen = BTreeSet::new();
    work.into_iter()
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            identity: Identity {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("ns".into()),
                name: format!("cm-{uid}"),
                uid: uid.into(),
            },
            resource: (String::new(), "v1".into(), "configmaps".into()),
            owners,
            being_deleted: false,
            finalizers: Vec::new(),
        }
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.being_deleted = true;
        n.finalizers = vec![finalizer.into()];
        n
    }

    fn delete(uid: &str) -> Work {
        Work::AttemptToDelete(uid.into())
    }

    #[test]
    fn observations_make_the_upstream_work() {
        // (graph before, observation, work expected)
        let cases: Vec<(&str, Vec<Node>, Node, Vec<Work>)> = vec![
            ("no owners: nothing", vec![], node("a", vec![]), vec![]),
            (
                "owner never seen: check the dependent",
                vec![],
                node("d", vec![owner_ref("o", false)]),
                vec![delete("d")],
            ),
            (
                "owner seen: nothing",
                vec![node("o", vec![])],
                node("d", vec![owner_ref("o", false)]),
                vec![],
            ),
            (
                "owner seen in another namespace: check the dependent",
                vec![node("o", vec![])],
                Node {
                    identity: Identity {
                        namespace: None,
                        ..node("d", vec![]).identity
                    },
                    ..node("d", vec![owner_ref("o", false)])
                },
                vec![delete("d")],
            ),
            (
                "orphan finalizer on a deleted owner",
                vec![node("d", vec![owner_ref("o", false)])],
                deleting(node("o", vec![]), ORPHAN),
                vec![Work::AttemptToOrphan("o".into())],
            ),
            (
                "foreground: every dependent, then the owner",
                vec![
                    node("d1", vec![owner_ref("o", true)]),
                    node("d2", vec![owner_ref("o", false)]),
                ],
                deleting(node("o", vec![]), FOREGROUND),
                vec![delete("d1"), delete("d2"), delete("o")],
            ),
            (
                "a blocking reference dropped wakes the waiting owner",
                vec![
                    deleting(node("o", vec![]), FOREGROUND),
                    node("d", vec![owner_ref("o", true)]),
                ],
                node("d", vec![]),
                vec![delete("o")],
            ),
            (
                "a finalizer without deletion is nothing yet",
                vec![],
                Node {
                    finalizers: vec![FOREGROUND.into()],
                    ..node("o", vec![])
                },
                vec![],
            ),
        ];
        for (name, before, observed, want) in cases {
            let mut g = Graph::default();
            for n in before {
                g.observe(n);
            }
            assert_eq!(g.observe(observed), want, "{name}");
        }
    }

    #[test]
    fn removals_wake_dependents_and_waiting_owners() {
        let mut g = Graph::default();
        g.observe(deleting(node("o", vec![]), FOREGROUND));
        g.observe(node("d", vec![owner_ref("o", true)]));
        g.observe(node("dd", vec![owner_ref("d", true)]));
        assert_eq!(g.blocking_dependents("o").len(), 1);
        // The dependent goes: its own dependent is checked and the owner looks again.
        assert_eq!(g.remove("d"), vec![delete("o"), delete("dd")]);
        assert!(g.blocking_dependents("o").is_empty());
        assert_eq!(g.remove("d"), vec![]);
        // The graph keeps dependents of an owner it never saw.
        g.observe(node("x", vec![owner_ref("ghost", false)]));
        assert_eq!(g.dependents("ghost").len(), 1);
    }
}

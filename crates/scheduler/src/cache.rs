//! The scheduler's cache (upstream's `internal/cache`): one [`NodeInfo`] per node, kept up to
//! date from watch events and the scheduler's own assumed bindings, so one decision costs
//! O(nodes) instead of O(pods). Rebuilding every node's info from every pod at each attempt
//! made a burst of N pending pods cost O(N²): 10,000 pods created at once kept the
//! scheduler busy for 12 s of CPU, and every list of those pods waited behind it.
//!
//! What a pod adds to its node is computed once, when its watch update or binding arrives,
//! and subtracted when it leaves; [`crate::node_infos`] (from scratch) is the reference the
//! tests hold the cache to.
//!
//! ```text
//!  pod watch: assigned, not terminal ──▶ counted on its node (replaces an assumed entry)
//!             unassigned, or terminal ──▶ uncounted (an assumed binding stays until the
//!                                         watch shows the pod bound, or it is forgotten)
//!  assume(pod, node) ──▶ counted on node unless the watch already counts the pod
//!  forget(key)       ──▶ an assumed entry goes (the binding failed or the pod went away)
//!  pod deleted       ──▶ uncounted, whatever counted it
//!  node added        ──▶ its info is summed from the pods already counted on it (pods may
//!                        be seen before their node)
//! ```

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::decide::{assigned_node, is_terminal, pod_key};
use crate::resources::{pod_requests, NodeInfo, Resources};

/// Which source counts a pod on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The pod watch shows it assigned there.
    Watch,
    /// The scheduler bound it there; the watch has not shown that yet.
    Assumed,
}

/// One pod's share of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    node: String,
    requested: Resources,
    non_zero_requested: Resources,
    source: Source,
}

impl Counted {
    fn of(pod: &Pod, node: &str, source: Source) -> Counted {
        Counted {
            node: node.to_string(),
            requested: pod_requests(pod, false),
            non_zero_requested: pod_requests(pod, true),
            source,
        }
    }
}

/// Node infos kept current from events; see the module doc.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    /// Sorted by node name, the order in which `pick` breaks score ties.
    infos: Vec<NodeInfo>,
    /// Every counted pod by `namespace/name`, whether its node exists yet or not.
    counted: HashMap<String, Counted>,
}

impl Cache {
    /// Every node's info, sorted by node name.
    pub fn infos(&self) -> &[NodeInfo] {
        &self.infos
    }

    /// How many bindings are assumed and not yet seen on the watch.
    pub fn assumed_len(&self) -> usize {
        self.counted
            .values()
            .filter(|c| c.source == Source::Assumed)
            .count()
    }

    fn position(&self, node: &str) -> Result<usize, usize> {
        self.infos.binary_search_by(|i| i.name().cmp(node))
    }

    /// A node was added or changed. Its pods' sums are kept across updates.
    pub fn apply_node(&mut self, node: &Node) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match self.position(name) {
            Ok(i) => self.infos[i].node = node.clone(),
            Err(i) => {
                let mut info = NodeInfo::new(node.clone(), &[]);
                for c in self.counted.values().filter(|c| c.node == name) {
                    info.add_counted(c.requested, c.non_zero_requested);
                }
                self.infos.insert(i, info);
            }
        }
    }

    /// A node went away; pods still bound to it stay counted for when it comes back.
    pub fn delete_node(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            self.infos.remove(i);
        }
    }

    /// The watch's current view of a pod.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        match assigned_node(pod).filter(|_| !is_terminal(pod)) {
            Some(node) => self.count(key, Counted::of(pod, node, Source::Watch)),
            None => {
                // A stale unassigned view must not undo the scheduler's own binding; a
                // terminal pod frees its room whoever counted it.
                let assumed = self
                    .counted
                    .get(&key)
                    .is_some_and(|c| c.source == Source::Assumed);
                if !assumed || is_terminal(pod) {
                    self.uncount(&key);
                }
            }
        }
    }

    /// The pod is gone from the API.
    pub fn delete_pod(&mut self, key: &str) {
        self.uncount(key);
    }

    /// The scheduler is binding `pod` to `node`: count it there until the watch shows it.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let key = pod_key(pod);
        if self
            .counted
            .get(&key)
            .is_some_and(|c| c.source == Source::Watch)
        {
            return;
        }
        self.count(key, Counted::of(pod, node, Source::Assumed));
    }

    /// The binding of `key` failed, or its pod needs no binding any more.
    pub fn forget(&mut self, key: &str) {
        if self
            .counted
            .get(key)
            .is_some_and(|c| c.source == Source::Assumed)
        {
            self.uncount(key);
        }
    }

    /// After a relist: the watch's pods are exactly `pods`; assumed bindings stay for the
    /// pods still listed unassigned.
    pub fn replace_pods<'a>(&mut self, pods: impl IntoIterator<Item = &'a Pod>) {
        let old = std::mem::take(&mut self.counted);
        for info in &mut self.infos {
            info.clear_pods();
        }
        for pod in pods {
            let key = pod_key(pod);
            if assigned_node(pod).is_none() && !is_terminal(pod) {
                if let Some(c) = old.get(&key).filter(|c| c.source == Source::Assumed) {
                    self.count(key, c.clone());
                    continue;
                }
            }
            self.apply_pod(pod);
        }
    }

    fn count(&mut self, key: String, counted: Counted) {
        self.uncount(&key);
        if let Ok(i) = self.position(&counted.node) {
            self.infos[i].add_counted(counted.requested, counted.non_zero_requested);
        }
        self.counted.insert(key, counted);
    }

    fn uncount(&mut self, key: &str) {
        if let Some(old) = self.counted.remove(key) {
            if let Ok(i) = self.position(&old.node) {
                self.infos[i].remove_counted(old.requested, old.non_zero_requested);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::PodStatus;

    use super::*;
    use crate::decide::{node_infos, Assumed};
    use crate::testutil::{node, pod_req, with_spec};

    /// One thing that can happen to the cache.
    #[derive(Debug, Clone)]
    enum Step {
        Node(&'static str),
        DeleteNode(&'static str),
        /// The watch shows pod `name` with this node (or none), terminal or not.
        Pod(&'static str, Option<&'static str>, bool),
        DeletePod(&'static str),
        Assume(&'static str, &'static str),
        Forget(&'static str),
    }

    fn pod(name: &str, node: Option<&str>, terminal: bool, cpu: &str) -> Pod {
        let mut p = with_spec(pod_req(&[("cpu", cpu)]), |s| {
            s.node_name = node.map(str::to_string)
        });
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        if terminal {
            p.status = Some(PodStatus {
                phase: Some("Succeeded".into()),
                ..Default::default()
            });
        }
        p
    }

    fn a_node(name: &str) -> Node {
        node(name, &[("cpu", "8"), ("memory", "8Gi"), ("pods", "110")])
    }

    /// Applies the steps to a cache, and to the from-scratch model (nodes, the watch's
    /// pods, assumed bindings), and checks both agree after every step.
    fn agree(steps: &[Step]) {
        let mut cache = Cache::default();
        let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
        let mut pods: BTreeMap<&str, Pod> = BTreeMap::new();
        let mut assumed = Assumed::default();
        let cpu = |name: &str| format!("{}m", 100 + 10 * name.len());
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Node(n) => {
                    nodes.insert(n, a_node(n));
                    cache.apply_node(&a_node(n));
                }
                Step::DeleteNode(n) => {
                    nodes.remove(n);
                    cache.delete_node(n);
                }
                Step::Pod(name, node, terminal) => {
                    let p = pod(name, node, terminal, &cpu(name));
                    // The loop forgets an assumed binding once the watch shows the pod bound.
                    if node.is_some() {
                        assumed.forget(&pod_key(&p));
                    }
                    if terminal {
                        assumed.forget(&pod_key(&p));
                    }
                    cache.apply_pod(&p);
                    pods.insert(name, p);
                }
                Step::DeletePod(name) => {
                    pods.remove(name);
                    assumed.forget(&format!("ns/{name}"));
                    cache.delete_pod(&format!("ns/{name}"));
                }
                Step::Assume(name, n) => {
                    let p = pods
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| pod(name, None, false, &cpu(name)));
                    // The loop only binds pods that still need scheduling.
                    if assigned_node(&p).is_none() && !is_terminal(&p) {
                        assumed.assume(&p, n);
                        cache.assume(&p, n);
                    }
                }
                Step::Forget(name) => {
                    assumed.forget(&format!("ns/{name}"));
                    cache.forget(&format!("ns/{name}"));
                }
            }
            let want = node_infos(
                &nodes.values().cloned().map(Arc::new).collect::<Vec<_>>(),
                &pods.values().cloned().map(Arc::new).collect::<Vec<_>>(),
                &assumed,
            );
            let got = cache.infos();
            let summary = |infos: &[NodeInfo]| {
                infos
                    .iter()
                    .map(|i| {
                        (
                            i.name().to_string(),
                            i.pod_count,
                            i.requested,
                            i.non_zero_requested,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(summary(got), summary(&want), "after step {i} {step:?}");
        }
    }

    #[test]
    fn cache_agrees_with_infos_built_from_scratch() {
        use Step::*;
        let cases: &[(&str, &[Step])] = &[
            (
                "pod bound before its node exists",
                &[Pod("a", Some("n1"), false), Node("n1")],
            ),
            (
                "assumed, then the watch shows it bound: counted once",
                &[
                    Node("n1"),
                    Pod("a", None, false),
                    Assume("a", "n1"),
                    Pod("a", Some("n1"), false),
                ],
            ),
            (
                "a stale unassigned view keeps the assumed binding",
                &[Node("n1"), Assume("a", "n1"), Pod("a", None, false)],
            ),
            (
                "a failed binding is forgotten",
                &[Node("n1"), Assume("a", "n1"), Forget("a")],
            ),
            (
                "forget does not undo what the watch counts",
                &[Node("n1"), Pod("a", Some("n1"), false), Forget("a")],
            ),
            (
                "terminal pods free their room",
                &[
                    Node("n1"),
                    Pod("a", Some("n1"), false),
                    Pod("a", Some("n1"), true),
                ],
            ),
            (
                "deleted pods free their room, assumed or not",
                &[
                    Node("n1"),
                    Pod("a", Some("n1"), false),
                    Assume("b", "n1"),
                    DeletePod("a"),
                    DeletePod("b"),
                ],
            ),
            (
                "a node that goes and comes back keeps its pods",
                &[
                    Node("n1"),
                    Node("n2"),
                    Pod("a", Some("n1"), false),
                    Pod("b", Some("n2"), false),
                    DeleteNode("n1"),
                    Node("n1"),
                    Node("n1"),
                ],
            ),
        ];
        for (name, steps) in cases {
            eprintln!("case: {name}");
            agree(steps);
        }
    }

    /// Long pseudo-random sequences over few names, so every transition meets every other.
    #[test]
    fn cache_agrees_over_random_sequences() {
        const NODES: [&str; 3] = ["n1", "n2", "n3"];
        const PODS: [&str; 5] = ["a", "bb", "ccc", "dddd", "e"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % n
        };
        for _ in 0..50 {
            let mut steps = Vec::new();
            for _ in 0..60 {
                let node = NODES[next(NODES.len())];
                let pod = PODS[next(PODS.len())];
                steps.push(match next(7) {
                    0 => Step::Node(node),
                    1 => Step::DeleteNode(node),
                    2 => Step::Pod(pod, None, false),
                    3 => Step::Pod(pod, Some(node), next(4) == 0),
                    4 => Step::DeletePod(pod),
                    5 => Step::Assume(pod, node),
                    _ => Step::Forget(pod),
                });
            }
            agree(&steps);
        }
    }

    #[test]
    fn replace_pods_keeps_assumed_bindings_of_listed_unassigned_pods() {
        let mut cache = Cache::default();
        cache.apply_node(&a_node("n1"));
        let a = pod("a", None, false, "100m");
        let b = pod("b", None, false, "100m");
        cache.assume(&a, "n1");
        cache.assume(&b, "n1");
        // The relist shows a still unassigned, c bound, and b gone.
        let c = pod("c", Some("n1"), false, "100m");
        cache.replace_pods([&a, &c]);
        assert_eq!(cache.infos()[0].pod_count, 2);
        assert_eq!(cache.assumed_len(), 1);
    }
}

//! The decisions of upstream's `replica_set.go`, apart from I/O: how many pods to create or
//! delete ([`plan`]), which pods go first ([`get_pods_to_delete`]), which pods a replica set
//! looks at ([`pods_of`]), which ReplicaSets share its owner ([`related`]), and what a pod
//! change means for the controllers and their expectations ([`pod_event_actions`], upstream's
//! `addPod` / `updatePod` / `deletePod` handlers).

use std::borrow::Borrow;
use std::collections::HashSet;

use api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use crate::controller_utils::{get_controller_of, pods_ranked_by_related_pods_on_same_node};

/// A replica set stops after creating or deleting this many pods in one sync and goes on
/// once the watch showed them (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// What one sync does about the pod count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Nothing,
    Create(usize),
    Delete(usize),
}

/// Upstream's `manageReplicas` arithmetic: the difference between the active pods and
/// `spec.replicas`, capped at `burst` either way.
pub fn plan(active: usize, replicas: i32, burst: usize) -> Plan {
    let want = usize::try_from(replicas.max(0)).unwrap_or(0);
    match active.cmp(&want) {
        std::cmp::Ordering::Less => Plan::Create((want - active).min(burst)),
        std::cmp::Ordering::Greater => Plan::Delete((active - want).min(burst)),
        std::cmp::Ordering::Equal => Plan::Nothing,
    }
}

pub use crate::controller_utils::key;

pub fn pod_key(pod: &Pod) -> String {
    crate::controller_utils::meta_key(&pod.metadata)
}

/// The `diff` pods to delete among `active` (upstream's `getPodsToDelete`): all of them
/// unsorted when all go, otherwise the first after ranking, doubled-up pods (by the pods of
/// `related` replica sets on the same node) first.
pub fn get_pods_to_delete<P: Borrow<Pod> + Clone>(
    active: &[P],
    related: &[P],
    diff: usize,
    now: Timestamp,
) -> Vec<P> {
    if diff >= active.len() {
        return active.to_vec();
    }
    let ranked = pods_ranked_by_related_pods_on_same_node(active.to_vec(), related, now).sort();
    ranked.pods.into_iter().take(diff).collect()
}

/// The pods of `namespace` a replica set looks at (upstream's `FilterPodsByOwner` with
/// orphans): those it controls, and those no controller owns, which it may adopt.
pub fn pods_of<P: Borrow<Pod> + Clone>(pods: &[P], namespace: &str, uid: &str) -> Vec<P> {
    pods.iter()
        .filter(|p| {
            let meta = &(*p).borrow().metadata;
            meta.namespace.as_deref() == Some(namespace)
                && get_controller_of(meta).is_none_or(|r| r.uid == uid)
        })
        .cloned()
        .collect()
}

/// Of `pods`, those the replica set controls and its selector matches (upstream's
/// `FilterClaimedPods`, for terminating pods that are not claimed).
pub fn filter_claimed_pods<P: Borrow<Pod> + Clone>(
    pods: &[P],
    uid: &str,
    selector: &LabelSelector,
) -> Vec<P> {
    pods.iter()
        .filter(|p| {
            let meta = &(*p).borrow().metadata;
            get_controller_of(meta).is_some_and(|r| r.uid == uid)
                && selector.matches(meta.labels.as_ref().unwrap_or(&Default::default()))
        })
        .cloned()
        .collect()
}

/// The ReplicaSets controlled by the same owner as `rs` (upstream's
/// `getReplicaSetsWithSameController`), `rs` included; none when `rs` has no owner.
pub fn related<'a>(rs: &ReplicaSet, all: &'a [ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let Some(owner) = get_controller_of(&rs.metadata) else {
        return Vec::new();
    };
    all.iter()
        .filter(|other| get_controller_of(&other.metadata).is_some_and(|r| r.uid == owner.uid))
        .collect()
}

/// The pods selected by any of `replica_sets` in their namespace, each once (upstream's
/// `getIndirectlyRelatedPods`): the pods whose nodes rank which pods to delete first.
pub fn indirectly_related_pods<P: Borrow<Pod> + Clone>(
    replica_sets: &[&ReplicaSet],
    pods: &[P],
) -> Vec<P> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for rs in replica_sets {
        let sel = Some(&rs.spec.selector);
        let Ok(selector) = LabelSelector::from_label_selector(sel) else {
            // An invalid selector matches no pods.
            continue;
        };
        for pod in pods {
            let meta = &pod.borrow().metadata;
            if meta.namespace != rs.metadata.namespace
                || !selector.matches(meta.labels.as_ref().unwrap_or(&Default::default()))
            {
                continue;
            }
            if seen.insert(meta.uid.clone().unwrap_or_default()) {
                out.push(pod.clone());
            }
        }
    }
    out
}

/// What a pod change means for the controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    /// The watch showed a pod the controller (by key) created.
    CreationObserved(String),
    /// The watch showed a pod (by key) of the controller deleted or being deleted.
    DeletionObserved { controller: String, pod: String },
    /// Sync the controller.
    Enqueue(String),
}

/// How the handlers find controllers in the cache.
pub trait Lookup {
    /// The key of the controller `r` names in `namespace`, if it is of this controller's kind
    /// and the cached one has its uid (upstream's `resolveControllerRef`).
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String>;
    /// The keys of the controllers whose selector matches the pod's labels (upstream's
    /// `getPodReplicaSets`), for orphans they may adopt.
    fn matching(&self, pod: &Pod) -> Vec<String>;
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

/// Upstream's `deletePod`: the controller of a deleted (or terminating) pod observes it.
fn deleted(pod: &Pod, lookup: &impl Lookup) -> Vec<PodAction> {
    let Some(r) = get_controller_of(&pod.metadata) else {
        // No controller waits for orphans to go.
        return Vec::new();
    };
    let Some(controller) = lookup.resolve(namespace(pod), r) else {
        return Vec::new();
    };
    vec![
        PodAction::DeletionObserved {
            controller: controller.clone(),
            pod: pod_key(pod),
        },
        PodAction::Enqueue(controller),
    ]
}

/// Upstream's pod event handlers. `old` is the last version seen (`None`: added), `gone`
/// that the pod was deleted.
///
/// ```text
///  added, being deleted ─────────────▶ as deleted (a restart may show it so)
///  added, controlled ────────────────▶ creation observed + sync the controller
///  added, orphan ────────────────────▶ sync every controller that selects it
///  updated, same resourceVersion ────▶ nothing (a relist)
///  updated, being deleted ───────────▶ as deleted (and for the old labels' controller)
///  updated, controller ref changed ──▶ sync the old controller too
///  updated, controlled ──────────────▶ sync the controller
///  updated, orphan, labels/ref changed ▶ sync every controller that selects it
///  deleted ──────────────────────────▶ deletion observed + sync the controller
/// ```
pub fn pod_event_actions(
    old: Option<&Pod>,
    cur: &Pod,
    gone: bool,
    lookup: &impl Lookup,
) -> Vec<PodAction> {
    if gone {
        return deleted(cur, lookup);
    }
    let Some(old) = old else {
        if cur.metadata.deletion_timestamp.is_some() {
            return deleted(cur, lookup);
        }
        if let Some(r) = get_controller_of(&cur.metadata) {
            return match lookup.resolve(namespace(cur), r) {
                Some(c) => vec![
                    PodAction::CreationObserved(c.clone()),
                    PodAction::Enqueue(c),
                ],
                None => Vec::new(),
            };
        }
        // An orphan: no controller waits for its creation.
        return lookup
            .matching(cur)
            .into_iter()
            .map(PodAction::Enqueue)
            .collect();
    };
    if cur.metadata.resource_version == old.metadata.resource_version {
        return Vec::new();
    }
    let label_changed = cur.metadata.labels.as_ref().filter(|l| !l.is_empty())
        != old.metadata.labels.as_ref().filter(|l| !l.is_empty());
    if cur.metadata.deletion_timestamp.is_some() {
        let mut actions = deleted(cur, lookup);
        if label_changed {
            actions.extend(deleted(old, lookup));
        }
        return actions;
    }
    let mut actions = Vec::new();
    let cur_ref = get_controller_of(&cur.metadata);
    let old_ref = get_controller_of(&old.metadata);
    let ref_changed = cur_ref != old_ref;
    if ref_changed {
        if let Some(c) = old_ref.and_then(|r| lookup.resolve(namespace(old), r)) {
            actions.push(PodAction::Enqueue(c));
        }
    }
    if let Some(r) = cur_ref {
        if let Some(c) = lookup.resolve(namespace(cur), r) {
            actions.push(PodAction::Enqueue(c));
        }
        return actions;
    }
    if label_changed || ref_changed {
        actions.extend(lookup.matching(cur).into_iter().map(PodAction::Enqueue));
    }
    actions
}

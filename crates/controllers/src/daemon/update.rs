//! The decisions of upstream's `update.go`: the rolling update (with `maxUnavailable`, or
//! with `maxSurge` creating the new pod before the old one goes) and the DaemonSet's
//! ControllerRevisions (what a revision holds, which one is current, which old ones go).
//! All pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::util::{
    is_pod_updated, node_should_run_daemon_pod, surge_count, template_generation,
    unavailable_count, REVISION_HASH_LABEL,
};
use crate::controller_utils::{is_pod_available, new_controller_ref};
use crate::history;

/// Upstream's `updatedDesiredNodeCounts`: `(maxSurge, maxUnavailable)` over the nodes that
/// should run the pod; both 0 with nodes to run on means one may be unavailable.
pub fn updated_desired_node_counts(ds: &DaemonSet, nodes: &[Arc<Node>]) -> (i32, i32) {
    let desired = nodes
        .iter()
        .filter(|n| node_should_run_daemon_pod(n, ds).0)
        .count();
    let desired = i32::try_from(desired).unwrap_or(i32::MAX);
    let mut max_unavailable = unavailable_count(ds, desired);
    let max_surge = surge_count(ds, desired);
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        max_unavailable = 1;
    }
    (max_surge, max_unavailable)
}

/// A node's pod of the current template and pod of an old one, each if any.
pub type NodePods<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// Upstream's `findUpdatedPodsOnNode`: the node's one pod of the current template and one of
/// an old one (pods being deleted ignored); `None` when there are more of either.
pub fn find_updated_pods_on_node<'a>(
    ds: &DaemonSet,
    pods: &'a [Arc<Pod>],
    hash: &str,
) -> Option<NodePods<'a>> {
    let generation = template_generation(ds);
    let (mut new, mut old) = (None, None);
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let slot = if is_pod_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// What one rolling-update step does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    /// Old pods to delete, by name.
    pub delete: Vec<String>,
    /// Nodes to surge a new pod onto.
    pub create_on: Vec<String>,
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Upstream's `rollingUpdate`. Without surge: old pods that are not available are replaced
/// at once, available ones only while fewer than `maxUnavailable` pods are unavailable (the
/// next sync creates their replacements). With surge: a new pod is created beside each old
/// one, up to `maxSurge` at once (beside unavailable old pods at once), and the old pod is
/// deleted when the new one is available. Nodes in name order.
pub fn rolling_update_plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> UpdatePlan {
    let (max_surge, max_unavailable) = updated_desired_node_counts(ds, nodes);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| is_pod_available(p, min_ready, now);
    let mut plan = UpdatePlan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = find_updated_pods_on_node(ds, pods, hash) else {
                // Several pods: `manage` sorts that out; count the node unavailable.
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => {}
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        replace_now.push(pod_name(old));
                    } else if unavailable < max_unavailable {
                        candidates.push(pod_name(old));
                    }
                }
            }
        }
        let remaining = usize::try_from(max_unavailable - unavailable)
            .unwrap_or(0)
            .min(candidates.len());
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(remaining));
        return plan;
    }
    let mut surging = 0;
    let mut allowed_new = Vec::new();
    let mut candidate_new = Vec::new();
    for (node, pods) in by_node {
        let Some((new, old)) = find_updated_pods_on_node(ds, pods, hash) else {
            surging += 1;
            continue;
        };
        let Some(old) = old else {
            // Only a new pod, or none: `manage` takes care of it.
            continue;
        };
        match new {
            None => {
                if !available(old) {
                    allowed_new.push(node.clone());
                } else if surging < max_surge {
                    candidate_new.push(node.clone());
                }
            }
            Some(new) => {
                if available(new) {
                    plan.delete.push(pod_name(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let remaining = usize::try_from(max_surge - surging)
        .unwrap_or(0)
        .min(candidate_new.len());
    plan.create_on = allowed_new;
    plan.create_on
        .extend(candidate_new.into_iter().take(remaining));
    plan
}

/// Upstream's `getPatch`: what a revision of the DaemonSet holds, its template as a
/// replacing strategic-merge patch, `{"spec":{"template":{…,"$patch":"replace"}}}`.
pub fn get_patch(ds: &DaemonSet) -> Value {
    let mut template = serde_json::to_value(&ds.spec.template).unwrap_or_else(|_| json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".to_string(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// Upstream's `Match`: the revision holds the DaemonSet's current template.
pub fn revision_matches(ds: &DaemonSet, revision: &ControllerRevision) -> bool {
    revision.data.0 == get_patch(ds)
}

/// Upstream's `snapshot`: the revision of the current template numbered `number`, named
/// `<ds>-<hash>` with the template's labels plus `controller-revision-hash`, the
/// DaemonSet's annotations, controlled by it.
pub fn new_revision(ds: &DaemonSet, hash: &str, number: i64) -> ControllerRevision {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let mut labels = ds
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![new_controller_ref(
                "apps/v1",
                "DaemonSet",
                &name,
                ds.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        data: RawExtension(get_patch(ds)),
        revision: Some(number),
    }
}

/// How the DaemonSet's (claimed) revisions split (upstream's `constructHistory`).
#[derive(Debug, Default)]
pub struct HistorySplit<'a> {
    /// Revisions of the current template, newest first (more than one: duplicates to go).
    pub current: Vec<&'a ControllerRevision>,
    /// Every other revision.
    pub old: Vec<&'a ControllerRevision>,
    /// The number the current revision must have: one past the newest old one.
    pub current_number: i64,
}

pub fn split_history<'a>(ds: &DaemonSet, revisions: &[&'a ControllerRevision]) -> HistorySplit<'a> {
    let (mut current, old): (Vec<&ControllerRevision>, Vec<&ControllerRevision>) = revisions
        .iter()
        .copied()
        .partition(|r| revision_matches(ds, r));
    current.sort_by(|a, b| history::revision_order(b, a));
    let current_number = history::next_revision(&old);
    HistorySplit {
        current,
        old,
        current_number,
    }
}

/// Upstream's `cleanupHistory`: old revisions beyond `revisionHistoryLimit` (default 10),
/// oldest first, except those a pod still runs.
pub fn revisions_to_clean_up<'a>(
    ds: &DaemonSet,
    old: &[&'a ControllerRevision],
    pods: &[Arc<Pod>],
) -> Vec<&'a ControllerRevision> {
    let limit = usize::try_from(ds.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    let Some(mut to_kill) = old.len().checked_sub(limit).filter(|n| *n > 0) else {
        return Vec::new();
    };
    let live: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .collect();
    let mut sorted = old.to_vec();
    sorted.sort_by(|a, b| history::revision_order(a, b));
    let mut doomed = Vec::new();
    for revision in sorted {
        if to_kill == 0 {
            break;
        }
        let hash = revision
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL));
        if hash.is_some_and(|h| live.contains(h.as_str())) {
            continue;
        }
        doomed.push(revision);
        to_kill -= 1;
    }
    doomed
}

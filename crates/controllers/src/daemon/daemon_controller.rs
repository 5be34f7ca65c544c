//! The decisions of upstream's `daemon_controller.go`: which pods belong to which node,
//! what a sync creates and deletes (`manage`, `podsShouldBeOnNode`), the failed-pod backoff
//! and the status. All pure; `now` is passed in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;

use super::util::{
    allows_surge, is_pod_updated, node_should_run_daemon_pod, target_node_name,
    template_generation, REVISION_HASH_LABEL,
};
use crate::controller_utils::{is_pod_available, is_pod_ready, is_pod_terminal};

/// Upstream's `BurstReplicas`: at most this many creations per sync.
pub const BURST_REPLICAS: usize = 250;

/// The failed-pod backoff's first and longest delays (upstream's
/// `flowcontrol.NewBackOff(1s, 15min)`).
pub const FAILED_POD_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// The event reason for a failed daemon pod the controller deletes.
pub const FAILED_DAEMON_POD_REASON: &str = "FailedDaemonPod";

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Upstream's `getNodesToDaemonPods`: the DaemonSet's (claimed) pods by the node they are on
/// or pinned to. Finished pods being deleted are left out (they are going anyway), as are
/// pods with no target node.
pub fn nodes_to_daemon_pods(pods: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in pods {
        if is_pod_terminal(pod) && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node_name(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    by_node
}

/// Upstream's `podByCreationTimestampAndPhase`: scheduled pods first, then older, then by
/// name.
pub fn sort_by_creation_and_phase(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        scheduled(b)
            .cmp(&scheduled(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Upstream's failed-pod backoff (`flowcontrol.Backoff`) keyed by DaemonSet and node: the
/// first failed pod on a node is deleted at once, the next only after 1 s, then 2 s, … up
/// to 15 minutes; an entry idle for twice the maximum starts over.
#[derive(Debug, Default)]
pub struct FailedPodsBackoff {
    entries: HashMap<String, (Duration, Instant)>,
}

impl FailedPodsBackoff {
    pub fn key(ds_uid: &str, node: &str) -> String {
        format!("{ds_uid}/{node}")
    }

    /// The remaining wait when `key` is still backing off at `now`.
    pub fn in_backoff(&self, key: &str, now: Instant) -> Option<Duration> {
        let (delay, since) = self.entries.get(key)?;
        let waited = now.saturating_duration_since(*since);
        (waited < *delay).then(|| *delay - waited)
    }

    /// Records a failure at `now`: the next delay doubles (capped).
    pub fn next(&mut self, key: &str, now: Instant) {
        let delay = match self.entries.get(key) {
            Some((delay, since))
                if now.saturating_duration_since(*since) <= 2 * FAILED_POD_BACKOFF_MAX =>
            {
                (*delay * 2).min(FAILED_POD_BACKOFF_MAX)
            }
            _ => FAILED_POD_BACKOFF_INITIAL,
        };
        self.entries.insert(key.to_string(), (delay, now));
    }

    /// Forgets entries idle for twice the maximum (upstream's `GC`).
    pub fn gc(&mut self, now: Instant) {
        self.entries.retain(|_, (_, since)| {
            now.saturating_duration_since(*since) <= 2 * FAILED_POD_BACKOFF_MAX
        });
    }
}

/// What one sync's `manage` step does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ManagePlan {
    /// Nodes that need a daemon pod, in node-name order.
    pub create_on: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// `FailedDaemonPod` event messages, one per failed pod deleted.
    pub failed: Vec<String>,
    /// Sync again after this long (a node's failed pod is still backing off).
    pub requeue_after: Option<Duration>,
}

/// Upstream's `podsShouldBeOnNode` for one node, adding to `plan`.
fn pods_should_be_on_node(
    node: &Node,
    ds: &DaemonSet,
    daemon_pods: Option<&Vec<Arc<Pod>>>,
    hash: &str,
    backoff: &mut FailedPodsBackoff,
    now: Instant,
    plan: &mut ManagePlan,
) {
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let (should_run, should_continue_running) = node_should_run_daemon_pod(node, ds);
    let pods = daemon_pods.map(Vec::as_slice).unwrap_or(&[]);
    let exists = !pods.is_empty();
    if should_run && !exists {
        plan.create_on.push(node_name);
        return;
    }
    if should_continue_running {
        let mut running = Vec::new();
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match phase(pod) {
                "Failed" => {
                    // A pod that keeps failing is deleted (and re-created) at most as often
                    // as the backoff allows.
                    let key = FailedPodsBackoff::key(
                        ds.metadata.uid.as_deref().unwrap_or(""),
                        &node_name,
                    );
                    if let Some(wait) = backoff.in_backoff(&key, now) {
                        plan.requeue_after = Some(plan.requeue_after.map_or(wait, |w| w.min(wait)));
                        continue;
                    }
                    backoff.next(&key, now);
                    plan.failed.push(format!(
                        "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        name(pod)
                    ));
                    plan.delete.push(name(pod));
                }
                "Succeeded" => plan.delete.push(name(pod)),
                _ => running.push(pod.clone()),
            }
        }
        sort_by_creation_and_phase(&mut running);
        if !allows_surge(ds) {
            // More than one running pod: all but the oldest go.
            plan.delete.extend(running.iter().skip(1).map(|p| name(p)));
        } else {
            // With surge a node may hold the oldest pod of the current revision and the
            // oldest of an old one while an update is in flight; the rest go.
            let (mut new_kept, mut old_kept) = (false, false);
            for pod in &running {
                let current = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_HASH_LABEL))
                    .is_some_and(|h| h == hash);
                let kept = if current {
                    &mut new_kept
                } else {
                    &mut old_kept
                };
                if !*kept {
                    *kept = true;
                    continue;
                }
                plan.delete.push(name(pod));
            }
        }
        // A node where every pod failed and was just deleted gets a new one from the next
        // sync, once the deletions are observed.
        return;
    }
    if exists {
        // Not wanted here any more.
        plan.delete.extend(
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| name(p)),
        );
    }
}

/// Upstream's `manage` decisions: per node (in name order) the pod to create or the pods to
/// delete, and the unscheduled pods pinned to nodes that no longer exist (pods already bound
/// to such nodes are the pod garbage collector's).
pub fn manage_plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    backoff: &mut FailedPodsBackoff,
    now: Instant,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    let mut nodes: Vec<&Arc<Node>> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for node in &nodes {
        let pods = by_node.get(node.metadata.name.as_deref().unwrap_or_default());
        pods_should_be_on_node(node, ds, pods, hash, backoff, now, &mut plan);
    }
    for (node, pods) in by_node {
        if nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        {
            continue;
        }
        for pod in pods {
            let unscheduled = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty);
            if unscheduled {
                plan.delete.push(name(pod));
            }
        }
    }
    plan
}

/// Upstream's `updateDaemonSetStatus` counts. `observedGeneration` and `collisionCount` are
/// carried over from `ds` (the shell sets the former).
pub fn calculate_status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let generation = template_generation(ds);
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let (should_run, _) = node_should_run_daemon_pod(node, ds);
        let pods = by_node.get(node.metadata.name.as_deref().unwrap_or_default());
        let scheduled = pods.is_some_and(|p| !p.is_empty());
        if !should_run {
            if scheduled {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        let Some(pods) = pods.filter(|p| !p.is_empty()) else {
            continue;
        };
        current += 1;
        let mut pods = pods.clone();
        sort_by_creation_and_phase(&mut pods);
        let pod = &pods[0];
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_pod_updated(pod, hash, generation) {
            updated += 1;
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    // `omitempty` upstream: a zero is left out.
    let optional = |n: i32| (n != 0).then_some(n);
    DaemonSetStatus {
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        desired_number_scheduled: desired,
        number_ready: ready,
        updated_number_scheduled: optional(updated),
        number_available: optional(available),
        number_unavailable: optional(desired - available),
        observed_generation: old.observed_generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

/// Upstream's `storeDaemonSetStatus` short cut: nothing to write when every count is the
/// same and the generation already observed.
pub fn status_unchanged(ds: &DaemonSet, status: &DaemonSetStatus) -> bool {
    let Some(old) = ds.status.as_ref() else {
        return false;
    };
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.desired_number_scheduled == status.desired_number_scheduled
        && old.current_number_scheduled == status.current_number_scheduled
        && old.number_misscheduled == status.number_misscheduled
        && old.number_ready == status.number_ready
        && n(old.updated_number_scheduled) == n(status.updated_number_scheduled)
        && n(old.number_available) == n(status.number_available)
        && n(old.number_unavailable) == n(status.number_unavailable)
        && old.observed_generation.unwrap_or(0) >= ds.metadata.generation.unwrap_or(0)
}

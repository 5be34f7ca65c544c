//! One scheduling decision and the predicates the loop routes watch events with, as pure
//! functions of pods and nodes: which pods the queue takes, which changes may make an
//! unschedulable pod fit, the node infos (with the scheduler's assumed bindings), and the
//! `PodScheduled=False` condition patch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::resources::NodeInfo;
use crate::score::pick;

/// The scheduler name pods get by default (`spec.schedulerName`).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// `PodScheduled` condition reason when no node fits.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// `namespace/name`, the key the queue and the assumed bindings use.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The node the pod is bound to, if any.
pub fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// `Succeeded` or `Failed`.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether this scheduler should schedule the pod: unassigned, not terminal, not being
/// deleted, not gated, and naming this scheduler (a missing `schedulerName` means the
/// default one, which is what the API server defaults it to).
pub fn needs_scheduling(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let name = spec
        .scheduler_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME);
    name == scheduler_name
        && assigned_node(pod).is_none()
        && !is_terminal(pod)
        && pod.metadata.deletion_timestamp.is_none()
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
}

/// Whether an update to a pod waiting in the queue could change where (or whether) it fits:
/// its spec, labels or annotations changed. Status-only updates — including the
/// `PodScheduled` condition the scheduler writes itself — do not count, or an unschedulable
/// pod would retry itself forever.
pub fn pod_update_may_help(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

/// Whether a node add or update could make an unschedulable pod fit: a new node, or a change
/// to what the filters read (labels, taints, `unschedulable`, allocatable). Heartbeat-only
/// status updates do not count.
pub fn node_change_may_help(old: Option<&Node>, new: &Node) -> bool {
    let Some(old) = old else {
        return true;
    };
    let spec = |n: &Node| {
        let s = n.spec.as_ref();
        (
            s.and_then(|s| s.unschedulable).unwrap_or(false),
            s.and_then(|s| s.taints.clone()).unwrap_or_default(),
        )
    };
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    old.metadata.labels != new.metadata.labels
        || spec(old) != spec(new)
        || allocatable(old) != allocatable(new)
}

/// Whether an assigned pod's change frees room on its node: it was deleted (`new` is
/// `None`), or it went terminal. Unassigned pods free nothing.
pub fn assigned_pod_freed(old: Option<&Pod>, new: Option<&Pod>) -> bool {
    let Some(old) = old else {
        return false;
    };
    if assigned_node(old).is_none() || is_terminal(old) {
        return false;
    }
    new.is_none_or(is_terminal)
}

/// Bindings the scheduler has made but the pod watch has not shown yet, so back-to-back
/// decisions count them (upstream's assumed pods). Keyed `namespace/name`; each pod carries
/// the chosen `nodeName`.
#[derive(Debug, Default, Clone)]
pub struct Assumed {
    pods: HashMap<String, Arc<Pod>>,
}

impl Assumed {
    /// Records that `pod` is being bound to `node`.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let mut bound = pod.clone();
        if let Some(spec) = bound.spec.as_mut() {
            spec.node_name = Some(node.to_string());
        }
        self.pods.insert(pod_key(pod), Arc::new(bound));
    }

    /// The binding failed, or the watch now shows the pod (bound or gone).
    pub fn forget(&mut self, key: &str) {
        self.pods.remove(key);
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.pods.retain(|k, _| keep(k));
    }
}

/// One `NodeInfo` per node, with every non-terminal pod assigned to it plus the assumed
/// bindings the watch has not caught up with (a pod the watch shows assigned is counted
/// once, from the watch).
pub fn node_infos(nodes: &[Arc<Node>], pods: &[Arc<Pod>], assumed: &Assumed) -> Vec<NodeInfo> {
    let mut infos: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo::new((**n).clone(), &[]))
        .collect();
    infos.sort_by(|a, b| a.name().cmp(b.name()));
    let index: BTreeMap<String, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name().to_string(), i))
        .collect();
    let mut seen_assigned = std::collections::HashSet::new();
    let count = |infos: &mut Vec<NodeInfo>, pod: &Pod| {
        if let Some(i) = assigned_node(pod).and_then(|n| index.get(n)) {
            if !is_terminal(pod) {
                infos[*i].add_pod(pod);
            }
        }
    };
    for pod in pods {
        if assigned_node(pod).is_some() {
            seen_assigned.insert(pod_key(pod));
            count(&mut infos, pod);
        }
    }
    for (key, pod) in &assumed.pods {
        if !seen_assigned.contains(key) {
            count(&mut infos, pod);
        }
    }
    infos
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind it to this node.
    Bind { node: String },
    /// No node fits; `message` is upstream's `FailedScheduling` text.
    Unschedulable { message: String },
}

/// Decides where `pod` goes, given every node, every pod (only assigned ones count) and
/// the scheduler's assumed bindings.
pub fn decide(pod: &Pod, nodes: &[Arc<Node>], pods: &[Arc<Pod>], assumed: &Assumed) -> Decision {
    decide_on(pod, &node_infos(nodes, pods, assumed))
}

/// Decides where `pod` goes among `infos` (sorted by node name, as [`crate::Cache`] keeps
/// them).
pub fn decide_on(pod: &Pod, infos: &[NodeInfo]) -> Decision {
    match pick(pod, infos) {
        Ok(i) => Decision::Bind {
            node: infos[i].name().to_string(),
        },
        Err(fit) => Decision::Unschedulable {
            message: fit.message(),
        },
    }
}

/// The status patch (strategic merge on `pods/{name}/status`) that records
/// `PodScheduled=False`, reason `Unschedulable`, or `None` when the pod already says exactly
/// that. Like upstream's `UpdatePodCondition`, `lastTransitionTime` only moves when the
/// status changes. The patch carries the pod's `resourceVersion`, so it cannot land on a pod
/// that was bound meanwhile.
pub fn unschedulable_condition_patch(pod: &Pod, message: &str, now: Timestamp) -> Option<Value> {
    let existing: Option<&PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = existing {
        if c.status == "False"
            && c.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
            && c.message.as_deref() == Some(message)
        {
            return None;
        }
    }
    let transition = existing
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Some(json!({
        "metadata": { "resourceVersion": pod.metadata.resource_version },
        "status": { "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": REASON_UNSCHEDULABLE,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]},
    }))
}

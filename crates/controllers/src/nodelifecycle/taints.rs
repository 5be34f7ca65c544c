//! The taints the node lifecycle controller owns, and the pure decisions about them:
//! upstream's `processTaintBaseEviction` (the `NoExecute` not-ready/unreachable taints that
//! mirror the Ready condition) and `doNoScheduleTaintingPass` (TaintNodesByCondition: a
//! `NoSchedule` taint per unhealthy condition, and `unschedulable` following
//! `spec.unschedulable`).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::health::READY;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Taint::default()
    }
}

/// Upstream's `UnreachableTaintTemplate`.
pub fn unreachable_no_execute() -> Taint {
    taint(UNREACHABLE, NO_EXECUTE)
}

/// Upstream's `NotReadyTaintTemplate`.
pub fn not_ready_no_execute() -> Taint {
    taint(NOT_READY, NO_EXECUTE)
}

/// Upstream's `Taint.MatchTaint`: same key and effect.
pub fn matches(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

pub fn has_taint(node: &Node, t: &Taint) -> bool {
    node_taints(node).iter().any(|x| matches(x, t))
}

/// The node's taints after removing `remove` and adding `add` (with `timeAdded` now) in one
/// write — upstream's `SwapNodeControllerTaint`, which takes two. A taint already there
/// (same key, effect and value) keeps its `timeAdded`, so a repeated add does not restart
/// tolerations. `None` when nothing changes.
pub fn swap(
    current: &[Taint],
    add: &[Taint],
    remove: &[Taint],
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !remove.iter().any(|r| matches(r, t)))
        .cloned()
        .collect();
    for a in add {
        match out.iter().position(|t| matches(t, a)) {
            Some(i) if out[i].value == a.value => {}
            Some(i) => {
                out[i] = Taint {
                    time_added: Some(Time(now)),
                    ..a.clone()
                }
            }
            None => out.push(Taint {
                time_added: Some(Time(now)),
                ..a.clone()
            }),
        }
    }
    (out != current).then_some(out)
}

/// What `processTaintBaseEviction` does with a node, from the Ready condition the node
/// object had when the pass began.
#[derive(Debug, Clone, PartialEq)]
pub enum EvictionAction {
    /// Swap the opposite NoExecute taint for this one at once (no rate limit).
    Swap { add: Taint, remove: Taint },
    /// Put the node on its zone's tainting queue (after forgetting it if its taint is not
    /// there, so a node tainted, cleared and failing again is queued again).
    Queue { forget_first: bool },
    /// Ready: remove both NoExecute taints and take the node off the queue.
    MarkReachable,
}

pub fn taint_base_eviction(node: &Node, observed_ready: &NodeCondition) -> Option<EvictionAction> {
    let (add, remove) = match observed_ready.status.as_str() {
        "False" => (not_ready_no_execute(), unreachable_no_execute()),
        "Unknown" => (unreachable_no_execute(), not_ready_no_execute()),
        "True" => return Some(EvictionAction::MarkReachable),
        _ => return None,
    };
    if has_taint(node, &remove) {
        return Some(EvictionAction::Swap { add, remove });
    }
    Some(EvictionAction::Queue {
        forget_first: !has_taint(node, &add),
    })
}

/// What the tainting queue does with a node it reaches, from the node's Ready condition now:
/// the taint to add and the opposite one to remove, or None when it is Ready again.
pub fn no_execute_taint_for(ready: &NodeCondition) -> Option<(Taint, Taint)> {
    match ready.status.as_str() {
        "False" => Some((not_ready_no_execute(), unreachable_no_execute())),
        "Unknown" => Some((unreachable_no_execute(), not_ready_no_execute())),
        _ => None,
    }
}

/// Upstream's `nodeConditionToTaintKeyStatusMap`.
fn condition_taint(kind: &str, status: &str) -> Option<&'static str> {
    match (kind, status) {
        (READY, "False") => Some(NOT_READY),
        (READY, "Unknown") => Some(UNREACHABLE),
        ("MemoryPressure", "True") => Some(MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(PID_PRESSURE),
        _ => None,
    }
}

fn is_condition_taint_key(key: &str) -> bool {
    [
        NOT_READY,
        UNREACHABLE,
        MEMORY_PRESSURE,
        DISK_PRESSURE,
        NETWORK_UNAVAILABLE,
        PID_PRESSURE,
    ]
    .contains(&key)
}

/// `doNoScheduleTaintingPass`: the NoSchedule taints to add and to remove so the node's
/// condition and unschedulable taints match its conditions and `spec.unschedulable`.
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let mut want: Vec<Taint> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| condition_taint(&c.type_, &c.status))
        .map(|key| taint(key, NO_SCHEDULE))
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push(taint(UNSCHEDULABLE, NO_SCHEDULE));
    }
    let have: Vec<&Taint> = node_taints(node)
        .iter()
        .filter(|t| {
            t.effect == NO_SCHEDULE && (t.key == UNSCHEDULABLE || is_condition_taint_key(&t.key))
        })
        .collect();
    let add = want
        .iter()
        .filter(|w| !have.iter().any(|h| matches(h, w)))
        .cloned()
        .collect();
    let remove = have
        .into_iter()
        .filter(|h| !want.iter().any(|w| matches(h, w)))
        .cloned()
        .collect();
    (add, remove)
}

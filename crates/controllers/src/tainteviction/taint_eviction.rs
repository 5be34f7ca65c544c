//! The decisions of upstream's taint-eviction controller (`taint_eviction.go`), pure: which
//! taints count, which tolerations a pod uses against them, and when its deletion is due.

use std::time::Duration;

use api::scheduling::tolerates_taint;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use super::timed_workers::Work;

pub const NO_EXECUTE: &str = "NoExecute";
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const REASON: &str = "DeletionByTaintManager";
pub const MESSAGE: &str = "Taint manager: deleting due to NoExecute taint";

/// The node's `NoExecute` taints (upstream's `getNoExecuteTaints`).
pub fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}

/// Upstream's `GetMatchingTolerations`: for every taint the first toleration tolerating
/// it; None when some taint is tolerated by none.
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|taint| tolerations.iter().find(|t| tolerates_taint(t, taint)))
        .collect()
}

/// Upstream's `getMinTolerationTime`: the shortest `tolerationSeconds` (0 or less counts
/// as 0; no toleration at all as 0); None when every one tolerates forever.
pub fn min_toleration_time(used: &[&Toleration]) -> Option<Duration> {
    if used.is_empty() {
        return Some(Duration::ZERO);
    }
    used.iter()
        .filter_map(|t| t.toleration_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .min()
}

/// What to do about one pod on a node with these NoExecute taints (upstream's
/// `processPodOnNode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No deletion: cancel a scheduled one (with the `Cancelling deletion` event).
    Cancel,
    /// Leave what is scheduled (or already fired) as it is.
    Keep,
    /// Schedule the deletion at `fire_at`, replacing (and cancelling) a later one.
    Schedule {
        created_at: Timestamp,
        fire_at: Timestamp,
    },
}

/// `taints` are the node's NoExecute taints; `scheduled` the pod's pending or fired work.
/// A pod tolerating them all for a while is deleted that long after the earliest
/// `timeAdded` among the taints (now when a taint has none or is dated later than now);
/// one tolerating them forever is left alone; one not tolerating them all is deleted now.
pub fn decide(
    tolerations: &[Toleration],
    taints: &[Taint],
    scheduled: Option<&Work>,
    now: Timestamp,
) -> Decision {
    if taints.is_empty() {
        return Decision::Cancel;
    }
    let Some(used) = matching_tolerations(taints, tolerations) else {
        return match scheduled {
            Some(Work::Pending { fire_at, .. }) if *fire_at <= now => Decision::Keep,
            Some(Work::Fired) => Decision::Keep,
            _ => Decision::Schedule {
                created_at: now,
                fire_at: now,
            },
        };
    };
    let Some(wait) = min_toleration_time(&used) else {
        return Decision::Cancel;
    };
    let since = taints
        .iter()
        .map(|t| t.time_added.as_ref().map_or(now, |a| a.0.min(now)))
        .min()
        .unwrap_or(now);
    let fire_at = since + wait;
    match scheduled {
        Some(Work::Fired) => Decision::Keep,
        Some(Work::Pending {
            fire_at: pending, ..
        }) if *pending <= fire_at => Decision::Keep,
        _ => Decision::Schedule {
            created_at: since,
            fire_at,
        },
    }
}

/// The pod's tolerations.
pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The status patch put on a pod before it is deleted (upstream's `UpdatePodCondition` of
/// `DisruptionTarget`): None when the pod has that condition already True with this reason
/// and message.
pub fn disruption_target_patch(pod: &Pod, now: Timestamp) -> Option<serde_json::Value> {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == DISRUPTION_TARGET));
    if existing.is_some_and(|c| {
        c.status == "True"
            && c.reason.as_deref() == Some(REASON)
            && c.message.as_deref() == Some(MESSAGE)
    }) {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == "True" => c.last_transition_time.as_ref().map_or(now, |t| t.0),
        _ => now,
    };
    Some(serde_json::json!({
        "status": {
            "conditions": [{
                "type": DISRUPTION_TARGET,
                "status": "True",
                "reason": REASON,
                "message": MESSAGE,
                "lastTransitionTime": transition.to_string(),
            }]
        }
    }))
}

//! The decisions of upstream's `sync.go`, `progress.go` and `recreate.go` that the
//! controller's sync asks between its writes, all pure: whether a sync is a scaling event,
//! how a paused or resized deployment scales its ReplicaSets (`scale`), the paused and
//! resumed `Progressing` condition, the status a rollout writes (`syncRolloutStatus`, with
//! its `Progressing` and `ReplicaFailure` conditions), when a stuck rollout is looked at
//! again, and whether a Recreate rollout still has old pods.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::util::{
    self, calculate_status, deployment_complete, deployment_progressing, deployment_timed_out,
    get_condition, has_progress_deadline, new_condition, proportional_sizes, remove_condition,
    replicas, rs_replicas, set_condition, DESIRED_REPLICAS_ANNOTATION, NEW_RS_AVAILABLE_REASON,
    PAUSED_DEPLOY_REASON, PROGRESSING, REPLICA_FAILURE, REPLICA_SET_UPDATED_REASON,
    RESUMED_DEPLOY_REASON, TIMED_OUT_REASON,
};
use crate::controller_utils::{by_creation_timestamp, get_controller_of};

/// Upstream's `isScalingEvent`: an active ReplicaSet's `desired-replicas` annotation is not
/// the deployment's replicas (a ReplicaSet without it does not count).
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    all.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .filter_map(|rs| {
            rs.metadata
                .annotations
                .as_ref()?
                .get(DESIRED_REPLICAS_ANNOTATION)?
                .parse::<i32>()
                .ok()
        })
        .any(|desired| desired != replicas(d))
}

/// Upstream's `FindActiveOrLatest`: the only active ReplicaSet, or when none is active the
/// new one (else the newest old one); `None` when several are active.
pub fn find_active_or_latest<'a>(
    new: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new.is_none() && old.is_empty() {
        return None;
    }
    let mut sorted: Vec<&ReplicaSet> = old.to_vec();
    sorted.sort_by(|a, b| by_creation_timestamp(&b.metadata, &a.metadata));
    let mut all = sorted.clone();
    all.extend(new);
    let active: Vec<&ReplicaSet> = all.into_iter().filter(|rs| rs_replicas(rs) > 0).collect();
    match active.as_slice() {
        [] => new.or_else(|| sorted.first().copied()),
        [one] => Some(one),
        _ => None,
    }
}

/// One ReplicaSet resize: its name, new size and the event's direction (`up` / `down`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub name: String,
    pub replicas: i32,
    pub operation: &'static str,
}

fn direction(from: i32, to: i32) -> &'static str {
    if from < to {
        "up"
    } else {
        "down"
    }
}

/// Upstream's `scale` (a paused deployment, or one resized mid-rollout): the only active (or
/// latest) ReplicaSet takes all the replicas; a saturated new ReplicaSet leaves the old ones
/// at 0; otherwise, for a rolling deployment, every active ReplicaSet is resized in
/// proportion ([`proportional_sizes`]), all in the deployment's direction (their replica
/// annotations are rewritten even when the size stays).
pub fn scale_plan(d: &Deployment, new: Option<&ReplicaSet>, old: &[&ReplicaSet]) -> Vec<Resize> {
    let name = |rs: &ReplicaSet| rs.metadata.name.clone().unwrap_or_default();
    if let Some(rs) = find_active_or_latest(new, old) {
        if rs_replicas(rs) == replicas(d) {
            return Vec::new();
        }
        return vec![Resize {
            name: name(rs),
            replicas: replicas(d),
            operation: direction(rs_replicas(rs), replicas(d)),
        }];
    }
    if new.is_some_and(|rs| util::is_saturated(d, rs)) {
        return old
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .map(|rs| Resize {
                name: name(rs),
                replicas: 0,
                operation: "down",
            })
            .collect();
    }
    if !util::is_rolling_update(d) {
        return Vec::new();
    }
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.extend(new);
    let total = util::replica_count(&all);
    let allowed = if replicas(d) > 0 {
        replicas(d) + util::max_surge(d)
    } else {
        0
    };
    let operation = if allowed > total { "up" } else { "down" };
    proportional_sizes(d, &all)
        .into_iter()
        .map(|(name, replicas)| Resize {
            name,
            replicas,
            operation,
        })
        .collect()
}

/// Upstream's `checkPausedConditions`: the `Progressing` condition a pause (`Unknown`,
/// `DeploymentPaused`) or a resume (`Unknown`, `DeploymentResumed`) writes; `None` when it
/// is already there, the rollout timed out, or there is no progress deadline.
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentCondition> {
    if !has_progress_deadline(d) {
        return None;
    }
    let status = d.status.clone().unwrap_or_default();
    let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT_REASON) {
        return None;
    }
    let paused_exists = reason.as_deref() == Some(PAUSED_DEPLOY_REASON);
    let paused = d.spec.paused == Some(true);
    if paused && !paused_exists {
        Some(new_condition(
            PROGRESSING,
            "Unknown",
            PAUSED_DEPLOY_REASON,
            "Deployment is paused",
            now,
        ))
    } else if !paused && paused_exists {
        Some(new_condition(
            PROGRESSING,
            "Unknown",
            RESUMED_DEPLOY_REASON,
            "Deployment is resumed",
            now,
        ))
    } else {
        None
    }
}

/// Upstream's `getReplicaFailures`: the new ReplicaSet's `ReplicaFailure` condition, else
/// an old one's, as a deployment condition (updated when it transitioned).
pub fn replica_failure(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_.as_deref() == Some(REPLICA_FAILURE))
            .map(|c| DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                last_transition_time: c.last_transition_time.clone(),
                last_update_time: c.last_transition_time.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
    };
    new.and_then(failure)
        .or_else(|| all.iter().find_map(|rs| failure(rs)))
}

/// Upstream's `syncRolloutStatus`: the status ([`calculate_status`]) with `Progressing` —
/// `NewReplicaSetAvailable` once complete, `ReplicaSetUpdated` (updated each time it
/// progresses, keeping a `True` condition's transition time) while it progresses,
/// `ProgressDeadlineExceeded` when it stalled past the deadline, removed without a deadline,
/// left alone after completion while no new rollout started — and `ReplicaFailure`.
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(d, all, new, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, PROGRESSING);
    }
    let old_status = d.status.clone().unwrap_or_default();
    let current = get_condition(&old_status, PROGRESSING);
    let complete_before = status.replicas == status.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
    let subject = match new.and_then(|rs| rs.metadata.name.as_deref()) {
        Some(rs) => format!("ReplicaSet \"{rs}\""),
        None => format!(
            "Deployment \"{}\"",
            d.metadata.name.as_deref().unwrap_or_default()
        ),
    };
    if has_progress_deadline(d) && !complete_before {
        if deployment_complete(d, &status) {
            let c = new_condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE_REASON,
                &format!("{subject} has successfully progressed."),
                now,
            );
            set_condition(&mut status, c);
        } else if deployment_progressing(d, &status) {
            let mut c = new_condition(
                PROGRESSING,
                "True",
                REPLICA_SET_UPDATED_REASON,
                &format!("{subject} is progressing."),
                now,
            );
            if let Some(current) = current {
                if current.status.as_deref() == Some("True") {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, c);
        } else if deployment_timed_out(d, &status, now) {
            let c = new_condition(
                PROGRESSING,
                "False",
                TIMED_OUT_REASON,
                &format!("{subject} has timed out progressing."),
                now,
            );
            set_condition(&mut status, c);
        }
    }
    match replica_failure(all, new) {
        Some(c) => set_condition(&mut status, c),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// Upstream's `requeueStuckDeployment`: when to sync again to see whether a rollout that
/// makes no progress passed its deadline (a second after it); `None` without a deadline, a
/// `Progressing` condition, or once complete or timed out.
pub fn requeue_after(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    if !has_progress_deadline(d) {
        return None;
    }
    let status = d.status.clone().unwrap_or_default();
    let current = get_condition(&status, PROGRESSING)?;
    if deployment_complete(d, new) || current.reason.as_deref() == Some(TIMED_OUT_REASON) {
        return None;
    }
    let updated = current.last_update_time.as_ref()?.0;
    let deadline = updated
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
            d.spec.progress_deadline_seconds.unwrap_or(0),
        )))
        .ok()?;
    let after = now.duration_until(deadline);
    let after = Duration::try_from(after).unwrap_or(Duration::ZERO);
    if after < Duration::from_secs(1) {
        return Some(Duration::from_secs(1));
    }
    Some(after + Duration::from_secs(1))
}

/// Upstream's `oldPodsRunning`: an old ReplicaSet reports pods, or a pod controlled by a
/// ReplicaSet other than the new one is not finished (`Succeeded`/`Failed`).
pub fn old_pods_running(new: Option<&ReplicaSet>, old: &[&ReplicaSet], pods: &[&Pod]) -> bool {
    if util::actual_replica_count(old) > 0 {
        return true;
    }
    let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
    let old_uids: Vec<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|pod| {
        let Some(owner) = get_controller_of(&pod.metadata) else {
            return false;
        };
        if Some(owner.uid.as_str()) == new_uid || !old_uids.contains(&owner.uid.as_str()) {
            return false;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Succeeded") | Some("Failed"))
    })
}

/// Whether two statuses are the same, a zero count and an absent one alike (Go's zero
/// values are omitted on the wire).
pub fn status_eq(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let norm = |s: &DeploymentStatus| {
        let z = |v: Option<i32>| v.filter(|n| *n != 0);
        DeploymentStatus {
            replicas: z(s.replicas),
            updated_replicas: z(s.updated_replicas),
            ready_replicas: z(s.ready_replicas),
            available_replicas: z(s.available_replicas),
            unavailable_replicas: z(s.unavailable_replicas),
            terminating_replicas: z(s.terminating_replicas),
            conditions: s.conditions.clone().filter(|c| !c.is_empty()),
            ..s.clone()
        }
    };
    norm(a) == norm(b)
}

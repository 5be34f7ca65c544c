//! A replica set's status, as upstream's `replica_set_utils.go` computes it: the counts over
//! its active pods, `terminatingReplicas`, the `ReplicaFailure` condition, whether anything
//! changed enough to write, and when to look again for pods becoming available.
//!
//! ```text
//!  ReplicaFailure:  absent ──(create/delete failed)──▶ True FailedCreate|FailedDelete
//!                   True ──(a sync without failure)──▶ absent
//!                   True ──(fails again)──▶ unchanged (first message kept, as upstream)
//! ```

use std::borrow::Borrow;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::controller_utils::{
    is_pod_available, is_pod_ready, pod_available_at, FAILED_CREATE_POD_REASON,
    FAILED_DELETE_POD_REASON,
};

/// The condition a replica set has while it cannot create or delete pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.min_ready_seconds.unwrap_or(0)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Go's `omitempty` for the optional counts: 0 is written as absent.
fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Upstream's `calculateStatus`: the counts over `active` (the pods the replica set
/// claimed), `terminating` (`None` for kinds without the field), and the `ReplicaFailure`
/// condition set from `manage_error` (the failed create or delete) or cleared without one.
/// `observedGeneration` is left as it was; [`with_observed_generation`] sets it on write.
pub fn calculate_status<P: Borrow<Pod>>(
    rs: &ReplicaSet,
    active: &[P],
    terminating: Option<i32>,
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let (mut fully_labeled, mut ready, mut available) = (0usize, 0usize, 0usize);
    for pod in active.iter().map(Borrow::borrow) {
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }

    let has_failure = get_condition(&status, REPLICA_FAILURE).is_some();
    match manage_error {
        Some(message) if !has_failure => {
            let diff = count(active.len()) - replicas(rs);
            let reason = match diff {
                d if d < 0 => FAILED_CREATE_POD_REASON,
                d if d > 0 => FAILED_DELETE_POD_REASON,
                _ => "",
            };
            set_condition(
                &mut status,
                new_condition(REPLICA_FAILURE, "True", reason, message, now),
            );
        }
        None if has_failure => remove_condition(&mut status, REPLICA_FAILURE),
        _ => {}
    }

    status.replicas = count(active.len());
    status.fully_labeled_replicas = non_zero(count(fully_labeled));
    status.ready_replicas = non_zero(count(ready));
    status.available_replicas = non_zero(count(available));
    status.terminating_replicas = terminating;
    status
}

/// Upstream's `NewReplicaSetCondition`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> ReplicaSetCondition {
    ReplicaSetCondition {
        type_: Some(type_.to_string()),
        status: Some(status.to_string()),
        last_transition_time: Some(Time(now)),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
    }
}

pub fn get_condition<'a>(
    status: &'a ReplicaSetStatus,
    type_: &str,
) -> Option<&'a ReplicaSetCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

/// Upstream's `SetCondition`: a condition of the same status and reason is kept as it is
/// (its transition time and message too); otherwise it replaces the old one of its type.
pub fn set_condition(status: &mut ReplicaSetStatus, condition: ReplicaSetCondition) {
    let type_ = condition.type_.clone().unwrap_or_default();
    if let Some(current) = get_condition(status, &type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
    }
    let mut conditions: Vec<ReplicaSetCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.as_deref() != Some(type_.as_str()))
        .collect();
    conditions.push(condition);
    status.conditions = Some(conditions);
}

/// Upstream's `RemoveCondition`.
pub fn remove_condition(status: &mut ReplicaSetStatus, type_: &str) {
    let conditions: Vec<ReplicaSetCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.as_deref() != Some(type_))
        .collect();
    status.conditions = (!conditions.is_empty()).then_some(conditions);
}

/// Whether `new` says nothing the replica set's status does not already say (upstream's
/// early return in `updateReplicaSetStatus`): same counts, the generation observed, same
/// conditions. Absent counts are 0, as in Go.
pub fn status_unchanged(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let conditions = |s: &ReplicaSetStatus| s.conditions.clone().unwrap_or_default();
    old.replicas == new.replicas
        && n(old.fully_labeled_replicas) == n(new.fully_labeled_replicas)
        && n(old.ready_replicas) == n(new.ready_replicas)
        && n(old.available_replicas) == n(new.available_replicas)
        && old.terminating_replicas == new.terminating_replicas
        && rs.metadata.generation == old.observed_generation
        && conditions(&old) == conditions(new)
}

/// The status to write: `new` with the replica set's generation observed.
pub fn with_observed_generation(rs: &ReplicaSet, mut new: ReplicaSetStatus) -> ReplicaSetStatus {
    new.observed_generation = rs.metadata.generation;
    new
}

/// The margin added to a pod's availability time before looking again (upstream's
/// `updatePod` adds a second "to avoid milliseconds skew"): availability is strictly after
/// `minReadySeconds`, and ready times have second resolution.
const AVAILABILITY_SKEW: Duration = Duration::from_secs(1);

/// When to sync again to count pods that become available (upstream's requeue after a
/// sync with `minReadySeconds` while some ready pods are not available yet): when the first
/// of them becomes available, else after `minReadySeconds`. `None` when nothing waits.
pub fn next_sync<P: Borrow<Pod>>(
    min_ready_seconds: i32,
    status: &ReplicaSetStatus,
    active: &[P],
    now: Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 || status.ready_replicas == status.available_replicas {
        return None;
    }
    let first = active
        .iter()
        .filter_map(|p| pod_available_at(p.borrow(), min_ready_seconds, now))
        .min();
    let wait = match first {
        Some(at) => Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO),
        None => Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0)),
    };
    Some(wait + AVAILABILITY_SKEW)
}

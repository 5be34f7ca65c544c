//! Upstream's `stateful_set_control.go` `updateStatefulSet` as a pure plan: from the set,
//! its current and update revisions and its pods, the status to write and the pod
//! creates, identity updates and deletes to make, in the order upstream makes them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use super::stateful_set_utils::{
    add_replica_status, allows_burst, identity_matches, in_ordinal_range, is_created, is_failed,
    is_running_and_available, is_running_and_ready, is_succeeded, is_terminating, is_unavailable,
    max_unavailable, min_ready_seconds, new_versioned_pod, ordinal, pod_revision, replicas,
    rolling_update, start_ordinal, storage_matches, strategy_type, update_identity, update_storage,
};

/// One revision as the plan needs it: its name and the template it holds.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    pub name: &'a str,
    pub template: &'a PodTemplateSpec,
}

/// Why a pod is deleted (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Failed or Succeeded: it is re-created under the same name.
    Finished,
    /// Its ordinal is beyond the replicas.
    ScaleDown,
    /// It is not at the update revision.
    Update,
}

/// A write the sync makes.
#[derive(Debug, Clone)]
pub enum Action {
    Create(Pod),
    /// A pod with its identity (or claims' volumes) put right, to PUT.
    UpdateIdentity(Pod),
    Delete {
        name: String,
        reason: DeleteReason,
    },
}

/// The sync's writes in steps: each step's actions run together (in slow-start batches),
/// and a failing step ends the sync.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub status: StatefulSetStatus,
    pub steps: Vec<Vec<Action>>,
    /// `maxUnavailable` could not be read: the status is written, the error reported.
    pub error: Option<String>,
}

impl Plan {
    /// Every action, in order.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.steps.iter().flatten()
    }
}

/// What stops a pass over the pods: in OrderedReady, the first pod acted on or waited for.
enum Flow {
    Continue,
    Stop,
}

/// Upstream's `processReplica` for one pod of the range.
fn process_replica(
    set: &StatefulSet,
    pod: &Pod,
    monotonic: bool,
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> Flow {
    let min_ready = min_ready_seconds(set);
    let name = pod.metadata.name.clone().unwrap_or_default();
    if is_failed(pod) || is_succeeded(pod) {
        if pod.metadata.deletion_timestamp.is_none() {
            actions.push(Action::Delete {
                name,
                reason: DeleteReason::Finished,
            });
        }
        // Re-created once the deletion shows; in Parallel the pass goes on.
        return if monotonic {
            Flow::Stop
        } else {
            Flow::Continue
        };
    }
    if !is_created(pod) {
        actions.push(Action::Create(pod.clone()));
        if monotonic {
            return Flow::Stop;
        }
        // A new pod has its identity.
        return Flow::Continue;
    }
    if monotonic
        && (is_terminating(pod)
            || !is_running_and_ready(pod)
            || !is_running_and_available(pod, min_ready, now))
    {
        return Flow::Stop;
    }
    if identity_matches(set, pod) && storage_matches(set, pod) {
        return Flow::Continue;
    }
    let mut fixed = pod.clone();
    update_identity(set, &mut fixed);
    if !storage_matches(set, &fixed) {
        update_storage(set, &mut fixed);
    }
    actions.push(Action::UpdateIdentity(fixed));
    Flow::Continue
}

/// Upstream's `updateStatefulSet` (with `MaxUnavailableStatefulSet`, on by default):
///
/// ```text
///  pods ─▶ in range [start, start+replicas): by ordinal; missing ordinals get a new pod at
///          the current revision (below the partition) or the update revision
///        ─▶ beyond it: condemned, highest ordinal first
///  set being deleted ─▶ status only
///  each replica in order: finished → delete (re-created later); missing → create;
///        OrderedReady stops at the first pod created, deleted, terminating, not Running
///        and Ready, or not available (minReadySeconds); identity put right otherwise
///  each condemned, highest first: OrderedReady waits while it terminates, and deletes it
///        only if every other pod is healthy (or it is the first unhealthy one), one a sync
///  OnDelete ─▶ done
///  RollingUpdate ─▶ at most maxUnavailable (default 1) unavailable pods: delete the
///        highest ordinals ≥ partition not at the update revision, down to that budget
/// ```
pub fn plan(
    set: &StatefulSet,
    current: Revision<'_>,
    update: Revision<'_>,
    collision_count: i32,
    pods: &[Arc<Pod>],
    controller_ref: &OwnerReference,
    now: Timestamp,
) -> Plan {
    let min_ready = min_ready_seconds(set);
    let start = start_ordinal(set);
    let count = usize::try_from(replicas(set)).unwrap_or(0);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current.name.to_string()),
        update_revision: Some(update.name.to_string()),
        collision_count: Some(collision_count),
        // Always written, as upstream's (no omitempty); the other counts are omitted at 0.
        available_replicas: Some(0),
        ..StatefulSetStatus::default()
    };

    let mut in_range: Vec<Option<&Pod>> = vec![None; count];
    let mut condemned: Vec<&Pod> = Vec::new();
    for pod in pods {
        if in_ordinal_range(set, pod) {
            if let Ok(i) = usize::try_from(ordinal(pod) - start) {
                in_range[i] = Some(pod);
            }
        } else if ordinal(pod) >= 0 {
            condemned.push(pod);
        }
    }
    let created: Vec<Option<Pod>> = in_range
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.is_none().then(|| {
                let ord = start + i64::try_from(i).unwrap_or(0);
                new_versioned_pod(
                    set,
                    (current.name, current.template),
                    (update.name, update.template),
                    controller_ref,
                    ord,
                )
            })
        })
        .collect();
    let replicas_: Vec<&Pod> = in_range
        .iter()
        .zip(created.iter())
        .filter_map(|(p, c)| p.or(c.as_ref()))
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));

    add_replica_status(
        &mut status,
        replicas_.iter().copied().chain(condemned.iter().copied()),
        min_ready,
        current.name,
        update.name,
        now,
    );
    // The first unhealthy pod: of the replicas in order, else the lowest condemned.
    let first_unhealthy: Option<&Pod> = replicas_
        .iter()
        .copied()
        .chain(condemned.iter().rev().copied())
        .find(|p| is_unavailable(p, min_ready, now));

    let mut plan = Plan {
        status,
        ..Plan::default()
    };
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let monotonic = !allows_burst(set);

    // The replicas.
    let mut batch = Vec::new();
    for pod in &replicas_ {
        let mut actions = Vec::new();
        let flow = process_replica(set, pod, monotonic, now, &mut actions);
        if monotonic {
            plan.steps.extend(actions.into_iter().map(|a| vec![a]));
            if let Flow::Stop = flow {
                return plan;
            }
        } else {
            batch.extend(actions);
        }
    }
    if !batch.is_empty() {
        plan.steps.push(std::mem::take(&mut batch));
    }

    // The condemned, highest ordinal first.
    for pod in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let is_first_unhealthy = first_unhealthy.is_some_and(|f| std::ptr::eq(f, *pod));
        if monotonic
            && !is_first_unhealthy
            && (!is_running_and_ready(pod) || !is_running_and_available(pod, min_ready, now))
        {
            return plan;
        }
        let delete = Action::Delete {
            name: pod.metadata.name.clone().unwrap_or_default(),
            reason: DeleteReason::ScaleDown,
        };
        if monotonic {
            plan.steps.push(vec![delete]);
            return plan;
        }
        batch.push(delete);
    }
    if !batch.is_empty() {
        plan.steps.push(std::mem::take(&mut batch));
    }

    if strategy_type(set) == "OnDelete" {
        return plan;
    }

    // The rolling update.
    let budget = match max_unavailable(set) {
        Ok(n) => usize::try_from(n).unwrap_or(1),
        Err(e) => {
            plan.error = Some(e);
            return plan;
        }
    };
    let partition = rolling_update(set).map_or(0, |(p, _)| i64::from(p));
    let unavailable = replicas_
        .iter()
        .filter(|p| is_unavailable(p, min_ready, now))
        .count();
    if unavailable > budget {
        return plan;
    }
    let mut to_delete = budget - unavailable;
    let update_min = usize::try_from(partition).unwrap_or(0);
    for target in (0..replicas_.len()).rev() {
        if target < update_min || to_delete == 0 {
            break;
        }
        let pod = replicas_[target];
        if pod_revision(pod) != update.name && !is_terminating(pod) {
            batch.push(Action::Delete {
                name: pod.metadata.name.clone().unwrap_or_default(),
                reason: DeleteReason::Update,
            });
            to_delete -= 1;
            plan.status.current_replicas = Some(plan.status.current_replicas.unwrap_or(0) - 1);
        }
    }
    if !batch.is_empty() {
        plan.steps.push(batch);
    }
    plan
}

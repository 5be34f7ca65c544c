//! What upstream's workload controllers share (`pkg/controller/controller_utils.go`), named
//! as upstream names it so a reader of the Go finds the same words here:
//!
//! - pod predicates: [`is_pod_active`], [`is_pod_ready`], [`is_pod_available`] (with
//!   `minReadySeconds`), [`is_pod_terminating`], and the counts and filters over them;
//! - stamping a pod from a template: [`get_pod_from_template`] (labels, annotations and
//!   finalizers copied, `generateName` `<owner>-`, the controller reference appended) and
//!   [`new_controller_ref`] (`controller: true`, `blockOwnerDeletion: true`);
//! - [`expectations`]: `ControllerExpectations` and its UID-tracking variant, so a controller
//!   waits for the watch to show what it created or deleted before deciding again;
//! - [`ranking`]: `ActivePodsWithRanks`, the order in which surplus pods are deleted;
//! - [`pod_control`]: `RealPodControl`, the pod creates, deletes and patches with their
//!   `SuccessfulCreate` / `FailedCreate` / `SuccessfulDelete` / `FailedDelete` events;
//! - [`slow_start_batch`] (1, 2, 4, … calls at once, stopping at the first failing batch)
//!   and [`compute_hash`] (the `pod-template-hash` of a template).
//!
//! Everything but `pod_control` and `slow_start_batch` is pure and takes the time it
//! compares against as an argument.

pub mod expectations;
pub mod pod_control;
pub mod ranking;

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::future::Future;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub use expectations::{ControllerExpectations, UidTrackingControllerExpectations};
pub use pod_control::PodControl;
pub use ranking::{
    active_pods_less, pods_ranked_by_related_pods_on_same_node, ranked_less, sort_by_less,
    ActivePodsWithRanks,
};

/// How long a controller waits for the watch to confirm what it created or deleted before
/// it decides again anyway (upstream's `ExpectationsTimeout`): a dropped watch event must
/// not leave a controller asleep forever.
pub const EXPECTATIONS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The first batch of [`slow_start_batch`] (upstream's `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;

/// Event reasons (and `ReplicaFailure` condition reasons) of pod creates and deletes.
pub const FAILED_CREATE_POD_REASON: &str = "FailedCreate";
pub const SUCCESSFUL_CREATE_POD_REASON: &str = "SuccessfulCreate";
pub const FAILED_DELETE_POD_REASON: &str = "FailedDelete";
pub const SUCCESSFUL_DELETE_POD_REASON: &str = "SuccessfulDelete";

/// The annotation that orders pods of equal standing for deletion (lower goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

// ---------------------------------------------------------------------------------------
// Pod predicates (upstream's `controller.IsPodActive` and `api/v1/pod` helpers)

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Succeeded or Failed: the pod will not run again.
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Not finished and not being deleted: the pod counts toward a controller's replicas.
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_pod_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but not finished yet (`terminatingReplicas`).
pub fn is_pod_terminating(pod: &Pod) -> bool {
    !is_pod_terminal(pod) && pod.metadata.deletion_timestamp.is_some()
}

/// The pod's `Ready` condition, if it has one.
pub fn pod_ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` before `now` (upstream's `IsPodAvailable`: with
/// 0 any ready pod is available; otherwise the condition's transition must be known and
/// strictly more than that long ago).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let Some(since) = pod_ready_condition(pod).and_then(|c| c.last_transition_time.as_ref()) else {
        return false;
    };
    since
        .0
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
        .is_ok_and(|available_at| available_at < now)
}

/// When a pod that is ready but not yet available will become available, for requeueing
/// (`None` when it is not ready or already available).
pub fn pod_available_at(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Timestamp> {
    if min_ready_seconds <= 0 || !is_pod_ready(pod) || is_pod_available(pod, min_ready_seconds, now)
    {
        return None;
    }
    let since = pod_ready_condition(pod)?.last_transition_time.as_ref()?;
    since
        .0
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
        .ok()
}

/// The pods that are active ([`is_pod_active`]).
pub fn filter_active_pods<P: Borrow<Pod>>(pods: impl IntoIterator<Item = P>) -> Vec<P> {
    pods.into_iter()
        .filter(|p| is_pod_active(p.borrow()))
        .collect()
}

/// How many of `pods` are terminating ([`is_pod_terminating`]).
pub fn count_terminating_pods<P: Borrow<Pod>>(pods: &[P]) -> i32 {
    let n = pods
        .iter()
        .filter(|p| is_pod_terminating((*p).borrow()))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The value of the pod-deletion-cost annotation; absent or malformed counts as 0
/// (upstream's `GetDeletionCostFromPodAnnotations`, whose error the ranking ignores).
pub fn pod_deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Owner references

/// The reference a controller puts on what it creates (upstream's `metav1.NewControllerRef`).
pub fn new_controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `namespace/name`, the key of expectations and of the work queues (upstream's
/// `KeyFunc` and `PodKey`).
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The [`key`] of an object.
pub fn meta_key(meta: &ObjectMeta) -> String {
    key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The uid last seen under each controller key, so an event router tells a controller
/// deleted or re-created under its name (whose expectations must be forgotten) from one
/// merely updated.
#[derive(Debug, Default)]
pub struct OwnerUids(std::collections::HashMap<String, String>);

impl OwnerUids {
    /// Records what the watch showed of the controller at `key`; true when it is gone or
    /// is a new object under an old name.
    pub fn replaced(&mut self, key: &str, uid: &str, gone: bool) -> bool {
        if gone {
            self.0.remove(key);
            return true;
        }
        self.0
            .insert(key.to_string(), uid.to_string())
            .is_some_and(|old| old != uid)
    }
}

/// The owner reference with `controller: true`, if any (upstream's `metav1.GetControllerOf`).
pub fn get_controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Upstream's `validateControllerRef`, with its messages.
pub fn validate_controller_ref(r: &OwnerReference) -> Result<(), &'static str> {
    if r.api_version.is_empty() {
        return Err("controllerRef has empty APIVersion");
    }
    if r.kind.is_empty() {
        return Err("controllerRef has empty Kind");
    }
    if r.controller != Some(true) {
        return Err("controllerRef.Controller is not set to true");
    }
    if r.block_owner_deletion != Some(true) {
        return Err("controllerRef.BlockOwnerDeletion is not set");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Pods from templates

/// The longest pod name (a DNS subdomain).
const MAX_POD_NAME: usize = 253;

/// `<controller>-`, unless that would not be a valid pod name prefix; then the bare name
/// (upstream's `getPodsPrefix`). The API server cuts a generated name's prefix to 58
/// characters, so long owners still get pods.
pub fn get_pods_prefix(controller_name: &str) -> String {
    if controller_name.len() < MAX_POD_NAME {
        format!("{controller_name}-")
    } else {
        controller_name.to_string()
    }
}

/// The pod a controller creates from `template` (upstream's `GetPodFromTemplate`): the
/// template's labels, annotations and finalizers, `generateName` from the owner's name, the
/// controller reference, and the template's spec.
pub fn get_pod_from_template(
    template: &PodTemplateSpec,
    parent_name: &str,
    controller_ref: Option<&OwnerReference>,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let non_empty = |m: Option<BTreeMap<String, String>>| m.filter(|m| !m.is_empty());
    Pod {
        metadata: ObjectMeta {
            labels: non_empty(meta.labels),
            annotations: non_empty(meta.annotations),
            finalizers: meta.finalizers.filter(|f| !f.is_empty()),
            generate_name: Some(get_pods_prefix(parent_name)),
            owner_references: controller_ref.map(|r| vec![r.clone()]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

// ---------------------------------------------------------------------------------------
// Ordering helpers

/// Older first, names breaking ties (upstream's `ControllersByCreationTimestamp`,
/// `ReplicaSetsByCreationTimestamp`).
pub fn by_creation_timestamp(a: &ObjectMeta, b: &ObjectMeta) -> Ordering {
    let t = |m: &ObjectMeta| m.creation_timestamp.as_ref().map(|t| t.0);
    match (t(a), t(b)) {
        (x, y) if x == y => a.name.cmp(&b.name),
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

// ---------------------------------------------------------------------------------------
// Batches

/// Calls `f` `count` times in batches of 1, 2, 4, … (from `initial_batch_size`), each batch
/// concurrently, stopping after the first batch in which a call failed (upstream's
/// `slowStartBatch`): a controller that cannot create pods (quota, admission) learns so
/// from one call instead of a burst of doomed ones. Returns how many calls succeeded and
/// the first error.
pub async fn slow_start_batch<F, Fut, E>(
    count: usize,
    initial_batch_size: usize,
    f: F,
) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial_batch_size.max(1));
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if first_error.is_some() {
            return (successes, first_error);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (successes, None)
}

// ---------------------------------------------------------------------------------------
// Template hash

/// Upstream's alphabet for names (`rand.SafeEncodeString`): no vowels, no confusable
/// digits, so a hash never spells a word.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Upstream's `rand.SafeEncodeString`: every byte mapped into [`ALPHANUMS`].
pub fn safe_encode_string(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// 32-bit FNV-1a.
fn fnv32a(data: &[u8], mut hash: u32) -> u32 {
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;

/// The `pod-template-hash` of a template (upstream's `ComputeHash`): FNV-32a over the
/// printed template, then the collision count's four little-endian bytes when set, the
/// decimal number safe-encoded. Names therefore look like upstream's
/// (`nginx-7c5ddbdf54`). Departure: upstream prints the template with spew's `%#v`; this
/// hashes its JSON (fields in declaration order, maps sorted), so the same template gets
/// a different (but as stable) hash than on kube-controller-manager.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // A template always serializes; an empty byte string would still give a stable hash.
    let printed = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(&printed, FNV32_OFFSET);
    if let Some(count) = collision_count {
        hash = fnv32a(&count.to_le_bytes(), hash);
    }
    safe_encode_string(&hash.to_string())
}

#[cfg(test)]
mod tests;

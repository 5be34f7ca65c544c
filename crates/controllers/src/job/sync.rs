//! The decisions of one Job sync (upstream's `syncJob`, `manageJob` and
//! `trackJobStatusAndRemoveFinalizers`), pure: the shell in `mod.rs` reads the caches,
//! calls these, and does the pod creates, deletes, finalizer patches and status writes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::backoff_utils::{finished_time, remaining_time_for_failures};
use super::indexed_job_utils::{
    completion_index, duplicated_index_pods, index_absolute_failure_count, index_failure_count,
    index_ignored_failure_count, indexes_of, is_indexed_job, Intervals,
};
use super::pod_failure_policy::{match_pod_failure_policy, Action};
use super::success_policy::match_success_policy;
use crate::controller_utils::{active_pods_less, is_pod_terminating, sort_by_less};

/// The finalizer every Job pod carries until the controller counted it.
pub const JOB_TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Creates or deletes per sync (upstream's `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// Pods counted per sync (upstream's `MaxUncountedPods`).
pub const MAX_UNCOUNTED_PODS: usize = 500;

// Condition types and reasons (upstream's `batch.JobConditionType`, `JobReason*`).
pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const REASON_MAX_FAILED_INDEXES_EXCEEDED: &str = "MaxFailedIndexesExceeded";
pub const REASON_FAILED_INDEXES: &str = "FailedIndexes";
pub const REASON_SUCCESS_POLICY: &str = "SuccessPolicy";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

pub fn spec(job: &Job) -> JobSpec {
    job.spec.clone().unwrap_or_default()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == JOB_TRACKING_FINALIZER)
}

pub fn job_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

pub fn has_backoff_limit_per_index(job: &Job) -> bool {
    job.spec
        .as_ref()
        .is_some_and(|s| s.backoff_limit_per_index.is_some())
}

/// Only failed pods are replaced, not terminating ones (`podReplacementPolicy: Failed`, the
/// default with a pod failure policy).
pub fn only_replace_failed_pods(job: &Job) -> bool {
    let s = job.spec.as_ref();
    s.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || s.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Upstream's `isPodFailed`: a Failed pod; unless only failed pods are replaced, also a
/// pod being deleted before it succeeded (node loss, eviction).
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if only_replace_failed_pods(job) {
        return phase(pod) == "Failed";
    }
    if phase(pod) == "Failed" {
        return true;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

fn completions(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0)
}

/// A pod of an Indexed Job whose index is valid; any pod of a NonIndexed one.
fn valid_index(job: &Job, pod: &Pod) -> bool {
    !is_indexed_job(job) || completion_index(pod).is_some_and(|ix| ix < completions(job))
}

/// What one sync knows about the Job's pods.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub pods: Vec<Arc<Pod>>,
    pub active: Vec<Arc<Pod>>,
    pub uncounted_succeeded: HashSet<String>,
    pub uncounted_failed: HashSet<String>,
    /// Pods whose finalizer this controller removed, not yet seen so by the watch.
    pub expected_rm_finalizers: HashSet<String>,
}

impl Observed {
    pub fn new(job: &Job, pods: Vec<Arc<Pod>>, expected_rm_finalizers: HashSet<String>) -> Self {
        let active = crate::controller_utils::filter_active_pods(pods.iter().cloned());
        let uncounted = job
            .status
            .as_ref()
            .and_then(|s| s.uncounted_terminated_pods.clone())
            .unwrap_or_default();
        Observed {
            pods,
            active,
            uncounted_succeeded: uncounted.succeeded.into_iter().flatten().collect(),
            uncounted_failed: uncounted.failed.into_iter().flatten().collect(),
            expected_rm_finalizers,
        }
    }

    /// Pods still carrying the finalizer, not yet uncounted, of a valid index, that pass
    /// `filter` (upstream's `getValidPodsWithFilter`).
    fn valid_pods(
        &self,
        job: &Job,
        uncounted: Option<&HashSet<String>>,
        filter: impl Fn(&Pod) -> bool,
    ) -> Vec<Arc<Pod>> {
        self.pods
            .iter()
            .filter(|p| {
                let u = uid(p);
                has_tracking_finalizer(p)
                    && !uncounted.is_some_and(|s| s.contains(&u))
                    && !self.expected_rm_finalizers.contains(&u)
                    && valid_index(job, p)
                    && filter(p)
            })
            .cloned()
            .collect()
    }

    /// Newly succeeded and newly failed pods (upstream's `getNewFinishedPods`).
    pub fn new_finished_pods(&self, job: &Job) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
        let succeeded = self.valid_pods(job, Some(&self.uncounted_succeeded), |p| {
            phase(p) == "Succeeded"
        });
        let failed = self.valid_pods(job, Some(&self.uncounted_failed), |p| is_pod_failed(p, job));
        (succeeded, failed)
    }
}

/// Failed pods the pod failure policy does not ignore.
pub fn non_ignored_failed_count(job: &Job, failed: &[Arc<Pod>]) -> i32 {
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let n = failed
        .iter()
        .filter(|p| match_pod_failure_policy(policy, p).count_failed)
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The message of a `FailJob` rule some failed pod matches.
pub fn fail_job_message(job: &Job, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.iter()
        .filter(|p| is_pod_failed(p, job))
        .find_map(|p| match_pod_failure_policy(Some(policy), p).fail_job_message)
}

/// With `restartPolicy: OnFailure`, the restarts of running and pending pods reached the
/// backoff limit (upstream's `pastBackoffLimitOnFailure`).
pub fn past_backoff_limit_on_failure(job: &Job, pods: &[Arc<Pod>]) -> bool {
    let spec = spec(job);
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let mut restarts = 0i64;
    for p in pods {
        if !matches!(phase(p), "Running" | "Pending") {
            continue;
        }
        let Some(s) = &p.status else { continue };
        for c in s
            .init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
        {
            restarts += i64::from(c.restart_count);
        }
    }
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// How long until `activeDeadlineSeconds` passes (zero once past); `None` without a
/// deadline, before the start or while suspended.
pub fn active_deadline_remaining(job: &Job, now: Timestamp) -> Option<Duration> {
    let deadline = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    if job_suspended(job) {
        return None;
    }
    let ends = start
        .checked_add(SignedDuration::from_secs(deadline))
        .ok()?;
    Some(Duration::try_from(ends.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// A condition as upstream's `newCondition` makes it: both times now.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: non_empty(reason),
        message: non_empty(message),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn find_condition<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn condition_true(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| find_condition(c, type_))
        .is_some_and(|c| c.status == "True")
}

/// Complete or Failed (upstream's `IsJobFinished`).
pub fn is_job_finished(job: &Job) -> bool {
    condition_true(job, COMPLETE) || condition_true(job, FAILED)
}

/// When the Job finished, if it did.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_deref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Upstream's `ensureJobConditionStatus`: sets the condition (new times) when its status,
/// reason or message differ; a missing condition is added unless it would be False.
pub fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let fresh = new_condition(type_, status, reason, message, now);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != fresh.status || c.reason != fresh.reason || c.message != fresh.message {
            *c = fresh;
            return true;
        }
        return false;
    }
    if status != "False" {
        conditions.push(fresh);
        return true;
    }
    false
}

/// The indexes that succeeded before (status) and now (plus the pods succeeded since,
/// still with their finalizer) (upstream's `calculateSucceededIndexes`).
pub fn calculate_succeeded_indexes(job: &Job, pods: &[Arc<Pod>]) -> (Intervals, Intervals) {
    let c = completions(job);
    let prev = Intervals::parse(
        job.status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref())
            .unwrap_or(""),
        c,
    );
    let new: BTreeSet<i32> = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p))
        .filter_map(|p| completion_index(p))
        .filter(|ix| *ix < c)
        .collect();
    let now = prev.with_indexes(new);
    (prev, now)
}

/// Whether a failed pod fails its index: a `FailIndex` rule, or its counted failures reach
/// `backoffLimitPerIndex` (upstream's `isIndexFailed`).
fn is_index_failed(job: &Job, pod: &Pod) -> bool {
    let spec = spec(job);
    let mut counted = false;
    if is_pod_failed(pod, job) {
        if let Some(policy) = &spec.pod_failure_policy {
            let v = match_pod_failure_policy(Some(policy), pod);
            if v.action == Some(Action::FailIndex) {
                return true;
            }
            counted = v.count_failed;
        } else {
            counted = true;
        }
    }
    counted && index_failure_count(pod) >= spec.backoff_limit_per_index.unwrap_or(i32::MAX)
}

/// The failed indexes: the status's and those failed since (upstream's
/// `calculateFailedIndexes`).
pub fn calculate_failed_indexes(job: &Job, pods: &[Arc<Pod>]) -> Intervals {
    let c = completions(job);
    let prev = Intervals::parse(
        job.status
            .as_ref()
            .and_then(|s| s.failed_indexes.as_deref())
            .unwrap_or(""),
        c,
    );
    let new: Vec<i32> = pods
        .iter()
        .filter(|p| is_index_failed(job, p))
        .filter_map(|p| completion_index(p))
        .collect();
    prev.with_indexes(new)
}

/// Per index with neither success, failure nor an active pod, the failed pod whose
/// finalizer stays until its replacement carries its failure count (upstream's
/// `getPodsWithDelayedDeletionPerIndex`).
pub fn pods_with_delayed_deletion_per_index(
    job: &Job,
    observed: &Observed,
    succeeded: &Intervals,
    failed: &Intervals,
    now: Timestamp,
) -> BTreeMap<i32, Arc<Pod>> {
    let active = indexes_of(&observed.active);
    let mut out: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    for p in observed.valid_pods(job, None, |p| is_pod_failed(p, job)) {
        let Some(ix) = completion_index(&p) else {
            continue;
        };
        if succeeded.has(ix) || failed.has(ix) || active.contains(&ix) {
            continue;
        }
        let replace = match out.get(&ix) {
            Some(last) => {
                index_absolute_failure_count(last) <= index_absolute_failure_count(&p)
                    && finished_time(&p, now) >= finished_time(last, now)
            }
            None => true,
        };
        if replace {
            out.insert(ix, p);
        }
    }
    out
}

/// How long a new pod for the index of a failed pod waits (upstream's
/// `getRemainingTimePerIndex`).
pub fn remaining_time_per_index(pod: &Pod, now: Timestamp) -> Duration {
    let failures = index_absolute_failure_count(pod).saturating_add(1);
    remaining_time_for_failures(failures, Some(finished_time(pod, now)), now)
}

/// The failure-count annotations of a replacement pod, from the failed pod it replaces
/// (upstream's `addIndexFailureCountAnnotation`).
pub fn index_failure_annotations(job: &Job, replaced: Option<&Pod>) -> Vec<(String, String)> {
    use super::indexed_job_utils::{
        INDEX_FAILURE_COUNT_ANNOTATION, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION,
    };
    let Some(old) = replaced else {
        return vec![(INDEX_FAILURE_COUNT_ANNOTATION.to_string(), "0".to_string())];
    };
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let counted = match_pod_failure_policy(policy, old).count_failed;
    let (failures, ignored) = (index_failure_count(old), index_ignored_failure_count(old));
    let failures = if counted { failures + 1 } else { failures };
    let ignored = if counted { ignored } else { ignored + 1 };
    let mut out = vec![(
        INDEX_FAILURE_COUNT_ANNOTATION.to_string(),
        failures.to_string(),
    )];
    if ignored > 0 {
        out.push((
            INDEX_IGNORED_FAILURE_COUNT_ANNOTATION.to_string(),
            ignored.to_string(),
        ));
    }
    out
}

/// How many pods should be active (upstream's `manageJob`): parallelism, but no more than
/// the completions left; a work-queue Job keeps what runs once one pod succeeded.
pub fn want_active(job: &Job, active: i32, succeeded: i32) -> i32 {
    let spec = spec(job);
    let parallelism = spec.parallelism.unwrap_or(1);
    match spec.completions {
        None => {
            if succeeded > 0 {
                active
            } else {
                parallelism
            }
        }
        Some(c) => (c - succeeded).min(parallelism).max(0),
    }
}

/// The active pods to delete: of an Indexed Job first those with a repeated or invalid
/// index, then the least valuable (upstream's `activePodsForRemoval`).
pub fn active_pods_for_removal(
    job: &Job,
    active: &[Arc<Pod>],
    rm_at_least: usize,
) -> Vec<Arc<Pod>> {
    let (mut rm, left) = if is_indexed_job(job) {
        duplicated_index_pods(active, completions(job))
    } else {
        (Vec::new(), active.to_vec())
    };
    if rm.len() < rm_at_least {
        let left = sort_by_less(left, &|a: &Arc<Pod>, b: &Arc<Pod>| active_pods_less(a, b));
        let n = rm_at_least - rm.len();
        rm.extend(left.into_iter().take(n));
    }
    rm
}

/// The indexes of terminating pods, which `podReplacementPolicy: Failed` does not replace.
pub fn terminating_indexes(pods: &[Arc<Pod>]) -> BTreeSet<i32> {
    let terminating: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_pod_terminating(p)).collect();
    terminating
        .iter()
        .filter_map(|p| completion_index(p))
        .collect()
}

/// What counting the finished pods decided (upstream's loop in
/// `trackJobStatusAndRemoveFinalizers`).
#[derive(Debug, Default, Clone)]
pub struct Tracking {
    pub remove_finalizer: Vec<Arc<Pod>>,
    pub new_uncounted_succeeded: Vec<String>,
    pub new_uncounted_failed: Vec<String>,
    pub new_succeeded_indexes: Vec<i32>,
    pub reached_max_uncounted: bool,
}

/// Which pods are counted now and lose their finalizer. `finishing_failed` when the Job is
/// failing (every unfinished pod counts as failed then), `finishing` when any finish is
/// pending (every pod may lose its finalizer).
#[allow(clippy::too_many_arguments)]
pub fn track_pods(
    job: &Job,
    observed: &Observed,
    prev_succeeded_indexes: &Intervals,
    failed_indexes: Option<&Intervals>,
    delayed: &BTreeMap<i32, Arc<Pod>>,
    finishing: bool,
    finishing_failed: bool,
) -> Tracking {
    let indexed = is_indexed_job(job);
    let mut pods = observed.pods.clone();
    if indexed {
        pods.sort_by_key(|p| completion_index(p).unwrap_or(-1));
    }
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let c = completions(job);
    let mut t = Tracking::default();
    for pod in pods {
        let u = uid(&pod);
        if !has_tracking_finalizer(&pod) || observed.expected_rm_finalizers.contains(&u) {
            continue;
        }
        let failed = is_pod_failed(&pod, job);
        let removable = job.metadata.deletion_timestamp.is_some()
            || finishing
            || phase(&pod) == "Succeeded"
            || (failed
                && !(has_backoff_limit_per_index(job)
                    && completion_index(&pod)
                        .and_then(|ix| delayed.get(&ix))
                        .is_some_and(|d| uid(d) == u)));
        if !removable {
            continue;
        }
        t.remove_finalizer.push(pod.clone());
        if phase(&pod) == "Succeeded" && !observed.uncounted_failed.contains(&u) {
            if indexed {
                if let Some(ix) = completion_index(&pod) {
                    if ix < c
                        && !prev_succeeded_indexes.has(ix)
                        && !failed_indexes.is_some_and(|f| f.has(ix))
                    {
                        t.new_succeeded_indexes.push(ix);
                    }
                }
            } else if !observed.uncounted_succeeded.contains(&u) {
                t.new_uncounted_succeeded.push(u.clone());
            }
        } else if (failed || finishing_failed)
            && !observed.uncounted_failed.contains(&u)
            && valid_index(job, &pod)
            && match_pod_failure_policy(policy, &pod).count_failed
        {
            t.new_uncounted_failed.push(u.clone());
        }
        if t.new_succeeded_indexes.len()
            + t.new_uncounted_succeeded.len()
            + t.new_uncounted_failed.len()
            >= MAX_UNCOUNTED_PODS
        {
            t.reached_max_uncounted = true;
            break;
        }
    }
    t
}

/// Moves the uncounted pods that no longer carry the finalizer into the counters (upstream's
/// `cleanUncountedPodsWithoutFinalizers`); whether anything changed.
pub fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut changed = false;
    let succeeded = uncounted.succeeded.take().unwrap_or_default();
    let keep: Vec<String> = succeeded
        .iter()
        .filter(|u| with_finalizer.contains(*u))
        .cloned()
        .collect();
    if keep.len() != succeeded.len() {
        changed = true;
        let moved = i32::try_from(succeeded.len() - keep.len()).unwrap_or(i32::MAX);
        status.succeeded = Some(status.succeeded.unwrap_or(0).saturating_add(moved));
    }
    let failed = uncounted.failed.take().unwrap_or_default();
    let keep_failed: Vec<String> = failed
        .iter()
        .filter(|u| with_finalizer.contains(*u))
        .cloned()
        .collect();
    if keep_failed.len() != failed.len() {
        changed = true;
        let moved = i32::try_from(failed.len() - keep_failed.len()).unwrap_or(i32::MAX);
        status.failed = Some(status.failed.unwrap_or(0).saturating_add(moved));
    }
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    uncounted.succeeded = (!keep.is_empty()).then_some(keep);
    uncounted.failed = (!keep_failed.is_empty()).then_some(keep_failed);
    changed
}

/// The strategic merge patch that removes the tracking finalizer (upstream's
/// `removeTrackingFinalizerPatch`), `None` when the pod has none.
pub fn remove_tracking_finalizer_patch(pod: &Pod) -> Option<serde_json::Value> {
    if !has_tracking_finalizer(pod) {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER],
        }
    }))
}

/// The ready pods among `pods`.
pub fn count_ready(pods: &[Arc<Pod>]) -> i32 {
    let n = pods
        .iter()
        .filter(|p| crate::controller_utils::is_pod_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The active pods that are ready.
pub fn ready_of(pods: &[Arc<Pod>]) -> i32 {
    count_ready(pods)
}

/// What the first half of `syncJob` decided.
#[derive(Debug, Default, Clone)]
pub struct Finish {
    /// The finish reached, if any: an interim `FailureTarget` / `SuccessCriteriaMet` to
    /// write, or the final `Failed` / `SuccessCriteriaMet` already recorded.
    pub finished: Option<JobCondition>,
    /// Sync again then (the active deadline).
    pub requeue: Option<Duration>,
    /// Succeeded pods (an Indexed Job's from its indexes).
    pub succeeded: i32,
    pub prev_succeeded_indexes: Intervals,
    pub succeeded_indexes: Intervals,
    /// Set with `backoffLimitPerIndex`.
    pub failed_indexes: Option<Intervals>,
    pub delayed: BTreeMap<i32, Arc<Pod>>,
}

/// The first half of `syncJob`: which finish, if any, the Job has reached.
pub fn decide_finish(
    job: &Job,
    observed: &Observed,
    succeeded: i32,
    failed: i32,
    now: Timestamp,
) -> Finish {
    let mut st = Finish {
        succeeded,
        ..Finish::default()
    };
    let spec = spec(job);
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let true_condition = |t: &str| find_condition(&conditions, t).filter(|c| c.status == "True");
    st.finished = true_condition(SUCCESS_CRITERIA_MET).cloned();
    if st.finished.is_none() {
        if let Some(target) = true_condition(FAILURE_TARGET) {
            st.finished = Some(new_condition(
                FAILED,
                "True",
                target.reason.as_deref().unwrap_or_default(),
                target.message.as_deref().unwrap_or_default(),
                now,
            ));
        } else if let Some(msg) = fail_job_message(job, &observed.pods) {
            st.finished = Some(new_condition(
                FAILURE_TARGET,
                "True",
                REASON_POD_FAILURE_POLICY,
                &msg,
                now,
            ));
        }
    }
    if st.finished.is_none() {
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        if failed > backoff_limit || past_backoff_limit_on_failure(job, &observed.pods) {
            st.finished = Some(new_condition(
                FAILURE_TARGET,
                "True",
                REASON_BACKOFF_LIMIT_EXCEEDED,
                "Job has reached the specified backoff limit",
                now,
            ));
        } else {
            match active_deadline_remaining(job, now) {
                Some(d) if d.is_zero() => {
                    st.finished = Some(new_condition(
                        FAILURE_TARGET,
                        "True",
                        REASON_DEADLINE_EXCEEDED,
                        "Job was active longer than specified deadline",
                        now,
                    ));
                }
                Some(d) => st.requeue = Some(d),
                None => {}
            }
        }
    }
    if is_indexed_job(job) {
        let (prev, succeeded) = calculate_succeeded_indexes(job, &observed.pods);
        st.succeeded = succeeded.total();
        st.prev_succeeded_indexes = prev;
        st.succeeded_indexes = succeeded;
        let completions = spec.completions.unwrap_or(0);
        if has_backoff_limit_per_index(job) {
            let failed_indexes = calculate_failed_indexes(job, &observed.pods);
            if st.finished.is_none() {
                if spec
                    .max_failed_indexes
                    .is_some_and(|m| failed_indexes.total() > m)
                {
                    st.finished = Some(new_condition(
                        FAILURE_TARGET,
                        "True",
                        REASON_MAX_FAILED_INDEXES_EXCEEDED,
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if failed_indexes.total() > 0
                    && failed_indexes.total() + st.succeeded_indexes.total() >= completions
                {
                    st.finished = Some(new_condition(
                        FAILURE_TARGET,
                        "True",
                        REASON_FAILED_INDEXES,
                        "Job has failed indexes",
                        now,
                    ));
                }
            }
            st.delayed = pods_with_delayed_deletion_per_index(
                job,
                observed,
                &st.succeeded_indexes,
                &failed_indexes,
                now,
            );
            st.failed_indexes = Some(failed_indexes);
        }
        if st.finished.is_none() {
            if let Some(msg) = match_success_policy(
                spec.success_policy.as_ref(),
                completions,
                &st.succeeded_indexes,
            ) {
                st.finished = Some(new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    REASON_SUCCESS_POLICY,
                    &msg,
                    now,
                ));
            }
        }
    }
    st
}

/// Of the pending indexes, those whose failed pod waited out its per-index backoff (or
/// that have none), and else the shortest wait (upstream's
/// `getPodCreationInfoForIndependentIndexes`).
pub fn indexes_to_create_now(
    pending: &[i32],
    delayed: &BTreeMap<i32, Arc<Pod>>,
    now: Timestamp,
) -> (Vec<i32>, Option<Duration>) {
    let mut ready = Vec::new();
    let mut wait: Option<Duration> = None;
    for &ix in pending {
        let w = delayed
            .get(&ix)
            .map_or(Duration::ZERO, |p| remaining_time_per_index(p, now));
        if w.is_zero() {
            ready.push(ix);
        } else {
            wait = Some(wait.map_or(w, |m| m.min(w)));
        }
    }
    if ready.is_empty() {
        (ready, wait)
    } else {
        (ready, None)
    }
}

/// Upstream's `enactJobFinished`: the final condition (and, for `Complete`, the
/// completion time) once no pod is uncounted and none is terminating; whether it did.
pub fn enact_job_finished(
    status: &mut JobStatus,
    finished: &JobCondition,
    terminating: i32,
    now: Timestamp,
) -> bool {
    if let Some(u) = &status.uncounted_terminated_pods {
        if u.succeeded.as_ref().is_some_and(|v| !v.is_empty())
            || u.failed.as_ref().is_some_and(|v| !v.is_empty())
        {
            return false;
        }
    }
    if terminating > 0 {
        return false;
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        conditions,
        &finished.type_,
        &finished.status,
        finished.reason.as_deref().unwrap_or_default(),
        finished.message.as_deref().unwrap_or_default(),
        now,
    );
    if finished.type_ == COMPLETE {
        status.completion_time = finished.last_transition_time.clone();
    }
    true
}

/// When a finished Job with `ttlSecondsAfterFinished` should go, if it should.
pub fn ttl_expire_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job)?;
    finished
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .ok()
}

//! Upstream's Job controller (`pkg/controller/job`): runs a Job's pods to completion —
//! `parallelism` at a time until `completions` succeeded (NonIndexed: pods `<job>-xxxxx`;
//! Indexed: one per index, `<job>-<index>-xxxxx`, with the index as annotation, label,
//! hostname and `JOB_COMPLETION_INDEX`), replacing failed ones after the pod failure
//! backoff, and finishing the Job `Complete` or `Failed` with upstream's reasons.
//!
//! Owns: the Job's pods and their `batch.kubernetes.io/job-tracking` finalizer, the Job's
//! status (counters, `uncountedTerminatedPods`, `completedIndexes`, `failedIndexes`,
//! conditions, start and completion times) and the Job's events. Does not own: deleting
//! finished Jobs (`ttlafterfinished`), CronJobs, the API's defaults and validation
//! (`api::batch`).
//!
//! One sync (`reconcile`, upstream's `syncJob`):
//!
//! ```text
//!  finished (Complete/Failed)? ─▶ forget its backoff; done
//!  pods it controls (claimed) ─▶ newly succeeded / failed (finalizer, not yet uncounted)
//!    ─▶ startTime set on the first unsuspended sync
//!    ─▶ finish? SuccessCriteriaMet already ─▶ Complete pending
//!               FailureTarget already ─▶ Failed pending
//!               a FailJob rule matched ─▶ FailureTarget PodFailurePolicy
//!               failed > backoffLimit ─▶ FailureTarget BackoffLimitExceeded
//!               past activeDeadlineSeconds ─▶ FailureTarget DeadlineExceeded
//!               (else requeue at the deadline)
//!               indexed: failed indexes > maxFailedIndexes / all indexes done with failures,
//!               successPolicy met ─▶ SuccessCriteriaMet SuccessPolicy
//!    ─▶ finishing: delete the active pods (finalizers kept)
//!       else (expectations met): suspended ─▶ delete every pod (finalizer first)
//!            too many ─▶ delete; too few ─▶ wait out the backoff (10 s × 2^n, ≤ 6 min),
//!            create (slow start, indexes lowest first)
//!            completions reached, none active ─▶ SuccessCriteriaMet CompletionsReached
//!            Suspended True/False (JobSuspended / JobResumed; resume resets startTime)
//!    ─▶ track: finished pods' uids into uncountedTerminatedPods (status write), their
//!       finalizers removed, then moved into succeeded/failed; the interim
//!       FailureTarget/SuccessCriteriaMet written first; Failed/Complete (+ completionTime,
//!       event) only once nothing is uncounted and no pod is terminating
//! ```
//!
//! The watch drives it: a pod created, deleted or changed syncs its Job and settles the
//! expectations; a Job deleted forgets its expectations and backoff and takes the tracking
//! finalizer off its pods, as does a pod whose Job is gone.

mod backoff_utils;
pub mod indexed_job_utils;
pub mod pod_failure_policy;
pub mod success_policy;
pub mod sync;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::selector::LabelSelector;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobCondition, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::controller_ref_manager::{recheck_deletion_timestamp, ClaimError, ControllerRefManager};
use crate::controller_utils::pod_control::{self, PodControl};
use crate::controller_utils::{
    count_terminating_pods, get_controller_of, is_pod_ready, key, meta_key, new_controller_ref,
    OwnerUids, UidTrackingControllerExpectations, SLOW_START_INITIAL_BATCH_SIZE,
};
use crate::informer::{Change, Informer};
use crate::replicaset::{pod_event_actions, pods_of, Lookup, PodAction};
use crate::routed::Routed;

use backoff_utils::{new_backoff_record, remaining_time, BackoffRecord, BackoffStore};
use indexed_job_utils::{
    add_completion_index, add_completion_index_env_variables, first_pending_indexes, indexes_of,
    is_indexed_job, pod_generate_name_with_index, Intervals,
};
use sync::*;

/// `source.component` of the Job controller's events.
const COMPONENT: &str = "job-controller";
/// Syncs of different Jobs at once (`--concurrent-job-syncs`).
const CONCURRENT_SYNCS: u16 = 5;
/// The `spec.managedBy` value that means this controller.
const MANAGED_BY: &str = "kubernetes.io/job-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Claim(#[from] ClaimError),
    #[error("{0}")]
    Pods(#[from] pod_control::Error),
    #[error("tracking status of {key}: {}", pod_control::message(.source))]
    Status { key: String, source: kube::Error },
    #[error("removing tracking finalizer: {0}")]
    Finalizer(pod_control::Error),
}

/// The pods whose finalizer the controller removed, per Job, until the watch shows it gone
/// (upstream's `uidTrackingExpectations` for finalizers): a stale cache must not count a
/// pod twice.
#[derive(Debug, Default)]
struct FinalizerExpectations {
    uids: Mutex<HashMap<String, HashSet<String>>>,
}

impl FinalizerExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.uids.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn expected(&self, key: &str) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }
    fn expect(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(key.to_string()).or_default().extend(uids);
    }
    fn observed(&self, key: &str, uid: &str) {
        let mut all = self.lock();
        if let Some(set) = all.get_mut(key) {
            set.remove(uid);
            if set.is_empty() {
                all.remove(key);
            }
        }
    }
    fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

struct Ctx {
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Arc<UidTrackingControllerExpectations>,
    finalizers: Arc<FinalizerExpectations>,
    pod_backoff: Arc<BackoffStore>,
    pod_control: PodControl,
    recorder: Recorder,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (call before they run); the future runs it
/// until `shutdown`.
pub fn controller(
    client: Client,
    jobs: &Informer<Job>,
    pods: &Informer<Pod>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (job_changes, job_lagged) = jobs.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let expectations = Arc::new(UidTrackingControllerExpectations::new());
    let finalizers = Arc::new(FinalizerExpectations::default());
    let pod_backoff = Arc::new(BackoffStore::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        jobs: jobs.store(),
        pods: pods.store(),
        expectations: expectations.clone(),
        finalizers: finalizers.clone(),
        pod_backoff: pod_backoff.clone(),
        pod_control: PodControl::new(client.clone(), recorder.clone()),
        recorder,
        backoff: Backoff::controller_default(),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    // The router starts once the caches synced: it takes a Job missing from the cache for
    // gone (`orphan_cleanup`).
    let caches_synced = (jobs.synced(), pods.synced());
    let router = {
        let ctx = ctx.clone();
        async move {
            if caches_synced.0.await && caches_synced.1.await {
                route_events(job_changes, pod_changes, ctx, triggers).await;
            }
        }
    };
    Routed {
        name: "job",
        store: jobs.store(),
        triggered,
        lagged: vec![job_lagged.boxed(), pod_lagged.boxed()],
        synced: vec![jobs.synced().boxed(), pods.synced().boxed()],
        concurrency: CONCURRENT_SYNCS,
    }
    .run(router, sink, shutdown, reconcile, error_policy, ctx)
}

/// Finds Jobs in the cache for the pod event handlers.
struct CacheLookup<'a> {
    jobs: &'a Store<Job>,
}

impl Lookup for CacheLookup<'_> {
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String> {
        if r.kind != "Job" {
            return None;
        }
        let job = self.jobs.get(&ObjectRef::new(&r.name).within(namespace))?;
        (job.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key(namespace, &r.name))
    }

    fn matching(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.jobs
            .state()
            .iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(namespace))
            .filter(|j| {
                let sel = j.spec.as_ref().and_then(|s| s.selector.as_ref());
                sel.is_some()
                    && LabelSelector::from_label_selector(sel).is_ok_and(|s| s.matches(&labels))
            })
            .map(|j| meta_key(&j.metadata))
            .collect()
    }
}

fn object_ref(key: &str) -> ObjectRef<Job> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    ObjectRef::new(name).within(namespace)
}

/// The Job a pod's controller reference names, whatever the cache holds.
fn owning_job(pod: &Pod) -> Option<&OwnerReference> {
    get_controller_of(&pod.metadata).filter(|r| r.kind == "Job" && r.api_version == "batch/v1")
}

/// Upstream's event handlers, and its orphan-pod queue: a pod that still carries the
/// tracking finalizer after its Job is gone loses it.
async fn route_events(
    job_changes: impl Stream<Item = Change<Job>> + Send + 'static,
    pod_changes: impl Stream<Item = Change<Pod>> + Send + 'static,
    ctx: Arc<Ctx>,
    triggers: mpsc::UnboundedSender<ObjectRef<Job>>,
) {
    enum Event {
        Job(Change<Job>),
        Pod(Change<Pod>),
    }
    let mut events = futures::stream::select(
        job_changes.map(Event::Job).boxed(),
        pod_changes.map(Event::Pod).boxed(),
    );
    let mut pods_seen: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut job_uids = OwnerUids::default();
    while let Some(event) = events.next().await {
        let lookup = CacheLookup { jobs: &ctx.jobs };
        let actions = match event {
            Event::Job(change) => {
                let (job, gone) = match &change {
                    Change::Applied(j) => (j.clone(), false),
                    Change::Deleted(j) => (j.clone(), true),
                };
                let k = meta_key(&job.metadata);
                let uid = job.metadata.uid.clone().unwrap_or_default();
                // Deleted, or re-created under the same name: the old one's expectations go.
                let replaced = job_uids.replaced(&k, &uid, gone);
                if replaced {
                    ctx.expectations.delete(&k);
                    ctx.finalizers.delete(&k);
                    ctx.pod_backoff.remove(&k);
                }
                if gone {
                    // Its pods would otherwise keep the finalizer forever.
                    let pods: Vec<Arc<Pod>> = pods_seen
                        .values()
                        .filter(|p| owning_job(p).is_some_and(|r| r.uid == uid))
                        .filter(|p| has_tracking_finalizer(p))
                        .cloned()
                        .collect();
                    tokio::spawn(remove_finalizers(ctx.pod_control.clone(), pods));
                    Vec::new()
                } else {
                    vec![PodAction::Enqueue(k)]
                }
            }
            Event::Pod(Change::Applied(pod)) => {
                let old = pods_seen.insert(meta_key(&pod.metadata), pod.clone());
                finalizer_observed(&ctx, &pod, false);
                orphan_cleanup(&ctx, &pod);
                pod_event_actions(old.as_deref(), &pod, false, &lookup)
            }
            Event::Pod(Change::Deleted(pod)) => {
                pods_seen.remove(&meta_key(&pod.metadata));
                finalizer_observed(&ctx, &pod, true);
                pod_event_actions(None, &pod, true, &lookup)
            }
        };
        for action in actions {
            match action {
                PodAction::CreationObserved(k) => ctx.expectations.creation_observed(&k),
                PodAction::DeletionObserved { controller, pod } => {
                    ctx.expectations.deletion_observed(&controller, &pod)
                }
                PodAction::Enqueue(k) => {
                    if triggers.send(object_ref(&k)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A pod seen without the finalizer (or gone) settles the expectation of its removal.
fn finalizer_observed(ctx: &Ctx, pod: &Pod, gone: bool) {
    if !gone && has_tracking_finalizer(pod) {
        return;
    }
    if let Some(r) = owning_job(pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        ctx.finalizers.observed(&key(ns, &r.name), &uid(pod));
    }
}

/// A pod with the finalizer whose Job (by uid) is not in the cache, or finished, loses the
/// finalizer (upstream's orphan pod queue). The router runs once the caches synced, so a Job missing
/// from the cache is gone.
fn orphan_cleanup(ctx: &Ctx, pod: &Arc<Pod>) {
    if !has_tracking_finalizer(pod) {
        return;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let orphan = match owning_job(pod) {
        Some(r) => ctx
            .jobs
            .get(&ObjectRef::new(&r.name).within(ns))
            .is_none_or(|j| {
                j.metadata.uid.as_deref() != Some(r.uid.as_str()) || is_job_finished(&j)
            }),
        None => get_controller_of(&pod.metadata).is_none(),
    };
    if orphan {
        tokio::spawn(remove_finalizers(
            ctx.pod_control.clone(),
            vec![pod.clone()],
        ));
    }
}

async fn remove_finalizers(pod_control: PodControl, pods: Vec<Arc<Pod>>) {
    for pod in pods {
        let Some(patch) = remove_tracking_finalizer_patch(&pod) else {
            continue;
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pod_control.patch_pod(ns, name, &patch).await {
            Ok(_) => {
                debug!(pod = %meta_key(&pod.metadata), "removed tracking finalizer of an orphan pod")
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                warn!(pod = %meta_key(&pod.metadata), error = %e, "removing tracking finalizer")
            }
        }
    }
}

/// What a sync computed, threaded through its steps (upstream's `syncJobCtx`).
struct SyncState {
    key: String,
    job: Job,
    observed: Observed,
    reference: ObjectReference,
    active: i32,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    finished: Option<JobCondition>,
    prev_succeeded_indexes: Intervals,
    succeeded_indexes: Intervals,
    failed_indexes: Option<Intervals>,
    delayed: BTreeMap<i32, Arc<Pod>>,
    new_backoff: BackoffRecord,
    requeue: Option<Duration>,
}

impl SyncState {
    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

fn status_mut(job: &mut Job) -> &mut k8s_openapi::api::batch::v1::JobStatus {
    job.status.get_or_insert_with(Default::default)
}

fn i32_of(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

async fn reconcile(obj: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&obj.metadata);
    if is_job_finished(&obj) {
        ctx.pod_backoff.remove(&key);
        return Ok(Action::await_change());
    }
    let spec = spec(&obj);
    if spec.managed_by.as_deref().is_some_and(|m| m != MANAGED_BY) {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let mut job = (*obj).clone();
    {
        let status = status_mut(&mut job);
        status
            .uncounted_terminated_pods
            .get_or_insert_with(UncountedTerminatedPods::default);
    }
    let satisfied = ctx.expectations.satisfied(&key);
    let pods = get_pods_for_job(&ctx, &job).await?;
    let observed = Observed::new(&job, pods, ctx.finalizers.expected(&key));
    let terminating = count_terminating_pods(&observed.pods);
    let (new_succeeded, new_failed) = observed.new_finished_pods(&job);
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0)
        + i32_of(new_succeeded.len())
        + i32_of(observed.uncounted_succeeded.len());
    let failed = status.failed.unwrap_or(0)
        + non_ignored_failed_count(&job, &new_failed)
        + i32_of(observed.uncounted_failed.len());
    if status.start_time.is_none() && !job_suspended(&job) {
        status_mut(&mut job).start_time = Some(Time(now));
    }
    let new_backoff =
        new_backoff_record(ctx.pod_backoff.get(&key), &new_succeeded, &new_failed, now);
    let active = i32_of(observed.active.len());
    let ready = count_ready(&observed.active);
    let mut st = SyncState {
        key: key.clone(),
        reference: record::object_reference(&job),
        job,
        observed,
        active,
        ready,
        terminating,
        succeeded,
        finished: None,
        prev_succeeded_indexes: Intervals::default(),
        succeeded_indexes: Intervals::default(),
        failed_indexes: None,
        delayed: BTreeMap::new(),
        new_backoff,
        requeue: None,
    };

    let finish = decide_finish(&st.job, &st.observed, st.succeeded, failed, now);
    st.finished = finish.finished;
    st.succeeded = finish.succeeded;
    st.prev_succeeded_indexes = finish.prev_succeeded_indexes;
    st.succeeded_indexes = finish.succeeded_indexes;
    st.failed_indexes = finish.failed_indexes;
    st.delayed = finish.delayed;
    if let Some(d) = finish.requeue {
        st.requeue_after(d);
    }

    let mut suspend_changed = false;
    let mut manage_error = None;
    if st.finished.is_some() {
        let (deleted_ready, deleted, err) = delete_active_pods(&ctx, &st).await;
        if deleted != st.active || !satisfied {
            st.finished = None;
        }
        st.active -= deleted;
        st.terminating += deleted;
        st.ready -= deleted_ready;
        manage_error = err;
    } else {
        let mut manage_called = false;
        if satisfied && st.job.metadata.deletion_timestamp.is_none() {
            manage_error = manage_job(&ctx, &mut st, now).await.err();
            manage_called = true;
        }
        let complete = match spec.completions {
            None => st.succeeded > 0 && st.active == 0,
            Some(c) => st.succeeded >= c && st.active == 0,
        };
        if complete {
            st.finished = Some(new_condition(
                SUCCESS_CRITERIA_MET,
                "True",
                REASON_COMPLETIONS_REACHED,
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if manage_called {
            let suspended = job_suspended(&st.job);
            let conditions = status_mut(&mut st.job)
                .conditions
                .get_or_insert_with(Vec::new);
            if suspended {
                if ensure_condition(
                    conditions,
                    SUSPENDED,
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    suspend_changed = true;
                    ctx.recorder.event(
                        &st.reference,
                        EventType::Normal,
                        "Suspended",
                        "Job suspended",
                    );
                }
            } else if ensure_condition(
                conditions,
                SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                suspend_changed = true;
                ctx.recorder
                    .event(&st.reference, EventType::Normal, "Resumed", "Job resumed");
                // activeDeadlineSeconds counts the time continuously active.
                status_mut(&mut st.job).start_time = Some(Time(now));
            }
            if status_mut(&mut st.job)
                .conditions
                .as_ref()
                .is_some_and(|c| c.is_empty())
            {
                status_mut(&mut st.job).conditions = None;
            }
        }
    }

    let old = st.job.status.clone().unwrap_or_default();
    let needs_update = suspend_changed
        || st.active != old.active.unwrap_or(0)
        || Some(st.ready) != old.ready
        || Some(st.terminating) != old.terminating;
    {
        let (active, ready, terminating) = (st.active, st.ready, st.terminating);
        let status = status_mut(&mut st.job);
        status.active = (active != 0).then_some(active);
        status.ready = Some(ready);
        status.terminating = Some(terminating);
    }
    track_job_status_and_remove_finalizers(&ctx, &mut st, needs_update, now).await?;
    if let Some(e) = manage_error {
        return Err(Error::Pods(e));
    }
    ctx.backoff.forget(&key);
    Ok(match st.requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

/// The pods the Job controls, orphans matching its selector adopted (upstream's
/// `getPodsForJob`).
async fn get_pods_for_job(ctx: &Ctx, job: &Job) -> Result<Vec<Arc<Pod>>, Error> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let job_uid = uid.clone();
    let sel = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    let Ok(selector) = LabelSelector::from_label_selector(sel) else {
        return Ok(Vec::new());
    };
    let all = pods_of(&ctx.pods.state(), &namespace, &uid);
    let manager = ControllerRefManager::new(
        &job.metadata,
        "batch/v1",
        "Job",
        recheck_deletion_timestamp(
            Api::<Job>::namespaced(ctx.client.clone(), &namespace),
            name,
            uid,
        ),
    );
    let empty = Default::default();
    let matches = |pod: &Pod| selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty));
    let claimed = manager.claim(&ctx.client, all, matches).await?;
    // Adopted pods get the tracking finalizer too (upstream adds it in the adoption patch),
    // and count as carrying it for the rest of the sync.
    let mut pods = Vec::with_capacity(claimed.len());
    for pod in claimed {
        let adopted = !pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == job_uid);
        if !adopted || has_tracking_finalizer(&pod) {
            pods.push(pod);
            continue;
        }
        let patch = serde_json::json!({"metadata": {"finalizers": [JOB_TRACKING_FINALIZER]}});
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        if let Err(e) = ctx
            .pod_control
            .patch_pod(&namespace, pod_name, &patch)
            .await
        {
            if !e.is_not_found() {
                return Err(Error::Pods(e));
            }
        }
        let mut copy = (*pod).clone();
        copy.metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(JOB_TRACKING_FINALIZER.to_string());
        pods.push(Arc::new(copy));
    }
    Ok(pods)
}

/// Deletes the active pods of a finishing Job, keeping their finalizers (upstream's
/// `deleteActivePods`): (ready ones deleted, deleted, first error).
async fn delete_active_pods(ctx: &Ctx, st: &SyncState) -> (i32, i32, Option<pod_control::Error>) {
    let ns = st.job.metadata.namespace.clone().unwrap_or_default();
    let results = futures::future::join_all(st.observed.active.iter().map(|pod| {
        let (ns, reference) = (&ns, &st.reference);
        async move {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let r = ctx.pod_control.delete_pod(ns, name, reference).await;
            (pod, r)
        }
    }))
    .await;
    let (mut ready, mut deleted, mut first) = (0, 0, None);
    for (pod, r) in results {
        match r {
            Err(e) if !e.is_not_found() => {
                if first.is_none() {
                    first = Some(e);
                }
            }
            _ => deleted += 1,
        }
        if is_pod_ready(pod) {
            ready += 1;
        }
    }
    (ready, deleted, first)
}

/// Deletes pods the Job no longer wants, finalizer first so they are not counted
/// (upstream's `deleteJobPods`): (ready ones deleted, deleted, first error).
async fn delete_job_pods(
    ctx: &Ctx,
    st: &SyncState,
    pods: &[Arc<Pod>],
) -> (i32, i32, Option<pod_control::Error>) {
    let ns = st.job.metadata.namespace.clone().unwrap_or_default();
    let results = futures::future::join_all(pods.iter().map(|pod| {
        let (ns, reference) = (&ns, &st.reference);
        async move {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            if let Some(patch) = remove_tracking_finalizer_patch(pod) {
                if let Err(e) = ctx.pod_control.patch_pod(ns, name, &patch).await {
                    return (pod, Err(e));
                }
            }
            (pod, ctx.pod_control.delete_pod(ns, name, reference).await)
        }
    }))
    .await;
    let (mut ready, mut deleted, mut first) = (0, 0, None);
    for (pod, r) in results {
        match r {
            Ok(()) => deleted += 1,
            Err(e) => {
                ctx.expectations
                    .deletion_observed(&st.key, &meta_key(&pod.metadata));
                if !e.is_not_found() {
                    if first.is_none() {
                        first = Some(e);
                    }
                } else {
                    deleted += 1;
                }
            }
        }
        if is_pod_ready(pod) {
            ready += 1;
        }
    }
    (ready, deleted, first)
}

/// Upstream's `manageJob`: deletes every pod of a suspended Job, surplus pods otherwise,
/// or creates the missing ones once the failure backoff allows.
async fn manage_job(
    ctx: &Ctx,
    st: &mut SyncState,
    now: Timestamp,
) -> Result<(), pod_control::Error> {
    let job = st.job.clone();
    let spec = spec(&job);
    let active = st.active;
    // Suspended: every active pod goes. Otherwise those beyond what the Job wants now.
    let suspended = job_suspended(&job);
    let want = want_active(&job, active, st.succeeded);
    let doomed = if suspended {
        active_pods_for_removal(&job, &st.observed.active, st.observed.active.len())
    } else {
        let rm_at_least = usize::try_from((active - want).max(0)).unwrap_or(0);
        let mut doomed = active_pods_for_removal(&job, &st.observed.active, rm_at_least);
        doomed.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !doomed.is_empty() {
            debug!(job = %st.key, deleting = doomed.len(), target = want, "too many pods running");
        }
        doomed
    };
    if suspended || !doomed.is_empty() {
        ctx.expectations
            .expect_deletions(&st.key, doomed.iter().map(|p| meta_key(&p.metadata)));
        let (ready, deleted, err) = delete_job_pods(ctx, st, &doomed).await;
        st.active -= deleted;
        st.terminating += deleted;
        st.ready -= ready;
        return err.map_or(Ok(()), Err);
    }
    let terminating = if only_replace_failed_pods(&job) {
        st.terminating
    } else {
        0
    };
    let diff = want - terminating - active;
    if diff <= 0 {
        return Ok(());
    }
    if !has_backoff_limit_per_index(&job) {
        let wait = remaining_time(&st.new_backoff, now);
        if !wait.is_zero() {
            debug!(job = %st.key, ?wait, "pod failure backoff");
            st.requeue_after(wait);
            return Ok(());
        }
    }
    let mut diff = usize::try_from(diff)
        .unwrap_or(0)
        .min(MAX_POD_CREATE_DELETE_PER_SYNC);
    let mut indexes: Vec<Option<i32>> = vec![None; diff];
    if is_indexed_job(&job) {
        let terminating_ix =
            only_replace_failed_pods(&job).then(|| terminating_indexes(&st.observed.pods));
        let mut pending = first_pending_indexes(
            &st.succeeded_indexes,
            &indexes_of(&st.observed.active),
            terminating_ix.as_ref(),
            st.failed_indexes.as_ref(),
            diff,
            spec.completions.unwrap_or(0),
        );
        if has_backoff_limit_per_index(&job) {
            let (ready_now, wait) = indexes_to_create_now(&pending, &st.delayed, now);
            if ready_now.is_empty() {
                if let Some(w) = wait {
                    st.requeue_after(w);
                }
                return Ok(());
            }
            pending = ready_now;
        }
        diff = pending.len();
        indexes = pending.into_iter().map(Some).collect();
    }
    if diff == 0 {
        return Ok(());
    }
    debug!(job = %st.key, need = want, creating = diff, "too few pods running");
    ctx.expectations
        .expect_creations(&st.key, i64::try_from(diff).unwrap_or(i64::MAX));
    let mut template = spec.template.clone();
    if is_indexed_job(&job) {
        add_completion_index_env_variables(&mut template);
    }
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
    }
    let name = job.metadata.name.clone().unwrap_or_default();
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let owner = new_controller_ref(
        "batch/v1",
        "Job",
        &name,
        job.metadata.uid.as_deref().unwrap_or_default(),
    );
    let queue = Mutex::new(VecDeque::from(indexes));
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let (template, owner, reference, queue, ns, name, job, delayed, attempts) = (
        &template,
        &owner,
        &st.reference,
        &queue,
        &ns,
        &name,
        &job,
        &st.delayed,
        &attempts,
    );
    let (created, error) = crate::controller_utils::slow_start_batch(
        diff,
        SLOW_START_INITIAL_BATCH_SIZE,
        || async move {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let index = queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
                .flatten();
            let mut template = template.clone();
            let mut generate_name = String::new();
            if let Some(ix) = index {
                add_completion_index(&mut template, name, ix);
                generate_name = pod_generate_name_with_index(name, ix);
                if has_backoff_limit_per_index(job) {
                    let annotations = template
                        .metadata
                        .get_or_insert_with(Default::default)
                        .annotations
                        .get_or_insert_with(BTreeMap::new);
                    for (k, v) in index_failure_annotations(job, delayed.get(&ix).map(|p| &**p)) {
                        annotations.insert(k, v);
                    }
                }
            }
            match ctx
                .pod_control
                .create_pods_with_generate_name(ns, &template, reference, owner, &generate_name)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_namespace_terminating() => Ok(()),
                Err(e) => {
                    // The watch will never show it.
                    ctx.expectations.creation_observed(&key(ns, name));
                    Err(e)
                }
            }
        },
    )
    .await;
    let skipped = diff.saturating_sub(attempts.load(std::sync::atomic::Ordering::Relaxed));
    if skipped > 0 {
        ctx.expectations
            .lower(&st.key, i64::try_from(skipped).unwrap_or(i64::MAX), 0);
    }
    st.active += i32_of(created);
    error.map_or(Ok(()), Err)
}

/// Upstream's `trackJobStatusAndRemoveFinalizers` and `flushUncountedAndRemoveFinalizers`.
async fn track_job_status_and_remove_finalizers(
    ctx: &Ctx,
    st: &mut SyncState,
    mut needs_flush: bool,
    now: Timestamp,
) -> Result<(), Error> {
    let mut with_finalizer: HashSet<String> = st
        .observed
        .pods
        .iter()
        .filter(|p| {
            has_tracking_finalizer(p) && !st.observed.expected_rm_finalizers.contains(&uid(p))
        })
        .map(|p| uid(p))
        .collect();
    if clean_uncounted(status_mut(&mut st.job), &with_finalizer) {
        needs_flush = true;
    }
    let finishing = st.finished.is_some();
    let finishing_failed = st
        .finished
        .as_ref()
        .is_some_and(|c| c.type_ != SUCCESS_CRITERIA_MET);
    let tracking = track_pods(
        &st.job,
        &st.observed,
        &st.prev_succeeded_indexes,
        st.failed_indexes.as_ref(),
        &st.delayed,
        finishing,
        finishing_failed,
    );
    {
        let status = status_mut(&mut st.job);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(Default::default);
        if !tracking.new_uncounted_succeeded.is_empty() {
            needs_flush = true;
            uncounted
                .succeeded
                .get_or_insert_with(Vec::new)
                .extend(tracking.new_uncounted_succeeded.iter().cloned());
        }
        if !tracking.new_uncounted_failed.is_empty() {
            needs_flush = true;
            uncounted
                .failed
                .get_or_insert_with(Vec::new)
                .extend(tracking.new_uncounted_failed.iter().cloned());
        }
    }
    if is_indexed_job(&st.job) {
        if !tracking.new_succeeded_indexes.is_empty() {
            needs_flush = true;
        }
        st.succeeded_indexes = st
            .succeeded_indexes
            .with_indexes(tracking.new_succeeded_indexes.iter().copied());
        let completed = st.succeeded_indexes.to_string();
        let failed_str = st.failed_indexes.as_ref().map(ToString::to_string);
        let total = st.succeeded_indexes.total();
        let status = status_mut(&mut st.job);
        if status.completed_indexes.as_deref().unwrap_or("") != completed {
            needs_flush = true;
        }
        status.succeeded = (total != 0).then_some(total);
        status.completed_indexes = (!completed.is_empty()).then_some(completed);
        if status.failed_indexes != failed_str {
            status.failed_indexes = failed_str;
            needs_flush = true;
        }
    }
    if let Some(c) = st.finished.clone() {
        let conditions = status_mut(&mut st.job)
            .conditions
            .get_or_insert_with(Vec::new);
        let reason = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        if c.type_ == FAILURE_TARGET {
            conditions.push(c);
            needs_flush = true;
            st.finished = Some(new_condition(FAILED, "True", &reason, &message, now));
        } else if c.type_ == SUCCESS_CRITERIA_MET {
            if !conditions
                .iter()
                .any(|x| x.type_ == SUCCESS_CRITERIA_MET && x.status == "True")
            {
                conditions.push(c);
                needs_flush = true;
            }
            st.finished = Some(new_condition(COMPLETE, "True", &reason, &message, now));
        }
    }

    // Flush: the uncounted pods and interim conditions are recorded before finalizers go.
    if needs_flush {
        update_status(ctx, st).await?;
        ctx.pod_backoff.update(&st.key, st.new_backoff.clone());
        needs_flush = false;
    }
    let mut rm_error = None;
    if !tracking.remove_finalizer.is_empty() {
        ctx.finalizers
            .expect(&st.key, tracking.remove_finalizer.iter().map(|p| uid(p)));
        let ns = st.job.metadata.namespace.clone().unwrap_or_default();
        let results = futures::future::join_all(tracking.remove_finalizer.iter().map(|pod| {
            let ns = &ns;
            async move {
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let r = match remove_tracking_finalizer_patch(pod) {
                    Some(patch) => ctx
                        .pod_control
                        .patch_pod(ns, name, &patch)
                        .await
                        .map(|_| ()),
                    None => Ok(()),
                };
                (pod, r)
            }
        }))
        .await;
        for (pod, r) in results {
            match r {
                Ok(()) => {
                    with_finalizer.remove(&uid(pod));
                }
                Err(e) => {
                    ctx.finalizers.observed(&st.key, &uid(pod));
                    if e.is_not_found() {
                        with_finalizer.remove(&uid(pod));
                    } else if rm_error.is_none() {
                        rm_error = Some(e);
                    }
                }
            }
        }
    }
    if clean_uncounted(status_mut(&mut st.job), &with_finalizer) {
        needs_flush = true;
    }
    if let Some(e) = rm_error {
        if needs_flush {
            update_status(ctx, st).await?;
        }
        return Err(Error::Finalizer(e));
    }
    let finished = !tracking.reached_max_uncounted && enact_job_finished(st, now);
    if finished {
        needs_flush = true;
    }
    if needs_flush {
        update_status(ctx, st).await?;
        if finished {
            record_job_finished(ctx, st);
        }
    }
    Ok(())
}

/// Upstream's `enactJobFinished`: the final condition once every pod is counted and none
/// is terminating.
fn enact_job_finished(st: &mut SyncState, now: Timestamp) -> bool {
    let Some(c) = st.finished.clone() else {
        return false;
    };
    let terminating = st.terminating;
    sync::enact_job_finished(status_mut(&mut st.job), &c, terminating, now)
}

fn record_job_finished(ctx: &Ctx, st: &SyncState) {
    let Some(c) = &st.finished else { return };
    if c.type_ == COMPLETE {
        let completions = spec(&st.job).completions;
        let succeeded = st
            .job
            .status
            .as_ref()
            .and_then(|s| s.succeeded)
            .unwrap_or(0);
        if completions.is_some_and(|c| succeeded > c) {
            ctx.recorder.event(
                &st.reference,
                EventType::Warning,
                "TooManySucceededPods",
                "Too many succeeded pods running after completion count reached",
            );
        }
        ctx.recorder.event(
            &st.reference,
            EventType::Normal,
            "Completed",
            "Job completed",
        );
    } else {
        ctx.recorder.event(
            &st.reference,
            EventType::Warning,
            c.reason.as_deref().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        );
    }
}

/// A PUT of `/status` guarded by the resourceVersion read (upstream's `updateJobStatus`):
/// a conflict fails the sync, which runs again on the fresher Job.
async fn update_status(ctx: &Ctx, st: &mut SyncState) -> Result<(), Error> {
    let ns = st.job.metadata.namespace.clone().unwrap_or_default();
    let name = st.job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut body = st.job.clone();
    if let Some(s) = body.status.as_mut() {
        if s.conditions.as_ref().is_some_and(|c| c.is_empty()) {
            s.conditions = None;
        }
    }
    let written = api
        .replace_status(&name, &PostParams::default(), &body)
        .await
        .map_err(|source| Error::Status {
            key: st.key.clone(),
            source,
        })?;
    st.job.metadata.resource_version = written.metadata.resource_version;
    Ok(())
}

fn error_policy(obj: Arc<Job>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&obj.metadata);
    let delay = ctx.backoff.next(&key);
    warn!(controller = "job", %key, error = %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

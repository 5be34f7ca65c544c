//! Upstream's CronJob controller (`pkg/controller/cronjob`, the v2 controller): each CronJob
//! creates a Job per schedule time, named `<cronjob>-<minutes since the epoch>`, keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, and prunes finished Jobs
//! past its history limits.
//!
//! Owns: deciding when a Job is due ([`utils`]: the most recent unmet schedule time, the next
//! requeue), the Job made from the template, concurrency (`Allow`/`Forbid`/`Replace`),
//! `suspend`, `startingDeadlineSeconds`, history cleanup, the CronJob's status and upstream's
//! events. Does not own: running the Jobs (the Job controller's: this controller only
//! creates Jobs and reads their `Complete`/`Failed` conditions), parsing schedules
//! (`api::cron`), refusing `TZ=` in new schedules (the API's validation), deleting a deleted
//! Job's pods (the garbage collector's).
//!
//! One sync of a CronJob (`reconcile`), as upstream's `sync` and `syncCronJob`:
//!
//! ```text
//!  Jobs (cache) whose controller reference names it
//!    ─▶ cleanup: finished Jobs past successful/failedJobsHistoryLimit deleted, oldest
//!       first, propagation Background                       (SuccessfulDelete/FailedDelete)
//!    ─▶ each Job: running but not in status.active → CronJob re-read; still not listed
//!                                                                    (UnexpectedJob)
//!                 listed and finished → dropped from active          (SawCompletedJob)
//!                 succeeded → lastSuccessfulTime = its completionTime if later
//!    ─▶ each active reference with no Job cached: GET; 404 → dropped    (MissingJob)
//!    ─▶ being deleted → stop │ timeZone unknown → stop             (UnknownTimeZone)
//!       suspended → stop     │ schedule unparseable → stop      (UnparseableSchedule)
//!    ─▶ most recent unmet schedule time in (lastScheduleTime or creation, now]
//!       (> 100 missed: TooManyMissedTimes) ── none ─▶ requeue at the next time
//!    ─▶ past startingDeadlineSeconds                      → requeue     (MissSchedule)
//!       its Job listed / it is lastScheduleTime already   → requeue
//!       Forbid and a Job active                           → requeue (JobAlreadyActive)
//!       Replace: active Jobs deleted first                            (SuccessfulDelete)
//!    ─▶ Job created (AlreadyExists: ours and unlisted → listed again) (SuccessfulCreate)
//!       active += it, lastScheduleTime = the time, requeue at the next time
//!    ─▶ status written through /status once, if anything changed
//! ```
//!
//! The requeue is a timer at the next schedule time (+100 ms), never a poll. The watch
//! drives the rest (`route_events`, upstream's handlers): a Job added, changed or deleted
//! syncs the CronJob controlling it; a CronJob added or changed syncs it, except that a new
//! `schedule`/`timeZone` syncs it at its next schedule time (an unparseable one warns
//! `UnParseableCronJobSchedule`).

pub mod plan;
pub mod utils;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::controller_utils::pod_control::{is_namespace_terminating, message};
use crate::controller_utils::{get_controller_of, key as key_of};
use crate::informer::{Change, Informer};
use crate::routed::Routed;

use plan::{Seen, Start};

const CONTROLLER: &str = "cronjob";
/// `source.component` of its events.
const COMPONENT: &str = "cronjob-controller";
/// Syncs of different CronJobs at once (kube-controller-manager's
/// `--concurrent-cron-job-syncs`, 5).
const CONCURRENT_SYNCS: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("getting cronjob {key}: {}", message(.source))]
    GetCronJob { key: String, source: kube::Error },
    #[error("getting job {key}: {}", message(.source))]
    GetJob { key: String, source: kube::Error },
    #[error("could not replace job {key}")]
    Replace { key: String },
    #[error("creating job {key}: {}", message(.source))]
    Create { key: String, source: kube::Error },
    #[error("unable to make Job from template for {key}: {reason}")]
    Template { key: String, reason: String },
    #[error("updating the status of cronjob {key}: {}", message(.source))]
    Status { key: String, source: kube::Error },
}

struct Ctx {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
    backoff: Backoff,
    /// The controller's own time zone, for schedules without one.
    local: TimeZone,
}

/// The controller, subscribed to the informers (so call this before they run); the future
/// runs it until `shutdown`.
pub fn controller(
    client: Client,
    cron_jobs: &Informer<CronJob>,
    jobs: &Informer<Job>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (cj_changes, cj_lagged) = cron_jobs.subscribe();
    let (job_changes, job_lagged) = jobs.subscribe();
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let local = TimeZone::try_system().unwrap_or(TimeZone::UTC);
    let ctx = Arc::new(Ctx {
        client,
        jobs: jobs.store(),
        recorder: recorder.clone(),
        backoff: Backoff::controller_default(),
        local: local.clone(),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    let router = route_events(
        cj_changes,
        job_changes,
        cron_jobs.store(),
        recorder,
        local,
        triggers,
    );
    Routed {
        name: CONTROLLER,
        store: cron_jobs.store(),
        triggered,
        lagged: vec![cj_lagged.boxed(), job_lagged.boxed()],
        synced: vec![cron_jobs.synced().boxed(), jobs.synced().boxed()],
        concurrency: CONCURRENT_SYNCS,
    }
    .run(router, sink, shutdown, reconcile, error_policy, ctx)
}

fn cron_job_ref(namespace: &str, name: &str) -> ObjectRef<CronJob> {
    ObjectRef::new(name).within(namespace)
}

/// Upstream's `resolveControllerRef`: the CronJob a Job's controller reference names, if
/// cached under that name with that uid.
fn resolve(cron_jobs: &Store<CronJob>, job: &Job) -> Option<ObjectRef<CronJob>> {
    let r = get_controller_of(&job.metadata)?;
    if r.kind != "CronJob" {
        return None;
    }
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let object = cron_job_ref(namespace, &r.name);
    let cj = cron_jobs.get(&object)?;
    (cj.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(object)
}

/// Upstream's event handlers, in the order the watch shows the changes.
async fn route_events(
    cj_changes: impl Stream<Item = Change<CronJob>> + Send + 'static,
    job_changes: impl Stream<Item = Change<Job>> + Send + 'static,
    cron_jobs: Store<CronJob>,
    recorder: Recorder,
    local: TimeZone,
    triggers: mpsc::UnboundedSender<ObjectRef<CronJob>>,
) {
    enum Event {
        CronJob(Change<CronJob>),
        Job(Change<Job>),
    }
    let mut events = futures::stream::select(
        cj_changes.map(Event::CronJob).boxed(),
        job_changes.map(Event::Job).boxed(),
    );
    let mut cron_jobs_seen: HashMap<String, Arc<CronJob>> = HashMap::new();
    let mut jobs_seen: HashMap<String, Arc<Job>> = HashMap::new();
    while let Some(event) = events.next().await {
        let mut now_for = Vec::new();
        match event {
            Event::CronJob(Change::Applied(cj)) => {
                let namespace = cj.metadata.namespace.clone().unwrap_or_default();
                let name = cj.metadata.name.clone().unwrap_or_default();
                let object = cron_job_ref(&namespace, &name);
                let old = cron_jobs_seen.insert(key_of(&namespace, &name), cj.clone());
                match old {
                    Some(old)
                        if old.spec.schedule != cj.spec.schedule
                            || old.spec.time_zone != cj.spec.time_zone =>
                    {
                        // Upstream's `updateCronJob`: sync at the new schedule's next time.
                        match utils::resolve_schedule(&cj, &local) {
                            Ok((sched, _)) => {
                                let after = utils::next_schedule_time_duration(
                                    &cj,
                                    Timestamp::now(),
                                    &sched,
                                );
                                if let Some(after) = after {
                                    let triggers = triggers.clone();
                                    tokio::spawn(async move {
                                        tokio::time::sleep(after).await;
                                        let _ = triggers.send(object);
                                    });
                                }
                            }
                            Err(e) => {
                                debug!(controller = CONTROLLER, cronjob = %object, error = %e, "unparseable schedule");
                                recorder.event(
                                    &record::object_reference(&*cj),
                                    EventType::Warning,
                                    "UnParseableCronJobSchedule",
                                    format!(
                                        "unparseable schedule for cronjob: {}",
                                        cj.spec.schedule
                                    ),
                                );
                            }
                        }
                    }
                    _ => now_for.push(object),
                }
            }
            Event::CronJob(Change::Deleted(cj)) => {
                let namespace = cj.metadata.namespace.clone().unwrap_or_default();
                let name = cj.metadata.name.clone().unwrap_or_default();
                cron_jobs_seen.remove(&key_of(&namespace, &name));
                now_for.push(cron_job_ref(&namespace, &name));
            }
            Event::Job(change) => {
                let (job, gone) = match change {
                    Change::Applied(j) => (j, false),
                    Change::Deleted(j) => (j, true),
                };
                let key = key_of(
                    job.metadata.namespace.as_deref().unwrap_or_default(),
                    job.metadata.name.as_deref().unwrap_or_default(),
                );
                let old = if gone {
                    jobs_seen.remove(&key)
                } else {
                    jobs_seen.insert(key, job.clone())
                };
                if let Some(old) = &old {
                    if !gone && old.metadata.resource_version == job.metadata.resource_version {
                        // A relist shows every Job again; nothing changed.
                        continue;
                    }
                    if get_controller_of(&old.metadata) != get_controller_of(&job.metadata) {
                        now_for.extend(resolve(&cron_jobs, old));
                    }
                }
                now_for.extend(resolve(&cron_jobs, &job));
            }
        }
        for object in now_for {
            if triggers.send(object).is_err() {
                return;
            }
        }
    }
}

async fn reconcile(obj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let key = key_of(&namespace, &name);
    let all_jobs = plan::jobs_of(&obj, &ctx.jobs.state());

    let mut cj = (*obj).clone();
    let cleaned = cleanup_finished_jobs(&ctx, &mut cj, &all_jobs).await;
    let (requeue, changed, sync_error) = match sync_cron_job(&ctx, &mut cj, &all_jobs).await {
        Ok((requeue, changed)) => (requeue, changed, None),
        Err((changed, e)) => (None, changed, Some(e)),
    };
    if let Some(e) = &sync_error {
        debug!(controller = CONTROLLER, %key, error = %e, "error reconciling cronjob");
    }
    if cleaned || changed {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
        api.replace_status(&name, &PostParams::default(), &cj)
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })?;
    }
    if let Some(after) = requeue {
        ctx.backoff.forget(&key);
        debug!(controller = CONTROLLER, %key, ?after, "requeuing cronjob");
        return Ok(Action::requeue(after));
    }
    match sync_error {
        Some(e) => Err(e),
        None => {
            ctx.backoff.forget(&key);
            Ok(Action::await_change())
        }
    }
}

/// Upstream's `cleanupFinishedJobs` and `removeOldestJobs`; whether the status changed.
async fn cleanup_finished_jobs(ctx: &Ctx, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
    let mut changed = false;
    for job in plan::jobs_to_clean_up(cj, jobs) {
        changed |= delete_job(ctx, cj, &job).await;
    }
    changed
}

/// Upstream's `deleteJob`: the Job deleted (its pods follow through the garbage
/// collector) and dropped from the active list; whether it was deleted.
async fn delete_job(ctx: &Ctx, cj: &mut CronJob, job: &Job) -> bool {
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let reference = record::object_reference(cj);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            utils::delete_from_active_list(cj, job.metadata.uid.as_deref().unwrap_or_default());
            ctx.recorder.event(
                &reference,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            );
            true
        }
        Err(e) => {
            warn!(controller = CONTROLLER, job = %key_of(namespace, name), error = %message(&e), "error deleting job from cronjob");
            ctx.recorder.event(
                &reference,
                EventType::Warning,
                "FailedDelete",
                format!("Deleted job: {}", message(&e)),
            );
            false
        }
    }
}

type SyncResult = Result<(Option<Duration>, bool), (bool, Error)>;

/// Upstream's `syncCronJob`: the requeue delay and whether the status changed, or the
/// error with whether it changed before failing.
async fn sync_cron_job(ctx: &Ctx, cj: &mut CronJob, jobs: &[Arc<Job>]) -> SyncResult {
    let namespace = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let key = key_of(&namespace, &name);
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut changed = false;

    for job in jobs {
        let seen = plan::seen(cj, job);
        if seen == Seen::Unexpected {
            // The cache may be behind our own status write: ask the API.
            let fresh = cj_api.get(&name).await.map_err(|source| {
                (
                    changed,
                    Error::GetCronJob {
                        key: key.clone(),
                        source,
                    },
                )
            })?;
            if utils::in_active_list(&fresh, job.metadata.uid.as_deref().unwrap_or_default()) {
                *cj = fresh;
                continue;
            }
            ctx.recorder.event(
                &record::object_reference(&*cj),
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.metadata.name.as_deref().unwrap_or_default()
                ),
            );
            continue;
        }
        if let Seen::Completed(condition) = &seen {
            ctx.recorder.event(
                &record::object_reference(&*cj),
                EventType::Normal,
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {condition}",
                    job.metadata.name.as_deref().unwrap_or_default()
                ),
            );
        }
        changed |= plan::apply_finished(cj, job, &seen);
    }

    // Active references whose Job the cache does not hold: a slow watch, or gone.
    let cached: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.metadata.uid.as_deref())
        .collect();
    let missing: Vec<ObjectReference> = utils::active(cj)
        .iter()
        .filter(|r| !cached.contains(&r.uid.as_deref().unwrap_or_default()))
        .cloned()
        .collect();
    for r in missing {
        let job_name = r.name.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(
            ctx.client.clone(),
            r.namespace.as_deref().unwrap_or(&namespace),
        );
        match api.get_opt(&job_name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                ctx.recorder.event(
                    &record::object_reference(&*cj),
                    EventType::Normal,
                    "MissingJob",
                    format!("Active job went missing: {job_name}"),
                );
                utils::delete_from_active_list(cj, r.uid.as_deref().unwrap_or_default());
                changed = true;
            }
            Err(source) => {
                return Err((
                    changed,
                    Error::GetJob {
                        key: key_of(&namespace, &job_name),
                        source,
                    },
                ))
            }
        }
    }

    if cj.metadata.deletion_timestamp.is_some() {
        return Ok((None, changed));
    }
    let reference = record::object_reference(&*cj);
    if let Err(e) = utils::check_time_zone(cj) {
        debug!(controller = CONTROLLER, %key, error = %e, "not starting job because timeZone is invalid");
        ctx.recorder.event(
            &reference,
            EventType::Warning,
            "UnknownTimeZone",
            e.to_string(),
        );
        return Ok((None, changed));
    }
    if cj.spec.suspend == Some(true) {
        debug!(controller = CONTROLLER, %key, "not starting job because the cron is suspended");
        return Ok((None, changed));
    }
    let (sched, legacy) = match utils::resolve_schedule(cj, &ctx.local) {
        Ok(resolved) => resolved,
        Err(e) => {
            debug!(controller = CONTROLLER, %key, error = %e, "unparseable schedule");
            ctx.recorder.event(
                &reference,
                EventType::Warning,
                "UnparseableSchedule",
                e.to_string(),
            );
            return Ok((None, changed));
        }
    };
    if legacy {
        ctx.recorder.event(
            &reference,
            EventType::Warning,
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                cj.spec.schedule
            ),
        );
    }

    let now = Timestamp::now();
    let (start, too_many) = match plan::decide_start(cj, &sched, now) {
        Ok(decision) => decision,
        Err(e) => {
            debug!(controller = CONTROLLER, %key, error = %e, "invalid schedule");
            ctx.recorder.event(
                &reference,
                EventType::Warning,
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", cj.spec.schedule),
            );
            return Ok((None, changed));
        }
    };
    if too_many {
        info!(controller = CONTROLLER, %key, "too many missed times");
        ctx.recorder.event(
            &reference,
            EventType::Warning,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        );
    }
    let (scheduled, replace, requeue) = match start {
        Start::NotYet { requeue } => {
            debug!(controller = CONTROLLER, %key, "no unmet start times");
            return Ok((requeue, changed));
        }
        Start::Missed { scheduled, requeue } => {
            debug!(controller = CONTROLLER, %key, "missed starting window");
            ctx.recorder.event(
                &reference,
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    utils::rfc1123z(scheduled)
                ),
            );
            return Ok((requeue, changed));
        }
        Start::AlreadyProcessed { requeue } => {
            debug!(controller = CONTROLLER, %key, "not starting job because the scheduled time is already processed");
            return Ok((requeue, changed));
        }
        Start::Forbidden { requeue } => {
            debug!(controller = CONTROLLER, %key, "not starting job because prior execution is still running and concurrency policy is Forbid");
            ctx.recorder.event(
                &reference,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            );
            return Ok((requeue, changed));
        }
        Start::Create {
            scheduled,
            replace,
            requeue,
        } => (scheduled, replace, requeue),
    };

    if replace {
        for r in utils::active(cj).to_vec() {
            let job_name = r.name.clone().unwrap_or_default();
            debug!(controller = CONTROLLER, %key, job = %job_name, "deleting job that was still running at next scheduled start time");
            let api: Api<Job> = Api::namespaced(
                ctx.client.clone(),
                r.namespace.as_deref().unwrap_or(&namespace),
            );
            let job = match api.get(&job_name).await {
                Ok(job) => job,
                Err(source) => {
                    ctx.recorder.event(
                        &reference,
                        EventType::Warning,
                        "FailedGet",
                        format!("Get job: {}", message(&source)),
                    );
                    let key = key_of(&namespace, &job_name);
                    return Err((changed, Error::GetJob { key, source }));
                }
            };
            if !delete_job(ctx, cj, &job).await {
                return Err((
                    changed,
                    Error::Replace {
                        key: key_of(&namespace, &job_name),
                    },
                ));
            }
            changed = true;
        }
    }

    let request = utils::job_from_template(cj, scheduled).map_err(|reason| {
        (
            changed,
            Error::Template {
                key: key.clone(),
                reason,
            },
        )
    })?;
    let job_name = request.metadata.name.clone().unwrap_or_default();
    let created = match job_api.create(&PostParams::default(), &request).await {
        Ok(job) => {
            debug!(controller = CONTROLLER, %key, job = %job_name, "created job");
            ctx.recorder.event(
                &reference,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {job_name}"),
            );
            job
        }
        Err(kube::Error::Api(s)) if is_namespace_terminating(&s) => {
            return Err((
                changed,
                Error::Create {
                    key: key_of(&namespace, &job_name),
                    source: kube::Error::Api(s),
                },
            ));
        }
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            // Created before but never listed (a status write lost): list it now, if ours.
            let job = job_api.get(&job_name).await.map_err(|source| {
                (
                    changed,
                    Error::GetJob {
                        key: key_of(&namespace, &job_name),
                        source,
                    },
                )
            })?;
            let ours = get_controller_of(&job.metadata)
                .is_some_and(|r| Some(r.uid.as_str()) == cj.metadata.uid.as_deref());
            if !ours || utils::in_active_list(cj, job.metadata.uid.as_deref().unwrap_or_default()) {
                // Departure: upstream stops here with no requeue and waits for an event;
                // the next schedule time is known, so look again then.
                return Ok((requeue, changed));
            }
            info!(controller = CONTROLLER, %key, job = %job_name, "job already exists");
            job
        }
        Err(source) => {
            ctx.recorder.event(
                &reference,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {}", message(&source)),
            );
            return Err((
                changed,
                Error::Create {
                    key: key_of(&namespace, &job_name),
                    source,
                },
            ));
        }
    };

    let status = cj.status.get_or_insert_with(Default::default);
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(utils::job_reference(&created));
    status.last_schedule_time = Some(Time(scheduled));
    Ok((requeue, true))
}

fn error_policy(obj: Arc<CronJob>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = key_of(
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default(),
    );
    let delay = ctx.backoff.next(&key);
    warn!(controller = CONTROLLER, %key, error = %error, retry_in = ?delay, "error syncing cronjob, requeuing");
    Action::requeue(delay)
}

//! The decisions of upstream's `syncCronJob` and `cleanupFinishedJobs`, pure: what the Jobs
//! seen say about `status.active`, whether a Job is due now and what stands in its way, and
//! which finished Jobs the history limits drop.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::utils::{
    by_job_start_time, delete_from_active_list, finished_condition, in_active_list,
    in_active_list_by_name, is_job_succeeded, job_name, next_schedule_time,
    next_schedule_time_duration, Resolved, TooClose,
};
use crate::controller_utils::get_controller_of;

/// What one Job seen says (the first loop of upstream's `syncCronJob`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Running, ours, but not in `status.active`: re-read the CronJob; if it is still not
    /// listed there, warn `UnexpectedJob`.
    Unexpected,
    /// Listed as active and now finished with this condition: dropped from the list
    /// (`SawCompletedJob`).
    Completed(String),
    /// Nothing to change in the list.
    Nothing,
}

/// Upstream's `getJobsToBeReconciled`: the Jobs whose controller reference names the
/// CronJob (by name, as upstream: a Job whose labels no longer match still counts).
pub fn jobs_of(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    jobs.iter()
        .filter(|j| j.metadata.namespace == cj.metadata.namespace)
        .filter(|j| get_controller_of(&j.metadata).is_some_and(|r| r.name == name))
        .cloned()
        .collect()
}

/// Classifies one of the CronJob's Jobs against its active list.
pub fn seen(cj: &CronJob, job: &Job) -> Seen {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let found = in_active_list(cj, uid);
    match finished_condition(job) {
        None if !found => Seen::Unexpected,
        Some(condition) if found => Seen::Completed(condition.to_string()),
        _ => Seen::Nothing,
    }
}

/// Applies what a finished Job says to the status: off the active list if `Completed`, and
/// `lastSuccessfulTime` moved up to its completion if it succeeded (listed or not). Returns
/// whether the status changed.
pub fn apply_finished(cj: &mut CronJob, job: &Job, seen: &Seen) -> bool {
    let mut changed = false;
    if let Seen::Completed(_) = seen {
        delete_from_active_list(cj, job.metadata.uid.as_deref().unwrap_or_default());
        changed = true;
    }
    if is_job_succeeded(job) {
        let completion = job.status.as_ref().and_then(|s| s.completion_time.clone());
        let status = cj.status.get_or_insert_with(Default::default);
        match (&status.last_successful_time, completion) {
            (None, completion) => {
                changed |= completion.is_some();
                status.last_successful_time = completion;
            }
            (Some(last), Some(c)) if c.0 > last.0 => {
                status.last_successful_time = Some(c);
                changed = true;
            }
            _ => {}
        }
    }
    changed
}

/// What to do about the schedule once the active list is settled (the second half of
/// upstream's `syncCronJob`), each outcome with the reason upstream logs or records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No schedule time is unmet: look again at the next one.
    NotYet { requeue: Option<Duration> },
    /// The due time is past `startingDeadlineSeconds` (`MissSchedule`).
    Missed {
        scheduled: Timestamp,
        requeue: Option<Duration>,
    },
    /// The due time's Job is already listed or was already the last schedule.
    AlreadyProcessed { requeue: Option<Duration> },
    /// `Forbid` and a Job still runs (`JobAlreadyActive`).
    Forbidden { requeue: Option<Duration> },
    /// Create the Job for `scheduled`, after deleting the active ones if `replace`.
    Create {
        scheduled: Timestamp,
        replace: bool,
        /// When to look again once it is created (with `lastScheduleTime` = `scheduled`).
        requeue: Option<Duration>,
    },
}

/// The decision, and whether to warn `TooManyMissedTimes`.
pub fn decide_start(
    cj: &CronJob,
    sched: &Resolved,
    now: Timestamp,
) -> Result<(Start, bool), TooClose> {
    let requeue = next_schedule_time_duration(cj, now, sched);
    let (scheduled, too_many) = next_schedule_time(cj, now, sched)?;
    let Some(scheduled) = scheduled else {
        return Ok((Start::NotYet { requeue }, false));
    };
    let too_late = cj.spec.starting_deadline_seconds.is_some_and(|d| {
        scheduled
            .checked_add(SignedDuration::from_secs(d))
            .is_ok_and(|deadline| deadline < now)
    });
    let start = if too_late {
        Start::Missed { scheduled, requeue }
    } else if in_active_list_by_name(cj, &job_name(cj, scheduled))
        || cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_some_and(|t| t.0 == scheduled)
    {
        Start::AlreadyProcessed { requeue }
    } else {
        let policy = cj.spec.concurrency_policy.as_deref().unwrap_or("Allow");
        let active = cj
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .is_some_and(|a| !a.is_empty());
        if policy == "Forbid" && active {
            Start::Forbidden { requeue }
        } else {
            let mut after = cj.clone();
            after
                .status
                .get_or_insert_with(Default::default)
                .last_schedule_time = Some(Time(scheduled));
            Start::Create {
                scheduled,
                replace: policy == "Replace",
                requeue: next_schedule_time_duration(&after, now, sched),
            }
        }
    };
    Ok((start, too_many))
}

/// Upstream's `cleanupFinishedJobs`: for each history limit set, the oldest finished Jobs
/// past it (successful and failed counted apart), oldest first.
pub fn jobs_to_clean_up(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let mut doomed = Vec::new();
    let limits = [
        ("Complete", cj.spec.successful_jobs_history_limit),
        ("Failed", cj.spec.failed_jobs_history_limit),
    ];
    for (condition, limit) in limits {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<Arc<Job>> = jobs
            .iter()
            .filter(|j| finished_condition(j) == Some(condition))
            .cloned()
            .collect();
        let keep = usize::try_from(limit).unwrap_or(0);
        if finished.len() <= keep {
            continue;
        }
        finished.sort_by(|a, b| by_job_start_time(a, b));
        let n = finished.len() - keep;
        doomed.extend(finished.into_iter().take(n));
    }
    doomed
}

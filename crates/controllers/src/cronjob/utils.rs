//! Upstream's `pkg/controller/cronjob/utils.go`, pure: which schedule time is due, when to
//! look again, the active list, and the Job a CronJob makes for one scheduled time.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use api::cron::{self, Schedule};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::controller_utils::new_controller_ref;

/// The annotation every scheduled Job carries: its scheduled time, RFC 3339 in the
/// CronJob's time zone (`batchv1.CronJobScheduledTimestampAnnotation`).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Past this many missed schedules the controller warns `TooManyMissedTimes`.
pub const MANY_MISSED: i64 = 100;

/// Added to every requeue so that a slightly early clock still finds the time due
/// (upstream's `nextScheduleDelta`).
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// How many schedule times went by unmet (upstream's `missedSchedulesType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// A schedule with the time zone it is read in.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub schedule: Schedule,
    pub tz: TimeZone,
}

impl Resolved {
    fn next(&self, after: Timestamp) -> Option<Timestamp> {
        self.schedule.next(after, &self.tz)
    }
}

/// Why a schedule cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `spec.timeZone` names no zone of this machine's tz database (`UnknownTimeZone`).
    #[error("invalid timeZone: {zone:?}: {reason}")]
    UnknownTimeZone { zone: String, reason: String },
    /// The schedule does not parse (`UnparseableSchedule`).
    #[error("unparseable schedule: {schedule:?} : {reason}")]
    Unparseable { schedule: String, reason: String },
}

/// `spec.timeZone`, when set, must name a zone of this machine's tz database.
pub fn check_time_zone(cj: &CronJob) -> Result<(), ScheduleError> {
    match cj.spec.time_zone.as_deref() {
        Some(name) => {
            cron::load_location(name)
                .map(drop)
                .map_err(|reason| ScheduleError::UnknownTimeZone {
                    zone: name.to_string(),
                    reason,
                })
        }
        None => Ok(()),
    }
}

/// Upstream's `formatSchedule` then `cron.ParseStandard`: a legacy `TZ=`/`CRON_TZ=` prefix
/// wins (the `bool` says it is there: an `UnsupportedSchedule` warning), else
/// `spec.timeZone`, else the controller's own time zone (`local`).
pub fn resolve_schedule(cj: &CronJob, local: &TimeZone) -> Result<(Resolved, bool), ScheduleError> {
    let spec = &cj.spec;
    let legacy = spec.schedule.contains("TZ");
    let unparseable = |reason| ScheduleError::Unparseable {
        schedule: spec.schedule.clone(),
        reason,
    };
    let parsed = cron::parse(&spec.schedule).map_err(|e| unparseable(e.0))?;
    let zone = match (
        legacy,
        parsed.time_zone.as_deref(),
        spec.time_zone.as_deref(),
    ) {
        (_, Some(name), _) | (false, None, Some(name)) => Some(name),
        _ => None,
    };
    let tz = match zone {
        Some(name) => cron::load_location(name).map_err(unparseable)?,
        None => local.clone(),
    };
    Ok((
        Resolved {
            schedule: parsed.schedule,
            tz,
        },
        legacy,
    ))
}

/// The CronJob's last schedule time, or its creation if it never ran.
fn earliest(cj: &CronJob) -> Timestamp {
    cj.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// Go's `Duration.Round(time.Second).Seconds()` of `b - a`, as whole seconds.
fn rounded_seconds(a: Timestamp, b: Timestamp) -> i64 {
    let d = b.duration_since(a);
    let nanos = d.as_nanos();
    let half = 500_000_000_i128;
    let rounded = if nanos >= 0 {
        (nanos + half) / 1_000_000_000
    } else {
        (nanos - half) / 1_000_000_000
    };
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// The result of [`most_recent_schedule_time`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MostRecent {
    /// The last schedule time or creation (moved up to the starting deadline when counted).
    pub earliest: Timestamp,
    /// The latest schedule time not after `now`, if any went by since `earliest`.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

/// The schedule's times are under a second apart (`0 0 31 2 *` never comes) (upstream's
/// edge-case error, which the `InvalidSchedule` event carries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time difference between two schedules is less than 1 second")]
pub struct TooClose {
    pub earliest: Timestamp,
}

/// Upstream's `mostRecentScheduleTime`: the latest schedule time in `(earliest, now]`,
/// counting roughly how many were missed from the interval between the first two (so a
/// controller down for years does not walk them all).
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Resolved,
    include_starting_deadline: bool,
) -> Result<MostRecent, TooClose> {
    let mut earliest = earliest(cj);
    if let (true, Some(deadline)) = (include_starting_deadline, cj.spec.starting_deadline_seconds) {
        let limit = now
            .checked_sub(SignedDuration::from_secs(deadline))
            .unwrap_or(Timestamp::MIN);
        if limit > earliest {
            earliest = limit;
        }
    }
    let none = |missed| MostRecent {
        earliest,
        most_recent: None,
        missed,
    };
    let (Some(t1), t2) = (
        sched.next(earliest),
        sched.next(earliest).and_then(|t| sched.next(t)),
    ) else {
        // No time within robfig's five years: Go's zero time, always before now.
        return Err(TooClose { earliest });
    };
    if now < t1 {
        return Ok(none(Missed::None));
    }
    let Some(t2) = t2 else {
        return Err(TooClose { earliest });
    };
    if now < t2 {
        return Ok(MostRecent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::None,
        });
    }
    let between = rounded_seconds(t1, t2);
    if between < 1 {
        return Err(TooClose { earliest });
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    let back = (missed_count - 2).saturating_mul(between);
    let mut t = t1
        .checked_add(SignedDuration::from_secs(back))
        .unwrap_or(t1);
    let mut most_recent = None;
    while let Some(n) = sched.next(t) {
        if n > now {
            break;
        }
        most_recent = Some(n);
        t = n;
    }
    let missed = if missed_count > MANY_MISSED {
        Missed::Many
    } else if missed_count > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok(MostRecent {
        earliest,
        most_recent,
        missed,
    })
}

/// Upstream's `nextScheduleTimeDuration`: how long until the next schedule time after the
/// most recent one (or after the last schedule when none was missed), plus
/// [`NEXT_SCHEDULE_DELTA`]. `None` when the schedule never comes again.
pub fn next_schedule_time_duration(
    cj: &CronJob,
    now: Timestamp,
    sched: &Resolved,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, sched, false) {
        Err(_) => now,
        Ok(MostRecent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(MostRecent {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let next = sched.next(from)?;
    let wait = next.duration_since(now);
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

/// Upstream's `nextScheduleTime`: the unmet schedule time to act on now, if any (within
/// the starting deadline), and whether too many were missed.
pub fn next_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Resolved,
) -> Result<(Option<Timestamp>, bool), TooClose> {
    let recent = most_recent_schedule_time(cj, now, sched, true)?;
    match recent.most_recent {
        Some(t) if t <= now => Ok((Some(t), recent.missed == Missed::Many)),
        _ => Ok((None, false)),
    }
}

/// The Job name for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or_default(),
        scheduled.as_second().div_euclid(60)
    )
}

/// Go's `Format(time.RFC3339)` of `t` in `tz`: `Z` for a zero offset.
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    let offset = if zoned.offset().seconds() == 0 {
        "Z".to_string()
    } else {
        zoned.strftime("%:z").to_string()
    };
    format!("{}{offset}", zoned.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// Go's `Format(time.RFC1123Z)` in UTC (the `MissSchedule` message).
pub fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// Upstream's `getJobFromTemplate2`: the job template's labels, annotations and spec, named
/// for the scheduled time, annotated with it (in `spec.timeZone`, UTC without one) and
/// controlled by the CronJob.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Result<Job, String> {
    let template = &cj.spec.job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = meta.annotations.unwrap_or_default();
    let tz = cron::load_location(cj.spec.time_zone.as_deref().unwrap_or_default())?;
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
        rfc3339_in(scheduled, &tz),
    );
    let owner = new_controller_ref(
        "batch/v1",
        "CronJob",
        cj.metadata.name.as_deref().unwrap_or_default(),
        cj.metadata.uid.as_deref().unwrap_or_default(),
    );
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: Some(meta.labels.unwrap_or_default()).filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// Whether `status.active` lists the Job with `uid`.
pub fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    active(cj).iter().any(|r| r.uid.as_deref() == Some(uid))
}

/// Whether `status.active` lists a Job named `name` in the CronJob's namespace.
pub fn in_active_list_by_name(cj: &CronJob, name: &str) -> bool {
    active(cj).iter().any(|r| {
        r.name.as_deref() == Some(name)
            && r.namespace.as_deref() == cj.metadata.namespace.as_deref()
    })
}

/// `status.active`, empty when unset.
pub fn active(cj: &CronJob) -> &[ObjectReference] {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_deref())
        .unwrap_or_default()
}

/// Drops the Job with `uid` from `status.active`.
pub fn delete_from_active_list(cj: &mut CronJob, uid: &str) {
    if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

/// The Job's `Complete` or `Failed` condition type if one is `True` (upstream's
/// `FinishedCondition`).
pub fn finished_condition(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Whether the Job is `Complete`.
pub fn is_job_succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// Upstream's `byJobStartTime`: started ones first, oldest first, then by name.
pub fn by_job_start_time(a: &Job, b: &Job) -> Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (x, y) if x == y => a.metadata.name.cmp(&b.metadata.name),
        (x, y) => x.cmp(&y),
    }
}

/// A reference to a Job as `status.active` holds it (`ref.GetReference`).
pub fn job_reference(job: &Job) -> ObjectReference {
    record::object_reference(job)
}

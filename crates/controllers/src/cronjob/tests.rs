//! Table-driven tests of the CronJob controller's pure decisions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::plan::{self, Seen, Start};
use super::utils::{self, Missed, MostRecent, Resolved};

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

fn cron_job(schedule: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("cj".into()),
            namespace: Some("ns".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(ts(created))),
            ..ObjectMeta::default()
        },
        spec: CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Allow".into()),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([("app".into(), "x".into())])),
                    annotations: Some(BTreeMap::from([("note".into(), "y".into())])),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec::default()),
            },
            ..CronJobSpec::default()
        },
        status: None,
    }
}

fn with_last(mut cj: CronJob, last: &str) -> CronJob {
    cj.status
        .get_or_insert_with(CronJobStatus::default)
        .last_schedule_time = Some(Time(ts(last)));
    cj
}

fn with_active(mut cj: CronJob, names: &[&str]) -> CronJob {
    cj.status.get_or_insert_with(CronJobStatus::default).active = Some(
        names
            .iter()
            .map(|n| ObjectReference {
                name: Some((*n).into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{n}-uid")),
                ..ObjectReference::default()
            })
            .collect(),
    );
    cj
}

fn resolved(cj: &CronJob) -> Resolved {
    utils::resolve_schedule(cj, &TimeZone::UTC)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn job(name: &str, condition: Option<&str>, start: Option<&str>, completion: Option<&str>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("{name}-uid")),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: "cj".into(),
                uid: "cj-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(JobStatus {
            conditions: condition.map(|c| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]
            }),
            start_time: start.map(|s| Time(ts(s))),
            completion_time: completion.map(|s| Time(ts(s))),
            ..JobStatus::default()
        }),
    }
}

#[test]
fn most_recent_schedule_time_cases() {
    struct Case {
        name: &'static str,
        schedule: &'static str,
        created: &'static str,
        last: Option<&'static str>,
        deadline: Option<i64>,
        now: &'static str,
        want: Result<(Option<&'static str>, Missed), ()>,
    }
    let cases = [
        Case {
            name: "not yet due",
            schedule: "0 * * * *",
            created: "2026-05-01T10:00:30Z",
            last: None,
            deadline: None,
            now: "2026-05-01T10:30:00Z",
            want: Ok((None, Missed::None)),
        },
        Case {
            name: "one due",
            schedule: "0 * * * *",
            created: "2026-05-01T09:30:00Z",
            last: None,
            deadline: None,
            now: "2026-05-01T10:00:01Z",
            want: Ok((Some("2026-05-01T10:00:00Z"), Missed::None)),
        },
        Case {
            name: "several missed: the latest",
            schedule: "0 * * * *",
            created: "2026-05-01T05:30:00Z",
            last: Some("2026-05-01T06:00:00Z"),
            deadline: None,
            now: "2026-05-01T10:10:00Z",
            want: Ok((Some("2026-05-01T10:00:00Z"), Missed::Few)),
        },
        Case {
            name: "more than a hundred missed",
            schedule: "*/1 * * * *",
            created: "2026-05-01T00:00:00Z",
            last: None,
            deadline: None,
            now: "2026-05-01T10:00:30Z",
            want: Ok((Some("2026-05-01T10:00:00Z"), Missed::Many)),
        },
        Case {
            name: "the starting deadline bounds the look-back",
            schedule: "*/1 * * * *",
            created: "2026-05-01T00:00:00Z",
            last: None,
            deadline: Some(200),
            now: "2026-05-01T10:00:30Z",
            want: Ok((Some("2026-05-01T10:00:00Z"), Missed::Few)),
        },
        Case {
            name: "@every counts from the last schedule",
            schedule: "@every 90s",
            created: "2026-05-01T10:00:00Z",
            last: Some("2026-05-01T10:00:00Z"),
            deadline: None,
            now: "2026-05-01T10:04:00Z",
            want: Ok((Some("2026-05-01T10:03:00Z"), Missed::Few)),
        },
        Case {
            name: "an impossible date is an error",
            schedule: "0 0 31 2 *",
            created: "2026-05-01T10:00:00Z",
            last: None,
            deadline: None,
            now: "2026-05-01T10:04:00Z",
            want: Err(()),
        },
    ];
    for c in cases {
        let mut cj = cron_job(c.schedule, c.created);
        if let Some(last) = c.last {
            cj = with_last(cj, last);
        }
        cj.spec.starting_deadline_seconds = c.deadline;
        let got = utils::most_recent_schedule_time(&cj, ts(c.now), &resolved(&cj), true)
            .map(
                |MostRecent {
                     most_recent,
                     missed,
                     ..
                 }| (most_recent, missed),
            )
            .map_err(drop);
        let want = c.want.map(|(t, m)| (t.map(ts), m));
        assert_eq!(got, want, "{}", c.name);
    }
}

#[test]
fn next_schedule_time_duration_cases() {
    let cases = [
        // (schedule, created, last, now, want)
        (
            "*/1 * * * *",
            "2026-05-01T10:00:30Z",
            None,
            "2026-05-01T10:00:40Z",
            20_100,
        ),
        (
            "*/1 * * * *",
            "2026-05-01T09:00:00Z",
            Some("2026-05-01T10:00:00Z"),
            "2026-05-01T10:00:00.5Z",
            59_600,
        ),
        // Missed ones: from the most recent, not the last schedule.
        (
            "*/5 * * * *",
            "2026-05-01T09:00:00Z",
            Some("2026-05-01T09:00:00Z"),
            "2026-05-01T10:01:00Z",
            240_100,
        ),
        (
            "0 0 31 2 *",
            "2026-05-01T09:00:00Z",
            None,
            "2026-05-01T10:01:00Z",
            -1,
        ),
        // Macros are schedules like any other.
        (
            "@hourly",
            "2026-05-01T10:00:30Z",
            None,
            "2026-05-01T10:30:00Z",
            1_800_100,
        ),
        (
            "@every 90s",
            "2026-05-01T10:00:00Z",
            None,
            "2026-05-01T10:00:30Z",
            60_100,
        ),
    ];
    for (schedule, created, last, now, want) in cases {
        let mut cj = cron_job(schedule, created);
        if let Some(last) = last {
            cj = with_last(cj, last);
        }
        let got = utils::next_schedule_time_duration(&cj, ts(now), &resolved(&cj));
        let want = u64::try_from(want).ok().map(Duration::from_millis);
        assert_eq!(got, want, "{schedule} at {now}");
    }
}

#[test]
fn decide_start_cases() {
    let created = "2026-05-01T09:00:30Z";
    let due = "2026-05-01T10:00:00Z";
    let now = ts("2026-05-01T10:00:02Z");
    let minute_job = format!("cj-{}", ts(due).as_second() / 60);
    let base = || with_last(cron_job("0 * * * *", created), "2026-05-01T09:00:00Z");
    let next_hour = Some(Duration::from_millis(3_598_000 + 100));
    struct Case {
        name: &'static str,
        cj: CronJob,
        want: Start,
    }
    let mut forbid = with_active(base(), &["old"]);
    forbid.spec.concurrency_policy = Some("Forbid".into());
    let mut replace = with_active(base(), &["old"]);
    replace.spec.concurrency_policy = Some("Replace".into());
    let mut late = base();
    late.spec.starting_deadline_seconds = Some(1);
    let mut in_time = base();
    in_time.spec.starting_deadline_seconds = Some(10);
    let cases = [
        Case {
            name: "due: create",
            cj: base(),
            want: Start::Create {
                scheduled: ts(due),
                replace: false,
                requeue: next_hour,
            },
        },
        Case {
            name: "allow with a job active: create",
            cj: with_active(base(), &["old"]),
            want: Start::Create {
                scheduled: ts(due),
                replace: false,
                requeue: next_hour,
            },
        },
        Case {
            name: "forbid with a job active",
            cj: forbid,
            want: Start::Forbidden { requeue: next_hour },
        },
        Case {
            name: "replace with a job active",
            cj: replace,
            want: Start::Create {
                scheduled: ts(due),
                replace: true,
                requeue: next_hour,
            },
        },
        Case {
            name: "already the last schedule",
            cj: with_last(cron_job("0 * * * *", created), due),
            want: Start::NotYet { requeue: next_hour },
        },
        Case {
            name: "its job already listed",
            cj: with_active(base(), &[&minute_job]),
            want: Start::AlreadyProcessed { requeue: next_hour },
        },
        Case {
            // The deadline bounds the look-back, so a time past it is not even unmet.
            name: "past the starting deadline",
            cj: late,
            want: Start::NotYet { requeue: next_hour },
        },
        Case {
            name: "within the starting deadline",
            cj: in_time,
            want: Start::Create {
                scheduled: ts(due),
                replace: false,
                requeue: next_hour,
            },
        },
        Case {
            name: "nothing due yet",
            cj: with_last(cron_job("0 * * * *", created), due),
            want: Start::NotYet { requeue: next_hour },
        },
    ];
    for c in cases {
        let got = plan::decide_start(&c.cj, &resolved(&c.cj), now).map(|(s, _)| s);
        assert_eq!(got, Ok(c.want), "{}", c.name);
    }
}

#[test]
fn too_many_missed_is_reported() {
    let cj = cron_job("*/1 * * * *", "2026-05-01T00:00:00Z");
    let now = ts("2026-05-01T10:00:30Z");
    let got = plan::decide_start(&cj, &resolved(&cj), now);
    assert!(matches!(got, Ok((Start::Create { .. }, true))), "{got:?}");
}

#[test]
fn jobs_are_made_from_the_template() {
    let mut cj = cron_job("*/1 * * * *", "2026-05-01T00:00:00Z");
    let at = ts("2026-05-01T10:00:00Z");
    let job = utils::job_from_template(&cj, at).unwrap_or_default();
    let meta = &job.metadata;
    assert_eq!(meta.name.as_deref(), Some("cj-29627160"));
    assert_eq!(meta.namespace.as_deref(), Some("ns"));
    assert_eq!(
        meta.labels,
        Some(BTreeMap::from([("app".into(), "x".into())]))
    );
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("note").map(String::as_str), Some("y"));
    assert_eq!(
        annotations
            .get(utils::SCHEDULED_TIMESTAMP_ANNOTATION)
            .map(String::as_str),
        Some("2026-05-01T10:00:00Z")
    );
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("CronJob", "cj", "cj-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    // In the CronJob's time zone.
    cj.spec.time_zone = Some("Europe/Paris".into());
    let job = utils::job_from_template(&cj, at).unwrap_or_default();
    let annotations = job.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get(utils::SCHEDULED_TIMESTAMP_ANNOTATION)
            .map(String::as_str),
        Some("2026-05-01T12:00:00+02:00")
    );
}

#[test]
fn schedules_resolve_their_time_zone() {
    let at = ts("2026-05-01T00:00:00Z");
    let cases = [
        // (schedule, timeZone, next after midnight UTC, legacy)
        ("0 9 * * *", None, "2026-05-01T09:00:00Z", false),
        (
            "0 9 * * *",
            Some("Europe/Paris"),
            "2026-05-01T07:00:00Z",
            false,
        ),
        (
            "TZ=Asia/Tokyo 0 9 * * *",
            None,
            "2026-05-01T00:00:00Z",
            true,
        ),
        (
            "CRON_TZ=Asia/Tokyo 0 9 * * *",
            Some("Europe/Paris"),
            "2026-05-01T00:00:00Z",
            true,
        ),
    ];
    for (schedule, tz, want, want_legacy) in cases {
        let mut cj = cron_job(schedule, "2026-01-01T00:00:00Z");
        cj.spec.time_zone = tz.map(str::to_string);
        let (sched, legacy) =
            utils::resolve_schedule(&cj, &TimeZone::UTC).unwrap_or_else(|e| panic!("{e}"));
        // Tokyo's 09:00 is midnight UTC, not strictly after it: the next day.
        let next = sched.schedule.next(at, &sched.tz);
        let want = if want == "2026-05-01T00:00:00Z" {
            ts("2026-05-02T00:00:00Z")
        } else {
            ts(want)
        };
        assert_eq!(
            (next, legacy),
            (Some(want), want_legacy),
            "{schedule} {tz:?}"
        );
    }
    let mut cj = cron_job("0 9 * * *", "2026-01-01T00:00:00Z");
    cj.spec.time_zone = Some("Mars/Olympus".into());
    assert!(utils::check_time_zone(&cj).is_err());
    let cj = cron_job("61 * * * *", "2026-01-01T00:00:00Z");
    let err = utils::resolve_schedule(&cj, &TimeZone::UTC)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("unparseable schedule: \"61 * * * *\" : end of range (61) above maximum (59): 61")
    );
}

#[test]
fn jobs_seen_against_the_active_list() {
    let cj = with_active(cron_job("* * * * *", "2026-05-01T00:00:00Z"), &["a", "b"]);
    let cases = [
        ("running, listed", job("a", None, None, None), Seen::Nothing),
        (
            "running, unlisted",
            job("c", None, None, None),
            Seen::Unexpected,
        ),
        (
            "listed, completed",
            job("a", Some("Complete"), None, Some("2026-05-01T00:01:00Z")),
            Seen::Completed("Complete".into()),
        ),
        (
            "listed, failed",
            job("b", Some("Failed"), None, None),
            Seen::Completed("Failed".into()),
        ),
        (
            "unlisted, finished",
            job("c", Some("Complete"), None, None),
            Seen::Nothing,
        ),
    ];
    for (name, j, want) in cases {
        assert_eq!(plan::seen(&cj, &j), want, "{name}");
    }

    let mut status = cj.clone();
    let done = job("a", Some("Complete"), None, Some("2026-05-01T00:01:00Z"));
    assert!(plan::apply_finished(
        &mut status,
        &done,
        &Seen::Completed("Complete".into())
    ));
    assert_eq!(utils::active(&status).len(), 1);
    assert_eq!(
        status
            .status
            .as_ref()
            .and_then(|s| s.last_successful_time.clone()),
        Some(Time(ts("2026-05-01T00:01:00Z")))
    );
    // An older completion does not move it back; a failure does not set it.
    let older = job("z", Some("Complete"), None, Some("2026-05-01T00:00:30Z"));
    assert!(!plan::apply_finished(&mut status, &older, &Seen::Nothing));
    let failed = job("b", Some("Failed"), None, None);
    assert!(plan::apply_finished(
        &mut status,
        &failed,
        &Seen::Completed("Failed".into())
    ));
    assert_eq!(
        status
            .status
            .as_ref()
            .and_then(|s| s.last_successful_time.clone()),
        Some(Time(ts("2026-05-01T00:01:00Z")))
    );
    assert!(utils::active(&status).is_empty());
}

#[test]
fn history_limits_drop_the_oldest() {
    let mut cj = cron_job("* * * * *", "2026-05-01T00:00:00Z");
    cj.spec.successful_jobs_history_limit = Some(1);
    cj.spec.failed_jobs_history_limit = Some(0);
    let jobs: Vec<Arc<Job>> = vec![
        Arc::new(job(
            "s3",
            Some("Complete"),
            Some("2026-05-01T00:03:00Z"),
            None,
        )),
        Arc::new(job(
            "s1",
            Some("Complete"),
            Some("2026-05-01T00:01:00Z"),
            None,
        )),
        Arc::new(job("s-unstarted", Some("Complete"), None, None)),
        Arc::new(job(
            "s2",
            Some("Complete"),
            Some("2026-05-01T00:02:00Z"),
            None,
        )),
        Arc::new(job(
            "f1",
            Some("Failed"),
            Some("2026-05-01T00:01:00Z"),
            None,
        )),
        Arc::new(job("running", None, Some("2026-05-01T00:04:00Z"), None)),
    ];
    let names: Vec<String> = plan::jobs_to_clean_up(&cj, &jobs)
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    // Started ones oldest first, unstarted last; the newest kept.
    assert_eq!(names, ["s1", "s2", "s3", "f1"]);

    cj.spec.successful_jobs_history_limit = Some(3);
    cj.spec.failed_jobs_history_limit = None;
    let names: Vec<String> = plan::jobs_to_clean_up(&cj, &jobs)
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(names, ["s1"]);
}

#[test]
fn jobs_of_a_cron_job_by_controller_name() {
    let cj = cron_job("* * * * *", "2026-05-01T00:00:00Z");
    let mut other = job("other", None, None, None);
    if let Some(refs) = other.metadata.owner_references.as_mut() {
        refs[0].name = "not-cj".into();
    }
    let mut elsewhere = job("elsewhere", None, None, None);
    elsewhere.metadata.namespace = Some("other-ns".into());
    let mut orphan = job("orphan", None, None, None);
    orphan.metadata.owner_references = None;
    let jobs = vec![
        Arc::new(job("mine", None, None, None)),
        Arc::new(other),
        Arc::new(elsewhere),
        Arc::new(orphan),
    ];
    let names: Vec<String> = plan::jobs_of(&cj, &jobs)
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(names, ["mine"]);
}

#[test]
fn times_are_formatted_as_go_formats_them() {
    let t = ts("2026-05-01T10:00:00Z");
    assert_eq!(utils::rfc1123z(t), "Fri, 01 May 2026 10:00:00 +0000");
    assert_eq!(utils::rfc3339_in(t, &TimeZone::UTC), "2026-05-01T10:00:00Z");
    let ny = TimeZone::get("America/New_York").unwrap_or(TimeZone::UTC);
    assert_eq!(utils::rfc3339_in(t, &ny), "2026-05-01T06:00:00-04:00");
}

//! Table-driven tests of the Job controller's pure decisions.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule, SuccessPolicy, SuccessPolicyRule,
    UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodSpec,
    PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::backoff_utils::{
    new_backoff_record, remaining_time, remaining_time_for_failures, BackoffRecord,
};
use super::indexed_job_utils::*;
use super::pod_failure_policy::{match_pod_failure_policy, Action};
use super::success_policy::match_success_policy;
use super::sync::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn job(f: impl FnOnce(&mut JobSpec)) -> Job {
    let mut spec = JobSpec {
        parallelism: Some(2),
        completions: Some(3),
        backoff_limit: Some(6),
        completion_mode: Some("NonIndexed".into()),
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                ..PodSpec::default()
            }),
        },
        ..JobSpec::default()
    };
    f(&mut spec);
    Job {
        metadata: ObjectMeta {
            name: Some("j".into()),
            namespace: Some("ns".into()),
            uid: Some("job-uid".into()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: Some(JobStatus::default()),
    }
}

struct P {
    name: &'static str,
    phase: &'static str,
    index: Option<i32>,
    finalizer: bool,
    deleting: bool,
    exit: Option<i32>,
    finished: Option<i64>,
}

const BASE: P = P {
    name: "p",
    phase: "Running",
    index: None,
    finalizer: true,
    deleting: false,
    exit: None,
    finished: None,
};

fn pod(p: P) -> Arc<Pod> {
    let mut annotations = BTreeMap::new();
    if let Some(ix) = p.index {
        annotations.insert(COMPLETION_INDEX_ANNOTATION.to_string(), ix.to_string());
    }
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(p.name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{}", p.name)),
            annotations: Some(annotations),
            finalizers: p
                .finalizer
                .then(|| vec![JOB_TRACKING_FINALIZER.to_string()]),
            deletion_timestamp: p.deleting.then(|| Time(at(50))),
            creation_timestamp: Some(Time(at(1))),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(p.phase.into()),
            container_statuses: p.exit.map(|code| {
                vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            finished_at: p.finished.map(|s| Time(at(s))),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]
            }),
            ..PodStatus::default()
        }),
    })
}

#[test]
fn intervals_parse_and_print_as_upstream() {
    let cases = [
        ("", 10, ""),
        ("0", 10, "0"),
        ("0-2", 10, "0-2"),
        ("0,1", 10, "0,1"),
        ("0,1,2", 10, "0-2"),
        ("1,3-5,7", 10, "1,3-5,7"),
        ("3-5,9-12", 10, "3-5,9"),
        ("x,2", 10, "2"),
        ("12", 10, ""),
    ];
    for (input, completions, want) in cases {
        let got = Intervals::parse(input, completions);
        assert_eq!(got.to_string(), want, "{input}");
    }
    let i = Intervals::parse("1,3-5", 10);
    assert_eq!(i.total(), 4);
    assert!(i.has(4) && !i.has(2));
    assert_eq!(i.with_indexes([2, 6]).to_string(), "1-6");
    assert_eq!(i.merge(&Intervals::parse("8", 10)).to_string(), "1,3-5,8");
}

#[test]
fn first_pending_indexes_skip_succeeded_active_terminating_and_failed() {
    let succeeded = Intervals::parse("0,2", 10);
    let active: BTreeSet<i32> = [3].into();
    let terminating: BTreeSet<i32> = [4].into();
    let failed = Intervals::parse("5", 10);
    type Case<'a> = (
        Option<&'a BTreeSet<i32>>,
        Option<&'a Intervals>,
        usize,
        i32,
        Vec<i32>,
    );
    let cases: [Case; 4] = [
        (None, None, 3, 10, vec![1, 4, 5]),
        (Some(&terminating), None, 3, 10, vec![1, 5, 6]),
        (Some(&terminating), Some(&failed), 3, 10, vec![1, 6, 7]),
        (None, None, 5, 5, vec![1, 4]),
    ];
    for (term, fail, count, completions, want) in cases {
        let got = first_pending_indexes(&succeeded, &active, term, fail, count, completions);
        assert_eq!(got, want);
    }
}

#[test]
fn indexed_pod_names_and_templates() {
    assert_eq!(pod_generate_name_with_index("pi", 3), "pi-3-");
    let long = "a".repeat(60);
    let name = pod_generate_name_with_index(&long, 12);
    assert_eq!(name.len(), 58);
    assert!(name.ends_with("a-12-"));

    let mut t = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![Default::default()],
            ..PodSpec::default()
        }),
    };
    add_completion_index_env_variables(&mut t);
    add_completion_index_env_variables(&mut t);
    add_completion_index(&mut t, "pi", 2);
    let spec = t.spec.clone().unwrap_or_default();
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert_eq!(env.len(), 1, "added once");
    assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
    assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
    let meta = t.metadata.unwrap_or_default();
    assert_eq!(
        meta.labels
            .unwrap_or_default()
            .get(COMPLETION_INDEX_ANNOTATION),
        Some(&"2".to_string())
    );
}

#[test]
fn duplicated_indexes_are_removed_first() {
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        s.completions = Some(3);
    });
    let pods = vec![
        pod(P {
            name: "a",
            index: Some(0),
            ..BASE
        }),
        pod(P {
            name: "b",
            index: Some(0),
            ..BASE
        }),
        pod(P {
            name: "c",
            index: Some(1),
            ..BASE
        }),
        pod(P {
            name: "d",
            index: Some(7),
            ..BASE
        }),
        pod(P {
            name: "e",
            index: None,
            ..BASE
        }),
    ];
    let rm = active_pods_for_removal(&j, &pods, 0);
    let names: BTreeSet<String> = rm.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains("d") && names.contains("e"));
    assert!(!names.contains("c"));
}

fn exit_rule(action: &str, op: &str, values: Vec<i32>) -> PodFailurePolicyRule {
    PodFailurePolicyRule {
        action: action.into(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: None,
            operator: op.into(),
            values,
        }),
        on_pod_conditions: None,
    }
}

#[test]
fn pod_failure_policy_first_matching_rule_decides() {
    let policy = PodFailurePolicy {
        rules: vec![
            exit_rule("Ignore", "In", vec![3]),
            exit_rule("FailJob", "In", vec![42]),
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: Some("True".into()),
                }]),
            },
            exit_rule("Count", "NotIn", vec![0, 1]),
        ],
    };
    let failed = |exit: i32| {
        pod(P {
            name: "x",
            phase: "Failed",
            exit: Some(exit),
            ..BASE
        })
    };
    let cases = [
        (3, None, false, Some(Action::Ignore)),
        (
            42,
            Some("Container main for pod ns/x failed with exit code 42 matching FailJob rule at index 1"),
            true,
            Some(Action::FailJob),
        ),
        (7, None, true, Some(Action::Count)),
        (1, None, true, None),
    ];
    for (exit, msg, counted, action) in cases {
        let v = match_pod_failure_policy(Some(&policy), &failed(exit));
        assert_eq!(v.fail_job_message.as_deref(), msg, "exit {exit}");
        assert_eq!((v.count_failed, v.action), (counted, action), "exit {exit}");
    }
    let mut disrupted = (*failed(1)).clone();
    if let Some(s) = disrupted.status.as_mut() {
        s.conditions = Some(vec![PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            ..PodCondition::default()
        }]);
    }
    let v = match_pod_failure_policy(Some(&policy), &disrupted);
    assert_eq!(v.action, Some(Action::Ignore));
    assert!(match_pod_failure_policy(None, &failed(42)).count_failed);
}

#[test]
fn success_policy_rules() {
    let rule = |ix: Option<&str>, count: Option<i32>| SuccessPolicyRule {
        succeeded_indexes: ix.map(Into::into),
        succeeded_count: count,
    };
    let cases = [
        (
            vec![rule(Some("0-2"), None)],
            "0-2",
            Some("Matched rules at index 0"),
        ),
        (vec![rule(Some("0-2"), None)], "0,1", None),
        (
            vec![rule(Some("0-4"), Some(2)), rule(None, Some(1))],
            "3",
            Some("Matched rules at index 1"),
        ),
        (
            vec![rule(Some("0-4"), Some(2))],
            "3,4",
            Some("Matched rules at index 0"),
        ),
        (vec![rule(None, Some(1))], "", None),
    ];
    for (rules, succeeded, want) in cases {
        let policy = SuccessPolicy { rules };
        let got = match_success_policy(Some(&policy), 5, &Intervals::parse(succeeded, 5));
        assert_eq!(got.as_deref(), want, "{succeeded}");
    }
}

#[test]
fn pod_failure_backoff_doubles_from_ten_seconds_to_six_minutes() {
    let now = at(1_000);
    let cases = [
        (0, Some(1_000), 0),
        (1, Some(1_000), 10),
        (1, Some(995), 5),
        (2, Some(1_000), 20),
        (3, Some(1_000), 40),
        (10, Some(1_000), 360),
        (1, Some(900), 0),
        (1, None, 0),
    ];
    for (failures, last, want) in cases {
        let got = remaining_time_for_failures(failures, last.map(at), now);
        assert_eq!(
            got,
            Duration::from_secs(want),
            "{failures} failures, last {last:?}"
        );
    }
}

#[test]
fn backoff_record_counts_failures_after_the_last_success() {
    let now = at(1_000);
    let failed = |n, t| {
        pod(P {
            name: n,
            phase: "Failed",
            exit: Some(1),
            finished: Some(t),
            ..BASE
        })
    };
    let ok = |n, t| {
        pod(P {
            name: n,
            phase: "Succeeded",
            exit: Some(0),
            finished: Some(t),
            ..BASE
        })
    };
    let start = BackoffRecord {
        failures_after_last_success: 2,
        last_failure_time: Some(at(100)),
    };
    let r = new_backoff_record(start.clone(), &[], &[failed("a", 200)], now);
    assert_eq!(
        (r.failures_after_last_success, r.last_failure_time),
        (3, Some(at(200)))
    );
    let r = new_backoff_record(start.clone(), &[ok("b", 300)], &[], now);
    assert_eq!(r, BackoffRecord::default());
    let r = new_backoff_record(
        start,
        &[ok("b", 300)],
        &[failed("a", 200), failed("c", 400)],
        now,
    );
    assert_eq!(
        (r.failures_after_last_success, r.last_failure_time),
        (1, Some(at(400)))
    );
    assert_eq!(remaining_time(&r, at(405)), Duration::from_secs(5));
}

#[test]
fn want_active_follows_parallelism_and_remaining_completions() {
    let cases = [
        (Some(3), 2, 0, 0, 2),
        (Some(3), 2, 2, 2, 1),
        (Some(3), 2, 1, 3, 0),
        (None, 2, 0, 0, 2),
        (None, 2, 1, 1, 1),
    ];
    for (completions, parallelism, active, succeeded, want) in cases {
        let j = job(|s| {
            s.completions = completions;
            s.parallelism = Some(parallelism);
        });
        assert_eq!(
            want_active(&j, active, succeeded),
            want,
            "{completions:?} {parallelism} {active} {succeeded}"
        );
    }
}

#[test]
fn a_pod_is_failed_by_phase_or_by_deletion_unless_only_failed_are_replaced() {
    let deleting = pod(P {
        name: "d",
        deleting: true,
        ..BASE
    });
    let failed = pod(P {
        name: "f",
        phase: "Failed",
        ..BASE
    });
    let done = pod(P {
        name: "s",
        phase: "Succeeded",
        deleting: true,
        ..BASE
    });
    let default = job(|_| {});
    let failed_only = job(|s| s.pod_replacement_policy = Some("Failed".into()));
    assert!(is_pod_failed(&deleting, &default));
    assert!(!is_pod_failed(&deleting, &failed_only));
    assert!(is_pod_failed(&failed, &failed_only));
    assert!(!is_pod_failed(&done, &default));
}

#[test]
fn tracking_counts_finished_pods_once() {
    let mut j = job(|_| {});
    if let Some(s) = j.status.as_mut() {
        s.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(vec!["uid-old".into()]),
            failed: None,
        });
    }
    let pods = vec![
        pod(P {
            name: "ok",
            phase: "Succeeded",
            ..BASE
        }),
        pod(P {
            name: "bad",
            phase: "Failed",
            ..BASE
        }),
        pod(P {
            name: "run",
            ..BASE
        }),
        pod(P {
            name: "counted",
            phase: "Succeeded",
            finalizer: false,
            ..BASE
        }),
        pod(P {
            name: "old",
            phase: "Succeeded",
            ..BASE
        }),
        pod(P {
            name: "gone",
            phase: "Succeeded",
            ..BASE
        }),
    ];
    let observed = Observed::new(&j, pods, HashSet::from(["uid-gone".to_string()]));
    let (s, f) = observed.new_finished_pods(&j);
    assert_eq!((s.len(), f.len()), (1, 1));

    let t = track_pods(
        &j,
        &observed,
        &Intervals::default(),
        None,
        &BTreeMap::new(),
        false,
        false,
    );
    let removed: Vec<String> = t.remove_finalizer.iter().map(|p| uid(p)).collect();
    assert_eq!(removed, ["uid-ok", "uid-bad", "uid-old"]);
    assert_eq!(t.new_uncounted_succeeded, ["uid-ok"]);
    assert_eq!(t.new_uncounted_failed, ["uid-bad"]);

    // A failing Job counts the running pod as failed too.
    let t = track_pods(
        &j,
        &observed,
        &Intervals::default(),
        None,
        &BTreeMap::new(),
        true,
        true,
    );
    assert_eq!(t.new_uncounted_failed, ["uid-bad", "uid-run"]);
    // Meeting the success criteria counts no running pod.
    let t = track_pods(
        &j,
        &observed,
        &Intervals::default(),
        None,
        &BTreeMap::new(),
        true,
        false,
    );
    assert_eq!(t.new_uncounted_failed, ["uid-bad"]);
}

#[test]
fn uncounted_pods_without_finalizers_move_into_the_counters() {
    let mut status = JobStatus {
        succeeded: Some(1),
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: Some(vec!["a".into(), "b".into()]),
            failed: Some(vec!["c".into()]),
        }),
        ..JobStatus::default()
    };
    assert!(clean_uncounted(
        &mut status,
        &HashSet::from(["b".to_string()])
    ));
    assert_eq!((status.succeeded, status.failed), (Some(2), Some(1)));
    let u = status.uncounted_terminated_pods.clone().unwrap_or_default();
    assert_eq!((u.succeeded, u.failed), (Some(vec!["b".to_string()]), None));
    assert!(!clean_uncounted(
        &mut status,
        &HashSet::from(["b".to_string()])
    ));
}

#[test]
fn ensure_condition_as_upstream() {
    let mut c = Vec::new();
    assert!(!ensure_condition(
        &mut c,
        SUSPENDED,
        "False",
        "JobResumed",
        "Job resumed",
        at(1)
    ));
    assert!(c.is_empty());
    assert!(ensure_condition(
        &mut c,
        SUSPENDED,
        "True",
        "JobSuspended",
        "Job suspended",
        at(1)
    ));
    assert!(!ensure_condition(
        &mut c,
        SUSPENDED,
        "True",
        "JobSuspended",
        "Job suspended",
        at(2)
    ));
    assert!(ensure_condition(
        &mut c,
        SUSPENDED,
        "False",
        "JobResumed",
        "Job resumed",
        at(3)
    ));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].last_transition_time, Some(Time(at(3))));
}

#[test]
fn deadlines_and_restart_backoff() {
    let mut j = job(|s| s.active_deadline_seconds = Some(10));
    assert_eq!(active_deadline_remaining(&j, at(100)), None, "not started");
    if let Some(s) = j.status.as_mut() {
        s.start_time = Some(Time(at(100)));
    }
    assert_eq!(
        active_deadline_remaining(&j, at(104)),
        Some(Duration::from_secs(6))
    );
    assert_eq!(active_deadline_remaining(&j, at(111)), Some(Duration::ZERO));
    if let Some(s) = j.spec.as_mut() {
        s.suspend = Some(true);
    }
    assert_eq!(active_deadline_remaining(&j, at(111)), None, "suspended");

    let on_failure = job(|s| {
        s.backoff_limit = Some(2);
        if let Some(p) = s.template.spec.as_mut() {
            p.restart_policy = Some("OnFailure".into());
        }
    });
    let mut restarting = (*pod(P {
        name: "r",
        exit: Some(1),
        ..BASE
    }))
    .clone();
    if let Some(s) = restarting.status.as_mut() {
        if let Some(c) = s.container_statuses.as_mut() {
            c[0].restart_count = 2;
        }
    }
    assert!(past_backoff_limit_on_failure(
        &on_failure,
        &[Arc::new(restarting.clone())]
    ));
    if let Some(s) = restarting.status.as_mut() {
        if let Some(c) = s.container_statuses.as_mut() {
            c[0].restart_count = 1;
        }
    }
    assert!(!past_backoff_limit_on_failure(
        &on_failure,
        &[Arc::new(restarting)]
    ));
}

#[test]
fn failed_indexes_with_backoff_limit_per_index() {
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        s.completions = Some(4);
        s.backoff_limit_per_index = Some(1);
    });
    let mut annotated = (*pod(P {
        name: "b",
        phase: "Failed",
        index: Some(1),
        ..BASE
    }))
    .clone();
    annotated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(INDEX_FAILURE_COUNT_ANNOTATION.into(), "1".into());
    let pods = vec![
        pod(P {
            name: "a",
            phase: "Failed",
            index: Some(0),
            ..BASE
        }),
        Arc::new(annotated.clone()),
    ];
    assert_eq!(calculate_failed_indexes(&j, &pods).to_string(), "1");
    let observed = Observed::new(&j, pods.clone(), HashSet::new());
    let delayed = pods_with_delayed_deletion_per_index(
        &j,
        &observed,
        &Intervals::default(),
        &Intervals::parse("1", 4),
        at(100),
    );
    assert_eq!(delayed.keys().copied().collect::<Vec<_>>(), [0]);
    let annotations = index_failure_annotations(&j, delayed.get(&0).map(|p| &**p));
    assert_eq!(
        annotations,
        [(INDEX_FAILURE_COUNT_ANNOTATION.to_string(), "1".to_string())]
    );
    assert_eq!(
        index_failure_annotations(&j, None),
        [(INDEX_FAILURE_COUNT_ANNOTATION.to_string(), "0".to_string())]
    );
}

fn condition(
    type_: &str,
    reason: &str,
    message: &str,
) -> k8s_openapi::api::batch::v1::JobCondition {
    new_condition(type_, "True", reason, message, at(10))
}

#[test]
fn decide_finish_in_upstreams_order() {
    let now = at(100);
    let failing = |exit| {
        pod(P {
            name: "x",
            phase: "Failed",
            exit: Some(exit),
            ..BASE
        })
    };
    let fail_job = PodFailurePolicy {
        rules: vec![exit_rule("FailJob", "In", vec![42])],
    };
    struct Case {
        name: &'static str,
        job: Job,
        pods: Vec<Arc<Pod>>,
        failed: i32,
        want: Option<(&'static str, &'static str)>,
        requeue: Option<u64>,
    }
    let with_status = |mut j: Job, f: &dyn Fn(&mut JobStatus)| {
        if let Some(s) = j.status.as_mut() {
            f(s);
        }
        j
    };
    let cases = vec![
        Case {
            name: "running",
            job: job(|_| {}),
            pods: vec![],
            failed: 0,
            want: None,
            requeue: None,
        },
        Case {
            name: "backoff limit",
            job: job(|s| s.backoff_limit = Some(1)),
            pods: vec![],
            failed: 2,
            want: Some((FAILURE_TARGET, REASON_BACKOFF_LIMIT_EXCEEDED)),
            requeue: None,
        },
        Case {
            name: "at the backoff limit",
            job: job(|s| s.backoff_limit = Some(1)),
            pods: vec![],
            failed: 1,
            want: None,
            requeue: None,
        },
        Case {
            name: "deadline passed",
            job: with_status(job(|s| s.active_deadline_seconds = Some(10)), &|s| {
                s.start_time = Some(Time(at(90)))
            }),
            pods: vec![],
            failed: 0,
            want: Some((FAILURE_TARGET, REASON_DEADLINE_EXCEEDED)),
            requeue: None,
        },
        Case {
            name: "deadline ahead",
            job: with_status(job(|s| s.active_deadline_seconds = Some(10)), &|s| {
                s.start_time = Some(Time(at(95)))
            }),
            pods: vec![],
            failed: 0,
            want: None,
            requeue: Some(5),
        },
        Case {
            name: "FailJob rule before the backoff limit",
            job: job(|s| {
                s.backoff_limit = Some(0);
                s.pod_failure_policy = Some(fail_job.clone());
            }),
            pods: vec![failing(42)],
            failed: 1,
            want: Some((FAILURE_TARGET, REASON_POD_FAILURE_POLICY)),
            requeue: None,
        },
        Case {
            name: "recorded FailureTarget becomes Failed",
            job: with_status(job(|_| {}), &|s| {
                s.conditions = Some(vec![condition(FAILURE_TARGET, "DeadlineExceeded", "m")])
            }),
            pods: vec![],
            failed: 0,
            want: Some((FAILED, REASON_DEADLINE_EXCEEDED)),
            requeue: None,
        },
        Case {
            name: "recorded SuccessCriteriaMet wins over failures",
            job: with_status(job(|s| s.backoff_limit = Some(0)), &|s| {
                s.conditions = Some(vec![condition(
                    SUCCESS_CRITERIA_MET,
                    "CompletionsReached",
                    "m",
                )])
            }),
            pods: vec![],
            failed: 3,
            want: Some((SUCCESS_CRITERIA_MET, REASON_COMPLETIONS_REACHED)),
            requeue: None,
        },
        Case {
            name: "max failed indexes",
            job: with_status(
                job(|s| {
                    s.completion_mode = Some("Indexed".into());
                    s.completions = Some(4);
                    s.backoff_limit_per_index = Some(0);
                    s.max_failed_indexes = Some(1);
                }),
                &|s| s.failed_indexes = Some("0,1".into()),
            ),
            pods: vec![],
            failed: 0,
            want: Some((FAILURE_TARGET, REASON_MAX_FAILED_INDEXES_EXCEEDED)),
            requeue: None,
        },
        Case {
            name: "every index done, some failed",
            job: with_status(
                job(|s| {
                    s.completion_mode = Some("Indexed".into());
                    s.completions = Some(2);
                    s.backoff_limit_per_index = Some(0);
                }),
                &|s| {
                    s.failed_indexes = Some("1".into());
                    s.completed_indexes = Some("0".into());
                },
            ),
            pods: vec![],
            failed: 0,
            want: Some((FAILURE_TARGET, REASON_FAILED_INDEXES)),
            requeue: None,
        },
        Case {
            name: "success policy",
            job: with_status(
                job(|s| {
                    s.completion_mode = Some("Indexed".into());
                    s.completions = Some(3);
                    s.success_policy = Some(SuccessPolicy {
                        rules: vec![SuccessPolicyRule {
                            succeeded_indexes: None,
                            succeeded_count: Some(1),
                        }],
                    });
                }),
                &|s| s.completed_indexes = Some("2".into()),
            ),
            pods: vec![],
            failed: 0,
            want: Some((SUCCESS_CRITERIA_MET, REASON_SUCCESS_POLICY)),
            requeue: None,
        },
    ];
    for c in cases {
        let observed = Observed::new(&c.job, c.pods.clone(), HashSet::new());
        let f = decide_finish(&c.job, &observed, 0, c.failed, now);
        let got = f
            .finished
            .as_ref()
            .map(|x| (x.type_.as_str(), x.reason.as_deref().unwrap_or_default()));
        assert_eq!(got, c.want, "{}", c.name);
        assert_eq!(f.requeue, c.requeue.map(Duration::from_secs), "{}", c.name);
    }
}

#[test]
fn the_final_condition_waits_for_uncounted_and_terminating_pods() {
    let complete = new_condition(COMPLETE, "True", "CompletionsReached", "m", at(5));
    let failed = new_condition(FAILED, "True", "BackoffLimitExceeded", "m", at(5));
    let uncounted = |failed: Vec<String>| JobStatus {
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: None,
            failed: Some(failed).filter(|f| !f.is_empty()),
        }),
        ..JobStatus::default()
    };
    let cases = [
        ("complete", uncounted(vec![]), &complete, 0, true, true),
        ("failed", uncounted(vec![]), &failed, 0, true, false),
        (
            "uncounted",
            uncounted(vec!["a".into()]),
            &failed,
            0,
            false,
            false,
        ),
        ("terminating", uncounted(vec![]), &complete, 1, false, false),
    ];
    for (name, mut status, c, terminating, done, completion_time) in cases {
        assert_eq!(
            enact_job_finished(&mut status, c, terminating, at(6)),
            done,
            "{name}"
        );
        assert_eq!(status.completion_time.is_some(), completion_time, "{name}");
        let types: Vec<String> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect();
        assert_eq!(types.len(), usize::from(done), "{name}");
    }
}

#[test]
fn per_index_backoff_holds_back_only_recently_failed_indexes() {
    let failed_at = |name, t| {
        pod(P {
            name,
            phase: "Failed",
            exit: Some(1),
            finished: Some(t),
            ..BASE
        })
    };
    let delayed: BTreeMap<i32, Arc<Pod>> =
        [(0, failed_at("a", 95)), (1, failed_at("b", 80))].into();
    // Index 0 failed 5 s ago (10 s backoff), index 1 20 s ago, index 2 never.
    assert_eq!(
        indexes_to_create_now(&[0, 1, 2], &delayed, at(100)),
        (vec![1, 2], None)
    );
    assert_eq!(
        indexes_to_create_now(&[0], &delayed, at(100)),
        (vec![], Some(Duration::from_secs(5)))
    );
}

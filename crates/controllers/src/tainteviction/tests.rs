use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::taint_eviction::*;
use super::timed_workers::{TimedWorkers, Work};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn taint(key: &str, added: Option<i64>) -> Taint {
    Taint {
        key: key.into(),
        effect: "NoExecute".into(),
        time_added: added.map(|s| Time(t(s))),
        ..Taint::default()
    }
}

fn tol(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        ..Toleration::default()
    }
}

const UR: &str = "node.kubernetes.io/unreachable";
const NR: &str = "node.kubernetes.io/not-ready";

#[test]
fn decisions() {
    let pending = |fire: i64| Work::Pending {
        created_at: t(0),
        fire_at: t(fire),
    };
    type Case = (
        &'static str,
        Vec<Toleration>,
        Vec<Taint>,
        Option<Work>,
        Decision,
    );
    let cases: Vec<Case> = vec![
        (
            "no taints: cancel",
            vec![],
            vec![],
            Some(pending(5)),
            Decision::Cancel,
        ),
        (
            "untolerated: now",
            vec![],
            vec![taint(UR, Some(0))],
            None,
            Decision::Schedule {
                created_at: t(10),
                fire_at: t(10),
            },
        ),
        (
            "untolerated, later pending: now",
            vec![],
            vec![taint(UR, Some(0))],
            Some(pending(50)),
            Decision::Schedule {
                created_at: t(10),
                fire_at: t(10),
            },
        ),
        (
            "untolerated, fired: keep",
            vec![],
            vec![taint(UR, Some(0))],
            Some(Work::Fired),
            Decision::Keep,
        ),
        (
            "tolerated 5 s: timeAdded + 5",
            vec![tol(UR, Some(5))],
            vec![taint(UR, Some(8))],
            None,
            Decision::Schedule {
                created_at: t(8),
                fire_at: t(13),
            },
        ),
        (
            "default 300 s",
            vec![tol(NR, Some(300)), tol(UR, Some(300))],
            vec![taint(UR, Some(8))],
            None,
            Decision::Schedule {
                created_at: t(8),
                fire_at: t(308),
            },
        ),
        (
            "forever: cancel",
            vec![tol(UR, None)],
            vec![taint(UR, Some(8))],
            Some(pending(20)),
            Decision::Cancel,
        ),
        (
            "earlier pending kept",
            vec![tol(UR, Some(5))],
            vec![taint(UR, Some(8))],
            Some(pending(12)),
            Decision::Keep,
        ),
        (
            "negative seconds: now",
            vec![tol(UR, Some(-1))],
            vec![taint(UR, Some(8))],
            None,
            Decision::Schedule {
                created_at: t(8),
                fire_at: t(8),
            },
        ),
        (
            "no timeAdded: from now",
            vec![tol(UR, Some(5))],
            vec![taint(UR, None)],
            None,
            Decision::Schedule {
                created_at: t(10),
                fire_at: t(15),
            },
        ),
        (
            "one of two taints untolerated: now",
            vec![tol(UR, Some(5))],
            vec![taint(UR, Some(8)), taint("x", Some(8))],
            None,
            Decision::Schedule {
                created_at: t(10),
                fire_at: t(10),
            },
        ),
        (
            "shortest toleration wins",
            vec![tol(UR, Some(50)), tol("x", Some(5))],
            vec![taint(UR, Some(8)), taint("x", Some(9))],
            None,
            Decision::Schedule {
                created_at: t(8),
                fire_at: t(13),
            },
        ),
    ];
    for (case, tols, taints, work, want) in cases {
        assert_eq!(decide(&tols, &taints, work.as_ref(), t(10)), want, "{case}");
    }
}

#[test]
fn min_toleration_time_as_upstream() {
    let a = tol(UR, Some(30));
    let b = tol(NR, None);
    assert_eq!(min_toleration_time(&[]), Some(Duration::ZERO));
    assert_eq!(
        min_toleration_time(&[&a, &b]),
        Some(Duration::from_secs(30))
    );
    assert_eq!(min_toleration_time(&[&b]), None);
}

#[test]
fn timed_workers_fire_once_and_cancel_only_pending() {
    let mut w = TimedWorkers::default();
    w.schedule("ns/a", t(0), t(5));
    w.schedule("ns/b", t(0), t(9));
    assert_eq!(w.next_due(), Some(t(5)));
    assert!(w.take_due(t(4)).is_empty());
    assert_eq!(w.take_due(t(5)), ["ns/a"]);
    assert!(w.take_due(t(6)).is_empty());
    assert_eq!(w.get("ns/a"), Some(&Work::Fired));
    assert!(!w.cancel("ns/a"));
    assert!(w.cancel("ns/b"));
    assert!(!w.cancel("ns/b"));
    assert_eq!(w.next_due(), None);
}

#[test]
fn disruption_target_condition() {
    let p = disruption_target_patch(&Pod::default(), t(3)).expect("patch");
    let c = &p["status"]["conditions"][0];
    assert_eq!(c["type"], "DisruptionTarget");
    assert_eq!(c["reason"], "DeletionByTaintManager");
    assert_eq!(
        c["message"],
        "Taint manager: deleting due to NoExecute taint"
    );
    let pod = Pod {
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some(REASON.into()),
                message: Some(MESSAGE.into()),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    assert!(disruption_target_patch(&pod, t(3)).is_none());
}

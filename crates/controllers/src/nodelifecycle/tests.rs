use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodStatus, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::health::*;
use super::pods::not_ready_status;
use super::scheduler::{Outcome, RateLimitedTimedQueue};
use super::taints::*;
use super::zone::*;

const GRACE: Duration = Duration::from_secs(40);
const STARTUP: Duration = Duration::from_secs(60);

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn cond(kind: &str, status: &str, heartbeat: i64, transition: i64) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some("KubeletReady".into()),
        message: Some("kubelet is posting ready status".into()),
        last_heartbeat_time: Some(Time(t(heartbeat))),
        last_transition_time: Some(Time(t(transition))),
    }
}

fn node(conditions: Vec<NodeCondition>, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            uid: Some("u1".into()),
            creation_timestamp: Some(Time(t(0))),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(conditions),
            ..NodeStatus::default()
        }),
    }
}

fn healthy() -> Vec<NodeCondition> {
    vec![
        cond("MemoryPressure", "False", 0, 0),
        cond("DiskPressure", "False", 0, 0),
        cond("PIDPressure", "False", 0, 0),
        cond("Ready", "True", 0, 0),
    ]
}

fn saved(status: NodeStatus, probe: i64, lease: Option<i64>) -> NodeHealth {
    NodeHealth {
        status,
        probe_timestamp: t(probe),
        ready_transition_timestamp: t(0),
        lease_renew_time: lease.map(t),
    }
}

#[test]
fn health_timeline() {
    let n = node(healthy(), vec![]);
    let status = n.status.clone().unwrap_or_default();
    // (case, lease renew, saved, now, probe after, conditions go Unknown)
    // (case, lease renew, saved, now, probe after, conditions go Unknown)
    type Case = (
        &'static str,
        Option<i64>,
        Option<NodeHealth>,
        i64,
        i64,
        bool,
    );
    let cases: Vec<Case> = vec![
        ("first look: probe now", Some(1), None, 5, 5, false),
        (
            "lease renewed: probe moves",
            Some(30),
            Some(saved(status.clone(), 5, Some(20))),
            35,
            35,
            false,
        ),
        (
            "lease not renewed, in grace",
            Some(20),
            Some(saved(status.clone(), 5, Some(20))),
            45,
            5,
            false,
        ),
        (
            "lease not renewed past grace",
            Some(20),
            Some(saved(status.clone(), 5, Some(20))),
            46,
            5,
            true,
        ),
        (
            "no lease at all past grace",
            None,
            Some(saved(status.clone(), 5, None)),
            46,
            5,
            true,
        ),
        (
            "renewed just now after a long gap",
            Some(100),
            Some(saved(status.clone(), 5, Some(20))),
            100,
            100,
            false,
        ),
    ];
    for (case, lease, prev, now, probe, unknown) in cases {
        let u = try_update_node_health(&n, lease.map(t), prev.as_ref(), t(now), GRACE, STARTUP);
        assert_eq!(u.health.probe_timestamp, t(probe), "{case}");
        assert_eq!(u.new_status.is_some(), unknown, "{case}");
        assert_eq!(u.grace_period, GRACE, "{case}");
        assert_eq!(u.observed_ready.status, "True", "{case}");
    }
}

#[test]
fn stale_node_goes_unknown_with_upstreams_reason_and_transition_times() {
    let mut conditions = healthy();
    // Already Unknown conditions keep their reason and transition time.
    conditions[2] = cond("PIDPressure", "Unknown", 0, 3);
    conditions[2].reason = Some("Other".into());
    let n = node(conditions, vec![]);
    let prev = saved(n.status.clone().unwrap_or_default(), 5, Some(5));
    let u = try_update_node_health(&n, Some(t(5)), Some(&prev), t(50), GRACE, STARTUP);
    let status = u.new_status.clone().expect("status written");
    let ready = condition(&status, "Ready").expect("ready");
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    assert_eq!(ready.last_transition_time, Some(Time(t(50))));
    // The heartbeat stays the agent's.
    assert_eq!(ready.last_heartbeat_time, Some(Time(t(0))));
    for kind in ["MemoryPressure", "DiskPressure"] {
        let c = condition(&status, kind).expect(kind);
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("Unknown", Some(REASON_UNKNOWN))
        );
    }
    let pid = condition(&status, "PIDPressure").expect("pid");
    assert_eq!(pid.reason.as_deref(), Some("Other"));
    assert_eq!(pid.last_transition_time, Some(Time(t(3))));
    assert_eq!(
        u.current_ready.as_ref().map(|c| c.status.as_str()),
        Some("Unknown")
    );
    let after = written(&u, t(50));
    assert_eq!(after.ready_transition_timestamp, t(50));
    assert_eq!(after.probe_timestamp, t(5));
    // The next pass sees Unknown already: nothing more to write.
    let mut n2 = n.clone();
    n2.status = Some(status);
    let u2 = try_update_node_health(&n2, Some(t(5)), Some(&after), t(55), GRACE, STARTUP);
    assert!(u2.new_status.is_none());
    assert_eq!(u2.observed_ready.status, "Unknown");
}

#[test]
fn never_posted_node_waits_the_startup_grace_from_creation() {
    let n = node(vec![], vec![]);
    let u = try_update_node_health(&n, None, None, t(59), GRACE, STARTUP);
    assert!(u.new_status.is_none());
    assert!(u.current_ready.is_none());
    assert_eq!(u.grace_period, STARTUP);
    assert_eq!(u.health.probe_timestamp, t(0));
    let u = try_update_node_health(&n, None, Some(&u.health), t(61), GRACE, STARTUP);
    let status = u.new_status.expect("written");
    assert_eq!(status.conditions.as_ref().map(Vec::len), Some(4));
    for kind in UNKNOWN_CONDITIONS {
        let c = condition(&status, kind).expect(kind);
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason.as_deref(), Some(REASON_NEVER_UPDATED));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
        assert_eq!(c.last_heartbeat_time, Some(Time(t(0))));
        assert_eq!(c.last_transition_time, Some(Time(t(61))));
    }
    // A lease renewed by an agent that never posted status keeps the node in grace.
    let u = try_update_node_health(&n, Some(t(70)), None, t(75), GRACE, STARTUP);
    assert!(u.new_status.is_none());
}

#[test]
fn heartbeat_change_moves_probe_and_transition_only_on_a_new_transition() {
    let old = node(healthy(), vec![]);
    let prev = saved(old.status.clone().unwrap_or_default(), 5, None);
    let mut beat = healthy();
    beat[3] = cond("Ready", "True", 30, 0);
    let u = try_update_node_health(
        &node(beat, vec![]),
        None,
        Some(&prev),
        t(31),
        GRACE,
        STARTUP,
    );
    assert_eq!(
        (
            u.health.probe_timestamp,
            u.health.ready_transition_timestamp
        ),
        (t(31), t(0))
    );
    let mut flip = healthy();
    flip[3] = cond("Ready", "False", 30, 30);
    let u = try_update_node_health(
        &node(flip, vec![]),
        None,
        Some(&prev),
        t(31),
        GRACE,
        STARTUP,
    );
    assert_eq!(
        (
            u.health.probe_timestamp,
            u.health.ready_transition_timestamp
        ),
        (t(31), t(31))
    );
    assert_eq!(u.observed_ready.status, "False");
}

#[test]
fn taint_base_eviction_table() {
    let c = |s: &str| cond("Ready", s, 0, 0);
    let ur = unreachable_no_execute();
    let nr = not_ready_no_execute();
    let cases = vec![
        (
            "unknown, untainted: queue",
            vec![],
            "Unknown",
            Some(EvictionAction::Queue { forget_first: true }),
        ),
        (
            "unknown, tainted: queue (no-op)",
            vec![ur.clone()],
            "Unknown",
            Some(EvictionAction::Queue {
                forget_first: false,
            }),
        ),
        (
            "unknown, not-ready taint: swap now",
            vec![nr.clone()],
            "Unknown",
            Some(EvictionAction::Swap {
                add: ur.clone(),
                remove: nr.clone(),
            }),
        ),
        (
            "false, unreachable taint: swap now",
            vec![ur.clone()],
            "False",
            Some(EvictionAction::Swap {
                add: nr.clone(),
                remove: ur.clone(),
            }),
        ),
        (
            "false, untainted: queue",
            vec![],
            "False",
            Some(EvictionAction::Queue { forget_first: true }),
        ),
        (
            "ready: reachable",
            vec![ur.clone()],
            "True",
            Some(EvictionAction::MarkReachable),
        ),
    ];
    for (case, taints, status, want) in cases {
        assert_eq!(
            taint_base_eviction(&node(healthy(), taints), &c(status)),
            want,
            "{case}"
        );
    }
}

#[test]
fn swap_is_one_write_and_keeps_time_added() {
    let mut old = not_ready_no_execute();
    old.time_added = Some(Time(t(1)));
    let other = taint("example.com/x", "NoSchedule");
    let out = swap(
        &[old.clone(), other.clone()],
        &[unreachable_no_execute()],
        &[not_ready_no_execute()],
        t(9),
    )
    .expect("changed");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], other);
    assert_eq!(out[1].key, UNREACHABLE);
    assert_eq!(out[1].time_added, Some(Time(t(9))));
    // Adding a taint that is there changes nothing (its timeAdded stays).
    assert!(swap(&[old.clone()], &[not_ready_no_execute()], &[], t(9)).is_none());
    assert!(swap(&[], &[], &[unreachable_no_execute()], t(9)).is_none());
}

#[test]
fn no_schedule_taints_follow_conditions_and_cordon() {
    let keys = |v: &[Taint]| v.iter().map(|t| t.key.clone()).collect::<Vec<_>>();
    let mut conditions = healthy();
    conditions[0] = cond("MemoryPressure", "True", 0, 0);
    conditions[3] = cond("Ready", "Unknown", 0, 0);
    conditions.push(cond("NetworkUnavailable", "True", 0, 0));
    let mut n = node(
        conditions,
        vec![
            taint(DISK_PRESSURE, NO_SCHEDULE),
            taint("mine", NO_SCHEDULE),
        ],
    );
    if let Some(s) = n.spec.as_mut() {
        s.unschedulable = Some(true);
    }
    let (add, remove) = no_schedule_diff(&n);
    assert_eq!(
        keys(&add),
        [
            MEMORY_PRESSURE,
            UNREACHABLE,
            NETWORK_UNAVAILABLE,
            UNSCHEDULABLE
        ]
    );
    assert!(add.iter().all(|t| t.effect == NO_SCHEDULE));
    assert_eq!(keys(&remove), [DISK_PRESSURE]);
    // Uncordoned and healthy: the unschedulable and condition taints go, others stay.
    let n = node(
        healthy(),
        vec![
            taint(UNSCHEDULABLE, NO_SCHEDULE),
            taint(UNREACHABLE, NO_EXECUTE),
            taint("mine", NO_SCHEDULE),
        ],
    );
    let (add, remove) = no_schedule_diff(&n);
    assert!(add.is_empty());
    assert_eq!(keys(&remove), [UNSCHEDULABLE]);
    let mut n = node(
        vec![cond("Ready", "False", 0, 0)],
        vec![taint(NOT_READY, NO_SCHEDULE)],
    );
    if let Some(s) = n.spec.as_mut() {
        s.unschedulable = Some(false);
    }
    assert_eq!(no_schedule_diff(&n), (vec![], vec![]));
}

#[test]
fn zone_states_and_rates() {
    let r = |s: &str| Some(cond("Ready", s, 0, 0));
    let cases: Vec<(Vec<Option<NodeCondition>>, ZoneState)> = vec![
        (vec![r("True"), r("Unknown")], ZoneState::Normal),
        (vec![r("Unknown"), None], ZoneState::FullDisruption),
        (
            vec![r("True"), r("False"), r("Unknown"), r("Unknown")],
            ZoneState::PartialDisruption,
        ),
        (
            vec![r("True"), r("True"), r("False"), r("Unknown"), r("Unknown")],
            ZoneState::PartialDisruption,
        ),
        (
            vec![
                r("True"),
                r("True"),
                r("True"),
                r("Unknown"),
                r("Unknown"),
                r("Unknown"),
            ],
            ZoneState::Normal,
        ),
    ];
    for (i, (conds, want)) in cases.into_iter().enumerate() {
        assert_eq!(compute_zone_state(&conds, 0.55).1, want, "case {i}");
    }
    let rates = Rates {
        eviction: 0.1,
        secondary: 0.01,
        large_cluster_threshold: 50,
        unhealthy_zone_threshold: 0.55,
    };
    assert_eq!(
        zone_qps(ZoneState::PartialDisruption, 51, &rates),
        Some(0.01)
    );
    assert_eq!(
        zone_qps(ZoneState::PartialDisruption, 50, &rates),
        Some(0.0)
    );
    assert_eq!(zone_qps(ZoneState::FullDisruption, 3, &rates), Some(0.1));

    // Two zones, one fully down: normal rates. Both down: master disruption.
    let zones = |a: &str, b: &str| {
        BTreeMap::from([("a".to_string(), vec![r(a)]), ("b".to_string(), vec![r(b)])])
    };
    let plan = handle_disruption(&BTreeMap::new(), &zones("True", "Unknown"), &rates);
    assert_eq!(plan.states["a"], ZoneState::Normal);
    assert_eq!(plan.states["b"], ZoneState::FullDisruption);
    assert!(!plan.mark_all_reachable);
    assert_eq!(plan.limiters, vec![("a".into(), 0.1), ("b".into(), 0.1)]);
    let plan = handle_disruption(&plan.states, &zones("Unknown", "Unknown"), &rates);
    assert!(plan.mark_all_reachable);
    assert_eq!(plan.limiters, vec![("a".into(), 0.0), ("b".into(), 0.0)]);
    let again = handle_disruption(&plan.states, &zones("Unknown", "Unknown"), &rates);
    assert_eq!(
        again,
        DisruptionPlan {
            states: plan.states.clone(),
            ..DisruptionPlan::default()
        }
    );
    let back = handle_disruption(&plan.states, &zones("True", "Unknown"), &rates);
    assert!(back.reset_probes);
    assert_eq!(back.limiters, vec![("a".into(), 0.1), ("b".into(), 0.1)]);
}

#[test]
fn zone_key_from_labels() {
    let mut n = node(vec![], vec![]);
    assert_eq!(zone_key(&n), "");
    n.metadata.labels = Some(BTreeMap::from([
        ("topology.kubernetes.io/zone".to_string(), "z1".to_string()),
        (
            "failure-domain.beta.kubernetes.io/region".to_string(),
            "r".to_string(),
        ),
    ]));
    assert_eq!(zone_key(&n), "r:\0:z1");
}

#[test]
fn tainting_queue_is_rate_limited_and_unique() {
    let mut q = RateLimitedTimedQueue::new(0.1);
    assert!(q.add("a", "1", t(0)));
    assert!(q.add("b", "2", t(0)));
    assert!(!q.add("a", "1", t(0)));
    let mut done = Vec::new();
    q.try_process(t(0), |v| {
        done.push(v.value.clone());
        Outcome::Done
    });
    // Burst 1: one node now, the next after 10 s at 0.1/s.
    assert_eq!(done, ["a"]);
    q.try_process(t(5), |v| {
        done.push(v.value.clone());
        Outcome::Done
    });
    assert_eq!(done, ["a"]);
    q.try_process(t(10), |v| {
        done.push(v.value.clone());
        Outcome::Done
    });
    assert_eq!(done, ["a", "b"]);
    // Processed values are remembered until removed.
    assert!(!q.add("a", "1", t(11)));
    assert!(q.remove("a"));
    assert!(q.add("a", "1", t(11)));
    // Rate 0 stops everything.
    q.swap_limiter(0.0, t(30));
    q.try_process(t(40), |_| Outcome::Done);
    assert_eq!(q.queued().count(), 1);
    // Leaving rate 0 starts with an empty bucket (upstream drains the new limiter when the
    // old one had no token). Retry puts the value back later.
    q.swap_limiter(1.0, t(40));
    q.try_process(t(40), |_| Outcome::Done);
    assert_eq!(q.queued().count(), 1);
    let mut calls = 0;
    q.try_process(t(41), |_| {
        calls += 1;
        Outcome::Retry(Duration::from_secs(5))
    });
    assert_eq!(calls, 1);
    assert_eq!(q.queued().next().map(|v| v.process_at > t(46)), Some(true));
}

#[test]
fn pods_marked_not_ready_as_upstream() {
    let pod = |status: &str| Pod {
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: status.into(),
                last_transition_time: Some(Time(t(1))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let s = not_ready_status(&pod("True"), t(9)).expect("changed");
    let c = &s.conditions.expect("conditions")[0];
    assert_eq!(
        (c.status.as_str(), c.last_transition_time.clone()),
        ("False", Some(Time(t(9))))
    );
    assert!(not_ready_status(&pod("False"), t(9)).is_none());
    assert!(not_ready_status(&Pod::default(), t(9)).is_none());
}

//! Tests for the loop's pure parts: the queue, the event routing predicates, decisions with
//! assumed bindings, the condition patch and event aggregation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodSchedulingGate, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::testutil::*;
use crate::*;

fn named(name: &str, priority: i32, created_secs: i64) -> Pod {
    let mut p = pod_req(&[]);
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("ns".into());
    p.metadata.creation_timestamp = Some(Time(
        Timestamp::from_second(1_700_000_000 + created_secs).unwrap_or(Timestamp::UNIX_EPOCH),
    ));
    if let Some(s) = p.spec.as_mut() {
        s.priority = Some(priority);
    }
    p
}

fn pop_all(q: &mut Queue, now: Instant) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(p) = q.pop(now) {
        let key = pod_key(&p);
        q.done(&key);
        out.push(p.metadata.name.clone().unwrap_or_default());
    }
    out
}

#[test]
fn queue_orders_by_priority_then_creation_then_arrival() {
    let mut q = Queue::new(QueueConfig::default());
    for (name, prio, created) in [
        ("low-old", 0, 1),
        ("high-new", 100, 9),
        ("low-new", 0, 5),
        ("high-old", 100, 2),
        ("neg", -5, 0),
        ("low-new-twin", 0, 5),
    ] {
        q.add_or_update(Arc::new(named(name, prio, created)));
    }
    assert_eq!(
        pop_all(&mut q, Instant::now()),
        [
            "high-old",
            "high-new",
            "low-old",
            "low-new",
            "low-new-twin",
            "neg"
        ]
    );
    assert!(q.is_empty());
}

#[test]
fn unschedulable_pods_wait_for_a_cluster_change() {
    let now = Instant::now();
    let mut q = Queue::new(QueueConfig::default());
    q.add_or_update(Arc::new(named("a", 0, 0)));
    let p = q.pop(now).map(|p| pod_key(&p));
    assert_eq!(p.as_deref(), Some("ns/a"));
    q.unschedulable("ns/a", now);
    assert_eq!(q.state("ns/a"), Some(PodState::Unschedulable(now)));
    assert!(!q.has_ready(now + Duration::from_secs(60)));
    assert!(q.pop(now + Duration::from_secs(60)).is_none());

    // Its own status update (PodScheduled=False) must not wake it.
    let mut with_status = named("a", 0, 0);
    with_status.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    q.add_or_update(Arc::new(with_status));
    assert_eq!(q.state("ns/a"), Some(PodState::Unschedulable(now)));

    // A node change does.
    q.move_all_unschedulable();
    assert_eq!(q.state("ns/a"), Some(PodState::Active));
    assert_eq!(pop_all(&mut q, now), ["a"]);
}

#[test]
fn spec_or_label_update_wakes_an_unschedulable_pod() {
    let now = Instant::now();
    let mut q = Queue::new(QueueConfig::default());
    q.add_or_update(Arc::new(named("a", 0, 0)));
    q.pop(now);
    q.unschedulable("ns/a", now);
    let tolerating = with_spec(named("a", 0, 0), |s| {
        s.tolerations = Some(vec![toleration("k", "Exists", "", "")])
    });
    q.add_or_update(Arc::new(tolerating));
    assert_eq!(q.state("ns/a"), Some(PodState::Active));
    q.pop(now);
    q.unschedulable("ns/a", now);
    let mut relabelled = named("a", 0, 0);
    relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    q.add_or_update(Arc::new(relabelled));
    assert_eq!(q.state("ns/a"), Some(PodState::Active));
}

#[test]
fn cluster_change_during_an_attempt_retries_at_once() {
    let now = Instant::now();
    let mut q = Queue::new(QueueConfig::default());
    q.add_or_update(Arc::new(named("a", 0, 0)));
    q.pop(now);
    q.move_all_unschedulable(); // a node appeared while "a" was being scheduled
    q.unschedulable("ns/a", now);
    assert_eq!(q.state("ns/a"), Some(PodState::Active));
}

#[test]
fn unschedulable_pods_are_flushed_after_five_minutes() {
    let now = Instant::now();
    let mut q = Queue::new(QueueConfig::default());
    q.add_or_update(Arc::new(named("a", 0, 0)));
    q.pop(now);
    q.unschedulable("ns/a", now);
    q.flush_unschedulable(now + Duration::from_secs(299));
    assert_eq!(q.state("ns/a"), Some(PodState::Unschedulable(now)));
    q.flush_unschedulable(now + Duration::from_secs(300));
    assert_eq!(q.state("ns/a"), Some(PodState::Active));
}

#[test]
fn errors_back_off_doubling_to_ten_seconds() {
    let c = QueueConfig::default();
    let secs: Vec<u64> = (1..=6).map(|a| backoff_duration(&c, a).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 10, 10]);

    let t0 = Instant::now();
    let mut q = Queue::new(c);
    q.add_or_update(Arc::new(named("a", 0, 0)));
    q.add_or_update(Arc::new(named("b", 0, 1)));
    assert!(q.pop(t0).is_some_and(|p| pod_key(&p) == "ns/a"));
    q.failed("ns/a", t0);
    assert_eq!(q.attempts("ns/a"), 1);
    assert_eq!(q.next_backoff_expiry(), Some(t0 + Duration::from_secs(1)));
    // While "a" backs off, "b" goes first.
    assert!(q.pop(t0).is_some_and(|p| pod_key(&p) == "ns/b"));
    q.done("ns/b");
    assert!(!q.has_ready(t0 + Duration::from_millis(999)));
    assert!(q.has_ready(t0 + Duration::from_secs(1)));
    let t1 = t0 + Duration::from_secs(1);
    assert!(q.pop(t1).is_some());
    q.failed("ns/a", t1);
    assert_eq!(q.next_backoff_expiry(), Some(t1 + Duration::from_secs(2)));
    // Deleting a backing-off pod forgets it entirely.
    q.remove("ns/a");
    assert_eq!(q.next_backoff_expiry(), None);
    assert!(q.is_empty());
}

#[test]
fn outcomes_for_removed_pods_are_ignored() {
    let now = Instant::now();
    let mut q = Queue::new(QueueConfig::default());
    q.add_or_update(Arc::new(named("a", 0, 0)));
    q.pop(now);
    q.remove("ns/a"); // deleted while in flight
    q.unschedulable("ns/a", now);
    q.failed("ns/a", now);
    assert!(q.is_empty());
    assert_eq!(q.next_backoff_expiry(), None);
}

#[test]
fn retain_drops_pods_a_relist_no_longer_shows() {
    let mut q = Queue::new(QueueConfig::default());
    q.add_or_update(Arc::new(named("a", 0, 0)));
    q.add_or_update(Arc::new(named("b", 0, 0)));
    q.retain(|k| k == "ns/b");
    assert_eq!(pop_all(&mut q, Instant::now()), ["b"]);
}

#[test]
fn which_pods_need_scheduling() {
    let base = named("a", 0, 0);
    assert!(needs_scheduling(&base, DEFAULT_SCHEDULER_NAME));
    assert!(!needs_scheduling(&base, "other-scheduler"));
    let cases: Vec<(&str, Pod)> = vec![
        (
            "assigned",
            with_spec(base.clone(), |s| s.node_name = Some("n1".into())),
        ),
        (
            "other scheduler",
            with_spec(base.clone(), |s| s.scheduler_name = Some("mine".into())),
        ),
        (
            "gated",
            with_spec(base.clone(), |s| {
                s.scheduling_gates = Some(vec![PodSchedulingGate { name: "g".into() }])
            }),
        ),
        ("terminal", {
            let mut p = base.clone();
            p.status = Some(PodStatus {
                phase: Some("Succeeded".into()),
                ..Default::default()
            });
            p
        }),
        ("deleting", {
            let mut p = base.clone();
            p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
            p
        }),
    ];
    for (what, p) in cases {
        assert!(!needs_scheduling(&p, DEFAULT_SCHEDULER_NAME), "{what}");
    }
    let explicit = with_spec(base, |s| {
        s.scheduler_name = Some(DEFAULT_SCHEDULER_NAME.into())
    });
    assert!(needs_scheduling(&explicit, DEFAULT_SCHEDULER_NAME));
}

#[test]
fn node_changes_that_may_help() {
    let n = big_node("n1");
    assert!(node_change_may_help(None, &n));
    let mut heartbeat = n.clone();
    heartbeat.metadata.resource_version = Some("99".into());
    if let Some(s) = heartbeat.status.as_mut() {
        s.conditions = Some(vec![]);
    }
    assert!(!node_change_may_help(Some(&n), &heartbeat));
    assert!(node_change_may_help(
        Some(&n),
        &labelled(n.clone(), &[("disktype", "ssd")])
    ));
    assert!(node_change_may_help(
        Some(&tainted(n.clone(), &[("k", "v", "NoSchedule")])),
        &n
    ));
    let mut uncordoned = n.clone();
    let mut cordoned = n.clone();
    if let (Some(a), Some(b)) = (uncordoned.spec.as_mut(), cordoned.spec.as_mut()) {
        a.unschedulable = Some(false);
        b.unschedulable = Some(true);
    }
    assert!(node_change_may_help(Some(&cordoned), &uncordoned));
    assert!(!node_change_may_help(Some(&n), &uncordoned)); // unset == false
    assert!(node_change_may_help(
        Some(&n),
        &node("n1", &[("cpu", "8"), ("memory", "8Gi"), ("pods", "110")])
    ));
}

#[test]
fn assigned_pods_freeing_room() {
    let bound = with_spec(named("a", 0, 0), |s| s.node_name = Some("n1".into()));
    let mut done = bound.clone();
    done.status = Some(PodStatus {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    assert!(assigned_pod_freed(Some(&bound), None));
    assert!(assigned_pod_freed(Some(&bound), Some(&done)));
    assert!(!assigned_pod_freed(Some(&bound), Some(&bound)));
    assert!(!assigned_pod_freed(Some(&done), None)); // already counted as gone
    assert!(!assigned_pod_freed(Some(&named("u", 0, 0)), None));
    assert!(!assigned_pod_freed(None, Some(&bound)));
}

fn arcs<T>(v: Vec<T>) -> Vec<Arc<T>> {
    v.into_iter().map(Arc::new).collect()
}

fn small_node(name: &str, pods: &str) -> Node {
    node(name, &[("cpu", "4"), ("memory", "8Gi"), ("pods", pods)])
}

#[test]
fn assumed_bindings_count_until_the_watch_shows_them() {
    let nodes = arcs(vec![small_node("n1", "2")]);
    let a = named("a", 0, 0);
    let b = named("b", 0, 0);
    let c = named("c", 0, 0);
    let mut assumed = Assumed::default();
    // a and b were bound by us; the watch has not shown either yet.
    assumed.assume(&a, "n1");
    assumed.assume(&b, "n1");
    let pods = arcs(vec![a.clone(), b.clone(), c.clone()]);
    let infos = node_infos(&nodes, &pods, &assumed);
    assert_eq!(infos[0].pod_count, 2);
    assert_eq!(
        decide(&c, &nodes, &pods, &assumed),
        Decision::Unschedulable {
            message: "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are \
                      available: 1 No preemption victims found for incoming pod.."
                .into()
        }
    );
    // The watch now shows a bound: it is counted once, not twice.
    let a_bound = with_spec(a, |s| s.node_name = Some("n1".into()));
    let pods = arcs(vec![a_bound, b.clone(), c.clone()]);
    assert_eq!(node_infos(&nodes, &pods, &assumed)[0].pod_count, 2);
    // b's binding failed: forgotten, room again.
    assumed.forget("ns/b");
    assert_eq!(
        decide(&c, &nodes, &pods, &assumed),
        Decision::Bind { node: "n1".into() }
    );
}

#[test]
fn burst_spreads_without_overcommit() {
    // 20 pods onto two nodes of 10 pods each, deciding back to back before any watch
    // event arrives: the assumed bindings alone keep every node within its allocatable.
    let nodes = arcs(vec![small_node("n1", "10"), small_node("n2", "10")]);
    let pods: Vec<Pod> = (0..21).map(|i| named(&format!("p{i}"), 0, 0)).collect();
    let all = arcs(pods.clone());
    let mut assumed = Assumed::default();
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for p in &pods[..20] {
        match decide(p, &nodes, &all, &assumed) {
            Decision::Bind { node } => {
                assumed.assume(p, &node);
                *per_node.entry(node).or_default() += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(per_node, [("n1".into(), 10), ("n2".into(), 10)].into());
    assert!(matches!(
        decide(&pods[20], &nodes, &all, &assumed),
        Decision::Unschedulable { .. }
    ));
}

#[test]
fn decide_ignores_unassigned_terminal_and_unknown_node_pods() {
    let nodes = arcs(vec![small_node("n1", "1")]);
    let mut finished = with_spec(named("f", 0, 0), |s| s.node_name = Some("n1".into()));
    finished.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    let elsewhere = with_spec(named("e", 0, 0), |s| s.node_name = Some("gone".into()));
    let pending = named("w", 0, 0);
    let pods = arcs(vec![finished, elsewhere, pending]);
    assert_eq!(
        decide(&named("x", 0, 0), &nodes, &pods, &Assumed::default()),
        Decision::Bind { node: "n1".into() }
    );
    assert_eq!(
        decide(&named("x", 0, 0), &[], &pods, &Assumed::default()),
        Decision::Unschedulable {
            message: NO_NODES_AVAILABLE.into()
        }
    );
}

#[test]
fn condition_patch_only_when_it_changes() {
    let now = Timestamp::from_second(1_700_000_100).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut p = named("a", 0, 0);
    p.metadata.resource_version = Some("42".into());
    let patch = unschedulable_condition_patch(&p, "msg", now);
    let expected = serde_json::json!({
        "metadata": {"resourceVersion": "42"},
        "status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "msg", "lastProbeTime": null,
            "lastTransitionTime": "2023-11-14T22:15:00Z",
        }]},
    });
    assert_eq!(patch, Some(expected));

    let earlier = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("msg".into()),
            last_transition_time: Some(Time(earlier)),
            ..Default::default()
        }]),
        ..Default::default()
    });
    assert_eq!(unschedulable_condition_patch(&p, "msg", now), None);
    // A new message keeps the transition time: the status did not change.
    let patch = unschedulable_condition_patch(&p, "other", now).unwrap_or_default();
    assert_eq!(
        patch["status"]["conditions"][0]["lastTransitionTime"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(patch["status"]["conditions"][0]["message"], "other");
}

#[test]
fn scheduled_event_matches_upstream() {
    let mut p = named("nginx", 0, 0);
    p.metadata.uid = Some("u-1".into());
    p.metadata.resource_version = Some("7".into());
    let msg = scheduled_message("default", "nginx", "node-1");
    assert_eq!(msg, "Successfully assigned default/nginx to node-1");
    let now = Timestamp::from_second(1).unwrap_or(Timestamp::UNIX_EPOCH);
    let source = event_source("default-scheduler-host");
    let ev = record::make_event(
        &source,
        &record::object_reference(&p),
        record::EventType::Normal,
        REASON_SCHEDULED,
        &msg,
        Some("Binding"),
        now,
    );
    assert_eq!(ev.metadata.name.as_deref(), Some("nginx.3b9aca00"));
    assert_eq!(ev.metadata.namespace.as_deref(), Some("ns"));
    let obj = &ev.involved_object;
    assert_eq!(
        (
            obj.api_version.as_deref(),
            obj.kind.as_deref(),
            obj.uid.as_deref(),
            obj.resource_version.as_deref()
        ),
        (Some("v1"), Some("Pod"), Some("u-1"), Some("7"))
    );
    let src = ev.source.clone().unwrap_or_default();
    assert_eq!(
        (src.component.as_deref(), src.host.as_deref()),
        (Some("default-scheduler"), None)
    );
    assert_eq!(ev.reporting_component.as_deref(), Some("default-scheduler"));
    assert_eq!(
        ev.reporting_instance.as_deref(),
        Some("default-scheduler-host")
    );
    assert_eq!(ev.action.as_deref(), Some("Binding"));
    assert_eq!(
        (ev.count, ev.type_.as_deref(), ev.reason.as_deref()),
        (Some(1), Some("Normal"), Some("Scheduled"))
    );
    assert!(ev.first_timestamp.is_some() && ev.last_timestamp.is_some());
    assert!(ev.event_time.is_none());
}

//! Table-driven tests of the DaemonSet controller's decisions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    NodeSpec, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str, node_labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(node_labels)),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(key, effect)| Taint {
                        key: key.to_string(),
                        effect: effect.to_string(),
                        ..Taint::default()
                    })
                    .collect(),
            ),
            ..NodeSpec::default()
        }),
        status: None,
    })
}

fn ds_with(spec: PodSpec) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("d".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-d".into()),
            generation: Some(1),
            annotations: Some(labels(&[("deprecated.daemonset.template.generation", "2")])),
            ..ObjectMeta::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "d")])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "d")])),
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}

fn ds() -> DaemonSet {
    ds_with(PodSpec::default())
}

fn with_surge(mut ds: DaemonSet, surge: i32) -> DaemonSet {
    ds.spec.update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(surge)),
        }),
    });
    ds
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + seconds)
}

/// A daemon pod on `node_name` (bound), of revision `hash`, created at `created`, in
/// `phase`, ready since `created` when `ready`.
fn pod(
    name: &str,
    node_name: &str,
    hash: &str,
    created: i64,
    phase: &str,
    ready: bool,
) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some(labels(&[("app", "d"), (REVISION_HASH_LABEL, hash)])),
            creation_timestamp: Some(Time(at(created))),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node_name.into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(at(created))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    })
}

fn by_node(pods: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    nodes_to_daemon_pods(pods)
}

#[test]
fn which_nodes_run_the_daemon_pod() {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    let affinity = |op: &str, values: &[&str]| Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "zone".into(),
                        operator: op.into(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    }]),
                    match_fields: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    type Case = (&'static str, PodSpec, Arc<Node>, (bool, bool));
    let cases: Vec<Case> = vec![
        (
            "plain node",
            PodSpec::default(),
            node("n", &[], &[]),
            (true, true),
        ),
        (
            "nodeSelector matches",
            PodSpec {
                node_selector: Some(labels(&[("role", "x")])),
                ..PodSpec::default()
            },
            node("n", &[("role", "x")], &[]),
            (true, true),
        ),
        (
            "nodeSelector misses",
            PodSpec {
                node_selector: Some(labels(&[("role", "x")])),
                ..PodSpec::default()
            },
            node("n", &[("role", "y")], &[]),
            (false, false),
        ),
        (
            "affinity In matches",
            PodSpec {
                affinity: Some(affinity("In", &["a", "b"])),
                ..PodSpec::default()
            },
            node("n", &[("zone", "b")], &[]),
            (true, true),
        ),
        (
            "affinity NotIn misses",
            PodSpec {
                affinity: Some(affinity("NotIn", &["b"])),
                ..PodSpec::default()
            },
            node("n", &[("zone", "b")], &[]),
            (false, false),
        ),
        (
            "template nodeName elsewhere",
            PodSpec {
                node_name: Some("other".into()),
                ..PodSpec::default()
            },
            node("n", &[], &[]),
            (false, false),
        ),
        (
            "untolerated NoSchedule: no new pod, the old one stays",
            PodSpec::default(),
            node("n", &[], &[("dedicated", "NoSchedule")]),
            (false, true),
        ),
        (
            "untolerated NoExecute: evicted",
            PodSpec::default(),
            node("n", &[], &[("dedicated", "NoExecute")]),
            (false, false),
        ),
        (
            "PreferNoSchedule is no obstacle",
            PodSpec::default(),
            node("n", &[], &[("dedicated", "PreferNoSchedule")]),
            (true, true),
        ),
        (
            "tolerated taint",
            PodSpec {
                tolerations: Some(vec![toleration("dedicated", "NoSchedule")]),
                ..PodSpec::default()
            },
            node("n", &[], &[("dedicated", "NoSchedule")]),
            (true, true),
        ),
        (
            "daemon tolerations: unschedulable, not-ready, pressure",
            PodSpec::default(),
            node(
                "n",
                &[],
                &[
                    ("node.kubernetes.io/unschedulable", "NoSchedule"),
                    ("node.kubernetes.io/not-ready", "NoExecute"),
                    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ],
            ),
            (true, true),
        ),
        (
            "network-unavailable only tolerated with hostNetwork",
            PodSpec::default(),
            node(
                "n",
                &[],
                &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
            ),
            (false, true),
        ),
        (
            "network-unavailable with hostNetwork",
            PodSpec {
                host_network: Some(true),
                ..PodSpec::default()
            },
            node(
                "n",
                &[],
                &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
            ),
            (true, true),
        ),
    ];
    for (what, spec, node, want) in cases {
        assert_eq!(
            node_should_run_daemon_pod(&node, &ds_with(spec)),
            want,
            "{what}"
        );
    }
}

#[test]
fn daemon_tolerations_are_added_once() {
    let mut spec = PodSpec {
        tolerations: Some(vec![Toleration {
            key: Some("node.kubernetes.io/unschedulable".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
            value: None,
        }]),
        ..PodSpec::default()
    };
    util::add_daemon_tolerations(&mut spec);
    util::add_daemon_tolerations(&mut spec);
    let keys: Vec<_> = spec
        .tolerations
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.effect.unwrap_or_default()))
        .collect();
    assert_eq!(
        keys,
        [
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ]
        .map(|(k, e)| (k.to_string(), e.to_string()))
    );
    assert_eq!(daemon_tolerations(true).len(), 7);
}

#[test]
fn pods_are_pinned_by_metadata_name() {
    let pinned = |node: &str| NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    // None: a new required affinity with one term.
    let a = replace_node_name_affinity(None, "n1");
    let terms = a
        .node_affinity
        .and_then(|na| na.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default();
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].match_fields, Some(vec![pinned("n1")]));
    assert_eq!(terms[0].match_expressions, None);

    // Existing terms keep their expressions; their fields are replaced.
    let expr = NodeSelectorRequirement {
        key: "zone".into(),
        operator: "In".into(),
        values: Some(vec!["a".into()]),
    };
    let existing = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![
                    NodeSelectorTerm {
                        match_expressions: Some(vec![expr.clone()]),
                        match_fields: Some(vec![pinned("old")]),
                    },
                    NodeSelectorTerm {
                        match_expressions: Some(vec![expr.clone()]),
                        match_fields: None,
                    },
                ],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    let a = replace_node_name_affinity(Some(existing), "n2");
    let terms = a
        .node_affinity
        .and_then(|na| na.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default();
    assert_eq!(terms.len(), 2);
    for term in &terms {
        assert_eq!(term.match_expressions, Some(vec![expr.clone()]));
        assert_eq!(term.match_fields, Some(vec![pinned("n2")]));
    }

    // The target node: the bound node first, else the pinned one.
    let mut p = Pod {
        spec: Some(PodSpec {
            affinity: Some(replace_node_name_affinity(None, "n3")),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    assert_eq!(target_node_name(&p).as_deref(), Some("n3"));
    if let Some(spec) = p.spec.as_mut() {
        spec.node_name = Some("bound".into());
    }
    assert_eq!(target_node_name(&p).as_deref(), Some("bound"));
    assert_eq!(target_node_name(&Pod::default()), None);
}

#[test]
fn pod_template_carries_revision_labels_and_tolerations() {
    let d = ds();
    let t = create_pod_template(&d.spec.template, util::template_generation(&d), "abc");
    let l = t.metadata.and_then(|m| m.labels).unwrap_or_default();
    assert_eq!(
        l.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
        Some("2")
    );
    assert_eq!(l.get(REVISION_HASH_LABEL).map(String::as_str), Some("abc"));
    assert_eq!(l.get("app").map(String::as_str), Some("d"));
    assert_eq!(t.spec.and_then(|s| s.tolerations).map(|t| t.len()), Some(6));

    let p = pod("p", "n", "abc", 0, "Running", true);
    assert!(is_pod_updated(&p, "abc", None));
    assert!(!is_pod_updated(&p, "other", None));
    assert!(!is_pod_updated(&p, "", Some(2)));
}

#[test]
fn manage_decisions() {
    let nodes = vec![
        node("a", &[], &[]),
        node("b", &[], &[]),
        node("c", &[], &[("dedicated", "NoExecute")]),
    ];
    let now = Instant::now();
    struct Case {
        what: &'static str,
        ds: DaemonSet,
        pods: Vec<Arc<Pod>>,
        create: Vec<&'static str>,
        delete: Vec<&'static str>,
        failed: usize,
    }
    let cases = vec![
        Case {
            what: "every eligible node without a pod gets one",
            ds: ds(),
            pods: vec![],
            create: vec!["a", "b"],
            delete: vec![],
            failed: 0,
        },
        Case {
            what: "extra pods on a node: all but the oldest go",
            ds: ds(),
            pods: vec![
                pod("a-new", "a", "h", 10, "Running", true),
                pod("a-old", "a", "h", 5, "Running", true),
                pod("b1", "b", "h", 0, "Pending", false),
            ],
            create: vec![],
            delete: vec!["a-new"],
            failed: 0,
        },
        Case {
            what: "with surge one old and one new pod may share a node",
            ds: with_surge(ds(), 1),
            pods: vec![
                pod("a-old", "a", "old", 0, "Running", true),
                pod("a-new", "a", "h", 10, "Running", false),
                pod("a-new2", "a", "h", 11, "Running", false),
                pod("b1", "b", "h", 0, "Running", true),
            ],
            create: vec![],
            delete: vec!["a-new2"],
            failed: 0,
        },
        Case {
            what: "a failed pod is deleted (and replaced by a later sync)",
            ds: ds(),
            pods: vec![
                pod("a1", "a", "h", 0, "Failed", false),
                pod("b1", "b", "h", 0, "Running", true),
            ],
            create: vec![],
            delete: vec!["a1"],
            failed: 1,
        },
        Case {
            what: "a succeeded pod is deleted without an event",
            ds: ds(),
            pods: vec![
                pod("a1", "a", "h", 0, "Succeeded", false),
                pod("b1", "b", "h", 0, "Running", true),
            ],
            create: vec![],
            delete: vec!["a1"],
            failed: 0,
        },
        Case {
            what: "a node that must not run it loses its pod; unscheduled pods of gone nodes go",
            ds: ds(),
            pods: vec![
                pod("a1", "a", "h", 0, "Running", true),
                pod("b1", "b", "h", 0, "Running", true),
                pod("c1", "c", "h", 0, "Running", true),
                Arc::new(Pod {
                    spec: Some(PodSpec {
                        affinity: Some(replace_node_name_affinity(None, "gone")),
                        ..PodSpec::default()
                    }),
                    ..(*pod("g1", "", "h", 0, "Pending", false)).clone()
                }),
                pod("bound-to-gone", "gone2", "h", 0, "Running", true),
            ],
            create: vec![],
            delete: vec!["c1", "g1"],
            failed: 0,
        },
    ];
    for case in cases {
        let mut backoff = FailedPodsBackoff::default();
        let plan = manage_plan(
            &case.ds,
            &nodes,
            &by_node(&case.pods),
            "h",
            &mut backoff,
            now,
        );
        assert_eq!(plan.create_on, case.create, "{}", case.what);
        assert_eq!(plan.delete, case.delete, "{}", case.what);
        assert_eq!(plan.failed.len(), case.failed, "{}", case.what);
    }
}

#[test]
fn failed_pods_back_off_per_node() {
    let nodes = vec![node("a", &[], &[])];
    let pods = vec![pod("a1", "a", "h", 0, "Failed", false)];
    let mut backoff = FailedPodsBackoff::default();
    let t0 = Instant::now();
    let plan = manage_plan(&ds(), &nodes, &by_node(&pods), "h", &mut backoff, t0);
    assert_eq!(plan.delete, ["a1"]);
    assert_eq!(
        plan.failed,
        ["Found failed daemon pod ns/a1 on node a, will try to kill it"]
    );
    // Failing again at once: backing off 1 s, the sync comes back later.
    let later = t0 + Duration::from_millis(400);
    let plan = manage_plan(&ds(), &nodes, &by_node(&pods), "h", &mut backoff, later);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(600)));
    // After the backoff: deleted again, and the next wait doubles.
    let t1 = t0 + Duration::from_secs(1);
    let plan = manage_plan(&ds(), &nodes, &by_node(&pods), "h", &mut backoff, t1);
    assert_eq!(plan.delete, ["a1"]);
    let key = FailedPodsBackoff::key("uid-d", "a");
    assert_eq!(
        backoff.in_backoff(&key, t1 + Duration::from_secs(1)),
        Some(Duration::from_secs(1))
    );
}

#[test]
fn rolling_update_decisions() {
    let nodes: Vec<Arc<Node>> = ["a", "b", "c"].iter().map(|n| node(n, &[], &[])).collect();
    let now = at(100);
    struct Case {
        what: &'static str,
        ds: DaemonSet,
        pods: Vec<Arc<Pod>>,
        delete: Vec<&'static str>,
        create: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            what: "maxUnavailable 1: one available old pod at a time",
            ds: ds(),
            pods: vec![
                pod("a", "a", "old", 0, "Running", true),
                pod("b", "b", "old", 0, "Running", true),
                pod("c", "c", "old", 0, "Running", true),
            ],
            delete: vec!["a"],
            create: vec![],
        },
        Case {
            what: "unavailable old pods are replaced at once, beyond the budget",
            ds: ds(),
            pods: vec![
                pod("a", "a", "old", 0, "Running", false),
                pod("b", "b", "old", 0, "Pending", false),
                pod("c", "c", "old", 0, "Running", true),
            ],
            delete: vec!["a", "b", "c"],
            create: vec![],
        },
        Case {
            what: "a new pod not yet available uses the budget",
            ds: ds(),
            pods: vec![
                pod("a", "a", "h", 0, "Running", false),
                pod("b", "b", "old", 0, "Running", true),
                pod("c", "c", "old", 0, "Running", true),
            ],
            delete: vec![],
            create: vec![],
        },
        Case {
            what: "surge 1: a new pod beside one old pod",
            ds: with_surge(ds(), 1),
            pods: vec![
                pod("a", "a", "old", 0, "Running", true),
                pod("b", "b", "old", 0, "Running", true),
                pod("c", "c", "old", 0, "Running", true),
            ],
            delete: vec![],
            create: vec!["a"],
        },
        Case {
            what: "surge: the old pod goes once the new one is available",
            ds: with_surge(ds(), 1),
            pods: vec![
                pod("a-old", "a", "old", 0, "Running", true),
                pod("a-new", "a", "h", 10, "Running", true),
                pod("b", "b", "old", 0, "Running", true),
                pod("c", "c", "old", 0, "Running", true),
            ],
            delete: vec!["a-old"],
            create: vec!["b"],
        },
        Case {
            what: "surge: a new pod still starting holds the budget",
            ds: with_surge(ds(), 1),
            pods: vec![
                pod("a-old", "a", "old", 0, "Running", true),
                pod("a-new", "a", "h", 10, "Running", false),
                pod("b", "b", "old", 0, "Running", true),
                pod("c", "c", "old", 0, "Pending", false),
            ],
            delete: vec![],
            create: vec!["c"],
        },
    ];
    for case in cases {
        let plan = rolling_update_plan(&case.ds, &nodes, &by_node(&case.pods), "h", now);
        assert_eq!(plan.delete, case.delete, "{}", case.what);
        assert_eq!(plan.create_on, case.create, "{}", case.what);
    }
    // Both budgets 0 would never finish: one may be unavailable.
    let mut d = ds();
    d.spec.update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::String("0%".into())),
            max_surge: Some(IntOrString::Int(0)),
        }),
    });
    assert_eq!(updated_desired_node_counts(&d, &nodes), (0, 1));
    let mut d = ds();
    d.spec.update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::String("50%".into())),
            max_surge: None,
        }),
    });
    assert_eq!(updated_desired_node_counts(&d, &nodes), (0, 2));
}

#[test]
fn status_counts() {
    let nodes = vec![
        node("a", &[], &[]),
        node("b", &[], &[]),
        node("c", &[], &[]),
        node("x", &[], &[("dedicated", "NoSchedule")]),
    ];
    let mut d = ds();
    d.spec.min_ready_seconds = Some(10);
    let pods = vec![
        // a: the oldest pod counts: ready for 100 s and current.
        pod("a1", "a", "h", 0, "Running", true),
        pod("a2", "a", "old", 50, "Running", false),
        // b: ready only 5 s: not available; old revision.
        pod("b1", "b", "old", 95, "Running", true),
        // c: none. x: should not run there: misscheduled.
        pod("x1", "x", "h", 0, "Running", true),
    ];
    let s = calculate_status(&d, &nodes, &by_node(&pods), "h", at(100));
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_misscheduled,
            s.number_ready,
            s.number_available,
            s.updated_number_scheduled,
            s.number_unavailable,
        ),
        (3, 2, 1, 2, Some(1), Some(1), Some(2))
    );
    assert!(!status_unchanged(&d, &s));
    let mut synced = d.clone();
    synced.status = Some(DaemonSetStatus {
        observed_generation: Some(1),
        ..s.clone()
    });
    assert!(status_unchanged(&synced, &s));
    synced.metadata.generation = Some(2);
    assert!(!status_unchanged(&synced, &s));
}

fn revision(name: &str, number: i64, hash: &str, data: serde_json::Value) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[(REVISION_HASH_LABEL, hash)])),
            ..ObjectMeta::default()
        },
        data: RawExtension(data),
        revision: Some(number),
    }
}

#[test]
fn history_split_and_cleanup() {
    let mut d = ds();
    let current = new_revision(&d, "hcur", 3);
    assert_eq!(current.metadata.name.as_deref(), Some("d-hcur"));
    assert_eq!(
        current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("d")
    );
    assert_eq!(current.data.0["spec"]["template"]["$patch"], "replace");
    let old1 = revision(
        "d-h1",
        1,
        "h1",
        serde_json::json!({"spec": {"template": {"a": 1}}}),
    );
    let old2 = revision(
        "d-h2",
        2,
        "h2",
        serde_json::json!({"spec": {"template": {"a": 2}}}),
    );
    let dup = ControllerRevision {
        revision: Some(1),
        ..current.clone()
    };
    let all = [&old1, &current, &old2, &dup];
    let split = split_history(&d, &all);
    assert_eq!(split.current.len(), 2);
    assert_eq!(split.current[0].revision, Some(3), "newest first");
    assert_eq!(split.old.len(), 2);
    assert_eq!(split.current_number, 3);

    // Cleanup: beyond the limit, oldest first, sparing revisions pods still run.
    d.spec.revision_history_limit = Some(1);
    let old = [&old2, &old1];
    let doomed: Vec<_> = revisions_to_clean_up(&d, &old, &[])
        .iter()
        .map(|r| r.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(doomed, ["d-h1"]);
    let pods = vec![pod("p", "a", "h1", 0, "Running", true)];
    let doomed: Vec<_> = revisions_to_clean_up(&d, &old, &pods)
        .iter()
        .map(|r| r.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(doomed, ["d-h2"]);
    d.spec.revision_history_limit = Some(10);
    assert!(revisions_to_clean_up(&d, &old, &[]).is_empty());
}

//! Table-driven tests for every plugin, the score, `pick` and the message.

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Pod, PodStatus};

use crate::testutil::*;
use crate::*;

type Histogram = Vec<(String, usize)>;

fn reasons(r: Result<(), Unfit>) -> Vec<String> {
    r.err().map(|u| u.reasons).unwrap_or_default()
}

#[test]
fn seed_001_node_selector_disktype_ssd() {
    let p = with_spec(pod_req(&[]), |s| {
        s.node_selector = Some([("disktype".to_string(), "ssd".to_string())].into());
    });
    let unlabelled = info(big_node("n1"));
    assert_eq!(reasons(filter(&p, &unlabelled)), vec![ERR_NODE_AFFINITY]);
    let err = pick(&p, std::slice::from_ref(&unlabelled)).unwrap_err();
    assert_eq!(
        err.message(),
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    );
    let labelled = info(labelled(big_node("n1"), &[("disktype", "ssd")]));
    assert_eq!(filter(&p, &labelled), Ok(()));
    assert_eq!(pick(&p, &[labelled]), Ok(0));
}

#[test]
fn node_unschedulable_plugin() {
    let cordoned = {
        let mut n = big_node("n1");
        if let Some(s) = n.spec.as_mut() {
            s.unschedulable = Some(true);
        }
        info(n)
    };
    let tol = |t| with_spec(pod_req(&[]), |s| s.tolerations = Some(vec![t]));
    let cases: Vec<(&str, Pod, &NodeInfo, bool)> = vec![
        ("no toleration", pod_req(&[]), &cordoned, false),
        (
            "tolerates unschedulable",
            tol(toleration(
                "node.kubernetes.io/unschedulable",
                "Exists",
                "",
                "NoSchedule",
            )),
            &cordoned,
            true,
        ),
        (
            "tolerates everything",
            tol(toleration("", "Exists", "", "")),
            &cordoned,
            true,
        ),
        (
            "wrong effect",
            tol(toleration(
                "node.kubernetes.io/unschedulable",
                "Exists",
                "",
                "NoExecute",
            )),
            &cordoned,
            false,
        ),
    ];
    for (name, p, n, ok) in cases {
        let got = node_unschedulable(&p, n);
        assert_eq!(got.is_ok(), ok, "{name}");
        if !ok {
            assert_eq!(reasons(got), vec![ERR_UNSCHEDULABLE], "{name}");
        }
    }
    assert_eq!(
        node_unschedulable(&pod_req(&[]), &info(big_node("n1"))),
        Ok(())
    );
}

#[test]
fn node_name_plugin() {
    let n = info(big_node("n1"));
    for (want, ok) in [
        (None, true),
        (Some(""), true),
        (Some("n1"), true),
        (Some("n2"), false),
    ] {
        let p = with_spec(pod_req(&[]), |s| s.node_name = want.map(String::from));
        let got = node_name(&p, &n);
        assert_eq!(got.is_ok(), ok, "{want:?}");
        if !ok {
            assert_eq!(reasons(got), vec![ERR_NODE_NAME]);
        }
    }
}

#[test]
fn toleration_matching() {
    let taint = |k: &str, v: &str, e: &str| k8s_openapi::api::core::v1::Taint {
        key: k.into(),
        value: (!v.is_empty()).then(|| v.into()),
        effect: e.into(),
        ..Default::default()
    };
    let cases = [
        (
            "equal match",
            toleration("k", "Equal", "v", "NoSchedule"),
            taint("k", "v", "NoSchedule"),
            true,
        ),
        (
            "no operator = Equal",
            toleration("k", "", "v", "NoSchedule"),
            taint("k", "v", "NoSchedule"),
            true,
        ),
        (
            "equal wrong value",
            toleration("k", "Equal", "w", "NoSchedule"),
            taint("k", "v", "NoSchedule"),
            false,
        ),
        (
            "exists ignores value",
            toleration("k", "Exists", "", "NoSchedule"),
            taint("k", "v", "NoSchedule"),
            true,
        ),
        (
            "empty effect matches all",
            toleration("k", "Exists", "", ""),
            taint("k", "v", "NoExecute"),
            true,
        ),
        (
            "wrong effect",
            toleration("k", "Exists", "", "NoSchedule"),
            taint("k", "v", "NoExecute"),
            false,
        ),
        (
            "empty key exists matches all",
            toleration("", "Exists", "", ""),
            taint("any", "x", "NoSchedule"),
            true,
        ),
        (
            "wrong key",
            toleration("j", "Exists", "", ""),
            taint("k", "", "NoSchedule"),
            false,
        ),
        (
            "equal empty value",
            toleration("k", "Equal", "", "NoSchedule"),
            taint("k", "", "NoSchedule"),
            true,
        ),
        (
            "unknown operator",
            toleration("k", "Gt", "1", ""),
            taint("k", "2", "NoSchedule"),
            false,
        ),
    ];
    for (name, t, taint, want) in cases {
        assert_eq!(tolerates_taint(&t, &taint), want, "{name}");
    }
}

#[test]
fn taint_toleration_plugin() {
    let not_ready = info(tainted(
        big_node("n1"),
        &[("node.kubernetes.io/not-ready", "", "NoSchedule")],
    ));
    let dedicated = info(tainted(
        big_node("n2"),
        &[("x", "y", "NoExecute"), ("soft", "", "PreferNoSchedule")],
    ));
    // Uncordoned a moment ago: the controller has not removed the mirrored taint yet.
    let uncordoned = info(tainted(
        big_node("n3"),
        &[("node.kubernetes.io/unschedulable", "", "NoSchedule")],
    ));
    let tol = |ts: Vec<_>| with_spec(pod_req(&[]), |s| s.tolerations = Some(ts));
    let cases: Vec<(&str, Pod, &NodeInfo, Option<&str>)> = vec![
        (
            "the unschedulable taint is NodeUnschedulable's to judge",
            pod_req(&[]),
            &uncordoned,
            None,
        ),
        (
            "no toleration",
            pod_req(&[]),
            &not_ready,
            Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
        ),
        (
            "tolerated",
            tol(vec![toleration(
                "node.kubernetes.io/not-ready",
                "Exists",
                "",
                "NoSchedule",
            )]),
            &not_ready,
            None,
        ),
        (
            "NoExecute untolerated",
            pod_req(&[]),
            &dedicated,
            Some("node(s) had untolerated taint {x: y}"),
        ),
        (
            "NoExecute tolerated, PreferNoSchedule ignored",
            tol(vec![toleration("x", "Equal", "y", "")]),
            &dedicated,
            None,
        ),
        (
            "wrong value",
            tol(vec![toleration("x", "Equal", "z", "")]),
            &dedicated,
            Some("node(s) had untolerated taint {x: y}"),
        ),
    ];
    for (name, p, n, want) in cases {
        let got = taint_toleration(&p, n);
        match want {
            None => assert_eq!(got, Ok(()), "{name}"),
            Some(r) => assert_eq!(reasons(got), vec![r.to_string()], "{name}"),
        }
    }
}

#[test]
fn node_affinity_required_terms() {
    let n = info(labelled(
        big_node("n1"),
        &[("zone", "a"), ("gen", "5"), ("ssd", "")],
    ));
    let term = |exprs: Vec<_>, fields: Vec<_>| NodeSelectorTerm {
        match_expressions: (!exprs.is_empty()).then_some(exprs),
        match_fields: (!fields.is_empty()).then_some(fields),
    };
    let cases: Vec<(&str, Vec<NodeSelectorTerm>, bool)> = vec![
        (
            "In",
            vec![term(vec![req("zone", "In", &["a", "b"])], vec![])],
            true,
        ),
        (
            "In miss",
            vec![term(vec![req("zone", "In", &["b"])], vec![])],
            false,
        ),
        (
            "NotIn",
            vec![term(vec![req("zone", "NotIn", &["b"])], vec![])],
            true,
        ),
        (
            "NotIn miss",
            vec![term(vec![req("zone", "NotIn", &["a"])], vec![])],
            false,
        ),
        (
            "NotIn absent label",
            vec![term(vec![req("rack", "NotIn", &["a"])], vec![])],
            true,
        ),
        (
            "Exists",
            vec![term(vec![req("ssd", "Exists", &[])], vec![])],
            true,
        ),
        (
            "DoesNotExist",
            vec![term(vec![req("ssd", "DoesNotExist", &[])], vec![])],
            false,
        ),
        (
            "Gt",
            vec![term(vec![req("gen", "Gt", &["4"])], vec![])],
            true,
        ),
        (
            "Gt miss",
            vec![term(vec![req("gen", "Gt", &["5"])], vec![])],
            false,
        ),
        (
            "Lt",
            vec![term(vec![req("gen", "Lt", &["6"])], vec![])],
            true,
        ),
        (
            "Lt non-integer label",
            vec![term(vec![req("zone", "Lt", &["6"])], vec![])],
            false,
        ),
        (
            "Gt unparsable value",
            vec![term(vec![req("gen", "Gt", &["x"])], vec![])],
            false,
        ),
        (
            "unknown operator",
            vec![term(vec![req("zone", "Equals", &["a"])], vec![])],
            false,
        ),
        (
            "AND within a term",
            vec![term(
                vec![req("zone", "In", &["a"]), req("gen", "Lt", &["5"])],
                vec![],
            )],
            false,
        ),
        (
            "OR across terms",
            vec![
                term(vec![req("zone", "In", &["b"])], vec![]),
                term(vec![req("gen", "In", &["5"])], vec![]),
            ],
            true,
        ),
        (
            "empty term matches nothing",
            vec![term(vec![], vec![])],
            false,
        ),
        ("no terms matches nothing", vec![], false),
        (
            "matchFields In",
            vec![term(vec![], vec![req("metadata.name", "In", &["n1"])])],
            true,
        ),
        (
            "matchFields In miss",
            vec![term(vec![], vec![req("metadata.name", "In", &["n2"])])],
            false,
        ),
        (
            "matchFields NotIn",
            vec![term(vec![], vec![req("metadata.name", "NotIn", &["n2"])])],
            true,
        ),
        (
            "matchFields two values",
            vec![term(
                vec![],
                vec![req("metadata.name", "In", &["n1", "n2"])],
            )],
            false,
        ),
        (
            "matchFields other key",
            vec![term(vec![], vec![req("metadata.uid", "In", &["n1"])])],
            false,
        ),
        (
            "fields AND expressions",
            vec![term(
                vec![req("zone", "In", &["a"])],
                vec![req("metadata.name", "In", &["n2"])],
            )],
            false,
        ),
    ];
    for (name, terms, ok) in cases {
        let p = with_spec(pod_req(&[]), |s| {
            s.affinity = Some(required_affinity(terms))
        });
        let got = node_affinity(&p, &n);
        assert_eq!(got.is_ok(), ok, "{name}");
        if !ok {
            assert_eq!(reasons(got), vec![ERR_NODE_AFFINITY], "{name}");
        }
    }
}

#[test]
fn node_selector_and_affinity_both_required() {
    let n = info(labelled(
        big_node("n1"),
        &[("disktype", "ssd"), ("zone", "a")],
    ));
    let p = with_spec(pod_req(&[]), |s| {
        s.node_selector = Some([("disktype".to_string(), "ssd".to_string())].into());
        s.affinity = Some(required_affinity(vec![NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "In", &["b"])]),
            match_fields: None,
        }]));
    });
    assert_eq!(reasons(node_affinity(&p, &n)), vec![ERR_NODE_AFFINITY]);
}

#[test]
fn pod_requests_rules() {
    let r = |cpu: i64, mem: i64| Resources {
        milli_cpu: cpu,
        memory: mem,
        ephemeral_storage: 0,
    };
    const MI: i64 = 1024 * 1024;
    let cases: Vec<(&str, Pod, Resources, Resources)> = vec![
        ("no requests", pod_req(&[]), r(0, 0), r(100, 200 * MI)),
        (
            "sum of containers",
            pod(vec![
                container(&[("cpu", "100m"), ("memory", "1Mi")]),
                container(&[("cpu", "250m")]),
            ]),
            r(350, MI),
            r(350, 201 * MI),
        ),
        (
            "explicit zero is not defaulted",
            pod_req(&[("cpu", "0"), ("memory", "0")]),
            r(0, 0),
            r(0, 0),
        ),
        (
            "init container larger than containers wins",
            with_spec(pod_req(&[("cpu", "100m")]), |s| {
                s.init_containers = Some(vec![
                    container(&[("cpu", "1")]),
                    container(&[("cpu", "500m")]),
                ]);
            }),
            r(1000, 0),
            r(1000, 200 * MI),
        ),
        (
            "init max is per resource",
            with_spec(pod_req(&[("cpu", "2"), ("memory", "1Mi")]), |s| {
                s.init_containers = Some(vec![container(&[("cpu", "1"), ("memory", "3Mi")])]);
            }),
            r(2000, 3 * MI),
            r(2000, 3 * MI),
        ),
        (
            "sidecar adds to containers and later inits",
            with_spec(pod_req(&[("cpu", "100m")]), |s| {
                s.init_containers = Some(vec![
                    sidecar(&[("cpu", "200m")]),
                    container(&[("cpu", "250m")]),
                ]);
            }),
            // containers 100m + sidecar 200m = 300m; later init 250m + sidecar 200m = 450m.
            r(450, 0),
            r(450, 400 * MI),
        ),
        (
            "overhead added",
            with_spec(pod_req(&[("cpu", "100m")]), |s| {
                s.overhead = Some(list(&[("cpu", "50m"), ("memory", "10Mi")]))
            }),
            r(150, 10 * MI),
            r(150, 210 * MI),
        ),
        (
            "sub-milli cpu rounds up",
            pod_req(&[("cpu", "0.0001")]),
            r(1, 0),
            r(1, 200 * MI),
        ),
        (
            "malformed quantity counts as zero",
            pod_req(&[("cpu", "lots")]),
            r(0, 0),
            r(0, 200 * MI),
        ),
    ];
    for (name, p, plain, non_zero) in cases {
        assert_eq!(pod_requests(&p, false), plain, "{name}");
        assert_eq!(pod_requests(&p, true), non_zero, "{name} (non-zero)");
    }
}

#[test]
fn node_info_skips_terminal_pods() {
    let mut done = pod_req(&[("cpu", "1")]);
    done.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    let n = NodeInfo::new(
        big_node("n1"),
        &[pod_req(&[("cpu", "1")]), done, pod_req(&[])],
    );
    assert_eq!(n.pod_count, 2);
    assert_eq!(n.requested.milli_cpu, 1000);
    assert_eq!(n.non_zero_requested.milli_cpu, 1100);
}

#[test]
fn node_resources_fit_plugin() {
    let small = node(
        "n1",
        &[
            ("cpu", "1"),
            ("memory", "1Gi"),
            ("ephemeral-storage", "1Gi"),
            ("pods", "2"),
        ],
    );
    let busy = NodeInfo::new(
        small.clone(),
        &[pod_req(&[("cpu", "600m"), ("memory", "512Mi")])],
    );
    let full = NodeInfo::new(small.clone(), &[pod_req(&[]), pod_req(&[])]);
    let no_alloc = info(node("n2", &[]));
    let empty = info(small);
    let cases: Vec<(&str, Pod, &NodeInfo, Vec<&str>)> = vec![
        (
            "fits empty node",
            pod_req(&[("cpu", "1"), ("memory", "1Gi")]),
            &empty,
            vec![],
        ),
        (
            "cpu over",
            pod_req(&[("cpu", "1001m")]),
            &empty,
            vec!["Insufficient cpu"],
        ),
        (
            "fits remaining",
            pod_req(&[("cpu", "400m"), ("memory", "512Mi")]),
            &busy,
            vec![],
        ),
        (
            "both over remaining",
            pod_req(&[("cpu", "500m"), ("memory", "600Mi")]),
            &busy,
            vec!["Insufficient cpu", "Insufficient memory"],
        ),
        (
            "ephemeral storage",
            pod_req(&[("ephemeral-storage", "2Gi")]),
            &empty,
            vec!["Insufficient ephemeral-storage"],
        ),
        ("too many pods", pod_req(&[]), &full, vec!["Too many pods"]),
        (
            "too many pods first",
            pod_req(&[("cpu", "2")]),
            &full,
            vec!["Too many pods", "Insufficient cpu"],
        ),
        (
            "no allocatable",
            pod_req(&[]),
            &no_alloc,
            vec!["Too many pods"],
        ),
        (
            "init container counted",
            with_spec(pod_req(&[("cpu", "100m")]), |s| {
                s.init_containers = Some(vec![container(&[("cpu", "2")])])
            }),
            &empty,
            vec!["Insufficient cpu"],
        ),
    ];
    for (name, p, n, want) in cases {
        let got = node_resources_fit(&p, n);
        assert_eq!(reasons(got.clone()), want, "{name}");
        if let Err(u) = got {
            assert!(u.resolvable, "{name}");
        }
    }
}

#[test]
fn filter_runs_in_upstream_order() {
    // Tainted and unlabelled and too small: TaintToleration runs before NodeAffinity, which
    // runs before NodeResourcesFit, so the taint is reported.
    let n = info(tainted(
        node("n1", &[("pods", "1")]),
        &[("x", "y", "NoSchedule")],
    ));
    let p = with_spec(pod_req(&[("cpu", "1")]), |s| {
        s.node_selector = Some([("disktype".to_string(), "ssd".to_string())].into());
        s.node_name = Some("n1".into());
    });
    let got = filter(&p, &n).unwrap_err();
    assert_eq!(got.plugin, "TaintToleration");
    let p = with_spec(p, |s| s.node_name = Some("other".into()));
    assert_eq!(filter(&p, &n).unwrap_err().plugin, "NodeName");
}

#[test]
fn least_allocated_score() {
    let n = node("n1", &[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]);
    let cases: Vec<(&str, Pod, NodeInfo, i64)> = vec![
        // (4000-1000)*100/4000 = 75, (8Gi-2Gi)*100/8Gi = 75.
        (
            "quarter used",
            pod_req(&[("cpu", "1"), ("memory", "2Gi")]),
            info(n.clone()),
            75,
        ),
        // cpu (4000-3000) = 25, memory (8Gi-6Gi) = 25 -> 25.
        (
            "with existing pods",
            pod_req(&[("cpu", "1"), ("memory", "2Gi")]),
            NodeInfo::new(n.clone(), &[pod_req(&[("cpu", "2"), ("memory", "4Gi")])]),
            25,
        ),
        // defaults 100m / 200Mi: cpu 97 (3900*100/4000=97), memory 97 (7992Mi*100/8192Mi=97).
        ("non-zero defaults", pod_req(&[]), info(n.clone()), 97),
        // cpu 0 (over capacity), memory 100 -> 50.
        (
            "over capacity scores zero",
            pod_req(&[("cpu", "5"), ("memory", "0")]),
            info(n.clone()),
            50,
        ),
        ("no allocatable", pod_req(&[]), info(node("n2", &[])), 0),
        // only memory counted when cpu allocatable is missing: (8Gi-200Mi) -> 97.
        (
            "missing cpu allocatable",
            pod_req(&[]),
            info(node("n3", &[("memory", "8Gi")])),
            97,
        ),
    ];
    for (name, p, ni, want) in cases {
        assert_eq!(score_least_allocated(&p, &ni), want, "{name}");
    }
}

#[test]
fn pick_highest_score_then_lowest_name() {
    let p = pod_req(&[("cpu", "1"), ("memory", "1Gi")]);
    let busy = NodeInfo::new(
        big_node("a"),
        &[pod_req(&[("cpu", "2"), ("memory", "2Gi")])],
    );
    let nodes = vec![busy, info(big_node("c")), info(big_node("b"))];
    assert_eq!(pick(&p, &nodes), Ok(2), "b and c tie, b wins by name");
    let unfit = vec![
        info(tainted(big_node("z"), &[("x", "y", "NoSchedule")])),
        info(big_node("y")),
    ];
    assert_eq!(pick(&p, &unfit), Ok(1));
}

#[test]
fn pick_failure_histogram_and_message() {
    let p = pod_req(&[("cpu", "3")]);
    let small = node("s", &[("cpu", "2"), ("memory", "1Gi"), ("pods", "10")]);
    let nodes = vec![
        info(small),
        info(tainted(big_node("t1"), &[("x", "y", "NoSchedule")])),
        info(tainted(big_node("t2"), &[("x", "y", "NoExecute")])),
    ];
    let err = pick(&p, &nodes).unwrap_err();
    assert_eq!(
        err.reasons,
        vec![
            ("Insufficient cpu".to_string(), 1),
            ("node(s) had untolerated taint {x: y}".to_string(), 2)
        ]
    );
    assert_eq!(
        failed_scheduling_message(err.total_nodes, &err.reasons),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {x: y}."
    );
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {x: y}. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling.."
    );
    let none = pick(&p, &[]).unwrap_err();
    assert_eq!(none.to_string(), "no nodes available to schedule pods");
}

#[test]
fn message_sorting_and_multi_reason_nodes() {
    let s = |r: &str, n| (r.to_string(), n);
    let cases: Vec<(usize, Histogram, &str)> =
        vec![
        (
            1,
            vec![s(ERR_NODE_AFFINITY, 1)],
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            3,
            vec![s("node(s) had untolerated taint {x: y}", 2), s("Insufficient cpu", 1)],
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {x: y}.",
        ),
        // upstream sorts "<count> <reason>" as strings: "10 ..." before "2 ...".
        (
            12,
            vec![s(ERR_UNSCHEDULABLE, 2), s(ERR_TOO_MANY_PODS, 10)],
            "0/12 nodes are available: 10 Too many pods, 2 node(s) were unschedulable.",
        ),
        (0, vec![], "no nodes available to schedule pods"),
    ];
    for (total, reasons, want) in cases {
        assert_eq!(failed_scheduling_message(total, &reasons), want);
    }
    // One node short on both cpu and memory counts once under each reason.
    let p = pod_req(&[("cpu", "8"), ("memory", "16Gi")]);
    let err = pick(&p, &[info(big_node("n1"))]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
}

//! Table-driven tests of the namespace deleter's decisions.

use super::*;
use k8s_openapi::api::core::v1::{NamespaceSpec, NamespaceStatus, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
    APIResource {
        name: name.into(),
        kind: kind.into(),
        namespaced,
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..APIResource::default()
    }
}

const ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn list(group_version: &str, resources: Vec<APIResource>) -> APIResourceList {
    APIResourceList {
        group_version: group_version.into(),
        resources,
    }
}

fn group(name: &str, preferred: &str, lists: Vec<APIResourceList>) -> DiscoveredGroup {
    DiscoveredGroup {
        name: name.into(),
        preferred_version: preferred.into(),
        lists,
    }
}

/// peapod's discovery as served today.
fn served() -> Vec<DiscoveredGroup> {
    vec![
        group(
            "",
            "v1",
            vec![list(
                "v1",
                vec![
                    resource(
                        "namespaces",
                        "Namespace",
                        false,
                        &["create", "delete", "get", "list"],
                    ),
                    resource("namespaces/finalize", "Namespace", false, &["update"]),
                    resource("pods", "Pod", true, ALL),
                    resource("pods/status", "Pod", true, &["get", "patch", "update"]),
                    resource("nodes", "Node", false, ALL),
                    resource("events", "Event", true, ALL),
                    resource("configmaps", "ConfigMap", true, ALL),
                    resource("secrets", "Secret", true, ALL),
                    resource("serviceaccounts", "ServiceAccount", true, ALL),
                ],
            )],
        ),
        group(
            "coordination.k8s.io",
            "v1",
            vec![list(
                "coordination.k8s.io/v1",
                vec![resource("leases", "Lease", true, ALL)],
            )],
        ),
        group(
            "events.k8s.io",
            "v1",
            vec![list(
                "events.k8s.io/v1",
                vec![resource("events", "Event", true, ALL)],
            )],
        ),
        group(
            "scheduling.k8s.io",
            "v1",
            vec![list(
                "scheduling.k8s.io/v1",
                vec![resource("priorityclasses", "PriorityClass", false, ALL)],
            )],
        ),
    ]
}

fn names(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .map(|t| format!("{}/{}/{}", t.group, t.version, t.plural))
        .collect()
}

#[test]
fn discovery_yields_every_namespaced_deletable_resource() {
    let (targets, parse_error) = targets(&served());
    assert_eq!(parse_error, None);
    assert_eq!(
        names(&targets),
        [
            "/v1/configmaps",
            "/v1/events",
            "/v1/pods",
            "/v1/secrets",
            "/v1/serviceaccounts",
            "coordination.k8s.io/v1/leases",
            "events.k8s.io/v1/events",
        ]
    );
    let pods = targets
        .iter()
        .find(|t| t.is_pods())
        .cloned()
        .unwrap_or_else(|| panic!("pods"));
    assert!(pods.delete_collection && pods.list);
    assert_eq!(pods.gvr(), "/v1, Resource=pods");
    let lease = targets
        .iter()
        .find(|t| t.plural == "leases")
        .map(Target::api_resource);
    assert_eq!(
        lease.map(|a| (a.api_version, a.kind)),
        Some(("coordination.k8s.io/v1".to_string(), "Lease".to_string()))
    );
}

/// A case name, what discovery answered, the targets (group/version/plural), the parse
/// error, and the last target's (deletecollection, list).
type DiscoveryCase = (
    &'static str,
    Vec<DiscoveredGroup>,
    Vec<&'static str>,
    Option<&'static str>,
    Option<(bool, bool)>,
);

#[test]
fn discovery_cases() {
    let cases: Vec<DiscoveryCase> = vec![
        (
            "a resource without delete is left alone",
            vec![group(
                "",
                "v1",
                vec![list(
                    "v1",
                    vec![resource("bindings", "Binding", true, &["create"])],
                )],
            )],
            vec![],
            None,
            None,
        ),
        (
            "without deletecollection, items are deleted one by one",
            vec![group(
                "a.io",
                "v1",
                vec![list(
                    "a.io/v1",
                    vec![resource("things", "Thing", true, &["delete", "list"])],
                )],
            )],
            vec!["a.io/v1/things"],
            None,
            Some((false, true)),
        ),
        (
            "without list, nothing can be checked",
            vec![group(
                "a.io",
                "v1",
                vec![list(
                    "a.io/v1",
                    vec![resource("things", "Thing", true, &["delete"])],
                )],
            )],
            vec!["a.io/v1/things"],
            None,
            Some((false, false)),
        ),
        (
            "the preferred version wins over an earlier one",
            vec![group(
                "a.io",
                "v1",
                vec![
                    list("a.io/v1beta1", vec![resource("things", "Thing", true, ALL)]),
                    list("a.io/v1", vec![resource("things", "Thing", true, ALL)]),
                ],
            )],
            vec!["a.io/v1/things"],
            None,
            Some((true, true)),
        ),
        (
            "a resource only in another version is taken from it",
            vec![group(
                "a.io",
                "v1",
                vec![
                    list("a.io/v1", vec![]),
                    list("a.io/v1beta1", vec![resource("olds", "Old", true, ALL)]),
                ],
            )],
            vec!["a.io/v1beta1/olds"],
            None,
            Some((true, true)),
        ),
        (
            "the preferred version decides whether it can be deleted",
            vec![group(
                "a.io",
                "v1",
                vec![
                    list("a.io/v1beta1", vec![resource("things", "Thing", true, ALL)]),
                    list(
                        "a.io/v1",
                        vec![resource("things", "Thing", true, &["get", "list"])],
                    ),
                ],
            )],
            vec![],
            None,
            None,
        ),
        (
            "a group-version that does not parse is skipped and reported",
            vec![
                group(
                    "a.io",
                    "v1",
                    vec![list(
                        "a.io/v1/extra",
                        vec![resource("things", "Thing", true, ALL)],
                    )],
                ),
                group(
                    "",
                    "v1",
                    vec![list("v1", vec![resource("pods", "Pod", true, ALL)])],
                ),
            ],
            vec!["/v1/pods"],
            Some("unexpected GroupVersion string: a.io/v1/extra"),
            Some((true, true)),
        ),
    ];
    for (name, groups, want, want_error, verbs) in cases {
        let (got, error) = targets(&groups);
        assert_eq!(names(&got), want, "{name}");
        assert_eq!(error.as_deref(), want_error, "{name}");
        if let Some((collection, list)) = verbs {
            let t = got
                .last()
                .cloned()
                .unwrap_or_else(|| panic!("{name}: a target"));
            assert_eq!((t.delete_collection, t.list), (collection, list), "{name}");
        }
    }
}

fn pod(grace: Option<i64>, phase: &str) -> Pod {
    Pod {
        spec: Some(PodSpec {
            termination_grace_period_seconds: grace,
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn pods_may_take_their_longest_grace_period() {
    let cases: Vec<(Vec<Pod>, i64)> = vec![
        (vec![], 0),
        (vec![pod(Some(30), "Running"), pod(Some(5), "Pending")], 30),
        // Terminal pods are gone at once.
        (
            vec![
                pod(Some(30), "Succeeded"),
                pod(Some(60), "Failed"),
                pod(Some(2), "Running"),
            ],
            2,
        ),
        (vec![pod(None, "Running")], 0),
    ];
    for (pods, want) in cases {
        assert_eq!(pods_estimate(&pods), want);
    }
    let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH);
    // Counted from the namespace's deletion.
    assert_eq!(remaining_estimate(30, t(0), t(10)), 30);
    assert_eq!(remaining_estimate(30, t(0), t(29)), 30);
    assert_eq!(remaining_estimate(30, t(0), t(30)), 0);
    assert_eq!(remaining_estimate(0, t(0), t(0)), 0);
    assert_eq!(requeue_after(30), std::time::Duration::from_secs(16));
    assert_eq!(requeue_after(0), std::time::Duration::from_secs(1));
}

fn target(group: &str, plural: &str) -> Target {
    Target {
        group: group.into(),
        version: "v1".into(),
        plural: plural.into(),
        kind: String::new(),
        delete_collection: true,
        list: true,
    }
}

/// A case name, the estimate, the finalizers of each object listed afterwards, and the
/// outcome and error expected.
type LeftCase = (
    &'static str,
    i64,
    Option<Vec<Vec<String>>>,
    Outcome,
    Option<&'static str>,
);

#[test]
fn what_a_deletion_left() {
    let pods = target("", "pods");
    let fins = |f: &[&[&str]]| -> Vec<Vec<String>> {
        f.iter()
            .map(|i| i.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    let cases: Vec<LeftCase> = vec![
        ("nothing left", 30, Some(vec![]), Outcome::default(), None),
        (
            "cannot list: the estimate stands",
            7,
            None,
            Outcome {
                estimate: 7,
                ..Outcome::default()
            },
            None,
        ),
        (
            "pods terminating within their grace",
            30,
            Some(fins(&[&[], &[]])),
            Outcome {
                estimate: 30,
                remaining: 2,
                ..Outcome::default()
            },
            None,
        ),
        (
            "held by finalizers: upstream's 15 s",
            0,
            Some(fins(&[
                &["example.com/a"],
                &["example.com/a", "example.com/b"],
            ])),
            Outcome {
                estimate: 15,
                remaining: 2,
                finalizers: BTreeMap::from([
                    ("example.com/a".to_string(), 2),
                    ("example.com/b".to_string(), 1),
                ]),
            },
            None,
        ),
        (
            "left for no reason: an error",
            0,
            Some(fins(&[&[]])),
            Outcome {
                remaining: 1,
                ..Outcome::default()
            },
            Some("unexpected items still remain in namespace: team for gvr: /v1, Resource=pods"),
        ),
    ];
    for (name, estimate, remaining, want, want_error) in cases {
        let (got, error) = after_deletion("team", &pods, estimate, remaining.as_deref());
        assert_eq!(got, want, "{name}");
        assert_eq!(error.as_deref(), want_error, "{name}");
    }
}

fn at() -> Time {
    Time(Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The conditions a pass sets, as (type, status, reason, message).
fn conditions_of(pass: &Pass) -> Vec<(String, String, String, String)> {
    let mut conditions = Vec::new();
    update_conditions(&mut conditions, &pass.failing_conditions(&at()), &at());
    conditions
        .into_iter()
        .map(|c| {
            (
                c.type_,
                c.status,
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default(),
            )
        })
        .collect()
}

fn row(t: &str, s: &str, r: &str, m: &str) -> (String, String, String, String) {
    (t.into(), s.into(), r.into(), m.into())
}

#[test]
fn a_clean_pass_finalizes_with_every_condition_false() {
    let pass = Pass {
        outcomes: vec![(target("", "pods"), Outcome::default())],
        ..Pass::default()
    };
    assert_eq!(pass.verdict(), Verdict::Finalize);
    assert_eq!(
        conditions_of(&pass),
        [
            row(
                DISCOVERY_FAILURE,
                "False",
                "ResourcesDiscovered",
                "All resources successfully discovered"
            ),
            row(
                GV_PARSING_FAILURE,
                "False",
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed"
            ),
            row(
                CONTENT_FAILURE,
                "False",
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization"
            ),
            row(
                CONTENT_REMAINING,
                "False",
                "ContentRemoved",
                "All content successfully removed"
            ),
            row(
                FINALIZERS_REMAINING,
                "False",
                "ContentRemoved",
                "All content successfully removed"
            ),
        ]
    );
}

#[test]
fn passes_report_what_remains_and_what_failed() {
    let remaining = Pass {
        outcomes: vec![
            (
                target("", "pods"),
                Outcome {
                    estimate: 30,
                    remaining: 2,
                    ..Outcome::default()
                },
            ),
            (
                target("a.io", "things"),
                Outcome {
                    estimate: 15,
                    remaining: 1,
                    finalizers: BTreeMap::from([("example.com/hold".to_string(), 1)]),
                },
            ),
            (target("", "secrets"), Outcome::default()),
        ],
        ..Pass::default()
    };
    assert_eq!(remaining.verdict(), Verdict::Wait { estimate: 30 });
    let got = conditions_of(&remaining);
    assert_eq!(
        got[3],
        row(
            CONTENT_REMAINING,
            "True",
            "SomeResourcesRemain",
            "Some resources are remaining: pods. has 2 resource instances, things.a.io has 1 resource instances"
        )
    );
    assert_eq!(
        got[4],
        row(
            FINALIZERS_REMAINING,
            "True",
            "SomeFinalizerRemain",
            "Some finalizers are remaining: example.com/hold in 1 resource instances"
        )
    );

    let failed = Pass {
        discovery: Some(DiscoveryFailure::Groups(vec![
            ("b.io/v1".into(), "503".into()),
            ("a.io/v1".into(), "timeout".into()),
        ])),
        parse_error: Some("unexpected GroupVersion string: x/y/z".into()),
        content_errors: vec!["z failed".into(), "a failed".into()],
        outcomes: vec![(
            target("", "pods"),
            Outcome {
                estimate: 30,
                remaining: 1,
                ..Outcome::default()
            },
        )],
    };
    let got = conditions_of(&failed);
    assert_eq!(
        got[0],
        row(
            DISCOVERY_FAILURE,
            "True",
            "DiscoveryFailed",
            "Discovery failed for some groups, 2 failing: unable to retrieve the complete list of server APIs: a.io/v1: timeout, b.io/v1: 503"
        )
    );
    assert_eq!(
        got[1],
        row(
            GV_PARSING_FAILURE,
            "True",
            "GroupVersionParsingFailed",
            "unexpected GroupVersion string: x/y/z"
        )
    );
    assert_eq!(
        got[2],
        row(
            CONTENT_FAILURE,
            "True",
            "ContentDeletionFailed",
            "Failed to delete all resource types, 2 remaining: a failed, z failed"
        )
    );
    // Errors win over an estimate: retried with backoff.
    assert!(
        matches!(failed.verdict(), Verdict::Failed(m) if m.starts_with('[') && m.contains("z failed"))
    );

    let one = Pass {
        discovery: Some(DiscoveryFailure::Failed("connection refused".into())),
        ..Pass::default()
    };
    assert_eq!(one.verdict(), Verdict::Failed("connection refused".into()));
    assert_eq!(conditions_of(&one)[0].3, "connection refused");
}

#[test]
fn conditions_change_only_when_their_content_does() {
    let later = Time(Timestamp::from_second(1_700_000_100).unwrap_or(Timestamp::UNIX_EPOCH));
    let remaining = Pass {
        outcomes: vec![(
            target("", "pods"),
            Outcome {
                estimate: 30,
                remaining: 1,
                ..Outcome::default()
            },
        )],
        ..Pass::default()
    };
    let mut conditions = Vec::new();
    assert!(update_conditions(
        &mut conditions,
        &remaining.failing_conditions(&at()),
        &at()
    ));
    // The same again: nothing to write.
    assert!(!update_conditions(
        &mut conditions,
        &remaining.failing_conditions(&later),
        &later
    ));
    // Cleared: status flips, its transition time moves; the others keep theirs.
    let clean = Pass::default();
    assert!(update_conditions(
        &mut conditions,
        &clean.failing_conditions(&later),
        &later
    ));
    let by_type = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_type(CONTENT_REMAINING).status, "False");
    assert_eq!(
        by_type(CONTENT_REMAINING).last_transition_time,
        Some(later.clone())
    );
    assert_eq!(by_type(DISCOVERY_FAILURE).last_transition_time, Some(at()));
}

fn namespace(finalizers: &[&str], deleting: bool, phase: &str) -> Namespace {
    Namespace {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("team".into()),
            deletion_timestamp: deleting.then(at),
            ..Default::default()
        },
        spec: Some(NamespaceSpec {
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        }),
        status: Some(NamespaceStatus {
            phase: Some(phase.into()),
            ..NamespaceStatus::default()
        }),
    }
}

#[test]
fn finalizing_drops_only_the_kubernetes_finalizer() {
    let cases: &[(&[&str], bool, &[&str])] = &[
        (&["kubernetes"], true, &[]),
        (
            &["z.io/b", "kubernetes", "a.io/a", "a.io/a"],
            true,
            &["a.io/a", "z.io/b"],
        ),
        (&["a.io/a"], false, &["a.io/a"]),
        (&[], false, &[]),
    ];
    for (finalizers, ours, rest) in cases {
        let ns = namespace(finalizers, true, "Terminating");
        assert_eq!(has_kubernetes_finalizer(&ns), *ours, "{finalizers:?}");
        assert_eq!(finalized(&ns), *rest, "{finalizers:?}");
    }
    assert!(needs_terminating_phase(&namespace(
        &["kubernetes"],
        true,
        "Active"
    )));
    assert!(!needs_terminating_phase(&namespace(
        &["kubernetes"],
        true,
        "Terminating"
    )));
    assert!(!needs_terminating_phase(&namespace(
        &["kubernetes"],
        false,
        "Active"
    )));
}

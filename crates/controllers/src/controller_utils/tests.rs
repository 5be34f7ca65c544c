use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A pod by the traits the predicates and the ranking read.
#[derive(Clone, Default)]
struct P {
    name: &'static str,
    node: &'static str,
    phase: &'static str,
    /// Ready since this second (relative to `at`), if ready.
    ready_since: Option<i64>,
    created: Option<i64>,
    restarts: i32,
    cost: Option<&'static str>,
    deleting: bool,
}

impl P {
    fn pod(&self) -> Pod {
        let mut conditions = Vec::new();
        if let Some(s) = self.ready_since {
            conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(s))),
                ..PodCondition::default()
            });
        } else {
            conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..PodCondition::default()
            });
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.into()),
                uid: Some(format!("uid-{}", self.name)),
                creation_timestamp: self.created.map(|c| Time(at(c))),
                deletion_timestamp: self.deleting.then(|| Time(at(0))),
                annotations: self
                    .cost
                    .map(|c| BTreeMap::from([(POD_DELETION_COST.to_string(), c.to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!self.node.is_empty()).then(|| self.node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: (!self.phase.is_empty()).then(|| self.phase.to_string()),
                conditions: Some(conditions),
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    restart_count: self.restarts,
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }
}

fn running(name: &'static str) -> P {
    P {
        name,
        node: "n1",
        phase: "Running",
        ready_since: Some(-100),
        created: Some(-200),
        ..P::default()
    }
}

#[test]
fn pod_predicates() {
    let ready = running("a");
    let cases: Vec<(&str, P, bool, bool, bool)> = vec![
        // name, pod, active, terminating, ready
        ("running and ready", ready.clone(), true, false, true),
        (
            "pending",
            P {
                phase: "Pending",
                ready_since: None,
                ..ready.clone()
            },
            true,
            false,
            false,
        ),
        (
            "succeeded",
            P {
                phase: "Succeeded",
                ready_since: None,
                ..ready.clone()
            },
            false,
            false,
            false,
        ),
        (
            "failed while deleting",
            P {
                phase: "Failed",
                deleting: true,
                ..ready.clone()
            },
            false,
            false,
            true,
        ),
        (
            "running, being deleted",
            P {
                deleting: true,
                ..ready.clone()
            },
            false,
            true,
            true,
        ),
    ];
    for (name, p, active, terminating, is_ready) in cases {
        let pod = p.pod();
        assert_eq!(is_pod_active(&pod), active, "{name}: active");
        assert_eq!(is_pod_terminating(&pod), terminating, "{name}: terminating");
        assert_eq!(is_pod_ready(&pod), is_ready, "{name}: ready");
    }
    let pods = vec![
        running("a").pod(),
        P {
            deleting: true,
            ..running("b")
        }
        .pod(),
    ];
    assert_eq!(filter_active_pods(pods.iter()).len(), 1);
    assert_eq!(count_terminating_pods(&pods), 1);
}

#[test]
fn a_pod_is_available_once_ready_for_min_ready_seconds() {
    // Ready since -100 s.
    let pod = running("a").pod();
    let cases = [
        (0, 0, true),
        (10, 0, true),
        (100, 0, false), // exactly 100 s: not yet (upstream's strict Before)
        (100, 1, true),
        (200, 0, false),
    ];
    for (min_ready, later, want) in cases {
        assert_eq!(
            is_pod_available(&pod, min_ready, at(later)),
            want,
            "minReadySeconds {min_ready} at +{later}"
        );
    }
    assert_eq!(pod_available_at(&pod, 200, at(0)), Some(at(100)));
    assert_eq!(pod_available_at(&pod, 10, at(0)), None);
    let not_ready = P {
        ready_since: None,
        ..running("b")
    }
    .pod();
    assert!(!is_pod_available(&not_ready, 0, at(0)));
}

#[test]
fn a_pod_from_a_template_is_upstreams() {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            annotations: Some(BTreeMap::from([("note".into(), "x".into())])),
            finalizers: Some(vec!["example.com/keep".into()]),
            // Not copied: a template's name is no pod's name.
            name: Some("ignored".into()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    };
    let owner = new_controller_ref("apps/v1", "ReplicaSet", "web-5d", "rs-uid");
    let pod = get_pod_from_template(&template, "web-5d", Some(&owner));
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-5d-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(
        pod.metadata.labels,
        template.metadata.as_ref().and_then(|m| m.labels.clone())
    );
    assert_eq!(
        pod.metadata.annotations,
        template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
    );
    assert_eq!(
        pod.metadata.finalizers,
        Some(vec!["example.com/keep".to_string()])
    );
    assert_eq!(pod.metadata.owner_references, Some(vec![owner.clone()]));
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    assert_eq!(pod.spec, template.spec);
    assert!(validate_controller_ref(&owner).is_ok());
    let mut loose = owner.clone();
    loose.block_owner_deletion = None;
    assert_eq!(
        validate_controller_ref(&loose),
        Err("controllerRef.BlockOwnerDeletion is not set")
    );
    // A name too long for a prefix is used bare.
    let long = "x".repeat(253);
    assert_eq!(get_pods_prefix(&long), long);
}

#[test]
fn template_hashes_are_stable_safe_and_collision_aware() {
    let t = |image: &str| PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    };
    let a = compute_hash(&t("nginx:1"), None);
    assert_eq!(a, compute_hash(&t("nginx:1"), None), "stable");
    assert_ne!(a, compute_hash(&t("nginx:2"), None), "another template");
    assert_ne!(
        a,
        compute_hash(&t("nginx:1"), Some(1)),
        "a collision count changes it"
    );
    assert_ne!(
        compute_hash(&t("nginx:1"), Some(1)),
        compute_hash(&t("nginx:1"), Some(2))
    );
    // A decimal u32, safe-encoded: at most 10 characters of upstream's alphabet, so
    // `<deployment>-<hash>` is a valid label value.
    assert!(!a.is_empty() && a.len() <= 10, "{a}");
    assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)), "{a}");
    // SafeEncodeString maps digits as upstream: '0' (48) → 48 % 27 = 21 → '4'.
    assert_eq!(safe_encode_string("0123456789"), "456789bcdf");
}

#[test]
fn fnv32a_matches_the_reference_values() {
    assert_eq!(fnv32a(b"", FNV32_OFFSET), 0x811c_9dc5);
    assert_eq!(fnv32a(b"a", FNV32_OFFSET), 0xe40c_292c);
    assert_eq!(fnv32a(b"foobar", FNV32_OFFSET), 0xbf9c_f968);
}

#[tokio::test]
async fn slow_start_batches_double_and_stop_at_the_first_failing_batch() {
    // (calls, fail from call number, expected successes, expected calls made)
    let cases: &[(usize, Option<usize>, usize, usize)] = &[
        (0, None, 0, 0),
        (1, None, 1, 1),
        (10, None, 10, 10), // batches 1, 2, 4, 3
        (10, Some(0), 0, 1),
        // Failing from the 4th call: batches 1, 2 pass, the batch of 4 has 1 success.
        (10, Some(4), 4, 7),
    ];
    for (count, fail_from, want_ok, want_calls) in cases {
        let calls = Arc::new(AtomicUsize::new(0));
        let (ok, err) = slow_start_batch(*count, SLOW_START_INITIAL_BATCH_SIZE, || {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, AtomicOrdering::SeqCst);
                match fail_from {
                    Some(f) if n >= *f => Err(n),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert_eq!(ok, *want_ok, "{count} calls failing from {fail_from:?}");
        assert_eq!(calls.load(AtomicOrdering::SeqCst), *want_calls);
        assert_eq!(err.is_some(), fail_from.is_some_and(|f| f < *count));
    }
}

/// The names of `pods` in deletion order.
fn order(pods: Vec<P>, ranks: Vec<i64>, now: Option<Timestamp>) -> Vec<&'static str> {
    let names: BTreeMap<String, &'static str> = pods
        .iter()
        .map(|p| (format!("uid-{}", p.name), p.name))
        .collect();
    let sorted = ActivePodsWithRanks {
        pods: pods.iter().map(P::pod).collect::<Vec<_>>(),
        ranks,
        now,
    }
    .sort();
    sorted
        .pods
        .iter()
        .map(|p| names[p.metadata.uid.as_deref().unwrap_or_default()])
        .collect()
}

#[test]
fn surplus_pods_are_deleted_in_upstreams_order() {
    let base = running("base");
    let now = Some(at(0));
    type Case = (&'static str, Vec<P>, Vec<i64>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "unassigned before assigned",
            vec![
                P {
                    name: "assigned",
                    ..base.clone()
                },
                P {
                    name: "unassigned",
                    node: "",
                    ..base.clone()
                },
            ],
            vec![0, 0],
            vec!["unassigned", "assigned"],
        ),
        (
            "pending < unknown < running",
            vec![
                P {
                    name: "running",
                    ..base.clone()
                },
                P {
                    name: "unknown",
                    phase: "Unknown",
                    ..base.clone()
                },
                P {
                    name: "pending",
                    phase: "Pending",
                    ..base.clone()
                },
            ],
            vec![0, 0, 0],
            vec!["pending", "unknown", "running"],
        ),
        (
            "not ready before ready",
            vec![
                P {
                    name: "ready",
                    ..base.clone()
                },
                P {
                    name: "not-ready",
                    ready_since: None,
                    ..base.clone()
                },
            ],
            vec![0, 0],
            vec!["not-ready", "ready"],
        ),
        (
            "lower deletion cost first; malformed counts as 0",
            vec![
                P {
                    name: "high",
                    cost: Some("10"),
                    ..base.clone()
                },
                P {
                    name: "low",
                    cost: Some("-5"),
                    ..base.clone()
                },
                P {
                    name: "bad",
                    cost: Some("x"),
                    ..base.clone()
                },
            ],
            vec![0, 0, 0],
            vec!["low", "bad", "high"],
        ),
        (
            "doubled up (higher rank) first",
            vec![
                P {
                    name: "alone",
                    ..base.clone()
                },
                P {
                    name: "crowded",
                    ..base.clone()
                },
            ],
            vec![1, 3],
            vec!["crowded", "alone"],
        ),
        (
            "ready for less time first (different log buckets)",
            vec![
                P {
                    name: "long",
                    ready_since: Some(-1000),
                    ..base.clone()
                },
                P {
                    name: "short",
                    ready_since: Some(-10),
                    ..base.clone()
                },
            ],
            vec![0, 0],
            vec!["short", "long"],
        ),
        (
            "more restarts first",
            vec![
                P {
                    name: "calm",
                    ..base.clone()
                },
                P {
                    name: "flappy",
                    restarts: 4,
                    ..base.clone()
                },
            ],
            vec![0, 0],
            vec!["flappy", "calm"],
        ),
        (
            "younger first, no creation time first of all",
            vec![
                P {
                    name: "old",
                    created: Some(-5000),
                    ..base.clone()
                },
                P {
                    name: "young",
                    created: Some(-10),
                    ..base.clone()
                },
                P {
                    name: "unknown-age",
                    created: None,
                    ..base.clone()
                },
            ],
            vec![0, 0, 0],
            vec!["unknown-age", "young", "old"],
        ),
        (
            "same log bucket: by uid",
            vec![
                P {
                    name: "b",
                    created: Some(-300),
                    ..base.clone()
                },
                P {
                    name: "a",
                    created: Some(-290),
                    ..base.clone()
                },
            ],
            vec![0, 0],
            vec!["a", "b"],
        ),
    ];
    for (name, pods, ranks, want) in cases {
        assert_eq!(order(pods, ranks, now), want, "{name}");
    }
    // Without `now` times are compared exactly: younger first.
    let pods = vec![
        P {
            name: "b",
            created: Some(-300),
            ..base.clone()
        },
        P {
            name: "a",
            created: Some(-290),
            ..base.clone()
        },
        P {
            name: "c",
            created: Some(-295),
            ..base.clone()
        },
    ];
    assert_eq!(order(pods, vec![0, 0, 0], None), vec!["a", "c", "b"]);
}

#[test]
fn ranks_count_active_related_pods_on_the_same_node() {
    let on = |name, node| {
        P {
            name,
            node,
            ..running(name)
        }
        .pod()
    };
    let related = vec![
        on("a", "n1"),
        on("b", "n1"),
        on("c", "n2"),
        P {
            deleting: true,
            ..P {
                name: "d",
                node: "n2",
                ..running("d")
            }
        }
        .pod(),
    ];
    let ranked = pods_ranked_by_related_pods_on_same_node(
        related.iter().collect::<Vec<_>>(),
        &related,
        at(0),
    );
    assert_eq!(ranked.ranks, vec![2, 2, 1, 1]);
    // The two pods sharing n1 go before the lone one on n2.
    let sorted = ranked.sort();
    let first: Vec<&str> = sorted
        .pods
        .iter()
        .take(2)
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    assert!(first.contains(&"a") && first.contains(&"b"), "{first:?}");
}

#[test]
fn older_objects_sort_first_names_breaking_ties() {
    let m = |name: &str, t: Option<i64>| ObjectMeta {
        name: Some(name.into()),
        creation_timestamp: t.map(|t| Time(at(t))),
        ..ObjectMeta::default()
    };
    let mut metas = [m("b", Some(5)), m("a", Some(5)), m("c", Some(1))];
    metas.sort_by(by_creation_timestamp);
    let names: Vec<&str> = metas.iter().filter_map(|m| m.name.as_deref()).collect();
    assert_eq!(names, ["c", "a", "b"]);
}

#[test]
fn owner_uids_tell_a_replaced_controller_from_an_updated_one() {
    let mut uids = OwnerUids::default();
    // (uid seen, gone) -> replaced, in watch order for one key.
    let steps = [
        ("u1", false, false), // first sight
        ("u1", false, false), // an update
        ("u2", false, true),  // re-created under the same name
        ("u2", true, true),   // deleted
        ("u3", false, false), // created again after the deletion was seen
    ];
    for (i, (uid, gone, want)) in steps.into_iter().enumerate() {
        assert_eq!(uids.replaced("ns/web", uid, gone), want, "step {i}");
    }
    assert_eq!(key("ns", "web"), "ns/web");
    let meta = ObjectMeta {
        namespace: Some("ns".into()),
        name: Some("web".into()),
        ..ObjectMeta::default()
    };
    assert_eq!(meta_key(&meta), "ns/web");
}

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, ReplicationController,
    ReplicationControllerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as MetaSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;

use super::replica_set::{filter_claimed_pods, indirectly_related_pods, key, pod_key, related};
use super::replica_set_utils::{get_condition, remove_condition, with_observed_generation};
use super::replication::{rc_status, to_replica_set};
use super::*;
use crate::controller_utils::new_controller_ref;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn rs(name: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: None,
            selector: MetaSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "web"), ("tier", "front")]),
                    ..ObjectMeta::default()
                }),
                spec: None,
            }),
        },
        status: None,
    }
}

/// A pod by the traits the controller reads.
#[derive(Clone, Default)]
struct P {
    name: &'static str,
    node: &'static str,
    phase: &'static str,
    ready_since: Option<i64>,
    created: i64,
    owner: Option<&'static str>,
    labels: &'static [(&'static str, &'static str)],
    deleting: bool,
    namespace: Option<&'static str>,
    rv: &'static str,
}

impl P {
    fn pod(&self) -> Pod {
        let ready = PodCondition {
            type_: "Ready".into(),
            status: if self.ready_since.is_some() {
                "True"
            } else {
                "False"
            }
            .into(),
            last_transition_time: self.ready_since.map(|s| Time(at(s))),
            ..PodCondition::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.into()),
                namespace: Some(self.namespace.unwrap_or("ns").into()),
                uid: Some(format!("uid-{}", self.name)),
                resource_version: Some(self.rv.into()),
                creation_timestamp: Some(Time(at(self.created))),
                deletion_timestamp: self.deleting.then(|| Time(at(0))),
                labels: labels(if self.labels.is_empty() {
                    &[("app", "web"), ("tier", "front")]
                } else {
                    self.labels
                }),
                owner_references: self.owner.map(|o| {
                    vec![new_controller_ref(
                        "apps/v1",
                        "ReplicaSet",
                        o,
                        &format!("uid-{o}"),
                    )]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!self.node.is_empty()).then(|| self.node.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: (!self.phase.is_empty()).then(|| self.phase.into()),
                conditions: Some(vec![ready]),
                ..PodStatus::default()
            }),
        }
    }
}

fn ready(name: &'static str, since: i64) -> P {
    P {
        name,
        node: "n1",
        phase: "Running",
        ready_since: Some(since),
        owner: Some("web"),
        ..P::default()
    }
}

#[test]
fn the_plan_closes_the_gap_up_to_the_burst() {
    let cases = [
        (0, 2, 500, Plan::Create(2)),
        (2, 2, 500, Plan::Nothing),
        (5, 2, 500, Plan::Delete(3)),
        (0, 1000, 500, Plan::Create(500)),
        (900, 0, 500, Plan::Delete(500)),
        (3, 0, 500, Plan::Delete(3)),
        // A negative count (refused by validation) creates nothing.
        (0, -1, 500, Plan::Nothing),
    ];
    for (active, replicas, burst, want) in cases {
        assert_eq!(
            plan(active, replicas, burst),
            want,
            "{active} active, {replicas} wanted"
        );
    }
}

#[test]
fn surplus_pods_go_in_upstreams_order() {
    let unassigned = P {
        name: "unassigned",
        phase: "Pending",
        created: 5,
        ..P::default()
    };
    let pending = P {
        name: "pending",
        node: "n1",
        phase: "Pending",
        created: 5,
        ..P::default()
    };
    let not_ready = P {
        name: "not-ready",
        node: "n1",
        phase: "Running",
        created: 5,
        ..P::default()
    };
    let old_ready = ready("old-ready", -100_000);
    let young_ready = ready("young-ready", -10);
    let all: Vec<Pod> = [&old_ready, &young_ready, &not_ready, &pending, &unassigned]
        .iter()
        .map(|p| p.pod())
        .collect();
    let names = |pods: Vec<Pod>| -> Vec<String> {
        pods.into_iter()
            .map(|p| p.metadata.name.unwrap_or_default())
            .collect()
    };
    let cases: &[(usize, &[&str])] = &[
        (1, &["unassigned"]),
        (3, &["unassigned", "pending", "not-ready"]),
        // Ready for less time goes first.
        (4, &["unassigned", "pending", "not-ready", "young-ready"]),
    ];
    for (diff, want) in cases {
        assert_eq!(
            names(get_pods_to_delete(&all, &all, *diff, at(0))),
            *want,
            "delete {diff}"
        );
    }
    // All of them: in the order given, nothing to rank.
    assert_eq!(names(get_pods_to_delete(&all, &all, 9, at(0))).len(), 5);
}

#[test]
fn doubled_up_pods_go_before_lone_ones() {
    // Equal in every other respect; n1 has two pods of the related sets, n2 one.
    let a = ready("a", -100);
    let b = ready("b", -100);
    let lone = P {
        node: "n2",
        ..ready("lone", -100)
    };
    let other_set = P {
        owner: Some("web-old"),
        ..ready("sibling", -100)
    };
    let active: Vec<Pod> = [&lone, &a].iter().map(|p| p.pod()).collect();
    let related: Vec<Pod> = [&lone, &a, &b, &other_set]
        .iter()
        .map(|p| p.pod())
        .collect();
    let doomed = get_pods_to_delete(&active, &related, 1, at(0));
    assert_eq!(doomed[0].metadata.name.as_deref(), Some("a"));
}

#[test]
fn a_replica_set_looks_at_its_own_pods_and_orphans() {
    let cases = [
        (
            P {
                name: "mine",
                owner: Some("web"),
                ..P::default()
            },
            true,
        ),
        (
            P {
                name: "orphan",
                ..P::default()
            },
            true,
        ),
        (
            P {
                name: "theirs",
                owner: Some("other"),
                ..P::default()
            },
            false,
        ),
        (
            P {
                name: "elsewhere",
                namespace: Some("other"),
                ..P::default()
            },
            false,
        ),
    ];
    for (p, want) in cases {
        let pods = vec![p.pod()];
        assert_eq!(
            !pods_of(&pods, "ns", "uid-web").is_empty(),
            want,
            "{}",
            p.name
        );
    }
}

#[test]
fn terminating_pods_count_only_when_claimed() {
    let sel = api::selector::LabelSelector::from_label_selector(Some(&rs("web", 1).spec.selector))
        .unwrap_or_default();
    let pods: Vec<Pod> = [
        P {
            name: "mine",
            owner: Some("web"),
            deleting: true,
            ..P::default()
        },
        P {
            name: "orphan",
            deleting: true,
            ..P::default()
        },
        P {
            name: "relabelled",
            owner: Some("web"),
            deleting: true,
            labels: &[("app", "db")],
            ..P::default()
        },
    ]
    .iter()
    .map(P::pod)
    .collect();
    let claimed = filter_claimed_pods(&pods, "uid-web", &sel);
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].metadata.name.as_deref(), Some("mine"));
}

#[test]
fn related_replica_sets_share_the_owner() {
    let owned = |name: &str, owner: &str| {
        let mut r = rs(name, 1);
        r.metadata.owner_references = Some(vec![new_controller_ref(
            "apps/v1",
            "Deployment",
            owner,
            &format!("uid-{owner}"),
        )]);
        r
    };
    let all = vec![
        owned("a", "d"),
        owned("b", "d"),
        owned("c", "e"),
        rs("lone", 1),
    ];
    let names = |v: Vec<&ReplicaSet>| -> Vec<String> {
        v.iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(names(related(&all[0], &all)), ["a", "b"]);
    assert!(related(&all[3], &all).is_empty());
    // Their pods, each once, in their namespace only.
    let pods: Vec<Pod> = [
        P {
            name: "p1",
            ..P::default()
        },
        P {
            name: "p2",
            namespace: Some("other"),
            ..P::default()
        },
        P {
            name: "p3",
            labels: &[("app", "db")],
            ..P::default()
        },
    ]
    .iter()
    .map(P::pod)
    .collect();
    let sets = related(&all[0], &all);
    let found = indirectly_related_pods(&sets, &pods);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].metadata.name.as_deref(), Some("p1"));
}

#[test]
fn status_counts_the_claimed_pods() {
    let mut set = rs("web", 4);
    set.spec.min_ready_seconds = Some(30);
    let pods: Vec<Pod> = [
        // Ready long enough: available.
        ready("a", -100),
        // Ready, not yet for 30 s.
        ready("b", -10),
        // Not ready.
        P {
            name: "c",
            node: "n1",
            phase: "Running",
            owner: Some("web"),
            ..P::default()
        },
        // Missing a template label: not fully labeled.
        P {
            labels: &[("app", "web")],
            ..ready("d", -100)
        },
    ]
    .iter()
    .map(P::pod)
    .collect();
    let s = calculate_status(&set, &pods, Some(1), None, at(0));
    assert_eq!(
        (
            s.replicas,
            s.fully_labeled_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.terminating_replicas
        ),
        (4, Some(3), Some(3), Some(2), Some(1))
    );
    assert!(s.conditions.is_none());
    // Zero counts are absent, as Go omits them; the RC has no terminating count.
    let empty = calculate_status::<Pod>(&set, &[], None, None, at(0));
    assert_eq!(
        (
            empty.replicas,
            empty.ready_replicas,
            empty.terminating_replicas
        ),
        (0, None, None)
    );
}

#[test]
fn the_replica_failure_condition_follows_the_syncs() {
    let set = rs("web", 2);
    let one = vec![ready("a", -100).pod()];
    let three: Vec<Pod> = ["a", "b", "c"]
        .iter()
        .map(|n| ready(n, -100).pod())
        .collect();
    // (pods, error, condition before (reason, message), want (reason, message) or none)
    type Case<'a> = (
        &'a str,
        &'a [Pod],
        Option<&'a str>,
        Option<(&'a str, &'a str)>,
        Option<(&'a str, &'a str)>,
    );
    let cases: &[Case] = &[
        (
            "create fails",
            &one,
            Some("quota"),
            None,
            Some(("FailedCreate", "quota")),
        ),
        (
            "delete fails",
            &three,
            Some("denied"),
            None,
            Some(("FailedDelete", "denied")),
        ),
        (
            "fails again: first condition kept",
            &one,
            Some("other"),
            Some(("FailedCreate", "quota")),
            Some(("FailedCreate", "quota")),
        ),
        (
            "recovers",
            &one,
            None,
            Some(("FailedCreate", "quota")),
            None,
        ),
        ("never failed", &one, None, None, None),
    ];
    for (name, pods, error, before, want) in cases {
        let mut set = set.clone();
        if let Some((reason, message)) = before {
            let mut status = ReplicaSetStatus::default();
            set_condition(
                &mut status,
                replica_set_utils::new_condition(REPLICA_FAILURE, "True", reason, message, at(-50)),
            );
            set.status = Some(status);
        }
        let s = calculate_status(&set, pods, None, *error, at(0));
        let got = get_condition(&s, REPLICA_FAILURE).map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
                c.status.clone().unwrap_or_default(),
            )
        });
        let want = want.map(|(r, m)| (r.to_string(), m.to_string(), "True".to_string()));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn conditions_are_replaced_only_when_they_change() {
    let mut s = ReplicaSetStatus::default();
    let c = |reason: &str, t| {
        replica_set_utils::new_condition(REPLICA_FAILURE, "True", reason, "m", at(t))
    };
    set_condition(&mut s, c("FailedCreate", 0));
    set_condition(&mut s, c("FailedCreate", 10));
    assert_eq!(
        get_condition(&s, REPLICA_FAILURE).and_then(|c| c.last_transition_time.clone()),
        Some(Time(at(0)))
    );
    set_condition(&mut s, c("FailedDelete", 20));
    assert_eq!(s.conditions.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        get_condition(&s, REPLICA_FAILURE)
            .and_then(|c| c.reason.clone())
            .as_deref(),
        Some("FailedDelete")
    );
    remove_condition(&mut s, REPLICA_FAILURE);
    assert!(s.conditions.is_none());
}

#[test]
fn status_is_written_only_when_it_changed() {
    let mut set = rs("web", 1);
    let current = ReplicaSetStatus {
        replicas: 1,
        ready_replicas: Some(1),
        available_replicas: Some(1),
        fully_labeled_replicas: Some(1),
        observed_generation: Some(2),
        terminating_replicas: Some(0),
        conditions: None,
    };
    set.status = Some(current.clone());
    let cases: &[(&str, ReplicaSetStatus, bool)] = &[
        ("same", current.clone(), true),
        (
            "absent count is zero",
            ReplicaSetStatus {
                ready_replicas: Some(1),
                ..current.clone()
            },
            true,
        ),
        (
            "ready changed",
            ReplicaSetStatus {
                ready_replicas: None,
                ..current.clone()
            },
            false,
        ),
        (
            "terminating changed",
            ReplicaSetStatus {
                terminating_replicas: Some(1),
                ..current.clone()
            },
            false,
        ),
        (
            "terminating first written",
            ReplicaSetStatus {
                terminating_replicas: None,
                ..current.clone()
            },
            false,
        ),
        (
            "replicas changed",
            ReplicaSetStatus {
                replicas: 2,
                ..current.clone()
            },
            false,
        ),
    ];
    for (name, new, want) in cases {
        assert_eq!(status_unchanged(&set, new), *want, "{name}");
    }
    // A new generation must be observed even with the same counts.
    set.metadata.generation = Some(3);
    assert!(!status_unchanged(&set, &current));
    assert_eq!(
        with_observed_generation(&set, current).observed_generation,
        Some(3)
    );
}

#[test]
fn availability_is_looked_at_again_when_the_first_pod_gets_there() {
    let pods: Vec<Pod> = [ready("a", -100), ready("b", -25), ready("c", -5)]
        .iter()
        .map(P::pod)
        .collect();
    let status = |ready, available| ReplicaSetStatus {
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        ..ReplicaSetStatus::default()
    };
    let s = |n| Some(Duration::from_secs(n));
    let cases = [
        ("no minReadySeconds", 0, status(3, 3), None),
        ("all available", 30, status(3, 3), None),
        // b becomes available in 5 s (plus the skew margin).
        ("first to become available", 30, status(3, 1), s(6)),
    ];
    for (name, min_ready, st, want) in cases {
        assert_eq!(next_sync(min_ready, &st, &pods, at(0)), want, "{name}");
    }
    // Nothing ready-but-unavailable among the pods (counts stale): after minReadySeconds.
    assert_eq!(next_sync(30, &status(1, 0), &pods[..1], at(0)), s(31));
}

/// Replica sets by key, as the cache would resolve them.
struct FakeLookup;

impl Lookup for FakeLookup {
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String> {
        let known = ["web", "web2"].contains(&r.name.as_str());
        (known && r.kind == "ReplicaSet" && r.uid == format!("uid-{}", r.name))
            .then(|| key(namespace, &r.name))
    }
    fn matching(&self, pod: &Pod) -> Vec<String> {
        let app = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .cloned();
        match app.as_deref() {
            Some("web") => vec!["ns/web".into(), "ns/web2".into()],
            _ => Vec::new(),
        }
    }
}

#[test]
fn pod_events_become_observations_and_syncs() {
    use PodAction::*;
    let obs_del = |c: &str, p: &str| DeletionObserved {
        controller: c.into(),
        pod: p.into(),
    };
    let enq = |k: &str| Enqueue(k.into());
    let owned = P {
        name: "p",
        owner: Some("web"),
        rv: "1",
        ..P::default()
    };
    let orphan = P {
        name: "p",
        rv: "1",
        ..P::default()
    };
    let relabelled = |p: &P| P {
        labels: &[("app", "db")],
        rv: "2",
        ..p.clone()
    };
    let deleting = |p: &P| P {
        deleting: true,
        rv: "2",
        ..p.clone()
    };
    let other_kind = P {
        name: "p",
        owner: Some("unknown"),
        rv: "1",
        ..P::default()
    };
    // (case, old, new, deleted, want)
    type Case = (&'static str, Option<P>, P, bool, Vec<PodAction>);
    let cases: Vec<Case> = vec![
        (
            "owned pod added",
            None,
            owned.clone(),
            false,
            vec![CreationObserved("ns/web".into()), enq("ns/web")],
        ),
        (
            "orphan added",
            None,
            orphan.clone(),
            false,
            vec![enq("ns/web"), enq("ns/web2")],
        ),
        (
            "added already deleting",
            None,
            deleting(&owned),
            false,
            vec![obs_del("ns/web", "ns/p"), enq("ns/web")],
        ),
        (
            "unknown controller",
            None,
            other_kind.clone(),
            false,
            vec![],
        ),
        (
            "relist: same version",
            Some(owned.clone()),
            owned.clone(),
            false,
            vec![],
        ),
        (
            "owned pod updated",
            Some(owned.clone()),
            P {
                rv: "2",
                ..owned.clone()
            },
            false,
            vec![enq("ns/web")],
        ),
        (
            "marked for deletion",
            Some(owned.clone()),
            deleting(&owned),
            false,
            vec![obs_del("ns/web", "ns/p"), enq("ns/web")],
        ),
        (
            "released (ref removed)",
            Some(owned.clone()),
            P {
                rv: "2",
                ..orphan.clone()
            },
            false,
            vec![enq("ns/web"), enq("ns/web"), enq("ns/web2")],
        ),
        (
            "orphan relabelled away",
            Some(orphan.clone()),
            relabelled(&orphan),
            false,
            vec![],
        ),
        (
            "orphan relabelled in",
            Some(relabelled(&orphan)),
            P {
                rv: "3",
                ..orphan.clone()
            },
            false,
            vec![enq("ns/web"), enq("ns/web2")],
        ),
        (
            "orphan status update",
            Some(orphan.clone()),
            P {
                rv: "2",
                ..orphan.clone()
            },
            false,
            vec![],
        ),
        (
            "owned pod deleted",
            None,
            owned.clone(),
            true,
            vec![obs_del("ns/web", "ns/p"), enq("ns/web")],
        ),
        ("orphan deleted", None, orphan.clone(), true, vec![]),
    ];
    for (name, old, new, gone, want) in cases {
        let old = old.map(|p| p.pod());
        let got = pod_event_actions(old.as_ref(), &new.pod(), gone, &FakeLookup);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_replication_controller_is_read_as_a_replica_set() {
    let rc = ReplicationController {
        metadata: ObjectMeta {
            name: Some("legacy".into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicationControllerSpec {
            replicas: Some(3),
            min_ready_seconds: Some(5),
            selector: labels(&[("app", "legacy")]),
            template: Some(PodTemplateSpec::default()),
        }),
        status: None,
    };
    let set = to_replica_set(&rc);
    assert_eq!(set.spec.replicas, Some(3));
    assert_eq!(set.spec.min_ready_seconds, Some(5));
    assert_eq!(set.spec.selector.match_labels, labels(&[("app", "legacy")]));
    assert_eq!(set.metadata.name.as_deref(), Some("legacy"));
    // A computed status converts back, conditions included.
    let mut status = ReplicaSetStatus {
        replicas: 2,
        ready_replicas: Some(1),
        ..ReplicaSetStatus::default()
    };
    set_condition(
        &mut status,
        replica_set_utils::new_condition(REPLICA_FAILURE, "True", "FailedCreate", "no", at(0)),
    );
    let back = rc_status(status);
    assert_eq!((back.replicas, back.ready_replicas), (2, Some(1)));
    let c = &back.conditions.unwrap_or_default()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str()),
        ("ReplicaFailure", "True")
    );
    assert_eq!(pod_key(&ready("x", 0).pod()), "ns/x");
}

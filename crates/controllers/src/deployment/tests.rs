use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetSpec,
    ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::util::*;

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

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: labels(&[("app", "web")]),
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
    }
}

fn int(i: i32) -> IntOrString {
    IntOrString::Int(i)
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: None,
            },
            template: template("web:1"),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// A ReplicaSet: name, image, spec.replicas, available, revision, created (s).
fn rs(name: &str, image: &str, size: i32, available: i32, rev: i64, created: i64) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(at(created))),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                rev.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(size),
            template: Some(template(image)),
            ..ReplicaSetSpec::default()
        },
        status: Some(ReplicaSetStatus {
            replicas: size,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..ReplicaSetStatus::default()
        }),
    }
}

#[test]
fn fenceposts_round_surge_up_and_unavailability_down() {
    // (surge, unavailable, desired, want)
    let cases = [
        (pct("25%"), pct("25%"), 4, (1, 1)),
        (pct("25%"), pct("25%"), 10, (3, 2)),
        (pct("25%"), pct("25%"), 1, (1, 0)),
        (int(0), int(0), 3, (0, 1)),
        (pct("0%"), pct("0%"), 3, (0, 1)),
        (int(2), int(1), 3, (2, 1)),
        (pct("100%"), pct("50%"), 5, (5, 2)),
    ];
    for (surge, unavailable, desired, want) in cases {
        assert_eq!(
            resolve_fenceposts(Some(&surge), Some(&unavailable), desired),
            Ok(want),
            "{surge:?} {unavailable:?} of {desired}"
        );
    }
    assert!(resolve_fenceposts(Some(&pct("x%")), None, 3).is_err());
    assert!(resolve_fenceposts(Some(&pct("5")), None, 3).is_err());
    // Recreate: neither.
    let mut d = deployment(3, int(1), int(1));
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    // Never more unavailable than replicas.
    assert_eq!(max_unavailable(&deployment(2, int(0), int(5))), 2);
}

#[test]
fn the_new_replica_set_is_named_by_the_template_hash() {
    let d = deployment(3, pct("25%"), pct("25%"));
    let hash = template_hash(&d);
    assert!(!hash.is_empty() && hash.len() <= 10, "{hash}");
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{hash}"
    );
    let new = new_replica_set(&d, 1, 1);
    assert_eq!(new.metadata.name, Some(format!("web-{hash}")));
    let with_hash = labels(&[("app", "web"), ("pod-template-hash", &hash)]);
    assert_eq!(new.metadata.labels, with_hash);
    assert_eq!(new.spec.selector.match_labels, with_hash);
    assert_eq!(
        new.spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone()),
        with_hash
    );
    let a = new.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("1"));
    assert_eq!(
        a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
        Some("3")
    );
    assert_eq!(
        a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
        Some("4")
    );
    let owner = &new.metadata.owner_references.unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );
    // A collision count changes the hash.
    let mut collided = d.clone();
    collided.status = Some(DeploymentStatus {
        collision_count: Some(1),
        ..DeploymentStatus::default()
    });
    assert_ne!(template_hash(&collided), hash);
    // The new ReplicaSet's template equals the deployment's, ignoring the hash.
    assert!(equal_ignore_hash(
        new.spec.template.as_ref().unwrap_or(&template("")),
        &d.spec.template
    ));
    assert!(!equal_ignore_hash(&template("web:2"), &d.spec.template));
}

#[test]
fn new_and_old_replica_sets_are_told_apart() {
    let d = deployment(3, int(1), int(0));
    let older_same = rs("a", "web:1", 1, 1, 1, 0);
    let newer_same = rs("b", "web:1", 0, 0, 2, 10);
    let old = rs("c", "web:0", 2, 2, 3, 5);
    let empty_old = rs("d", "web:0", 0, 0, 4, 6);
    let all = [&newer_same, &old, &older_same, &empty_old];
    let new = find_new_replica_set(&d, &all).and_then(|r| r.metadata.name.clone());
    assert_eq!(new.as_deref(), Some("a"), "the oldest with the template");
    let (with_pods, all_old) = find_old_replica_sets(&d, &all);
    let names = |v: Vec<&ReplicaSet>| {
        let mut n: Vec<String> = v.iter().filter_map(|r| r.metadata.name.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(with_pods), ["c"]);
    assert_eq!(names(all_old), ["b", "c", "d"]);
    assert_eq!(max_revision(&all), 4);
    assert_eq!(last_revision(&all), 3);
}

#[test]
fn a_rollback_keeps_the_revision_history() {
    let d = deployment(3, int(1), int(0));
    // (revision before, history before, new revision, want revision, want history)
    let cases = [
        (Some("1"), None, 3, "3", Some("1")),
        (Some("3"), Some("1"), 5, "5", Some("1,3")),
        // Already the newest: untouched.
        (Some("5"), Some("1,3"), 4, "5", Some("1,3")),
        (None, None, 2, "2", None),
    ];
    for (before, history, new_revision, want, want_history) in cases {
        let mut set = rs("a", "web:1", 1, 1, 0, 0);
        let mut a = BTreeMap::new();
        if let Some(b) = before {
            a.insert(REVISION_ANNOTATION.to_string(), b.to_string());
        }
        if let Some(h) = history {
            a.insert(REVISION_HISTORY_ANNOTATION.to_string(), h.to_string());
        }
        set.metadata.annotations = Some(a);
        set_new_replica_set_annotations(&d, &mut set, new_revision, true);
        let a = set.metadata.annotations.unwrap_or_default();
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some(want));
        assert_eq!(
            a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
            want_history
        );
    }
}

#[test]
fn the_deployments_annotations_are_copied_but_its_bookkeeping() {
    let mut d = deployment(2, int(1), int(0));
    d.metadata.annotations = Some(BTreeMap::from([
        ("team".to_string(), "blue".to_string()),
        (REVISION_ANNOTATION.to_string(), "9".to_string()),
        (
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{}".to_string(),
        ),
    ]));
    let new = new_replica_set(&d, 2, 0);
    let a = new.metadata.annotations.unwrap_or_default();
    assert_eq!(a.get("team").map(String::as_str), Some("blue"));
    assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("2"));
    assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
}

#[test]
fn the_new_replica_set_grows_within_the_surge() {
    // (replicas, surge, new size, other sizes, want)
    let cases: &[(i32, i32, i32, &[i32], i32)] = &[
        (4, 1, 0, &[4], 1),
        (4, 1, 1, &[3], 2),
        (4, 1, 2, &[3], 2), // at the maximum already
        (4, 2, 0, &[4], 2),
        (4, 10, 0, &[4], 4), // never more than replicas
        (3, 0, 0, &[2], 1),
    ];
    for (replicas, surge, new_size, others, want) in cases {
        let d = deployment(*replicas, int(*surge), int(1));
        let new = rs("new", "web:1", *new_size, 0, 2, 10);
        let old: Vec<ReplicaSet> = others
            .iter()
            .map(|s| rs("old", "web:0", *s, *s, 1, 0))
            .collect();
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.push(&new);
        assert_eq!(
            new_rs_new_replicas(&d, &all, &new),
            *want,
            "{replicas} {surge} {new_size} {others:?}"
        );
    }
    let mut recreate = deployment(5, int(1), int(1));
    recreate.spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let new = rs("new", "web:1", 0, 0, 2, 10);
    assert_eq!(new_rs_new_replicas(&recreate, &[&new], &new), 5);
}

#[test]
fn old_replica_sets_shrink_while_enough_pods_stay_available() {
    // replicas 4, maxUnavailable 1 → at least 3 available.
    let d = deployment(4, int(1), int(1));
    let old = rs("old", "web:0", 4, 4, 1, 0);
    let new = rs("new", "web:1", 1, 0, 2, 10);
    let all = [&old, &new];
    // 5 pods, 3 must stay available, the new one's unavailable pod counts: 1 may go.
    assert_eq!(max_scaled_down(&d, &all, Some(&new)), 1);
    assert_eq!(
        scale_down_old_for_rolling_update(&d, &all, &[&old]),
        [("old".to_string(), 3)]
    );
    // Unhealthy old pods go first, oldest ReplicaSet first, within the budget.
    let sick_a = rs("sick-a", "web:0", 3, 1, 1, 0);
    let sick_b = rs("sick-b", "web:0", 2, 0, 1, 5);
    let (sizes, total) = cleanup_unhealthy_replicas(&[&sick_b, &sick_a], 3);
    assert_eq!(
        sizes,
        [("sick-a".to_string(), 1), ("sick-b".to_string(), 1)]
    );
    assert_eq!(total, 3);
    // Nothing available beyond the minimum: nothing goes.
    let starving = rs("old", "web:0", 4, 3, 1, 0);
    assert!(scale_down_old_for_rolling_update(&d, &[&starving, &new], &[&starving]).is_empty());
}

#[test]
fn a_resize_mid_rollout_is_shared_in_proportion() {
    // 10 replicas (surge 3) mid-rollout as old 8 + new 5 = 13; scaled to 20 (surge 5): 25.
    let mut d = deployment(20, pct("25%"), pct("25%"));
    d.status = Some(DeploymentStatus {
        replicas: Some(13),
        ..DeploymentStatus::default()
    });
    let mut old = rs("old", "web:0", 8, 8, 1, 0);
    let mut new = rs("new", "web:1", 5, 0, 2, 10);
    for set in [&mut old, &mut new] {
        set_replicas_annotations(set, 10, 13);
    }
    let sizes = proportional_sizes(&d, &[&old, &new]);
    let total: i32 = sizes.iter().map(|(_, s)| s).sum();
    assert_eq!(total, 25);
    assert_eq!(sizes, [("old".to_string(), 15), ("new".to_string(), 10)]);
    // Scaled to 0: everything goes.
    let zero = deployment(0, int(1), int(0));
    let sizes = proportional_sizes(&zero, &[&old, &new]);
    assert!(sizes.iter().all(|(_, s)| *s == 0), "{sizes:?}");
}

#[test]
fn history_beyond_the_limit_is_cleaned_lowest_revision_first() {
    let mut d = deployment(1, int(1), int(0));
    d.spec.revision_history_limit = Some(1);
    let a = rs("a", "web:0", 0, 0, 1, 0);
    let b = rs("b", "web:0", 0, 0, 2, 1);
    let busy = rs("busy", "web:0", 1, 1, 3, 2);
    let names = |v: Vec<&ReplicaSet>| -> Vec<String> {
        v.iter().filter_map(|r| r.metadata.name.clone()).collect()
    };
    assert_eq!(
        names(replica_sets_to_clean_up(&d, &[&busy, &b, &a])),
        ["a", "b"]
    );
    // A ReplicaSet with pods is kept even when beyond the limit.
    d.spec.revision_history_limit = Some(0);
    assert_eq!(
        names(replica_sets_to_clean_up(&d, &[&busy, &b, &a])),
        ["a", "b"]
    );
    d.spec.revision_history_limit = Some(5);
    assert!(replica_sets_to_clean_up(&d, &[&busy, &b, &a]).is_empty());
}

#[test]
fn status_and_availability() {
    let d = deployment(4, int(1), int(1));
    let old = rs("old", "web:0", 2, 2, 1, 0);
    let new = rs("new", "web:1", 2, 1, 2, 10);
    let s = calculate_status(&d, &[&old, &new], Some(&new), at(0));
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.available_replicas,
            s.unavailable_replicas,
            s.observed_generation
        ),
        (Some(4), Some(2), Some(3), Some(1), Some(1))
    );
    let available = get_condition(&s, AVAILABLE).cloned().unwrap_or_default();
    assert_eq!(
        (available.status.as_deref(), available.reason.as_deref()),
        (Some("True"), Some(MINIMUM_REPLICAS_AVAILABLE))
    );
    let starving = rs("new", "web:1", 4, 2, 2, 10);
    let s = calculate_status(&d, &[&starving], Some(&starving), at(0));
    let available = get_condition(&s, AVAILABLE).cloned().unwrap_or_default();
    assert_eq!(
        (
            available.status.as_deref(),
            available.reason.as_deref(),
            available.message.as_deref()
        ),
        (
            Some("False"),
            Some(MINIMUM_REPLICAS_UNAVAILABLE),
            Some("Deployment does not have minimum availability.")
        )
    );
}

#[test]
fn progressing_reports_progress_completion_and_the_deadline() {
    let mut d = deployment(2, int(1), int(0));
    let new = rs("web-abc", "web:1", 2, 2, 2, 0);
    let status = |updated: i32, available: i32| DeploymentStatus {
        replicas: Some(2),
        updated_replicas: Some(updated),
        ready_replicas: Some(available),
        available_replicas: Some(available),
        observed_generation: Some(1),
        ..DeploymentStatus::default()
    };
    let reason = |c: Option<k8s_openapi::api::apps::v1::DeploymentCondition>| {
        c.map(|c| {
            (
                c.status.unwrap_or_default(),
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default(),
            )
        })
    };
    // Complete.
    assert_eq!(
        reason(progressing_condition(&d, &status(2, 2), Some(&new), at(0))),
        Some((
            "True".into(),
            NEW_RS_AVAILABLE_REASON.into(),
            "ReplicaSet \"web-abc\" has successfully progressed.".into()
        ))
    );
    // More updated than before: progressing.
    d.status = Some(status(0, 2));
    assert_eq!(
        reason(progressing_condition(&d, &status(1, 2), Some(&new), at(0))),
        Some((
            "True".into(),
            REPLICA_SET_UPDATED_REASON.into(),
            "ReplicaSet \"web-abc\" is progressing.".into()
        ))
    );
    // No progress, last update 700 s ago with a 600 s deadline: timed out.
    d.status = Some(status(1, 1));
    let mut stuck = status(1, 1);
    set_condition(
        &mut stuck,
        new_condition(
            PROGRESSING,
            "True",
            REPLICA_SET_UPDATED_REASON,
            "",
            at(-700),
        ),
    );
    assert_eq!(
        reason(progressing_condition(&d, &stuck, Some(&new), at(0))),
        Some((
            "False".into(),
            TIMED_OUT_REASON.into(),
            "ReplicaSet \"web-abc\" has timed out progressing.".into()
        ))
    );
    // Within the deadline: left alone.
    assert_eq!(
        progressing_condition(&d, &stuck, Some(&new), at(-200)),
        None
    );
    // Paused: not judged.
    d.spec.paused = Some(true);
    assert_eq!(progressing_condition(&d, &stuck, Some(&new), at(0)), None);
}

#[test]
fn conditions_keep_their_transition_time_while_the_status_holds() {
    let mut s = DeploymentStatus::default();
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED_REASON, "", at(0)),
    );
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE_REASON, "", at(10)),
    );
    let c = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!(c.last_transition_time, Some(Time(at(0))));
    assert_eq!(c.last_update_time, Some(Time(at(10))));
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "False", TIMED_OUT_REASON, "", at(20)),
    );
    let c = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!(c.last_transition_time, Some(Time(at(20))));
    remove_condition(&mut s, PROGRESSING);
    assert!(s.conditions.is_none());
    assert_eq!(
        scaling_message("web-abc", 1, 3),
        "Scaled up replica set web-abc from 1 to 3"
    );
    assert_eq!(
        scaling_message("web-abc", 3, 0),
        "Scaled down replica set web-abc from 3 to 0"
    );
}

#[test]
fn a_rolling_update_steps_within_surge_and_unavailability() {
    // replicas 4, maxSurge 1, maxUnavailable 1.
    let d = deployment(4, int(1), int(1));
    let steps = |new: &ReplicaSet, old: &[&ReplicaSet]| rolling_step(&d, new, old);
    let pair = |n: &str, s: i32| (n.to_string(), s);
    // Start: the new ReplicaSet grows by the surge.
    let old = rs("old", "web:0", 4, 4, 1, 0);
    assert_eq!(
        steps(&rs("new", "web:1", 0, 0, 2, 10), &[&old]),
        [pair("new", 1)]
    );
    // At 5 pods the old one may lose one available pod (4 available, 3 needed... the new
    // one's unavailable pod counted): 5 - 3 - 1 = 1.
    assert_eq!(
        steps(&rs("new", "web:1", 1, 0, 2, 10), &[&old]),
        [pair("old", 3)]
    );
    // Old pods that are unavailable go first, without touching available ones beyond.
    let sick = rs("old", "web:0", 4, 2, 1, 0);
    assert_eq!(
        steps(&rs("new", "web:1", 1, 1, 2, 10), &[&sick]),
        [pair("old", 2)]
    );
    // Above the wanted size (scaled down meanwhile): the new one shrinks first.
    assert_eq!(
        steps(&rs("new", "web:1", 6, 6, 2, 10), &[&old]),
        [pair("new", 4)]
    );
    // Done: nothing to do.
    let gone = rs("old", "web:0", 0, 0, 1, 0);
    assert!(steps(&rs("new", "web:1", 4, 4, 2, 10), &[&gone]).is_empty());
    // New pods not available yet and no room: wait.
    let waiting_old = rs("old", "web:0", 3, 3, 1, 0);
    assert!(steps(&rs("new", "web:1", 2, 0, 2, 10), &[&waiting_old]).is_empty());
}

#[test]
fn recreate_removes_every_old_pod_before_the_new_ones() {
    let mut d = deployment(3, int(1), int(0));
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let old = rs("old", "web:0", 3, 3, 1, 0);
    let mut drained = rs("old", "web:0", 0, 0, 1, 0);
    let new = rs("new", "web:1", 3, 0, 2, 10);
    let cases = [
        (
            "old ones first",
            None,
            &old,
            false,
            RecreateStep::ScaleDownOld(vec!["old".into()]),
        ),
        (
            "pods still terminating",
            None,
            &drained,
            true,
            RecreateStep::WaitForOldPods,
        ),
        (
            "then the new one",
            None,
            &drained,
            false,
            RecreateStep::ScaleUpNew(3),
        ),
        (
            "already there",
            Some(&new),
            &drained,
            false,
            RecreateStep::Done,
        ),
    ];
    for (name, new, old, running, want) in cases {
        assert_eq!(recreate_step(&d, new, &[old], running), want, "{name}");
    }
    // An old ReplicaSet that still reports replicas is waited for too.
    drained.status = Some(ReplicaSetStatus {
        replicas: 1,
        ..ReplicaSetStatus::default()
    });
    assert_eq!(
        recreate_step(&d, None, &[&drained], false),
        RecreateStep::WaitForOldPods
    );
}

// ---------------------------------------------------------------------------------------
// sync.rs: the controller's choices between writes

use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodStatus, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::sync::*;

fn with_desired(mut rs: ReplicaSet, desired: i32) -> ReplicaSet {
    rs.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESIRED_REPLICAS_ANNOTATION.into(), desired.to_string());
    rs
}

fn progressing(status: &str, reason: &str, updated: i64) -> DeploymentCondition {
    let mut c = new_condition(PROGRESSING, status, reason, "", at(updated));
    c.last_transition_time = Some(Time(at(0)));
    c
}

fn with_status(mut d: Deployment, status: DeploymentStatus) -> Deployment {
    d.status = Some(status);
    d
}

#[test]
fn an_empty_object_equals_an_absent_one_ignoring_the_hash() {
    let mut kubectl = template("web:1");
    if let Some(spec) = kubectl.spec.as_mut() {
        spec.containers[0].resources = Some(ResourceRequirements::default());
        spec.volumes = Some(Vec::new());
    }
    if let Some(meta) = kubectl.metadata.as_mut() {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY.into(), "abc".into());
    }
    assert!(equal_ignore_hash(&kubectl, &template("web:1")));
    assert!(!equal_ignore_hash(&kubectl, &template("web:2")));
}

#[test]
fn scaling_events_are_active_replica_sets_wanting_other_replicas() {
    let d = deployment(3, int(1), int(0));
    // (replica sets, want)
    let cases = [
        (vec![with_desired(rs("a", "web:1", 3, 3, 1, 0), 3)], false),
        (vec![with_desired(rs("a", "web:1", 3, 3, 1, 0), 5)], true),
        // Inactive ones and ones without the annotation do not count.
        (vec![with_desired(rs("a", "web:1", 0, 0, 1, 0), 5)], false),
        (vec![rs("a", "web:1", 3, 3, 1, 0)], false),
    ];
    for (rss, want) in cases {
        let refs: Vec<&ReplicaSet> = rss.iter().collect();
        assert_eq!(is_scaling_event(&d, &refs), want, "{rss:?}");
    }
}

#[test]
fn scale_resizes_the_only_active_or_saturated_or_proportionally() {
    let resize = |name: &str, replicas: i32, operation: &'static str| Resize {
        name: name.into(),
        replicas,
        operation,
    };
    // (deployment replicas, new, old, want)
    type Case = (i32, Option<ReplicaSet>, Vec<ReplicaSet>, Vec<Resize>);
    let cases: Vec<Case> = vec![
        // The only active one takes every replica.
        (
            5,
            Some(rs("new", "web:1", 3, 3, 2, 10)),
            vec![rs("old", "web:0", 0, 0, 1, 0)],
            vec![resize("new", 5, "up")],
        ),
        (
            2,
            Some(rs("new", "web:1", 3, 3, 2, 10)),
            vec![],
            vec![resize("new", 2, "down")],
        ),
        (3, Some(rs("new", "web:1", 3, 3, 2, 10)), vec![], vec![]),
        // None active: the new one.
        (
            2,
            Some(rs("new", "web:1", 0, 0, 2, 10)),
            vec![rs("old", "web:0", 0, 0, 1, 0)],
            vec![resize("new", 2, "up")],
        ),
        // A saturated new one: old ones to 0.
        (
            3,
            Some(with_desired(rs("new", "web:1", 3, 3, 2, 10), 3)),
            vec![rs("old", "web:0", 1, 1, 1, 0)],
            vec![resize("old", 0, "down")],
        ),
    ];
    for (replicas, new, old, want) in cases {
        let mut d = deployment(replicas, int(1), int(0));
        d.spec.template = template("web:1");
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        assert_eq!(
            scale_plan(&d, new.as_ref(), &old_refs),
            want,
            "{replicas} {new:?}"
        );
    }
    // Resized mid-rollout (10 -> 20, surge 0): both grow by their share of max-replicas.
    let d = deployment(20, int(0), int(1));
    let mut new = rs("new", "web:1", 4, 4, 2, 10);
    let mut old = rs("old", "web:0", 6, 6, 1, 0);
    set_replicas_annotations(&mut new, 10, 10);
    set_replicas_annotations(&mut old, 10, 10);
    let plan = scale_plan(&d, Some(&new), &[&old]);
    assert_eq!(plan, vec![resize("old", 12, "up"), resize("new", 8, "up")]);
}

#[test]
fn pausing_and_resuming_write_progressing_unknown_once() {
    let status = |reason: &str| DeploymentStatus {
        conditions: Some(vec![progressing("True", reason, 0)]),
        ..DeploymentStatus::default()
    };
    // (paused, current reason, want reason)
    let cases = [
        (true, NEW_RS_AVAILABLE_REASON, Some(PAUSED_DEPLOY_REASON)),
        (true, PAUSED_DEPLOY_REASON, None),
        (false, PAUSED_DEPLOY_REASON, Some(RESUMED_DEPLOY_REASON)),
        (false, REPLICA_SET_UPDATED_REASON, None),
        (true, TIMED_OUT_REASON, None),
    ];
    for (paused, current, want) in cases {
        let mut d = with_status(deployment(3, int(1), int(0)), status(current));
        d.spec.paused = Some(paused);
        let got = paused_condition(&d, at(5));
        assert_eq!(
            got.as_ref().and_then(|c| c.reason.as_deref()),
            want,
            "{paused} {current}"
        );
        if let Some(c) = got {
            assert_eq!(c.status.as_deref(), Some("Unknown"));
        }
    }
    // No deadline, no condition.
    let mut d = deployment(3, int(1), int(0));
    d.spec.paused = Some(true);
    d.spec.progress_deadline_seconds = Some(i32::MAX);
    assert_eq!(paused_condition(&d, at(5)), None);
}

#[test]
fn rollout_status_reports_progress_completion_and_timeouts() {
    let reason = |s: &DeploymentStatus| {
        get_condition(s, PROGRESSING).and_then(|c| Some((c.status.clone()?, c.reason.clone()?)))
    };
    let s = |cond: DeploymentCondition, updated: i32, available: i32| DeploymentStatus {
        replicas: Some(3),
        updated_replicas: Some(updated),
        ready_replicas: Some(available),
        available_replicas: Some(available),
        observed_generation: Some(1),
        conditions: Some(vec![cond]),
        ..DeploymentStatus::default()
    };
    let new_all = rs("new", "web:1", 3, 3, 2, 10);
    let new_one = rs("new", "web:1", 1, 0, 2, 10);
    let old = rs("old", "web:0", 2, 2, 1, 0);
    // (previous status, new rs, old rs, now, want)
    let cases = [
        // Every replica updated and available: complete.
        (
            s(progressing("True", REPLICA_SET_UPDATED_REASON, 0), 2, 3),
            &new_all,
            None,
            10,
            ("True", NEW_RS_AVAILABLE_REASON),
        ),
        // More updated than before: progressing.
        (
            s(progressing("True", NEW_REPLICA_SET_REASON, 0), 0, 2),
            &new_one,
            Some(&old),
            10,
            ("True", REPLICA_SET_UPDATED_REASON),
        ),
        // No progress, within the deadline (600 s): as it was.
        (
            s(progressing("True", REPLICA_SET_UPDATED_REASON, 0), 1, 2),
            &new_one,
            Some(&old),
            100,
            ("True", REPLICA_SET_UPDATED_REASON),
        ),
        // No progress past the deadline.
        (
            s(progressing("True", REPLICA_SET_UPDATED_REASON, 0), 1, 2),
            &new_one,
            Some(&old),
            700,
            ("False", TIMED_OUT_REASON),
        ),
    ];
    for (previous, new, old, now, want) in cases {
        let d = with_status(deployment(3, int(1), int(0)), previous);
        let mut all: Vec<&ReplicaSet> = old.into_iter().collect();
        all.push(new);
        let got = rollout_status(&d, &all, Some(new), at(now));
        assert_eq!(
            reason(&got),
            Some((want.0.to_string(), want.1.to_string())),
            "{now}"
        );
    }
    // Without a deadline there is no Progressing condition.
    let mut d = with_status(
        deployment(3, int(1), int(0)),
        s(progressing("True", NEW_RS_AVAILABLE_REASON, 0), 3, 3),
    );
    d.spec.progress_deadline_seconds = Some(i32::MAX);
    assert_eq!(
        reason(&rollout_status(&d, &[&new_all], Some(&new_all), at(1))),
        None
    );
}

#[test]
fn replica_failures_are_copied_new_replica_set_first() {
    let failing = |name: &str, message: &str| {
        let mut r = rs(name, "web:1", 1, 0, 1, 0);
        if let Some(s) = r.status.as_mut() {
            s.conditions = Some(vec![ReplicaSetCondition {
                type_: Some(REPLICA_FAILURE.into()),
                status: Some("True".into()),
                reason: Some("FailedCreate".into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(at(3))),
            }]);
        }
        r
    };
    let new = failing("new", "new one");
    let old = failing("old", "old one");
    let plain = rs("plain", "web:1", 1, 1, 1, 0);
    let got = replica_failure(&[&old, &new], Some(&new));
    assert_eq!(
        got.as_ref().and_then(|c| c.message.as_deref()),
        Some("new one")
    );
    assert_eq!(got.and_then(|c| c.last_update_time), Some(Time(at(3))));
    let got = replica_failure(&[&old, &plain], Some(&plain));
    assert_eq!(got.and_then(|c| c.message), Some("old one".into()));
    assert_eq!(replica_failure(&[&plain], Some(&plain)), None);
}

#[test]
fn a_stalled_rollout_is_looked_at_again_after_its_deadline() {
    let d = |reason: &str| {
        let mut d = with_status(
            deployment(3, int(1), int(0)),
            DeploymentStatus {
                conditions: Some(vec![progressing("True", reason, 0)]),
                ..DeploymentStatus::default()
            },
        );
        d.spec.progress_deadline_seconds = Some(10);
        d
    };
    let pending = DeploymentStatus::default();
    let secs = std::time::Duration::from_secs;
    // (reason, now, want)
    let cases = [
        (REPLICA_SET_UPDATED_REASON, 4, Some(secs(7))),
        (REPLICA_SET_UPDATED_REASON, 10, Some(secs(1))),
        (REPLICA_SET_UPDATED_REASON, 30, Some(secs(1))),
        (TIMED_OUT_REASON, 4, None),
    ];
    for (reason, now, want) in cases {
        assert_eq!(
            requeue_after(&d(reason), &pending, at(now)),
            want,
            "{reason} {now}"
        );
    }
}

#[test]
fn old_pods_run_until_every_one_is_finished_or_gone() {
    let new = rs("new", "web:1", 0, 0, 2, 10);
    let old = rs("old", "web:0", 0, 0, 1, 0);
    let pod = |owner: &str, phase: &str| Pod {
        metadata: ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                controller: Some(true),
                uid: format!("uid-{owner}"),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let (old_running, old_done, new_running, other) = (
        pod("old", "Running"),
        pod("old", "Succeeded"),
        pod("new", "Running"),
        pod("other", "Running"),
    );
    // (pods, want)
    let cases: [(Vec<&Pod>, bool); 4] = [
        (vec![], false),
        (vec![&old_running], true),
        (vec![&old_done, &new_running], false),
        (vec![&other], false),
    ];
    for (pods, want) in cases {
        assert_eq!(
            old_pods_running(Some(&new), &[&old], &pods),
            want,
            "{pods:?}"
        );
    }
    // An old ReplicaSet still reporting pods.
    let reporting = rs("old", "web:0", 0, 0, 1, 0);
    let mut reporting = reporting;
    if let Some(s) = reporting.status.as_mut() {
        s.replicas = 1;
    }
    assert!(old_pods_running(Some(&new), &[&reporting], &[]));
}

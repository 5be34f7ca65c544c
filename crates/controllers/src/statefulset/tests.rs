use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::controller_utils::new_controller_ref;

fn set(extra: serde_json::Value) -> StatefulSet {
    let mut base = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "generation": 2},
        "spec": {
            "replicas": 3, "serviceName": "svc",
            "selector": {"matchLabels": {"app": "web"}},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A pod of the set: `state` is "pending", "ready", "notready", "failed", "terminating".
fn pod(name: &str, revision: &str, state: &str) -> Arc<Pod> {
    let (phase, ready) = match state {
        "pending" => ("Pending", false),
        "notready" => ("Running", false),
        "failed" => ("Failed", false),
        _ => ("Running", true),
    };
    let mut p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns",
                     "labels": {"app": "web", "controller-revision-hash": revision,
                                "statefulset.kubernetes.io/pod-name": name}},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" },
             "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    }))
    .unwrap();
    if state == "terminating" {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    }
    Arc::new(p)
}

fn summary(plan: &Plan) -> Vec<String> {
    plan.actions()
        .map(|a| match a {
            Action::Create(p) => format!(
                "create {} {}",
                p.metadata.name.as_deref().unwrap(),
                pod_revision(p)
            ),
            Action::UpdateIdentity(p) => format!("update {}", p.metadata.name.as_deref().unwrap()),
            Action::Delete { name, .. } => format!("delete {name}"),
        })
        .collect()
}

fn run(set: &StatefulSet, pods: &[Arc<Pod>]) -> Plan {
    let t = PodTemplateSpec::default();
    let owner = new_controller_ref("apps/v1", "StatefulSet", "web", "u-1");
    plan(
        set,
        Revision {
            name: "cur",
            template: &t,
        },
        Revision {
            name: "upd",
            template: &t,
        },
        0,
        pods,
        &owner,
        Timestamp::now(),
    )
}

/// What, the set's changes, its pods, the actions wanted.
type Case = (
    &'static str,
    serde_json::Value,
    Vec<Arc<Pod>>,
    Vec<&'static str>,
);

#[test]
fn plans_follow_the_pod_management_policy_and_update_strategy() {
    let parallel = json!({"spec": {"podManagementPolicy": "Parallel"}});
    let on_delete =
        json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}});
    let partition = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}});
    let one = json!({"spec": {"replicas": 1}});
    let max2 = json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}});
    let ordinals = json!({"spec": {"ordinals": {"start": 5}, "replicas": 2}});
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("ordered: first pod only", json!({}), vec![], vec!["create web-0 upd"]),
        ("ordered: waits for web-0 ready", json!({}),
            vec![pod("web-0", "upd", "pending")], vec![]),
        ("ordered: next once ready", json!({}),
            vec![pod("web-0", "upd", "ready")], vec!["create web-1 upd"]),
        ("parallel: all at once", parallel.clone(), vec![],
            vec!["create web-0 upd", "create web-1 upd", "create web-2 upd"]),
        ("parallel: not waiting", parallel.clone(), vec![pod("web-0", "upd", "pending")],
            vec!["create web-1 upd", "create web-2 upd"]),
        ("failed pod deleted", json!({}), vec![pod("web-0", "upd", "failed")],
            vec!["delete web-0"]),
        ("ordered: scale down highest first", one.clone(),
            vec![pod("web-0", "upd", "ready"), pod("web-1", "upd", "ready"),
                 pod("web-2", "upd", "ready")], vec!["delete web-2"]),
        ("ordered: scale down waits for termination", one.clone(),
            vec![pod("web-0", "upd", "ready"), pod("web-1", "upd", "ready"),
                 pod("web-2", "upd", "terminating")], vec![]),
        ("ordered: an unhealthy condemned waits for the lower unhealthy", one.clone(),
            vec![pod("web-0", "upd", "ready"), pod("web-1", "upd", "notready"),
                 pod("web-2", "upd", "notready")], vec![]),
        ("ordered: scale down waits for unhealthy replicas", one.clone(),
            vec![pod("web-0", "upd", "notready"), pod("web-1", "upd", "ready")], vec![]),
        ("ordered: the first unhealthy may go", one.clone(),
            vec![pod("web-0", "upd", "ready"), pod("web-2", "upd", "notready")],
            vec!["delete web-2"]),
        ("parallel: scale down at once", json!({"spec": {"replicas": 1,
            "podManagementPolicy": "Parallel"}}),
            vec![pod("web-0", "upd", "ready"), pod("web-1", "upd", "ready"),
                 pod("web-2", "upd", "ready")], vec!["delete web-2", "delete web-1"]),
        ("rolling: highest first", json!({}),
            vec![pod("web-0", "cur", "ready"), pod("web-1", "cur", "ready"),
                 pod("web-2", "cur", "ready")], vec!["delete web-2"]),
        ("rolling: next after the updated one is ready", json!({}),
            vec![pod("web-0", "cur", "ready"), pod("web-1", "cur", "ready"),
                 pod("web-2", "upd", "ready")], vec!["delete web-1"]),
        ("rolling: waits while one is terminating", json!({}),
            vec![pod("web-0", "cur", "ready"), pod("web-1", "cur", "ready"),
                 pod("web-2", "cur", "terminating")], vec![]),
        ("rolling: partition kept", partition.clone(),
            vec![pod("web-0", "cur", "ready"), pod("web-1", "upd", "ready"),
                 pod("web-2", "upd", "ready")], vec![]),
        ("rolling: below the partition a new pod is current", partition.clone(),
            vec![pod("web-1", "upd", "ready"), pod("web-2", "upd", "ready")],
            vec!["create web-0 cur"]),
        ("rolling: maxUnavailable 2", max2,
            vec![pod("web-0", "cur", "ready"), pod("web-1", "cur", "ready"),
                 pod("web-2", "cur", "ready")], vec!["delete web-2", "delete web-1"]),
        ("on delete: nothing rolled", on_delete.clone(),
            vec![pod("web-0", "cur", "ready"), pod("web-1", "cur", "ready"),
                 pod("web-2", "cur", "ready")], vec![]),
        ("on delete: a deleted pod comes back updated", on_delete,
            vec![pod("web-0", "cur", "ready"), pod("web-2", "cur", "ready")],
            vec!["create web-1 upd"]),
        ("ordinals start at 5", ordinals,
            vec![pod("web-0", "upd", "ready"), pod("web-5", "upd", "ready")],
            vec!["create web-6 upd"]),
    ];
    for (what, extra, pods, want) in cases {
        let s = set(extra);
        assert_eq!(summary(&run(&s, &pods)), want, "{what}");
    }
}

#[test]
fn a_set_being_deleted_only_counts() {
    let s = set(json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}}));
    let p = run(&s, &[pod("web-0", "cur", "ready")]);
    assert!(p.steps.is_empty());
    assert_eq!(p.status.replicas, 1);
}

#[test]
fn status_counts_pods_by_revision_and_readiness() {
    let s = set(json!({}));
    let p = run(
        &s,
        &[
            pod("web-0", "cur", "ready"),
            pod("web-1", "upd", "notready"),
            pod("web-2", "upd", "terminating"),
        ],
    );
    let st = &p.status;
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(2));
    assert_eq!(st.current_replicas, Some(1));
    assert_eq!(st.updated_replicas, Some(1));
    assert_eq!(st.observed_generation, Some(2));
    assert_eq!(st.current_revision.as_deref(), Some("cur"));
    assert_eq!(st.update_revision.as_deref(), Some("upd"));
    assert_eq!(st.collision_count, Some(0));

    // All updated and ready: the update revision becomes current.
    let mut done = p.status.clone();
    done.replicas = 3;
    done.updated_replicas = Some(3);
    done.ready_replicas = Some(3);
    complete_rolling_update(&s, &mut done);
    assert_eq!(done.current_revision.as_deref(), Some("upd"));
    assert_eq!(done.current_replicas, Some(3));
    assert!(inconsistent_status(&s, &done));
}

#[test]
fn new_pods_carry_their_identity() {
    let s = set(json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}));
    let template = s.spec.template.clone();
    let owner = new_controller_ref("apps/v1", "StatefulSet", "web", "u-1");
    let p = new_versioned_pod(&s, ("cur", &template), ("upd", &template), &owner, 2);
    assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
    let labels = p.metadata.labels.clone().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-2");
    assert_eq!(labels[POD_INDEX_LABEL], "2");
    assert_eq!(labels[REVISION_LABEL], "upd");
    assert_eq!(labels["app"], "web");
    let spec = p.spec.clone().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("svc"));
    let volumes = spec.volumes.unwrap();
    assert_eq!(volumes[0].name, "data");
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-web-2"
    );
    assert!(identity_matches(&s, &p) && storage_matches(&s, &p));
    assert_eq!(p.metadata.owner_references, Some(vec![owner]));
}

#[test]
fn names_parse_into_parent_and_ordinal() {
    let cases = [
        ("web-0", Some("web"), 0),
        ("my-web-12", Some("my-web"), 12),
        ("web", None, -1),
        ("web-x", None, -1),
        ("web-", None, -1),
        ("web-99999999999", Some("web"), -1),
    ];
    for (name, parent, ordinal) in cases {
        assert_eq!(parent_and_ordinal(name), (parent, ordinal), "{name}");
    }
}

#[test]
fn identity_is_put_right() {
    let s = set(json!({}));
    let mut p = (*pod("web-1", "cur", "ready")).clone();
    p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
    assert!(!identity_matches(&s, &p));
    let plan = run(&s, &[pod("web-0", "upd", "ready"), Arc::new(p)]);
    assert_eq!(summary(&plan)[0], "update web-1");
}

fn revision(set: &StatefulSet, number: i64) -> ControllerRevision {
    new_revision(set, number, 0)
}

#[test]
fn revisions_hold_the_template_patch_and_roll_back_by_renumbering() {
    let a = set(json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "x"}}}));
    let ra = revision(&a, 1);
    assert_eq!(ra.data.0["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        ra.data.0["spec"]["template"]["metadata"]["labels"]["app"],
        "web"
    );
    assert_eq!(
        ra.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"],
        "x"
    );
    assert_eq!(revision_template(&ra).unwrap(), a.spec.template);

    let b =
        set(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "j"}]}}}}));
    let rb = revision(&b, 2);
    // Same template as the newest: that one.
    assert_eq!(
        choose_update_revision(&[&ra, &rb], &revision(&b, 3)),
        UpdateRevision::Newest(1)
    );
    // An older one: renumbered as the next.
    assert_eq!(
        choose_update_revision(&[&ra, &rb], &revision(&a, 3)),
        UpdateRevision::Renumber(0, 3)
    );
    // A new template.
    let c =
        set(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "k"}]}}}}));
    assert_eq!(
        choose_update_revision(&[&ra, &rb], &revision(&c, 3)),
        UpdateRevision::Create
    );
    assert_eq!(
        choose_update_revision(&[], &revision(&c, 1)),
        UpdateRevision::Create
    );
}

#[test]
fn history_beyond_the_limit_is_pruned_oldest_first_never_live_ones() {
    let mk = |name: &str, n: i64| {
        let mut r = revision(&set(json!({})), n);
        r.metadata.name = Some(name.to_string());
        r
    };
    let all = [
        mk("r1", 1),
        mk("r2", 2),
        mk("r3", 3),
        mk("r4", 4),
        mk("r5", 5),
    ];
    let refs: Vec<&ControllerRevision> = all.iter().collect();
    let p = pod("web-0", "r1", "ready");
    let cases: [(i32, Vec<&str>); 4] = [
        (10, vec![]),
        (1, vec!["r2"]),
        (0, vec!["r2", "r3"]),
        (-1, vec![]),
    ];
    for (limit, want) in cases {
        assert_eq!(
            revisions_to_prune(&refs, &["r4", "r5"], &[&p], limit),
            want,
            "limit {limit}"
        );
    }
}

#[test]
fn max_unavailable_rounds_down_and_is_at_least_one() {
    let cases = [
        (json!({}), 1),
        (
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}),
            2,
        ),
        (
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}}),
            1,
        ),
        (
            json!({"spec": {"replicas": 10, "updateStrategy": {"rollingUpdate": {"maxUnavailable": "25%"}}}}),
            2,
        ),
        (
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "10%"}}}}),
            1,
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            max_unavailable(&set(extra.clone())).unwrap(),
            want,
            "{extra}"
        );
    }
}

use serde_json::{json, Value};

use super::*;

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("bad fixture: {e}"),
    }
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

fn msgs(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

/// A valid spec of a replica kind, selector `app=web`, patched by `patch` (a JSON merge).
fn spec(patch: Value) -> Value {
    let base = json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    });
    crate::patch::merge_patch(&base, &patch)
}

fn object(kind: &str, spec_patch: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": "web", "namespace": "default"}, "spec": spec(spec_patch)})
}

#[test]
fn deployment_defaults_are_upstreams() {
    let mut d: Deployment = from(object("Deployment", json!({})));
    default_deployment(&mut d);
    prepare_deployment_for_create(&mut d);
    let v = to_json(&d);
    assert_eq!(v["spec"]["replicas"], 1);
    assert_eq!(
        v["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(v["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    assert_eq!(v["metadata"]["generation"], 1);
    assert_eq!(v["status"], json!({}));
    assert!(
        validate_deployment(&d).is_empty(),
        "{:?}",
        msgs(&validate_deployment(&d))
    );

    // Recreate gets no rollingUpdate; a given value is kept.
    let mut r: Deployment = from(object(
        "Deployment",
        json!({"strategy": {"type": "Recreate"}, "replicas": 0}),
    ));
    default_deployment(&mut r);
    let v = to_json(&r);
    assert_eq!(v["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(v["spec"]["replicas"], 0);
}

#[test]
fn statefulset_and_daemonset_defaults_are_upstreams() {
    let mut s: StatefulSet = from(object("StatefulSet", json!({})));
    default_stateful_set(&mut s);
    prepare_stateful_set_for_create(&mut s);
    let v = to_json(&s);
    assert_eq!(v["status"], json!({"replicas": 0, "availableReplicas": 0}));
    assert_eq!(v["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        v["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        v["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(v["spec"]["replicas"], 1);
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    assert!(
        validate_stateful_set(&s).is_empty(),
        "{:?}",
        msgs(&validate_stateful_set(&s))
    );

    let mut ds: DaemonSet = from(object("DaemonSet", json!({})));
    default_daemon_set(&mut ds);
    prepare_daemon_set_for_create(&mut ds);
    let v = to_json(&ds);
    assert_eq!(
        v["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    );
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        v["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
        "1"
    );
    assert!(
        validate_daemon_set(&ds).is_empty(),
        "{:?}",
        msgs(&validate_daemon_set(&ds))
    );
}

#[test]
fn replication_controller_defaults_come_from_the_template() {
    let mut rc: ReplicationController = from(json!({"metadata": {"name": "rc", "namespace": "d"},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}));
    default_replication_controller(&mut rc);
    let v = to_json(&rc);
    assert_eq!(v["spec"]["selector"], json!({"app": "x"}));
    assert_eq!(v["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(v["spec"]["replicas"], 1);
    assert!(validate_replication_controller(&rc).is_empty());

    // Given selector and labels are kept.
    let mut rc: ReplicationController = from(
        json!({"metadata": {"name": "rc", "labels": {"own": "1"}},
        "spec": {"selector": {"app": "x"}, "template": {"metadata": {"labels": {"app": "x", "v": "2"}}}}}),
    );
    default_replication_controller(&mut rc);
    let v = to_json(&rc);
    assert_eq!(v["spec"]["selector"], json!({"app": "x"}));
    assert_eq!(v["metadata"]["labels"], json!({"own": "1"}));
}

#[test]
fn replica_kinds_validation_is_upstreams() {
    // (spec patch, expected errors) — each through ReplicaSet and Deployment.
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec![]),
        (
            json!({"template": {"metadata": {"labels": {"app": "other"}}}}),
            vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"],
        ),
        (
            json!({"selector": null}),
            vec!["spec.selector: Required value", "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"],
        ),
        (
            json!({"selector": {"matchLabels": null, "matchExpressions": []}}),
            vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"],
        ),
        (
            json!({"replicas": -1}),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            json!({"minReadySeconds": -5}),
            vec!["spec.minReadySeconds: Invalid value: -5: must be greater than or equal to 0"],
        ),
        (
            json!({"template": {"spec": {"restartPolicy": "Never"}}}),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""],
        ),
        (
            json!({"template": {"spec": {"activeDeadlineSeconds": 5}}}),
            vec!["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"],
        ),
        (
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"In\"}]}: invalid label selector",
            ],
        ),
    ];
    for (patch, want) in &cases {
        let mut rs: ReplicaSet = from(object("ReplicaSet", patch.clone()));
        default_replica_set(&mut rs);
        assert_eq!(
            msgs(&validate_replica_set(&rs)),
            *want,
            "ReplicaSet {patch}"
        );
        let mut d: Deployment = from(object("Deployment", patch.clone()));
        default_deployment(&mut d);
        assert_eq!(msgs(&validate_deployment(&d)), *want, "Deployment {patch}");
    }
}

#[test]
fn deployment_strategy_validation_is_upstreams() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"],
        ),
        (
            json!({"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"],
        ),
        (
            json!({"strategy": {"rollingUpdate": {"maxSurge": "x"}}}),
            vec!["spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"],
        ),
        (
            json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}),
            vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
        ),
        (
            json!({"progressDeadlineSeconds": 10, "minReadySeconds": 10}),
            vec!["spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds"],
        ),
        (
            json!({"revisionHistoryLimit": -1}),
            vec!["spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"],
        ),
    ];
    for (patch, want) in &cases {
        let mut d: Deployment = from(object("Deployment", patch.clone()));
        default_deployment(&mut d);
        assert_eq!(msgs(&validate_deployment(&d)), *want, "{patch}");
    }
}

#[test]
fn selectors_are_immutable_on_apps_v1_but_not_on_replication_controllers() {
    let mut old: Deployment = from(object("Deployment", json!({})));
    default_deployment(&mut old);
    prepare_deployment_for_create(&mut old);
    old.metadata.resource_version = Some("1".into());
    let mut new: Deployment = from(object(
        "Deployment",
        json!({"selector": {"matchLabels": {"app": "web", "v": "2"}},
            "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}),
    ));
    default_deployment(&mut new);
    new.metadata = old.metadata.clone();
    assert_eq!(
        msgs(&validate_deployment_update(&new, &old)),
        vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"]
    );

    let mut old: ReplicationController = from(
        json!({"metadata": {"name": "rc", "resourceVersion": "1"},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    );
    default_replication_controller(&mut old);
    let mut new = old.clone();
    if let Some(s) = &mut new.spec {
        s.selector = Some([("app".to_string(), "x".to_string())].into());
        if let Some(t) = &mut s.template {
            t.metadata = Some(from(json!({"labels": {"app": "x", "v": "1"}})));
        }
    }
    assert!(validate_replication_controller_update(&new, &old).is_empty());
}

#[test]
fn updates_keep_status_and_count_generations() {
    let mut old: ReplicaSet = from(object("ReplicaSet", json!({})));
    default_replica_set(&mut old);
    prepare_replica_set_for_create(&mut old);
    old.status = Some(from(json!({"replicas": 2, "readyReplicas": 1})));

    // A client's status is ignored on the main resource; a spec change counts.
    let mut new = old.clone();
    new.status = Some(from(json!({"replicas": 9})));
    {
        let s = &mut new.spec;
        s.replicas = Some(3);
    }
    prepare_replica_set_for_update(&mut new, &old);
    assert_eq!(
        to_json(&new.status),
        json!({"replicas": 2, "readyReplicas": 1})
    );
    assert_eq!(new.metadata.generation, Some(2));

    // A label change is not a spec change.
    let mut same = old.clone();
    same.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    prepare_replica_set_for_update(&mut same, &old);
    assert_eq!(same.metadata.generation, Some(1));

    // The status subresource keeps the spec.
    let mut status = old.clone();
    {
        let s = &mut status.spec;
        s.replicas = Some(7);
    }
    status.status = Some(from(json!({"replicas": 1})));
    replica_set_status_only(&mut status, &old);
    assert_eq!(status.spec, old.spec);
    assert_eq!(to_json(&status.status), json!({"replicas": 1}));

    // Deployments also count annotation changes.
    let mut d: Deployment = from(object("Deployment", json!({})));
    default_deployment(&mut d);
    prepare_deployment_for_create(&mut d);
    let mut d2 = d.clone();
    d2.metadata.annotations = Some([("k".to_string(), "v".to_string())].into());
    prepare_deployment_for_update(&mut d2, &d);
    assert_eq!(d2.metadata.generation, Some(2));

    // A DaemonSet template change counts the template generation.
    let mut ds: DaemonSet = from(object("DaemonSet", json!({})));
    default_daemon_set(&mut ds);
    prepare_daemon_set_for_create(&mut ds);
    let mut ds2 = ds.clone();
    {
        let s = &mut ds2.spec;
        s.template.spec = Some(from(
            json!({"containers": [{"name": "c", "image": "nginx"}]}),
        ));
    }
    prepare_daemon_set_for_update(&mut ds2, &ds);
    assert_eq!(ds2.metadata.generation, Some(2));
    assert_eq!(
        ds2.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION)),
        Some(&"2".to_string())
    );
}

#[test]
fn status_updates_are_checked() {
    let old: ReplicaSet = from(json!({"metadata": {"name": "x", "resourceVersion": "1"}}));
    let mut new = old.clone();
    new.status = Some(from(
        json!({"replicas": 1, "readyReplicas": 2, "availableReplicas": -1}),
    ));
    assert_eq!(
        msgs(&validate_replica_set_status_update(&new, &old)),
        vec![
            "status.availableReplicas: Invalid value: -1: must be greater than or equal to 0",
            "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
        ]
    );
}

#[test]
fn statefulset_updates_are_limited() {
    let mut old: StatefulSet = from(object("StatefulSet", json!({"serviceName": ""})));
    default_stateful_set(&mut old);
    old.metadata.resource_version = Some("1".into());
    let mut ok = old.clone();
    {
        let s = &mut ok.spec;
        s.replicas = Some(5);
        s.min_ready_seconds = Some(3);
    }
    assert!(validate_stateful_set_update(&ok, &old).is_empty());
    let mut bad = old.clone();
    {
        let s = &mut bad.spec;
        s.service_name = Some("other".into());
        s.pod_management_policy = Some("Parallel".into());
    }
    assert_eq!(
        msgs(&validate_stateful_set_update(&bad, &old)),
        vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    );
    let mut s: StatefulSet = from(object(
        "StatefulSet",
        json!({"podManagementPolicy": "Sometimes"}),
    ));
    default_stateful_set(&mut s);
    assert_eq!(
        msgs(&validate_stateful_set(&s)),
        vec!["spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'"]
    );
}

#[test]
fn daemonset_strategy_validation_is_upstreams() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}}),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"],
        ),
        (
            json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"],
        ),
        (json!({"updateStrategy": {"type": "OnDelete"}}), vec![]),
    ];
    for (patch, want) in &cases {
        let mut ds: DaemonSet = from(object("DaemonSet", patch.clone()));
        default_daemon_set(&mut ds);
        assert_eq!(msgs(&validate_daemon_set(&ds)), *want, "{patch}");
    }
}

#[test]
fn controller_revisions_keep_their_data() {
    let r: ControllerRevision = from(
        json!({"metadata": {"name": "r", "namespace": "d", "resourceVersion": "1"}, "revision": 1, "data": {"a": 1}}),
    );
    assert!(validate_controller_revision(&r).is_empty());
    let bare: ControllerRevision =
        from(json!({"metadata": {"name": "r", "namespace": "d"}, "revision": -1}));
    assert_eq!(
        msgs(&validate_controller_revision(&bare)),
        vec![
            "data: Required value: data is mandatory",
            "revision: Invalid value: -1: must be greater than or equal to 0"
        ]
    );
    let mut changed = r.clone();
    changed.data = from(json!({"b": 2}));
    let got = msgs(&validate_controller_revision_update(&changed, &r));
    assert_eq!(got, ["data: Invalid value: {\"b\":2}: field is immutable"]);
}

#[test]
fn scale_selectors_print_as_upstream() {
    let sel: LabelSelector = from(json!({"matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "c", "operator": "In", "values": ["e", "d"]}]}));
    assert_eq!(selector_string(&sel).as_deref(), Some("a=1,b=2,c in (d,e)"));
    let m = [
        ("x".to_string(), "1".to_string()),
        ("a".to_string(), "2".to_string()),
    ]
    .into();
    assert_eq!(map_selector_string(&m), "a=2,x=1");
}

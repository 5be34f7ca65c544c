use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::reconciler::{endpoints_of, reconcile, Plan};
use super::trigger_time::TriggerTimeTracker;
use super::utils::*;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            labels: labels(&[("team", "a")]),
            creation_timestamp: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: labels(&[("app", "web")]),
            cluster_ip: Some("10.43.0.20".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("web".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ip: &str, ready: bool, web_port: i32) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            labels: labels(&[("app", "web")]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-a".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("web".into()),
                    container_port: web_port,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
            pod_ips: (!ip.is_empty()).then(|| vec![PodIP { ip: ip.into() }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time("2026-01-01T00:00:05Z".parse().unwrap())),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn no_zone(_: &str) -> Option<String> {
    None
}

fn plan_of(svc: &Service, pods: &[Pod], existing: &[EndpointSlice], max: usize) -> Plan {
    let pods: Vec<&Pod> = pods.iter().collect();
    let existing: Vec<&EndpointSlice> = existing.iter().collect();
    reconcile(svc, &pods, &existing, &no_zone, max, None)
}

/// The plan's creates given names, as the API server would, for the next round.
fn created(plan: &Plan) -> Vec<EndpointSlice> {
    let mut out: Vec<EndpointSlice> = plan.update.clone();
    for (i, s) in plan.create.iter().enumerate() {
        let mut s = s.clone();
        s.metadata.name = Some(format!("web-{i}"));
        s.metadata.resource_version = Some("1".into());
        out.push(s);
    }
    out
}

fn addresses(slice: &EndpointSlice) -> Vec<String> {
    endpoints_of(slice)
        .iter()
        .flat_map(|e| e.addresses.clone())
        .collect()
}

#[test]
fn conditions_follow_readiness_termination_and_publish_not_ready() {
    // (pod ready, terminating, publishNotReadyAddresses) → (ready, serving, terminating)
    let cases = [
        ((true, false, false), (true, true, false)),
        ((false, false, false), (false, false, false)),
        ((true, true, false), (false, true, true)),
        ((false, true, false), (false, false, true)),
        ((false, false, true), (true, false, false)),
        ((true, true, true), (true, true, true)),
    ];
    for ((ready, terminating, publish), want) in cases {
        let mut p = pod("p", "10.0.0.1", ready, 8080);
        if terminating {
            p.metadata.deletion_timestamp = Some(Time("2026-01-01T00:01:00Z".parse().unwrap()));
        }
        let mut svc = service("web");
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(publish);
        let ep = pod_to_endpoint(&p, &svc, ADDRESS_TYPE_IPV4, Some("z1".into()));
        let c = ep.conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(want.0), Some(want.1), Some(want.2)),
            "ready={ready} terminating={terminating} publish={publish}"
        );
        assert_eq!(ep.addresses, vec!["10.0.0.1"]);
        assert_eq!(ep.node_name.as_deref(), Some("node-a"));
        assert_eq!(ep.zone.as_deref(), Some("z1"));
        let target = ep.target_ref.unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.name.as_deref(), Some("p"));
        assert_eq!(target.uid.as_deref(), Some("uid-p"));
    }
}

#[test]
fn which_pods_are_listed() {
    let mut finished = pod("done", "10.0.0.2", false, 8080);
    finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let no_ip = pod("pending", "", false, 8080);
    let mut terminating = pod("going", "10.0.0.3", true, 8080);
    terminating.metadata.deletion_timestamp = Some(Time("2026-01-01T00:01:00Z".parse().unwrap()));
    let cases = [
        (pod("ok", "10.0.0.1", true, 8080), true, true),
        (finished, false, false),
        (no_ip, false, false),
        (terminating, true, false),
    ];
    for (p, with_terminating, without) in cases {
        assert_eq!(should_pod_be_in_endpoints(&p, true), with_terminating);
        assert_eq!(should_pod_be_in_endpoints(&p, false), without);
    }
    let svc = service("web");
    let mut other_ns = pod("x", "10.0.0.9", true, 8080);
    other_ns.metadata.namespace = Some("other".into());
    let mut other_app = pod("y", "10.0.0.9", true, 8080);
    other_app.metadata.labels = labels(&[("app", "db")]);
    assert!(selects(&svc, &pod("z", "10.0.0.9", true, 8080)));
    assert!(!selects(&svc, &other_ns));
    assert!(!selects(&svc, &other_app));
    let mut no_selector = service("web");
    no_selector.spec.as_mut().unwrap().selector = None;
    assert!(!has_managed_endpoints(&no_selector));
    let mut external = service("web");
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    assert!(!has_managed_endpoints(&external));
    assert!(has_managed_endpoints(&svc));
}

#[test]
fn a_new_service_gets_one_slice_with_labels_owner_and_ports() {
    let svc = service("web");
    let pods = [
        pod("a", "10.0.0.1", true, 8080),
        pod("b", "10.0.0.2", false, 8080),
    ];
    let plan = plan_of(&svc, &pods, &[], 100);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.create.len(), 1);
    let slice = &plan.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.metadata.labels,
        labels(&[
            ("team", "a"),
            (LABEL_SERVICE_NAME, "web"),
            (LABEL_MANAGED_BY, CONTROLLER_NAME),
        ])
    );
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Service", "web", "uid-web", Some(true), Some(true))
    );
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    assert_eq!(addresses(slice), vec!["10.0.0.1", "10.0.0.2"]);
    let ready: Vec<Option<bool>> = endpoints_of(slice)
        .iter()
        .map(|e| e.conditions.as_ref().unwrap().ready)
        .collect();
    assert_eq!(ready, vec![Some(true), Some(false)]);
}

#[test]
fn a_named_target_port_is_resolved_per_pod_into_separate_slices() {
    let svc = service("web");
    let pods = [
        pod("a", "10.0.0.1", true, 8080),
        pod("b", "10.0.0.2", true, 9090),
        pod("c", "10.0.0.3", true, 8080),
    ];
    let plan = plan_of(&svc, &pods, &[], 100);
    assert_eq!(plan.create.len(), 2);
    let mut by_port: Vec<(i32, Vec<String>)> = plan
        .create
        .iter()
        .map(|s| (s.ports.as_ref().unwrap()[0].port.unwrap(), addresses(s)))
        .collect();
    by_port.sort();
    assert_eq!(
        by_port,
        vec![
            (8080, vec!["10.0.0.1".to_string(), "10.0.0.3".to_string()]),
            (9090, vec!["10.0.0.2".to_string()]),
        ]
    );
    // A pod without the named port still gets an endpoint, in a slice without that port.
    let mut bare = pod("d", "10.0.0.4", true, 8080);
    bare.spec.as_mut().unwrap().containers[0].ports = None;
    let plan = plan_of(&svc, &[bare], &[], 100);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].ports, Some(vec![]));
    assert_eq!(addresses(&plan.create[0]), vec!["10.0.0.4"]);
}

#[test]
fn at_most_max_endpoints_a_slice() {
    let svc = service("web");
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.0.{}.{}", i / 200, i % 200 + 1),
                true,
                8080,
            )
        })
        .collect();
    let plan = plan_of(&svc, &pods, &[], 100);
    let mut sizes: Vec<usize> = plan.create.iter().map(|s| endpoints_of(s).len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![50, 100, 100]);
    // Synced again over what it made: nothing to write.
    let existing = created(&plan);
    assert!(plan_of(&svc, &pods, &existing, 100).is_empty());
    // 30 more pods: the half-full slice takes them, the full ones are untouched.
    let more: Vec<Pod> = (0..280)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.0.{}.{}", i / 200, i % 200 + 1),
                true,
                8080,
            )
        })
        .collect();
    let plan = plan_of(&svc, &more, &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    assert_eq!(endpoints_of(&plan.update[0]).len(), 80);
}

#[test]
fn a_service_without_endpoints_keeps_one_placeholder() {
    let svc = service("web");
    let plan = plan_of(&svc, &[], &[], 100);
    assert_eq!(plan.create.len(), 1);
    assert!(endpoints_of(&plan.create[0]).is_empty());
    assert_eq!(plan.create[0].ports, Some(vec![]));
    // The placeholder exists: nothing to do.
    let existing = created(&plan);
    assert!(plan_of(&svc, &[], &existing, 100).is_empty());
    // A pod arrives: the placeholder is reused (an update, not a create and a delete).
    let pods = [pod("a", "10.0.0.1", true, 8080)];
    let plan = plan_of(&svc, &pods, &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("web-0"));
    assert_eq!(addresses(&plan.update[0]), vec!["10.0.0.1"]);
    // The last pod goes: the slice becomes the placeholder again.
    let existing = plan.update.clone();
    let plan = plan_of(&svc, &[], &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    assert_eq!(plan.update.len(), 1);
    assert!(endpoints_of(&plan.update[0]).is_empty());
}

#[test]
fn changes_update_only_the_slice_concerned() {
    let svc = service("web");
    let pods = [
        pod("a", "10.0.0.1", true, 8080),
        pod("b", "10.0.0.2", true, 8080),
    ];
    let existing = created(&plan_of(&svc, &pods, &[], 100));
    // Unchanged: nothing.
    assert!(plan_of(&svc, &pods, &existing, 100).is_empty());
    // b becomes unready: one update, b's ready false.
    let changed = [
        pod("a", "10.0.0.1", true, 8080),
        pod("b", "10.0.0.2", false, 8080),
    ];
    let plan = plan_of(&svc, &changed, &existing, 100);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(
        plan.update[0].metadata.resource_version.as_deref(),
        Some("1")
    );
    let b = endpoints_of(&plan.update[0])
        .iter()
        .find(|e| e.addresses == ["10.0.0.2"])
        .unwrap();
    assert_eq!(b.conditions.as_ref().unwrap().ready, Some(false));
    // b is deleted: the slice keeps a only.
    let plan = plan_of(&svc, &pods[..1], &existing, 100);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(addresses(&plan.update[0]), vec!["10.0.0.1"]);
    // The Service's labels change: the slice's labels follow.
    let mut relabelled = svc.clone();
    relabelled.metadata.labels = labels(&[("team", "b")]);
    let plan = plan_of(&relabelled, &pods, &existing, 100);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(
        plan.update[0]
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("b")
    );
}

#[test]
fn slices_not_owned_by_the_service_are_deleted() {
    let svc = service("web");
    let pods = [pod("a", "10.0.0.1", true, 8080)];
    let mut old = created(&plan_of(&svc, &pods, &[], 100));
    // The same slice owned by an earlier Service of that name.
    old[0].metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
    let plan = plan_of(&svc, &pods, &old, 100);
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.create.len(), 1);
    assert!(plan.update.is_empty());
}

#[test]
fn headless_services_are_labelled_and_hostnames_set_for_their_subdomain() {
    let mut svc = service("web");
    svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let mut p = pod("web-0", "10.0.0.1", true, 8080);
    p.spec.as_mut().unwrap().hostname = Some("web-0".into());
    p.spec.as_mut().unwrap().subdomain = Some("web".into());
    let mut q = pod("other", "10.0.0.2", true, 8080);
    q.spec.as_mut().unwrap().hostname = Some("other".into());
    q.spec.as_mut().unwrap().subdomain = Some("elsewhere".into());
    let plan = plan_of(&svc, &[p, q], &[], 100);
    let slice = &plan.create[0];
    assert_eq!(
        slice
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get(LABEL_HEADLESS)
            .map(String::as_str),
        Some("")
    );
    let hostnames: Vec<Option<String>> = endpoints_of(slice)
        .iter()
        .map(|e| e.hostname.clone())
        .collect();
    assert_eq!(hostnames, vec![Some("web-0".to_string()), None]);
}

#[test]
fn the_trigger_time_is_the_service_creation_then_the_earliest_new_change() {
    let tracker = TriggerTimeTracker::default();
    let svc = service("web");
    let a = pod("a", "10.0.0.1", true, 8080);
    let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(tracker.compute("ns/web", &svc, &[&a]), Some(created));
    // Nothing changed since.
    assert_eq!(tracker.compute("ns/web", &svc, &[&a]), None);
    // b became ready later.
    let mut b = pod("b", "10.0.0.2", true, 8080);
    let t: Timestamp = "2026-01-01T00:02:00Z".parse().unwrap();
    b.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time = Some(Time(t));
    assert_eq!(tracker.compute("ns/web", &svc, &[&a, &b]), Some(t));
    // The annotation is written on what the plan writes.
    let pods = [a.clone()];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = reconcile(&svc, &refs, &[], &no_zone, 100, Some(t));
    assert_eq!(
        plan.create[0]
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(LAST_CHANGE_TRIGGER_TIME)
            .map(String::as_str),
        Some("2026-01-01T00:02:00Z")
    );
    tracker.delete("ns/web");
    assert_eq!(tracker.compute("ns/web", &svc, &[&a, &b]), Some(created));
}

#[test]
fn pod_changes_reach_the_services_selecting_the_pod_before_or_after() {
    use super::routing::{services_for_pod_change, ServiceIndex};
    let mut index = ServiceIndex::default();
    let web = service("web");
    let mut db = service("db");
    db.spec.as_mut().unwrap().selector = labels(&[("app", "db")]);
    index.observe(&web, false);
    index.observe(&db, false);
    let a = pod("a", "10.0.0.1", true, 8080);
    let names = |s: std::collections::BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(services_for_pod_change(&index, None, Some(&a))),
        ["web"]
    );
    // An irrelevant change (an annotation) syncs nothing.
    let mut annotated = a.clone();
    annotated.metadata.annotations = labels(&[("x", "y")]);
    assert!(services_for_pod_change(&index, Some(&a), Some(&annotated)).is_empty());
    // Relabelled from web to db: both.
    let mut moved = a.clone();
    moved.metadata.labels = labels(&[("app", "db")]);
    assert_eq!(
        names(services_for_pod_change(&index, Some(&a), Some(&moved))),
        ["db", "web"]
    );
    // Readiness changes: web.
    let unready = pod("a", "10.0.0.1", false, 8080);
    assert_eq!(
        names(services_for_pod_change(&index, Some(&a), Some(&unready))),
        ["web"]
    );
    index.observe(&web, true);
    assert!(services_for_pod_change(&index, None, Some(&a)).is_empty());
}

#[test]
fn a_service_waits_until_the_cache_shows_the_controllers_own_writes() {
    use super::{Expect, SliceTracker};
    use std::sync::Arc;
    let named = |name: &str, rv: &str| {
        let mut s = new_endpoint_slice(&service("web"), Vec::new(), ADDRESS_TYPE_IPV4);
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.into());
        Arc::new(s)
    };
    let mut tracker = SliceTracker::default();
    assert!(!tracker.stale("ns/web", &[]));
    tracker.expect("ns/web", Expect::Present("web-a".into()));
    tracker.expect("ns/web", Expect::Replaced("web-b".into(), "4".into()));
    tracker.expect("ns/web", Expect::Absent("web-c".into()));
    // Nothing of it seen yet.
    let before = [named("web-b", "4"), named("web-c", "2")];
    assert!(tracker.stale("ns/web", &before));
    // Other Services are not held up.
    assert!(!tracker.stale("ns/db", &before));
    // The create and the update seen, the delete not yet.
    let partly = [
        named("web-a", "7"),
        named("web-b", "8"),
        named("web-c", "2"),
    ];
    assert!(tracker.stale("ns/web", &partly));
    // All seen: fresh, and what was seen is forgotten.
    let after = [named("web-a", "7"), named("web-b", "8")];
    assert!(!tracker.stale("ns/web", &after));
    assert!(!tracker.stale("ns/web", &[]));
    // A deleted Service forgets what it waited for.
    tracker.expect("ns/web", Expect::Present("web-z".into()));
    tracker.forget("ns/web");
    assert!(!tracker.stale("ns/web", &[]));
}

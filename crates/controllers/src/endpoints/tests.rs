use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EndpointAddress, EndpointPort, EndpointSubset, Endpoints,
    ObjectReference, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn service() -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            labels: labels(&[("team", "a")]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: labels(&[("app", "web")]),
            cluster_ip: Some("10.43.0.20".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("web".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("metrics".into()),
                    port: 9100,
                    target_port: Some(IntOrString::Int(9100)),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                },
            ]),
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
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
    list.iter().flatten().map(|a| a.ip.clone()).collect()
}

fn ports(s: &EndpointSubset) -> Vec<(String, i32)> {
    s.ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect()
}

#[test]
fn subsets_group_pods_by_the_ports_they_serve() {
    let svc = service();
    let pods = [
        pod("b", "10.0.0.2", true, 8080),
        pod("a", "10.0.0.1", true, 8080),
        pod("c", "10.0.0.3", false, 8080),
        pod("d", "10.0.0.4", true, 8081),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let subsets = desired_subsets(&svc, &refs);
    // A subset per set of addresses serving the same ports: 8080 (a, b, c not ready),
    // 8081 (d) and 9100, which all four serve.
    assert_eq!(subsets.len(), 3, "{subsets:#?}");
    let find = |want: (&str, i32)| {
        subsets
            .iter()
            .find(|s| ports(s) == [(want.0.to_string(), want.1)])
            .unwrap()
    };
    let first = find(("http", 8080));
    assert_eq!(ips(&first.addresses), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(ips(&first.not_ready_addresses), ["10.0.0.3"]);
    assert_eq!(ips(&find(("http", 8081)).addresses), ["10.0.0.4"]);
    let metrics = find(("metrics", 9100));
    assert_eq!(
        ips(&metrics.addresses),
        ["10.0.0.1", "10.0.0.2", "10.0.0.4"]
    );
    assert_eq!(ips(&metrics.not_ready_addresses), ["10.0.0.3"]);
    let a = &first.addresses.as_ref().unwrap()[0];
    assert_eq!(a.node_name.as_deref(), Some("node-a"));
    let target = a.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
}

#[test]
fn terminating_pods_are_left_out_unless_not_ready_addresses_are_published() {
    let mut going = pod("a", "10.0.0.1", true, 8080);
    going.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    let unready = pod("b", "10.0.0.2", false, 8080);
    let refs = [&going, &unready];
    let svc = service();
    let subsets = desired_subsets(&svc, &refs);
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), Vec::<String>::new());
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
    let mut publish = service();
    publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let subsets = desired_subsets(&publish, &refs);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(subsets[0].not_ready_addresses, None);
}

#[test]
fn a_headless_service_without_ports_lists_addresses_with_hostnames() {
    let mut svc = service();
    svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    svc.spec.as_mut().unwrap().ports = None;
    let mut p = pod("web-0", "10.0.0.1", true, 8080);
    p.spec.as_mut().unwrap().hostname = Some("web-0".into());
    p.spec.as_mut().unwrap().subdomain = Some("web".into());
    let subsets = desired_subsets(&svc, &[&p]);
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].ports, None);
    assert_eq!(
        subsets[0].addresses.as_ref().unwrap()[0]
            .hostname
            .as_deref(),
        Some("web-0")
    );
    let ep = sync(&svc, subsets, None, None).unwrap();
    assert_eq!(
        ep.metadata.labels,
        labels(&[
            ("team", "a"),
            (LABEL_MANAGED_BY, CONTROLLER_NAME),
            (LABEL_HEADLESS, "")
        ])
    );
}

#[test]
fn repacking_merges_ports_and_lets_not_ready_win() {
    let addr = |ip: &str, uid: &str| EndpointAddress {
        ip: ip.into(),
        target_ref: Some(ObjectReference {
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }),
        ..EndpointAddress::default()
    };
    let port = |name: &str, n: i32| EndpointPort {
        name: Some(name.into()),
        port: n,
        protocol: Some("TCP".into()),
        ..EndpointPort::default()
    };
    let input = vec![
        EndpointSubset {
            addresses: Some(vec![addr("10.0.0.2", "b"), addr("10.0.0.1", "a")]),
            ports: Some(vec![port("p", 80)]),
            ..EndpointSubset::default()
        },
        EndpointSubset {
            addresses: Some(vec![addr("10.0.0.1", "a")]),
            ports: Some(vec![port("q", 81)]),
            ..EndpointSubset::default()
        },
        EndpointSubset {
            not_ready_addresses: Some(vec![addr("10.0.0.2", "b")]),
            ports: Some(vec![port("q", 81)]),
            ..EndpointSubset::default()
        },
        EndpointSubset {
            not_ready_addresses: Some(vec![addr("10.0.0.1", "a")]),
            ports: Some(vec![port("p", 80)]),
            ..EndpointSubset::default()
        },
    ];
    let out = repack_subsets(&input);
    // Port p: a not ready (not ready wins), b ready. Port q: a ready, b not ready.
    assert_eq!(out.len(), 2, "{out:#?}");
    let p = out.iter().find(|s| ports(s) == [("p".into(), 80)]).unwrap();
    assert_eq!(ips(&p.addresses), ["10.0.0.2"]);
    assert_eq!(ips(&p.not_ready_addresses), ["10.0.0.1"]);
    let q = out.iter().find(|s| ports(s) == [("q".into(), 81)]).unwrap();
    assert_eq!(ips(&q.addresses), ["10.0.0.1"]);
    assert_eq!(ips(&q.not_ready_addresses), ["10.0.0.2"]);
    // Repacking is idempotent.
    assert_eq!(repack_subsets(&out), out);
}

#[test]
fn endpoints_are_written_only_when_something_changed() {
    let svc = service();
    let pods = [pod("a", "10.0.0.1", true, 8080)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let new = sync(&svc, desired_subsets(&svc, &refs), None, None).unwrap();
    assert_eq!(new.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        new.metadata.labels,
        labels(&[("team", "a"), (LABEL_MANAGED_BY, CONTROLLER_NAME)])
    );
    let mut stored: Endpoints = new.clone();
    stored.metadata.resource_version = Some("5".into());
    // The pod's resourceVersion in a target does not count as a change.
    stored.subsets.as_mut().unwrap()[0]
        .addresses
        .as_mut()
        .unwrap()[0]
        .target_ref
        .as_mut()
        .unwrap()
        .resource_version = Some("77".into());
    assert_eq!(
        sync(&svc, desired_subsets(&svc, &refs), Some(&stored), None),
        None
    );
    // A Service label change does.
    let mut relabelled = svc.clone();
    relabelled.metadata.labels = labels(&[("team", "b")]);
    let updated = sync(
        &relabelled,
        desired_subsets(&svc, &refs),
        Some(&stored),
        None,
    )
    .unwrap();
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("5"));
    // A manual edit of the subsets is put right.
    let mut edited = stored.clone();
    edited.subsets = None;
    assert!(sync(&svc, desired_subsets(&svc, &refs), Some(&edited), None).is_some());
}

#[test]
fn more_than_a_thousand_addresses_are_truncated_and_annotated() {
    let svc = service();
    let pods: Vec<Pod> = (0..1200)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                i < 1100,
                8080,
            )
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let ep = sync(&svc, desired_subsets(&svc, &refs), None, None).unwrap();
    let subsets = ep.subsets.clone().unwrap();
    // Ready ones alone exceed the capacity: 1000 ready kept, not ready dropped.
    assert_eq!(ips(&subsets[0].addresses).len(), 1000);
    assert_eq!(ips(&subsets[0].not_ready_addresses).len(), 0);
    assert_eq!(
        ep.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(OVER_CAPACITY)
            .map(String::as_str),
        Some(TRUNCATED)
    );
    // 900 ready + 300 not ready: the not ready ones are cut to 100.
    let pods: Vec<Pod> = (0..1200)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                i < 900,
                8080,
            )
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let ep = sync(&svc, desired_subsets(&svc, &refs), None, None).unwrap();
    let subsets = ep.subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses).len(), 900);
    assert_eq!(ips(&subsets[0].not_ready_addresses).len(), 100);
}

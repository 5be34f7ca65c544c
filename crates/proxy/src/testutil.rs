//! Builders for Services and EndpointSlices, for the unit tests, the kernel test and the
//! benchmark.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::SERVICE_NAME_LABEL;

/// A ClusterIP Service `ns/name` with one TCP port `port` named `port_name`.
pub fn service(ns: &str, name: &str, cluster_ip: &str, port_name: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: (!port_name.is_empty()).then(|| port_name.into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Turns the Service into a NodePort one, its first port on `node_port`.
pub fn with_node_port(mut svc: Service, node_port: i32) -> Service {
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
        if let Some(p) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
            p.node_port = Some(node_port);
        }
    }
    svc
}

pub fn with_affinity(mut svc: Service, timeout: Option<i32>) -> Service {
    if let Some(spec) = svc.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = timeout.map(|t| SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(t),
            }),
        });
    }
    svc
}

pub fn with_policies(mut svc: Service, external: Option<&str>, internal: Option<&str>) -> Service {
    if let Some(spec) = svc.spec.as_mut() {
        spec.external_traffic_policy = external.map(Into::into);
        spec.internal_traffic_policy = internal.map(Into::into);
    }
    svc
}

pub fn with_protocol(mut svc: Service, protocol: &str) -> Service {
    if let Some(p) = svc
        .spec
        .as_mut()
        .and_then(|s| s.ports.as_mut())
        .and_then(|p| p.first_mut())
    {
        p.protocol = Some(protocol.into());
    }
    svc
}

/// One endpoint: address, node, (ready, serving, terminating).
pub struct Ep<'a>(pub &'a str, pub Option<&'a str>, pub (bool, bool, bool));

/// Ready on no particular node.
pub fn ready(ip: &str) -> Ep<'_> {
    Ep(ip, None, (true, true, false))
}

/// A slice of Service `ns/svc` with one port (`port_name`, TCP, `port`).
pub fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    port_name: &str,
    port: i32,
    eps: &[Ep<'_>],
) -> EndpointSlice {
    slice_proto(ns, svc, name, port_name, "TCP", port, eps)
}

pub fn slice_proto(
    ns: &str,
    svc: &str,
    name: &str,
    port_name: &str,
    protocol: &str,
    port: i32,
    eps: &[Ep<'_>],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                svc.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            eps.iter()
                .map(|Ep(ip, node, (ready, serving, terminating))| Endpoint {
                    addresses: vec![ip.to_string()],
                    node_name: node.map(Into::into),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*serving),
                        terminating: Some(*terminating),
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![EndpointPort {
            name: (!port_name.is_empty()).then(|| port_name.into()),
            port: Some(port),
            protocol: Some(protocol.into()),
            ..Default::default()
        }]),
    }
}

/// `services` ClusterIP Services with `endpoints` ready endpoints each (the benchmark's
/// cluster): Service i is `10.43.x.y:80`, its endpoints `10.42.x.y:8080`.
pub fn cluster(services: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let name = format!("svc-{i}");
        let cip = format!("10.43.{}.{}", (i + 1) / 250, (i + 1) % 250 + 1);
        svcs.push(service("bench", &name, &cip, "http", 80));
        let ips: Vec<String> = (0..endpoints)
            .map(|j| {
                let n = i * endpoints + j;
                format!("10.42.{}.{}", n / 250, n % 250 + 2)
            })
            .collect();
        let eps: Vec<Ep<'_>> = ips.iter().map(|ip| ready(ip)).collect();
        slices.push(slice(
            "bench",
            &name,
            &format!("{name}-abc"),
            "http",
            8080,
            &eps,
        ));
    }
    (svcs, slices)
}

//! The node's own endpoint of the `kube-dns` Service: every node runs the cluster DNS on
//! its pod bridge's gateway and publishes that address in an EndpointSlice of its own,
//! `kube-system/kube-dns-<node>`, owned by its Node (so the garbage collector removes it
//! with the node). The Service is `internalTrafficPolicy: Local`, so the node proxy sends
//! each pod's DNS traffic to its own node's server. [`desired`] is pure; [`publish`]
//! creates the slice or brings it back to that, and changes nothing when it already is.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::zone::SERVICE_NAME_LABEL;
use crate::Error;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// `endpointslice.kubernetes.io/managed-by` of these slices: not the EndpointSlice
/// controller's (which leaves a selector-less Service's slices alone).
pub const MANAGED_BY: &str = "node-dns.peapod.io";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// The slice `node` publishes for its DNS server at `addr`.
pub fn desired(node: &Node, addr: IpAddr) -> EndpointSlice {
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (SERVICE_NAME_LABEL.to_string(), SERVICE.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ]);
    let port = |name: &str, protocol: &str| EndpointPort {
        name: Some(name.into()),
        port: Some(53),
        protocol: Some(protocol.into()),
        app_protocol: None,
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{SERVICE}-{node_name}")),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                controller: None,
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        address_type: if addr.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: Some(vec![Endpoint {
            addresses: vec![addr.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(node_name),
            ..Endpoint::default()
        }]),
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Whether `existing` already says what `want` says (the fields this module owns).
pub fn up_to_date(existing: &EndpointSlice, want: &EndpointSlice) -> bool {
    let labels_hold = want.metadata.labels.iter().flatten().all(|(k, v)| {
        existing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .is_some_and(|e| e == v)
    });
    labels_hold
        && existing.metadata.owner_references == want.metadata.owner_references
        && existing.address_type == want.address_type
        && existing.endpoints == want.endpoints
        && existing.ports == want.ports
}

/// Creates or updates this node's slice of the kube-dns Service; idempotent.
pub async fn publish(client: &Client, node_name: &str, addr: IpAddr) -> Result<(), Error> {
    let node = Api::<Node>::all(client.clone())
        .get(node_name)
        .await
        .map_err(|source| Error::Publish {
            step: "reading the node",
            source,
        })?;
    let want = desired(&node, addr);
    let api = Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE);
    let name = want.metadata.name.clone().unwrap_or_default();
    let existing = api.get_opt(&name).await.map_err(|source| Error::Publish {
        step: "reading the kube-dns endpointslice",
        source,
    })?;
    match existing {
        None => {
            api.create(&PostParams::default(), &want)
                .await
                .map_err(|source| Error::Publish {
                    step: "creating the kube-dns endpointslice",
                    source,
                })?;
        }
        Some(existing) if up_to_date(&existing, &want) => {}
        Some(existing) => {
            let mut updated = want;
            updated.metadata.resource_version = existing.metadata.resource_version.clone();
            let mut labels = existing.metadata.labels.clone().unwrap_or_default();
            labels.extend(updated.metadata.labels.take().unwrap_or_default());
            updated.metadata.labels = Some(labels);
            updated.metadata.annotations = existing.metadata.annotations.clone();
            api.replace(&name, &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::Publish {
                    step: "updating the kube-dns endpointslice",
                    source,
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_slice_names_the_node_and_its_gateway() {
        let s = desired(&node(), "10.42.0.1".parse().unwrap());
        assert_eq!(s.metadata.name.as_deref(), Some("kube-dns-n1"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("kube-system"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "kube-dns");
        assert_eq!(labels[MANAGED_BY_LABEL], "node-dns.peapod.io");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "n1", "uid-1")
        );
        assert_eq!(s.address_type, "IPv4");
        let ep = &s.endpoints.as_ref().unwrap()[0];
        assert_eq!(ep.addresses, vec!["10.42.0.1".to_string()]);
        assert_eq!(ep.node_name.as_deref(), Some("n1"));
        let c = ep.conditions.as_ref().unwrap();
        assert_eq!((c.ready, c.serving), (Some(true), Some(true)));
        let ports: Vec<(String, i32, String)> = s
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    p.port.unwrap(),
                    p.protocol.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![
                ("dns".into(), 53, "UDP".into()),
                ("dns-tcp".into(), 53, "TCP".into())
            ]
        );
    }

    #[test]
    fn up_to_date_ignores_what_others_add() {
        let want = desired(&node(), "10.42.0.1".parse().unwrap());
        let mut existing = want.clone();
        existing.metadata.resource_version = Some("7".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        assert!(up_to_date(&existing, &want));
        let moved = desired(&node(), "10.42.1.1".parse().unwrap());
        assert!(!up_to_date(&existing, &moved));
        let mut relabelled = want.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
        assert!(!up_to_date(&relabelled, &want));
    }
}

//! What the pod network reads from Node objects and writes onto its own (pure).
//!
//! A **peer** is another Node with a pod CIDR (`spec.podCIDR`, else the first IPv4 entry of
//! `spec.podCIDRs`) and an IPv4 `InternalIP`; its VTEP is known once it publishes one.
//!
//! The VTEP travels in flannel's annotations, so tools that read flannel's see ours:
//! `flannel.alpha.coreos.com/backend-type` (`vxlan` or `host-gw`),
//! `flannel.alpha.coreos.com/backend-data` (`{"VNI":1,"VtepMAC":"aa:bb:..."}`, vxlan only) and
//! `flannel.alpha.coreos.com/public-ip` (the node IP). flannel's `kube-subnet-manager` mark is
//! not written: flannel does not manage the node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use crate::{Cidr, Mac, VNI};

pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";

/// A node's VXLAN tunnel endpoint, as its annotations publish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vtep {
    pub vni: u32,
    pub mac: Mac,
}

/// Another node whose pods this node routes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub name: String,
    pub pod_cidr: Cidr,
    pub ip: Ipv4Addr,
    pub vtep: Option<Vtep>,
}

/// What this node's own Node says that matters here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Own {
    /// Whether the Node exists (its annotations can be written).
    pub exists: bool,
    pub pod_cidr: Option<Cidr>,
    /// The VTEP it publishes (kept across a device's recreation, as flannel keeps its MAC).
    pub vtep: Option<Vtep>,
    /// Its current values of our annotations.
    pub annotations: BTreeMap<String, String>,
}

fn pod_cidr(node: &Node) -> Option<Cidr> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .find_map(|c| c.parse().ok())
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The VTEP a node publishes: backend type `vxlan` and parseable backend data.
pub fn vtep(node: &Node) -> Option<Vtep> {
    if annotation(node, BACKEND_TYPE)? != "vxlan" {
        return None;
    }
    let data: serde_json::Value = serde_json::from_str(annotation(node, BACKEND_DATA)?).ok()?;
    let mac = data.get("VtepMAC")?.as_str()?.parse().ok()?;
    let vni = data
        .get("VNI")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(VNI);
    Some(Vtep { vni, mac })
}

/// Every node but `me` that can be routed to, sorted by name; and what `me`'s Node says.
pub fn peers<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str) -> (Own, Vec<Peer>) {
    let mut own = Own::default();
    let mut peers = Vec::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if name == me {
            own = Own {
                exists: node.metadata.deletion_timestamp.is_none(),
                pod_cidr: pod_cidr(node),
                vtep: vtep(node),
                annotations: [BACKEND_TYPE, BACKEND_DATA, PUBLIC_IP]
                    .into_iter()
                    .filter_map(|k| annotation(node, k).map(|v| (k.to_string(), v.to_string())))
                    .collect(),
            };
            continue;
        }
        let (Some(pod_cidr), Some(ip)) = (pod_cidr(node), internal_ip(node)) else {
            continue;
        };
        peers.push(Peer {
            name: name.to_string(),
            pod_cidr,
            ip,
            vtep: vtep(node),
        });
    }
    peers.sort();
    (own, peers)
}

/// The annotations this node publishes: its VTEP while it has a vxlan device, `host-gw`
/// otherwise (backend data removed). None values remove the key.
pub fn annotations(vtep_mac: Option<Mac>, node_ip: Ipv4Addr) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    match vtep_mac {
        Some(mac) => {
            out.insert(BACKEND_TYPE.to_string(), Some("vxlan".to_string()));
            out.insert(
                BACKEND_DATA.to_string(),
                Some(serde_json::json!({"VNI": VNI, "VtepMAC": mac.to_string()}).to_string()),
            );
        }
        None => {
            out.insert(BACKEND_TYPE.to_string(), Some("host-gw".to_string()));
            out.insert(BACKEND_DATA.to_string(), None);
        }
    }
    out.insert(PUBLIC_IP.to_string(), Some(node_ip.to_string()));
    out
}

/// The merge patch that brings `current` to `want`; None when nothing differs.
pub fn annotation_patch(
    current: &BTreeMap<String, String>,
    want: &BTreeMap<String, Option<String>>,
) -> Option<serde_json::Value> {
    let changes: serde_json::Map<String, serde_json::Value> = want
        .iter()
        .filter(|(k, v)| current.get(*k) != v.as_ref())
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone().map_or(serde_json::Value::Null, Into::into),
            )
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    Some(serde_json::json!({"metadata": {"annotations": changes}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>, ann: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "annotations": ann.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
            "spec": {"podCIDR": cidr},
            "status": {"addresses": ip.map(|ip| vec![
                serde_json::json!({"type": "Hostname", "address": name}),
                serde_json::json!({"type": "InternalIP", "address": ip}),
            ])},
        }))
        .unwrap()
    }

    const VX: &str = r#"{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}"#;

    #[test]
    fn peers_from_nodes() {
        let nodes = [
            node("me", Some("10.42.0.0/24"), Some("10.9.0.2"), &[]),
            node("b", Some("10.42.1.0/24"), Some("10.9.0.3"), &[]),
            node(
                "a",
                Some("10.42.2.0/24"),
                Some("10.9.1.2"),
                &[(BACKEND_TYPE, "vxlan"), (BACKEND_DATA, VX)],
            ),
            // Not routable: no pod CIDR, no InternalIP, a broken CIDR.
            node("c", None, Some("10.9.0.4"), &[]),
            node("d", Some("10.42.3.0/24"), None, &[]),
            node("e", Some("nonsense"), Some("10.9.0.5"), &[]),
            // host-gw backend type: no VTEP even with data.
            node(
                "f",
                Some("10.42.4.0/24"),
                Some("10.9.0.6"),
                &[(BACKEND_TYPE, "host-gw"), (BACKEND_DATA, VX)],
            ),
        ];
        let (own, peers) = peers(&nodes, "me");
        assert!(own.exists);
        assert_eq!(own.pod_cidr, Some("10.42.0.0/24".parse().unwrap()));
        let got: Vec<(&str, String, String, bool)> = peers
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.pod_cidr.to_string(),
                    p.ip.to_string(),
                    p.vtep.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "10.42.2.0/24".into(), "10.9.1.2".into(), true),
                ("b", "10.42.1.0/24".into(), "10.9.0.3".into(), false),
                ("f", "10.42.4.0/24".into(), "10.9.0.6".into(), false),
            ]
        );
        assert_eq!(peers[0].vtep.unwrap().mac.to_string(), "aa:bb:cc:dd:ee:01");
    }

    #[test]
    fn vtep_parsing() {
        type Annotations<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Annotations, Option<&str>); 5] = [
            (
                &[(BACKEND_TYPE, "vxlan"), (BACKEND_DATA, VX)],
                Some("aa:bb:cc:dd:ee:01"),
            ),
            (&[(BACKEND_TYPE, "vxlan")], None),
            (&[(BACKEND_TYPE, "vxlan"), (BACKEND_DATA, "not json")], None),
            (
                &[
                    (BACKEND_TYPE, "vxlan"),
                    (BACKEND_DATA, r#"{"VtepMAC":"xx"}"#),
                ],
                None,
            ),
            (&[(BACKEND_DATA, VX)], None),
        ];
        for (ann, want) in cases {
            let n = node("n", None, None, ann);
            assert_eq!(
                vtep(&n).map(|v| v.mac.to_string()).as_deref(),
                want,
                "{ann:?}"
            );
        }
    }

    #[test]
    fn patches() {
        let ip: Ipv4Addr = "10.9.0.2".parse().unwrap();
        let mac: Mac = "aa:bb:cc:dd:ee:01".parse().unwrap();
        let published: BTreeMap<String, String> = [
            (BACKEND_TYPE, "vxlan"),
            (BACKEND_DATA, VX),
            (PUBLIC_IP, "10.9.0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Up to date: nothing to write.
        assert_eq!(
            annotation_patch(&published, &annotations(Some(mac), ip)),
            None
        );
        // Fresh node: all three.
        let fresh = annotation_patch(&BTreeMap::new(), &annotations(Some(mac), ip)).unwrap();
        assert_eq!(fresh["metadata"]["annotations"][BACKEND_DATA], VX);
        assert_eq!(fresh["metadata"]["annotations"][PUBLIC_IP], "10.9.0.2");
        // Device gone: host-gw, data removed, the IP kept.
        let gone = annotation_patch(&published, &annotations(None, ip)).unwrap();
        assert_eq!(
            gone,
            serde_json::json!({"metadata": {"annotations": {BACKEND_TYPE: "host-gw", BACKEND_DATA: null}}})
        );
        // host-gw without data: nothing to remove.
        let hostgw: BTreeMap<String, String> = [(BACKEND_TYPE, "host-gw"), (PUBLIC_IP, "10.9.0.2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(annotation_patch(&hostgw, &annotations(None, ip)), None);
    }
}

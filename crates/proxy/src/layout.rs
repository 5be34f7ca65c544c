//! What the table should hold for a desired state (pure): every per-service chain with its
//! rules, the verdict-map elements and the affinity sets, laid out as upstream's nftables
//! proxier lays out its `kube-proxy` table. [`crate::render`] turns a layout into a script.
//!
//! Per service port (chain names from [`crate::names`]):
//!
//! ```text
//! service-ips[clusterIP . proto . port] ─goto─▶ service-H-ns/svc/proto/port  (Cluster policy)
//!                                        or ─▶ local-H-…                    (internalTrafficPolicy Local)
//!     rule 1: ip daddr CIP proto dport P ip saddr != CLUSTER_CIDR jump mark-for-masquerade
//!     ClientIP affinity: ip saddr @affinity-E goto endpoint-E   (one per endpoint)
//!     numgen random mod N vmap { 0 : goto endpoint-E0, … }
//! service-nodeports[proto . nodePort] ─goto─▶ external-H-…
//!     Cluster: jump mark-for-masquerade; goto service-H-…
//!     Local:   ip saddr CLUSTER_CIDR goto service-H-… (pods: short-circuit)
//!              fib saddr type local jump mark-for-masquerade; … goto service-H-… (the node)
//!              goto local-H-…            (only when there are local endpoints)
//! endpoint-E-…__IP/PORT: ip saddr IP jump mark-for-masquerade      (hairpin)
//!                        update @affinity-E { ip saddr }           (ClientIP only)
//!                        meta l4proto proto dnat to IP:PORT
//! no endpoints at all: no-endpoint-services / no-endpoint-nodeports → goto reject-chain
//! a Local policy without local endpoints (but some elsewhere): … → drop
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::model::{Desired, Endpoint, ServicePort, ServicePortName};
use crate::names;
use crate::Cidr;

pub const SERVICES: &str = "services";
pub const MASQUERADING: &str = "masquerading";
pub const MARK_MASQ: &str = "mark-for-masquerade";
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const CLUSTER_IPS: &str = "cluster-ips";
pub const NODEPORT_IPS: &str = "nodeport-ips";
/// The packet mark bit asking `masquerading` to SNAT (upstream's 0x4000, bit 14).
pub const MASQ_MARK: &str = "0x00004000";

/// The per-service part of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Chain name → its rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// `ip . proto . port` → verdict.
    pub service_ips: Vec<(String, String)>,
    /// `proto . port` → verdict.
    pub service_nodeports: Vec<(String, String)>,
    pub no_endpoint_services: Vec<(String, String)>,
    pub no_endpoint_nodeports: Vec<(String, String)>,
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    /// Affinity set name → timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
}

struct Names {
    cluster: String,
    local: String,
    external: String,
}

fn endpoint_names(sp: &ServicePort, ep: &Endpoint) -> (String, String) {
    let base = names::endpoint_base(
        &sp.name.namespace,
        &sp.name.name,
        sp.name.protocol.as_str(),
        &sp.name.port,
        &ep.ip.to_string(),
        ep.port,
    );
    (format!("endpoint-{base}"), format!("affinity-{base}"))
}

/// The layout of every service port in `desired`.
pub fn layout(desired: &Desired, cluster_cidr: Cidr) -> Layout {
    let mut out = Layout::default();
    for sp in desired.values() {
        service_port(&mut out, sp, cluster_cidr);
    }
    out
}

impl Layout {
    /// Adds `other`'s chains, elements and sets (service ports never share a name).
    fn extend(&mut self, other: &Layout) {
        self.chains
            .extend(other.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.service_ips.extend(other.service_ips.iter().cloned());
        self.service_nodeports
            .extend(other.service_nodeports.iter().cloned());
        self.no_endpoint_services
            .extend(other.no_endpoint_services.iter().cloned());
        self.no_endpoint_nodeports
            .extend(other.no_endpoint_nodeports.iter().cloned());
        self.cluster_ips.extend(other.cluster_ips.iter().copied());
        self.affinity_sets
            .extend(other.affinity_sets.iter().map(|(k, v)| (k.clone(), *v)));
    }
}

/// Each service port's part of the layout from the last call, reused while the port is
/// unchanged (upstream's change tracking, in effect): a sync after one Service changed
/// lays out that Service only.
#[derive(Debug, Default)]
pub struct LayoutCache {
    cidr: Option<Cidr>,
    ports: HashMap<ServicePortName, (ServicePort, Layout)>,
}

impl LayoutCache {
    /// The same as [`layout`], from the cache where it can.
    pub fn layout(&mut self, desired: &Desired, cluster_cidr: Cidr) -> Layout {
        if self.cidr != Some(cluster_cidr) {
            self.ports.clear();
            self.cidr = Some(cluster_cidr);
        }
        let mut out = Layout::default();
        let mut next = HashMap::with_capacity(desired.len());
        for (name, sp) in desired {
            let part = match self.ports.remove(name) {
                Some((old, part)) if old == *sp => part,
                _ => {
                    let mut part = Layout::default();
                    service_port(&mut part, sp, cluster_cidr);
                    part
                }
            };
            out.extend(&part);
            next.insert(name.clone(), (sp.clone(), part));
        }
        self.ports = next;
        out
    }
}

fn service_port(out: &mut Layout, sp: &ServicePort, cidr: Cidr) {
    let proto = sp.name.protocol.as_str();
    let base = names::service_port_base(&sp.name.namespace, &sp.name.name, proto, &sp.name.port);
    let n = Names {
        cluster: format!("service-{base}"),
        local: format!("local-{base}"),
        external: format!("external-{base}"),
    };
    let cat = sp.categorize();
    let uses_cluster_chain = !cat.cluster.is_empty() && sp.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && sp.uses_local_endpoints();
    let (internal_chain, has_internal) = if sp.internal_policy_local {
        (&n.local, cat.any && !cat.local.is_empty())
    } else {
        (&n.cluster, cat.any)
    };
    let (external_policy_chain, has_external) = if sp.external_policy_local {
        (&n.local, cat.any && !cat.local.is_empty())
    } else {
        (&n.cluster, cat.any)
    };
    let uses_external_chain = cat.any && sp.externally_accessible();
    // No endpoint anywhere: refuse at once. Endpoints elsewhere but none here for a Local
    // policy: drop, as upstream.
    let filter_verdict = if cat.any {
        "drop".to_string()
    } else {
        format!("goto {REJECT_CHAIN}")
    };

    let cip_key = format!("{} . {proto} . {}", sp.cluster_ip, sp.port);
    out.cluster_ips.insert(sp.cluster_ip);
    if has_internal {
        out.service_ips
            .push((cip_key, format!("goto {internal_chain}")));
    } else {
        out.no_endpoint_services
            .push((cip_key, filter_verdict.clone()));
    }
    for eip in &sp.external_ips {
        let key = format!("{eip} . {proto} . {}", sp.port);
        if cat.any {
            out.service_ips
                .push((key.clone(), format!("goto {}", n.external)));
        }
        if !has_external {
            out.no_endpoint_services.push((key, filter_verdict.clone()));
        }
    }
    if let Some(np) = sp.node_port {
        let key = format!("{proto} . {np}");
        if cat.any {
            out.service_nodeports
                .push((key.clone(), format!("goto {}", n.external)));
        }
        if !has_external {
            out.no_endpoint_nodeports
                .push((key, filter_verdict.clone()));
        }
    }

    if let Some(timeout) = sp.affinity_timeout {
        for ep in &cat.reachable {
            out.affinity_sets.insert(endpoint_names(sp, ep).1, timeout);
        }
    }

    // The chains, each started here so the masquerade rule comes first.
    if uses_cluster_chain {
        out.chains.insert(n.cluster.clone(), Vec::new());
    }
    if uses_local_chain {
        out.chains.insert(n.local.clone(), Vec::new());
    }
    if has_internal {
        // Off-cluster sources (the node itself included) are masqueraded, so replies come
        // back through this node; pods keep their address.
        if let Some(rules) = out.chains.get_mut(internal_chain) {
            rules.push(format!(
                "ip daddr {} {proto} dport {} ip saddr != {cidr} jump {MARK_MASQ}",
                sp.cluster_ip, sp.port
            ));
        }
    }
    if uses_external_chain {
        let mut rules = Vec::new();
        if !sp.external_policy_local {
            // The endpoint may be on another node: masquerade so the reply comes back here.
            rules.push(format!("jump {MARK_MASQ}"));
        } else if uses_cluster_chain {
            rules.push(format!(
                "ip saddr {cidr} goto {} comment \"short-circuit pod traffic\"",
                n.cluster
            ));
            rules.push(format!(
                "fib saddr type local jump {MARK_MASQ} comment \"masquerade local traffic\""
            ));
            rules.push(format!(
                "fib saddr type local goto {} comment \"short-circuit local traffic\"",
                n.cluster
            ));
        }
        if has_external {
            rules.push(format!("goto {external_policy_chain}"));
        }
        out.chains.insert(n.external.clone(), rules);
    }
    if uses_cluster_chain {
        let rules = endpoint_dispatch(sp, &cat.cluster);
        if let Some(chain) = out.chains.get_mut(&n.cluster) {
            chain.extend(rules);
        }
    }
    if uses_local_chain {
        let rules = endpoint_dispatch(sp, &cat.local);
        if let Some(chain) = out.chains.get_mut(&n.local) {
            chain.extend(rules);
        }
    }
    for ep in &cat.reachable {
        let (chain, affinity) = endpoint_names(sp, ep);
        let mut rules = vec![format!("ip saddr {} jump {MARK_MASQ}", ep.ip)];
        if sp.affinity_timeout.is_some() {
            rules.push(format!("update @{affinity} {{ ip saddr }}"));
        }
        rules.push(format!(
            "meta l4proto {proto} dnat to {}:{}",
            ep.ip, ep.port
        ));
        out.chains.insert(chain, rules);
    }
}

/// Affinity lookups, then the random pick among `endpoints`.
fn endpoint_dispatch(sp: &ServicePort, endpoints: &[Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if sp.affinity_timeout.is_some() {
        for ep in endpoints {
            let (chain, affinity) = endpoint_names(sp, ep);
            rules.push(format!("ip saddr @{affinity} goto {chain}"));
        }
    }
    let mut vmap = String::new();
    for (i, ep) in endpoints.iter().enumerate() {
        if i > 0 {
            vmap.push_str(", ");
        }
        let _ = write!(vmap, "{i} : goto {}", endpoint_names(sp, ep).0);
    }
    rules.push(format!(
        "numgen random mod {} vmap {{ {vmap} }}",
        endpoints.len()
    ));
    rules
}

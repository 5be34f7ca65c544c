//! The proxy's desired state, from Services and EndpointSlices alone (pure): one
//! [`ServicePort`] per port of every proxied Service, with the endpoints this node may send
//! its traffic to, categorized as upstream's `CategorizeEndpoints` does.
//!
//! - A Service is proxied when it has an IPv4 ClusterIP (not headless, not ExternalName);
//!   NodePort and LoadBalancer Services also get their `nodePort` (no load balancer IPs:
//!   peapod has no cloud provider).
//! - A slice belongs to the Service its `kubernetes.io/service-name` label names, in its
//!   namespace; its ports match service ports by name and protocol; only IPv4 slices count,
//!   and only each endpoint's first address (as upstream). The same `ip:port` in several
//!   slices is one endpoint.
//! - Usable endpoints are the ready ones; when none is ready, the serving-and-terminating
//!   ones (upstream's graceful termination fallback). `Local` policies use the endpoints
//!   whose `nodeName` is this node, with the same fallback among them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (3 hours, upstream's default).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' (and the chain names') spelling: `tcp`, `udp`, `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `ns/svc:port` with the protocol: what identifies one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The port's name; empty for a Service's single unnamed port.
    pub port: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Upstream's ServicePortName.String(): `ns/name:port`, without `:` for no name.
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node (`nodeName` is ours).
    pub local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// One service port as the proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `Some(timeout seconds)` for `sessionAffinity: ClientIP`.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local` on an externally reachable port.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// Every endpoint the slices list for this port, sorted.
    pub endpoints: Vec<Endpoint>,
}

/// A service port's endpoints sorted by use (upstream's `CategorizeEndpoints`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Categorized {
    /// For `Cluster` policies (empty when no policy is `Cluster`).
    pub cluster: Vec<Endpoint>,
    /// For `Local` policies (empty when no policy is `Local`).
    pub local: Vec<Endpoint>,
    /// The union of both: the endpoints that get a chain.
    pub reachable: Vec<Endpoint>,
    /// Some endpoint anywhere is usable (so a policy without local ones drops rather than
    /// rejects).
    pub any: bool,
}

impl ServicePort {
    /// NodePort (or external IPs): reachable from outside the cluster.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }

    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || (self.externally_accessible() && !self.external_policy_local)
    }

    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }

    pub fn categorize(&self) -> Categorized {
        let usable = |pick: &dyn Fn(&Endpoint) -> bool| -> Vec<Endpoint> {
            let ready: Vec<Endpoint> = self
                .endpoints
                .iter()
                .filter(|e| pick(e) && e.ready)
                .cloned()
                .collect();
            if !ready.is_empty() {
                return ready;
            }
            self.endpoints
                .iter()
                .filter(|e| pick(e) && e.serving && e.terminating)
                .cloned()
                .collect()
        };
        let all = usable(&|_| true);
        let any = !all.is_empty();
        let cluster = if self.uses_cluster_endpoints() {
            all
        } else {
            Vec::new()
        };
        let local = if self.uses_local_endpoints() {
            usable(&|e| e.local)
        } else {
            Vec::new()
        };
        let mut reachable: Vec<Endpoint> = cluster.iter().chain(&local).cloned().collect();
        reachable.sort();
        reachable.dedup();
        Categorized {
            cluster,
            local,
            reachable,
            any,
        }
    }
}

/// Every proxied service port, by name.
pub type Desired = BTreeMap<ServicePortName, ServicePort>;

/// The desired state for node `node_name` from everything the watches hold.
pub fn desired<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: &str,
) -> Desired {
    // (namespace, service) → (port name, protocol) → endpoints by ip:port.
    type Key = (String, String);
    let mut by_service: BTreeMap<
        Key,
        BTreeMap<(String, Protocol), BTreeMap<(Ipv4Addr, u16), Endpoint>>,
    > = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let (Some(ns), Some(svc)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) else {
            continue;
        };
        let ports = by_service.entry((ns.to_string(), svc.clone())).or_default();
        for sp in slice.ports.iter().flatten() {
            let (Some(port), Some(protocol)) = (
                sp.port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
                Protocol::parse(sp.protocol.as_deref()),
            ) else {
                continue;
            };
            let eps = ports
                .entry((sp.name.clone().unwrap_or_default(), protocol))
                .or_default();
            for ep in slice.endpoints.iter().flatten() {
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                eps.entry((ip, port)).or_insert(Endpoint {
                    ip,
                    port,
                    local: ep.node_name.as_deref() == Some(node_name),
                    ready,
                    serving,
                    terminating,
                });
            }
        }
    }

    let mut out = Desired::new();
    for svc in services {
        let (Some(ns), Some(name), Some(spec)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
            svc.spec.as_ref(),
        ) else {
            continue;
        };
        let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
        if type_ == "ExternalName" {
            continue;
        }
        let cluster_ips = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter());
        let Some(cluster_ip) = cluster_ips
            .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
            .next()
        else {
            // Headless, or IPv6 only: nothing to program.
            continue;
        };
        let node_ports = matches!(type_, "NodePort" | "LoadBalancer");
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let endpoints_of = by_service.get(&(ns.to_string(), name.to_string()));
        for p in spec.ports.iter().flatten() {
            let (Some(port), Some(protocol)) = (
                u16::try_from(p.port).ok().filter(|p| *p != 0),
                Protocol::parse(p.protocol.as_deref()),
            ) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let node_port = p
                .node_port
                .filter(|_| node_ports)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0);
            let mut sp = ServicePort {
                name: ServicePortName {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    port: port_name.clone(),
                    protocol,
                },
                cluster_ip,
                port,
                node_port,
                external_ips: external_ips.clone(),
                affinity_timeout,
                external_policy_local: false,
                internal_policy_local,
                endpoints: endpoints_of
                    .and_then(|m| m.get(&(port_name, protocol)))
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default(),
            };
            sp.external_policy_local = sp.externally_accessible()
                && spec.external_traffic_policy.as_deref() == Some("Local");
            out.insert(sp.name.clone(), sp);
        }
    }
    out
}

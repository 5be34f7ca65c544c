//! The cache the answers come from: one immutable snapshot of the cluster's Namespaces,
//! Services and EndpointSlices, reduced to what DNS needs and indexed by name and by
//! address. Built from k8s-openapi objects by a pure function ([`Zone::build`]); the
//! watchers build a new one on every change and swap it in whole, so a query never sees a
//! half-applied change and never waits for a watcher.
//!
//! What it keeps follows CoreDNS's kubernetes plugin (its `object` package): only ready
//! endpoints (the EndpointSlice controller already counts `publishNotReadyAddresses` as
//! ready), the ports of the slice each endpoint came from (a slice without ports stands
//! for one port `-1`, which gives addresses but no SRV record), and an endpoint's name is
//! its `hostname` or else its address with dashes (`10-42-0-7`, `fd00--7`).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A port of a Service or of an EndpointSlice: name and protocol lowercased for the
/// case-insensitive match of `_<port>._<proto>` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub protocol: String,
    /// `-1` for the sentinel of a slice without ports.
    pub port: i32,
}

/// One ready endpoint address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// `hostname`, or the address with dashes.
    pub name: String,
}

/// The ready endpoints of one EndpointSlice with the slice's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Port>,
}

/// How a Service is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `spec.clusterIPs` (possibly none yet).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the endpoints' addresses.
    Headless,
    /// `spec.externalName`, lowercased, without a trailing dot.
    ExternalName(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: Kind,
    pub ports: Vec<Port>,
    pub slices: Vec<Slice>,
}

/// The snapshot. Cheap to share (`Arc<Zone>`), never changed once built.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// The cluster domain, lowercase, without dots at either end (`cluster.local`).
    pub domain: String,
    /// False until every watch has listed once: before that a name that is not found may
    /// just not be known yet, so it gets SERVFAIL rather than NXDOMAIN (as CoreDNS does).
    pub synced: bool,
    /// The SOA serial: when the snapshot last changed, in Unix seconds.
    pub serial: u32,
    /// Namespace → its Services by name. Every existing namespace has an entry.
    pub namespaces: HashMap<String, HashMap<String, ServiceEntry>>,
    /// ClusterIP → `svc.ns` of the Service holding it.
    pub cluster_ips: HashMap<IpAddr, String>,
    /// Endpoint address → `<endpoint>.<svc>.<ns>` names, one per slice listing it ready.
    pub endpoint_ips: HashMap<IpAddr, Vec<String>>,
    /// The DNS server's own addresses (`ns.dns.<domain>`): the `kube-dns` Service's
    /// ClusterIPs, else the address the server listens on.
    pub ns_addrs: Vec<IpAddr>,
}

/// Where `ns.dns.<domain>` points when there is no kube-dns Service yet.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub domain: String,
    pub fallback_ns_addr: IpAddr,
    pub synced: bool,
    pub serial: u32,
}

impl Zone {
    /// The snapshot of these objects.
    pub fn build<'a>(
        opts: &BuildOptions,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Zone {
        let mut zone = Zone {
            domain: opts.domain.trim_matches('.').to_ascii_lowercase(),
            synced: opts.synced,
            serial: opts.serial,
            ..Zone::default()
        };
        for ns in namespaces {
            if let Some(name) = &ns.metadata.name {
                zone.namespaces.entry(name.clone()).or_default();
            }
        }
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let Some(entry) = service_entry(svc) else {
                continue;
            };
            if let Kind::ClusterIp(ips) = &entry.kind {
                for ip in ips {
                    zone.cluster_ips.insert(*ip, format!("{name}.{ns}"));
                }
                if ns == "kube-system" && name == "kube-dns" {
                    zone.ns_addrs = ips.clone();
                }
            }
            // A Service may be seen before its namespace (watches are not ordered); the
            // namespace exists if the Service does.
            zone.namespaces
                .entry(ns.clone())
                .or_default()
                .insert(name.clone(), entry);
        }
        for slice in slices {
            let (Some(ns), Some(labels)) = (&slice.metadata.namespace, &slice.metadata.labels)
            else {
                continue;
            };
            let Some(svc_name) = labels.get(SERVICE_NAME_LABEL) else {
                continue;
            };
            let Some(built) = slice_entry(slice) else {
                continue;
            };
            for ep in &built.endpoints {
                zone.endpoint_ips
                    .entry(ep.ip)
                    .or_default()
                    .push(format!("{}.{svc_name}.{ns}", ep.name));
            }
            if let Some(svc) = zone
                .namespaces
                .get_mut(ns)
                .and_then(|services| services.get_mut(svc_name))
            {
                svc.slices.push(built);
            }
        }
        for names in zone.endpoint_ips.values_mut() {
            names.sort();
            names.dedup();
        }
        if zone.ns_addrs.is_empty() {
            zone.ns_addrs = vec![opts.fallback_ns_addr];
        }
        zone
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces.get(namespace)?.get(name)
    }

    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }
}

fn service_entry(svc: &Service) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        Kind::ExternalName(
            spec.external_name
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        )
    } else {
        let ips: Vec<&str> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        if ips.first() == Some(&"None") {
            Kind::Headless
        } else {
            Kind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            port: p.port,
        })
        .collect();
    Some(ServiceEntry {
        kind,
        ports,
        slices: Vec::new(),
    })
}

fn slice_entry(slice: &EndpointSlice) -> Option<Slice> {
    if slice.address_type == "FQDN" {
        return None;
    }
    let mut endpoints = Vec::new();
    let mut seen = BTreeSet::new();
    for ep in slice.endpoints.iter().flatten() {
        // Ready unless it says it is not (a nil condition means ready, as upstream).
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        if !ready {
            continue;
        }
        for addr in &ep.addresses {
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            if !seen.insert(ip) {
                continue;
            }
            let name = match ep.hostname.as_deref() {
                Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                _ => dashed(ip),
            };
            endpoints.push(Endpoint { ip, name });
        }
    }
    let mut ports: Vec<Port> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            port: p.port.unwrap_or(-1),
        })
        .collect();
    if ports.is_empty() {
        ports.push(Port {
            name: String::new(),
            protocol: String::new(),
            port: -1,
        });
    }
    Some(Slice { endpoints, ports })
}

/// An address as an endpoint or pod name: `10-42-0-7`, `fd00--7`.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The current snapshot, swapped whole by the watchers. A query holds the read lock only
/// long enough to clone the `Arc`, so answering never waits for a rebuild.
#[derive(Debug, Default)]
pub struct Cache {
    zone: std::sync::RwLock<std::sync::Arc<Zone>>,
}

impl Cache {
    pub fn new(zone: Zone) -> Cache {
        Cache {
            zone: std::sync::RwLock::new(std::sync::Arc::new(zone)),
        }
    }

    /// The snapshot in force now.
    pub fn load(&self) -> std::sync::Arc<Zone> {
        match self.zone.read() {
            Ok(z) => z.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `zone` in force for every later query.
    pub fn store(&self, zone: Zone) {
        let zone = std::sync::Arc::new(zone);
        match self.zone.write() {
            Ok(mut z) => *z = zone,
            Err(poisoned) => *poisoned.into_inner() = zone,
        }
    }
}

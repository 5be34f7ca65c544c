//! The node's service proxy: upstream's kube-proxy in nftables mode. ClusterIP and
//! NodePort traffic is load-balanced over a Service's endpoints by one nftables table of
//! peapod's own (`table ip peapod`), laid out as kube-proxy's `kube-proxy` table.
//!
//! Owns: the desired state from Services and EndpointSlices ([`model`], pure), the table's
//! layout ([`layout`], pure) and its transactions ([`render`], pure: fresh, full and partial
//! syncs), running `nft` ([`nft`]), stale UDP conntrack entries ([`conntrack`]), the host
//! settings the proxy needs ([`host`]) and the watch-and-sync loop ([`run`]).
//!
//! Does not own: Service IP allocation, EndpointSlices (the controllers'), the pod network
//! (CNI and the agent's outbound masquerade rule), DNS.
//!
//! May depend on: k8s-openapi, kube (client, runtime), tokio, supervisor. Nothing else from
//! the workspace.

pub mod conntrack;
pub mod host;
pub mod layout;
pub mod model;
pub mod names;
pub mod nft;
pub mod render;
mod run;
pub mod testutil;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

pub use run::run;

/// The table `peapod` uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "peapod";

/// How the proxy runs on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// This node's name: endpoints whose `nodeName` is this are local.
    pub node_name: String,
    /// The addresses NodePorts answer on (IPv4, not loopback; others are ignored).
    pub node_ips: Vec<IpAddr>,
    /// The cluster's pod network, e.g. `10.42.0.0/16`: traffic to a ClusterIP from outside
    /// it is masqueraded.
    pub cluster_cidr: String,
    /// The nftables table (`table ip <table>`).
    pub table: String,
}

impl ProxyConfig {
    pub fn render_config(&self) -> Result<render::RenderConfig, ProxyError> {
        let cluster_cidr = self
            .cluster_cidr
            .parse()
            .map_err(|_| ProxyError::ClusterCidr(self.cluster_cidr.clone()))?;
        let mut node_ips: Vec<Ipv4Addr> = self
            .node_ips
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(*v4),
                _ => None,
            })
            .collect();
        node_ips.sort();
        node_ips.dedup();
        Ok(render::RenderConfig {
            table: self.table.clone(),
            cluster_cidr,
            node_ips,
        })
    }
}

/// An IPv4 CIDR, printed with its host bits cleared (`10.42.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Cidr, ()> {
        let (addr, prefix) = s.split_once('/').ok_or(())?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| ())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or(())?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "the service proxy needs nftables: {reason}; Services will not be reachable from this node"
    )]
    Unavailable { reason: String },
    #[error("cluster CIDR {0:?} is not an IPv4 CIDR")]
    ClusterCidr(String),
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("nft {args} failed: {stderr}")]
    Nft { args: String, stderr: String },
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Removes the proxy's table (kube-proxy's `--cleanup`); a missing table is not an error.
pub async fn cleanup(table: &str) -> Result<(), ProxyError> {
    cleanup_with(&nft::Nft::default(), table).await
}

/// [`cleanup`] through a given `nft` (another network namespace, in tests).
pub async fn cleanup_with(nft: &nft::Nft, table: &str) -> Result<(), ProxyError> {
    if let Err(reason) = nft.check().await {
        return Err(ProxyError::Unavailable { reason });
    }
    nft.apply(&render::cleanup_script(table)).await
}

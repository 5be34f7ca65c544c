//! The flat pod network across nodes: every pod reaches every other pod by its IP, without
//! NAT, whatever node it runs on. Each node routes every other node's pod CIDR, as flannel's
//! `host-gw` and `vxlan` backends do:
//!
//! - **host-gw**, when the peer's InternalIP lies on the subnet of this node's own interface
//!   (the one holding `--node-ip`): `ip route <peer podCIDR> via <peer IP> dev <link>`.
//! - **vxlan** otherwise (or when forced): the kernel's vxlan device `peapod.1` (VNI 1, UDP
//!   port 8472, `nolearning`, MTU = link − 50, address = the own pod CIDR's network address
//!   /32), this node's VTEP MAC published on its Node (flannel's annotations), and per peer a
//!   permanent neighbour (`<peer net addr> lladdr <peer MAC>`), an fdb entry (`<peer MAC> dst
//!   <peer IP>`) and a route (`<peer podCIDR> via <peer net addr> dev peapod.1 onlink`).
//!
//! Owns: the choice of backend per peer and the desired kernel state ([`plan`], pure), the
//! Node annotations ([`peers`], pure), reading the kernel's state back ([`observed`], pure
//! parsing of `ip -j`), the commands that turn one into the other ([`script`], pure), running
//! `ip`/`bridge` ([`ip`]), the host settings ([`host`]) and the watch-and-sync loop
//! ([`run()`]).
//!
//! Does not own: pod CIDR allocation (node IPAM in the controllers), the pod bridge and its
//! addresses (CNI), outbound masquerade (the agent's rule), Services (the proxy).
//!
//! May depend on: k8s-openapi, kube (client, runtime), tokio, supervisor. Nothing else from
//! the workspace.
//!
//! What is ours in the kernel: routes with protocol [`ROUTE_PROTOCOL`] in the main table,
//! the device [`VXLAN_DEVICE`] with every neighbour and fdb entry on it. A sync deletes what
//! is ours and not wanted, and touches nothing else.

mod addr;
pub mod host;
pub mod ip;
pub mod observed;
pub mod peers;
pub mod plan;
mod run;
pub mod script;

use std::net::IpAddr;

pub use addr::{Cidr, Mac};
pub use run::run;

/// The vxlan device (flannel's `flannel.<VNI>`).
pub const VXLAN_DEVICE: &str = "peapod.1";
/// The VXLAN network identifier (flannel's default).
pub const VNI: u32 = 1;
/// The UDP port VXLAN travels on (flannel's and the Linux kernel's default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// What VXLAN encapsulation costs: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The route protocol (`ip route ... proto 94`) that marks a route as ours. Not in
/// iproute2's `rt_protos` (and not Calico's 80 or BIRD's 12).
pub const ROUTE_PROTOCOL: u8 = 94;

/// `--pod-network`: how other nodes' pod CIDRs are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Per peer: host-gw when it is on this node's subnet, vxlan otherwise.
    #[default]
    Auto,
    /// Only host-gw; a peer on another subnet is not routed (and a warning says so).
    HostGw,
    /// Only vxlan, even to peers on the same subnet.
    Vxlan,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "host-gw" => Ok(Mode::HostGw),
            "vxlan" => Ok(Mode::Vxlan),
            other => Err(format!(
                "unknown pod network {other:?}: use host-gw, vxlan or auto"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::HostGw => "host-gw",
            Mode::Vxlan => "vxlan",
        })
    }
}

/// How the pod network runs on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetConfig {
    /// This node's name: its Node is where its pod CIDR is read and its VTEP published.
    pub node_name: String,
    /// This node's address (`--node-ip`): its interface is the one routes and VXLAN use.
    pub node_ip: IpAddr,
    /// The pod CIDR the node was started with: used while its Node has no `spec.podCIDR`.
    pub pod_cidr: String,
    pub mode: Mode,
    /// How `ip` and `bridge` are run (another network namespace, in tests).
    pub tools: ip::Tools,
}

/// The MTU pods get (the CNI bridge's `mtu`): the node link's MTU under host-gw, less the
/// VXLAN overhead when VXLAN may carry the traffic (`vxlan` and `auto`, decided before any
/// peer is known, as flannel does). None (the plugin's default) for a loopback node address,
/// whose "link" says nothing about the network.
pub fn pod_mtu(mode: Mode, link_mtu: u32, loopback: bool) -> Option<u32> {
    if loopback {
        return None;
    }
    match mode {
        Mode::HostGw => Some(link_mtu),
        Mode::Auto | Mode::Vxlan => Some(link_mtu.saturating_sub(VXLAN_OVERHEAD).max(576)),
    }
}

/// [`pod_mtu`] for the link holding `node_ip`, read from the kernel; None when no interface
/// holds it.
pub async fn pod_mtu_for(mode: Mode, node_ip: IpAddr) -> Option<u32> {
    let IpAddr::V4(node_ip) = node_ip else {
        return None;
    };
    let observed = ip::Tools::default().read().await.ok()?;
    let link = observed.link_of(node_ip)?;
    pod_mtu(mode, link.mtu, link.loopback)
}

#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("reading {what} from {command}: {reason}")]
    Parse {
        command: String,
        what: &'static str,
        reason: String,
    },
    #[error("the pod network needs an IPv4 --node-ip, not {0}")]
    NodeIp(IpAddr),
    #[error("the node watch ended")]
    WatchEnded,
}

/// Removes everything the pod network made on this host (for `peapod cleanup-network`): the
/// vxlan device (its neighbours and fdb entries go with it) and every route of ours. Nothing
/// there is not an error.
pub async fn cleanup() -> Result<(), PodNetError> {
    cleanup_with(&ip::Tools::default()).await
}

/// [`cleanup`] through given tools (another network namespace, in tests).
pub async fn cleanup_with(tools: &ip::Tools) -> Result<(), PodNetError> {
    let observed = tools.read().await?;
    let lines = script::cleanup(&observed);
    if lines.is_empty() {
        return Ok(());
    }
    tools.ip_batch(&lines).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_mtus() {
        let cases = [
            (Mode::HostGw, 1500, false, Some(1500)),
            (Mode::Auto, 1500, false, Some(1450)),
            (Mode::Vxlan, 9000, false, Some(8950)),
            (Mode::Vxlan, 600, false, Some(576)),
            (Mode::Auto, 65536, true, None),
        ];
        for (mode, link, loopback, want) in cases {
            assert_eq!(pod_mtu(mode, link, loopback), want, "{mode} {link}");
        }
        for (s, want) in [
            ("auto", Mode::Auto),
            ("host-gw", Mode::HostGw),
            ("vxlan", Mode::Vxlan),
        ] {
            assert_eq!(s.parse::<Mode>(), Ok(want));
            assert_eq!(want.to_string(), s);
        }
        assert!("udp".parse::<Mode>().is_err());
    }
}

//! The desired kernel state (pure): which backend reaches each peer, and the routes,
//! neighbours, fdb entries and vxlan device that follow.
//!
//! Per peer ([`choose`]):
//!
//! | peer                                        | host-gw   | vxlan      | auto       |
//! |---------------------------------------------|-----------|------------|------------|
//! | IP is one of this host's (same netns)       | skip      | skip       | skip       |
//! | pod CIDR overlaps ours                      | skip      | skip       | skip       |
//! | on the node link's subnet                   | host-gw   | vxlan¹     | host-gw    |
//! | elsewhere                                   | skip (warn) | vxlan¹   | vxlan¹     |
//!
//! ¹ once the peer publishes its VTEP; until then no route (the peer's agent publishes it as
//! soon as it makes its device).
//!
//! The vxlan device exists under `vxlan`, under `auto` from the first peer that needs it on
//! (and then stays: a peer may still be deciding the other way), never under `host-gw`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::peers::{Peer, Vtep};
use crate::{Cidr, Mac, Mode, VNI, VXLAN_DEVICE, VXLAN_OVERHEAD, VXLAN_PORT};

/// A route of ours: `<dst> via <via> dev <dev> [onlink] proto 94`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: Cidr,
    pub via: Ipv4Addr,
    pub dev: String,
    pub onlink: bool,
}

/// A permanent neighbour on the vxlan device: a peer's VTEP address and MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neigh {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// An fdb entry on the vxlan device: frames for `mac` go to `dst` over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub mac: Mac,
    pub dst: Ipv4Addr,
}

/// The vxlan device as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub link: String,
    pub port: u16,
    pub mtu: u32,
    /// The own pod CIDR's network address, as a /32.
    pub addr: Ipv4Addr,
    /// The MAC to create it with: the one the Node already publishes, so peers' entries stay
    /// right when the device is made again.
    pub mac: Option<Mac>,
}

/// This node as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub node_ip: Ipv4Addr,
    /// The link holding the node IP.
    pub link: String,
    pub link_mtu: u32,
    pub loopback: bool,
    /// The node IP's subnet on that link.
    pub subnet: Cidr,
    /// Every IPv4 address of this host (network namespace).
    pub addrs: BTreeSet<Ipv4Addr>,
    pub pod_cidr: Cidr,
}

/// Why a peer gets no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Its IP is this host's: a node beside this one (tests on one host).
    SameHost,
    /// Its pod CIDR overlaps this node's.
    Overlap,
    /// The node IP is a loopback address: there is no network to route over.
    Loopback,
    /// host-gw only, and the peer is on another subnet.
    NotDirect,
    /// It needs vxlan and has published no VTEP yet.
    NoVtep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    HostGw,
    Vxlan(Vtep),
    Skip(Skip),
}

/// How this node reaches `peer`'s pods.
pub fn choose(mode: Mode, local: &Local, peer: &Peer) -> Choice {
    if local.addrs.contains(&peer.ip) {
        return Choice::Skip(Skip::SameHost);
    }
    if local.loopback {
        return Choice::Skip(Skip::Loopback);
    }
    if peer.pod_cidr.overlaps(&local.pod_cidr) {
        return Choice::Skip(Skip::Overlap);
    }
    let direct = local.subnet.contains(peer.ip);
    let vxlan = || match peer.vtep {
        Some(v) => Choice::Vxlan(v),
        None => Choice::Skip(Skip::NoVtep),
    };
    match mode {
        Mode::HostGw if direct => Choice::HostGw,
        Mode::HostGw => Choice::Skip(Skip::NotDirect),
        Mode::Auto if direct => Choice::HostGw,
        Mode::Auto | Mode::Vxlan => vxlan(),
    }
}

/// What the kernel should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub vxlan: Option<VxlanSpec>,
    pub routes: BTreeSet<Route>,
    pub neighs: BTreeSet<Neigh>,
    pub fdb: BTreeSet<Fdb>,
    /// Peers without a route, and why (for the log).
    pub skipped: Vec<(String, Skip)>,
}

/// The desired state for `peers`. `vxlan_exists`: the device is there now (under `auto` it
/// then stays); `own_vtep`: what the Node publishes (its MAC is reused on creation).
pub fn desired(
    mode: Mode,
    local: &Local,
    peers: &[Peer],
    vxlan_exists: bool,
    own_vtep: Option<Vtep>,
) -> Desired {
    let mut out = Desired::default();
    let mut need_vxlan = mode == Mode::Vxlan || (mode == Mode::Auto && vxlan_exists);
    for peer in peers {
        let choice = choose(mode, local, peer);
        match choice {
            Choice::HostGw => {
                out.routes.insert(Route {
                    dst: peer.pod_cidr,
                    via: peer.ip,
                    dev: local.link.clone(),
                    onlink: false,
                });
            }
            Choice::Vxlan(vtep) => {
                need_vxlan = true;
                if vtep.vni != VNI {
                    // Another VNI is another network: its frames would not reach our device.
                    out.skipped.push((peer.name.clone(), Skip::NoVtep));
                    continue;
                }
                let gw = peer.pod_cidr.addr;
                out.routes.insert(Route {
                    dst: peer.pod_cidr,
                    via: gw,
                    dev: VXLAN_DEVICE.to_string(),
                    onlink: true,
                });
                out.neighs.insert(Neigh {
                    ip: gw,
                    mac: vtep.mac,
                });
                out.fdb.insert(Fdb {
                    mac: vtep.mac,
                    dst: peer.ip,
                });
            }
            Choice::Skip(why) => {
                if why == Skip::NoVtep {
                    need_vxlan = true;
                }
                out.skipped.push((peer.name.clone(), why));
            }
        }
    }
    if need_vxlan && mode != Mode::HostGw && !local.loopback {
        out.vxlan = Some(VxlanSpec {
            vni: VNI,
            local: local.node_ip,
            link: local.link.clone(),
            port: VXLAN_PORT,
            mtu: local.link_mtu.saturating_sub(VXLAN_OVERHEAD),
            addr: local.pod_cidr.addr,
            mac: own_vtep.filter(|v| v.vni == VNI).map(|v| v.mac),
        });
    }
    if out.vxlan.is_none() {
        // Nothing can go through a device that will not be there.
        out.routes.retain(|r| r.dev != VXLAN_DEVICE);
        out.neighs.clear();
        out.fdb.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            node_ip: "10.9.0.2".parse().unwrap(),
            link: "eth0".into(),
            link_mtu: 1500,
            loopback: false,
            subnet: "10.9.0.0/24".parse().unwrap(),
            addrs: ["10.9.0.2", "127.0.0.1", "10.42.0.1"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
            pod_cidr: "10.42.0.0/24".parse().unwrap(),
        }
    }

    fn peer(name: &str, cidr: &str, ip: &str, mac: Option<&str>) -> Peer {
        Peer {
            name: name.into(),
            pod_cidr: cidr.parse().unwrap(),
            ip: ip.parse().unwrap(),
            vtep: mac.map(|m| Vtep {
                vni: VNI,
                mac: m.parse().unwrap(),
            }),
        }
    }

    const MAC: &str = "aa:bb:cc:dd:ee:01";

    #[test]
    fn choices() {
        let vtep = Vtep {
            vni: VNI,
            mac: MAC.parse().unwrap(),
        };
        let near = peer("near", "10.42.1.0/24", "10.9.0.3", None);
        let near_vtep = peer("near", "10.42.1.0/24", "10.9.0.3", Some(MAC));
        let far = peer("far", "10.42.2.0/24", "10.8.0.2", None);
        let far_vtep = peer("far", "10.42.2.0/24", "10.8.0.2", Some(MAC));
        let same_host = peer("beside", "10.42.3.0/24", "10.9.0.2", Some(MAC));
        let overlap = peer("overlap", "10.42.0.0/16", "10.9.0.4", Some(MAC));
        let cases = [
            (Mode::Auto, &near, Choice::HostGw),
            (Mode::Auto, &near_vtep, Choice::HostGw),
            (Mode::Auto, &far, Choice::Skip(Skip::NoVtep)),
            (Mode::Auto, &far_vtep, Choice::Vxlan(vtep)),
            (Mode::HostGw, &near, Choice::HostGw),
            (Mode::HostGw, &far_vtep, Choice::Skip(Skip::NotDirect)),
            (Mode::Vxlan, &near, Choice::Skip(Skip::NoVtep)),
            (Mode::Vxlan, &near_vtep, Choice::Vxlan(vtep)),
            (Mode::Vxlan, &far_vtep, Choice::Vxlan(vtep)),
            (Mode::Auto, &same_host, Choice::Skip(Skip::SameHost)),
            (Mode::Vxlan, &overlap, Choice::Skip(Skip::Overlap)),
        ];
        for (mode, p, want) in cases {
            assert_eq!(choose(mode, &local(), p), want, "{mode} {p:?}");
        }
        let mut lo = local();
        lo.loopback = true;
        assert_eq!(choose(Mode::Auto, &lo, &near), Choice::Skip(Skip::Loopback));
    }

    fn routes(d: &Desired) -> Vec<String> {
        d.routes
            .iter()
            .map(|r| {
                format!(
                    "{} via {} dev {}{}",
                    r.dst,
                    r.via,
                    r.dev,
                    if r.onlink { " onlink" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn host_gw_peers_only() {
        let peers = [
            peer("b", "10.42.1.0/24", "10.9.0.3", None),
            peer("c", "10.42.2.0/24", "10.9.0.4", None),
        ];
        for mode in [Mode::Auto, Mode::HostGw] {
            let d = desired(mode, &local(), &peers, false, None);
            assert_eq!(
                routes(&d),
                [
                    "10.42.1.0/24 via 10.9.0.3 dev eth0",
                    "10.42.2.0/24 via 10.9.0.4 dev eth0"
                ],
                "{mode}"
            );
            assert_eq!(d.vxlan, None, "{mode}: no device while nobody needs one");
            assert!(d.neighs.is_empty() && d.fdb.is_empty());
        }
    }

    #[test]
    fn vxlan_peers() {
        let peers = [
            peer("b", "10.42.1.0/24", "10.8.0.3", Some(MAC)),
            peer("c", "10.42.2.0/24", "10.7.0.4", None),
        ];
        let own = Vtep {
            vni: VNI,
            mac: "02:00:00:00:00:07".parse().unwrap(),
        };
        let d = desired(Mode::Auto, &local(), &peers, false, Some(own));
        assert_eq!(
            routes(&d),
            ["10.42.1.0/24 via 10.42.1.0 dev peapod.1 onlink"]
        );
        assert_eq!(
            d.vxlan,
            Some(VxlanSpec {
                vni: 1,
                local: "10.9.0.2".parse().unwrap(),
                link: "eth0".into(),
                port: 8472,
                mtu: 1450,
                addr: "10.42.0.0".parse().unwrap(),
                mac: Some(own.mac),
            })
        );
        let neigh: Vec<String> = d
            .neighs
            .iter()
            .map(|n| format!("{} {}", n.ip, n.mac))
            .collect();
        assert_eq!(neigh, [format!("10.42.1.0 {MAC}")]);
        let fdb: Vec<String> = d
            .fdb
            .iter()
            .map(|f| format!("{} {}", f.mac, f.dst))
            .collect();
        assert_eq!(fdb, [format!("{MAC} 10.8.0.3")]);
        assert_eq!(d.skipped, vec![("c".to_string(), Skip::NoVtep)]);
    }

    #[test]
    fn device_lifetime_by_mode() {
        let near = [peer("b", "10.42.1.0/24", "10.9.0.3", Some(MAC))];
        let cases = [
            // (mode, device there now, peers, device wanted)
            (Mode::Vxlan, false, &[][..], true),
            (Mode::Auto, false, &[][..], false),
            (Mode::Auto, true, &[][..], true),
            (Mode::Auto, false, &near[..], false),
            (Mode::HostGw, true, &near[..], false),
        ];
        for (mode, exists, peers, want) in cases {
            let d = desired(mode, &local(), peers, exists, None);
            assert_eq!(
                d.vxlan.is_some(),
                want,
                "{mode} exists={exists} peers={}",
                peers.len()
            );
        }
        // Forced vxlan: the near peer goes through the device too.
        let d = desired(Mode::Vxlan, &local(), &near, false, None);
        assert_eq!(
            routes(&d),
            ["10.42.1.0/24 via 10.42.1.0 dev peapod.1 onlink"]
        );
    }

    #[test]
    fn same_host_and_loopback_nodes_route_nothing() {
        // Nodes sharing one host (the e2e suite's host-netns clusters): no routes, no device.
        let mut lo = local();
        lo.node_ip = "127.0.0.1".parse().unwrap();
        lo.link = "lo".into();
        lo.loopback = true;
        let peers = [
            peer("b", "10.42.1.0/24", "127.0.0.1", Some(MAC)),
            peer("c", "10.42.2.0/24", "198.19.4.5", Some(MAC)),
        ];
        let d = desired(Mode::Auto, &lo, &peers, false, None);
        assert_eq!(d.routes.len() + d.neighs.len() + d.fdb.len(), 0);
        assert_eq!(d.vxlan, None);
    }
}

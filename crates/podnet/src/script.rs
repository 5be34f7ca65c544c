//! The commands that take the kernel from [`Observed`] to [`Desired`] (pure): lines for one
//! `ip -batch -` and one `bridge -batch -`, so a sync costs at most two processes however
//! many peers changed. Only what is ours is deleted: routes of protocol
//! [`ROUTE_PROTOCOL`](crate::ROUTE_PROTOCOL), and the vxlan device with what is on it.
//!
//! Order inside the `ip` batch: the device (made, remade when its VXLAN parameters differ,
//! or set right: MTU, up, address), then stale routes and neighbours out, then neighbours
//! and routes in. The `bridge` batch runs after it (the fdb needs the device): stale entries
//! out, then new ones in. A peer whose entries change is never left half-old: `replace`.

use std::collections::{BTreeMap, BTreeSet};

use crate::observed::Observed;
use crate::plan::{Desired, Fdb, Neigh, Route, VxlanSpec};
use crate::{ROUTE_PROTOCOL, VXLAN_DEVICE};

/// One sync's commands; both empty when the kernel is as desired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub ip: Vec<String>,
    pub bridge: Vec<String>,
    /// The device is made (again) by this script: its MAC is known only afterwards.
    pub creates_device: bool,
}

impl Script {
    pub fn is_empty(&self) -> bool {
        self.ip.is_empty() && self.bridge.is_empty()
    }
}

fn create_device(spec: &VxlanSpec, mac: Option<crate::Mac>, out: &mut Vec<String>) {
    let address = mac.map(|m| format!(" address {m}")).unwrap_or_default();
    out.push(format!(
        "link add {VXLAN_DEVICE}{address} mtu {mtu} type vxlan id {vni} local {local} dev {link} dstport {port} nolearning",
        mtu = spec.mtu,
        vni = spec.vni,
        local = spec.local,
        link = spec.link,
        port = spec.port,
    ));
    out.push(format!("addr add {}/32 dev {VXLAN_DEVICE}", spec.addr));
    out.push(format!("link set {VXLAN_DEVICE} up"));
}

fn route_line(verb: &str, r: &Route) -> String {
    format!(
        "route {verb} {} via {} dev {}{} proto {ROUTE_PROTOCOL}",
        r.dst,
        r.via,
        r.dev,
        if r.onlink { " onlink" } else { "" }
    )
}

fn neigh_add(n: &Neigh) -> String {
    format!(
        "neigh replace {} lladdr {} dev {VXLAN_DEVICE} nud permanent",
        n.ip, n.mac
    )
}

fn fdb_add(f: &Fdb) -> String {
    format!(
        "fdb replace {} dev {VXLAN_DEVICE} dst {} self permanent",
        f.mac, f.dst
    )
}

/// The commands from `observed` to `desired`.
pub fn script(observed: &Observed, desired: &Desired) -> Script {
    let mut out = Script::default();
    let current = observed.vxlan_device();
    // What the device holds now; empty when it goes or is made afresh.
    let mut device_routes_gone = false;
    match (&desired.vxlan, current) {
        (None, None) => {}
        (None, Some(_)) => {
            out.ip.push(format!("link del {VXLAN_DEVICE}"));
            device_routes_gone = true;
        }
        (Some(spec), None) => {
            create_device(spec, spec.mac, &mut out.ip);
            out.creates_device = true;
            device_routes_gone = true;
        }
        (Some(spec), Some(link)) => {
            let same = link.vxlan.as_ref().is_some_and(|v| {
                v.vni == spec.vni
                    && v.local == Some(spec.local)
                    && v.link.as_deref() == Some(spec.link.as_str())
                    && v.port == spec.port
                    && !v.learning
            });
            if !same {
                // Keep its MAC: peers have it in their neighbour and fdb entries.
                out.ip.push(format!("link del {VXLAN_DEVICE}"));
                create_device(spec, link.mac.or(spec.mac), &mut out.ip);
                out.creates_device = true;
                device_routes_gone = true;
            } else {
                if link.mtu != spec.mtu {
                    out.ip
                        .push(format!("link set {VXLAN_DEVICE} mtu {}", spec.mtu));
                }
                for (addr, prefix) in &link.addrs {
                    if (*addr, *prefix) != (spec.addr, 32) {
                        out.ip
                            .push(format!("addr del {addr}/{prefix} dev {VXLAN_DEVICE}"));
                    }
                }
                if !link.addrs.contains(&(spec.addr, 32)) {
                    out.ip
                        .push(format!("addr add {}/32 dev {VXLAN_DEVICE}", spec.addr));
                }
                if !link.up {
                    out.ip.push(format!("link set {VXLAN_DEVICE} up"));
                }
            }
        }
    }
    let empty = BTreeSet::new();
    let (obs_neighs, obs_fdb) = if device_routes_gone {
        (&empty, &BTreeSet::new())
    } else {
        (&observed.neighs, &observed.fdb)
    };
    // Routes keyed by destination: one route per destination in the main table.
    let obs_routes: BTreeMap<_, &Route> = observed
        .routes
        .iter()
        .filter(|r| !(device_routes_gone && r.dev == VXLAN_DEVICE))
        .map(|r| (r.dst, r))
        .collect();
    let want_routes: BTreeMap<_, &Route> = desired.routes.iter().map(|r| (r.dst, r)).collect();
    for (dst, r) in &obs_routes {
        if !want_routes.contains_key(dst) {
            out.ip.push(route_line("del", r));
        }
    }
    let want_neigh_ips: BTreeSet<_> = desired.neighs.iter().map(|n| n.ip).collect();
    for n in obs_neighs {
        if !want_neigh_ips.contains(&n.ip) {
            out.ip
                .push(format!("neigh del {} dev {VXLAN_DEVICE}", n.ip));
        }
    }
    for n in &desired.neighs {
        if !obs_neighs.contains(n) {
            out.ip.push(neigh_add(n));
        }
    }
    for (dst, r) in &want_routes {
        if obs_routes.get(dst) != Some(r) {
            out.ip.push(route_line("replace", r));
        }
    }
    for f in obs_fdb {
        if !desired.fdb.contains(f) {
            out.bridge.push(format!(
                "fdb del {} dev {VXLAN_DEVICE} dst {} self",
                f.mac, f.dst
            ));
        }
    }
    for f in &desired.fdb {
        if !obs_fdb.contains(f) {
            out.bridge.push(fdb_add(f));
        }
    }
    out
}

/// `peapod cleanup-network`: the device, and every route of ours not on it.
pub fn cleanup(observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    let device = observed.vxlan_device().is_some();
    if device {
        out.push(format!("link del {VXLAN_DEVICE}"));
    }
    for r in &observed.routes {
        if !(device && r.dev == VXLAN_DEVICE) {
            out.push(route_line("del", r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Link, VxlanInfo};
    use crate::plan::VxlanSpec;
    use crate::Mac;

    const MAC_B: &str = "aa:bb:cc:dd:ee:0b";
    const MAC_C: &str = "aa:bb:cc:dd:ee:0c";
    const OWN: &str = "02:00:00:00:00:01";

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    fn spec() -> VxlanSpec {
        VxlanSpec {
            vni: 1,
            local: "10.9.0.2".parse().unwrap(),
            link: "eth0".into(),
            port: 8472,
            mtu: 1450,
            addr: "10.42.0.0".parse().unwrap(),
            mac: None,
        }
    }

    fn device(mtu: u32, addr: &str, local: &str) -> Link {
        Link {
            name: VXLAN_DEVICE.into(),
            mtu,
            up: true,
            loopback: false,
            mac: Some(mac(OWN)),
            addrs: vec![(addr.parse().unwrap(), 32)],
            vxlan: Some(VxlanInfo {
                vni: 1,
                local: Some(local.parse().unwrap()),
                link: Some("eth0".into()),
                port: 8472,
                learning: false,
            }),
        }
    }

    fn hostgw(dst: &str, via: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            via: via.parse().unwrap(),
            dev: "eth0".into(),
            onlink: false,
        }
    }

    fn vx_route(dst: &str) -> Route {
        let dst: crate::Cidr = dst.parse().unwrap();
        Route {
            dst,
            via: dst.addr,
            dev: VXLAN_DEVICE.into(),
            onlink: true,
        }
    }

    fn neigh(ip: &str, m: &str) -> Neigh {
        Neigh {
            ip: ip.parse().unwrap(),
            mac: mac(m),
        }
    }

    fn fdb(m: &str, dst: &str) -> Fdb {
        Fdb {
            mac: mac(m),
            dst: dst.parse().unwrap(),
        }
    }

    fn vxlan_peer_b() -> Desired {
        Desired {
            vxlan: Some(spec()),
            routes: [vx_route("10.42.1.0/24")].into(),
            neighs: [neigh("10.42.1.0", MAC_B)].into(),
            fdb: [fdb(MAC_B, "10.8.0.3")].into(),
            skipped: vec![],
        }
    }

    #[test]
    fn in_step_writes_nothing() {
        let observed = Observed {
            links: vec![device(1450, "10.42.0.0", "10.9.0.2")],
            routes: [vx_route("10.42.1.0/24"), hostgw("10.42.5.0/24", "10.9.0.5")].into(),
            neighs: [neigh("10.42.1.0", MAC_B)].into(),
            fdb: [fdb(MAC_B, "10.8.0.3")].into(),
        };
        let mut want = vxlan_peer_b();
        want.routes.insert(hostgw("10.42.5.0/24", "10.9.0.5"));
        assert!(script(&observed, &want).is_empty());
        assert!(script(&Observed::default(), &Desired::default()).is_empty());
    }

    #[test]
    fn scripts() {
        let empty = Observed::default();
        let with_device = Observed {
            links: vec![device(1450, "10.42.0.0", "10.9.0.2")],
            routes: [vx_route("10.42.1.0/24"), hostgw("10.42.7.0/24", "10.9.0.7")].into(),
            neighs: [neigh("10.42.1.0", MAC_B), neigh("10.42.3.0", MAC_C)].into(),
            fdb: [fdb(MAC_B, "10.8.0.3"), fdb(MAC_C, "10.8.0.4")].into(),
        };
        let mut own_mac = vxlan_peer_b();
        own_mac.vxlan.as_mut().unwrap().mac = Some(mac(OWN));
        let mut moved = vxlan_peer_b();
        moved.fdb = [fdb(MAC_B, "10.8.0.9")].into();
        let mut wrong_local = with_device.clone();
        wrong_local.links = vec![device(1500, "10.42.0.0", "10.9.9.9")];
        let mut drifted = with_device.clone();
        drifted.links = vec![device(1500, "10.42.8.0", "10.9.0.2")];
        drifted.links[0].up = false;
        let hostgw_only = Desired {
            routes: [hostgw("10.42.1.0/24", "10.9.0.3")].into(),
            ..Desired::default()
        };
        type Case<'a> = (
            &'a str,
            &'a Observed,
            &'a Desired,
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: [Case; 7] = [
            (
                "first vxlan peer: device, neighbour, route, fdb",
                &empty,
                &vxlan_peer_b(),
                &[
                    "link add peapod.1 mtu 1450 type vxlan id 1 local 10.9.0.2 dev eth0 dstport 8472 nolearning",
                    "addr add 10.42.0.0/32 dev peapod.1",
                    "link set peapod.1 up",
                    "neigh replace 10.42.1.0 lladdr aa:bb:cc:dd:ee:0b dev peapod.1 nud permanent",
                    "route replace 10.42.1.0/24 via 10.42.1.0 dev peapod.1 onlink proto 94",
                ],
                &["fdb replace aa:bb:cc:dd:ee:0b dev peapod.1 dst 10.8.0.3 self permanent"],
            ),
            (
                "device made again with the published MAC",
                &empty,
                &own_mac,
                &[
                    "link add peapod.1 address 02:00:00:00:00:01 mtu 1450 type vxlan id 1 local 10.9.0.2 dev eth0 dstport 8472 nolearning",
                    "addr add 10.42.0.0/32 dev peapod.1",
                    "link set peapod.1 up",
                    "neigh replace 10.42.1.0 lladdr aa:bb:cc:dd:ee:0b dev peapod.1 nud permanent",
                    "route replace 10.42.1.0/24 via 10.42.1.0 dev peapod.1 onlink proto 94",
                ],
                &["fdb replace aa:bb:cc:dd:ee:0b dev peapod.1 dst 10.8.0.3 self permanent"],
            ),
            (
                "peer c left, a stale host-gw route: theirs go",
                &with_device,
                &vxlan_peer_b(),
                &[
                    "route del 10.42.7.0/24 via 10.9.0.7 dev eth0 proto 94",
                    "neigh del 10.42.3.0 dev peapod.1",
                ],
                &["fdb del aa:bb:cc:dd:ee:0c dev peapod.1 dst 10.8.0.4 self"],
            ),
            (
                "peer b changed its IP: the fdb entry follows",
                &with_device,
                &moved,
                &[
                    "route del 10.42.7.0/24 via 10.9.0.7 dev eth0 proto 94",
                    "neigh del 10.42.3.0 dev peapod.1",
                ],
                &[
                    "fdb del aa:bb:cc:dd:ee:0b dev peapod.1 dst 10.8.0.3 self",
                    "fdb del aa:bb:cc:dd:ee:0c dev peapod.1 dst 10.8.0.4 self",
                    "fdb replace aa:bb:cc:dd:ee:0b dev peapod.1 dst 10.8.0.9 self permanent",
                ],
            ),
            (
                "node IP changed: device remade with its MAC, entries written again",
                &wrong_local,
                &vxlan_peer_b(),
                &[
                    "link del peapod.1",
                    "link add peapod.1 address 02:00:00:00:00:01 mtu 1450 type vxlan id 1 local 10.9.0.2 dev eth0 dstport 8472 nolearning",
                    "addr add 10.42.0.0/32 dev peapod.1",
                    "link set peapod.1 up",
                    "route del 10.42.7.0/24 via 10.9.0.7 dev eth0 proto 94",
                    "neigh replace 10.42.1.0 lladdr aa:bb:cc:dd:ee:0b dev peapod.1 nud permanent",
                    "route replace 10.42.1.0/24 via 10.42.1.0 dev peapod.1 onlink proto 94",
                ],
                &["fdb replace aa:bb:cc:dd:ee:0b dev peapod.1 dst 10.8.0.3 self permanent"],
            ),
            (
                "MTU, address and state drifted: set right in place",
                &drifted,
                &vxlan_peer_b(),
                &[
                    "link set peapod.1 mtu 1450",
                    "addr del 10.42.8.0/32 dev peapod.1",
                    "addr add 10.42.0.0/32 dev peapod.1",
                    "link set peapod.1 up",
                    "route del 10.42.7.0/24 via 10.9.0.7 dev eth0 proto 94",
                    "neigh del 10.42.3.0 dev peapod.1",
                ],
                &["fdb del aa:bb:cc:dd:ee:0c dev peapod.1 dst 10.8.0.4 self"],
            ),
            (
                "host-gw forced: the device goes with its entries, the peer moves to eth0",
                &with_device,
                &hostgw_only,
                &[
                    "link del peapod.1",
                    "route del 10.42.7.0/24 via 10.9.0.7 dev eth0 proto 94",
                    "route replace 10.42.1.0/24 via 10.9.0.3 dev eth0 proto 94",
                ],
                &[],
            ),
        ];
        for (name, observed, want, ip, bridge) in cases {
            let got = script(observed, want);
            assert_eq!(got.ip, ip, "{name}: ip");
            assert_eq!(got.bridge, bridge, "{name}: bridge");
        }
    }

    #[test]
    fn cleanup_removes_what_is_ours() {
        let observed = Observed {
            links: vec![device(1450, "10.42.0.0", "10.9.0.2")],
            routes: [vx_route("10.42.1.0/24"), hostgw("10.42.7.0/24", "10.9.0.7")].into(),
            neighs: [neigh("10.42.1.0", MAC_B)].into(),
            fdb: [fdb(MAC_B, "10.8.0.3")].into(),
        };
        assert_eq!(
            cleanup(&observed),
            [
                "link del peapod.1",
                "route del 10.42.7.0/24 via 10.9.0.7 dev eth0 proto 94"
            ]
        );
        assert!(cleanup(&Observed::default()).is_empty());
    }
}

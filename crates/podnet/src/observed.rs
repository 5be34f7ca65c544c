//! The kernel's state as `ip -j` and `bridge -j` print it, parsed (pure): the links with
//! their IPv4 addresses (and the vxlan device's parameters), our routes (protocol
//! [`ROUTE_PROTOCOL`](crate::ROUTE_PROTOCOL)), the permanent neighbours and the fdb entries on
//! the vxlan device. One `ip -j -d -batch -` prints one JSON array per command, in order.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::plan::{Fdb, Neigh, Route};
use crate::{Cidr, Mac, VXLAN_DEVICE};

/// A vxlan device's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    /// The underlying link (`dev` when it was made).
    pub link: Option<String>,
    pub port: u16,
    pub learning: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    pub loopback: bool,
    pub mac: Option<Mac>,
    /// IPv4 addresses with their prefix length.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    pub vxlan: Option<VxlanInfo>,
}

/// What is there now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: Vec<Link>,
    /// Routes of ours in the main table.
    pub routes: BTreeSet<Route>,
    /// Permanent neighbours on the vxlan device.
    pub neighs: BTreeSet<Neigh>,
    /// fdb entries on the vxlan device that name a remote.
    pub fdb: BTreeSet<Fdb>,
}

impl Observed {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The vxlan device, when there is one.
    pub fn vxlan_device(&self) -> Option<&Link> {
        self.link(VXLAN_DEVICE)
    }

    /// The link holding `ip`.
    pub fn link_of(&self, ip: Ipv4Addr) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| l.addrs.iter().any(|(a, _)| *a == ip))
    }

    /// Every IPv4 address of this host.
    pub fn local_addrs(&self) -> BTreeSet<Ipv4Addr> {
        self.links
            .iter()
            .flat_map(|l| l.addrs.iter().map(|(a, _)| *a))
            .collect()
    }
}

#[derive(Deserialize)]
struct JsonLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    link_type: String,
    address: Option<String>,
    linkinfo: Option<JsonLinkInfo>,
    #[serde(default)]
    addr_info: Vec<JsonAddr>,
}

#[derive(Deserialize)]
struct JsonLinkInfo {
    info_kind: Option<String>,
    info_data: Option<JsonVxlan>,
}

#[derive(Deserialize)]
struct JsonVxlan {
    id: Option<u32>,
    local: Option<String>,
    link: Option<String>,
    port: Option<u16>,
    learning: Option<bool>,
}

#[derive(Deserialize)]
struct JsonAddr {
    family: Option<String>,
    local: Option<String>,
    prefixlen: Option<u8>,
}

#[derive(Deserialize)]
struct JsonRoute {
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Deserialize)]
struct JsonNeigh {
    dst: String,
    dev: Option<String>,
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

#[derive(Deserialize)]
struct JsonFdb {
    mac: String,
    dst: Option<String>,
}

/// The commands [`parse_ip`] reads the output of, for `ip -j -d -batch -`.
pub const IP_READ: &[&str] = &[
    "addr show",
    // `proto` as a number: iproute2 names only the ones in rt_protos.
    "route show table main proto 94",
    "neigh show",
];

/// Parses the output of `ip -j -d -batch -` given [`IP_READ`].
pub fn parse_ip(out: &str) -> Result<Observed, String> {
    let mut arrays = serde_json::Deserializer::from_str(out).into_iter::<serde_json::Value>();
    let mut next = |what: &str| -> Result<serde_json::Value, String> {
        match arrays.next() {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(format!("{what}: {e}")),
            None => Err(format!("{what}: missing")),
        }
    };
    let links: Vec<JsonLink> =
        serde_json::from_value(next("links")?).map_err(|e| format!("links: {e}"))?;
    let routes: Vec<JsonRoute> =
        serde_json::from_value(next("routes")?).map_err(|e| format!("routes: {e}"))?;
    let neighs: Vec<JsonNeigh> =
        serde_json::from_value(next("neighbours")?).map_err(|e| format!("neighbours: {e}"))?;
    Ok(Observed {
        links: links.into_iter().map(link).collect(),
        routes: routes.into_iter().filter_map(route).collect(),
        neighs: neighs
            .into_iter()
            .filter(|n| n.dev.as_deref() == Some(VXLAN_DEVICE))
            .filter(|n| n.state.iter().any(|s| s == "PERMANENT"))
            .filter_map(|n| {
                Some(Neigh {
                    ip: n.dst.parse().ok()?,
                    mac: n.lladdr?.parse().ok()?,
                })
            })
            .collect(),
        fdb: BTreeSet::new(),
    })
}

/// Parses `bridge -j fdb show dev <vxlan device>`: the entries that name a remote.
pub fn parse_fdb(out: &str) -> Result<BTreeSet<Fdb>, String> {
    let entries: Vec<JsonFdb> = serde_json::from_str(out).map_err(|e| e.to_string())?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            Some(Fdb {
                mac: e.mac.parse().ok()?,
                dst: e.dst?.parse().ok()?,
            })
        })
        .collect())
}

fn link(l: JsonLink) -> Link {
    let vxlan = l
        .linkinfo
        .filter(|i| i.info_kind.as_deref() == Some("vxlan"))
        .and_then(|i| i.info_data)
        .map(|d| VxlanInfo {
            vni: d.id.unwrap_or(0),
            local: d.local.and_then(|a| a.parse().ok()),
            link: d.link,
            port: d.port.unwrap_or(0),
            learning: d.learning.unwrap_or(true),
        });
    Link {
        up: l.flags.iter().any(|f| f == "UP"),
        loopback: l.link_type == "loopback" || l.flags.iter().any(|f| f == "LOOPBACK"),
        mac: l.address.and_then(|m| m.parse().ok()),
        addrs: l
            .addr_info
            .into_iter()
            .filter(|a| a.family.as_deref() == Some("inet"))
            .filter_map(|a| Some((a.local?.parse().ok()?, a.prefixlen?)))
            .collect(),
        name: l.ifname,
        mtu: l.mtu,
        vxlan,
    }
}

fn route(r: JsonRoute) -> Option<Route> {
    // `default` or a host route without a prefix are not ours to read; ours are CIDRs.
    let dst: Cidr = r.dst.parse().ok()?;
    Some(Route {
        dst,
        via: r.gateway?.parse().ok()?,
        dev: r.dev?,
        onlink: r.flags.iter().any(|f| f == "onlink"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from `ip -j -d -batch -` (iproute2 6.1) on a test namespace, shortened.
    const IP_OUT: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback","address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},{"ifindex":3,"link":"veth1","ifname":"veth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether","address":"62:45:0e:24:5f:e9","linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.250.7.2","prefixlen":24,"scope":"global","label":"veth0"},{"family":"inet6","local":"fe80::6045:eff:fe24:5fe9","prefixlen":64,"scope":"link"}]},{"ifindex":4,"ifname":"peapod.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"link_type":"ether","address":"36:26:64:6c:91:fd","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"10.250.7.2","link":"veth0","port_range":{"low":0,"high":0},"port":8472,"learning":false,"ttl":0}},"addr_info":[{"family":"inet","local":"10.42.1.0","prefixlen":32,"scope":"global","label":"peapod.1"}]}]
[{"type":"unicast","dst":"10.42.2.0/24","gateway":"10.42.2.0","dev":"peapod.1","scope":"global","flags":["onlink"]},{"type":"unicast","dst":"10.42.3.0/24","gateway":"10.250.7.3","dev":"veth0","scope":"global","flags":[]}]
[{"dst":"10.42.2.0","dev":"peapod.1","lladdr":"aa:bb:cc:dd:ee:01","state":["PERMANENT"]},{"dst":"10.42.9.0","dev":"peapod.1","state":["FAILED"]},{"dst":"10.250.7.3","dev":"veth0","lladdr":"aa:bb:cc:dd:ee:09","state":["PERMANENT"]}]
"#;

    #[test]
    fn parses_ip_batch_output() {
        let o = parse_ip(IP_OUT).unwrap();
        assert_eq!(o.links.len(), 3);
        let lo = o.link("lo").unwrap();
        assert!(lo.loopback && lo.up);
        let veth = o.link_of("10.250.7.2".parse().unwrap()).unwrap();
        assert_eq!(
            (veth.name.as_str(), veth.mtu, veth.addrs.len()),
            ("veth0", 1500, 1)
        );
        assert_eq!(veth.vxlan, None);
        let vx = o.vxlan_device().unwrap();
        assert_eq!(
            vx.vxlan,
            Some(VxlanInfo {
                vni: 1,
                local: Some("10.250.7.2".parse().unwrap()),
                link: Some("veth0".into()),
                port: 8472,
                learning: false,
            })
        );
        assert_eq!(vx.mac.unwrap().to_string(), "36:26:64:6c:91:fd");
        assert_eq!(vx.addrs, vec![("10.42.1.0".parse().unwrap(), 32)]);
        let routes: Vec<String> = o
            .routes
            .iter()
            .map(|r| format!("{} {} {} {}", r.dst, r.via, r.dev, r.onlink))
            .collect();
        assert_eq!(
            routes,
            [
                "10.42.2.0/24 10.42.2.0 peapod.1 true",
                "10.42.3.0/24 10.250.7.3 veth0 false"
            ]
        );
        // Only the permanent neighbour on the vxlan device.
        assert_eq!(o.neighs.len(), 1);
        assert_eq!(o.local_addrs().len(), 3);
    }

    #[test]
    fn parses_fdb() {
        let out = r#"[{"mac":"aa:bb:cc:dd:ee:01","dst":"10.250.7.3","flags":["self"],"state":"permanent"},{"mac":"36:26:64:6c:91:fd","flags":["self"],"state":"permanent"}]"#;
        let fdb = parse_fdb(out).unwrap();
        assert_eq!(fdb.len(), 1);
        assert_eq!(fdb.iter().next().unwrap().dst.to_string(), "10.250.7.3");
    }

    #[test]
    fn broken_output_is_an_error() {
        for out in ["", "[]", "[]\n[]", "[]\n{\n[]", "not json"] {
            assert!(parse_ip(out).is_err(), "{out:?}");
        }
        assert!(parse_ip("[]\n[]\n[]\n").is_ok());
    }
}

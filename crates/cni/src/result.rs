//! Owns reading a plugin chain's result into a [`NetworkStatus`]: the CNI 0.3.0–1.0.0 result
//! shape (`interfaces`, `ips` with an `interface` index) and the legacy 0.1/0.2 shape
//! (`ip4`, `ip6`).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use crate::config::parse_cidr;

/// What the pod got: the addresses on its interface, the gateway and the interface's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// The pod's IPs, in the order the plugins reported them (the first is the pod IP).
    pub ips: Vec<IpAddr>,
    /// The gateway of the first IP, when the plugin reported one.
    pub gateway: Option<IpAddr>,
    /// The MAC of the pod's interface (inside the netns), when reported.
    pub interface_mac: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CurrentResult {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Debug, Deserialize)]
struct Interface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IpConfig {
    address: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct LegacyResult {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
}

#[derive(Debug, Deserialize)]
struct LegacyIp {
    ip: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

/// Reads the chain's final result. `ifname` picks the pod's interface among those reported
/// (the bridge plugin also reports the bridge and the host-side veth).
pub(crate) fn network_status(result: &Value, ifname: &str) -> Result<NetworkStatus, String> {
    let version = result
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if matches!(version, "0.1.0" | "0.2.0") {
        return legacy_status(result);
    }
    let parsed: CurrentResult =
        serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
    let pod_interface = parsed
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.as_deref().is_some_and(|s| !s.is_empty()));
    let mut ips = Vec::new();
    let mut gateway = None;
    for ip in &parsed.ips {
        // An IP attached to another interface (e.g. the bridge) is not the pod's.
        if let (Some(index), Some(pod_index)) = (ip.interface, pod_interface) {
            if index != pod_index {
                continue;
            }
        }
        let (address, _) = parse_cidr(&ip.address)?;
        if ips.is_empty() {
            gateway = ip.gateway;
        }
        ips.push(address);
    }
    let interface_mac = pod_interface
        .and_then(|index| parsed.interfaces[index].mac.clone())
        .filter(|mac| !mac.is_empty());
    Ok(NetworkStatus {
        ips,
        gateway,
        interface_mac,
    })
}

fn legacy_status(result: &Value) -> Result<NetworkStatus, String> {
    let parsed: LegacyResult = serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
    let mut ips = Vec::new();
    let mut gateway = None;
    for ip in [parsed.ip4, parsed.ip6].into_iter().flatten() {
        let (address, _) = parse_cidr(&ip.ip)?;
        if ips.is_empty() {
            gateway = ip.gateway;
        }
        ips.push(address);
    }
    Ok(NetworkStatus {
        ips,
        gateway,
        interface_mac: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bridge_result_yields_the_pod_interface_only() {
        // What bridge + host-local 1.1.1 print for cniVersion 1.0.0.
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"}
            ],
            "ips": [{"interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let status = network_status(&result, "eth0").unwrap();
        assert_eq!(status.ips, vec!["10.88.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(status.gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(status.interface_mac.as_deref(), Some("cc:cc:cc:cc:cc:cc"));
    }

    #[test]
    fn dual_stack_keeps_order_and_first_gateway() {
        let result = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/ns"}],
            "ips": [
                {"version": "4", "interface": 0, "address": "10.1.0.2/24", "gateway": "10.1.0.1"},
                {"version": "6", "interface": 0, "address": "fd00::2/64", "gateway": "fd00::1"}
            ]
        });
        let status = network_status(&result, "eth0").unwrap();
        assert_eq!(status.ips.len(), 2);
        assert!(status.ips[1].is_ipv6());
        assert_eq!(status.gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(status.interface_mac, None);
    }

    #[test]
    fn ips_without_interface_index_count() {
        let result = json!({"cniVersion": "1.0.0", "ips": [{"address": "192.168.5.9/24"}]});
        let status = network_status(&result, "eth0").unwrap();
        assert_eq!(status.ips, vec!["192.168.5.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(status.gateway, None);
    }

    #[test]
    fn legacy_result() {
        let result =
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.3/8", "gateway": "10.0.0.1"}});
        let status = network_status(&result, "eth0").unwrap();
        assert_eq!(status.ips, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(status.gateway, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn malformed_address_is_an_error() {
        let result = json!({"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]});
        assert!(network_status(&result, "eth0").is_err());
    }
}

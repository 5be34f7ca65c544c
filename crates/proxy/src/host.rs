//! The host settings kube-proxy needs: IPv4 forwarding, and bridged IPv4 traffic through
//! netfilter (`bridge-nf-call-iptables`), without which a reply from a pod to another pod
//! on the same bridge skips conntrack and the Service's DNAT is never undone. (Upstream's
//! nftables mode does not set `route_localnet`: it serves no localhost NodePorts.)

use tracing::warn;

const SETTINGS: [&str; 2] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
];

/// Sets each to 1 (when it is not already), warning about the ones it cannot set.
pub fn enable() {
    for path in SETTINGS {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        if let Err(e) = std::fs::write(path, "1") {
            warn!(path, error = %e, "cannot enable a setting the service proxy needs");
        }
    }
}

//! The host setting the pod network needs: IPv4 forwarding in the node's network namespace
//! (packets for other nodes' pods leave through it, packets for ours arrive through it).

use tracing::warn;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Sets `ip_forward` to 1 unless it is already, warning when it cannot.
pub fn enable_forwarding() {
    if std::fs::read_to_string(IP_FORWARD).is_ok_and(|v| v.trim() == "1") {
        return;
    }
    if let Err(e) = std::fs::write(IP_FORWARD, "1") {
        warn!(path = IP_FORWARD, error = %e, "cannot enable IPv4 forwarding; pods on other nodes will not be reachable");
    }
}

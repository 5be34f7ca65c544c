//! Outbound NAT for the node's pods: one iptables rule masquerading traffic from the pod
//! CIDR to anywhere outside the cluster CIDR, as kubenet and flannel do. The bridge plugin's
//! own `ipMasq` would add a chain and rules per pod, and every iptables call takes the xtables
//! lock, so a burst of pod starts would queue on it; one node-wide rule keeps pod-to-pod
//! traffic (inside the cluster CIDR) un-NATed and costs nothing per pod.

use tokio::process::Command;
use tracing::info;

use crate::AgentError;

fn rule(pod_cidr: &str, cluster_cidr: &str) -> Vec<String> {
    [
        "POSTROUTING",
        "-s",
        pod_cidr,
        "!",
        "-d",
        cluster_cidr,
        "-m",
        "comment",
        "--comment",
        "peapod: masquerade pod traffic leaving the cluster",
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn iptables(op: &str, rule: &[String]) -> Result<bool, AgentError> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", op])
        .args(rule)
        .output()
        .await
        .map_err(|e| AgentError::io("iptables", e))?;
    Ok(out.status.success())
}

/// Adds the rule unless it is there already.
pub async fn ensure(pod_cidr: &str, cluster_cidr: &str) -> Result<(), AgentError> {
    let rule = rule(pod_cidr, cluster_cidr);
    if iptables("-C", &rule).await? {
        return Ok(());
    }
    if !iptables("-A", &rule).await? {
        return Err(AgentError::Sandbox(format!(
            "could not add the masquerade rule for {pod_cidr}"
        )));
    }
    info!(
        pod_cidr,
        cluster_cidr, "masquerading pod traffic leaving the cluster"
    );
    Ok(())
}

fn parse_v4(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, len))
}

/// True when `inner` lies within `outer` (IPv4 CIDRs).
pub fn contains(outer: &str, inner: &str) -> bool {
    match (parse_v4(outer), parse_v4(inner)) {
        (Some((o, olen)), Some((i, ilen))) => {
            let mask = if olen == 0 {
                0
            } else {
                u32::MAX << (32 - olen)
            };
            ilen >= olen && (i & mask) == o
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn cidr_containment() {
        assert!(contains("10.42.0.0/16", "10.42.3.0/24"));
        assert!(contains("10.42.0.0/16", "10.42.0.0/16"));
        assert!(!contains("10.42.0.0/16", "10.43.0.0/24"));
        assert!(!contains("10.42.0.0/24", "10.42.0.0/16"));
        assert!(!contains("bad", "10.0.0.0/8"));
    }
}

//! Stale UDP conntrack entries (upstream's `conntrack.CleanStaleEntries`): UDP has no
//! connection to end, so a flow DNATed to an endpoint that is gone keeps being sent there
//! until its entry times out. After a sync the proxy deletes, with the `conntrack` tool:
//! the flows to a service IP or NodePort that were DNATed to an endpoint that went away, and
//! the flows to a UDP service IP that had no endpoint before (they were never DNATed).
//! [`stale_entries`] decides (pure); [`delete`] runs the tool.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tokio::process::Command;
use tracing::debug;

use crate::model::{Desired, Protocol};

/// The arguments of one `conntrack -D` invocation.
pub type Deletion = Vec<String>;

fn endpoints(sp: &crate::model::ServicePort) -> BTreeSet<Ipv4Addr> {
    sp.categorize().reachable.iter().map(|e| e.ip).collect()
}

/// What to delete after going from `prev` to `next`.
pub fn stale_entries(prev: &Desired, next: &Desired) -> Vec<Deletion> {
    let mut out = BTreeSet::new();
    let args = |v: &[&str]| -> Deletion { v.iter().map(|s| s.to_string()).collect() };
    for (name, old) in prev.iter().filter(|(n, _)| n.protocol == Protocol::Udp) {
        let kept = next.get(name).map(endpoints).unwrap_or_default();
        for gone in endpoints(old).difference(&kept) {
            let ep = gone.to_string();
            out.insert(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &old.cluster_ip.to_string(),
                "--dst-nat",
                &ep,
            ]));
            if let Some(np) = old.node_port {
                out.insert(args(&[
                    "-D",
                    "-p",
                    "udp",
                    "--orig-port-dst",
                    &np.to_string(),
                    "--dst-nat",
                    &ep,
                ]));
            }
        }
    }
    for (name, new) in next.iter().filter(|(n, _)| n.protocol == Protocol::Udp) {
        let had = prev
            .get(name)
            .map(|p| !endpoints(p).is_empty())
            .unwrap_or(false);
        if !had && !endpoints(new).is_empty() {
            out.insert(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &new.cluster_ip.to_string(),
                "--orig-port-dst",
                &new.port.to_string(),
            ]));
        }
    }
    out.into_iter().collect()
}

/// Runs each deletion; "nothing matched" (exit 1) is the common case and not an error.
pub async fn delete(deletions: &[Deletion]) {
    for args in deletions {
        match Command::new("conntrack").args(args).output().await {
            Ok(out) => debug!(?args, status = ?out.status.code(), "conntrack"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot run conntrack; stale UDP flows are left to time out");
                return;
            }
        }
    }
}

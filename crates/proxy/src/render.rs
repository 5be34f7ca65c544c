//! One nftables transaction (an `nft -f` script) from a [`Layout`], and what the table
//! holds once it is applied (pure).
//!
//! ```text
//!  Fresh   add table; delete table; add table; fixed chains, sets and maps; every chain;
//!          every element                       (start, and after a failed sync)
//!  Full    fixed chains flushed and refilled; every chain flushed and refilled; maps
//!          flushed and refilled; stale chains and sets deleted       (every hour)
//!  Partial only the chains whose rules changed (new ones added); maps flushed and
//!          refilled; stale chains flushed then deleted; stale affinity sets deleted
//! ```
//!
//! A partial sync leaves every unchanged chain alone, so its cost follows what changed,
//! not the number of Services (upstream's partial sync). The layout only refers to chains
//! it defines, so every stale chain is unreferenced once the maps are refilled and the
//! changed chains rewritten: deleting it in the same transaction is safe.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::layout::*;
use crate::Cidr;

/// What the whole table is built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// The table's name (`table ip <name>`).
    pub table: String,
    pub cluster_cidr: Cidr,
    /// The addresses NodePorts answer on (loopback ones are left out: nftables mode does
    /// not serve localhost NodePorts, as upstream).
    pub node_ips: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Fresh,
    Full,
    Partial,
}

/// The per-service part of the table as the kernel holds it after our last transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub chains: BTreeMap<String, Vec<String>>,
    pub affinity_sets: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rules the transaction adds.
    pub rules: usize,
    /// Map and set elements it adds.
    pub elements: usize,
    pub chains_written: usize,
    pub chains_deleted: usize,
}

#[derive(Debug, Clone)]
pub struct Transaction {
    pub kind: SyncKind,
    pub script: String,
    /// The table's per-service part once the script is applied.
    pub written: Written,
    pub stats: Stats,
}

/// The fixed chains: name, base chain spec (type, hook, priority), rules.
fn fixed_chains(cfg: &RenderConfig) -> Vec<(&'static str, Option<&'static str>, Vec<String>)> {
    let new = "ct state new";
    let nodeports = if cfg.node_ips.is_empty() {
        None
    } else {
        Some(format!(
            "ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
        ))
    };
    vec![
        // Filtering sees the destination before DNAT (priority dstnat - 10).
        (
            "filter-input",
            Some("type filter hook input priority -110"),
            vec![
                format!("{new} jump {NODEPORT_ENDPOINTS_CHECK}"),
                format!("{new} jump {SERVICE_ENDPOINTS_CHECK}"),
            ],
        ),
        (
            "filter-forward",
            Some("type filter hook forward priority -110"),
            vec![
                format!("{new} jump {SERVICE_ENDPOINTS_CHECK}"),
                format!("{new} jump {CLUSTER_IPS_CHECK}"),
            ],
        ),
        (
            "filter-output",
            Some("type filter hook output priority -110"),
            vec![format!("{new} jump {SERVICE_ENDPOINTS_CHECK}")],
        ),
        // After DNAT (dstnat + 10): what is still addressed to a ClusterIP matched no port.
        (
            "filter-output-post-dnat",
            Some("type filter hook output priority -90"),
            vec![format!("{new} jump {CLUSTER_IPS_CHECK}")],
        ),
        (
            "nat-prerouting",
            Some("type nat hook prerouting priority -100"),
            vec![format!("jump {SERVICES}")],
        ),
        (
            "nat-output",
            Some("type nat hook output priority -100"),
            vec![format!("jump {SERVICES}")],
        ),
        (
            "nat-postrouting",
            Some("type nat hook postrouting priority 100"),
            vec![format!("jump {MASQUERADING}")],
        ),
        (
            SERVICES,
            None,
            std::iter::once(format!(
                "ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"
            ))
            .chain(nodeports.clone())
            .collect(),
        ),
        (MARK_MASQ, None, vec![format!("mark set mark or {MASQ_MARK}")]),
        (
            MASQUERADING,
            None,
            vec![
                format!("mark and {MASQ_MARK} == 0 return"),
                format!("mark set mark xor {MASQ_MARK}"),
                "masquerade fully-random".to_string(),
            ],
        ),
        (
            SERVICE_ENDPOINTS_CHECK,
            None,
            vec![format!(
                "ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"
            )],
        ),
        (
            NODEPORT_ENDPOINTS_CHECK,
            None,
            nodeports
                .iter()
                .map(|_| {
                    format!(
                        "ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
                    )
                })
                .collect(),
        ),
        (
            CLUSTER_IPS_CHECK,
            None,
            vec![format!(
                "ip daddr @{CLUSTER_IPS} goto {REJECT_CHAIN} comment \"reject traffic to invalid ports of ClusterIPs\""
            )],
        ),
        // TCP gets a reset rather than upstream's ICMP port unreachable: the kernel rate
        // limits ICMP errors per peer (a burst of 6, then 1 a second), so a client retrying
        // quickly would see its SYN dropped and wait a second for "connection refused".
        (
            REJECT_CHAIN,
            None,
            vec![
                "meta l4proto tcp reject with tcp reset".to_string(),
                "reject".to_string(),
            ],
        ),
    ]
}

const VERDICT_MAPS: [(&str, &str); 4] = [
    (
        SERVICE_IPS,
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (SERVICE_NODEPORTS, "inet_proto . inet_service : verdict"),
    (
        NO_ENDPOINT_SERVICES,
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service : verdict"),
];

/// Rules in the fixed chains (for totals).
pub fn fixed_rule_count(cfg: &RenderConfig) -> usize {
    fixed_chains(cfg).iter().map(|c| c.2.len()).sum()
}

/// The transaction that takes the table from `prev` (ignored for [`SyncKind::Fresh`]) to
/// `layout`. A changed affinity timeout turns the sync into a fresh one (a set's timeout
/// cannot be changed in place).
pub fn render(cfg: &RenderConfig, layout: &Layout, kind: SyncKind, prev: &Written) -> Transaction {
    let timeout_changed = layout
        .affinity_sets
        .iter()
        .any(|(name, t)| prev.affinity_sets.get(name).is_some_and(|p| p != t));
    let kind = if timeout_changed {
        SyncKind::Fresh
    } else {
        kind
    };
    let empty = Written::default();
    let prev = if kind == SyncKind::Fresh {
        &empty
    } else {
        prev
    };
    let t = format!("ip {}", cfg.table);
    let mut s = String::new();
    let mut stats = Stats::default();

    let _ = writeln!(s, "add table {t}");
    if kind == SyncKind::Fresh {
        let _ = writeln!(s, "delete table {t}");
        let _ = writeln!(
            s,
            "add table {t} {{ comment \"rules for the peapod service proxy\" ; }}"
        );
    }
    if kind != SyncKind::Partial {
        // Sets and maps first: rules name them.
        let _ = writeln!(
            s,
            "add set {t} {CLUSTER_IPS} {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}"
        );
        let _ = writeln!(s, "add set {t} {NODEPORT_IPS} {{ type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }}");
        let _ = writeln!(s, "flush set {t} {NODEPORT_IPS}");
        if !cfg.node_ips.is_empty() {
            let ips: Vec<String> = cfg.node_ips.iter().map(|ip| ip.to_string()).collect();
            let _ = writeln!(s, "add element {t} {NODEPORT_IPS} {{ {} }}", ips.join(", "));
            stats.elements += ips.len();
        }
        for (name, ty) in VERDICT_MAPS {
            let _ = writeln!(s, "add map {t} {name} {{ type {ty} ; }}");
        }
        let fixed = fixed_chains(cfg);
        for (name, base, _) in &fixed {
            match base {
                Some(spec) => {
                    let _ = writeln!(s, "add chain {t} {name} {{ {spec} ; }}");
                }
                None => {
                    let _ = writeln!(s, "add chain {t} {name}");
                }
            }
        }
        for (name, _, rules) in &fixed {
            if kind == SyncKind::Full {
                let _ = writeln!(s, "flush chain {t} {name}");
            }
            for rule in rules {
                let _ = writeln!(s, "add rule {t} {name} {rule}");
                stats.rules += 1;
            }
        }
    }
    for (name, _) in VERDICT_MAPS {
        let _ = writeln!(s, "flush map {t} {name}");
    }
    let _ = writeln!(s, "flush set {t} {CLUSTER_IPS}");

    for (name, timeout) in &layout.affinity_sets {
        if !prev.affinity_sets.contains_key(name) {
            let _ = writeln!(
                s,
                "add set {t} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
            );
        }
    }

    // Chains to write: new or changed (all of them unless partial). Every one is created
    // first, so rules may jump to chains written later in the script.
    let changed: Vec<(&String, &Vec<String>)> = layout
        .chains
        .iter()
        .filter(|(name, rules)| kind != SyncKind::Partial || prev.chains.get(*name) != Some(rules))
        .collect();
    for (name, _) in &changed {
        if !prev.chains.contains_key(*name) {
            let _ = writeln!(s, "add chain {t} {name}");
        }
    }
    for (name, rules) in &changed {
        if prev.chains.contains_key(*name) {
            let _ = writeln!(s, "flush chain {t} {name}");
        }
        for rule in *rules {
            let _ = writeln!(s, "add rule {t} {name} {rule}");
            stats.rules += 1;
        }
    }
    stats.chains_written = changed.len();

    for (map, elements) in [
        (SERVICE_IPS, &layout.service_ips),
        (SERVICE_NODEPORTS, &layout.service_nodeports),
        (NO_ENDPOINT_SERVICES, &layout.no_endpoint_services),
        (NO_ENDPOINT_NODEPORTS, &layout.no_endpoint_nodeports),
    ] {
        if elements.is_empty() {
            continue;
        }
        let _ = write!(s, "add element {t} {map} {{ ");
        for (i, (k, v)) in elements.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{k} : {v}");
        }
        s.push_str(" }\n");
        stats.elements += elements.len();
    }
    if !layout.cluster_ips.is_empty() {
        let ips: Vec<String> = layout.cluster_ips.iter().map(|ip| ip.to_string()).collect();
        let _ = writeln!(s, "add element {t} {CLUSTER_IPS} {{ {} }}", ips.join(", "));
        stats.elements += ips.len();
    }

    // Stale chains: emptied first (one may jump to another), then deleted.
    let stale: Vec<&String> = prev
        .chains
        .keys()
        .filter(|name| !layout.chains.contains_key(*name))
        .collect();
    for name in &stale {
        let _ = writeln!(s, "flush chain {t} {name}");
    }
    for name in &stale {
        let _ = writeln!(s, "delete chain {t} {name}");
    }
    stats.chains_deleted = stale.len();
    for name in prev.affinity_sets.keys() {
        if !layout.affinity_sets.contains_key(name) {
            let _ = writeln!(s, "delete set {t} {name}");
        }
    }

    Transaction {
        kind,
        script: s,
        written: Written {
            chains: layout.chains.clone(),
            affinity_sets: layout.affinity_sets.clone(),
        },
        stats,
    }
}

/// The script that removes the table (`peapod cleanup-network`): add first, so a missing
/// table is not an error.
pub fn cleanup_script(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

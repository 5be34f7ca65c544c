//! Zones and disruption (upstream's `handleDisruption`, `ComputeZoneState`,
//! `ReducedQPSFunc`/`HealthyQPSFunc`): nodes are grouped by their
//! `topology.kubernetes.io/region` and `zone` labels; each zone's share of not-Ready nodes
//! sets how fast its nodes are tainted `NoExecute`.
//!
//! ```text
//!  zone state     when                                       tainting rate
//!  Normal         otherwise                                  --node-eviction-rate
//!  Partial        > 2 not Ready and ≥ --unhealthy-zone-threshold of the zone
//!                                                           --secondary-node-eviction-rate if
//!                                                           the zone has more than
//!                                                           --large-cluster-size-threshold
//!                                                           nodes, else 0 (stopped)
//!  Full           no node Ready                              --node-eviction-rate
//!  every zone Full ─▶ "master disruption": the NoExecute taints of every node are removed
//!                     and tainting stops (the control plane is more likely cut off than
//!                     every node dead); leaving it restarts every node's probe clock
//! ```
//!
//! Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeCondition};

/// Nodes with this label do not count in their zone's health (upstream's
/// `labelNodeDisruptionExclusion`).
pub const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    FullDisruption,
    PartialDisruption,
}

/// The rate settings (kube-controller-manager's flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub eviction: f64,
    pub secondary: f64,
    pub large_cluster_threshold: usize,
    pub unhealthy_zone_threshold: f64,
}

/// component-helpers' `GetZoneKey`: region and zone (the GA labels, else the beta ones)
/// joined by `:\0:`; empty when the node has neither.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |ga: &str, beta: &str| {
        labels
            .and_then(|l| l.get(ga).or_else(|| l.get(beta)))
            .cloned()
            .unwrap_or_default()
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

pub fn excluded_from_disruption(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION))
}

/// Upstream's `ComputeZoneState`: the not-Ready count and the state.
pub fn compute_zone_state(
    ready: &[Option<NodeCondition>],
    unhealthy_threshold: f64,
) -> (usize, ZoneState) {
    let ready_nodes = ready
        .iter()
        .filter(|c| c.as_ref().is_some_and(|c| c.status == "True"))
        .count();
    let not_ready = ready.len() - ready_nodes;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (not_ready + ready_nodes) as f64 >= unhealthy_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// Upstream's `setLimiterInZone`.
pub fn zone_qps(state: ZoneState, zone_size: usize, rates: &Rates) -> Option<f64> {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => Some(rates.eviction),
        ZoneState::PartialDisruption => Some(if zone_size > rates.large_cluster_threshold {
            rates.secondary
        } else {
            0.0
        }),
        ZoneState::Initial => None,
    }
}

/// What `handleDisruption` decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DisruptionPlan {
    /// Every zone's state from now on.
    pub states: BTreeMap<String, ZoneState>,
    /// New tainting rates per zone.
    pub limiters: Vec<(String, f64)>,
    /// Entering master disruption: remove every node's NoExecute taints.
    pub mark_all_reachable: bool,
    /// Leaving master disruption: every node's probe and transition clocks restart now.
    pub reset_probes: bool,
}

/// Upstream's `handleDisruption`, from the zones' states before this pass and the Ready
/// conditions of the nodes that count, per zone.
pub fn handle_disruption(
    old: &BTreeMap<String, ZoneState>,
    zones: &BTreeMap<String, Vec<Option<NodeCondition>>>,
    rates: &Rates,
) -> DisruptionPlan {
    let mut states = old.clone();
    let mut new_states = BTreeMap::new();
    let mut all_fully_disrupted = true;
    for (zone, ready) in zones {
        let (_, state) = compute_zone_state(ready, rates.unhealthy_zone_threshold);
        if state != ZoneState::FullDisruption {
            all_fully_disrupted = false;
        }
        new_states.insert(zone.clone(), state);
        states.entry(zone.clone()).or_insert(ZoneState::Initial);
    }
    // Zones without nodes are forgotten; were all the others fully disrupted?
    states.retain(|zone, _| zones.contains_key(zone));
    let all_were_fully_disrupted = states.values().all(|s| *s == ZoneState::FullDisruption);
    let mut plan = DisruptionPlan::default();
    if all_fully_disrupted && all_were_fully_disrupted {
        plan.states = states;
        return plan;
    }
    if all_fully_disrupted {
        plan.mark_all_reachable = true;
        for (zone, state) in states.iter_mut() {
            plan.limiters.push((zone.clone(), 0.0));
            *state = ZoneState::FullDisruption;
        }
        plan.states = states;
        return plan;
    }
    if all_were_fully_disrupted {
        plan.reset_probes = true;
        for (zone, state) in states.iter_mut() {
            let new = new_states[zone];
            let size = zones[zone].len();
            if let Some(qps) = zone_qps(new, size, rates) {
                plan.limiters.push((zone.clone(), qps));
            }
            *state = new;
        }
        plan.states = states;
        return plan;
    }
    for (zone, state) in states.iter_mut() {
        let new = new_states[zone];
        if *state == new {
            continue;
        }
        if let Some(qps) = zone_qps(new, zones[zone].len(), rates) {
            plan.limiters.push((zone.clone(), qps));
        }
        *state = new;
    }
    plan.states = states;
    plan
}

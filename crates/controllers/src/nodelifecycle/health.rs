//! Upstream's `tryUpdateNodeHealth`: what the controller knows of each node's health, and
//! whether a node's conditions must be set to `Unknown` because its kubelet stopped
//! reporting. Pure: the controller's own clock is passed in, and the agent's timestamps are
//! only compared for change, never against that clock.
//!
//! ```text
//!  node first seen ──▶ probe = now (no Ready condition yet: probe = creation time,
//!                      grace = --node-startup-grace-period)
//!  Ready heartbeat changed, or Lease renewTime moved on ──▶ probe = now
//!  Ready lastTransitionTime changed ──▶ readyTransition = now
//!  now > probe + grace ──▶ Ready, MemoryPressure, DiskPressure, PIDPressure := Unknown
//!        (NodeStatusUnknown "Kubelet stopped posting node status.", lastTransitionTime now,
//!         a condition already Unknown left as it is; a missing one added as
//!         NodeStatusNeverUpdated "Kubelet never posted node status.")
//!        ──▶ status written when Ready changed; readyTransition = now
//! ```

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const READY: &str = "Ready";
/// The conditions the controller sets to Unknown; `NetworkUnavailable` is not the kubelet's
/// and is left alone, as upstream.
pub const UNKNOWN_CONDITIONS: [&str; 4] = [READY, "MemoryPressure", "DiskPressure", "PIDPressure"];
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// Upstream's `nodeHealthData`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    /// The status last seen (or written).
    pub status: NodeStatus,
    /// When the controller last saw the node alive (its clock).
    pub probe_timestamp: Timestamp,
    /// When the controller saw Ready change last (its clock).
    pub ready_transition_timestamp: Timestamp,
    /// The Lease's renewTime last seen.
    pub lease_renew_time: Option<Timestamp>,
}

/// The outcome of one look at a node.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthUpdate {
    /// What to remember of the node (before a write of `new_status`; see [`written`]).
    pub health: NodeHealth,
    pub grace_period: Duration,
    /// The Ready condition as the node object had it.
    pub observed_ready: NodeCondition,
    /// The Ready condition after this look (None: the node never had one and is in grace).
    pub current_ready: Option<NodeCondition>,
    /// The status to write (`nodes/{name}/status`) when Ready changed.
    pub new_status: Option<NodeStatus>,
}

pub fn condition<'a>(status: &'a NodeStatus, kind: &str) -> Option<&'a NodeCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

fn condition_mut<'a>(status: &'a mut NodeStatus, kind: &str) -> Option<&'a mut NodeCondition> {
    status
        .conditions
        .as_mut()?
        .iter_mut()
        .find(|c| c.type_ == kind)
}

/// One look at `node`, whose Lease was last renewed at `lease_renew_time`, knowing `saved`
/// from the previous looks.
pub fn try_update_node_health(
    node: &Node,
    lease_renew_time: Option<Timestamp>,
    saved: Option<&NodeHealth>,
    now: Timestamp,
    grace: Duration,
    startup_grace: Duration,
) -> HealthUpdate {
    let status = node.status.clone().unwrap_or_default();
    let created = node
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let current = condition(&status, READY).cloned();
    let mut health = saved.cloned();
    let (observed_ready, grace_period) = match &current {
        None => {
            // Never posted: a stand-in Unknown from the node's creation, with the startup grace.
            let stand_in = NodeCondition {
                type_: READY.into(),
                status: "Unknown".into(),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(created)),
                ..NodeCondition::default()
            };
            match &mut health {
                Some(h) => h.status = status.clone(),
                None => {
                    health = Some(NodeHealth {
                        status: status.clone(),
                        probe_timestamp: created,
                        ready_transition_timestamp: created,
                        lease_renew_time: None,
                    })
                }
            }
            (stand_in, startup_grace)
        }
        Some(c) => (c.clone(), grace),
    };
    let saved_condition = health
        .as_ref()
        .and_then(|h| condition(&h.status, READY).cloned());
    let saved_lease = health.as_ref().and_then(|h| h.lease_renew_time);
    let fresh = |status: &NodeStatus, transition: Timestamp| NodeHealth {
        status: status.clone(),
        probe_timestamp: now,
        ready_transition_timestamp: transition,
        lease_renew_time: None,
    };
    let mut health = match (health, &saved_condition, &current) {
        // First look at a node that has a Ready condition.
        (None, _, _) => fresh(&status, now),
        // Restarted controller, or a condition that appeared or vanished.
        (Some(_), None, Some(_)) | (Some(_), Some(_), None) => fresh(&status, now),
        (Some(h), Some(saved), Some(cur))
            if saved.last_heartbeat_time != cur.last_heartbeat_time =>
        {
            let transition = if saved.last_transition_time != cur.last_transition_time {
                now
            } else {
                h.ready_transition_timestamp
            };
            NodeHealth {
                lease_renew_time: h.lease_renew_time,
                ..fresh(&status, transition)
            }
        }
        (Some(h), _, _) => h,
    };
    if health.lease_renew_time.is_none() {
        health.lease_renew_time = saved_lease;
    }
    // A renewed Lease is a heartbeat, whatever the status says.
    if let Some(renewed) = lease_renew_time {
        if saved_lease.is_none_or(|saved| saved < renewed) {
            health.lease_renew_time = Some(renewed);
            health.probe_timestamp = now;
        }
    }

    let mut update = HealthUpdate {
        health,
        grace_period,
        observed_ready: observed_ready.clone(),
        current_ready: current.clone(),
        new_status: None,
    };
    if now <= update.health.probe_timestamp + grace_period {
        return update;
    }
    let mut new_status = status;
    for kind in UNKNOWN_CONDITIONS {
        match condition_mut(&mut new_status, kind) {
            None => new_status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some(REASON_NEVER_UPDATED.into()),
                    message: Some(MESSAGE_NEVER_UPDATED.into()),
                    last_heartbeat_time: Some(Time(created)),
                    last_transition_time: Some(Time(now)),
                }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some(REASON_UNKNOWN.into());
                c.message = Some(MESSAGE_UNKNOWN.into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    let new_ready = condition(&new_status, READY).cloned();
    if new_ready.as_ref() != Some(&observed_ready) {
        update.current_ready = new_ready;
        update.new_status = Some(new_status);
    }
    update
}

/// What to remember once `update.new_status` was written: upstream keeps the probe time
/// and restarts the Ready transition clock.
pub fn written(update: &HealthUpdate, now: Timestamp) -> NodeHealth {
    NodeHealth {
        status: update.new_status.clone().unwrap_or_default(),
        ready_transition_timestamp: now,
        ..update.health.clone()
    }
}

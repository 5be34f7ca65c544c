//! Pod scheduling decisions, as pure functions.
//!
//! Owns: kube-scheduler's filter plugins (NodeUnschedulable, NodeName, TaintToleration,
//! NodeAffinity incl. `nodeSelector`, NodeResourcesFit — run in upstream's default order),
//! the NodeResourcesFit `LeastAllocated` score, picking a node, and the `FailedScheduling`
//! message upstream writes when no node fits. Later it will also own the scheduling queue
//! and the binding loop, built on kube-runtime in a separate module.
//!
//! Does not own: any I/O — no network, no store access, no async, no clock. Callers gather
//! the node and the pods bound to it into a [`NodeInfo`] and act on the result.
//!
//! May depend on: `k8s-openapi` for the types and `api` (quantities, label selectors). Nothing
//! that does I/O.

mod filter;
mod message;
mod resources;
mod score;

pub use filter::{
    filter, node_affinity, node_name, node_unschedulable, taint_toleration, tolerates_taint, Unfit,
    ERR_NODE_AFFINITY, ERR_NODE_NAME, ERR_TOO_MANY_PODS, ERR_UNSCHEDULABLE,
};
pub use message::{
    failed_scheduling_message, FitError, NO_NODES_AVAILABLE, PREEMPTION_NOT_HELPFUL,
    PREEMPTION_NO_VICTIMS,
};
pub use resources::{node_resources_fit, pod_requests, NodeInfo, Resources};
pub use score::{pick, score_least_allocated, MAX_NODE_SCORE};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

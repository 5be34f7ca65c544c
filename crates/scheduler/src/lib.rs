//! kube-scheduler for peapod.
//!
//! Owns: kube-scheduler's filter plugins (NodeUnschedulable, NodeName, TaintToleration,
//! NodeAffinity incl. `nodeSelector`, NodeResourcesFit — run in upstream's default order),
//! the NodeResourcesFit `LeastAllocated` score, picking a node, the `FailedScheduling`
//! message upstream writes when no node fits, the scheduling queue, the cache of node infos
//! kept current from watch events and assumed bindings (so a decision costs O(nodes)), one
//! scheduling decision over it, the scheduler's Events' reasons and messages — all pure
//! functions with no I/O, no async and no clock of their own — and [`run`], the one module that
//! does I/O: the watch-decide-bind loop over the API (kube-runtime watchers and reflector
//! stores, the `binding` and `status` subresources, core/v1 Events through `record`).
//!
//! Does not own: preemption (the message reports that no victims were looked for), the
//! scheduling framework's extension points, other profiles or extenders, leader election
//! (peapod runs one scheduler per control plane for now).
//!
//! May depend on: `k8s-openapi` for the types, `api` (quantities, label selectors), `record`
//! (the shared event recorder), and, in `run` only, `kube` (client + runtime) and tokio. Never on the API server's internals: the
//! scheduler talks to it through the public API like any client.

mod cache;
mod decide;
mod events;
mod filter;
mod message;
mod queue;
mod resources;
mod run;
mod score;

pub use cache::Cache;
pub use decide::{
    assigned_node, assigned_pod_freed, decide, decide_on, is_terminal, needs_scheduling,
    node_change_may_help, node_infos, pod_key, pod_update_may_help, unschedulable_condition_patch,
    Assumed, Decision, DEFAULT_SCHEDULER_NAME, REASON_UNSCHEDULABLE,
};
pub use events::{
    event_source, scheduled_message, COMPONENT, REASON_FAILED_SCHEDULING, REASON_SCHEDULED,
};
pub use filter::{
    filter, node_affinity, node_name, node_unschedulable, taint_toleration, tolerates_taint, Unfit,
    ERR_NODE_AFFINITY, ERR_NODE_NAME, ERR_TOO_MANY_PODS, ERR_UNSCHEDULABLE,
};
pub use message::{
    failed_scheduling_message, FitError, NO_NODES_AVAILABLE, PREEMPTION_NOT_HELPFUL,
    PREEMPTION_NO_VICTIMS,
};
pub use queue::{backoff_duration, PodState, Queue, QueueConfig};
pub use resources::{node_resources_fit, pod_requests, NodeInfo, Resources};
pub use run::{run, SchedulerConfig, SchedulerError};
pub use score::{pick, score_least_allocated, MAX_NODE_SCORE};

#[cfg(test)]
mod loop_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

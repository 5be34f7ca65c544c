//! Upstream's Deployment controller (`pkg/controller/deployment`) — **unfinished**: only its
//! pure decisions exist so far ([`util`]: `pod-template-hash` ReplicaSets, new and old
//! ReplicaSets, revisions and their annotations, `maxSurge`/`maxUnavailable`, the rolling
//! update's scale-up and scale-down budgets, proportional scaling, history cleanup, status
//! and conditions). The controller that applies them (informers, sync, Recreate, pause,
//! rollback, events) is not written and not started by `controllers::run`.
//!
//! The rollout a sync drives, as upstream's `rolloutRolling`:
//!
//! ```text
//!  new RS = the oldest whose template (ignoring pod-template-hash) is the deployment's,
//!           else created as <deployment>-<hash>, revision = max(old) + 1
//!  scale new RS up to   min(replicas, replicas + maxSurge - Σ all spec.replicas)
//!  scale old RSs down:  unavailable ones first (oldest RS first), then by
//!                       Σ available - (replicas - maxUnavailable)
//!  status: Σ counts; Available = available ≥ replicas - maxUnavailable;
//!          Progressing = NewReplicaSetAvailable | ReplicaSetUpdated | ProgressDeadlineExceeded
//! ```

pub mod util;

#[cfg(test)]
mod tests;

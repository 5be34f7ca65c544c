//! Scoring (NodeResourcesFit's `LeastAllocated` strategy) and node selection.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::filter::filter;
use crate::message::{FitError, PREEMPTION_NOT_HELPFUL, PREEMPTION_NO_VICTIMS};
use crate::resources::{pod_requests, NodeInfo};

/// Upstream's `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    let s = (i128::from(capacity) - i128::from(requested)) * i128::from(MAX_NODE_SCORE)
        / i128::from(capacity);
    i64::try_from(s).unwrap_or(0)
}

/// NodeResourcesFit `LeastAllocated` score, 0..=100, with cpu and memory weight 1: for each
/// resource with non-zero allocatable, `(allocatable - requested) * 100 / allocatable`, where
/// requested is the node's plus this pod's non-zero requests (100m / 200Mi defaults);
/// averaged by weight with integer division.
pub fn score_least_allocated(pod: &Pod, node: &NodeInfo) -> i64 {
    let pod_req = pod_requests(pod, true);
    let alloc = node.allocatable();
    let used = node.non_zero_requested;
    let mut score = 0;
    let mut weights = 0;
    for (req, cap) in [
        (
            used.milli_cpu.saturating_add(pod_req.milli_cpu),
            alloc.milli_cpu,
        ),
        (used.memory.saturating_add(pod_req.memory), alloc.memory),
    ] {
        if cap == 0 {
            continue;
        }
        score += least_requested(req, cap);
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        score / weights
    }
}

/// Filters every node, scores the feasible ones and returns the index of the best; ties go
/// to the lowest node name (upstream picks among ties at random). On failure, returns the
/// reason histogram for the `FailedScheduling` message.
pub fn pick(pod: &Pod, nodes: &[NodeInfo]) -> Result<usize, FitError> {
    let mut best: Option<(i64, &str, usize)> = None;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut preemption: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        match filter(pod, node) {
            Ok(()) => {
                let score = score_least_allocated(pod, node);
                let better =
                    best.is_none_or(|(s, name, _)| score > s || (score == s && node.name() < name));
                if better {
                    best = Some((score, node.name(), i));
                }
            }
            Err(unfit) => {
                for r in unfit.reasons {
                    *reasons.entry(r).or_default() += 1;
                }
                let outcome = if unfit.resolvable {
                    PREEMPTION_NO_VICTIMS
                } else {
                    PREEMPTION_NOT_HELPFUL
                };
                *preemption.entry(outcome.to_string()).or_default() += 1;
            }
        }
    }
    match best {
        Some((_, _, i)) => Ok(i),
        None => Err(FitError {
            total_nodes: nodes.len(),
            reasons: reasons.into_iter().collect(),
            preemption: preemption.into_iter().collect(),
        }),
    }
}

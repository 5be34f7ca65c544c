//! Upstream's `ActivePodsWithRanks`: the order in which a controller picks surplus pods to
//! delete, the pod it should miss least first. Applying each rule in turn until one
//! decides, a pod comes first when it is
//!
//! 1. not assigned to a node (and the other is);
//! 2. in an earlier phase: Pending (and unset) < Unknown < Running;
//! 3. not ready (and the other is);
//! 4. of lower `controller.kubernetes.io/pod-deletion-cost`;
//! 5. of higher rank (more related pods on its node: doubled-up pods go first);
//! 6. ready for less time (both ready);
//! 7. restarted more (its most restarted container);
//! 8. younger.
//!
//! In 6 and 8 times are compared on a logarithmic scale from `now` (upstream's
//! `LogarithmicScaleDown`, on by default): pods whose ages fall in the same power-of-two
//! bucket are ordered by UID, a pseudo-random but stable pick among equals.
//!
//! The sort is a merge sort on the rule list itself rather than `slice::sort_by`: the
//! UID tie-break of rules 6 and 8 is not a total order together with rule 7 (as in Go,
//! whose `sort.Sort` tolerates that), and the standard sort may panic on such orders.

use std::borrow::Borrow;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::{is_pod_active, is_pod_ready, pod_deletion_cost, pod_ready_condition};

/// Pods with a rank each, and the time ages are measured from.
#[derive(Debug, Clone)]
pub struct ActivePodsWithRanks<P> {
    pub pods: Vec<P>,
    pub ranks: Vec<i64>,
    /// `None` compares times without the logarithmic scale.
    pub now: Option<Timestamp>,
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Pending (and anything not listed, as Go's map lookup gives 0) < Unknown < Running.
fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn ready_time(pod: &Pod) -> Option<Timestamp> {
    if !is_pod_ready(pod) {
        return None;
    }
    pod_ready_condition(pod)?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn max_container_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
        .max(0)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// `t1` is after `t2`, an unknown time counting as after any known one.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (Some(a), Some(b)) => a > b,
        (a, _) => a.is_none(),
    }
}

/// Upstream's `logarithmicRankDiff`: the difference of the base-2 logarithms of the two
/// ages in nanoseconds (an age that is not positive ranks -1).
fn logarithmic_rank_diff(t1: Timestamp, t2: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| {
        let age = now.as_nanosecond() - t.as_nanosecond();
        if age > 0 {
            (age as f64).log2().floor() as i64
        } else {
            -1
        }
    };
    rank(t1) - rank(t2)
}

/// Rules 6 and 8: `Some(answer)` when the times decide.
fn compare_times(
    t1: Option<Timestamp>,
    t2: Option<Timestamp>,
    now: Option<Timestamp>,
    a: &Pod,
    b: &Pod,
) -> Option<bool> {
    if t1 == t2 {
        return None;
    }
    match (now, t1, t2) {
        (Some(now), Some(x), Some(y)) => {
            let diff = logarithmic_rank_diff(x, y, now);
            Some(if diff == 0 { uid(a) < uid(b) } else { diff < 0 })
        }
        _ => Some(after_or_zero(t1, t2)),
    }
}

/// Whether `a` (of rank `rank_a`) should be deleted before `b` (upstream's `Less`).
pub fn ranked_less(a: &Pod, rank_a: i64, b: &Pod, rank_b: i64, now: Option<Timestamp>) -> bool {
    // 1. Unassigned < assigned.
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    // 2. Pending < Unknown < Running.
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    // 3. Not ready < ready.
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return !ra;
    }
    // 4. Lower deletion cost < higher.
    let (ca, cb) = (pod_deletion_cost(a), pod_deletion_cost(b));
    if ca != cb {
        return ca < cb;
    }
    // 5. Doubled up (higher rank) < not.
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    // 6. Ready for less time < more.
    if ra && rb {
        if let Some(answer) = compare_times(ready_time(a), ready_time(b), now, a, b) {
            return answer;
        }
    }
    // 7. More restarts < fewer.
    let (xa, xb) = (max_container_restarts(a), max_container_restarts(b));
    if xa != xb {
        return xa > xb;
    }
    // 8. Younger < older.
    compare_times(created(a), created(b), now, a, b).unwrap_or(false)
}

/// Upstream's plain `ActivePods` order (rules 1–3, 6 without the logarithmic scale, 7, 8),
/// which controllers without ranks (Jobs) sort by.
pub fn active_pods_less(a: &Pod, b: &Pod) -> bool {
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return !ra;
    }
    if ra && rb {
        if let Some(answer) = compare_times(ready_time(a), ready_time(b), None, a, b) {
            return answer;
        }
    }
    let (xa, xb) = (max_container_restarts(a), max_container_restarts(b));
    if xa != xb {
        return xa > xb;
    }
    compare_times(created(a), created(b), None, a, b).unwrap_or(false)
}

/// A stable merge sort by a "comes before" predicate that need not be a total order.
pub fn sort_by_less<T>(items: Vec<T>, less: &impl Fn(&T, &T) -> bool) -> Vec<T> {
    if items.len() <= 1 {
        return items;
    }
    let mut left = items;
    let right = left.split_off(left.len() / 2);
    let left = sort_by_less(left, less);
    let right = sort_by_less(right, less);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    loop {
        let take_right = match (l.peek(), r.peek()) {
            (Some(a), Some(b)) => less(b, a),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        let next = if take_right { r.next() } else { l.next() };
        out.extend(next);
    }
    out
}

impl<P: Borrow<Pod>> ActivePodsWithRanks<P> {
    /// Sorts the pods (and their ranks) so the first are the ones to delete first.
    pub fn sort(self) -> ActivePodsWithRanks<P> {
        let now = self.now;
        let mut ranks = self.ranks.into_iter();
        let paired: Vec<(P, i64)> = self
            .pods
            .into_iter()
            .map(|p| (p, ranks.next().unwrap_or(0)))
            .collect();
        let sorted = sort_by_less(paired, &|(a, ra): &(P, i64), (b, rb): &(P, i64)| {
            ranked_less(a.borrow(), *ra, b.borrow(), *rb, now)
        });
        let (pods, ranks) = sorted.into_iter().unzip();
        ActivePodsWithRanks { pods, ranks, now }
    }
}

/// Ranks each of `pods_to_rank` by how many active pods of `related` share its node
/// (upstream's `getPodsRankedByRelatedPodsOnSameNode`), so that doubled-up pods go first.
pub fn pods_ranked_by_related_pods_on_same_node<P: Borrow<Pod>, R: Borrow<Pod>>(
    pods_to_rank: Vec<P>,
    related: &[R],
    now: Timestamp,
) -> ActivePodsWithRanks<P> {
    let mut on_node: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for pod in related.iter().map(Borrow::borrow) {
        if is_pod_active(pod) {
            *on_node.entry(node(pod)).or_insert(0) += 1;
        }
    }
    let ranks = pods_to_rank
        .iter()
        .map(|p| on_node.get(node(p.borrow())).copied().unwrap_or(0))
        .collect();
    ActivePodsWithRanks {
        pods: pods_to_rank,
        ranks,
        now: Some(now),
    }
}

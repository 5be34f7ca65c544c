//! The `FailedScheduling` message upstream's `FitError.Error()` builds.

/// What upstream reports when there are no nodes at all (`ErrNoNodesAvailable`).
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";
/// DefaultPreemption's status for nodes whose failure preemption cannot fix.
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// DefaultPreemption's status for nodes with no lower-priority pods to evict.
pub const PREEMPTION_NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// `0/<total> nodes are available: <count> <reason>, ....` with the `"<count> <reason>"`
/// strings sorted as plain strings (upstream's `sort.Strings`, so `"10 x"` sorts before
/// `"2 y"`).
pub fn failed_scheduling_message(total_nodes: usize, reasons: &[(String, usize)]) -> String {
    if total_nodes == 0 {
        return NO_NODES_AVAILABLE.to_string();
    }
    let mut msg = format!("0/{total_nodes} nodes are available:");
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    parts.sort();
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    msg
}

/// Why `pick` found no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub total_nodes: usize,
    /// Histogram of filter reasons; a node failing on several resources counts in each.
    pub reasons: Vec<(String, usize)>,
    /// Histogram of per-node preemption outcomes, assuming no lower-priority victims exist.
    pub preemption: Vec<(String, usize)>,
}

impl FitError {
    /// The full `FailedScheduling` event message, including DefaultPreemption's post-filter
    /// part. Upstream appends it with its `" %v."` separator, so the message really ends in
    /// `..` (e.g. `... 1 Preemption is not helpful for scheduling..`).
    pub fn message(&self) -> String {
        let mut msg = failed_scheduling_message(self.total_nodes, &self.reasons);
        if self.total_nodes > 0 && !self.preemption.is_empty() {
            let post = failed_scheduling_message(self.total_nodes, &self.preemption);
            msg.push_str(&format!(" preemption: {post}."));
        }
        msg
    }
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FitError {}

//! Upstream's `TimedWorkerQueue` as plain state: per pod, a deletion pending at a time, or
//! one already fired (which blocks scheduling another until it is cancelled, as upstream's
//! nil worker does).
//!
//! ```text
//!  schedule(pod, created, fire_at) ─▶ Pending ── fire_at reached ─▶ take_due ─▶ Fired
//!  cancel(pod): Pending ─▶ gone, true (the caller records "Cancelling deletion")
//!               Fired   ─▶ gone, false
//! ```

use std::collections::HashMap;

use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Pending {
        created_at: Timestamp,
        fire_at: Timestamp,
    },
    Fired,
}

/// Pods by `namespace/name`.
#[derive(Debug, Default)]
pub struct TimedWorkers {
    works: HashMap<String, Work>,
}

impl TimedWorkers {
    pub fn get(&self, key: &str) -> Option<&Work> {
        self.works.get(key)
    }

    pub fn schedule(&mut self, key: &str, created_at: Timestamp, fire_at: Timestamp) {
        self.works.insert(
            key.to_string(),
            Work::Pending {
                created_at,
                fire_at,
            },
        );
    }

    /// Forgets the pod's work; whether a pending one was cancelled.
    pub fn cancel(&mut self, key: &str) -> bool {
        matches!(self.works.remove(key), Some(Work::Pending { .. }))
    }

    /// The pods whose deletion is due, marked fired.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<String> {
        let mut due: Vec<String> = Vec::new();
        for (key, work) in self.works.iter_mut() {
            if let Work::Pending { fire_at, .. } = work {
                if *fire_at <= now {
                    due.push(key.clone());
                    *work = Work::Fired;
                }
            }
        }
        due.sort();
        due
    }

    /// When the next pending deletion is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.works
            .values()
            .filter_map(|w| match w {
                Work::Pending { fire_at, .. } => Some(*fire_at),
                Work::Fired => None,
            })
            .min()
    }
}

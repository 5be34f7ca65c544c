//! The scheduling queue (upstream's `PriorityQueue`, reduced): an active queue ordered by
//! priority then creation time, a backoff queue for pods whose attempt hit an error, and
//! the unschedulable set, retried when the cluster changes in a way that could help them or
//! after `unschedulable_flush`. Pure: the caller passes the clock in.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::decide::{pod_key, pod_update_may_help};

/// Timings of the queue; the defaults are upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Backoff after the first failed attempt (`--pod-initial-backoff-seconds`, 1 s).
    pub initial_backoff: Duration,
    /// Backoff cap (`--pod-max-backoff-seconds`, 10 s).
    pub max_backoff: Duration,
    /// How long a pod may sit in the unschedulable set before it is retried anyway
    /// (upstream's `podMaxInUnschedulablePodsDuration`, 5 min).
    pub unschedulable_flush: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(5 * 60),
        }
    }
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Ready to be popped.
    Active,
    /// Waiting out an error backoff until the instant.
    Backoff(Instant),
    /// Did not fit at the instant; waits for a cluster change or the flush.
    Unschedulable(Instant),
    /// Popped and being scheduled; `cycle` is the move cycle it was popped in.
    InFlight { cycle: u64 },
}

/// Active-queue order: higher priority first, then older creation time, then arrival.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ActiveKey {
    priority: Reverse<i32>,
    created_nanos: i128,
    seq: u64,
    key: String,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    seq: u64,
    attempts: u32,
    state: PodState,
}

impl Entry {
    fn active_key(&self, key: &str) -> ActiveKey {
        let spec = self.pod.spec.as_ref();
        ActiveKey {
            priority: Reverse(spec.and_then(|s| s.priority).unwrap_or(0)),
            created_nanos: self
                .pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(i128::MAX, |t| t.0.as_nanosecond()),
            seq: self.seq,
            key: key.to_string(),
        }
    }
}

/// The scheduling queue. Pods are keyed `namespace/name`.
#[derive(Debug, Default)]
pub struct Queue {
    config: QueueConfig,
    entries: HashMap<String, Entry>,
    active: BTreeSet<ActiveKey>,
    backoff: BTreeSet<(Instant, u64, String)>,
    next_seq: u64,
    /// Bumped on every cluster change that moves unschedulable pods, so a pod whose attempt
    /// overlapped such a change is retried instead of parked (upstream's `moveRequestCycle`).
    move_cycle: u64,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            ..Queue::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn state(&self, key: &str) -> Option<PodState> {
        self.entries.get(key).map(|e| e.state)
    }

    /// Number of failed attempts so far (what the backoff grows with).
    pub fn attempts(&self, key: &str) -> u32 {
        self.entries.get(key).map_or(0, |e| e.attempts)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A pod that needs scheduling was added or updated. New pods go to the active queue; an
    /// unschedulable pod moves there only when the update could change the outcome (not for
    /// the status the scheduler itself wrote).
    pub fn add_or_update(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        let Some(entry) = self.entries.get_mut(&key) else {
            let seq = self.next_seq;
            self.next_seq += 1;
            let entry = Entry {
                pod,
                seq,
                attempts: 0,
                state: PodState::Active,
            };
            self.active.insert(entry.active_key(&key));
            self.entries.insert(key, entry);
            return;
        };
        let helps = pod_update_may_help(&entry.pod, &pod);
        match entry.state {
            PodState::Active => {
                self.active.remove(&entry.active_key(&key));
                entry.pod = pod;
                self.active.insert(entry.active_key(&key));
            }
            PodState::Unschedulable(_) if helps => {
                entry.pod = pod;
                entry.state = PodState::Active;
                self.active.insert(entry.active_key(&key));
            }
            PodState::Unschedulable(_) | PodState::Backoff(_) | PodState::InFlight { .. } => {
                entry.pod = pod;
            }
        }
    }

    /// The pod no longer needs scheduling (deleted, bound, finished).
    pub fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.unlink(key, &entry);
        }
    }

    fn unlink(&mut self, key: &str, entry: &Entry) {
        match entry.state {
            PodState::Active => {
                self.active.remove(&entry.active_key(key));
            }
            PodState::Backoff(until) => {
                self.backoff.remove(&(until, entry.seq, key.to_string()));
            }
            PodState::Unschedulable(_) | PodState::InFlight { .. } => {}
        }
    }

    /// Keeps only the pods `keep` accepts (after a relist, drops pods that went unseen).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<String> = self.keys().filter(|k| !keep(k)).map(String::from).collect();
        for key in gone {
            self.remove(&key);
        }
    }

    /// Something changed that could make unschedulable pods fit (a node added or changed, an
    /// assigned pod deleted or finished): every unschedulable pod goes back to active.
    pub fn move_all_unschedulable(&mut self) {
        self.move_cycle += 1;
        self.move_unschedulable_where(|_| true);
    }

    /// Retries pods that have been unschedulable for longer than `unschedulable_flush`.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let flush = self.config.unschedulable_flush;
        self.move_unschedulable_where(|since| now.saturating_duration_since(since) >= flush);
    }

    fn move_unschedulable_where(&mut self, pred: impl Fn(Instant) -> bool) {
        for (key, entry) in &mut self.entries {
            if let PodState::Unschedulable(since) = entry.state {
                if pred(since) {
                    entry.state = PodState::Active;
                    self.active.insert(entry.active_key(key));
                }
            }
        }
    }

    /// Moves pods whose backoff has expired to the active queue.
    fn expire_backoff(&mut self, now: Instant) {
        while let Some(first) = self.backoff.first() {
            if first.0 > now {
                break;
            }
            let Some((_, _, key)) = self.backoff.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.state = PodState::Active;
                self.active.insert(entry.active_key(&key));
            }
        }
    }

    /// Whether `pop` would return a pod now.
    pub fn has_ready(&self, now: Instant) -> bool {
        !self.active.is_empty() || self.backoff.first().is_some_and(|b| b.0 <= now)
    }

    /// The highest-priority active pod, marked in flight until one of `done`,
    /// `unschedulable` or `failed` reports the attempt's outcome.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.expire_backoff(now);
        let first = self.active.pop_first()?;
        let entry = self.entries.get_mut(&first.key)?;
        entry.state = PodState::InFlight {
            cycle: self.move_cycle,
        };
        entry.attempts = entry.attempts.saturating_add(1);
        Some(entry.pod.clone())
    }

    /// The pod was bound (or dropped): forget it.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// The pod fit no node. It waits in the unschedulable set, unless the cluster changed
    /// while it was being scheduled, in which case it is retried at once.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let cycle = self.move_cycle;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        match entry.state {
            PodState::InFlight { cycle: popped } if popped < cycle => {
                entry.state = PodState::Active;
                self.active.insert(entry.active_key(key));
            }
            PodState::InFlight { .. } => entry.state = PodState::Unschedulable(now),
            _ => {}
        }
    }

    /// The attempt hit an error (API failure): retry after the backoff, 1 s doubling per
    /// attempt up to 10 s by default.
    pub fn failed(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if !matches!(entry.state, PodState::InFlight { .. }) {
            return;
        }
        let until = now + backoff_duration(&self.config, entry.attempts);
        entry.state = PodState::Backoff(until);
        self.backoff.insert((until, entry.seq, key.to_string()));
    }

    /// When the earliest backoff expires, if any pod is backing off. (The unschedulable
    /// flush is driven by a periodic tick, as upstream checks it every 30 s.)
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.first().map(|b| b.0)
    }
}

/// Upstream's `calculateBackoffDuration`: the initial backoff doubled for every attempt
/// after the first, capped at the maximum.
pub fn backoff_duration(config: &QueueConfig, attempts: u32) -> Duration {
    let mut d = config.initial_backoff;
    for _ in 1..attempts {
        d = d.saturating_mul(2);
        if d >= config.max_backoff {
            return config.max_backoff;
        }
    }
    d.min(config.max_backoff)
}

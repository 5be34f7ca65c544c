//! Upstream's `ControllerExpectations` and `UIDTrackingControllerExpectations`: what each
//! controller (by key, `namespace/name`) still expects to see created or deleted by the
//! watch before it decides again.
//!
//! A controller that creates 3 pods cannot see them in its cache at once; deciding again
//! from that cache would create 3 more. So it records `add: 3`, and each pod the watch
//! shows lowers it; until both counts reach 0 (or [`EXPECTATIONS_TIMEOUT`] passes, in case
//! an event was lost) the controller does not act.
//!
//! ```text
//!  sync: diff = +3 ─▶ expect_creations(key, 3) ─▶ create 3 (a failed create lowers it)
//!  watch: pod added (controller ref → key) ─▶ creation_observed(key): 2, 1, 0
//!  sync: satisfied? add <= 0 && del <= 0, or older than 5 min ─▶ decide again
//! ```
//!
//! The UID-tracking variant remembers *which* pods it deleted, so a pod that is first
//! marked for deletion (graceful) and later removed counts once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use super::EXPECTATIONS_TIMEOUT;

/// What one controller still expects (upstream's `ControlleeExpectations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlleeExpectations {
    pub add: i64,
    pub del: i64,
    /// When they were set; expectations older than [`EXPECTATIONS_TIMEOUT`] are satisfied.
    pub timestamp: Instant,
}

impl ControlleeExpectations {
    /// Every expected create and delete was seen.
    pub fn fulfilled(&self) -> bool {
        self.add <= 0 && self.del <= 0
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.timestamp) > EXPECTATIONS_TIMEOUT
    }
}

/// Expectations per controller key. Cheap to share: every method locks briefly.
#[derive(Debug, Default)]
pub struct ControllerExpectations {
    entries: Mutex<HashMap<String, ControlleeExpectations>>,
}

impl ControllerExpectations {
    pub fn new() -> ControllerExpectations {
        ControllerExpectations::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ControlleeExpectations>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<ControlleeExpectations> {
        self.lock().get(key).copied()
    }

    /// Whether the controller may decide again: it never set expectations, they are
    /// fulfilled, or they expired.
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    pub fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        match self.lock().get(key) {
            Some(e) => e.fulfilled() || e.expired(now),
            None => true,
        }
    }

    /// Forgets a controller (it was deleted: a new one of the same name starts clean).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Replaces the controller's expectations.
    pub fn set(&self, key: &str, add: i64, del: i64) {
        self.set_at(key, add, del, Instant::now());
    }

    pub fn set_at(&self, key: &str, add: i64, del: i64, now: Instant) {
        self.lock().insert(
            key.to_string(),
            ControlleeExpectations {
                add,
                del,
                timestamp: now,
            },
        );
    }

    pub fn expect_creations(&self, key: &str, adds: i64) {
        self.set(key, adds, 0);
    }

    pub fn expect_deletions(&self, key: &str, dels: i64) {
        self.set(key, 0, dels);
    }

    /// Lowers the counts (a create that failed will never be observed).
    pub fn lower(&self, key: &str, add: i64, del: i64) {
        if let Some(e) = self.lock().get_mut(key) {
            e.add -= add;
            e.del -= del;
        }
    }

    /// Raises the counts of expectations already set.
    pub fn raise(&self, key: &str, add: i64, del: i64) {
        if let Some(e) = self.lock().get_mut(key) {
            e.add += add;
            e.del += del;
        }
    }

    pub fn creation_observed(&self, key: &str) {
        self.lower(key, 1, 0);
    }

    pub fn deletion_observed(&self, key: &str) {
        self.lower(key, 0, 1);
    }
}

/// [`ControllerExpectations`] that also remember which objects (by key, `namespace/name`,
/// as upstream's ReplicaSet controller names them) a controller deleted, so that an
/// update setting `deletionTimestamp` and the later removal count as one deletion.
#[derive(Debug, Default)]
pub struct UidTrackingControllerExpectations {
    counts: ControllerExpectations,
    deleted: Mutex<HashMap<String, HashSet<String>>>,
}

impl UidTrackingControllerExpectations {
    pub fn new() -> UidTrackingControllerExpectations {
        UidTrackingControllerExpectations::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.deleted.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<ControlleeExpectations> {
        self.counts.get(key)
    }

    /// The objects the controller still waits to see deleted.
    pub fn expected_deletions(&self, key: &str) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    pub fn satisfied(&self, key: &str) -> bool {
        self.counts.satisfied(key)
    }

    pub fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        self.counts.satisfied_at(key, now)
    }

    pub fn expect_creations(&self, key: &str, adds: i64) {
        self.counts.expect_creations(key, adds);
    }

    pub fn creation_observed(&self, key: &str) {
        self.counts.creation_observed(key);
    }

    pub fn lower(&self, key: &str, add: i64, del: i64) {
        self.counts.lower(key, add, del);
    }

    pub fn raise(&self, key: &str, add: i64, del: i64) {
        self.counts.raise(key, add, del);
    }

    /// Expects exactly these objects to be deleted (replacing any earlier set).
    pub fn expect_deletions(&self, key: &str, deleted: impl IntoIterator<Item = String>) {
        let set: HashSet<String> = deleted.into_iter().collect();
        let n = i64::try_from(set.len()).unwrap_or(i64::MAX);
        let mut uids = self.lock();
        uids.insert(key.to_string(), set);
        self.counts.expect_deletions(key, n);
    }

    /// The watch showed `object` deleted (or marked for deletion); counts only once, and
    /// only if this controller deleted it.
    pub fn deletion_observed(&self, key: &str, object: &str) {
        let mut uids = self.lock();
        if let Some(set) = uids.get_mut(key) {
            if set.remove(object) {
                self.counts.deletion_observed(key);
            }
        }
    }

    pub fn delete(&self, key: &str) {
        let mut uids = self.lock();
        self.counts.delete(key);
        uids.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_controller_waits_until_what_it_created_and_deleted_is_seen() {
        let e = ControllerExpectations::new();
        let t0 = Instant::now();
        // Never set: free to decide.
        assert!(e.satisfied_at("ns/rs", t0));
        e.set_at("ns/rs", 2, 1, t0);
        let steps: &[(&str, bool)] = &[
            ("create", false),
            ("delete", false),
            ("create", true),
            // More observations than expected keep it satisfied.
            ("create", true),
        ];
        for (i, (what, want)) in steps.iter().enumerate() {
            match *what {
                "create" => e.creation_observed("ns/rs"),
                _ => e.deletion_observed("ns/rs"),
            }
            assert_eq!(e.satisfied_at("ns/rs", t0), *want, "step {i} ({what})");
        }
        // Other keys are independent.
        e.expect_creations("ns/other", 1);
        assert!(!e.satisfied("ns/other"));
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn expectations_expire_after_the_timeout() {
        let e = ControllerExpectations::new();
        let t0 = Instant::now();
        e.set_at("k", 5, 0, t0);
        let cases = [
            (Duration::ZERO, false),
            (EXPECTATIONS_TIMEOUT, false),
            (EXPECTATIONS_TIMEOUT + Duration::from_millis(1), true),
        ];
        for (after, want) in cases {
            assert_eq!(e.satisfied_at("k", t0 + after), want, "after {after:?}");
        }
    }

    #[test]
    fn lowering_raising_and_forgetting() {
        let e = ControllerExpectations::new();
        e.expect_creations("k", 3);
        e.lower("k", 3, 0);
        assert!(e.satisfied("k"));
        e.raise("k", 1, 0);
        assert!(!e.satisfied("k"));
        e.delete("k");
        assert!(e.get("k").is_none() && e.satisfied("k"));
        // Lowering or raising what was never set does nothing.
        e.raise("gone", 1, 1);
        assert!(e.get("gone").is_none());
    }

    #[test]
    fn a_deletion_counts_once_and_only_for_what_was_deleted() {
        let e = UidTrackingControllerExpectations::new();
        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        assert_eq!(e.get("ns/rs").map(|x| x.del), Some(2));
        // Marked for deletion, then removed: one observation.
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert_eq!(e.get("ns/rs").map(|x| x.del), Some(1));
        // A pod this controller did not delete does not count.
        e.deletion_observed("ns/rs", "ns/z");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
        assert!(e.expected_deletions("ns/rs").is_empty());
        e.delete("ns/rs");
        assert!(e.get("ns/rs").is_none());
    }
}

//! The pod failure backoff (upstream's `backoff_utils.go`): after failures with no later
//! success, new pods wait 10 s, doubling per failure, capped at 6 minutes, counted from the
//! last failure. The record per Job lives in memory, as upstream's `backoffStore`. Pure but
//! for the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The first delay (upstream's `DefaultJobPodFailureBackOff`).
pub const DEFAULT_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// The longest delay (upstream's `MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

/// Failures since the last success and when the last one happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: i32,
    pub last_failure_time: Option<Timestamp>,
}

/// The records of every Job, by key.
#[derive(Debug, Default)]
pub struct BackoffStore {
    records: Mutex<HashMap<String, BackoffRecord>>,
}

impl BackoffStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BackoffRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn get(&self, key: &str) -> BackoffRecord {
        self.lock().get(key).cloned().unwrap_or_default()
    }
    pub fn update(&self, key: &str, record: BackoffRecord) {
        self.lock().insert(key.to_string(), record);
    }
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// When a pod finished: its containers' last finish, else its deletion time less its grace
/// period, else when it became not ready, else its creation (upstream's `getFinishedTime`,
/// with `now` for a pod that has none of them).
pub fn finished_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let finished = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    if let Some(t) = finished {
        return t;
    }
    if let Some(d) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d
            .0
            .checked_sub(SignedDuration::from_secs(grace))
            .unwrap_or(d.0);
    }
    let ready_false = status
        .into_iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = ready_false {
        return t.0;
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0)
}

/// The record after the newly finished pods (upstream's `newBackoffRecord`): a success
/// resets it, failures after the last success count.
pub fn new_backoff_record(
    mut record: BackoffRecord,
    new_succeeded: &[Arc<Pod>],
    new_failed: &[Arc<Pod>],
    now: Timestamp,
) -> BackoffRecord {
    let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p, now)).collect();
    failed.sort();
    let last_success = new_succeeded.iter().map(|p| finished_time(p, now)).max();
    match last_success {
        None => {
            if let Some(last) = failed.last() {
                record.failures_after_last_success = record
                    .failures_after_last_success
                    .saturating_add(i32::try_from(failed.len()).unwrap_or(i32::MAX));
                record.last_failure_time = Some(*last);
            }
            record
        }
        Some(success) => {
            let after: Vec<Timestamp> = failed.into_iter().filter(|t| *t > success).collect();
            BackoffRecord {
                failures_after_last_success: i32::try_from(after.len()).unwrap_or(i32::MAX),
                last_failure_time: after.last().copied(),
            }
        }
    }
}

/// How long new pods still wait after `failures` failures, the last at `last_failure`
/// (upstream's `getRemainingTimeForFailuresCount`).
pub fn remaining_time_for_failures(
    failures: i32,
    last_failure: Option<Timestamp>,
    now: Timestamp,
) -> Duration {
    let Some(last) = last_failure else {
        return Duration::ZERO;
    };
    if failures <= 0 {
        return Duration::ZERO;
    }
    let mut backoff = DEFAULT_POD_FAILURE_BACKOFF;
    for _ in 1..failures {
        backoff = backoff.saturating_mul(2);
        if backoff >= MAX_POD_FAILURE_BACKOFF {
            backoff = MAX_POD_FAILURE_BACKOFF;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// The wait of a record.
pub fn remaining_time(record: &BackoffRecord, now: Timestamp) -> Duration {
    remaining_time_for_failures(
        record.failures_after_last_success,
        record.last_failure_time,
        now,
    )
}

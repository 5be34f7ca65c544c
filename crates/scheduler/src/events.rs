//! The scheduler's core/v1 Events (`Scheduled`, `FailedScheduling`) and their aggregation:
//! a repeat of the same event about the same pod bumps `count` and `lastTimestamp` on the
//! event already written instead of writing a new one, as upstream's event correlator does.
//! Pure: the recorder task in `run` does the API calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// `source.component` and `reportingComponent` of the scheduler's events.
pub const COMPONENT: &str = "default-scheduler";
pub const REASON_SCHEDULED: &str = "Scheduled";
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";

/// Upstream's `Scheduled` message.
pub fn scheduled_message(namespace: &str, name: &str, node: &str) -> String {
    format!("Successfully assigned {namespace}/{name} to {node}")
}

/// What identifies "the same event" (upstream's `getEventKey`): the pod, type, reason and
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub type_: String,
    pub reason: String,
    pub message: String,
}

impl EventKey {
    pub fn new(pod: &Pod, type_: &str, reason: &str, message: &str) -> EventKey {
        EventKey {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }
}

/// What to write for an occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occurrence {
    /// First time (or the earlier one aged out): create a new event.
    New,
    /// Seen before: patch the named event to this count and a new `lastTimestamp`.
    Repeat { name: String, count: i32 },
}

#[derive(Debug, Clone)]
struct Seen {
    name: String,
    count: i32,
    last: Instant,
}

/// Remembers the events written recently, so repeats bump a count. Entries older than the
/// window are forgotten; at most `capacity` are kept (the oldest go first), like upstream's
/// LRU of 4096.
#[derive(Debug)]
pub struct Aggregator {
    window: Duration,
    capacity: usize,
    seen: HashMap<EventKey, Seen>,
}

impl Aggregator {
    pub fn new(window: Duration, capacity: usize) -> Aggregator {
        Aggregator {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
        }
    }

    /// Classifies an occurrence of `key` at `now`. A `Repeat` is counted at once; a `New`
    /// is remembered once the caller has created it (`created`).
    pub fn observe(&mut self, key: &EventKey, now: Instant) -> Occurrence {
        let window = self.window;
        match self.seen.get_mut(key) {
            Some(s) if now.saturating_duration_since(s.last) < window => {
                s.count = s.count.saturating_add(1);
                s.last = now;
                Occurrence::Repeat {
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            _ => Occurrence::New,
        }
    }

    /// The event for `key` was created under `name` with count 1.
    pub fn created(&mut self, key: EventKey, name: String, now: Instant) {
        let window = self.window;
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.last) < window);
        if self.seen.len() >= self.capacity && !self.seen.contains_key(&key) {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            key,
            Seen {
                name,
                count: 1,
                last: now,
            },
        );
    }

    /// The remembered event is gone (expired by the API server): the next occurrence
    /// creates a new one.
    pub fn forget(&mut self, key: &EventKey) {
        self.seen.remove(key);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A new core/v1 Event about `pod`, as upstream's legacy recorder writes it: named
/// `<pod>.<unix nanos in hex>`, count 1, both timestamps now, `source.component` and
/// `reportingComponent` `default-scheduler`.
pub fn pod_event(
    pod: &Pod,
    key: &EventKey,
    action: &str,
    reporting_instance: &str,
    now: Timestamp,
) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", key.name, now.as_nanosecond())),
            namespace: Some(key.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        type_: Some(key.type_.clone()),
        reason: Some(key.reason.clone()),
        message: Some(key.message.clone()),
        action: Some(action.to_string()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(reporting_instance.to_string()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        ..Event::default()
    }
}

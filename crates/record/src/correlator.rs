//! client-go's event correlator (`tools/record/events_cache.go`), as pure functions of the
//! events seen and the time: what a recorder writes for each event it is given.
//!
//! ```text
//!  event ─▶ aggregator ─▶ logger ─▶ spam filter ─▶ create, or patch an existing event
//! ```
//!
//! * **aggregator**: events alike but for their message (same source, object, type, reason
//!   and reporting controller/instance) are "similar"; from the 10th distinct message within
//!   10 minutes of the previous similar one, each is replaced by one aggregate event
//!   `(combined from similar events): <message>`, itself counted by the logger.
//! * **logger**: an event identical to one written before (same source, object incl. field
//!   path, type, reason, message) becomes a patch of that event: `count` + 1, a new
//!   `lastTimestamp` (and the message), keeping its name and `firstTimestamp`.
//! * **spam filter**: a token bucket per source and object, 25 events of burst refilled
//!   at one every 5 minutes; an event without a token is dropped. It runs last, so a dropped
//!   repeat is still counted and the next written one carries the full count (as upstream).
//!
//! Each cache holds at most 4096 entries, least recently used first out. core/v1's `series`
//! is not set: client-go's core recorder never sets it (only the events.k8s.io recorder
//! does), and `count`/`lastTimestamp` carry the same facts for this API.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::lru::Lru;

/// The prefix of an aggregate event's message.
pub const AGGREGATE_PREFIX: &str = "(combined from similar events): ";

/// The correlator's limits; `Default` is client-go's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Entries each cache keeps.
    pub cache_size: usize,
    /// Distinct messages of similar events before they are aggregated.
    pub max_events: usize,
    /// Similar events further apart than this start a fresh aggregation.
    pub max_interval: Duration,
    /// Events a source may write about one object at once...
    pub spam_burst: u32,
    /// ...and the refill rate of that budget, per second.
    pub spam_qps: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cache_size: 4096,
            max_events: 10,
            max_interval: Duration::from_secs(600),
            spam_burst: 25,
            spam_qps: 1.0 / 300.0,
        }
    }
}

/// What to write for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlated {
    /// The event to create (or, with a patch, the state the patch brings it to).
    pub event: Event,
    /// A strategic-merge patch of the existing event named `event.metadata.name`, for a
    /// repeat (`count` > 1). Should that event be gone, `event` is created instead.
    pub patch: Option<Value>,
}

/// The state of the three caches.
pub struct Correlator {
    config: Config,
    aggregator: Lru<Similar>,
    logger: Lru<Observation>,
    spam: Lru<TokenBucket>,
}

/// Similar events seen lately: their distinct messages and when the last one came.
struct Similar {
    messages: HashSet<String>,
    last: Timestamp,
}

/// The event written for a key: what a repeat patches.
struct Observation {
    count: i32,
    first_timestamp: Option<Time>,
    name: Option<String>,
    resource_version: Option<String>,
}

/// A token bucket that starts full and refills continuously.
struct TokenBucket {
    tokens: f64,
    last: Timestamp,
}

impl Correlator {
    pub fn new(config: Config) -> Correlator {
        Correlator {
            config,
            aggregator: Lru::new(config.cache_size),
            logger: Lru::new(config.cache_size),
            spam: Lru::new(config.cache_size),
        }
    }

    /// What to write for `event` observed at `now`; `None` when the spam filter drops it.
    pub fn correlate(&mut self, event: Event, now: Timestamp) -> Option<Correlated> {
        let (event, key) = self.aggregate(event, now);
        let (event, patch) = self.observe(event, key);
        if self.spammed(&event, now) {
            return None;
        }
        Some(Correlated { event, patch })
    }

    /// Records what the server answered for a written event (its name, count and resource
    /// version), so the next repeat patches that.
    pub fn update_state(&mut self, written: &Event) {
        self.logger.insert(
            event_key(written),
            Observation {
                count: written.count.unwrap_or(1),
                first_timestamp: written.first_timestamp.clone(),
                name: written.metadata.name.clone(),
                resource_version: written.metadata.resource_version.clone(),
            },
        );
    }

    /// The aggregator: the event itself with its full key, or past the threshold an
    /// aggregate event keyed by its similarity group.
    fn aggregate(&mut self, event: Event, now: Timestamp) -> (Event, String) {
        let key = event_key(&event);
        let (group, message) = aggregate_key(&event);
        let max_interval = self.config.max_interval;
        let fresh = || Similar {
            messages: HashSet::new(),
            last: now,
        };
        let mut similar = match self.aggregator.get_mut(&group) {
            Some(s) if elapsed(s.last, now) <= max_interval => std::mem::replace(s, fresh()),
            _ => fresh(),
        };
        similar.messages.insert(message);
        similar.last = now;
        let over = similar.messages.len() >= self.config.max_events;
        if over {
            // The set never grows past the threshold: forget any one message.
            if let Some(any) = similar.messages.iter().next().cloned() {
                similar.messages.remove(&any);
            }
        }
        self.aggregator.insert(group.clone(), similar);
        if !over {
            return (event, key);
        }
        let mut aggregate = event;
        let involved = aggregate.involved_object.name.clone().unwrap_or_default();
        aggregate.metadata.name = Some(event_name(&involved, now));
        aggregate.metadata.resource_version = None;
        aggregate.count = Some(1);
        aggregate.first_timestamp = Some(Time(now));
        aggregate.last_timestamp = Some(Time(now));
        let message = aggregate.message.take().unwrap_or_default();
        aggregate.message = Some(format!("{AGGREGATE_PREFIX}{message}"));
        (aggregate, group)
    }

    /// The logger: a repeat of an event written before continues it.
    fn observe(&mut self, mut event: Event, key: String) -> (Event, Option<Value>) {
        let mut patch = None;
        if let Some(last) = self.logger.get_mut(&key).filter(|o| o.count > 0) {
            event.metadata.name = last.name.clone();
            event.metadata.resource_version = last.resource_version.clone();
            event.first_timestamp = last.first_timestamp.clone();
            event.count = Some(last.count.saturating_add(1));
            // What client-go's two-way merge of the event against itself with these three
            // fields zeroed comes to.
            patch = Some(json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            }));
        }
        self.logger.insert(
            key,
            Observation {
                count: event.count.unwrap_or(1),
                first_timestamp: event.first_timestamp.clone(),
                name: event.metadata.name.clone(),
                resource_version: event.metadata.resource_version.clone(),
            },
        );
        (event, patch)
    }

    /// The spam filter: whether the event's source has used up its budget for the object.
    fn spammed(&mut self, event: &Event, now: Timestamp) -> bool {
        let key = spam_key(event);
        let (burst, qps) = (f64::from(self.config.spam_burst), self.config.spam_qps);
        let mut bucket = match self.spam.get_mut(&key) {
            Some(b) => TokenBucket {
                tokens: b.tokens,
                last: b.last,
            },
            None => TokenBucket {
                tokens: burst,
                last: now,
            },
        };
        let refill = elapsed(bucket.last, now).as_secs_f64() * qps;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = bucket.last.max(now);
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        self.spam.insert(key, bucket);
        !allowed
    }
}

/// `<object name>.<unix nanoseconds in hex>`, upstream's event names.
pub fn event_name(object: &str, at: Timestamp) -> String {
    format!("{object}.{:x}", at.as_nanosecond())
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// Joins key parts; the separator cannot occur in any of them.
fn join(parts: &[Option<&str>]) -> String {
    parts
        .iter()
        .map(|p| p.unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{0}")
}

fn source(event: &Event) -> (Option<&str>, Option<&str>) {
    let s = event.source.as_ref();
    (
        s.and_then(|s| s.component.as_deref()),
        s.and_then(|s| s.host.as_deref()),
    )
}

/// The identity of an event (client-go's `getEventKey`).
fn event_key(e: &Event) -> String {
    let (component, host) = source(e);
    let o = &e.involved_object;
    join(&[
        component,
        host,
        o.kind.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.field_path.as_deref(),
        o.uid.as_deref(),
        o.api_version.as_deref(),
        e.type_.as_deref(),
        e.reason.as_deref(),
        e.message.as_deref(),
    ])
}

/// Who wrote about what (client-go's `getSpamKey`).
fn spam_key(e: &Event) -> String {
    let (component, host) = source(e);
    let o = &e.involved_object;
    join(&[
        component,
        host,
        o.kind.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.uid.as_deref(),
        o.api_version.as_deref(),
    ])
}

/// The similarity group and the message that tells members apart
/// (client-go's `EventAggregatorByReasonFunc`).
fn aggregate_key(e: &Event) -> (String, String) {
    let (component, host) = source(e);
    let o = &e.involved_object;
    let group = join(&[
        component,
        host,
        o.kind.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.uid.as_deref(),
        o.api_version.as_deref(),
        e.type_.as_deref(),
        e.reason.as_deref(),
        e.reporting_component.as_deref(),
        e.reporting_instance.as_deref(),
    ]);
    (group, e.message.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests;

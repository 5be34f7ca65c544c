//! One core/v1 event recorder for every peapod component, after client-go's
//! `tools/record`.
//!
//! Owns: building an event the way client-go's legacy recorder does (name
//! `<object>.<nanoseconds in hex>`, `count` 1, both timestamps now, the recorder's source and
//! reporting controller/instance), the correlator that turns a stream of events into creates
//! and count patches (`correlator`: logger, aggregator, spam filter, all pure), and the sink
//! that writes them through the API (`sink`).
//!
//! Recording never waits for the API: [`Recorder::event`] puts the event on a bounded queue
//! (1000, client-go's) and drops it when the queue is full, as client-go's broadcaster does;
//! the [`Sink`] task writes them one at a time, retrying transport errors.
//!
//! Does not own: what events a component records (reasons and messages stay with the
//! component), events.k8s.io/v1 recording (`series`, which client-go's core recorder never
//! sets either).
//!
//! May depend on: `k8s-openapi`, `kube` (client only), tokio. Nothing from the workspace.

pub mod correlator;
mod lru;
mod sink;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tracing::warn;

pub use correlator::{Config, Correlated, Correlator, AGGREGATE_PREFIX};
pub use sink::Sink;

/// Events queued for the sink before new ones are dropped (client-go's `maxQueuedEvents`).
pub const QUEUE_LENGTH: usize = 1000;

/// An event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Who records: written on every event as `source` and `reportingComponent` /
/// `reportingInstance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `source.component` (`kubelet`, `default-scheduler`).
    pub component: String,
    /// `source.host`: the node, for node components.
    pub host: Option<String>,
    pub reporting_controller: String,
    pub reporting_instance: String,
}

/// A cheap, cloneable handle components record events through.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    source: Arc<Source>,
    /// Events dropped since the queue last had room (so a long outage logs once).
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder and the sink that writes what it records; run the sink
    /// ([`Sink::run`]) for events to reach the API.
    pub fn new(client: kube::Client, source: Source) -> (Recorder, Sink) {
        let (tx, rx) = mpsc::channel(QUEUE_LENGTH);
        let dropped = Arc::new(AtomicU64::new(0));
        let recorder = Recorder {
            tx,
            source: Arc::new(source),
            dropped: dropped.clone(),
        };
        (recorder, Sink::new(client, rx, dropped))
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Records an event about `regarding`.
    pub fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.send(make_event(
            &self.source,
            regarding,
            type_,
            reason,
            &message.into(),
            None,
            Timestamp::now(),
        ));
    }

    /// Records an event about `regarding` naming the `action` taken (the scheduler's
    /// `Binding`, `Scheduling`).
    pub fn event_with_action(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        message: impl Into<String>,
    ) {
        self.send(make_event(
            &self.source,
            regarding,
            type_,
            reason,
            &message.into(),
            Some(action),
            Timestamp::now(),
        ));
    }

    fn send(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    warn!(
                        reason = event.reason.as_deref().unwrap_or_default(),
                        "too many queued events; dropping events until the queue drains"
                    );
                }
            }
            // The sink has stopped (shutdown): nothing records any more.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The event client-go's legacy recorder makes: named `<object>.<nanoseconds in hex>` in
/// the object's namespace (`default` for cluster-scoped objects), `count` 1, first and last
/// timestamp `now`, no `eventTime` and no `series`.
pub fn make_event(
    source: &Source,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
    action: Option<&str>,
    now: Timestamp,
) -> Event {
    let namespace = regarding
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let name = regarding.name.as_deref().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(correlator::event_name(name, now)),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: regarding.clone(),
        type_: Some(type_.as_str().into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        action: action.map(str::to_string),
        source: Some(EventSource {
            component: Some(source.component.clone()),
            host: source.host.clone(),
        }),
        reporting_component: Some(source.reporting_controller.clone()),
        reporting_instance: Some(source.reporting_instance.clone()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        ..Event::default()
    }
}

/// A reference to `obj` as events name it: apiVersion, kind, namespace, name, uid and
/// resourceVersion.
pub fn object_reference<K>(obj: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn events_are_made_as_client_go_makes_them() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("nginx".into());
        pod.metadata.namespace = Some("web".into());
        pod.metadata.uid = Some("u-1".into());
        pod.metadata.resource_version = Some("7".into());
        let source = Source {
            component: "kubelet".into(),
            host: Some("node-1".into()),
            reporting_controller: "kubelet".into(),
            reporting_instance: "node-1".into(),
        };
        let now = Timestamp::from_second(1).unwrap_or(Timestamp::UNIX_EPOCH);
        let reference = object_reference(&pod);
        let ev = make_event(
            &source,
            &reference,
            EventType::Warning,
            "BackOff",
            "Back-off",
            None,
            now,
        );
        assert_eq!(ev.metadata.name.as_deref(), Some("nginx.3b9aca00"));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(
            (
                reference.api_version.as_deref(),
                reference.kind.as_deref(),
                reference.uid.as_deref(),
                reference.resource_version.as_deref()
            ),
            (Some("v1"), Some("Pod"), Some("u-1"), Some("7"))
        );
        assert_eq!(ev.involved_object, reference);
        let src = ev.source.clone().unwrap_or_default();
        assert_eq!(
            (src.component.as_deref(), src.host.as_deref()),
            (Some("kubelet"), Some("node-1"))
        );
        assert_eq!(
            (
                ev.reporting_component.as_deref(),
                ev.reporting_instance.as_deref()
            ),
            (Some("kubelet"), Some("node-1"))
        );
        assert_eq!(
            (ev.count, ev.type_.as_deref(), ev.reason.as_deref()),
            (Some(1), Some("Warning"), Some("BackOff"))
        );
        assert_eq!(ev.first_timestamp, Some(Time(now)));
        assert_eq!(ev.last_timestamp, Some(Time(now)));
        assert!(ev.event_time.is_none() && ev.series.is_none() && ev.action.is_none());

        // Cluster-scoped objects' events go to `default`.
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("node-1".into()),
            ..ObjectReference::default()
        };
        let ev = make_event(
            &source,
            &node,
            EventType::Normal,
            "Starting",
            "",
            Some("Start"),
            now,
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(ev.action.as_deref(), Some("Start"));
    }
}

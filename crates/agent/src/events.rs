//! Events the agent records about pods, as the kubelet does: core/v1 Events with
//! `source.component: kubelet` and the node as host. Recording never blocks a pod worker:
//! events queue to one writer task, which folds repeats of the same event into a count, like
//! client-go's event correlator.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use supervisor::Outage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Repeats within this window bump the count of the existing event.
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

struct Record {
    involved: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
    at: jiff::Timestamp,
}

/// A cheap handle pod workers record events through.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

impl Recorder {
    /// The handle, and the writer that sends what it records (run by the agent's `run`).
    pub fn new(client: kube::Client, node_name: String) -> (Recorder, Writer) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            client,
            node: node_name,
            queue: Arc::new(tokio::sync::Mutex::new(rx)),
        };
        (Recorder { tx }, writer)
    }

    pub fn pod_event(&self, pod: &Pod, kind: EventType, reason: &str, message: impl Into<String>) {
        self.pod_event_for(pod, None, kind, reason, message)
    }

    /// An event about one container of the pod (`fieldPath: spec.containers{name}`), as the
    /// kubelet records Pulling/Created/Started/Killing.
    pub fn container_event(
        &self,
        pod: &Pod,
        field_path: String,
        kind: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.pod_event_for(pod, Some(field_path), kind, reason, message)
    }

    fn pod_event_for(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        kind: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        let _ = self.tx.send(Record {
            involved,
            kind,
            reason: reason.into(),
            message: message.into(),
            at: jiff::Timestamp::now(),
        });
    }
}

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    when: Instant,
}

/// Writes what the recorder queued, one event at a time. The queue outlives a writer, so a
/// restarted one carries on with what was recorded meanwhile.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    node: String,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Record>>>,
}

impl Writer {
    /// Writes events until `shutdown`; those still queued then are dropped (events are best
    /// effort, as the kubelet's are).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut rx = self.queue.lock().await;
        let mut seen = HashMap::new();
        let mut outage = Outage::new("event recording");
        loop {
            let rec = tokio::select! {
                _ = shutdown.cancelled() => return,
                rec = rx.recv() => rec,
            };
            let Some(rec) = rec else { return };
            write(&self.client, &self.node, &mut seen, &mut outage, rec).await;
        }
    }
}

type SeenKey = (String, Option<String>, String, String);

async fn write(
    client: &kube::Client,
    node: &str,
    seen: &mut HashMap<SeenKey, Seen>,
    outage: &mut Outage,
    rec: Record,
) {
    let namespace = rec
        .involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let key = (
        rec.involved.uid.clone().unwrap_or_default(),
        rec.involved.field_path.clone(),
        rec.reason.clone(),
        rec.message.clone(),
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Some(prev) = seen.get_mut(&key) {
        if prev.when.elapsed() < AGGREGATE_WINDOW {
            prev.count += 1;
            prev.when = Instant::now();
            let patch = serde_json::json!({
                "count": prev.count,
                "lastTimestamp": Time(rec.at),
            });
            match events
                .patch(&prev.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return outage.succeeded(),
                Err(e) if crate::unreachable(&e) => return outage.failed(&e),
                Err(e) => {
                    // Expired or deleted: fall through and record it afresh.
                    outage.succeeded();
                    warn!(error = %e, event = %prev.name, namespace = %prev.namespace, "bumping event count")
                }
            }
        }
    }
    let pod_name = rec.involved.name.clone().unwrap_or_default();
    let name = format!("{}.{:x}", pod_name, rec.at.as_nanosecond());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: rec.involved,
        reason: Some(rec.reason),
        message: Some(rec.message),
        type_: Some(match rec.kind {
            EventType::Normal => "Normal".into(),
            EventType::Warning => "Warning".into(),
        }),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_string()),
        first_timestamp: Some(Time(rec.at)),
        last_timestamp: Some(Time(rec.at)),
        event_time: None::<MicroTime>,
        count: Some(1),
        ..Default::default()
    };
    match events.create(&PostParams::default(), &event).await {
        Ok(_) => {
            outage.succeeded();
            if seen.len() > 4096 {
                seen.retain(|_, s| s.when.elapsed() < AGGREGATE_WINDOW);
            }
            seen.insert(
                key,
                Seen {
                    name,
                    namespace,
                    count: 1,
                    when: Instant::now(),
                },
            );
        }
        // The API server is out of reach: the event is dropped (best effort, as upstream's
        // recorder after its retries), and the outage logged once, not per event.
        Err(e) if crate::unreachable(&e) => outage.failed(&e),
        // The namespace may be going away with the pod; nothing to record then.
        Err(e) => {
            outage.succeeded();
            warn!(error = %e, "recording event")
        }
    }
}

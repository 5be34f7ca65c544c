//! Events the agent records about pods, as the kubelet does: core/v1 Events with
//! `source.component: kubelet` and the node as host. Recording never blocks a pod worker:
//! events queue to one writer task, which folds repeats of the same event into a count, like
//! client-go's event correlator.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
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
    pub fn start(client: kube::Client, node_name: String) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(client, node_name, rx));
        Recorder { tx }
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

async fn writer(client: kube::Client, node: String, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut seen: HashMap<(String, Option<String>, String, String), Seen> = HashMap::new();
    while let Some(rec) = rx.recv().await {
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
                    Ok(_) => continue,
                    // Expired or deleted: fall through and record it afresh.
                    Err(e) => {
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
                host: Some(node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            first_timestamp: Some(Time(rec.at)),
            last_timestamp: Some(Time(rec.at)),
            event_time: None::<MicroTime>,
            count: Some(1),
            ..Default::default()
        };
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {
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
            // The namespace may be going away with the pod; nothing to record then.
            Err(e) => warn!(error = %e, "recording event"),
        }
    }
}

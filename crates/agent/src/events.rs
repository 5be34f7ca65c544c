//! Events the agent records about pods, as the kubelet does: core/v1 Events with
//! `source.component: kubelet` and the node as host (and as `reportingInstance`), written by
//! the shared recorder (`record`: client-go's correlator, a bounded queue that never blocks
//! a pod worker).

use k8s_openapi::api::core::v1::Pod;

pub use record::EventType;

/// A cheap handle pod workers record events through.
#[derive(Clone)]
pub struct Recorder {
    inner: record::Recorder,
    node_name: String,
}

impl Recorder {
    /// The handle, and the sink that writes what it records (run, and restarted, by the
    /// agent's `run`).
    pub fn new(client: kube::Client, node_name: String) -> (Recorder, record::Sink) {
        let source = record::Source {
            component: "kubelet".into(),
            host: Some(node_name.clone()),
            reporting_controller: "kubelet".into(),
            reporting_instance: node_name.clone(),
        };
        let (inner, sink) = record::Recorder::new(client, source);
        (Recorder { inner, node_name }, sink)
    }

    /// An event about the node itself, referenced as the kubelet does (its UID is its name).
    pub fn node_event(&self, kind: EventType, reason: &str, message: impl Into<String>) {
        let regarding = k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.node_name.clone()),
            uid: Some(self.node_name.clone()),
            ..Default::default()
        };
        self.inner.event(&regarding, kind, reason, message);
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
        let mut regarding = record::object_reference(pod);
        regarding.field_path = field_path;
        self.inner.event(&regarding, kind, reason, message);
    }
}

//! The `endpoints.kubernetes.io/last-change-trigger-time` annotation's value (upstream's
//! `TriggerTimeTracker`, shared by the EndpointSlice and Endpoints controllers): when the
//! earliest change that this sync reflects happened — a pod's `Ready` transition or the
//! Service's creation — so a consumer can measure how long a change took to be programmed.
//!
//! ```text
//!  first sync of a Service       ─▶ its creationTimestamp
//!  later syncs                   ─▶ the earliest pod Ready transition (or Service creation)
//!                                   newer than what the previous sync saw; none: no annotation
//!  Service deleted               ─▶ forgotten
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;

use crate::controller_utils::pod_ready_condition;

#[derive(Debug, Default, Clone)]
struct State {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

/// Per Service, the trigger times the previous sync saw.
#[derive(Debug, Default)]
pub struct TriggerTimeTracker {
    states: Mutex<HashMap<String, State>>,
}

impl TriggerTimeTracker {
    /// The annotation's value for this sync of `service` (key `namespace/name`) over its
    /// `pods`, remembering what it saw for the next one.
    pub fn compute(&self, key: &str, service: &Service, pods: &[&Pod]) -> Option<Timestamp> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let old = states.get(key).cloned();
        let known = old.is_some();
        let old = old.unwrap_or_default();
        let mut earliest: Option<Timestamp> = None;
        let mut seen = HashMap::new();
        for pod in pods {
            let Some(t) = pod_ready_condition(pod)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
            else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if old.pods.get(&name).is_none_or(|before| t > *before) {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
            seen.insert(name, t);
        }
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(t) = created {
            if old.service.is_none_or(|before| t > before) {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        states.insert(
            key.to_string(),
            State {
                service: created,
                pods: seen,
            },
        );
        if known {
            earliest
        } else {
            created
        }
    }

    /// The Service is gone.
    pub fn delete(&self, key: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.remove(key);
    }
}

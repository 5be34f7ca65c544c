//! Conversion at the API edge: events.k8s.io/v1 events are stored as core/v1 events (as
//! upstream stores them), and converted on the way in and out.

use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event as EventV1;
use serde_json::Value;

use crate::errors::ApiError;
use crate::registry::Resource;

pub fn is_events_v1(resource: &Resource) -> bool {
    resource.group == "events.k8s.io"
}

/// An events.k8s.io/v1 body as the core/v1 event it is stored as.
pub fn events_v1_to_core(v: Value) -> Result<Value, String> {
    let e: EventV1 = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(api::events::core_event_from_events_v1(e)).map_err(|e| e.to_string())
}

/// As [`events_v1_to_core`], also naming the fields of the events.k8s.io body that its
/// schema does not have (for field validation).
pub fn events_v1_to_core_reporting(v: Value) -> Result<(Value, Vec<String>), String> {
    let mut unknown = Vec::new();
    let e: EventV1 =
        serde_ignored::deserialize(v, |path| unknown.push(crate::strategy::field_path(&path)))
            .map_err(|e| e.to_string())?;
    let core = serde_json::to_value(api::events::core_event_from_events_v1(e))
        .map_err(|e| e.to_string())?;
    Ok((core, unknown))
}

pub fn core_to_events_v1(v: Value) -> Result<Value, ApiError> {
    let e: CoreEvent = serde_json::from_value(v).map_err(|e| ApiError::Internal(e.to_string()))?;
    serde_json::to_value(api::events::events_v1_from_core_event(e))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub fn core_to_events_v1_bytes(rendered: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v: Value =
        serde_json::from_slice(rendered).map_err(|e| ApiError::Internal(e.to_string()))?;
    serde_json::to_vec(&core_to_events_v1(v)?).map_err(|e| ApiError::Internal(e.to_string()))
}

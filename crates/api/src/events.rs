//! events.k8s.io/v1 ⇄ core/v1 Event conversion.
//!
//! Owns: mapping between the two API shapes of the same stored object (upstream stores one
//! Event type and serves it through both groups): `regarding`↔`involvedObject`,
//! `note`↔`message`, `deprecatedSource`↔`source`, `deprecated{First,Last}Timestamp`/
//! `deprecatedCount`↔`{first,last}Timestamp`/`count`, `reportingController`↔
//! `reportingComponent`, and the fields both share.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;

/// An events.k8s.io/v1 Event as the core/v1 object it is stored as.
pub fn core_event_from_events_v1(e: events::Event) -> core::Event {
    core::Event {
        metadata: e.metadata,
        involved_object: e.regarding.unwrap_or_default(),
        message: e.note,
        source: e.deprecated_source,
        first_timestamp: e.deprecated_first_timestamp,
        last_timestamp: e.deprecated_last_timestamp,
        count: e.deprecated_count,
        reporting_component: e.reporting_controller,
        reporting_instance: e.reporting_instance,
        event_time: e.event_time,
        series: e.series.map(|s| core::EventSeries {
            count: Some(s.count),
            last_observed_time: Some(s.last_observed_time),
        }),
        action: e.action,
        reason: e.reason,
        related: e.related,
        type_: e.type_,
    }
}

/// A core/v1 Event served through events.k8s.io/v1.
pub fn events_v1_from_core_event(e: core::Event) -> events::Event {
    // events.k8s.io's series requires both fields; a partial core series keeps what it has.
    let series = e.series.map(|s| events::EventSeries {
        count: s.count.unwrap_or(0),
        last_observed_time: s.last_observed_time.unwrap_or(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::UNIX_EPOCH),
        ),
    });
    let empty_ref = e.involved_object == core::ObjectReference::default();
    events::Event {
        metadata: e.metadata,
        regarding: if empty_ref {
            None
        } else {
            Some(e.involved_object)
        },
        note: e.message,
        deprecated_source: e.source,
        deprecated_first_timestamp: e.first_timestamp,
        deprecated_last_timestamp: e.last_timestamp,
        deprecated_count: e.count,
        reporting_controller: e.reporting_component,
        reporting_instance: e.reporting_instance,
        event_time: e.event_time,
        series,
        action: e.action,
        reason: e.reason,
        related: e.related,
        type_: e.type_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn round_trips() {
        let v1: events::Event = serde_json::from_value(json!({
            "metadata": {"name": "e", "namespace": "d"},
            "eventTime": "2025-06-01T11:59:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2025-06-01T11:59:30.000000Z"},
            "reportingController": "example.com/ctrl", "reportingInstance": "ctrl-1",
            "action": "Scale", "reason": "Scaled", "type": "Normal",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "d"},
            "related": {"kind": "ReplicaSet", "name": "web-1"},
            "note": "scaled up",
            "deprecatedSource": {"component": "old"}, "deprecatedCount": 4,
            "deprecatedFirstTimestamp": "2025-06-01T11:00:00Z", "deprecatedLastTimestamp": "2025-06-01T11:30:00Z"
        }))
        .unwrap_or_default();
        let core_ev = core_event_from_events_v1(v1.clone());
        let c = serde_json::to_value(&core_ev).unwrap_or(Value::Null);
        assert_eq!(c["involvedObject"]["name"], "web");
        assert_eq!(c["message"], "scaled up");
        assert_eq!(c["reportingComponent"], "example.com/ctrl");
        assert_eq!(c["source"]["component"], "old");
        assert_eq!(c["count"], 4);
        assert_eq!(c["firstTimestamp"], "2025-06-01T11:00:00Z");
        assert_eq!(c["series"]["count"], 2);
        assert_eq!(events_v1_from_core_event(core_ev), v1);
    }

    #[test]
    fn legacy_event_through_new_api() {
        let core_ev: core::Event = serde_json::from_value(json!({
            "metadata": {"name": "p.1", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Pulled", "message": "ok", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2025-06-01T11:00:00Z", "lastTimestamp": "2025-06-01T11:00:00Z", "count": 1, "type": "Normal"
        }))
        .unwrap_or_default();
        let v = serde_json::to_value(events_v1_from_core_event(core_ev)).unwrap_or(Value::Null);
        assert_eq!(v["regarding"]["name"], "p");
        assert_eq!(v["note"], "ok");
        assert_eq!(v["deprecatedSource"]["host"], "n1");
        assert_eq!(v["deprecatedCount"], 1);
        assert!(v.get("series").is_none());
    }
}

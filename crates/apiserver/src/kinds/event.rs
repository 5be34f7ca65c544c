//! core/v1 Event, also served as events.k8s.io/v1 Event ([`EVENTS_V1`]): one storage
//! (core/v1, as upstream stores both), converted at the edge. Each form validates as its
//! API version does (events.k8s.io adds the new-API rules).

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::events::v1::Event as EventV1;
use serde_json::{json, Value};

use crate::convert::{self, Conversion};
use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, NAME};

fn validate_core(e: &Event) -> api::FieldErrors {
    api::validate_event(e, false)
}
fn validate_core_update(new: &Event, old: &Event) -> api::FieldErrors {
    api::validate_event_update(new, old, false)
}
fn validate_v1(e: &Event) -> api::FieldErrors {
    api::validate_event(e, true)
}
fn validate_v1_update(new: &Event, old: &Event) -> api::FieldErrors {
    api::validate_event_update(new, old, true)
}

/// Writes through core/v1: the legacy rules (upstream keeps them for compatibility).
pub const STRATEGY: TypedStrategy<Event> = TypedStrategy::new(validate_core, validate_core_update);

/// Writes through events.k8s.io/v1, after conversion to the stored core/v1 form.
pub const STRATEGY_V1: TypedStrategy<Event> = TypedStrategy::new(validate_v1, validate_v1_update);

const COLUMNS: &[Column] = &[
    col("Last Seen", "The last time the event was observed.", 0),
    col("Type", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
    col("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
    col("Object", "The object that this event is about.", 0),
    col("Subobject", "The subobject (container) that this event is about.", 1),
    col("Source", "The component reporting this event.", 1),
    col("Message", "A human-readable description of the status of this operation.", 0),
    col("First Seen", "The time at which the event was first recorded.", 1),
    col("Count", "The number of times this event has occurred.", 1),
    NAME,
];

fn core_cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let row = api::printer::event_row(&table::typed(obj)?, now);
    Ok(vec![
        json!(row.last_seen),
        json!(row.type_),
        json!(row.reason),
        json!(row.object),
        json!(row.subobject),
        json!(row.source),
        json!(row.message),
        json!(row.first_seen),
        json!(row.count),
        table::name(obj),
    ])
}

/// An events.k8s.io/v1 object prints as the core/v1 event it is.
fn v1_cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let core = to_storage(obj.clone()).map_err(ApiError::Internal)?.0;
    core_cells(&core, now)
}

fn to_storage(v: Value) -> Result<convert::Stored, String> {
    convert::typed_to_storage::<EventV1, Event>(v, api::core_event_from_events_v1)
}

fn from_storage(v: Value) -> Result<Value, String> {
    convert::typed_from_storage::<Event, EventV1>(v, api::events_v1_from_core_event)
}

/// core/v1 Events.
pub static RESOURCE: Resource = CORE;

/// events.k8s.io/v1 Events: the same objects in the newer form.
pub static EVENTS_V1: Resource = Resource {
    group: "events.k8s.io",
    version: "v1",
    strategy: &STRATEGY_V1,
    schema: openapi::def::<EventV1>,
    list_schema: super::list(
        "EventList",
        "EventList is a list of Event objects.",
        "items is a list of schema objects.",
        "metadata is the standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    ),
    printer: Printer {
        columns: COLUMNS,
        cells: v1_cells,
    },
    conversion: Some(Conversion {
        to_storage,
        from_storage,
    }),
    ..CORE
};

/// The core/v1 descriptor, a const so the events.k8s.io one can start from it.
const CORE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    storage: "events",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Event>,
    list_schema: super::list(
        "EventList",
        "EventList is a list of events.",
        "List of events",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells: core_cells,
    },
    fields: Fields {
        names: api::selector::EVENT_FIELDS,
        get: api::selector::event_fields,
        aliases: &[],
        own_conversion: true,
    },
    delete: delete::PLAIN,
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

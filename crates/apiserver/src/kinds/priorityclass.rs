//! scheduling.k8s.io/v1 PriorityClass (cluster-scoped).

use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<PriorityClass> = TypedStrategy {
    default: api::default_priority_class,
    ..TypedStrategy::new(
        api::validate_priority_class,
        api::validate_priority_class_update,
    )
};

const COLUMNS: &[Column] = &[
    NAME,
    col("Value", "The value of the priority class", 0),
    col(
        "Global-Default",
        "Whether this priority class is the global default",
        0,
    ),
    AGE,
    col("PreemptionPolicy", "The preemption policy", 0),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    Ok(vec![
        table::name(obj),
        json!(obj["value"].as_i64().unwrap_or(0)),
        json!(obj["globalDefault"].as_bool().unwrap_or(false)),
        json!(table::age(obj, now)),
        json!(obj["preemptionPolicy"]
            .as_str()
            .unwrap_or("PreemptLowerPriority")),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "scheduling.k8s.io",
    version: "v1",
    plural: "priorityclasses",
    singular: "priorityclass",
    kind: "PriorityClass",
    namespaced: false,
    short_names: &["pc"],
    categories: &[],
    subresources: &[],
    storage: "priorityclasses",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<PriorityClass>,
    list_schema: super::list(
        "PriorityClassList",
        "PriorityClassList is a collection of priority classes.",
        "items is the list of PriorityClasses",
        "Standard list metadata More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: filter::CLUSTER_META,
    delete: delete::PLAIN,
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

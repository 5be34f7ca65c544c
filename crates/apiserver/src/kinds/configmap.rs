//! core/v1 ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

/// Validation, including `immutable: true`.
pub static STRATEGY: TypedStrategy<ConfigMap> =
    TypedStrategy::new(api::validate_config_map, api::validate_config_map_update);

const COLUMNS: &[Column] = &[NAME, col("Data", "Number of data entries.", 0), AGE];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let n = obj["data"].as_object().map_or(0, |m| m.len())
        + obj["binaryData"].as_object().map_or(0, |m| m.len());
    Ok(vec![
        table::name(obj),
        json!(n),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    storage: "configmaps",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<ConfigMap>,
    list_schema: super::list(
        "ConfigMapList",
        "ConfigMapList is a resource containing a list of ConfigMap objects.",
        "Items is the list of ConfigMaps.",
        "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: filter::NAMESPACED_META,
    delete: delete::PLAIN,
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

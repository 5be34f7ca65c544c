//! core/v1 Secret.

use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

/// `type` defaults to Opaque and `stringData` folds into `data`; validation per type.
pub static STRATEGY: TypedStrategy<Secret> = TypedStrategy {
    default: api::default_secret,
    ..TypedStrategy::new(api::validate_secret, api::validate_secret_update)
};

const COLUMNS: &[Column] = &[
    NAME,
    col("Type", "The type of the secret", 0),
    col("Data", "Number of data entries.", 0),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let n = obj["data"].as_object().map_or(0, |m| m.len());
    Ok(vec![
        table::name(obj),
        json!(obj["type"].as_str().unwrap_or("")),
        json!(n),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage: "secrets",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Secret>,
    list_schema: super::list(
        "SecretList",
        "SecretList is a list of Secret.",
        "Items is a list of secret objects. More info: https://kubernetes.io/docs/concepts/configuration/secret",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: api::selector::SECRET_FIELDS,
        get: api::selector::secret_fields,
        aliases: &[],
        own_conversion: true,
    },
    delete: delete::PLAIN,
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

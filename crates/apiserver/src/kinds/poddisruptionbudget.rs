//! policy/v1 PodDisruptionBudget, with its `status` subresource (written by the disruption
//! controller and by `pods/eviction`): upstream's `pkg/registry/policy/poddisruptionbudget`
//! and the `kubectl get pdb` table.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

fn nothing(_: &mut PodDisruptionBudget) {}

pub static STRATEGY: TypedStrategy<PodDisruptionBudget> = TypedStrategy {
    default: nothing,
    on_create: api::policy::prepare_pdb_for_create,
    prepare_for_update: api::policy::prepare_pdb_for_update,
    copy_all_but_status: api::policy::pdb_copy_all_but_status,
    validate_status_update: api::policy::validate_pdb_status_update,
    ..TypedStrategy::new(api::policy::validate_pdb, api::policy::validate_pdb_update)
};

/// Upstream's `podDisruptionBudgetColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "The minimum number of pods that must be available.",
        0,
    ),
    col(
        "Max Unavailable",
        "The maximum number of pods that may be unavailable.",
        0,
    ),
    Column {
        kind: "integer",
        ..col(
            "Allowed Disruptions",
            "Calculated number of pods that may be disrupted at this time.",
            0,
        )
    },
    AGE,
];

/// `IntOrString.String()`, or `N/A` when unset.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".into(),
    }
}

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    Ok(vec![
        table::name(obj),
        json!(int_or_string(&obj["spec"]["minAvailable"])),
        json!(int_or_string(&obj["spec"]["maxUnavailable"])),
        json!(obj["status"]["disruptionsAllowed"].as_i64().unwrap_or(0)),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "policy",
    version: "v1",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    kind: "PodDisruptionBudget",
    namespaced: true,
    short_names: &["pdb"],
    categories: &[],
    subresources: &[STATUS],
    storage: "poddisruptionbudgets",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<PodDisruptionBudget>,
    list_schema: super::list(
        "PodDisruptionBudgetList",
        "PodDisruptionBudgetList is a collection of PodDisruptionBudgets.",
        "Items is a list of PodDisruptionBudgets",
        super::LIST_METADATA,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_upstreams() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells(&pdb, now).unwrap_or_default(),
            vec![
                json!("web"),
                json!("50%"),
                json!("N/A"),
                json!(1),
                json!("<unknown>")
            ]
        );
    }
}

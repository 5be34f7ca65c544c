//! coordination.k8s.io/v1 Lease: node heartbeats and leader election. The smallest kind,
//! and the worked example of ARCHITECTURE.md §7 "Adding a kind".

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

/// Defaults and validation: upstream's `ValidateLease` / `ValidateLeaseUpdate`.
pub static STRATEGY: TypedStrategy<Lease> =
    TypedStrategy::new(api::validate_lease, api::validate_lease_update);

const COLUMNS: &[Column] = &[NAME, col("Holder", "The holder of the lease", 0), AGE];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    Ok(vec![
        table::name(obj),
        json!(obj["spec"]["holderIdentity"].as_str().unwrap_or("")),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage: "leases",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Lease>,
    list_schema: super::list(
        "LeaseList",
        "LeaseList is a list of Lease objects.",
        "items is a list of schema objects.",
        "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
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

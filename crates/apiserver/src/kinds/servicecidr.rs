//! `networking.k8s.io/v1` ServiceCIDR (cluster-scoped, with `status`): the ranges
//! ClusterIPs are allocated from. The API server keeps the default one, `kubernetes`, for
//! `--service-cidr` (`crate::services`).

use k8s_openapi::api::networking::v1::ServiceCIDR;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<ServiceCIDR> = TypedStrategy {
    on_create: api::networking::prepare_service_cidr_for_create,
    prepare_for_update: api::networking::prepare_service_cidr_for_update,
    copy_all_but_status: api::networking::service_cidr_status_only,
    ..TypedStrategy::new(
        api::networking::validate_service_cidr,
        api::networking::validate_service_cidr_update,
    )
};

/// Upstream's `serviceCIDRColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col("CIDRs", "cidrs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable.", 0),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let sc: ServiceCIDR = table::typed(obj)?;
    let cidrs = sc.spec.and_then(|s| s.cidrs).unwrap_or_default().join(",");
    Ok(vec![
        table::name(obj),
        json!(cidrs),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    plural: "servicecidrs",
    singular: "servicecidr",
    kind: "ServiceCIDR",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[STATUS],
    storage: "servicecidrs",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<ServiceCIDR>,
    list_schema: super::list(
        "ServiceCIDRList",
        "ServiceCIDRList contains a list of ServiceCIDR objects.",
        "items is the list of ServiceCIDRs.",
        "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
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

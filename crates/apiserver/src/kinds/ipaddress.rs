//! `networking.k8s.io/v1` IPAddress (cluster-scoped): one per allocated ClusterIP, named
//! by the address and pointing at its Service, as upstream's ClusterIP allocator keeps
//! them (`crate::services::ipalloc`). Creating one is what claims an address, so two API
//! servers can never hand out the same one.

use k8s_openapi::api::networking::v1::IPAddress;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<IPAddress> = TypedStrategy::new(
    api::networking::validate_ip_address,
    api::networking::validate_ip_address_update,
);

/// Upstream's `ipAddressColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col("ParentRef", "parentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object.", 0),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let ip: IPAddress = table::typed(obj)?;
    let p = &ip.spec.parent_ref;
    let mut parent = match p.group.as_deref().filter(|g| !g.is_empty()) {
        Some(g) => format!("{}.{g}", p.resource).to_lowercase(),
        None => p.resource.to_lowercase(),
    };
    if let Some(ns) = p.namespace.as_deref().filter(|n| !n.is_empty()) {
        parent.push('/');
        parent.push_str(ns);
    }
    parent.push('/');
    parent.push_str(&p.name);
    Ok(vec![
        table::name(obj),
        json!(parent),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    plural: "ipaddresses",
    singular: "ipaddress",
    kind: "IPAddress",
    namespaced: false,
    short_names: &["ip"],
    categories: &[],
    subresources: &[],
    storage: "ipaddresses",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<IPAddress>,
    list_schema: super::list(
        "IPAddressList",
        "IPAddressList contains a list of IPAddress.",
        "items is the list of IPAddresses.",
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

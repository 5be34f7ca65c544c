//! core/v1 Endpoints (upstream's `pkg/registry/core/endpoint`): the protocol default,
//! `ValidateEndpoints`, and the `ENDPOINTS` column (`10.0.0.1:80,10.0.0.2:80 + 1 more...`).
//! Written by the Endpoints controller, the API servers' `kubernetes` reconciler and users.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<Endpoints> = TypedStrategy {
    default: api::discovery::default_endpoints,
    ..TypedStrategy::new(
        api::discovery::validate_endpoints,
        api::discovery::validate_endpoints_update,
    )
};

/// Upstream's `endpointColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.", 0),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let ep: Endpoints = table::typed(obj)?;
    Ok(vec![
        table::name(obj),
        json!(format_endpoints(&ep)),
        json!(table::age(obj, now)),
    ])
}

/// `formatEndpoints`: the first three ready `ip:port` pairs (bare IPs for port-less
/// subsets), then `+ N more...`; `<none>` without subsets.
pub fn format_endpoints(ep: &Endpoints) -> String {
    let subsets = ep.subsets.as_deref().unwrap_or(&[]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let (mut more, mut count) = (false, 0usize);
    for ss in subsets {
        let addrs = ss.addresses.as_deref().unwrap_or(&[]);
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip: Result<std::net::IpAddr, _> = a.ip.parse();
                list.push(match ip {
                    Ok(std::net::IpAddr::V6(_)) => format!("[{}]:{}", a.ip, p.port),
                    _ => format!("{}:{}", a.ip, p.port),
                });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    storage: "services/endpoints",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Endpoints>,
    list_schema: super::list(
        "EndpointsList",
        "EndpointsList is a list of endpoints. Deprecated: This API is deprecated in v1.33+.",
        "List of endpoints.",
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
    fn endpoints_cell_is_upstreams() {
        let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
                         "ports": [{"port": 80}]}]})).unwrap_or_default();
        assert_eq!(
            format_endpoints(&ep),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
        );
        assert_eq!(format_endpoints(&Endpoints::default()), "<none>");
        let headless: Endpoints = serde_json::from_value(json!({"metadata": {"name": "h"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}))
        .unwrap_or_default();
        assert_eq!(format_endpoints(&headless), "10.0.0.1");
    }
}

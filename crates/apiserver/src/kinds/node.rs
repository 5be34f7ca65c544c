//! core/v1 Node (cluster-scoped, stored under `minions` as upstream), with its `status`
//! subresource.

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

fn copy_status(new: &mut Node, old: &Node) {
    new.status = old.status.clone();
}

fn copy_all_but_status(new: &mut Node, old: &Node) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

pub static STRATEGY: TypedStrategy<Node> = TypedStrategy {
    default: api::default_node,
    prepare_for_update: copy_status,
    copy_all_but_status,
    ..TypedStrategy::new(api::validate_node, api::validate_node_update)
};

const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "The status of the node", 0),
    col("Roles", "The roles of the node", 0),
    AGE,
    col("Version", "Kubelet Version reported by the node.", 0),
    col("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    col("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let row = api::printer::node_row(&table::typed(obj)?, now);
    Ok(vec![
        table::name(obj),
        json!(row.status),
        json!(row.roles),
        json!(row.age),
        json!(row.version),
        json!(row.internal_ip),
        json!(row.external_ip),
        json!(row.os_image),
        json!(row.kernel_version),
        json!(row.container_runtime),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    subresources: &[STATUS],
    storage: "minions",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Node>,
    list_schema: super::list(
        "NodeList",
        "NodeList is the whole list of all Nodes which have been registered with master.",
        "List of nodes",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: api::selector::NODE_FIELDS,
        get: api::selector::node_fields,
        aliases: &[],
        own_conversion: true,
    },
    delete: delete::PLAIN,
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

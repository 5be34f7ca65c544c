//! Server-side printing: `meta.k8s.io/v1` Tables with upstream's columns per resource, what
//! `kubectl get` asks for and prints.

use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::registry::Resource;
use crate::request::Query;

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    /// 0: default columns; 1: only with `-o wide`.
    priority: u8,
}

const fn col(name: &'static str, description: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.",
    0,
);

fn columns(resource: &Resource) -> Vec<Column> {
    match (resource.group, resource.plural) {
        ("", "pods") => vec![
            NAME,
            col("Ready", "The aggregate readiness state of this pod for accepting traffic.", 0),
            col("Status", "The aggregate status of the containers in this pod.", 0),
            col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
            AGE,
            col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
            col("Node", "NodeName is a request to schedule this pod onto a specific node.", 1),
            col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.", 1),
            col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
        ],
        ("", "nodes") => vec![
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
        ],
        ("", "namespaces") => vec![NAME, col("Status", "The status of the namespace", 0), AGE],
        ("", "events") | ("events.k8s.io", "events") => vec![
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
        ],
        ("", "configmaps") => vec![NAME, col("Data", "Number of data entries.", 0), AGE],
        ("", "secrets") => vec![
            NAME,
            col("Type", "The type of the secret", 0),
            col("Data", "Number of data entries.", 0),
            AGE,
        ],
        ("", "serviceaccounts") => vec![NAME, AGE],
        ("coordination.k8s.io", "leases") => vec![NAME, col("Holder", "The holder of the lease", 0), AGE],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            NAME,
            col("Value", "The value of the priority class", 0),
            col("Global-Default", "Whether this priority class is the global default", 0),
            AGE,
            col("PreemptionPolicy", "The preemption policy", 0),
        ],
        _ => vec![NAME, AGE],
    }
}

/// A Table of `objects` (already in the served version).
pub fn table(
    resource: &Resource,
    objects: &[Value],
    resource_version: &str,
    query: &Query,
    continue_token: Option<&str>,
) -> Result<Vec<u8>, ApiError> {
    let now = jiff::Timestamp::now();
    let include = query.non_empty("includeObject").unwrap_or("Metadata");
    let defs: Vec<Value> = columns(resource)
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "type": c.kind, "format": c.format,
                "description": c.description, "priority": c.priority,
            })
        })
        .collect();
    let mut rows = Vec::with_capacity(objects.len());
    for obj in objects {
        let cells = cells(resource, obj, now)?;
        let object = match include {
            "None" => Value::Null,
            "Object" => obj.clone(),
            _ => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }),
        };
        let mut row = json!({ "cells": cells });
        if !object.is_null() {
            row["object"] = object;
        }
        rows.push(row);
    }
    let mut meta = json!({ "resourceVersion": resource_version });
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    serde_json::to_vec(&json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    }))
    .map_err(|e| ApiError::Internal(e.to_string()))
}

fn age(obj: &Value, now: jiff::Timestamp) -> String {
    let Some(created) = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    api::printer::human_duration(now.duration_since(created))
}

fn typed<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<T, ApiError> {
    serde_json::from_value(obj.clone()).map_err(|e| ApiError::Internal(e.to_string()))
}

fn cells(resource: &Resource, obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let name = json!(obj["metadata"]["name"]);
    Ok(match (resource.group, resource.plural) {
        ("", "pods") => {
            let row = api::printer::pod_row(&typed(obj)?, now);
            vec![
                json!(row.name),
                json!(row.ready),
                json!(row.status),
                json!(row.restarts),
                json!(row.age),
                json!(row.ip),
                json!(row.node),
                json!(row.nominated_node),
                json!(row.readiness_gates),
            ]
        }
        ("", "nodes") => {
            let row = api::printer::node_row(&typed(obj)?, now);
            vec![
                name,
                json!(row.status),
                json!(row.roles),
                json!(row.age),
                json!(row.version),
                json!(row.internal_ip),
                json!(row.external_ip),
                json!(row.os_image),
                json!(row.kernel_version),
                json!(row.container_runtime),
            ]
        }
        ("", "namespaces") => vec![
            name,
            json!(obj["status"]["phase"].as_str().unwrap_or("")),
            json!(age(obj, now)),
        ],
        ("", "events") => event_cells(&typed(obj)?, name, now),
        ("events.k8s.io", "events") => {
            let core =
                crate::convert::events_v1_to_core(obj.clone()).map_err(ApiError::Internal)?;
            event_cells(&typed(&core)?, name, now)
        }
        ("", "configmaps") => {
            let n = obj["data"].as_object().map_or(0, |m| m.len())
                + obj["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), json!(age(obj, now))]
        }
        ("", "secrets") => {
            let n = obj["data"].as_object().map_or(0, |m| m.len());
            vec![
                name,
                json!(obj["type"].as_str().unwrap_or("")),
                json!(n),
                json!(age(obj, now)),
            ]
        }
        ("coordination.k8s.io", "leases") => vec![
            name,
            json!(obj["spec"]["holderIdentity"].as_str().unwrap_or("")),
            json!(age(obj, now)),
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name,
            json!(obj["value"].as_i64().unwrap_or(0)),
            json!(obj["globalDefault"].as_bool().unwrap_or(false)),
            json!(age(obj, now)),
            json!(obj["preemptionPolicy"]
                .as_str()
                .unwrap_or("PreemptLowerPriority")),
        ],
        _ => vec![name, json!(age(obj, now))],
    })
}

fn event_cells(
    event: &k8s_openapi::api::core::v1::Event,
    name: Value,
    now: jiff::Timestamp,
) -> Vec<Value> {
    let row = api::printer::event_row(event, now);
    vec![
        json!(row.last_seen),
        json!(row.type_),
        json!(row.reason),
        json!(row.object),
        json!(row.subobject),
        json!(row.source),
        json!(row.message),
        json!(row.first_seen),
        json!(row.count),
        name,
    ]
}

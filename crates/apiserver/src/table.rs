//! Server-side printing: `meta.k8s.io/v1` Tables, what `kubectl get` asks for and prints.
//! Each kind's module supplies its [`Printer`] (upstream's columns, `-o wide` ones at
//! priority 1, and the cells of one object); this file builds the Table around them.

use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::registry::Resource;
use crate::request::Query;

/// One column definition, as `meta.k8s.io/v1` `TableColumnDefinition`.
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0: default columns; 1: only with `-o wide`.
    pub priority: u8,
}

/// A kind's table: its columns and the cells of one object (in the served form).
#[derive(Clone, Copy)]
pub struct Printer {
    pub columns: &'static [Column],
    pub cells: fn(&Value, jiff::Timestamp) -> Result<Vec<Value>, ApiError>,
}

/// Upstream's default table for kinds without printers: name and age.
pub const DEFAULT: Printer = Printer {
    columns: &[NAME, AGE],
    cells: name_age,
};

pub const fn col(name: &'static str, description: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        description,
        priority,
    }
}

pub const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
pub const AGE: Column = col(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.",
    0,
);

fn name_age(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    Ok(vec![name(obj), json!(age(obj, now))])
}

/// The Name cell.
pub fn name(obj: &Value) -> Value {
    json!(obj["metadata"]["name"])
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
    let defs: Vec<Value> = resource
        .printer
        .columns
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
        let cells = (resource.printer.cells)(obj, now)?;
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

/// The Age cell: time since creation, as kubectl prints durations.
pub fn age(obj: &Value, now: jiff::Timestamp) -> String {
    let Some(created) = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    api::printer::human_duration(now.duration_since(created))
}

/// The object as its typed struct, for printers written against it.
pub fn typed<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<T, ApiError> {
    T::deserialize(obj).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The `-o wide` Containers and Images cells of a pod template (upstream's
/// `layoutContainerCells`): names and images joined with commas.
pub fn template_containers(template: &Value) -> (Value, Value) {
    let containers = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c["image"].as_str().unwrap_or(""))
        .collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// `metav1.FormatLabelSelector` of a `metav1.LabelSelector` (the wide Selector cells):
/// `<none>` when it selects by nothing (an absent selector too), `<error>` when it does
/// not convert.
pub fn format_label_selector(sel: &Value) -> Value {
    let parsed = if sel.is_null() {
        api::LabelSelector::from_label_selector(None)
    } else {
        match serde_json::from_value(sel.clone()) {
            Ok(s) => api::LabelSelector::from_label_selector(Some(&s)),
            Err(_) => return json!("<error>"),
        }
    };
    json!(match parsed {
        Ok(s) if s.to_string().is_empty() => "<none>".to_string(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_string(),
    })
}

/// The `READY` cell of the kinds that print `status.readyReplicas/spec.replicas`
/// (Deployments, StatefulSets).
pub fn ready_of_replicas(obj: &Value) -> Value {
    json!(format!(
        "{}/{}",
        int_at(obj, "/status/readyReplicas"),
        int_at(obj, "/spec/replicas")
    ))
}

/// An integer cell read at a JSON pointer (Go's zero value when unset).
pub fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// A column of integers.
pub const fn int_col(name: &'static str, description: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind: "integer",
        format: "",
        description,
        priority,
    }
}

/// The wide Containers column every workload printer shares.
pub const CONTAINERS: Column = col("Containers", "Names of each container in the template.", 1);
/// The wide Images column every workload printer shares.
pub const IMAGES: Column = col(
    "Images",
    "Images referenced by each container in the template.",
    1,
);

//! One module per served kind, each holding everything that makes it that kind (as
//! kube-apiserver's `pkg/registry/<group>/<kind>/strategy.go` and `storage.go` do): its
//! [`Resource`](crate::registry::Resource) descriptor — group, version, names, scope, short
//! names, categories, verbs, subresources, storage segment —, its typed strategy (defaults,
//! validation, create/update/status preparation, from the pure functions of the `api`
//! crate), its table printer, its selectable fields, its delete behaviour, its admission,
//! its conversion when it is served in another form than stored, and its scale hook.
//!
//! The generic handlers read only the descriptor. Adding a kind is a module here plus one
//! line in `registry::RESOURCES`; discovery, routing, storage, OpenAPI (explain, v2, v3),
//! protobuf, tables, strategic-merge keys (from the kind's OpenAPI schema) and field
//! selectors follow. ARCHITECTURE.md §7 "Adding a kind" walks through `lease.rs`.

pub mod certificatesigningrequest;
pub mod configmap;
pub mod controllerrevision;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod event;
pub mod ipaddress;
pub mod job;
pub mod lease;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod poddisruptionbudget;
pub mod podtemplate;
pub mod priorityclass;
pub mod replicaset;
pub mod replicationcontroller;
pub mod secret;
pub mod service;
pub mod serviceaccount;
pub mod servicecidr;
pub mod statefulset;

/// The upstream descriptions of a `<Kind>List`.
pub const fn list(
    kind: &'static str,
    description: &'static str,
    items: &'static str,
    metadata: &'static str,
) -> openapi::ListSchema {
    openapi::ListSchema {
        kind,
        description,
        items,
        metadata,
    }
}

/// The most common description of a list's `metadata`.
pub const LIST_METADATA: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The selector string of an apps/v1 object's `spec.selector` (`a=b,c in (d)`), what its
/// Scale's `status.selector` and the wide Selector column print.
pub fn spec_label_selector(obj: &serde_json::Value) -> Option<String> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let sel = LabelSelector::deserialize(obj.pointer("/spec/selector")?).ok()?;
    api::selector_string(&sel)
}

/// `labels.FormatLabels` of a plain map: sorted `k=v` pairs, `<none>` when empty.
pub fn format_labels(map: Option<&serde_json::Value>) -> serde_json::Value {
    let pairs: Vec<String> = map
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            let mut v: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    serde_json::json!(if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    })
}

use serde::Deserialize as _;

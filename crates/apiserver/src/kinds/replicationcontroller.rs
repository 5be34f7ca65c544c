//! core/v1 ReplicationController (upstream's `pkg/registry/core/replicationcontroller`):
//! selector and labels defaulted from the template, a selector that is a plain map and may
//! change, status cleared on create and kept on update, generation counted on spec
//! changes, the `status` and `scale` subresources, the `status.replicas` field selector,
//! and upstream's table.

use k8s_openapi::api::core::v1::ReplicationController;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, Scale, SCALE, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub static STRATEGY: TypedStrategy<ReplicationController> = TypedStrategy {
    default: api::default_replication_controller,
    on_create: api::prepare_replication_controller_for_create,
    prepare_for_update: api::prepare_replication_controller_for_update,
    copy_all_but_status: api::replication_controller_status_only,
    validate_status_update: api::validate_replication_controller_status_update,
    ..TypedStrategy::new(
        api::validate_replication_controller,
        api::validate_replication_controller_update,
    )
};

/// Upstream's `replicationControllerColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    table::int_col("Desired", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller", 0),
    table::int_col("Current", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller", 0),
    table::int_col("Ready", "The number of ready replicas for this replication controller.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    table::col("Selector", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let (names, images) = table::template_containers(&obj["spec"]["template"]);
    Ok(vec![
        table::name(obj),
        json!(table::int_at(obj, "/spec/replicas")),
        json!(table::int_at(obj, "/status/replicas")),
        json!(table::int_at(obj, "/status/readyReplicas")),
        json!(table::age(obj, now)),
        names,
        images,
        super::format_labels(obj.pointer("/spec/selector")),
    ])
}

/// `labels.SelectorFromSet(spec.selector).String()`.
fn selector(obj: &Value) -> Option<String> {
    let map = obj.pointer("/spec/selector")?.as_object()?;
    let set = map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    Some(api::map_selector_string(&set))
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "replicationcontrollers",
    singular: "replicationcontroller",
    kind: "ReplicationController",
    namespaced: true,
    short_names: &["rc"],
    categories: &["all"],
    subresources: &[STATUS, SCALE],
    storage: "controllers",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<ReplicationController>,
    list_schema: super::list(
        "ReplicationControllerList",
        "ReplicationControllerList is a collection of replication controllers.",
        "List of replication controllers. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: api::selector::REPLICA_FIELDS,
        get: api::selector::replica_fields,
        aliases: &[],
        own_conversion: true,
    },
    // Upstream's DefaultGarbageCollectionPolicy for this kind at v1: orphan the pods when
    // the request names no policy (kept for backwards compatibility; kubectl sends Background).
    delete: delete::DeleteStrategy {
        gc_policy: delete::GarbageCollectionPolicy::OrphanDependents,
        ..delete::PLAIN
    },
    hooks: None,
    admit: None,
    conversion: None,
    scale: Some(Scale {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector,
    }),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_scale_selector_are_upstreams() {
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"replicas": 2,
            "selector": {"b": "2", "a": "1"},
            "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}}});
        let got = cells(&rc, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(got.len(), COLUMNS.len());
        assert_eq!(got[..4], [json!("rc"), json!(2), json!(0), json!(0)]);
        assert_eq!(got[5..], [json!("a"), json!("nginx"), json!("a=1,b=2")]);
        assert_eq!(selector(&rc).as_deref(), Some("a=1,b=2"));
    }
}

//! apps/v1 ReplicaSet (upstream's `pkg/registry/apps/replicaset`): defaults, validation
//! and the immutable selector from `api::apps`, status cleared on create and kept on
//! update, generation counted on spec changes, the `status` and `scale` subresources, the
//! `status.replicas` field selector, and upstream's table.

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, Scale, SCALE, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub static STRATEGY: TypedStrategy<ReplicaSet> = TypedStrategy {
    default: api::default_replica_set,
    on_create: api::prepare_replica_set_for_create,
    prepare_for_update: api::prepare_replica_set_for_update,
    copy_all_but_status: api::replica_set_status_only,
    validate_status_update: api::validate_replica_set_status_update,
    ..TypedStrategy::new(api::validate_replica_set, api::validate_replica_set_update)
};

/// Upstream's `replicaSetColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    table::int_col("Desired", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset", 0),
    table::int_col("Current", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset", 0),
    table::int_col("Ready", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    table::col("Selector", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
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
        table::format_label_selector(&obj["spec"]["selector"]),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[STATUS, SCALE],
    storage: "replicasets",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<ReplicaSet>,
    list_schema: super::list(
        "ReplicaSetList",
        "ReplicaSetList is a collection of ReplicaSets.",
        "List of ReplicaSets. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset",
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
    delete: delete::PLAIN,
    hooks: None,
    admit: None,
    conversion: None,
    scale: Some(Scale {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector: super::spec_label_selector,
    }),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_upstreams() {
        let rs = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        let got = cells(&rs, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(got.len(), COLUMNS.len());
        assert_eq!(got[..4], [json!("web"), json!(3), json!(2), json!(1)]);
        assert_eq!(
            got[5..],
            [json!("a,b"), json!("nginx,busybox"), json!("app=web")]
        );
    }
}

//! apps/v1 StatefulSet (upstream's `pkg/registry/apps/statefulset`): defaults
//! (OrderedReady, RollingUpdate partition 0, PVC retention Retain/Retain,
//! revisionHistoryLimit 10), validation with the limited set of updatable spec fields, status
//! cleared on create and kept on update, generation counted on spec changes, the `status`
//! and `scale` subresources, and upstream's table.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, Scale, SCALE, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub static STRATEGY: TypedStrategy<StatefulSet> = TypedStrategy {
    default: api::default_stateful_set,
    on_create: api::prepare_stateful_set_for_create,
    prepare_for_update: api::prepare_stateful_set_for_update,
    copy_all_but_status: api::stateful_set_status_only,
    validate_status_update: api::validate_stateful_set_status_update,
    ..TypedStrategy::new(
        api::validate_stateful_set,
        api::validate_stateful_set_update,
    )
};

/// Upstream's `statefulSetColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    table::col("Ready", "Number of the pod with ready state", 0),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let (names, images) = table::template_containers(&obj["spec"]["template"]);
    Ok(vec![
        table::name(obj),
        table::ready_of_replicas(obj),
        json!(table::age(obj, now)),
        names,
        images,
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "statefulsets",
    singular: "statefulset",
    kind: "StatefulSet",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    subresources: &[STATUS, SCALE],
    storage: "statefulsets",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<StatefulSet>,
    list_schema: super::list(
        "StatefulSetList",
        "StatefulSetList is a collection of StatefulSets.",
        "Items is the list of stateful sets.",
        "Standard list's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
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
        let s = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "image": "postgres"}]}}},
            "status": {"replicas": 2, "readyReplicas": 2}});
        let got = cells(&s, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(got.len(), COLUMNS.len());
        assert_eq!(got[..2], [json!("db"), json!("2/3")]);
        assert_eq!(got[3..], [json!("a"), json!("postgres")]);
    }
}

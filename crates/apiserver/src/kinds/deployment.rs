//! apps/v1 Deployment (upstream's `pkg/registry/apps/deployment`): defaults (RollingUpdate
//! 25 %/25 %, revisionHistoryLimit 10, progressDeadlineSeconds 600), validation and the
//! immutable selector from `api::apps`, status cleared on create and kept on update,
//! generation counted on spec and annotation changes, the `status` and `scale`
//! subresources, and upstream's table.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, Scale, SCALE, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub static STRATEGY: TypedStrategy<Deployment> = TypedStrategy {
    default: api::default_deployment,
    on_create: api::prepare_deployment_for_create,
    prepare_for_update: api::prepare_deployment_for_update,
    copy_all_but_status: api::deployment_status_only,
    validate_status_update: api::validate_deployment_status_update,
    ..TypedStrategy::new(api::validate_deployment, api::validate_deployment_update)
};

/// Upstream's `deploymentColumnDefinitions` (every column a string but the name).
const COLUMNS: &[Column] = &[
    NAME,
    table::col("Ready", "Number of the pod with ready state", 0),
    table::col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
    table::col("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    table::col("Selector", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.", 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let (names, images) = table::template_containers(&obj["spec"]["template"]);
    Ok(vec![
        table::name(obj),
        table::ready_of_replicas(obj),
        json!(table::int_at(obj, "/status/updatedReplicas")),
        json!(table::int_at(obj, "/status/availableReplicas")),
        json!(table::age(obj, now)),
        names,
        images,
        // `LabelSelectorAsSelector(...).String()`, with no `<none>`.
        json!(super::spec_label_selector(obj).unwrap_or_default()),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "deployments",
    singular: "deployment",
    kind: "Deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    subresources: &[STATUS, SCALE],
    storage: "deployments",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Deployment>,
    list_schema: super::list(
        "DeploymentList",
        "DeploymentList is a list of Deployments.",
        "Items is the list of Deployments.",
        "Standard list metadata.",
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
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
            "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2}});
        let got = cells(&d, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(got.len(), COLUMNS.len());
        assert_eq!(got[..4], [json!("web"), json!("1/3"), json!(2), json!(0)]);
        assert_eq!(
            got[5..],
            [json!("a"), json!("nginx"), json!("app=web,tier in (fe)")]
        );
    }
}

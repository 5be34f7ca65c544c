//! apps/v1 DaemonSet (upstream's `pkg/registry/apps/daemonset`): defaults (RollingUpdate
//! maxUnavailable 1 maxSurge 0, revisionHistoryLimit 10), validation and the immutable
//! selector from `api::apps`, status cleared on create and kept on update, generation and
//! the `deprecated.daemonset.template.generation` annotation counted, the `status`
//! subresource, and upstream's table.

use k8s_openapi::api::apps::v1::DaemonSet;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub static STRATEGY: TypedStrategy<DaemonSet> = TypedStrategy {
    default: api::default_daemon_set,
    on_create: api::prepare_daemon_set_for_create,
    prepare_for_update: api::prepare_daemon_set_for_update,
    copy_all_but_status: api::daemon_set_status_only,
    validate_status_update: api::validate_daemon_set_status_update,
    ..TypedStrategy::new(api::validate_daemon_set, api::validate_daemon_set_update)
};

/// Upstream's `daemonSetColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    table::int_col("Desired", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", 0),
    table::int_col("Current", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", 0),
    table::int_col("Ready", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.", 0),
    table::int_col("Up-to-date", "The total number of nodes that are running updated daemon pod", 0),
    table::int_col("Available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)", 0),
    table::col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    table::col("Selector", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let (names, images) = table::template_containers(&obj["spec"]["template"]);
    Ok(vec![
        table::name(obj),
        json!(table::int_at(obj, "/status/desiredNumberScheduled")),
        json!(table::int_at(obj, "/status/currentNumberScheduled")),
        json!(table::int_at(obj, "/status/numberReady")),
        json!(table::int_at(obj, "/status/updatedNumberScheduled")),
        json!(table::int_at(obj, "/status/numberAvailable")),
        super::format_labels(obj.pointer("/spec/template/spec/nodeSelector")),
        json!(table::age(obj, now)),
        names,
        images,
        table::format_label_selector(&obj["spec"]["selector"]),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "daemonsets",
    singular: "daemonset",
    kind: "DaemonSet",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    subresources: &[STATUS],
    storage: "daemonsets",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<DaemonSet>,
    list_schema: super::list(
        "DaemonSetList",
        "DaemonSetList is a collection of daemon sets.",
        "A list of daemon sets.",
        "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
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
    fn cells_are_upstreams() {
        let ds = json!({"metadata": {"name": "agent"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "a", "image": "busybox"}]}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 1, "numberReady": 1}});
        let got = cells(&ds, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(got.len(), COLUMNS.len());
        assert_eq!(
            got[..7],
            [
                json!("agent"),
                json!(2),
                json!(1),
                json!(1),
                json!(0),
                json!(0),
                json!("disk=ssd")
            ]
        );
        assert_eq!(got[8..], [json!("a"), json!("busybox"), json!("app=agent")]);
    }
}

//! core/v1 Pod, with its subresources (status, binding, log, exec, attach, eviction,
//! ephemeralcontainers, portforward), ServiceAccount and Priority admission, and graceful
//! deletion: a pod running on a node is marked and stays until its node confirms.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::admission;
use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete::{self, DeleteOptions, DeleteStrategy};
use crate::registry::{Resource, Subresource, SubresourceKind, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

fn on_create(pod: &mut Pod) {
    api::pod::prepare_pod_for_create(pod);
    pod.metadata.generation = Some(1);
}

fn copy_status(new: &mut Pod, old: &Pod) {
    new.status = old.status.clone();
    // Pod generation counts spec changes (PodObservedGenerationTracking).
    let generation = old.metadata.generation.unwrap_or(1);
    new.metadata.generation = Some(if new.spec != old.spec {
        generation + 1
    } else {
        generation
    });
}

fn copy_all_but_status(new: &mut Pod, old: &Pod) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// Upstream's `dropNonEphemeralContainerUpdates`: the spec is the old one but for its
/// ephemeral containers, the status the old one; generation counts the change.
fn ephemeral_containers_update(new: &mut Pod, old: &Pod) -> api::FieldErrors {
    let ephemeral = new
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone());
    let mut spec = old.spec.clone().unwrap_or_default();
    spec.ephemeral_containers = ephemeral;
    new.spec = Some(spec);
    copy_status(new, old);
    api::pod::validate_pod_ephemeral_containers_update(new, old)
}

pub static STRATEGY: TypedStrategy<Pod> = TypedStrategy {
    default: api::pod::default_pod,
    on_create,
    prepare_for_update: copy_status,
    copy_all_but_status,
    validate_status_update: api::pod::validate_pod_status_update,
    ephemeral_containers_update: Some(ephemeral_containers_update),
    ..TypedStrategy::new(api::pod::validate_pod, api::pod::validate_pod_update)
};

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "The aggregate readiness state of this pod for accepting traffic.", 0),
    col("Status", "The aggregate status of the containers in this pod.", 0),
    col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
    AGE,
    col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
    col("Node", "NodeName is a request to schedule this pod onto a specific node.", 1),
    col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.", 1),
    col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let row = api::printer::pod_row(&table::typed(obj)?, now);
    Ok(vec![
        json!(row.name),
        json!(row.ready),
        json!(row.status),
        json!(row.restarts),
        json!(row.age),
        json!(row.ip),
        json!(row.node),
        json!(row.nominated_node),
        json!(row.readiness_gates),
    ])
}

/// A pod bound to a node and not finished is only marked, for its grace period (the
/// request's, else the pod's, else 30 s), until its node stops it and deletes it with
/// grace 0; unbound or terminal pods go at once.
fn graceful(pod: &Value, opts: &DeleteOptions) -> Option<i64> {
    let on_node = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    let grace = opts
        .grace_period
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    (on_node && !terminal && grace > 0).then_some(grace)
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[
        STATUS,
        Subresource {
            name: "binding",
            kind: "Binding",
            group_version: None,
            verbs: &["create"],
            handler: SubresourceKind::Binding,
        },
        Subresource {
            name: "log",
            kind: "Pod",
            group_version: None,
            verbs: &["get"],
            handler: SubresourceKind::Log,
        },
        Subresource {
            name: "exec",
            kind: "PodExecOptions",
            group_version: None,
            verbs: &["create", "get"],
            handler: SubresourceKind::Exec,
        },
        Subresource {
            name: "attach",
            kind: "PodAttachOptions",
            group_version: None,
            verbs: &["create", "get"],
            handler: SubresourceKind::Attach,
        },
        Subresource {
            name: "eviction",
            kind: "Eviction",
            group_version: Some(("policy", "v1")),
            verbs: &["create"],
            handler: SubresourceKind::Eviction,
        },
        Subresource {
            name: "ephemeralcontainers",
            kind: "Pod",
            group_version: None,
            verbs: &["get", "patch", "update"],
            handler: SubresourceKind::EphemeralContainers,
        },
        Subresource {
            name: "portforward",
            kind: "PodPortForwardOptions",
            group_version: None,
            verbs: &["create", "get"],
            handler: SubresourceKind::PortForward,
        },
    ],
    storage: "pods",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Pod>,
    list_schema: super::list(
        "PodList",
        "PodList is a list of Pods.",
        "List of pods. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: api::selector::POD_FIELDS,
        get: api::selector::pod_fields,
        aliases: &[("spec.host", "spec.nodeName")],
        own_conversion: true,
    },
    delete: DeleteStrategy {
        returns_object: true,
        graceful,
        ..delete::PLAIN
    },
    hooks: None,
    admit: Some(admission::admit_pod),
    conversion: None,
    scale: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_on_nodes_are_deleted_gracefully() {
        let opts = DeleteOptions::default();
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}});
        assert_eq!(graceful(&bound, &opts), Some(5));
        let forced = DeleteOptions {
            grace_period: Some(0),
            ..Default::default()
        };
        assert_eq!(graceful(&bound, &forced), None);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(graceful(&done, &opts), None);
        assert_eq!(graceful(&json!({"spec": {}}), &opts), None);
        assert_eq!(
            graceful(&json!({"spec": {"nodeName": "n1"}}), &opts),
            Some(30)
        );
    }
}

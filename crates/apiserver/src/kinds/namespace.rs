//! core/v1 Namespace (cluster-scoped), with its `status` subresource. Deleting one marks it
//! `Terminating`; the `kubernetes` finalizer in `spec.finalizers` holds it until the
//! namespace lifecycle has emptied it (`lifecycle.rs`).

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete::{self, DeleteStrategy};
use crate::registry::{Resource, Subresource, SubresourceKind, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

fn copy_all_but_status(new: &mut Namespace, old: &Namespace) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

pub static STRATEGY: TypedStrategy<Namespace> = TypedStrategy {
    default: api::default_namespace,
    on_create: api::prepare_namespace_for_create,
    prepare_for_update: api::prepare_namespace_for_update,
    copy_all_but_status,
    validate_status_update: api::validate_namespace_status_update,
    ..TypedStrategy::new(api::validate_namespace, api::validate_namespace_update)
};

const COLUMNS: &[Column] = &[NAME, col("Status", "The status of the namespace", 0), AGE];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    Ok(vec![
        table::name(obj),
        json!(obj["status"]["phase"].as_str().unwrap_or("")),
        json!(table::age(obj, now)),
    ])
}

/// `metadata.finalizers` or the namespace's own `spec.finalizers`.
fn has_finalizers(obj: &Value) -> bool {
    delete::metadata_finalizers(obj)
        || obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
}

fn terminating(obj: &mut Value) {
    obj["status"]["phase"] = json!("Terminating");
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &[
        STATUS,
        Subresource {
            name: "finalize",
            kind: "",
            group_version: None,
            verbs: &["update"],
            handler: SubresourceKind::Finalize,
        },
    ],
    storage: "namespaces",
    // Namespaces cannot be deleted as a collection (upstream serves no deletecollection).
    verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
    strategy: &STRATEGY,
    schema: openapi::def::<Namespace>,
    list_schema: super::list(
        "NamespaceList",
        "NamespaceList is a list of Namespaces.",
        "Items is the list of Namespace objects in the list. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: api::selector::NAMESPACE_FIELDS,
        get: api::selector::namespace_fields,
        aliases: &[],
        own_conversion: true,
    },
    delete: DeleteStrategy {
        has_finalizers,
        on_mark: terminating,
        ..delete::PLAIN
    },
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

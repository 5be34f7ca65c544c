//! core/v1 PodTemplate: a named pod template (what controllers stamp pods from). Added
//! through the recipe of ARCHITECTURE.md §7 to prove it: this module and one line in
//! `registry::RESOURCES`.

use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete::{self, DeleteStrategy};
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, NAME};

/// Upstream's `podtemplate` strategy: the pod spec defaults, generation 1 on create and
/// counting template changes, `ValidatePodTemplate`.
pub static STRATEGY: TypedStrategy<PodTemplate> = TypedStrategy {
    default: api::default_pod_template,
    on_create: api::prepare_pod_template_for_create,
    prepare_for_update: api::prepare_pod_template_for_update,
    ..TypedStrategy::new(
        api::validate_pod_template,
        api::validate_pod_template_update,
    )
};

/// Upstream's `podTemplateColumnDefinitions` (no wide columns, no age).
const COLUMNS: &[Column] = &[
    NAME,
    table::col("Containers", "Names of each container in the template.", 0),
    table::col(
        "Images",
        "Images referenced by each container in the template.",
        0,
    ),
    table::col("Pod Labels", "The labels for the pod template.", 0),
];

fn cells(obj: &Value, _now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let t: PodTemplate = table::typed(obj)?;
    let template = t.template.unwrap_or_default();
    let containers = template.spec.map(|s| s.containers).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    // `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
    let labels = if labels.is_empty() {
        "<none>".to_string()
    } else {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(vec![
        table::name(obj),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(labels),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "podtemplates",
    singular: "podtemplate",
    kind: "PodTemplate",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage: "podtemplates",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<PodTemplate>,
    list_schema: super::list(
        "PodTemplateList",
        "PodTemplateList is a list of PodTemplates.",
        "List of pod templates",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: filter::NAMESPACED_META,
    // Upstream's pod template storage sets ReturnDeletedObject.
    delete: DeleteStrategy {
        returns_object: true,
        ..delete::PLAIN
    },
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
        let t = json!({"metadata": {"name": "web"}, "template": {
            "metadata": {"labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}, {"name": "side", "image": "busybox"}]}}});
        let got = cells(&t, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(
            got,
            vec![
                json!("web"),
                json!("app,side"),
                json!("nginx,busybox"),
                json!("a=1,b=2")
            ]
        );
        let bare = json!({"metadata": {"name": "x"}});
        let got = cells(&bare, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(got[3], json!("<none>"));
    }
}

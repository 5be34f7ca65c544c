//! apps/v1 ControllerRevision (upstream's `pkg/registry/apps/controllerrevision`): an
//! immutable snapshot of a controller's state; `data` may not change and `revision` is not
//! negative. No status, no short name, not in `all`.

use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS};
use crate::strategy::TypedStrategy;
use crate::table::{self, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<ControllerRevision> = TypedStrategy::new(
    api::validate_controller_revision,
    api::validate_controller_revision_update,
);

/// Upstream's `controllerRevisionColumnDefinition`.
const COLUMNS: &[Column] = &[
    NAME,
    table::col("Controller", "Controller of the object", 0),
    table::col(
        "Revision",
        "Revision indicates the revision of the state represented by Data.",
        0,
    ),
    AGE,
];

/// The controller cell: `<kind>.<group>/<name>` of the controlling owner, lower-cased kind
/// and group as upstream's `formatResourceName` prints a GroupKind, `<none>` without one.
fn controller(obj: &Value) -> String {
    let owner = obj["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"] == json!(true)));
    let Some(owner) = owner else {
        return "<none>".into();
    };
    let api_version = owner["apiVersion"].as_str().unwrap_or("");
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(group, _version)| group);
    let kind = owner["kind"].as_str().unwrap_or("");
    let name = owner["name"].as_str().unwrap_or("");
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    if group_kind.is_empty() {
        return name.to_string();
    }
    format!("{}/{name}", group_kind.to_lowercase())
}

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    Ok(vec![
        table::name(obj),
        json!(controller(obj)),
        json!(table::int_at(obj, "/revision")),
        json!(table::age(obj, now)),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    kind: "ControllerRevision",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage: "controllerrevisions",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<ControllerRevision>,
    list_schema: super::list(
        "ControllerRevisionList",
        "ControllerRevisionList is a resource containing a list of ControllerRevision objects.",
        "Items is the list of ControllerRevisions",
        "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
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
    fn cells_name_the_controller_as_upstream() {
        let r = json!({"metadata": {"name": "web-5d4b", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "revision": 2});
        let got = cells(&r, jiff::Timestamp::now()).unwrap_or_default();
        assert_eq!(
            got[..3],
            [json!("web-5d4b"), json!("statefulset.apps/web"), json!(2)]
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(controller(&orphan), "<none>");
    }
}

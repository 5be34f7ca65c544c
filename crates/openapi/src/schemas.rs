//! Schema definitions: generated from k8s-openapi's `JsonSchema` impls, then
//! brought to the shape kube-apiserver publishes (special scalar types, list
//! and patch extensions, group-version-kinds).

use std::collections::BTreeMap;

use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::extensions::{FIELD_EXTENSIONS, REQUIRED, UPSTREAM};
use crate::model::{Gvk, ListSchema, SchemaFn};

/// The two OpenAPI versions differ in where definitions live and in how a few
/// scalar unions are spelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dialect {
    /// Swagger 2.0, `/openapi/v2`: `#/definitions/<name>`.
    V2,
    /// OpenAPI 3.0, `/openapi/v3/...`: `#/components/schemas/<name>`.
    V3,
}

impl Dialect {
    fn definitions_path(self) -> &'static str {
        match self {
            Dialect::V2 => "/definitions",
            Dialect::V3 => "/components/schemas",
        }
    }

    /// A `$ref` to the named definition.
    pub(crate) fn reference(self, name: &str) -> Value {
        json!({ "$ref": format!("#{}/{}", self.definitions_path(), name) })
    }
}

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

/// Collects the definitions one document needs: every type registered with
/// [`Schemas::add`] and everything those reference, and nothing else, as
/// upstream's per-group-version documents do.
pub(crate) struct Schemas {
    generator: SchemaGenerator,
    dialect: Dialect,
    gvks: BTreeMap<String, Vec<Gvk>>,
}

impl Schemas {
    pub(crate) fn new(dialect: Dialect) -> Self {
        // Plain JSON Schema settings with no transforms: k8s-openapi's schemas
        // are already written in the subset both OpenAPI versions accept, and
        // the OpenAPI 3 preset's transforms would rewrite `$ref` siblings
        // (the field descriptions kubectl explain prints) into `allOf`.
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = dialect.definitions_path().into();
            s.meta_schema = None;
            s.transforms.clear();
        });
        Schemas {
            generator: settings.into_generator(),
            dialect,
            gvks: BTreeMap::new(),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Registers a schema and returns its definition name.
    pub(crate) fn add(&mut self, schema: SchemaFn) -> String {
        schema(&mut self.generator)
    }

    /// Registers a schema as the one for `gvk`; upstream marks such top-level
    /// kinds with `x-kubernetes-group-version-kind`, which kubectl uses to find
    /// the schema of a kind.
    pub(crate) fn add_kind(&mut self, schema: SchemaFn, gvk: Gvk) -> String {
        let name = self.add(schema);
        let kinds = self.gvks.entry(name.clone()).or_default();
        if !kinds.contains(&gvk) {
            kinds.push(gvk);
        }
        name
    }

    /// Registers the `<Kind>List` schema of the kind `item` registers, as
    /// upstream's list types look: apiVersion, items, kind, metadata.
    pub(crate) fn add_list(&mut self, item: SchemaFn, list: &ListSchema, gvk: Gvk) -> String {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

        let item_name = self.add(item);
        let item_ref = self.dialect.reference(&item_name);
        let mut metadata = self.generator.subschema_for::<ListMeta>().to_value();
        if let Value::Object(m) = &mut metadata {
            m.insert("description".to_owned(), list.metadata.into());
        }
        // The list lives in the item's package: io.k8s.api.core.v1.PodList.
        let name = match item_name.rsplit_once('.') {
            Some((package, _)) => format!("{package}.{}", list.kind),
            None => list.kind.to_owned(),
        };
        let schema = json!({
            "description": list.description,
            "properties": {
                "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
                "items": {"description": list.items, "items": item_ref, "type": "array"},
                "kind": {"description": KIND_DESCRIPTION, "type": "string"},
                "metadata": metadata,
            },
            "required": ["items"],
            "type": "object",
        });
        self.generator
            .definitions_mut()
            .insert(name.clone(), schema);
        let kinds = self.gvks.entry(name.clone()).or_default();
        if !kinds.contains(&gvk) {
            kinds.push(gvk);
        }
        name
    }

    /// The finished definitions, keyed by upstream's dotted names.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        let mut definitions = self.generator.take_definitions(false);
        fix_scalar_unions(&mut definitions, self.dialect);
        fix_watch_event(&mut definitions);
        apply_field_extensions(&mut definitions);
        apply_required(&mut definitions);
        for (name, kinds) in &self.gvks {
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                let kinds = kinds
                    .iter()
                    .map(|k| json!({"group": k.group, "kind": k.kind, "version": k.version}))
                    .collect();
                schema.insert(
                    "x-kubernetes-group-version-kind".to_owned(),
                    Value::Array(kinds),
                );
            }
        }
        definitions
    }
}

/// k8s-openapi describes Quantity and IntOrString with the CRD-only
/// `x-kubernetes-int-or-string` and no type; upstream publishes them as typed
/// scalars (a string in v2, a string-or-number / integer-or-string `oneOf` in
/// v3), which is what clients that validate against the documents expect.
fn fix_scalar_unions(definitions: &mut Map<String, Value>, dialect: Dialect) {
    let description = |definitions: &Map<String, Value>, name: &str| {
        definitions
            .get(name)
            .and_then(|s| s.get("description"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    if definitions.contains_key(QUANTITY) {
        let description = description(definitions, QUANTITY);
        let schema = match dialect {
            Dialect::V2 => json!({"description": description, "type": "string"}),
            Dialect::V3 => json!({
                "description": description,
                "oneOf": [{"type": "string"}, {"type": "number"}],
            }),
        };
        definitions.insert(QUANTITY.to_owned(), schema);
    }
    if definitions.contains_key(INT_OR_STRING) {
        let description = description(definitions, INT_OR_STRING);
        let schema = match dialect {
            Dialect::V2 => json!({
                "description": description,
                "format": "int-or-string",
                "type": "string",
            }),
            Dialect::V3 => json!({
                "description": description,
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            }),
        };
        definitions.insert(INT_OR_STRING.to_owned(), schema);
    }
}

/// k8s-openapi folds the description of WatchEvent's `object` into the type's
/// description; upstream keeps it on the field, where `kubectl explain` shows it.
fn fix_watch_event(definitions: &mut Map<String, Value>) {
    let Some(Value::Object(schema)) = definitions.get_mut(WATCH_EVENT) else {
        return;
    };
    let Some(Value::String(description)) = schema.get("description") else {
        return;
    };
    let Some((summary, object)) = description.split_once("\n\n") else {
        return;
    };
    let (summary, object) = (summary.to_owned(), object.trim_end().to_owned());
    schema.insert("description".to_owned(), summary.into());
    if let Some(Value::Object(field)) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("object"))
    {
        field.insert("description".to_owned(), object.into());
    }
}

fn apply_required(definitions: &mut Map<String, Value>) {
    for (name, required) in REQUIRED {
        if let Some(Value::Object(schema)) = definitions.get_mut(*name) {
            if required.is_empty() {
                schema.remove("required");
            } else {
                schema.insert("required".to_owned(), json!(required));
            }
        }
    }
}

/// Adds the list-type, map-type and strategic-merge-patch extensions that
/// k8s-openapi's schemas do not carry. Rows for definitions the document
/// does not contain are skipped.
fn apply_field_extensions(definitions: &mut Map<String, Value>) {
    // The hand-checked 1.37 rows come last, so they win.
    for row in UPSTREAM.iter().chain(FIELD_EXTENSIONS) {
        let Some(Value::Object(schema)) = definitions.get_mut(row.definition) else {
            continue;
        };
        let target = if row.field.is_empty() {
            schema
        } else {
            match schema
                .get_mut("properties")
                .and_then(|p| p.get_mut(row.field))
            {
                Some(Value::Object(property)) => property,
                // A field the table names but the schema lacks is caught by
                // the unit tests; in production it is simply left out.
                _ => continue,
            }
        };
        for (key, value) in row.entries() {
            target.insert(key.to_owned(), value);
        }
    }
}

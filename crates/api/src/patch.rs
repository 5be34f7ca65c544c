//! JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.
//!
//! Owns: applying the three patch types the API server accepts, and reading the
//! strategic-merge schema — which list fields merge by which key, which are primitive sets,
//! which are replaced — from OpenAPI definitions: the `x-kubernetes-patch-strategy` /
//! `x-kubernetes-patch-merge-key` extensions (upstream's `patchStrategy` / `patchMergeKey`
//! struct tags) that kubectl reads for the same purpose. The caller supplies the
//! definitions ([`PatchSchema::from_definitions`]) and the root type of the document, so a
//! kind gets its merge keys from its own type. Strategic merge follows
//! apimachinery's `strategicpatch` with the options the API server uses
//! (`MergeParallelList`, `IgnoreUnmatchedNulls`): `$patch` (replace / delete / merge),
//! `$retainKeys`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`, and `null`
//! deleting a key.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A patch that could not be applied; the message is what the API server returns (it maps
/// these to 422 for JSON patch test failures and 400/422 otherwise, as it sees fit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not valid JSON or not a valid patch document.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed (missing path, failed `test`, ...).
    #[error("{0}")]
    Apply(String),
    /// A strategic merge patch is inconsistent with the schema (missing merge key, bad
    /// directive, ...).
    #[error("{0}")]
    Strategic(String),
}

/// RFC 6902: `patch` is the raw request body (a JSON array of operations).
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::Apply(e.to_string()))?;
    Ok(out)
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Strategic merge patch of `doc` by `patch` for a document whose OpenAPI definition is
/// `root` in `schema` (`io.k8s.api.core.v1.Pod`). A root the schema does not know merges
/// maps and replaces lists, the default for untagged fields.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &PatchSchema,
    root: &str,
) -> Result<Value, PatchError> {
    let Value::Object(patch_map) = patch else {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(PatchError::Malformed(
                "document to patch must be a JSON object".into(),
            ))
        }
    };
    let merged = merge_map(original, patch_map.clone(), schema.root(root))?;
    Ok(Value::Object(merged))
}

// ---------------------------------------------------------------------------------------
// Schema

/// The strategic-merge metadata of a set of OpenAPI definitions: for each type, each
/// field's own type and patch strategy. Built once from the definitions the API server
/// publishes (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `$ref`s).
#[derive(Debug, Default)]
pub struct PatchSchema {
    names: HashMap<String, usize>,
    types: Vec<TypeFields>,
}

#[derive(Debug, Default)]
struct TypeFields {
    fields: HashMap<String, FieldInfo>,
    /// The value of a map type's every key (`additionalProperties`).
    values: Option<FieldInfo>,
}

#[derive(Debug, Clone, Default)]
struct FieldInfo {
    /// The definition of the field's value, list item or map value.
    ty: Option<usize>,
    /// A map field (`additionalProperties`): its keys are not fields of `ty`.
    map_of: Option<usize>,
    strategy: StrategyTag,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum StrategyTag {
    #[default]
    Default,
    Merge(Option<String>),
    Replace,
}

impl PatchSchema {
    /// Reads `definitions` (a Swagger 2 `definitions` or OpenAPI 3 `components.schemas`
    /// map).
    pub fn from_definitions(definitions: &Map<String, Value>) -> PatchSchema {
        let mut schema = PatchSchema::default();
        for name in definitions.keys() {
            schema.names.insert(name.clone(), schema.types.len());
            schema.types.push(TypeFields::default());
        }
        // Map fields get a synthetic type whose every key has the value's type.
        for (name, def) in definitions {
            let index = schema.names[name];
            let mut fields = HashMap::new();
            for (field, prop) in def["properties"].as_object().into_iter().flatten() {
                let info = schema.field_info(prop);
                fields.insert(field.clone(), info);
            }
            schema.types[index].fields = fields;
        }
        schema
    }

    fn field_info(&mut self, prop: &Value) -> FieldInfo {
        let reference = |v: &Value| {
            v["$ref"]
                .as_str()
                .or_else(|| v["allOf"][0]["$ref"].as_str())
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_string)
        };
        let ty = reference(prop)
            .or_else(|| reference(&prop["items"]))
            .and_then(|n| self.names.get(&n).copied());
        let map_of = reference(&prop["additionalProperties"])
            .and_then(|n| self.names.get(&n).copied())
            .map(|value_ty| {
                let index = self.types.len();
                self.types.push(TypeFields {
                    fields: HashMap::new(),
                    values: Some(FieldInfo {
                        ty: Some(value_ty),
                        ..FieldInfo::default()
                    }),
                });
                index
            });
        let strategy = match prop["x-kubernetes-patch-strategy"].as_str() {
            Some(s) if s.split(',').any(|p| p == "merge") => StrategyTag::Merge(
                prop["x-kubernetes-patch-merge-key"]
                    .as_str()
                    .map(str::to_string),
            ),
            Some(s) if s.split(',').any(|p| p == "replace") => StrategyTag::Replace,
            _ => StrategyTag::Default,
        };
        FieldInfo {
            ty,
            map_of,
            strategy,
        }
    }

    fn root<'a>(&'a self, name: &str) -> Ty<'a> {
        Ty {
            schema: self,
            index: self.names.get(name).copied(),
        }
    }

    /// The merge key of list field `path` (dot-separated, from `root`), if it merges by
    /// one: what a test or a caller checks a kind's lists against.
    pub fn merge_key(&self, root: &str, path: &str) -> Option<&str> {
        let mut ty = self.root(root);
        let mut meta = None;
        for part in path.split('.') {
            let m = lookup(ty, part);
            ty = m.ty;
            meta = Some(m);
        }
        match meta?.strategy {
            Strategy::Merge { key } => key,
            _ => None,
        }
    }
}

/// A position in the schema: the type of the value being merged (`None`: unknown, so maps
/// merge and lists are replaced, exactly the default for untagged fields upstream).
#[derive(Clone, Copy)]
struct Ty<'a> {
    schema: &'a PatchSchema,
    index: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy<'a> {
    /// Untagged: maps merge, lists are replaced wholesale.
    Default,
    /// `patchStrategy:"merge"`; `key` is the `patchMergeKey` for lists of objects, `None`
    /// for primitive lists (set union).
    Merge { key: Option<&'a str> },
    /// `patchStrategy:"replace"`.
    Replace,
}

struct FieldMeta<'a> {
    ty: Ty<'a>,
    strategy: Strategy<'a>,
}

/// Patch metadata of field `name` inside a value of type `ty`.
fn lookup<'a>(ty: Ty<'a>, name: &str) -> FieldMeta<'a> {
    let unknown = FieldMeta {
        ty: Ty {
            schema: ty.schema,
            index: None,
        },
        strategy: Strategy::Default,
    };
    let Some(fields) = ty.index.and_then(|i| ty.schema.types.get(i)) else {
        return unknown;
    };
    let Some(info) = fields.fields.get(name).or(fields.values.as_ref()) else {
        return unknown;
    };
    FieldMeta {
        ty: Ty {
            schema: ty.schema,
            index: info.map_of.or(info.ty),
        },
        strategy: match &info.strategy {
            StrategyTag::Default => Strategy::Default,
            StrategyTag::Merge(key) => Strategy::Merge {
                key: key.as_deref(),
            },
            StrategyTag::Replace => Strategy::Replace,
        },
    }
}

// ---------------------------------------------------------------------------------------
// Merge

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> PatchError {
    PatchError::Strategic(format!(
        "unknown patch type: {} in map: {}",
        display_plain(t),
        go_fmt(&Value::Object(m.clone()))
    ))
}

fn display_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE).cloned() {
        match d.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                return Ok(strip_directives_map(patch));
            }
            Some("delete") => return Ok(Map::new()),
            // `merge` is the default behaviour; drop the marker and go on.
            Some("merge") => {
                patch.remove(DIRECTIVE);
            }
            _ => return Err(bad_patch_type(&d, &patch)),
        }
    }

    if let Some(keep) = patch.remove(RETAIN_KEYS) {
        let Value::Array(keep) = keep else {
            return Err(PatchError::Strategic(format!(
                "invalid type for {RETAIN_KEYS} directive: expected a list"
            )));
        };
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }

    apply_set_element_order(&mut original, &mut patch, ty)?;

    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        let Some(patch_v) = patch.remove(&key) else {
            continue;
        };
        let (key, is_delete_list) = match key.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            Some(k) => (k.to_string(), true),
            None => (key, false),
        };
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let meta = lookup(ty, &key);
        let Some(orig_v) = original.remove(&key) else {
            if !is_delete_list {
                // Nothing to merge with: merge into an empty value of the patch's shape so
                // directives and nulls are stripped rather than stored.
                let v = merge_value(empty_like(&patch_v), patch_v, &meta)?;
                original.insert(key, v);
            }
            continue;
        };
        let merged = if is_delete_list {
            match (orig_v, patch_v) {
                (Value::Array(o), Value::Array(p)) => {
                    Value::Array(o.into_iter().filter(|v| !p.contains(v)).collect())
                }
                (o, _) => o,
            }
        } else {
            merge_value(orig_v, patch_v, &meta)?
        };
        original.insert(key, merged);
    }
    Ok(original)
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Null,
    }
}

/// Merges one field's value according to its metadata.
fn merge_value(orig: Value, patch: Value, meta: &FieldMeta<'_>) -> Result<Value, PatchError> {
    match (orig, patch) {
        (Value::Object(o), Value::Object(p)) => {
            if meta.strategy == Strategy::Replace {
                Ok(Value::Object(strip_directives_map(p)))
            } else {
                Ok(Value::Object(merge_map(o, p, meta.ty)?))
            }
        }
        (Value::Array(o), Value::Array(p)) => match meta.strategy {
            Strategy::Merge { key } => Ok(Value::Array(merge_list(o, p, key, meta.ty)?)),
            _ => Ok(strip_directives(Value::Array(p))),
        },
        // Different shapes (or scalars): the patch wins.
        (_, p) => Ok(strip_directives(p)),
    }
}

/// Removes `$`-directives and nulls from a value that is being stored without a merge.
fn strip_directives(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives_map(m)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|i| !(i.is_object() && i.get(DIRECTIVE).is_some()))
                .map(strip_directives)
                .collect(),
        ),
        other => other,
    }
}

fn strip_directives_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, v)| !is_directive(k) && !v.is_null())
        .map(|(k, v)| (k, strip_directives(v)))
        .collect()
}

/// The keys strategic merge reads as directives. Any other key, `$`-prefixed or not, is a
/// field (a label or a ConfigMap key may start with `$`), as in upstream's `mergeMap`; a
/// value stored without a merge keeps it, as a merge would (issue 13: the fuzzer found a
/// patch whose second application added back the `$x` key the first had dropped).
fn is_directive(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ORDER_PREFIX)
        || key.starts_with(DELETE_PRIMITIVE_PREFIX)
}

fn merge_key_value<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::Strategic(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(item)
    ))
}

/// Go's `%v` of a decoded JSON value (`map[k:v]`, `[a b]`), used where upstream formats a
/// patch fragment into an error message.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_fmt(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// `mergeSlice`: lists of maps merge by key, lists of primitives are unioned, then the
/// result is ordered (patch items in patch order, server-only items interleaved by their
/// original positions).
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&str>,
    ty: Ty<'_>,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_maps = original.iter().chain(patch.iter()).any(Value::is_object);
    let order_ref = patch.clone();
    let (merged, original_order) = if !is_maps {
        let mut both = original.clone();
        for p in patch {
            if !both.contains(&p) {
                both.push(p);
            }
        }
        (both, original)
    } else {
        let Some(key) = key else {
            return Err(PatchError::Strategic(
                "cannot merge lists without merge key".into(),
            ));
        };
        let (orig2, patch2) = merge_list_special_elements(original.clone(), patch, key)?;
        (merge_list_by_key(orig2, patch2, key, ty)?, original)
    };
    let (patch_items, server_only) = partition_by_presence(merged, &order_ref, key);
    Ok(normalize_order(
        patch_items,
        server_only,
        &order_ref,
        &original_order,
        key,
    ))
}

/// Handles list elements carrying `$patch`: `delete` removes the keyed element, `replace`
/// makes the list exactly the other patch elements.
fn merge_list_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(d) = item.get(DIRECTIVE).cloned() else {
            plain.push(item);
            continue;
        };
        match d.as_str() {
            Some("delete") => {
                let Some(kv) = merge_key_value(&item, key).cloned() else {
                    return Err(no_merge_key(&item, key));
                };
                original.retain(|o| merge_key_value(o, key) != Some(&kv));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Strategic(
                    "merging lists cannot yet be specified in the patch".into(),
                ))
            }
            _ => {
                let m = item.as_object().cloned().unwrap_or_default();
                return Err(bad_patch_type(&d, &m));
            }
        }
    }
    if replace {
        let stripped = plain.into_iter().map(strip_directives).collect();
        return Ok((stripped, Vec::new()));
    }
    Ok((original, plain))
}

fn merge_list_by_key(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    ty: Ty<'_>,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Value::Object(pm) = item else {
            return Err(PatchError::Strategic(format!(
                "list element {item} is not an object"
            )));
        };
        let Some(kv) = pm.get(key).cloned() else {
            return Err(no_merge_key(&Value::Object(pm), key));
        };
        match original
            .iter()
            .position(|o| merge_key_value(o, key) == Some(&kv))
        {
            Some(i) => {
                let o = std::mem::take(&mut original[i]);
                let om = match o {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(om, pm, ty)?);
            }
            None => original.push(Value::Object(merge_map(Map::new(), pm, ty)?)),
        }
    }
    Ok(original)
}

/// Identity of a list item for ordering: its merge-key value, or itself for primitives.
fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) if item.is_object() => merge_key_value(item, k),
        _ => Some(item),
    }
}

fn index_in(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|x| identity(x, key) == Some(id))
}

fn partition_by_presence(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|item| index_in(by, item, key).is_some())
}

/// `normalizeElementOrder`: sort `patch_items` by `patch_order` and `server_only` by
/// `server_order`, then interleave them (`mergeSortedSlice`) so that each server-only item
/// lands before the first patch item that followed it in the live list.
fn normalize_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    patch_items.sort_by_key(|v| index_in(patch_order, v, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| index_in(server_order, v, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = index_in(server_order, l, key);
                let ri = index_in(server_order, r, key);
                let take_left = matches!((li, ri), (Some(a), Some(b)) if a < b);
                if take_left {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
    out
}

/// `mergePatchIntoOriginal`: every `$setElementOrder/<list>` merges its list now (if the
/// patch has one) and then fixes the order: listed items in the directive's order,
/// server-only items interleaved by their live positions.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty<'_>,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER_PREFIX))
        .cloned()
        .collect();
    for dkey in directives {
        let list_key = dkey[SET_ORDER_PREFIX.len()..].to_string();
        let order = match patch.remove(&dkey) {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(PatchError::Strategic(format!(
                    "invalid type for {dkey}: expected a list, got {other}"
                )))
            }
            None => continue,
        };
        let meta = lookup(ty, &list_key);
        let key = match meta.strategy {
            Strategy::Merge { key } => key,
            _ => None,
        };
        let orig_list = match original.get(&list_key) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let patch_list = match patch.remove(&list_key) {
            Some(Value::Array(a)) => Some(a),
            Some(Value::Null) => {
                original.remove(&list_key);
                continue;
            }
            Some(other) => {
                // Not a list: leave it for the ordinary merge and ignore the ordering.
                patch.insert(list_key, other);
                continue;
            }
            None => None,
        };
        // Each item of the patch list (other than directives) must appear in the order list.
        if let Some(pl) = &patch_list {
            for item in pl.iter().filter(|i| i.get(DIRECTIVE).is_none()) {
                if index_in(&order, item, key).is_none() {
                    return Err(PatchError::Strategic(format!(
                        "error: the items in the patch list ({item}) are not in the $setElementOrder list"
                    )));
                }
            }
        }
        let merged = match patch_list {
            None => orig_list.clone(),
            Some(pl) if orig_list.is_empty() => {
                match merge_value(Value::Array(Vec::new()), Value::Array(pl), &meta)? {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                }
            }
            Some(pl) => {
                match merge_value(Value::Array(orig_list.clone()), Value::Array(pl), &meta)? {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                }
            }
        };
        let (listed, server_only) = partition_by_presence(merged, &order, key);
        let all = normalize_order(listed, server_only, &order, &orig_list, key);
        if all.is_empty() && !original.contains_key(&list_key) {
            continue;
        }
        original.insert(list_key, Value::Array(all));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The served kinds these tests patch, by their OpenAPI definitions.
    #[derive(Clone, Copy)]
    enum PatchKind {
        Pod,
        Node,
        ConfigMap,
        ServiceAccount,
    }

    impl PatchKind {
        fn root(self) -> &'static str {
            match self {
                PatchKind::Pod => "io.k8s.api.core.v1.Pod",
                PatchKind::Node => "io.k8s.api.core.v1.Node",
                PatchKind::ConfigMap => "io.k8s.api.core.v1.ConfigMap",
                PatchKind::ServiceAccount => "io.k8s.api.core.v1.ServiceAccount",
            }
        }
    }

    /// The schema the API server reads: its published definitions, with extensions.
    fn schema() -> &'static PatchSchema {
        use k8s_openapi::api::core::v1 as core;
        static SCHEMA: std::sync::OnceLock<PatchSchema> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| {
            PatchSchema::from_definitions(&openapi::definitions(&[
                openapi::def::<core::Pod>,
                openapi::def::<core::Node>,
                openapi::def::<core::ConfigMap>,
                openapi::def::<core::ServiceAccount>,
                openapi::def::<k8s_openapi::api::apps::v1::Deployment>,
            ]))
        })
    }

    fn smp(doc: Value, patch: Value, kind: PatchKind) -> Value {
        match strategic_merge_patch(&doc, &patch, schema(), kind.root()) {
            Ok(v) => v,
            Err(e) => panic!("patch failed: {e}"),
        }
    }

    #[test]
    fn merge_keys_come_from_the_kinds_types() {
        let s = schema();
        let pod = PatchKind::Pod.root();
        for (path, key) in [
            ("spec.containers", Some("name")),
            ("spec.containers.env", Some("name")),
            ("spec.containers.ports", Some("containerPort")),
            ("spec.volumes", Some("name")),
            ("status.conditions", Some("type")),
            ("metadata.ownerReferences", Some("uid")),
            ("spec.tolerations", None),
        ] {
            assert_eq!(s.merge_key(pod, path), key, "{path}");
        }
        assert_eq!(
            s.merge_key(PatchKind::Node.root(), "status.addresses"),
            Some("type")
        );
        // A kind nobody wrote a table for: its type says so.
        let deployment = "io.k8s.api.apps.v1.Deployment";
        assert_eq!(s.merge_key(deployment, "status.conditions"), Some("type"));
        assert_eq!(
            s.merge_key(deployment, "spec.template.spec.containers"),
            Some("name")
        );
    }

    #[test]
    fn json_and_merge_patch() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2]}});
        let out = json_patch(&doc, br#"[{"op":"replace","path":"/metadata/labels/a","value":"9"},{"op":"remove","path":"/spec/x/0"}]"#);
        assert_eq!(
            out.ok(),
            Some(json!({"metadata": {"labels": {"a": "9", "b": "2"}}, "spec": {"x": [2]}}))
        );
        assert!(matches!(
            json_patch(&doc, br#"[{"op":"test","path":"/spec/x/0","value":5}]"#),
            Err(PatchError::Apply(_))
        ));
        assert!(matches!(
            json_patch(&doc, b"{"),
            Err(PatchError::Malformed(_))
        ));
        let out = merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"x": [7]}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"x": [7]}})
        );
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"app": "web"}, "finalizers": ["a/x"]},
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "sidecar", "image": "busybox", "args": ["a", "b"]}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}
        })
    }

    #[test]
    fn label_and_annotation_patches() {
        // kubectl label app=api / kubectl label app- / kubectl annotate
        let out = smp(
            pod(),
            json!({"metadata": {"labels": {"app": "api", "tier": "fe"}}}),
            PatchKind::Pod,
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "api", "tier": "fe"})
        );
        let out = smp(
            pod(),
            json!({"metadata": {"labels": {"app": null}}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["labels"], json!({}));
        let out = smp(
            pod(),
            json!({"metadata": {"annotations": {"note": "x"}}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["annotations"], json!({"note": "x"}));
    }

    #[test]
    fn containers_merge_by_name() {
        let out = smp(
            pod(),
            json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}),
            PatchKind::Pod,
        );
        let c = &out["spec"]["containers"];
        assert_eq!(c.as_array().map(Vec::len), Some(2));
        assert_eq!(c[0]["image"], "nginx:1.26");
        assert_eq!(c[0]["env"][1]["value"], "2", "untouched fields survive");
        assert_eq!(c[1]["name"], "sidecar");
        // env merges by name; a new container is appended.
        let out = smp(
            pod(),
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
                                             {"name": "new", "image": "x"}]}}),
            PatchKind::Pod,
        );
        let c = &out["spec"]["containers"];
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(c.as_array().map(|a| a.iter().map(|x| x["name"].clone()).collect::<Vec<_>>()), Some(vec![json!("app"), json!("new"), json!("sidecar")]),
            "upstream puts patch items first unless a live item preceded them (hence $setElementOrder)");
        // args has no strategy: replaced.
        let out = smp(
            pod(),
            json!({"spec": {"containers": [{"name": "sidecar", "args": ["c"]}]}}),
            PatchKind::Pod,
        );
        assert_eq!(out["spec"]["containers"][1]["args"], json!(["c"]));
    }

    #[test]
    fn kubectl_apply_shapes() {
        // Second `kubectl apply` after removing the sidecar and changing an image.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"image": "nginx:1.27", "name": "app"}, {"$patch": "delete", "name": "sidecar"}]
            }
        });
        let out = smp(pod(), patch, PatchKind::Pod);
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.27");
        // Reordering via $setElementOrder only.
        let out = smp(
            pod(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}),
            PatchKind::Pod,
        );
        assert_eq!(out["spec"]["containers"][0]["name"], "sidecar");
        assert_eq!(out["spec"]["containers"][1]["name"], "app");
        // Adding an env var in the middle keeps the declared order.
        let patch = json!({"spec": {"containers": [{"name": "app",
            "$setElementOrder/env": [{"name": "A"}, {"name": "Z"}, {"name": "B"}],
            "env": [{"name": "Z", "value": "z"}]}],
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}]}});
        let out = smp(pod(), patch, PatchKind::Pod);
        let names: Vec<Value> = out["spec"]["containers"][0]["env"]
            .as_array()
            .map(|a| a.iter().map(|e| e["name"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![json!("A"), json!("Z"), json!("B")]);
        // Removing a field that was applied before: null.
        let out = smp(
            pod(),
            json!({"spec": {"tolerations": null}}),
            PatchKind::Pod,
        );
        assert!(out["spec"].get("tolerations").is_none());
    }

    #[test]
    fn directives() {
        // $patch: replace on a map.
        let out = smp(
            pod(),
            json!({"metadata": {"labels": {"$patch": "replace", "x": "y"}}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["labels"], json!({"x": "y"}));
        // $patch: delete on a map empties it.
        let out = smp(
            pod(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["labels"], json!({}));
        // $patch: replace inside a merging list.
        let out = smp(
            pod(),
            json!({"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"$patch": "replace"}]}}),
            PatchKind::Pod,
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "cfg", "configMap": {"name": "c"}}])
        );
        // $retainKeys: switching a volume's source.
        let out = smp(
            pod(),
            json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/d"}}]}}),
            PatchKind::Pod,
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "data", "hostPath": {"path": "/d"}}])
        );
        // $deleteFromPrimitiveList and union of primitive lists.
        let out = smp(
            pod(),
            json!({"metadata": {"finalizers": ["b/y"]}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b/y", "a/x"]));
        let out = smp(
            pod(),
            json!({"metadata": {"finalizers": ["b/y"], "$setElementOrder/finalizers": ["a/x", "b/y"]}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a/x", "b/y"]));
        let out = smp(
            pod(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}}),
            PatchKind::Pod,
        );
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        // Bad directive and missing merge key are errors.
        assert!(strategic_merge_patch(
            &pod(),
            &json!({"metadata": {"labels": {"$patch": "bogus"}}}),
            schema(),
            PatchKind::Pod.root()
        )
        .is_err());
        let err = strategic_merge_patch(
            &pod(),
            &json!({"spec": {"containers": [{"image": "x"}]}}),
            schema(),
            PatchKind::Pod.root(),
        );
        assert_eq!(
            err.err().map(|e| e.to_string()),
            Some("map: map[image:x] does not contain declared merge key: name".into())
        );
    }

    #[test]
    fn atomic_lists_and_status() {
        // tolerations are atomic: replaced.
        let out = smp(
            pod(),
            json!({"spec": {"tolerations": [{"key": "z", "operator": "Exists"}]}}),
            PatchKind::Pod,
        );
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "z", "operator": "Exists"}])
        );
        // status.conditions merge by type (kubelet status patches).
        let out = smp(
            pod(),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}),
            PatchKind::Pod,
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
        assert_eq!(out["status"]["phase"], "Running");
        // Node: addresses by type, podCIDRs union, taints replaced.
        let node = json!({"spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
                          "status": {"addresses": [{"type": "InternalIP", "address": "1.1.1.1"}, {"type": "Hostname", "address": "n"}]}});
        let out = smp(
            node,
            json!({"spec": {"podCIDRs": ["fd00::/64"], "taints": []},
                                   "status": {"addresses": [{"type": "InternalIP", "address": "2.2.2.2"}]}}),
            PatchKind::Node,
        );
        assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));
        assert_eq!(out["spec"]["taints"], json!([]));
        assert_eq!(
            out["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "2.2.2.2"}, {"type": "Hostname", "address": "n"}])
        );
        // ConfigMap data merges as a map; other kinds replace lists.
        let cm = json!({"data": {"a": "1", "b": "2"}});
        let out = smp(
            cm,
            json!({"data": {"a": null, "c": "3"}}),
            PatchKind::ConfigMap,
        );
        assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
        // ServiceAccount secrets merge by name.
        let sa = json!({"secrets": [{"name": "a"}]});
        let out = smp(
            sa,
            json!({"secrets": [{"name": "b"}]}),
            PatchKind::ServiceAccount,
        );
        assert_eq!(out["secrets"], json!([{"name": "b"}, {"name": "a"}]));
    }

    #[test]
    fn ordering_interleaves_server_only_items() {
        // Patch items come in patch order; a server-only item is placed before the first
        // patch item that followed it in the live list (upstream's mergeSortedSlice).
        let live =
            json!({"metadata": {"ownerReferences": [{"uid": "1"}, {"uid": "2"}, {"uid": "3"}]}});
        let out = smp(
            live,
            json!({"metadata": {"ownerReferences": [{"uid": "0"}, {"uid": "2", "x": 1}]}}),
            PatchKind::ConfigMap,
        );
        let uids: Vec<Value> = out["metadata"]["ownerReferences"]
            .as_array()
            .map(|a| a.iter().map(|e| e["uid"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(uids, vec![json!("0"), json!("1"), json!("2"), json!("3")]);
    }

    #[test]
    fn unknown_dollar_keys_are_fields() {
        // Stored without a merge (a new key, a value of another shape) or merged into an
        // existing map: the same result, so applying the patch again changes nothing.
        let patch = json!({"spec": {"$retainKeys": ["containers"], "containers": {"$x": false}}});
        let doc = json!({"spec": {"containers": [{"name": "a"}]}});
        let once = smp(doc, patch.clone(), PatchKind::Pod);
        assert_eq!(once, json!({"spec": {"containers": {"$x": false}}}));
        assert_eq!(smp(once.clone(), patch, PatchKind::Pod), once);
        let labels = json!({"metadata": {"labels": {"$a": "1", "$patch": "replace"}}});
        assert_eq!(
            smp(json!({}), labels, PatchKind::Pod),
            json!({"metadata": {"labels": {"$a": "1"}}})
        );
    }

    #[test]
    fn new_subtrees_drop_directives() {
        let out = smp(
            json!({}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "x", "value": null}]}]}}),
            PatchKind::Pod,
        );
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "x"}]}]}})
        );
    }
}

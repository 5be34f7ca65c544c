//! PATCH bodies: JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch
//! against the served kinds' schema, on seed objects.

use fuzz::proptest::prelude::*;
use fuzz::proptest::sample::select;
use fuzz::{check, ensure, gen, mutate, seeds};
use serde_json::Value;

/// The OpenAPI definition a strategic merge of `doc` follows: its kind's, as the PATCH
/// handler picks it, or another served kind's (a mismatch the fuzzer may try).
fn roots() -> Vec<&'static str> {
    apiserver::registry::all()
        .iter()
        .map(|r| r.definition())
        .chain(["", "io.k8s.api.core.v1.Nope"])
        .collect()
}

/// JSON patches apply or fail with a message, whatever their bytes.
#[test]
fn json_patches() {
    let patches: Vec<Vec<u8>> = seeds::json_patches()
        .iter()
        .filter_map(|p| serde_json::to_vec(p).ok())
        .collect();
    let patch = prop_oneof![
        3 => mutate::mutated(patches, 6),
        2 => gen::edited(seeds::json_patches(), 3)
            .prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ];
    let doc = gen::edited(seeds::objects().to_vec(), 2);
    check("json-patch", 20000, (doc, patch), |(doc, patch)| {
        let _ = api::patch::json_patch(&doc, &patch);
        Ok(())
    });
}

/// The served resource whose objects `doc` is (not for kinds served in a converted form).
fn resource_of(doc: &Value) -> Option<&'static apiserver::registry::Resource> {
    apiserver::registry::all().iter().copied().find(|r| {
        r.conversion.is_none()
            && doc["apiVersion"] == r.api_version().as_str()
            && doc["kind"] == r.kind
    })
}

/// Whether every list item the strategic patch `v` (at `path` under `root`) merges by key
/// names a scalar key. Upstream matches items by their key with DeepEqual and appends an
/// unmatched one as it is, so an item keyed by `null` or an object (which no served kind's
/// lists have, and which the typed decode turns into something else) is appended again on
/// every application, there as here: such patches are checked for errors as values only.
fn scalar_merge_keys(schema: &api::patch::PatchSchema, root: &str, path: &str, v: &Value) -> bool {
    let Value::Object(m) = v else {
        return true;
    };
    m.iter().filter(|(k, _)| !k.starts_with('$')).all(|(k, v)| {
        let at = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match v {
            Value::Array(items) => {
                let key = schema.merge_key(root, &at);
                items.iter().all(|item| {
                    let keyed = match (key, item) {
                        (Some(key), Value::Object(o)) => o
                            .get(key)
                            .is_none_or(|kv| kv.is_string() || kv.is_number() || kv.is_boolean()),
                        _ => true,
                    };
                    keyed && scalar_merge_keys(schema, root, &at, item)
                })
            }
            other => scalar_merge_keys(schema, root, &at, other),
        }
    })
}

/// Merge patches and strategic merge patches apply or fail with a message. The same PATCH
/// sent twice leaves a stored object as the first left it: merge patches are idempotent,
/// and a strategic merge applied to an object's stored form (the typed decode the handler
/// runs after patching), then again to what that stored, stores the same.
#[test]
fn merge_and_strategic_patches() {
    let schema = apiserver::fuzzing::patch_schema();
    let merge = gen::edited(seeds::merge_patches(), 3);
    let strategic = gen::edited(seeds::strategic_patches(), 3);
    let doc = gen::edited(seeds::objects().to_vec(), 2);
    let input = (doc, merge, strategic, select(roots()));
    check(
        "merge-patch",
        8000,
        input,
        |(doc, merge, strategic, other_root)| {
            let once = api::patch::merge_patch(&doc, &merge);
            let twice = api::patch::merge_patch(&once, &merge);
            ensure(once == twice, || {
                format!("merge patch not idempotent: {once} then {twice}")
            })?;
            // Any document against any root: a result or an error.
            let _ = api::patch::strategic_merge_patch(&doc, &strategic, schema, other_root);
            let Some(r) = resource_of(&doc) else {
                return Ok(());
            };
            let root = r.definition();
            if !scalar_merge_keys(schema, root, "", &strategic) {
                return Ok(());
            }
            let stored = |v: Value| r.strategy.decode(v).ok().map(|d| d.object);
            let patched =
                |v: &Value| api::patch::strategic_merge_patch(v, &strategic, schema, root).ok();
            let Some(first) = stored(doc).and_then(|d| patched(&d)).and_then(stored) else {
                return Ok(());
            };
            if let Some(second) = patched(&first).and_then(stored) {
                ensure(second == first, || {
                    format!("the same strategic merge stored {first} then {second}")
                })?;
            }
            Ok(())
        },
    );
}

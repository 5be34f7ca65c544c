//! Stored objects. The store holds each object as typed-order JSON (`apiVersion`, `kind`,
//! `metadata` first) without `metadata.resourceVersion`; the resource version is the store's
//! modification revision and is spliced in on the way out, so reads and lists never parse.

use bytes::Bytes;
use serde_json::Value;
use store::{KeyValue, Revision};

const METADATA: &[u8] = b"\"metadata\":{";

/// The stored bytes with `"resourceVersion":"<rev>"` added as the first metadata field.
pub fn with_resource_version(stored: &[u8], rev: Revision) -> Vec<u8> {
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    match find(stored, METADATA) {
        Some(at) => {
            let insert_at = at + METADATA.len();
            let empty = stored.get(insert_at) == Some(&b'}');
            let mut out = Vec::with_capacity(stored.len() + rv.len() + 1);
            out.extend_from_slice(&stored[..insert_at]);
            out.extend_from_slice(rv.as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(&stored[insert_at..]);
            out
        }
        // Every stored object has metadata; fall back to a parse if one does not.
        None => match serde_json::from_slice::<Value>(stored) {
            Ok(mut v) => {
                v["metadata"]["resourceVersion"] = Value::String(rev.to_string());
                serde_json::to_vec(&v).unwrap_or_else(|_| stored.to_vec())
            }
            Err(_) => stored.to_vec(),
        },
    }
}

/// Where the top-level object's `"metadata":{` starts. Typed order puts `metadata` after
/// `apiVersion` and `kind` but not always first of the rest (a ControllerRevision's `data`
/// comes before it and may hold a nested `"metadata":{`), so only a key at depth 1 counts;
/// strings are skipped, escapes included.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < haystack.len() {
        match haystack[i] {
            b'"' => {
                if depth == 1 && haystack[i..].starts_with(needle) {
                    return Some(i);
                }
                // Skip the string.
                i += 1;
                while i < haystack.len() && haystack[i] != b'"' {
                    if haystack[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A stored object as a client sees it.
pub fn render(kv: &KeyValue) -> Vec<u8> {
    with_resource_version(&kv.value, kv.mod_revision)
}

/// A stored object parsed, with its resource version set.
pub fn parse(kv: &KeyValue) -> Result<Value, serde_json::Error> {
    parse_at(&kv.value, kv.mod_revision)
}

pub fn parse_at(value: &Bytes, rev: Revision) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(value)?;
    v["metadata"]["resourceVersion"] = Value::String(rev.to_string());
    Ok(v)
}

/// Metadata accessors on a JSON object.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

pub fn namespace(obj: &Value) -> Option<&str> {
    obj["metadata"]["namespace"].as_str()
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
}

pub fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Default::default());
    }
    match obj["metadata"].as_object_mut() {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// RFC 3339 with seconds, as metav1.Time serialises.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_resource_version() {
        let out = with_resource_version(
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#,
            7,
        );
        let v: Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert_eq!(v["metadata"]["name"], "a");
        let out = with_resource_version(br#"{"metadata":{}}"#, 9);
        let v: Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(v["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn nested_metadata_before_the_object_s_is_not_it() {
        let stored = br#"{"apiVersion":"apps/v1","data":{"spec":{"template":{"metadata":{"labels":{}}}}},"kind":"ControllerRevision","metadata":{"name":"r"},"revision":1}"#;
        let v: Value = serde_json::from_slice(&with_resource_version(stored, 4)).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "4");
        assert_eq!(
            v["data"]["spec"]["template"]["metadata"],
            serde_json::json!({"labels": {}})
        );
    }

    #[test]
    fn strings_cannot_fake_metadata() {
        let stored =
            br#"{"data":{"k":"\"metadata\":{"},"kind":"ConfigMap","metadata":{"name":"c"}}"#;
        let v: Value = serde_json::from_slice(&with_resource_version(stored, 3)).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "3");
        assert_eq!(v["data"]["k"], "\"metadata\":{");
    }
}

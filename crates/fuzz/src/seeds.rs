//! The corpus the targets mutate: real objects of every served kind (the protobuf crate's
//! `testdata/served.json`, the e2e suite's manifests), patches of each type as kubectl and
//! controllers send them, and selectors.

use std::sync::OnceLock;

use serde_json::{json, Value};

const SERVED: &str = include_str!("../../protobuf/testdata/served.json");

/// The e2e suite's manifests (YAML, one malformed on purpose), read once.
fn e2e_manifests() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/testdata");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    })
}

/// Every seed object: the served kinds (and a list, a Status, DeleteOptions), the e2e
/// suite's pods and namespace, and a PodTemplate made from the pod seed.
pub fn objects() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| {
        let mut out: Vec<Value> = serde_json::from_str(SERVED).unwrap_or_default();
        out.extend(
            e2e_manifests()
                .iter()
                .filter_map(|b| serde_yaml::from_slice::<Value>(b).ok())
                .filter(Value::is_object),
        );
        if let Some(pod) = out.iter().find(|o| o["kind"] == "Pod").cloned() {
            out.push(json!({
                "apiVersion": "v1", "kind": "PodTemplate",
                "metadata": {"name": "tmpl", "namespace": "default"},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod["spec"]},
            }));
        }
        out
    })
}

/// The seed objects of one kind (`apiVersion`, `kind`).
pub fn objects_of(api_version: &str, kind: &str) -> Vec<Value> {
    objects()
        .iter()
        .filter(|o| o["apiVersion"] == api_version && o["kind"] == kind)
        .cloned()
        .collect()
}

/// The seed objects as JSON bytes, and the e2e manifests' own YAML bytes.
pub fn json_bodies() -> Vec<Vec<u8>> {
    objects()
        .iter()
        .filter_map(|o| serde_json::to_vec(o).ok())
        .chain(std::iter::once(
            // Repeated keys, as a hand-written body has them.
            br#"{"metadata":{"name":"dup","name":"dup2"},"data":{"a":"1","a":"2"}}"#.to_vec(),
        ))
        .collect()
}

pub fn yaml_bodies() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = e2e_manifests().to_vec();
    out.extend(
        objects()
            .iter()
            .filter_map(|o| serde_yaml::to_string(o).ok())
            .map(String::into_bytes),
    );
    out
}

/// The seed objects in the protobuf envelope (those the schema can express).
pub fn protobuf_bodies() -> Vec<Vec<u8>> {
    objects()
        .iter()
        .filter_map(|o| protobuf::encode_object(o).ok())
        .collect()
}

/// JSON patches (RFC 6902) as kubectl and controllers send them, good and bad.
pub fn json_patches() -> Vec<Value> {
    vec![
        json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}]),
        json!([{"op": "remove", "path": "/metadata/annotations"}]),
        json!([{"op": "test", "path": "/metadata/name", "value": "web"},
               {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"}]),
        json!([{"op": "move", "from": "/data/a", "path": "/data/b"}]),
        json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "s", "image": "b"}}]),
        json!([{"op": "replace", "path": "/metadata/namespace", "value": "other"}]),
        json!([{"op": "add", "path": "/metadata/finalizers", "value": ["example.com/x"]}]),
        json!([{"op": "remove", "path": "/status"}]),
        json!([{"op": "nope", "path": "/"}]),
        json!([]),
    ]
}

/// Merge patches (RFC 7386).
pub fn merge_patches() -> Vec<Value> {
    vec![
        json!({"metadata": {"labels": {"x": "y", "app": null}}}),
        json!({"data": {"a": "1", "b": null}}),
        json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}),
        json!({"metadata": {"name": "renamed"}}),
        json!({"status": {"phase": "Running"}}),
        json!({"spec": {"replicas": 3}}),
        json!({}),
    ]
}

/// Strategic merge patches, directives included.
pub fn strategic_patches() -> Vec<Value> {
    vec![
        json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}),
        json!({"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "app"}],
                        "containers": [{"name": "b", "image": "busybox"}]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/x"]}}),
        json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
        json!({"spec": {"$retainKeys": ["containers"], "containers": []}}),
        json!({"spec": {"volumes": [{"name": "cache", "$patch": "replace", "emptyDir": {}}]}}),
        json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        json!({"$patch": "delete"}),
        json!({"spec": {"containers": {"$patch": "merge"}}}),
    ]
}

/// Label selectors, as users write them.
pub const LABEL_SELECTORS: &[&str] = &[
    "app=web",
    "app==web,tier!=db",
    "env in (prod,staging),!legacy",
    "a notin (),b",
    "example.com/part-of=x, n>3, n<10",
    "x in (a,,b)",
    "!a,b=,c in (d)",
];

/// Field selectors, as users write them.
pub const FIELD_SELECTORS: &[&str] = &[
    "metadata.name=web",
    "metadata.namespace!=default,status.phase=Running",
    "spec.nodeName=",
    r"metadata.name=a\,b\=c\\d",
    "involvedObject.kind==Pod,type=Warning",
    "spec.host=node-1",
];

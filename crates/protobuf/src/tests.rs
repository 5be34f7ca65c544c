//! Round trips per served kind, schema coverage against the OpenAPI documents, Go's
//! zero-value conventions, and garbage input.

use serde_json::{json, Map, Value};

use crate::schema::{self, Kind, MapValue, Message};
use crate::{decode_object, decode_watch_event, encode_object, encode_watch_event, Error};

/// The kinds peapod serves (and the lists, Status and options it reads or writes), as
/// (apiVersion, kind, OpenAPI definition).
const SERVED: &[(&str, &str, &str)] = &[
    ("v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
    ("v1", "NamespaceList", "io.k8s.api.core.v1.NamespaceList"),
    ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("v1", "PodList", "io.k8s.api.core.v1.PodList"),
    ("v1", "Node", "io.k8s.api.core.v1.Node"),
    ("v1", "NodeList", "io.k8s.api.core.v1.NodeList"),
    ("v1", "Event", "io.k8s.api.core.v1.Event"),
    ("v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("v1", "Secret", "io.k8s.api.core.v1.Secret"),
    ("v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"),
    ("v1", "PodTemplate", "io.k8s.api.core.v1.PodTemplate"),
    (
        "v1",
        "PodTemplateList",
        "io.k8s.api.core.v1.PodTemplateList",
    ),
    ("v1", "Binding", "io.k8s.api.core.v1.Binding"),
    (
        "coordination.k8s.io/v1",
        "Lease",
        "io.k8s.api.coordination.v1.Lease",
    ),
    ("events.k8s.io/v1", "Event", "io.k8s.api.events.v1.Event"),
    (
        "scheduling.k8s.io/v1",
        "PriorityClass",
        "io.k8s.api.scheduling.v1.PriorityClass",
    ),
    ("policy/v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
    (
        "authentication.k8s.io/v1",
        "TokenRequest",
        "io.k8s.api.authentication.v1.TokenRequest",
    ),
    (
        "v1",
        "Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    ),
    (
        "meta.k8s.io/v1",
        "DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    ),
];

/// Fields Kubernetes added after the release k8s-pb 0.9 was cut from (1.35), which the
/// table does not have yet. Objects using them are answered in JSON (the encoder refuses
/// fields it has no number for), and a protobuf body cannot set them.
const KNOWN_GAPS: &[&str] = &[
    "io.k8s.api.authentication.v1.TokenRequestSpec.attestations",
    "io.k8s.api.core.v1.ClusterTrustBundleProjection.user",
    "io.k8s.api.core.v1.ConfigMapVolumeSource.defaultUser",
    "io.k8s.api.core.v1.DownwardAPIVolumeFile.user",
    "io.k8s.api.core.v1.DownwardAPIVolumeSource.defaultUser",
    "io.k8s.api.core.v1.EmptyDirVolumeSource.mode",
    "io.k8s.api.core.v1.GRPCAction.mode",
    "io.k8s.api.core.v1.HTTPGetAction.protocol",
    "io.k8s.api.core.v1.KeyToPath.user",
    "io.k8s.api.core.v1.NodeSpec.podPreemptionPolicy",
    "io.k8s.api.core.v1.NodeSystemInfo.runningInUserNamespace",
    "io.k8s.api.core.v1.PodCertificateProjection.user",
    "io.k8s.api.core.v1.PodSpec.evictionResponders",
    "io.k8s.api.core.v1.PodSpec.schedulingGroup",
    "io.k8s.api.core.v1.PodStatus.nodeAllocatableResourceClaimStatuses",
    "io.k8s.api.core.v1.PodStatus.volumeHealth",
    "io.k8s.api.core.v1.ProjectedVolumeSource.defaultUser",
    "io.k8s.api.core.v1.ResourceHealth.message",
    "io.k8s.api.core.v1.SecretVolumeSource.defaultUser",
    "io.k8s.api.core.v1.ServiceAccountTokenProjection.user",
    "io.k8s.api.core.v1.VolumeMount.bindMountOptions",
    "io.k8s.api.core.v1.VolumeMountStatus.volumeStatus",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta.shardInfo",
];

/// The definitions of the documents describing the kinds of [`SERVED`] (and the
/// subresource bodies they take), as the API server publishes them.
fn definitions() -> Map<String, Value> {
    use k8s_openapi::api::{coordination, core, events, scheduling};
    use openapi::{def, ListSchema, SchemaFn, ServedKind, Subresource as S, Verbs};
    let kind = |group, kind, plural, namespaced, schema: SchemaFn, subs: &[S]| ServedKind {
        group,
        version: "v1",
        kind,
        plural,
        namespaced,
        schema,
        list: ListSchema {
            kind: Box::leak(format!("{kind}List").into_boxed_str()),
            description: "",
            items: "",
            metadata: "",
        },
        verbs: Verbs::ALL,
        delete_returns_object: false,
        subresources: subs.to_vec(),
    };
    let docs = openapi::Documents::new(vec![
        kind(
            "",
            "Namespace",
            "namespaces",
            false,
            def::<core::v1::Namespace>,
            &[S::Status],
        ),
        kind(
            "",
            "Pod",
            "pods",
            true,
            def::<core::v1::Pod>,
            &[S::Binding, S::Eviction],
        ),
        kind("", "Node", "nodes", false, def::<core::v1::Node>, &[]),
        kind("", "Event", "events", true, def::<core::v1::Event>, &[]),
        kind(
            "",
            "ConfigMap",
            "configmaps",
            true,
            def::<core::v1::ConfigMap>,
            &[],
        ),
        kind("", "Secret", "secrets", true, def::<core::v1::Secret>, &[]),
        kind(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            def::<core::v1::ServiceAccount>,
            &[S::Token],
        ),
        kind(
            "",
            "PodTemplate",
            "podtemplates",
            true,
            def::<core::v1::PodTemplate>,
            &[],
        ),
        kind(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            def::<coordination::v1::Lease>,
            &[],
        ),
        kind(
            "events.k8s.io",
            "Event",
            "events",
            true,
            def::<events::v1::Event>,
            &[],
        ),
        kind(
            "scheduling.k8s.io",
            "PriorityClass",
            "priorityclasses",
            false,
            def::<scheduling::v1::PriorityClass>,
            &[],
        ),
    ]);
    let doc: Value = serde_json::from_slice(&docs.v2_document()).expect("v2 document");
    doc["definitions"].as_object().expect("definitions").clone()
}

fn def_ref(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/definitions/"))
        .or_else(|| {
            schema["allOf"][0]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/definitions/"))
        })
}

/// The JSON names a message carries, inline fields flattened.
fn json_names(m: &Message, out: &mut Vec<&'static str>) {
    for f in m.fields {
        match (f.inline, f.kind) {
            (true, Kind::Message(i)) => json_names(schema::by_index(i), out),
            _ => out.push(f.json),
        }
    }
}

/// Every property of every generated message's OpenAPI definition has a protobuf field:
/// what k8s-pb lacks (fields added upstream after it) must be listed in `generate::EXTRA`.
#[test]
fn table_covers_every_served_field() {
    let defs = definitions();
    let mut missing = Vec::new();
    for m in schema::messages() {
        let Some(def) = defs.get(m.name) else {
            continue;
        };
        let mut names = Vec::new();
        json_names(m, &mut names);
        let props = def["properties"].as_object().cloned().unwrap_or_default();
        let type_meta = props.contains_key("apiVersion")
            && props.contains_key("kind")
            && !names.contains(&"kind");
        for p in props.keys() {
            if type_meta && (p == "apiVersion" || p == "kind") {
                continue;
            }
            if !names.contains(&p.as_str()) {
                missing.push(format!("{}.{p}", m.name));
            }
        }
    }
    missing.retain(|m| !KNOWN_GAPS.contains(&m.as_str()));
    assert!(
        missing.is_empty(),
        "fields without protobuf numbers: {missing:#?}"
    );
}

/// A value for every property of `def`, none of them zero, so a round trip exercises
/// every field the schema has (the fixture is generated, not picked).
fn populate(defs: &Map<String, Value>, def: &str, depth: usize) -> Value {
    match def {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => return json!("1500m"),
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => return json!("http"),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => return json!("2024-05-06T07:08:09Z"),
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            return json!("2024-05-06T07:08:09.123456Z")
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension" => {
            return json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "raw"}})
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            return json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
        }
        _ => {}
    }
    let schema = &defs[def];
    let message = schema::message(def);
    let mut out = Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, p) in props {
            if KNOWN_GAPS.contains(&format!("{def}.{name}").as_str()) {
                continue;
            }
            // TypeMeta is not in the message: the envelope carries the top level's.
            if (name == "apiVersion" || name == "kind")
                && message.is_some_and(|m| !m.fields.iter().any(|f| f.json == name))
            {
                continue;
            }
            out.insert(name.clone(), populate_schema(defs, p, name, depth));
        }
    }
    Value::Object(out)
}

fn populate_schema(defs: &Map<String, Value>, p: &Value, name: &str, depth: usize) -> Value {
    if let Some(r) = def_ref(p) {
        return populate(defs, r, depth + 1);
    }
    match (p["type"].as_str(), p["format"].as_str()) {
        (Some("string"), Some("byte")) => json!("aGVsbG8gd29ybGQ="),
        (Some("string"), Some("date-time")) => json!("2024-05-06T07:08:09Z"),
        (Some("string"), _) => json!(format!("{name}-value")),
        (Some("integer"), Some("int64")) => json!(1_234_567_890_123i64),
        (Some("integer"), _) => json!(42),
        (Some("number"), _) => json!(1.5),
        (Some("boolean"), _) => json!(true),
        (Some("array"), _) => json!([populate_schema(defs, &p["items"], name, depth + 1)]),
        (Some("object"), _) if p["additionalProperties"].is_object() => {
            json!({ "some-key": populate_schema(defs, &p["additionalProperties"], name, depth + 1) })
        }
        _ => json!({ "free": "form" }),
    }
}

fn round_trip(value: &Value) -> Value {
    let bytes = encode_object(value).unwrap_or_else(|e| panic!("encode {}: {e}", value["kind"]));
    decode_object(&bytes).unwrap_or_else(|e| panic!("decode: {e}"))
}

/// First difference between two JSON values, as a path.
fn diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if let Some(d) = diff(va, vb, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| diff(va, vb, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

/// JSON → protobuf → JSON is the identity for a fully populated object of every kind.
#[test]
fn every_served_kind_round_trips_fully_populated() {
    let defs = definitions();
    for (api_version, kind, def) in SERVED {
        let mut value = populate(&defs, def, 0);
        assert!(
            value.as_object().is_some_and(|o| !o.is_empty()),
            "{def} has no properties"
        );
        value["apiVersion"] = json!(api_version);
        value["kind"] = json!(kind);
        let back = round_trip(&value);
        if let Some(d) = diff(&value, &back, kind) {
            panic!("{kind} does not round-trip: {d}");
        }
    }
}

/// Objects as a real cluster serves them (status, managed fields, quantities, micro
/// times, int-or-string ports, secret bytes) round-trip unchanged.
#[test]
fn recorded_objects_round_trip() {
    let text = include_str!("../testdata/served.json");
    let objects: Vec<Value> = serde_json::from_str(text).expect("testdata/served.json");
    assert!(objects.len() >= 8);
    for obj in &objects {
        let back = round_trip(obj);
        if let Some(d) = diff(obj, &back, obj["kind"].as_str().unwrap_or("?")) {
            panic!("recorded object does not round-trip: {d}");
        }
    }
}

/// The e2e manifests, as the API server's typed decoding normalizes them.
#[test]
fn e2e_manifests_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/testdata");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/e2e/testdata") {
        let path = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            // A malformed document ends the file: serde_yaml's iterator does not resume.
            let Ok(value) = <Value as serde::Deserialize>::deserialize(doc) else {
                break;
            };
            let typed = match value["kind"].as_str() {
                Some("Pod") => serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(value)
                    .ok()
                    .map(|p| serde_json::to_value(p).expect("serializes")),
                Some("Namespace") => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::Namespace>(value)
                        .ok()
                        .map(|p| serde_json::to_value(p).expect("serializes"))
                }
                _ => None,
            };
            let Some(obj) = typed else { continue };
            let back = round_trip(&obj);
            assert_eq!(diff(&obj, &back, "manifest"), None, "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} manifests read");
}

/// Go's encoder writes every non-pointer field, zero or not; its JSON leaves out zero
/// `omitempty` fields. A decoded body must look like the JSON the client would have sent:
/// zeros of plain fields dropped, zeros of pointer and required fields kept.
#[test]
fn go_zero_values_decode_as_go_json() {
    use crate::wire::Writer;
    let pod = schema::message("io.k8s.api.core.v1.Pod").expect("Pod");
    let container = |w: &mut Writer| {
        w.bytes_field(1, b"app"); // name (required): kept even if empty elsewhere
        w.bytes_field(2, b"busybox");
        w.bytes_field(5, b""); // workingDir ""
        w.varint_field(16, 0); // stdin false
        let m = w.begin_nested(6); // ports
        w.varint_field(3, 80); // containerPort
        w.varint_field(2, 0); // hostPort 0: unset
        w.end_nested(m);
    };
    let mut spec = Writer::default();
    let m = spec.begin_nested(2);
    container(&mut spec);
    spec.end_nested(m);
    spec.varint_field(4, 0); // terminationGracePeriodSeconds 0: pointer, kept
    spec.varint_field(11, 0); // hostNetwork false: dropped
    spec.varint_field(21, 0); // automountServiceAccountToken false: pointer, kept
    spec.bytes_field(3, b""); // restartPolicy "": dropped
    let mut meta = Writer::default();
    meta.bytes_field(1, b"p");
    meta.bytes_field(2, b""); // generateName
    meta.varint_field(7, 0); // generation
    let m = meta.begin_nested(8); // creationTimestamp: zero time is an empty message
    meta.end_nested(m);
    let mut w = Writer::default();
    w.bytes_field(1, &meta.buf);
    w.bytes_field(2, &spec.buf);
    let m = w.begin_nested(3); // an empty status, as Go always writes it
    w.end_nested(m);
    let got = crate::decode_message(pod, &w.buf).expect("decodes");
    assert_eq!(
        got,
        json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80}]}],
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
            },
            "status": {},
        })
    );
}

/// A map entry without its value holds the value type's zero value, as Go's decoder
/// leaves it: for a Quantity that is "0", the same as an empty Quantity message (the fuzzer
/// found "" for one and "0" for the other, so a decoded object changed on its way back).
#[test]
fn map_entries_without_a_value_are_zero() {
    use crate::wire::Writer;
    let rr = schema::message("io.k8s.api.core.v1.ResourceRequirements").expect("message");
    let mut w = Writer::default();
    let m = w.begin_nested(2); // requests: key only
    w.bytes_field(1, b"cpu");
    w.end_nested(m);
    let m = w.begin_nested(2); // requests: an empty Quantity
    w.bytes_field(1, b"memory");
    let q = w.begin_nested(2);
    w.end_nested(q);
    w.end_nested(m);
    let got = crate::decode_message(rr, &w.buf).expect("decodes");
    assert_eq!(got, json!({"requests": {"cpu": "0", "memory": "0"}}));
    let again = crate::encode_message(rr, &got).expect("encodes");
    assert_eq!(crate::decode_message(rr, &again).expect("decodes"), got);
}

#[test]
fn special_types_take_their_json_shapes() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "creationTimestamp": "2024-01-02T03:04:05Z"},
        "spec": {"containers": [{
            "name": "c",
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
            "livenessProbe": {"httpGet": {"port": 8080, "path": "/"}},
            "readinessProbe": {"httpGet": {"port": "http"}},
        }]},
    });
    assert_eq!(round_trip(&pod), pod);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k": "AAEC/w=="}, "type": "Opaque"});
    let bytes = encode_object(&secret).expect("encodes");
    // The value travels as raw bytes, not as its base64 text.
    assert!(bytes.windows(4).any(|w| w == [0, 1, 2, 255]));
    assert_eq!(round_trip(&secret), secret);
}

#[test]
fn watch_events_frame_the_enveloped_object() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}});
    let mut stream = encode_watch_event("ADDED", &cm).expect("encodes");
    stream.extend(encode_watch_event("DELETED", &cm).expect("encodes"));
    let len = u32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
    // The frame holds a bare WatchEvent; only the object inside has the magic.
    assert_ne!(&stream[4..8], b"k8s\0");
    assert!(len < stream.len());
    let (t, obj, rest) = decode_watch_event(&stream).expect("first");
    assert_eq!((t.as_str(), &obj), ("ADDED", &cm));
    let (t, obj, rest) = decode_watch_event(rest).expect("second");
    assert_eq!((t.as_str(), &obj), ("DELETED", &cm));
    assert!(rest.is_empty());
}

#[test]
fn envelope_errors_are_clear() {
    assert!(matches!(
        decode_object(b"{\"kind\":\"Pod\"}"),
        Err(Error::NoMagic)
    ));
    assert!(matches!(decode_object(b"k8s\0"), Err(Error::Malformed(_))));
    let mut unknown_kind = crate::wire::Writer::default();
    unknown_kind.buf.extend_from_slice(b"k8s\0");
    let m = unknown_kind.begin_nested(1);
    unknown_kind.bytes_field(1, b"v1");
    unknown_kind.bytes_field(2, b"Frobnicator");
    unknown_kind.end_nested(m);
    let err = decode_object(&unknown_kind.buf).expect_err("unknown kind");
    assert!(err.to_string().contains("Frobnicator"), "{err}");
}

/// A small deterministic generator: the test must not depend on a crate for randomness.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random bytes, truncations and bit flips of real encodings: errors, never panics.
#[test]
fn garbage_never_panics() {
    let defs = definitions();
    let mut pod = populate(&defs, "io.k8s.api.core.v1.Pod", 0);
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    let valid = encode_object(&pod).expect("encodes");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for cut in 0..valid.len() {
        let _ = decode_object(&valid[..cut]);
    }
    for _ in 0..4_000 {
        let mut b = valid.clone();
        for _ in 0..=(rng.next() % 4) {
            let i = (rng.next() as usize) % b.len();
            b[i] ^= 1 << (rng.next() % 8);
        }
        let _ = decode_object(&b);
        let _ = decode_watch_event(&b);
    }
    for _ in 0..4_000 {
        let len = (rng.next() % 300) as usize;
        let mut b: Vec<u8> = b"k8s\0".to_vec();
        b.extend((0..len).map(|_| rng.next() as u8));
        let _ = decode_object(&b);
        let _ = decode_watch_event(&b[4..]);
    }
    // Every message type on random input, too.
    for m in schema::messages() {
        for _ in 0..200 {
            let len = (rng.next() % 64) as usize;
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = crate::decode_message(m, &b);
        }
    }
}

/// An object with a field the table lacks is refused, not sent with the field dropped.
#[test]
fn fields_without_numbers_are_refused() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"schedulingGroup": {"name": "g"}, "containers": []}});
    let err = encode_object(&pod).expect_err("unknown field");
    assert!(err.to_string().contains("schedulingGroup"), "{err}");
}

/// Map values the table describes are all of kinds the transcoder handles.
#[test]
fn map_values_are_supported_kinds() {
    for m in schema::messages() {
        for f in m.fields {
            if let Kind::Map(MapValue::Message(i)) = f.kind {
                assert!(usize::from(i) < schema::messages().len());
            }
        }
    }
}

/// Rough cost of transcoding a realistic pod; run by hand, numbers are not asserted:
/// `cargo test -p protobuf --lib --release -- --ignored --nocapture transcode_cost`
#[test]
#[ignore = "a measurement, run by hand"]
fn transcode_cost() {
    let objects: Vec<Value> =
        serde_json::from_str(include_str!("../testdata/served.json")).expect("testdata");
    let pod = &objects[0];
    let bytes = encode_object(pod).expect("encodes");
    let json_len = serde_json::to_vec(pod).expect("json").len();
    let n = 2_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(encode_object(std::hint::black_box(pod)).expect("encodes"));
    }
    let encode = t.elapsed() / n;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(decode_object(std::hint::black_box(&bytes)).expect("decodes"));
    }
    let decode = t.elapsed() / n;
    println!(
        "pod: {} bytes protobuf, {json_len} bytes JSON; encode {encode:?}, decode {decode:?}",
        bytes.len()
    );
}

/// Every upstream group's kinds have their messages, so serving a new kind needs no
/// regeneration.
#[test]
fn every_upstream_group_resolves() {
    for (api_version, kind) in [
        ("v1", "PodTemplate"),
        ("v1", "ResourceQuota"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSetList"),
        ("autoscaling/v1", "Scale"),
        ("batch/v1", "Job"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("networking.k8s.io/v1", "Ingress"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("internal.apiserver.k8s.io/v1alpha1", "StorageVersion"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("apiregistration.k8s.io/v1", "APIService"),
        ("meta.k8s.io/v1", "DeleteOptions"),
    ] {
        assert!(
            crate::message_for(api_version, kind).is_some(),
            "{api_version} {kind}"
        );
    }
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "namespace": "d"}, "spec": {"replicas": 3},
        "status": {"replicas": 2, "selector": "app=web"}});
    assert_eq!(round_trip(&scale), scale);
}

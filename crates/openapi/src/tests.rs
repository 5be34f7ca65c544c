//! The structure kubectl relies on, checked on the generated documents.

use serde_json::{json, Value};

use super::*;
use crate::extensions::{FIELD_EXTENSIONS, REQUIRED};
use k8s_openapi::api::{coordination, core, events, scheduling};

/// The kinds the API server served when these tests were written (it supplies its own).
fn served() -> Vec<ServedKind> {
    let kind =
        |group, kind, plural, namespaced, schema, list, subresources: &[Subresource]| ServedKind {
            group,
            version: "v1",
            kind,
            plural,
            namespaced,
            schema,
            list,
            verbs: Verbs::ALL,
            delete_returns_object: false,
            subresources: subresources.to_vec(),
        };
    let list = |kind| ListSchema {
        kind,
        description: "a list",
        items: "the items",
        metadata: "Standard list metadata.",
    };
    use Subresource as S;
    vec![
        kind(
            "",
            "ConfigMap",
            "configmaps",
            true,
            def::<core::v1::ConfigMap>,
            list("ConfigMapList"),
            &[],
        ),
        kind(
            "",
            "Event",
            "events",
            true,
            def::<core::v1::Event>,
            list("EventList"),
            &[],
        ),
        ServedKind {
            verbs: Verbs {
                delete_collection: false,
                ..Verbs::ALL
            },
            ..kind(
                "",
                "Namespace",
                "namespaces",
                false,
                def::<core::v1::Namespace>,
                list("NamespaceList"),
                &[S::Status],
            )
        },
        kind(
            "",
            "Node",
            "nodes",
            false,
            def::<core::v1::Node>,
            list("NodeList"),
            &[S::Status],
        ),
        ServedKind {
            delete_returns_object: true,
            ..kind(
                "",
                "Pod",
                "pods",
                true,
                def::<core::v1::Pod>,
                list("PodList"),
                &[
                    S::Attach,
                    S::Binding,
                    S::EphemeralContainers,
                    S::Eviction,
                    S::Exec,
                    S::Log,
                    S::PortForward,
                    S::Status,
                ],
            )
        },
        kind(
            "",
            "Secret",
            "secrets",
            true,
            def::<core::v1::Secret>,
            list("SecretList"),
            &[],
        ),
        ServedKind {
            delete_returns_object: true,
            ..kind(
                "",
                "ServiceAccount",
                "serviceaccounts",
                true,
                def::<core::v1::ServiceAccount>,
                list("ServiceAccountList"),
                &[S::Token],
            )
        },
        kind(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            def::<coordination::v1::Lease>,
            list("LeaseList"),
            &[],
        ),
        kind(
            "events.k8s.io",
            "Event",
            "events",
            true,
            def::<events::v1::Event>,
            list("EventList"),
            &[],
        ),
        kind(
            "scheduling.k8s.io",
            "PriorityClass",
            "priorityclasses",
            false,
            def::<scheduling::v1::PriorityClass>,
            list("PriorityClassList"),
            &[],
        ),
        // A kind with a scale subresource, as apps/v1 Deployments will have.
        kind(
            "",
            "PodTemplate",
            "podtemplates",
            true,
            def::<core::v1::PodTemplate>,
            list("PodTemplateList"),
            &[S::Scale],
        ),
    ]
}

fn docs() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| Documents::new(served()))
}

fn v3_document(path: &str) -> Option<Arc<Vec<u8>>> {
    docs().v3_document(path)
}

fn v3_document_hash(path: &str) -> Option<&'static str> {
    docs().v3_document_hash(path)
}

fn v3_index() -> Value {
    docs().v3_index()
}

fn v2_document() -> Arc<Vec<u8>> {
    docs().v2_document()
}

fn v3(path: &str) -> Value {
    let bytes = v3_document(path).unwrap_or_else(|| panic!("no v3 document {path}"));
    serde_json::from_slice(&bytes).expect("v3 document is JSON")
}

fn v2() -> Value {
    serde_json::from_slice(&v2_document()).expect("v2 document is JSON")
}

/// Every `$ref` string anywhere under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn index_paths() -> Vec<String> {
    v3_index()["paths"]
        .as_object()
        .expect("index has paths")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn index_lists_every_document_with_its_hash() {
    let index = v3_index();
    let paths = index_paths();
    for expected in [
        "api",
        "api/v1",
        "apis",
        "apis/coordination.k8s.io",
        "apis/coordination.k8s.io/v1",
        "apis/events.k8s.io",
        "apis/events.k8s.io/v1",
        "apis/scheduling.k8s.io",
        "apis/scheduling.k8s.io/v1",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected} missing");
    }
    for path in &paths {
        let hash = v3_document_hash(path).expect("every indexed path has a hash");
        assert_eq!(hash.len(), 128);
        assert!(hash
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(
            index["paths"][path]["serverRelativeURL"],
            format!("/openapi/v3/{path}?hash={hash}")
        );
        let digest = hex_upper(&Sha512::digest(&*v3_document(path).expect("document")));
        assert_eq!(digest, hash);
    }
    assert!(v3_document("apis/apps/v1").is_none());
    assert!(v3_document("/api/v1").is_none());
}

#[test]
fn pod_schema_has_kind_descriptions_and_patch_keys() {
    let doc = v3("api/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    let pod = &schemas["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert!(pod["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Pod is a collection of containers")));
    assert!(pod["properties"]["kind"]["description"].is_string());
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodSpec"
    );
    assert!(pod["properties"]["spec"]["description"].is_string());
    assert!(
        pod.get("required").is_none(),
        "upstream requires nothing on Pod"
    );

    let spec = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"];
    let containers = &spec["containers"];
    assert_eq!(containers["type"], "array");
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(
        spec["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert_eq!(spec["tolerations"]["x-kubernetes-list-type"], "atomic");

    let container = &schemas["io.k8s.api.core.v1.Container"]["properties"];
    assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        container["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    assert_eq!(
        container["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(
        meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
        "uid"
    );
    assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
    let status = &schemas["io.k8s.api.core.v1.PodStatus"]["properties"];
    assert_eq!(status["conditions"]["x-kubernetes-patch-merge-key"], "type");

    let list = &schemas["io.k8s.api.core.v1.PodList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "PodList", "version": "v1"}])
    );
    assert_eq!(list["required"], json!(["items"]));
}

#[test]
fn scalar_types_are_spelled_as_upstream() {
    let doc = v3("api/v1");
    let schemas = &doc["components"]["schemas"];
    let quantity = &schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(
        quantity["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );
    assert!(quantity["description"].is_string());
    let int_or_string = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(
        int_or_string["oneOf"],
        json!([{"type": "integer"}, {"type": "string"}])
    );
    for time in ["Time", "MicroTime"] {
        let schema = &schemas[format!("io.k8s.apimachinery.pkg.apis.meta.v1.{time}")];
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["format"], "date-time");
    }

    let v2 = v2();
    let definitions = &v2["definitions"];
    assert_eq!(
        definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
    let int_or_string = &definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["type"], "string");
    assert_eq!(int_or_string["format"], "int-or-string");
}

#[test]
fn pod_patch_operation_offers_field_validation_and_strategic_merge() {
    let doc = v3("api/v1");
    let item = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .expect("patch has parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for expected in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    let content = &patch["requestBody"]["content"];
    for media_type in paths::PATCH_MEDIA_TYPES {
        assert_eq!(
            content[media_type]["schema"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
        );
    }
    assert!(content["application/strategic-merge-patch+json"].is_object());

    let path_params: Vec<&str> = item["parameters"]
        .as_array()
        .expect("item path has parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(path_params, ["name", "namespace", "pretty"]);

    let list = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(list["operationId"], "listCoreV1NamespacedPod");
    assert!(list["parameters"]
        .as_array()
        .expect("list has parameters")
        .iter()
        .any(|p| p["name"] == "labelSelector"));

    let v2 = v2();
    let patch = &v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(patch["consumes"]
        .as_array()
        .expect("v2 patch has consumes")
        .contains(&json!("application/strategic-merge-patch+json")));
    assert!(patch["parameters"]
        .as_array()
        .expect("v2 patch has parameters")
        .iter()
        .any(|p| p["name"] == "body" && p["in"] == "body"));
}

/// What kubectl does with each served kind: find the group-version document,
/// a PATCH operation tagged with the kind that lists `fieldValidation` (the
/// query-param verifier), a path operation tagged with the kind (explain),
/// and a schema tagged with the kind.
#[test]
fn every_served_kind_is_found_the_way_kubectl_looks() {
    for gv in &docs().group_versions {
        let doc = v3(&gv.index_path());
        let paths = doc["paths"].as_object().expect("paths");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for r in &gv.resources {
            let kind = json!({"group": gv.group, "kind": r.kind, "version": gv.version});
            let schema_found = schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.contains(&kind))
            });
            assert!(schema_found, "no schema for {kind}");

            let collection = if r.namespaced {
                format!("{}/namespaces/{{namespace}}/{}", gv.url_prefix(), r.plural)
            } else {
                format!("{}/{}", gv.url_prefix(), r.plural)
            };
            let explained = ["get", "post"]
                .iter()
                .any(|m| paths[&collection][*m]["x-kubernetes-group-version-kind"] == kind);
            assert!(explained, "no operation of {kind} on {collection}");

            if r.verbs.item {
                let verified = paths.values().any(|item| {
                    let patch = &item["patch"];
                    patch["x-kubernetes-group-version-kind"] == kind
                        && patch["parameters"]
                            .as_array()
                            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"))
                        && patch["requestBody"]["content"]["application/strategic-merge-patch+json"]
                            .is_object()
                });
                assert!(verified, "no PATCH with fieldValidation for {kind}");
            }
        }
    }
}

#[test]
fn every_ref_resolves() {
    for path in index_paths() {
        let doc = v3(&path);
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty() || path == "api" || path == "apis");
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{path}: foreign $ref {r}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{path}: dangling $ref {r}"
            );
        }
    }
    let doc = v2();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for r in found {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("v2: foreign $ref {r}"));
        assert!(
            doc["definitions"].get(name).is_some(),
            "v2: dangling $ref {r}"
        );
    }
}

#[test]
fn definitions_carry_upstream_names() {
    let doc = v2();
    let definitions = doc["definitions"].as_object().expect("definitions");
    for name in definitions.keys() {
        assert!(
            name.starts_with("io.k8s.api.") || name.starts_with("io.k8s.apimachinery.pkg."),
            "{name}"
        );
    }
    // Upstream's documents hold only what their paths reach.
    let lease = v3("apis/coordination.k8s.io/v1");
    assert!(lease["components"]["schemas"]
        .get("io.k8s.api.core.v1.Pod")
        .is_none());
}

/// The extension and required tables name fields k8s-openapi must still have;
/// a rename upstream would otherwise drop the extension silently.
#[test]
fn extension_tables_match_the_schemas() {
    let doc = v2();
    let definitions = &doc["definitions"];
    for row in FIELD_EXTENSIONS {
        let definition = &definitions[row.definition];
        assert!(definition.is_object(), "{} not generated", row.definition);
        if !row.field.is_empty() {
            assert!(
                definition["properties"][row.field].is_object(),
                "{}.{} not generated",
                row.definition,
                row.field
            );
        }
    }
    for (name, required) in REQUIRED {
        let properties = &definitions[*name]["properties"];
        assert!(properties.is_object(), "{name} not generated");
        for field in *required {
            assert!(properties[*field].is_object(), "{name}.{field}");
        }
    }
}

#[test]
fn discovery_documents_describe_their_endpoints() {
    let api = v3("api");
    assert_eq!(
        api["paths"]["/api/"]["get"]["operationId"],
        "getCoreAPIVersions"
    );
    let apis = v3("apis");
    assert_eq!(
        apis["paths"]["/apis/"]["get"]["operationId"],
        "getAPIVersions"
    );
    let group = v3("apis/coordination.k8s.io");
    assert_eq!(
        group["paths"]["/apis/coordination.k8s.io/"]["get"]["operationId"],
        "getCoordinationAPIGroup"
    );
    let core = v3("api/v1");
    assert_eq!(
        core["paths"]["/api/v1/"]["get"]["operationId"],
        "getCoreV1APIResources"
    );
}

#[test]
fn generation_is_quick_and_small() {
    let gvs = &docs().group_versions;
    let started = std::time::Instant::now();
    let docs = build_v3(gvs);
    let v3_time = started.elapsed();
    let v2 = build_v2(gvs);
    let v2_time = started.elapsed() - v3_time;
    let size = |v: &Value| serde_json::to_vec(v).map_or(0, |b| b.len());
    let v3_size: usize = docs.values().map(size).sum();
    eprintln!(
        "v3: {} documents, {v3_size} bytes in {v3_time:?}; v2: {} bytes in {v2_time:?}",
        docs.len(),
        size(&v2)
    );
    // Generous bounds: unoptimized test builds are several times slower.
    assert!(v3_time.as_secs() < 5 && v2_time.as_secs() < 5);
    assert!(v3_size < 4_000_000 && size(&v2) < 2_000_000);
}

/// Regenerates `src/upstream_extensions.rs` from an upstream Swagger document:
///
/// ```text
/// SWAGGER_JSON=/path/to/swagger.json KUBERNETES_VERSION=1.36.0 \\
///     cargo test -p openapi --lib -- --ignored regenerate_upstream_extensions
/// ```
///
/// The document is `api/openapi-spec/swagger.json` of kubernetes/kubernetes at a release
/// tag (the k8s-pb repository keeps a copy under `k8s-pb-codegen/openapi/`); it is an input,
/// not part of this repository.
#[test]
#[ignore = "regenerates src/upstream_extensions.rs; run by hand with SWAGGER_JSON set"]
fn regenerate_upstream_extensions() {
    use std::fmt::Write as _;
    let path = std::env::var("SWAGGER_JSON").expect("SWAGGER_JSON names the upstream swagger.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("read swagger.json"))
        .expect("swagger.json is JSON");
    // The document says "unversioned"; the caller says which release it is from.
    let version =
        std::env::var("KUBERNETES_VERSION").expect("KUBERNETES_VERSION names its release");
    let defs = doc["definitions"].as_object().expect("definitions");
    let opt = |v: &Value| match v.as_str() {
        Some(s) => format!("Some({s:?})"),
        None => "None".to_string(),
    };
    let mut src = format!(
        "// @generated by `cargo test -p openapi --lib -- --ignored regenerate_upstream_extensions`\n\
         // (src/tests.rs) from the Swagger document of Kubernetes {version}. Do not edit by hand.\n\
         // Each row: definition, field (\"\" for the definition itself), list type, list map keys,\n\
         // map type, patch merge key, patch strategy.\n\n\
         use crate::extensions::{{e, FieldExtensions}};\n\n\
         pub(crate) const UPSTREAM: &[FieldExtensions] = &[\n"
    );
    let mut rows = 0;
    for (name, schema) in defs {
        let mut targets: Vec<(&str, &Value)> = vec![("", schema)];
        if let Some(props) = schema["properties"].as_object() {
            targets.extend(props.iter().map(|(k, v)| (k.as_str(), v)));
        }
        for (field, t) in targets {
            let keys: Vec<String> = t["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(|k| format!("{k:?}")))
                        .collect()
                })
                .unwrap_or_default();
            let list_type = &t["x-kubernetes-list-type"];
            let map_type = &t["x-kubernetes-map-type"];
            let merge_key = &t["x-kubernetes-patch-merge-key"];
            let strategy = &t["x-kubernetes-patch-strategy"];
            if [list_type, map_type, merge_key, strategy]
                .iter()
                .all(|v| v.is_null())
                && keys.is_empty()
            {
                continue;
            }
            let _ = writeln!(
                src,
                "    e({name:?}, {field:?}, {}, &[{}], {}, {}, {}),",
                opt(list_type),
                keys.join(", "),
                opt(map_type),
                opt(merge_key),
                opt(strategy),
            );
            rows += 1;
        }
    }
    src.push_str("];\n");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/upstream_extensions.rs");
    std::fs::write(&out, src).expect("write upstream_extensions.rs");
    eprintln!("{rows} rows from Kubernetes {version}");
}

/// Kinds that are not served yet get upstream's merge keys from the generated table.
#[test]
fn unserved_kinds_have_upstreams_patch_keys() {
    use k8s_openapi::api::apps;
    let defs = definitions(&[def::<apps::v1::Deployment>, def::<apps::v1::StatefulSet>]);
    let status = &defs["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
    assert_eq!(status["x-kubernetes-patch-merge-key"], "type");
    assert_eq!(status["x-kubernetes-patch-strategy"], "merge");
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    let claims = &defs["io.k8s.api.apps.v1.StatefulSetSpec"]["properties"]["volumeClaimTemplates"];
    assert_eq!(claims["x-kubernetes-list-type"], "atomic");
}

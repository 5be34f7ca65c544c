//! The generic handlers driven through routing on a real (SQLite) store, for what every
//! kind must get alike: bad input refused as upstream refuses it.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{handle, Call};
use crate::request::{self, Query, Route};
use crate::server::ApiServer;

struct Api {
    server: Arc<ApiServer>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
    warnings: Vec<String>,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store::SqliteStore::open(&dir.path().join("db.sqlite")).expect("sqlite");
        let server = ApiServer::new(
            Arc::new(store),
            "127.0.0.1:0".parse().expect("addr"),
            crate::authn::StaticTokens::default(),
        );
        crate::bootstrap::bootstrap(&server)
            .await
            .expect("bootstrap");
        Api { server, _dir: dir }
    }

    async fn call(&self, method: Method, uri: &str, content_type: &str, body: &str) -> Reply {
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let query = Query::parse(query);
        let result = match request::route(&method, path, &query) {
            Ok(Route::Resource(info)) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_str(content_type).expect("content type"),
                );
                handle(Call {
                    server: self.server.clone(),
                    info,
                    query,
                    headers,
                    body: Bytes::from(body.to_string()),
                    user: crate::authn::UserInfo::new(
                        crate::authn::ADMIN_USER,
                        "",
                        &[crate::authn::MASTERS],
                    ),
                })
                .await
            }
            Ok(_) => panic!("{uri} is not a resource"),
            Err(e) => Err(e),
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => crate::server::error_response(&e),
        };
        let status = resp.status();
        let warnings = resp
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            warnings,
        }
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, "application/json", &body.to_string())
            .await
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const EVENTS: &str = "/api/v1/namespaces/default/events";

fn message(r: &Reply) -> &str {
    r.body["message"].as_str().unwrap_or_default()
}

/// Issue 13 7(a): core/v1 Events get the generic ObjectMeta checks every kind gets.
#[tokio::test]
async fn core_events_get_metadata_validation() {
    let api = Api::new().await;
    let event = |meta: Value| json!({"metadata": meta, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}});
    let r = api.post(EVENTS, event(json!({}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        message(&r),
        "Event \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    let r = api
        .post(
            EVENTS,
            event(json!({"name": "e1", "labels": {"a": "not a value!"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        message(&r).contains("metadata.labels: Invalid value: \"not a value!\""),
        "{}",
        message(&r)
    );
    let big = "x".repeat(300 * 1024);
    let r = api
        .post(
            EVENTS,
            event(json!({"name": "e2", "annotations": {"a": big}})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        message(&r)
    );
    assert!(
        message(&r).contains("metadata.annotations: Too long: may not be more than 262144 bytes"),
        "{}",
        message(&r)
    );
    let r = api.post(EVENTS, event(json!({"generateName": "e-"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // An update is checked too.
    let name = r.body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut updated = r.body.clone();
    updated["metadata"]["labels"] = json!({"a": "bad value"});
    let r = api
        .call(
            Method::PUT,
            &format!("{EVENTS}/{name}"),
            "application/json",
            &updated.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

/// Issue 13 7(b): a replacement must name the object the URL names.
#[tokio::test]
async fn put_checks_name_and_namespace_against_the_url() {
    let api = Api::new().await;
    let r = api
        .post(CMS, json!({"metadata": {"name": "w1"}, "data": {"k": "v"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let uri = format!("{CMS}/w1");
    let put = |body: &'static str| api.call(Method::PUT, &uri, "application/json", body);
    let r = put("{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        message(&r),
        "the name of the object (w1 based on URL) was undeterminable: name must be provided"
    );
    let r = put(r#"{"metadata":{"name":"w2"}}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        "the name of the object (w2) does not match the name on the URL (w1)"
    );
    let r = put(r#"{"metadata":{"name":"w1","namespace":"kube-system"}}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    // Nothing was wiped.
    let r = api
        .call(Method::GET, &format!("{CMS}/w1"), "application/json", "")
        .await;
    assert_eq!(r.body["data"], json!({"k": "v"}));
    let r = put(r#"{"metadata":{"name":"w1"},"data":{"k":"2"}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"], json!({"k": "2"}));
}

/// Issue 13 7(c): repeated keys are refused under Strict and warned about under Warn.
#[tokio::test]
async fn duplicate_keys_follow_field_validation() {
    let api = Api::new().await;
    let body = r#"{"metadata":{"name":"d1","name":"d1"},"data":{"a":"1","a":"2"},"dta":{}}"#;
    let r = api
        .call(
            Method::POST,
            &format!("{CMS}?fieldValidation=Strict"),
            "application/json",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        message(&r),
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", duplicate field \"data.a\", unknown field \"dta\""
    );
    let r = api.call(Method::POST, CMS, "application/json", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"], json!({"a": "2"}), "the last value wins");
    assert_eq!(
        r.warnings,
        vec![
            r#"299 - "duplicate field \"metadata.name\"""#,
            r#"299 - "duplicate field \"data.a\"""#,
            r#"299 - "unknown field \"dta\"""#,
        ]
    );
}

/// A repeated `apiVersion` or `kind` is a repeated key like any other: the last one wins
/// under Warn and Ignore, as upstream's decoder has it (found by fuzzing: the first
/// occurrence was checked and the body refused).
#[tokio::test]
async fn repeated_type_keys_keep_the_last() {
    let api = Api::new().await;
    let body = r#"{"kind":"Pod","kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"k1"}}"#;
    let r = api.call(Method::POST, CMS, "application/json", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.warnings, vec![r#"299 - "duplicate field \"kind\"""#]);
    let body = r#"{"kind":"ConfigMap","kind":"ConfigMap","metadata":{"name":"k2"}}"#;
    let r = api
        .call(
            Method::POST,
            &format!("{CMS}?fieldValidation=Ignore"),
            "application/json",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.warnings.is_empty());
    let r = api
        .call(
            Method::POST,
            &format!("{CMS}?fieldValidation=Strict"),
            "application/json",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        message(&r),
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"kind\""
    );
    let body = r#"{"kind":"ConfigMap","kind":"Pod","metadata":{"name":"k3"}}"#;
    let r = api.call(Method::POST, CMS, "application/json", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        message(&r),
        "the kind in the data (Pod) does not match the expected kind (ConfigMap)"
    );
}

/// Issue 13 7(d): a patch cannot move or rename an object.
#[tokio::test]
async fn patches_cannot_change_namespace_or_name() {
    let api = Api::new().await;
    api.post(CMS, json!({"metadata": {"name": "p1"}})).await;
    let uri = format!("{CMS}/p1");
    let r = api
        .call(
            Method::PATCH,
            &uri,
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/metadata/namespace","value":"kube-system"}]"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        message(&r),
        "the namespace of the object (kube-system) does not match the namespace on the request (default)"
    );
    let r = api
        .call(
            Method::PATCH,
            &uri,
            "application/merge-patch+json",
            r#"{"metadata":{"name":"p2"}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        message(&r),
        "the name of the object (p2) does not match the name on the URL (p1)"
    );
    let r = api
        .call(
            Method::PATCH,
            &uri,
            "application/strategic-merge-patch+json",
            r#"{"metadata":{"labels":{"a":"b"}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// A kind added through the recipe is served by the generic handlers: create with its
/// defaults and generation, field selectors, table, delete answering with the object.
#[tokio::test]
async fn pod_templates_are_served_through_their_descriptor() {
    let api = Api::new().await;
    const PTS: &str = "/api/v1/namespaces/default/podtemplates";
    let t = json!({"metadata": {"name": "web"}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}}});
    let r = api.post(PTS, t).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["metadata"]["generation"], 1);
    assert_eq!(r.body["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        r.body["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    let bad = json!({"metadata": {"name": "bad"}, "template": {"spec": {"containers": [{"name": "App"}]}}});
    let r = api.post(PTS, bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        message(&r).contains("template.spec.containers[0].name"),
        "{}",
        message(&r)
    );
    let r = api
        .call(
            Method::GET,
            &format!("{PTS}?fieldSelector=metadata.name%3Dweb"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(
        r.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    let r = api
        .call(
            Method::GET,
            &format!("{PTS}?fieldSelector=spec.x%3Dy"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A template change counts a generation.
    let r = api
        .call(
            Method::PATCH,
            &format!("{PTS}/web"),
            "application/strategic-merge-patch+json",
            r#"{"template":{"spec":{"containers":[{"name":"app","image":"nginx:2"}]}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["metadata"]["generation"], 2);
    assert_eq!(
        r.body["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let r = api
        .call(
            Method::DELETE,
            &format!("{PTS}/web"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["kind"], "PodTemplate",
        "ReturnDeletedObject: {}",
        r.body
    );
}

/// Issue 14: DELETE's propagation policies as GC finalizers, re-deletes switching them, and
/// upstream's DeleteOptions validation.
#[tokio::test]
async fn delete_propagation_sets_the_gc_finalizers() {
    let api = Api::new().await;
    let r = api.post(CMS, json!({"metadata": {"name": "owner"}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let delete = |body: &'static str, query: &'static str| {
        let api = &api;
        async move {
            api.call(
                Method::DELETE,
                &format!("{CMS}/owner{query}"),
                "application/json",
                body,
            )
            .await
        }
    };
    let r = delete(r#"{"propagationPolicy":"Foreground"}"#, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["kind"], "ConfigMap",
        "a marked object answers itself"
    );
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    // A re-delete switches the policy; the query form works too.
    let r = delete("", "?propagationPolicy=Orphan").await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["orphan"]),
        "{}",
        r.body
    );
    // Naming none keeps what is there.
    let r = delete("", "").await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["orphan"]),
        "{}",
        r.body
    );
    let r = delete(
        r#"{"orphanDependents":true,"propagationPolicy":"Background"}"#,
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        message(&r),
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Background\": orphanDependents and deletionPropagation cannot be both set"
    );
    assert_eq!(r.body["details"]["kind"], "DeleteOptions");
    assert_eq!(r.body["details"]["group"], "meta.k8s.io");
    let r = delete(r#"{"propagationPolicy":"Sometimes"}"#, "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        message(&r).ends_with(
            "propagationPolicy: Unsupported value: \"Sometimes\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        ),
        "{}",
        message(&r)
    );
    // Background drops the GC finalizer; nothing else holds the object, so it goes.
    let r = delete(r#"{"propagationPolicy":"Background"}"#, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "Status", "{}", r.body);
    let r = api
        .call(Method::GET, &format!("{CMS}/owner"), "application/json", "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // orphanDependents alone: the orphan finalizer.
    api.post(CMS, json!({"metadata": {"name": "owner"}})).await;
    let r = delete(r#"{"orphanDependents":true}"#, "").await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["orphan"]),
        "{}",
        r.body
    );
}

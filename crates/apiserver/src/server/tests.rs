//! The request stack as a connection's service runs it ([`super::handle`]): what the
//! paths outside the resources answer to each method, and how an answer given before the
//! body was read leaves an HTTP/1 connection.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::body::Body;
use crate::server::ApiServer;

struct Api {
    server: Arc<ApiServer>,
    token: String,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store::SqliteStore::open(&dir.path().join("db.sqlite")).expect("sqlite");
        let (server, token) = crate::fuzzing::server(dir.path(), Arc::new(store))
            .await
            .expect("server");
        Api {
            server,
            token,
            _dir: dir,
        }
    }

    fn request(&self, method: Method, path: &str, auth: bool) -> http::request::Builder {
        let b = Request::builder().method(method).uri(path);
        if auth {
            b.header(header::AUTHORIZATION, format!("Bearer {}", self.token))
        } else {
            b
        }
    }

    async fn send(&self, req: http::request::Builder, body: Vec<u8>) -> Response<Body> {
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        super::handle(self.server.clone(), req).await
    }
}

async fn body_of(resp: Response<Body>) -> Bytes {
    resp.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// Issue 13 7: writes to the discovery and version documents are refused as go-restful
/// refuses a method its web service has no route for, through upstream's
/// `serviceErrorHandler` (a Status from `NewGenericServerResponse`, no `Allow` header).
#[tokio::test]
async fn get_only_paths_answer_405_with_upstreams_status() {
    let api = Api::new().await;
    for (method, path) in [
        (Method::POST, "/api"),
        (Method::PUT, "/api/v1"),
        (Method::PATCH, "/apis/coordination.k8s.io/v1"),
        (Method::DELETE, "/version"),
    ] {
        let resp = api
            .send(api.request(method.clone(), path, true), Vec::new())
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(resp.headers().get(header::ALLOW).is_none());
        let status: Value = serde_json::from_slice(&body_of(resp).await).expect("json");
        assert_eq!(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server does not allow this method on the requested resource",
                "reason": "MethodNotAllowed", "details": {}, "code": 405,
            }),
            "{method} {path}"
        );
    }
    // The handlers that ignore the method serve their document.
    for path in ["/apis", "/apis/coordination.k8s.io", "/openapi/v3"] {
        let resp = api
            .send(api.request(Method::POST, path, true), Vec::new())
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "POST {path}");
    }
}

/// Health and version are public to GET only (upstream's system:public-info-viewer grants
/// `get`); other methods need a user, and then health checks answer as to a GET.
#[tokio::test]
async fn public_paths_are_public_to_get() {
    let api = Api::new().await;
    let cases = [
        (Method::GET, "/healthz", false, StatusCode::OK),
        (Method::GET, "/version", false, StatusCode::OK),
        (Method::POST, "/healthz", false, StatusCode::UNAUTHORIZED),
        (Method::HEAD, "/livez", false, StatusCode::UNAUTHORIZED),
        (Method::POST, "/version", false, StatusCode::UNAUTHORIZED),
        (Method::POST, "/healthz", true, StatusCode::OK),
        (Method::DELETE, "/readyz/etcd", true, StatusCode::OK),
        (
            Method::POST,
            "/version",
            true,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, auth, want) in cases {
        let resp = api
            .send(api.request(method.clone(), path, auth), Vec::new())
            .await;
        assert_eq!(resp.status(), want, "{method} {path} auth={auth}");
    }
}

/// A HEAD gets what a GET would, less the body; a refused one likewise.
#[tokio::test]
async fn head_answers_headers_only() {
    let api = Api::new().await;
    let get = api
        .send(api.request(Method::GET, "/openapi/v2", true), Vec::new())
        .await;
    let full = body_of(get).await.len();
    let resp = api
        .send(api.request(Method::HEAD, "/openapi/v2", true), Vec::new())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get(header::CONTENT_LENGTH),
        Some(&http::HeaderValue::from(full))
    );
    assert!(body_of(resp).await.is_empty());
    let resp = api
        .send(api.request(Method::HEAD, "/api", true), Vec::new())
        .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(body_of(resp).await.is_empty());
}

/// One request of [`unread_bodies_are_drained_or_the_connection_closes`].
struct Unread {
    case: &'static str,
    version: Version,
    path: &'static str,
    auth: bool,
    /// `Expect: 100-continue`: the client holds the body back until told to send it.
    held_back: bool,
    body: Vec<u8>,
    status: StatusCode,
    closes: bool,
}

/// Issue 13 7: an answer given before the body was read (401, 404, 405) drains a body of
/// up to 256 KiB so the HTTP/1 connection carries the next request, as Go's net/http does;
/// otherwise it says `Connection: close`. HTTP/2 streams need neither.
#[tokio::test]
async fn unread_bodies_are_drained_or_the_connection_closes() {
    let api = Api::new().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let small = vec![b'x'; 10 * 1024];
    let large = vec![b'x'; 300 * 1024];
    let created = serde_json::to_vec(&json!({"metadata": {"name": "c1"}})).expect("json");
    let case = |case, path, auth, body: &Vec<u8>, status, closes| Unread {
        case,
        version: Version::HTTP_11,
        path,
        auth,
        held_back: false,
        body: body.clone(),
        status,
        closes,
    };
    let cases = [
        case(
            "401 small",
            cms,
            false,
            &small,
            StatusCode::UNAUTHORIZED,
            false,
        ),
        case(
            "404 small",
            "/api/v1/nope",
            true,
            &small,
            StatusCode::NOT_FOUND,
            false,
        ),
        case(
            "405 small",
            "/version",
            true,
            &small,
            StatusCode::METHOD_NOT_ALLOWED,
            false,
        ),
        case(
            "401 large",
            cms,
            false,
            &large,
            StatusCode::UNAUTHORIZED,
            true,
        ),
        Unread {
            held_back: true,
            ..case(
                "401 held back",
                cms,
                false,
                &small,
                StatusCode::UNAUTHORIZED,
                true,
            )
        },
        case(
            "401 empty",
            cms,
            false,
            &Vec::new(),
            StatusCode::UNAUTHORIZED,
            false,
        ),
        Unread {
            version: Version::HTTP_2,
            ..case(
                "401 large h2",
                cms,
                false,
                &large,
                StatusCode::UNAUTHORIZED,
                false,
            )
        },
        case("read", cms, true, &created, StatusCode::CREATED, false),
    ];
    for c in cases {
        let mut req = api.request(Method::POST, c.path, c.auth).version(c.version);
        if c.held_back {
            req = req.header(header::EXPECT, "100-continue");
        }
        let resp = api.send(req, c.body).await;
        assert_eq!(resp.status(), c.status, "{}", c.case);
        let close = resp
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v == "close");
        assert_eq!(close, c.closes, "{}", c.case);
    }
}

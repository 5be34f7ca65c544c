//! The whole request stack in-process — authentication, routing, content negotiation, the
//! body decoders, admission, the handlers and the SQLite store — fed generated requests:
//! methods, paths, query strings, content types and bodies (seed objects edited and mutated
//! as JSON, YAML and protobuf; patches). Bad input is answered with a 4xx `Status` that
//! carries a message, never a 500, and the server keeps answering.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fuzz::proptest::prelude::*;
use fuzz::proptest::sample::select;
use fuzz::proptest::test_runner::TestCaseError;
use fuzz::{check, gen, mutate, seeds};
use http::{header, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// How a generated request authenticates.
#[derive(Debug, Clone, Copy)]
enum Auth {
    Admin,
    Missing,
    Wrong,
}

#[derive(Debug, Clone)]
struct Generated {
    method: Method,
    path: String,
    query: String,
    content_type: Option<&'static str>,
    accept: Option<&'static str>,
    auth: Auth,
    body: Vec<u8>,
}

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/json; charset=utf-8",
    "text/plain",
    "*/*",
    "",
];

const ACCEPTS: &[&str] = &[
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf, application/json",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "text/html",
    "*/*",
    "",
];

/// A body, and the content type that fits it.
fn body() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let patches: Vec<Vec<u8>> = seeds::json_patches()
        .iter()
        .chain(&seeds::merge_patches())
        .chain(&seeds::strategic_patches())
        .filter_map(|p| serde_json::to_vec(p).ok())
        .collect();
    let objects = || gen::edited(seeds::objects().to_vec(), 3);
    prop_oneof![
        4 => objects().prop_map(|v| (serde_json::to_vec(&v).unwrap_or_default(), "application/json")),
        2 => mutate::mutated(seeds::json_bodies(), 6).prop_map(|b| (b, "application/json")),
        1 => objects().prop_map(|v| (serde_yaml::to_string(&v).unwrap_or_default().into_bytes(), "application/yaml")),
        1 => mutate::mutated(seeds::yaml_bodies(), 6).prop_map(|b| (b, "application/yaml")),
        1 => objects().prop_map(|v| (protobuf::encode_object(&v).unwrap_or_default(), "application/vnd.kubernetes.protobuf")),
        1 => mutate::mutated(seeds::protobuf_bodies(), 6).prop_map(|b| (b, "application/vnd.kubernetes.protobuf")),
        1 => gen::edited(seeds::json_patches(), 2).prop_map(|v| (serde_json::to_vec(&v).unwrap_or_default(), "application/json-patch+json")),
        1 => gen::edited(seeds::merge_patches(), 2).prop_map(|v| (serde_json::to_vec(&v).unwrap_or_default(), "application/merge-patch+json")),
        2 => gen::edited(seeds::strategic_patches(), 2).prop_map(|v| (serde_json::to_vec(&v).unwrap_or_default(), "application/strategic-merge-patch+json")),
        1 => mutate::mutated(patches, 6).prop_map(|b| (b, "application/strategic-merge-patch+json")),
        1 => Just((Vec::new(), "application/json")),
        1 => mutate::noise().prop_map(|b| (b, "application/json")),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        3 => Just(Method::GET),
        3 => Just(Method::POST),
        2 => Just(Method::PUT),
        3 => Just(Method::PATCH),
        2 => Just(Method::DELETE),
        1 => Just(Method::HEAD),
        1 => Just(Method::OPTIONS),
    ]
}

/// A request built from nothing in particular: any path, any body.
fn free_form() -> impl Strategy<Value = Generated> {
    let content_type = prop_oneof![
        6 => Just(None),
        1 => select(CONTENT_TYPES).prop_map(Some),
    ];
    let accept = prop_oneof![3 => Just(None), 2 => select(ACCEPTS).prop_map(Some)];
    (
        method(),
        gen::path(),
        gen::query_string(),
        body(),
        content_type,
        accept,
        auth(),
    )
        .prop_map(
            |(method, path, query, (body, fitting), content_type, accept, auth)| Generated {
                method,
                path,
                query,
                // Mostly the type that fits the body; sometimes another, or none.
                content_type: Some(content_type.unwrap_or(fitting)).filter(|c| !c.is_empty()),
                accept,
                auth,
                body,
            },
        )
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![20 => Just(Auth::Admin), 1 => Just(Auth::Missing), 1 => Just(Auth::Wrong)]
}

/// Names the requests keep coming back to, so creates, reads, writes and deletes meet.
const NAMES: &[&str] = &["a", "b", "web", "node-1"];

/// A request on one served resource that mostly makes sense: its own kind's seed objects
/// (named and placed as the URL says, then edited), its patches, the verbs it serves.
fn on_a_resource() -> impl Strategy<Value = Generated> {
    let resources = apiserver::registry::all().to_vec();
    (0..resources.len()).prop_flat_map(move |i| {
        let r = resources[i];
        let prefix = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let mut objects = seeds::objects_of(&r.api_version(), r.kind);
        if objects.is_empty() {
            objects = seeds::objects().to_vec();
        }
        let namespace = prop_oneof![
            6 => Just("default".to_string()),
            1 => select(vec!["fuzz", "kube-system", "nope"]).prop_map(str::to_string),
        ];
        let name = prop_oneof![
            6 => select(NAMES).prop_map(str::to_string),
            1 => "[a-z0-9.-]{0,70}",
        ];
        let subresource = prop_oneof![
            4 => Just(None),
            1 => select(r.subresources.iter().map(|s| s.name).chain(["status"]).collect::<Vec<_>>())
                .prop_map(Some),
        ];
        let duplicate = prop_oneof![3 => Just(None), 1 => (0usize..32).prop_map(Some)];
        let object = (gen::edited(objects, 3), any::<bool>(), duplicate);
        let patch = prop_oneof![
            1 => gen::edited(seeds::json_patches(), 2).prop_map(|v| (v, "application/json-patch+json")),
            1 => gen::edited(seeds::merge_patches(), 2).prop_map(|v| (v, "application/merge-patch+json")),
            2 => gen::edited(seeds::strategic_patches(), 2).prop_map(|v| (v, "application/strategic-merge-patch+json")),
        ];
        let encoding = select(vec!["application/json", "application/json", "application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]);
        let bytes_edits = prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(any::<u8>(), 1..4)];
        let query = prop_oneof![
            4 => Just(String::new()),
            1 => Just("fieldValidation=Strict".to_string()),
            2 => gen::query_string(),
        ];
        let accept = prop_oneof![3 => Just(None), 1 => select(ACCEPTS).prop_map(Some)];
        (
            (method(), namespace, name, subresource, query),
            (object, patch, encoding, bytes_edits),
            (accept, auth()),
        )
            .prop_map(move |(target, body, (accept, auth))| {
                let (method, namespace, name, subresource, query) = target;
                let ((object, keep_place, duplicate), (patch, patch_type), encoding, flips) = body;
                assemble(
                    r,
                    &prefix,
                    Draw {
                        method,
                        namespace,
                        name,
                        subresource,
                        query,
                        object,
                        keep_place,
                        duplicate,
                        patch,
                        patch_type,
                        encoding,
                        flips,
                        accept,
                        auth,
                    },
                )
            })
    })
}

/// What [`on_a_resource`] drew for one request.
struct Draw {
    method: Method,
    namespace: String,
    name: String,
    subresource: Option<&'static str>,
    query: String,
    object: Value,
    /// Name and place the object as the URL does.
    keep_place: bool,
    /// Write the first key of the n-th object in the body twice.
    duplicate: Option<usize>,
    patch: Value,
    patch_type: &'static str,
    encoding: &'static str,
    /// Bytes to set at scattered places of the body.
    flips: Vec<u8>,
    accept: Option<&'static str>,
    auth: Auth,
}

/// The request a [`Draw`] describes on resource `r` (served under `prefix`).
fn assemble(r: &apiserver::registry::Resource, prefix: &str, d: Draw) -> Generated {
    let Draw {
        method,
        namespace: ns,
        name,
        subresource: sub,
        mut object,
        ..
    } = d;
    let scope = if r.namespaced {
        format!("/namespaces/{ns}")
    } else {
        String::new()
    };
    let collection = matches!(method, Method::POST) && sub.is_none()
        || matches!(method, Method::GET | Method::DELETE) && name.is_empty();
    let path = match (sub, collection) {
        (_, true) => format!("{prefix}{scope}/{}", r.plural),
        (None, false) => format!("{prefix}{scope}/{}/{name}", r.plural),
        (Some(sub), false) => format!("{prefix}{scope}/{}/{name}/{sub}", r.plural),
    };
    if let Some(meta) = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .filter(|_| d.keep_place)
    {
        meta.insert("name".into(), json!(name));
        if r.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.remove("resourceVersion");
    }
    let (mut body, content_type) = if method == Method::PATCH {
        (
            serde_json::to_vec(&d.patch).unwrap_or_default(),
            d.patch_type,
        )
    } else {
        let body = match (d.encoding, d.duplicate) {
            ("application/yaml", _) => serde_yaml::to_string(&object)
                .unwrap_or_default()
                .into_bytes(),
            ("application/vnd.kubernetes.protobuf", _) => {
                protobuf::encode_object(&object).unwrap_or_default()
            }
            // A key written twice somewhere (strict decoding refuses it).
            (_, Some(at)) => gen::with_duplicate(&object, at).0.into_bytes(),
            (_, None) => serde_json::to_vec(&object).unwrap_or_default(),
        };
        (body, d.encoding)
    };
    // A few bytes changed here and there.
    for (k, b) in d.flips.iter().enumerate() {
        if !body.is_empty() {
            let at = (usize::from(*b) * 7919 + k * 104_729) % body.len();
            body[at] = *b;
        }
    }
    Generated {
        method,
        path,
        query: d.query,
        content_type: Some(content_type),
        accept: d.accept,
        auth: d.auth,
        body,
    }
}

fn generated() -> impl Strategy<Value = Generated> {
    prop_oneof![3 => on_a_resource(), 1 => free_form()]
}

/// The request `g` describes; a path or query a URI cannot hold is percent-encoded.
fn request(g: &Generated, token: &str) -> Request<Full<Bytes>> {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'|')
        .add(b'\\')
        .add(b'^');
    let raw = if g.query.is_empty() {
        g.path.clone()
    } else {
        format!("{}?{}", g.path, g.query)
    };
    let uri: http::Uri = raw.parse().unwrap_or_else(|_| {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, RESERVED).to_string();
        format!("{}?{}", enc(&g.path).replace('?', "%3F"), enc(&g.query))
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"))
    });
    let mut b = Request::builder().method(g.method.clone()).uri(uri);
    match g.auth {
        Auth::Admin => b = b.header(header::AUTHORIZATION, format!("Bearer {token}")),
        Auth::Wrong => b = b.header(header::AUTHORIZATION, "Bearer nope"),
        Auth::Missing => {}
    }
    if let Some(c) = g.content_type {
        b = b.header(header::CONTENT_TYPE, c);
    }
    if let Some(a) = g.accept {
        b = b.header(header::ACCEPT, a);
    }
    b.body(Full::new(Bytes::from(g.body.clone())))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// The API server on a SQLite store in a temporary directory, with what an all-in-one
/// start has in place for requests to be served at the API's pace: a `fuzz` namespace and
/// `default` service accounts (so pod admission does not wait for the controller).
struct Server {
    rt: tokio::runtime::Runtime,
    server: Arc<apiserver::server::ApiServer>,
    token: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store::SqliteStore::open(&dir.path().join("db.sqlite")).expect("sqlite");
        let (server, token) = rt
            .block_on(apiserver::fuzzing::server(dir.path(), Arc::new(store)))
            .expect("server");
        let s = Server {
            rt,
            server,
            token,
            _dir: dir,
        };
        let setup = [
            ("/api/v1/namespaces", json!({"metadata": {"name": "fuzz"}})),
            (
                "/api/v1/namespaces/default/serviceaccounts",
                json!({"metadata": {"name": "default"}}),
            ),
            (
                "/api/v1/namespaces/fuzz/serviceaccounts",
                json!({"metadata": {"name": "default"}}),
            ),
        ];
        for (path, body) in setup {
            let resp = s.send(Method::POST, path, body.to_string().into_bytes());
            assert_eq!(
                resp.0,
                201,
                "setup {path}: {}",
                String::from_utf8_lossy(&resp.1)
            );
        }
        s
    }

    fn answer(&self, req: Request<Full<Bytes>>) -> Result<Response<apiserver::body::Body>, String> {
        let server = self.server.clone();
        self.rt.block_on(async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                apiserver::fuzzing::answer(server, req),
            )
            .await
            .map_err(|_| "no answer within 20 s".to_string())
        })
    }

    /// The body of an answer, unless it does not end within a second (a watch).
    fn body_of(&self, resp: Response<apiserver::body::Body>) -> Option<Bytes> {
        self.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|c| c.to_bytes())
        })
    }

    fn send(&self, method: Method, path: &str, body: Vec<u8>) -> (u16, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = self.answer(req).expect("answer");
        let status = resp.status().as_u16();
        (status, self.body_of(resp).unwrap_or_default())
    }
}

impl Server {
    /// Lists every served resource across namespaces as JSON, as a Table and in protobuf.
    fn sweep(&self) -> Result<(), String> {
        for r in apiserver::registry::all() {
            let path = if r.group.is_empty() {
                format!("/api/{}/{}", r.version, r.plural)
            } else {
                format!("/apis/{}/{}/{}", r.group, r.version, r.plural)
            };
            for accept in [
                "application/json",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/vnd.kubernetes.protobuf",
            ] {
                let req = Request::get(path.as_str())
                    .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
                    .header(header::ACCEPT, accept)
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let resp = self.answer(req)?;
                let code = resp.status().as_u16();
                if code != 200 {
                    let body = self.body_of(resp).unwrap_or_default();
                    return Err(format!(
                        "listing {path} as {accept} after the writes so far: {code} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What an error answer must be: a `Status` (in the representation the client asked for)
/// whose code is the HTTP status, with a reason and a message.
fn check_status(code: u16, content_type: &str, body: &[u8]) -> Result<Value, String> {
    let status: Value = if content_type.starts_with(protobuf::MEDIA_TYPE) {
        protobuf::decode_object(body)
            .map_err(|e| format!("a protobuf error body that does not decode: {e}"))?
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(body)
            .map_err(|e| format!("a JSON error body that does not parse: {e}"))?
    } else {
        return Err(format!(
            "an error answered as {content_type:?}, not a Status"
        ));
    };
    let ok = status["kind"] == "Status"
        && status["status"] == "Failure"
        && status["code"] == code
        && status["reason"].as_str().is_some_and(|r| !r.is_empty())
        && status["message"].as_str().is_some_and(|m| !m.is_empty());
    if ok {
        Ok(status)
    } else {
        Err(format!("not a well-formed {code} Status: {status}"))
    }
}

/// Whether a server-side status is the server's own condition rather than the client's
/// input: a resource version the store has not reached yet is upstream's 504 Timeout; an
/// agent the harness's server may not reach stands for a node that is down (upstream's
/// "error dialing backend", a 500 too).
fn server_side(code: u16, status: &Value) -> bool {
    code == 504 && status["reason"] == "Timeout"
        || code == 500 && status["message"] == apiserver::fuzzing::NO_AGENTS
}

#[test]
fn the_server_answers_bad_input_with_a_status() {
    let s = Server::start();
    let cases = std::cell::Cell::new(0u32);
    // Which answers the run reached, printed at the end (`-- --nocapture`).
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<(u16, String), u32>::new());
    let examples = std::cell::RefCell::new(std::collections::BTreeMap::<
        (u16, String),
        (String, String, String),
    >::new());
    check("server", 6000, generated(), |g| {
        let req = request(&g, &s.token);
        let resp = s.answer(req).map_err(TestCaseError::fail)?;
        let code = resp.status().as_u16();
        *seen
            .borrow_mut()
            .entry((code, g.method.to_string()))
            .or_default() += 1;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let health = ["/healthz", "/livez", "/readyz"]
            .iter()
            .any(|p| g.path.starts_with(p));
        if code >= 400 && g.method != Method::HEAD && !health {
            let body = s
                .body_of(resp)
                .ok_or_else(|| TestCaseError::fail(format!("a {code} whose body does not end")))?;
            let status = check_status(code, &content_type, &body).map_err(TestCaseError::fail)?;
            examples
                .borrow_mut()
                .entry((
                    code,
                    status["reason"].as_str().unwrap_or_default().to_string(),
                ))
                .or_insert_with(|| {
                    (
                        g.method.to_string(),
                        g.path.clone(),
                        status["message"].to_string(),
                    )
                });
            if code >= 500 && !server_side(code, &status) {
                return Err(TestCaseError::fail(format!(
                    "{code} for client input: {status}"
                )));
            }
        } else if code >= 500 {
            return Err(TestCaseError::fail(format!("{code} for client input")));
        }
        // Still serving; and every so often, everything stored so far still reads back
        // in every representation (a write that stored what cannot be listed, printed or
        // transcoded would show here as a 500).
        let (alive, _) = s.send(Method::GET, "/api/v1/namespaces/default", Vec::new());
        if alive != 200 {
            return Err(TestCaseError::fail(format!(
                "the server stopped answering: {alive}"
            )));
        }
        let n = cases.get() + 1;
        cases.set(n);
        if n.is_multiple_of(100) {
            s.sweep().map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
    eprintln!(
        "fuzz server: answers by (status, method): {:?}",
        seen.borrow()
    );
    for ((code, reason), (method, path, message)) in examples.borrow().iter() {
        eprintln!("fuzz server: e.g. {code} {reason}: {method} {path}: {message}");
    }
}

//! A throwaway HTTP/1.1 server that serves this crate's OpenAPI documents plus
//! just enough discovery for the real kubectl to run `kubectl explain` and
//! `kubectl create --dry-run=server` against it. Not the API server: requests
//! that would write are echoed back (and kept in memory unless a dry run, so
//! that a second `kubectl apply` computes a patch), and everything is logged
//! to stderr.
//!
//! Usage: `cargo run -p openapi --example explain_server -- [PORT]`
//! (default 8089), then point a kubeconfig at `http://127.0.0.1:PORT`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use serde_json::{json, Value};

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8089);

    let started = Instant::now();
    let index = openapi::v3_index();
    let built = started.elapsed();
    let v2 = openapi::v2_document();
    eprintln!(
        "v3 documents built in {built:?}, v2 in {:?} ({} bytes)",
        started.elapsed() - built,
        v2.len()
    );
    if let Some(paths) = index["paths"].as_object() {
        for path in paths.keys() {
            let size = openapi::v3_document(path).map_or(0, |d| d.len());
            eprintln!("  /openapi/v3/{path}: {size} bytes");
        }
    }

    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the port");
    eprintln!("listening on http://127.0.0.1:{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream) {
                        eprintln!("connection error: {e}");
                    }
                });
            }
            Err(e) => eprintln!("accept error: {e}"),
        }
    }
}

struct Request {
    method: String,
    target: String,
    accept: String,
    content_type: String,
    body: Vec<u8>,
}

/// Serves requests on one connection until the client closes it.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut accept = String::new();
        let mut content_type = String::new();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "accept" => accept = value.trim().to_owned(),
                    "content-type" => content_type = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let request = Request {
            method,
            target,
            accept,
            content_type,
            body,
        };
        let (status, content_type, payload) = route(&request);
        eprintln!(
            "{} {} accept={:?} content-type={:?} -> {status} {content_type} ({} bytes)",
            request.method,
            request.target,
            request.accept,
            request.content_type,
            payload.len()
        );
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(&payload)?;
        writer.flush()?;
    }
}

const JSON: &str = "application/json";

fn json_response(status: &'static str, value: &Value) -> (&'static str, &'static str, Vec<u8>) {
    (status, JSON, value.to_string().into_bytes())
}

fn route(r: &Request) -> (&'static str, &'static str, Vec<u8>) {
    let (path, _query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    // Aggregated discovery is not served: a client asking for it with plain
    // JSON as a fallback gets the legacy documents, as from a server that
    // predates aggregated discovery.
    if (path == "/api" || path == "/apis") && !r.accept.contains("application/json") {
        return ("406 Not Acceptable", JSON, b"{}".to_vec());
    }
    match (r.method.as_str(), path) {
        ("GET", "/version") => json_response(
            "200 OK",
            &json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-peapod",
                    "platform": "linux/amd64", "goVersion": "go1.25", "compiler": "gc"}),
        ),
        ("GET", "/api") => json_response(
            "200 OK",
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ("GET", "/apis") => {
            let groups: Vec<Value> = GROUPS
                .iter()
                .map(|(group, _)| {
                    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
                    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            json_response(
                "200 OK",
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        ("GET", "/api/v1") => json_response("200 OK", &resource_list("v1", CORE)),
        ("GET", "/openapi/v3") => json_response("200 OK", &openapi::v3_index()),
        ("GET", "/openapi/v2") => {
            // client-go asks for the protobuf encoding only; this crate has JSON.
            if r.accept.contains("protobuf") && !r.accept.contains("json") {
                ("406 Not Acceptable", JSON, b"{}".to_vec())
            } else {
                ("200 OK", JSON, openapi::v2_document().to_vec())
            }
        }
        ("GET", p) if p.starts_with("/openapi/v3/") => {
            match openapi::v3_document(&p["/openapi/v3/".len()..]) {
                Some(doc) => ("200 OK", JSON, doc.to_vec()),
                None => not_found(),
            }
        }
        ("GET", p) if p.starts_with("/apis/") => {
            let rest = &p["/apis/".len()..];
            match GROUPS
                .iter()
                .find(|(group, _)| rest == format!("{group}/v1"))
            {
                Some((group, resources)) => {
                    json_response("200 OK", &resource_list(&format!("{group}/v1"), resources))
                }
                None => not_found(),
            }
        }
        ("POST" | "PUT", _) => {
            // Echo the object, as a dry run would return it.
            let object: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if !r.target.contains("dryRun") {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let key = if r.method == "POST" {
                    format!("{path}/{name}")
                } else {
                    path.to_owned()
                };
                store()
                    .lock()
                    .expect("store lock")
                    .insert(key, object.clone());
            }
            json_response("201 Created", &object)
        }
        ("PATCH", _) => {
            // The patch itself is only logged; the stored object is returned.
            eprintln!("  patch body: {}", String::from_utf8_lossy(&r.body));
            match store().lock().expect("store lock").get(path) {
                Some(object) => json_response("200 OK", object),
                None => not_found(),
            }
        }
        ("GET", _) => match store().lock().expect("store lock").get(path) {
            Some(object) => json_response("200 OK", object),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// Objects created without dry run, by item path.
fn store() -> &'static Mutex<HashMap<String, Value>> {
    static STORE: OnceLock<Mutex<HashMap<String, Value>>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

fn not_found() -> (&'static str, &'static str, Vec<u8>) {
    json_response(
        "404 Not Found",
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// (name, kind, namespaced, verbs)
type ResourceRow = (&'static str, &'static str, bool, &'static [&'static str]);

const STANDARD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const CORE: &[ResourceRow] = &[
    ("bindings", "Binding", true, &["create"]),
    ("configmaps", "ConfigMap", true, STANDARD),
    ("events", "Event", true, STANDARD),
    (
        "namespaces",
        "Namespace",
        false,
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    ),
    (
        "namespaces/status",
        "Namespace",
        false,
        &["get", "patch", "update"],
    ),
    ("nodes", "Node", false, STANDARD),
    ("nodes/status", "Node", false, &["get", "patch", "update"]),
    ("pods", "Pod", true, STANDARD),
    ("pods/attach", "PodAttachOptions", true, &["create", "get"]),
    ("pods/binding", "Binding", true, &["create"]),
    (
        "pods/ephemeralcontainers",
        "Pod",
        true,
        &["get", "patch", "update"],
    ),
    ("pods/eviction", "Eviction", true, &["create"]),
    ("pods/exec", "PodExecOptions", true, &["create", "get"]),
    ("pods/log", "Pod", true, &["get"]),
    (
        "pods/portforward",
        "PodPortForwardOptions",
        true,
        &["create", "get"],
    ),
    ("pods/status", "Pod", true, &["get", "patch", "update"]),
    ("secrets", "Secret", true, STANDARD),
    ("serviceaccounts", "ServiceAccount", true, STANDARD),
    ("serviceaccounts/token", "TokenRequest", true, &["create"]),
];

const GROUPS: &[(&str, &[ResourceRow])] = &[
    (
        "coordination.k8s.io",
        &[("leases", "Lease", true, STANDARD)],
    ),
    ("events.k8s.io", &[("events", "Event", true, STANDARD)]),
    (
        "scheduling.k8s.io",
        &[("priorityclasses", "PriorityClass", false, STANDARD)],
    ),
];

fn resource_list(group_version: &str, rows: &[ResourceRow]) -> Value {
    let resources: Vec<Value> = rows
        .iter()
        .map(|(name, kind, namespaced, verbs)| {
            let singular = if name.contains('/') {
                String::new()
            } else {
                kind.to_lowercase()
            };
            json!({"name": name, "singularName": singular, "namespaced": namespaced,
                   "kind": kind, "verbs": verbs})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1",
           "groupVersion": group_version, "resources": resources})
}

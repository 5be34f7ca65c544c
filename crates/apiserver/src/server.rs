//! The HTTPS front: TLS accept loop, authentication, routing of each request to discovery,
//! OpenAPI, health or a resource handler, and the mapping of errors to `Status` responses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::authn::UserInfo;
use crate::body::{full, Body};
use crate::discovery;
use crate::errors::ApiError;
use crate::handlers::{self, Call};
use crate::mirror::Mirror;
use crate::registry::SubresourceKind;
use crate::request::{self, Query, Route};

/// The largest request body accepted (upstream's limit for JSON is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// How much of an oversized body is read (and dropped) before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// How much of a body no handler read is drained after the answer, so the HTTP/1
/// connection can carry the client's next request: Go's net/http (so kube-apiserver) reads
/// up to 256 KiB (`maxPostHandlerReadBytes`) and closes the connection past that.
const DRAIN_UNREAD: usize = 256 * 1024;

/// How long that drain may wait for the client; a slower body closes the connection.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Shared state of a running API server.
pub struct ApiServer {
    pub store: Arc<dyn store::Store>,
    pub listen: SocketAddr,
    /// The admin's and the server's own components' tokens.
    tokens_static: crate::authn::StaticTokens,
    ready: AtomicBool,
    /// The store revision when this server started serving. Like kube-apiserver's watch
    /// cache, it keeps no events from before its start: older watches get 410 Expired.
    start_revision: AtomicI64,
    /// What create admission reads on every request.
    pub namespaces: Arc<Mirror>,
    pub priority_classes: Arc<Mirror>,
    pub service_accounts: Arc<Mirror>,
    /// Signs agents' serving certificates and connects to agents (set at start).
    pub nodes: std::sync::OnceLock<Arc<crate::tls::NodePki>>,
    /// Where pods reach the API (`--advertise-address` on the listen port), if set.
    pub advertise: std::sync::OnceLock<SocketAddr>,
    /// Signs and verifies service-account tokens (set at start).
    pub tokens: std::sync::OnceLock<Arc<crate::serviceaccount::jwt::TokenKeys>>,
    /// The Service ranges and allocators (set at start; the defaults otherwise).
    pub services: std::sync::OnceLock<Arc<crate::services::Allocators>>,
}

impl ApiServer {
    pub fn new(
        store: Arc<dyn store::Store>,
        listen: SocketAddr,
        tokens: crate::authn::StaticTokens,
    ) -> Arc<Self> {
        Arc::new(ApiServer {
            store,
            listen,
            tokens_static: tokens,
            ready: AtomicBool::new(false),
            start_revision: AtomicI64::new(0),
            namespaces: Arc::default(),
            priority_classes: Arc::default(),
            service_accounts: Arc::default(),
            nodes: std::sync::OnceLock::new(),
            tokens: std::sync::OnceLock::new(),
            advertise: std::sync::OnceLock::new(),
            services: std::sync::OnceLock::new(),
        })
    }

    /// The Service allocators (`--service-cidr`, `--service-node-port-range`).
    pub fn services(&self) -> Arc<crate::services::Allocators> {
        self.services
            .get_or_init(|| Arc::new(crate::services::Allocators::new(Default::default())))
            .clone()
    }

    pub fn set_ready(&self, start_revision: store::Revision) {
        self.start_revision.store(start_revision, Ordering::Release);
        self.ready.store(true, Ordering::Release);
    }

    /// The oldest revision a watch may resume from.
    pub fn oldest_watchable(&self) -> store::Revision {
        self.start_revision.load(Ordering::Acquire)
    }

    /// The user a request's bearer token stands for: one of the server's own tokens, or a
    /// service-account token this server issued that is still valid. There is no
    /// authorization yet: any user gets full access (ARCHITECTURE.md).
    async fn authenticated(&self, headers: &http::HeaderMap) -> Option<UserInfo> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?;
        let token = value.strip_prefix("Bearer ").map(str::trim)?;
        if let Some(user) = self.tokens_static.authenticate(token) {
            return Some(user.clone());
        }
        let keys = self.tokens.get()?;
        match crate::serviceaccount::authn::authenticate(self, keys, token).await {
            Ok(claims) => {
                let sa = &claims.kubernetes.serviceaccount;
                Some(UserInfo::service_account(
                    &claims.kubernetes.namespace,
                    &sa.name,
                    &sa.uid,
                ))
            }
            Err(e) => {
                debug!(reason = %e, "bearer token refused");
                None
            }
        }
    }
}

/// Accepts TLS connections on `listener` until `shutdown`.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(server, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::select! {
                res = conn => if let Err(e) = res {
                    debug!(%peer, error = %e, "connection ended with an error");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// Answers one request: everything below TLS and the HTTP framing (the fuzzing harness
/// drives exactly this, in-process, through [`crate::fuzzing`]).
pub(crate) async fn handle<B>(server: Arc<ApiServer>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::debug_span!("request", %method, %path, user = tracing::field::Empty);
    // Errors are answered in protobuf to clients that prefer it, as upstream does.
    let output = handlers::Output::negotiate(req.headers().get(http::header::ACCEPT));
    let version = req.version();
    let expects_continue = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    let mut body = RequestBody::new(body);
    async move {
        let started = std::time::Instant::now();
        let mut resp = match dispatch(server, parts, &mut body).await {
            Ok(resp) => resp,
            Err(err) => error_response_as(&err, output),
        };
        // HTTP/2 ends an unread request stream on its own; an upgraded connection is no
        // longer HTTP.
        if version < http::Version::HTTP_2 && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            body.settle(&mut resp, expects_continue).await;
        }
        if method == http::Method::HEAD {
            without_body(&mut resp);
        }
        debug!(
            status = resp.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "served"
        );
        resp
    }
    .instrument(span)
    .await
}

/// A HEAD answer: the headers a GET would get (its length included), no body.
fn without_body(resp: &mut Response<Body>) {
    use http_body::Body as _;
    if let Some(len) = resp.body().size_hint().exact() {
        resp.headers_mut()
            .entry(http::header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    *resp.body_mut() = crate::body::empty();
}

/// A request's body, read at most once, by the handler that needs it. What is left unread
/// once the answer is ready decides whether an HTTP/1 connection can carry another request
/// ([`RequestBody::settle`]).
pub(crate) struct RequestBody<B> {
    body: Option<B>,
    /// Everything the client sent was read: the connection is at a request boundary.
    read_to_end: bool,
}

impl<B> RequestBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    fn new(body: B) -> Self {
        RequestBody {
            body: Some(body),
            read_to_end: false,
        }
    }

    /// The whole body. One over [`MAX_BODY`] is read on (up to [`DRAIN_LIMIT`]) and
    /// dropped, so the client finishes sending and can read the 413; answering mid-upload
    /// would reset its connection instead.
    async fn read(&mut self) -> Result<Bytes, ApiError> {
        let Some(mut body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let mut buf = bytes::BytesMut::new();
        let mut seen = 0usize;
        loop {
            let Some(frame) = body.frame().await else {
                self.read_to_end = true;
                break;
            };
            let frame =
                frame.map_err(|e| ApiError::BadRequest(format!("reading request body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
        if seen > MAX_BODY {
            return Err(ApiError::RequestEntityTooLarge(MAX_BODY));
        }
        Ok(buf.freeze())
    }

    /// After the answer to an HTTP/1 request, the rest of a body no handler read must come
    /// off the connection before the next request can be parsed. As Go's net/http does, up
    /// to [`DRAIN_UNREAD`] is read and dropped; a longer body, one that does not arrive
    /// within [`DRAIN_TIMEOUT`], one read only in part, or one the client holds back for a
    /// `100 Continue` it never got, ends the connection after this answer, and the answer
    /// says so (`Connection: close`) so the client does not send its next request into a
    /// connection that is closing.
    async fn settle(self, resp: &mut Response<Body>, expects_continue: bool) {
        if self.read_to_end {
            return;
        }
        let reusable = match self.body {
            // Read in part: what is left of it cannot be told from a next request.
            None => false,
            Some(body) if body.is_end_stream() => true,
            Some(_) if expects_continue => false,
            Some(body) => drain(body).await,
        };
        if !reusable {
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Reads and drops up to [`DRAIN_UNREAD`] of a body within [`DRAIN_TIMEOUT`]; whether it
/// reached the end.
async fn drain<B>(mut body: B) -> bool
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let to_end = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_UNREAD {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIMEOUT, to_end)
        .await
        .unwrap_or(false)
}

/// An error's `Status` in the representation negotiated (protobuf or JSON).
pub fn error_response_as(err: &ApiError, output: handlers::Output) -> Response<Body> {
    if output != handlers::Output::Protobuf {
        return error_response(err);
    }
    if let ApiError::Internal(msg) = err {
        warn!(error = %msg, "internal error");
    }
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&err.status()).unwrap_or_default();
    handlers::encoded(output, code, body, &[])
}

pub fn error_response(err: &ApiError) -> Response<Body> {
    if let ApiError::Internal(msg) = err {
        warn!(error = %msg, "internal error");
    }
    let body = err.status_bytes();
    let mut resp = Response::new(full(body));
    *resp.status_mut() =
        StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Upstream's response writer turns `details.retryAfterSeconds` into the header.
    if let ApiError::TooManyRequests { retry_after, .. } = err {
        if *retry_after > 0 {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
    }
    resp
}

fn value_response(v: &Value, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp.headers_mut()
        .insert(http::header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn text_response(code: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn dispatch<B>(
    server: Arc<ApiServer>,
    parts: http::request::Parts,
    body: &mut RequestBody<B>,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let query = Query::parse(parts.uri.query());
    let route = request::route(&parts.method, parts.uri.path(), &query);
    // Health and version are public to GET, as upstream's system:public-info-viewer role
    // makes them (it grants `get` only: other methods need a user).
    if parts.method == http::Method::GET {
        match &route {
            Ok(Route::Health { endpoint, check }) => {
                return Ok(health(&server, endpoint, check.as_deref(), query.flag("verbose")).await)
            }
            Ok(Route::Version) => {
                return Ok(value_response(&discovery::version(), "application/json"))
            }
            _ => {}
        }
    }
    let Some(user) = server.authenticated(&parts.headers).await else {
        return Err(ApiError::Unauthorized);
    };
    tracing::Span::current().record("user", user.name.as_str());
    if parts.uri.path() == crate::nodeproxy::SERVING_CERT_PATH {
        if parts.method != http::Method::POST {
            return Err(ApiError::MethodNotAllowed);
        }
        let body = body.read().await?;
        return crate::nodeproxy::serving_certificate(&server, &body);
    }
    let accept = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match route? {
        // The health handlers ignore the method (upstream's too).
        Route::Health { endpoint, check } => {
            Ok(health(&server, &endpoint, check.as_deref(), query.flag("verbose")).await)
        }
        Route::Version => Ok(value_response(&discovery::version(), "application/json")),
        Route::Discovery(path) => discover(&server, &path, &accept),
        Route::OpenApiV2 => {
            // client-go asks for the protobuf form only; JSON is all we publish.
            if !accept.is_empty()
                && !accept.split(',').any(|c| {
                    let media = c.split(';').next().unwrap_or("").trim();
                    matches!(media, "application/json" | "*/*" | "application/*")
                })
            {
                return Err(ApiError::NotAcceptable(
                    "only application/json is served for /openapi/v2".into(),
                ));
            }
            let doc = crate::registry::openapi().v2_document();
            Ok(bytes_response(doc.as_slice().to_vec(), "application/json"))
        }
        Route::OpenApiV3(None) => Ok(value_response(
            &crate::registry::openapi().v3_index(),
            "application/json",
        )),
        Route::OpenApiV3(Some(path)) => match crate::registry::openapi().v3_document(&path) {
            Some(doc) => Ok(bytes_response(doc.as_slice().to_vec(), "application/json")),
            None => Err(ApiError::RouteNotFound),
        },
        Route::Resource(info)
            if info.subresource_kind() == Some(SubresourceKind::Log)
                && parts
                    .headers
                    .get(http::header::UPGRADE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("websocket")) =>
        {
            let req = Request::from_parts(parts, ());
            crate::nodeproxy::pod_log_websocket(server, info, query, req).await
        }
        Route::Resource(info)
            if matches!(
                info.subresource_kind(),
                Some(
                    SubresourceKind::Exec | SubresourceKind::Attach | SubresourceKind::PortForward
                )
            ) =>
        {
            let req = Request::from_parts(parts, ());
            crate::nodeproxy::pod_upgrade(server, info, query, req).await
        }
        Route::Resource(info) => {
            let body = body.read().await?;
            let call = Call {
                server,
                info,
                query,
                headers: parts.headers,
                body,
                user,
            };
            handlers::handle(call).await
        }
    }
}

fn bytes_response(body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

fn discover(
    server: &ApiServer,
    parts: &[String],
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let aggregated = discovery::wants_aggregated(accept);
    match parts.as_slice() {
        ["api"] if aggregated => Ok(value_response(
            &discovery::aggregated(true),
            discovery::AGGREGATED_CONTENT_TYPE,
        )),
        ["apis"] if aggregated => Ok(value_response(
            &discovery::aggregated(false),
            discovery::AGGREGATED_CONTENT_TYPE,
        )),
        ["api"] => Ok(value_response(
            &discovery::core_versions(
                &server.advertise.get().unwrap_or(&server.listen).to_string(),
            ),
            "application/json",
        )),
        ["apis"] => Ok(value_response(&discovery::group_list(), "application/json")),
        ["api", version] => discovery::resource_list("", version)
            .map(|v| value_response(&v, "application/json"))
            .ok_or(ApiError::RouteNotFound),
        ["apis", group] => discovery::api_group(group)
            .map(|v| value_response(&v, "application/json"))
            .ok_or(ApiError::RouteNotFound),
        ["apis", group, version] => discovery::resource_list(group, version)
            .map(|v| value_response(&v, "application/json"))
            .ok_or(ApiError::RouteNotFound),
        _ => Err(ApiError::RouteNotFound),
    }
}

/// The checks behind `/healthz`, `/livez` and `/readyz`, as kube-apiserver names them.
async fn health(
    server: &ApiServer,
    endpoint: &str,
    only: Option<&str>,
    verbose: bool,
) -> Response<Body> {
    let mut checks: Vec<(&str, bool)> = vec![("ping", true)];
    if matches!(endpoint, "readyz" | "healthz") || only == Some("etcd") {
        let store_ok = match server.store.current_revision().await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, endpoint, "health: store does not answer");
                false
            }
        };
        checks.push(("etcd", store_ok));
    }
    if endpoint != "livez" {
        checks.push((
            "poststarthook/peapod-bootstrap",
            server.ready.load(Ordering::Acquire),
        ));
    }
    if let Some(name) = only {
        return match checks.iter().find(|(n, _)| *n == name) {
            Some((_, true)) => text_response(StatusCode::OK, "ok"),
            Some((_, false)) => text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("internal server error: {name} check failed"),
            ),
            None => text_response(StatusCode::NOT_FOUND, "404 page not found"),
        };
    }
    let passed = checks.iter().all(|(_, ok)| *ok);
    if passed && !verbose {
        return text_response(StatusCode::OK, "ok");
    }
    let mut out = String::new();
    for (name, ok) in &checks {
        if *ok {
            out.push_str(&format!("[+]{name} ok\n"));
        } else {
            out.push_str(&format!("[-]{name} failed: reason withheld\n"));
        }
    }
    let verdict = if passed { "passed" } else { "failed" };
    out.push_str(&format!("{endpoint} check {verdict}"));
    let code = if passed {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    text_response(code, &out)
}

/// Logs the listen address once; kept apart so the binary decides what "ready" prints.
pub fn log_listening(addr: SocketAddr) {
    info!(%addr, "serving the Kubernetes API over HTTPS");
}

#[cfg(test)]
mod tests;

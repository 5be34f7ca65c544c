//! The API server's side of the node agents: it signs each agent's serving certificate with
//! the cluster CA (so the server can verify whom it talks to), and proxies the node-served
//! subresources (`pods/log`, exec, attach and port-forward) to the pod's node over
//! mutually authenticated TLS, as kube-apiserver does with the kubelet.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::Response;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::body::{full, streaming, Body};
use crate::errors::ApiError;
use crate::handlers::Call;
use crate::server::ApiServer;

/// Where agents ask for their serving certificate (authenticated like every request).
/// The answer when this server has no node PKI (it may not connect to agents).
pub(crate) const NO_NODE_PKI: &str = "node PKI not ready";

pub const SERVING_CERT_PATH: &str = "/peapod.io/v1/node-serving-certificate";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertRequest {
    node_name: String,
    #[serde(default)]
    addresses: Vec<String>,
}

pub fn serving_certificate(server: &ApiServer, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let req: CertRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("node serving certificate request: {e}")))?;
    if req.node_name.is_empty() {
        return Err(ApiError::BadRequest("nodeName is required".into()));
    }
    let nodes = server
        .nodes
        .get()
        .ok_or_else(|| ApiError::Internal(NO_NODE_PKI.into()))?;
    let (cert, key) = nodes
        .sign_serving_cert(&req.node_name, &req.addresses)
        .map_err(|e| ApiError::Internal(format!("signing node certificate: {e}")))?;
    let body = serde_json::json!({"certificate": cert, "key": key, "ca": nodes.ca_pem()});
    let mut resp = Response::new(full(serde_json::to_vec(&body).unwrap_or_default()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

async fn get_typed<T: serde::de::DeserializeOwned>(
    server: &ApiServer,
    resource: &'static crate::registry::Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<T, ApiError> {
    let kv = server
        .store
        .get(&resource.key(namespace, name))
        .await?
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("decoding stored {}: {e}", resource.kind)))
}

/// The container a log request is about, as upstream's pod log REST picks it.
fn pick_container(pod: &Pod, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let names = |cs: &[k8s_openapi::api::core::v1::Container]| {
        cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
    };
    let containers = names(&spec.containers);
    let init = names(spec.init_containers.as_deref().unwrap_or_default());
    let ephemeral: Vec<String> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    let chosen = match requested {
        Some(c) => c.to_string(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                msg.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            return Err(ApiError::BadRequest(msg));
        }
    };
    if !containers.contains(&chosen) && !init.contains(&chosen) && !ephemeral.contains(&chosen) {
        return Err(ApiError::BadRequest(format!(
            "container {chosen} is not valid for pod {name}"
        )));
    }
    Ok(chosen)
}

/// Upstream's kubelet refuses logs of a container that never ran with its waiting reason;
/// the pod's status says as much, so the answer needs no trip to the node.
fn waiting_check(pod: &Pod, container: &str, previous: bool) -> Result<(), ApiError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let statuses = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten());
    let Some(s) = statuses.into_iter().find(|s| s.name == container) else {
        return Ok(());
    };
    let ran_before = s
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .is_some();
    if previous {
        return if ran_before {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )))
        };
    }
    if let Some(w) = s.state.as_ref().and_then(|st| st.waiting.as_ref()) {
        if !ran_before {
            return Err(ApiError::BadRequest(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
                w.reason.as_deref().unwrap_or("ContainerCreating")
            )));
        }
    }
    Ok(())
}

/// Where a node's agent serves: its InternalIP and the kubelet endpoint port.
fn node_endpoint(node: &Node) -> Result<(IpAddr, u16), ApiError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let ip = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "node {name} has no InternalIP address to reach it on"
            ))
        })?;
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("node {name} has no kubelet endpoint")))?;
    Ok((ip, port))
}

/// Query parameters of `pods/log` passed on to the agent.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "limitBytes",
];

/// GET `pods/{name}/log`: validates the request, then streams the agent's answer.
pub async fn pod_log(call: Call) -> Result<Response<Body>, ApiError> {
    let chunks = open_log(&call.server, &call.info, &call.query).await?;
    let mut out = Response::new(streaming(chunks));
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(out)
}

/// The WebSocket log subprotocols, as kube-apiserver serves them: raw binary messages
/// (also with no subprotocol), or base64 text messages.
const LOG_WEBSOCKET_PROTOCOLS: &[&str] = &["binary.k8s.io", "base64.binary.k8s.io"];

/// GET `pods/{name}/log` as a WebSocket upgrade (the conformance tests' form): the same
/// validation and the same bytes, each chunk one message, then a normal close.
pub async fn pod_log_websocket(
    server: Arc<ApiServer>,
    info: crate::request::RequestInfo,
    query: crate::request::Query,
    mut req: http::Request<()>,
) -> Result<Response<Body>, ApiError> {
    let offer = stream::websocket::Offer::from_headers(req.headers())
        .ok_or_else(|| ApiError::BadRequest("missing Sec-WebSocket-Key".into()))?;
    let protocol = offer.choose(LOG_WEBSOCKET_PROTOCOLS);
    if protocol.is_none() && !offer.protocols.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "none of the offered WebSocket subprotocols ({}) is served for logs; use binary.k8s.io or base64.binary.k8s.io",
            offer.protocols.join(", ")
        )));
    }
    let chunks = open_log(&server, &info, &query).await?;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::{
            frame::coding::CloseCode, CloseFrame, Role,
        };
        use tokio_tungstenite::tungstenite::Message;
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "log upgrade failed");
                return;
            }
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let msg = if protocol == Some("base64.binary.k8s.io") {
                use base64::Engine;
                Message::Text(
                    base64::engine::general_purpose::STANDARD
                        .encode(&chunk)
                        .into(),
                )
            } else {
                Message::Binary(chunk)
            };
            if ws.send(msg).await.is_err() {
                return;
            }
        }
        let _ = ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    });
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    stream::websocket::switching_headers(resp.headers_mut(), &offer.accept, protocol);
    Ok(resp)
}

/// Validates a log request and opens the agent's log stream for it.
async fn open_log(
    server: &Arc<ApiServer>,
    info: &crate::request::RequestInfo,
    query: &crate::request::Query,
) -> Result<impl futures::Stream<Item = Bytes> + Send + 'static, ApiError> {
    let ns = info.namespace.clone().unwrap_or_default();
    let name = info.name.clone().unwrap_or_default();
    let pod: Pod = get_typed(server, info.resource, Some(&ns), &name).await?;
    let container = pick_container(&pod, query.non_empty("container"))?;
    for int_param in ["tailLines", "sinceSeconds", "limitBytes"] {
        if let Some(v) = query.int(int_param)? {
            if v < 0 || (int_param != "tailLines" && v == 0) {
                return Err(ApiError::BadRequest(format!(
                    "{int_param}: Invalid value: {v}: must be greater than 0"
                )));
            }
        }
    }
    waiting_check(&pod, &container, query.flag("previous"))?;
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let nodes = &crate::kinds::node::RESOURCE;
    let node: Node = get_typed(server, nodes, None, &node_name).await?;
    let (ip, port) = node_endpoint(&node)?;
    let mut forwarded = String::new();
    for key in LOG_PARAMS {
        if let Some(v) = query.get(key) {
            forwarded.push(if forwarded.is_empty() { '?' } else { '&' });
            forwarded.push_str(key);
            forwarded.push('=');
            forwarded.push_str(
                &percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
    }
    let path = format!("/containerLogs/{ns}/{name}/{container}{forwarded}");
    let resp = node_get(server, ip, port, &path).await?;
    if !resp.status().is_success() {
        return Err(agent_refusal(resp).await);
    }
    let chunks = resp
        .into_body()
        .into_data_stream()
        .filter_map(|chunk| async move {
            match chunk {
                Ok(b) => Some(b),
                Err(e) => {
                    debug!(error = %e, "log stream from node ended");
                    None
                }
            }
        });
    Ok(chunks)
}

/// `pods/exec` and `pods/attach` (and port-forward): checks the pod and container, then passes the client's
/// WebSocket upgrade through to the agent and splices the two upgraded connections. The
/// server does not parse the stream; the agent speaks the channel protocol.
pub async fn pod_upgrade(
    server: Arc<ApiServer>,
    info: crate::request::RequestInfo,
    query: crate::request::Query,
    req: http::Request<()>,
) -> Result<Response<Body>, ApiError> {
    let ns = info.namespace.clone().unwrap_or_default();
    let name = info.name.clone().unwrap_or_default();
    let sub = info.subresource.clone().unwrap_or_default();
    let pod: Pod = get_typed(&server, info.resource, Some(&ns), &name).await?;
    let forward_ports = sub == "portforward";
    let container = if forward_ports {
        String::new()
    } else {
        pick_container(&pod, query.non_empty("container"))?
    };
    let running = forward_ports
        || pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(
                pod.status
                    .as_ref()
                    .and_then(|s| s.init_container_statuses.as_ref())
                    .into_iter()
                    .flatten(),
            )
            .chain(
                pod.status
                    .as_ref()
                    .and_then(|s| s.ephemeral_container_statuses.as_ref())
                    .into_iter()
                    .flatten(),
            )
            .find(|s| s.name == container)
            .is_some_and(|s| {
                s.state
                    .as_ref()
                    .and_then(|st| st.running.as_ref())
                    .is_some()
            });
    if !running {
        return Err(ApiError::BadRequest(format!(
            "unable to upgrade connection: container not found (\"{container}\")"
        )));
    }
    if forward_ports && pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
        return Err(ApiError::BadRequest(
            "unable to upgrade connection: pod does not exist or is not running".into(),
        ));
    }
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let nodes = &crate::kinds::node::RESOURCE;
    let node: Node = get_typed(&server, nodes, None, &node_name).await?;
    let (ip, port) = node_endpoint(&node)?;
    let query_string = req.uri().query().unwrap_or("").to_string();
    let path = if forward_ports {
        format!("/portForward/{ns}/{name}?{query_string}")
    } else {
        format!("/{sub}/{ns}/{name}/{container}?{query_string}")
    };
    let mut forward = http::Request::get(path.as_str());
    for h in [
        http::header::UPGRADE,
        http::header::CONNECTION,
        http::header::SEC_WEBSOCKET_KEY,
        http::header::SEC_WEBSOCKET_VERSION,
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderName::from_static("x-stream-protocol-version"),
    ] {
        for v in req.headers().get_all(&h) {
            forward = forward.header(&h, v);
        }
    }
    let forward = forward
        .header(http::header::HOST, format!("{ip}:{port}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut agent_resp = node_send(&server, ip, port, forward).await?;
    if agent_resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent_refusal(agent_resp).await);
    }
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in agent_resp.headers() {
        resp.headers_mut().append(k, v.clone());
    }
    let agent_upgrade = hyper::upgrade::on(&mut agent_resp);
    let mut req = req;
    let client_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_upgrade, agent_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                debug!(error = %e, "stream upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut agent = hyper_util::rt::TokioIo::new(agent);
        // Large buffers: the default 8 KiB split a port-forward's bulk data into many small
        // TLS records and syscalls on both legs.
        if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut agent,
            SPLICE_BUFFER,
            SPLICE_BUFFER,
        )
        .await
        {
            debug!(error = %e, "stream closed");
        }
    });
    Ok(resp)
}

/// The per-direction buffer of a spliced stream (exec, attach, port-forward).
const SPLICE_BUFFER: usize = 256 * 1024;

/// An agent's refusal as the client's error: its 400s (bad container, not running...) are
/// the user's; anything else is the server's.
async fn agent_refusal(resp: Response<hyper::body::Incoming>) -> ApiError {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    if status.is_client_error() {
        ApiError::BadRequest(message)
    } else {
        ApiError::Internal(message)
    }
}

/// A GET to an agent (see [`node_send`]).
async fn node_get(
    server: &ApiServer,
    ip: IpAddr,
    port: u16,
    path: &str,
) -> Result<Response<hyper::body::Incoming>, ApiError> {
    let req = http::Request::get(path)
        .header(http::header::HOST, format!("{ip}:{port}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    node_send(server, ip, port, req).await
}

/// Sends one request to an agent over TLS with the kubelet-client certificate; the agent's
/// certificate must be signed by the cluster CA for the node's address. The connection
/// allows an upgrade (exec, attach).
async fn node_send(
    server: &ApiServer,
    ip: IpAddr,
    port: u16,
    req: http::Request<http_body_util::Empty<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, ApiError> {
    let nodes = server
        .nodes
        .get()
        .ok_or_else(|| ApiError::Internal(NO_NODE_PKI.into()))?;
    let unreachable = |e: String| {
        warn!(node = %ip, error = %e, "reaching the node agent");
        ApiError::Internal(format!("error dialing backend: {e}"))
    };
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&nodes.kubelet_client));
    let server_name = rustls::pki_types::ServerName::IpAddress(ip.into());
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "node connection closed");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

//! The agent's streaming server (the kubelet's port 10250): HTTPS with a serving certificate
//! the API server signed with the cluster CA, accepting only clients presenting a certificate
//! from that CA (the API server's kubelet-client certificate). This module owns the server,
//! the routing and the pieces the endpoints share; each endpoint has its own module.

mod attach;
mod exec;
mod logs;
mod portforward;
mod pty;
mod session;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;
use supervisor::{Backoff, Outage};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::record::{ContainerRecord, PodRecord};
use crate::{AgentError, Ctx};

pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Deserialize)]
struct Issued {
    certificate: String,
    key: String,
    ca: String,
}

fn tls_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::State(format!("streaming server TLS: {e}"))
}

/// Asks the API server for a serving certificate for this node and builds the TLS config.
pub async fn tls_config(ctx: &Ctx) -> Result<Arc<rustls::ServerConfig>, AgentError> {
    let body = serde_json::json!({
        "nodeName": ctx.cfg.node_name,
        "addresses": [ctx.cfg.node_ip.to_string()],
    });
    let req = Request::post("/peapod.io/v1/node-serving-certificate")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).map_err(tls_err)?)
        .map_err(tls_err)?;
    let text = ctx.client.request_text(req).await?;
    let issued: Issued = serde_json::from_str(&text).map_err(tls_err)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut issued.certificate.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(tls_err)?;
    let key = rustls_pemfile::private_key(&mut issued.key.as_bytes())
        .map_err(tls_err)?
        .ok_or_else(|| tls_err("no private key in the issued certificate"))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut issued.ca.as_bytes()) {
        roots.add(der.map_err(tls_err)?).map_err(tls_err)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(tls_err)?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    Ok(Arc::new(config))
}

fn accept_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(5),
        Duration::from_secs(1),
        Duration::MAX,
    )
}

/// Serves on `listener` until shutdown.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "streaming server listening");
    }
    // Accept errors (out of descriptors, mostly) pass: wait 5 ms doubling to 1 s between
    // tries, as Go's net/http server does, and log the spell once.
    let mut outage = Outage::new("accepting streaming connections");
    let mut retry = accept_backoff();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    outage.succeeded();
                    retry = accept_backoff();
                    a
                }
                Err(e) => {
                    outage.failed(&e);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry.next_delay(Duration::ZERO)) => {}
                    }
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    debug!(%peer, error = %e, "streaming TLS handshake refused");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(ctx, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                debug!(%peer, error = %e, "streaming connection ended");
            }
        });
    }
}

pub(super) fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.into())).boxed_unsync());
    *resp.status_mut() = code;
    resp
}

async fn route(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", ns, pod, container] => {
            let query = logs::LogQuery::parse(req.uri().query().unwrap_or(""));
            logs::container_logs(&ctx, ns, pod, container, query).await
        }
        ["exec", ns, pod, container] => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            exec::exec(&ctx, req, &ns, &pod, &container).await
        }
        ["attach", ns, pod, container] => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            attach::attach(&ctx, req, &ns, &pod, &container).await
        }
        ["portForward", ns, pod] => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            portforward::port_forward(&ctx, req, &ns, &pod).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The record of the pod `ns/name` on this node (the newest, if it was recreated).
pub(super) fn find_pod(ctx: &Ctx, ns: &str, name: &str) -> Option<PodRecord> {
    let entries = std::fs::read_dir(ctx.cfg.pods_dir()).ok()?;
    entries
        .flatten()
        .filter_map(|e| PodRecord::load(&e.path()).ok().flatten())
        .filter(|r| r.namespace == ns && r.name == name)
        .max_by_key(|r| r.start_time)
}

/// The pod's record and the running instance of its container `name`.
pub(super) fn running_container(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    name: &str,
) -> Option<(PodRecord, ContainerRecord)> {
    let rec = find_pod(ctx, ns, pod)?;
    let inst = instance(&rec, name, false)
        .filter(|c| c.exit.is_none())
        .cloned()?;
    Some((rec, inst))
}

/// The kubelet's 400 for a container that is not running.
pub(super) fn container_not_found(name: &str) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        format!("container not found (\"{name}\")"),
    )
}

pub(super) fn instance<'a>(
    rec: &'a PodRecord,
    name: &str,
    previous: bool,
) -> Option<&'a ContainerRecord> {
    let pick = |init: bool| {
        if previous {
            rec.previous(name, init)
        } else {
            rec.latest(name, init)
        }
    };
    pick(false).or_else(|| pick(true))
}

/// A binary message on one channel of the channel protocols: the channel byte, then data.
pub(super) fn channel_message(channel: u8, data: &[u8]) -> tokio_tungstenite::tungstenite::Message {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    tokio_tungstenite::tungstenite::Message::Binary(m.into())
}

/// The payload of a message on the channel protocols, the channel byte first: binary and
/// text frames alike, as upstream's `wsstream` reads both (the Python client sends `str`
/// data, stdin included, in text frames). None for control frames and empty messages.
pub(super) fn channel_payload(msg: tokio_tungstenite::tungstenite::Message) -> Option<Bytes> {
    use tokio_tungstenite::tungstenite::Message;
    let data = match msg {
        Message::Binary(data) => data,
        Message::Text(text) => text.into(),
        _ => return None,
    };
    (!data.is_empty()).then_some(data)
}

/// What a WebSocket upgrade request offers: the accept key and the first of `protocols`
/// the client offered.
pub(super) fn websocket_upgrade(
    req: &Request<Incoming>,
    protocols: &[&'static str],
) -> Option<(String, &'static str)> {
    let offer = stream::websocket::Offer::from_headers(req.headers())?;
    let protocol = offer.choose(protocols)?;
    Some((offer.accept, protocol))
}

pub(super) fn switching(accept: &str, protocol: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    stream::websocket::switching_headers(resp.headers_mut(), accept, Some(protocol));
    resp
}

/// The SPDY subprotocol of port-forward (`X-Stream-Protocol-Version`).
pub(super) const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// For a plain SPDY upgrade offering `protocol` (`Upgrade: SPDY/3.1`,
/// `X-Stream-Protocol-Version`), the 101 that accepts it.
pub(super) fn spdy_upgrade(
    req: &Request<Incoming>,
    protocol: &'static str,
) -> Option<Response<Body>> {
    spdy_upgrade_any(req, &[protocol]).map(|(resp, _)| resp)
}

/// For a plain SPDY upgrade, the first of `protocols` (ours, in order of preference) the
/// client offers, and the 101 that accepts it.
pub(super) fn spdy_upgrade_any(
    req: &Request<Incoming>,
    protocols: &[&'static str],
) -> Option<(Response<Body>, &'static str)> {
    let headers = req.headers();
    let is_spdy = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !is_spdy {
        return None;
    }
    let offered: Vec<&str> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let protocol = protocols.iter().copied().find(|p| offered.contains(p))?;
    let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(
        "x-stream-protocol-version",
        http::HeaderValue::from_static(protocol),
    );
    Some((resp, protocol))
}

/// A byte stream carried in binary WebSocket messages, as client-go's tunnelling connection
/// sends SPDY: every write is one message, reads run across message boundaries. Returns the
/// local end of a pipe a task keeps joined to the WebSocket.
pub(super) fn tunnel<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    let (local, mut remote) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut source) = ws.split();
        let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
        loop {
            tokio::select! {
                msg = source.next() => match msg {
                    Some(Ok(Message::Binary(data))) => {
                        if remote.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = remote.read_buf(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let chunk = buf.split().freeze();
                        buf.reserve(64 * 1024);
                        if sink.send(Message::Binary(chunk)).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    local
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Message;

    #[test]
    fn channel_messages_come_in_binary_and_text_frames() {
        let cases: Vec<(Message, Option<&[u8]>)> = vec![
            (Message::Binary(Bytes::from_static(b"\0hi")), Some(b"\0hi")),
            // The Python client's `write_stdin("hi")`: chr(0) + "hi" in a text frame.
            (Message::Text("\0hi".into()), Some(b"\0hi")),
            (
                Message::Text("\u{4}{\"Width\":80}".into()),
                Some(b"\x04{\"Width\":80}"),
            ),
            (Message::Binary(Bytes::new()), None),
            (Message::Text("".into()), None),
            (Message::Ping(Bytes::from_static(b"\0")), None),
            (Message::Close(None), None),
        ];
        for (msg, want) in cases {
            let shown = format!("{msg:?}");
            assert_eq!(channel_payload(msg).as_deref(), want, "{shown}");
        }
    }
}

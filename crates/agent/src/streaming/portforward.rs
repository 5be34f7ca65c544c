//! `portForward`: connections to a pod's ports, made inside the pod's network namespace.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::debug;

use super::{
    channel_message, channel_payload, find_pod, percent_decode, spdy_upgrade, switching, text,
    websocket_upgrade, Body, PORT_FORWARD_PROTOCOL,
};
use crate::Ctx;

/// A TCP connection to `127.0.0.1:port` made inside the network namespace of `infra_pid`
/// (a pod's). The socket stays in the namespace it was made in; only a short-lived thread
/// switches namespaces, never the agent's own threads.
async fn connect_in_pod(infra_pid: u32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let ns_path = format!("/proc/{infra_pid}/ns/net");
    let stream = tokio::task::spawn_blocking(move || -> std::io::Result<std::net::TcpStream> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = (|| {
                use std::os::fd::AsRawFd;
                let ns = std::fs::File::open(&ns_path)?;
                // SAFETY: setns on this dedicated thread only, with a namespace fd we own.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                std::net::TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_secs(5),
                )
            })();
            let _ = tx.send(result);
        });
        rx.recv()
            .map_err(|_| std::io::Error::other("namespace thread ended"))?
    })
    .await
    .map_err(std::io::Error::other)??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// The WebSocket subprotocol kubectl 1.37 opens port-forward with: SPDY, tunnelled through
/// binary WebSocket messages.
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long the second stream of a port-forward request may take to arrive (the kubelet's
/// stream creation timeout).
const STREAM_PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Port-forward in each of the forms clients speak:
/// - SPDY tunnelled over a WebSocket (kubectl 1.37),
/// - SPDY over a plain HTTP upgrade (kubectl with `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`,
///   and older clients),
/// - the WebSocket channel form (`v4.channel.k8s.io`, the Python client's): for the i-th
///   requested port, channel 2i carries data and 2i+1 errors; each channel opens with the
///   port number (2 bytes, little endian).
pub(super) async fn port_forward(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
    let Some(target) = find_pod(ctx, ns, pod).and_then(|r| {
        r.sandbox.map(|s| Target {
            infra: s.infra_pid,
            pod: pod.to_string(),
            uid: r.uid.clone(),
        })
    }) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("pod {pod} is not running on this node"),
        );
    };
    if let Some(resp) = spdy_upgrade(&req, PORT_FORWARD_PROTOCOL) {
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    serve_spdy(
                        stream::spdy::serve(hyper_util::rt::TokioIo::new(upgraded)),
                        target,
                    )
                    .await
                }
                Err(e) => debug!(error = %e, "port-forward upgrade failed"),
            }
        });
        return resp;
    }
    let ports: Vec<u16> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.strip_prefix("ports="))
        .flat_map(|v| {
            percent_decode(v)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let Some((accept, protocol)) = websocket_upgrade(
        &req,
        &[
            SPDY_TUNNEL,
            "v4.channel.k8s.io",
            "portforward.k8s.io",
            "channel.k8s.io",
        ],
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "port-forward needs an upgrade: SPDY/3.1 (portforward.k8s.io), or a WebSocket with subprotocol SPDY/3.1+portforward.k8s.io or v4.channel.k8s.io",
        );
    };
    if protocol != SPDY_TUNNEL && ports.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "query parameter \"port\" is required",
        );
    }
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "port-forward upgrade failed");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        if protocol == SPDY_TUNNEL {
            serve_spdy(stream::spdy::serve(super::tunnel(ws)), target).await;
        } else if let Err(e) = pump_port_forward(ws, &target, &ports).await {
            debug!(error = %e, "port-forward stream ended");
        }
    });
    switching(&accept, protocol)
}

/// The pod a port-forward session reaches.
#[derive(Clone)]
struct Target {
    infra: u32,
    pod: String,
    uid: String,
}

impl Target {
    /// The kubelet's (and containerd's) wording for a failed forward, with the socket error
    /// as Go prints it ("connect: connection refused").
    fn error(&self, port: u16, e: &std::io::Error) -> String {
        let text = e.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        format!(
            "error forwarding port {port} to pod {}, uid {}: failed to connect to localhost:{port} inside the pod's network namespace: dial tcp4 127.0.0.1:{port}: connect: {}",
            self.pod,
            self.uid,
            text.to_lowercase()
        )
    }
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    data: Option<stream::spdy::Stream>,
    error: Option<stream::spdy::Stream>,
    opened: Option<tokio::time::Instant>,
}

/// Port-forward over SPDY: the client opens an `error` and a `data` stream per connection,
/// tied by `requestID` and naming the `port`; once both are there the connection is made
/// inside the pod and bytes flow until either side finishes.
async fn serve_spdy(mut conn: stream::spdy::Connection, target: Target) {
    let mut pairs: std::collections::HashMap<String, Pair> = std::collections::HashMap::new();
    let mut sweep = tokio::time::interval(STREAM_PAIR_TIMEOUT / 2);
    loop {
        let s = tokio::select! {
            s = conn.accept() => match s {
                Some(s) => s,
                None => return,
            },
            _ = sweep.tick() => {
                // A request whose second stream never came: tell the client on what arrived.
                let now = tokio::time::Instant::now();
                let stale: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| p.opened.is_some_and(|t| now - t > STREAM_PAIR_TIMEOUT))
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in stale {
                    if let Some(p) = pairs.remove(&id) {
                        for s in [p.error, p.data].into_iter().flatten() {
                            let w = s.writer();
                            let _ = w.write(format!("timed out waiting for streams of request {id}").as_bytes()).await;
                            let _ = w.close().await;
                        }
                    }
                }
                continue;
            }
        };
        let port = s
            .header("port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0);
        let kind = s.header("streamtype").unwrap_or("").to_string();
        if port.is_none() || !matches!(kind.as_str(), "data" | "error") {
            debug!(
                stream = s.id(),
                "port-forward stream without a valid port or stream type"
            );
            s.writer().reset().await;
            continue;
        }
        // Old clients send no requestID; the kubelet pairs their consecutive streams.
        let request = match s.header("requestid") {
            Some(id) => id.to_string(),
            None if kind == "error" => s.id().to_string(),
            None => s.id().saturating_sub(2).to_string(),
        };
        let pair = pairs.entry(request.clone()).or_default();
        pair.opened.get_or_insert_with(tokio::time::Instant::now);
        let slot = if kind == "data" {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let w = s.writer();
            let _ = w.write(format!("error processing stream for request {request}: {kind} stream already assigned").as_bytes()).await;
            let _ = w.close().await;
            continue;
        }
        *slot = Some(s);
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                data: Some(data),
                error: Some(error),
                ..
            }) = pairs.remove(&request)
            {
                tokio::spawn(forward_spdy(target.clone(), data, error));
            }
        }
    }
}

/// One forwarded connection: the pod's port and the data stream, copied both ways; a
/// failure goes to the error stream, as text, before both streams close.
async fn forward_spdy(target: Target, mut data: stream::spdy::Stream, error: stream::spdy::Stream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let out = data.writer();
    let errors = error.writer();
    match connect_in_pod(target.infra, port).await {
        Ok(tcp) => {
            let _ = tcp.set_nodelay(true);
            let (mut from_pod, mut to_pod) = tcp.into_split();
            let upstream = async {
                while let Some(chunk) = data.recv().await {
                    if to_pod.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // The client is done sending: pass the half-close on.
                let _ = to_pod.shutdown().await;
            };
            let downstream = async {
                let mut buf = bytes::BytesMut::new();
                loop {
                    buf.reserve(64 * 1024);
                    match from_pod.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if out.write_bytes(buf.split().freeze()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = out.close().await;
            };
            tokio::select! {
                _ = async { tokio::join!(upstream, downstream) } => {}
                _ = out.gone() => {}
            }
        }
        Err(e) => {
            let msg = target.error(port, &e);
            debug!(%msg, "port-forward");
            let _ = errors.write(msg.as_bytes()).await;
        }
    }
    let _ = errors.close().await;
    let _ = out.close().await;
}

async fn pump_port_forward<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    target: &Target,
    ports: &[u16],
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let mut writers: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data = (2 * i) as u8;
        let error = data + 1;
        for ch in [data, error] {
            let mut hello = vec![ch];
            hello.extend_from_slice(&port.to_le_bytes());
            sink.send(Message::Binary(hello.into())).await?;
        }
        match connect_in_pod(target.infra, *port).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (mut read, write) = stream.into_split();
                writers.push(Some(write));
                let tx = out_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send(channel_message(data, &buf[..n])).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
            Err(e) => {
                writers.push(None);
                let msg = target.error(*port, &e);
                sink.send(channel_message(error, msg.as_bytes())).await?;
            }
        }
    }
    drop(out_tx);
    let mut readers_open = true;
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                // Text frames too, as upstream's wsstream reads them.
                Some(Ok(msg)) => if let Some(data) = channel_payload(msg) {
                    let ch = data[0] as usize;
                    if ch.is_multiple_of(2) {
                        if let Some(Some(w)) = writers.get_mut(ch / 2) {
                            if w.write_all(&data[1..]).await.is_err() {
                                writers[ch / 2] = None;
                            }
                        }
                    }
                },
                Some(Err(e)) => return Err(e),
            },
            out = out_rx.recv(), if readers_open => match out {
                Some(m) => sink.send(m).await?,
                None => readers_open = false,
            },
        }
        if !readers_open {
            // Every pod side closed: end the session as the kubelet does.
            let _ = sink.send(Message::Close(None)).await;
            return Ok(());
        }
    }
}

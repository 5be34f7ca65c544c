//! `portForward`: connections to a pod's ports, made inside the pod's network namespace.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::debug;

use super::{channel_message, find_pod, percent_decode, switching, text, websocket_upgrade, Body};
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

/// Port-forward over a WebSocket (`v4.channel.k8s.io`, the Python client's form): for the
/// i-th requested port, channel 2i carries data and 2i+1 errors; each channel opens with the
/// port number (2 bytes, little endian).
pub(super) async fn port_forward(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
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
        &["v4.channel.k8s.io", "portforward.k8s.io", "channel.k8s.io"],
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "port-forward needs a WebSocket upgrade with subprotocol v4.channel.k8s.io (SPDY, which kubectl port-forward speaks, is not supported yet)",
        );
    };
    if ports.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "query parameter \"port\" is required",
        );
    }
    let Some(infra) = find_pod(ctx, ns, pod)
        .and_then(|r| r.sandbox)
        .map(|s| s.infra_pid)
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("pod {pod} is not running on this node"),
        );
    };
    let pod = pod.to_string();
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
        if let Err(e) = pump_port_forward(ws, infra, &pod, &ports).await {
            debug!(error = %e, "port-forward stream ended");
        }
    });
    switching(&accept, protocol)
}

async fn pump_port_forward<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    infra: u32,
    pod: &str,
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
        match connect_in_pod(infra, *port).await {
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
                let msg = format!(
                    "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod: {e}"
                );
                sink.send(channel_message(error, msg.as_bytes())).await?;
            }
        }
    }
    drop(out_tx);
    let mut readers_open = true;
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                    let ch = data[0] as usize;
                    if ch.is_multiple_of(2) {
                        if let Some(Some(w)) = writers.get_mut(ch / 2) {
                            if w.write_all(&data[1..]).await.is_err() {
                                writers[ch / 2] = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
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

//! `exec`: a command in a running container, its stdio carried over a WebSocket with the
//! channel protocols, a terminal through a pty when asked.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tracing::debug;

use super::pty::{spawn_on_terminal, Pty};
use super::{
    channel_message, find_pod, instance, percent_decode, switching, text, websocket_upgrade, Body,
};
use crate::Ctx;

/// The remote-command subprotocols spoken, newest first.
const EXEC_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];

struct ExecQuery {
    command: Vec<String>,
    stdin: bool,
    tty: bool,
}

fn exec_query(raw: &str) -> ExecQuery {
    let mut q = ExecQuery {
        command: Vec::new(),
        stdin: false,
        tty: false,
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let on = v.is_empty() || v == "true" || v == "1";
        match k {
            "command" => q.command.push(v),
            "input" | "stdin" => q.stdin = on,
            "tty" => q.tty = on,
            _ => {}
        }
    }
    q
}

/// Exec in a running container over a WebSocket (`v5`/`v4.channel.k8s.io`): the upgrade is
/// answered here, then stdin/stdout/stderr flow as channel-prefixed binary messages and the
/// exit status arrives as a `Status` on the error channel.
pub(super) async fn exec(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let q = exec_query(req.uri().query().unwrap_or(""));
    if q.command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let running = find_pod(ctx, ns, pod)
        .and_then(|rec| instance(&rec, container, false).cloned())
        .filter(|c| c.exit.is_none());
    let Some(inst) = running else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container not found (\"{container}\")"),
        );
    };
    let Some((accept, protocol)) = websocket_upgrade(&req, EXEC_PROTOCOLS) else {
        return text(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade with subprotocol v5.channel.k8s.io, v4.channel.k8s.io or channel.k8s.io",
        );
    };
    let mut terminal = None;
    let spawned = if q.tty {
        match Pty::open() {
            Ok((pty, slave)) => {
                terminal = Some(pty);
                spawn_on_terminal(ctx.runtime.exec_tty_command(&inst.id, &q.command), slave)
            }
            Err(e) => Err(e),
        }
    } else {
        ctx.runtime
            .exec_command(&inst.id, &q.command, q.stdin)
            .kill_on_drop(true)
            .spawn()
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("exec: {e}")),
    };
    let command = q.command.clone();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "exec upgrade failed");
                let _ = child.kill().await;
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let pumped = match terminal {
            Some(pty) => pump_tty(ws, &mut child, pty, &command).await,
            None => pump_exec(ws, &mut child, &command).await,
        };
        if let Err(e) = pumped {
            debug!(error = %e, "exec stream ended");
        }
        let _ = child.kill().await;
    });
    switching(&accept, protocol)
}

fn exit_status(code: Option<i32>, command: &[String]) -> String {
    match code {
        Some(0) => r#"{"metadata":{},"status":"Success"}"#.to_string(),
        code => {
            let code = code.unwrap_or(137);
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                    command.join(" ")
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
            .to_string()
        }
    }
}

async fn pump_exec<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    child: &mut tokio::process::Child,
    command: &[String],
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;

    let (mut sink, mut source) = ws.split();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    loop {
        if stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    0 => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&data[1..]).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    // v5: close a stream; [255, 0] closes stdin.
                    255 if data.get(1) == Some(&0) => stdin = None,
                    _ => {} // 4: terminal resize, meaningless without a tty
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            },
            n = read_some(&mut stdout, &mut out_buf) => match n {
                Some(n) => {
                    sink.send(channel_message(1, &out_buf[..n])).await?;
                }
                None => stdout = None,
            },
            n = read_some(&mut stderr, &mut err_buf) => match n {
                Some(n) => {
                    sink.send(channel_message(2, &err_buf[..n])).await?;
                }
                None => stderr = None,
            },
        }
    }
    drop(stdin);
    finish_exec(&mut sink, child, command).await
}

/// The end of an exec session: the exit status as a `Status` on the error channel, then a
/// normal close (1000), which the client reads as the end of every stream.
async fn finish_exec<S>(
    sink: &mut S,
    child: &mut tokio::process::Child,
    command: &[String],
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: futures_util::Sink<
            tokio_tungstenite::tungstenite::Message,
            Error = tokio_tungstenite::tungstenite::Error,
        > + Unpin,
{
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let code = child.wait().await.ok().and_then(|s| s.code());
    sink.send(channel_message(3, exit_status(code, command).as_bytes()))
        .await?;
    sink.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        },
    )))
    .await
}

/// Reads from an optional pipe; None at EOF, error, or when there is no pipe (never ready).
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    match pipe.as_mut() {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

#[derive(Deserialize)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

async fn pump_tty<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    child: &mut tokio::process::Child,
    pty: Pty,
    command: &[String],
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (mut sink, mut source) = ws.split();
    let mut buf = vec![0u8; 32 * 1024];
    let mut input_open = true;
    loop {
        tokio::select! {
            msg = source.next(), if input_open => match msg {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    0 => input_open = pty.write_all(&data[1..]).await.is_ok(),
                    4 => {
                        if let Ok(size) = serde_json::from_slice::<TerminalSize>(&data[1..]) {
                            pty.resize(size.width, size.height);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            },
            n = pty.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    sink.send(channel_message(1, &buf[..n])).await?;
                }
                // EIO once the runtime (the last holder of the slave) has exited.
                _ => break,
            },
        }
    }
    finish_exec(&mut sink, child, command).await
}

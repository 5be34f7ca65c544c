//! `exec`: a command in a running container, a terminal through a pty when asked. The
//! session is transport-neutral ([`Input`] in, [`Output`] out); two transports carry it:
//! a WebSocket with the channel protocols (`v5`/`v4`/`channel.k8s.io`, kubectl 1.37 and the
//! Python client) and SPDY/3.1 with one stream per stdio (`v4`…`v1`, the fallback of
//! kubectl and of older clients).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::debug;

use super::pty::{spawn_on_terminal, spawn_with_console, Pty};
use super::{
    channel_message, find_pod, instance, percent_decode, spdy_upgrade_any, switching, text,
    websocket_upgrade, Body,
};
use crate::Ctx;

/// The WebSocket remote-command subprotocols spoken, newest first.
const WEBSOCKET_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];
/// The SPDY remote-command protocols spoken, newest first (v5 exists only over WebSocket).
const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// How long a SPDY client may take to open all the streams it asked for (the kubelet's
/// stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct ExecQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub(super) fn exec_query(raw: &str) -> ExecQuery {
    let mut q = ExecQuery {
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        let on = v.is_empty() || v == "true" || v == "1";
        match k {
            "command" => q.command.push(v),
            "input" | "stdin" => q.stdin = on,
            "output" | "stdout" => q.stdout = on,
            "error" | "stderr" => q.stderr = on,
            "tty" => q.tty = on,
            _ => {}
        }
    }
    q
}

/// Exec in a running container: the upgrade (WebSocket or SPDY) is answered here, the
/// command starts, and a task carries its stdio until it exits or the client leaves.
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
    let transport = if let Some((resp, protocol)) = spdy_upgrade_any(&req, SPDY_PROTOCOLS) {
        Transport::Spdy { resp, protocol }
    } else if let Some((accept, protocol)) = websocket_upgrade(&req, WEBSOCKET_PROTOCOLS) {
        Transport::WebSocket { accept, protocol }
    } else {
        return text(
            StatusCode::BAD_REQUEST,
            "exec needs an upgrade: a WebSocket with subprotocol v5.channel.k8s.io, v4.channel.k8s.io or channel.k8s.io, or SPDY/3.1",
        );
    };
    let process = match Process::spawn(ctx, &inst.id, &q).await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("exec: {e}")),
    };
    let command = q.command.clone();
    match transport {
        Transport::WebSocket { accept, protocol } => {
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                            hyper_util::rt::TokioIo::new(upgraded),
                            tokio_tungstenite::tungstenite::protocol::Role::Server,
                            None,
                        )
                        .await;
                        let (input, output) = websocket_session(ws);
                        process.run(input, output, &command).await;
                    }
                    Err(e) => debug!(error = %e, "exec upgrade failed"),
                }
            });
            switching(&accept, protocol)
        }
        Transport::Spdy { resp, protocol } => {
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        let conn = stream::spdy::serve(hyper_util::rt::TokioIo::new(upgraded));
                        match spdy_session(conn, protocol, &q).await {
                            Some((conn, input, output)) => {
                                process.run(input, output, &command).await;
                                conn.shutdown().await;
                            }
                            None => debug!("exec: the SPDY client did not open its streams"),
                        }
                    }
                    Err(e) => debug!(error = %e, "exec upgrade failed"),
                }
            });
            resp
        }
    }
}

enum Transport {
    WebSocket {
        accept: String,
        protocol: &'static str,
    },
    Spdy {
        resp: Response<Body>,
        protocol: &'static str,
    },
}

/// What the client sends, whatever carries it.
enum Input {
    Stdin(Bytes),
    StdinClosed,
    Resize(TerminalSize),
}

#[derive(Deserialize)]
pub(super) struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    tokio_tungstenite::tungstenite::Message,
>;

/// Where the session's output goes.
enum Output {
    /// The sink, and the task reading the other half: both go when the session ends, which
    /// closes the connection at once rather than waiting for the client's close reply.
    WebSocket(WsSink, tokio::task::AbortHandle),
    Spdy {
        stdout: Option<stream::spdy::StreamWriter>,
        stderr: Option<stream::spdy::StreamWriter>,
        error: stream::spdy::StreamWriter,
        /// v4 reports the exit as a JSON `Status`; v1–v3 only a failure's message, as text.
        status_as_json: bool,
    },
}

impl Output {
    async fn stdout(&mut self, data: &[u8]) -> bool {
        self.write(1, data).await
    }

    async fn stderr(&mut self, data: &[u8]) -> bool {
        self.write(2, data).await
    }

    /// Writes to channel 1 (stdout) or 2 (stderr); false once the client is gone.
    async fn write(&mut self, channel: u8, data: &[u8]) -> bool {
        use futures_util::SinkExt;
        match self {
            Output::WebSocket(sink, _) => sink.send(channel_message(channel, data)).await.is_ok(),
            Output::Spdy { stdout, stderr, .. } => {
                let target = if channel == 1 { stdout } else { stderr };
                match target {
                    Some(w) => w.write(data).await.is_ok(),
                    // The client asked for no such stream: its output is dropped.
                    None => true,
                }
            }
        }
    }

    /// The exit status on the error channel (stream), then the end of every stream.
    async fn finish(self, code: Option<i32>, command: &[String]) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        use tokio_tungstenite::tungstenite::Message;
        match self {
            Output::WebSocket(mut sink, reader) => {
                let _ = sink
                    .send(channel_message(3, exit_status(code, command).as_bytes()))
                    .await;
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                reader.abort();
            }
            Output::Spdy {
                stdout,
                stderr,
                error,
                status_as_json,
            } => {
                if status_as_json {
                    let _ = error.write(exit_status(code, command).as_bytes()).await;
                } else if code != Some(0) {
                    let _ = error.write(failure_message(code, command).as_bytes()).await;
                }
                for w in [Some(error), stdout, stderr].into_iter().flatten() {
                    let _ = w.close().await;
                }
            }
        }
    }
}

fn failure_message(code: Option<i32>, command: &[String]) -> String {
    format!(
        "command terminated with non-zero exit code: error executing command [{}], exit code {}",
        command.join(" "),
        code.unwrap_or(137)
    )
}

fn exit_status(code: Option<i32>, command: &[String]) -> String {
    match code {
        Some(0) => r#"{"metadata":{},"status":"Success"}"#.to_string(),
        code => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": failure_message(code, command),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.unwrap_or(137).to_string()}]},
        })
        .to_string(),
    }
}

/// Splits a channel-protocol WebSocket into the session's input (a task decodes channels
/// 0, 4 and v5's close) and output.
fn websocket_session(
    ws: tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
) -> (mpsc::Receiver<Input>, Output) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (sink, mut source) = ws.split();
    let (tx, rx) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            let input = match msg {
                Message::Binary(data) if !data.is_empty() => match data[0] {
                    0 => Input::Stdin(data.slice(1..)),
                    // v5: close a stream; [255, 0] closes stdin.
                    255 if data.get(1) == Some(&0) => Input::StdinClosed,
                    4 => match serde_json::from_slice::<TerminalSize>(&data[1..]) {
                        Ok(size) => Input::Resize(size),
                        Err(_) => continue,
                    },
                    _ => continue,
                },
                Message::Close(_) => break,
                _ => continue,
            };
            if tx.send(input).await.is_err() {
                break;
            }
        }
        // Dropping tx tells the session the client is gone.
    });
    (rx, Output::WebSocket(sink, reader.abort_handle()))
}

/// Waits for the streams a SPDY client opens for the options it asked for (error always;
/// stdin, stdout, stderr (not with a tty) and, from v3, resize with a tty), then wires them
/// to the session.
async fn spdy_session(
    mut conn: stream::spdy::Connection,
    protocol: &'static str,
    q: &ExecQuery,
) -> Option<(stream::spdy::Connection, mpsc::Receiver<Input>, Output)> {
    let with_resize = q.tty && matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let expected = 1
        + usize::from(q.stdin)
        + usize::from(q.stdout)
        + usize::from(q.stderr && !q.tty)
        + usize::from(with_resize);
    let mut streams: std::collections::HashMap<String, stream::spdy::Stream> = Default::default();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while streams.len() < expected {
        tokio::select! {
            s = conn.accept() => {
                let s = s?;
                let kind = s.header("streamtype").unwrap_or("").to_string();
                if matches!(kind.as_str(), "error" | "stdin" | "stdout" | "stderr" | "resize") {
                    streams.insert(kind, s);
                } else {
                    s.writer().reset().await;
                }
            }
            _ = &mut deadline => return None,
        }
    }
    let error = streams.remove("error")?.writer();
    let (tx, rx) = mpsc::channel(16);
    if let Some(mut stdin) = streams.remove("stdin") {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(data) = stdin.recv().await {
                if tx.send(Input::Stdin(data)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::StdinClosed).await;
        });
    }
    if let Some(mut resize) = streams.remove("resize") {
        let tx = tx.clone();
        tokio::spawn(async move {
            // A stream of JSON objects, one per resize, split anywhere by the transport.
            let mut pending = Vec::new();
            while let Some(data) = resize.recv().await {
                pending.extend_from_slice(&data);
                let mut sizes =
                    serde_json::Deserializer::from_slice(&pending).into_iter::<TerminalSize>();
                let mut used = 0;
                while let Some(Ok(size)) = sizes.next() {
                    used = sizes.byte_offset();
                    if tx.send(Input::Resize(size)).await.is_err() {
                        return;
                    }
                }
                pending.drain(..used);
            }
        });
    }
    // The session ends early when the connection does, like a WebSocket client leaving.
    let closed = conn.closed();
    tokio::spawn(async move {
        tokio::select! {
            _ = closed.cancelled() => {}
            _ = tx.closed() => {}
        }
    });
    let output = Output::Spdy {
        stdout: streams.remove("stdout").map(|s| s.writer()),
        stderr: streams.remove("stderr").map(|s| s.writer()),
        error,
        status_as_json: protocol == "v4.channel.k8s.io",
    };
    Some((conn, rx, output))
}

/// The exec'd runtime process: piped stdio, or a terminal.
struct Process {
    child: tokio::process::Child,
    terminal: Option<Pty>,
}

impl Process {
    async fn spawn(ctx: &Ctx, container_id: &str, q: &ExecQuery) -> std::io::Result<Process> {
        if q.tty && ctx.runtime.exec_takes_console_socket() {
            let (child, pty) = spawn_with_console(|socket| {
                ctx.runtime
                    .exec_tty_command(container_id, &q.command, Some(socket))
            })
            .await?;
            Ok(Process {
                child,
                terminal: Some(pty),
            })
        } else if q.tty {
            let (pty, slave) = Pty::open()?;
            let child = spawn_on_terminal(
                ctx.runtime.exec_tty_command(container_id, &q.command, None),
                slave,
            )?;
            Ok(Process {
                child,
                terminal: Some(pty),
            })
        } else {
            let child = ctx
                .runtime
                .exec_command(container_id, &q.command, q.stdin)
                .kill_on_drop(true)
                .spawn()?;
            Ok(Process {
                child,
                terminal: None,
            })
        }
    }

    /// Carries stdio until the process's output ends, then reports its exit. If the client
    /// goes first, the process is killed.
    async fn run(mut self, input: mpsc::Receiver<Input>, mut output: Output, command: &[String]) {
        let finished = match self.terminal.take() {
            Some(pty) => pump_terminal(pty, input, &mut output).await,
            None => pump_pipes(&mut self.child, input, &mut output).await,
        };
        if finished {
            let code = self.child.wait().await.ok().and_then(|s| s.code());
            output.finish(code, command).await;
        } else {
            debug!("exec client left before the command ended");
        }
        let _ = self.child.kill().await;
    }
}

/// Pipes: stdin in, stdout and stderr out. True when the output ended (the command is
/// done), false when the client went away.
async fn pump_pipes(
    child: &mut tokio::process::Child,
    mut input: mpsc::Receiver<Input>,
    output: &mut Output,
) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            msg = input.recv() => match msg {
                Some(Input::Stdin(data)) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(Input::StdinClosed) => stdin = None,
                Some(Input::Resize(_)) => {} // meaningless without a tty
                // The client left (WebSocket closed, SPDY connection gone).
                None => return false,
            },
            n = read_some(&mut stdout, &mut out_buf) => match n {
                Some(n) => if !output.stdout(&out_buf[..n]).await { return false },
                None => stdout = None,
            },
            n = read_some(&mut stderr, &mut err_buf) => match n {
                Some(n) => if !output.stderr(&err_buf[..n]).await { return false },
                None => stderr = None,
            },
        }
    }
    true
}

/// A terminal: input and resizes to the pty, its output to stdout.
async fn pump_terminal(pty: Pty, mut input: mpsc::Receiver<Input>, output: &mut Output) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    let mut client_open = true;
    loop {
        tokio::select! {
            msg = input.recv(), if client_open => match msg {
                Some(Input::Stdin(data)) => client_open = pty.write_all(&data).await.is_ok(),
                Some(Input::Resize(size)) => pty.resize(size.width, size.height),
                Some(Input::StdinClosed) => {}
                None => return false,
            },
            n = pty.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    if !output.stdout(&buf[..n]).await {
                        return false;
                    }
                }
                // EIO once the runtime (the last holder of the slave) has exited.
                _ => return true,
            },
        }
    }
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

//! The remote-command session exec and attach share: answering the upgrade in either
//! transport (a WebSocket with the channel protocols `v5`/`v4`/`channel.k8s.io`, kubectl
//! 1.37's and the Python client's; or SPDY/3.1 with one stream per stdio, `v4`…`v1`, the
//! fallback of kubectl and older clients) and turning it into transport-neutral [`Input`]
//! events and an [`Output`] that ends with the exit status as each protocol reports it.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::debug;

use super::{
    channel_message, channel_payload, percent_decode, spdy_upgrade_any, switching, text,
    websocket_upgrade, Body,
};

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

/// The streams a client asked for (query `stdin`, `stdout`, `stderr`, `tty`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A remote-command query: the streams asked for and, for exec, the command. Both
/// spellings are read: the API's (`stdin=true`, or `True` as the Python client sends it,
/// passed on by the API server) and the kubelet URL's (`input=1`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Query {
    pub streams: Streams,
    pub command: Vec<String>,
}

impl Query {
    pub(super) fn parse(raw: &str) -> Query {
        let mut q = Query::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            let on = v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1";
            match k {
                "command" => q.command.push(v),
                "input" | "stdin" => q.streams.stdin = on,
                "output" | "stdout" => q.streams.stdout = on,
                "error" | "stderr" => q.streams.stderr = on,
                "tty" => q.streams.tty = on,
                _ => {}
            }
        }
        q
    }
}

/// Whether `req` asks for an upgrade [`upgrade`] can answer.
pub(super) fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket") || v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Answers a remote-command upgrade (`verb` names it in the refusal) and, once the
/// connection is upgraded, runs `session` with its input and output. A SPDY connection is
/// shut down after the session, once the last output has gone out.
pub(super) fn upgrade<F, Fut>(
    req: Request<Incoming>,
    streams: Streams,
    verb: &str,
    session: F,
) -> Response<Body>
where
    F: FnOnce(mpsc::Receiver<Input>, Output) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    if let Some((resp, protocol)) = spdy_upgrade_any(&req, SPDY_PROTOCOLS) {
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let conn = stream::spdy::serve(hyper_util::rt::TokioIo::new(upgraded));
                    match spdy_session(conn, protocol, &streams).await {
                        Some((conn, input, output)) => {
                            session(input, output).await;
                            conn.shutdown().await;
                        }
                        None => debug!("the SPDY client did not open the streams it asked for"),
                    }
                }
                Err(e) => debug!(error = %e, "remote-command upgrade failed"),
            }
        });
        return resp;
    }
    if let Some((accept, protocol)) = websocket_upgrade(&req, WEBSOCKET_PROTOCOLS) {
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
                    session(input, output).await;
                }
                Err(e) => debug!(error = %e, "remote-command upgrade failed"),
            }
        });
        return switching(&accept, protocol);
    }
    not_an_upgrade(verb)
}

/// The answer to a remote-command request that is not an upgrade.
pub(super) fn not_an_upgrade(verb: &str) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        format!("{verb} needs an upgrade: a WebSocket with subprotocol v5.channel.k8s.io, v4.channel.k8s.io or channel.k8s.io, or SPDY/3.1"),
    )
}

/// What the client sends, whatever carries it.
pub(super) enum Input {
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
pub(super) enum Output {
    /// The sink, and the task reading the other half until the client's close reply.
    WebSocket(WsSink, tokio::task::JoinHandle<()>),
    Spdy {
        stdout: Option<stream::spdy::StreamWriter>,
        stderr: Option<stream::spdy::StreamWriter>,
        error: stream::spdy::StreamWriter,
        /// v4 reports the exit as a JSON `Status`; v1–v3 only a failure's message, as text.
        status_as_json: bool,
    },
}

impl Output {
    pub(super) async fn stdout(&mut self, data: &[u8]) -> bool {
        self.write(1, data).await
    }

    pub(super) async fn stderr(&mut self, data: &[u8]) -> bool {
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
    pub(super) async fn finish(self, code: Option<i32>, command: &[String]) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        use tokio_tungstenite::tungstenite::Message;
        match self {
            Output::WebSocket(mut sink, mut reader) => {
                let _ = sink
                    .send(channel_message(3, exit_status(code, command).as_bytes()))
                    .await;
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                // The client's close reply ends the reader. Dropping the connection before
                // reading it would close a socket with unread bytes (a resize, stdin), which
                // the kernel answers with a reset that can discard the status frame on its way
                // to the client: kubectl then exits 1 instead of with the command's code.
                let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, &mut reader).await;
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

/// How long a finished session waits for the client to answer its WebSocket close.
const CLOSE_REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

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
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some(data) = channel_payload(msg) else {
                continue;
            };
            let input = match data[0] {
                0 => Input::Stdin(data.slice(1..)),
                // v5: close a stream; [255, 0] closes stdin.
                255 if data.get(1) == Some(&0) => Input::StdinClosed,
                4 => match serde_json::from_slice::<TerminalSize>(&data[1..]) {
                    Ok(size) => Input::Resize(size),
                    Err(_) => continue,
                },
                _ => continue,
            };
            if tx.send(input).await.is_err() {
                break;
            }
        }
        // Dropping tx tells the session the client is gone.
    });
    (rx, Output::WebSocket(sink, reader))
}

/// Waits for the streams a SPDY client opens for the options it asked for (error always;
/// stdin, stdout, stderr (not with a tty) and, from v3, resize with a tty), then wires them
/// to the session.
async fn spdy_session(
    mut conn: stream::spdy::Connection,
    protocol: &'static str,
    q: &Streams,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_query_spellings() {
        let q = Query::parse("stdin=true&stdout=True&tty=true&container=app&command=ls&command=-l");
        assert_eq!(
            q.streams,
            Streams {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        assert_eq!(q.command, ["ls", "-l"]);
        let kubelet = Query::parse("input=1&output=1&error=1");
        assert!(kubelet.streams.stdin && kubelet.streams.stdout && kubelet.streams.stderr);
        assert_eq!(Query::parse("stdout=False"), Query::default());
    }
}

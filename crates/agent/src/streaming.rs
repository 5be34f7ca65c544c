//! The agent's streaming server (the kubelet's port 10250): HTTPS with a serving certificate
//! the API server signed with the cluster CA, accepting only clients presenting a certificate
//! from that CA (the API server's kubelet-client certificate). It serves container logs from
//! the CRI log files now; exec, attach and port-forward come next.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::record::{ContainerRecord, PodRecord};
use crate::{AgentError, Ctx};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(25);
/// How often a follower checks whether the container has exited.
const FOLLOW_EXIT_CHECK: Duration = Duration::from_millis(250);

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
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a streaming connection");
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

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.into())).boxed_unsync());
    *resp.status_mut() = code;
    resp
}

async fn route(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", ns, pod, container] => {
            let query = LogQuery::parse(req.uri().query().unwrap_or(""));
            container_logs(&ctx, ns, pod, container, query).await
        }
        ["exec", ns, pod, container] => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            exec(&ctx, req, &ns, &pod, &container).await
        }
        ["portForward", ns, pod] => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            port_forward(&ctx, req, &ns, &pod).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Debug, Default)]
struct LogQuery {
    follow: bool,
    previous: bool,
    tail_lines: Option<usize>,
    since: Option<jiff::Timestamp>,
    timestamps: bool,
    limit_bytes: Option<usize>,
}

impl LogQuery {
    fn parse(raw: &str) -> LogQuery {
        let mut q = LogQuery::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            let on = v.is_empty() || v == "true" || v == "1";
            match k {
                "follow" => q.follow = on,
                "previous" => q.previous = on,
                "timestamps" => q.timestamps = on,
                "tailLines" => q.tail_lines = v.parse().ok(),
                "limitBytes" => q.limit_bytes = v.parse().ok(),
                "sinceSeconds" => {
                    if let Ok(secs) = v.parse::<i64>() {
                        q.since = jiff::Timestamp::now()
                            .checked_sub(jiff::SignedDuration::from_secs(secs))
                            .ok();
                    }
                }
                "sinceTime" => q.since = v.parse().ok(),
                _ => {}
            }
        }
        q
    }
}

fn percent_decode(s: &str) -> String {
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
fn find_pod(ctx: &Ctx, ns: &str, name: &str) -> Option<PodRecord> {
    let entries = std::fs::read_dir(ctx.cfg.pods_dir()).ok()?;
    entries
        .flatten()
        .filter_map(|e| PodRecord::load(&e.path()).ok().flatten())
        .filter(|r| r.namespace == ns && r.name == name)
        .max_by_key(|r| r.start_time)
}

fn instance<'a>(rec: &'a PodRecord, name: &str, previous: bool) -> Option<&'a ContainerRecord> {
    let pick = |init: bool| {
        if previous {
            rec.previous(name, init)
        } else {
            rec.latest(name, init)
        }
    };
    pick(false).or_else(|| pick(true))
}

/// The log files of one instance, oldest first (the monitor rotates FILE -> FILE.1 -> ...).
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..10)
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// One CRI log line rendered for the client, or None when filtered out.
fn render(line: &str, q: &LogQuery) -> Option<String> {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    if let Some(since) = q.since {
        if ts.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
            return None;
        }
    }
    let mut out = String::new();
    if q.timestamps {
        out.push_str(ts);
        out.push(' ');
    }
    out.push_str(content);
    if !tag.starts_with('P') {
        out.push('\n');
    }
    Some(out)
}

async fn container_logs(
    ctx: &Arc<Ctx>,
    ns: &str,
    pod: &str,
    container: &str,
    q: LogQuery,
) -> Response<Body> {
    let Some(rec) = find_pod(ctx, ns, pod) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let Some(inst) = instance(&rec, container, q.previous).cloned() else {
        let msg = if q.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let ctx = ctx.clone();
    let pod_dir = ctx.cfg.pods_dir().join(&rec.uid);
    tokio::spawn(async move {
        if let Err(e) = stream_logs(&pod_dir, inst, q, tx).await {
            debug!(error = %e, "log stream ended");
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

fn tokio_stream_from(
    rx: mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    })
}

struct Sink {
    tx: mpsc::Sender<Bytes>,
    left: Option<usize>,
}

impl Sink {
    /// Sends; false once the client is gone or the byte limit is reached.
    async fn send(&mut self, s: String) -> bool {
        let mut bytes = Bytes::from(s);
        if let Some(left) = self.left.as_mut() {
            if bytes.len() >= *left {
                bytes.truncate(*left);
                *left = 0;
                let _ = self.tx.send(bytes).await;
                return false;
            }
            *left -= bytes.len();
        }
        self.tx.send(bytes).await.is_ok()
    }
}

async fn stream_logs(
    pod_dir: &Path,
    inst: ContainerRecord,
    q: LogQuery,
    tx: mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut sink = Sink {
        tx,
        left: q.limit_bytes,
    };
    // What is already written, with tailLines applied over all of it.
    let mut rendered: Vec<String> = Vec::new();
    let files = log_files(&inst.log_path);
    let mut offset = 0u64;
    for (i, f) in files.iter().enumerate() {
        let data = match tokio::fs::read(f).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // Only complete lines; a partly written last line is read on the next poll.
        let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        if i == files.len() - 1 {
            offset = complete as u64;
        }
        let text = String::from_utf8_lossy(&data[..complete]);
        rendered.extend(text.lines().filter_map(|l| render(l, &q)));
    }
    let skip = q.tail_lines.map_or(0, |n| rendered.len().saturating_sub(n));
    for line in rendered.into_iter().skip(skip) {
        if !sink.send(line).await {
            return Ok(());
        }
    }
    if !q.follow || q.previous {
        return Ok(());
    }
    // Follow: new lines as they land, until the instance has exited and all is read.
    let mut pending = Vec::new();
    let mut exited = false;
    let mut last_exit_check: Option<std::time::Instant> = None;
    loop {
        if last_exit_check.is_none_or(|t| t.elapsed() >= FOLLOW_EXIT_CHECK) {
            last_exit_check = Some(std::time::Instant::now());
            exited = PodRecord::load(pod_dir)
                .ok()
                .flatten()
                .and_then(|r| r.containers.into_iter().find(|c| c.id == inst.id))
                .is_none_or(|c| c.exit.is_some());
        }
        let mut file = match tokio::fs::File::open(&inst.log_path).await {
            Ok(f) => f,
            Err(_) if exited => return Ok(()),
            Err(_) => {
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
        };
        let len = file.metadata().await?.len();
        if len < offset {
            offset = 0; // rotated: the new file starts from the beginning
        }
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).await?;
        offset += buf.len() as u64;
        pending.extend_from_slice(&buf);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let chunk: Vec<u8> = pending.drain(..=end).collect();
            for line in String::from_utf8_lossy(&chunk).lines() {
                if let Some(out) = render(line, &q) {
                    if !sink.send(out).await {
                        return Ok(());
                    }
                }
            }
        }
        if exited && buf.is_empty() {
            return Ok(());
        }
        if sink.tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

// ----- exec -----

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
async fn exec(
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

/// A binary message on one channel of the channel protocols: the channel byte, then data.
fn channel_message(channel: u8, data: &[u8]) -> tokio_tungstenite::tungstenite::Message {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    tokio_tungstenite::tungstenite::Message::Binary(m.into())
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

// ----- terminals -----

/// The master side of a pseudo-terminal the exec'd runtime uses as its terminal.
struct Pty {
    master: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Pty {
    /// A new pty pair: the master (non-blocking, for us) and the slave (for the child).
    fn open() -> std::io::Result<(Pty, std::os::fd::OwnedFd)> {
        use std::os::fd::FromRawFd;
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors we then own; the other arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors from openpty, owned from here on.
        let (master, slave) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(master),
                std::os::fd::OwnedFd::from_raw_fd(slave),
            )
        };
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: the AsyncFd owns the master until dropped; nothing else closes it.
        let master = unsafe { tokio::io::unix::AsyncFd::register(master) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok((Pty { master }, slave))
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.master.readable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own from a descriptor we own.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: writing from a buffer we own to a descriptor we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            if let Ok(r) = res {
                data = &data[r?..];
            }
        }
        Ok(())
    }

    /// Applies a resize; the kernel tells the runtime (SIGWINCH), which resizes the
    /// container's terminal.
    fn resize(&self, width: u16, height: u16) {
        use std::os::fd::AsRawFd;
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a properly initialised winsize on our own descriptor.
        unsafe { libc::ioctl(self.master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}

/// Spawns `cmd` with the pty slave as stdio and controlling terminal, in its own session.
fn spawn_on_terminal(
    mut cmd: tokio::process::Command,
    slave: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::process::Child> {
    use std::process::Stdio;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
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

// ----- port-forward (WebSocket form) -----

/// What a WebSocket upgrade request offers: the accept key and the chosen subprotocol.
fn websocket_upgrade(
    req: &Request<Incoming>,
    protocols: &[&'static str],
) -> Option<(String, &'static str)> {
    let headers = req.headers();
    let is_ws = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let accept = headers
        .get("sec-websocket-key")
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))?;
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let protocol = protocols
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()?;
    is_ws.then_some((accept, protocol))
}

fn switching(accept: &str, protocol: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(accept) {
        h.insert("sec-websocket-accept", v);
    }
    h.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static(protocol),
    );
    resp
}

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
async fn port_forward(
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

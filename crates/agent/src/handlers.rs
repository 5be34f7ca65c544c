//! The actions probes and lifecycle hooks take, as upstream's `pkg/probe` and the kubelet's
//! lifecycle handler runner do them: a command run in the container through the runtime's
//! exec, an HTTP GET (HTTP or HTTPS without certificate verification), a TCP connect, and the
//! standard gRPC health check. Owns only the mechanics and their wording; what a result means
//! (thresholds, restarts, events) belongs to `prober` and `lifecycle`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::Ctx;

/// The User-Agent of probe requests, as the kubelet's `kube-probe/<major>.<minor>`.
pub const USER_AGENT: &str = "kube-probe/1.37";
/// The User-Agent of lifecycle hook requests (upstream's `kube-lifecycle/<major>.<minor>`).
pub const HOOK_USER_AGENT: &str = "kube-lifecycle/1.37";

/// At most this much of an exec's output is kept (upstream's `maxReadLength`).
const MAX_OUTPUT: usize = 10 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action could not be run at all (the runtime refused the exec, a bad port): an
    /// "errored" probe in upstream's terms, which does not count toward any threshold.
    #[error("{0}")]
    Errored(String),
    /// The action did not finish within its timeout.
    #[error("{0}")]
    TimedOut(String),
}

/// What a command run in a container gave back.
#[derive(Debug)]
pub struct ExecOutput {
    pub code: i32,
    /// stdout then stderr, at most 10 KiB.
    pub output: String,
}

/// Runs `command` in the container through the runtime's exec, with stdio piped and no
/// stdin. Without a timeout it runs until it ends or the future is dropped. A command given
/// up on (timeout, or the future dropped) is killed inside the container too, as
/// containerd's ExecSync does, so hanging probes do not pile up processes.
pub async fn exec(
    ctx: &Ctx,
    container_id: &str,
    command: &[String],
    timeout: Option<Duration>,
) -> Result<ExecOutput, ActionError> {
    if command.is_empty() {
        return Err(ActionError::Errored("no command specified".into()));
    }
    let errored =
        |e: std::io::Error| ActionError::Errored(format!("failed to exec in container: {e}"));
    let dir = tempfile::Builder::new()
        .prefix("peapod-exec")
        .tempdir()
        .map_err(errored)?;
    let mut guard = ExecGuard {
        pid_file: dir.path().join("pid"),
        armed: true,
    };
    let mut child = ctx
        .runtime
        .exec_command_with_pid_file(container_id, command, &guard.pid_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(errored)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        let (out, err, status) =
            tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
        status.map(|s| (out, err, s))
    };
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, run).await.ok(),
        None => Some(run.await),
    };
    let Some(result) = result else {
        // Kill the process while the runtime still waits for it (so its PID cannot be
        // reused meanwhile), then let the runtime reap it and exit.
        guard.kill();
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
        }
        return Err(ActionError::TimedOut(format!(
            "command {:?} timed out",
            command.join(" ")
        )));
    };
    guard.armed = false;
    let (stdout, stderr, status) = result.map_err(errored)?;
    let stderr = String::from_utf8_lossy(&stderr);
    let (runtime_errors, user_stderr) = split_runtime_messages(&stderr);
    let code = status.code().unwrap_or(-1);
    // The runtime speaks JSON log lines on stderr (`--log-format json`); when it failed to
    // start the process (no such executable, container gone) that is not the command's
    // own failure.
    if code != 0 && stdout.is_empty() && !runtime_errors.is_empty() {
        return Err(ActionError::Errored(format!(
            "failed to exec in container: {}",
            runtime_errors.join("; ")
        )));
    }
    let mut text = String::from_utf8_lossy(&stdout).into_owned();
    text.push_str(&user_stderr);
    truncate_at_char(&mut text, MAX_OUTPUT);
    Ok(ExecOutput { code, output: text })
}

/// Kills an exec'd process by the PID its runtime wrote, unless disarmed (it ended).
struct ExecGuard {
    pid_file: std::path::PathBuf,
    armed: bool,
}

impl ExecGuard {
    fn kill(&mut self) {
        if !std::mem::replace(&mut self.armed, false) {
            return;
        }
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 1);
        if let Some(pid) = pid {
            // SAFETY: a plain signal to a process the runtime started for us and still
            // waits for (its PID is not free to be reused until the runtime reaps it).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a stream to its end, keeping the first [`MAX_OUTPUT`] bytes (the rest is drained
/// so the command never blocks on a full pipe).
async fn read_capped<R: AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Splits the runtime's own JSON log lines (`{"level":"error","msg":...}`) from what the
/// command wrote to stderr.
fn split_runtime_messages(stderr: &str) -> (Vec<String>, String) {
    let mut runtime = Vec::new();
    let mut user = String::new();
    for line in stderr.split_inclusive('\n') {
        let parsed = serde_json::from_str::<serde_json::Value>(line.trim()).ok();
        let msg = parsed.as_ref().and_then(|v| {
            v.get("level")?;
            v.get("msg")?.as_str().map(str::to_string)
        });
        match msg {
            Some(m) => runtime.push(m),
            None => user.push_str(line),
        }
    }
    (runtime, user)
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `port` of an action: a number, or the name of one of the container's ports (a numeric
/// string counts as a number), as upstream's `extractPort`.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, ActionError> {
    let n: i64 = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match named.or_else(|| name.parse().ok()) {
                Some(n) => n,
                None => return Err(ActionError::Errored(format!("port {name} not found"))),
            }
        }
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ActionError::Errored(format!("invalid port number: {n}")))
}

/// A resolved HTTP GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    /// From an `httpGet` action: host defaults to the pod's IP, port may be named.
    pub fn from_action(
        a: &HTTPGetAction,
        c: &Container,
        pod_ip: Option<&str>,
    ) -> Result<HttpTarget, ActionError> {
        let port = resolve_port(&a.port, c)?;
        let host = match a.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h.to_string(),
            None => pod_ip
                .ok_or_else(|| ActionError::Errored("the pod has no IP yet".into()))?
                .to_string(),
        };
        let path = a.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Ok(HttpTarget {
            https: a
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
            host,
            port,
            path,
            headers: a
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        })
    }

    /// Where a redirect from here leads (`Location` absolute or relative), keeping the
    /// headers, as Go's client follows it.
    pub fn redirect(&self, location: &str) -> Option<HttpTarget> {
        let mut next = self.clone();
        if location.starts_with('/') {
            next.path = location.to_string();
            return Some(next);
        }
        let uri: http::Uri = location.parse().ok()?;
        match uri.scheme_str() {
            Some("http") => next.https = false,
            Some("https") => next.https = true,
            Some(_) => return None,
            None => {
                // A path relative to the current one.
                let base = self.path.split('?').next().unwrap_or("/");
                let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
                next.path = format!("{}{location}", if dir.is_empty() { "/" } else { dir });
                return Some(next);
            }
        }
        let host = uri.host()?;
        next.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        next.port = uri.port_u16().unwrap_or(if next.https { 443 } else { 80 });
        next.path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Some(next)
    }

    fn authority(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// The URL as Go prints it in errors (`Get "http://10.0.0.5:80/": ...`).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// `host:port`, with brackets around an IPv6 address (Go's `net.JoinHostPort`).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A dial error in Go's words: `dial tcp 10.0.0.5:81: connect: connection refused`.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => return format!("dial tcp {addr}: i/o timeout"),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            s.to_lowercase()
        }
    };
    format!("dial tcp {addr}: connect: {what}")
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = host_port(host, port);
    TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| dial_error(&addr, &e))
}

/// Connects to `host:port` and closes again: Ok on a completed connect, Err(Go's words).
pub async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addr = host_port(host, port);
    match tokio::time::timeout(timeout, connect(host, port)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Accepts any server certificate: probes and hooks use HTTPS without verification, as the
/// kubelet's probe transport does (`InsecureSkipVerify`).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn open(host: &str, port: u16, https: bool) -> Result<Box<dyn Io>, String> {
    let tcp = connect(host, port).await?;
    if !https {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid host {host:?}: {e}"))?;
    let tls = tls_connector()?
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    Ok(Box::new(tls))
}

/// At most this much of a response body is read (upstream's `maxRespBodyLength`).
const MAX_BODY: usize = 10 * 1024;

/// What a GET got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    /// The first 10 KiB of the body, when asked for.
    pub body: String,
}

/// One GET, answering the status (and, with `read_body`, the start of the body), or an
/// error in Go's `http.Client` words. Redirects are not followed here.
pub async fn http_get(
    target: &HttpTarget,
    timeout: Option<Duration>,
    user_agent: &str,
    read_body: bool,
) -> Result<HttpAnswer, String> {
    let url = target.url();
    let run = async {
        let io = open(&target.host, target.port, target.https).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let mut req = http::Request::get(target.path.as_str());
        let has = |name: &str| {
            target
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            req = req.header(http::header::HOST, target.authority());
        }
        if !has("user-agent") {
            req = req.header(http::header::USER_AGENT, user_agent);
        }
        if !has("accept") {
            req = req.header(http::header::ACCEPT, "*/*");
        }
        req = req.header(http::header::CONNECTION, "close");
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let answer = async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut body = Vec::new();
            if read_body {
                let mut incoming = resp.into_body();
                while body.len() < MAX_BODY {
                    match incoming.frame().await {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                body.extend_from_slice(data);
                            }
                        }
                        _ => break,
                    }
                }
                body.truncate(MAX_BODY);
            }
            Ok::<HttpAnswer, String>(HttpAnswer {
                status,
                location,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        let result = answer.await;
        conn.abort();
        result
    };
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, run).await.unwrap_or_else(|_| {
            Err("context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into())
        }),
        None => run.await,
    };
    result.map_err(|e| format!("Get {url:?}: {e}"))
}

/// The gRPC health check's answer: SERVING, or why not (upstream's grpc prober wording).
pub async fn grpc_check(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let addr = host_port(host, port);
    let run = async {
        let tcp = connect(host, port).await.map_err(|e| {
            format!("timeout: failed to connect service {addr:?} within {timeout:?}: {e}")
        })?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .map_err(|e| format!("timeout: failed to connect service {addr:?}: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from(grpc_request(service))))
            .map_err(|e| e.to_string())?;
        let answer = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("error: health rpc probe failed: {e}"))?;
            let header_status = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let collected = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("error: health rpc probe failed: {e}"))?;
            let trailer_status = collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let code = trailer_status
                .or(header_status)
                .unwrap_or_else(|| "0".into());
            match code.as_str() {
                "0" => {}
                "12" => {
                    return Err("this server does not implement the grpc health protocol (grpc.health.v1.Health)".to_string())
                }
                other => {
                    return Err(format!(
                        "error: health rpc probe failed: rpc error: code = {other}"
                    ))
                }
            }
            match grpc_response_status(&collected.to_bytes()) {
                Some(1) => Ok(()),
                Some(n) => Err(format!(
                    "service unhealthy (responded with {:?})",
                    serving_status_name(n)
                )),
                None => Err("error: health rpc probe failed: malformed response".into()),
            }
        };
        let result = answer.await;
        conn.abort();
        result
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            ))
        })
}

/// `HealthCheckRequest{service}` in a gRPC frame (uncompressed flag, length, message).
fn grpc_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// `HealthCheckResponse.status` from a gRPC frame (0 when the field is absent: UNKNOWN).
fn grpc_response_status(body: &[u8]) -> Option<u64> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body.get(5..5 + len)?;
    let mut pos = 0;
    let mut status = 0;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos)?;
        match key & 7 {
            0 => {
                let v = get_varint(msg, &mut pos)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let n = get_varint(msg, &mut pos)? as usize;
                pos = pos.checked_add(n)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(status)
}

fn serving_status_name(n: u64) -> &'static str {
    match n {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn ports_resolve_by_number_and_name() {
        let c = Container {
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(resolve_port(&IntOrString::Int(80), &c).ok(), Some(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c).ok(),
            Some(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("81".into()), &c).ok(),
            Some(81)
        );
        assert!(resolve_port(&IntOrString::String("grpc".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
    }

    #[test]
    fn runtime_messages_are_told_from_the_commands_stderr() {
        let stderr = "cat: can't open 'x'\n{\"level\":\"error\",\"msg\":\"executable file not found\",\"time\":\"t\"}\n";
        let (rt, user) = split_runtime_messages(stderr);
        assert_eq!(rt, vec!["executable file not found".to_string()]);
        assert_eq!(user, "cat: can't open 'x'\n");
        // A command printing JSON of its own is still the command's output.
        let (rt, user) = split_runtime_messages("{\"ok\":true}\n");
        assert!(rt.is_empty());
        assert_eq!(user, "{\"ok\":true}\n");
    }

    #[test]
    fn dial_errors_read_like_go() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            dial_error("10.0.0.5:81", &e),
            "dial tcp 10.0.0.5:81: connect: connection refused"
        );
        assert_eq!(host_port("fd00::1", 80), "[fd00::1]:80");
    }

    #[test]
    fn grpc_frames_round_trip() {
        assert_eq!(grpc_request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(grpc_request("a"), vec![0, 0, 0, 0, 3, 0x0a, 1, b'a']);
        assert_eq!(grpc_response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_response_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(grpc_response_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(grpc_response_status(&[0, 0, 0, 0, 9, 0x08]), None);
    }

    #[tokio::test]
    async fn http_get_sends_the_probe_headers_and_reads_the_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                n += sock.read(&mut buf[n..]).await.expect("read");
            }
            sock.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("write");
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        });
        let target = HttpTarget {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: vec![("X-Probe".into(), "yes".into())],
        };
        let answer = http_get(&target, Some(Duration::from_secs(5)), USER_AGENT, true).await;
        assert_eq!(answer.map(|a| a.status), Ok(503));
        let request = server.await.expect("server");
        assert!(
            request.starts_with("get /healthz http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("user-agent: kube-probe/1.37\r\n"),
            "{request}"
        );
        assert!(request.contains("x-probe: yes\r\n"), "{request}");
        assert!(request.contains("accept: */*\r\n"), "{request}");
        assert!(
            request.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        // Nobody listens there any more.
        let err = http_get(&target, Some(Duration::from_secs(5)), USER_AGENT, false)
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            format!("Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }

    /// A gRPC health server answering `status` to every check.
    async fn grpc_server(status: u8, grpc_status: &'static str) -> u16 {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let _ = req.into_body().collect().await;
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static(grpc_status));
                        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                            Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let body = StreamBody::new(futures::stream::iter(frames));
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .expect("response"),
                        )
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_health_checks_read_the_serving_status() {
        let t = Duration::from_secs(5);
        let serving = grpc_server(1, "0").await;
        assert_eq!(grpc_check("127.0.0.1", serving, "", t).await, Ok(()));
        let not_serving = grpc_server(2, "0").await;
        assert_eq!(
            grpc_check("127.0.0.1", not_serving, "db", t).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".to_string())
        );
        let unimplemented = grpc_server(1, "12").await;
        let err = grpc_check("127.0.0.1", unimplemented, "", t)
            .await
            .expect_err("unimplemented");
        assert!(
            err.contains("does not implement the grpc health protocol"),
            "{err}"
        );
    }

    #[test]
    fn redirects_resolve_against_the_current_target() {
        let t = HttpTarget {
            https: false,
            host: "10.0.0.5".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
            headers: vec![],
        };
        assert_eq!(
            t.redirect("/c").map(|n| n.url()).as_deref(),
            Some("http://10.0.0.5:8080/c")
        );
        assert_eq!(
            t.redirect("c").map(|n| n.url()).as_deref(),
            Some("http://10.0.0.5:8080/a/c")
        );
        let other = t.redirect("https://example.com/z").expect("absolute");
        assert_eq!(other.url(), "https://example.com:443/z");
        assert_eq!(other.host, "example.com");
        assert!(t.redirect("ftp://x/").is_none());
    }

    #[test]
    fn http_targets_default_to_the_pod_ip() {
        let a = HTTPGetAction {
            path: Some("healthz?x=1".into()),
            port: IntOrString::Int(8080),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        };
        let t =
            HttpTarget::from_action(&a, &Container::default(), Some("10.42.0.7")).expect("target");
        assert_eq!(t.url(), "https://10.42.0.7:8080/healthz?x=1");
        assert!(HttpTarget::from_action(&a, &Container::default(), None).is_err());
    }
}

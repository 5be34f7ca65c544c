//! `api-bench`: the load client of peapod's API benchmark (`bench/api_bench.py`).
//!
//! It measures, against one running API server named by a kubeconfig (loopback only):
//!
//! - `create`: `POST /api/v1/namespaces/NS/pods` of a realistic pod (labels, one container
//!   with a port and resource requests), latency from sending the request to the end of the
//!   response body;
//! - `get`: `GET .../pods/NAME` of a random pod among (up to) 500 in the namespace;
//! - `list`: fills the namespace to `--list-size` pods first (with the same N clients) unless
//!   it already holds that many, then times full, unpaginated `GET .../pods`;
//! - `watch`: one watcher holds `GET .../pods?watch=1&resourceVersion=RV` open (its own
//!   connection, on its own thread) while N writers create pods; the latency of a pod is the
//!   time from its create's response to the watcher receiving its `ADDED` event (0 when the
//!   event came first). Ops/s there is the writers' rate.
//!
//! Each client is a task with its own keep-alive HTTP/1.1 connection over TLS (or, with
//! `--http2`, a stream on one shared h2 connection); every client connects and does a
//! `GET /version` before the timed part starts. Every loop is bounded by a shared operation
//! count (`--max-ops`, over all clients) and by time (`--duration-secs`). The client trusts
//! only the kubeconfig's `certificate-authority-data` and sends its bearer token.
//!
//! Output: p50/p99/max latency in ms and ops/s; with `--json` one JSON object on one line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine as _;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_rustls::TlsConnector;

/// Pods named by `get` are picked among at most this many, as the Python bench does.
const GET_NAMES: usize = 500;
/// Pods created first when `get` finds the namespace empty.
const GET_SEED_PODS: u64 = 100;
/// How long the watcher waits for the warm-up event, and after the writers for the stop event.
const WATCH_GRACE: Duration = Duration::from_secs(30);
/// Longest body excerpt quoted in an error.
const ERR_BODY: usize = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    Create,
    Get,
    List,
    Watch,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Watch => "watch",
        }
    }
}

/// Load client for the peapod API benchmark.
#[derive(Parser, Debug)]
#[command(name = "api-bench", version, about)]
struct Args {
    /// Kubeconfig of the server to measure (server URL, CA data, bearer token).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Namespace to work in (must exist).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Concurrent clients (writers, for `watch`).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Time bound of the timed part.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Count bound of the timed part, over all clients.
    #[arg(long, default_value_t = 1_000_000)]
    max_ops: u64,
    /// What to measure.
    #[arg(long, value_enum)]
    op: Op,
    /// `list`: pods the namespace is filled to before listing.
    #[arg(long, default_value_t = 10_000)]
    list_size: u64,
    /// `list`: time bound of the fill.
    #[arg(long, default_value_t = 600.0)]
    fill_timeout_secs: f64,
    /// Multiplex all clients over one HTTP/2 connection instead of one HTTP/1.1 connection each.
    #[arg(long)]
    http2: bool,
    /// Tokio worker threads; 1 runs everything on the main thread (the watcher of `watch`
    /// always has its own thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Prefix of the names of the pods created (default: derived from op, clients and PID).
    #[arg(long)]
    prefix: Option<String>,
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        (1..=4096).contains(&args.clients),
        "--clients must be 1..=4096"
    );
    for (name, v) in [
        ("--duration-secs", args.duration_secs),
        ("--fill-timeout-secs", args.fill_timeout_secs),
    ] {
        ensure!(
            v.is_finite() && v > 0.0 && v <= 86_400.0,
            "{name} must be in (0, 86400]"
        );
    }
    ensure!(
        (1..=256).contains(&args.threads),
        "--threads must be 1..=256"
    );
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("starting the tokio runtime")?;
    let report = rt.block_on(run(&args))?;
    if args.json {
        println!("{}", report.to_json(&args));
    } else {
        println!("{}", report.to_text(&args));
    }
    Ok(())
}

// --- kubeconfig and connections ------------------------------------------------------------

/// Where and how to connect: what a plain HTTPS client needs from the kubeconfig.
struct Target {
    ip: IpAddr,
    port: u16,
    /// `host:port` as in the kubeconfig, for `Host` / `:authority`.
    authority: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    auth: HeaderValue,
    http2: bool,
}

fn str_at<'a>(v: &'a serde_yaml::Value, key: &str, what: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(|x| x.as_str())
        .with_context(|| format!("kubeconfig: {what} has no string `{key}`"))
}

/// The entry of `list` (clusters, users, contexts) called `name`, its inner object.
fn named<'a>(
    cfg: &'a serde_yaml::Value,
    list: &str,
    inner: &str,
    name: &str,
) -> Result<&'a serde_yaml::Value> {
    cfg.get(list)
        .and_then(|l| l.as_sequence())
        .with_context(|| format!("kubeconfig: no `{list}` list"))?
        .iter()
        .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name))
        .and_then(|e| e.get(inner))
        .with_context(|| format!("kubeconfig: no {inner} named {name:?} in `{list}`"))
}

impl Target {
    fn from_kubeconfig(path: &Path, http2: bool) -> Result<Target> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let cfg: serde_yaml::Value = serde_yaml::from_str(&text)
            .with_context(|| format!("parsing kubeconfig {}", path.display()))?;
        let ctx = match cfg.get("current-context").and_then(|c| c.as_str()) {
            Some(name) if !name.is_empty() => named(&cfg, "contexts", "context", name)?,
            _ => cfg
                .get("contexts")
                .and_then(|l| l.get(0))
                .and_then(|c| c.get("context"))
                .context("kubeconfig: no current-context and no contexts")?,
        };
        let cluster = named(
            &cfg,
            "clusters",
            "cluster",
            str_at(ctx, "cluster", "context")?,
        )?;
        let user = named(&cfg, "users", "user", str_at(ctx, "user", "context")?)?;

        let server = str_at(cluster, "server", "cluster")?;
        let rest = server
            .strip_prefix("https://")
            .with_context(|| format!("kubeconfig: server {server:?} is not https://"))?;
        let authority = rest.split('/').next().unwrap_or(rest).to_string();
        let (host, port) = authority
            .rsplit_once(':')
            .with_context(|| format!("kubeconfig: server {server:?} has no port"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("kubeconfig: bad port in {server:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .with_context(|| format!("kubeconfig: server host {host:?} is not an IP"))?
        };
        ensure!(
            ip.is_loopback(),
            "kubeconfig: server {server:?} is not on loopback; this tool only talks to loopback"
        );
        let server_name = ServerName::try_from(host.to_string())
            .with_context(|| format!("kubeconfig: {host:?} is not a TLS server name"))?;

        let ca_b64 = str_at(cluster, "certificate-authority-data", "cluster")?;
        let ca_pem = base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .context("kubeconfig: certificate-authority-data is not base64")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            let cert = cert.context("kubeconfig: certificate-authority-data is not PEM")?;
            roots.add(cert).context("kubeconfig: bad CA certificate")?;
        }
        ensure!(
            !roots.is_empty(),
            "kubeconfig: certificate-authority-data holds no certificate"
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];

        let token = str_at(user, "token", "user")?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("kubeconfig: token is not a valid header value")?;
        Ok(Target {
            ip,
            port,
            authority,
            server_name,
            tls: Arc::new(tls),
            auth,
            http2,
        })
    }

    /// One TLS connection, HTTP/1.1 or h2 by `--http2`; its driver runs as a task.
    async fn connect(&self) -> Result<Client> {
        let tcp = TcpStream::connect((self.ip, self.port))
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", self.authority))?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let sender = if self.http2 {
            ensure!(
                alpn.as_deref() == Some(b"h2"),
                "server did not negotiate h2 (ALPN {alpn:?})"
            );
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .context("h2 handshake")?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("api-bench: h2 connection: {e}");
                }
            });
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .context("HTTP/1.1 handshake")?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("api-bench: HTTP/1.1 connection: {e}");
                }
            });
            Sender::H1(send)
        };
        Ok(Client {
            sender,
            authority: self.authority.clone(),
            auth: self.auth.clone(),
        })
    }

    /// `n` clients: `n` connections, or `n` handles on one h2 connection. Each does a
    /// `GET /version` so that handshakes are done before anything is timed.
    async fn clients(&self, n: usize) -> Result<Vec<Client>> {
        let mut out = Vec::with_capacity(n);
        if self.http2 {
            let first = self.connect().await?;
            for _ in 0..n {
                out.push(first.clone_h2()?);
            }
        } else {
            for _ in 0..n {
                out.push(self.connect().await?);
            }
        }
        for c in &mut out {
            c.call(Method::GET, "/version", None, &[StatusCode::OK])
                .await?;
        }
        Ok(out)
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One client: a keep-alive connection (or one handle on the shared h2 connection).
struct Client {
    sender: Sender,
    authority: String,
    auth: HeaderValue,
}

impl Client {
    fn clone_h2(&self) -> Result<Client> {
        match &self.sender {
            Sender::H2(s) => Ok(Client {
                sender: Sender::H2(s.clone()),
                authority: self.authority.clone(),
                auth: self.auth.clone(),
            }),
            Sender::H1(_) => bail!("an HTTP/1.1 connection cannot be shared"),
        }
    }

    /// Sends a request and returns the response with its body still to read.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let h2 = matches!(self.sender, Sender::H2(_));
        // h2 takes :scheme and :authority from an absolute URI; HTTP/1.1 the origin form.
        let uri = if h2 {
            format!("https://{}{}", self.authority, path)
        } else {
            path.to_string()
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json");
        if !h2 {
            req = req.header(HOST, self.authority.as_str());
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .with_context(|| format!("building {method} {path}"))?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.context("connection closed")?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.context("h2 connection closed")?;
                s.send_request(req).await
            }
        };
        resp.with_context(|| format!("{method} {path}"))
    }

    /// Sends a request, reads the whole body and checks the status against `ok`.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        ok: &[StatusCode],
    ) -> Result<Bytes> {
        let resp = self.send(method.clone(), path, body).await?;
        let status = resp.status();
        let data = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{method} {path}: reading the body"))?
            .to_bytes();
        if !ok.contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&data[..data.len().min(ERR_BODY)])
            );
        }
        Ok(data)
    }

    async fn call_json(&mut self, path: &str) -> Result<Value> {
        let data = self
            .call(Method::GET, path, None, &[StatusCode::OK])
            .await?;
        serde_json::from_slice(&data).with_context(|| format!("GET {path}: response is not JSON"))
    }

    async fn create_pod(&mut self, ns: &str, name: &str) -> Result<()> {
        self.call(
            Method::POST,
            &pods_path(ns),
            Some(pod_body(name)),
            &[StatusCode::OK, StatusCode::CREATED],
        )
        .await
        .map(drop)
    }
}

fn pods_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods")
}

/// The pod the Python bench creates too: labels, one container with a port and requests.
fn pod_body(name: &str) -> Bytes {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "load"}},
        "spec": {"containers": [{
            "name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        }]},
    });
    Bytes::from(pod.to_string())
}

/// `items[].metadata.name` and `metadata.resourceVersion` of a list response.
fn list_names(list: &Value) -> Result<(Vec<String>, String)> {
    let items = list
        .get("items")
        .and_then(|i| i.as_array())
        .context("list response has no items array")?;
    let names = items
        .iter()
        .map(|p| {
            p.pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .context("list item without metadata.name")
        })
        .collect::<Result<Vec<_>>>()?;
    let rv = list
        .pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .context("list response without metadata.resourceVersion")?
        .to_string();
    Ok((names, rv))
}

// --- timed loops ----------------------------------------------------------------------------

/// What each operation of a timed loop is.
enum Work {
    /// Create `{prefix}-{i}`, i from the shared counter; `acks` keeps when each response came.
    Create {
        prefix: String,
        acks: bool,
    },
    Get {
        names: Vec<String>,
    },
    List,
}

struct Bounds {
    duration: Duration,
    max_ops: u64,
}

#[derive(Default)]
struct WorkerOut {
    lat_ns: Vec<u64>,
    start: Option<Instant>,
    end: Option<Instant>,
    acks: Vec<(String, Instant)>,
}

/// The merged result of a timed loop.
struct LoopOut {
    lat_ns: Vec<u64>,
    wall: Duration,
    acks: HashMap<String, Instant>,
}

/// What the clients of one timed loop share.
struct Shared {
    ns: String,
    work: Work,
    bounds: Bounds,
    /// Operations claimed so far (the count bound, and the index in created pods' names).
    counter: AtomicU64,
    /// Set by a client that failed, so that the others stop too.
    abort: AtomicBool,
    barrier: Barrier,
}

async fn worker(mut c: Client, id: usize, sh: Arc<Shared>) -> Result<WorkerOut> {
    let (ns, work, bounds, counter, abort) = (&sh.ns, &sh.work, &sh.bounds, &sh.counter, &sh.abort);
    let path = pods_path(ns);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = WorkerOut::default();
    sh.barrier.wait().await;
    let start = Instant::now();
    let deadline = start + bounds.duration;
    out.start = Some(start);
    let result: Result<()> = async {
        while !abort.load(Ordering::Relaxed) && Instant::now() < deadline {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            if i >= bounds.max_ops {
                break;
            }
            let t = Instant::now();
            match work {
                Work::Create { prefix, acks } => {
                    let name = format!("{prefix}-{i}");
                    c.create_pod(ns, &name).await?;
                    if *acks {
                        out.acks.push((name, Instant::now()));
                    }
                }
                Work::Get { names } => {
                    // xorshift64: good enough to spread gets over the names.
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let name = &names[(rng % names.len() as u64) as usize];
                    c.call(
                        Method::GET,
                        &format!("{path}/{name}"),
                        None,
                        &[StatusCode::OK],
                    )
                    .await?;
                }
                Work::List => {
                    c.call(Method::GET, &path, None, &[StatusCode::OK]).await?;
                }
            }
            out.lat_ns
                .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(())
    }
    .await;
    out.end = Some(Instant::now());
    if result.is_err() {
        abort.store(true, Ordering::Relaxed);
    }
    result.map(|()| out)
}

/// Runs `work` on `clients` (already connected) until the time or count bound.
async fn run_loop(clients: Vec<Client>, ns: &str, work: Work, bounds: Bounds) -> Result<LoopOut> {
    let n = clients.len();
    let sh = Arc::new(Shared {
        ns: ns.to_string(),
        work,
        bounds,
        counter: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        barrier: Barrier::new(n),
    });
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, c)| tokio::spawn(worker(c, id, sh.clone())))
        .collect();
    let mut outs = Vec::with_capacity(n);
    let mut first_err = None;
    for h in handles {
        match h.await.context("client task panicked")? {
            Ok(o) => outs.push(o),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let start = outs.iter().filter_map(|o| o.start).min();
    let end = outs.iter().filter_map(|o| o.end).max();
    let wall = match (start, end) {
        (Some(s), Some(e)) => e.saturating_duration_since(s),
        _ => Duration::ZERO,
    };
    let mut lat_ns = Vec::new();
    let mut acks = HashMap::new();
    for o in outs {
        lat_ns.extend(o.lat_ns);
        acks.extend(o.acks);
    }
    lat_ns.sort_unstable();
    Ok(LoopOut { lat_ns, wall, acks })
}

// --- the operations -------------------------------------------------------------------------

struct Report {
    op: Op,
    ops: usize,
    wall: Duration,
    lat_ns: Vec<u64>,
    /// `list`: items in one list response; `fill`: pods created to get there.
    items: Option<usize>,
    filled: Option<u64>,
    /// `watch`: acknowledged creates whose event never arrived.
    missing: Option<usize>,
}

impl Report {
    fn ops_s(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in ms (NaN when there is no sample).
    fn pct_ms(&self, p: f64) -> f64 {
        let v = &self.lat_ns;
        if v.is_empty() {
            return f64::NAN;
        }
        let k = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[k] as f64 / 1e6
    }

    fn to_json(&self, args: &Args) -> Value {
        let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        let mut o = json!({
            "op": self.op.name(),
            "clients": args.clients,
            "http2": args.http2,
            "ops": self.ops,
            "wall_s": self.wall.as_secs_f64(),
            "ops_s": self.ops_s(),
            "p50_ms": num(self.pct_ms(50.0)),
            "p99_ms": num(self.pct_ms(99.0)),
            "max_ms": num(self.pct_ms(100.0)),
        });
        for (k, v) in [
            ("items", self.items.map(|x| json!(x))),
            ("filled", self.filled.map(|x| json!(x))),
            ("missing", self.missing.map(|x| json!(x))),
        ] {
            if let (Some(v), Some(map)) = (v, o.as_object_mut()) {
                map.insert(k.to_string(), v);
            }
        }
        o
    }

    fn to_text(&self, args: &Args) -> String {
        let mut s = format!(
            "{} x{} ({}): {} ops in {:.2} s = {:.0} ops/s; latency ms p50 {:.2} p99 {:.2} max {:.2}",
            self.op.name(),
            args.clients,
            if args.http2 { "h2, one connection" } else { "HTTP/1.1, one connection each" },
            self.ops,
            self.wall.as_secs_f64(),
            self.ops_s(),
            self.pct_ms(50.0),
            self.pct_ms(99.0),
            self.pct_ms(100.0),
        );
        if let Some(n) = self.items {
            s += &format!("; {n} items per list");
        }
        if let Some(n) = self.filled {
            s += &format!("; {n} pods created first");
        }
        if let Some(n) = self.missing {
            s += &format!("; {n} events missing");
        }
        s
    }
}

async fn run(args: &Args) -> Result<Report> {
    let target = Target::from_kubeconfig(&args.kubeconfig, args.http2)?;
    let ns = args.namespace.as_str();
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        format!(
            "{}{}-{}",
            &args.op.name()[..1],
            args.clients,
            std::process::id()
        )
    });
    let bounds = Bounds {
        duration: Duration::from_secs_f64(args.duration_secs),
        max_ops: args.max_ops,
    };
    let mut report = Report {
        op: args.op,
        ops: 0,
        wall: Duration::ZERO,
        lat_ns: Vec::new(),
        items: None,
        filled: None,
        missing: None,
    };
    match args.op {
        Op::Create => {
            let clients = target.clients(args.clients).await?;
            let out = run_loop(
                clients,
                ns,
                Work::Create {
                    prefix,
                    acks: false,
                },
                bounds,
            )
            .await?;
            report.set(out);
        }
        Op::Get => {
            let mut ctl = target.connect().await?;
            let list_path = format!("{}?limit={GET_NAMES}", pods_path(ns));
            let (mut names, _) = list_names(&ctl.call_json(&list_path).await?)?;
            if names.is_empty() {
                for i in 0..GET_SEED_PODS {
                    ctl.create_pod(ns, &format!("{prefix}-seed-{i}")).await?;
                }
                names = list_names(&ctl.call_json(&list_path).await?)?.0;
                ensure!(!names.is_empty(), "no pods to get in {ns}");
            }
            let clients = target.clients(args.clients).await?;
            let out = run_loop(clients, ns, Work::Get { names }, bounds).await?;
            report.set(out);
        }
        Op::List => {
            let mut ctl = target.connect().await?;
            let have = list_names(&ctl.call_json(&pods_path(ns)).await?)?.0.len() as u64;
            if have < args.list_size {
                let clients = target.clients(args.clients).await?;
                let fill = Bounds {
                    duration: Duration::from_secs_f64(args.fill_timeout_secs),
                    max_ops: args.list_size - have,
                };
                let work = Work::Create {
                    prefix: format!("{prefix}-fill"),
                    acks: false,
                };
                let out = run_loop(clients, ns, work, fill).await?;
                report.filled = Some(out.lat_ns.len() as u64);
            }
            let items = list_names(&ctl.call_json(&pods_path(ns)).await?)?.0.len();
            report.items = Some(items);
            let clients = target.clients(args.clients).await?;
            let out = run_loop(clients, ns, Work::List, bounds).await?;
            report.set(out);
        }
        Op::Watch => watch(&target, args, ns, &prefix, bounds, &mut report).await?,
    }
    Ok(report)
}

impl Report {
    fn set(&mut self, out: LoopOut) {
        self.ops = out.lat_ns.len();
        self.wall = out.wall;
        self.lat_ns = out.lat_ns;
    }
}

/// Watch delivery: see the module doc.
async fn watch(
    target: &Target,
    args: &Args,
    ns: &str,
    prefix: &str,
    bounds: Bounds,
    report: &mut Report,
) -> Result<()> {
    let mut ctl = target.connect().await?;
    let (_, rv) = list_names(&ctl.call_json(&format!("{}?limit=1", pods_path(ns))).await?)?;
    let warmup = format!("{prefix}-warmup");
    let stop = format!("{prefix}-stop");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // The watcher has its own connection on its own thread and runtime, so that its reads are
    // not queued behind the writers' tasks.
    let watch_target = Target::from_kubeconfig(&args.kubeconfig, args.http2)?;
    let watch_path = format!("{}?watch=1&resourceVersion={rv}", pods_path(ns));
    let stop_at = Instant::now() + bounds.duration + WATCH_GRACE * 2;
    let (w_warmup, w_stop) = (warmup.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let res = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("watcher runtime")
                .and_then(|rt| {
                    rt.block_on(watcher(
                        &watch_target,
                        &watch_path,
                        &w_warmup,
                        &w_stop,
                        stop_at,
                        ready_tx,
                    ))
                });
            // The receiver is gone only when the main side already failed.
            let _ = done_tx.send(res);
        })
        .context("starting the watcher thread")?;

    let result: Result<()> = async {
        ctl.create_pod(ns, &warmup).await?;
        let ready = tokio::time::timeout(WATCH_GRACE, ready_rx)
            .await
            .context("the watch did not deliver the warm-up event in time")?;
        if ready.is_err() {
            // The watcher ended early: its result says why.
            return match done_rx.await {
                Ok(Err(e)) => Err(e.context("watcher")),
                _ => Err(anyhow!("the watcher stopped before the warm-up event")),
            };
        }
        let clients = target.clients(args.clients).await?;
        let work = Work::Create {
            prefix: prefix.to_string(),
            acks: true,
        };
        let out = run_loop(clients, ns, work, bounds).await?;
        ctl.create_pod(ns, &stop).await?;
        let arrivals = tokio::time::timeout(WATCH_GRACE, done_rx)
            .await
            .context("the watcher did not see the stop event in time")?
            .map_err(|_| anyhow!("the watcher thread ended without a result"))??;
        let mut lat: Vec<u64> = out
            .acks
            .iter()
            .filter_map(|(name, ack)| {
                arrivals
                    .get(name)
                    .map(|t| t.saturating_duration_since(*ack))
            })
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        lat.sort_unstable();
        report.missing = Some(out.acks.len() - lat.len());
        // ops and ops/s are the writers'; the latencies are the deliveries'.
        report.ops = out.acks.len();
        report.wall = out.wall;
        report.lat_ns = lat;
        Ok(())
    }
    .await;
    for name in [&warmup, &stop] {
        let ok = [StatusCode::OK, StatusCode::ACCEPTED, StatusCode::NOT_FOUND];
        let path = format!("{}/{name}", pods_path(ns));
        if let Err(e) = ctl.call(Method::DELETE, &path, None, &ok).await {
            eprintln!("api-bench: cleaning up: {e:#}");
        }
    }
    if result.is_ok() {
        // The watcher has returned (it sent its result); the join is immediate.
        thread
            .join()
            .map_err(|_| anyhow!("the watcher thread panicked"))?;
    }
    result
}

/// Holds the watch open and records when each pod's ADDED event arrives, until the stop pod.
async fn watcher(
    target: &Target,
    path: &str,
    warmup: &str,
    stop: &str,
    stop_at: Instant,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<HashMap<String, Instant>> {
    let mut c = target.connect().await?;
    let resp = c.send(Method::GET, path, None).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let data = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "watch: {status} {}",
            String::from_utf8_lossy(&data[..data.len().min(ERR_BODY)])
        );
    }
    let mut ready = Some(ready);
    let mut arrivals = HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let left = stop_at.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .context("watch: no stop event before the deadline")?;
        let Some(frame) = frame else {
            bail!("watch: the server ended the stream before the stop event");
        };
        let frame = frame.context("watch: reading the stream")?;
        let now = Instant::now();
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        buf.extend_from_slice(&data);
        let mut consumed = 0;
        while let Some(nl) = buf[consumed..].iter().position(|&b| b == b'\n') {
            let line = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ev: Value = serde_json::from_slice(line).context("watch: event is not JSON")?;
            let kind = ev.get("type").and_then(|t| t.as_str()).unwrap_or("");
            if kind == "ERROR" {
                bail!("watch: ERROR event: {ev}");
            }
            let Some(name) = ev.pointer("/object/metadata/name").and_then(|n| n.as_str()) else {
                continue; // e.g. a bookmark without a name
            };
            if name == warmup {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            } else if name == stop {
                return Ok(arrivals);
            } else if kind == "ADDED" {
                arrivals.entry(name.to_string()).or_insert(now);
            }
        }
        buf.drain(..consumed);
    }
}

//! The peapod node agent — the kubelet. It registers the node and keeps its lease, watches
//! the pods bound to the node, and runs each through a pod worker on real parts: images
//! (`image`), the pod network (`cni`), the OCI runtime and per-pod helpers (`oci`).
//!
//! Owns: node status, pod workers, pod status and events, re-adoption after a restart.
//! Does not own: the API (it is a client of it, through `kube`), image, network and
//! runtime mechanics (their crates). May depend on `api` for pure helpers (QoS, defaults).

pub mod config;
mod container;
mod dns;
mod envsource;
mod envvars;
mod events;
mod expand;
mod handlers;
mod lifecycle;
mod masquerade;
pub mod node_status;
mod pleg;
mod pod_worker;
mod podstatus;
mod prober;
mod record;
mod sandbox;
mod service_cache;
mod streaming;
mod termination;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use supervisor::{Outage, Supervisor};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{AgentConfig, RuntimeChoice};
/// For an agent started under `ip netns exec` (see its module doc).
pub use oci::mountns;
use pod_worker::PodUpdate;
use record::PodRecord;

/// The version the node reports (`kubectl get nodes` VERSION), as k3s marks its builds.
pub const KUBELET_VERSION: &str = "v1.37.0+peapod";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pod state: {0}")]
    State(String),
    #[error("{0}")]
    Sandbox(String),
    #[error("image store: {0}")]
    Image(#[from] image::ImageError),
    #[error("network: {0}")]
    Cni(#[from] cni::CniError),
    #[error("runtime: {0}")]
    Runtime(#[from] oci::OciError),
    /// One of the agent's loops failed in a way that takes the agent down.
    #[error(transparent)]
    Loop(#[from] supervisor::Failure),
}

impl AgentError {
    /// Whether this is the API server being out of reach (no answer at all: connection
    /// refused or reset, TLS, timeouts) rather than an answer such as 404 or 409. Loops log
    /// the former as one outage, not per attempt.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AgentError::Api(e) if unreachable(e))
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> AgentError {
        AgentError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Whether a client error means the API server did not answer (see
/// [`AgentError::is_unreachable`]).
pub(crate) fn unreachable(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(_))
}

/// What every pod worker shares.
pub struct Ctx {
    pub client: kube::Client,
    pub cfg: Arc<AgentConfig>,
    recorder: events::Recorder,
    /// Sends what `recorder` queues; run under the agent's supervisor.
    event_writer: ::record::Sink,
    pub images: Arc<image::ImageStore>,
    pub cni: Arc<cni::Cni>,
    pub runtime: Arc<oci::Runtime>,
    /// The Services containers' environment variables come from.
    services: Arc<service_cache::ServiceCache>,
    pull_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while the agent runs (see [`AGENT_LOCK`]).
    _images_lock: std::fs::File,
    /// Bound in `prepare` (so the node reports its port), served from `run`.
    streaming_listener: Mutex<Option<std::net::TcpListener>>,
    /// Pod workers' API requests that found the API server out of reach, logged as one
    /// outage for all workers rather than a line per pod and retry.
    worker_requests: Mutex<Outage>,
    /// Woken by the heartbeat when it reaches the API server again after an outage, so the
    /// pod watch relists at once instead of at the end of its (up to 30 s) backoff.
    api_back: Arc<tokio::sync::Notify>,
}

impl Ctx {
    /// A pod worker's request went unanswered (the API server is out of reach).
    fn api_unreachable(&self, error: &dyn std::fmt::Display) {
        let mut outage = self
            .worker_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        outage.failed(error);
    }

    /// A pod worker's request was answered.
    fn api_answered(&self) {
        let mut outage = self
            .worker_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        outage.succeeded();
    }

    fn pull_lock(&self, image: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.pull_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(image.to_string()).or_default().clone()
    }
}

/// The lock a running agent holds on its image store (`DIR/images/.agent.lock`), so that
/// `peapod images import` hands archives to it instead of opening the store a second time.
pub const AGENT_LOCK: &str = ".agent.lock";

/// Takes the agent lock, or returns None when another process holds it.
pub fn try_lock_images(images_dir: &Path) -> Result<Option<std::fs::File>, AgentError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(images_dir).map_err(|e| AgentError::io(images_dir, e))?;
    let path = images_dir.join(AGENT_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AgentError::io(&path, e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    Ok(Some(file))
}

/// How often the agent looks for archives dropped into `DIR/images/`.
const ARCHIVE_RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

/// Imports `DIR/images/*.tar` (air-gapped images) it has not imported yet: at start, and
/// whenever one is dropped there while the agent runs.
fn import_archives(images: &image::ImageStore, dir: &Path, seen: &mut ArchivesSeen) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("tar") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
        if seen.get(&path) == Some(&stamp) {
            continue;
        }
        seen.insert(path.clone(), stamp);
        match images.import_archive(&path) {
            Ok(imported) => {
                for img in imported {
                    info!(image = ?img.names, file = %path.display(), "imported image archive");
                }
            }
            Err(e) => warn!(file = %path.display(), error = %e, "importing image archive"),
        }
    }
}

/// Sets up the node's parts. Returns the shared context.
pub fn prepare(client: kube::Client, mut cfg: AgentConfig) -> Result<Arc<Ctx>, AgentError> {
    let addr = std::net::SocketAddr::new(cfg.node_ip, cfg.kubelet_port);
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| AgentError::io(addr.to_string(), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AgentError::io(addr.to_string(), e))?;
    cfg.kubelet_port = listener
        .local_addr()
        .map_err(|e| AgentError::io(addr.to_string(), e))?
        .port();
    for dir in [
        cfg.pods_dir(),
        cfg.logs_dir(),
        cfg.netns_dir(),
        cfg.runtime_root(),
        cfg.cni_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
    }
    let conflist = cfg.cni_dir().join("net.d").join("10-peapod.conflist");
    if let Some(parent) = conflist.parent() {
        std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
    }
    cni::write_default_conflist(
        &conflist,
        "peapod",
        &cfg.cni_bridge,
        &cfg.pod_cidr,
        &cfg.cni_dir().join("networks"),
        cfg.pod_mtu,
    )?;
    let cni = cni::Cni::new(
        cfg.cni_plugin_dirs.clone(),
        conflist,
        cfg.cni_dir().join("cache"),
    )?;
    let kind = match cfg.runtime {
        RuntimeChoice::Crun => oci::RuntimeKind::Crun,
        RuntimeChoice::Runc => oci::RuntimeKind::Runc,
    };
    let runtime = oci::Runtime::new(kind, cfg.runtime_root(), cfg.shim.clone())?;
    let images_lock = try_lock_images(&cfg.images_dir())?.ok_or_else(|| {
        AgentError::State(format!(
            "another node agent is using {}",
            cfg.data_dir.display()
        ))
    })?;
    let images = image::ImageStore::open(&cfg.images_dir())?;
    let (recorder, event_writer) = events::Recorder::new(client.clone(), cfg.node_name.clone());
    Ok(Arc::new(Ctx {
        client,
        cfg: Arc::new(cfg),
        recorder,
        event_writer,
        images: Arc::new(images),
        cni: Arc::new(cni),
        runtime: Arc::new(runtime),
        services: Arc::default(),
        pull_locks: Mutex::new(HashMap::new()),
        _images_lock: images_lock,
        streaming_listener: Mutex::new(Some(listener)),
        worker_requests: Mutex::new(Outage::new("pod workers' API requests")),
        api_back: Arc::default(),
    }))
}

/// Imports archives that appear in `DIR/images/` while the agent runs, until shutdown.
/// `seen` outlives one run of the loop, so a restarted watcher does not import again.
async fn watch_archives(
    ctx: Arc<Ctx>,
    seen: Arc<Mutex<ArchivesSeen>>,
    shutdown: CancellationToken,
) -> Result<(), tokio::task::JoinError> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(ARCHIVE_RESCAN) => {}
        }
        let store = ctx.images.clone();
        let dir = ctx.cfg.images_dir();
        let seen = seen.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            import_archives(&store, &dir, &mut seen);
        })
        .await?;
    }
}

/// Archives already imported, with the modification time and size they had then.
type ArchivesSeen = HashMap<PathBuf, (std::time::SystemTime, u64)>;

fn load_records(cfg: &AgentConfig) -> HashMap<String, PodRecord> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(cfg.pods_dir()) else {
        return out;
    };
    for entry in entries.flatten() {
        match PodRecord::load(&entry.path()) {
            Ok(Some(rec)) => {
                out.insert(rec.uid.clone(), rec);
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "unreadable pod state"),
        }
    }
    out
}

/// Removes runtime containers and network namespaces no pod record knows: leftovers of a
/// crash between creating something and recording it.
async fn remove_orphans(ctx: &Ctx, records: &HashMap<String, PodRecord>) {
    let known: HashSet<&str> = records
        .values()
        .flat_map(|r| r.containers.iter().map(|c| c.id.as_str()))
        .collect();
    match ctx.runtime.list().await {
        Ok(states) => {
            for st in states.iter().filter(|s| !known.contains(s.id.as_str())) {
                warn!(container = %st.id, "removing orphaned container");
                let _ = ctx.runtime.delete(&st.id, true).await;
            }
        }
        Err(e) => warn!(error = %e, "listing runtime containers"),
    }
    let sandboxes: HashSet<String> = records
        .values()
        .filter_map(|r| r.sandbox.as_ref().map(|s| s.id.clone()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(ctx.cfg.netns_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !sandboxes.contains(&name) {
                warn!(netns = %name, "removing orphaned network namespace");
                let _ = cni::netns::remove(&entry.path());
            }
        }
    }
}

struct WorkerSlot {
    tx: watch::Sender<PodUpdate>,
    task: tokio::task::Id,
}

/// Runs the agent until `shutdown`: registers the node, keeps its lease, and runs the pods
/// bound to it. `ready` is called once the node is registered.
///
/// Its loops run under its own [`Supervisor`], each chosen as the kubelet would: the
/// streaming server and the pod loop are essential (the kubelet exits when its server
/// fails, and the pod loop owns every pod worker), so their failure ends `run` with an
/// error; the heartbeat, the event writer and the archive watcher are restarted with
/// backoff. Containers keep running whatever happens to the agent.
pub async fn run(
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> Result<(), AgentError> {
    let cfg = ctx.cfg.clone();
    let tls = streaming::tls_config(&ctx).await?;
    let listener = ctx
        .streaming_listener
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| AgentError::State("the agent runs once per prepare".into()))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| AgentError::io("streaming listener", e))?;
    // Dropping the supervisor (an error below) aborts what it runs.
    let mut loops = Supervisor::new(shutdown.child_token());
    let c = ctx.clone();
    loops.spawn_essential("streaming server", move |token| {
        streaming::serve(c, listener, tls, token)
    });
    let node_uid = node_status::register(&ctx.client, &cfg).await?;
    let (client, c, back) = (ctx.client.clone(), cfg.clone(), ctx.api_back.clone());
    loops.spawn_restarting("node heartbeat", move |token| {
        node_status::heartbeat(
            client.clone(),
            c.clone(),
            node_uid.clone(),
            back.clone(),
            token,
        )
    });
    let writer = ctx.event_writer.clone();
    loops.spawn_restarting("event recorder", move |token| writer.clone().run(token));
    // Archives first, so pods with `imagePullPolicy: Never` find their images.
    let store = ctx.images.clone();
    let dir = cfg.images_dir();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = HashMap::new();
        import_archives(&store, &dir, &mut seen);
        seen
    })
    .await
    .unwrap_or_default();
    let (c, seen) = (ctx.clone(), Arc::new(Mutex::new(seen)));
    loops.spawn_restarting("image archive watcher", move |token| {
        watch_archives(c.clone(), seen.clone(), token)
    });
    let cluster_cidr = if masquerade::contains(&cfg.cluster_cidr, &cfg.pod_cidr) {
        cfg.cluster_cidr.clone()
    } else {
        warn!(pod_cidr = %cfg.pod_cidr, cluster_cidr = %cfg.cluster_cidr,
            "the pod CIDR is outside the cluster CIDR; treating the pod CIDR as the cluster's");
        cfg.pod_cidr.clone()
    };
    masquerade::ensure(&cfg.pod_cidr, &cluster_cidr).await?;
    let (services, client) = (ctx.services.clone(), ctx.client.clone());
    loops.spawn_restarting("service cache", move |token| {
        services.clone().run(client.clone(), token)
    });
    let records = load_records(&cfg);
    remove_orphans(&ctx, &records).await;
    let c = ctx.clone();
    loops.spawn_essential("pod loop", move |token| pod_loop(c, records, token));
    ready();
    let result = loops.run().await;
    info!("node agent stopping; containers keep running");
    Ok(result?)
}

/// The pods bound to this node, with client-go's reflector backoff (800 ms doubling to
/// 30 s, jittered), so an API server that is down is not retried in a hot loop.
fn pod_watch(
    ctx: &Ctx,
) -> futures::stream::BoxStream<'static, watcher::Result<watcher::Event<Pod>>> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.cfg.node_name);
    watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed()
}

/// Follows the pods bound to this node and gives each its worker, until `shutdown`. The
/// workers belong to this loop: they stop with it (their containers do not), and a worker
/// that panicked takes the loop down rather than leaving its pod unattended.
async fn pod_loop(
    ctx: Arc<Ctx>,
    mut records: HashMap<String, PodRecord>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let mut stream = pod_watch(&ctx);
    let mut outage = Outage::new("pod watch");
    let mut tasks = tokio::task::JoinSet::new();
    let mut workers: HashMap<String, WorkerSlot> = HashMap::new();
    let mut seen_in_list: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next_with_id() => {
                match done {
                    Ok((id, ())) => workers.retain(|_, w| w.task != id),
                    Err(e) if e.is_panic() => {
                        let uid = workers.iter().find(|(_, w)| w.task == e.id()).map(|(u, _)| u.clone());
                        return Err(AgentError::State(format!(
                            "the worker of pod {} panicked",
                            uid.unwrap_or_default()
                        )));
                    }
                    Err(_) => {}
                }
                continue;
            }
            _ = ctx.api_back.notified(), if outage.is_down() => {
                // The API server is back (the heartbeat got through): start over with a
                // fresh list now rather than at the end of the backoff. A relist is what
                // the watch does after an outage anyway (its resource version predates
                // the restarted server's watch cache).
                stream = pod_watch(&ctx);
                continue;
            }
            ev = stream.next() => ev,
        };
        let Some(event) = event else {
            return Err(AgentError::State("the pod watch ended".into()));
        };
        let event = match event {
            Ok(ev) => {
                outage.succeeded();
                ev
            }
            Err(e) => {
                outage.failed(&e);
                continue;
            }
        };
        match event {
            watcher::Event::Init => seen_in_list.clear(),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                seen_in_list.insert(uid.clone());
                let update = PodUpdate::Present(Arc::new(pod));
                match workers.get(&uid) {
                    Some(w) => {
                        let _ = w.tx.send(update);
                    }
                    None => {
                        let (tx, rx) = watch::channel(update);
                        let task = pod_worker::spawn(
                            ctx.clone(),
                            uid.clone(),
                            records.remove(&uid),
                            rx,
                            &mut tasks,
                        );
                        workers.insert(uid, WorkerSlot { tx, task });
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(w) = workers.get(&uid) {
                    let _ = w.tx.send(PodUpdate::Gone);
                }
            }
            watcher::Event::InitDone => {
                // Pods the agent ran that are no longer in the API: release them.
                for (uid, w) in &workers {
                    if !seen_in_list.contains(uid) {
                        let _ = w.tx.send(PodUpdate::Gone);
                    }
                }
                for (uid, rec) in records.drain() {
                    info!(pod = %rec.name, "pod gone while the agent was down; cleaning up");
                    let (tx, rx) = watch::channel(PodUpdate::Gone);
                    let task =
                        pod_worker::spawn(ctx.clone(), uid.clone(), Some(rec), rx, &mut tasks);
                    workers.insert(uid, WorkerSlot { tx, task });
                }
            }
        }
    }
    // Dropping `tasks` aborts the workers; their containers keep running.
    Ok(())
}

//! The peapod node agent — the kubelet. It registers the node and keeps its lease, watches
//! the pods bound to the node, and runs each through a pod worker on real parts: images
//! (`image`), the pod network (`cni`), the OCI runtime and per-pod helpers (`oci`).
//!
//! Owns: node status, pod workers, pod status and events, re-adoption after a restart.
//! Does not own: the API (it is a client of it, through `kube`), image, network and
//! runtime mechanics (their crates). May depend on `api` for pure helpers (QoS, defaults).

pub mod config;
mod container;
mod envsource;
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
mod streaming;
mod termination;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{AgentConfig, RuntimeChoice};
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
}

impl AgentError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> AgentError {
        AgentError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// What every pod worker shares.
pub struct Ctx {
    pub client: kube::Client,
    pub cfg: Arc<AgentConfig>,
    recorder: events::Recorder,
    pub images: Arc<image::ImageStore>,
    pub cni: Arc<cni::Cni>,
    pub runtime: Arc<oci::Runtime>,
    pull_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while the agent runs (see [`AGENT_LOCK`]).
    _images_lock: std::fs::File,
    /// Bound in `prepare` (so the node reports its port), served from `run`.
    streaming_listener: Mutex<Option<std::net::TcpListener>>,
}

impl Ctx {
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
fn import_archives(
    images: &image::ImageStore,
    dir: &Path,
    seen: &mut HashMap<PathBuf, (std::time::SystemTime, u64)>,
) {
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
    let recorder = events::Recorder::start(client.clone(), cfg.node_name.clone());
    Ok(Arc::new(Ctx {
        client,
        cfg: Arc::new(cfg),
        recorder,
        images: Arc::new(images),
        cni: Arc::new(cni),
        runtime: Arc::new(runtime),
        pull_locks: Mutex::new(HashMap::new()),
        _images_lock: images_lock,
        streaming_listener: Mutex::new(Some(listener)),
    }))
}

/// Imports archives that appear in `DIR/images/` while the agent runs, until shutdown.
async fn watch_archives(
    ctx: Arc<Ctx>,
    mut seen: HashMap<PathBuf, (std::time::SystemTime, u64)>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ARCHIVE_RESCAN) => {}
        }
        let store = ctx.images.clone();
        let dir = ctx.cfg.images_dir();
        let scan = tokio::task::spawn_blocking(move || {
            import_archives(&store, &dir, &mut seen);
            seen
        });
        match scan.await {
            Ok(s) => seen = s,
            Err(e) => {
                warn!(error = %e, "image archive scan failed");
                return;
            }
        }
    }
}

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
    task: tokio::task::JoinHandle<()>,
}

/// Runs the agent until `shutdown`: registers the node, keeps its lease, and runs the pods
/// bound to it. `ready` is called once the node is registered.
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
    tokio::spawn(streaming::serve(
        ctx.clone(),
        listener,
        tls,
        shutdown.clone(),
    ));
    let node_uid = node_status::register(&ctx.client, &cfg).await?;
    tokio::spawn(node_status::heartbeat(
        ctx.client.clone(),
        cfg.clone(),
        node_uid,
        shutdown.clone(),
    ));
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
    tokio::spawn(watch_archives(ctx.clone(), seen, shutdown.clone()));
    let cluster_cidr = if masquerade::contains(&cfg.cluster_cidr, &cfg.pod_cidr) {
        cfg.cluster_cidr.clone()
    } else {
        warn!(pod_cidr = %cfg.pod_cidr, cluster_cidr = %cfg.cluster_cidr,
            "the pod CIDR is outside the cluster CIDR; treating the pod CIDR as the cluster's");
        cfg.pod_cidr.clone()
    };
    masquerade::ensure(&cfg.pod_cidr, &cluster_cidr).await?;
    let mut records = load_records(&cfg);
    remove_orphans(&ctx, &records).await;
    ready();

    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", cfg.node_name);
    let mut stream = watcher(pods, watcher::Config::default().fields(&selector)).boxed();
    let mut workers: HashMap<String, WorkerSlot> = HashMap::new();
    let mut seen_in_list: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = stream.next() => ev,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %e, "pod watch");
                continue;
            }
        };
        workers.retain(|_, w| !w.task.is_finished());
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
                        let task =
                            pod_worker::spawn(ctx.clone(), uid.clone(), records.remove(&uid), rx);
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
                    let task = pod_worker::spawn(ctx.clone(), uid.clone(), Some(rec), rx);
                    workers.insert(uid, WorkerSlot { tx, task });
                }
            }
        }
    }
    info!("node agent stopping; containers keep running");
    for (_, w) in workers {
        w.task.abort();
    }
    Ok(())
}

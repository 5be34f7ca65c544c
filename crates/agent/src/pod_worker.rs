//! One worker per pod, as the kubelet's `pod_workers`: it owns the pod's sandbox and
//! containers, drives them toward the newest spec it has seen (newest update wins), reports
//! the pod's status (it is the pod's single status writer), and on deletion stops the
//! containers within the grace period, releases everything and confirms the deletion.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EphemeralContainer, HostIP, Pod, PodIP, PodSpec,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::container::{self, field_path, StartFailure};
use crate::events::EventType;
use crate::podstatus::{self, is_sidecar};
use crate::record::{ContainerRecord, ExitRecord, PodRecord};
use crate::{pleg, sandbox, termination, Ctx};

/// What the worker knows of its pod in the API.
#[derive(Clone)]
pub enum PodUpdate {
    Present(Arc<Pod>),
    /// The object is gone from the API (force-deleted, or deleted while the agent was down).
    Gone,
}

/// Upstream's container restart backoff: 10 s doubling to 5 min.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a worker looks at its pod even when nothing happened (the kubelet's resync).
const RESYNC: Duration = Duration::from_secs(10);
/// Sandbox creation is retried this often after a failure.
const SANDBOX_RETRY: Duration = Duration::from_secs(2);

/// What sets an ephemeral container apart when it starts.
struct Ephemeral {
    /// `targetContainerName`: whose PID namespace it joins.
    target: Option<String>,
}

/// An ephemeral container as the container it runs as: the two types share their fields
/// (upstream's `EphemeralContainerCommon`) but for the target's name.
fn ephemeral_as_container(ec: &EphemeralContainer) -> Option<Container> {
    let mut value = serde_json::to_value(ec).ok()?;
    value.as_object_mut()?.remove("targetContainerName");
    serde_json::from_value(value).ok()
}

struct Backoff {
    delay: Duration,
    until: Instant,
}

pub struct Worker {
    ctx: Arc<Ctx>,
    pod_dir: PathBuf,
    rec: PodRecord,
    exits_tx: mpsc::UnboundedSender<String>,
    exits_rx: mpsc::UnboundedReceiver<String>,
    backoff: HashMap<(String, bool), Backoff>,
    /// Waiting reasons for containers that could not be started: (reason, message).
    waiting: HashMap<(String, bool), (String, String)>,
    sandbox_retry: Option<Instant>,
    last_status: Option<PodStatus>,
}

/// Starts a worker for the pod with this uid. `record` is what a previous agent left on disk.
pub fn spawn(
    ctx: Arc<Ctx>,
    uid: String,
    record: Option<PodRecord>,
    updates: watch::Receiver<PodUpdate>,
) -> tokio::task::JoinHandle<()> {
    let pod_dir = ctx.cfg.pods_dir().join(&uid);
    let (exits_tx, exits_rx) = mpsc::unbounded_channel();
    let rec = record.unwrap_or(PodRecord {
        uid,
        ..Default::default()
    });
    let worker = Worker {
        ctx,
        pod_dir,
        rec,
        exits_tx,
        exits_rx,
        backoff: HashMap::new(),
        waiting: HashMap::new(),
        sandbox_retry: None,
        last_status: None,
    };
    tokio::spawn(worker.run(updates))
}

impl Worker {
    async fn run(mut self, mut updates: watch::Receiver<PodUpdate>) {
        self.adopt();
        loop {
            let update = updates.borrow_and_update().clone();
            match update {
                PodUpdate::Gone => {
                    self.terminate(None, 0, &mut updates).await;
                    self.teardown(true).await;
                    return;
                }
                PodUpdate::Present(pod) => {
                    self.remember(&pod);
                    if pod.metadata.deletion_timestamp.is_some() {
                        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                        self.terminate(Some(&pod), grace, &mut updates).await;
                        self.teardown(true).await;
                        self.report(&pod, true).await;
                        self.confirm_deletion(&pod).await;
                        return;
                    }
                    if !self.rec.terminal {
                        self.sync(&pod).await;
                    }
                    self.report(&pod, false).await;
                    if !self.rec.terminal && self.finished(&pod) {
                        info!(pod = %self.rec.name, "pod finished; releasing its sandbox");
                        self.rec.terminal = true;
                        self.terminate(Some(&pod), 0, &mut updates).await;
                        self.teardown(false).await;
                        self.report(&pod, false).await;
                    }
                }
            }
            let wake = self.next_wake();
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return },
                Some(id) = self.exits_rx.recv() => self.on_exit(&id).await,
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn remember(&mut self, pod: &Pod) {
        if self.rec.name.is_empty() {
            self.rec.namespace = pod.metadata.namespace.clone().unwrap_or_default();
            self.rec.name = pod.metadata.name.clone().unwrap_or_default();
        }
    }

    fn save(&self) {
        if let Err(e) = self.rec.save(&self.pod_dir) {
            warn!(pod = %self.rec.name, error = %e, "saving pod state");
        }
    }

    /// Re-attaches to containers a previous agent started: watch the live ones, collect the
    /// exits that happened meanwhile.
    fn adopt(&mut self) {
        let ids: Vec<(String, u32)> = self
            .rec
            .containers
            .iter()
            .filter(|c| c.exit.is_none() && c.pid != 0)
            .map(|c| (c.id.clone(), c.pid))
            .collect();
        for (id, pid) in ids {
            debug!(pod = %self.rec.name, container = %id, pid, "re-adopting container");
            pleg::watch_exit(pid, id, self.exits_tx.clone());
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + RESYNC;
        for b in self.backoff.values() {
            if b.until > Instant::now() && b.until < wake {
                wake = b.until;
            }
        }
        if let Some(t) = self.sandbox_retry {
            wake = wake.min(t);
        }
        wake
    }

    fn restart_policy(pod: &Pod) -> String {
        pod.spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// Drives the pod one step toward its spec.
    async fn sync(&mut self, pod: &Pod) {
        let Some(spec) = pod.spec.clone() else { return };
        if self.rec.start_time.is_none() {
            self.rec.start_time = Some(jiff::Timestamp::now());
            self.rec.mark("accepted");
        }
        let sandbox_ok = self.rec.sandbox.as_ref().is_some_and(sandbox::alive);
        if !sandbox_ok {
            if self.sandbox_retry.is_some_and(|t| t > Instant::now()) {
                return;
            }
            if let Some(old) = self.rec.sandbox.take() {
                warn!(pod = %self.rec.name, "sandbox gone; recreating it");
                self.stop_all(pod, 0).await;
                sandbox::destroy(
                    &self.ctx,
                    &self.rec.namespace,
                    &self.rec.name,
                    &self.rec.uid,
                    &old,
                )
                .await;
            }
            match sandbox::create(&self.ctx, pod, &self.pod_dir).await {
                Ok(sb) => {
                    if let Some(at) = sb.network_ready_at {
                        self.rec.mark_at("network", at);
                    }
                    self.rec.sandbox = Some(sb);
                    self.rec.mark("sandbox");
                    self.sandbox_retry = None;
                    self.save();
                }
                Err(e) => {
                    warn!(pod = %self.rec.name, error = %e, "creating the pod sandbox");
                    self.ctx.recorder.pod_event(
                        pod,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    self.sandbox_retry = Some(Instant::now() + SANDBOX_RETRY);
                    return;
                }
            }
        }

        self.start_ephemeral(pod, &spec).await;
        let policy = Self::restart_policy(pod);
        // Init containers, one at a time; sidecars start in order and keep running.
        for c in spec.init_containers.iter().flatten() {
            let sidecar = is_sidecar(c);
            match self.rec.latest(&c.name, true).cloned() {
                None => {
                    self.start(pod, c, true, 0, None).await;
                    if !sidecar || self.rec.latest(&c.name, true).is_none() {
                        return;
                    }
                }
                Some(r) if r.exit.is_none() => {
                    if !sidecar {
                        return;
                    }
                }
                Some(r) => {
                    let code = r.exit.as_ref().map_or(0, |e| e.exit_code);
                    if code == 0 && !sidecar {
                        continue;
                    }
                    if !sidecar && policy == "Never" {
                        // The pod has failed; `finished` sees it.
                        return;
                    }
                    self.restart(pod, c, true, &r).await;
                    if !sidecar {
                        return;
                    }
                }
            }
        }
        self.rec.mark("initialized");

        for c in &spec.containers {
            match self.rec.latest(&c.name, false).cloned() {
                None => self.start(pod, c, false, 0, None).await,
                Some(r) if r.exit.is_none() => {}
                Some(r) => {
                    let code = r.exit.as_ref().map_or(0, |e| e.exit_code);
                    let restart = match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => code != 0,
                        _ => false,
                    };
                    if restart {
                        self.restart(pod, c, false, &r).await;
                    }
                }
            }
        }
    }

    /// Restarts an exited container once its backoff allows, as the kubelet's CrashLoopBackOff.
    async fn restart(&mut self, pod: &Pod, c: &Container, init: bool, last: &ContainerRecord) {
        let key = (c.name.clone(), init);
        let now = Instant::now();
        if let Some(b) = self.backoff.get(&key) {
            if b.until > now {
                let ns = &self.rec.namespace;
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    container::go_duration(b.delay).replace(".0s", "s"),
                    c.name,
                    self.rec.name,
                    ns,
                    self.rec.uid
                );
                if self.waiting.get(&key).map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    self.ctx.recorder.container_event(
                        pod,
                        field_path(pod, init, &c.name),
                        EventType::Warning,
                        "BackOff",
                        "Back-off restarting failed container",
                    );
                }
                self.waiting
                    .insert(key, ("CrashLoopBackOff".into(), message));
                return;
            }
        }
        let delay = self
            .backoff
            .get(&key)
            .map_or(BACKOFF_INITIAL, |b| (b.delay * 2).min(BACKOFF_MAX));
        self.backoff.insert(
            key,
            Backoff {
                delay,
                until: now + delay,
            },
        );
        self.start(pod, c, init, last.attempt + 1, None).await;
    }

    /// Starts what the pod's `spec.ephemeralContainers` added, once each: they are never
    /// restarted (a failure to start is retried after its backoff, as the kubelet does). They
    /// may start before initialization is done.
    async fn start_ephemeral(&mut self, pod: &Pod, spec: &PodSpec) {
        for ec in spec.ephemeral_containers.iter().flatten() {
            if self.rec.latest(&ec.name, false).is_some() {
                continue;
            }
            let Some(c) = ephemeral_as_container(ec) else {
                continue;
            };
            let ephemeral = Ephemeral {
                target: ec.target_container_name.clone().filter(|t| !t.is_empty()),
            };
            self.start(pod, &c, false, 0, Some(&ephemeral)).await;
        }
    }

    /// The PID namespace of an ephemeral container's target: its init process's.
    fn target_pid_namespace(&self, target: &str) -> Result<PathBuf, StartFailure> {
        let running = self
            .rec
            .latest(target, false)
            .or_else(|| self.rec.latest(target, true))
            .filter(|r| r.exit.is_none() && r.pid != 0);
        match running {
            Some(r) => Ok(oci::sandbox::ns_path(r.pid, "pid")),
            None => Err(StartFailure {
                reason: "CreateContainerError",
                message: format!("target container {target:?} is not running"),
                image: false,
            }),
        }
    }

    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        attempt: i32,
        ephemeral: Option<&Ephemeral>,
    ) {
        let key = (c.name.clone(), init);
        if let Some(b) = self.backoff.get(&key) {
            // Image pull and config errors wait out their backoff before trying again.
            if self.waiting.contains_key(&key) && b.until > Instant::now() && attempt == 0 {
                if self.waiting.get(&key).map(|w| w.0.as_str()) == Some("ErrImagePull") {
                    let image = c.image.clone().unwrap_or_default();
                    self.ctx.recorder.container_event(
                        pod,
                        field_path(pod, init, &c.name),
                        EventType::Normal,
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    );
                    self.waiting.insert(
                        key,
                        (
                            "ImagePullBackOff".into(),
                            format!("Back-off pulling image \"{image}\""),
                        ),
                    );
                }
                return;
            }
        }
        let Some(sandbox) = self.rec.sandbox.clone() else {
            return;
        };
        let img = match container::ensure_image(&self.ctx, pod, c, init).await {
            Ok(img) => img,
            Err(f) => return self.start_failed(pod, c, init, f),
        };
        self.rec.mark(&format!("image:{}", c.name));
        let mut prepared = match container::prepare(
            &self.ctx,
            pod,
            &self.pod_dir,
            &sandbox,
            c,
            init,
            attempt,
            &img,
        ) {
            Ok(p) => p,
            Err(f) => return self.start_failed(pod, c, init, f),
        };
        let fp = field_path(pod, init, &c.name);
        if let Some(eph) = ephemeral {
            prepared.record.ephemeral = true;
            // With a target, the container sees the target's processes (its PID namespace);
            // otherwise it shares what the pod's containers share.
            if let Some(target) = &eph.target {
                match self.target_pid_namespace(target) {
                    Ok(ns) => prepared.spec.pidns = Some(ns),
                    Err(f) => {
                        let _ = image::unmount_rootfs(&prepared.bundle);
                        let _ = std::fs::remove_dir_all(&prepared.bundle);
                        return self.start_failed(pod, c, init, f);
                    }
                }
            }
        }
        match container::create_and_start(&self.ctx, &mut prepared).await {
            Ok(()) => {
                self.ctx.recorder.container_event(
                    pod,
                    fp.clone(),
                    EventType::Normal,
                    "Created",
                    format!("Created container: {}", c.name),
                );
                self.ctx.recorder.container_event(
                    pod,
                    fp,
                    EventType::Normal,
                    "Started",
                    format!("Started container {}", c.name),
                );
                let record = prepared.record;
                pleg::watch_exit(record.pid, record.id.clone(), self.exits_tx.clone());
                self.rec.containers.push(record);
                self.rec.mark(&format!("started:{}", c.name));
                if attempt == 0 {
                    self.backoff.remove(&key);
                }
                self.waiting.remove(&key);
                self.prune_old_instances(&c.name, init);
                self.save();
            }
            Err(f) => {
                // The runtime may have created it before failing to start it.
                let _ = self.ctx.runtime.delete(&prepared.record.id, true).await;
                let _ = image::unmount_rootfs(&prepared.bundle);
                let _ = std::fs::remove_dir_all(&prepared.bundle);
                self.start_failed(pod, c, init, f);
            }
        }
    }

    fn start_failed(&mut self, pod: &Pod, c: &Container, init: bool, f: StartFailure) {
        let key = (c.name.clone(), init);
        warn!(pod = %self.rec.name, container = %c.name, reason = f.reason, message = %f.message, "container did not start");
        if !f.image {
            self.ctx.recorder.container_event(
                pod,
                field_path(pod, init, &c.name),
                EventType::Warning,
                "Failed",
                format!("Error: {}", f.message),
            );
        }
        let delay = self
            .backoff
            .get(&key)
            .map_or(BACKOFF_INITIAL, |b| (b.delay * 2).min(BACKOFF_MAX));
        self.backoff.insert(
            key.clone(),
            Backoff {
                delay,
                until: Instant::now() + delay,
            },
        );
        self.waiting.insert(key, (f.reason.to_string(), f.message));
    }

    /// Keeps the newest two instances of a container (the current one and `--previous`).
    fn prune_old_instances(&mut self, name: &str, init: bool) {
        let instances: Vec<usize> = self
            .rec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == name && c.init == init && c.exit.is_some())
            .map(|(i, _)| i)
            .collect();
        if instances.len() <= 2 {
            return;
        }
        let drop = instances.len() - 2;
        for i in instances.into_iter().take(drop).rev() {
            let old = self.rec.containers.remove(i);
            let _ = std::fs::remove_file(&old.log_path);
        }
    }

    async fn on_exit(&mut self, id: &str) {
        let Some(pos) = self.rec.containers.iter().position(|c| c.id == id) else {
            return;
        };
        if self.rec.containers[pos].exit.is_some() {
            return;
        }
        let exit_file = container::exit_file(&self.pod_dir, id);
        let info = pleg::read_exit_with_deadline(&exit_file).await;
        let cgroup = format!("/{}/{}", self.ctx.cfg.pod_cgroup(&self.rec.uid), id);
        let oom = oci::cgroup::oom_killed(&cgroup);
        let rec = &mut self.rec.containers[pos];
        let exit = match info {
            Some(info) => {
                let reason = if oom {
                    "OOMKilled"
                } else if info.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                ExitRecord {
                    exit_code: info.exit_code,
                    signal: info.signal,
                    finished_at: info
                        .finished_at
                        .parse()
                        .unwrap_or_else(|_| jiff::Timestamp::now()),
                    reason: reason.into(),
                    message: None,
                }
            }
            None => ExitRecord {
                exit_code: 255,
                signal: None,
                finished_at: jiff::Timestamp::now(),
                reason: "Error".into(),
                message: Some(
                    "the container's monitor exited without recording an exit status".into(),
                ),
            },
        };
        let mut exit = exit;
        if exit.message.is_none() {
            exit.message = termination::message(
                &container::termination_log(&self.pod_dir, id),
                &rec.log_path,
                rec.fallback_to_logs,
                exit.exit_code,
            );
        }
        info!(pod = %self.rec.name, container = %rec.name, code = exit.exit_code, reason = %exit.reason, "container exited");
        rec.exit = Some(exit);
        let id = rec.id.clone();
        // The exited instance's runtime state and rootfs go now; its log stays for `--previous`.
        if let Err(e) = self.ctx.runtime.delete(&id, true).await {
            warn!(container = %id, error = %e, "deleting exited container");
        }
        let dir = container::container_dir(&self.pod_dir, &id);
        if let Err(e) = image::unmount_rootfs(&dir) {
            warn!(container = %id, error = %e, "unmounting rootfs");
        }
        let _ = std::fs::remove_dir_all(&dir);
        self.save();
    }

    /// True when the pod will run nothing more: its phase is terminal.
    fn finished(&self, pod: &Pod) -> bool {
        matches!(
            self.last_status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        ) && pod.metadata.deletion_timestamp.is_none()
    }

    /// Stops every running container: the stop signal, then SIGKILL when `grace` runs out
    /// (or at once if the pod disappears from the API meanwhile).
    async fn terminate(
        &mut self,
        pod: Option<&Pod>,
        grace: i64,
        updates: &mut watch::Receiver<PodUpdate>,
    ) {
        let running: Vec<ContainerRecord> = self
            .rec
            .containers
            .iter()
            .filter(|c| c.exit.is_none())
            .cloned()
            .collect();
        if running.is_empty() {
            return;
        }
        for c in &running {
            if let Some(pod) = pod {
                self.ctx.recorder.container_event(
                    pod,
                    field_path(pod, c.init, &c.name),
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
            }
            let signal = if grace <= 0 {
                libc::SIGKILL
            } else {
                c.stop_signal
            };
            if let Err(e) = self.ctx.runtime.kill(&c.id, signal).await {
                debug!(container = %c.id, error = %e, "signalling container");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        let mut killed = grace <= 0;
        loop {
            if self.rec.containers.iter().all(|c| c.exit.is_some()) {
                break;
            }
            tokio::select! {
                Some(id) = self.exits_rx.recv() => self.on_exit(&id).await,
                _ = tokio::time::sleep_until(deadline.into()), if !killed => {
                    killed = true;
                    self.kill_remaining().await;
                }
                changed = updates.changed(), if !killed => {
                    let gone = changed.is_err() || matches!(&*updates.borrow(), PodUpdate::Gone);
                    if gone {
                        killed = true;
                        self.kill_remaining().await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(10)), if killed => {
                    warn!(pod = %self.rec.name, "containers did not report their exit after SIGKILL");
                    break;
                }
            }
        }
    }

    async fn kill_remaining(&self) {
        for c in self.rec.containers.iter().filter(|c| c.exit.is_none()) {
            if let Err(e) = self.ctx.runtime.kill(&c.id, libc::SIGKILL).await {
                debug!(container = %c.id, error = %e, "killing container");
            }
        }
    }

    async fn stop_all(&mut self, pod: &Pod, grace: i64) {
        let (_tx, mut rx) = watch::channel(PodUpdate::Present(Arc::new(pod.clone())));
        self.terminate(Some(pod), grace, &mut rx).await;
    }

    /// Releases containers and the sandbox. With `everything`, also the pod's logs and state
    /// (the pod is leaving the node); otherwise the record stays to report status.
    async fn teardown(&mut self, everything: bool) {
        for c in &self.rec.containers {
            if c.exit.is_some() {
                continue;
            }
            let _ = self.ctx.runtime.delete(&c.id, true).await;
            let dir = container::container_dir(&self.pod_dir, &c.id);
            let _ = image::unmount_rootfs(&dir);
        }
        if let Ok(entries) = std::fs::read_dir(self.pod_dir.join("c")) {
            for entry in entries.flatten() {
                let _ = image::unmount_rootfs(&entry.path());
            }
        }
        if let Some(sb) = self.rec.sandbox.clone() {
            sandbox::destroy(
                &self.ctx,
                &self.rec.namespace,
                &self.rec.name,
                &self.rec.uid,
                &sb,
            )
            .await;
        } else {
            let _ = oci::cgroup::remove_pod_cgroup(&self.ctx.cfg.pod_cgroup(&self.rec.uid));
        }
        if everything {
            let _ = std::fs::remove_dir_all(&self.pod_dir);
            if !self.rec.name.is_empty() {
                let logs = self.ctx.cfg.logs_dir().join(format!(
                    "{}_{}_{}",
                    self.rec.namespace, self.rec.name, self.rec.uid
                ));
                let _ = std::fs::remove_dir_all(logs);
            }
        } else {
            self.save();
        }
    }

    /// The agent's half of graceful deletion: once everything is stopped, delete the pod
    /// object with grace 0 (precondition: same uid), which removes it.
    async fn confirm_deletion(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.rec.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.rec.name, &params).await {
            Ok(_) => info!(pod = %self.rec.name, "pod deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(pod = %self.rec.name, error = %e, "confirming pod deletion"),
        }
    }

    fn container_status(&self, c: &Container, init: bool, init_pending: bool) -> ContainerStatus {
        let key = (c.name.clone(), init);
        let latest = self.rec.latest(&c.name, init);
        let runtime = self.ctx.cfg.runtime.name();
        let terminated = |r: &ContainerRecord| {
            r.exit.as_ref().map(|e| ContainerStateTerminated {
                exit_code: e.exit_code,
                signal: e.signal,
                reason: Some(e.reason.clone()),
                message: e.message.clone(),
                started_at: r.started_at.map(Time),
                finished_at: Some(Time(e.finished_at)),
                container_id: Some(format!("{runtime}://{}", r.id)),
            })
        };
        let waiting = |reason: &str, message: Option<String>| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message,
            }),
            ..Default::default()
        };
        let override_waiting = self.waiting.get(&key);
        let (state, last_state) = match latest {
            None => {
                let state = match override_waiting {
                    Some((r, m)) => waiting(r, Some(m.clone())),
                    None if init_pending && !init => waiting("PodInitializing", None),
                    None => waiting("ContainerCreating", None),
                };
                (state, None)
            }
            Some(r) if r.exit.is_none() => {
                let state = ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: r.started_at.map(Time),
                    }),
                    ..Default::default()
                };
                let last = self.rec.previous(&c.name, init).and_then(terminated);
                (state, last)
            }
            Some(r) => match override_waiting {
                Some((reason, m)) if !self.rec.terminal => {
                    (waiting(reason, Some(m.clone())), terminated(r))
                }
                _ => (
                    ContainerState {
                        terminated: terminated(r),
                        ..Default::default()
                    },
                    self.rec.previous(&c.name, init).and_then(terminated),
                ),
            },
        };
        let running = state.running.is_some();
        ContainerStatus {
            name: c.name.clone(),
            image: latest
                .map(|r| r.image_ref.clone())
                .filter(|s| !s.is_empty())
                .or_else(|| c.image.clone())
                .unwrap_or_default(),
            image_id: latest.map(|r| r.image_id.clone()).unwrap_or_default(),
            container_id: latest.map(|r| format!("{runtime}://{}", r.id)),
            ready: running,
            restart_count: latest.map_or(0, |r| r.attempt),
            started: Some(running),
            state: Some(state),
            last_state: Some(
                last_state.map_or_else(ContainerState::default, |t| ContainerState {
                    terminated: Some(t),
                    ..Default::default()
                }),
            ),
            ..Default::default()
        }
    }

    fn compute_status(&self, pod: &Pod, deleting: bool) -> PodStatus {
        let empty = Default::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let init_statuses: Vec<ContainerStatus> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| self.container_status(c, true, false))
            .collect();
        let init_pending = spec.init_containers.iter().flatten().any(|c| {
            let s = init_statuses.iter().find(|s| s.name == c.name);
            let done = s
                .and_then(|s| s.state.as_ref())
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            let sidecar_running = is_sidecar(c) && s.is_some_and(|s| s.started == Some(true));
            !(done || sidecar_running)
        });
        let statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| self.container_status(c, false, init_pending))
            .collect();
        // Ephemeral containers count for neither phase nor readiness; the kubelet reports
        // them never ready and without `started`.
        let ephemeral_statuses: Vec<ContainerStatus> = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .filter_map(ephemeral_as_container)
            .map(|c| ContainerStatus {
                ready: false,
                started: None,
                ..self.container_status(&c, false, init_pending)
            })
            .collect();
        let phase = podstatus::phase(
            spec,
            &init_statuses,
            &statuses,
            self.rec.terminal || deleting,
        );
        let now = Time(jiff::Timestamp::now());
        let prev = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let sandbox_ready = self.rec.sandbox.is_some() && !self.rec.terminal && !deleting;
        let conditions = podstatus::conditions(
            &prev,
            spec,
            &init_statuses,
            &statuses,
            sandbox_ready,
            phase,
            &now,
        );
        let pod_ips: Vec<String> = self
            .rec
            .sandbox
            .as_ref()
            .map(|s| s.ips.clone())
            .or_else(|| {
                pod.status
                    .as_ref()
                    .and_then(|s| s.pod_ips.as_ref())
                    .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
            })
            .unwrap_or_default();
        let host_ip = self.ctx.cfg.node_ip.to_string();
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ip: pod_ips.first().cloned(),
            pod_ips: (!pod_ips.is_empty())
                .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
            start_time: self.rec.start_time.map(Time),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            container_statuses: Some(statuses),
            ephemeral_container_statuses: (!ephemeral_statuses.is_empty())
                .then_some(ephemeral_statuses),
            qos_class: Some(api::pod::qos_class(pod).into()),
            ..Default::default()
        }
    }

    /// Patches the pod's status when it changed (strategic merge: conditions merge by type,
    /// so the scheduler's PodScheduled stays).
    async fn report(&mut self, pod: &Pod, deleting: bool) {
        let status = self.compute_status(pod, deleting);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.rec.namespace);
        let patch = serde_json::json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": status,
        });
        match api
            .patch_status(
                &self.rec.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {
                let ready = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready && !self.rec.timeline.iter().any(|(s, _)| s == "ready") {
                    self.rec.mark("ready");
                    self.save();
                    self.ctx.recorder.pod_event(
                        pod,
                        EventType::Normal,
                        "StartupTimeline",
                        timeline_message(&self.rec.timeline),
                    );
                }
                self.last_status = Some(status);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => warn!(pod = %self.rec.name, error = %e, "updating pod status"),
        }
    }
}

/// "sandbox +41ms, image:app +43ms, started:app +88ms, ready +90ms" — each stage's end,
/// relative to when the agent accepted the pod.
fn timeline_message(timeline: &[(String, jiff::Timestamp)]) -> String {
    let Some((_, start)) = timeline.first() else {
        return String::new();
    };
    let stages: Vec<String> = timeline
        .iter()
        .skip(1)
        .map(|(stage, at)| {
            let ms = at.duration_since(*start).as_millis();
            format!("{stage} +{ms}ms")
        })
        .collect();
    format!(
        "Startup timeline since the node accepted the pod: {}",
        stages.join(", ")
    )
}

//! One worker per pod, as the kubelet's `pod_workers`: it owns the pod's sandbox and
//! containers, drives them toward the newest spec it has seen (newest update wins), reports
//! the pod's status (it is the pod's single status writer), and on deletion stops the
//! containers within the grace period, releases everything and confirms the deletion.
//! Probe results and postStart hook outcomes come back to it as messages: it alone decides
//! what a container's readiness is and when a container is killed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EphemeralContainer, HostIP, Pod, PodCondition, PodIP,
    PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::container::{self, field_path, StartFailure};
use crate::events::EventType;
use crate::lifecycle::{self, StopRequest};
use crate::podstatus::{self, is_sidecar};
use crate::prober::{self, Effect, Kind};
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
/// The kubelet's words for a pod stopped at its active deadline.
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// How often a pod's size-limited emptyDirs are measured (the kubelet's housekeeping).
const EVICTION_CHECK: Duration = Duration::from_secs(5);
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

/// The retry delay after a container failed to start (image pull, config errors).
struct Backoff {
    delay: Duration,
    until: Instant,
}

/// Upstream's per-container restart backoff (the kubelet's `flowcontrol.Backoff` keyed by
/// container): a restart waits `delay` counted from the container's exit; each restart
/// doubles it up to [`BACKOFF_MAX`], and an exit more than twice that after the last
/// restart (the container ran 10 min) starts over at [`BACKOFF_INITIAL`].
struct CrashBackoff {
    delay: Duration,
    /// When the last restart was let through (upstream's `lastUpdate`).
    last_update: jiff::Timestamp,
    /// While a restart waits: when it may happen (wakes the worker).
    retry_at: Option<Instant>,
}

impl CrashBackoff {
    fn expired(&self, exited: jiff::Timestamp) -> bool {
        elapsed(self.last_update, exited) > BACKOFF_MAX * 2
    }

    /// How long a restart of a container that exited at `exited` must still wait.
    fn remaining(&self, exited: jiff::Timestamp, now: jiff::Timestamp) -> Option<Duration> {
        if self.expired(exited) {
            return None;
        }
        self.delay
            .checked_sub(elapsed(exited, now))
            .filter(|d| !d.is_zero())
    }
}

/// `to - from`, zero when `to` is earlier.
fn elapsed(from: jiff::Timestamp, to: jiff::Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// Why the worker kills a running container (not the pod's termination).
enum KillWhy {
    Probe(Kind),
    PostStartHook(String),
}

/// What the worker tracks of one running container instance beyond its record: its probe
/// and hook tasks and what they reported. Gone when the container exits.
struct Live {
    /// Cancels the instance's probe and postStart tasks.
    tasks: CancellationToken,
    probes_started: bool,
    /// The readiness probe's verdict (true without a readiness probe).
    ready: bool,
    /// The startup probe passed (true without a startup probe).
    started: bool,
    /// Shared with the startup probe task; liveness and readiness wait for it.
    started_tx: Arc<watch::Sender<bool>>,
    /// A kill the worker has decided on but not begun.
    kill: Option<KillWhy>,
    /// A kill under way: cancelling it stops its SIGKILL timer.
    stopping: Option<CancellationToken>,
}

impl Live {
    fn new(c: &Container, ready: bool, started: bool) -> Live {
        let started = started || c.startup_probe.is_none();
        Live {
            tasks: CancellationToken::new(),
            probes_started: false,
            ready: ready || c.readiness_probe.is_none(),
            started,
            started_tx: Arc::new(watch::channel(started).0),
            kill: None,
            stopping: None,
        }
    }

    fn end(&self) {
        self.tasks.cancel();
        if let Some(s) = &self.stopping {
            s.cancel();
        }
    }
}

pub struct Worker {
    ctx: Arc<Ctx>,
    pod_dir: PathBuf,
    rec: PodRecord,
    exits_tx: mpsc::UnboundedSender<String>,
    exits_rx: mpsc::UnboundedReceiver<String>,
    backoff: HashMap<(String, bool), Backoff>,
    crash_backoff: HashMap<(String, bool), CrashBackoff>,
    /// Waiting reasons for containers that could not be started: (reason, message).
    waiting: HashMap<(String, bool), (String, String)>,
    sandbox_retry: Option<Instant>,
    /// When the pod's emptyDirs were last measured against their size limits.
    last_eviction_check: Option<Instant>,
    /// When the pod's active deadline ends, while it runs (wakes the worker then).
    deadline_at: Option<Instant>,
    last_status: Option<PodStatus>,
    live: HashMap<String, Live>,
    probe_tx: mpsc::UnboundedSender<prober::Update>,
    probe_rx: mpsc::UnboundedReceiver<prober::Update>,
    /// postStart outcomes: (container id, Err(message) on failure).
    hook_tx: mpsc::UnboundedSender<(String, Result<(), String>)>,
    hook_rx: mpsc::UnboundedReceiver<(String, Result<(), String>)>,
}

/// Starts a worker for the pod with this uid in `workers` (the agent's pod loop owns them).
/// `record` is what a previous agent left on disk.
pub fn spawn(
    ctx: Arc<Ctx>,
    uid: String,
    record: Option<PodRecord>,
    updates: watch::Receiver<PodUpdate>,
    workers: &mut tokio::task::JoinSet<()>,
) -> tokio::task::Id {
    let pod_dir = ctx.cfg.pods_dir().join(&uid);
    let (exits_tx, exits_rx) = mpsc::unbounded_channel();
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let (hook_tx, hook_rx) = mpsc::unbounded_channel();
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
        crash_backoff: HashMap::new(),
        last_eviction_check: None,
        waiting: HashMap::new(),
        sandbox_retry: None,
        deadline_at: None,
        last_status: None,
        live: HashMap::new(),
        probe_tx,
        probe_rx,
        hook_tx,
        hook_rx,
    };
    workers.spawn(worker.run(updates)).id()
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
                    self.deadline_at = self.deadline(&pod).filter(|_| !self.rec.terminal);
                    if self.deadline_at.is_some_and(|d| d <= Instant::now()) {
                        // The kubelet's active deadline: stop everything, the pod has failed.
                        info!(pod = %self.rec.name, "pod passed its active deadline");
                        self.ctx.recorder.pod_event(
                            &pod,
                            EventType::Normal,
                            "DeadlineExceeded",
                            DEADLINE_MESSAGE,
                        );
                        self.rec.deadline_exceeded = true;
                        self.stop_failed(&pod, pod_grace(&pod), &mut updates).await;
                    }
                    if !self.rec.terminal && self.eviction_check_due(&pod) {
                        if let Some(message) =
                            crate::volumes::empty_dir_overrun(&pod, &self.pod_dir)
                        {
                            self.evict(&pod, message, &mut updates).await;
                        }
                    }
                    if !self.rec.terminal {
                        self.sync(&pod).await;
                    }
                    self.report(&pod, false).await;
                    if !self.rec.terminal && self.finished(&pod) {
                        info!(pod = %self.rec.name, "pod finished; releasing its sandbox");
                        self.rec.terminal = true;
                        // What still runs (sidecars beside a failed init container) stops
                        // gracefully, as the kubelet's pod termination.
                        let grace = pod_grace(&pod);
                        self.terminate(Some(&pod), grace, &mut updates).await;
                        self.teardown(false).await;
                        self.report(&pod, false).await;
                    }
                }
            }
            let wake = self.next_wake();
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return },
                Some(id) = self.exits_rx.recv() => self.on_exit(&id).await,
                Some(update) = self.probe_rx.recv() => self.on_probe(update),
                Some((id, result)) = self.hook_rx.recv() => self.on_post_start(&id, result),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// Whether to measure the pod's size-limited emptyDirs now: at most every
    /// [`EVICTION_CHECK`], as the kubelet's eviction manager, and only if it has any.
    fn eviction_check_due(&mut self, pod: &Pod) -> bool {
        let limited = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| {
                vs.iter()
                    .any(|v| v.empty_dir.as_ref().is_some_and(|e| e.size_limit.is_some()))
            });
        let now = Instant::now();
        if !limited
            || self
                .last_eviction_check
                .is_some_and(|t| now < t + EVICTION_CHECK)
        {
            return false;
        }
        self.last_eviction_check = Some(now);
        true
    }

    /// The kubelet's eviction of one pod: the `Evicted` event, every container killed at
    /// once, and the pod Failed with reason Evicted (reported by `compute_status`).
    async fn evict(
        &mut self,
        pod: &Pod,
        message: String,
        updates: &mut watch::Receiver<PodUpdate>,
    ) {
        warn!(pod = %self.rec.name, %message, "evicting the pod");
        self.ctx
            .recorder
            .pod_event(pod, EventType::Warning, "Evicted", message.clone());
        self.rec.evicted = Some(message);
        self.stop_failed(pod, 0, updates).await;
    }

    /// Ends a pod the node has failed (active deadline, eviction; the record says why):
    /// nothing runs again, everything stops with `grace`, the sandbox goes.
    async fn stop_failed(
        &mut self,
        pod: &Pod,
        grace: i64,
        updates: &mut watch::Receiver<PodUpdate>,
    ) {
        self.rec.terminal = true;
        self.save();
        self.terminate(Some(pod), grace, updates).await;
        self.teardown(false).await;
    }

    /// A probe result crossed its threshold.
    fn on_probe(&mut self, u: prober::Update) {
        let Some(live) = self.live.get_mut(&u.container_id) else {
            return;
        };
        match prober::effect(u.kind, u.success) {
            Some(Effect::Ready(ready)) => live.ready = ready,
            Some(Effect::Started) => live.started = true,
            Some(Effect::Kill) if live.kill.is_none() && live.stopping.is_none() => {
                live.kill = Some(KillWhy::Probe(u.kind));
            }
            Some(Effect::Kill) | None => {}
        }
    }

    /// A postStart hook ended: the container counts as running now, or is killed.
    fn on_post_start(&mut self, id: &str, result: Result<(), String>) {
        let Some(rec) = self
            .rec
            .containers
            .iter_mut()
            .find(|c| c.id == id && c.exit.is_none())
        else {
            return;
        };
        match result {
            Ok(()) => {
                rec.post_start_pending = false;
                self.save();
            }
            Err(message) => {
                warn!(pod = %self.rec.name, container = %rec.name, %message, "postStart hook failed");
                if let Some(live) = self.live.get_mut(id) {
                    live.kill = Some(KillWhy::PostStartHook(message));
                }
            }
        }
    }

    /// The container's spec, by name and kind.
    fn spec_of<'a>(spec: &'a PodSpec, name: &str, init: bool) -> Option<&'a Container> {
        if init {
            spec.init_containers
                .iter()
                .flatten()
                .find(|c| c.name == name)
        } else {
            spec.containers.iter().find(|c| c.name == name)
        }
    }

    /// Keeps each running container's probes and kills in step: adopts instances a previous
    /// agent started, starts probes once a container runs (after its postStart hook), and
    /// begins the kills probes and hooks asked for.
    fn tend_live(&mut self, pod: &Pod, spec: &PodSpec) {
        let running: Vec<ContainerRecord> = self
            .rec
            .containers
            .iter()
            .filter(|r| r.exit.is_none() && !r.ephemeral && r.pid != 0)
            .cloned()
            .collect();
        for r in running {
            let Some(c) = Self::spec_of(spec, &r.name, r.init) else {
                continue;
            };
            if !self.live.contains_key(&r.id) {
                // Adopted from a previous agent: its hook (if any) is not run again, as the
                // kubelet does not; readiness starts from what was last reported.
                if r.post_start_pending {
                    if let Some(rec) = self.rec.containers.iter_mut().find(|x| x.id == r.id) {
                        rec.post_start_pending = false;
                    }
                    self.save();
                }
                let runtime = self.ctx.cfg.runtime.name();
                let reported = pod
                    .status
                    .as_ref()
                    .and_then(|s| {
                        if r.init {
                            s.init_container_statuses.as_ref()
                        } else {
                            s.container_statuses.as_ref()
                        }
                    })
                    .and_then(|ss| {
                        let id = format!("{runtime}://{}", r.id);
                        ss.iter()
                            .find(|s| s.container_id.as_deref() == Some(id.as_str()))
                    });
                let live = Live::new(
                    c,
                    reported.is_some_and(|s| s.ready),
                    reported.is_some_and(|s| s.started == Some(true)),
                );
                self.live.insert(r.id.clone(), live);
            }
            let pending = self
                .rec
                .containers
                .iter()
                .any(|x| x.id == r.id && x.post_start_pending);
            if !pending {
                self.start_probes(pod, c, &r);
            }
            self.begin_kill(pod, c, &r);
        }
    }

    /// Starts the instance's probe tasks, once.
    fn start_probes(&mut self, pod: &Pod, c: &Container, r: &ContainerRecord) {
        let pod_ip = self
            .rec
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned());
        let Some(live) = self.live.get_mut(&r.id) else {
            return;
        };
        if live.probes_started || live.stopping.is_some() || live.kill.is_some() {
            return;
        }
        live.probes_started = true;
        let probes = [
            (Kind::Startup, c.startup_probe.as_ref()),
            (Kind::Liveness, c.liveness_probe.as_ref()),
            (Kind::Readiness, c.readiness_probe.as_ref()),
        ];
        if probes.iter().all(|(_, p)| p.is_none()) {
            return;
        }
        // Initial delays count from the container's start, as upstream's do.
        let since_start = r
            .started_at
            .and_then(|t| jiff::Timestamp::now().duration_since(t).try_into().ok())
            .unwrap_or(Duration::ZERO);
        let started_at = Instant::now()
            .checked_sub(since_start)
            .unwrap_or_else(Instant::now);
        let pod = Arc::new(pod.clone());
        let fp = field_path(&pod, r.init, &c.name);
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            if kind == Kind::Startup && live.started {
                continue;
            }
            let target = prober::Target {
                pod: pod.clone(),
                field_path: fp.clone(),
                container_id: r.id.clone(),
                started_at,
                started: live.started_tx.subscribe(),
            };
            let spec = prober::Spec::new(kind, probe, c, pod_ip.as_deref());
            prober::spawn(
                self.ctx.clone(),
                target,
                spec,
                (kind == Kind::Startup).then(|| live.started_tx.clone()),
                live.tasks.clone(),
                self.probe_tx.clone(),
            );
        }
    }

    /// Begins a kill the worker decided on (failed liveness/startup probe, failed postStart
    /// hook): the Killing event, then preStop, the stop signal and SIGKILL in a task of its
    /// own; the exit comes back through the pleg and the restart policy takes it from there.
    fn begin_kill(&mut self, pod: &Pod, c: &Container, r: &ContainerRecord) {
        let Some(live) = self.live.get_mut(&r.id) else {
            return;
        };
        if live.stopping.is_some() {
            return;
        }
        let Some(why) = live.kill.take() else { return };
        live.tasks.cancel();
        let fp = field_path(pod, r.init, &c.name);
        let restarts = Self::restarts_on_failure(pod, c, r.init);
        let pod_grace = pod_grace(pod);
        let (message, grace) = match why {
            KillWhy::Probe(kind) => {
                let (word, probe) = match kind {
                    Kind::Startup => ("startup", c.startup_probe.as_ref()),
                    _ => ("liveness", c.liveness_probe.as_ref()),
                };
                let mut message = format!("Container {} failed {word} probe", c.name);
                if restarts {
                    message.push_str(", will be restarted");
                }
                // The probe's own terminationGracePeriodSeconds wins over the pod's.
                let grace = probe
                    .and_then(|p| p.termination_grace_period_seconds)
                    .unwrap_or(pod_grace);
                (message, grace)
            }
            KillWhy::PostStartHook(hook_message) => {
                self.ctx.recorder.container_event(
                    pod,
                    fp.clone(),
                    EventType::Warning,
                    "FailedPostStartHook",
                    hook_message.clone(),
                );
                // Shown while it waits to start again; one that will not restart just
                // shows its end (upstream's reason cache applies to restarts only).
                if restarts {
                    self.waiting.insert(
                        (c.name.clone(), r.init),
                        ("PostStartHookError".into(), hook_message),
                    );
                }
                ("FailedPostStartHook".to_string(), pod_grace)
            }
        };
        info!(pod = %self.rec.name, container = %c.name, %message, "killing container");
        self.ctx
            .recorder
            .container_event(pod, fp.clone(), EventType::Normal, "Killing", message);
        let cancel = CancellationToken::new();
        live.stopping = Some(cancel.clone());
        let req = StopRequest {
            pod: Some(Arc::new(pod.clone())),
            container: Some(c.clone()),
            container_id: r.id.clone(),
            field_path: fp,
            stop_signal: r.stop_signal,
            pod_ip: self
                .rec
                .sandbox
                .as_ref()
                .and_then(|s| s.ips.first().cloned()),
            grace: Duration::from_secs(grace.max(0) as u64),
            floor: true,
            pre_stop: true,
            after: Vec::new(),
            exited: watch::channel(HashSet::new()).1,
        };
        tokio::spawn(lifecycle::stop(self.ctx.clone(), req, cancel));
    }

    /// Whether a container counts as started: its postStart hook is done and its startup
    /// probe (if any) passed. Sidecars hold back the init containers after them until then.
    fn has_started(&self, c: &Container, init: bool) -> bool {
        self.rec
            .latest(&c.name, init)
            .filter(|r| r.exit.is_none())
            .is_some_and(|r| {
                !r.post_start_pending
                    && self
                        .live
                        .get(&r.id)
                        .map_or(c.startup_probe.is_none(), |l| l.started)
            })
    }

    /// Whether the container's newest instance runs its postStart hook still.
    fn post_start_pending(&self, name: &str, init: bool) -> bool {
        self.rec
            .latest(name, init)
            .is_some_and(|r| r.exit.is_none() && r.post_start_pending)
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

    /// When the pod's `activeDeadlineSeconds` (counted from its start on this node) ends.
    fn deadline(&self, pod: &Pod) -> Option<Instant> {
        let secs = pod.spec.as_ref()?.active_deadline_seconds?;
        let started = self.rec.start_time?;
        let end = started
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .ok()?;
        let left = jiff::Timestamp::now().duration_until(end);
        Some(match std::time::Duration::try_from(left) {
            Ok(d) => Instant::now() + d,
            Err(_) => Instant::now(), // already past
        })
    }

    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + RESYNC;
        if let Some(d) = self.deadline_at {
            wake = wake.min(d);
        }
        let retries = self.backoff.values().map(|b| b.until);
        let restarts = self.crash_backoff.values().filter_map(|b| b.retry_at);
        for at in retries.chain(restarts) {
            if at > Instant::now() && at < wake {
                wake = at;
            }
        }
        if let Some(t) = self.sandbox_retry {
            wake = wake.min(t);
        }
        wake
    }

    /// Whether a failed instance of `c` is started again (upstream's
    /// ShouldContainerBeRestarted for a non-zero exit): not under Never, except sidecars.
    fn restarts_on_failure(pod: &Pod, c: &Container, init: bool) -> bool {
        Self::restart_policy(pod) != "Never" || (init && is_sidecar(c))
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

        if let Err(e) = crate::volumes::sync(&self.ctx.client, pod, &self.pod_dir).await {
            if e.unreachable {
                self.ctx.api_unreachable(&e);
            } else {
                warn!(pod = %self.rec.name, error = %e, "setting up volumes");
            }
            self.ctx
                .recorder
                .pod_event(pod, EventType::Warning, "FailedMount", e.to_string());
            // Containers not started yet wait for their volumes (ContainerCreating);
            // running ones keep the last version they got.
            if self.rec.containers.is_empty() {
                return;
            }
        }
        self.tend_live(pod, &spec);
        let policy = Self::restart_policy(pod);
        if self.app_containers_done(&spec, &policy) {
            // The kubelet kills the pod once no app container runs or will run again:
            // sidecars stop (after the app, in reverse order) and are not restarted, so
            // a Job-like pod with a sidecar completes.
            if self.rec.containers.iter().any(|c| c.exit.is_none()) {
                info!(pod = %self.rec.name, "app containers done; stopping the sidecars");
                self.stop_all(pod, pod_grace(pod)).await;
            }
            return;
        }
        self.start_ephemeral(pod, &spec).await;
        // Init containers, one at a time; sidecars start in order and keep running.
        for c in spec.init_containers.iter().flatten() {
            let sidecar = is_sidecar(c);
            match self.rec.latest(&c.name, true).cloned() {
                None => {
                    self.start(pod, c, true, 0, None).await;
                    if !sidecar || !self.has_started(c, true) {
                        return;
                    }
                }
                Some(r) if r.exit.is_none() => {
                    if !sidecar || !self.has_started(c, true) {
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
            // As the kubelet starts containers one by one and waits out each postStart
            // hook, the containers after one whose hook runs wait too.
            match self.rec.latest(&c.name, false).cloned() {
                None => self.start(pod, c, false, 0, None).await,
                Some(r) if r.exit.is_none() => {}
                Some(r) => {
                    let code = r.exit.as_ref().map_or(0, |e| e.exit_code);
                    if restart_wanted(&policy, code) {
                        self.restart(pod, c, false, &r).await;
                    }
                }
            }
            if self.post_start_pending(&c.name, false) {
                return;
            }
        }
    }

    /// Every app container has exited and none will be restarted under `policy`.
    fn app_containers_done(&self, spec: &PodSpec, policy: &str) -> bool {
        !spec.containers.is_empty()
            && spec.containers.iter().all(|c| {
                let exit = self
                    .rec
                    .latest(&c.name, false)
                    .and_then(|r| r.exit.as_ref());
                exit.is_some_and(|e| !restart_wanted(policy, e.exit_code))
            })
    }

    /// Restarts an exited container once its backoff allows, as the kubelet's CrashLoopBackOff:
    /// the first restart at once, then after 10 s, 20 s, 40 s ... counted from the exit.
    async fn restart(&mut self, pod: &Pod, c: &Container, init: bool, last: &ContainerRecord) {
        let key = (c.name.clone(), init);
        let now = jiff::Timestamp::now();
        let exited = last.exit.as_ref().map_or(now, |e| e.finished_at);
        if let Some(b) = self.crash_backoff.get_mut(&key) {
            if let Some(wait) = b.remaining(exited, now) {
                b.retry_at = Some(Instant::now() + wait);
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    container::go_duration(b.delay).replace(".0s", "s"),
                    c.name,
                    self.rec.name,
                    self.rec.namespace,
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
        let delay = match self.crash_backoff.get(&key) {
            Some(b) if !b.expired(exited) => (b.delay * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        };
        self.crash_backoff.insert(
            key,
            CrashBackoff {
                delay,
                last_update: now,
                retry_at: None,
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
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        // The Service variables need the first list of Services (bounded wait).
        crate::service_cache::wait(&self.ctx.services, &self.rec.name).await;
        let objects = match crate::envsource::fetch(&self.ctx.client, ns, c).await {
            Ok(o) => o,
            Err(f) => return self.start_failed(pod, c, init, f),
        };
        let mut prepared = match container::prepare(
            &self.ctx,
            pod,
            &self.pod_dir,
            &sandbox,
            c,
            init,
            attempt,
            &img,
            &objects,
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
                let mut record = prepared.record;
                pleg::watch_exit(record.pid, record.id.clone(), self.exits_tx.clone());
                let post_start = c
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.post_start.clone())
                    .filter(|_| ephemeral.is_none());
                if ephemeral.is_none() {
                    self.live
                        .insert(record.id.clone(), Live::new(c, false, false));
                }
                if let Some(hook) = post_start {
                    record.post_start_pending = true;
                    self.spawn_post_start(pod, c, &record.id, hook);
                }
                let started = record.clone();
                self.rec.containers.push(record);
                if ephemeral.is_none() && !started.post_start_pending {
                    self.start_probes(pod, c, &started);
                }
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
                if f.reason == container::START_ERROR {
                    self.record_start_error(pod, c, init, prepared.record, f);
                } else {
                    self.start_failed(pod, c, init, f);
                }
            }
        }
    }

    /// Runs the container's postStart hook in a task of its own, so the worker keeps
    /// handling exits and deletion meanwhile; the outcome comes back on `hook_rx`.
    fn spawn_post_start(
        &self,
        pod: &Pod,
        c: &Container,
        id: &str,
        hook: k8s_openapi::api::core::v1::LifecycleHandler,
    ) {
        let Some(live) = self.live.get(id) else {
            return;
        };
        let cancel = live.tasks.clone();
        let ctx = self.ctx.clone();
        let pod = pod.clone();
        let c = c.clone();
        let id = id.to_string();
        let pod_ip = self
            .rec
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned());
        let tx = self.hook_tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = lifecycle::run_handler(&ctx, &pod, &c, &id, &hook, pod_ip.as_deref()) => {
                    let _ = tx.send((id, r));
                }
            }
        });
    }

    /// The log line and `Failed` event of a container that did not start (image pulls
    /// record their own events).
    fn report_start_failure(&self, pod: &Pod, c: &Container, init: bool, f: &StartFailure) {
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
    }

    fn start_failed(&mut self, pod: &Pod, c: &Container, init: bool, f: StartFailure) {
        let key = (c.name.clone(), init);
        self.report_start_failure(pod, c, init, &f);
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

    /// A container the runtime could not run: as the kubelet on containerd reports it, an
    /// instance that ended at once (`StartError`, exit 128, the runtime's message) while the
    /// container waits as `RunContainerError`; the restart policy and crash backoff apply.
    fn record_start_error(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        mut record: ContainerRecord,
        f: StartFailure,
    ) {
        let key = (c.name.clone(), init);
        self.report_start_failure(pod, c, init, &f);
        let message = f.message;
        record.pid = 0;
        // It never ran: containerd reports the zero Unix time as its start.
        record.started_at = Some(jiff::Timestamp::UNIX_EPOCH);
        record.post_start_pending = false;
        record.exit = Some(ExitRecord {
            exit_code: container::START_ERROR_EXIT_CODE,
            signal: None,
            finished_at: jiff::Timestamp::now(),
            reason: container::START_ERROR.into(),
            message: Some(message.clone()),
        });
        self.rec.containers.push(record);
        self.prune_old_instances(&c.name, init);
        self.backoff.remove(&key);
        // Waiting only when it will be tried again (upstream's ShouldContainerBeRestarted);
        // under Never it stays terminated.
        if Self::restarts_on_failure(pod, c, init) {
            self.waiting
                .insert(key, ("RunContainerError".into(), message));
        }
        self.save();
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
        if let Some(live) = self.live.remove(id) {
            live.end();
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

    /// Stops every running container, each on its own: its preStop hook within the grace
    /// period, the stop signal, SIGKILL when the period (or the 2 s a late hook leaves) is
    /// over; at once if the pod disappears from the API meanwhile.
    async fn terminate(
        &mut self,
        pod: Option<&Pod>,
        grace: i64,
        updates: &mut watch::Receiver<PodUpdate>,
    ) {
        // Probes and postStart hooks end with the pod.
        for live in self.live.values() {
            live.tasks.cancel();
        }
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
        let grace = Duration::from_secs(grace.max(0) as u64);
        let stops = CancellationToken::new();
        let (exited_tx, exited_rx) = watch::channel(HashSet::new());
        let order = pod
            .and_then(|p| p.spec.as_ref())
            .map(|spec| termination_order(spec, &running))
            .unwrap_or_default();
        let shared_pod = pod.map(|p| Arc::new(p.clone()));
        let pod_ip = self
            .rec
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned());
        for c in &running {
            let fp = pod
                .map(|p| field_path(p, c.init, &c.name))
                .unwrap_or_default();
            if let Some(pod) = pod {
                self.ctx.recorder.container_event(
                    pod,
                    fp.clone(),
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
            }
            // A kill already under way has run its hook; this stop takes over its timer.
            let earlier = self.live.get_mut(&c.id).and_then(|l| l.stopping.take());
            if let Some(s) = &earlier {
                s.cancel();
            }
            let container = pod
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| Self::spec_of(s, &c.name, c.init))
                .filter(|_| !c.ephemeral)
                .cloned();
            let req = StopRequest {
                pod: shared_pod.clone(),
                container,
                container_id: c.id.clone(),
                field_path: fp,
                stop_signal: c.stop_signal,
                pod_ip: pod_ip.clone(),
                grace,
                floor: false,
                pre_stop: earlier.is_none(),
                after: order.get(&c.id).cloned().unwrap_or_default(),
                exited: exited_rx.clone(),
            };
            tokio::spawn(lifecycle::stop(self.ctx.clone(), req, stops.child_token()));
        }
        // The stops send SIGKILL themselves; this is the backstop, after the longest a
        // preStop hook can stretch the grace period.
        let slack = if grace.is_zero() {
            Duration::ZERO
        } else {
            lifecycle::MIN_GRACE + Duration::from_secs(1)
        };
        let deadline = Instant::now() + grace + slack;
        let mut killed = grace.is_zero();
        loop {
            if self.rec.containers.iter().all(|c| c.exit.is_some()) {
                break;
            }
            tokio::select! {
                Some(id) = self.exits_rx.recv() => {
                    self.on_exit(&id).await;
                    exited_tx.send_modify(|done| {
                        done.insert(id);
                    });
                }
                _ = tokio::time::sleep_until(deadline.into()), if !killed => {
                    killed = true;
                    self.kill_remaining().await;
                }
                changed = updates.changed(), if !killed => {
                    let gone = changed.is_err() || matches!(&*updates.borrow(), PodUpdate::Gone);
                    if gone {
                        killed = true;
                        stops.cancel();
                        self.kill_remaining().await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(10)), if killed => {
                    warn!(pod = %self.rec.name, "containers did not report their exit after SIGKILL");
                    break;
                }
            }
        }
        // Hooks still running in containers that ended on their own are abandoned.
        stops.cancel();
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
        for (_, live) in self.live.drain() {
            live.end();
        }
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
        crate::volumes::teardown(&self.pod_dir);
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
            Err(e) if crate::unreachable(&e) => self.ctx.api_unreachable(&e),
            Err(e) => warn!(pod = %self.rec.name, error = %e, "confirming pod deletion"),
        }
    }

    /// One container's status. `has_init`: the pod has init containers, so app containers
    /// not created yet wait as `PodInitializing` (upstream's default waiting state).
    fn container_status(&self, c: &Container, init: bool, has_init: bool) -> ContainerStatus {
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
        let default_waiting = || {
            if has_init && !init {
                waiting("PodInitializing", None)
            } else {
                waiting("ContainerCreating", None)
            }
        };
        let (state, last_state) = match latest {
            None => {
                let state = match override_waiting {
                    Some((r, m)) => waiting(r, Some(m.clone())),
                    None => default_waiting(),
                };
                (state, None)
            }
            Some(r) if r.exit.is_none() => {
                // Not running for the API until its postStart hook is done: upstream's
                // status still shows the state from before the start.
                let state = if r.post_start_pending {
                    default_waiting()
                } else {
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: r.started_at.map(Time),
                        }),
                        ..Default::default()
                    }
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
        let live = latest.and_then(|r| self.live.get(&r.id));
        let started = running && live.map_or(c.startup_probe.is_none(), |l| l.started);
        // A container is never ready before it has started (upstream's prober manager).
        let ready = started && live.map_or(c.readiness_probe.is_none(), |l| l.ready);
        ContainerStatus {
            name: c.name.clone(),
            image: latest
                .map(|r| r.image_ref.clone())
                .filter(|s| !s.is_empty())
                .or_else(|| c.image.clone())
                .unwrap_or_default(),
            image_id: latest.map(|r| r.image_id.clone()).unwrap_or_default(),
            container_id: latest.map(|r| format!("{runtime}://{}", r.id)),
            ready,
            restart_count: latest.map_or(0, |r| r.attempt),
            started: Some(started),
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
        let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
        let statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| self.container_status(c, false, has_init))
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
                ..self.container_status(&c, false, has_init)
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
        let mut conditions = podstatus::conditions(
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
        let (phase, reason, message) = if let Some(m) = &self.rec.evicted {
            // As the eviction manager, which also marks the pod a disruption target.
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("TerminationByKubelet".into()),
                message: Some(m.clone()),
                last_transition_time: prev
                    .iter()
                    .find(|c| c.type_ == "DisruptionTarget")
                    .and_then(|c| c.last_transition_time.clone())
                    .or_else(|| Some(now.clone())),
                ..Default::default()
            });
            ("Failed", Some("Evicted".to_string()), Some(m.clone()))
        } else if self.rec.deadline_exceeded {
            (
                "Failed",
                Some("DeadlineExceeded".to_string()),
                Some(DEADLINE_MESSAGE.to_string()),
            )
        } else {
            (phase, None, None)
        };
        PodStatus {
            phase: Some(phase.into()),
            reason,
            message,
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
        let api_conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or(&[]);
        let ours = status.conditions.as_deref().unwrap_or(&[]);
        if self.last_status.as_ref() == Some(&status)
            && crate::podstatus::conditions_agree(api_conditions, ours)
        {
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
                self.ctx.api_answered();
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
            Err(e) if crate::unreachable(&e) => self.ctx.api_unreachable(&e),
            Err(e) => warn!(pod = %self.rec.name, error = %e, "updating pod status"),
        }
    }
}

/// "sandbox +41ms, image:app +43ms, started:app +88ms, ready +90ms" — each stage's end,
/// relative to when the agent accepted the pod.
/// Whether an app container that exited with `code` is started again under `policy`.
fn restart_wanted(policy: &str, code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => code != 0,
        _ => false,
    }
}

/// The pod's `terminationGracePeriodSeconds` (30 when unset).
fn pod_grace(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// Which running containers each running sidecar waits for before its stop signal: the
/// app containers and the sidecars defined after it, so sidecars stop after the app and
/// in reverse order (upstream's `terminationOrdering`). Keyed by container id.
fn termination_order(spec: &PodSpec, running: &[ContainerRecord]) -> HashMap<String, Vec<String>> {
    let app: Vec<String> = running
        .iter()
        .filter(|r| !r.init && !r.ephemeral)
        .map(|r| r.id.clone())
        .collect();
    let sidecars: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .collect();
    let running_sidecar = |c: &Container| running.iter().find(|r| r.init && r.name == c.name);
    let mut order = HashMap::new();
    for (i, c) in sidecars.iter().enumerate() {
        let Some(r) = running_sidecar(c) else {
            continue;
        };
        let later = sidecars[i + 1..]
            .iter()
            .filter_map(|l| running_sidecar(l))
            .map(|l| l.id.clone());
        order.insert(r.id.clone(), app.iter().cloned().chain(later).collect());
    }
    order
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn a_restart_waits_its_delay_counted_from_the_exit() {
        let b = CrashBackoff {
            delay: Duration::from_secs(20),
            last_update: at(0),
            retry_at: None,
        };
        // Exited at 30 s (the container ran a while): 20 s from then, not from the restart.
        assert_eq!(b.remaining(at(30), at(35)), Some(Duration::from_secs(15)));
        assert_eq!(b.remaining(at(30), at(50)), None);
    }

    #[test]
    fn a_container_that_ran_ten_minutes_starts_its_backoff_over() {
        let b = CrashBackoff {
            delay: BACKOFF_MAX,
            last_update: at(0),
            retry_at: None,
        };
        assert!(b.remaining(at(599), at(600)).is_some());
        assert!(!b.expired(at(600)));
        assert!(b.expired(at(601)));
        assert_eq!(b.remaining(at(601), at(602)), None);
    }
}

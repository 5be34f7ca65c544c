//! Container probes, as the kubelet's `prober`: one task per probe per running container
//! instance, started once the container runs (after its postStart hook) and cancelled when
//! it stops. A task runs its action every period after the initial delay, folds results
//! through the success/failure thresholds ([`Counter`], pure) and tells the pod worker when
//! the published result changes; the pod worker owns what follows (ready, started, kills).
//! Startup gates the other two: liveness and readiness wait until the startup probe passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::events::EventType;
use crate::handlers::{self, ActionError, HttpTarget};
use crate::Ctx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As the kubelet's events name it ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// Tries per run when the action errors (upstream's `maxProbeRetries`).
const MAX_TRIES: usize = 3;

/// A result crossing its threshold, for the pod worker.
#[derive(Debug, Clone)]
pub struct Update {
    pub container_id: String,
    pub kind: Kind,
    pub success: bool,
}

/// What a published result means for its container; the pod worker applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Readiness: the container's `ready`.
    Ready(bool),
    /// The startup probe passed: the container counts as started.
    Started,
    /// A failed liveness or startup probe: the container is killed (and restarted as its
    /// restart policy says).
    Kill,
}

/// Upstream's reading of a result: readiness sets `ready`, startup sets `started` or kills,
/// liveness kills on failure and changes nothing on success.
pub fn effect(kind: Kind, success: bool) -> Option<Effect> {
    match (kind, success) {
        (Kind::Readiness, ready) => Some(Effect::Ready(ready)),
        (Kind::Startup, true) => Some(Effect::Started),
        (Kind::Startup | Kind::Liveness, false) => Some(Effect::Kill),
        (Kind::Liveness, true) => None,
    }
}

/// Thresholds over consecutive results, as upstream's worker counts them: a result is
/// published once it has been seen `threshold` times in a row, and only when it differs
/// from what was published before.
#[derive(Debug)]
pub struct Counter {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    published: Option<bool>,
}

impl Counter {
    pub fn new(success_threshold: i32, failure_threshold: i32, initial: Option<bool>) -> Counter {
        Counter {
            success_threshold: success_threshold.max(1) as u32,
            failure_threshold: failure_threshold.max(1) as u32,
            last: None,
            run: 0,
            published: initial,
        }
    }

    /// Takes one result; returns the result to publish, if any.
    pub fn observe(&mut self, success: bool) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.published == Some(success) {
            return None;
        }
        self.published = Some(success);
        Some(success)
    }
}

/// What a probe does, resolved against the container and pod IP.
#[derive(Debug, Clone)]
enum Action {
    Exec(Vec<String>),
    Http(HttpTarget),
    Tcp {
        host: String,
        port: u16,
    },
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
    /// Resolution failed (a named port the container lacks): every run errors.
    Invalid(String),
}

/// One probe of one container instance.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    action: Action,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: i32,
    failure_threshold: i32,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).unwrap_or(default) as u64)
}

impl Spec {
    /// The probe's settings with upstream's defaults (period 10 s, timeout 1 s, thresholds 1
    /// and 3; liveness and startup must succeed once).
    pub fn new(kind: Kind, p: &Probe, c: &Container, pod_ip: Option<&str>) -> Spec {
        let action = Self::action(p, c, pod_ip).unwrap_or_else(|e| Action::Invalid(e.to_string()));
        let success_threshold = match kind {
            Kind::Readiness => p.success_threshold.unwrap_or(1),
            Kind::Liveness | Kind::Startup => 1,
        };
        Spec {
            kind,
            action,
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold,
            failure_threshold: p.failure_threshold.filter(|f| *f > 0).unwrap_or(3),
        }
    }

    fn action(p: &Probe, c: &Container, pod_ip: Option<&str>) -> Result<Action, ActionError> {
        let ip = || {
            pod_ip
                .map(str::to_string)
                .ok_or_else(|| ActionError::Errored("the pod has no IP yet".into()))
        };
        if let Some(e) = &p.exec {
            return Ok(Action::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(h) = &p.http_get {
            return Ok(Action::Http(HttpTarget::from_action(h, c, pod_ip)?));
        }
        if let Some(t) = &p.tcp_socket {
            let host = match t.host.clone().filter(|h| !h.is_empty()) {
                Some(h) => h,
                None => ip()?,
            };
            return Ok(Action::Tcp {
                host,
                port: handlers::resolve_port(&t.port, c)?,
            });
        }
        if let Some(g) = &p.grpc {
            let port = u16::try_from(g.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ActionError::Errored(format!("invalid port number: {}", g.port)))?;
            return Ok(Action::Grpc {
                host: ip()?,
                port,
                service: g.service.clone().unwrap_or_default(),
            });
        }
        Err(ActionError::Errored("missing probe handler".into()))
    }
}

/// The probe's verdict on one run: Ok(success, output) or an error (not counted).
async fn run_once(ctx: &Ctx, container_id: &str, spec: &Spec) -> Result<(bool, String), String> {
    match &spec.action {
        Action::Exec(cmd) => match handlers::exec(ctx, container_id, cmd, Some(spec.timeout)).await
        {
            Ok(out) => Ok((out.code == 0, out.output)),
            // Upstream's exec prober (ExecProbeTimeout): a timeout is a failure.
            Err(ActionError::TimedOut(m)) => Ok((false, m)),
            Err(ActionError::Errored(m)) => Err(m),
        },
        Action::Http(target) => Ok(http_probe(target, spec.timeout).await),
        Action::Tcp { host, port } => {
            match handlers::tcp_connect(host, *port, spec.timeout).await {
                Ok(()) => Ok((true, String::new())),
                Err(e) => Ok((false, e)),
            }
        }
        Action::Grpc {
            host,
            port,
            service,
        } => match handlers::grpc_check(host, *port, service, spec.timeout).await {
            Ok(()) => Ok((true, String::new())),
            Err(e) => Ok((false, e)),
        },
        Action::Invalid(e) => Err(e.clone()),
    }
}

/// Redirects a probe follows, as Go's client (then "stopped after 10 redirects").
const MAX_REDIRECTS: usize = 10;

/// What an HTTP probe concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HttpVerdict {
    Success,
    /// A redirect to another host: a success, with upstream's warning.
    Warning(String),
    Failure(String),
}

/// The verdict on one answer, or the target to follow a same-host redirect to.
fn judge(
    first: &HttpTarget,
    current: &HttpTarget,
    answer: &handlers::HttpAnswer,
) -> Result<HttpVerdict, HttpTarget> {
    let code = answer.status;
    if (300..400).contains(&code) {
        if let Some(next) = answer.location.as_deref().and_then(|l| current.redirect(l)) {
            // Upstream's client follows a redirect only to the probe's own host.
            if next.host == first.host {
                return Err(next);
            }
            return Ok(HttpVerdict::Warning(format!(
                "Probe terminated redirects, Response body: {}",
                answer.body
            )));
        }
    }
    if (200..400).contains(&code) {
        Ok(HttpVerdict::Success)
    } else {
        Ok(HttpVerdict::Failure(format!(
            "HTTP probe failed with statuscode: {code}"
        )))
    }
}

/// An HTTP probe: GETs within one overall timeout, following same-host redirects.
async fn http_probe(target: &HttpTarget, timeout: Duration) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    let mut current = target.clone();
    for _ in 0..=MAX_REDIRECTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let answer =
            match handlers::http_get(&current, Some(left), handlers::USER_AGENT, true).await {
                Ok(a) => a,
                Err(e) => return (false, e),
            };
        match judge(target, &current, &answer) {
            Ok(HttpVerdict::Success) => return (true, String::new()),
            Ok(HttpVerdict::Warning(w)) => return (true, w),
            Ok(HttpVerdict::Failure(f)) => return (false, f),
            Err(next) => current = next,
        }
    }
    (
        false,
        format!(
            "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
            current.url()
        ),
    )
}

/// Everything a probe task needs about its container instance.
pub struct Target {
    pub pod: Arc<Pod>,
    pub field_path: String,
    pub container_id: String,
    /// When the container started (initial delays count from here).
    pub started_at: Instant,
    /// Becomes true once the container counts as started (startup probe passed, or none).
    pub started: watch::Receiver<bool>,
}

/// Starts one probe task. It ends when `cancel` fires, after a liveness or startup failure
/// is published (upstream's "on hold": the container is being restarted), or once a
/// startup probe has passed.
pub fn spawn(
    ctx: Arc<Ctx>,
    target: Target,
    spec: Spec,
    started_tx: Option<Arc<watch::Sender<bool>>>,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<Update>,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(ctx, target, spec, started_tx, tx) => {}
        }
    });
}

async fn run(
    ctx: Arc<Ctx>,
    mut target: Target,
    spec: Spec,
    started_tx: Option<Arc<watch::Sender<bool>>>,
    tx: mpsc::UnboundedSender<Update>,
) {
    if spec.kind != Kind::Startup && target.started.wait_for(|s| *s).await.is_err() {
        return;
    }
    tokio::time::sleep_until((target.started_at + spec.initial_delay).into()).await;
    // Readiness starts out failed, liveness passed, startup unknown (upstream's initial values).
    let initial = match spec.kind {
        Kind::Readiness => Some(false),
        Kind::Liveness => Some(true),
        Kind::Startup => None,
    };
    let mut counter = Counter::new(spec.success_threshold, spec.failure_threshold, initial);
    let mut ticker = tokio::time::interval(spec.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // As upstream's prober, a run that errors is retried (three tries in all).
        let mut attempt = run_once(&ctx, &target.container_id, &spec).await;
        for _ in 1..MAX_TRIES {
            if attempt.is_ok() {
                break;
            }
            attempt = run_once(&ctx, &target.container_id, &spec).await;
        }
        let warn = |reason: &str, what: &str, detail: &dyn std::fmt::Display| {
            ctx.recorder.container_event(
                &target.pod,
                target.field_path.clone(),
                EventType::Warning,
                reason,
                format!("{} probe {what}: {detail}", spec.kind.title()),
            );
        };
        let (success, output) = match attempt {
            Ok(r) => r,
            Err(e) => {
                debug!(container = %target.container_id, probe = spec.kind.title(), error = %e, "probe errored");
                warn("Unhealthy", "errored", &e);
                continue;
            }
        };
        if success && !output.is_empty() {
            warn("ProbeWarning", "warning", &output);
        }
        if !success {
            warn("Unhealthy", "failed", &output);
        }
        let Some(result) = counter.observe(success) else {
            continue;
        };
        debug!(container = %target.container_id, probe = spec.kind.title(), result, "probe result changed");
        let _ = tx.send(Update {
            container_id: target.container_id.clone(),
            kind: spec.kind,
            success: result,
        });
        match (spec.kind, result) {
            (Kind::Startup, true) => {
                if let Some(s) = &started_tx {
                    let _ = s.send(true);
                }
                return;
            }
            (Kind::Liveness | Kind::Startup, false) => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_its_success_threshold_and_publishes_changes_once() {
        let mut c = Counter::new(2, 3, Some(false));
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(true), Some(true));
        assert_eq!(c.observe(true), None, "no repeat of a published result");
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(true), None, "a success resets the failure run");
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(false));
        assert_eq!(c.observe(false), None);
    }

    #[test]
    fn results_mean_what_they_mean_upstream() {
        assert_eq!(effect(Kind::Readiness, false), Some(Effect::Ready(false)));
        assert_eq!(effect(Kind::Readiness, true), Some(Effect::Ready(true)));
        assert_eq!(effect(Kind::Startup, true), Some(Effect::Started));
        assert_eq!(effect(Kind::Startup, false), Some(Effect::Kill));
        assert_eq!(effect(Kind::Liveness, false), Some(Effect::Kill));
        assert_eq!(effect(Kind::Liveness, true), None);
    }

    #[test]
    fn readiness_failures_from_the_start_are_not_news() {
        let mut c = Counter::new(1, 1, Some(false));
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(true), Some(true));
    }

    #[test]
    fn liveness_fails_after_failure_threshold_in_a_row() {
        let mut c = Counter::new(1, 3, Some(true));
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(false));
    }

    #[test]
    fn startup_publishes_its_first_verdict() {
        let mut c = Counter::new(1, 2, None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(true), Some(true));
        let mut c = Counter::new(1, 2, None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(false));
    }

    #[test]
    fn http_answers_and_redirects_are_judged_as_upstream() {
        let first = HttpTarget {
            https: false,
            host: "10.0.0.5".into(),
            port: 80,
            path: "/".into(),
            headers: vec![],
        };
        let answer = |status, location: Option<&str>| handlers::HttpAnswer {
            status,
            location: location.map(str::to_string),
            body: "moved".into(),
        };
        assert_eq!(
            judge(&first, &first, &answer(204, None)),
            Ok(HttpVerdict::Success)
        );
        assert_eq!(
            judge(&first, &first, &answer(500, None)),
            Ok(HttpVerdict::Failure(
                "HTTP probe failed with statuscode: 500".into()
            ))
        );
        assert_eq!(
            judge(&first, &first, &answer(302, None)),
            Ok(HttpVerdict::Success)
        );
        let next = judge(&first, &first, &answer(302, Some("/healthz"))).expect_err("follow");
        assert_eq!(next.url(), "http://10.0.0.5:80/healthz");
        // Another port on the same host is still followed; another host is not.
        assert!(judge(&first, &first, &answer(301, Some("http://10.0.0.5:81/"))).is_err());
        assert_eq!(
            judge(&first, &first, &answer(301, Some("http://example.com/"))),
            Ok(HttpVerdict::Warning(
                "Probe terminated redirects, Response body: moved".into()
            ))
        );
    }

    #[test]
    fn defaults_follow_upstream() {
        let p = Probe {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec!["true".into()]),
            }),
            success_threshold: Some(5),
            ..Default::default()
        };
        let s = Spec::new(Kind::Liveness, &p, &Container::default(), None);
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.failure_threshold, 3);
        assert_eq!(s.success_threshold, 1, "liveness must succeed once");
        let s = Spec::new(Kind::Readiness, &p, &Container::default(), None);
        assert_eq!(s.success_threshold, 5);
        let tcp = Probe {
            tcp_socket: Some(Default::default()),
            ..Default::default()
        };
        let s = Spec::new(Kind::Readiness, &tcp, &Container::default(), None);
        assert!(matches!(s.action, Action::Invalid(_)));
    }
}

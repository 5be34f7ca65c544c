//! Container lifecycle hooks and the stop sequence they belong to, as the kubelet's
//! lifecycle handler runner and `killContainer`: postStart and preStop handlers (exec,
//! httpGet, sleep) with upstream's failure messages, and the stop of one container —
//! preStop within the grace period, then the stop signal, then SIGKILL when time is up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::events::EventType;
use crate::handlers::{self, ActionError, HttpTarget};
use crate::Ctx;

/// A container whose preStop hook used up (or overran) the grace period still gets this
/// long between the stop signal and SIGKILL (upstream's `minimumGracePeriodInSeconds`; the
/// seed's "small (2 second) extended grace period").
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// `name_namespace(uid)`, as the kubelet's `format.Pod`.
fn pod_format(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Runs one hook handler to its end. Err carries upstream's message for the
/// FailedPostStartHook / FailedPreStopHook event. Dropping the future abandons the hook
/// (an exec's runtime process is killed).
pub async fn run_handler(
    ctx: &Ctx,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    h: &LifecycleHandler,
    pod_ip: Option<&str>,
) -> Result<(), String> {
    let who = format!("for Container {:?} in Pod {:?}", c.name, pod_format(pod));
    if let Some(e) = &h.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let (err, output) = match handlers::exec(ctx, container_id, &cmd, None).await {
            Ok(out) if out.code == 0 => return Ok(()),
            Ok(out) => (
                format!("command '{}' exited with {}: ", cmd.join(" "), out.code),
                out.output,
            ),
            Err(ActionError::Errored(m) | ActionError::TimedOut(m)) => (m, String::new()),
        };
        return Err(format!(
            "Exec lifecycle hook ([{}]) {who} failed - error: {err}, message: {output:?}",
            cmd.join(" ")
        ));
    }
    if let Some(g) = &h.http_get {
        let path = g.path.clone().unwrap_or_default();
        let fail = |e: String| format!("HTTP lifecycle hook ({path}) {who} failed - error: {e}");
        let target = HttpTarget::from_action(g, c, pod_ip).map_err(|e| fail(e.to_string()))?;
        // Upstream's hook fails only when the request does; any status code will do.
        return handlers::http_get(&target, None, handlers::HOOK_USER_AGENT, false)
            .await
            .map(drop)
            .map_err(fail);
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err(format!(
        "Cannot run handler: invalid handler {who}: no exec, httpGet or sleep"
    ))
}

/// One container to stop.
pub struct StopRequest {
    /// The pod and the container's spec, for the preStop hook and its event; without
    /// them (the pod left the API) there is no hook.
    pub pod: Option<Arc<Pod>>,
    pub container: Option<Container>,
    pub container_id: String,
    pub field_path: String,
    pub stop_signal: i32,
    pub pod_ip: Option<String>,
    pub grace: Duration,
    /// Whether the container gets at least [`MIN_GRACE`] after its stop signal even
    /// without a hook (kills the kubelet decides on; deletion honours the asked grace).
    pub floor: bool,
    /// Whether to run the preStop hook (not again when a stop is already under way).
    pub pre_stop: bool,
    /// Containers (ids) that must exit before this one gets its stop signal: a sidecar
    /// waits for the app containers and the sidecars after it (upstream's termination
    /// ordering), within the grace period.
    pub after: Vec<String>,
    /// The ids of the pod's containers that have exited so far.
    pub exited: tokio::sync::watch::Receiver<HashSet<String>>,
}

/// Stops one container: preStop within the grace period (cut when the period ends), the
/// stop signal, then SIGKILL once the grace period — or the 2 s a late hook leaves it — is
/// over. Returns once SIGKILL is sent, or when `cancel` fires (the container exited).
pub async fn stop(ctx: Arc<Ctx>, req: StopRequest, cancel: CancellationToken) {
    let start = Instant::now();
    let mut kill_at = start + req.grace;
    if req.floor {
        kill_at = kill_at.max(start + MIN_GRACE);
    }
    let hook = req
        .container
        .as_ref()
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref());
    if let (true, false, Some(pod), Some(c), Some(h)) = (
        req.pre_stop,
        req.grace.is_zero(),
        req.pod.as_ref(),
        req.container.as_ref(),
        hook,
    ) {
        let run = run_handler(&ctx, pod, c, &req.container_id, h, req.pod_ip.as_deref());
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(req.grace, run) => match r {
                Ok(Ok(())) => debug!(container = %req.container_id, "preStop hook done"),
                Ok(Err(message)) => ctx.recorder.container_event(
                    pod,
                    req.field_path.clone(),
                    EventType::Warning,
                    "FailedPreStopHook",
                    message,
                ),
                Err(_) => info!(container = %req.container_id, grace = ?req.grace,
                    "preStop hook not completed in the grace period"),
            },
        }
        kill_at = kill_at.max(Instant::now() + MIN_GRACE);
    }
    if !req.after.is_empty() && !req.grace.is_zero() {
        let mut exited = req.exited.clone();
        let turn = exited.wait_for(|done| req.after.iter().all(|id| done.contains(id)));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = turn => {}
            _ = tokio::time::sleep_until((start + req.grace).into()) => {
                info!(container = %req.container_id, "containers it waits for outlived the grace period");
            }
        }
        // As after a preStop hook, the stop signal always gets its short window.
        kill_at = kill_at.max(Instant::now() + MIN_GRACE);
    }
    let signal = if req.grace.is_zero() {
        libc::SIGKILL
    } else {
        req.stop_signal
    };
    if let Err(e) = ctx.runtime.kill(&req.container_id, signal).await {
        debug!(container = %req.container_id, error = %e, "signalling container");
    }
    if signal == libc::SIGKILL {
        return;
    }
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep_until(kill_at.into()) => {
            if let Err(e) = ctx.runtime.kill(&req.container_id, libc::SIGKILL).await {
                debug!(container = %req.container_id, error = %e, "killing container");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn pods_are_named_as_the_kubelet_formats_them() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(pod_format(&pod), "web_prod(u-1)");
    }
}

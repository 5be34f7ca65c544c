//! Table rows as kubectl prints them (the server-side `Table` cells).
//!
//! Owns: the pod row with its STATUS / READY / RESTARTS logic (`printPod`, including
//! restartable-init-container "sidecar" handling), the node and event rows, and
//! apimachinery's `HumanDuration` used for every AGE-like column.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// One `kubectl get pods -o wide` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    pub ready: String,
    pub status: String,
    pub restarts: String,
    pub age: String,
    pub ip: String,
    pub node: String,
    pub nominated_node: String,
    pub readiness_gates: String,
}

/// apimachinery's `duration.HumanDuration`: two significant units at most, coarser as the
/// duration grows; slightly negative durations (clock skew) print as `0s`.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: `<unknown>` for a missing timestamp.
pub fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) if t != Timestamp::UNIX_EPOCH => human_duration(now.duration_since(t)),
        _ => "<unknown>".into(),
    }
}

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn condition_true(conds: &[PodCondition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

fn last_terminated(cs: &ContainerStatus) -> Option<Timestamp> {
    cs.last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| ts(&t.finished_at))
}

/// `printPod`.
pub fn pod_row(pod: &Pod, now: Timestamp) -> PodRow {
    let default_spec = Default::default();
    let default_status = Default::default();
    let spec: &k8s_openapi::api::core::v1::PodSpec = pod.spec.as_ref().unwrap_or(&default_spec);
    let status: &k8s_openapi::api::core::v1::PodStatus =
        pod.status.as_ref().unwrap_or(&default_status);
    let conditions = status.conditions.as_deref().unwrap_or(&[]);

    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut total = spec.containers.len();
    let mut ready = 0usize;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| phase.clone());
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }

    let inits = spec.init_containers.as_deref().unwrap_or(&[]);
    let sidecars: BTreeSet<&str> = inits
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    total += sidecars.len();

    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += i64::from(c.restart_count);
        if let Some(t) = last_terminated(c) {
            last_restart = last_restart.max(Some(t));
        }
        let is_sidecar = sidecars.contains(c.name.as_str());
        if is_sidecar {
            sidecar_restarts += i64::from(c.restart_count);
            if let Some(t) = last_terminated(c) {
                last_sidecar_restart = last_sidecar_restart.max(Some(t));
            }
        }
        let state = c.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_sidecar && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(c.restart_count);
            if let Some(t) = last_terminated(c) {
                last_restart = last_restart.max(Some(t));
            }
            let state = c.state.clone().unwrap_or_default();
            if let Some(r) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.clone().filter(|r| !r.is_empty()) {
                    Some(r) => r,
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is still running.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".into();
    } else if pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded" && phase != "Failed"
    {
        reason = "Terminating".into();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 && t != Timestamp::UNIX_EPOCH => {
            format!("{restarts} ({} ago)", since(Some(t), now))
        }
        _ => restarts.to_string(),
    };

    let or_none = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("<none>").to_string();
    let ip = or_none(
        status
            .pod_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .map(|p| p.ip.as_str()),
    );
    let readiness_gates = match spec.readiness_gates.as_deref() {
        Some(gates) if !gates.is_empty() => {
            let ok = gates
                .iter()
                .filter(|g| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == g.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{ok}/{}", gates.len())
        }
        _ => "<none>".into(),
    };
    PodRow {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts: restarts_str,
        age: since(ts(&pod.metadata.creation_timestamp), now),
        ip,
        node: or_none(spec.node_name.as_deref()),
        nominated_node: or_none(status.nominated_node_name.as_deref()),
        readiness_gates,
    }
}

/// One `kubectl get nodes -o wide` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub status: String,
    pub roles: String,
    pub age: String,
    pub version: String,
    pub internal_ip: String,
    pub external_ip: String,
    pub os_image: String,
    pub kernel_version: String,
    pub container_runtime: String,
}

/// `printNode`: STATUS from the Ready condition (+ `SchedulingDisabled`), ROLES from
/// `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels.
pub fn node_row(node: &Node, now: Timestamp) -> NodeRow {
    let status = node.status.clone().unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .rfind(|c| c.type_ == "Ready")
    {
        parts.push(if c.status == "True" {
            "Ready".to_string()
        } else {
            "NotReady".to_string()
        });
    }
    if parts.is_empty() {
        parts.push("Unknown".into());
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        parts.push("SchedulingDisabled".into());
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let mut roles = BTreeSet::new();
    for (k, v) in labels {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v.clone());
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let addr = |t: &str| {
        status
            .addresses
            .iter()
            .flatten()
            .find(|a| a.type_ == t)
            .map(|a| a.address.clone())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = status.node_info.clone().unwrap_or_default();
    let unknown = |s: String| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s
        }
    };
    NodeRow {
        name: node.metadata.name.clone().unwrap_or_default(),
        status: parts.join(","),
        roles,
        age: since(ts(&node.metadata.creation_timestamp), now),
        version: info.kubelet_version.clone(),
        internal_ip: addr("InternalIP"),
        external_ip: addr("ExternalIP"),
        os_image: unknown(info.os_image),
        kernel_version: unknown(info.kernel_version),
        container_runtime: unknown(info.container_runtime_version),
    }
}

/// One `kubectl get events -o wide` row (the first five fields are the default columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub last_seen: String,
    pub type_: String,
    pub reason: String,
    /// `pod/web-1`, or just the lower-cased kind when the object has no name.
    pub object: String,
    pub message: String,
    pub subobject: String,
    pub source: String,
    pub first_seen: String,
    pub count: i32,
    pub name: String,
}

/// `printEvent`: first/last seen fall back to `eventTime` and the series for events written
/// through events.k8s.io; a singleton event counts 1.
pub fn event_row(ev: &Event, now: Timestamp) -> EventRow {
    let first = match ts(&ev.first_timestamp) {
        Some(t) => since(Some(t), now),
        None => since(ev.event_time.as_ref().map(|t| t.0), now),
    };
    let mut last = match ts(&ev.last_timestamp) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = ev.count.unwrap_or(0);
    if let Some(series) = &ev.series {
        last = since(series.last_observed_time.as_ref().map(|t| t.0), now);
        count = series.count.unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = ev
        .involved_object
        .kind
        .clone()
        .unwrap_or_default()
        .to_lowercase();
    let object = match ev.involved_object.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let src = ev.source.clone().unwrap_or_default();
    let component = src
        .component
        .filter(|c| !c.is_empty())
        .or_else(|| ev.reporting_component.clone())
        .unwrap_or_default();
    let instance = src
        .host
        .filter(|h| !h.is_empty())
        .or_else(|| ev.reporting_instance.clone())
        .unwrap_or_default();
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    EventRow {
        last_seen: last,
        type_: ev.type_.clone().unwrap_or_default(),
        reason: ev.reason.clone().unwrap_or_default(),
        object,
        message: ev.message.clone().unwrap_or_default().trim().to_string(),
        subobject: ev.involved_object.field_path.clone().unwrap_or_default(),
        source,
        first_seen: first,
        count,
        name: ev.metadata.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn pod(v: Value) -> Pod {
        match serde_json::from_value(v) {
            Ok(p) => p,
            Err(e) => panic!("bad fixture: {e}"),
        }
    }

    #[test]
    fn human_durations() {
        let cases = [
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (300, "5m"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (2 * 3600 + 3 * 60 + 600 * 6, "3h3m"),
            (7 * 3600 + 59 * 60, "7h59m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(secs)),
                want,
                "{secs}"
            );
        }
    }

    fn row(status: Value) -> PodRow {
        row_with(json!({"containers": [{"name": "app"}]}), status, None)
    }

    fn row_with(spec: Value, status: Value, deleted: Option<&str>) -> PodRow {
        let mut meta = json!({"name": "p", "creationTimestamp": "2025-06-01T11:00:00Z"});
        if let Some(d) = deleted {
            meta["deletionTimestamp"] = json!(d);
        }
        pod_row(
            &pod(json!({"metadata": meta, "spec": spec, "status": status})),
            now(),
        )
    }

    fn cs(name: &str, state: Value, ready: bool, restarts: i32) -> Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": ready, "restartCount": restarts, "state": state})
    }

    #[test]
    fn pod_status_column() {
        let running = json!({"running": {"startedAt": "2025-06-01T11:00:00Z"}});
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"phase": "Pending"}), "Pending", "0/1"),
            (
                json!({"phase": "Running", "containerStatuses": [cs("app", running.clone(), true, 0)]}),
                "Running",
                "1/1",
            ),
            (
                json!({"phase": "Pending", "containerStatuses": [cs("app", json!({"waiting": {"reason": "ContainerCreating"}}), false, 0)]}),
                "ContainerCreating",
                "0/1",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [cs("app", json!({"waiting": {"reason": "CrashLoopBackOff"}}), false, 4)]}),
                "CrashLoopBackOff",
                "0/1",
            ),
            (
                json!({"phase": "Pending", "containerStatuses": [cs("app", json!({"waiting": {"reason": "ImagePullBackOff"}}), false, 0)]}),
                "ImagePullBackOff",
                "0/1",
            ),
            (
                json!({"phase": "Succeeded", "containerStatuses": [cs("app", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0)]}),
                "Completed",
                "0/1",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [cs("app", json!({"terminated": {"exitCode": 1, "reason": "Error"}}), false, 0)]}),
                "Error",
                "0/1",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [cs("app", json!({"terminated": {"exitCode": 2}}), false, 0)]}),
                "ExitCode:2",
                "0/1",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [cs("app", json!({"terminated": {"exitCode": 137, "signal": 9}}), false, 0)]}),
                "Signal:9",
                "0/1",
            ),
            (
                json!({"phase": "Failed", "reason": "Evicted"}),
                "Evicted",
                "0/1",
            ),
            (
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                "SchedulingGated",
                "0/1",
            ),
        ];
        for (status, want, ready) in cases {
            let r = row(status.clone());
            assert_eq!(
                (r.status.as_str(), r.ready.as_str()),
                (want, ready),
                "{status}"
            );
        }
    }

    #[test]
    fn multi_container_and_terminating() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let running = json!({"running": {}});
        // One completed, one still running: Running if Ready, else NotReady.
        let st = |ready_cond: &str| {
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": ready_cond}],
            "containerStatuses": [cs("a", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0), cs("b", running.clone(), true, 0)]})
        };
        assert_eq!(row_with(spec.clone(), st("True"), None).status, "Running");
        assert_eq!(row_with(spec.clone(), st("False"), None).status, "NotReady");
        let r = row_with(
            spec.clone(),
            json!({"phase": "Running", "containerStatuses": [cs("a", running.clone(), true, 0), cs("b", running.clone(), true, 0)]}),
            Some("2025-06-01T11:59:00Z"),
        );
        assert_eq!(
            (r.status.as_str(), r.ready.as_str()),
            ("Terminating", "2/2")
        );
        let r = row_with(
            spec.clone(),
            json!({"phase": "Running", "reason": "NodeLost"}),
            Some("2025-06-01T11:59:00Z"),
        );
        assert_eq!(r.status, "Unknown");
        let r = row_with(
            spec,
            json!({"phase": "Succeeded"}),
            Some("2025-06-01T11:59:00Z"),
        );
        assert_eq!(r.status, "Succeeded");
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "app"}]});
        let done = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        let cases: Vec<(Value, &str)> = vec![
            (
                json!([
                    cs("i1", json!({"running": {}}), false, 0),
                    cs(
                        "i2",
                        json!({"waiting": {"reason": "PodInitializing"}}),
                        false,
                        0
                    )
                ]),
                "Init:0/2",
            ),
            (
                json!([
                    cs("i1", done.clone(), false, 0),
                    cs("i2", json!({"running": {}}), false, 0)
                ]),
                "Init:1/2",
            ),
            (
                json!([cs(
                    "i1",
                    json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
                    false,
                    0
                )]),
                "Init:Error",
            ),
            (
                json!([cs("i1", json!({"terminated": {"exitCode": 3}}), false, 0)]),
                "Init:ExitCode:3",
            ),
            (
                json!([
                    cs(
                        "i1",
                        json!({"terminated": {"exitCode": 0, "signal": 15}}),
                        false,
                        0
                    ),
                    cs(
                        "i2",
                        json!({"terminated": {"exitCode": 143, "signal": 15}}),
                        false,
                        0
                    )
                ]),
                "Init:Signal:15",
            ),
            (
                json!([cs(
                    "i1",
                    json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                    false,
                    5
                )]),
                "Init:CrashLoopBackOff",
            ),
        ];
        for (inits, want) in cases {
            let r = row_with(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": inits}),
                None,
            );
            assert_eq!(r.status, want);
            assert_eq!(r.ready, "0/1");
        }
        // Both done, main container waiting on PodInitializing.
        let r = row_with(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [cs("i1", done.clone(), false, 0), cs("i2", done, false, 0)],
                   "containerStatuses": [cs("app", json!({"waiting": {"reason": "PodInitializing"}}), false, 0)]}),
            None,
        );
        assert_eq!(r.status, "PodInitializing");
    }

    #[test]
    fn sidecars_and_restarts() {
        let spec = json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]});
        let r = row_with(
            spec.clone(),
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [{"name": "proxy", "image": "i", "imageID": "", "ready": true, "started": true, "restartCount": 2,
                        "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:58:00Z"}}}],
                   "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
                        "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:30:00Z"}}}]}),
            None,
        );
        assert_eq!(r.ready, "2/2");
        assert_eq!(r.status, "Running");
        assert_eq!(r.restarts, "3 (2m ago)");
        // Sidecar not yet started: still initializing.
        let r = row_with(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [cs("proxy", json!({"running": {}}), false, 0)]}),
            None,
        );
        assert_eq!((r.status.as_str(), r.ready.as_str()), ("Init:0/1", "0/2"));
        // Restarts without a recorded termination time print the bare count.
        let r = row(
            json!({"phase": "Running", "containerStatuses": [cs("app", json!({"running": {}}), true, 3)]}),
        );
        assert_eq!(r.restarts, "3");
        assert_eq!(r.age, "60m");
    }

    #[test]
    fn wide_columns() {
        let r = pod_row(
            &pod(json!({"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "a"}], "nodeName": "n1", "readinessGates": [{"conditionType": "example.com/gate"}]},
                "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "conditions": [{"type": "example.com/gate", "status": "True"}]}})),
            now(),
        );
        assert_eq!(
            (
                r.ip.as_str(),
                r.node.as_str(),
                r.nominated_node.as_str(),
                r.readiness_gates.as_str()
            ),
            ("10.0.0.5", "n1", "<none>", "1/1")
        );
        assert_eq!(r.age, "<unknown>");
        let r = row(json!({}));
        assert_eq!(
            (r.ip.as_str(), r.node.as_str(), r.readiness_gates.as_str()),
            ("<none>", "<none>", "<none>")
        );
    }

    #[test]
    fn nodes() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-05-30T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "peapod://0.1",
                                    "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}}
        }))
        .unwrap_or_default();
        let r = node_row(&node, now());
        assert_eq!(r.status, "Ready,SchedulingDisabled");
        assert_eq!(r.roles, "control-plane,edge,worker");
        assert_eq!(r.age, "2d");
        assert_eq!(r.version, "v1.37.0");
        assert_eq!(
            (r.internal_ip.as_str(), r.external_ip.as_str()),
            ("192.0.2.1", "<none>")
        );
        let bare = node_row(&Node::default(), now());
        assert_eq!(
            (
                bare.status.as_str(),
                bare.roles.as_str(),
                bare.os_image.as_str()
            ),
            ("Unknown", "<none>", "<unknown>")
        );
        let notready: Node = serde_json::from_value(
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        )
        .unwrap_or_default();
        assert_eq!(node_row(&notready, now()).status, "NotReady");
    }

    #[test]
    fn events() {
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "web.1"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "type": "Normal", "message": " Successfully pulled image \n",
            "firstTimestamp": "2025-06-01T11:50:00Z", "lastTimestamp": "2025-06-01T11:59:15Z", "count": 3,
            "source": {"component": "kubelet", "host": "n1"}
        }))
        .unwrap_or_default();
        let r = event_row(&ev, now());
        assert_eq!(
            (
                r.last_seen.as_str(),
                r.type_.as_str(),
                r.reason.as_str(),
                r.object.as_str(),
                r.message.as_str()
            ),
            (
                "45s",
                "Normal",
                "Pulled",
                "pod/web",
                "Successfully pulled image"
            )
        );
        assert_eq!(
            (r.first_seen.as_str(), r.count, r.source.as_str()),
            ("10m", 3, "kubelet, n1")
        );
        let newer: Event = serde_json::from_value(json!({
            "metadata": {"name": "x"}, "involvedObject": {"kind": "Node"},
            "eventTime": "2025-06-01T11:59:00.000000Z", "reportingComponent": "scheduler", "reportingInstance": ""
        }))
        .unwrap_or_default();
        let r = event_row(&newer, now());
        assert_eq!(
            (
                r.last_seen.as_str(),
                r.first_seen.as_str(),
                r.object.as_str(),
                r.count,
                r.source.as_str()
            ),
            ("60s", "60s", "node", 1, "scheduler")
        );
    }
}

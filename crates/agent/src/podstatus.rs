//! Pod phase and conditions from container statuses, as the kubelet computes them
//! (`getPhase`, `GeneratePodReadyCondition`, ...). Pure functions: no I/O, unit-tested.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A sidecar: an init container with `restartPolicy: Always`.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn status_of<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn last_exit(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The pod phase. `terminal` means the agent has decided the pod will run nothing more
/// (deleted, or evicted), so containers that stopped won't be restarted.
pub fn phase(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in init_containers.iter().filter(|c| !is_sidecar(c)) {
        let Some(s) = status_of(init_statuses, &c.name) else {
            pending_init += 1;
            continue;
        };
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            pending_init += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.and_then(|st| st.waiting.as_ref()).is_some() {
            match last_exit(s) {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }

    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in init_containers.iter().filter(|c| is_sidecar(c)) {
        // Sidecars count as running while they run; stopped ones don't decide the phase.
        if let Some(s) = status_of(init_statuses, &c.name) {
            if s.state
                .as_ref()
                .and_then(|st| st.running.as_ref())
                .is_some()
            {
                running += 1;
            }
        }
    }
    let mut regular_started = false;
    for c in &spec.containers {
        let Some(s) = status_of(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            running += 1;
            regular_started = true;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            regular_started = true;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.and_then(|st| st.waiting.as_ref()).is_some() {
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
                regular_started = true;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }

    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !regular_started) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn names_where<'a>(
    containers: impl Iterator<Item = &'a Container>,
    statuses: &[ContainerStatus],
    pred: impl Fn(Option<&ContainerStatus>) -> bool,
) -> Vec<String> {
    containers
        .filter(|c| pred(status_of(statuses, &c.name)))
        .map(|c| c.name.clone())
        .collect()
}

fn init_done(s: Option<&ContainerStatus>) -> bool {
    s.and_then(|s| s.state.as_ref())
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

/// One condition, keeping the previous transition time when its status did not change.
fn cond(
    prev: &[PodCondition],
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = prev
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The conditions the kubelet owns, in upstream's order: PodReadyToStartContainers,
/// Initialized, Ready, ContainersReady. (PodScheduled belongs to the scheduler/binding.)
pub fn conditions(
    prev: &[PodCondition],
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    sandbox_ready: bool,
    phase: &str,
    now: &Time,
) -> Vec<PodCondition> {
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    // A plain init container must have exited 0; a sidecar must be running.
    let pending_init: Vec<String> = init_containers
        .iter()
        .filter(|c| {
            let status = status_of(init_statuses, &c.name);
            let running = status
                .and_then(|s| s.state.as_ref())
                .and_then(|st| st.running.as_ref())
                .is_some();
            !(init_done(status) || (is_sidecar(c) && running))
        })
        .map(|c| c.name.clone())
        .collect();
    let initialized = pending_init.is_empty() || phase == "Succeeded";
    let init_cond = cond(
        prev,
        "Initialized",
        initialized,
        (!initialized).then_some("ContainersNotInitialized"),
        (!initialized).then(|| {
            format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )
        }),
        now,
    );

    let sidecars = init_containers.iter().filter(|c| is_sidecar(c));
    let mut unready = names_where(sidecars, init_statuses, |s| !s.is_some_and(|s| s.ready));
    unready.extend(names_where(spec.containers.iter(), statuses, |s| {
        !s.is_some_and(|s| s.ready)
    }));
    let completed = phase == "Succeeded" || phase == "Failed";
    let (ready, reason, message) = if completed {
        (false, Some("PodCompleted"), None)
    } else if !initialized {
        (
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
        )
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    vec![
        cond(
            prev,
            "PodReadyToStartContainers",
            sandbox_ready,
            None,
            None,
            now,
        ),
        init_cond,
        cond(prev, "Ready", ready, reason, message.clone(), now),
        cond(prev, "ContainersReady", ready, reason, message, now),
    ]
}

/// Whether the API's copy of the pod still shows the conditions the agent computed (each
/// of ours with the same status there) — a short form of the kubelet status manager's
/// `needsReconcile`: another writer (the node lifecycle controller marking the pods of an
/// unreachable node not Ready) changed them, and the agent must post its status again.
pub fn conditions_agree(api: &[PodCondition], ours: &[PodCondition]) -> bool {
    ours.iter().all(|c| {
        api.iter()
            .any(|a| a.type_ == c.type_ && a.status == c.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_changed_by_another_writer_disagree() {
        let c = |t: &str, s: &str| PodCondition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        };
        let ours = [c("Ready", "True"), c("ContainersReady", "True")];
        let api = [
            c("PodScheduled", "True"),
            c("Ready", "True"),
            c("ContainersReady", "True"),
        ];
        assert!(conditions_agree(&api, &ours));
        let marked = [c("Ready", "False"), c("ContainersReady", "True")];
        assert!(!conditions_agree(&marked, &ours));
        assert!(!conditions_agree(&[], &ours));
        assert!(conditions_agree(&[], &[]));
    }
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    fn spec(policy: &str, names: &[&str]) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            containers: names
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready: true,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exited(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(name: &str, reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let s = spec("Always", &["a", "b"]);
        assert_eq!(phase(&s, &[], &[], false), "Pending");
        assert_eq!(
            phase(
                &s,
                &[],
                &[running("a"), waiting("b", "ContainerCreating")],
                false
            ),
            "Pending"
        );
        assert_eq!(
            phase(&s, &[], &[running("a"), running("b")], false),
            "Running"
        );
        assert_eq!(
            phase(&s, &[], &[exited("a", 0), exited("b", 1)], false),
            "Running"
        );
        let never = spec("Never", &["a"]);
        assert_eq!(phase(&never, &[], &[exited("a", 0)], false), "Succeeded");
        assert_eq!(phase(&never, &[], &[exited("a", 1)], false), "Failed");
        let on_failure = spec("OnFailure", &["a"]);
        assert_eq!(phase(&on_failure, &[], &[exited("a", 1)], false), "Running");
        assert_eq!(
            phase(&on_failure, &[], &[exited("a", 0)], false),
            "Succeeded"
        );
        // A deleted pod whose containers were stopped is terminal whatever the policy.
        assert_eq!(
            phase(&s, &[], &[exited("a", 137), exited("b", 0)], true),
            "Failed"
        );
    }

    #[test]
    fn failed_init_container_fails_a_never_pod() {
        let mut s = spec("Never", &["app"]);
        s.init_containers = Some(vec![Container {
            name: "init".into(),
            ..Default::default()
        }]);
        let app_waiting = [waiting("app", "PodInitializing")];
        assert_eq!(
            phase(&s, &[exited("init", 1)], &app_waiting, false),
            "Failed"
        );
        assert_eq!(
            phase(&s, &[running("init")], &app_waiting, false),
            "Pending"
        );
        assert_eq!(
            phase(&s, &[exited("init", 0)], &[running("app")], false),
            "Running"
        );
    }

    #[test]
    fn conditions_name_the_unready_containers_and_keep_transition_times() {
        let s = spec("Always", &["a", "b"]);
        let t0 = Time(jiff::Timestamp::from_second(100).unwrap_or_default());
        let t1 = Time(jiff::Timestamp::from_second(200).unwrap_or_default());
        let statuses = [running("a"), waiting("b", "ContainerCreating")];
        let first = conditions(&[], &s, &[], &statuses, true, "Pending", &t0);
        let ready = first
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        let again = conditions(&first, &s, &[], &statuses, true, "Pending", &t1);
        let init = again
            .iter()
            .find(|c| c.type_ == "Initialized")
            .cloned()
            .unwrap_or_default();
        assert_eq!(init.status, "True");
        assert_eq!(init.last_transition_time, Some(t0.clone()));
        let all = conditions(
            &again,
            &s,
            &[],
            &[running("a"), running("b")],
            true,
            "Running",
            &t1,
        );
        let ready = all
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time),
            ("True", Some(t1))
        );
    }
}

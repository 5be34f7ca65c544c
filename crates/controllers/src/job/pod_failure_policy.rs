//! A Job's `podFailurePolicy` against a failed pod (upstream's `pod_failure_policy.go`):
//! the first rule whose exit codes or pod conditions match decides — `FailJob` (with the
//! message the Job's failure condition carries), `Ignore` (not counted), `Count`, or
//! `FailIndex`; no match counts the failure. Pure.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

/// What the policy says of a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Set for `FailJob`: the message of the Job's `FailureTarget` condition.
    pub fail_job_message: Option<String>,
    /// Whether the failure counts toward the backoff limit.
    pub count_failed: bool,
    /// The matching rule's action, if a rule matched.
    pub action: Option<Action>,
}

/// Upstream's `matchPodFailurePolicy`; no policy counts every failure.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let unmatched = Verdict {
        fail_job_message: None,
        count_failed: true,
        action: None,
    };
    let Some(policy) = policy else {
        return unmatched;
    };
    let empty = PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&empty);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            match match_on_exit_codes(status, req) {
                Some(c) => {
                    let code = c
                        .state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .map_or(0, |t| t.exit_code);
                    Some(format!(
                        "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                        c.name, rule.action
                    ))
                }
                None => None,
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            match_on_pod_conditions(status, patterns).map(|c| {
                format!(
                    "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                    c.type_, rule.action
                )
            })
        } else {
            None
        };
        let Some(message) = matched else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Verdict {
                fail_job_message: None,
                count_failed: false,
                action: Some(Action::Ignore),
            },
            "FailIndex" => Verdict {
                fail_job_message: None,
                count_failed: true,
                action: Some(Action::FailIndex),
            },
            "Count" => Verdict {
                fail_job_message: None,
                count_failed: true,
                action: Some(Action::Count),
            },
            "FailJob" => Verdict {
                fail_job_message: Some(message),
                count_failed: true,
                action: Some(Action::FailJob),
            },
            // Validation admits no other action; an unknown one matches nothing.
            _ => continue,
        };
    }
    unmatched
}

fn match_on_exit_codes<'a>(
    status: &'a PodStatus,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let find = |list: &'a Option<Vec<ContainerStatus>>| {
        list.iter().flatten().find(|c| {
            let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                return false;
            };
            if req.container_name.as_ref().is_some_and(|n| *n != c.name) || t.exit_code == 0 {
                return false;
            }
            let listed = req.values.contains(&t.exit_code);
            match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            }
        })
    };
    find(&status.container_statuses).or_else(|| find(&status.init_container_statuses))
}

fn match_on_pod_conditions<'a>(
    status: &'a PodStatus,
    patterns: &[k8s_openapi::api::batch::v1::PodFailurePolicyOnPodConditionsPattern],
) -> Option<&'a PodCondition> {
    for pattern in patterns {
        let want = pattern.status.as_deref().unwrap_or("True");
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == pattern.type_ && c.status == want)
        {
            return Some(c);
        }
    }
    None
}

//! policy/v1 PodDisruptionBudget: the registry strategy's create/update preparation
//! (`pkg/registry/policy/poddisruptionbudget`), validation (`pkg/apis/policy/validation`),
//! and the eviction decision of `pods/eviction` (`pkg/registry/core/pod/storage/eviction.go`)
//! as pure functions.
//!
//! Owns: what a PDB may hold, which PDBs cover a pod, and whether an eviction may go ahead
//! against one (and the PDB status it leaves). Does not own: computing a PDB's status from
//! the pods (the disruption controller's), the store or HTTP.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::validate_object_meta_update;
use crate::validation::validate_nonnegative;
use crate::workload::{count_generation, validate_int_or_percent, validate_label_selector};

pub const DISRUPTION_ALLOWED_CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS_REASON: &str = "SufficientPods";
pub const INSUFFICIENT_PODS_REASON: &str = "InsufficientPods";
pub const SYNC_FAILED_REASON: &str = "SyncFailed";
/// More evictions not yet confirmed by the disruption controller are refused.
pub const MAX_DISRUPTED_POD_SIZE: usize = 2000;
pub const EVICTION_REFUSED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// The strategy's `PrepareForCreate`: status reset to its zero counters, generation 1.
pub fn prepare_pdb_for_create(pdb: &mut PodDisruptionBudget) {
    pdb.status = Some(zero_status());
    pdb.metadata.generation = Some(1);
}

/// A status with upstream's non-optional counters written out as zero.
pub fn zero_status() -> PodDisruptionBudgetStatus {
    PodDisruptionBudgetStatus {
        current_healthy: Some(0),
        desired_healthy: Some(0),
        disruptions_allowed: Some(0),
        expected_pods: Some(0),
        ..Default::default()
    }
}

/// The strategy's `PrepareForUpdate`: status kept, generation counted on spec changes.
pub fn prepare_pdb_for_update(new: &mut PodDisruptionBudget, old: &PodDisruptionBudget) {
    let changed = new.spec != old.spec;
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
}

/// The status strategy's `PrepareForUpdate`: everything but status from the old object.
pub fn pdb_copy_all_but_status(new: &mut PodDisruptionBudget, old: &PodDisruptionBudget) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// `ValidatePodDisruptionBudget` (metadata is checked by the generic path-segment rule, as
/// upstream's registry does for this kind).
pub fn validate_pdb(pdb: &PodDisruptionBudget) -> FieldErrors {
    let spec = pdb.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(FieldError::invalid(
            &path,
            serde_json::to_value(&spec).unwrap_or_default(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(v) = &spec.min_available {
        errs.extend(validate_int_or_percent(v, &path.child("minAvailable")));
    }
    if let Some(v) = &spec.max_unavailable {
        errs.extend(validate_int_or_percent(v, &path.child("maxUnavailable")));
    }
    errs.extend(validate_label_selector(
        spec.selector.as_ref(),
        &path.child("selector"),
    ));
    if let Some(p) = &spec.unhealthy_pod_eviction_policy {
        if p != "AlwaysAllow" && p != "IfHealthyBudget" {
            errs.push(FieldError::not_supported(
                path.child("unhealthyPodEvictionPolicy"),
                p.as_str(),
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
    errs
}

/// `ValidatePodDisruptionBudget` on update (the spec is mutable).
pub fn validate_pdb_update(new: &PodDisruptionBudget, old: &PodDisruptionBudget) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_pdb(new));
    errs
}

/// `ValidatePodDisruptionBudgetStatusUpdate`: counters non-negative, conditions well formed.
pub fn validate_pdb_status_update(
    new: &PodDisruptionBudget,
    old: &PodDisruptionBudget,
) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let status = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    for (name, v) in [
        ("disruptionsAllowed", status.disruptions_allowed),
        ("currentHealthy", status.current_healthy),
        ("desiredHealthy", status.desired_healthy),
        ("expectedPods", status.expected_pods),
    ] {
        errs.extend(validate_nonnegative(
            i64::from(v.unwrap_or(0)),
            &p.child(name),
        ));
    }
    for (i, c) in status.conditions.iter().flatten().enumerate() {
        let cp = p.child("conditions").index(i);
        if !matches!(c.status.as_str(), "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(
                cp.child("status"),
                c.status.as_str(),
                &["False", "True", "Unknown"],
            ));
        }
        if c.reason.is_empty() {
            errs.push(FieldError::required(
                cp.child("reason"),
                "reason must be specified",
            ));
        }
    }
    errs
}

/// The PDBs (of the pod's namespace) whose selector matches the pod
/// (`getPodDisruptionBudgets`): an empty selector matches every pod, a missing one none.
pub fn matching_pdbs<'a>(
    pod: &Pod,
    pdbs: &'a [PodDisruptionBudget],
) -> Vec<&'a PodDisruptionBudget> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pdbs.iter()
        .filter(|pdb| pdb.metadata.namespace == pod.metadata.namespace)
        .filter(|pdb| {
            let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            crate::workload::selector_matches(sel, &labels) == Some(true)
        })
        .collect()
}

/// Whether a pod's disruption counts for nothing: finished, not yet started, or already
/// going (`canIgnorePDB`).
pub fn can_ignore_pdb(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.metadata.deletion_timestamp.is_some()
}

/// `podutil.IsPodReady`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the eviction of one pod covered by one PDB comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum EvictionDecision {
    /// Delete the pod without touching the budget (an unhealthy pod the policy lets go).
    DeleteWithoutBudget,
    /// Write this PDB status (compare-and-swap against the one read), then delete.
    Consume(Box<PodDisruptionBudgetStatus>),
    /// 429 TooManyRequests with a `DisruptionBudget` cause; `retry_after` seconds when
    /// the server can suggest one.
    Refuse { cause: String, retry_after: u32 },
    /// 403 Forbidden with this message.
    Forbidden(String),
}

/// The eviction handler's decision for `pod` under `pdb` at `now` (the unhealthy-pod
/// policy, then `checkAndDecrement`). A dry run makes the same decision and writes nothing.
pub fn decide_eviction(
    pod: &Pod,
    pdb: &PodDisruptionBudget,
    now: jiff::Timestamp,
) -> EvictionDecision {
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let status = pdb.status.clone().unwrap_or_default();
    let desired = status.desired_healthy.unwrap_or(0);
    let current = status.current_healthy.unwrap_or(0);
    if !is_pod_ready(pod) {
        let policy = pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
        if policy == Some("AlwaysAllow") {
            return EvictionDecision::DeleteWithoutBudget;
        }
        // IfHealthyBudget (the default): an unready pod may go while the budget is met.
        if current >= desired && desired > 0 {
            return EvictionDecision::DeleteWithoutBudget;
        }
    }
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return EvictionDecision::Refuse {
            cause: format!("The disruption budget {name} is still being processed by the server."),
            retry_after: 10,
        };
    }
    let allowed = status.disruptions_allowed.unwrap_or(0);
    if allowed < 0 {
        return EvictionDecision::Forbidden("pdb disruptions allowed is negative".into());
    }
    if status.disrupted_pods.as_ref().map_or(0, BTreeMap::len) > MAX_DISRUPTED_POD_SIZE {
        return EvictionDecision::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
        );
    }
    if allowed == 0 {
        return EvictionDecision::Refuse {
            cause: format!(
                "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
            ),
            retry_after: 0,
        };
    }
    let mut new = status;
    new.disruptions_allowed = Some(allowed - 1);
    if allowed - 1 == 0 {
        update_disruption_allowed_condition(&mut new, now);
    }
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    new.disrupted_pods
        .get_or_insert_with(BTreeMap::new)
        .insert(pod_name, Time(now));
    EvictionDecision::Consume(Box::new(new))
}

/// `pdbhelper.UpdateDisruptionAllowedCondition`: `DisruptionAllowed` True/SufficientPods
/// when disruptions are allowed, False/InsufficientPods otherwise; the transition time
/// moves only when the status does (`meta.SetStatusCondition`).
pub fn update_disruption_allowed_condition(
    status: &mut PodDisruptionBudgetStatus,
    now: jiff::Timestamp,
) {
    let (s, reason) = if status.disruptions_allowed.unwrap_or(0) > 0 {
        ("True", SUFFICIENT_PODS_REASON)
    } else {
        ("False", INSUFFICIENT_PODS_REASON)
    };
    set_condition(status, s, reason, "", now);
}

/// `meta.SetStatusCondition` for the `DisruptionAllowed` condition.
pub fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    s: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let observed = status.observed_generation;
    let conds = status.conditions.get_or_insert_with(Vec::new);
    match conds
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED_CONDITION)
    {
        Some(c) => {
            if c.status != s {
                c.status = s.to_string();
                c.last_transition_time = Time(now);
            }
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = observed;
        }
        None => conds.push(Condition {
            type_: DISRUPTION_ALLOWED_CONDITION.to_string(),
            status: s.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: observed,
            last_transition_time: Time(now),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(v: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn msgs(errs: FieldErrors) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn validation() {
        let ok = pdb(
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
        );
        assert!(validate_pdb(&ok).is_empty());
        let both = pdb(
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}),
        );
        let got = msgs(validate_pdb(&both));
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("spec: Invalid value: "), "{got:?}");
        assert!(got[0].ends_with(": minAvailable and maxUnavailable cannot be both set"));
        let bad = pdb(
            json!({"metadata": {"name": "p"}, "spec": {"maxUnavailable": "120%", "unhealthyPodEvictionPolicy": "Never"}}),
        );
        assert_eq!(
            msgs(validate_pdb(&bad)),
            vec![
                "spec.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%",
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
            ]
        );
    }

    #[test]
    fn create_resets_status() {
        let mut p = pdb(json!({"metadata": {"name": "p"}, "status": {"disruptionsAllowed": 5}}));
        prepare_pdb_for_create(&mut p);
        assert_eq!(p.status, Some(zero_status()));
        assert_eq!(p.metadata.generation, Some(1));
    }

    fn pod(name: &str, labels: serde_json::Value, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "labels": labels},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .unwrap_or_default()
    }

    #[test]
    fn matching() {
        let pdbs = vec![
            pdb(
                json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
            ),
            pdb(json!({"metadata": {"name": "all", "namespace": "ns"}, "spec": {"selector": {}}})),
            pdb(json!({"metadata": {"name": "none", "namespace": "ns"}, "spec": {}})),
            pdb(
                json!({"metadata": {"name": "other", "namespace": "other"}, "spec": {"selector": {}}}),
            ),
        ];
        let p = pod("p", json!({"app": "web"}), "Running", true);
        let names: Vec<_> = matching_pdbs(&p, &pdbs)
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, vec!["a", "all"]);
    }

    #[test]
    fn eviction_decisions() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let budget = |allowed: i32,
                      desired: i32,
                      current: i32,
                      gen: i64,
                      observed: i64,
                      policy: Option<&str>| {
            pdb(
                json!({"metadata": {"name": "b", "namespace": "ns", "generation": gen},
                "spec": {"minAvailable": 1, "selector": {}, "unhealthyPodEvictionPolicy": policy},
                "status": {"disruptionsAllowed": allowed, "desiredHealthy": desired, "currentHealthy": current,
                    "expectedPods": 2, "observedGeneration": observed}}),
            )
        };
        let ready = pod("p", json!({}), "Running", true);
        let unready = pod("p", json!({}), "Running", false);
        // Exhausted.
        assert_eq!(
            decide_eviction(&ready, &budget(0, 2, 2, 1, 1, None), now),
            EvictionDecision::Refuse {
                cause: "The disruption budget b needs 2 healthy pods and has 2 currently".into(),
                retry_after: 0
            }
        );
        // Not yet observed.
        assert!(matches!(
            decide_eviction(&ready, &budget(1, 1, 2, 2, 1, None), now),
            EvictionDecision::Refuse {
                retry_after: 10,
                ..
            }
        ));
        // Within budget: decremented, recorded, condition flipped at zero.
        let EvictionDecision::Consume(s) =
            decide_eviction(&ready, &budget(1, 1, 2, 1, 1, None), now)
        else {
            panic!("expected Consume");
        };
        assert_eq!(s.disruptions_allowed, Some(0));
        assert!(s.disrupted_pods.is_some_and(|d| d.contains_key("p")));
        let c = s.conditions.unwrap_or_default();
        assert_eq!(
            (c[0].status.as_str(), c[0].reason.as_str()),
            ("False", "InsufficientPods")
        );
        // Unready pods: AlwaysAllow lets them go; IfHealthyBudget only while the budget is met.
        assert_eq!(
            decide_eviction(&unready, &budget(0, 2, 1, 1, 1, Some("AlwaysAllow")), now),
            EvictionDecision::DeleteWithoutBudget
        );
        assert_eq!(
            decide_eviction(&unready, &budget(0, 2, 2, 1, 1, None), now),
            EvictionDecision::DeleteWithoutBudget
        );
        assert!(matches!(
            decide_eviction(&unready, &budget(0, 2, 1, 1, 1, None), now),
            EvictionDecision::Refuse { .. }
        ));
        // Finished and pending pods never consult a budget.
        assert!(can_ignore_pdb(&pod("p", json!({}), "Succeeded", false)));
        assert!(can_ignore_pdb(&pod("p", json!({}), "Pending", false)));
        assert!(!can_ignore_pdb(&ready));
    }
}

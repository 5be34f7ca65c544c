//! The workload kinds: apps/v1 Deployment, ReplicaSet, StatefulSet, DaemonSet and
//! ControllerRevision, and core/v1 ReplicationController.
//!
//! Owns: upstream's v1 defaults for them (`pkg/apis/apps/v1/defaults.go`,
//! `SetDefaults_ReplicationController`, the pod defaults of their templates); their
//! registry strategies' create / update / status preparation (status cleared on create,
//! generation 1 and counted on spec changes, the DaemonSet template generation); their
//! validation with upstream's paths and messages (`pkg/apis/apps/validation`,
//! `ValidateReplicationController*`, the apps/v1 immutable selector of the strategies); and
//! the selector string their `scale` subresource reports. One file per kind; what several
//! kinds share (status bounds, Go renderings) is here;
//! the rules they share with Jobs and PodDisruptionBudgets (label selectors, templates,
//! int-or-percent, the strategies' create / update steps) are `crate::workload`'s.
//!
//! Departure: after the typed decode an absent `spec.selector` and `selector: {}` look the
//! same; both are answered as absent (`Required value`), while a selector with an empty
//! `matchLabels` or `matchExpressions` gets upstream's "empty selector is invalid".

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetStatus, DaemonSetUpdateStrategy, Deployment,
    DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetStatus, RollingUpdateDaemonSet,
    RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetStatus, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    PodTemplateSpec, ReplicationController, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{ErrorType, FieldError, FieldErrors, Path};
use crate::meta::{validate_labels, validate_object_meta, validate_object_meta_update, NameRule};
use crate::selector::LabelSelector as Selector;
use crate::validation::{validate_nonnegative, FIELD_IMMUTABLE};
use crate::workload::{
    count_generation, int_or_percent_value, is_not_more_than_100_percent, reset_on_create,
    template_labels, template_labels_mismatch, validate_label_selector, validate_pod_template_spec,
    validate_positive_int_or_percent,
};

/// `apps.kubernetes.io`'s DaemonSet template generation, kept in this annotation by the
/// apps/v1 conversion of the internal `spec.templateGeneration`.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

mod controller_revision;
mod daemon_set;
mod deployment;
mod replica_set;
mod replication_controller;
mod stateful_set;

pub use controller_revision::*;
pub use daemon_set::*;
pub use deployment::*;
pub use replica_set::*;
pub use replication_controller::*;
pub use stateful_set::*;

// ---------------------------------------------------------------------------------------
// Shared pieces

/// The pod defaults of a template's spec (`SetDefaults_PodSpec` and what it nests).
fn default_template(t: &mut PodTemplateSpec) {
    crate::pod::default_pod_spec(t.spec.get_or_insert_with(Default::default));
}

/// Go's `json.Marshal` of a `metav1.LabelSelector`, which upstream's field errors print for
/// the selector (`{"matchLabels":{"app":"web"}}`): fields in declaration order, empty ones
/// omitted (`omitempty`), map keys sorted.
pub fn selector_json(sel: &LabelSelector) -> String {
    let mut fields = Vec::new();
    if let Some(labels) = sel.match_labels.as_ref().filter(|m| !m.is_empty()) {
        fields.push(format!(
            "\"matchLabels\":{}",
            serde_json::to_string(labels).unwrap_or_default()
        ));
    }
    if let Some(exprs) = sel.match_expressions.as_ref().filter(|e| !e.is_empty()) {
        let items: Vec<String> = exprs
            .iter()
            .map(|r| {
                let mut item = format!(
                    "{{\"key\":{},\"operator\":{}",
                    json_string(&r.key),
                    json_string(&r.operator)
                );
                if let Some(values) = r.values.as_ref().filter(|v| !v.is_empty()) {
                    item.push_str(&format!(
                        ",\"values\":{}",
                        serde_json::to_string(values).unwrap_or_default()
                    ));
                }
                item.push('}');
                item
            })
            .collect();
        fields.push(format!("\"matchExpressions\":[{}]", items.join(",")));
    }
    format!("{{{}}}", fields.join(","))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// An `Invalid value` whose value upstream prints as Go's `json.Marshal` does and
/// `serde_json::Value` cannot (struct fields in declaration order): the rendered value
/// travels in the message.
fn invalid_rendered(path: &Path, rendered: &str, detail: &str) -> FieldError {
    FieldError {
        kind: ErrorType::Invalid,
        field: path.to_string(),
        value: None,
        detail: format!("{rendered}: {detail}"),
    }
}

/// A selector with neither `matchLabels` nor `matchExpressions` (how an absent one decodes).
fn selector_absent(sel: &LabelSelector) -> bool {
    sel.match_labels.is_none() && sel.match_expressions.is_none()
}

/// The selector of an apps/v1 spec: `Required` when absent, upstream's rules otherwise, and
/// the parsed selector when it parses (`LabelSelectorAsSelector`).
fn validate_spec_selector(
    sel: &LabelSelector,
    path: &Path,
    kind: &str,
) -> (FieldErrors, Option<Selector>) {
    let mut errs = Vec::new();
    if selector_absent(sel) {
        errs.push(FieldError::required(path, ""));
        // `LabelSelectorAsSelector(nil)` selects nothing: no template matches it.
        return (errs, Selector::from_label_selector(None).ok());
    }
    errs.extend(validate_label_selector(Some(sel), path));
    if sel.match_labels.as_ref().map_or(0, BTreeMap::len)
        + sel.match_expressions.as_ref().map_or(0, Vec::len)
        == 0
    {
        errs.push(invalid_rendered(
            path,
            &selector_json(sel),
            &format!("empty selector is invalid for {kind}"),
        ));
    }
    match Selector::from_label_selector(Some(sel)) {
        Ok(s) => (errs, Some(s)),
        Err(_) => (errs, None),
    }
}

/// "`selector` does not match template `labels`" unless an empty selector.
fn template_matches(selector: &Selector, t: &PodTemplateSpec, path: &Path) -> FieldErrors {
    if !selector.is_empty() && !selector.matches(&template_labels(t)) {
        return vec![template_labels_mismatch(t, path)];
    }
    Vec::new()
}

/// The restart policy and deadline rules every controller's template shares
/// (`ValidatePodTemplateSpecForReplicaSet`'s tail; `owner` names the kind in the message).
fn template_policy(t: &PodTemplateSpec, path: &Path, owner: &str) -> FieldErrors {
    let mut errs = Vec::new();
    let spec = t.spec.as_ref();
    let restart = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            path.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if spec.and_then(|s| s.active_deadline_seconds).is_some() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
    errs
}

/// `ValidatePodTemplateSpecForReplicaSet` (Deployments use it too).
fn validate_template_for_replica_set(
    t: &PodTemplateSpec,
    selector: &Selector,
    path: &Path,
    owner: &str,
) -> FieldErrors {
    let mut errs = template_matches(selector, t, path);
    errs.extend(validate_pod_template_spec(t, path));
    errs.extend(template_policy(t, path, owner));
    errs
}

fn nonneg(v: Option<i32>, path: &Path) -> FieldErrors {
    validate_nonnegative(i64::from(v.unwrap_or(0)), path)
}

/// The `status.X cannot be greater than status.replicas` checks of the replica kinds.
fn not_above(value: i32, limit: i32, path: &Path, msg: &str) -> FieldErrors {
    if value > limit {
        vec![FieldError::invalid(path, value, msg)]
    } else {
        Vec::new()
    }
}

const ABOVE_REPLICAS: &str = "cannot be greater than status.replicas";

/// The `status.<name> cannot be greater than status.replicas` checks, in upstream's order.
fn not_above_replicas(replicas: i32, counts: &[(&str, Option<i32>)], p: &Path) -> FieldErrors {
    counts
        .iter()
        .flat_map(|(name, v)| not_above(v.unwrap_or(0), replicas, &p.child(name), ABOVE_REPLICAS))
        .collect()
}

/// `ValidateImmutableField` of an apps/v1 selector (the strategies' `ValidateUpdate`).
fn immutable_selector(new: &LabelSelector, old: &LabelSelector) -> FieldErrors {
    if new == old {
        return Vec::new();
    }
    vec![invalid_rendered(
        &Path::new("spec").child("selector"),
        &selector_json(new),
        FIELD_IMMUTABLE,
    )]
}

/// The selector string an autoscaling/v1 Scale reports (`a=b,c in (d)`), from an apps/v1
/// label selector.
pub fn selector_string(sel: &LabelSelector) -> Option<String> {
    Selector::from_label_selector(Some(sel))
        .ok()
        .map(|s| s.to_string())
}

/// The same from a ReplicationController's plain map (`labels.SelectorFromSet`).
pub fn map_selector_string(sel: &BTreeMap<String, String>) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `ValidateReplicaSetStatus` / `ValidateReplicationControllerStatus` (same rules).
fn validate_replica_status(
    replicas: i32,
    fully_labeled: Option<i32>,
    ready: Option<i32>,
    available: Option<i32>,
    observed_generation: Option<i64>,
) -> FieldErrors {
    let p = Path::new("status");
    let mut errs = validate_nonnegative(i64::from(replicas), &p.child("replicas"));
    errs.extend(nonneg(fully_labeled, &p.child("fullyLabeledReplicas")));
    errs.extend(nonneg(ready, &p.child("readyReplicas")));
    errs.extend(nonneg(available, &p.child("availableReplicas")));
    errs.extend(validate_nonnegative(
        observed_generation.unwrap_or(0),
        &p.child("observedGeneration"),
    ));
    errs.extend(not_above_replicas(
        replicas,
        &[
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ],
        &p,
    ));
    errs.extend(not_above(
        available.unwrap_or(0),
        ready.unwrap_or(0),
        &p.child("availableReplicas"),
        "cannot be greater than readyReplicas",
    ));
    errs
}

/// Go's `IntOrString.String()`.
/// Go's `json.Marshal` of an internal apps strategy with a `RollingUpdate` pointer holding
/// `MaxUnavailable` and `MaxSurge` (`apps.DeploymentStrategy`, `apps.DaemonSetUpdateStrategy`),
/// which upstream's errors print: internal types have no JSON tags, so Go field names, and
/// an absent pointer is `null`.
fn go_strategy_json(
    type_: &str,
    rolling: Option<(Option<&IntOrString>, Option<&IntOrString>)>,
) -> String {
    let ru = match rolling {
        None => "null".to_string(),
        Some((max_unavailable, max_surge)) => format!(
            "{{\"MaxUnavailable\":{},\"MaxSurge\":{}}}",
            max_unavailable.map_or("0".into(), int_or_string),
            max_surge.map_or("0".into(), int_or_string)
        ),
    };
    format!("{{\"Type\":{},\"RollingUpdate\":{ru}}}", json_string(type_))
}

/// An `intstr.IntOrString` as its `MarshalJSON` prints it: `1` or `"25%"`.
fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => json_string(s),
    }
}

fn decremented(new: Option<i32>, old: Option<i32>) -> bool {
    match (new, old) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(n), Some(o)) => n < o,
    }
}

fn collision_count(new: Option<i32>, old: Option<i32>) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(c) = new {
        errs.extend(validate_nonnegative(
            i64::from(c),
            &Path::new("status").child("collisionCount"),
        ));
    }
    if decremented(new, old) {
        errs.push(FieldError::invalid(
            "status.collisionCount",
            new.unwrap_or(0),
            "cannot be decremented",
        ));
    }
    errs
}

#[cfg(test)]
mod tests;

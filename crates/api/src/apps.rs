//! The workload kinds: apps/v1 Deployment, ReplicaSet, StatefulSet, DaemonSet and
//! ControllerRevision, and core/v1 ReplicationController.
//!
//! Owns: upstream's v1 defaults for them (`pkg/apis/apps/v1/defaults.go`,
//! `SetDefaults_ReplicationController`, the pod defaults of their templates); their
//! registry strategies' create / update / status preparation (status cleared on create,
//! generation 1 and counted on spec changes, the DaemonSet template generation); their
//! validation with upstream's paths and messages (`pkg/apis/apps/validation`,
//! `ValidateReplicationController*`, the apps/v1 immutable selector of the strategies); and
//! the selector string their `scale` subresource reports.
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

use crate::field::{go_quote, ErrorType, FieldError, FieldErrors, Path};
use crate::meta::{validate_labels, validate_object_meta, validate_object_meta_update, NameRule};
use crate::selector::LabelSelector as Selector;
use crate::validation::{
    invalid_each, is_qualified_name, is_valid_label_value, regex_error, validate_nonnegative,
    FIELD_IMMUTABLE,
};

/// `apps.kubernetes.io`'s DaemonSet template generation, kept in this annotation by the
/// apps/v1 conversion of the internal `spec.templateGeneration`.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

// ---------------------------------------------------------------------------------------
// Shared pieces

/// The pod defaults of a template's spec (`SetDefaults_PodSpec` and what it nests).
fn default_template(t: &mut PodTemplateSpec) {
    crate::pod::default_pod_spec(t.spec.get_or_insert_with(Default::default));
}

/// `labels.Set(labels)` of a template.
fn template_labels(t: &PodTemplateSpec) -> BTreeMap<String, String> {
    t.metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// Go's `%#v` of a `map[string]string`, which upstream prints for the template's labels.
fn go_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// Go's `%#v` of a `metav1.LabelSelector`, as upstream prints it in the selector errors
/// (`v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:...}`).
pub fn go_label_selector(sel: &LabelSelector) -> String {
    let exprs = match &sel.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(e) => {
            let items: Vec<String> = e
                .iter()
                .map(|r| {
                    let values = match &r.values {
                        None => "[]string(nil)".to_string(),
                        Some(v) => format!(
                            "[]string{{{}}}",
                            v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator)
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_map(sel.match_labels.as_ref())
    )
}

/// An `Invalid value` whose value upstream prints in a form JSON cannot carry (Go's `%#v`
/// or a `String()` method): the rendered value travels in the message.
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

/// `ValidateLabelSelector` (strict: selector values must be valid label values).
pub fn validate_label_selector(sel: &LabelSelector, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(ml) = &sel.match_labels {
        errs.extend(validate_labels(ml, &path.child("matchLabels")));
    }
    for (i, r) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(invalid_each(
            &p.child("key"),
            &r.key,
            is_qualified_name(&r.key),
        ));
        for (j, v) in values.iter().enumerate() {
            errs.extend(invalid_each(
                &p.child("values").index(j),
                v,
                is_valid_label_value(v),
            ));
        }
    }
    errs
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
    errs.extend(validate_label_selector(sel, path));
    if sel.match_labels.as_ref().map_or(0, BTreeMap::len)
        + sel.match_expressions.as_ref().map_or(0, Vec::len)
        == 0
    {
        errs.push(invalid_rendered(
            path,
            &go_label_selector(sel),
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
    let labels = template_labels(t);
    if !selector.is_empty() && !selector.matches(&labels) {
        let rendered = go_map(t.metadata.as_ref().and_then(|m| m.labels.as_ref()));
        return vec![invalid_rendered(
            &path.child("metadata").child("labels"),
            &rendered,
            "`selector` does not match template `labels`",
        )];
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
    errs.extend(crate::kinds::validate_pod_template_spec(t, path));
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

/// `ValidateImmutableField` of an apps/v1 selector (the strategies' `ValidateUpdate`).
fn immutable_selector(new: &LabelSelector, old: &LabelSelector) -> FieldErrors {
    if new == old {
        return Vec::new();
    }
    vec![invalid_rendered(
        &Path::new("spec").child("selector"),
        &go_label_selector(new),
        FIELD_IMMUTABLE,
    )]
}

/// The registries' create step: status cleared, generation 1.
fn reset_on_create<S: Default>(meta: &mut ObjectMeta, status: &mut Option<S>) {
    *status = Some(S::default());
    meta.generation = Some(1);
}

/// The registries' update step: status kept from the old object, generation counted
/// when `changed`.
fn carry_on_update<S: Clone>(
    meta: &mut ObjectMeta,
    status: &mut Option<S>,
    old_meta: &ObjectMeta,
    old_status: &Option<S>,
    changed: bool,
) {
    status.clone_from(old_status);
    let generation = old_meta.generation.unwrap_or(1);
    meta.generation = Some(if changed { generation + 1 } else { generation });
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

// ---------------------------------------------------------------------------------------
// ReplicaSet

/// `SetDefaults_ReplicaSet` and the template's pod defaults.
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = &mut rs.spec;
    spec.replicas.get_or_insert(1);
    if let Some(t) = &mut spec.template {
        default_template(t);
    }
}

pub fn prepare_replica_set_for_create(rs: &mut ReplicaSet) {
    reset_on_create::<ReplicaSetStatus>(&mut rs.metadata, &mut rs.status);
}

pub fn prepare_replica_set_for_update(new: &mut ReplicaSet, old: &ReplicaSet) {
    let changed = new.spec != old.spec;
    carry_on_update(
        &mut new.metadata,
        &mut new.status,
        &old.metadata,
        &old.status,
        changed,
    );
}

/// The status subresource keeps everything but status.
pub fn replica_set_status_only(new: &mut ReplicaSet, old: &ReplicaSet) {
    new.spec.clone_from(&old.spec);
}

fn validate_replica_set_spec(rs: &ReplicaSet) -> FieldErrors {
    let path = Path::new("spec");
    let spec = &rs.spec;
    let mut errs = nonneg(spec.replicas, &path.child("replicas"));
    errs.extend(nonneg(
        spec.min_ready_seconds,
        &path.child("minReadySeconds"),
    ));
    // Upstream's ReplicaSet validation reuses the Deployment's message.
    let (sel_errs, selector) =
        validate_spec_selector(&spec.selector, &path.child("selector"), "deployment");
    errs.extend(sel_errs);
    let template_path = path.child("template");
    match (selector, &spec.template) {
        (None, _) => errs.push(invalid_rendered(
            &path.child("selector"),
            &go_label_selector(&spec.selector),
            "invalid label selector",
        )),
        (Some(_), None) => errs.push(FieldError::required(&template_path, "")),
        (Some(s), Some(t)) => errs.extend(validate_template_for_replica_set(
            t,
            &s,
            &template_path,
            "ReplicaSet",
        )),
    }
    errs
}

/// `ValidateReplicaSet`.
pub fn validate_replica_set(rs: &ReplicaSet) -> FieldErrors {
    let mut errs = validate_object_meta(&rs.metadata, true, NameRule::Dns1123Subdomain);
    errs.extend(validate_replica_set_spec(rs));
    errs
}

/// `ValidateReplicaSetUpdate` and the apps/v1 immutable selector.
pub fn validate_replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_replica_set_spec(new));
    errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
    errs
}

/// `ValidateReplicaSetStatusUpdate`.
pub fn validate_replica_set_status_update(new: &ReplicaSet, old: &ReplicaSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s = new.status.clone().unwrap_or_default();
    errs.extend(validate_replica_status(
        s.replicas,
        s.fully_labeled_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.observed_generation,
    ));
    errs
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
    let (fully, ready, available) = (
        fully_labeled.unwrap_or(0),
        ready.unwrap_or(0),
        available.unwrap_or(0),
    );
    errs.extend(not_above(
        fully,
        replicas,
        &p.child("fullyLabeledReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        ready,
        replicas,
        &p.child("readyReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        available,
        replicas,
        &p.child("availableReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        available,
        ready,
        &p.child("availableReplicas"),
        "cannot be greater than readyReplicas",
    ));
    errs
}

// ---------------------------------------------------------------------------------------
// ReplicationController

/// `SetDefaults_ReplicationController`: selector and object labels from the template's
/// labels when empty, replicas 1; then the template's pod defaults.
pub fn default_replication_controller(rc: &mut ReplicationController) {
    let spec = rc.spec.get_or_insert_with(Default::default);
    let labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = labels {
        if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            rc.metadata.labels = Some(labels);
        }
    }
    spec.replicas.get_or_insert(1);
    if let Some(t) = &mut spec.template {
        default_template(t);
    }
}

pub fn prepare_replication_controller_for_create(rc: &mut ReplicationController) {
    reset_on_create::<ReplicationControllerStatus>(&mut rc.metadata, &mut rc.status);
}

pub fn prepare_replication_controller_for_update(
    new: &mut ReplicationController,
    old: &ReplicationController,
) {
    let changed = new.spec != old.spec;
    carry_on_update(
        &mut new.metadata,
        &mut new.status,
        &old.metadata,
        &old.status,
        changed,
    );
}

pub fn replication_controller_status_only(
    new: &mut ReplicationController,
    old: &ReplicationController,
) {
    new.spec.clone_from(&old.spec);
}

/// `ValidateReplicationControllerSpec` (its selector is a plain map and may change).
fn validate_replication_controller_spec(rc: &ReplicationController) -> FieldErrors {
    let path = Path::new("spec");
    let default_spec = Default::default();
    let spec = rc.spec.as_ref().unwrap_or(&default_spec);
    let mut errs = nonneg(spec.min_ready_seconds, &path.child("minReadySeconds"));
    let selector_map = spec.selector.clone().unwrap_or_default();
    if selector_map.is_empty() {
        errs.push(FieldError::required(path.child("selector"), ""));
    }
    errs.extend(nonneg(spec.replicas, &path.child("replicas")));
    let template_path = path.child("template");
    match &spec.template {
        None => errs.push(FieldError::required(&template_path, "")),
        Some(t) => {
            let labels = template_labels(t);
            if !selector_map.is_empty()
                && !selector_map
                    .iter()
                    .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
            {
                let rendered = go_map(t.metadata.as_ref().and_then(|m| m.labels.as_ref()));
                errs.push(invalid_rendered(
                    &template_path.child("metadata").child("labels"),
                    &rendered,
                    "`selector` does not match template `labels`",
                ));
            }
            errs.extend(crate::kinds::validate_pod_template_spec(t, &template_path));
            errs.extend(template_policy(t, &template_path, "ReplicationController"));
        }
    }
    errs
}

/// `ValidateReplicationController`.
pub fn validate_replication_controller(rc: &ReplicationController) -> FieldErrors {
    let mut errs = validate_object_meta(&rc.metadata, true, NameRule::Dns1123Subdomain);
    errs.extend(validate_replication_controller_spec(rc));
    errs
}

/// `ValidateReplicationControllerUpdate`.
pub fn validate_replication_controller_update(
    new: &ReplicationController,
    old: &ReplicationController,
) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_replication_controller_spec(new));
    errs
}

/// `ValidateReplicationControllerStatusUpdate`.
pub fn validate_replication_controller_status_update(
    new: &ReplicationController,
    old: &ReplicationController,
) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s = new.status.clone().unwrap_or_default();
    errs.extend(validate_replica_status(
        s.replicas,
        s.fully_labeled_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.observed_generation,
    ));
    errs
}

// ---------------------------------------------------------------------------------------
// Deployment

/// `SetDefaults_Deployment` and the template's pod defaults.
pub fn default_deployment(d: &mut Deployment) {
    let spec = &mut d.spec;
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    if strategy.type_.as_deref().unwrap_or("").is_empty() {
        strategy.type_ = Some("RollingUpdate".into());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        ru.max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        ru.max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds.get_or_insert(600);
    default_template(&mut spec.template);
}

pub fn prepare_deployment_for_create(d: &mut Deployment) {
    reset_on_create::<DeploymentStatus>(&mut d.metadata, &mut d.status);
}

/// Spec changes count a generation, and so do annotation changes (they are copied to the
/// Deployment's ReplicaSets), as upstream's strategy does.
pub fn prepare_deployment_for_update(new: &mut Deployment, old: &Deployment) {
    let changed = new.spec != old.spec || new.metadata.annotations != old.metadata.annotations;
    carry_on_update(
        &mut new.metadata,
        &mut new.status,
        &old.metadata,
        &old.status,
        changed,
    );
}

pub fn deployment_status_only(new: &mut Deployment, old: &Deployment) {
    new.spec.clone_from(&old.spec);
}

/// Go's `IntOrString.String()`.
fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// `getPercentValue`: the number of a valid `N%`.
fn percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        }
        IntOrString::Int(_) => None,
    }
}

/// `getIntOrPercentValue` (Go's `IntValue` of a non-number string is 0).
fn int_or_percent_value(v: &IntOrString) -> i64 {
    match (percent_value(v), v) {
        (Some(p), _) => p,
        (None, IntOrString::Int(i)) => i64::from(*i),
        (None, IntOrString::String(s)) => s.parse().unwrap_or(0),
    }
}

/// `ValidatePositiveIntOrPercent`.
fn validate_positive_int_or_percent(v: &IntOrString, path: &Path) -> FieldErrors {
    match v {
        IntOrString::String(_) if percent_value(v).is_none() => vec![invalid_rendered(
            path,
            &int_or_string(v),
            &regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'",
                "[0-9]+%",
                &["1%", "93%"],
            ),
        )],
        IntOrString::String(_) => Vec::new(),
        IntOrString::Int(i) => validate_nonnegative(i64::from(*i), path),
    }
}

/// `IsNotMoreThan100Percent`.
fn not_more_than_100_percent(v: &IntOrString, path: &Path) -> FieldErrors {
    match percent_value(v) {
        Some(p) if p > 100 => vec![invalid_rendered(
            path,
            &int_or_string(v),
            "must not be greater than 100%",
        )],
        _ => Vec::new(),
    }
}

fn go_deployment_strategy(s: &DeploymentStrategy) -> String {
    let ru = if s.rolling_update.is_some() {
        "(*apps.RollingUpdateDeployment)(0xc000000000)"
    } else {
        "(*apps.RollingUpdateDeployment)(nil)"
    };
    format!(
        "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{ru}}}",
        go_quote(s.type_.as_deref().unwrap_or(""))
    )
}

/// `ValidateDeploymentStrategy`.
fn validate_deployment_strategy(s: &DeploymentStrategy, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match s.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if s.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &s.rolling_update {
            None => errs.push(FieldError::required(
                path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = path.child("rollingUpdate");
                let zero = IntOrString::Int(0);
                let mu = ru.max_unavailable.as_ref().unwrap_or(&zero);
                let ms = ru.max_surge.as_ref().unwrap_or(&zero);
                errs.extend(validate_positive_int_or_percent(
                    mu,
                    &p.child("maxUnavailable"),
                ));
                errs.extend(validate_positive_int_or_percent(ms, &p.child("maxSurge")));
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(invalid_rendered(
                        &p.child("maxUnavailable"),
                        &int_or_string(mu),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                errs.extend(not_more_than_100_percent(mu, &p.child("maxUnavailable")));
            }
        },
        _ => {
            let mut e = FieldError::not_supported(path, "", &["Recreate", "RollingUpdate"]);
            // The value is the whole strategy struct, printed with Go's `%#v`.
            e.value = None;
            e.detail = format!("{}: {}", go_deployment_strategy(s), e.detail);
            e.kind = ErrorType::NotSupported;
            errs.push(e);
        }
    }
    errs
}

fn validate_deployment_spec(d: &Deployment) -> FieldErrors {
    let path = Path::new("spec");
    let spec = &d.spec;
    let mut errs = nonneg(spec.replicas, &path.child("replicas"));
    let (sel_errs, selector) =
        validate_spec_selector(&spec.selector, &path.child("selector"), "deployment");
    errs.extend(sel_errs);
    match selector {
        None => errs.push(invalid_rendered(
            &path.child("selector"),
            &go_label_selector(&spec.selector),
            "invalid label selector",
        )),
        Some(s) => errs.extend(validate_template_for_replica_set(
            &spec.template,
            &s,
            &path.child("template"),
            "ReplicaSet",
        )),
    }
    errs.extend(validate_deployment_strategy(
        &spec.strategy.clone().unwrap_or_default(),
        &path.child("strategy"),
    ));
    errs.extend(nonneg(
        spec.min_ready_seconds,
        &path.child("minReadySeconds"),
    ));
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(validate_nonnegative(
            i64::from(limit),
            &path.child("revisionHistoryLimit"),
        ));
    }
    if let Some(pds) = spec.progress_deadline_seconds {
        let p = path.child("progressDeadlineSeconds");
        errs.extend(validate_nonnegative(i64::from(pds), &p));
        if pds <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                &p,
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// `ValidateDeployment`.
pub fn validate_deployment(d: &Deployment) -> FieldErrors {
    let mut errs = validate_object_meta(&d.metadata, true, NameRule::Dns1123Subdomain);
    errs.extend(validate_deployment_spec(d));
    errs
}

/// `ValidateDeploymentUpdate` and the apps/v1 immutable selector.
pub fn validate_deployment_update(new: &Deployment, old: &Deployment) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_deployment_spec(new));
    errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
    errs
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

/// `ValidateDeploymentStatusUpdate`.
pub fn validate_deployment_status_update(new: &Deployment, old: &Deployment) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    errs.extend(validate_nonnegative(
        s.observed_generation.unwrap_or(0),
        &p.child("observedGeneration"),
    ));
    errs.extend(nonneg(s.replicas, &p.child("replicas")));
    errs.extend(nonneg(s.updated_replicas, &p.child("updatedReplicas")));
    errs.extend(nonneg(s.ready_replicas, &p.child("readyReplicas")));
    errs.extend(nonneg(s.available_replicas, &p.child("availableReplicas")));
    errs.extend(nonneg(
        s.unavailable_replicas,
        &p.child("unavailableReplicas"),
    ));
    let replicas = s.replicas.unwrap_or(0);
    let ready = s.ready_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    errs.extend(not_above(
        s.updated_replicas.unwrap_or(0),
        replicas,
        &p.child("updatedReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        ready,
        replicas,
        &p.child("readyReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        available,
        replicas,
        &p.child("availableReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        available,
        ready,
        &p.child("availableReplicas"),
        "cannot be greater than readyReplicas",
    ));
    errs.extend(collision_count(
        s.collision_count,
        old.status.as_ref().and_then(|s| s.collision_count),
    ));
    errs
}

// ---------------------------------------------------------------------------------------
// StatefulSet

/// `SetDefaults_StatefulSet` (with `StatefulSetAutoDeletePVC`, on by default) and the
/// template's pod defaults.
pub fn default_stateful_set(s: &mut StatefulSet) {
    let spec = &mut s.spec;
    if spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        spec.pod_management_policy = Some("OrderedReady".into());
    }
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    if strategy.type_.as_deref().unwrap_or("").is_empty() {
        strategy.type_ = Some("RollingUpdate".into());
        strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        if let Some(ru) = &mut strategy.rolling_update {
            ru.partition.get_or_insert(0);
        }
    }
    let policy = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    for p in [&mut policy.when_deleted, &mut policy.when_scaled] {
        if p.as_deref().unwrap_or("").is_empty() {
            *p = Some("Retain".into());
        }
    }
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    default_template(&mut spec.template);
}

pub fn prepare_stateful_set_for_create(s: &mut StatefulSet) {
    reset_on_create::<StatefulSetStatus>(&mut s.metadata, &mut s.status);
}

pub fn prepare_stateful_set_for_update(new: &mut StatefulSet, old: &StatefulSet) {
    let changed = new.spec != old.spec;
    carry_on_update(
        &mut new.metadata,
        &mut new.status,
        &old.metadata,
        &old.status,
        changed,
    );
}

pub fn stateful_set_status_only(new: &mut StatefulSet, old: &StatefulSet) {
    new.spec.clone_from(&old.spec);
}

fn validate_stateful_set_spec(s: &StatefulSet) -> FieldErrors {
    let path = Path::new("spec");
    let spec = &s.spec;
    let mut errs = Vec::new();
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let sp = path.child("updateStrategy");
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(&sp, "")),
        "OnDelete" => {
            if strategy.rolling_update.is_some() {
                errs.push(invalid_rendered(
                    &sp.child("rollingUpdate"),
                    "&apps.RollingUpdateStatefulSetStrategy{}",
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = &strategy.rolling_update {
                let rp = sp.child("rollingUpdate");
                errs.extend(nonneg(ru.partition, &rp.child("partition")));
                if let Some(mu) = &ru.max_unavailable {
                    let mp = rp.child("maxUnavailable");
                    errs.extend(validate_positive_int_or_percent(mu, &mp));
                    if int_or_percent_value(mu) == 0 {
                        errs.push(invalid_rendered(&mp, &int_or_string(mu), "cannot be 0"));
                    }
                    errs.extend(not_more_than_100_percent(mu, &mp));
                }
            }
        }
        other => errs.push(invalid_rendered(
            &sp,
            &format!("apps.StatefulSetUpdateStrategy{{Type:{}}}", go_quote(other)),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for (name, v) in [
            ("whenDeleted", &policy.when_deleted),
            ("whenScaled", &policy.when_scaled),
        ] {
            let v = v.as_deref().unwrap_or("");
            if v != "Retain" && v != "Delete" {
                errs.push(FieldError::not_supported(
                    pp.child(name),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    errs.extend(nonneg(spec.replicas, &path.child("replicas")));
    errs.extend(nonneg(
        spec.min_ready_seconds,
        &path.child("minReadySeconds"),
    ));
    if let Some(o) = &spec.ordinals {
        errs.extend(nonneg(o.start, &path.child("ordinals.start")));
    }
    let (sel_errs, selector) =
        validate_spec_selector(&spec.selector, &path.child("selector"), "statefulset");
    errs.extend(sel_errs);
    let tp = path.child("template");
    match selector {
        None => errs.push(invalid_rendered(
            &path.child("selector"),
            &go_label_selector(&spec.selector),
            "",
        )),
        Some(sel) => {
            // Upstream checks only the labels and annotations of a StatefulSet's template.
            errs.extend(template_matches(&sel, &spec.template, &tp));
            if let Some(m) = &spec.template.metadata {
                if let Some(l) = &m.labels {
                    errs.extend(validate_labels(l, &tp.child("labels")));
                }
                if let Some(a) = &m.annotations {
                    errs.extend(crate::meta::validate_annotations(
                        a,
                        &tp.child("annotations"),
                    ));
                }
            }
        }
    }
    errs.extend(template_policy_stateful(&spec.template, &tp));
    errs
}

/// A StatefulSet's template tail, as upstream words it for this kind.
fn template_policy_stateful(t: &PodTemplateSpec, path: &Path) -> FieldErrors {
    template_policy(t, path, "StatefulSet")
}

/// `ValidateStatefulSet` (names are DNS-1123 labels: they prefix pod names).
pub fn validate_stateful_set(s: &StatefulSet) -> FieldErrors {
    let mut errs = validate_object_meta(&s.metadata, true, NameRule::Dns1123Label);
    errs.extend(validate_stateful_set_spec(s));
    errs
}

/// `ValidateStatefulSetUpdate`: only some spec fields may change; the selector is
/// immutable.
pub fn validate_stateful_set_update(new: &StatefulSet, old: &StatefulSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_stateful_set_spec(new));
    let o = &old.spec;
    let mut clone = new.spec.clone();
    clone.replicas = o.replicas;
    clone.template.clone_from(&o.template);
    clone.update_strategy.clone_from(&o.update_strategy);
    clone.min_ready_seconds = o.min_ready_seconds;
    clone.ordinals.clone_from(&o.ordinals);
    clone
        .persistent_volume_claim_retention_policy
        .clone_from(&o.persistent_volume_claim_retention_policy);
    if clone != *o {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

/// `ValidateStatefulSetStatusUpdate`.
pub fn validate_stateful_set_status_update(new: &StatefulSet, old: &StatefulSet) -> FieldErrors {
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    let mut errs = validate_nonnegative(i64::from(s.replicas), &p.child("replicas"));
    errs.extend(nonneg(s.ready_replicas, &p.child("readyReplicas")));
    errs.extend(nonneg(s.current_replicas, &p.child("currentReplicas")));
    errs.extend(nonneg(s.updated_replicas, &p.child("updatedReplicas")));
    errs.extend(nonneg(s.available_replicas, &p.child("availableReplicas")));
    if let Some(g) = s.observed_generation {
        errs.extend(validate_nonnegative(g, &p.child("observedGeneration")));
    }
    let ready = s.ready_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    errs.extend(not_above(
        ready,
        s.replicas,
        &p.child("readyReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        s.current_replicas.unwrap_or(0),
        s.replicas,
        &p.child("currentReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        s.updated_replicas.unwrap_or(0),
        s.replicas,
        &p.child("updatedReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        available,
        s.replicas,
        &p.child("availableReplicas"),
        ABOVE_REPLICAS,
    ));
    errs.extend(not_above(
        available,
        ready,
        &p.child("availableReplicas"),
        "cannot be greater than status.readyReplicas",
    ));
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    errs.extend(collision_count(
        s.collision_count,
        old.status.as_ref().and_then(|s| s.collision_count),
    ));
    errs
}

// ---------------------------------------------------------------------------------------
// DaemonSet

/// `SetDefaults_DaemonSet` and the template's pod defaults.
pub fn default_daemon_set(ds: &mut DaemonSet) {
    let spec = &mut ds.spec;
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    if strategy.type_.as_deref().unwrap_or("").is_empty() {
        strategy.type_ = Some("RollingUpdate".into());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
        ru.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    default_template(&mut spec.template);
}

fn template_generation(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn set_template_generation(meta: &mut ObjectMeta, generation: i64) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(
            TEMPLATE_GENERATION_ANNOTATION.into(),
            generation.to_string(),
        );
}

/// The DaemonSet registry's create step: status cleared, generation 1, template
/// generation at least 1.
pub fn prepare_daemon_set_for_create(ds: &mut DaemonSet) {
    reset_on_create::<DaemonSetStatus>(&mut ds.metadata, &mut ds.status);
    let tg = template_generation(&ds.metadata).max(1);
    set_template_generation(&mut ds.metadata, tg);
}

/// The update step: a template change counts both the generation and the template
/// generation; another spec change the generation alone.
pub fn prepare_daemon_set_for_update(new: &mut DaemonSet, old: &DaemonSet) {
    let template_changed = new.spec.template != old.spec.template;
    let changed = new.spec != old.spec;
    carry_on_update(
        &mut new.metadata,
        &mut new.status,
        &old.metadata,
        &old.status,
        changed,
    );
    let old_tg = template_generation(&old.metadata);
    let tg = if template_changed { old_tg + 1 } else { old_tg };
    if tg > 0 {
        set_template_generation(&mut new.metadata, tg);
    }
}

pub fn daemon_set_status_only(new: &mut DaemonSet, old: &DaemonSet) {
    new.spec.clone_from(&old.spec);
}

fn validate_daemon_set_spec(ds: &DaemonSet) -> FieldErrors {
    let path = Path::new("spec");
    let spec = &ds.spec;
    let mut errs = Vec::new();
    let sp = path.child("selector");
    if selector_absent(&spec.selector) {
        errs.push(FieldError::required(&sp, ""));
    } else {
        errs.extend(validate_label_selector(&spec.selector, &sp));
    }
    let tp = path.child("template");
    if let Ok(sel) =
        Selector::from_label_selector((!selector_absent(&spec.selector)).then_some(&spec.selector))
    {
        if !sel.matches(&template_labels(&spec.template)) {
            let rendered = go_map(
                spec.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref()),
            );
            errs.push(invalid_rendered(
                &tp.child("metadata").child("labels"),
                &rendered,
                "`selector` does not match template `labels`",
            ));
        }
    }
    if !selector_absent(&spec.selector)
        && spec.selector.match_labels.as_ref().map_or(0, BTreeMap::len)
            + spec.selector.match_expressions.as_ref().map_or(0, Vec::len)
            == 0
    {
        errs.push(invalid_rendered(
            &sp,
            &go_label_selector(&spec.selector),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(crate::kinds::validate_pod_template_spec(
        &spec.template,
        &tp,
    ));
    errs.extend(template_policy(&spec.template, &tp, "DaemonSet"));
    errs.extend(nonneg(
        spec.min_ready_seconds,
        &path.child("minReadySeconds"),
    ));
    errs.extend(validate_daemon_set_strategy(
        &spec.update_strategy.clone().unwrap_or_default(),
        &path.child("updateStrategy"),
    ));
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(validate_nonnegative(
            i64::from(limit),
            &path.child("revisionHistoryLimit"),
        ));
    }
    errs
}

/// `ValidateDaemonSetUpdateStrategy`.
fn validate_daemon_set_strategy(s: &DaemonSetUpdateStrategy, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match s.type_.as_deref().unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = &s.rolling_update else {
                errs.push(FieldError::required(path.child("rollingUpdate"), ""));
                return errs;
            };
            let p = path.child("rollingUpdate");
            let zero = IntOrString::Int(0);
            let mu = ru.max_unavailable.as_ref().unwrap_or(&zero);
            let ms = ru.max_surge.as_ref().unwrap_or(&zero);
            errs.extend(validate_positive_int_or_percent(
                mu,
                &p.child("maxUnavailable"),
            ));
            errs.extend(validate_positive_int_or_percent(ms, &p.child("maxSurge")));
            errs.extend(not_more_than_100_percent(mu, &p.child("maxUnavailable")));
            errs.extend(not_more_than_100_percent(ms, &p.child("maxSurge")));
            let has_unavailable = int_or_percent_value(mu) != 0;
            let has_surge = int_or_percent_value(ms) != 0;
            if has_unavailable && has_surge {
                errs.push(invalid_rendered(
                    &p.child("maxSurge"),
                    &int_or_string(ms),
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(
                    p.child("maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        other => {
            let mut e = FieldError::not_supported(path, "", &["RollingUpdate", "OnDelete"]);
            e.value = None;
            e.detail = format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}: {}",
                go_quote(other),
                e.detail
            );
            errs.push(e);
        }
    }
    errs
}

/// `ValidateDaemonSet`.
pub fn validate_daemon_set(ds: &DaemonSet) -> FieldErrors {
    let mut errs = validate_object_meta(&ds.metadata, true, NameRule::Dns1123Subdomain);
    errs.extend(validate_daemon_set_spec(ds));
    errs
}

/// `ValidateDaemonSetUpdate` and the apps/v1 immutable selector.
pub fn validate_daemon_set_update(new: &DaemonSet, old: &DaemonSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_daemon_set_spec(new));
    errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
    errs
}

/// `ValidateDaemonSetStatusUpdate`.
pub fn validate_daemon_set_status_update(new: &DaemonSet, old: &DaemonSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    for (name, v) in [
        ("currentNumberScheduled", Some(s.current_number_scheduled)),
        ("numberMisscheduled", Some(s.number_misscheduled)),
        ("desiredNumberScheduled", Some(s.desired_number_scheduled)),
        ("numberReady", Some(s.number_ready)),
    ] {
        errs.extend(nonneg(v, &p.child(name)));
    }
    errs.extend(validate_nonnegative(
        s.observed_generation.unwrap_or(0),
        &p.child("observedGeneration"),
    ));
    errs.extend(nonneg(
        s.updated_number_scheduled,
        &p.child("updatedNumberScheduled"),
    ));
    errs.extend(nonneg(s.number_available, &p.child("numberAvailable")));
    errs.extend(nonneg(s.number_unavailable, &p.child("numberUnavailable")));
    errs.extend(collision_count(
        s.collision_count,
        old.status.as_ref().and_then(|s| s.collision_count),
    ));
    errs
}

// ---------------------------------------------------------------------------------------
// ControllerRevision

/// `ValidateControllerRevision`.
pub fn validate_controller_revision(r: &ControllerRevision) -> FieldErrors {
    let mut errs = validate_object_meta(&r.metadata, true, NameRule::Dns1123Subdomain);
    if r.data.0.is_null() {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    errs.extend(validate_nonnegative(
        r.revision.unwrap_or(0),
        &Path::new("revision"),
    ));
    errs
}

/// `ValidateControllerRevisionUpdate`: `data` may not change.
pub fn validate_controller_revision_update(
    new: &ControllerRevision,
    old: &ControllerRevision,
) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_controller_revision(new));
    if new.data != old.data {
        // Go's `%#v` of the RawExtension: its bytes (the compact JSON) in hex.
        let raw = serde_json::to_vec(&new.data.0).unwrap_or_default();
        let bytes: Vec<String> = raw.iter().map(|b| format!("0x{b:x}")).collect();
        errs.push(invalid_rendered(
            &Path::new("data"),
            &format!(
                "runtime.RawExtension{{Raw:[]uint8{{{}}}, Object:runtime.Object(nil)}}",
                bytes.join(", ")
            ),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

#[cfg(test)]
mod tests;

//! apps/v1 Deployment: `SetDefaults_Deployment`, the registry strategy steps (annotation
//! changes count a generation too), `ValidateDeployment*` with the strategy rules and the
//! immutable selector.

use super::*;

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
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
}

pub fn deployment_status_only(new: &mut Deployment, old: &Deployment) {
    new.spec.clone_from(&old.spec);
}

/// The strategy as upstream's error prints it ([`go_strategy_json`]).
fn go_deployment_strategy(s: &DeploymentStrategy) -> String {
    go_strategy_json(
        s.type_.as_deref().unwrap_or(""),
        s.rolling_update
            .as_ref()
            .map(|ru| (ru.max_unavailable.as_ref(), ru.max_surge.as_ref())),
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
                errs.extend(is_not_more_than_100_percent(mu, &p.child("maxUnavailable")));
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
            &selector_json(&spec.selector),
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
    errs.extend(not_above_replicas(
        s.replicas.unwrap_or(0),
        &[
            ("updatedReplicas", s.updated_replicas),
            ("readyReplicas", s.ready_replicas),
            ("availableReplicas", s.available_replicas),
        ],
        &p,
    ));
    errs.extend(not_above(
        s.available_replicas.unwrap_or(0),
        s.ready_replicas.unwrap_or(0),
        &p.child("availableReplicas"),
        "cannot be greater than readyReplicas",
    ));
    errs.extend(collision_count(
        s.collision_count,
        old.status.as_ref().and_then(|s| s.collision_count),
    ));
    errs
}

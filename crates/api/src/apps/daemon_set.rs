//! apps/v1 DaemonSet: `SetDefaults_DaemonSet`, the registry strategy steps with the template
//! generation annotation, `ValidateDaemonSet*` with the update strategy rules and the immutable
//! selector.

use super::*;

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
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
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
        errs.extend(validate_label_selector(Some(&spec.selector), &sp));
    }
    let tp = path.child("template");
    if let Ok(sel) =
        Selector::from_label_selector((!selector_absent(&spec.selector)).then_some(&spec.selector))
    {
        if !sel.matches(&template_labels(&spec.template)) {
            errs.push(template_labels_mismatch(&spec.template, &tp));
        }
    }
    if !selector_absent(&spec.selector)
        && spec.selector.match_labels.as_ref().map_or(0, BTreeMap::len)
            + spec.selector.match_expressions.as_ref().map_or(0, Vec::len)
            == 0
    {
        errs.push(invalid_rendered(
            &sp,
            &selector_json(&spec.selector),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_pod_template_spec(&spec.template, &tp));
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
            errs.extend(is_not_more_than_100_percent(mu, &p.child("maxUnavailable")));
            errs.extend(is_not_more_than_100_percent(ms, &p.child("maxSurge")));
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
            let strategy = go_strategy_json(
                other,
                s.rolling_update
                    .as_ref()
                    .map(|ru| (ru.max_unavailable.as_ref(), ru.max_surge.as_ref())),
            );
            e.detail = format!("{strategy}: {}", e.detail);
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

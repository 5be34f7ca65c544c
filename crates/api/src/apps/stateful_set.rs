//! apps/v1 StatefulSet: `SetDefaults_StatefulSet`, the registry strategy steps,
//! `ValidateStatefulSet*` with the limited set of updatable spec fields.

use super::*;

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

/// Status cleared (its `availableReplicas` is not `omitempty` upstream, so a new
/// StatefulSet reads `{replicas: 0, availableReplicas: 0}`), generation 1.
pub fn prepare_stateful_set_for_create(s: &mut StatefulSet) {
    reset_on_create::<StatefulSetStatus>(&mut s.metadata, &mut s.status);
    if let Some(status) = &mut s.status {
        status.available_replicas = Some(0);
    }
}

pub fn prepare_stateful_set_for_update(new: &mut StatefulSet, old: &StatefulSet) {
    let changed = new.spec != old.spec;
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
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
                    &go_rolling_update(strategy.rolling_update.as_ref()),
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
                    errs.extend(is_not_more_than_100_percent(mu, &mp));
                }
            }
        }
        other => errs.push(invalid_rendered(
            &sp,
            &format!(
                "{{\"Type\":{},\"RollingUpdate\":{}}}",
                json_string(other),
                go_rolling_update(strategy.rolling_update.as_ref())
            ),
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
            &selector_json(&spec.selector),
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
    errs.extend(not_above_replicas(
        s.replicas,
        &[
            ("readyReplicas", s.ready_replicas),
            ("currentReplicas", s.current_replicas),
            ("updatedReplicas", s.updated_replicas),
            ("availableReplicas", s.available_replicas),
        ],
        &p,
    ));
    errs.extend(not_above(
        s.available_replicas.unwrap_or(0),
        s.ready_replicas.unwrap_or(0),
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

/// Go's `json.Marshal` of the internal `*apps.RollingUpdateStatefulSetStrategy` upstream's
/// errors print (no JSON tags: Go field names; absent pointers `null`).
fn go_rolling_update(ru: Option<&RollingUpdateStatefulSetStrategy>) -> String {
    match ru {
        None => "null".to_string(),
        Some(ru) => format!(
            "{{\"Partition\":{},\"MaxUnavailable\":{}}}",
            ru.partition.unwrap_or(0),
            ru.max_unavailable
                .as_ref()
                .map_or("null".into(), int_or_string)
        ),
    }
}

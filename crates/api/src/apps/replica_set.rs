//! apps/v1 ReplicaSet: `SetDefaults_ReplicaSet`, the registry strategy steps,
//! `ValidateReplicaSet*` and the apps/v1 immutable selector.

use super::*;

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
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
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
            &selector_json(&spec.selector),
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

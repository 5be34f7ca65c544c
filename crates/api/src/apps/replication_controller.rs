//! core/v1 ReplicationController: `SetDefaults_ReplicationController` (selector and labels from
//! the template), the registry strategy steps and `ValidateReplicationController*` (its
//! selector is a plain map and may change).

use super::*;

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
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
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
                errs.push(template_labels_mismatch(t, &template_path));
            }
            errs.extend(validate_pod_template_spec(t, &template_path));
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

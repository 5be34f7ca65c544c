//! Upstream's `stateful_set_utils.go`: a pod's identity (name `<set>-<ordinal>`, hostname,
//! subdomain, the `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`
//! labels), its claims' volumes, the predicates the sync decides by, the revision patch
//! (`getPatch`) and its application (`ApplyRevision`), and the status bookkeeping. All pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::controller_utils::{get_pod_from_template, is_pod_available, is_pod_ready};
use crate::history;

/// The label naming a stateful pod (upstream's `StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a pod's ordinal (upstream's `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label naming the revision a pod was made from (upstream's
/// `ControllerRevisionHashLabelKey`).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The debugging annotation that can hold a pod back from counting as ready
/// (upstream's `StatefulSetInitAnnotation`).
pub const INIT_ANNOTATION: &str = "pod.alpha.kubernetes.io/initialized";

/// A set's name and namespace.
pub fn name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

pub fn namespace(set: &StatefulSet) -> &str {
    set.metadata.namespace.as_deref().unwrap_or_default()
}

fn pod_name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// Upstream's `getParentNameAndOrdinal`: `<parent>-<digits>` at the end of the name; no
/// match (or an ordinal beyond 32 bits) is no parent and ordinal -1.
pub fn parent_and_ordinal(pod_name: &str) -> (Option<&str>, i64) {
    let Some((parent, digits)) = pod_name.rsplit_once('-') else {
        return (None, -1);
    };
    // The regular expression is greedy: the last dash followed by digits only.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (None, -1);
    }
    match digits.parse::<i32>() {
        Ok(n) => (Some(parent), i64::from(n)),
        Err(_) => (Some(parent), -1),
    }
}

/// A pod's ordinal, -1 when its name has none.
pub fn ordinal(pod: &Pod) -> i64 {
    parent_and_ordinal(pod_name_of(pod)).1
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &StatefulSet, ordinal: i64) -> String {
    format!("{}-{ordinal}", name(set))
}

/// Upstream's `isMemberOf`: the pod's name says it is this set's.
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(pod_name_of(pod)).0 == Some(name(set))
}

/// The first ordinal (`spec.ordinals.start`, else 0).
pub fn start_ordinal(set: &StatefulSet) -> i64 {
    i64::from(
        Some(&set.spec)
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .unwrap_or(0),
    )
}

pub fn replicas(set: &StatefulSet) -> i32 {
    Some(&set.spec).and_then(|s| s.replicas).unwrap_or(1)
}

/// The last ordinal of the set's range (start - 1 when it has no replicas).
pub fn end_ordinal(set: &StatefulSet) -> i64 {
    start_ordinal(set) + i64::from(replicas(set)) - 1
}

/// Upstream's `podInOrdinalRange`.
pub fn in_ordinal_range(set: &StatefulSet, pod: &Pod) -> bool {
    let o = ordinal(pod);
    o >= start_ordinal(set) && o <= end_ordinal(set)
}

pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    Some(&set.spec)
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn service_name(set: &StatefulSet) -> &str {
    Some(&set.spec)
        .and_then(|s| s.service_name.as_deref())
        .unwrap_or_default()
}

/// `Parallel` pod management (upstream's `allowsBurst`).
pub fn allows_burst(set: &StatefulSet) -> bool {
    Some(&set.spec).and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel")
}

pub fn strategy_type(set: &StatefulSet) -> &str {
    Some(&set.spec)
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `updateStrategy.rollingUpdate` when set: its partition and maxUnavailable.
pub fn rolling_update(set: &StatefulSet) -> Option<(i32, Option<IntOrString>)> {
    let ru = set.spec.update_strategy.as_ref()?.rolling_update.as_ref()?;
    Some((ru.partition.unwrap_or(0), ru.max_unavailable.clone()))
}

// ---------------------------------------------------------------------------------------
// Predicates

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The API server has the pod (its phase is set on create).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running with `Ready` true, unless the init annotation says `false`.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    if phase(pod) != "Running" || !is_pod_ready(pod) {
        return false;
    }
    let init = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INIT_ANNOTATION));
    !matches!(init.map(|v| parse_bool(v)), Some(Some(false)))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_pod_available(pod, min_ready_seconds, now)
}

pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// Upstream's `isUnavailable`.
pub fn is_unavailable(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    !is_healthy(pod) || !is_running_and_available(pod, min_ready_seconds, now)
}

/// The revision a pod was made from (its `controller-revision-hash` label).
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Identity and storage

/// Upstream's `identityMatches`.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let (parent, ordinal) = parent_and_ordinal(pod_name_of(pod));
    ordinal >= 0
        && parent == Some(name(set))
        && pod_name_of(pod) == pod_name(set, ordinal)
        && pod.metadata.namespace.as_deref().unwrap_or_default() == namespace(set)
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_NAME_LABEL))
            .map(String::as_str)
            == Some(pod_name_of(pod))
}

/// `<claim template>-<set>-<ordinal>`.
pub fn claim_name(set: &StatefulSet, template: &str, ordinal: i64) -> String {
    format!("{template}-{}-{ordinal}", name(set))
}

fn claim_templates(set: &StatefulSet) -> Vec<String> {
    Some(&set.spec)
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|t| {
            t.iter()
                .filter_map(|c| c.metadata.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
}

/// The claims a pod of the set would mount: `(template, claim)` names.
pub fn pod_claims(set: &StatefulSet, ordinal: i64) -> Vec<(String, String)> {
    claim_templates(set)
        .into_iter()
        .map(|t| {
            let claim = claim_name(set, &t, ordinal);
            (t, claim)
        })
        .collect()
}

/// Upstream's `storageMatches`: every claim template is a volume of the pod naming its claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ordinal = ordinal(pod);
    if ordinal < 0 {
        return false;
    }
    let volumes: BTreeMap<&str, &Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| (v.name.as_str(), v)).collect())
        .unwrap_or_default();
    pod_claims(set, ordinal).iter().all(|(t, claim)| {
        volumes
            .get(t.as_str())
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .is_some_and(|p| &p.claim_name == claim)
    })
}

/// Upstream's `updateStorage`: the claim templates' volumes first (template order), then
/// the pod's other volumes.
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let claims = pod_claims(set, ordinal(pod));
    if claims.is_empty() {
        return;
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(t, claim)| Volume {
            name: t.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(
        current
            .into_iter()
            .filter(|v| !claims.iter().any(|(t, _)| t == &v.name)),
    );
    spec.volumes = Some(volumes);
}

/// Upstream's `updateIdentity`: name and namespace from the ordinal, and the two labels.
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let ordinal = ordinal(pod);
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = Some(namespace(set).to_string());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.to_string(), name);
    labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
}

/// Upstream's `newStatefulSetPod`: a pod of `template` for `ordinal`, controlled by the
/// set, with its identity (also `hostname` and `subdomain`, set only at creation) and its
/// claims' volumes.
pub fn new_stateful_set_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    controller_ref: &OwnerReference,
    ordinal: i64,
) -> Pod {
    let mut pod = get_pod_from_template(template, name(set), Some(controller_ref));
    pod.metadata.name = Some(pod_name(set, ordinal));
    update_identity(set, &mut pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(pod_name(set, ordinal));
    spec.subdomain = Some(service_name(set).to_string()).filter(|s| !s.is_empty());
    update_storage(set, &mut pod);
    pod
}

/// Upstream's `newVersionedStatefulSetPod`: ordinals below the partition (or, without a
/// `rollingUpdate`, below `status.currentReplicas`) of a RollingUpdate set get the current
/// revision, the others the update revision. (Go's `&&` binds tighter than `||`, so the
/// partition applies whatever the strategy's type; validation allows a partition only
/// with RollingUpdate.)
pub fn new_versioned_pod(
    set: &StatefulSet,
    current: (&str, &PodTemplateSpec),
    update: (&str, &PodTemplateSpec),
    controller_ref: &OwnerReference,
    ordinal: i64,
) -> Pod {
    let start = start_ordinal(set);
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let use_current = match rolling_update(set) {
        None => {
            strategy_type(set) == "RollingUpdate" && ordinal < start + i64::from(current_replicas)
        }
        Some((partition, _)) => ordinal < start + i64::from(partition),
    };
    let (revision, template) = if use_current { current } else { update };
    let mut pod = new_stateful_set_pod(set, template, controller_ref, ordinal);
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(REVISION_LABEL.to_string(), revision.to_string());
    pod
}

// ---------------------------------------------------------------------------------------
// Revisions

/// Upstream's `getPatch`: the set's template as a strategic merge patch that replaces it,
/// `{"spec":{"template":{…,"$patch":"replace"}}}`.
pub fn get_patch(set: &StatefulSet) -> Value {
    let template = Some(&set.spec)
        .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let mut template = match template {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    template.insert("$patch".to_string(), json!("replace"));
    json!({"spec": {"template": Value::Object(template)}})
}

/// Upstream's `newRevision`: the set's template as revision `number`, labelled with the
/// template's labels and the hash, annotated with the set's annotations.
pub fn new_revision(set: &StatefulSet, number: i64, collision_count: i32) -> ControllerRevision {
    let labels = Some(&set.spec)
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let mut cr = history::new_controller_revision(
        &set.metadata,
        "apps/v1",
        "StatefulSet",
        labels,
        get_patch(set),
        number,
        Some(collision_count),
    );
    if let Some(annotations) = &set.metadata.annotations {
        cr.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend(annotations.clone());
    }
    cr
}

/// Upstream's `ApplyRevision`, for the part the controller reads: the template a revision
/// holds (its patch replaces the set's template).
pub fn revision_template(revision: &ControllerRevision) -> Result<PodTemplateSpec, String> {
    let mut template = revision
        .data
        .0
        .get("spec")
        .and_then(|s| s.get("template"))
        .cloned()
        .ok_or_else(|| "the revision holds no spec.template".to_string())?;
    if let Value::Object(m) = &mut template {
        m.remove("$patch");
    }
    serde_json::from_value(template).map_err(|e| e.to_string())
}

/// What becomes of the update revision (upstream's `getStatefulSetRevisions`): the newest
/// revision when it holds the set's template, an older equal one renumbered as the newest
/// (a rollback), or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateRevision {
    /// The newest revision (index into the sorted revisions).
    Newest(usize),
    /// An older equal revision (index) to renumber to the given number.
    Renumber(usize, i64),
    /// No revision holds the template: create the candidate.
    Create,
}

/// `revisions` sorted by [`history::revision_order`]; `candidate` the set's
/// [`new_revision`].
pub fn choose_update_revision(
    revisions: &[&ControllerRevision],
    candidate: &ControllerRevision,
) -> UpdateRevision {
    let equal: Vec<usize> = revisions
        .iter()
        .enumerate()
        .filter(|(_, r)| history::equal_revision(r, candidate))
        .map(|(i, _)| i)
        .collect();
    match equal.last() {
        None => UpdateRevision::Create,
        Some(&i) => {
            let newest = revisions.len() - 1;
            if history::equal_revision(revisions[newest], revisions[i]) {
                UpdateRevision::Newest(newest)
            } else {
                UpdateRevision::Renumber(i, history::number(candidate))
            }
        }
    }
}

/// Upstream's `truncateHistory`: the revisions to delete, oldest first — those neither
/// current, update, nor any pod's, beyond `revisionHistoryLimit` (negative keeps all).
pub fn revisions_to_prune(
    revisions: &[&ControllerRevision],
    live: &[&str],
    pods: &[&Pod],
    limit: i32,
) -> Vec<String> {
    let is_live = |name: &str| live.contains(&name) || pods.iter().any(|p| pod_revision(p) == name);
    let history: Vec<String> = revisions
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .filter(|n| !is_live(n))
        .collect();
    let Ok(limit) = usize::try_from(limit) else {
        return Vec::new();
    };
    if history.len() <= limit {
        return Vec::new();
    }
    let excess = history.len() - limit;
    history.into_iter().take(excess).collect()
}

// ---------------------------------------------------------------------------------------
// Status

/// Upstream's `computeReplicaStatus` over `pods`, added into `status`.
pub fn add_replica_status<'a>(
    status: &mut StatefulSetStatus,
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready_seconds: i32,
    current_revision: &str,
    update_revision: &str,
    now: Timestamp,
) {
    let add = |v: &mut Option<i32>| *v = Some(v.unwrap_or(0) + 1);
    for pod in pods {
        if is_created(pod) {
            status.replicas += 1;
        }
        if is_running_and_ready(pod) {
            add(&mut status.ready_replicas);
            if is_running_and_available(pod, min_ready_seconds, now) {
                add(&mut status.available_replicas);
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let revision = pod_revision(pod);
            if revision == current_revision {
                add(&mut status.current_replicas);
            }
            if revision == update_revision {
                add(&mut status.updated_replicas);
            }
        }
    }
}

/// Upstream's `completeRollingUpdate`: a RollingUpdate whose pods are all updated and
/// ready makes the update revision current.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let replicas = status.replicas;
    if strategy_type(set) == "RollingUpdate"
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.ready_replicas.unwrap_or(0) == replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Upstream's `inconsistentStatus`: whether `status` differs from the set's in what is
/// written.
pub fn inconsistent_status(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let old = set.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || n(status.current_replicas) != n(old.current_replicas)
        || n(status.ready_replicas) != n(old.ready_replicas)
        || n(status.updated_replicas) != n(old.updated_replicas)
        || s(&status.current_revision) != s(&old.current_revision)
        || n(status.available_replicas) != n(old.available_replicas)
        || s(&status.update_revision) != s(&old.update_revision)
        || status.collision_count != old.collision_count
}

/// Upstream's `getStatefulSetMaxUnavailable`: `maxUnavailable` (default 1) of the
/// replicas, rounded down, at least 1.
pub fn max_unavailable(set: &StatefulSet) -> Result<i32, String> {
    let value = rolling_update(set)
        .and_then(|(_, m)| m)
        .unwrap_or(IntOrString::Int(1));
    let n = api::workload::scaled_value(&value, replicas(set), false)?;
    Ok(n.max(1))
}

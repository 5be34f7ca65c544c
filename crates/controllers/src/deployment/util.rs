//! Upstream's `pkg/controller/deployment/util/deployment_util.go` and the arithmetic of
//! `rolling.go`, `recreate.go`, `sync.go` and `progress.go`, all pure: the
//! `pod-template-hash` ReplicaSet of a template, which ReplicaSets are new and old,
//! revisions and their annotations, `maxSurge`/`maxUnavailable`, how far a rollout may scale
//! the new ReplicaSet up and the old ones down, proportional scaling, the status and its
//! `Available` / `Progressing` conditions, and which old ReplicaSets history cleanup deletes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::controller_utils::{by_creation_timestamp, compute_hash, new_controller_ref};

/// The label (and selector term) that ties a ReplicaSet and its pods to one template.
pub const DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY: &str = "pod-template-hash";

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED_CONFIG_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The longest `revision-history` annotation kept (kube-controller-manager's default).
pub const REV_HISTORY_LIMIT_IN_CHARS: usize = 2000;

/// Condition types and reasons.
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const REPLICA_SET_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_DEPLOY_REASON: &str = "DeploymentPaused";
pub const RESUMED_DEPLOY_REASON: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// The deployment's `ScalingReplicaSet` event reason.
pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid value for IntOrString: invalid value {0:?}: {1}")]
    IntOrPercent(String, &'static str),
}

// ---------------------------------------------------------------------------------------
// Small accessors (Go's zero values for what is absent)

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn rs_status_field(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32,
) -> i32 {
    rs.status.as_ref().map(f).unwrap_or(0)
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    d.spec
        .strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

// ---------------------------------------------------------------------------------------
// maxSurge / maxUnavailable

/// Upstream's `GetScaledValueFromIntOrPercent`: an int as is, a percentage of `total`
/// rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(Error::IntOrPercent(
                    s.clone(),
                    "must be an integer or percentage",
                ));
            };
            let percent: i64 = number
                .parse()
                .map_err(|_| Error::IntOrPercent(s.clone(), "not a percentage"))?;
            let product = percent * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// Upstream's `ResolveFenceposts`: `(maxSurge, maxUnavailable)` for `desired` replicas
/// (surge rounds up, unavailability down, and both 0 would deadlock a rollout, so then one
/// pod may be unavailable).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), Error> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    if !is_rolling_update(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    // Validation refuses anything that does not resolve.
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 1))
}

/// Upstream's `MaxSurge` (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

/// Upstream's `MaxUnavailable` (0 for Recreate), never more than the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

// ---------------------------------------------------------------------------------------
// Templates, names, new and old ReplicaSets

/// Upstream's `EqualIgnoreHash`: the templates are semantically equal apart from
/// `pod-template-hash`. As apimachinery's semantic equality, an empty list or map equals an
/// absent one; and as Go's structs, an empty object (`resources: {}`, which kubectl sends
/// and Go always writes) equals an absent one.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY);
        }
        let mut value = serde_json::to_value(&t).unwrap_or_default();
        prune_empty(&mut value);
        value
    };
    strip(a) == strip(b)
}

/// Removes nulls, empty objects and empty lists, innermost first; whether `v` is now empty.
fn prune_empty(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, field| !prune_empty(field));
            map.is_empty()
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune_empty(item);
            }
            items.is_empty()
        }
        _ => false,
    }
}

/// The `pod-template-hash` of the deployment's template, with its collision count.
pub fn template_hash(d: &Deployment) -> String {
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    compute_hash(&d.spec.template, collision)
}

/// The ReplicaSet a deployment creates for its current template (upstream's
/// `getNewReplicaSet` when none exists): `<deployment>-<hash>`, the hash label added to the
/// template's labels and to the selector, the deployment's annotations (but its own
/// bookkeeping ones) with the revision and replica annotations, `replicas` given (see
/// [`new_rs_new_replicas`]), controlled by the deployment.
pub fn new_replica_set(d: &Deployment, revision: i64, new_replicas: i32) -> ReplicaSet {
    let hash = template_hash(d);
    let mut template = d.spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY.into(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector: LabelSelector = d.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY.into(), hash.clone());
    let name = d.metadata.name.clone().unwrap_or_default();
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            labels,
            owner_references: Some(vec![new_controller_ref(
                "apps/v1",
                "Deployment",
                &name,
                d.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(new_replicas),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    };
    set_new_replica_set_annotations(d, &mut rs, revision, false);
    rs
}

/// Upstream's `FindNewReplicaSet`: the oldest ReplicaSet whose template is the deployment's.
pub fn find_new_replica_set<'a>(d: &Deployment, all: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let mut sorted: Vec<&ReplicaSet> = all.to_vec();
    sorted.sort_by(|a, b| by_creation_timestamp(&a.metadata, &b.metadata));
    sorted.into_iter().find(|rs| {
        rs.spec
            .template
            .as_ref()
            .is_some_and(|t| equal_ignore_hash(t, &d.spec.template))
    })
}

/// Upstream's `FindOldReplicaSets`: every other ReplicaSet, and those of them with replicas.
pub fn find_old_replica_sets<'a>(
    d: &Deployment,
    all: &[&'a ReplicaSet],
) -> (Vec<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let new = find_new_replica_set(d, all).map(|rs| rs.metadata.uid.clone());
    let all_old: Vec<&ReplicaSet> = all
        .iter()
        .copied()
        .filter(|rs| Some(rs.metadata.uid.clone()) != new)
        .collect();
    let with_replicas = all_old
        .iter()
        .copied()
        .filter(|rs| rs_replicas(rs) != 0)
        .collect();
    (with_replicas, all_old)
}

// ---------------------------------------------------------------------------------------
// Revisions and annotations

/// A ReplicaSet's revision; absent is 0, unparsable is an error (`None`).
pub fn revision(meta: &ObjectMeta) -> Option<i64> {
    match annotation(meta, REVISION_ANNOTATION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// Upstream's `MaxRevision` (unparsable revisions skipped).
pub fn max_revision(all: &[&ReplicaSet]) -> i64 {
    all.iter()
        .filter_map(|rs| revision(&rs.metadata))
        .max()
        .unwrap_or(0)
        .max(0)
}

/// Upstream's `LastRevision`: the second highest revision.
pub fn last_revision(all: &[&ReplicaSet]) -> i64 {
    let (mut max, mut second) = (0, 0);
    for v in all.iter().filter_map(|rs| revision(&rs.metadata)) {
        if v >= max {
            second = max;
            max = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_CONFIG_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
    )
}

/// Upstream's `copyDeploymentAnnotationsToReplicaSet`.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let target = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || target.get(k) == Some(v) {
            continue;
        }
        target.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Upstream's `SetReplicasAnnotations`.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if a.get(key) != Some(&value) {
            a.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Upstream's `SetNewReplicaSetAnnotations`: the deployment's annotations copied, the
/// revision raised to `new_revision` (a rollback to an older ReplicaSet keeps its earlier
/// revisions in `revision-history`, up to [`REV_HISTORY_LIMIT_IN_CHARS`]), and for a
/// ReplicaSet about to be created the desired and max replicas. Whether anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(v) => v,
            // Upstream gives up on a ReplicaSet whose revision is not a number.
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY_ANNOTATION.into(), old);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > REV_HISTORY_LIMIT_IN_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= REV_HISTORY_LIMIT_IN_CHARS {
                    revisions = revisions.split_off(start);
                    revisions.push(&old);
                    let joined = revisions.join(",");
                    annotations.insert(REVISION_HISTORY_ANNOTATION.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

// ---------------------------------------------------------------------------------------
// Rollout arithmetic

fn sum(rss: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    rss.iter().map(|rs| f(rs)).sum()
}

/// Upstream's `GetReplicaCountForReplicaSets`: the sum of `spec.replicas`.
pub fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    sum(rss, rs_replicas)
}

/// Upstream's `GetActualReplicaCountForReplicaSets`: the sum of `status.replicas`.
pub fn actual_replica_count(rss: &[&ReplicaSet]) -> i32 {
    sum(rss, |rs| rs_status_field(rs, |s| s.replicas))
}

pub fn ready_replica_count(rss: &[&ReplicaSet]) -> i32 {
    sum(rss, |rs| {
        rs_status_field(rs, |s| s.ready_replicas.unwrap_or(0))
    })
}

pub fn available_replica_count(rss: &[&ReplicaSet]) -> i32 {
    sum(rss, |rs| {
        rs_status_field(rs, |s| s.available_replicas.unwrap_or(0))
    })
}

/// The sum of `terminatingReplicas`, `None` when no ReplicaSet reports it.
pub fn terminating_replica_count(rss: &[&ReplicaSet]) -> Option<i32> {
    rss.iter()
        .filter_map(|rs| rs.status.as_ref()?.terminating_replicas)
        .fold(None, |acc, n| Some(acc.unwrap_or(0) + n))
}

/// Upstream's `NewRSNewReplicas`: how many replicas the new ReplicaSet may have now.
/// Rolling: up to `replicas + maxSurge` pods over all ReplicaSets, never more than
/// `replicas`; Recreate: `replicas` (the old ones are gone by then).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    if !is_rolling_update(d) {
        return replicas(d);
    }
    let current = replica_count(all);
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new);
    }
    let scale_up = (max_total - current).min(replicas(d) - rs_replicas(new));
    rs_replicas(new) + scale_up
}

/// `reconcileOldReplicaSets`' budget: how many old pods may go now without the available
/// pods falling below `replicas - maxUnavailable`, the new ReplicaSet's unavailable pods
/// counted as if they were going to stay unavailable. Not positive: none.
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> i32 {
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = new.map_or(0, |rs| {
        rs_replicas(rs) - rs_status_field(rs, |s| s.available_replicas.unwrap_or(0))
    });
    replica_count(all) - min_available - new_unavailable
}

fn sorted_by_creation<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let mut sorted = rss.to_vec();
    sorted.sort_by(|a, b| by_creation_timestamp(&a.metadata, &b.metadata));
    sorted
}

/// Upstream's `cleanupUnhealthyReplicas`: the new sizes of old ReplicaSets whose unavailable
/// pods go first (oldest ReplicaSet first), within `max_cleanup`; and how many went.
pub fn cleanup_unhealthy_replicas(
    old: &[&ReplicaSet],
    max_cleanup: i32,
) -> (Vec<(String, i32)>, i32) {
    let mut total = 0;
    let mut scaled = Vec::new();
    for rs in sorted_by_creation(old) {
        if total >= max_cleanup {
            break;
        }
        let size = rs_replicas(rs);
        let available = rs_status_field(rs, |s| s.available_replicas.unwrap_or(0));
        if size == 0 || size == available {
            continue;
        }
        let down = (max_cleanup - total).min(size - available);
        scaled.push((rs.metadata.name.clone().unwrap_or_default(), size - down));
        total += down;
    }
    (scaled, total)
}

/// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: the new sizes of old ReplicaSets
/// (oldest first) so that the available pods stay at least `replicas - maxUnavailable`.
pub fn scale_down_old_for_rolling_update(
    d: &Deployment,
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
) -> Vec<(String, i32)> {
    let min_available = replicas(d) - max_unavailable(d);
    let available = available_replica_count(all);
    if available <= min_available {
        return Vec::new();
    }
    let budget = available - min_available;
    let mut total = 0;
    let mut scaled = Vec::new();
    for rs in sorted_by_creation(old) {
        if total >= budget {
            break;
        }
        let size = rs_replicas(rs);
        if size == 0 {
            continue;
        }
        let down = size.min(budget - total);
        scaled.push((rs.metadata.name.clone().unwrap_or_default(), size - down));
        total += down;
    }
    scaled
}

/// Upstream's `IsSaturated`: the ReplicaSet has, wants and has available all the
/// deployment's replicas.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let desired =
        annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).and_then(|v| v.parse::<i32>().ok());
    desired == Some(replicas(d))
        && rs_replicas(rs) == replicas(d)
        && rs_status_field(rs, |s| s.available_replicas.unwrap_or(0)) == replicas(d)
}

/// Upstream's `getReplicaSetFraction`: how many replicas a ReplicaSet gains (or loses) when
/// the deployment is resized during a rollout, in proportion to its share of the size the
/// deployment had (`max-replicas`).
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    // Go's math.Round: half away from zero.
    (size.round() as i32) - rs_replicas(rs)
}

/// Upstream's `GetProportion`.
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream's proportional `scale` for a rolling deployment resized mid-rollout: the new
/// size of each active ReplicaSet (`spec.replicas > 0`), sharing out the difference to
/// `replicas + maxSurge` by each one's proportion, larger (then newer) ones first when
/// growing, larger (then older) ones first when shrinking, the rounding leftover to the
/// first.
pub fn proportional_sizes(d: &Deployment, active: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let mut sets: Vec<&ReplicaSet> = active
        .iter()
        .copied()
        .filter(|rs| rs_replicas(rs) > 0)
        .collect();
    if sets.is_empty() {
        return Vec::new();
    }
    let total = replica_count(&sets);
    let allowed = if replicas(d) > 0 {
        replicas(d) + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    sets.sort_by(|a, b| {
        rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
            if to_add > 0 {
                // ReplicaSetsBySizeNewer: newer first.
                created(b).cmp(&created(a))
            } else {
                // ReplicaSetsBySizeOlder: older first.
                created(a).cmp(&created(b))
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &sets {
        let p = proportion(rs, d, to_add, added);
        sizes.push((
            rs.metadata.name.clone().unwrap_or_default(),
            rs_replicas(rs) + p,
        ));
        added += p;
    }
    if to_add != added {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

/// Upstream's `cleanupDeployment`: the old ReplicaSets beyond `revisionHistoryLimit`
/// (lowest revisions first) that may be deleted — empty, settled and not being deleted.
pub fn replica_sets_to_clean_up<'a>(d: &Deployment, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let Some(limit) = d.spec.revision_history_limit else {
        return Vec::new();
    };
    let mut cleanable: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = cleanable.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    cleanable.sort_by(|a, b| {
        let ra = revision(&a.metadata).unwrap_or(0);
        let rb = revision(&b.metadata).unwrap_or(0);
        ra.cmp(&rb)
            .then_with(|| by_creation_timestamp(&a.metadata, &b.metadata))
    });
    cleanable
        .into_iter()
        .take(usize::try_from(diff).unwrap_or(0))
        .filter(|rs| {
            let status = rs.status.clone().unwrap_or_default();
            status.replicas == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation <= status.observed_generation
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Status and conditions

/// Upstream's `NewDeploymentCondition`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
    }
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

/// Upstream's `SetDeploymentCondition`: same status and reason keeps the old one; same
/// status keeps its transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    let type_ = condition.type_.clone().unwrap_or_default();
    if let Some(current) = get_condition(status, &type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    let mut conditions: Vec<DeploymentCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.as_deref() != Some(type_.as_str()))
        .collect();
    conditions.push(condition);
    status.conditions = Some(conditions);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    let conditions: Vec<DeploymentCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.as_deref() != Some(type_))
        .collect();
    status.conditions = (!conditions.is_empty()).then_some(conditions);
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Upstream's `calculateStatus`: counts over all ReplicaSets (updated = the new one's), the
/// generation observed, and `Available` by `replicas - maxUnavailable`.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all);
    let total = replica_count(all);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: non_zero(actual_replica_count(all)),
        updated_replicas: non_zero(new.map_or(0, |rs| actual_replica_count(&[rs]))),
        ready_replicas: non_zero(ready_replica_count(all)),
        available_replicas: non_zero(available),
        unavailable_replicas: non_zero((total - available).max(0)),
        terminating_replicas: terminating_replica_count(all),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    let condition = if available >= replicas(d) - max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.",
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

/// Upstream's `DeploymentComplete`: every replica updated and available, the latest
/// generation observed.
pub fn deployment_complete(d: &Deployment, new: &DeploymentStatus) -> bool {
    let want = replicas(d);
    new.updated_replicas.unwrap_or(0) == want
        && new.replicas.unwrap_or(0) == want
        && new.available_replicas.unwrap_or(0) == want
        && new.observed_generation >= d.metadata.generation
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available pods, or fewer old
/// ones, than the deployment's status said.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// A `progressDeadlineSeconds` that is set and not "never" (`MaxInt32`).
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .progress_deadline_seconds
        .is_some_and(|s| s != i32::MAX)
}

/// Upstream's `DeploymentTimedOut`: the `Progressing` condition was last updated more than
/// `progressDeadlineSeconds` ago (and the rollout has neither completed nor already timed
/// out, which answer for themselves).
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(new, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref() else {
        return false;
    };
    let deadline =
        SignedDuration::from_secs(i64::from(d.spec.progress_deadline_seconds.unwrap_or(0)));
    from.0.checked_add(deadline).is_ok_and(|t| t < now)
}

/// Upstream's `syncRolloutStatus` condition: `Progressing` after a sync that computed `new`.
/// `None` leaves the condition as it is (no progress yet, deadline not passed).
pub fn progressing_condition(
    d: &Deployment,
    new_status: &DeploymentStatus,
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> Option<DeploymentCondition> {
    let name = new_rs
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    if d.spec.paused == Some(true) || !has_progress_deadline(d) {
        return None;
    }
    if new_rs.is_some() && deployment_complete(d, new_status) {
        return Some(new_condition(
            PROGRESSING,
            "True",
            NEW_RS_AVAILABLE_REASON,
            &format!("ReplicaSet \"{name}\" has successfully progressed."),
            now,
        ));
    }
    if deployment_progressing(d, new_status) {
        let mut c = new_condition(
            PROGRESSING,
            "True",
            REPLICA_SET_UPDATED_REASON,
            &format!("ReplicaSet \"{name}\" is progressing."),
            now,
        );
        // Progress keeps the transition time of a condition that was already True.
        if let Some(current) = get_condition(new_status, PROGRESSING) {
            if current.status.as_deref() == Some("True") {
                c.last_transition_time = current.last_transition_time.clone();
            }
        }
        return Some(c);
    }
    if new_rs.is_some() && deployment_timed_out(d, new_status, now) {
        return Some(new_condition(
            PROGRESSING,
            "False",
            TIMED_OUT_REASON,
            &format!("ReplicaSet \"{name}\" has timed out progressing."),
            now,
        ));
    }
    None
}

/// The `ScalingReplicaSet` event message (upstream's since 1.31).
pub fn scaling_message(rs_name: &str, from: i32, to: i32) -> String {
    let direction = if to > from { "up" } else { "down" };
    format!("Scaled {direction} replica set {rs_name} from {from} to {to}")
}

/// One step of upstream's `rolloutRolling` (after the new ReplicaSet exists): the
/// ReplicaSets to resize, by name and new size. The new ReplicaSet is resized first
/// (`reconcileNewReplicaSet`: down to `replicas` if above, else up within the surge); only
/// when it needs nothing do the old ones shrink (`reconcileOldReplicaSets`: their
/// unavailable pods within the budget of [`max_scaled_down`], then as many available ones
/// as `replicas - maxUnavailable` allows). Empty: nothing to scale, the rollout waits for
/// pods to become available (or is complete).
pub fn rolling_step(d: &Deployment, new: &ReplicaSet, old: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let name = |rs: &ReplicaSet| rs.metadata.name.clone().unwrap_or_default();
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.push(new);
    let want = replicas(d);
    let current = rs_replicas(new);
    if current > want {
        return vec![(name(new), want)];
    }
    if current < want {
        let grown = new_rs_new_replicas(d, &all, new);
        if grown != current {
            return vec![(name(new), grown)];
        }
    }
    let active_old: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs_replicas(rs) > 0)
        .collect();
    if replica_count(&active_old) == 0 {
        return Vec::new();
    }
    let budget = max_scaled_down(d, &all, Some(new));
    if budget <= 0 {
        return Vec::new();
    }
    let (cleaned, _) = cleanup_unhealthy_replicas(&active_old, budget);
    // The old ReplicaSets as the cleanup left them.
    let resized: Vec<ReplicaSet> = active_old
        .iter()
        .map(|rs| {
            let mut rs = (*rs).clone();
            if let Some((_, size)) = cleaned
                .iter()
                .find(|(n, _)| Some(n) == rs.metadata.name.as_ref())
            {
                rs.spec.replicas = Some(*size);
            }
            rs
        })
        .collect();
    let resized_refs: Vec<&ReplicaSet> = resized.iter().collect();
    let mut all_after: Vec<&ReplicaSet> = resized_refs.clone();
    all_after.push(new);
    let mut changes: BTreeMap<String, i32> = cleaned.into_iter().collect();
    for (n, size) in scale_down_old_for_rolling_update(d, &all_after, &resized_refs) {
        changes.insert(n, size);
    }
    changes.into_iter().collect()
}

/// What one sync of a Recreate rollout does (upstream's `rolloutRecreate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecreateStep {
    /// Scale these old ReplicaSets to 0.
    ScaleDownOld(Vec<String>),
    /// Old pods are still running (or terminating): wait for them to go.
    WaitForOldPods,
    /// Create the new ReplicaSet (with `replicas`), or scale the existing one to it.
    ScaleUpNew(i32),
    /// The new ReplicaSet has its replicas: only status (and history cleanup) remain.
    Done,
}

/// Upstream's `rolloutRecreate` decision: every old pod gone before any new one starts.
/// `old_pods_running`: an old ReplicaSet still reports replicas or one of its pods is not
/// finished (upstream's `oldPodsRunning`).
pub fn recreate_step(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
    old_pods_running: bool,
) -> RecreateStep {
    let to_zero: Vec<String> = old
        .iter()
        .filter(|rs| rs_replicas(rs) != 0)
        .filter_map(|rs| rs.metadata.name.clone())
        .collect();
    if !to_zero.is_empty() {
        return RecreateStep::ScaleDownOld(to_zero);
    }
    if old_pods_running || actual_replica_count(old) > 0 {
        return RecreateStep::WaitForOldPods;
    }
    match new {
        Some(rs) if rs_replicas(rs) == replicas(d) => RecreateStep::Done,
        _ => RecreateStep::ScaleUpNew(replicas(d)),
    }
}

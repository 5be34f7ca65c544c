//! Indexed Jobs (upstream's `indexed_job_utils.go`): the completion index of a pod, the
//! ordered index intervals behind `status.completedIndexes` / `status.failedIndexes`
//! (`"1,3-5,7"`), which indexes still need a pod, and which active pods repeat an index.
//! All pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};

use crate::controller_utils::{active_pods_less, sort_by_less};

/// The index of a pod of an Indexed Job (annotation and, as upstream's `PodIndexLabel`,
/// label).
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// How many times the pod's index failed before it (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-failure-count";
/// How many failures of the pod's index the pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT_ANNOTATION: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";
/// The variable every container of an Indexed Job's pod sees its index in.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The longest `generateName` the API server keeps whole (upstream's
/// `names.MaxGeneratedNameLength`).
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// Inclusive ranges of indexes, sorted and disjoint (upstream's `orderedIntervals`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<(i32, i32)>);

impl Intervals {
    /// Upstream's `parseIndexesFromString`: `"1,3-5"`; indexes at or past `completions`
    /// and malformed parts are dropped.
    pub fn parse(s: &str, completions: i32) -> Intervals {
        let mut out: Vec<(i32, i32)> = Vec::new();
        if s.is_empty() {
            return Intervals(out);
        }
        for part in s.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => match (a.parse::<i32>(), b.parse::<i32>()) {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => continue,
                },
                None => match part.parse::<i32>() {
                    Ok(a) => (a, a),
                    Err(_) => continue,
                },
            };
            if first < 0 || first > last || first >= completions {
                continue;
            }
            let last = last.min(completions - 1);
            match out.last_mut() {
                Some(prev) if prev.1 + 1 >= first => prev.1 = prev.1.max(last),
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    /// How many indexes.
    pub fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn has(&self, ix: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= ix && ix <= b)
    }

    /// These intervals with `indexes` (sorted) added (upstream's `withOrderedIndexes`).
    pub fn with_indexes(&self, indexes: impl IntoIterator<Item = i32>) -> Intervals {
        let mut all: BTreeSet<i32> = BTreeSet::new();
        for &(a, b) in &self.0 {
            all.extend(a..=b);
        }
        all.extend(indexes);
        Intervals::from_set(&all)
    }

    /// Both sets of indexes (upstream's `merge`).
    pub fn merge(&self, other: &Intervals) -> Intervals {
        let mut all: BTreeSet<i32> = BTreeSet::new();
        for &(a, b) in self.0.iter().chain(&other.0) {
            all.extend(a..=b);
        }
        Intervals::from_set(&all)
    }

    fn from_set(all: &BTreeSet<i32>) -> Intervals {
        let mut out: Vec<(i32, i32)> = Vec::new();
        for &ix in all {
            match out.last_mut() {
                Some(prev) if prev.1 + 1 == ix => prev.1 = ix,
                _ => out.push((ix, ix)),
            }
        }
        Intervals(out)
    }
}

impl std::fmt::Display for Intervals {
    /// `1,3-5,7`; a two-index interval prints as `3,4`, as upstream.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for &(a, b) in &self.0 {
            let mut put = |s: String| {
                let sep = if first { "" } else { "," };
                first = false;
                write!(f, "{sep}{s}")
            };
            if a == b {
                put(a.to_string())?;
            } else if a + 1 == b {
                put(a.to_string())?;
                put(b.to_string())?;
            } else {
                put(format!("{a}-{b}"))?;
            }
        }
        Ok(())
    }
}

pub fn is_indexed_job(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The pod's completion index from its annotation, `None` when absent or malformed
/// (upstream's `getCompletionIndex`, `unknownCompletionIndex`).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let v = pod
        .metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?;
    v.parse::<i32>().ok().filter(|ix| *ix >= 0)
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// `batch.kubernetes.io/job-index-failure-count`, 0 when absent or malformed.
pub fn index_failure_count(pod: &Pod) -> i32 {
    annotation_count(pod, INDEX_FAILURE_COUNT_ANNOTATION)
}

/// `batch.kubernetes.io/job-index-ignored-failure-count`, 0 when absent or malformed.
pub fn index_ignored_failure_count(pod: &Pod) -> i32 {
    annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION)
}

/// Failures of the index counted or not (upstream's `getIndexAbsoluteFailureCount`).
pub fn index_absolute_failure_count(pod: &Pod) -> i32 {
    index_failure_count(pod).saturating_add(index_ignored_failure_count(pod))
}

/// The indexes of `pods` (valid ones only).
pub fn indexes_of<P: std::borrow::Borrow<Pod>>(pods: &[P]) -> BTreeSet<i32> {
    pods.iter()
        .filter_map(|p| completion_index(p.borrow()))
        .collect()
}

/// Upstream's `firstPendingIndexes`: up to `count` indexes below `completions` that are
/// neither succeeded, nor active, nor (when only failed pods are replaced) held by a
/// terminating pod, nor failed.
pub fn first_pending_indexes(
    succeeded: &Intervals,
    active: &BTreeSet<i32>,
    terminating: Option<&BTreeSet<i32>>,
    failed: Option<&Intervals>,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let mut non_pending = succeeded.with_indexes(active.iter().copied());
    if let Some(t) = terminating {
        non_pending = non_pending.with_indexes(t.iter().copied());
    }
    if let Some(f) = failed {
        non_pending = non_pending.merge(f);
    }
    let mut out = Vec::new();
    let mut candidate = 0;
    while candidate < completions && out.len() < count {
        if !non_pending.has(candidate) {
            out.push(candidate);
        }
        candidate += 1;
    }
    out
}

/// Upstream's `appendDuplicatedIndexPodsForRemoval`: active pods with no valid index or one
/// past `completions` go, and of several pods with the same index all but the one the
/// active-pod order puts last. Returns (to remove, to keep).
pub fn duplicated_index_pods(
    pods: &[Arc<Pod>],
    completions: i32,
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
    let mut rm = Vec::new();
    for p in pods {
        match completion_index(p) {
            Some(ix) if ix < completions => by_index.entry(ix).or_default().push(p.clone()),
            _ => rm.push(p.clone()),
        }
    }
    let mut left = Vec::new();
    for (_, same) in by_index {
        let mut same = sort_by_less(same, &|a: &Arc<Pod>, b: &Arc<Pod>| active_pods_less(a, b));
        if let Some(keep) = same.pop() {
            left.push(keep);
        }
        rm.extend(same);
    }
    (rm, left)
}

/// `<job>-<index>-`, the job name shortened so the prefix stays within what the API server
/// keeps of a generated name (upstream's `podGenerateNameWithIndex`).
pub fn pod_generate_name_with_index(job_name: &str, index: i32) -> String {
    let append = format!("-{index}-");
    let prefix = format!("{job_name}{append}");
    if prefix.len() > MAX_GENERATED_NAME_LENGTH {
        let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(append.len());
        let cut: String = job_name.chars().take(keep).collect();
        format!("{cut}{append}")
    } else {
        prefix
    }
}

/// Every init and regular container gets `JOB_COMPLETION_INDEX` from the pod's index label
/// through the downward API, unless it sets the variable itself (upstream's
/// `addCompletionIndexEnvVariables` with `PodIndexLabel`).
pub fn add_completion_index_env_variables(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in containers {
        let env = c.env.get_or_insert_with(Vec::new);
        if env.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
            continue;
        }
        env.push(EnvVar {
            name: COMPLETION_INDEX_ENV.to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
}

/// The index as annotation and label, and the hostname `<job>-<index>` (upstream's
/// `addCompletionIndexAnnotation`, `addCompletionIndexLabel`, and the hostname it sets).
pub fn add_completion_index(template: &mut PodTemplateSpec, job_name: &str, index: i32) {
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string());
    if let Some(spec) = template.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
}

//! batch/v1 Job and CronJob: upstream's defaults (`pkg/apis/batch/v1/defaults.go`), the
//! registry strategies' create/update preparation (`pkg/registry/batch/{job,cronjob}`:
//! generated selectors and labels, status cleared, generations) and validation
//! (`pkg/apis/batch/validation`) with upstream's paths and messages.
//!
//! Owns: those pure functions. Does not own: running Jobs or CronJobs (controllers), cron
//! parsing (`crate::cron`).
//!
//! Departure: status updates are checked for non-negative counters only; upstream's
//! finished-job consistency rules (`RejectCompleteJobWithFailedCondition`, ...) guard its
//! Job controller, which peapod does not have yet.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::{validate_object_meta, validate_object_meta_update, NameRule};
use crate::validation::{
    is_dns1123_label, is_qualified_name, validate_immutable, validate_nonnegative,
};
use crate::workload::{
    count_generation, reset_on_create, selector_matches, template_labels, template_labels_mismatch,
    validate_label_selector, validate_pod_template_spec,
};

pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

const MAX_PARALLELISM_FOR_INDEXED_JOB: i32 = 100_000;
const MAX_FAILED_INDEXES_FOR_INDEXED_JOB: i32 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i32 = 100_000;
const PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS: i32 = 10_000;
const MAX_FAILED_INDEXES_LIMIT_FOR_HIGH_COMPLETIONS: i32 = 10_000;
const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_ON_EXIT_CODES_VALUES: usize = 255;
const MAX_ON_POD_CONDITIONS_PATTERNS: usize = 20;
const MAX_MANAGED_BY_LENGTH: usize = 63;
const MAX_SUCCESS_POLICY_RULES: usize = 20;
const MAX_SUCCEEDED_INDEXES_LENGTH: usize = 64 * 1024;
/// The CronJob controller appends `-<11 chars>` to make Job names of at most 63.
const MAX_CRON_JOB_NAME_LENGTH: usize = 52;

// ---------------------------------------------------------------------------------------
// Job

/// `SetDefaults_Job` plus the pod template's `SetDefaults_PodSpec`.
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    default_job_spec(spec);
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if let Some(labels) = labels {
        if job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            job.metadata.labels = Some(labels);
        }
    }
}

fn default_job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    if spec.parallelism.is_none() {
        spec.parallelism = Some(1);
    }
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    if spec.completion_mode.is_none() {
        spec.completion_mode = Some("NonIndexed".into());
    }
    if spec.suspend.is_none() {
        spec.suspend = Some(false);
    }
    if let Some(pfp) = &mut spec.pod_failure_policy {
        for rule in &mut pfp.rules {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                if pattern.status.as_deref().unwrap_or_default().is_empty() {
                    pattern.status = Some("True".into());
                }
            }
        }
    }
    if spec.pod_replacement_policy.is_none() {
        spec.pod_replacement_policy = Some(if spec.pod_failure_policy.is_some() {
            "Failed".into()
        } else {
            "TerminatingOrFailed".into()
        });
    }
    if spec.manual_selector.is_none() {
        spec.manual_selector = Some(false);
    }
    crate::pod::default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
}

/// The job strategy's `PrepareForCreate`: the generated selector and pod labels (unless
/// `manualSelector`), status cleared, generation 1. Runs after defaulting, with the uid
/// already assigned.
pub fn prepare_job_for_create(job: &mut Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.get_or_insert_with(Default::default);
    if !spec.manual_selector.unwrap_or(false) {
        generate_selector(spec, &name, &uid);
    }
    reset_on_create(&mut job.metadata, &mut job.status);
    // Upstream defaults the Job's labels from its template each time it decodes the stored
    // object, so reads show the generated labels; peapod defaults on write only.
    let labels = template_labels(&spec.template);
    if !labels.is_empty() && job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        job.metadata.labels = Some(labels);
    }
}

/// `generateSelector`: the four labels on the template (a user's own value wins and is
/// refused by validation if wrong), and `batch.kubernetes.io/controller-uid` selected.
fn generate_selector(spec: &mut JobSpec, name: &str, uid: &str) {
    let meta = spec.template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| name.to_string());
    }
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| uid.to_string());
    }
    let sel = spec.selector.get_or_insert_with(Default::default);
    sel.match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry(CONTROLLER_UID_LABEL.to_string())
        .or_insert_with(|| uid.to_string());
}

/// The job strategy's `PrepareForUpdate`: status kept, generation counted on spec changes.
pub fn prepare_job_for_update(new: &mut Job, old: &Job) {
    let changed = new.spec != old.spec;
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
}

/// The job status strategy's `PrepareForUpdate`: everything but status from the old Job.
pub fn job_copy_all_but_status(new: &mut Job, old: &Job) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// `ValidateJob` with the options upstream's strategy uses for a new Job.
pub fn validate_job(job: &Job) -> FieldErrors {
    let mut errs = validate_object_meta(&job.metadata, true, NameRule::Dns1123Subdomain);
    let default_spec = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(validate_generated_selector(job, spec, true));
    errs.extend(validate_job_spec(spec, &Path::new("spec")));
    if spec.completion_mode.as_deref() == Some("Indexed") && spec.completions.unwrap_or(0) > 0 {
        // The Job controller names pods' hostnames `<job>-<index>`.
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let hostname = format!("{name}-{}", spec.completions.unwrap_or(1) - 1);
        if !is_dns1123_label(&hostname).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    errs
}

/// `validateGeneratedSelector`.
fn validate_generated_selector(job: &Job, spec: &JobSpec, batch_labels: bool) -> FieldErrors {
    let mut errs = Vec::new();
    if spec.manual_selector.unwrap_or(false) || spec.selector.is_none() {
        return errs;
    }
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = template_labels(&spec.template);
    let path = Path::new("spec.template.metadata");
    let mut expected = BTreeMap::new();
    errs.extend(has_label(&labels, &path, LEGACY_CONTROLLER_UID_LABEL, uid));
    errs.extend(has_label(&labels, &path, LEGACY_JOB_NAME_LABEL, name));
    if batch_labels {
        errs.extend(has_label(&labels, &path, CONTROLLER_UID_LABEL, uid));
        errs.extend(has_label(&labels, &path, JOB_NAME_LABEL, name));
        expected.insert(CONTROLLER_UID_LABEL.to_string(), uid.to_string());
        expected.insert(JOB_NAME_LABEL.to_string(), name.to_string());
    }
    expected.insert(LEGACY_CONTROLLER_UID_LABEL.to_string(), uid.to_string());
    expected.insert(LEGACY_JOB_NAME_LABEL.to_string(), name.to_string());
    if selector_matches(spec.selector.as_ref(), &expected) == Some(false) {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector_value(spec.selector.as_ref()),
            "`selector` not auto-generated",
        ));
    }
    errs
}

fn selector_value(sel: Option<&MetaSelector>) -> serde_json::Value {
    serde_json::to_value(sel).unwrap_or_default()
}

/// `ValidateHasLabel`.
fn has_label(labels: &BTreeMap<String, String>, path: &Path, key: &str, want: &str) -> FieldErrors {
    let p = path.child("labels").key(key);
    match labels.get(key) {
        None => vec![FieldError::required(p, format!("must be '{want}'"))],
        Some(v) if v != want => vec![FieldError::invalid(
            p,
            serde_json::to_value(labels).unwrap_or_default(),
            format!("must be '{want}'"),
        )],
        Some(_) => Vec::new(),
    }
}

/// `ValidateJobSpec`: the shared rules plus a required selector matching the template.
pub fn validate_job_spec(spec: &JobSpec, path: &Path) -> FieldErrors {
    let mut errs = validate_job_spec_common(spec, path);
    match &spec.selector {
        None => errs.push(FieldError::required(path.child("selector"), "")),
        Some(sel) => errs.extend(validate_label_selector(Some(sel), &path.child("selector"))),
    }
    let labels = template_labels(&spec.template);
    if spec.selector.is_some() && selector_matches(spec.selector.as_ref(), &labels) == Some(false) {
        errs.push(template_labels_mismatch(
            &spec.template,
            &path.child("template"),
        ));
    }
    errs
}

fn nonneg(v: Option<impl Into<i64>>, path: &Path, name: &str) -> FieldErrors {
    v.map(|v| validate_nonnegative(v.into(), &path.child(name)))
        .unwrap_or_default()
}

/// `validateJobSpec`: what a Job and a CronJob's job template share.
fn validate_job_spec_common(spec: &JobSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    errs.extend(nonneg(spec.parallelism, path, "parallelism"));
    errs.extend(nonneg(spec.completions, path, "completions"));
    errs.extend(nonneg(
        spec.active_deadline_seconds,
        path,
        "activeDeadlineSeconds",
    ));
    errs.extend(nonneg(spec.backoff_limit, path, "backoffLimit"));
    errs.extend(nonneg(
        spec.ttl_seconds_after_finished,
        path,
        "ttlSecondsAfterFinished",
    ));
    errs.extend(nonneg(
        spec.backoff_limit_per_index,
        path,
        "backoffLimitPerIndex",
    ));
    if let Some(m) = spec.max_failed_indexes {
        errs.extend(validate_nonnegative(
            m.into(),
            &path.child("maxFailedIndexes"),
        ));
        if spec.backoff_limit_per_index.is_none() {
            errs.push(FieldError::required(
                path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(managed_by) = &spec.managed_by {
        errs.extend(validate_domain_prefixed_path(
            managed_by,
            &path.child("managedBy"),
        ));
        if managed_by.len() > MAX_MANAGED_BY_LENGTH {
            errs.push(FieldError::too_long(
                path.child("managedBy"),
                MAX_MANAGED_BY_LENGTH,
            ));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if let Some(mode) = &spec.completion_mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                path.child("completionMode"),
                mode.as_str(),
                &["NonIndexed", "Indexed"],
            ));
        }
        if indexed {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec
                .parallelism
                .filter(|p| *p > MAX_PARALLELISM_FOR_INDEXED_JOB)
            {
                errs.push(FieldError::invalid(
                    path.child("parallelism"),
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"),
                ));
            }
            if let (Some(c), Some(m)) = (spec.completions, spec.max_failed_indexes) {
                if m > c {
                    errs.push(FieldError::invalid(
                        path.child("maxFailedIndexes"),
                        m,
                        "must be less than or equal to completions",
                    ));
                }
            }
            if let Some(m) = spec
                .max_failed_indexes
                .filter(|m| *m > MAX_FAILED_INDEXES_FOR_INDEXED_JOB)
            {
                errs.push(FieldError::invalid(
                    path.child("maxFailedIndexes"),
                    m,
                    format!("must be less than or equal to {MAX_FAILED_INDEXES_FOR_INDEXED_JOB}"),
                ));
            }
            if spec.completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT)
                && spec.backoff_limit_per_index.is_some()
            {
                if spec.max_failed_indexes.is_none() {
                    errs.push(FieldError::required(
                        path.child("maxFailedIndexes"),
                        format!(
                            "must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"
                        ),
                    ));
                }
                if let Some(p) = spec
                    .parallelism
                    .filter(|p| *p > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS)
                {
                    errs.push(FieldError::invalid(
                        path.child("parallelism"),
                        p,
                        format!("must be less than or equal to {PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"),
                    ));
                }
                if let Some(m) = spec
                    .max_failed_indexes
                    .filter(|m| *m > MAX_FAILED_INDEXES_LIMIT_FOR_HIGH_COMPLETIONS)
                {
                    errs.push(FieldError::invalid(
                        path.child("maxFailedIndexes"),
                        m,
                        format!("must be less than or equal to {MAX_FAILED_INDEXES_LIMIT_FOR_HIGH_COMPLETIONS} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"),
                    ));
                }
            }
        }
    }
    if !indexed {
        if let Some(b) = spec.backoff_limit_per_index {
            errs.push(FieldError::invalid(
                path.child("backoffLimitPerIndex"),
                b,
                "requires indexed completion mode",
            ));
        }
        if let Some(m) = spec.max_failed_indexes {
            errs.push(FieldError::invalid(
                path.child("maxFailedIndexes"),
                m,
                "requires indexed completion mode",
            ));
        }
    }
    if spec.pod_failure_policy.is_some() {
        errs.extend(validate_pod_failure_policy(
            spec,
            &path.child("podFailurePolicy"),
        ));
    }
    if let Some(sp) = &spec.success_policy {
        if !indexed {
            errs.push(FieldError::invalid(
                path.child("successPolicy"),
                serde_json::to_value(sp).unwrap_or_default(),
                "requires indexed completion mode",
            ));
        } else {
            errs.extend(validate_success_policy(spec, &path.child("successPolicy")));
        }
    }
    if let Some(policy) = &spec.pod_replacement_policy {
        let p = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            if policy != "Failed" {
                errs.push(FieldError::not_supported(p, policy.as_str(), &["Failed"]));
            }
        } else if policy != "Failed" && policy != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                p,
                policy.as_str(),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    errs.extend(validate_pod_template_spec(
        &spec.template,
        &path.child("template"),
    ));
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or_default();
    let rp = path.child("template").child("spec").child("restartPolicy");
    match restart {
        "Always" | "" => errs.push(FieldError::required(
            rp,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {
            if spec.pod_failure_policy.is_some() && restart != "Never" {
                errs.push(FieldError::invalid(
                    rp,
                    restart,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            rp,
            other,
            &["OnFailure", "Never"],
        )),
    }
    errs
}

/// `IsDomainPrefixedPath`.
fn validate_domain_prefixed_path(v: &str, path: &Path) -> FieldErrors {
    let Some((host, _)) = v.split_once('/') else {
        return vec![FieldError::invalid(
            path,
            v,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )];
    };
    crate::validation::invalid_each(path, host, crate::validation::is_dns1123_subdomain(host))
}

const POD_FAILURE_ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];

fn validate_pod_failure_policy(spec: &JobSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let Some(pfp) = &spec.pod_failure_policy else {
        return errs;
    };
    let rules_path = path.child("rules");
    if pfp.rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(FieldError::too_many(
            &rules_path,
            pfp.rules.len(),
            MAX_POD_FAILURE_POLICY_RULES,
        ));
    }
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let names: Vec<&str> = pod_spec
        .containers
        .iter()
        .chain(pod_spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    for (i, rule) in pfp.rules.iter().enumerate() {
        let rp = rules_path.index(i);
        let ap = rp.child("action");
        match rule.action.as_str() {
            "" => errs.push(FieldError::required(
                ap,
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            )),
            "FailIndex" => {
                if spec.backoff_limit_per_index.is_none() {
                    errs.push(FieldError::invalid(
                        ap,
                        "FailIndex",
                        "requires the backoffLimitPerIndex to be set",
                    ));
                }
            }
            a if POD_FAILURE_ACTIONS.contains(&a) => {}
            a => errs.push(FieldError::not_supported(ap, a, POD_FAILURE_ACTIONS)),
        }
        if let Some(oec) = &rule.on_exit_codes {
            let p = rp.child("onExitCodes");
            match oec.operator.as_str() {
                "" => errs.push(FieldError::required(
                    p.child("operator"),
                    "valid values: [\"In\" \"NotIn\"]",
                )),
                "In" | "NotIn" => {}
                o => errs.push(FieldError::not_supported(
                    p.child("operator"),
                    o,
                    &["In", "NotIn"],
                )),
            }
            if let Some(c) = &oec.container_name {
                if !names.contains(&c.as_str()) {
                    errs.push(FieldError::invalid(
                        p.child("containerName"),
                        c.as_str(),
                        "must be one of the container or initContainer names in the pod template",
                    ));
                }
            }
            let vp = p.child("values");
            if oec.values.is_empty() {
                errs.push(FieldError::invalid(
                    &vp,
                    serde_json::json!([]),
                    "at least one value is required",
                ));
            } else if oec.values.len() > MAX_ON_EXIT_CODES_VALUES {
                errs.push(FieldError::too_many(
                    &vp,
                    oec.values.len(),
                    MAX_ON_EXIT_CODES_VALUES,
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            let mut ordered = true;
            for (j, v) in oec.values.iter().enumerate() {
                if oec.operator == "In" && *v == 0 {
                    errs.push(FieldError::invalid(
                        vp.index(j),
                        *v,
                        "must not be 0 for the In operator",
                    ));
                }
                if !seen.insert(*v) {
                    errs.push(FieldError::duplicate(vp.index(j), *v));
                }
                if j > 0 && oec.values[j - 1] > *v {
                    ordered = false;
                }
            }
            if !ordered {
                errs.push(FieldError::invalid(
                    &vp,
                    serde_json::to_value(&oec.values).unwrap_or_default(),
                    "must be ordered",
                ));
            }
        }
        let conditions = rule.on_pod_conditions.as_deref().unwrap_or_default();
        if !conditions.is_empty() {
            let p = rp.child("onPodConditions");
            if conditions.len() > MAX_ON_POD_CONDITIONS_PATTERNS {
                errs.push(FieldError::too_many(
                    &p,
                    conditions.len(),
                    MAX_ON_POD_CONDITIONS_PATTERNS,
                ));
            }
            for (j, pat) in conditions.iter().enumerate() {
                let pp = p.index(j);
                errs.extend(crate::validation::invalid_each(
                    &pp.child("type"),
                    &pat.type_,
                    is_qualified_name(&pat.type_),
                ));
                match pat.status.as_deref().unwrap_or_default() {
                    "" => errs.push(FieldError::required(
                        pp.child("status"),
                        "valid values: [\"False\" \"True\" \"Unknown\"]",
                    )),
                    "True" | "False" | "Unknown" => {}
                    s => errs.push(FieldError::not_supported(
                        pp.child("status"),
                        s,
                        &["False", "True", "Unknown"],
                    )),
                }
            }
        }
        match (rule.on_exit_codes.is_some(), !conditions.is_empty()) {
            (true, true) => errs.push(FieldError::invalid(
                &rp,
                serde_json::Value::Null,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (false, false) => errs.push(FieldError::invalid(
                &rp,
                serde_json::Value::Null,
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
    }
    errs
}

fn validate_success_policy(spec: &JobSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let Some(sp) = &spec.success_policy else {
        return errs;
    };
    let rules_path = path.child("rules");
    if sp.rules.is_empty() {
        errs.push(FieldError::required(
            &rules_path,
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if sp.rules.len() > MAX_SUCCESS_POLICY_RULES {
        errs.push(FieldError::too_many(
            &rules_path,
            sp.rules.len(),
            MAX_SUCCESS_POLICY_RULES,
        ));
    }
    let completions = spec.completions.unwrap_or(0);
    for (i, rule) in sp.rules.iter().enumerate() {
        let rp = rules_path.index(i);
        if rule.succeeded_count.is_none() && rule.succeeded_indexes.is_none() {
            errs.push(FieldError::required(
                &rp,
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let mut total = 0i32;
        if let Some(idx) = &rule.succeeded_indexes {
            let p = rp.child("succeededIndexes");
            if idx.len() > MAX_SUCCEEDED_INDEXES_LENGTH {
                errs.push(FieldError::too_long(&p, MAX_SUCCEEDED_INDEXES_LENGTH));
            }
            match indexes_count(idx, completions) {
                Ok(n) => total = n,
                Err(e) => errs.push(FieldError::invalid(
                    &p,
                    idx.as_str(),
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(c) = rule.succeeded_count {
            let p = rp.child("succeededCount");
            errs.extend(validate_nonnegative(c.into(), &p));
            if c > completions {
                errs.push(FieldError::invalid(
                    &p,
                    c,
                    format!("must be less than or equal to {completions} (the number of specified completions)"),
                ));
            }
            if rule.succeeded_indexes.is_some() && c > total {
                errs.push(FieldError::invalid(
                    &p,
                    c,
                    format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
                ));
            }
        }
    }
    errs
}

/// `validateIndexesFormat`: `1,3-5,7`, ordered, non-overlapping, below `completions`;
/// the number of indexes named.
fn indexes_count(s: &str, completions: i32) -> Result<i32, String> {
    let mut total = 0i32;
    let mut last: i64 = -1;
    if s.is_empty() {
        return Ok(0);
    }
    for interval in s.split(',') {
        let parse = |x: &str| -> Result<i64, String> {
            x.parse::<i64>().map_err(|_| {
                format!(
                    "cannot convert string to integer for index: {}",
                    crate::field::go_quote(x)
                )
            })
        };
        let (lo, hi) = match interval.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let v = parse(interval)?;
                (v, v)
            }
        };
        if hi < lo {
            return Err(format!(
                "non-increasing order, previous: {lo}, current: {hi}"
            ));
        }
        if lo <= last {
            return Err(format!(
                "non-increasing order, previous: {last}, current: {lo}"
            ));
        }
        if hi >= i64::from(completions) {
            return Err(format!("too large index: {hi}"));
        }
        if lo < 0 {
            return Err(format!("negative index: {lo}"));
        }
        total += i32::try_from(hi - lo + 1).unwrap_or(i32::MAX);
        last = hi;
    }
    Ok(total)
}

/// `ValidateJobUpdate` (with the strategy's options: scheduling directives of a suspended
/// Job that never started may change; Indexed Jobs may scale completions with
/// parallelism).
pub fn validate_job_update(new: &Job, old: &Job) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let default_spec = JobSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&default_spec);
    let old_spec = old.spec.as_ref().unwrap_or(&default_spec);
    let path = Path::new("spec");
    errs.extend(validate_job_spec(spec, &path));
    // Completions.
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if !indexed {
        errs.extend(validate_immutable(
            &spec.completions,
            &old_spec.completions,
            &path.child("completions"),
        ));
    } else if spec.completions != old_spec.completions {
        if let Some(c) = spec.completions {
            if Some(c) != spec.parallelism {
                errs.push(FieldError::invalid(
                    path.child("completions"),
                    c,
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        }
    }
    errs.extend(validate_immutable(
        &spec.selector,
        &old_spec.selector,
        &path.child("selector"),
    ));
    // Template, with the scheduling directives of a suspended, never started Job mutable.
    let suspended = old_spec.suspend.unwrap_or(false);
    let not_started = old.status.as_ref().is_none_or(|s| s.start_time.is_none());
    let mut old_template = old_spec.template.clone();
    if suspended && not_started {
        let new_spec = spec.template.spec.clone().unwrap_or_default();
        let ots = old_template.spec.get_or_insert_with(Default::default);
        match (&new_spec.affinity, &mut ots.affinity) {
            (None, Some(oa)) => {
                oa.node_affinity = None;
                if *oa == Default::default() {
                    ots.affinity = None;
                }
            }
            (Some(na), None) => {
                ots.affinity = Some(k8s_openapi::api::core::v1::Affinity {
                    node_affinity: na.node_affinity.clone(),
                    ..Default::default()
                });
            }
            (Some(na), Some(oa)) => oa.node_affinity = na.node_affinity.clone(),
            (None, None) => {}
        }
        ots.node_selector = new_spec.node_selector.clone();
        ots.tolerations = new_spec.tolerations.clone();
        ots.scheduling_gates = new_spec.scheduling_gates.clone();
        let new_meta = spec.template.metadata.clone().unwrap_or_default();
        let om = old_template.metadata.get_or_insert_with(Default::default);
        om.annotations = new_meta.annotations;
        om.labels = new_meta.labels;
    }
    errs.extend(validate_immutable(
        &spec.template,
        &old_template,
        &path.child("template"),
    ));
    errs.extend(validate_immutable(
        &spec.completion_mode,
        &old_spec.completion_mode,
        &path.child("completionMode"),
    ));
    errs.extend(validate_immutable(
        &spec.pod_failure_policy,
        &old_spec.pod_failure_policy,
        &path.child("podFailurePolicy"),
    ));
    errs.extend(validate_immutable(
        &spec.backoff_limit_per_index,
        &old_spec.backoff_limit_per_index,
        &path.child("backoffLimitPerIndex"),
    ));
    errs.extend(validate_immutable(
        &spec.managed_by,
        &old_spec.managed_by,
        &path.child("managedBy"),
    ));
    errs.extend(validate_immutable(
        &spec.success_policy,
        &old_spec.success_policy,
        &path.child("successPolicy"),
    ));
    errs
}

/// `ValidateJobUpdateStatus`: the counters stay non-negative.
pub fn validate_job_status_update(new: &Job, old: &Job) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let status = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    errs.extend(nonneg(status.active, &p, "active"));
    errs.extend(nonneg(status.succeeded, &p, "succeeded"));
    errs.extend(nonneg(status.failed, &p, "failed"));
    errs.extend(nonneg(status.ready, &p, "ready"));
    errs.extend(nonneg(status.terminating, &p, "terminating"));
    errs
}

// ---------------------------------------------------------------------------------------
// CronJob

/// `SetDefaults_CronJob` plus the job template's pod spec defaults (the job template's own
/// Job fields are not defaulted, as upstream: `SetDefaults_Job` takes a Job).
pub fn default_cron_job(cj: &mut CronJob) {
    let spec = &mut cj.spec;
    if spec
        .concurrency_policy
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        spec.concurrency_policy = Some("Allow".into());
    }
    if spec.suspend.is_none() {
        spec.suspend = Some(false);
    }
    if spec.successful_jobs_history_limit.is_none() {
        spec.successful_jobs_history_limit = Some(3);
    }
    if spec.failed_jobs_history_limit.is_none() {
        spec.failed_jobs_history_limit = Some(1);
    }
    let job_spec = spec.job_template.spec.get_or_insert_with(Default::default);
    crate::pod::default_pod_spec(job_spec.template.spec.get_or_insert_with(Default::default));
}

/// The cronjob strategy's `PrepareForCreate`: status cleared, generation 1.
pub fn prepare_cron_job_for_create(cj: &mut CronJob) {
    reset_on_create(&mut cj.metadata, &mut cj.status);
}

/// The cronjob strategy's `PrepareForUpdate`: status kept, generation counted on spec
/// changes.
pub fn prepare_cron_job_for_update(new: &mut CronJob, old: &CronJob) {
    let changed = new.spec != old.spec;
    new.status.clone_from(&old.status);
    count_generation(&mut new.metadata, &old.metadata, changed);
}

/// The cronjob status strategy's `PrepareForUpdate`.
pub fn cron_job_copy_all_but_status(new: &mut CronJob, old: &CronJob) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// `ValidateCronJobCreate`.
pub fn validate_cron_job(cj: &CronJob) -> FieldErrors {
    let mut errs = validate_object_meta(&cj.metadata, true, NameRule::Dns1123Subdomain);
    errs.extend(validate_cron_job_spec(&cj.spec, None, &Path::new("spec")));
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_CRON_JOB_NAME_LENGTH {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    errs
}

/// `ValidateCronJobUpdate` (no name length check, so old long names can still change).
pub fn validate_cron_job_update(new: &CronJob, old: &CronJob) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_cron_job_spec(
        &new.spec,
        Some(&old.spec),
        &Path::new("spec"),
    ));
    errs
}

/// `ValidateCronJobStatusUpdate`: metadata identity only.
pub fn validate_cron_job_status_update(new: &CronJob, old: &CronJob) -> FieldErrors {
    validate_object_meta_update(&new.metadata, &old.metadata)
}

fn validate_cron_job_spec(
    spec: &CronJobSpec,
    old: Option<&CronJobSpec>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let sp = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(sp, ""));
    } else {
        if let Err(e) = crate::cron::parse(&spec.schedule) {
            errs.push(FieldError::invalid(&sp, spec.schedule.as_str(), e.0));
        }
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        let has_tz = spec.schedule.contains("TZ");
        if allow_tz && has_tz && spec.time_zone.is_some() {
            errs.push(FieldError::invalid(
                &sp,
                spec.schedule.as_str(),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && has_tz {
            errs.push(FieldError::invalid(
                &sp,
                spec.schedule.as_str(),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    errs.extend(nonneg(
        spec.starting_deadline_seconds,
        path,
        "startingDeadlineSeconds",
    ));
    if old.is_none_or(|o| o.time_zone != spec.time_zone) {
        errs.extend(validate_time_zone(
            spec.time_zone.as_deref(),
            &path.child("timeZone"),
        ));
    }
    let cp = path.child("concurrencyPolicy");
    match spec.concurrency_policy.as_deref().unwrap_or_default() {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(cp, "")),
        other => errs.push(FieldError::not_supported(
            cp,
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    errs.extend(validate_job_template_spec(
        &spec.job_template,
        &path.child("jobTemplate"),
    ));
    errs.extend(nonneg(
        spec.successful_jobs_history_limit,
        path,
        "successfulJobsHistoryLimit",
    ));
    errs.extend(nonneg(
        spec.failed_jobs_history_limit,
        path,
        "failedJobsHistoryLimit",
    ));
    errs
}

/// `validateTimeZone`: IANA naming rules, not `Local`, and present in the tz database.
pub fn validate_time_zone(tz: Option<&str>, path: &Path) -> FieldErrors {
    let Some(tz) = tz else {
        return Vec::new();
    };
    if tz.is_empty() {
        return vec![FieldError::invalid(
            path,
            "",
            "timeZone must be nil or non-empty string",
        )];
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    };
    if !tz.split('/').all(part_ok) {
        return vec![FieldError::invalid(
            path,
            tz,
            format!("unknown time zone {tz}"),
        )];
    }
    let mut errs = Vec::new();
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = crate::cron::load_location(tz) {
        errs.push(FieldError::invalid(path, tz, e));
    }
    errs
}

/// `ValidateJobTemplateSpec`: the Job rules, with the selector left to the controller.
fn validate_job_template_spec(t: &JobTemplateSpec, path: &Path) -> FieldErrors {
    let default_spec = JobSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&default_spec);
    let sp = path.child("spec");
    let mut errs = validate_job_spec_common(spec, &sp);
    if let Some(sel) = &spec.selector {
        errs.push(FieldError::invalid(
            sp.child("selector"),
            selector_value(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            sp.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn created(v: serde_json::Value) -> Job {
        let mut j = job(v);
        j.metadata.uid = Some("u-1".into());
        default_job(&mut j);
        prepare_job_for_create(&mut j);
        j
    }

    fn msgs(errs: FieldErrors) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    fn pi() -> serde_json::Value {
        json!({"metadata": {"name": "pi", "namespace": "default"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "busybox"}]}}}})
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let j = created(pi());
        let spec = j.spec.clone().unwrap_or_default();
        assert_eq!(spec.completions, Some(1));
        assert_eq!(spec.parallelism, Some(1));
        assert_eq!(spec.backoff_limit, Some(6));
        assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.manual_selector, Some(false));
        assert_eq!(
            spec.pod_replacement_policy.as_deref(),
            Some("TerminatingOrFailed")
        );
        let sel = spec
            .selector
            .clone()
            .unwrap_or_default()
            .match_labels
            .unwrap_or_default();
        assert_eq!(
            sel,
            [(CONTROLLER_UID_LABEL.to_string(), "u-1".to_string())].into()
        );
        let labels = template_labels(&spec.template);
        assert_eq!(labels.get(JOB_NAME_LABEL).map(String::as_str), Some("pi"));
        assert_eq!(
            labels.get(LEGACY_JOB_NAME_LABEL).map(String::as_str),
            Some("pi")
        );
        assert_eq!(
            labels.get(LEGACY_CONTROLLER_UID_LABEL).map(String::as_str),
            Some("u-1")
        );
        assert_eq!(j.metadata.labels, Some(labels));
        assert_eq!(j.metadata.generation, Some(1));
        assert!(validate_job(&j).is_empty(), "{:?}", msgs(validate_job(&j)));
    }

    #[test]
    fn job_defaults_follow_upstream() {
        let mut v = pi();
        v["spec"]["completions"] = json!(5);
        v["spec"]["backoffLimitPerIndex"] = json!(1);
        v["spec"]["completionMode"] = json!("Indexed");
        v["spec"]["podFailurePolicy"] = json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]});
        let j = created(v);
        let spec = j.spec.clone().unwrap_or_default();
        assert_eq!(spec.parallelism, Some(1));
        assert_eq!(spec.completions, Some(5));
        assert_eq!(spec.backoff_limit, Some(i32::MAX));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
        let status = spec
            .pod_failure_policy
            .and_then(|p| p.rules[0].on_pod_conditions.clone());
        assert_eq!(
            status.and_then(|c| c[0].status.clone()).as_deref(),
            Some("True")
        );
        assert!(validate_job(&j).is_empty(), "{:?}", msgs(validate_job(&j)));
    }

    #[test]
    fn job_validation_messages() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"restartPolicy": "Always"}), "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""),
            (json!({"parallelism": -1}), "spec.parallelism: Invalid value: -1: must be greater than or equal to 0"),
            (json!({"activeDeadlineSeconds": -1}), "spec.activeDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0"),
            (json!({"ttlSecondsAfterFinished": -1}), "spec.ttlSecondsAfterFinished: Invalid value: -1: must be greater than or equal to 0"),
            (json!({"completionMode": "Sometimes"}), "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""),
            (json!({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}, "restartPolicy": "OnFailure"}),
                "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"),
            (json!({"successPolicy": {"rules": [{"succeededCount": 1}]}}), "spec.successPolicy: Invalid value: {\"rules\":[{\"succeededCount\":1}]}: requires indexed completion mode"),
            (json!({"backoffLimitPerIndex": 1}), "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"),
        ];
        for (patch, want) in cases {
            let mut v = pi();
            if let Some(rp) = patch.get("restartPolicy") {
                v["spec"]["template"]["spec"]["restartPolicy"] = rp.clone();
            }
            for (k, val) in patch.as_object().into_iter().flatten() {
                if k != "restartPolicy" {
                    v["spec"][k] = val.clone();
                }
            }
            let got = msgs(validate_job(&created(v)));
            assert!(got.iter().any(|m| m == want), "want {want}\ngot {got:?}");
        }
    }

    #[test]
    fn job_selector_must_match() {
        let mut v = pi();
        v["spec"]["manualSelector"] = json!(true);
        v["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        let got = msgs(validate_job(&created(v)));
        assert_eq!(got, vec!["spec.template.metadata.labels: Invalid value: null: `selector` does not match template `labels`"]);
        let mut v = pi();
        v["spec"]["selector"] = json!({"matchLabels": {"controller-uid": "other"}});
        let got = msgs(validate_job(&created(v)));
        assert!(
            got.iter()
                .any(|m| m.ends_with("`selector` not auto-generated")),
            "{got:?}"
        );
    }

    #[test]
    fn job_update_rules() {
        let mut old = created(pi());
        old.metadata.resource_version = Some("1".into());
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.completions = Some(3);
            s.parallelism = Some(4);
            s.selector = Some(Default::default());
        }
        let got = msgs(validate_job_update(&new, &old));
        assert!(
            got.iter()
                .any(|m| m.starts_with("spec.completions: Invalid value: 3: field is immutable")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.starts_with("spec.selector: Invalid value")),
            "{got:?}"
        );
        // Parallelism and activeDeadlineSeconds may change.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.parallelism = Some(4);
            s.active_deadline_seconds = Some(10);
        }
        assert_eq!(msgs(validate_job_update(&new, &old)), Vec::<String>::new());
        // A suspended job that never started may change its node selector, not its image.
        let mut old_s = old.clone();
        if let Some(s) = old_s.spec.as_mut() {
            s.suspend = Some(true);
        }
        let mut new = old_s.clone();
        if let Some(ps) = new.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            ps.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        }
        assert!(validate_job_update(&new, &old_s).is_empty());
        let mut new = old.clone();
        if let Some(ps) = new.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            ps.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        }
        let got = msgs(validate_job_update(&new, &old));
        assert!(
            got.iter()
                .any(|m| m.starts_with("spec.template: Invalid value")),
            "{got:?}"
        );
    }

    fn cron(v: serde_json::Value) -> CronJob {
        let mut cj: CronJob = serde_json::from_value(v).unwrap_or_default();
        default_cron_job(&mut cj);
        prepare_cron_job_for_create(&mut cj);
        cj
    }

    fn hello(schedule: &str) -> serde_json::Value {
        json!({"metadata": {"name": "hello", "namespace": "default"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }

    #[test]
    fn cron_job_defaults() {
        let cj = cron(hello("*/1 * * * *"));
        let spec = cj.spec.clone();
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.successful_jobs_history_limit, Some(3));
        assert_eq!(spec.failed_jobs_history_limit, Some(1));
        // The job template's own fields are not defaulted.
        assert_eq!(spec.job_template.spec.and_then(|s| s.backoff_limit), None);
        assert!(
            validate_cron_job(&cj).is_empty(),
            "{:?}",
            msgs(validate_cron_job(&cj))
        );
    }

    #[test]
    fn cron_job_validation_messages() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (hello("bad"), "spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"),
            (hello("TZ=UTC 0 * * * *"), "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
            (hello(""), "spec.schedule: Required value"),
            ({ let mut v = hello("@hourly"); v["spec"]["timeZone"] = json!("Mars/Olympus"); v },
                "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"),
            ({ let mut v = hello("@hourly"); v["spec"]["timeZone"] = json!("Local"); v },
                "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"),
            ({ let mut v = hello("@hourly"); v["spec"]["concurrencyPolicy"] = json!("Sometimes"); v },
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""),
            ({ let mut v = hello("@hourly"); v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always"); v },
                "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""),
            ({ let mut v = hello("@hourly"); v["spec"]["jobTemplate"]["spec"]["selector"] = json!({}); v },
                "spec.jobTemplate.spec.selector: Invalid value: {}: `selector` will be auto-generated"),
            ({ let mut v = hello("@hourly"); v["metadata"]["name"] = json!("a".repeat(53)); v },
                "must be no more than 52 characters"),
        ];
        for (v, want) in cases {
            let got = msgs(validate_cron_job(&cron(v)));
            assert!(
                got.iter().any(|m| m.ends_with(want)),
                "want {want}\ngot {got:?}"
            );
        }
        let mut v = hello("@hourly");
        v["spec"]["timeZone"] = json!("Europe/Paris");
        if crate::cron::load_location("Europe/Paris").is_ok() {
            assert!(validate_cron_job(&cron(v)).is_empty());
        }
    }

    #[test]
    fn indexes_format() {
        assert_eq!(indexes_count("0,2-4", 5), Ok(4));
        assert_eq!(
            indexes_count("3,1", 5),
            Err("non-increasing order, previous: 3, current: 1".into())
        );
        assert_eq!(indexes_count("7", 5), Err("too large index: 7".into()));
    }
}

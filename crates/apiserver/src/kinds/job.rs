//! batch/v1 Job, with its `status` subresource: upstream's `pkg/registry/batch/job`
//! (generated selector and labels on create, status kept on update) and the `kubectl get
//! jobs` table. The Job controller is `controllers::job`.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<Job> = TypedStrategy {
    default: api::batch::default_job,
    on_create: api::batch::prepare_job_for_create,
    prepare_for_update: api::batch::prepare_job_for_update,
    copy_all_but_status: api::batch::job_copy_all_but_status,
    validate_status_update: api::batch::validate_job_status_update,
    ..TypedStrategy::new(api::batch::validate_job, api::batch::validate_job_update)
};

/// Upstream's `jobColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "Status of the job.", 0),
    col(
        "Completions",
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.",
        0,
    ),
    col("Duration", "Time required to complete the job.", 0),
    AGE,
    col("Containers", "Names of each container in the template.", 1),
    col(
        "Images",
        "Images referenced by each container in the template.",
        1,
    ),
    col("Selector", SELECTOR_DOC, 1),
];

pub(crate) const SELECTOR_DOC: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

/// The STATUS cell, in upstream's order of precedence.
fn status(obj: &Value) -> &'static str {
    if condition_true(obj, "Complete") {
        "Complete"
    } else if condition_true(obj, "Failed") {
        "Failed"
    } else if !obj["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if condition_true(obj, "Suspended") {
        "Suspended"
    } else if condition_true(obj, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// The COMPLETIONS cell: `succeeded/completions`, or `succeeded/1 of parallelism` for a
/// work-queue Job.
fn completions(obj: &Value) -> String {
    let succeeded = obj["status"]["succeeded"].as_i64().unwrap_or(0);
    match obj["spec"]["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match obj["spec"]["parallelism"].as_i64().unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

fn time(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str().and_then(|t| t.parse().ok())
}

/// The DURATION cell: start to completion, or start to now while running.
fn duration(obj: &Value, now: jiff::Timestamp) -> String {
    match (
        time(&obj["status"]["startTime"]),
        time(&obj["status"]["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => api::printer::human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => api::printer::human_duration(end.duration_since(start)),
    }
}

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let (names, images) = table::template_containers(&obj["spec"]["template"]);
    Ok(vec![
        table::name(obj),
        json!(status(obj)),
        json!(completions(obj)),
        json!(duration(obj, now)),
        json!(table::age(obj, now)),
        names,
        images,
        table::format_label_selector(&obj["spec"]["selector"]),
    ])
}

/// Upstream's Job field label conversion: the metadata fields and `status.successful`.
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

fn job_fields(obj: &Value) -> Vec<(&'static str, String)> {
    let mut out = api::selector::generic_fields(obj);
    let succeeded = obj["status"]["succeeded"].as_i64().unwrap_or(0);
    out.push(("status.successful", succeeded.to_string()));
    out
}

pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    plural: "jobs",
    singular: "job",
    kind: "Job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    subresources: &[STATUS],
    storage: "jobs",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Job>,
    list_schema: super::list(
        "JobList",
        "JobList is a collection of jobs.",
        "items is the list of Jobs.",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: JOB_FIELDS,
        get: job_fields,
        aliases: &[],
        own_conversion: true,
    },
    // Upstream's DefaultGarbageCollectionPolicy for this kind at v1: orphan the pods when
    // the request names no policy (kept for backwards compatibility; kubectl sends Background).
    delete: delete::DeleteStrategy {
        gc_policy: delete::GarbageCollectionPolicy::OrphanDependents,
        ..delete::PLAIN
    },
    hooks: None,
    admit: None,
    conversion: None,
    scale: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_upstreams() {
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z"
            .parse()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let job = json!({"metadata": {"name": "pi", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2026-01-01T00:00:00Z"}});
        let got = cells(&job, now).unwrap_or_default();
        assert_eq!(
            got,
            vec![
                json!("pi"),
                json!("Running"),
                json!("1/3"),
                json!("10m"),
                json!("10m"),
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );
        let done = json!({"metadata": {"name": "q"}, "spec": {"parallelism": 3},
            "status": {"conditions": [{"type": "Complete", "status": "True"}],
                "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z"}});
        let got = cells(&done, now).unwrap_or_default();
        assert_eq!(
            got[1..4],
            [json!("Complete"), json!("0/1 of 3"), json!("42s")]
        );
        assert_eq!(got[7], json!("<none>"));
        let suspended = json!({"metadata": {"name": "s"}, "spec": {"completions": 1},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            cells(&suspended, now).unwrap_or_default()[1..4],
            [json!("Suspended"), json!("0/1"), json!("")]
        );
    }
}

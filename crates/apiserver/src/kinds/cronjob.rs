//! batch/v1 CronJob, with its `status` subresource: upstream's `pkg/registry/batch/cronjob`
//! (defaults, schedule and time zone validation from `api::batch` and `api::cron`) and the
//! `kubectl get cronjobs` table. The CronJob controller (`controllers::cronjob`) fires them.

use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{json, Value};

use super::job::SELECTOR_DOC;
use crate::errors::ApiError;
use crate::filter;
use crate::handlers::delete;
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<CronJob> = TypedStrategy {
    default: api::batch::default_cron_job,
    on_create: api::batch::prepare_cron_job_for_create,
    prepare_for_update: api::batch::prepare_cron_job_for_update,
    copy_all_but_status: api::batch::cron_job_copy_all_but_status,
    validate_status_update: api::batch::validate_cron_job_status_update,
    ..TypedStrategy::new(
        api::batch::validate_cron_job,
        api::batch::validate_cron_job_update,
    )
};

/// Upstream's `cronJobColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        0,
    ),
    col(
        "Timezone",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
        0,
    ),
    Column {
        kind: "boolean",
        ..col(
            "Suspend",
            "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
            0,
        )
    },
    Column {
        kind: "integer",
        ..col("Active", "A list of pointers to currently running jobs.", 0)
    },
    col(
        "Last Schedule",
        "Information when was the last time the job was successfully scheduled.",
        0,
    ),
    AGE,
    col("Containers", "Names of each container in the template.", 1),
    col(
        "Images",
        "Images referenced by each container in the template.",
        1,
    ),
    col("Selector", SELECTOR_DOC, 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let spec = &obj["spec"];
    let last = match obj["status"]["lastScheduleTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    {
        Some(t) => api::printer::human_duration(now.duration_since(t)),
        None => "<none>".into(),
    };
    // `printBoolPtr`.
    let suspend = match spec["suspend"].as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (names, images) = table::template_containers(&job_spec["template"]);
    Ok(vec![
        table::name(obj),
        json!(spec["schedule"].as_str().unwrap_or("")),
        json!(spec["timeZone"].as_str().unwrap_or("<none>")),
        json!(suspend),
        json!(obj["status"]["active"].as_array().map_or(0, Vec::len)),
        json!(last),
        json!(table::age(obj, now)),
        names,
        images,
        table::format_label_selector(&job_spec["selector"]),
    ])
}

pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    plural: "cronjobs",
    singular: "cronjob",
    kind: "CronJob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[STATUS],
    storage: "cronjobs",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<CronJob>,
    list_schema: super::list(
        "CronJobList",
        "CronJobList is a collection of cron jobs.",
        "items is the list of CronJobs.",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: filter::NAMESPACED_META,
    delete: delete::PLAIN,
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
        let now = jiff::Timestamp::UNIX_EPOCH;
        let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}});
        let got = cells(&cj, now).unwrap_or_default();
        assert_eq!(
            got,
            vec![
                json!("hello"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>"),
                json!("<unknown>"),
                json!("c"),
                json!("busybox"),
                json!("<none>")
            ]
        );
    }
}

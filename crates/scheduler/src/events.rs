//! The scheduler's core/v1 Events (`Scheduled`, `FailedScheduling`): their reasons,
//! messages and source. Writing them — counting repeats, aggregation, the spam filter — is
//! the shared recorder's (`record`), as client-go's is for kube-scheduler.

/// `source.component` and `reportingComponent` of the scheduler's events.
pub const COMPONENT: &str = "default-scheduler";
pub const REASON_SCHEDULED: &str = "Scheduled";
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";

/// Upstream's `Scheduled` message.
pub fn scheduled_message(namespace: &str, name: &str, node: &str) -> String {
    format!("Successfully assigned {namespace}/{name} to {node}")
}

/// Who the scheduler's events say wrote them: `default-scheduler`, with no host, and
/// `reporting_instance` (upstream: `default-scheduler-<hostname>`).
pub fn event_source(reporting_instance: &str) -> record::Source {
    record::Source {
        component: COMPONENT.into(),
        host: None,
        reporting_controller: COMPONENT.into(),
        reporting_instance: reporting_instance.into(),
    }
}

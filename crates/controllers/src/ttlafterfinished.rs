//! Upstream's TTL-after-finished controller (`pkg/controller/ttlafterfinished`): a Job
//! with `ttlSecondsAfterFinished` is deleted (background propagation, so the garbage
//! collector removes its pods) that long after its `Complete` or `Failed` condition.
//!
//! Owns: deleting finished Jobs. Does not own: the Jobs' pods (the garbage collector's and
//! the Job controller's tracking finalizer), any other kind.
//!
//! ```text
//!  job added/updated ─▶ ttl set and finished? ─▶ expire = finish time + ttl
//!     not yet ─▶ requeue at expire
//!     expired ─▶ fresh GET (still finished and expired?) ─▶ DELETE, background,
//!                precondition: the resourceVersion read (a changed Job is judged again)
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::informer::{self, Informer};
use crate::job::sync::{is_job_finished, ttl_expire_at};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading job {key}: {source}")]
    Get { key: String, source: kube::Error },
    #[error("deleting job {key}: {source}")]
    Delete { key: String, source: kube::Error },
}

/// What to do with a Job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No TTL, not finished, or being deleted.
    Nothing,
    /// Look again after this long.
    Wait(Duration),
    /// Delete it.
    Expired,
}

/// Upstream's `needsCleanup` and `timeLeft`.
pub fn decide(job: &Job, now: Timestamp) -> Ttl {
    if job.metadata.deletion_timestamp.is_some() || !is_job_finished(job) {
        return Ttl::Nothing;
    }
    let Some(expire) = ttl_expire_at(job) else {
        return Ttl::Nothing;
    };
    if expire <= now {
        Ttl::Expired
    } else {
        Ttl::Wait(Duration::try_from(expire.duration_since(now)).unwrap_or(Duration::ZERO))
    }
}

struct Ctx {
    client: Client,
    backoff: Backoff,
}

/// The controller, subscribed to the Job informer (call before it runs).
pub fn controller(
    client: Client,
    jobs: &Informer<Job>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Ctx {
        client,
        backoff: Backoff::controller_default(),
    });
    informer::run_controller(
        "ttl-after-finished",
        jobs,
        5,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
}

fn requeue(d: Duration) -> Action {
    Action::requeue(d.max(Duration::from_millis(50)))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let now = Timestamp::now();
    match decide(&job, now) {
        Ttl::Nothing => return Ok(Action::await_change()),
        Ttl::Wait(d) => return Ok(requeue(d)),
        Ttl::Expired => {}
    }
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let key = format!("{ns}/{name}");
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache may be stale: the TTL or the Job may have changed.
    let fresh = match api.get_opt(&name).await {
        Ok(Some(j)) => j,
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Get { key, source }),
    };
    match decide(&fresh, Timestamp::now()) {
        Ttl::Nothing => return Ok(Action::await_change()),
        Ttl::Wait(d) => return Ok(requeue(d)),
        Ttl::Expired => {}
    }
    debug!(job = %key, "cleaning up job");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            resource_version: fresh.metadata.resource_version.clone(),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        // Changed since read: judged again on its next update.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(requeue(Duration::from_secs(1))),
        Err(source) => return Err(Error::Delete { key, source }),
    }
    ctx.backoff.forget(&key);
    Ok(Action::await_change())
}

fn error_policy(job: Arc<Job>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or_default(),
        job.metadata.name.as_deref().unwrap_or_default()
    );
    let delay = ctx.backoff.next(&key);
    warn!(controller = "ttl-after-finished", %key, error = %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, finished: Option<(&str, &str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..JobSpec::default()
            }),
            status: finished.map(|(t, s, at)| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: t.into(),
                    status: s.into(),
                    last_transition_time: Some(Time(
                        Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH),
                    )),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn decides_from_finish_time_and_ttl() {
        let now = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let cases = [
            (
                "no ttl",
                job(None, Some(("Complete", "True", 900))),
                Ttl::Nothing,
            ),
            ("running", job(Some(0), None), Ttl::Nothing),
            (
                "complete false",
                job(Some(0), Some(("Complete", "False", 900))),
                Ttl::Nothing,
            ),
            (
                "ttl 0 complete",
                job(Some(0), Some(("Complete", "True", 1_000))),
                Ttl::Expired,
            ),
            (
                "failed long ago",
                job(Some(10), Some(("Failed", "True", 900))),
                Ttl::Expired,
            ),
            (
                "not yet",
                job(Some(30), Some(("Complete", "True", 990))),
                Ttl::Wait(Duration::from_secs(20)),
            ),
            (
                "suspended only",
                job(Some(0), Some(("Suspended", "True", 900))),
                Ttl::Nothing,
            ),
        ];
        for (name, j, want) in cases {
            assert_eq!(decide(&j, now), want, "{name}");
        }
    }
}

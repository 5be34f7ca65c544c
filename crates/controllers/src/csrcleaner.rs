//! Upstream's CSR cleaner (`pkg/controller/certificates/cleaner`, the `csrcleaner`
//! controller): old requests are garbage.
//!
//! Owns: deleting CertificateSigningRequests. Does not own: the certificates issued (their
//! holders keep them).
//!
//! | request | deleted when |
//! |---|---|
//! | approved and issued | 1 h after the Approved condition's `lastUpdateTime` |
//! | denied | 1 h after the Denied condition's `lastUpdateTime` |
//! | failed | 1 h after the Failed condition's `lastUpdateTime` |
//! | pending (no conditions) | 24 h after creation |
//! | issued | once the certificate's `notAfter` has passed |
//!
//! An approved request with no certificate yet is kept, as upstream keeps it.
//!
//! ```text
//!  csr added/updated ─▶ decide(now) ─▶ Delete ─▶ DELETE (precondition: the uid read)
//!                                  └▶ Keep(at) ─▶ look again at `at`
//! ```
//!
//! Departure: upstream lists every request hourly; here each is looked at again when its
//! next deadline falls, so it goes at its deadline rather than up to an hour later.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::informer::{self, Informer};
use api::certificates as certs;

const APPROVED_EXPIRATION: SignedDuration = SignedDuration::from_hours(1);
const DENIED_EXPIRATION: SignedDuration = SignedDuration::from_hours(1);
const PENDING_EXPIRATION: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unable to delete CSR {name}: {source}")]
    Delete { name: String, source: kube::Error },
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Keep it; look again at this time, if any deadline lies ahead.
    Keep(Option<Timestamp>),
    /// Delete it, for this reason (upstream's log line).
    Delete(&'static str),
}

/// Upstream's `CSRCleanerController.handle` criteria, with the earliest future deadline.
pub fn decide(csr: &CertificateSigningRequest, now: Timestamp) -> Cleanup {
    let conds = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let issued = !certs::issued_certificate(csr).is_empty();
    let mut next: Option<Timestamp> = None;
    let mut due = |at: Timestamp, reason: &'static str| -> Option<&'static str> {
        if at < now {
            Some(reason)
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
            None
        }
    };
    let updated = |t: &str| {
        conds
            .iter()
            .filter(|c| c.type_ == t)
            .filter_map(|c| c.last_update_time.as_ref().map(|t| t.0))
            .collect::<Vec<_>>()
    };
    if issued {
        for at in updated(certs::APPROVED) {
            if let Some(r) = due(
                at + APPROVED_EXPIRATION,
                "the certificate was issued over an hour ago",
            ) {
                return Cleanup::Delete(r);
            }
        }
    }
    for at in updated(certs::DENIED) {
        if let Some(r) = due(at + DENIED_EXPIRATION, "it was denied over an hour ago") {
            return Cleanup::Delete(r);
        }
    }
    for at in updated(certs::FAILED) {
        if let Some(r) = due(at + DENIED_EXPIRATION, "it failed over an hour ago") {
            return Cleanup::Delete(r);
        }
    }
    if conds.is_empty() {
        if let Some(created) = csr.metadata.creation_timestamp.as_ref() {
            if let Some(r) = due(
                created.0 + PENDING_EXPIRATION,
                "it is more than 24h old and unhandled",
            ) {
                return Cleanup::Delete(r);
            }
        }
    }
    if issued && certs::has_condition(csr, certs::APPROVED) {
        if let Some(end) = not_after(certs::issued_certificate(csr)) {
            if let Some(r) = due(end, "its certificate has expired") {
                return Cleanup::Delete(r);
            }
        }
    }
    Cleanup::Keep(next)
}

/// The first certificate's `notAfter` (upstream's `isExpired` reads the first block).
fn not_after(pem: &[u8]) -> Option<Timestamp> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

struct Ctx {
    client: Client,
    backoff: Backoff,
}

/// The controller, subscribed to the CSR informer (call before it runs).
pub fn controller(
    client: Client,
    csrs: &Informer<CertificateSigningRequest>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Ctx {
        client,
        backoff: Backoff::controller_default(),
    });
    informer::run_controller(
        "csrcleaner",
        csrs,
        2,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();
    match decide(&csr, now) {
        Cleanup::Keep(None) => Ok(Action::await_change()),
        Cleanup::Keep(Some(at)) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            // A moment past the deadline, so the next look finds it due.
            Ok(Action::requeue(wait + Duration::from_secs(1)))
        }
        Cleanup::Delete(reason) => {
            info!(csr = %name, reason, "cleaning CSR");
            let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: csr.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(source) => return Err(Error::Delete { name, source }),
            }
            ctx.backoff.forget(&name);
            Ok(Action::await_change())
        }
    }
}

fn error_policy(csr: Arc<CertificateSigningRequest>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let delay = ctx.backoff.next(&name);
    warn!(controller = "csrcleaner", %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestSpec,
        CertificateSigningRequestStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::ByteString;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn csr(
        created: &str,
        conds: &[(&str, &str)],
        cert: Option<String>,
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec::default(),
            status: Some(CertificateSigningRequestStatus {
                conditions: Some(
                    conds
                        .iter()
                        .map(|(t, at)| CertificateSigningRequestCondition {
                            type_: t.to_string(),
                            status: "True".into(),
                            last_update_time: Some(Time(ts(at))),
                            ..Default::default()
                        })
                        .collect(),
                ),
                certificate: cert.map(|c| ByteString(c.into_bytes())),
            }),
        }
    }

    fn cert_until(not_after: (i32, u8, u8)) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn decision_table() {
        let now = ts("2026-06-01T12:00:00Z");
        let valid = cert_until((2027, 1, 1));
        let expired = cert_until((2026, 5, 1));
        let t0 = "2026-06-01T10:00:00Z"; // two hours ago
        let recent = "2026-06-01T11:30:00Z"; // half an hour ago
        let cases: Vec<(&str, CertificateSigningRequest, Cleanup)> = vec![
            (
                "issued two hours ago",
                csr(t0, &[("Approved", t0)], Some(valid.clone())),
                Cleanup::Delete("the certificate was issued over an hour ago"),
            ),
            (
                "issued half an hour ago",
                csr(recent, &[("Approved", recent)], Some(valid.clone())),
                Cleanup::Keep(Some(ts("2026-06-01T12:30:00Z"))),
            ),
            (
                "approved, never issued",
                csr(t0, &[("Approved", t0)], None),
                Cleanup::Keep(None),
            ),
            (
                "denied two hours ago",
                csr(t0, &[("Denied", t0)], None),
                Cleanup::Delete("it was denied over an hour ago"),
            ),
            (
                "failed two hours ago",
                csr(t0, &[("Approved", t0), ("Failed", t0)], None),
                Cleanup::Delete("it failed over an hour ago"),
            ),
            (
                "pending for two hours",
                csr(t0, &[], None),
                Cleanup::Keep(Some(ts("2026-06-02T10:00:00Z"))),
            ),
            (
                "pending for two days",
                csr("2026-05-30T12:00:00Z", &[], None),
                Cleanup::Delete("it is more than 24h old and unhandled"),
            ),
            (
                "issued recently, certificate already expired",
                csr(recent, &[("Approved", recent)], Some(expired)),
                Cleanup::Delete("its certificate has expired"),
            ),
        ];
        for (name, c, want) in cases {
            assert_eq!(decide(&c, now), want, "{name}");
        }
    }
}

//! Upstream's CSR signing controller (`pkg/controller/certificates/signer`, the
//! `csrsigning` controller): issues the approved requests of the built-in Kubernetes
//! signers with the cluster CA (`DIR/pki/ca.crt`, `ca.key`; kube-controller-manager's
//! `--cluster-signing-cert-file`/`--cluster-signing-key-file`).
//!
//! Owns: `status.certificate` and the `Failed` condition of requests for
//! `kubernetes.io/kube-apiserver-client`, `kubernetes.io/kube-apiserver-client-kubelet`
//! and `kubernetes.io/kubelet-serving`. Does not own: approval (`csrapproving`, or a
//! human), other signers (left alone), the certificate's encoding (`x509`).
//!
//! Per signer, upstream's checks (`api::certificates`):
//!
//! | signer | request must be |
//! |---|---|
//! | `kube-apiserver-client` | usages client auth, optionally digital signature and key encipherment |
//! | `kube-apiserver-client-kubelet` | a node client request (`validate_kubelet_client_csr`) |
//! | `kubelet-serving` | a node serving request: O `system:nodes`, CN `system:node:*`, DNS/IP SANs only, server auth (`validate_kubelet_serving_csr`) |
//!
//! A request that fails them gets `Failed` (reason `SignerValidationFailure`, upstream's
//! message) and no certificate.
//!
//! ```text
//!  csr added/updated ─▶ approved, not denied, not failed, no certificate, our signer?
//!      no ─▶ nothing
//!      yes ─▶ request valid for the signer?
//!               no ─▶ PUT status +Failed/SignerValidationFailure
//!               yes ─▶ sign: notBefore = now - 5m, notAfter = now + ttl (- 5m when
//!                      ttl >= 8h), capped at the CA's notAfter; PUT status.certificate
//!                      (409: judged again on the fresh object)
//! ```
//!
//! ttl = `spec.expirationSeconds` bounded to [10m, `--cluster-signing-duration`] (default
//! 8760h), or the flag's value when none is asked for.

pub mod x509;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::informer::{self, Informer};
use api::certificates as certs;

/// kube-controller-manager's `--cluster-signing-duration` default: one year.
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(8760 * 3600);
/// How far back certificates are dated, for clock skew (upstream's `Backdate`).
const BACKDATE: SignedDuration = SignedDuration::from_mins(5);
/// Below this lifetime the end is not backdated (upstream's `Short`).
const SHORT: SignedDuration = SignedDuration::from_hours(8);
/// The shortest certificate issued whatever is asked for.
const MIN_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error auto signing csr {name}: {source}")]
    Sign { name: String, source: x509::Error },
    #[error("error auto signing csr {name}: {message}")]
    Policy { name: String, message: String },
    #[error("error updating signature for csr {name}: {source}")]
    Update { name: String, source: kube::Error },
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Mark it `Failed` with this message.
    Fail(String),
    /// Issue a certificate valid this long.
    Sign(Duration),
}

/// Upstream's `signer.handle`, up to signing.
pub fn decide(csr: &CertificateSigningRequest, max_ttl: Duration) -> Decision {
    if !certs::is_approved(csr)
        || certs::has_condition(csr, certs::FAILED)
        || !certs::issued_certificate(csr).is_empty()
    {
        return Decision::Nothing;
    }
    let usages = csr.spec.usages.as_deref().unwrap_or(&[]);
    let check: fn(&certs::Request, &[String]) -> Result<(), String> =
        match csr.spec.signer_name.as_str() {
            certs::KUBE_APISERVER_CLIENT_SIGNER => {
                |_, usages| certs::validate_apiserver_client_usages(usages)
            }
            certs::KUBE_APISERVER_CLIENT_KUBELET_SIGNER => certs::validate_kubelet_client_csr,
            certs::KUBELET_SERVING_SIGNER => certs::validate_kubelet_serving_csr,
            _ => return Decision::Nothing,
        };
    let Ok(req) = certs::parse_request(&csr.spec.request.0) else {
        // Validation refuses such requests; one stored before is not ours to fix.
        return Decision::Nothing;
    };
    match check(&req, usages) {
        Err(message) => Decision::Fail(message),
        Ok(()) => Decision::Sign(ttl(csr.spec.expiration_seconds, max_ttl)),
    }
}

/// Upstream's `signer.duration`: the asked-for lifetime within [10m, max], else max.
pub fn ttl(expiration_seconds: Option<i32>, max: Duration) -> Duration {
    match expiration_seconds {
        None => max,
        Some(s) => {
            Duration::from_secs(u64::try_from(s).unwrap_or(0)).clamp(MIN_TTL, max.max(MIN_TTL))
        }
    }
}

/// Upstream's `PermissiveSigningPolicy`: the validity window, or why none can be given.
pub fn validity(
    now: Timestamp,
    ttl: Duration,
    ca_not_after: Timestamp,
) -> Result<(Timestamp, Timestamp), String> {
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    let not_before = now - BACKDATE;
    let mut not_after = if ttl < SHORT {
        now.saturating_add(ttl)
    } else {
        now.saturating_add(ttl - BACKDATE)
    }
    .unwrap_or(Timestamp::MAX);
    if not_after >= ca_not_after {
        not_after = ca_not_after;
    }
    if not_before >= ca_not_after {
        return Err(format!("the signer has expired: NotAfter={ca_not_after}"));
    }
    if now >= ca_not_after {
        return Err(format!(
            "refusing to sign a certificate that expired in the past: NotAfter={ca_not_after}"
        ));
    }
    Ok((not_before, not_after))
}

/// The request with upstream's failure condition appended.
pub fn failed(
    csr: &CertificateSigningRequest,
    message: &str,
    now: Timestamp,
) -> CertificateSigningRequest {
    let mut csr = csr.clone();
    csr.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: certs::FAILED.into(),
            status: "True".into(),
            reason: Some("SignerValidationFailure".into()),
            message: Some(message.into()),
            last_update_time: Some(Time(now)),
            ..Default::default()
        });
    csr
}

/// PEM of one DER certificate.
pub fn pem(der: &[u8]) -> String {
    use std::fmt::Write;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", String::from_utf8_lossy(line));
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

struct Ctx {
    client: Client,
    ca: Arc<x509::Ca>,
    max_ttl: Duration,
    backoff: Backoff,
}

/// The controller, subscribed to the CSR informer (call before it runs).
pub fn controller(
    client: Client,
    ca: Arc<x509::Ca>,
    max_ttl: Duration,
    csrs: &Informer<CertificateSigningRequest>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Ctx {
        client,
        ca,
        max_ttl,
        backoff: Backoff::controller_default(),
    });
    informer::run_controller(
        "csrsigning",
        csrs,
        5,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();
    let body = match decide(&csr, ctx.max_ttl) {
        Decision::Nothing => return Ok(Action::await_change()),
        Decision::Fail(message) => {
            info!(csr = %name, %message, "signer validation failed");
            failed(&csr, &message, now)
        }
        Decision::Sign(ttl) => {
            let req =
                certs::parse_request(&csr.spec.request.0).map_err(|message| Error::Policy {
                    name: name.clone(),
                    message,
                })?;
            let (not_before, not_after) =
                validity(now, ttl, ctx.ca.not_after()).map_err(|message| Error::Policy {
                    name: name.clone(),
                    message,
                })?;
            let usages = csr.spec.usages.clone().unwrap_or_default();
            let der = ctx
                .ca
                .sign(&req, &usages, rand::random::<u64>(), not_before, not_after)
                .map_err(|source| Error::Sign {
                    name: name.clone(),
                    source,
                })?;
            let mut issued = (*csr).clone();
            issued
                .status
                .get_or_insert_with(Default::default)
                .certificate = Some(ByteString(pem(&der).into_bytes()));
            issued
        }
    };
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api
        .replace_status(&name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => info!(csr = %name, "csr processed"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(source) => return Err(Error::Update { name, source }),
    }
    ctx.backoff.forget(&name);
    Ok(Action::await_change())
}

fn error_policy(csr: Arc<CertificateSigningRequest>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let delay = ctx.backoff.next(&name);
    warn!(controller = "csrsigning", %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests;

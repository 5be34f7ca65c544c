//! Upstream's CSR approving controller (`pkg/controller/certificates/approver`, the
//! `csrapproving` controller): auto-approves kubelet client certificate requests, so a node
//! joining with a bootstrap token, or renewing its own certificate, gets one without an
//! administrator.
//!
//! Owns: the `Approved` condition (reason `AutoApproved`) of
//! `kubernetes.io/kube-apiserver-client-kubelet` requests it recognizes. Does not own:
//! denying (it never denies), signing (`csrsigning`), any other signer.
//!
//! Two recognizers, tried in upstream's order, each a node client request
//! (`api::certificates::validate_kubelet_client_csr`: O `[system:nodes]`, CN
//! `system:node:<name>`, no SANs, digital signature + client auth, optionally key
//! encipherment):
//!
//! | recognizer | also requires | upstream's SubjectAccessReview | peapod grants it to |
//! |---|---|---|---|
//! | `selfnodeclient` | the requestor's name is the CN | `create certificatesigningrequests/selfnodeclient` | group `system:nodes` |
//! | `nodeclient` | — | `create certificatesigningrequests/nodeclient` | group `system:bootstrappers` |
//!
//! Departure: there is no authorization yet (RBAC is issue 17), so the SubjectAccessReview
//! is replaced by the groups upstream's default bindings grant these verbs to (kubeadm binds
//! `nodeclient` to the bootstrap-token groups and `selfnodeclient` to `system:nodes`), plus
//! `system:masters`, whom any SubjectAccessReview allows.
//!
//! ```text
//!  csr added/updated ─▶ issued, approved or denied? ─▶ nothing
//!      └─▶ recognized and allowed ─▶ PUT approval (+Approved/AutoApproved), at the cached
//!          resourceVersion (409: judged again on the fresh object)
//!      └─▶ recognized, not allowed ─▶ logged, left pending (for a human)
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::informer::{self, Informer};
use api::certificates as certs;

/// The group whose members may have node client requests approved (bootstrap tokens).
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The group of nodes, who may renew their own client certificate.
pub const NODES: &str = "system:nodes";
const MASTERS: &str = "system:masters";

pub const SELF_NODE_CLIENT_MESSAGE: &str =
    "Auto approving self kubelet client certificate after SubjectAccessReview.";
pub const NODE_CLIENT_MESSAGE: &str =
    "Auto approving kubelet client certificate after SubjectAccessReview.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error updating approval for csr {name}: {source}")]
    Approve { name: String, source: kube::Error },
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not ours, or already decided.
    Nothing,
    /// Recognized but the requestor is not allowed: left for a human.
    NotAllowed(Vec<&'static str>),
    /// Approve with this message.
    Approve(&'static str),
}

/// Upstream's `sarApprover.handle`, the SubjectAccessReview replaced by group membership.
pub fn decide(csr: &CertificateSigningRequest) -> Decision {
    if !certs::issued_certificate(csr).is_empty()
        || certs::has_condition(csr, certs::APPROVED)
        || certs::has_condition(csr, certs::DENIED)
    {
        return Decision::Nothing;
    }
    if csr.spec.signer_name != certs::KUBE_APISERVER_CLIENT_KUBELET_SIGNER {
        return Decision::Nothing;
    }
    let Ok(req) = certs::parse_request(&csr.spec.request.0) else {
        return Decision::Nothing;
    };
    let usages = csr.spec.usages.as_deref().unwrap_or(&[]);
    if certs::validate_kubelet_client_csr(&req, usages).is_err() {
        return Decision::Nothing;
    }
    let groups = csr.spec.groups.as_deref().unwrap_or(&[]);
    let in_group = |g: &str| groups.iter().any(|have| have == g || have == MASTERS);
    let mut tried = Vec::new();
    if csr.spec.username.as_deref() == Some(req.subject.common_name.as_str()) {
        tried.push("selfnodeclient");
        if in_group(NODES) {
            return Decision::Approve(SELF_NODE_CLIENT_MESSAGE);
        }
    }
    tried.push("nodeclient");
    if in_group(BOOTSTRAPPERS) {
        return Decision::Approve(NODE_CLIENT_MESSAGE);
    }
    Decision::NotAllowed(tried)
}

/// The request with upstream's approval condition appended (timestamps are the server's).
pub fn approved(csr: &CertificateSigningRequest, message: &str) -> CertificateSigningRequest {
    let mut csr = csr.clone();
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: certs::APPROVED.into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(message.into()),
            ..Default::default()
        });
    csr
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
        "csrapproving",
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
    match decide(&csr) {
        Decision::Nothing => {}
        Decision::NotAllowed(tried) => {
            debug!(csr = %name, ?tried, "recognized csr but the requestor may not have it auto-approved");
        }
        Decision::Approve(message) => {
            let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
            let body = approved(&csr, message);
            match api
                .replace_subresource("approval", &name, &PostParams::default(), &body)
                .await
            {
                Ok(_) => info!(csr = %name, "auto-approved"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                // Changed since cached: the update that changed it triggers another look.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Action::requeue(Duration::from_secs(1)))
                }
                Err(source) => return Err(Error::Approve { name, source }),
            }
        }
    }
    ctx.backoff.forget(&name);
    Ok(Action::await_change())
}

fn error_policy(csr: Arc<CertificateSigningRequest>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let name = csr.metadata.name.clone().unwrap_or_default();
    warn!(controller = "csrapproving", %error, "reconcile failed");
    Action::requeue(ctx.backoff.next(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use k8s_openapi::ByteString;

    pub(crate) fn request_pem(cn: &str, org: Option<&str>, sans: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if let Some(o) = org {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, o);
        }
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn csr(
        cn: &str,
        org: Option<&str>,
        signer: &str,
        usages: &[&str],
        user: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: Default::default(),
            spec: CertificateSigningRequestSpec {
                request: ByteString(request_pem(cn, org, &[]).into_bytes()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|s| s.to_string()).collect()),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        }
    }

    const KUBELET: &str = certs::KUBE_APISERVER_CLIENT_KUBELET_SIGNER;
    const USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];
    const NODE_ORG: Option<&str> = Some("system:nodes");

    #[test]
    fn decision_table() {
        let boot = &[
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated",
        ][..];
        let cases: Vec<(&str, CertificateSigningRequest, Decision)> = vec![
            (
                "bootstrap token asks for a node's client cert",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    KUBELET,
                    USAGES,
                    "system:bootstrap:abcdef",
                    boot,
                ),
                Decision::Approve(NODE_CLIENT_MESSAGE),
            ),
            (
                "the node renews its own",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    KUBELET,
                    &["digital signature", "client auth"],
                    "system:node:n1",
                    &["system:nodes", "system:authenticated"],
                ),
                Decision::Approve(SELF_NODE_CLIENT_MESSAGE),
            ),
            (
                "a node asks for another node's",
                csr(
                    "system:node:n2",
                    NODE_ORG,
                    KUBELET,
                    USAGES,
                    "system:node:n1",
                    &["system:nodes"],
                ),
                Decision::NotAllowed(vec!["nodeclient"]),
            ),
            (
                "an ordinary user",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    KUBELET,
                    USAGES,
                    "alice",
                    &["devs"],
                ),
                Decision::NotAllowed(vec!["nodeclient"]),
            ),
            (
                "same name but not a node",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    KUBELET,
                    USAGES,
                    "system:node:n1",
                    &["devs"],
                ),
                Decision::NotAllowed(vec!["selfnodeclient", "nodeclient"]),
            ),
            (
                "an administrator",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    KUBELET,
                    USAGES,
                    "system:admin",
                    &["system:masters"],
                ),
                Decision::Approve(NODE_CLIENT_MESSAGE),
            ),
            (
                "another signer",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    certs::KUBE_APISERVER_CLIENT_SIGNER,
                    USAGES,
                    "system:bootstrap:abcdef",
                    boot,
                ),
                Decision::Nothing,
            ),
            (
                "not system:nodes",
                csr(
                    "system:node:n1",
                    Some("devs"),
                    KUBELET,
                    USAGES,
                    "system:bootstrap:abcdef",
                    boot,
                ),
                Decision::Nothing,
            ),
            (
                "not a node name",
                csr(
                    "n1",
                    NODE_ORG,
                    KUBELET,
                    USAGES,
                    "system:bootstrap:abcdef",
                    boot,
                ),
                Decision::Nothing,
            ),
            (
                "server auth asked for",
                csr(
                    "system:node:n1",
                    NODE_ORG,
                    KUBELET,
                    &["digital signature", "server auth"],
                    "system:bootstrap:abcdef",
                    boot,
                ),
                Decision::Nothing,
            ),
        ];
        for (name, c, want) in cases {
            assert_eq!(decide(&c), want, "{name}");
        }
    }

    #[test]
    fn decided_or_issued_requests_are_left_alone() {
        let boot = &["system:bootstrappers"][..];
        let base = csr(
            "system:node:n1",
            NODE_ORG,
            KUBELET,
            USAGES,
            "system:bootstrap:x",
            boot,
        );
        for t in [certs::APPROVED, certs::DENIED] {
            let mut c = base.clone();
            c.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: t.into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                certificate: None,
            });
            assert_eq!(decide(&c), Decision::Nothing, "{t}");
        }
        let mut issued = base.clone();
        issued.status = Some(CertificateSigningRequestStatus {
            conditions: None,
            certificate: Some(ByteString(b"x".to_vec())),
        });
        assert_eq!(decide(&issued), Decision::Nothing);
    }

    #[test]
    fn approval_condition_is_upstreams() {
        let c = csr(
            "system:node:n1",
            NODE_ORG,
            KUBELET,
            USAGES,
            "system:bootstrap:x",
            &["system:bootstrappers"],
        );
        let a = approved(&c, NODE_CLIENT_MESSAGE);
        let cond = &a
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .expect("conditions")[0];
        assert_eq!(cond.type_, "Approved");
        assert_eq!(cond.status, "True");
        assert_eq!(cond.reason.as_deref(), Some("AutoApproved"));
        assert_eq!(
            cond.message.as_deref(),
            Some("Auto approving kubelet client certificate after SubjectAccessReview.")
        );
        assert!(certs::is_approved(&a));
    }
}

//! Asking the cluster for a client certificate, as kubelet TLS bootstrap does: a new
//! ECDSA P-256 key, a CertificateSigningRequest `node-csr-<random>` for
//! `CN=system:node:<name>, O=system:nodes` with signer
//! `kubernetes.io/kube-apiserver-client-kubelet` and usages digital signature + client
//! auth, then a watch on it until the signer sets `.status.certificate` (or a condition
//! says Denied/Failed).
//!
//! ```text
//!   create CSR ──▶ (approver: Approved) ──▶ (signer: status.certificate) ──▶ Credential
//!        └────────▶ Denied / Failed ──▶ error
//! ```

use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::certs::Credential;
use crate::Error;

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// How long the agent waits for its certificate.
pub const WAIT: Duration = Duration::from_secs(600);

/// The CSR object for `node_name`'s key (`request_pem` from [`request`]).
pub fn object(name: &str, request_pem: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.as_bytes().to_vec()),
            signer_name: SIGNER.to_string(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    }
}

/// A new key and the PEM certificate request for `node_name`.
pub fn request(node_name: &str) -> Result<(rcgen::KeyPair, String), Error> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Certificate(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("system:node:{node_name}"),
    );
    let csr = params
        .serialize_request(&key)
        .map_err(|e| Error::Certificate(e.to_string()))?;
    let pem = csr.pem().map_err(|e| Error::Certificate(e.to_string()))?;
    Ok((key, pem))
}

/// `node-csr-<random>`.
pub fn name() -> String {
    use rand::Rng;
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let s: String = (0..12)
        .map(|_| A[rng.random_range(0..A.len())] as char)
        .collect();
    format!("node-csr-{s}")
}

/// Where a CSR stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Issued(Vec<u8>),
    Refused(String),
}

/// The pure reading of a CSR's status.
pub fn outcome(csr: Option<&CertificateSigningRequest>) -> Outcome {
    let Some(status) = csr.and_then(|c| c.status.as_ref()) else {
        return Outcome::Pending;
    };
    for c in status.conditions.iter().flatten() {
        if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
            let why = c
                .message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_default();
            return Outcome::Refused(format!("{}: {why}", c.type_));
        }
    }
    match &status.certificate {
        Some(b) if !b.0.is_empty() => Outcome::Issued(b.0.clone()),
        _ => Outcome::Pending,
    }
}

/// Creates a CSR for `node_name` with `client` and waits for the certificate.
pub async fn obtain(client: &kube::Client, node_name: &str) -> Result<Credential, Error> {
    let (key, pem) = request(node_name)?;
    let name = name();
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    api.create(&PostParams::default(), &object(&name, &pem))
        .await
        .map_err(|e| Error::Csr {
            name: name.clone(),
            message: format!("creating: {e}"),
        })?;
    tracing::info!(csr = %name, "certificate signing request created; waiting for approval");
    let cond = |c: Option<&CertificateSigningRequest>| outcome(c) != Outcome::Pending;
    let csr = tokio::time::timeout(WAIT, kube::runtime::wait::await_condition(api, &name, cond))
        .await
        .map_err(|_| Error::Csr {
            name: name.clone(),
            message: format!("no certificate within {}s", WAIT.as_secs()),
        })?
        .map_err(|e| Error::Csr {
            name: name.clone(),
            message: format!("watching: {e}"),
        })?;
    match outcome(csr.as_ref()) {
        Outcome::Issued(cert) => {
            let cert = String::from_utf8(cert).map_err(|_| Error::Csr {
                name: name.clone(),
                message: "the certificate is not PEM".into(),
            })?;
            let cred = Credential::new(cert, key.serialize_pem())?;
            tracing::info!(csr = %name, not_after = %cred.not_after, "client certificate issued");
            Ok(cred)
        }
        Outcome::Refused(why) => Err(Error::Csr { name, message: why }),
        Outcome::Pending => Err(Error::Csr {
            name,
            message: "deleted before it was signed".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn with(status: Option<CertificateSigningRequestStatus>) -> CertificateSigningRequest {
        let mut c = object("n", "PEM");
        c.status = status;
        c
    }

    fn cond(t: &str) -> CertificateSigningRequestCondition {
        CertificateSigningRequestCondition {
            type_: t.into(),
            status: "True".into(),
            message: Some("because".into()),
            ..Default::default()
        }
    }

    #[test]
    fn outcomes() {
        let cases = vec![
            ("gone", None, Outcome::Pending),
            ("new", Some(with(None)), Outcome::Pending),
            (
                "approved, not signed",
                Some(with(Some(CertificateSigningRequestStatus {
                    conditions: Some(vec![cond("Approved")]),
                    certificate: None,
                }))),
                Outcome::Pending,
            ),
            (
                "signed",
                Some(with(Some(CertificateSigningRequestStatus {
                    conditions: Some(vec![cond("Approved")]),
                    certificate: Some(ByteString(b"CERT".to_vec())),
                }))),
                Outcome::Issued(b"CERT".to_vec()),
            ),
            (
                "denied",
                Some(with(Some(CertificateSigningRequestStatus {
                    conditions: Some(vec![cond("Denied")]),
                    certificate: None,
                }))),
                Outcome::Refused("Denied: because".into()),
            ),
        ];
        for (name, csr, want) in cases {
            assert_eq!(outcome(csr.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn request_names_the_node() {
        let (_, pem) = request("n1").unwrap();
        use x509_parser::prelude::FromDer;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .unwrap();
        let subject = req.certification_request_info.subject.to_string();
        assert!(subject.contains("CN=system:node:n1"), "{subject}");
        assert!(subject.contains("O=system:nodes"), "{subject}");
        let obj = object("node-csr-x", &pem);
        assert_eq!(obj.spec.signer_name, SIGNER);
        assert!(name().starts_with("node-csr-"));
    }
}

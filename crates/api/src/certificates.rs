//! certificates.k8s.io/v1 CertificateSigningRequest: the PKCS#10 request parsed as upstream's
//! `certificates.ParseCSR` reads it, the strategy steps of kube-apiserver's
//! `pkg/registry/certificates/certificates/strategy.go` (main resource, `status` and
//! `approval`), and `pkg/apis/certificates/validation`'s rules with their paths and messages.
//!
//! Who may do what to a request (upstream's RBAC on `approval`, `status` and signer names)
//! is not checked here: there is no authorization yet (ARCHITECTURE.md §7).
//!
//! A request's life, as the conditions record it:
//!
//! ```text
//!  create ──▶ Pending ──approval──▶ Approved ──status (signer)──▶ Approved,Issued
//!                │                      └──status (signer)──▶ Approved,Failed
//!                └────approval──▶ Denied
//! ```
//!
//! Approved/Denied are written only through `approval`, the certificate and other
//! conditions only through `status`; no condition of type Approved, Denied or Failed is
//! ever removed, and a certificate once set never changes.

use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::{validate_object_meta, validate_object_meta_update, NameRule};
use crate::validation::{is_dns1123_label, is_dns1123_subdomain};

/// Client certificates for kube-apiserver, approved by hand.
pub const KUBE_APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Kubelet client certificates for kube-apiserver; auto-approved for nodes.
pub const KUBE_APISERVER_CLIENT_KUBELET_SIGNER: &str =
    "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The v1beta1 default, refused by v1.
pub const LEGACY_UNKNOWN_SIGNER: &str = "kubernetes.io/legacy-unknown";

pub const APPROVED: &str = "Approved";
pub const DENIED: &str = "Denied";
pub const FAILED: &str = "Failed";

/// Every key usage upstream accepts, in its sorted order (`sets.List()`), as a
/// `NotSupported` error lists them.
pub const ALL_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// A subject as Go's `pkix.Name` holds one after parsing: the attributes it knows, each
/// type's values in request order (`common_name` and `serial_number` keep the last one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub country: Vec<String>,
    pub organization: Vec<String>,
    pub organizational_unit: Vec<String>,
    pub locality: Vec<String>,
    pub province: Vec<String>,
    pub street_address: Vec<String>,
    pub postal_code: Vec<String>,
    pub serial_number: String,
    pub common_name: String,
}

/// What a PKCS#10 request asks for: its subject, the subject alternative names of its
/// extension request, and its public key (DER SubjectPublicKeyInfo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub subject: Subject,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub public_key_info: Vec<u8>,
}

impl Request {
    /// Whether the request names any subject alternative name.
    pub fn has_sans(&self) -> bool {
        !(self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.email_addresses.is_empty()
            && self.uris.is_empty())
    }
}

/// Upstream's `ParseCSR` followed by `CheckSignature`: the first PEM block must be a
/// `CERTIFICATE REQUEST` holding a PKCS#10 request signed by its own key. The error is
/// the message upstream's `spec.request` Invalid error carries.
pub fn parse_request(pem_bytes: &[u8]) -> Result<Request, String> {
    const PEM_TYPE: &str = "PEM block type must be CERTIFICATE REQUEST";
    let pem = match x509_parser::pem::parse_x509_pem(pem_bytes) {
        Ok((_, pem)) if pem.label == "CERTIFICATE REQUEST" => pem,
        _ => return Err(PEM_TYPE.into()),
    };
    let (_, csr) =
        X509CertificationRequest::from_der(&pem.contents).map_err(|e| format!("asn1: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: signature verification failure".to_string())?;
    let info = &csr.certification_request_info;
    let mut req = Request {
        public_key_info: info.subject_pki.raw.to_vec(),
        ..Request::default()
    };
    for attr in info.subject.iter_attributes() {
        let Ok(value) = attr.as_str() else { continue };
        let value = value.to_string();
        let s = &mut req.subject;
        match attr.attr_type().to_id_string().as_str() {
            "2.5.4.6" => s.country.push(value),
            "2.5.4.10" => s.organization.push(value),
            "2.5.4.11" => s.organizational_unit.push(value),
            "2.5.4.7" => s.locality.push(value),
            "2.5.4.8" => s.province.push(value),
            "2.5.4.9" => s.street_address.push(value),
            "2.5.4.17" => s.postal_code.push(value),
            "2.5.4.5" => s.serial_number = value,
            "2.5.4.3" => s.common_name = value,
            _ => {}
        }
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            let ParsedExtension::SubjectAlternativeName(san) = ext else {
                continue;
            };
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => req.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => req.email_addresses.push(e.to_string()),
                    GeneralName::URI(u) => req.uris.push(u.to_string()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => {
                            let b: [u8; 4] = [ip[0], ip[1], ip[2], ip[3]];
                            req.ip_addresses.push(IpAddr::from(b));
                        }
                        16 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(ip);
                            req.ip_addresses.push(IpAddr::from(b));
                        }
                        n => return Err(format!("x509: cannot parse IP address of length {n}")),
                    },
                    _ => {}
                }
            }
        }
    }
    Ok(req)
}

/// Upstream's `validateCertificate`: empty, or only `CERTIFICATE` blocks that parse.
fn validate_certificate(pem_bytes: &[u8]) -> Result<(), String> {
    if pem_bytes.is_empty() {
        return Ok(());
    }
    let mut rest = pem_bytes;
    let mut blocks = 0;
    while let Ok((remaining, pem)) = x509_parser::pem::parse_x509_pem(rest) {
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {}",
                crate::field::go_quote(&pem.label)
            ));
        }
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
        blocks += 1;
        if remaining.len() >= rest.len() {
            break;
        }
        rest = remaining;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// Compatibility allowances upstream grants only when the stored object already breaks a
/// rule (`getValidationOptions`), plus what each update path may change.
#[derive(Debug, Default, Clone, Copy)]
struct Options {
    allow_setting_approval_conditions: bool,
    allow_setting_certificate: bool,
    allow_both_approved_and_denied: bool,
    allow_legacy_signer_name: bool,
    allow_duplicate_condition_types: bool,
    allow_empty_condition_type: bool,
    allow_arbitrary_certificate: bool,
    allow_unknown_usages: bool,
    allow_duplicate_usages: bool,
}

fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn certificate(csr: &CertificateSigningRequest) -> &[u8] {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .map_or(&[][..], |c| c.0.as_slice())
}

fn usages(csr: &CertificateSigningRequest) -> &[String] {
    csr.spec.usages.as_deref().unwrap_or(&[])
}

fn options(new: &CertificateSigningRequest, old: Option<&CertificateSigningRequest>) -> Options {
    let Some(old) = old else {
        return Options::default();
    };
    let has = |t: &str| conditions(old).iter().any(|c| c.type_ == t);
    let mut seen_types = std::collections::HashSet::new();
    let mut seen_usages = std::collections::HashSet::new();
    Options {
        allow_both_approved_and_denied: has(APPROVED) && has(DENIED),
        allow_legacy_signer_name: old.spec.signer_name == LEGACY_UNKNOWN_SIGNER,
        allow_duplicate_condition_types: !conditions(old)
            .iter()
            .all(|c| seen_types.insert(c.type_.as_str())),
        allow_empty_condition_type: conditions(old).iter().any(|c| c.type_.is_empty()),
        allow_arbitrary_certificate: certificate(new) == certificate(old)
            || validate_certificate(certificate(old)).is_err(),
        allow_unknown_usages: usages(old)
            .iter()
            .any(|u| !ALL_USAGES.contains(&u.as_str())),
        allow_duplicate_usages: !usages(old).iter().all(|u| seen_usages.insert(u.as_str())),
        ..Options::default()
    }
}

/// `ValidateCertificateSigningRequestCreate`.
pub fn validate_csr(csr: &CertificateSigningRequest) -> FieldErrors {
    validate(csr, options(csr, None))
}

fn validate(csr: &CertificateSigningRequest, opts: Options) -> FieldErrors {
    let mut errs = validate_object_meta(&csr.metadata, false, NameRule::PathSegment);
    let spec = Path::new("spec");
    if let Err(e) = parse_request(&csr.spec.request.0) {
        let value = serde_json::to_value(&csr.spec.request).unwrap_or(Value::Null);
        errs.push(FieldError::invalid(spec.child("request"), value, e));
    }
    let usages = usages(csr);
    if usages.is_empty() {
        errs.push(FieldError::required(
            spec.child("usages"),
            "usages must be provided",
        ));
    }
    if !opts.allow_unknown_usages {
        for (i, u) in usages.iter().enumerate() {
            if !ALL_USAGES.contains(&u.as_str()) {
                errs.push(FieldError::not_supported(
                    spec.child("usages").index(i),
                    u.as_str(),
                    ALL_USAGES,
                ));
            }
        }
    }
    if !opts.allow_duplicate_usages {
        let mut seen = std::collections::HashSet::new();
        for (i, u) in usages.iter().enumerate() {
            if !seen.insert(u.as_str()) {
                errs.push(FieldError::duplicate(
                    spec.child("usages").index(i),
                    u.as_str(),
                ));
            }
        }
    }
    let signer = &csr.spec.signer_name;
    if !opts.allow_legacy_signer_name && signer == LEGACY_UNKNOWN_SIGNER {
        errs.push(FieldError::invalid(
            spec.child("signerName"),
            signer.as_str(),
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        errs.extend(validate_signer_name(&spec.child("signerName"), signer));
    }
    if let Some(secs) = csr.spec.expiration_seconds {
        if secs < 600 {
            errs.push(FieldError::invalid(
                spec.child("expirationSeconds"),
                secs,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    errs.extend(validate_conditions(csr, opts));
    if !opts.allow_arbitrary_certificate {
        if let Err(e) = validate_certificate(certificate(csr)) {
            errs.push(FieldError::invalid(
                "status.certificate",
                "<certificate data>",
                e,
            ));
        }
    }
    errs
}

fn validate_conditions(csr: &CertificateSigningRequest, opts: Options) -> FieldErrors {
    let mut errs = Vec::new();
    let path = Path::new("status").child("conditions");
    let mut seen = std::collections::HashSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(csr).iter().enumerate() {
        let at = path.index(i);
        if !opts.allow_empty_condition_type && c.type_.is_empty() {
            errs.push(FieldError::required(at.child("type"), ""));
        }
        let true_only = [APPROVED, DENIED, FAILED].contains(&c.type_.as_str());
        let allowed: &[&str] = if true_only {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if c.status.is_empty() {
            errs.push(FieldError::required(at.child("status"), ""));
        } else if !allowed.contains(&c.status.as_str()) {
            errs.push(FieldError::not_supported(
                at.child("status"),
                c.status.as_str(),
                allowed,
            ));
        }
        if !opts.allow_both_approved_and_denied {
            let exclusive = match c.type_.as_str() {
                APPROVED => {
                    approved = true;
                    denied
                }
                DENIED => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if exclusive {
                errs.push(FieldError::invalid(
                    at.child("type"),
                    c.type_.as_str(),
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !opts.allow_duplicate_condition_types && !seen.insert(c.type_.as_str()) {
            errs.push(FieldError::duplicate(at.child("type"), c.type_.as_str()));
        }
    }
    errs
}

/// `ValidateCertificateSigningRequestSignerName`: `example.com/signer-name`, a domain of
/// DNS labels with at least one dot, a path of DNS subdomains, at most 571 characters.
pub fn validate_signer_name(path: &Path, signer: &str) -> FieldErrors {
    let mut errs = Vec::new();
    if signer.is_empty() {
        errs.push(FieldError::required(
            path.clone(),
            "signerName must be provided",
        ));
        return errs;
    }
    let segments: Vec<&str> = signer.split('/').collect();
    let [domain, rest] = segments[..] else {
        errs.push(FieldError::invalid(
            path.clone(),
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return errs;
    };
    const SUBDOMAIN_MAX: usize = 253;
    const LABEL_MAX: usize = 63;
    if domain.len() > SUBDOMAIN_MAX {
        errs.push(FieldError::too_long(path.clone(), SUBDOMAIN_MAX));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(FieldError::invalid(
                    path.clone(),
                    domain,
                    format!("validating label {}: {m}", crate::field::go_quote(label)),
                ));
            }
            break;
        }
    }
    if labels.len() < 2 {
        errs.push(FieldError::invalid(
            path.clone(),
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for label in rest.split('.') {
        let msgs = is_dns1123_subdomain(label);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(FieldError::invalid(
                    path.clone(),
                    rest,
                    format!("validating label {}: {m}", crate::field::go_quote(label)),
                ));
            }
            break;
        }
    }
    let max = SUBDOMAIN_MAX + (SUBDOMAIN_MAX + LABEL_MAX + 1) + 1;
    if signer.len() > max {
        errs.push(FieldError::too_long(path.clone(), max));
    }
    errs
}

/// `ValidateCertificateSigningRequestUpdate` (the main resource).
pub fn validate_csr_update(
    new: &CertificateSigningRequest,
    old: &CertificateSigningRequest,
) -> FieldErrors {
    validate_update(new, old, options(new, Some(old)))
}

/// `ValidateCertificateSigningRequestStatusUpdate`: may set the certificate.
pub fn validate_csr_status_update(
    new: &CertificateSigningRequest,
    old: &CertificateSigningRequest,
) -> FieldErrors {
    let opts = Options {
        allow_setting_certificate: true,
        ..options(new, Some(old))
    };
    validate_update(new, old, opts)
}

/// `ValidateCertificateSigningRequestApprovalUpdate`: may add Approved or Denied.
pub fn validate_csr_approval_update(
    new: &CertificateSigningRequest,
    old: &CertificateSigningRequest,
) -> FieldErrors {
    let opts = Options {
        allow_setting_approval_conditions: true,
        ..options(new, Some(old))
    };
    validate_update(new, old, opts)
}

fn of_type<'a>(
    csr: &'a CertificateSigningRequest,
    t: &str,
) -> Vec<&'a CertificateSigningRequestCondition> {
    conditions(csr).iter().filter(|c| c.type_ == t).collect()
}

fn validate_update(
    new: &CertificateSigningRequest,
    old: &CertificateSigningRequest,
    opts: Options,
) -> FieldErrors {
    let mut errs: FieldErrors = validate(new, opts)
        .into_iter()
        .filter(|e| !e.field.starts_with("metadata."))
        .collect();
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    for t in [APPROVED, DENIED, FAILED] {
        if of_type(new, t).len() < of_type(old, t).len() {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!(
                    "updates may not remove a condition of type {}",
                    crate::field::go_quote(t)
                ),
            ));
        }
    }
    if !opts.allow_setting_approval_conditions {
        for t in [APPROVED, DENIED] {
            let (o, n) = (of_type(old, t), of_type(new, t));
            if n.len() > o.len() {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    format!(
                        "updates may not add a condition of type {}",
                        crate::field::go_quote(t)
                    ),
                ));
            } else if n.len() == o.len() && n != o {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    format!(
                        "updates may not modify a condition of type {}",
                        crate::field::go_quote(t)
                    ),
                ));
            }
        }
    }
    if certificate(new) != certificate(old) {
        if !opts.allow_setting_certificate {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !certificate(old).is_empty() {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
    errs
}

/// `PrepareForCreate`, but for the requesting user (filled in by the API server, which
/// knows who asks): no status, so no request is created approved.
pub fn prepare_csr_for_create(csr: &mut CertificateSigningRequest) {
    csr.status = Some(CertificateSigningRequestStatus::default());
}

/// `PrepareForCreate`'s user part: the spec names exactly the requesting user.
pub fn set_requestor(
    csr: &mut CertificateSigningRequest,
    username: &str,
    uid: &str,
    groups: &[String],
) {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    csr.spec.username = non_empty(username);
    csr.spec.uid = non_empty(uid);
    csr.spec.groups = (!groups.is_empty()).then(|| groups.to_vec());
    csr.spec.extra = None;
}

/// `PrepareForUpdate` of the main resource: spec and status are not changed there.
pub fn prepare_csr_for_update(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
) {
    new.spec = old.spec.clone();
    new.status = old.status.clone();
}

/// The `status` subresource's `PrepareForUpdate`: the spec and the Approved/Denied
/// conditions come from the stored object; new conditions get their timestamps.
pub fn prepare_csr_status_update(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
) {
    prepare_status_update_at(new, old, jiff::Timestamp::now());
}

fn prepare_status_update_at(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
    now: jiff::Timestamp,
) {
    new.spec = old.spec.clone();
    for t in [APPROVED, DENIED] {
        preserve_instances(new, old, t);
    }
    populate_timestamps(new, old, now);
}

fn preserve_instances(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
    t: &str,
) {
    let old_of: Vec<CertificateSigningRequestCondition> =
        of_type(old, t).into_iter().cloned().collect();
    let Some(conds) = new.status.as_mut().and_then(|s| s.conditions.as_mut()) else {
        return;
    };
    let idx: Vec<usize> = conds
        .iter()
        .enumerate()
        .filter(|(_, c)| c.type_ == t)
        .map(|(i, _)| i)
        .collect();
    if idx.len() != old_of.len() {
        return;
    }
    for (i, c) in idx.into_iter().zip(old_of) {
        conds[i] = c;
    }
}

/// `populateConditionTimestamps`: missing update times are now; a missing transition time
/// is kept from an old condition of the same type and status, else now.
fn populate_timestamps(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
    now: jiff::Timestamp,
) {
    let old_conds = conditions(old).to_vec();
    let Some(conds) = new.status.as_mut().and_then(|s| s.conditions.as_mut()) else {
        return;
    };
    for c in conds.iter_mut() {
        if c.last_update_time.is_none() {
            c.last_update_time = Some(Time(now));
        }
        if c.last_transition_time.is_none() {
            let kept = old_conds
                .iter()
                .find(|o| {
                    o.type_ == c.type_ && o.status == c.status && o.last_transition_time.is_some()
                })
                .and_then(|o| o.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or(Time(now)));
        }
    }
}

/// The `approval` subresource: only the conditions come from the request (with their
/// timestamps filled in), then `ValidateCertificateSigningRequestApprovalUpdate`.
pub fn csr_approval_update(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
) -> FieldErrors {
    approval_update_at(new, old, jiff::Timestamp::now())
}

fn approval_update_at(
    new: &mut CertificateSigningRequest,
    old: &CertificateSigningRequest,
    now: jiff::Timestamp,
) -> FieldErrors {
    populate_timestamps(new, old, now);
    let conds = new.status.as_ref().and_then(|s| s.conditions.clone());
    new.spec = old.spec.clone();
    let mut status = old.status.clone().unwrap_or_default();
    status.conditions = conds;
    new.status = Some(status);
    validate_csr_approval_update(new, old)
}

/// Whether a condition of type `t` is present (any status: upstream's helpers read
/// Approved, Denied and Failed by presence).
pub fn has_condition(csr: &CertificateSigningRequest, t: &str) -> bool {
    conditions(csr).iter().any(|c| c.type_ == t)
}

/// The certificate issued, if any.
pub fn issued_certificate(csr: &CertificateSigningRequest) -> &[u8] {
    certificate(csr)
}

/// Upstream's `extractCSRStatus`, the Condition column: `Denied`, `Approved` or `Pending`,
/// then `,Failed` and `,Issued`.
pub fn condition_summary(csr: &CertificateSigningRequest) -> String {
    let mut s = if has_condition(csr, DENIED) {
        "Denied".to_string()
    } else if has_condition(csr, APPROVED) {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has_condition(csr, FAILED) {
        s.push_str(",Failed");
    }
    if !certificate(csr).is_empty() {
        s.push_str(",Issued");
    }
    s
}

/// Whether `usages` is exactly the set `want` (upstream compares `sets.Set[KeyUsage]`).
fn usages_are(usages: &[String], want: &[&str]) -> bool {
    let have: std::collections::BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let want: std::collections::BTreeSet<&str> = want.iter().copied().collect();
    have == want
}

const NODE_ORG: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";

/// Upstream's `ValidateKubeletClientCSR` (`pkg/apis/certificates/helpers.go`): a node's
/// client certificate request — O exactly `system:nodes`, no subject alternative names,
/// CN `system:node:<name>`, usages digital signature + client auth (+ key encipherment).
pub fn validate_kubelet_client_csr(req: &Request, usages: &[String]) -> Result<(), String> {
    if req.subject.organization != [NODE_ORG] {
        return Err("subject organization is not system:nodes".into());
    }
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !req.subject.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    const WITH_RSA: &[&str] = &["client auth", "digital signature", "key encipherment"];
    if !usages_are(usages, WITH_RSA) && !usages_are(usages, &["client auth", "digital signature"]) {
        return Err(format!("usages did not match [{}]", WITH_RSA.join(" ")));
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`: O exactly `system:nodes`, at least one DNS or
/// IP SAN and no email or URI SANs, usages digital signature + server auth (+ key
/// encipherment), CN `system:node:<name>`.
pub fn validate_kubelet_serving_csr(req: &Request, usages: &[String]) -> Result<(), String> {
    if req.subject.organization != [NODE_ORG] {
        return Err("subject organization is not system:nodes".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    const WITH_RSA: &[&str] = &["digital signature", "key encipherment", "server auth"];
    if !usages_are(usages, WITH_RSA) && !usages_are(usages, &["digital signature", "server auth"]) {
        return Err(format!("usages did not match [{}]", WITH_RSA.join(" ")));
    }
    if !req.subject.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// The signer's check of `kubernetes.io/kube-apiserver-client` usages
/// (`validAPIServerClientUsages`): client auth required, digital signature and key
/// encipherment allowed, nothing else.
pub fn validate_apiserver_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// Approved and not Denied (upstream's `IsCertificateRequestApproved`).
pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, APPROVED) && !has_condition(csr, DENIED)
}

#[cfg(test)]
mod tests;

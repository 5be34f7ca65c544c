//! `certificates.k8s.io/v1` CertificateSigningRequest (cluster-scoped, short name `csr`,
//! with `status` and `approval`): a PKCS#10 request for a certificate from a named signer,
//! approved or denied through `approval` (`kubectl certificate approve|deny`) and issued
//! through `status` by the signing controller (`controllers::csrsigning`). Nodes join with
//! it: the agent requests a `kubernetes.io/kube-apiserver-client-kubelet` client certificate.
//!
//! On create the spec's `username`, `uid`, `groups` and `extra` name the requesting user,
//! whatever the client sent (upstream's `PrepareForCreate` reads the user from the request
//! context; here the kind's admission hook sees it), and the status starts empty. The rules
//! are `api::certificates`.

use std::future::Future;
use std::pin::Pin;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete;
use crate::registry::{Resource, Subresource, SubresourceKind, STANDARD_VERBS, STATUS};
use crate::server::ApiServer;
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<CertificateSigningRequest> = TypedStrategy {
    on_create: api::certificates::prepare_csr_for_create,
    prepare_for_update: api::certificates::prepare_csr_for_update,
    copy_all_but_status: api::certificates::prepare_csr_status_update,
    validate_status_update: api::certificates::validate_csr_status_update,
    approval_update: Some(api::certificates::csr_approval_update),
    ..TypedStrategy::new(
        api::certificates::validate_csr,
        api::certificates::validate_csr_update,
    )
};

/// Upstream's `certificateSigningRequestColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", SIGNER_NAME_DOC, 0),
    col("Requestor", REQUEST_DOC, 0),
    col("RequestedDuration", EXPIRATION_DOC, 0),
    col("Condition", CONDITIONS_DOC, 0),
];

const SIGNER_NAME_DOC: &str = "signerName indicates the requested signer, and is a qualified name.\n\nList/watch requests for CertificateSigningRequests can filter on this field using a \"spec.signerName=NAME\" fieldSelector.\n\nWell-known Kubernetes signers are:\n 1. \"kubernetes.io/kube-apiserver-client\": issues client certificates that can be used to authenticate to kube-apiserver.\n  Requests for this signer are never auto-approved by kube-controller-manager, can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 2. \"kubernetes.io/kube-apiserver-client-kubelet\": issues client certificates that kubelets use to authenticate to kube-apiserver.\n  Requests for this signer can be auto-approved by the \"csrapproving\" controller in kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 3. \"kubernetes.io/kubelet-serving\" issues serving certificates that kubelets use to serve TLS endpoints, which kube-apiserver can connect to securely.\n  Requests for this signer are never auto-approved by kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n\nMore details are available at https://k8s.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers\n\nCustom signerNames can also be specified. The signer defines:\n 1. Trust distribution: how trust (CA bundles) are distributed.\n 2. Permitted subjects: and behavior when a disallowed subject is requested.\n 3. Required, permitted, or forbidden x509 extensions in the request (including whether subjectAltNames are allowed, which types, restrictions on allowed values) and behavior when a disallowed extension is requested.\n 4. Required, permitted, or forbidden key usages / extended key usages.\n 5. Expiration/certificate lifetime: whether it is fixed by the signer, configurable by the admin.\n 6. Whether or not requests for CA certificates are allowed.";
const REQUEST_DOC: &str = "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.";
const EXPIRATION_DOC: &str = "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.\n\nThe v1.22+ in-tree implementations of the well-known Kubernetes signers will honor this field as long as the requested duration is not greater than the maximum duration they will honor per the --cluster-signing-duration CLI flag to the Kubernetes controller manager.\n\nCertificate signers may not honor this field for various reasons:\n\n  1. Old signer that is unaware of the field (such as the in-tree\n     implementations prior to v1.22)\n  2. Signer whose configured maximum is shorter than the requested duration\n  3. Signer whose configured minimum is longer than the requested duration\n\nThe minimum valid value for expirationSeconds is 600, i.e. 10 minutes.";
const CONDITIONS_DOC: &str = "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".";

/// Upstream's `printCertificateSigningRequest`.
fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let csr: CertificateSigningRequest = table::typed(obj)?;
    let signer = if csr.spec.signer_name.is_empty() {
        "<none>".to_string()
    } else {
        csr.spec.signer_name.clone()
    };
    let duration = csr
        .spec
        .expiration_seconds
        .map_or("<none>".to_string(), |s| {
            api::printer::human_duration(jiff::SignedDuration::from_secs(i64::from(s)))
        });
    Ok(vec![
        table::name(obj),
        json!(table::age(obj, now)),
        json!(signer),
        json!(csr.spec.username.clone().unwrap_or_default()),
        json!(duration),
        json!(api::certificates::condition_summary(&csr)),
    ])
}

/// `approval`: GET, PUT and PATCH of the request, of which only the conditions are written.
pub const APPROVAL: Subresource = Subresource {
    name: "approval",
    kind: "",
    group_version: None,
    verbs: &["get", "patch", "update"],
    handler: SubresourceKind::Approval,
};

/// Upstream's field label conversion for the kind: `metadata.name` and `spec.signerName`.
const FIELD_NAMES: &[&str] = &["metadata.name", "spec.signerName"];

fn fields(obj: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "metadata.name",
            obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        ),
        (
            "spec.signerName",
            obj["spec"]["signerName"].as_str().unwrap_or("").to_string(),
        ),
    ]
}

/// The requestor: who created the request replaces whatever the client put in the spec.
fn admit<'a>(
    _server: &'a ApiServer,
    obj: &'a mut Value,
    user: &'a UserInfo,
) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
    Box::pin(async move {
        let spec = &mut obj["spec"];
        if !spec.is_object() {
            return Ok(());
        }
        for f in ["username", "uid", "groups", "extra"] {
            if let Some(m) = spec.as_object_mut() {
                m.remove(f);
            }
        }
        if !user.name.is_empty() {
            spec["username"] = json!(user.name);
        }
        if !user.uid.is_empty() {
            spec["uid"] = json!(user.uid);
        }
        if !user.groups.is_empty() {
            spec["groups"] = json!(user.groups);
        }
        Ok(())
    })
}

pub static RESOURCE: Resource = Resource {
    group: "certificates.k8s.io",
    version: "v1",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    kind: "CertificateSigningRequest",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    subresources: &[APPROVAL, STATUS],
    storage: "certificatesigningrequests",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<CertificateSigningRequest>,
    list_schema: super::list(
        "CertificateSigningRequestList",
        "CertificateSigningRequestList is a collection of CertificateSigningRequest objects",
        "items is a collection of CertificateSigningRequest objects",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: FIELD_NAMES,
        get: fields,
        aliases: &[],
        own_conversion: true,
    },
    delete: delete::PLAIN,
    hooks: None,
    admit: Some(admit),
    conversion: None,
    scale: None,
};

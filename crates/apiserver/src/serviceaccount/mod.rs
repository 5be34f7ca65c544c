//! Service-account tokens: the signing key and the JWT claims (`jwt`), the TokenRequest
//! subresource that issues them (`tokenrequest`), and the authenticator that accepts them
//! (`authn`), as kube-apiserver has them. The `default` accounts and `kube-root-ca.crt`
//! ConfigMaps are kube-controller-manager's, in `crates/controllers`.

pub mod authn;
pub mod jwt;
pub mod tokenrequest;

/// The audience and issuer of tokens this server issues when none is asked for: upstream's
/// default `--api-audiences` and `--service-account-issuer` in kubeadm-style clusters.
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The account every namespace gets and pods run as unless they name another.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The ConfigMap in every namespace holding the API server's CA certificate.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

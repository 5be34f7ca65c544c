//! Service accounts: the controllers that give every namespace its `default` ServiceAccount
//! and its `kube-root-ca.crt` ConfigMap (`controller`), the signing key and the JWT claims of
//! service-account tokens (`jwt`), the TokenRequest subresource that issues them
//! (`tokenrequest`), and the authenticator that accepts them (`authn`).
//!
//! Upstream splits these between kube-controller-manager (serviceaccounts and
//! root-ca-cert-publisher controllers) and kube-apiserver (token issuing and
//! authentication); the controllers move to `crates/controllers` with the namespace
//! lifecycle when that crate exists.

pub mod authn;
pub mod controller;
pub mod jwt;
pub mod tokenrequest;

/// The audience and issuer of tokens this server issues when none is asked for: upstream's
/// default `--api-audiences` and `--service-account-issuer` in kubeadm-style clusters.
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The account every namespace gets and pods run as unless they name another.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The ConfigMap in every namespace holding the API server's CA certificate.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

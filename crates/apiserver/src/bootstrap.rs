//! What kube-apiserver makes at start: the system namespaces (`default`, `kube-system`,
//! `kube-public`, `kube-node-lease`) and the system priority classes, created if missing,
//! through the kinds' strategies as the handlers would.
//!
//! Deleting a namespace's content and finalizing it is the namespace controller's
//! (`crates/controllers`), as upstream has it in kube-controller-manager.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::kinds;
use crate::object;
use crate::registry;
use crate::server::ApiServer;

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The priority classes kube-apiserver creates at start: (name, value, description).
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Creates the system namespaces and priority classes that do not exist yet.
pub async fn bootstrap(server: &ApiServer) -> Result<(), ApiError> {
    for name in SYSTEM_NAMESPACES {
        let ns = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        create_missing(server, &kinds::namespace::RESOURCE, None, ns).await?;
    }
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let pc = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": name }, "value": value, "description": description,
        });
        create_missing(server, &kinds::priorityclass::RESOURCE, None, pc).await?;
    }
    Ok(())
}

/// The join token's bootstrap-token Secret (`crate::bootstraptoken`), created if missing:
/// deleting it revokes the token until the next server start.
pub async fn join_token(server: &ApiServer, token: &str) -> Result<(), ApiError> {
    let Some(secret) = crate::bootstraptoken::secret(token) else {
        tracing::warn!(
            "the join token in the cluster bootstrap data is malformed; agents cannot join"
        );
        return Ok(());
    };
    create_missing(
        server,
        &kinds::secret::RESOURCE,
        Some("kube-system"),
        secret,
    )
    .await?;
    Ok(())
}

/// Creates `obj` (in `namespace`, or cluster-scoped) through its strategy unless it exists;
/// `true` if it was created.
async fn create_missing(
    server: &ApiServer,
    resource: &'static registry::Resource,
    namespace: Option<&str>,
    mut obj: Value,
) -> Result<bool, ApiError> {
    let name = object::name(&obj).to_string();
    let key = resource.key(namespace, &name);
    if server.store.get(&key).await?.is_some() {
        return Ok(false);
    }
    crate::handlers::create::reset_system_fields(&mut obj);
    let bytes = resource
        .strategy
        .prepare_create(&obj, resource.namespaced)
        .map_err(|errs| ApiError::invalid(resource, &name, errs))?;
    match server.store.create(&key, Bytes::from(bytes)).await {
        Ok(_) => Ok(true),
        Err(store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

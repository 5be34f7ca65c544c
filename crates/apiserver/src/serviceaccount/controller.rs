//! Two controllers kube-controller-manager runs, kept level-triggered and small:
//!
//! * **serviceaccounts**: every namespace that is not terminating has a `default`
//!   ServiceAccount; it is created when the namespace appears and again if it is deleted.
//! * **root-ca-cert-publisher**: every such namespace has the ConfigMap `kube-root-ca.crt`
//!   whose `ca.crt` is the API server's CA certificate; it is created, re-created after a
//!   deletion, and put back if someone changes its data.
//!
//! ```text
//!  start ──▶ sweep every namespace ──▶ follow three watches (namespaces, serviceaccounts,
//!            configmaps) ──▶ an event naming namespace N ──▶ reconcile N
//!            (any watch error: sleep 1 s, sweep again)
//! ```
//!
//! Both write through the resources' strategies (defaulting and validation), as the
//! handlers do, never raw bytes around them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP};
use crate::errors::ApiError;
use crate::handlers::update::guaranteed_update;
use crate::kinds;
use crate::lifecycle::create_missing;
use crate::object;
use crate::registry::Resource;
use crate::scan::Pages;
use crate::server::ApiServer;

/// The description upstream's publisher puts on the ConfigMap, in our words.
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Runs both controllers until `shutdown`. `ca_pem` is the CA the ConfigMaps publish.
pub async fn run(server: Arc<ApiServer>, ca_pem: String, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            res = follow(&server, &ca_pem) => if let Err(e) = res {
                warn!(error = %e, "service-account controllers: will resync");
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One sweep, then the watches until one of them fails.
async fn follow(server: &ApiServer, ca_pem: &str) -> Result<(), ApiError> {
    let rev = server.store.current_revision().await?;
    let prefix = kinds::namespace::RESOURCE.prefix();
    let mut pages = Pages::new(&server.store, &prefix);
    while let Some(items) = pages.next().await? {
        for kv in items {
            let ns = object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?;
            reconcile(server, &ns, ca_pem).await?;
        }
    }
    let watches = [
        kinds::namespace::RESOURCE.prefix(),
        kinds::serviceaccount::RESOURCE.prefix(),
        kinds::configmap::RESOURCE.prefix(),
    ];
    let mut streams = Vec::new();
    for prefix in &watches {
        streams.push(server.store.watch(prefix, rev).await?);
    }
    let mut events = futures::stream::select_all(streams);
    while let Some(ev) = events.next().await {
        let ev = ev?;
        let Some(ns) = namespace_of(ev.key(), matches!(ev, store::Event::Delete { .. })) else {
            continue;
        };
        let key = kinds::namespace::RESOURCE.key(None, &ns);
        let Some(kv) = server.store.get(&key).await? else {
            continue;
        };
        let ns = object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?;
        reconcile(server, &ns, ca_pem).await?;
    }
    Err(ApiError::Internal("a watch ended".into()))
}

/// The namespace an event may concern: any namespace put, or the deletion or change of the
/// two objects these controllers own. Other keys are none of their business.
fn namespace_of(key: &str, deleted: bool) -> Option<String> {
    if let Some(name) = key.strip_prefix(&kinds::namespace::RESOURCE.prefix()) {
        return (!deleted).then(|| name.to_string());
    }
    let owned = |r: &Resource, name: &str, on_put: bool| -> Option<String> {
        let rest = key.strip_prefix(&r.prefix())?;
        let (ns, n) = rest.split_once('/')?;
        (n == name && (deleted || on_put)).then(|| ns.to_string())
    };
    owned(
        &kinds::serviceaccount::RESOURCE,
        DEFAULT_SERVICE_ACCOUNT,
        false,
    )
    .or_else(|| owned(&kinds::configmap::RESOURCE, ROOT_CA_CONFIG_MAP, true))
}

/// Brings one namespace's `default` ServiceAccount and `kube-root-ca.crt` into place.
async fn reconcile(server: &ApiServer, ns: &Value, ca_pem: &str) -> Result<(), ApiError> {
    if !ns["metadata"]["deletionTimestamp"].is_null() || ns["status"]["phase"] == "Terminating" {
        return Ok(());
    }
    let ns = object::name(ns);
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": DEFAULT_SERVICE_ACCOUNT, "namespace": ns },
    });
    if create_missing(server, &kinds::serviceaccount::RESOURCE, Some(ns), sa).await? {
        info!(namespace = %ns, "created the default service account");
    }
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CA_CONFIG_MAP, "namespace": ns,
            "annotations": { "kubernetes.io/description": ROOT_CA_DESCRIPTION },
        },
        "data": { "ca.crt": ca_pem },
    });
    let cms = &kinds::configmap::RESOURCE;
    if create_missing(server, cms, Some(ns), cm).await? {
        return Ok(());
    }
    let key = cms.key(Some(ns), ROOT_CA_CONFIG_MAP);
    let Some(kv) = server.store.get(&key).await? else {
        return Ok(());
    };
    let current = object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?;
    let data = &current["data"];
    let only_ca = data.as_object().is_some_and(|d| d.len() == 1);
    if data["ca.crt"] == ca_pem && only_ca {
        return Ok(());
    }
    // Someone changed it: the publisher owns its data (upstream overwrites it too).
    let result = guaranteed_update(
        server,
        cms,
        Some(ns),
        ROOT_CA_CONFIG_MAP,
        None,
        false,
        |mut cm: Value| {
            cm["data"] = json!({ "ca.crt": ca_pem });
            if let Some(b) = cm.as_object_mut() {
                b.remove("binaryData");
            }
            Ok(cm)
        },
    )
    .await;
    match result {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_namespace_they_concern() {
        assert_eq!(
            namespace_of("/registry/namespaces/team", false).as_deref(),
            Some("team")
        );
        assert_eq!(namespace_of("/registry/namespaces/team", true), None);
        assert_eq!(
            namespace_of("/registry/serviceaccounts/team/default", true).as_deref(),
            Some("team")
        );
        // Creating the account is our own write; only its deletion needs work.
        assert_eq!(
            namespace_of("/registry/serviceaccounts/team/default", false),
            None
        );
        assert_eq!(
            namespace_of("/registry/serviceaccounts/team/robot", true),
            None
        );
        assert_eq!(
            namespace_of("/registry/configmaps/team/kube-root-ca.crt", false).as_deref(),
            Some("team")
        );
        assert_eq!(namespace_of("/registry/configmaps/team/other", true), None);
        assert_eq!(namespace_of("/registry/pods/team/default", true), None);
    }
}

//! Namespace lifecycle inside the API server: the system namespaces exist from the first
//! start, and a namespace being deleted has its content removed before it goes.
//!
//! ```text
//!  DELETE ns ──▶ Terminating (deletionTimestamp, spec.finalizers=[kubernetes])
//!      └─▶ delete every namespaced object in it (pods on nodes terminate gracefully)
//!             └─▶ all gone ──▶ drop the `kubernetes` finalizer ──▶ namespace removed
//! ```
//!
//! Upstream runs this as the namespace controller in kube-controller-manager; it lives here
//! until peapod's controllers crate exists, and it goes through the same REST functions the
//! HTTP handlers use, never around them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::errors::ApiError;
use crate::handlers::delete::{delete_object, DeleteOptions, Deleted};
use crate::handlers::update::guaranteed_update;
use crate::kinds;
use crate::object;
use crate::registry;
use crate::scan::Pages;
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

/// Creates `obj` (in `namespace`, or cluster-scoped) through its strategy unless it exists;
/// `true` if it was created. What the built-in controllers use for the objects they keep.
pub(crate) async fn create_missing(
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

/// Finishes the deletion of terminating namespaces until `shutdown`. Store errors are
/// retried; this loop only ends with the server.
pub async fn run(server: Arc<ApiServer>, shutdown: CancellationToken) {
    let prefix = kinds::namespace::RESOURCE.prefix();
    loop {
        match round(&server, &prefix).await {
            // Wake on any namespace change, or on a short timer while work is pending
            // (pods on nodes terminating gracefully).
            Ok((mut changes, pending)) => {
                let idle = Duration::from_secs(if pending { 1 } else { 3600 });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = changes.next() => {}
                    _ = tokio::time::sleep(idle) => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "namespace lifecycle: will retry");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// One sweep; the watch that wakes the next one, and whether work is still pending.
async fn round(server: &ApiServer, prefix: &str) -> Result<(store::WatchStream, bool), ApiError> {
    let rev = server.store.current_revision().await?;
    let pending = sweep(server).await?;
    let changes = server.store.watch(prefix, rev).await?;
    Ok((changes, pending))
}

/// Deletes events older than `ttl` every `ttl / 6` until `shutdown`: kube-apiserver's
/// `--event-ttl` (1 h), which it implements with etcd leases on event keys.
pub async fn expire_events(server: Arc<ApiServer>, ttl: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(ttl / 6);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = expire_events_once(&server, ttl).await {
            warn!(error = %e, "event expiry failed; will retry");
        }
    }
}

async fn expire_events_once(server: &ApiServer, ttl: Duration) -> Result<(), ApiError> {
    let events = &kinds::event::RESOURCE;
    let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ttl).unwrap_or_default();
    let prefix = events.prefix();
    let mut pages = Pages::new(&server.store, &prefix);
    while let Some(items) = pages.next().await? {
        for kv in items {
            let Ok(ev) = object::parse(&kv) else { continue };
            let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|f| ev[*f].as_str())
                .or_else(|| ev["metadata"]["creationTimestamp"].as_str())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if last.is_some_and(|t| t < cutoff) {
                let ns = object::namespace(&ev).map(str::to_string);
                match delete_object(
                    server,
                    events,
                    ns.as_deref(),
                    object::name(&ev),
                    &DeleteOptions::default(),
                )
                .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// One pass over all namespaces; `true` if a terminating namespace still has content.
async fn sweep(server: &ApiServer) -> Result<bool, ApiError> {
    let nsr = &kinds::namespace::RESOURCE;
    let list = server
        .store
        .list(&nsr.prefix(), store::ListOptions::default())
        .await?;
    let mut pending = false;
    for kv in &list.items {
        let ns = object::parse(kv).map_err(|e| ApiError::Internal(e.to_string()))?;
        if ns["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let name = object::name(&ns).to_string();
        if !empty_namespace(server, &name).await? {
            pending = true;
            continue;
        }
        info!(namespace = %name, "namespace is empty; finalizing");
        let result = guaranteed_update(server, nsr, None, &name, None, false, |mut ns: Value| {
            if let Some(f) = ns["spec"]["finalizers"].as_array_mut() {
                f.retain(|v| v != "kubernetes");
            }
            Ok(ns)
        })
        .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pending)
}

/// Deletes what is in `ns`; `true` once nothing is left.
async fn empty_namespace(server: &ApiServer, ns: &str) -> Result<bool, ApiError> {
    let mut empty = true;
    let mut seen_storage = Vec::new();
    for resource in registry::all().iter().filter(|r| r.namespaced) {
        // events.k8s.io and core events share storage: clean it once.
        if seen_storage.contains(&resource.storage) {
            continue;
        }
        seen_storage.push(resource.storage);
        let list = server
            .store
            .list(
                &resource.scope_prefix(Some(ns)),
                store::ListOptions::default(),
            )
            .await?;
        for kv in &list.items {
            let obj = object::parse(kv).map_err(|e| ApiError::Internal(e.to_string()))?;
            if !obj["metadata"]["deletionTimestamp"].is_null() {
                empty = false;
                continue;
            }
            match delete_object(
                server,
                resource,
                Some(ns),
                object::name(&obj),
                &DeleteOptions::default(),
            )
            .await
            {
                Ok(Deleted::Gone(_)) | Err(ApiError::NotFound { .. }) => {}
                Ok(Deleted::Marked(_)) => empty = false,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(empty)
}

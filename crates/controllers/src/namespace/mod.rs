//! Upstream's `namespace` controller (`pkg/controller/namespace`): a namespace being deleted
//! has its content deleted through the API, then its `kubernetes` finalizer is dropped
//! through `namespaces/{name}/finalize` and the API server removes it.
//!
//! ```text
//!  DELETE ns ─▶ deletionTimestamp, phase Terminating, spec.finalizers [kubernetes]
//!   reconcile: GET ns (the latest) ─▶ phase Terminating if not yet
//!     ─▶ discovery: every namespaced resource serving delete (preferred versions)
//!     ─▶ per resource: estimate (pods: longest grace still running)
//!                      ─▶ deletecollection (or list + delete each) ─▶ list what is left
//!     ─▶ status conditions (NamespaceDeletion*Failure, NamespaceContentRemaining, ...)
//!     ─▶ failed: retry with backoff (5 ms doubling to 60 s)
//!        content going: look again in estimate/2 + 1 s
//!        empty: PUT finalize without `kubernetes` ─▶ the API server deletes the namespace
//! ```
//!
//! Every namespaced kind discovery lists is covered, so a new kind needs nothing here. Upstream
//! waits 5 s before handling a namespace event, for HA API servers to agree on the
//! deletion; peapod's servers share one store, so it starts at once.

pub mod deletion;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::informer::{applied, Informer};
use crate::RESYNC;
use deletion::{DiscoveredGroup, DiscoveryFailure, Outcome, Pass, Target, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading namespace {name}: {source}")]
    Read { name: String, source: kube::Error },
    #[error("updating namespace {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("namespace {0} was re-created while it was being finalized")]
    Recreated(String),
    #[error("deleting the content of namespace {name}: {message}")]
    Content { name: String, message: String },
}

struct Ctx {
    client: Client,
    backoff: Backoff,
}

/// The controller, subscribed to the namespace informer (so call this before it runs); the
/// future runs it until `shutdown`.
pub fn controller(
    client: Client,
    namespaces: &Informer<Namespace>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (changes, lagged) = namespaces.subscribe();
    // Only namespaces being deleted concern it (upstream's enqueueNamespace).
    let deleting = applied(changes).filter(|ns| {
        let deleting = ns
            .as_ref()
            .is_ok_and(|ns| ns.metadata.deletion_timestamp.is_some());
        std::future::ready(deleting)
    });
    let ctx = Arc::new(Ctx {
        client,
        // Upstream's namespace work queue: 5 ms doubling to 60 s.
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_secs(60)),
    });
    let controller = Controller::for_stream(deleting, namespaces.store())
        .reconcile_all_on(futures::stream::select(
            lagged.boxed(),
            crate::ticks(RESYNC).boxed(),
        ))
        .graceful_shutdown_on(shutdown.cancelled_owned());
    async move {
        info!("starting the namespace controller");
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move { crate::log_result("namespace", result) })
            .await;
    }
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if namespace.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    match delete(&ctx.client, &name).await? {
        Some(estimate) => {
            let wait = deletion::requeue_after(estimate);
            debug!(namespace = %name, ?wait, "content remaining");
            Ok(Action::requeue(wait))
        }
        None => {
            ctx.backoff.forget(&name);
            Ok(Action::await_change())
        }
    }
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.next(&namespace.name_any());
    warn!(error = %error, retry_in = ?delay, "namespace deletion failed");
    Action::requeue(delay)
}

/// Upstream's `namespacedResourcesDeleter.Delete`: `Some(estimate)` while content is still
/// going, `None` once the namespace is finalized (or gone, or not being deleted).
async fn delete(client: &Client, name: &str) -> Result<Option<i64>, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    // Several writers touch a terminating namespace: start from its latest state.
    let read = |source| Error::Read {
        name: name.to_string(),
        source,
    };
    let write = |source| Error::Write {
        name: name.to_string(),
        source,
    };
    let Some(mut ns) = api.get_opt(name).await.map_err(read)? else {
        return Ok(None);
    };
    let Some(deleted_at) = ns.metadata.deletion_timestamp.clone() else {
        return Ok(None);
    };
    if deletion::needs_terminating_phase(&ns) {
        ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
        ns = match api.replace_status(name, &PostParams::default(), &ns).await {
            Ok(ns) => ns,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(write(e)),
        };
    }
    if !deletion::has_kubernetes_finalizer(&ns) {
        return Ok(None);
    }
    let pass = delete_all_content(client, name, deleted_at.0).await;

    // Conditions are always brought up to date: a failure that cleared must show so.
    let now = Time(Timestamp::now());
    let failing = pass.failing_conditions(&now);
    let mut updated = ns.clone();
    let conditions = updated
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    if deletion::update_conditions(conditions, &failing, &now) {
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            // Finalizing replaces this version.
            Ok(written) => ns = written,
            // The next pass writes them again.
            Err(e) => {
                debug!(namespace = %name, error = %e, "could not update the deletion conditions")
            }
        }
    }

    match pass.verdict() {
        Verdict::Failed(message) => Err(Error::Content {
            name: name.to_string(),
            message,
        }),
        Verdict::Wait { estimate } => Ok(Some(estimate)),
        Verdict::Finalize => {
            finalize(&api, ns).await?;
            Ok(None)
        }
    }
}

/// Drops the `kubernetes` finalizer through `namespaces/{name}/finalize`, re-reading on a
/// conflict (the namespace must stay the same object).
async fn finalize(api: &Api<Namespace>, mut ns: Namespace) -> Result<(), Error> {
    let name = ns.name_any();
    let uid = ns.metadata.uid.clone();
    loop {
        let mut finalized = ns.clone();
        finalized
            .spec
            .get_or_insert_with(Default::default)
            .finalizers = Some(deletion::finalized(&ns));
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
            .await
        {
            Ok(_) => {
                info!(namespace = %name, "namespace content deleted; finalized");
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let read = |source| Error::Read {
                    name: name.clone(),
                    source,
                };
                let Some(latest) = api.get_opt(&name).await.map_err(read)? else {
                    return Ok(());
                };
                if latest.metadata.uid != uid {
                    return Err(Error::Recreated(name));
                }
                ns = latest;
            }
            Err(source) => return Err(Error::Write { name, source }),
        }
    }
}

/// Upstream's `deleteAllContent`: one pass over every deletable resource in the namespace.
async fn delete_all_content(client: &Client, namespace: &str, deleted_at: Timestamp) -> Pass {
    let (groups, discovery) = discover(client).await;
    let (targets, parse_error) = deletion::targets(&groups);
    let mut pass = Pass {
        discovery,
        parse_error,
        ..Pass::default()
    };
    for target in targets {
        let (outcome, error) = delete_resource(client, namespace, deleted_at, &target).await;
        pass.content_errors.extend(error);
        pass.outcomes.push((target, outcome));
    }
    pass
}

/// Upstream's `deleteAllContentForGroupVersionResource`.
async fn delete_resource(
    client: &Client,
    namespace: &str,
    deleted_at: Timestamp,
    target: &Target,
) -> (Outcome, Option<String>) {
    let failed = |estimate, e: kube::Error| {
        (
            Outcome {
                estimate,
                ..Outcome::default()
            },
            Some(format!("{}: {e}", target.gvr())),
        )
    };
    // How long graceful deletions may still take (pods only, as upstream).
    let mut estimate = 0;
    if target.is_pods() {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                estimate = deletion::remaining_estimate(
                    deletion::pods_estimate(&list.items),
                    deleted_at,
                    Timestamp::now(),
                );
            }
            Err(e) => return failed(0, e),
        }
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &target.api_resource());
    // Dependents are the garbage collector's to remove, in the background.
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let mut deleted = false;
    if target.delete_collection {
        match api.delete_collection(&dp, &ListParams::default()).await {
            Ok(_) => deleted = true,
            // Listed but not served after all: delete one by one.
            Err(kube::Error::Api(s)) if s.code == 405 || s.code == 404 => {}
            Err(e) => return failed(estimate, e),
        }
    }
    if !deleted && target.list {
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                for item in list.items {
                    let name = item.metadata.name.unwrap_or_default();
                    match api.delete(&name, &dp).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return failed(estimate, e),
                    }
                }
            }
            Err(e) => return failed(estimate, e),
        }
    }
    let remaining = if target.list {
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => Some(
                list.items
                    .into_iter()
                    .map(|i| i.metadata.finalizers.unwrap_or_default())
                    .collect::<Vec<_>>(),
            ),
            Err(e) => return failed(estimate, e),
        }
    } else {
        None
    };
    deletion::after_deletion(namespace, target, estimate, remaining.as_deref())
}

/// client-go's `ServerPreferredNamespacedResources` input: every group's resource lists,
/// and what did not answer.
pub(crate) async fn discover(client: &Client) -> (Vec<DiscoveredGroup>, Option<DiscoveryFailure>) {
    let mut groups = Vec::new();
    let mut failed = Vec::new();
    let core = match client.list_core_api_versions().await {
        Ok(core) => core,
        Err(e) => return (groups, Some(DiscoveryFailure::Failed(e.to_string()))),
    };
    let mut group = DiscoveredGroup {
        name: String::new(),
        preferred_version: core.versions.first().cloned().unwrap_or_default(),
        lists: Vec::new(),
    };
    for version in &core.versions {
        match client.list_core_api_resources(version).await {
            Ok(list) => group.lists.push(list),
            Err(e) => failed.push((version.clone(), e.to_string())),
        }
    }
    groups.push(group);
    let api_groups = match client.list_api_groups().await {
        Ok(g) => g,
        Err(e) => return (groups, Some(DiscoveryFailure::Failed(e.to_string()))),
    };
    for g in api_groups.groups {
        let mut group = DiscoveredGroup {
            preferred_version: g
                .preferred_version
                .as_ref()
                .or(g.versions.first())
                .map(|v| v.version.clone())
                .unwrap_or_default(),
            name: g.name,
            lists: Vec::new(),
        };
        for version in &g.versions {
            match client
                .list_api_group_resources(&version.group_version)
                .await
            {
                Ok(list) => group.lists.push(list),
                Err(e) => failed.push((version.group_version.clone(), e.to_string())),
            }
        }
        groups.push(group);
    }
    let failure = (!failed.is_empty()).then_some(DiscoveryFailure::Groups(failed));
    (groups, failure)
}

//! Upstream's `serviceaccounts` controller (`pkg/controller/serviceaccount`): every active
//! namespace has a `default` ServiceAccount, created when the namespace appears and again
//! whenever it is deleted.
//!
//! ```text
//!  namespace applied ───────────┐
//!  `default` account deleted ───┴─▶ reconcile(namespace) ─▶ missing(ns, cache) ─▶ create
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::informer::{applied, deleted, Informer};
use crate::{is_gone_namespace, RESYNC};

/// The accounts every active namespace gets (upstream's `serviceAccountsToEnsure`).
pub const ENSURED: &[&str] = &["default"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating service account {namespace}/{name}: {source}")]
    Create {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// The accounts of [`ENSURED`] that `namespace` lacks, to be created; none unless it is
/// active (a terminating namespace takes no new content).
pub fn missing(namespace: &Namespace, exists: impl Fn(&str) -> bool) -> Vec<ServiceAccount> {
    let active = namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
        && namespace.metadata.deletion_timestamp.is_none();
    if !active {
        return Vec::new();
    }
    ENSURED
        .iter()
        .filter(|name| !exists(name))
        .map(|name| ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: namespace.metadata.name.clone(),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        })
        .collect()
}

struct Ctx {
    client: Client,
    accounts: Store<ServiceAccount>,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (so call this before they run); the future
/// runs it until `shutdown`.
pub fn controller(
    client: Client,
    namespaces: &Informer<Namespace>,
    accounts: &Informer<ServiceAccount>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (ns_changes, ns_lagged) = namespaces.subscribe();
    let (sa_changes, sa_lagged) = accounts.subscribe();
    let ctx = Arc::new(Ctx {
        client,
        accounts: accounts.store(),
        backoff: Backoff::controller_default(),
    });
    let resync = crate::ticks(RESYNC);
    let controller = Controller::for_stream(applied(ns_changes), namespaces.store())
        .watches_stream(
            deleted(sa_changes).filter(|sa| {
                let ensured = sa
                    .as_ref()
                    .is_ok_and(|sa| ENSURED.contains(&sa.name_any().as_str()));
                std::future::ready(ensured)
            }),
            |sa: ServiceAccount| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
        )
        .reconcile_all_on(futures::stream::select_all([
            ns_lagged.boxed(),
            sa_lagged.boxed(),
            resync.boxed(),
        ]))
        .graceful_shutdown_on(shutdown.cancelled_owned());
    let cache = ctx.accounts.clone();
    async move {
        // Deciding what is missing from a cache still filling would create what exists.
        if cache.wait_until_ready().await.is_err() {
            return;
        }
        info!("starting the serviceaccounts controller");
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move { crate::log_result("serviceaccounts", result) })
            .await;
    }
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = namespace.name_any();
    let exists = |name: &str| {
        ctx.accounts
            .get(&ObjectRef::new(name).within(&ns))
            .is_some()
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for sa in missing(&namespace, exists) {
        let name = sa.name_any();
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => info!(namespace = %ns, account = %name, "created service account"),
            // Made meanwhile (the cache lags our own writes), or the namespace is going.
            Err(kube::Error::Api(s)) if s.code == 409 || is_gone_namespace(&s) => {
                debug!(namespace = %ns, account = %name, reason = %s, "not created");
            }
            Err(source) => {
                return Err(Error::Create {
                    namespace: ns,
                    name,
                    source,
                })
            }
        }
    }
    ctx.backoff.forget(&ns);
    Ok(Action::await_change())
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay: Duration = ctx.backoff.next(&namespace.name_any());
    warn!(error = %error, retry_in = ?delay, "serviceaccounts: sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn namespace(phase: &str, deleting: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                ..NamespaceStatus::default()
            }),
            ..Namespace::default()
        }
    }

    #[test]
    fn an_active_namespace_without_its_default_account_gets_one() {
        let cases: &[(&str, bool, bool, &[&str])] = &[
            // phase, being deleted, `default` cached, accounts to create
            ("Active", false, false, &["default"]),
            ("Active", false, true, &[]),
            ("Terminating", true, false, &[]),
            ("Active", true, false, &[]),
            ("", false, false, &[]),
        ];
        for (phase, deleting, cached, want) in cases {
            let ns = namespace(phase, *deleting);
            let got = missing(&ns, |name| *cached && name == "default");
            let names: Vec<String> = got.iter().map(|sa| sa.name_any()).collect();
            assert_eq!(
                names, *want,
                "phase {phase:?} deleting {deleting} cached {cached}"
            );
            for sa in &got {
                assert_eq!(sa.metadata.namespace.as_deref(), Some("team"));
                assert!(sa.metadata.resource_version.is_none() && sa.metadata.uid.is_none());
            }
        }
    }
}

//! Upstream's `root-ca-cert-publisher` (`pkg/controller/certificates/rootcacertpublisher`):
//! every active namespace has the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the
//! cluster CA (kube-controller-manager's `--root-ca-file`), with a description annotation.
//! It is created when the namespace appears or the ConfigMap is deleted, and its data put
//! back when someone changes it (other keys and `binaryData` are left alone, as upstream).
//!
//! ```text
//!  namespace applied ───────────────────┐
//!  kube-root-ca.crt changed or deleted ─┴─▶ reconcile(namespace)
//!      ─▶ desired(ns, cached configmap, CA) ─▶ nothing | create | update
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::informer::{applied, touched, Informer};
use crate::{is_gone_namespace, RESYNC};

/// The ConfigMap's name in every namespace.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Its one data key.
pub const CA_KEY: &str = "ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {namespace}/{CONFIG_MAP}: {source}")]
    Write {
        namespace: String,
        source: kube::Error,
    },
}

/// What to write so that a namespace's `kube-root-ca.crt` is right.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Create(ConfigMap),
    /// A replacement of the cached object (its resource version guards the write).
    Update(ConfigMap),
}

/// The write that brings `current` (the cached ConfigMap, if any) of `namespace` to
/// publishing `ca`, or `None` when it already does or the namespace is not active.
pub fn desired(namespace: &Namespace, current: Option<&ConfigMap>, ca: &str) -> Option<Write> {
    let active = namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
        && namespace.metadata.deletion_timestamp.is_none();
    if !active {
        return None;
    }
    let data = BTreeMap::from([(CA_KEY.to_string(), ca.to_string())]);
    let Some(current) = current else {
        return Some(Write::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                namespace: namespace.metadata.name.clone(),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }));
    };
    let described = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if current.data.as_ref() == Some(&data) && described {
        return None;
    }
    let mut fixed = current.clone();
    fixed.data = Some(data);
    fixed
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Some(Write::Update(fixed))
}

struct Ctx {
    client: Client,
    config_maps: Store<ConfigMap>,
    root_ca: String,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (so call this before they run); the future
/// runs it until `shutdown`. `config_maps` may be limited to `kube-root-ca.crt`.
pub fn controller(
    client: Client,
    root_ca: String,
    namespaces: &Informer<Namespace>,
    config_maps: &Informer<ConfigMap>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (ns_changes, ns_lagged) = namespaces.subscribe();
    let (cm_changes, cm_lagged) = config_maps.subscribe();
    let ctx = Arc::new(Ctx {
        client,
        config_maps: config_maps.store(),
        root_ca,
        backoff: Backoff::controller_default(),
    });
    let controller = Controller::for_stream(applied(ns_changes), namespaces.store())
        .watches_stream(
            touched(cm_changes).filter(|cm| {
                let ours = cm.as_ref().is_ok_and(|cm| cm.name_any() == CONFIG_MAP);
                std::future::ready(ours)
            }),
            |cm: ConfigMap| cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
        )
        .reconcile_all_on(futures::stream::select_all([
            ns_lagged.boxed(),
            cm_lagged.boxed(),
            crate::ticks(RESYNC).boxed(),
        ]))
        .graceful_shutdown_on(shutdown.cancelled_owned());
    let cache = ctx.config_maps.clone();
    async move {
        // Deciding what is missing from a cache still filling would create what exists.
        if cache.wait_until_ready().await.is_err() {
            return;
        }
        info!("starting the root-ca-cert-publisher controller");
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move { crate::log_result("root-ca-cert-publisher", result) })
            .await;
    }
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = namespace.name_any();
    let cached = ctx.config_maps.get(&ObjectRef::new(CONFIG_MAP).within(&ns));
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let result = match desired(&namespace, cached.as_deref(), &ctx.root_ca) {
        None => Ok(()),
        Some(Write::Create(cm)) => match api.create(&PostParams::default(), &cm).await {
            Ok(_) => {
                debug!(namespace = %ns, "published {CONFIG_MAP}");
                Ok(())
            }
            // Don't retry a create if the namespace is gone or terminating; one made
            // meanwhile arrives through the watch.
            Err(kube::Error::Api(s)) if s.code == 409 || is_gone_namespace(&s) => {
                debug!(namespace = %ns, reason = %s, "{CONFIG_MAP} not created");
                Ok(())
            }
            Err(e) => Err(e),
        },
        Some(Write::Update(cm)) => match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await
        {
            Ok(_) => {
                info!(namespace = %ns, "put back the data of {CONFIG_MAP}");
                Ok(())
            }
            // Deleted meanwhile: its deletion brings us back to create it.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        },
    };
    result.map_err(|source| Error::Write {
        namespace: ns.clone(),
        source,
    })?;
    ctx.backoff.forget(&ns);
    Ok(Action::await_change())
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.next(&namespace.name_any());
    warn!(error = %error, retry_in = ?delay, "root-ca-cert-publisher: sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

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

    fn config_map(data: &[(&str, &str)], described: bool) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                namespace: Some("team".into()),
                resource_version: Some("7".into()),
                annotations: described.then(|| {
                    BTreeMap::from([(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())])
                }),
                labels: Some(BTreeMap::from([("kept".to_string(), "yes".to_string())])),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    /// What `desired` decides, in words.
    fn decide(ns: &Namespace, current: Option<&ConfigMap>) -> &'static str {
        match desired(ns, current, CA) {
            None => "nothing",
            Some(Write::Create(_)) => "create",
            Some(Write::Update(_)) => "update",
        }
    }

    #[test]
    fn the_configmap_is_made_right() {
        let active = namespace("Active", false);
        let right = config_map(&[(CA_KEY, CA)], true);
        let cases: Vec<(&str, Namespace, Option<ConfigMap>, &str)> = vec![
            ("missing", active.clone(), None, "create"),
            ("right", active.clone(), Some(right.clone()), "nothing"),
            (
                "tampered",
                active.clone(),
                Some(config_map(&[(CA_KEY, "x")], true)),
                "update",
            ),
            (
                "an extra key",
                active.clone(),
                Some(config_map(&[(CA_KEY, CA), ("extra", "1")], true)),
                "update",
            ),
            (
                "emptied",
                active.clone(),
                Some(config_map(&[], true)),
                "update",
            ),
            (
                "description removed",
                active.clone(),
                Some(config_map(&[(CA_KEY, CA)], false)),
                "update",
            ),
            (
                "terminating",
                namespace("Terminating", true),
                None,
                "nothing",
            ),
            ("being deleted", namespace("Active", true), None, "nothing"),
        ];
        for (name, ns, current, want) in cases {
            assert_eq!(decide(&ns, current.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn writes_carry_the_ca_the_description_and_what_else_was_there() {
        let active = namespace("Active", false);
        let Some(Write::Create(made)) = desired(&active, None, CA) else {
            panic!("a missing configmap is created");
        };
        assert_eq!(made.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(
            made.data,
            Some(BTreeMap::from([(CA_KEY.into(), CA.into())]))
        );
        let described = made.metadata.annotations.unwrap_or_default();
        assert_eq!(
            described.get(DESCRIPTION_ANNOTATION).map(String::as_str),
            Some(DESCRIPTION)
        );

        let tampered = config_map(&[(CA_KEY, "x"), ("extra", "1")], false);
        let Some(Write::Update(fixed)) = desired(&active, Some(&tampered), CA) else {
            panic!("a tampered configmap is updated");
        };
        assert_eq!(
            fixed.data,
            Some(BTreeMap::from([(CA_KEY.into(), CA.into())]))
        );
        // The update replaces the version it read, and keeps its labels.
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(fixed.metadata.labels, tampered.metadata.labels);
        let described = fixed.metadata.annotations.unwrap_or_default();
        assert_eq!(
            described.get(DESCRIPTION_ANNOTATION).map(String::as_str),
            Some(DESCRIPTION)
        );
    }
}

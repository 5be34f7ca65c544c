//! The shell shared by the workload controllers whose work comes from their own event
//! router (upstream's informer event handlers feeding a controller's work queue): the
//! ReplicaSet/RC, Deployment, StatefulSet, DaemonSet, Job and CronJob controllers.
//!
//! Owns: running such a controller once its caches are synced, until shutdown.
//! Does not own: what a change means (each controller's `route_events`), the syncs
//! themselves, the informers (`lib.rs::run`).
//!
//! ```text
//!  subscribe to the informers (before they run) ─▶ router: changes → keys ─▶ channel
//!  start: event sink and router spawned ─▶ wait until every cache synced (or shutdown;
//!         a kind the API does not serve never syncs)
//!       ─▶ kube-runtime Controller: keys from the channel, every key again when a
//!          subscriber lagged and every RESYNC; up to `concurrency` syncs at once
//!  shutdown ─▶ controller drains ─▶ router stopped ─▶ pending events written
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryFuture};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::RESYNC;

/// A controller fed by its event router, ready to run.
pub(crate) struct Routed<K: Resource<DynamicType = ()> + 'static> {
    /// Its name in logs.
    pub name: &'static str,
    /// The cache of the objects it syncs.
    pub store: Store<K>,
    /// The keys its router sends to sync.
    pub triggered: mpsc::UnboundedReceiver<ObjectRef<K>>,
    /// One stream per subscription, yielding when that subscriber fell behind its informer.
    pub lagged: Vec<BoxStream<'static, ()>>,
    /// One future per cache it reads, true once that cache listed everything.
    pub synced: Vec<BoxFuture<'static, bool>>,
    /// Syncs of different objects at once (the `--concurrent-*-syncs` flags).
    pub concurrency: u16,
}

impl<K> Routed<K>
where
    K: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Runs the controller until `shutdown`, with its router and event sink beside it.
    pub async fn run<Ctx, Fut>(
        self,
        router: impl Future<Output = ()> + Send + 'static,
        sink: record::Sink,
        shutdown: CancellationToken,
        reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> Fut,
        error_policy: impl Fn(Arc<K>, &Fut::Error, Arc<Ctx>) -> Action,
        ctx: Arc<Ctx>,
    ) where
        Ctx: Send + Sync + 'static,
        Fut: TryFuture<Ok = Action> + Send + 'static,
        Fut::Error: std::error::Error + Send + 'static,
    {
        let name = self.name;
        let triggered = futures::stream::unfold(self.triggered, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        });
        let mut resync = self.lagged;
        resync.push(crate::ticks(RESYNC).boxed());
        let controller = Controller::for_stream(
            futures::stream::pending::<Result<K, watcher::Error>>(),
            self.store,
        )
        .with_config(controller::Config::default().concurrency(self.concurrency))
        .reconcile_on(triggered)
        .reconcile_all_on(futures::stream::select_all(resync))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned());

        let sink = tokio::spawn(sink.run(shutdown.clone()));
        let router = tokio::spawn(router);
        // Deciding from caches still filling would create objects that exist.
        let synced = crate::informer::all_synced(self.synced, &shutdown).await;
        if synced {
            info!(controller = name, "starting controller");
            controller
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move { crate::log_result(name, result) })
                .await;
        }
        router.abort();
        if let Err(e) = sink.await {
            warn!(controller = name, error = %e, "event recorder panicked");
        }
    }
}

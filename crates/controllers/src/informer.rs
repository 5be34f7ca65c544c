//! Shared informers: one kube-runtime watcher per kind (with its default backoff) feeding a
//! reflector store that every controller reads, and fanning the changes out to each
//! controller that subscribed, as client-go's shared informer factory does for
//! kube-controller-manager.
//!
//! kube-runtime's own shared streams (`reflector::store_shared`) pass on applied objects
//! only; upstream's controllers react to deletions too (a deleted `default` ServiceAccount or
//! `kube-root-ca.crt` is put back), so changes are broadcast here with deletions included.
//!
//! ```text
//!  watcher ─▶ store (every reader) ─▶ broadcast ─▶ Applied / Deleted per subscriber
//!    relist (after a gap): every object Applied again, the ones gone meanwhile Deleted
//!    a subscriber that falls behind loses changes: it is told so (`lagged`) and
//!    its controller reconciles everything
//! ```

use std::collections::HashSet;
use std::fmt::Debug;
use std::pin::pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Error;

/// Changes buffered per subscriber before it is considered behind.
const BUFFER: usize = 4096;

/// One change of the watched kind.
#[derive(Debug)]
pub enum Change<K> {
    /// Added or updated (or listed again after a relist).
    Applied(Arc<K>),
    /// Deleted; the object's last known state.
    Deleted(Arc<K>),
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
        }
    }
}

/// The watcher and cache of one kind.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    kind: &'static str,
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    changes: broadcast::Sender<Change<K>>,
    /// Set once the first list is in the store. kube-runtime's `Store::wait_until_ready`
    /// wakes only the last of several tasks waiting at once (its oneshot keeps one waker),
    /// so controllers sharing a cache wait on this instead.
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(kind: &'static str, api: Api<K>, config: watcher::Config) -> Informer<K> {
        let (_, writer) = reflector::store();
        let (changes, _) = broadcast::channel(BUFFER);
        let (synced, _) = watch::channel(false);
        Informer {
            kind,
            api,
            config,
            writer,
            changes,
            synced,
        }
    }

    /// Resolves once the cache holds the first list (client-go's `HasSynced`); `false` if the
    /// informer stopped first. Any number of tasks may wait at once.
    pub fn synced(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut rx = self.synced.subscribe();
        async move { rx.wait_for(|synced| *synced).await.is_ok() }
    }

    /// The cache every controller reads.
    pub fn store(&self) -> Store<K> {
        self.writer.as_reader()
    }

    /// The changes from now on, and a stream that yields whenever some of them were lost
    /// because the subscriber fell behind. Subscribe before the informer runs to miss
    /// nothing.
    pub fn subscribe(
        &self,
    ) -> (
        impl Stream<Item = Change<K>> + Send + 'static,
        impl Stream<Item = ()> + Send + 'static,
    ) {
        let rx = self.changes.subscribe();
        let (lag_tx, lag_rx) = mpsc::unbounded_channel::<()>();
        let kind = self.kind;
        let changes = futures::stream::unfold((rx, lag_tx), move |(mut rx, lag)| async move {
            loop {
                match rx.recv().await {
                    Ok(change) => return Some((change, (rx, lag))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(
                            kind,
                            missed, "a controller fell behind its watch; resyncing"
                        );
                        let _ = lag.send(());
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let lagged = futures::stream::unfold(lag_rx, |mut rx| async move {
            rx.recv().await.map(|()| ((), rx))
        });
        (changes, lagged)
    }

    /// Watches until `shutdown`. Watch errors are retried with kube-runtime's default
    /// backoff; the stream only ends if the watcher itself stops.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut events = pin!(watcher(self.api.clone(), self.config.clone()).default_backoff());
        // The objects before a relist, to tell which of them it no longer shows.
        let mut before_relist: Vec<Arc<K>> = Vec::new();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ev = events.next() => ev,
            };
            let event = match event {
                None => return Err(Error::WatchEnded(self.kind)),
                Some(Err(e)) => {
                    warn!(kind = self.kind, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
                Some(Ok(event)) => event,
            };
            if let watcher::Event::Init = event {
                before_relist = self.store().state();
            }
            self.writer.apply_watcher_event(&event);
            let store = self.store();
            let send = |change| {
                // No subscriber is fine: nothing needs to hear of it.
                let _ = self.changes.send(change);
            };
            match event {
                watcher::Event::Apply(obj) => {
                    let cached = store.get(&ObjectRef::from_obj(&obj));
                    send(Change::Applied(cached.unwrap_or_else(|| Arc::new(obj))));
                }
                watcher::Event::Delete(obj) => send(Change::Deleted(Arc::new(obj))),
                watcher::Event::InitDone => {
                    let now = store.state();
                    let present: HashSet<ObjectRef<K>> =
                        now.iter().map(|o| ObjectRef::from_obj(&**o)).collect();
                    for gone in before_relist.drain(..) {
                        if !present.contains(&ObjectRef::from_obj(&*gone)) {
                            send(Change::Deleted(gone));
                        }
                    }
                    debug!(kind = self.kind, objects = now.len(), "listed");
                    self.synced.send_replace(true);
                    for obj in now {
                        send(Change::Applied(obj));
                    }
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
    }
}

/// Whether every cache listed everything before `shutdown` (a controller deciding from
/// caches still filling would act on a partial view).
pub async fn all_synced(
    synced: impl IntoIterator<Item = futures::future::BoxFuture<'static, bool>>,
    shutdown: &CancellationToken,
) -> bool {
    let all = async {
        for cache in synced {
            if !cache.await {
                return false;
            }
        }
        true
    };
    tokio::select! {
        all = all => all,
        _ = shutdown.cancelled() => false,
    }
}

/// Runs a controller whose work is every change of one informer's objects (the CSR
/// controllers, ttl-after-finished): once the cache has synced, until `shutdown`; every
/// object again when the subscription lagged. Subscribes now, so call it before the
/// informer runs.
pub fn run_controller<K, Ctx, Fut>(
    name: &'static str,
    informer: &Informer<K>,
    concurrency: u16,
    shutdown: CancellationToken,
    reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    error_policy: impl Fn(Arc<K>, &Fut::Error, Arc<Ctx>) -> kube::runtime::controller::Action
        + Send
        + Sync
        + 'static,
    ctx: Arc<Ctx>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    Fut: futures::TryFuture<Ok = kube::runtime::controller::Action> + Send + 'static,
    Fut::Error: std::error::Error + Send + 'static,
{
    use kube::runtime::controller::{self, Controller};
    let (changes, lagged) = informer.subscribe();
    let controller = Controller::for_stream(applied(changes), informer.store())
        .with_config(controller::Config::default().concurrency(concurrency))
        .reconcile_all_on(lagged)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned());
    let synced = informer.synced();
    async move {
        let synced = tokio::select! {
            s = synced => s,
            _ = shutdown.cancelled() => false,
        };
        if synced {
            tracing::info!(controller = name, "starting controller");
            controller
                .run(reconcile, error_policy, ctx)
                .for_each(|r| async move { crate::log_result(name, r) })
                .await;
        }
    }
}

/// The applied objects of a change stream, as `Controller::for_stream` and
/// `watches_stream` take them.
pub fn applied<K: Clone>(
    changes: impl Stream<Item = Change<K>>,
) -> impl Stream<Item = Result<K, watcher::Error>> {
    changes.filter_map(|c| {
        std::future::ready(match c {
            Change::Applied(o) => Some(Ok((*o).clone())),
            Change::Deleted(_) => None,
        })
    })
}

/// The deleted objects of a change stream.
pub fn deleted<K: Clone>(
    changes: impl Stream<Item = Change<K>>,
) -> impl Stream<Item = Result<K, watcher::Error>> {
    changes.filter_map(|c| {
        std::future::ready(match c {
            Change::Deleted(o) => Some(Ok((*o).clone())),
            Change::Applied(_) => None,
        })
    })
}

/// Every object of a change stream, applied or deleted.
pub fn touched<K: Clone>(
    changes: impl Stream<Item = Change<K>>,
) -> impl Stream<Item = Result<K, watcher::Error>> {
    changes.map(|c| match c {
        Change::Applied(o) | Change::Deleted(o) => Ok((*o).clone()),
    })
}

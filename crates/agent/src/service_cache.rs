//! The agent's cache of Services (the kubelet's service informer), fed by one kube-runtime
//! watcher on all namespaces: what containers' Service environment variables
//! (`envvars`) are built from.
//!
//! ```text
//!  agent start ─▶ watcher (list, then watch; backoff on errors) ─▶ store ─▶ synced
//!  container start ─▶ wait for synced and default/kubernetes in the store (at most
//!      SYNC_WAIT) ─▶ read the store
//!  API server without Services (404) ─▶ counted as synced and empty: the `kubernetes`
//!      variables fall back to the API's advertise address
//! ```
//!
//! Upstream refuses to build a container's environment until its informer has synced
//! ("services have not yet been read at least once"), so a restarted kubelet does not start
//! a pod without `KUBERNETES_SERVICE_HOST`. The agent waits the same way, and also for the
//! `kubernetes` Service itself (an API server that just started writes it moments after it
//! serves), but bounded: past [`SYNC_WAIT`] it goes on with what it has (logged), rather
//! than hold pods for an API server it cannot list Services from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use supervisor::Outage;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The longest a container start waits for the first list of Services.
pub const SYNC_WAIT: Duration = Duration::from_secs(10);

/// How far the cache has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    /// The first list is in the store (or there is nothing to list).
    synced: bool,
    /// The API server answered the list with 404: it has no Services.
    not_served: bool,
    /// Bumped on every change, so waiters look at the store again.
    generation: u64,
}

/// The Services the node knows.
pub struct ServiceCache {
    store: Store<Service>,
    writer: Mutex<reflector::store::Writer<Service>>,
    progress: watch::Sender<Progress>,
}

impl Default for ServiceCache {
    fn default() -> Self {
        let (store, writer) = reflector::store();
        let (progress, _) = watch::channel(Progress::default());
        ServiceCache {
            store,
            writer: Mutex::new(writer),
            progress,
        }
    }
}

fn not_served(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404)
}

impl ServiceCache {
    /// Every Service in the cache.
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.store.state()
    }

    fn has_kubernetes(&self) -> bool {
        self.store
            .get(&reflector::ObjectRef::new("kubernetes").within("default"))
            .is_some()
    }

    /// Waits (at most `limit`) until the first list is in and, when the server has
    /// Services, the `kubernetes` Service of `default` with it: the one whose variables
    /// every pod gets, which an API server that just started may not have written yet.
    /// False if the wait ran out.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        let ready = tokio::time::timeout(
            limit,
            rx.wait_for(|p| p.synced && (p.not_served || self.has_kubernetes())),
        )
        .await;
        matches!(ready, Ok(Ok(_)))
    }

    /// Watches Services until `shutdown`; restarted by the agent's supervisor if it ends.
    pub async fn run(
        self: Arc<Self>,
        client: kube::Client,
        shutdown: CancellationToken,
    ) -> Result<(), crate::AgentError> {
        let api: Api<Service> = Api::all(client);
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut outage = Outage::new("service watch");
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ev = events.next() => ev,
            };
            let event = match event {
                None => return Err(crate::AgentError::State("the service watch ended".into())),
                Some(Err(e)) if not_served(&e) => {
                    self.mark_not_served();
                    continue;
                }
                Some(Err(e)) => {
                    outage.failed(&e);
                    continue;
                }
                Some(Ok(event)) => {
                    outage.succeeded();
                    event
                }
            };
            self.apply(&event);
        }
    }

    /// Takes one watch event into the store and wakes the waiters.
    fn apply(&self, event: &watcher::Event<Service>) {
        let done = matches!(event, watcher::Event::InitDone);
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply_watcher_event(event);
        let was_synced = self.progress.borrow().synced;
        self.progress.send_modify(|p| {
            p.generation += 1;
            if done {
                p.synced = true;
                p.not_served = false;
            }
        });
        if done && !was_synced {
            info!(services = self.store.state().len(), "services listed");
        }
    }

    /// The API server has no Services: nothing to wait for.
    fn mark_not_served(&self) {
        if !self.progress.borrow().not_served {
            info!("the API server serves no Services; pods get the API's advertise address as the kubernetes Service");
        }
        self.progress.send_modify(|p| {
            p.synced = true;
            p.not_served = true;
        });
    }
}

/// Waits for the cache (bounded) and logs when the wait ran out.
pub async fn wait(cache: &ServiceCache, pod: &str) {
    if !cache.wait_ready(SYNC_WAIT).await {
        warn!(pod, waited_s = SYNC_WAIT.as_secs(), "services (or the kubernetes Service) have not been read yet; starting the container with the Services known so far");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    const SHORT: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn ready_once_listed_with_the_kubernetes_service() {
        let cache = Arc::new(ServiceCache::default());
        assert!(!cache.wait_ready(SHORT).await, "nothing listed yet");
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(svc("shop", "web")));
        cache.apply(&watcher::Event::InitDone);
        assert_eq!(cache.services().len(), 1);
        assert!(
            !cache.wait_ready(SHORT).await,
            "listed, but no kubernetes Service"
        );
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_ready(Duration::from_secs(10)).await }
        });
        cache.apply(&watcher::Event::Apply(svc("default", "kubernetes")));
        assert!(waiter.await.unwrap(), "woken by the kubernetes Service");
    }

    #[tokio::test]
    async fn a_server_without_services_is_ready_at_once() {
        let cache = ServiceCache::default();
        cache.mark_not_served();
        assert!(cache.wait_ready(SHORT).await);
        assert!(cache.services().is_empty());
    }
}

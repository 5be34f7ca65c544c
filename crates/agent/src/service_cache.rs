//! The agent's cache of Services (the kubelet's service informer), fed by one kube-runtime
//! watcher on all namespaces: what containers' Service environment variables
//! (`envvars`) are built from.
//!
//! ```text
//!  agent start ─▶ watcher (list, then watch; backoff on errors) ─▶ store ─▶ synced
//!  container start ─▶ wait for synced (at most SYNC_WAIT) ─▶ read the store
//!  API server without Services (404) ─▶ counted as synced and empty: the `kubernetes`
//!      variables fall back to the API's advertise address
//! ```
//!
//! Upstream refuses to build a container's environment until its informer has synced
//! ("services have not yet been read at least once"), so a restarted kubelet does not start
//! a pod without `KUBERNETES_SERVICE_HOST`. The agent waits the same way, but bounded: past
//! [`SYNC_WAIT`] it goes on with what it has (logged), rather than hold pods for an API
//! server it cannot list Services from.

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

/// The Services the node knows.
pub struct ServiceCache {
    store: Store<Service>,
    writer: Mutex<reflector::store::Writer<Service>>,
    /// Set once the first list is in the store (or the server has no Services to list).
    synced: watch::Sender<bool>,
}

impl Default for ServiceCache {
    fn default() -> Self {
        let (store, writer) = reflector::store();
        let (synced, _) = watch::channel(false);
        ServiceCache {
            store,
            writer: Mutex::new(writer),
            synced,
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

    /// Waits until the first list is in (at most `limit`); false if it is not.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        let synced = tokio::time::timeout(limit, rx.wait_for(|s| *s)).await;
        matches!(synced, Ok(Ok(_)))
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
        let mut said_not_served = false;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ev = events.next() => ev,
            };
            let event = match event {
                None => return Err(crate::AgentError::State("the service watch ended".into())),
                Some(Err(e)) if not_served(&e) => {
                    if !said_not_served {
                        info!("the API server serves no Services; pods get the API's advertise address as the kubernetes Service");
                        said_not_served = true;
                    }
                    self.synced.send_replace(true);
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
            let done = matches!(event, watcher::Event::InitDone);
            self.writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .apply_watcher_event(&event);
            if done && !self.synced.send_replace(true) {
                info!(services = self.store.state().len(), "services listed");
            }
        }
    }
}

/// Waits for the cache (bounded) and logs once per call when the wait ran out.
pub async fn wait(cache: &ServiceCache, pod: &str) {
    if !cache.wait_synced(SYNC_WAIT).await {
        warn!(pod, waited_s = SYNC_WAIT.as_secs(), "services have not been read yet; starting the container with the Services known so far");
    }
}

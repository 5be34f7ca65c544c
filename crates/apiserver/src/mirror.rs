//! An in-memory mirror of one key prefix, kept current by a store watch: what admission reads
//! on every create (namespaces, priority classes) without a store round trip, as upstream's
//! admission plugins read informer caches.
//!
//! A mirror may lag the store by the watch delay; callers that must not act on a miss (a
//! namespace created a moment ago) fall back to a store read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use futures::StreamExt;
use serde_json::Value;
use store::{Event, Store};
use supervisor::{Backoff, Outage};
use tokio_util::sync::CancellationToken;

use crate::object;
use crate::scan::Pages;

#[derive(Default)]
pub struct Mirror {
    objects: RwLock<HashMap<String, Arc<Value>>>,
}

impl Mirror {
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.read().get(key).cloned()
    }

    /// Every mirrored object.
    pub fn values(&self) -> Vec<Arc<Value>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Value>>> {
        // A poisoned lock only means a writer panicked mid-insert; the map is still usable.
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Value>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists `prefix`, then follows its watch until `shutdown`; relists after any error,
    /// with backoff (800 ms doubling to 30 s, started over after a watch that held for two
    /// minutes) and one log line per outage of the store rather than one per attempt.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        prefix: String,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        let mut outage = Outage::new("admission mirror watch");
        loop {
            let began = Instant::now();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                res = self.follow(&store, &prefix, &mut outage) => if let Err(e) = res {
                    outage.failed(&format!("{prefix}: {e}"));
                },
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay(began.elapsed())) => {}
            }
        }
    }

    async fn follow(
        &self,
        store: &Arc<dyn Store>,
        prefix: &str,
        outage: &mut Outage,
    ) -> Result<(), store::Error> {
        let mut fresh = HashMap::new();
        let mut pages = Pages::new(store, prefix);
        while let Some(items) = pages.next().await? {
            for kv in items {
                if let Ok(v) = object::parse(&kv) {
                    fresh.insert(kv.key, Arc::new(v));
                }
            }
        }
        let revision = pages.revision();
        *self.write() = fresh;
        let mut events = store.watch(prefix, revision).await?;
        outage.succeeded();
        while let Some(ev) = events.next().await {
            match ev? {
                Event::Put { kv, .. } => {
                    if let Ok(v) = object::parse(&kv) {
                        self.write().insert(kv.key, Arc::new(v));
                    }
                }
                Event::Delete { prev, .. } => {
                    self.write().remove(&prev.key);
                }
            }
        }
        Ok(())
    }
}

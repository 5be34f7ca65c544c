//! Event expiry: kube-apiserver's `--event-ttl` (1 h), which upstream implements with etcd
//! leases on event keys.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::errors::ApiError;
use crate::handlers::delete::{delete_object, DeleteOptions};
use crate::object;
use crate::registry;
use crate::scan::Pages;
use crate::server::ApiServer;

/// Deletes events older than `ttl` every `ttl / 6` until `shutdown`: kube-apiserver's
/// `--event-ttl` (1 h), which it implements with etcd leases on event keys.
pub async fn run(server: Arc<ApiServer>, ttl: Duration, shutdown: CancellationToken) {
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
    let events = registry::core_events();
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

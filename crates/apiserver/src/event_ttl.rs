//! Event expiry: kube-apiserver's `--event-ttl` (1 h). Upstream attaches each event write to
//! an etcd lease of that TTL, so an event lives until TTL after its last write, whatever
//! times the event itself reports. peapod's stores have no leases; instead the sweeper
//! samples (time, store revision) pairs, as the compactor does, and an event whose last
//! write (its modification revision) is no newer than the revision sampled TTL ago is gone.
//!
//! ```text
//!   sample:  (t0, r0)   (t1, r1)   (t2, r2)  ...   every ttl/6
//!   sweep at now: cutoff = newest sample with t ≤ now - ttl
//!                 delete events with mod_revision ≤ cutoff (compare-and-swap on it, so a
//!                 write racing the sweep renews the event instead of losing it)
//! ```
//!
//! An event therefore lives between TTL and TTL + 2 × TTL/6 after its last write. Samples
//! live in memory: after a restart the clock starts again, so events written before it live
//! at most one TTL past the restart, longer than upstream's by up to that restart's age.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::Revision;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::errors::ApiError;
use crate::kinds;
use crate::scan::Pages;
use crate::server::ApiServer;

/// Store revisions sampled over time: which revision was current how long ago.
#[derive(Debug, Default)]
pub struct RevisionClock {
    /// Oldest first.
    samples: VecDeque<(Instant, Revision)>,
}

impl RevisionClock {
    /// `revision` was the store's current revision at `at`.
    pub fn record(&mut self, at: Instant, revision: Revision) {
        self.samples.push_back((at, revision));
    }

    /// The newest revision sampled at least `ttl` before `now`: every write at or before it
    /// is at least `ttl` old. Older samples are dropped, as no later cutoff needs them.
    pub fn cutoff(&mut self, now: Instant, ttl: Duration) -> Option<Revision> {
        let old_enough = |at: Instant| now.checked_duration_since(at).is_some_and(|d| d >= ttl);
        while self.samples.len() > 1 && old_enough(self.samples[1].0) {
            self.samples.pop_front();
        }
        self.samples
            .front()
            .filter(|(at, _)| old_enough(*at))
            .map(|(_, rev)| *rev)
    }
}

/// Deletes expired events every `ttl / 6` until `shutdown`.
pub async fn run(server: Arc<ApiServer>, ttl: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(ttl / 6);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = RevisionClock::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match server.store.current_revision().await {
            Ok(rev) => clock.record(Instant::now(), rev),
            Err(e) => warn!(error = %e, "event expiry: reading the store revision failed"),
        }
        let Some(cutoff) = clock.cutoff(Instant::now(), ttl) else {
            continue;
        };
        if let Err(e) = expire(&server, cutoff).await {
            warn!(error = %e, "event expiry failed; will retry");
        }
    }
}

/// Deletes every event last written at or before `cutoff`.
pub async fn expire(server: &ApiServer, cutoff: Revision) -> Result<usize, ApiError> {
    let prefix = kinds::event::RESOURCE.prefix();
    let mut pages = Pages::new(&server.store, &prefix);
    let mut expired = 0;
    while let Some(items) = pages.next().await? {
        for kv in items.iter().filter(|kv| kv.mod_revision <= cutoff) {
            match server.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => expired += 1,
                // Deleted meanwhile, or written again (which renews it).
                Err(store::Error::NotFound { .. } | store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if expired > 0 {
        debug!(expired, cutoff, "expired events");
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample (seconds, revision) recorded, when the cutoff is asked for, and the answer.
    type Step = (Option<(u64, Revision)>, u64, Option<Revision>);

    #[test]
    fn the_cutoff_is_the_newest_revision_sampled_a_ttl_ago() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let ttl = Duration::from_secs(60);
        let mut clock = RevisionClock::default();
        // (sample at, revision) recorded before asking at `now`, and the cutoff then.
        let steps: &[Step] = &[
            (Some((0, 10)), 0, None),
            (Some((10, 20)), 10, None),
            (Some((59, 30)), 59, None),
            // Exactly a TTL after the first sample.
            (Some((60, 40)), 60, Some(10)),
            (None, 69, Some(10)),
            (Some((70, 50)), 70, Some(20)),
            // A gap in sampling: the newest old-enough sample still counts.
            (None, 500, Some(50)),
            (Some((500, 90)), 500, Some(50)),
        ];
        for (sample, now, want) in steps {
            if let Some((at, rev)) = sample {
                clock.record(s(*at), *rev);
            }
            assert_eq!(clock.cutoff(s(*now), ttl), *want, "at {now}s");
        }
        // Samples no cutoff needs any more are gone.
        assert_eq!(clock.samples.len(), 2);
    }

    #[tokio::test]
    async fn events_expire_by_when_they_were_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store: Arc<dyn store::Store> = Arc::new(
            store::sqlite::SqliteStore::open(&dir.path().join("state.db"))
                .unwrap_or_else(|e| panic!("store: {e}")),
        );
        let server = ApiServer::new(
            store.clone(),
            "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            crate::authn::StaticTokens::default(),
        );
        let events = &kinds::event::RESOURCE;
        // Reported two hours ago, but written now: its own times do not matter.
        let old = r#"{"lastTimestamp":"2000-01-01T00:00:00Z"}"#;
        let put = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .create(&events.key(Some("default"), name), old.into())
                    .await
                    .unwrap_or_else(|e| panic!("create: {e}"))
            }
        };
        let first = put("first").await;
        let second = put("second").await;
        let cutoff = store.current_revision().await.unwrap_or_default();
        let third = put("third").await;
        // `second` is written again after the cutoff: that renews it.
        store
            .update(&second.key, old.into(), Some(second.mod_revision))
            .await
            .unwrap_or_else(|e| panic!("update: {e}"));

        assert_eq!(expire(&server, cutoff).await.ok(), Some(1));
        let left = store
            .list(&events.prefix(), store::ListOptions::default())
            .await
            .unwrap_or_else(|e| panic!("list: {e}"));
        let names: Vec<&str> = left.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(names, [second.key.as_str(), third.key.as_str()]);
        assert!(store.get(&first.key).await.ok().flatten().is_none());
    }
}

//! Revisioned key-value storage with watch: the role etcd plays for kube-apiserver.
//!
//! Owns: the [`Store`] trait (get, paginated prefix list at a revision, create-if-absent,
//! compare-and-swap update and delete on the modification revision, watch from a revision,
//! compaction) and its backends: [`sqlite`] (embedded default, one WAL file, group commit)
//! and `etcd` (etcd v3 API, feature `etcd`).
//!
//! Does not own: what the values mean. Keys are opaque strings (the API server uses
//! `/registry/<resource>/<namespace>/<name>`), values are opaque bytes.
//!
//! May depend on: tokio, rusqlite, etcd-client. Never on the API types.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod sqlite;

#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// A store revision. Every successful write increases the store's revision by exactly one
/// and stamps the written key with it (its `mod_revision`), as etcd does.
pub type Revision = i64;

/// One key as stored at some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (the start of its current life).
    pub create_revision: Revision,
    /// Revision of the last write to this key; the compare-and-swap token.
    pub mod_revision: Revision,
}

/// What happened to a key, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev` is `None`) or updated (`prev` holds the old value).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`; `prev` is the last value it had.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// Options of a prefix list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (pagination: the last key of the previous page).
    pub start_after: Option<String>,
    /// At most this many keys (0 = no limit).
    pub limit: usize,
    /// Read as of this revision (0 = the current one). A compacted revision is `Error::Compacted`.
    pub revision: Revision,
}

/// One page of a prefix list.
#[derive(Debug, Clone)]
pub struct ListResult {
    /// Keys in ascending byte order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (pass it back as `ListOptions::revision` for the next page).
    pub revision: Revision,
    /// How many keys under the prefix follow the last returned one (0 = this was the last page).
    pub remaining: usize,
}

/// A stream of watch events in revision order. It ends (returns `None`) only when the store
/// shuts down; an `Err` item is terminal (the consumer re-lists and watches again).
///
/// Consumers may read at their own pace: a slow consumer never blocks writers. The SQLite
/// backend re-reads what a far-behind watcher missed from its log; etcd buffers server-side.
/// Either way nothing is skipped, and a watcher overtaken by compaction gets
/// `Error::Compacted`.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// A precondition on the modification revision failed; `current` is what is stored now.
    #[error("key {key} was modified (expected revision {expected}, found {})", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },
    /// The requested revision is older than the compacted one.
    #[error("revision {requested} is compacted (oldest available {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A revisioned key-value store with watch.
///
/// All writes are durable when they return `Ok`: a crash right after loses none of them.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in ascending order, one page at a time, all pages read
    /// at the same revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// How many keys start with `prefix` now.
    async fn count(&self, prefix: &str) -> Result<usize>;

    /// Create `key`; `Error::AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replace the value of an existing `key`. With `expected = Some(rev)` the write happens
    /// only if the key's `mod_revision` is `rev` (else `Error::Conflict`). `Error::NotFound`
    /// if the key does not exist.
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>)
        -> Result<KeyValue>;

    /// Delete `key`, returning its last value. With `expected = Some(rev)` only if its
    /// `mod_revision` is `rev` (else `Error::Conflict`). `Error::NotFound` if absent.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every event under `prefix` with revision > `after`, in order, none missed, none doubled,
    /// then live events. `Error::Compacted` if `after` is older than the compacted revision
    /// (`after` may equal the compacted revision); usually from this call, but if compaction
    /// races with it (or overtakes a slow watcher) as the stream's last item instead. An
    /// `after` beyond the current revision is allowed: the stream waits for it.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The store's current revision (the revision of the last write).
    async fn current_revision(&self) -> Result<Revision>;

    /// Forget history older than `revision`: reads and watches before it fail with
    /// `Error::Compacted`. Compacting to a revision at or below the already compacted one
    /// is a no-op (`Ok`); above the current revision is `Error::FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Shut the store down: writes already acknowledged stay durable, queued writes are
    /// finished, later calls fail with `Error::Backend`, and open watch streams end (`None`).
    /// Idempotent. Dropping the last handle does the same, without waiting.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Start a background task that runs [`compact_periodically`] on `store`; it ends by itself
/// once the store is dropped, or when the returned handle is aborted.
pub fn spawn_compactor<S>(
    store: &Arc<S>,
    interval: Duration,
    keep_revisions: Revision,
) -> tokio::task::JoinHandle<()>
where
    S: Store + ?Sized + 'static,
{
    tokio::spawn(compact_periodically(
        Arc::downgrade(store),
        interval,
        keep_revisions,
    ))
}

/// Compacts `store` the way kube-apiserver does: every `interval` it compacts to the
/// revision it saw one tick earlier (so at least one interval of history survives for
/// watchers that reconnect), and never to within `keep_revisions` of the current revision.
/// kube-apiserver uses a 5 minute interval.
///
/// Holds only a weak reference: it returns once the store is dropped. Failures are logged
/// and retried at the next tick.
pub async fn compact_periodically<S>(
    store: std::sync::Weak<S>,
    interval: Duration,
    keep_revisions: Revision,
) where
    S: Store + ?Sized,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen_last_tick: Option<Revision> = None;
    loop {
        ticker.tick().await;
        let Some(store) = store.upgrade() else { return };
        let current = match store.current_revision().await {
            Ok(rev) => rev,
            Err(err) => {
                tracing::warn!(%err, "compactor: reading the current revision failed");
                continue;
            }
        };
        if let Some(previous) = seen_last_tick {
            let target = previous.min(current - keep_revisions);
            if target > 0 {
                match store.compact(target).await {
                    Ok(()) => tracing::debug!(revision = target, "compacted"),
                    Err(err) => tracing::warn!(%err, revision = target, "compaction failed"),
                }
            }
        }
        seen_last_tick = Some(current);
    }
}

/// The smallest key strictly greater than `key` in byte order: `key` followed by a zero byte.
/// Turns an exclusive `start_after` into an inclusive lower bound.
pub(crate) fn key_successor(key: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.len() + 1);
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(0);
    bytes
}

/// The inclusive lower bound of a page of `prefix`: the prefix itself, or just past
/// `start_after` when that lies inside or beyond the prefix range.
pub(crate) fn page_start(prefix: &str, start_after: Option<&str>) -> Vec<u8> {
    match start_after {
        Some(after) if after >= prefix => key_successor(after),
        _ => prefix.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_start_is_inclusive_lower_bound() {
        assert_eq!(page_start("/a/", None), b"/a/".to_vec());
        assert_eq!(page_start("/a/", Some("/a/x")), b"/a/x\0".to_vec());
        // A start_after before the prefix starts the page at the prefix.
        assert_eq!(page_start("/a/", Some("/0")), b"/a/".to_vec());
        assert_eq!(page_start("", Some("")), b"\0".to_vec());
    }
}

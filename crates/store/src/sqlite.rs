//! Embedded SQLite backend: one database file in WAL mode holding the whole MVCC history,
//! in the manner of k3s's kine.
//!
//! Owns: the on-disk schema, the single writer thread (group commit), the pool of read
//! connections, the in-process broadcast of committed events that feeds watchers, and
//! chunked background deletion of compacted history.
//!
//! # Schema
//! - `kv`: the log. One row per write; its `id` *is* the revision. A delete writes a
//!   tombstone row (`deleted = 1`). `prev_revision` points at the row the write superseded
//!   (0 when the write started a new life of the key), which is how watch catch-up finds the
//!   previous value and how compaction finds superseded rows.
//! - `current`: one row per live key pointing at its latest `kv` row, so that reads at the
//!   current revision (the common case) never scan history.
//! - `meta`: the current revision (kept here, not derived from `max(id)`, because compaction
//!   may delete the newest row when it is a tombstone), the compacted revision, and how far
//!   the physical deletion of compacted rows has got.
//!
//! # Group commit
//! Writes are requests on a bounded channel to one writer thread, which owns the only
//! writing connection. It takes everything queued (up to `max_batch`), applies each write in
//! its own savepoint with its own precondition check and revision, commits once, publishes
//! the events to watchers and then answers every request. A failed precondition fails only
//! its own write; a failed commit fails the whole batch (nothing of it is visible).
//! Reads run on a small pool of read-only connections and never wait for the writer.
//!
//! # Durability
//! Every acknowledged write has been committed. With the default [`Synchronous::Full`] each
//! group commit fsyncs the WAL, so acknowledged writes survive power loss too. With
//! [`Synchronous::Normal`] the WAL is written (with `write(2)`) before the commit returns but
//! only fsynced at checkpoints: that survives `kill -9` of this process (the data is in the
//! kernel's page cache) but not a power loss or kernel crash. Because commits are grouped,
//! the fsync is paid once per batch, so `Full` costs little and is the default.
//!
//! One process owns a database file: the writer keeps the revision counter in memory and
//! refuses to commit if it finds another writer has moved the revision under it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use crate::{
    page_start, Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    WatchStream,
};

/// How hard each group commit pushes data to disk. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL on every commit: survives process crash and power loss.
    Full,
    /// fsync only at checkpoints: survives process crash (`kill -9`), not power loss.
    Normal,
}

/// Tuning knobs of [`SqliteStore::open_with`]; [`Default`] is what [`SqliteStore::open`] uses.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Default [`Synchronous::Full`].
    pub synchronous: Synchronous,
    /// Reads running at once, each on its own connection. Default 4.
    pub read_connections: usize,
    /// Committed events kept for watchers that have not read them yet. A watcher that falls
    /// further behind than this re-reads what it missed from the log instead (it neither
    /// blocks writers nor loses events). Default 4096.
    pub watch_buffer: usize,
    /// Most writes applied in one transaction. Default 512.
    pub max_batch: usize,
    /// Writes that may wait for the writer thread before callers are made to wait in
    /// `create`/`update`/`delete` (backpressure). Default 4096.
    pub queue_depth: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            read_connections: 4,
            watch_buffer: 4096,
            max_batch: 512,
            queue_depth: 4096,
        }
    }
}

/// Revisions of history deleted per compaction transaction, so that compaction never holds
/// the write lock long enough to stall writers noticeably.
const COMPACTION_CHUNK: Revision = 2000;

/// Revisions scanned per watch catch-up query.
const CATCH_UP_SPAN: Revision = 1024;

/// Bumped when the schema changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name ON kv (name, id, deleted);
CREATE TABLE IF NOT EXISTS current (
    name BLOB PRIMARY KEY,
    mod_revision INTEGER NOT NULL,
    create_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('revision', 0), ('compact_revision', 0), ('compacted_through', 0);
";

const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";
const META_COMPACTED_THROUGH: &str = "compacted_through";

fn sql(err: rusqlite::Error) -> Error {
    Error::Backend(format!("sqlite: {err}"))
}

fn closed() -> Error {
    Error::Backend("store is closed".into())
}

/// Exclusive upper bound of the keys starting with `prefix`. Keys are UTF-8, which never
/// contains the byte 0xFF, so every key with the prefix sorts below `prefix ++ 0xFF`.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = Vec::with_capacity(prefix.len() + 1);
    end.extend_from_slice(prefix.as_bytes());
    end.push(0xFF);
    end
}

fn key_string(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::Backend("sqlite: stored key is not UTF-8".into()))
}

/// Mutex poisoning only means another thread panicked while holding it; the data guarded
/// here (idle connections, handles) stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The embedded store. Cheap to share behind an `Arc`; not `Clone` itself because it owns
/// the writer thread.
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    /// Taken on close so that watch streams end once the writer's clone is dropped too.
    events: Mutex<Option<broadcast::Sender<Arc<Event>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// State readable without a database round trip, published by the writer after each commit.
struct Shared {
    path: PathBuf,
    revision: AtomicI64,
    compact_revision: AtomicI64,
    reads: Arc<ReadPool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .field("revision", &self.shared.revision.load(Ordering::Acquire))
            .finish()
    }
}

impl SqliteStore {
    /// Open (or create) the database at `path` with default options. Reopening an existing
    /// file continues its revision sequence.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Open (or create) the database at `path`.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let mut conn = Connection::open(path).map_err(sql)?;
        configure_writer(&conn, options.synchronous)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sql)?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(Error::Backend(format!(
                "sqlite: {} has schema version {version}, this build understands {SCHEMA_VERSION}",
                path.display()
            )));
        }
        {
            let tx = conn.transaction().map_err(sql)?;
            tx.execute_batch(SCHEMA).map_err(sql)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        let revision = read_meta(&conn, META_REVISION)?;
        let compact_revision = read_meta(&conn, META_COMPACT)?;
        let compacted_through = read_meta(&conn, META_COMPACTED_THROUGH)?;

        let reads = Arc::new(ReadPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.read_connections.max(1))),
            closed: AtomicBool::new(false),
        });
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            revision: AtomicI64::new(revision),
            compact_revision: AtomicI64::new(compact_revision),
            reads,
        });
        let (events, _) = broadcast::channel(options.watch_buffer.max(16));
        let (requests, receiver) = mpsc::channel(options.queue_depth.max(1));
        let writer = Writer {
            conn,
            revision,
            compact_revision,
            compacted_through,
            compaction_stalled: false,
            events: events.clone(),
            shared: shared.clone(),
            max_batch: options.max_batch.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("store-sqlite-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|err| Error::Backend(format!("spawning the sqlite writer thread: {err}")))?;
        tracing::info!(path = %path.display(), revision, compact_revision, "opened sqlite store");
        Ok(SqliteStore {
            shared,
            requests,
            events: Mutex::new(Some(events)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The revision history is compacted to (reads and watches before it fail).
    pub fn compact_revision(&self) -> Revision {
        self.shared.compact_revision.load(Ordering::Acquire)
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Write(op, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn configure_writer(conn: &Connection, synchronous: Synchronous) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!(
            "sqlite: could not enable WAL (journal mode {mode})"
        )));
    }
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(sql)?;
    // Checkpoints run on the writer between group commits, so they stall writes while they
    // copy the WAL back and fsync the main file. Fewer, larger checkpoints keep those stalls
    // out of the 99th percentile (a background checkpointer was tried: under sustained
    // writes it never catches up with the WAL, and its fsyncs slow the commits' fsyncs).
    conn.pragma_update(None, "wal_autocheckpoint", 4000)
        .map_err(sql)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(sql)?;
    conn.pragma_update(None, "cache_size", -32_000)
        .map_err(sql)?;
    conn.pragma_update(None, "busy_timeout", 5000)
        .map_err(sql)?;
    Ok(())
}

fn read_meta(conn: &Connection, name: &str) -> Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
        .map_err(sql)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.shared
            .reads
            .run(move |conn| read_current(conn, key))
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.shared
            .reads
            .run(move |conn| list_at(conn, &prefix, &opts))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let lower = prefix.as_bytes().to_vec();
        let upper = range_end(prefix);
        self.shared
            .reads
            .run(move |conn| count_current(conn, &lower, &upper))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(WriteOp::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.write(WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before looking at the revision: everything committed after this point
        // arrives on `rx`, everything before it is in the log. See `WatchState`.
        let rx = lock(&self.events)
            .as_ref()
            .map(|tx| tx.subscribe())
            .ok_or_else(closed)?;
        let compacted = self.shared.compact_revision.load(Ordering::Acquire);
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let current = self.shared.revision.load(Ordering::Acquire);
        let state = WatchState {
            reads: self.shared.reads.clone(),
            prefix: prefix.to_owned(),
            lower: prefix.as_bytes().to_vec(),
            upper: range_end(prefix),
            scanned: after,
            catching_up: after < current,
            rx,
            buffer: VecDeque::new(),
            finished: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let item = state.next_event().await?;
            Some((item, state))
        });
        Ok(Box::pin(stream))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Compact(revision, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn close(&self) -> Result<()> {
        lock(&self.events).take();
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Shutdown(reply)).await.is_ok() {
            // The writer may already be gone (a previous close); either way it is finished.
            let _ = done.await;
        }
        self.shared.reads.close();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|err| Error::Backend(format!("joining the sqlite writer: {err}")))?
                .map_err(|_| Error::Backend("the sqlite writer thread panicked".into()))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Writer

enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

enum Request {
    Write(WriteOp, oneshot::Sender<Result<KeyValue>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
    Shutdown(oneshot::Sender<()>),
}

enum Answer {
    Write(Result<KeyValue>),
    Compact(Result<()>),
    Shutdown,
}

struct Writer {
    conn: Connection,
    /// Revision of the last committed write.
    revision: Revision,
    compact_revision: Revision,
    /// History up to here has been physically deleted; compaction work is pending while
    /// this is below `compact_revision`.
    compacted_through: Revision,
    /// Set when a compaction chunk failed, so a broken database does not spin the writer;
    /// cleared by the next compaction request.
    compaction_stalled: bool,
    events: broadcast::Sender<Arc<Event>>,
    shared: Arc<Shared>,
    max_batch: usize,
}

impl Writer {
    fn compaction_pending(&self) -> bool {
        !self.compaction_stalled && self.compacted_through < self.compact_revision
    }

    fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            if self.compaction_pending() {
                if let Err(err) = self.compact_chunk() {
                    tracing::error!(%err, "sqlite: deleting compacted history failed");
                    self.compaction_stalled = true;
                }
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(mpsc::error::TryRecvError::Empty) => continue,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match requests.blocking_recv() {
                    Some(request) => batch.push(request),
                    None => break,
                }
            }
            while batch.len() < self.max_batch {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if let Some(shutdown) = self.process(&mut batch) {
                drop(self);
                let _ = shutdown.send(());
                return;
            }
        }
        tracing::debug!("sqlite writer: all store handles dropped, exiting");
    }

    /// Apply `batch` in one transaction and answer every request in it. Returns the reply
    /// handle of a shutdown request if the batch had one.
    fn process(&mut self, batch: &mut Vec<Request>) -> Option<oneshot::Sender<()>> {
        let started = Instant::now();
        let mut revision = self.revision;
        let mut compact_to = self.compact_revision;
        let mut answers = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let committed = self.apply_batch(
            batch,
            &mut revision,
            &mut compact_to,
            &mut answers,
            &mut events,
        );
        let mut shutdown = None;
        match committed {
            Ok(()) => {
                self.revision = revision;
                if compact_to != self.compact_revision {
                    self.compact_revision = compact_to;
                    self.compaction_stalled = false;
                    self.shared
                        .compact_revision
                        .store(compact_to, Ordering::Release);
                }
                self.shared.revision.store(revision, Ordering::Release);
                if self.events.receiver_count() > 0 {
                    for event in events {
                        // Err only means the last watcher went away meanwhile.
                        let _ = self.events.send(Arc::new(event));
                    }
                }
            }
            Err(err) => {
                tracing::error!(%err, ops = batch.len(), "sqlite: group commit failed");
                answers.clear();
                for request in batch.iter() {
                    answers.push(match request {
                        Request::Write(..) => Answer::Write(Err(batch_failed(&err))),
                        Request::Compact(..) => Answer::Compact(Err(batch_failed(&err))),
                        Request::Shutdown(_) => Answer::Shutdown,
                    });
                }
            }
        }
        tracing::trace!(ops = batch.len(), elapsed = ?started.elapsed(), "group commit");
        for (request, answer) in batch.drain(..).zip(answers) {
            // A send error means the caller gave up waiting; the write stands regardless.
            match (request, answer) {
                (Request::Write(_, reply), Answer::Write(result)) => {
                    let _ = reply.send(result);
                }
                (Request::Compact(_, reply), Answer::Compact(result)) => {
                    let _ = reply.send(result);
                }
                (Request::Shutdown(reply), _) => shutdown = Some(reply),
                _ => unreachable!("answers are produced in request order"),
            }
        }
        shutdown
    }

    fn apply_batch(
        &mut self,
        batch: &[Request],
        revision: &mut Revision,
        compact_to: &mut Revision,
        answers: &mut Vec<Answer>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let stored = read_meta(&tx, META_REVISION)?;
        if stored != *revision {
            return Err(Error::Backend(format!(
                "sqlite: revision moved from {} to {stored} under the writer; is another process \
                 writing {}?",
                *revision,
                self.shared.path.display()
            )));
        }
        for request in batch {
            match request {
                Request::Write(op, _) => {
                    let before = *revision;
                    // A savepoint per write so that an SQL failure in one write undoes only
                    // that write; failed preconditions write nothing and need no undo.
                    // Cached statements rather than rusqlite's `Savepoint`, which re-parses
                    // its SQL every time.
                    exec_cached(&tx, "SAVEPOINT write").map_err(sql)?;
                    match apply(&tx, op, revision) {
                        Ok(Ok((kv, event))) => {
                            exec_cached(&tx, "RELEASE write").map_err(sql)?;
                            events.push(event);
                            answers.push(Answer::Write(Ok(kv)));
                        }
                        Ok(Err(failed)) => {
                            exec_cached(&tx, "RELEASE write").map_err(sql)?;
                            *revision = before;
                            answers.push(Answer::Write(Err(failed)));
                        }
                        Err(err) => {
                            exec_cached(&tx, "ROLLBACK TO write").map_err(sql)?;
                            exec_cached(&tx, "RELEASE write").map_err(sql)?;
                            *revision = before;
                            tracing::warn!(%err, "sqlite: write failed");
                            answers.push(Answer::Write(Err(sql(err))));
                        }
                    }
                }
                Request::Compact(target, _) => {
                    let target = *target;
                    let answer = if target > *revision {
                        Err(Error::FutureRevision {
                            requested: target,
                            current: *revision,
                        })
                    } else if target <= *compact_to {
                        Ok(())
                    } else {
                        set_meta(&tx, META_COMPACT, target).map_err(sql)?;
                        *compact_to = target;
                        Ok(())
                    };
                    answers.push(Answer::Compact(answer));
                }
                Request::Shutdown(_) => answers.push(Answer::Shutdown),
            }
        }
        if *revision != self.revision {
            set_meta(&tx, META_REVISION, *revision).map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// Physically delete one chunk of compacted history, in its own transaction.
    fn compact_chunk(&mut self) -> Result<()> {
        let from = self.compacted_through;
        let to = (from + COMPACTION_CHUNK).min(self.compact_revision);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Rows superseded by a write at or before the compacted revision are invisible at
        // every readable revision. Tombstones at or before it are too, once the rows they
        // superseded are gone (the first statement, which must run first).
        let superseded = tx
            .execute(
                "DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv \
                 WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
                params![from, to],
            )
            .map_err(sql)?;
        let tombstones = tx
            .execute(
                "DELETE FROM kv WHERE id > ?1 AND id <= ?2 AND deleted = 1",
                params![from, to],
            )
            .map_err(sql)?;
        set_meta(&tx, META_COMPACTED_THROUGH, to).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.compacted_through = to;
        tracing::debug!(
            from,
            to,
            superseded,
            tombstones,
            "sqlite: compacted history chunk"
        );
        Ok(())
    }
}

/// A failed group commit is reported to every request in the batch.
fn batch_failed(err: &Error) -> Error {
    Error::Backend(err.to_string())
}

fn exec_cached(conn: &Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([])?;
    Ok(())
}

fn set_meta(conn: &Connection, name: &str, value: Revision) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(params![name, value])?;
    Ok(())
}

/// The live state of a key: (mod_revision, create_revision, value).
fn current_row(
    conn: &Connection,
    key: &[u8],
) -> rusqlite::Result<Option<(Revision, Revision, Vec<u8>)>> {
    conn.prepare_cached(
        "SELECT c.mod_revision, c.create_revision, k.value FROM current AS c \
         JOIN kv AS k ON k.id = c.mod_revision WHERE c.name = ?1",
    )?
    .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
    .optional()
}

/// The live value of `key` if it exists and (with `expected`) is at that revision; the
/// inner error is the per-operation failure (NotFound, Conflict), the outer one SQLite's.
fn checked_current(
    conn: &Connection,
    key: &str,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<KeyValue>> {
    let Some((mod_revision, create_revision, old)) = current_row(conn, key.as_bytes())? else {
        return Ok(Err(Error::NotFound {
            key: key.to_string(),
        }));
    };
    let prev = KeyValue {
        key: key.to_string(),
        value: Bytes::from(old),
        create_revision,
        mod_revision,
    };
    match expected {
        Some(expected) if expected != mod_revision => Ok(Err(Error::Conflict {
            key: key.to_string(),
            expected,
            current: Box::new(prev),
        })),
        _ => Ok(Ok(prev)),
    }
}

fn insert_log(
    conn: &Connection,
    revision: Revision,
    key: &[u8],
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    value: &[u8],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO kv (id, name, deleted, create_revision, prev_revision, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key,
        deleted,
        create_revision,
        prev_revision,
        value
    ])?;
    Ok(())
}

/// Apply one write. The outer error is an SQL failure, the inner one a failed precondition.
fn apply(
    conn: &Connection,
    op: &WriteOp,
    revision: &mut Revision,
) -> rusqlite::Result<Result<(KeyValue, Event)>> {
    match op {
        WriteOp::Create { key, value } => {
            let exists = conn
                .prepare_cached("SELECT 1 FROM current WHERE name = ?1")?
                .exists([key.as_bytes()])?;
            if exists {
                return Ok(Err(Error::AlreadyExists { key: key.clone() }));
            }
            *revision += 1;
            let rev = *revision;
            insert_log(conn, rev, key.as_bytes(), false, rev, 0, value)?;
            conn.prepare_cached(
                "INSERT INTO current (name, mod_revision, create_revision) VALUES (?1, ?2, ?2)",
            )?
            .execute(params![key.as_bytes(), rev])?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            Ok(Ok((kv.clone(), Event::Put { kv, prev: None })))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let prev = match checked_current(conn, key, *expected)? {
                Ok(prev) => prev,
                Err(e) => return Ok(Err(e)),
            };
            let (create_revision, mod_revision) = (prev.create_revision, prev.mod_revision);
            *revision += 1;
            let rev = *revision;
            insert_log(
                conn,
                rev,
                key.as_bytes(),
                false,
                create_revision,
                mod_revision,
                value,
            )?;
            conn.prepare_cached("UPDATE current SET mod_revision = ?2 WHERE name = ?1")?
                .execute(params![key.as_bytes(), rev])?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision,
                mod_revision: rev,
            };
            Ok(Ok((
                kv.clone(),
                Event::Put {
                    kv,
                    prev: Some(prev),
                },
            )))
        }
        WriteOp::Delete { key, expected } => {
            let prev = match checked_current(conn, key, *expected)? {
                Ok(prev) => prev,
                Err(e) => return Ok(Err(e)),
            };
            let (create_revision, mod_revision) = (prev.create_revision, prev.mod_revision);
            *revision += 1;
            let rev = *revision;
            insert_log(
                conn,
                rev,
                key.as_bytes(),
                true,
                create_revision,
                mod_revision,
                &[],
            )?;
            conn.prepare_cached("DELETE FROM current WHERE name = ?1")?
                .execute([key.as_bytes()])?;
            Ok(Ok((
                prev.clone(),
                Event::Delete {
                    prev,
                    revision: rev,
                },
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reads

/// Read connections, opened on demand up to the permit count and reused. Each read runs on
/// tokio's blocking pool so it never stalls the async runtime or the writer.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

impl ReadPool {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        lock(&self.idle).clear();
    }

    async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if self.is_closed() {
            return Err(closed());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = lock(&pool.idle).pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => open_reader(&pool.path)?,
            };
            let result = read(&mut conn);
            if !pool.is_closed() {
                lock(&pool.idle).push(conn);
            }
            result
        })
        .await
        .map_err(|err| Error::Backend(format!("sqlite read task: {err}")))?
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql)?;
    conn.pragma_update(None, "query_only", true).map_err(sql)?;
    conn.pragma_update(None, "busy_timeout", 5000)
        .map_err(sql)?;
    conn.pragma_update(None, "cache_size", -8_000)
        .map_err(sql)?;
    Ok(conn)
}

/// (current revision, compacted revision) as of the reading transaction's snapshot.
fn snapshot_meta(conn: &Connection) -> Result<(Revision, Revision)> {
    Ok((
        read_meta(conn, META_REVISION)?,
        read_meta(conn, META_COMPACT)?,
    ))
}

fn read_current(conn: &mut Connection, key: String) -> Result<Option<KeyValue>> {
    let row = current_row(conn, key.as_bytes()).map_err(sql)?;
    Ok(row.map(|(mod_revision, create_revision, value)| KeyValue {
        key,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    }))
}

fn count_current(conn: &mut Connection, lower: &[u8], upper: &[u8]) -> Result<usize> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM current WHERE name >= ?1 AND name < ?2")
        .and_then(|mut stmt| stmt.query_row(params![lower, upper], |row| row.get(0)))
        .map_err(sql)?;
    usize::try_from(n).map_err(|_| Error::Backend(format!("sqlite: negative count {n}")))
}

/// Live keys in `[lower, upper)` as of `revision`, which is not the current one: the newest
/// log row of each key at or before it, unless that row is a tombstone.
const LIST_HISTORY: &str = "
SELECT h.name, k.value, k.create_revision, h.id
FROM (SELECT name, max(id) AS id, deleted FROM kv
      WHERE name >= ?1 AND name < ?2 AND id <= ?3 GROUP BY name) AS h
JOIN kv AS k ON k.id = h.id
WHERE h.deleted = 0
ORDER BY h.name
LIMIT ?4";

const COUNT_HISTORY: &str = "
SELECT count(*) FROM (SELECT max(id) AS id, deleted FROM kv
                      WHERE name >= ?1 AND name < ?2 AND id <= ?3 GROUP BY name)
WHERE deleted = 0";

const LIST_CURRENT: &str = "
SELECT c.name, k.value, c.create_revision, c.mod_revision
FROM current AS c JOIN kv AS k ON k.id = c.mod_revision
WHERE c.name >= ?1 AND c.name < ?2
ORDER BY c.name
LIMIT ?4";

fn list_at(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    // One read transaction: the revision check and both queries see the same snapshot.
    let tx = conn.transaction().map_err(sql)?;
    let (current, compacted) = snapshot_meta(&tx)?;
    let revision = if opts.revision <= 0 {
        current
    } else {
        opts.revision
    };
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    if revision < compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    let lower = page_start(prefix, opts.start_after.as_deref());
    let upper = range_end(prefix);
    let limit = if opts.limit == 0 {
        -1
    } else {
        i64::try_from(opts.limit).unwrap_or(i64::MAX)
    };
    let at_head = revision == current;
    let items = {
        let mut stmt = tx
            .prepare_cached(if at_head { LIST_CURRENT } else { LIST_HISTORY })
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![lower, upper, revision, limit], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                ))
            })
            .map_err(sql)?;
        let mut items = Vec::new();
        for row in rows {
            let (name, value, create_revision, mod_revision) = row.map_err(sql)?;
            items.push(KeyValue {
                key: key_string(name)?,
                value: Bytes::from(value),
                create_revision,
                mod_revision,
            });
        }
        items
    };
    let remaining = match items.last() {
        Some(last) if opts.limit != 0 && items.len() == opts.limit => {
            let after_last = crate::key_successor(&last.key);
            let n: i64 = if at_head {
                tx.prepare_cached("SELECT count(*) FROM current WHERE name >= ?1 AND name < ?2")
                    .and_then(|mut stmt| {
                        stmt.query_row(params![after_last, upper], |row| row.get(0))
                    })
            } else {
                tx.prepare_cached(COUNT_HISTORY).and_then(|mut stmt| {
                    stmt.query_row(params![after_last, upper, revision], |row| row.get(0))
                })
            }
            .map_err(sql)?;
            usize::try_from(n).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(ListResult {
        items,
        revision,
        remaining,
    })
}

/// Events of one catch-up query.
struct CatchUpPage {
    events: Vec<Event>,
    /// Every event in `(from, scanned_to]` under the prefix is in `events`.
    scanned_to: Revision,
    /// `scanned_to` was the current revision of the snapshot.
    at_head: bool,
}

const CATCH_UP: &str = "
SELECT k.id, k.name, k.deleted, k.create_revision, k.prev_revision, k.value, p.value
FROM kv AS k LEFT JOIN kv AS p ON p.id = k.prev_revision
WHERE k.id > ?1 AND k.id <= ?2 AND +k.name >= ?3 AND +k.name < ?4
ORDER BY k.id";

fn catch_up(
    conn: &mut Connection,
    lower: &[u8],
    upper: &[u8],
    from: Revision,
) -> Result<CatchUpPage> {
    let tx = conn.transaction().map_err(sql)?;
    let (current, compacted) = snapshot_meta(&tx)?;
    if from < compacted {
        return Err(Error::Compacted {
            requested: from,
            compacted,
        });
    }
    let to = (from + CATCH_UP_SPAN).min(current);
    if to <= from {
        return Ok(CatchUpPage {
            events: Vec::new(),
            scanned_to: from,
            at_head: true,
        });
    }
    // `+name` keeps SQLite on the rowid range, which `CATCH_UP_SPAN` bounds, rather than the
    // name index, which would read the prefix's whole history for every page.
    let mut stmt = tx.prepare_cached(CATCH_UP).map_err(sql)?;
    let rows = stmt
        .query_map(params![from, to, lower, upper], |row| {
            Ok((
                row.get::<_, Revision>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, Revision>(3)?,
                row.get::<_, Revision>(4)?,
                row.get::<_, Vec<u8>>(5)?,
                row.get::<_, Option<Vec<u8>>>(6)?,
            ))
        })
        .map_err(sql)?;
    let mut events = Vec::new();
    for row in rows {
        let (id, name, deleted, create_revision, prev_revision, value, prev_value) =
            row.map_err(sql)?;
        let key = key_string(name)?;
        let prev = if prev_revision > 0 {
            // Compaction keeps every row superseded after the compacted revision, and `from`
            // is not below it, so the previous row of an event we may deliver is present.
            let value = prev_value.ok_or_else(|| {
                Error::Backend(format!(
                    "sqlite: log row {id} supersedes missing row {prev_revision}"
                ))
            })?;
            Some(KeyValue {
                key: key.clone(),
                value: Bytes::from(value),
                create_revision,
                mod_revision: prev_revision,
            })
        } else {
            None
        };
        events.push(if deleted {
            let prev = prev.ok_or_else(|| {
                Error::Backend(format!("sqlite: tombstone {id} supersedes nothing"))
            })?;
            Event::Delete { prev, revision: id }
        } else {
            Event::Put {
                kv: KeyValue {
                    key,
                    value: Bytes::from(value),
                    create_revision,
                    mod_revision: id,
                },
                prev,
            }
        });
    }
    Ok(CatchUpPage {
        events,
        scanned_to: to,
        at_head: to == current,
    })
}

// ---------------------------------------------------------------------------------------
// Watch

/// One watcher: first catch-up from the log, then live events from the broadcast.
///
/// The seam: `rx` was subscribed before the first catch-up query, and the writer broadcasts
/// only after committing, so every event is either in a catch-up snapshot or arrives on
/// `rx` (or both). `scanned` is the revision up to which every event has been buffered or
/// delivered; live events at or below it are doubles and skipped.
///
/// A watcher that reads slower than writes happen lags the bounded broadcast; tokio then
/// reports how many events it lost and the watcher goes back to catch-up from `scanned` on
/// a fresh subscription. Writers never wait for watchers, and nothing is lost: the only way
/// such a watcher fails is if compaction overtakes it (`Error::Compacted`).
struct WatchState {
    reads: Arc<ReadPool>,
    prefix: String,
    lower: Vec<u8>,
    upper: Vec<u8>,
    scanned: Revision,
    catching_up: bool,
    rx: broadcast::Receiver<Arc<Event>>,
    buffer: VecDeque<Event>,
    finished: bool,
}

impl WatchState {
    async fn next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if self.catching_up {
                let (lower, upper, from) = (self.lower.clone(), self.upper.clone(), self.scanned);
                match self
                    .reads
                    .run(move |conn| catch_up(conn, &lower, &upper, from))
                    .await
                {
                    Ok(page) => {
                        self.buffer.extend(page.events);
                        self.scanned = page.scanned_to;
                        self.catching_up = !page.at_head;
                    }
                    Err(_) if self.reads.is_closed() => return None,
                    Err(err) => {
                        self.finished = true;
                        return Some(Err(err));
                    }
                }
            } else {
                match self.rx.recv().await {
                    Ok(event) => {
                        let revision = event.revision();
                        if revision > self.scanned {
                            self.scanned = revision;
                            if event.key().starts_with(&self.prefix) {
                                self.buffer.push_back(Event::clone(&event));
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(
                            prefix = %self.prefix,
                            missed,
                            from = self.scanned,
                            "watcher fell behind the broadcast; catching up from the log"
                        );
                        self.rx = self.rx.resubscribe();
                        self.catching_up = true;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}

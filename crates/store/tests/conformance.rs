//! One conformance suite for every `Store` backend: each `async fn` below takes a fresh store
//! and is instantiated per backend by `conformance!` (modules `sqlite::` and `etcd::`).
//! Backend-specific tests (durability across reopen, kill -9, etcd prefix isolation) follow.
//!
//! The etcd tests start their own etcd (`support/etcd_server.rs`) and fail, not skip, when
//! `/usr/bin/etcd` is missing.

#[cfg(feature = "etcd")]
#[path = "support/etcd_server.rs"]
mod etcd_server;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
#[cfg(feature = "etcd")]
use store::EtcdStore;
use store::{
    Error, Event, KeyValue, ListOptions, Revision, SqliteOptions, SqliteStore, Store, WatchStream,
};

/// A store under test plus whatever must live as long as it (temp dir, etcd process).
struct Backend {
    store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any + Send>,
}

fn sqlite_options() -> SqliteOptions {
    // A tiny watch buffer makes every watch test also exercise the lagging-watcher path.
    SqliteOptions {
        watch_buffer: 16,
        ..SqliteOptions::default()
    }
}

async fn sqlite_backend() -> Result<Backend> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open_with(&dir.path().join("store.db"), sqlite_options())?;
    Ok(Backend {
        store: Arc::new(store),
        _keep: Box::new(dir),
    })
}

#[cfg(feature = "etcd")]
async fn etcd_backend() -> Result<Backend> {
    let server = tokio::task::block_in_place(etcd_server::EtcdServer::start)?;
    let store = EtcdStore::connect(std::slice::from_ref(&server.endpoint), "/conformance").await?;
    Ok(Backend {
        store: Arc::new(store),
        _keep: Box::new(server),
    })
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let backend = super::sqlite_backend().await?;
                    super::$name(backend.store.clone()).await
                }
            )*
        }
        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let backend = super::etcd_backend().await?;
                    super::$name(backend.store.clone()).await
                }
            )*
        }
    };
}

conformance!(
    create_if_absent,
    compare_and_swap_update,
    delete_with_precondition,
    prefix_list_pagination,
    list_at_older_revision,
    watch_from_revision,
    watch_during_concurrent_writes,
    compaction,
    concurrent_cas_increments,
    close_ends_watches,
    auto_compactor,
);

// ---------------------------------------------------------------------------------------
// Helpers

const DEADLINE: Duration = Duration::from_secs(30);

fn val(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .with_context(|| format!("timed out after {DEADLINE:?} waiting for {what}"))
}

/// Read events until one at or past `until` arrives.
async fn events_until(stream: &mut WatchStream, until: Revision) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    if until <= 0 {
        return Ok(events);
    }
    within("watch events", async {
        while let Some(item) = stream.next().await {
            let event = item?;
            let rev = event.revision();
            events.push(event);
            if rev >= until {
                return Ok(events);
            }
        }
        bail!("watch stream ended before revision {until}")
    })
    .await?
}

fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(Event::revision).collect()
}

async fn list_all(store: &dyn Store, prefix: &str) -> Result<Vec<KeyValue>> {
    Ok(store.list(prefix, ListOptions::default()).await?.items)
}

// ---------------------------------------------------------------------------------------
// The suite

async fn create_if_absent(store: Arc<dyn Store>) -> Result<()> {
    let before = store.current_revision().await?;
    let kv = store.create("/c/a", val("one")).await?;
    ensure!(kv.key == "/c/a" && kv.value == val("one"));
    ensure!(
        kv.mod_revision == before + 1,
        "a write advances the revision by exactly one"
    );
    ensure!(kv.create_revision == kv.mod_revision);
    ensure!(store.current_revision().await? == kv.mod_revision);
    ensure!(store.get("/c/a").await? == Some(kv.clone()));

    match store.create("/c/a", val("two")).await {
        Err(Error::AlreadyExists { key }) => ensure!(key == "/c/a"),
        other => bail!("second create: {other:?}"),
    }
    ensure!(
        store.get("/c/a").await? == Some(kv.clone()),
        "failed create must not write"
    );
    ensure!(
        store.current_revision().await? == kv.mod_revision,
        "failed create must not bump"
    );
    ensure!(store.get("/c/missing").await?.is_none());

    // After a delete the key can be created again, as a new life.
    store.delete("/c/a", None).await?;
    let again = store.create("/c/a", val("three")).await?;
    ensure!(again.create_revision == again.mod_revision && again.create_revision > kv.mod_revision);
    Ok(())
}

async fn compare_and_swap_update(store: Arc<dyn Store>) -> Result<()> {
    let v1 = store.create("/u/k", val("1")).await?;
    let v2 = store
        .update("/u/k", val("2"), Some(v1.mod_revision))
        .await?;
    ensure!(v2.mod_revision > v1.mod_revision);
    ensure!(
        v2.create_revision == v1.create_revision,
        "update keeps the create revision"
    );
    ensure!(v2.value == val("2"));

    match store
        .update("/u/k", val("stale"), Some(v1.mod_revision))
        .await
    {
        Err(Error::Conflict {
            key,
            expected,
            current,
        }) => {
            ensure!(key == "/u/k" && expected == v1.mod_revision);
            ensure!(
                *current == v2,
                "conflict carries what is stored: {current:?}"
            );
        }
        other => bail!("stale update: {other:?}"),
    }
    ensure!(store.get("/u/k").await? == Some(v2.clone()));

    let v3 = store.update("/u/k", val("3"), None).await?;
    ensure!(v3.mod_revision > v2.mod_revision && v3.create_revision == v1.create_revision);

    match store.update("/u/missing", val("x"), None).await {
        Err(Error::NotFound { key }) => ensure!(key == "/u/missing"),
        other => bail!("update of missing key: {other:?}"),
    }
    match store
        .update("/u/missing", val("x"), Some(v3.mod_revision))
        .await
    {
        Err(Error::NotFound { .. }) => {}
        other => bail!("guarded update of missing key: {other:?}"),
    }
    ensure!(
        store.current_revision().await? == v3.mod_revision,
        "failed writes must not bump"
    );
    Ok(())
}

async fn delete_with_precondition(store: Arc<dyn Store>) -> Result<()> {
    let v1 = store.create("/d/k", val("1")).await?;
    let v2 = store.update("/d/k", val("2"), None).await?;
    match store.delete("/d/k", Some(v1.mod_revision)).await {
        Err(Error::Conflict { current, .. }) => ensure!(*current == v2),
        other => bail!("stale delete: {other:?}"),
    }
    ensure!(
        store.get("/d/k").await? == Some(v2.clone()),
        "failed delete must not delete"
    );
    let gone = store.delete("/d/k", Some(v2.mod_revision)).await?;
    ensure!(gone == v2, "delete returns the last value: {gone:?}");
    ensure!(store.get("/d/k").await?.is_none());
    ensure!(store.current_revision().await? == v2.mod_revision + 1);
    match store.delete("/d/k", None).await {
        Err(Error::NotFound { key }) => ensure!(key == "/d/k"),
        other => bail!("delete of missing key: {other:?}"),
    }
    match store.delete("/d/k", Some(v2.mod_revision)).await {
        Err(Error::NotFound { .. }) => {}
        other => bail!("guarded delete of missing key: {other:?}"),
    }
    let v3 = store.create("/d/unguarded", val("x")).await?;
    ensure!(store.delete("/d/unguarded", None).await? == v3);
    Ok(())
}

async fn prefix_list_pagination(store: Arc<dyn Store>) -> Result<()> {
    let mut expected = BTreeMap::new();
    for i in 0..25 {
        let key = format!("/registry/pods/ns/p{i:02}");
        let kv = store.create(&key, val(format!("pod {i}"))).await?;
        expected.insert(key, kv);
    }
    // Neighbours that share a string prefix but not the listed one.
    store
        .create("/registry/pods", val("not under /registry/pods/"))
        .await?;
    store.create("/registry/podsx/ns/a", val("x")).await?;
    store.create("/registry/pod/ns/a", val("x")).await?;
    ensure!(store.count("/registry/pods/").await? == 25);
    ensure!(store.count("/registry/").await? == 28);
    ensure!(store.count("").await? == 28);
    ensure!(store.count("/nothing/").await? == 0);

    let prefix = "/registry/pods/";
    let first = store
        .list(
            prefix,
            ListOptions {
                limit: 10,
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        first.items.len() == 10 && first.remaining == 15,
        "first page {first:?}"
    );
    let snapshot = first.revision;
    ensure!(snapshot == store.current_revision().await?);

    // Writes between pages must not show up in later pages read at the same revision.
    store.create("/registry/pods/ns/p10a", val("new")).await?;
    store.delete("/registry/pods/ns/p15", None).await?;
    store
        .update("/registry/pods/ns/p20", val("changed"), None)
        .await?;

    let mut pages = vec![first];
    while pages.last().is_some_and(|p| p.remaining > 0) {
        let last = pages
            .last()
            .and_then(|p| p.items.last())
            .context("empty page")?;
        let next = store
            .list(
                prefix,
                ListOptions {
                    start_after: Some(last.key.clone()),
                    limit: 10,
                    revision: snapshot,
                },
            )
            .await?;
        ensure!(next.revision == snapshot);
        pages.push(next);
        ensure!(pages.len() <= 3, "too many pages");
    }
    let sizes: Vec<_> = pages.iter().map(|p| (p.items.len(), p.remaining)).collect();
    ensure!(sizes == vec![(10, 15), (10, 5), (5, 0)], "pages {sizes:?}");
    let listed: BTreeMap<_, _> = pages
        .into_iter()
        .flat_map(|p| p.items)
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    ensure!(
        listed == expected,
        "pages at one revision are exactly the keys at that revision"
    );

    // Unpaged, current: sees the writes.
    let now = store.list(prefix, ListOptions::default()).await?;
    ensure!(now.items.len() == 25 && now.remaining == 0);
    ensure!(now
        .items
        .iter()
        .any(|kv| kv.key == "/registry/pods/ns/p10a"));
    ensure!(!now.items.iter().any(|kv| kv.key == "/registry/pods/ns/p15"));
    let keys: Vec<_> = now.items.iter().map(|kv| kv.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    ensure!(keys == sorted, "ascending key order");

    // A current-revision page with start_after, and an exact-fit limit.
    let tail = store
        .list(
            prefix,
            ListOptions {
                start_after: Some("/registry/pods/ns/p21".into()),
                limit: 3,
                revision: 0,
            },
        )
        .await?;
    let tail_keys: Vec<_> = tail.items.iter().map(|kv| kv.key.as_str()).collect();
    ensure!(
        tail_keys
            == [
                "/registry/pods/ns/p22",
                "/registry/pods/ns/p23",
                "/registry/pods/ns/p24"
            ]
    );
    ensure!(
        tail.remaining == 0,
        "exact fit has nothing remaining: {}",
        tail.remaining
    );

    // start_after before the prefix starts at the prefix.
    let all = store
        .list(
            prefix,
            ListOptions {
                start_after: Some("/a".into()),
                ..Default::default()
            },
        )
        .await?;
    ensure!(all.items.len() == 25);
    Ok(())
}

async fn list_at_older_revision(store: Arc<dyn Store>) -> Result<()> {
    let a1 = store.create("/o/a", val("a1")).await?;
    let b1 = store.create("/o/b", val("b1")).await?;
    let r1 = store.current_revision().await?;
    let a2 = store.update("/o/a", val("a2"), None).await?;
    store.delete("/o/b", None).await?;
    let c1 = store.create("/o/c", val("c1")).await?;
    let b2 = store.create("/o/b", val("b2")).await?;

    let old = store
        .list(
            "/o/",
            ListOptions {
                revision: r1,
                ..Default::default()
            },
        )
        .await?;
    ensure!(old.revision == r1);
    ensure!(
        old.items == vec![a1.clone(), b1.clone()],
        "at r1: {:?}",
        old.items
    );

    let mid = store
        .list(
            "/o/",
            ListOptions {
                revision: c1.mod_revision,
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        mid.items == vec![a2.clone(), c1.clone()],
        "deleted key absent: {:?}",
        mid.items
    );

    let paged = store
        .list(
            "/o/",
            ListOptions {
                revision: r1,
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        paged.items == vec![a1.clone()] && paged.remaining == 1,
        "{paged:?}"
    );

    ensure!(list_all(&*store, "/o/").await? == vec![a2, b2, c1]);

    let current = store.current_revision().await?;
    match store
        .list(
            "/o/",
            ListOptions {
                revision: current + 5,
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision {
            requested,
            current: c,
        }) => {
            ensure!(requested == current + 5 && c >= current)
        }
        other => bail!("list in the future: {other:?}"),
    }
    Ok(())
}

async fn watch_from_revision(store: Arc<dyn Store>) -> Result<()> {
    let start = store.current_revision().await?;
    let a1 = store.create("/w/a", val("a1")).await?;
    store.create("/other/x", val("outside the prefix")).await?;
    let a2 = store.update("/w/a", val("a2"), None).await?;
    let b1 = store.create("/w/b", val("b1")).await?;
    let deleted = store.delete("/w/a", None).await?;
    let del_rev = store.current_revision().await?;

    let mut stream = store.watch("/w/", start).await?;
    let events = events_until(&mut stream, del_rev).await?;
    let expected = vec![
        Event::Put {
            kv: a1.clone(),
            prev: None,
        },
        Event::Put {
            kv: a2.clone(),
            prev: Some(a1.clone()),
        },
        Event::Put {
            kv: b1.clone(),
            prev: None,
        },
        Event::Delete {
            prev: deleted.clone(),
            revision: del_rev,
        },
    ];
    ensure!(events == expected, "catch-up events: {events:#?}");

    // The same stream goes on with live events.
    let b2 = store
        .update("/w/b", val("b2"), Some(b1.mod_revision))
        .await?;
    let live = events_until(&mut stream, b2.mod_revision).await?;
    ensure!(
        live == vec![Event::Put {
            kv: b2.clone(),
            prev: Some(b1.clone())
        }],
        "{live:?}"
    );

    // Watching from a later revision starts after it.
    let mut later = store.watch("/w/", a2.mod_revision).await?;
    let tail = events_until(&mut later, b2.mod_revision).await?;
    ensure!(
        revisions(&tail) == vec![b1.mod_revision, del_rev, b2.mod_revision],
        "{tail:?}"
    );

    // From the current revision: only what comes next.
    let now = store.current_revision().await?;
    let mut fresh = store.watch("/w/", now).await?;
    let c = store.create("/w/c", val("c")).await?;
    let got = events_until(&mut fresh, c.mod_revision).await?;
    ensure!(got == vec![Event::Put { kv: c, prev: None }], "{got:?}");
    Ok(())
}

async fn watch_during_concurrent_writes(store: Arc<dyn Store>) -> Result<()> {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 60;
    let start = store.current_revision().await?;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_WRITER {
                let key = format!("/cw/{w}/{i}");
                let kv = store.create(&key, val(format!("{w}-{i}"))).await?;
                acked.push(kv.mod_revision);
                if i % 3 == 0 {
                    let kv = store
                        .update(&key, val("again"), Some(kv.mod_revision))
                        .await?;
                    acked.push(kv.mod_revision);
                }
                // Noise just outside the prefix.
                store.create(&format!("/cwx/{w}/{i}"), val("noise")).await?;
            }
            anyhow::Ok(acked)
        }));
    }
    // Watchers started from the beginning and at moments while the writers are busy.
    let mut watchers = vec![(start, store.watch("/cw/", start).await?)];
    for _ in 0..3 {
        let seen = store.current_revision().await?;
        within("writes to progress", async {
            while store.current_revision().await? < seen + 40 {
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        })
        .await??;
        let after = store.current_revision().await?;
        watchers.push((after, store.watch("/cw/", after).await?));
    }
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await??);
    }
    acked.sort_unstable();
    let last = *acked.last().context("no writes")?;
    for (after, mut stream) in watchers {
        let events = events_until(&mut stream, last).await?;
        let expected: Vec<_> = acked.iter().copied().filter(|r| *r > after).collect();
        ensure!(
            revisions(&events) == expected,
            "watch after {after}: got {} events, expected {} (none missed, none doubled, in order)",
            events.len(),
            expected.len()
        );
        ensure!(events.iter().all(|e| e.key().starts_with("/cw/")));
    }
    Ok(())
}

async fn compaction(store: Arc<dyn Store>) -> Result<()> {
    let k1 = store.create("/cp/k", val("1")).await?;
    let other = store.create("/cp/gone", val("x")).await?;
    let old = store.current_revision().await?;
    let k2 = store.update("/cp/k", val("2"), None).await?;
    store.delete("/cp/gone", None).await?;
    let k3 = store.update("/cp/k", val("3"), None).await?;
    let target = k3.mod_revision - 1;
    store.compact(target).await?;

    match store
        .list(
            "/cp/",
            ListOptions {
                revision: old,
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => {
            ensure!(
                requested == old && compacted >= target,
                "{requested} {compacted}"
            )
        }
        other => bail!("list at compacted revision: {other:?}"),
    }
    // The compacted revision itself stays readable.
    let at = store
        .list(
            "/cp/",
            ListOptions {
                revision: target,
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        at.items == vec![k2.clone()],
        "at the compacted revision: {:?}",
        at.items
    );

    match store.watch("/cp/", old).await {
        Err(Error::Compacted { compacted, .. }) => ensure!(compacted >= target),
        Err(other) => bail!("watch from compacted revision: {other:?}"),
        Ok(mut stream) => match within("compacted watch", stream.next()).await? {
            Some(Err(Error::Compacted { .. })) => {}
            other => bail!("watch from compacted revision yielded {other:?}"),
        },
    }
    let mut stream = store.watch("/cp/", target).await?;
    let events = events_until(&mut stream, k3.mod_revision).await?;
    ensure!(
        events
            == vec![Event::Put {
                kv: k3.clone(),
                prev: Some(k2.clone())
            }],
        "{events:?}"
    );

    ensure!(store.get("/cp/k").await? == Some(k3.clone()));
    ensure!(list_all(&*store, "/cp/").await? == vec![k3.clone()]);

    // Idempotent below the compacted revision; the future is refused.
    store.compact(target - 1).await?;
    store.compact(target).await?;
    let current = store.current_revision().await?;
    match store.compact(current + 10).await {
        Err(Error::FutureRevision { .. }) => {}
        other => bail!("compact in the future: {other:?}"),
    }
    // Writes continue normally afterwards.
    let k4 = store
        .update("/cp/k", val("4"), Some(k3.mod_revision))
        .await?;
    ensure!(k4.create_revision == k1.create_revision);
    ensure!(store.create("/cp/gone", val("y")).await?.create_revision > other.create_revision);
    Ok(())
}

async fn concurrent_cas_increments(store: Arc<dyn Store>) -> Result<()> {
    const TASKS: usize = 16;
    const INCREMENTS: usize = 20;
    store.create("/counter", val("0")).await?;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS {
                let mut current = store.get("/counter").await?.context("counter vanished")?;
                loop {
                    let n: u64 = std::str::from_utf8(&current.value)?.parse()?;
                    match store
                        .update(
                            "/counter",
                            val((n + 1).to_string()),
                            Some(current.mod_revision),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { current: now, .. }) => {
                            conflicts += 1;
                            current = *now;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            anyhow::Ok(conflicts)
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += within("increment task", task).await???;
    }
    let counter = store.get("/counter").await?.context("counter vanished")?;
    ensure!(
        counter.value == val((TASKS * INCREMENTS).to_string()),
        "final value {:?} after {conflicts} conflicts",
        counter.value
    );
    Ok(())
}

async fn close_ends_watches(store: Arc<dyn Store>) -> Result<()> {
    let kv = store.create("/close/a", val("a")).await?;
    let mut stream = store.watch("/close/", kv.mod_revision - 1).await?;
    let first = within("first event", stream.next()).await?;
    ensure!(matches!(first, Some(Ok(Event::Put { .. }))), "{first:?}");
    store.close().await?;
    ensure!(
        within("end of stream", stream.next()).await?.is_none(),
        "stream ends on close"
    );
    ensure!(
        matches!(
            store.create("/close/b", val("b")).await,
            Err(Error::Backend(_))
        ),
        "writes after close fail"
    );
    store.close().await?;
    Ok(())
}

async fn auto_compactor(store: Arc<dyn Store>) -> Result<()> {
    let first = store.create("/ac/k", val("0")).await?;
    for i in 1..5 {
        store.update("/ac/k", val(i.to_string()), None).await?;
    }
    let handle = store::spawn_compactor(&store, Duration::from_millis(50), 2);
    // It compacts to what it saw one tick earlier, minus the kept revisions; poll until
    // the first write's revision is gone.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let opts = ListOptions {
            revision: first.mod_revision,
            ..Default::default()
        };
        match store.list("/ac/", opts).await {
            Err(Error::Compacted { .. }) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => bail!("not compacted by the deadline: {other:?}"),
        }
    }
    let current = store.current_revision().await?;
    let keep = ListOptions {
        revision: current - 2,
        ..Default::default()
    };
    ensure!(
        store.list("/ac/", keep).await.is_ok(),
        "the last revisions are kept"
    );
    handle.abort();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SQLite only

mod sqlite_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_across_reopen() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path)?;
        let a = store.create("/r/a", val("a")).await?;
        let b = store.create("/r/b", val("b")).await?;
        let a2 = store.update("/r/a", val("a2"), None).await?;
        store.delete("/r/b", None).await?;
        store.compact(b.mod_revision).await?;
        let rev = store.current_revision().await?;
        store.close().await?;
        drop(store);

        let store = SqliteStore::open(&path)?;
        ensure!(
            store.current_revision().await? == rev,
            "revision survives reopen"
        );
        ensure!(
            store.compact_revision() == b.mod_revision,
            "compaction survives reopen"
        );
        ensure!(list_all(&store, "/r/").await? == vec![a2.clone()]);
        let at_b = store.list(
            "/r/",
            ListOptions {
                revision: b.mod_revision,
                ..Default::default()
            },
        );
        ensure!(
            at_b.await?.items.len() == 2,
            "history after the compacted revision survives"
        );
        let c = store.create("/r/c", val("c")).await?;
        ensure!(c.mod_revision == rev + 1, "the revision sequence continues");
        let mut stream = store.watch("/r/", b.mod_revision).await?;
        let events = events_until(&mut stream, c.mod_revision).await?;
        ensure!(revisions(&events) == vec![a2.mod_revision, a2.mod_revision + 1, c.mod_revision]);
        ensure!(a.create_revision == a2.create_revision);
        Ok(())
    }

    /// Compaction physically deletes superseded rows and tombstones (in chunks, in the
    /// background of the writer) and leaves the live state and later history intact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_deletes_history() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path)?;
        for k in 0..10 {
            store.create(&format!("/h/{k}"), val("0")).await?;
        }
        // Over 3000 revisions, so compaction takes more than one chunk.
        for i in 1..=300 {
            for k in 0..10 {
                store
                    .update(&format!("/h/{k}"), val(i.to_string()), None)
                    .await?;
            }
        }
        store.delete("/h/0", None).await?;
        store.delete("/h/1", None).await?;
        let target = store.current_revision().await?;
        let after = store.update("/h/2", val("after"), None).await?;
        store.compact(target).await?;

        let rows = rusqlite::Connection::open(&path)?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let n: i64 = rows.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?;
            // The 8 live keys' latest rows at the target, plus the write after it.
            if n == 9 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{n} log rows left after compaction"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let live = list_all(&store, "/h/").await?;
        ensure!(live.len() == 8 && live.iter().all(|kv| kv.value == val("300") || kv == &after));
        let at = store
            .list(
                "/h/",
                ListOptions {
                    revision: target,
                    ..Default::default()
                },
            )
            .await?;
        ensure!(at.items.len() == 8 && at.items.iter().all(|kv| kv.value == val("300")));
        let mut stream = store.watch("/h/", target).await?;
        let events = events_until(&mut stream, after.mod_revision).await?;
        ensure!(events.len() == 1 && events[0].revision() == after.mod_revision);
        match &events[0] {
            Event::Put {
                prev: Some(prev), ..
            } => ensure!(prev.value == val("300")),
            other => bail!("{other:?}"),
        }
        Ok(())
    }

    /// A watcher that does not read while much more than its buffer is written neither
    /// blocks the writers nor loses events: it catches up from the log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_watcher_catches_up() -> Result<()> {
        let backend = sqlite_backend().await?;
        let store = backend.store;
        let start = store.current_revision().await?;
        let mut stream = store.watch("/slow/", start).await?;
        let mut acked = Vec::new();
        for i in 0..500 {
            acked.push(
                store
                    .create(&format!("/slow/{i:04}"), val("v"))
                    .await?
                    .mod_revision,
            );
        }
        let events = events_until(&mut stream, *acked.last().context("no writes")?).await?;
        ensure!(revisions(&events) == acked);
        Ok(())
    }

    /// ... unless compaction overtakes it, which ends its stream with `Compacted`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_watcher_overtaken_by_compaction() -> Result<()> {
        let backend = sqlite_backend().await?;
        let store = backend.store;
        let first = store.create("/slow/k", val("0")).await?;
        let mut stream = store.watch("/slow/", first.mod_revision).await?;
        for i in 1..200 {
            store.update("/slow/k", val(i.to_string()), None).await?;
        }
        store.compact(store.current_revision().await?).await?;
        match within("compacted error", stream.next()).await? {
            Some(Err(Error::Compacted { requested, .. })) => {
                ensure!(requested == first.mod_revision)
            }
            other => bail!("expected Compacted, got {other:?}"),
        }
        ensure!(
            within("end", stream.next()).await?.is_none(),
            "Compacted is terminal"
        );
        Ok(())
    }

    /// Precondition failures inside one group commit fail only their own write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_isolates_failures() -> Result<()> {
        let backend = sqlite_backend().await?;
        let store = backend.store;
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            // Half of them race for the same key; exactly one of those may win.
            let key = if i % 2 == 0 {
                "/g/shared".to_owned()
            } else {
                format!("/g/{i}")
            };
            tasks.push(tokio::spawn(
                async move { store.create(&key, val("v")).await },
            ));
        }
        let mut won = 0;
        let mut revs = Vec::new();
        for task in tasks {
            match task.await? {
                Ok(kv) => {
                    won += 1;
                    revs.push(kv.mod_revision);
                }
                Err(Error::AlreadyExists { key }) => ensure!(key == "/g/shared"),
                Err(other) => bail!("unexpected {other:?}"),
            }
        }
        ensure!(
            won == 33,
            "32 distinct keys and one winner of the shared one, got {won}"
        );
        revs.sort_unstable();
        revs.dedup();
        ensure!(revs.len() == 33, "each write has its own revision");
        ensure!(store.current_revision().await? == *revs.last().context("none")?);
        ensure!(
            revs.windows(2).all(|w| w[1] == w[0] + 1),
            "no revision gaps from failed writes"
        );
        Ok(())
    }

    /// Environment variable that turns `crash_child_writer` into the crash test's child.
    const CRASH_DB: &str = "STORE_CRASH_CHILD_DB";

    /// Not a test on its own: the body of the child process `kill9_loses_no_acknowledged_write`
    /// starts (this test binary re-invoked with `CRASH_DB` set). Without the variable it
    /// returns at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_child_writer() -> Result<()> {
        let Ok(path) = std::env::var(CRASH_DB) else {
            return Ok(());
        };
        let store = Arc::new(SqliteStore::open(std::path::Path::new(&path))?);
        let value = Bytes::from(vec![b'x'; 2048]);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (store, value) = (store.clone(), value.clone());
            tasks.push(tokio::spawn(async move {
                // Bounded, so a child whose parent died stops by itself.
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("/crash/{t}/{i}");
                    let kv = store.create(&key, value.clone()).await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {}", kv.mod_revision)?;
                    out.flush()?;
                    i += 1;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }

    #[test]
    fn kill9_loses_no_acknowledged_write() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crash.db");
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "sqlite_only::crash_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DB, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut acked: Vec<(String, Revision)> = Vec::new();
        let parse = |line: &str| -> Option<(String, Revision)> {
            let mut parts = line.strip_prefix("ACK ")?.split(' ');
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        };
        let deadline = Instant::now() + DEADLINE;
        while acked.len() < 3000 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => acked.extend(parse(&line)),
                Err(_) => {
                    let _ = child.kill();
                    bail!(
                        "child acknowledged only {} writes before the deadline",
                        acked.len()
                    );
                }
            }
        }
        // SIGKILL, mid-stream: the child is writing as fast as it can.
        child.kill()?;
        child.wait()?;
        // Acknowledgements already in the pipe count too.
        let _ = reader.join();
        acked.extend(rx.try_iter().filter_map(|line| parse(&line)));

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async {
            let store = SqliteStore::open(&path)?;
            let max = acked.iter().map(|(_, rev)| *rev).max().context("no acks")?;
            ensure!(store.current_revision().await? >= max);
            for (key, rev) in &acked {
                let kv = store.get(key).await?;
                ensure!(
                    kv.as_ref().map(|kv| kv.mod_revision) == Some(*rev),
                    "acknowledged {key}@{rev} lost after kill -9: {kv:?}"
                );
            }
            let next = store.create("/crash/after", val("x")).await?;
            ensure!(next.mod_revision > max);
            anyhow::Ok(())
        })?;
        eprintln!(
            "kill -9 after {} acknowledged writes: none lost",
            acked.len()
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// etcd only

#[cfg(feature = "etcd")]
mod etcd_only {
    use super::*;

    /// Two stores with different prefixes on one etcd see only their own keys.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefixes_isolate_clusters() -> Result<()> {
        let server = tokio::task::block_in_place(etcd_server::EtcdServer::start)?;
        let endpoints = [server.endpoint.clone()];
        let a = EtcdStore::connect(&endpoints, "/cluster-a").await?;
        let b = EtcdStore::connect(&endpoints, "/cluster-b").await?;
        let ka = a.create("/registry/x", val("a")).await?;
        ensure!(b.get("/registry/x").await?.is_none());
        b.create("/registry/x", val("b")).await?;
        b.create("/registry/y", val("b")).await?;
        ensure!(
            list_all(&a, "").await? == vec![ka.clone()],
            "prefix stripped, b not visible"
        );
        ensure!(a.count("").await? == 1 && b.count("/registry/").await? == 2);
        let mut watch = a.watch("", ka.mod_revision - 1).await?;
        let ka2 = a.update("/registry/x", val("a2"), None).await?;
        let events = events_until(&mut watch, ka2.mod_revision).await?;
        ensure!(
            revisions(&events) == vec![ka.mod_revision, ka2.mod_revision],
            "{events:?}"
        );
        ensure!(events.iter().all(|e| e.key() == "/registry/x"));
        Ok(())
    }

    #[tokio::test]
    async fn connect_to_nothing_fails() -> Result<()> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let endpoints = [format!("http://127.0.0.1:{port}")];
        let result = within("connect", EtcdStore::connect(&endpoints, "/x")).await?;
        ensure!(matches!(result, Err(Error::Backend(_))), "{result:?}");
        Ok(())
    }
}

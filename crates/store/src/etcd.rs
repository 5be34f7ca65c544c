//! etcd v3 backend (feature `etcd`): the [`Store`] operations mapped onto etcd's KV, Txn,
//! Watch and Compact RPCs through the `etcd-client` crate.
//!
//! Owns: the key namespace (every key is stored as `prefix ++ key`, so several clusters can
//! share one etcd, and the prefix is stripped from everything returned), the mapping of
//! preconditions onto transactions, and the mapping of etcd's errors onto [`Error`].
//!
//! Mapping:
//! - create: `txn(create_revision(k) == 0 → put)`; a failed compare is `AlreadyExists`.
//! - update/delete: `txn(create_revision(k) > 0 [∧ mod_revision(k) == expected] → put/delete
//!   with prev_kv, else get)`; the else-branch get tells `NotFound` from `Conflict` and
//!   carries the current value, in the same round trip.
//! - list: one range request with limit, revision and the (unlimited) count etcd returns
//!   anyway, so `remaining = count - returned`.
//! - watch: `prev_kv` and `start_revision = after + 1`; a compacted response becomes
//!   `Error::Compacted`.
//!
//! etcd compaction is cluster-wide: compacting through one `EtcdStore` compacts every
//! prefix in that etcd.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::{
    page_start, Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    WatchStream,
};

const ERR_COMPACTED: &str = "required revision has been compacted";
const ERR_FUTURE: &str = "required revision is a future revision";

/// A [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: Vec<u8>,
    /// Flipped by `close` to end open watch streams, which have their own gRPC streams and
    /// would otherwise outlive the store.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish()
    }
}

fn backend(err: etcd_client::Error) -> Error {
    Error::Backend(format!("etcd: {err}"))
}

fn status_message(err: &etcd_client::Error) -> Option<&str> {
    match err {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

fn is_compacted(err: &etcd_client::Error) -> bool {
    status_message(err).is_some_and(|m| m.contains(ERR_COMPACTED))
}

fn is_future(err: &etcd_client::Error) -> bool {
    status_message(err).is_some_and(|m| m.contains(ERR_FUTURE))
}

/// etcd's exclusive end of the range of keys starting with `prefix` (its `GetPrefix`).
fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    for i in (0..prefix.len()).rev() {
        if prefix[i] < 0xFF {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            return end;
        }
    }
    // Empty or all-0xFF prefix: "\0" means "to the end of the key space" to etcd.
    vec![0]
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Backend("etcd: response without header".into()))
}

/// Largest response accepted from etcd. tonic's default of 4 MiB fails lists of a few
/// thousand pods; kube-apiserver lifts the limit entirely, and so do we.
const MAX_MESSAGE: usize = usize::MAX;

impl EtcdStore {
    /// A KV client without tonic's 4 MiB response limit.
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// Connect to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`) and store every key
    /// under `prefix`. Fails unless one request succeeds, so a wrong endpoint shows up here
    /// rather than at the first write.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(backend)?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let store = EtcdStore {
            client,
            prefix: prefix.as_bytes().to_vec(),
            shutdown,
        };
        let revision = store.current_revision().await?;
        tracing::info!(?endpoints, prefix, revision, "connected to etcd");
        Ok(store)
    }

    /// The underlying client, for operations the [`Store`] trait does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    /// `[start, end)` of the keys under `prefix`, in etcd's key space. etcd rejects an empty
    /// key, and "\0" is the smallest non-empty one.
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix.as_bytes());
        let end = prefix_range_end(&start);
        (if start.is_empty() { vec![0] } else { start }, end)
    }

    fn strip(&self, key: &[u8]) -> Result<String> {
        let rest = key.strip_prefix(self.prefix.as_slice()).ok_or_else(|| {
            Error::Backend(format!(
                "etcd: key {:?} is outside prefix {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&self.prefix)
            ))
        })?;
        String::from_utf8(rest.to_vec())
            .map_err(|_| Error::Backend("etcd: stored key is not UTF-8".into()))
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// etcd's compacted-revision error does not say which revision is the oldest left; a
    /// watch from revision 1 is answered with it.
    async fn compacted_revision(&self, requested: Revision) -> Revision {
        let fallback = requested + 1;
        let probe = async {
            let mut watch = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .watch(
                    self.full_key(b"\0compaction-probe"),
                    Some(WatchOptions::new().with_start_revision(1)),
                )
                .await
                .ok()?;
            while let Ok(Some(resp)) = watch.message().await {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
                if resp.canceled() {
                    break;
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Some(rev)) => rev,
            _ => fallback,
        }
    }

    async fn read_error(&self, err: etcd_client::Error, requested: Revision) -> Error {
        if is_compacted(&err) {
            Error::Compacted {
                requested,
                compacted: self.compacted_revision(requested).await,
            }
        } else if is_future(&err) {
            let current = self.current_revision().await.unwrap_or(0);
            Error::FutureRevision { requested, current }
        } else {
            backend(err)
        }
    }

    fn check_open(&self) -> Result<()> {
        if *self.shutdown.borrow() {
            return Err(Error::Backend("store is closed".into()));
        }
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.check_open()?;
        self.kv().txn(txn).await.map_err(backend)
    }

    /// The key as the else-branch `get` of a failed transaction saw it.
    fn else_get(&self, resp: &TxnResponse) -> Result<Option<KeyValue>> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.convert(kv)).transpose();
            }
        }
        Ok(None)
    }

    fn precondition_failed(
        &self,
        resp: &TxnResponse,
        key: &str,
        expected: Option<Revision>,
    ) -> Error {
        match (self.else_get(resp), expected) {
            (Err(err), _) => err,
            (Ok(None), _) | (Ok(Some(_)), None) => Error::NotFound {
                key: key.to_owned(),
            },
            (Ok(Some(current)), Some(expected)) => Error::Conflict {
                key: key.to_owned(),
                expected,
                current: Box::new(current),
            },
        }
    }

    fn guards(&self, full: &[u8], expected: Option<Revision>) -> Vec<Compare> {
        let mut guards = vec![Compare::create_revision(
            full.to_vec(),
            CompareOp::Greater,
            0,
        )];
        if let Some(expected) = expected {
            guards.push(Compare::mod_revision(
                full.to_vec(),
                CompareOp::Equal,
                expected,
            ));
        }
        guards
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.check_open()?;
        let resp = self
            .kv()
            .get(self.full_key(key.as_bytes()), None)
            .await
            .map_err(backend)?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.check_open()?;
        let (prefix_start, end) = self.range(prefix);
        let start = match opts.start_after.as_deref() {
            Some(_) => self.full_key(&page_start(prefix, opts.start_after.as_deref())),
            None => prefix_start,
        };
        let limit = i64::try_from(opts.limit).unwrap_or(i64::MAX);
        let revision = opts.revision.max(0);
        let get = GetOptions::new()
            .with_range(end)
            .with_limit(limit)
            .with_revision(revision);
        let resp = match self.kv().get(start, Some(get)).await {
            Ok(resp) => resp,
            Err(err) => return Err(self.read_error(err, revision).await),
        };
        let read_at = if revision > 0 {
            revision
        } else {
            header_revision(resp.header())?
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        let total = usize::try_from(resp.count()).unwrap_or(0);
        Ok(ListResult {
            remaining: total.saturating_sub(items.len()),
            items,
            revision: read_at,
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        self.check_open()?;
        let (start, end) = self.range(prefix);
        let resp = self
            .kv()
            .get(
                start,
                Some(GetOptions::new().with_range(end).with_count_only()),
            )
            .await
            .map_err(backend)?;
        Ok(usize::try_from(resp.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let full = self.full_key(key.as_bytes());
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(resp.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let full = self.full_key(key.as_bytes());
        let txn = Txn::new()
            .when(self.guards(&full, expected))
            .and_then([TxnOp::put(
                full.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(self.precondition_failed(&resp, key, expected));
        }
        let revision = header_revision(resp.header())?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|prev| prev.create_revision()),
                _ => None,
            })
            .ok_or_else(|| Error::Backend("etcd: guarded put returned no previous value".into()))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = self.full_key(key.as_bytes());
        let txn = Txn::new()
            .when(self.guards(&full, expected))
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(self.precondition_failed(&resp, key, expected));
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(del) = op {
                if let Some(prev) = del.prev_kvs().first() {
                    return self.convert(prev);
                }
            }
        }
        Err(Error::Backend(
            "etcd: guarded delete returned no previous value".into(),
        ))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.check_open()?;
        let (start, end) = self.range(prefix);
        // etcd reports a compacted start revision only on the stream, after the watch was
        // created; a range read at `after` fails the same way at once, so callers get the
        // error from `watch` itself as with the SQLite backend.
        if after > 0 {
            let probe = GetOptions::new().with_revision(after).with_count_only();
            if let Err(err) = self.kv().get(start.clone(), Some(probe)).await {
                if is_compacted(&err) {
                    return Err(self.read_error(err, after).await);
                }
                // A future `after` is fine: the watch waits for it, as etcd's does.
                if !is_future(&err) {
                    return Err(backend(err));
                }
            }
        }
        let options = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(after + 1);
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(start, Some(options))
            .await
            .map_err(backend)?;
        let state = EtcdWatch {
            store: self.clone(),
            stream,
            shutdown: self.shutdown.subscribe(),
            delivered: after,
            buffer: VecDeque::new(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move {
                let item = state.next_event().await?;
                Some((item, state))
            },
        )))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.check_open()?;
        let key = if self.prefix.is_empty() {
            vec![0]
        } else {
            self.prefix.clone()
        };
        let resp = self
            .kv()
            .get(key, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend)?;
        header_revision(resp.header())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.check_open()?;
        match self.kv().compact(revision, None).await {
            Ok(_) => Ok(()),
            Err(err) if is_compacted(&err) => Ok(()),
            Err(err) if is_future(&err) => {
                let current = self.current_revision().await.unwrap_or(0);
                Err(Error::FutureRevision {
                    requested: revision,
                    current,
                })
            }
            Err(err) => Err(backend(err)),
        }
    }

    async fn close(&self) -> Result<()> {
        self.shutdown.send_replace(true);
        Ok(())
    }
}

struct EtcdWatch {
    store: EtcdStore,
    stream: etcd_client::WatchStream,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Revision of the last event handed out; etcd never repeats one on a single stream,
    /// but the check is cheap and makes "none doubled" independent of that.
    delivered: Revision,
    buffer: VecDeque<Event>,
    finished: bool,
}

impl EtcdWatch {
    async fn next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.delivered = event.revision();
                return Some(Ok(event));
            }
            if self.finished || *self.shutdown.borrow() {
                return None;
            }
            let message = tokio::select! {
                message = self.stream.message() => message,
                _ = self.shutdown.changed() => return None,
            };
            match message {
                Ok(Some(resp)) => {
                    if resp.compact_revision() > 0 {
                        self.finished = true;
                        return Some(Err(Error::Compacted {
                            requested: self.delivered,
                            compacted: resp.compact_revision(),
                        }));
                    }
                    if resp.canceled() {
                        self.finished = true;
                        return Some(Err(Error::Backend(format!(
                            "etcd canceled the watch: {}",
                            resp.cancel_reason()
                        ))));
                    }
                    for event in resp.events() {
                        match self.convert(event) {
                            Ok(event) if event.revision() > self.delivered => {
                                self.buffer.push_back(event)
                            }
                            Ok(_) => {}
                            Err(err) => {
                                self.finished = true;
                                return Some(Err(err));
                            }
                        }
                    }
                }
                Ok(None) => {
                    self.finished = true;
                    return Some(Err(Error::Backend("etcd closed the watch stream".into())));
                }
                Err(err) => {
                    self.finished = true;
                    return Some(Err(backend(err)));
                }
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<Event> {
        let kv = event
            .kv()
            .ok_or_else(|| Error::Backend("etcd: watch event without a key".into()))?;
        let kv = self.store.convert(kv)?;
        let prev = event
            .prev_kv()
            .map(|prev| self.store.convert(prev))
            .transpose()?;
        Ok(match event.event_type() {
            EventType::Put => Event::Put { kv, prev },
            EventType::Delete => {
                let revision = kv.mod_revision;
                // etcd omits prev_kv when the previous revision is already compacted; the
                // key is all that is left to report.
                let prev = prev.unwrap_or(KeyValue {
                    key: kv.key,
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: 0,
                });
                Event::Delete { prev, revision }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_range_end;

    #[test]
    fn range_end_of_prefix() {
        assert_eq!(prefix_range_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b""), vec![0]);
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }
}

//! WATCH: newline-delimited `{"type": ..., "object": ...}` events, as client-go 1.37 expects,
//! or length-prefixed protobuf `WatchEvent` frames when the client prefers protobuf.
//!
//! ```text
//!  request ──▶ start revision ──▶ [initial ADDED events] ──▶ [BOOKMARK initial-events-end]
//!                                          │
//!                                          ▼
//!                 store.watch(prefix, rev) ──▶ filter ──▶ ADDED / MODIFIED / DELETED ──▶ client
//!                                          │                    (periodic BOOKMARKs)
//!                                  compacted ──▶ ERROR 410 Expired, stream ends
//! ```
//!
//! Events are filtered per watcher: an object that stops matching the selectors is sent as
//! DELETED, one that starts matching as ADDED, as upstream's cacher does.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use store::{Event, Revision};
use tokio::sync::mpsc;

use super::{partial_metadata, Call, Output};
use crate::body::{streaming, Body};
use crate::errors::ApiError;
use crate::filter::Filter;
use crate::registry::Resource;
use crate::request::Query;
use crate::scan::Pages;
use crate::{object, table};

/// How often a watcher that allows bookmarks gets one when nothing else happens.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

enum Start {
    /// List the current state as ADDED events first; `end_bookmark` marks their end.
    InitialEvents { end_bookmark: bool },
    /// Events after this revision only.
    After(Revision),
}

pub async fn watch(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let query = &call.query;
    let filter = Filter::from_query(query, resource)?;
    let name = call.info.name.clone();
    let bookmarks = query.flag("allowWatchBookmarks");
    let rv = query.non_empty("resourceVersion");
    let rv_match = query.non_empty("resourceVersionMatch");
    let send_initial = query.non_empty("sendInitialEvents");

    let start = match send_initial {
        Some("true") => {
            if rv_match != Some("NotOlderThan") {
                return Err(ApiError::Invalid {
                    kind: "ListOptions".into(),
                    group: "meta.k8s.io".into(),
                    name: String::new(),
                    message: "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
                    causes: Vec::new(),
                });
            }
            if !bookmarks {
                return Err(ApiError::BadRequest(
                    "sendInitialEvents is forbidden for watch unless allowWatchBookmarks is true"
                        .into(),
                ));
            }
            Start::InitialEvents { end_bookmark: true }
        }
        Some("false") => match rv {
            None | Some("0") => Start::After(call.server.store.current_revision().await?),
            Some(v) => Start::After(parse_rv(v)?),
        },
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid value for sendInitialEvents: {other:?}"
            )))
        }
        None => {
            if rv_match.is_some() {
                return Err(ApiError::BadRequest(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
                ));
            }
            match rv {
                None | Some("0") => Start::InitialEvents {
                    end_bookmark: false,
                },
                Some(v) => Start::After(parse_rv(v)?),
            }
        }
    };
    if let (Start::InitialEvents { .. }, Some(v)) = (&start, rv) {
        // NotOlderThan: the state we list must be at least as new as the client's.
        let wanted = parse_rv(v)?;
        let current = call.server.store.current_revision().await?;
        if wanted > current {
            return Err(ApiError::Timeout(format!(
                "Too large resource version: {wanted}, current: {current}"
            )));
        }
    }

    let timeout = match query.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        // Upstream picks a random timeout in [min-request-timeout, 2×) = [30 min, 60 min).
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };

    let prefix = match &name {
        Some(n) => resource.key(call.namespace(), n),
        None => resource.scope_prefix(call.namespace()),
    };
    let output = call.accept();
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let watcher = Watcher {
        resource,
        filter,
        name,
        output,
        query: call.query.clone(),
        headers_sent: false,
        tx,
    };
    let server = call.server.clone();
    tokio::spawn(async move {
        let oldest = server.oldest_watchable();
        let run = watcher.run(&server.store, prefix, start, bookmarks, oldest);
        // The stream ends at the timeout or when the client goes away (send fails).
        let _ = tokio::time::timeout(timeout, run).await;
    });
    let body = streaming(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let content_type = if output == Output::Protobuf {
        protobuf::WATCH_MEDIA_TYPE
    } else {
        "application/json"
    };
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    Ok(resp)
}

fn parse_rv(v: &str) -> Result<Revision, ApiError> {
    v.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {v:?}")))
}

struct Watcher {
    resource: &'static Resource,
    filter: Filter,
    name: Option<String>,
    output: Output,
    query: Query,
    /// Table watches carry column definitions in the first event only, as upstream's do.
    headers_sent: bool,
    tx: mpsc::Sender<Bytes>,
}

/// The client went away.
struct Gone;

impl Watcher {
    async fn run(
        mut self,
        store: &std::sync::Arc<dyn store::Store>,
        prefix: String,
        start: Start,
        bookmarks: bool,
        oldest: Revision,
    ) -> Result<(), Gone> {
        let mut last = match start {
            Start::After(rev) if rev < oldest => {
                return self
                    .error(ApiError::Expired(format!(
                        "too old resource version: {rev} ({oldest})"
                    )))
                    .await
            }
            Start::After(rev) => rev,
            Start::InitialEvents { end_bookmark } => {
                let rev = match self.initial_events(store, &prefix).await {
                    Ok(rev) => rev,
                    Err(err) => return self.error(err).await,
                };
                if end_bookmark {
                    self.bookmark(rev, true).await?;
                }
                rev
            }
        };
        let mut events = match store.watch(&prefix, last).await {
            Ok(s) => s,
            Err(err) => return self.error(err.into()).await,
        };
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        last = ev.revision();
                        self.event(ev).await?;
                    }
                    Some(Err(err)) => return self.error(err.into()).await,
                    None => return Ok(()),
                },
                _ = ticker.tick(), if bookmarks => self.bookmark(last, false).await?,
                _ = self.tx.closed() => return Err(Gone),
            }
        }
    }

    async fn initial_events(
        &mut self,
        store: &std::sync::Arc<dyn store::Store>,
        prefix: &str,
    ) -> Result<Revision, ApiError> {
        let mut pages = Pages::new(store, prefix);
        while let Some(items) = pages.next().await? {
            for kv in &items {
                if !self.is_mine(&kv.key) {
                    continue;
                }
                let obj = object::parse(kv).map_err(|e| ApiError::Internal(e.to_string()))?;
                if self.filter.matches(&obj) {
                    self.send("ADDED", obj)
                        .await
                        .map_err(|_| ApiError::Internal("client gone".into()))?;
                }
            }
        }
        Ok(pages.revision())
    }

    /// A single-object watch uses the object's key as prefix; skip keys that merely share it.
    fn is_mine(&self, key: &str) -> bool {
        match &self.name {
            Some(n) => key.rsplit('/').next() == Some(n.as_str()),
            None => true,
        }
    }

    async fn event(&mut self, ev: Event) -> Result<(), Gone> {
        if !self.is_mine(ev.key()) {
            return Ok(());
        }
        match ev {
            Event::Put { kv, prev } => {
                let Ok(new) = object::parse(&kv) else {
                    return Ok(());
                };
                let new_matches = self.filter.matches(&new);
                let old_matches = match &prev {
                    None => false,
                    Some(p) if self.filter.is_empty() => {
                        let _ = p;
                        true
                    }
                    Some(p) => object::parse(p)
                        .map(|o| self.filter.matches(&o))
                        .unwrap_or(false),
                };
                match (old_matches, new_matches) {
                    (false, true) => self.send("ADDED", new).await,
                    (true, true) => self.send("MODIFIED", new).await,
                    // It left the selection: the client must forget it.
                    (true, false) => self.send("DELETED", new).await,
                    (false, false) => Ok(()),
                }
            }
            Event::Delete { prev, revision } => {
                let Ok(old) = object::parse_at(&prev.value, revision) else {
                    return Ok(());
                };
                if self.filter.matches(&old) {
                    self.send("DELETED", old).await
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn send(&mut self, kind: &str, mut obj: Value) -> Result<(), Gone> {
        if self.resource.conversion.is_some() {
            match self.resource.to_served(obj) {
                Ok(v) => obj = v,
                Err(_) => return Ok(()),
            }
        }
        let obj = match self.output {
            Output::Json | Output::Protobuf => obj,
            Output::PartialObjectMetadata => partial_metadata(&obj),
            Output::Table => {
                let rv = object::resource_version(&obj).unwrap_or("").to_string();
                let bytes = table::table(self.resource, &[obj], &rv, &self.query, None).ok();
                let mut t: Value = bytes
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                if self.headers_sent {
                    t["columnDefinitions"] = Value::Null;
                }
                self.headers_sent = true;
                t
            }
        };
        self.write(json!({ "type": kind, "object": obj })).await
    }

    async fn bookmark(&mut self, rev: Revision, initial_end: bool) -> Result<(), Gone> {
        let mut meta = json!({ "resourceVersion": rev.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let kind = if self.output == Output::Table {
            json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1" })
        } else {
            json!({ "kind": self.resource.kind, "apiVersion": self.resource.api_version() })
        };
        let mut obj = kind;
        obj["metadata"] = meta;
        self.write(json!({ "type": "BOOKMARK", "object": obj }))
            .await
    }

    async fn error(&mut self, err: ApiError) -> Result<(), Gone> {
        self.write(json!({ "type": "ERROR", "object": err.status() }))
            .await
    }

    async fn write(&mut self, event: Value) -> Result<(), Gone> {
        let chunk = if self.output == Output::Protobuf {
            let kind = event["type"].as_str().unwrap_or_default();
            match protobuf::encode_watch_event(kind, &event["object"]) {
                Ok(frame) => frame,
                Err(e) => {
                    // Nothing else may go into a protobuf stream: end it with an error the
                    // client understands, and it will list and watch again.
                    tracing::warn!(error = %e, "watch event has no protobuf form");
                    let status = ApiError::Internal(e.to_string()).status();
                    let frame = protobuf::encode_watch_event("ERROR", &status).map_err(|_| Gone)?;
                    let _ = self.tx.send(Bytes::from(frame)).await;
                    return Err(Gone);
                }
            }
        } else {
            let mut line = serde_json::to_vec(&event).map_err(|_| Gone)?;
            line.push(b'\n');
            line
        };
        self.tx.send(Bytes::from(chunk)).await.map_err(|_| Gone)
    }
}

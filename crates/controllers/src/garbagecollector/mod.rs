//! The garbage collector (upstream's `pkg/controller/garbagecollector`): deletes the
//! dependents of owners that are gone, orphans the dependents of owners deleted with the
//! `orphan` finalizer, and deletes those of owners deleted in the foreground before letting
//! the owner go. Every kind discovery lists is covered, built-in or added later.
//!
//! ```text
//!  discovery (now, then every 30 s) ─▶ one metadata-only watch per resource serving
//!    list+watch+delete (new resources get one; events are not watched)
//!  watch events ─▶ graph_builder::Graph::observe / remove (pure) ─▶ Work ─▶ queue
//!    relist: objects of the resource no longer listed are removed
//!  workers (after the first watches listed, or 30 s) take Work from the queue:
//!    AttemptToDelete(uid)
//!      being deleted without foregroundDeletion ─▶ nothing (its removal wakes dependents)
//!      live GET; gone or another uid ─▶ removed from the graph
//!      foregroundDeletion ─▶ no blocking dependent left? remove the finalizer
//!                             else look at the blocking dependents
//!      else every owner reference looked up live (namespaced owners in the dependent's
//!      namespace) ─▶ decide::attempt_to_delete ─▶ keep / drop references / DELETE
//!    AttemptToOrphan(uid) ─▶ drop the reference from every dependent the graph knows,
//!      then the owner's `orphan` finalizer
//!    failures are retried with per-item backoff (5 ms doubling to 60 s)
//! ```
//!
//! Departures: upstream pauses the workers while watches of newly discovered resources
//! start; here they keep running (decisions rest on live reads, and an owner's dependents of
//! a kind discovered a moment ago may be missed by an orphaning that runs meanwhile).
//! Writes are read-modify-write replacements (409 retried) rather than upstream's patches.

pub mod decide;
pub mod graph_builder;
mod queue;
pub mod resources;

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use record::{EventType, Recorder};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::backoff::Backoff;
use crate::namespace::deletion::DiscoveryFailure;
use decide::{Decision, Foreground, OwnerState, Propagation};
use graph_builder::{Graph, Node, ResourceKey, Work, FOREGROUND, ORPHAN};
use queue::Queue;
use resources::{Mapper, Mapping};

/// How often discovery is read again (upstream's 30 s resource resync).
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);
/// Workers handling the queue (upstream's `--concurrent-gc-syncs` is 20).
const WORKERS: usize = 5;
/// How long the workers wait for the first watches to list before starting anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The event source (upstream's recorder component).
const COMPONENT: &str = "garbage-collector-controller";
/// Owners seen absent, remembered so their other dependents need no GET (upstream's LRU,
/// 500 entries).
const ABSENT_CACHE: usize = 500;

/// Why one work item could not be finished (retried with backoff).
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// An owner reference names a kind discovery does not know (upstream's
    /// `restMappingError`): it may be served later.
    #[error("unable to get REST mapping for {0}/{1}")]
    NoMapping(String, String),
    #[error("no resource mapping for the observed resource {0:?}")]
    UnknownResource(ResourceKey),
}

struct Shared {
    client: Client,
    graph: Mutex<Graph>,
    queue: Queue,
    mapper: RwLock<Mapper>,
    recorder: Recorder,
    backoff: Backoff,
    /// (owner uid, the namespace it was looked up in).
    absent: Mutex<HashSet<(String, Option<String>)>>,
}

impl Shared {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mapper(&self) -> std::sync::RwLockReadGuard<'_, Mapper> {
        self.mapper.read().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            self.queue.add(w);
        }
    }

    fn observe(&self, node: Node) {
        let work = self.graph().observe(node);
        self.enqueue(work);
    }

    fn remove(&self, uid: &str) {
        let work = self.graph().remove(uid);
        self.enqueue(work);
    }

    fn is_absent(&self, key: &(String, Option<String>)) -> bool {
        self.absent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn record_absent(&self, key: (String, Option<String>)) {
        let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        if absent.len() >= ABSENT_CACHE {
            absent.clear();
        }
        absent.insert(key);
    }
}

/// Runs the collector until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), crate::Error> {
    let (recorder, sink) = Recorder::new(
        client.clone(),
        record::Source {
            component: COMPONENT.into(),
            host: None,
            reporting_controller: COMPONENT.into(),
            reporting_instance: String::new(),
        },
    );
    tokio::spawn(sink.run(shutdown.clone()));
    let shared = Arc::new(Shared {
        client: client.clone(),
        graph: Mutex::new(Graph::default()),
        queue: Queue::default(),
        mapper: RwLock::new(Mapper::default()),
        recorder,
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_secs(60)),
        absent: Mutex::new(HashSet::new()),
    });
    let mut monitors: HashMap<ResourceKey, AbortHandle> = HashMap::new();
    let mut workers_started = false;
    let mut first_sync = Vec::new();
    loop {
        let synced = sync_monitors(&shared, &mut monitors, &shutdown).await;
        if !workers_started {
            first_sync.extend(synced);
            let ready = futures::future::join_all(first_sync.drain(..));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(SYNC_TIMEOUT, ready) => {
                    if r.is_err() {
                        warn!("garbage collector: not every watch listed in time; starting anyway");
                    }
                }
            }
            for _ in 0..WORKERS {
                tokio::spawn(worker(shared.clone(), shutdown.clone()));
            }
            info!(resources = monitors.len(), "garbage collector: started");
            workers_started = true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(DISCOVERY_PERIOD) => {}
        }
    }
    for (_, handle) in monitors {
        handle.abort();
    }
    Ok(())
}

/// Reads discovery and starts a watch for each new resource (upstream's `syncMonitors`);
/// resources no longer served lose theirs, unless discovery was incomplete. Returns a
/// receiver per new watch, answered once it has listed.
async fn sync_monitors(
    shared: &Arc<Shared>,
    monitors: &mut HashMap<ResourceKey, AbortHandle>,
    shutdown: &CancellationToken,
) -> Vec<tokio::sync::oneshot::Receiver<()>> {
    let (groups, failure) = crate::namespace::discover(&shared.client).await;
    if let Some(f) = &failure {
        warn!(error = %f, "garbage collector: discovery incomplete");
    }
    let (mapper, monitored) = resources::discovered(&groups);
    shared
        .mapper
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .merge(mapper);
    let mut synced = Vec::new();
    let wanted: HashSet<ResourceKey> = monitored.iter().map(Mapping::key).collect();
    if failure.is_none() || matches!(failure, Some(DiscoveryFailure::Groups(_))) {
        let complete = failure.is_none();
        monitors.retain(|key, handle| {
            let keep = wanted.contains(key) || !complete;
            if !keep {
                debug!(?key, "garbage collector: resource gone, stopping its watch");
                handle.abort();
            }
            keep
        });
    }
    for mapping in monitored {
        let key = mapping.key();
        if monitors.contains_key(&key) {
            continue;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::debug_span!("gc-monitor", resource = %format!("{}/{}", mapping.api_resource.api_version, mapping.api_resource.plural));
        let task =
            tokio::spawn(monitor(shared.clone(), mapping, tx, shutdown.clone()).instrument(span));
        monitors.insert(key, task.abort_handle());
        synced.push(rx);
    }
    synced
}

/// One resource's metadata-only watch feeding the graph (upstream's monitor).
async fn monitor(
    shared: Arc<Shared>,
    mapping: Mapping,
    synced: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(shared.client.clone(), &mapping.api_resource);
    let key = mapping.key();
    let ar = &mapping.api_resource;
    let node = |meta: &ObjectMeta| Node::from_meta(key.clone(), &ar.api_version, &ar.kind, meta);
    let mut stream = pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut synced = Some(synced);
    let mut listed: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(obj)) | Ok(Event::Apply(obj)) => {
                if let (Some(listed), Some(uid)) = (listed.as_mut(), obj.metadata.uid.as_ref()) {
                    listed.insert(uid.clone());
                }
                if let Some(n) = node(&obj.metadata) {
                    shared.observe(n);
                }
            }
            Ok(Event::Delete(obj)) => {
                if let Some(uid) = &obj.metadata.uid {
                    shared.remove(uid);
                }
            }
            Ok(Event::InitDone) => {
                // After a relist, what it no longer shows is gone.
                if let Some(listed) = listed.take() {
                    let known = shared.graph().uids_of(&key);
                    for uid in known.iter().filter(|u| !listed.contains(*u)) {
                        shared.remove(uid);
                    }
                }
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Err(e) => debug!(error = %e, "garbage collector: watch failed; retrying"),
        }
    }
}

async fn worker(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let work = tokio::select! {
            _ = shutdown.cancelled() => return,
            w = shared.queue.get() => w,
        };
        let result = match &work {
            Work::AttemptToDelete(uid) => attempt_to_delete(&shared, uid).await,
            Work::AttemptToOrphan(uid) => attempt_to_orphan(&shared, uid).await,
        };
        shared.queue.done(&work);
        let key = format!("{work:?}");
        match result {
            Ok(()) => shared.backoff.forget(&key),
            Err(e) => {
                let delay = shared.backoff.next(&key);
                debug!(?work, error = %e, ?delay, "garbage collector: retrying");
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    shared.queue.add(work);
                });
            }
        }
    }
}

/// The dynamic API of a resource, in `namespace` when it is namespaced.
fn api_for(client: &Client, mapping: &Mapping, namespace: Option<&str>) -> Api<DynamicObject> {
    match (mapping.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &mapping.api_resource),
        _ => Api::all_with(client.clone(), &mapping.api_resource),
    }
}

/// Upstream's `attemptToDeleteItem`.
async fn attempt_to_delete(shared: &Arc<Shared>, uid: &str) -> Result<(), Error> {
    let Some(node) = shared.graph().node(uid).cloned() else {
        return Ok(());
    };
    // "Being deleted" is a one-way trip: its removal wakes its dependents.
    if node.being_deleted && !node.deleting_dependents() {
        return Ok(());
    }
    let mapping = shared
        .mapper()
        .by_key(&node.resource)
        .cloned()
        .ok_or_else(|| Error::UnknownResource(node.resource.clone()))?;
    let api = api_for(&shared.client, &mapping, node.identity.namespace.as_deref());
    let latest = match api.get_opt(&node.identity.name).await? {
        Some(o) if o.metadata.uid.as_deref() == Some(uid) => o,
        // Gone, or replaced by a new object of that name (upstream's virtual delete event).
        _ => {
            shared.remove(uid);
            return Ok(());
        }
    };
    let meta = &latest.metadata;
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if meta.deletion_timestamp.is_some() && finalizers.iter().any(|f| f == FOREGROUND) {
        let blocking: Vec<(String, bool)> = shared
            .graph()
            .blocking_dependents(uid)
            .into_iter()
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents()))
            .collect();
        match decide::process_deleting_dependents(&blocking) {
            Foreground::RemoveFinalizer => {
                debug!(object = %node.identity.name, "no blocking dependents left; removing foregroundDeletion");
                update_meta(&api, &node.identity.name, uid, |m| {
                    let f = m.finalizers.clone().unwrap_or_default();
                    decide::without_finalizer(&f, FOREGROUND)
                        .map(|f| m.finalizers = Some(f))
                        .is_some()
                })
                .await?;
            }
            Foreground::Wait(deps) => {
                shared.enqueue(deps.into_iter().map(Work::AttemptToDelete).collect());
            }
        }
        return Ok(());
    }
    let references = meta.owner_references.clone().unwrap_or_default();
    if references.is_empty() {
        return Ok(());
    }
    let mut classified = Vec::with_capacity(references.len());
    for r in &references {
        match classify(shared, &node, r).await? {
            Some(state) => classified.push((r.clone(), state)),
            // A cluster-scoped object naming a namespaced owner: nothing can resolve it.
            None => return Ok(()),
        }
    }
    let (has_dependents, a_dependent_deletes_dependents) = {
        let graph = shared.graph();
        let deps = graph.dependents(uid);
        (
            !deps.is_empty(),
            deps.iter().any(|d| d.deleting_dependents()),
        )
    };
    match decide::attempt_to_delete(
        &classified,
        has_dependents,
        a_dependent_deletes_dependents,
        &finalizers,
    ) {
        Decision::Keep => Ok(()),
        Decision::RemoveReferences(owners) => {
            debug!(object = %node.identity.name, ?owners, "removing references to absent owners");
            update_meta(&api, &node.identity.name, uid, |m| {
                let refs = m.owner_references.clone().unwrap_or_default();
                decide::without_references(&refs, &owners)
                    .map(|r| m.owner_references = (!r.is_empty()).then_some(r))
                    .is_some()
            })
            .await
        }
        Decision::Delete {
            propagation,
            unblock,
        } => {
            if !unblock.is_empty() {
                update_meta(&api, &node.identity.name, uid, |m| {
                    let refs = m.owner_references.clone().unwrap_or_default();
                    decide::unblocked_references(&refs, &unblock)
                        .map(|r| m.owner_references = Some(r))
                        .is_some()
                })
                .await?;
            }
            info!(object = %node.identity.name, kind = %node.identity.kind, propagation = propagation.as_str(), "deleting object whose owners are gone");
            delete(&api, &node.identity.name, uid, propagation).await
        }
    }
}

/// One owner reference, looked up live (upstream's `isDangling` and the owner's state).
/// `None`: a cluster-scoped object names a namespaced owner (reported, never retried).
async fn classify(
    shared: &Arc<Shared>,
    item: &Node,
    reference: &OwnerReference,
) -> Result<Option<OwnerState>, Error> {
    let namespace = item.identity.namespace.clone();
    if shared.is_absent(&(reference.uid.clone(), None))
        || shared.is_absent(&(reference.uid.clone(), namespace.clone()))
    {
        return Ok(Some(OwnerState::Dangling));
    }
    let mapping = shared
        .mapper()
        .by_kind(&reference.api_version, &reference.kind)
        .cloned()
        .ok_or_else(|| Error::NoMapping(reference.api_version.clone(), reference.kind.clone()))?;
    if namespace.is_none() && mapping.namespaced {
        invalid_namespace(shared, item, reference);
        return Ok(None);
    }
    let lookup_ns = if mapping.namespaced { namespace } else { None };
    let api = api_for(&shared.client, &mapping, lookup_ns.as_deref());
    let owner = api.get_metadata_opt(&reference.name).await?;
    match owner {
        Some(o) if o.metadata.uid.as_deref() == Some(reference.uid.as_str()) => {
            let m = &o.metadata;
            let foreground = m.finalizers.iter().flatten().any(|f| f == FOREGROUND);
            Ok(Some(if m.deletion_timestamp.is_some() && foreground {
                OwnerState::WaitingForDependentsDeletion
            } else {
                OwnerState::Solid
            }))
        }
        _ => {
            // The owner exists in another namespace: the reference is invalid (upstream
            // reports it when its graph sees the owner elsewhere).
            let elsewhere = shared.graph().node(&reference.uid).is_some_and(|o| {
                o.identity.namespace.is_some() && o.identity.namespace != lookup_ns
            });
            if elsewhere {
                invalid_namespace(shared, item, reference);
            }
            shared.record_absent((reference.uid.clone(), lookup_ns));
            Ok(Some(OwnerState::Dangling))
        }
    }
}

/// The `OwnerRefInvalidNamespace` warning on the dependent.
fn invalid_namespace(shared: &Shared, item: &Node, reference: &OwnerReference) {
    let namespace = item.identity.namespace.clone().unwrap_or_default();
    warn!(object = %item.identity.name, owner = %reference.name, "owner reference names a namespaced owner the object cannot have");
    shared.recorder.event(
        &ObjectReference {
            api_version: Some(item.identity.api_version.clone()),
            kind: Some(item.identity.kind.clone()),
            name: Some(item.identity.name.clone()),
            namespace: item.identity.namespace.clone(),
            uid: Some(item.identity.uid.clone()),
            ..Default::default()
        },
        EventType::Warning,
        "OwnerRefInvalidNamespace",
        decide::invalid_namespace_message(reference, &namespace),
    );
}

/// Upstream's `attemptToOrphanWorker`: every dependent the graph knows loses its reference
/// to the owner, then the owner loses its `orphan` finalizer.
async fn attempt_to_orphan(shared: &Arc<Shared>, uid: &str) -> Result<(), Error> {
    let Some(owner) = shared.graph().node(uid).cloned() else {
        return Ok(());
    };
    if !owner.orphaning() {
        return Ok(());
    }
    let dependents: Vec<Node> = shared
        .graph()
        .dependents(uid)
        .into_iter()
        .cloned()
        .collect();
    let owners = vec![uid.to_string()];
    for dep in dependents {
        let Some(mapping) = shared.mapper().by_key(&dep.resource).cloned() else {
            return Err(Error::UnknownResource(dep.resource.clone()));
        };
        let api = api_for(&shared.client, &mapping, dep.identity.namespace.as_deref());
        update_meta(&api, &dep.identity.name, &dep.identity.uid, |m| {
            let refs = m.owner_references.clone().unwrap_or_default();
            decide::without_references(&refs, &owners)
                .map(|r| m.owner_references = (!r.is_empty()).then_some(r))
                .is_some()
        })
        .await?;
    }
    let mapping = shared
        .mapper()
        .by_key(&owner.resource)
        .cloned()
        .ok_or_else(|| Error::UnknownResource(owner.resource.clone()))?;
    let api = api_for(
        &shared.client,
        &mapping,
        owner.identity.namespace.as_deref(),
    );
    info!(object = %owner.identity.name, "dependents orphaned; removing the orphan finalizer");
    update_meta(&api, &owner.identity.name, uid, |m| {
        let f = m.finalizers.clone().unwrap_or_default();
        decide::without_finalizer(&f, ORPHAN)
            .map(|f| m.finalizers = Some(f))
            .is_some()
    })
    .await
}

/// Reads the object and writes it back changed by `change` (which says whether it changed
/// anything), again on a conflict; nothing when it is gone or has another uid.
async fn update_meta(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    change: impl Fn(&mut ObjectMeta) -> bool,
) -> Result<(), Error> {
    loop {
        let Some(mut obj) = api.get_opt(name).await? else {
            return Ok(());
        };
        if obj.metadata.uid.as_deref() != Some(uid) || !change(&mut obj.metadata) {
            return Ok(());
        }
        match api.replace(name, &PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// DELETE with the uid as precondition (upstream's `deleteObject`).
async fn delete(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    propagation: Propagation,
) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        }),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or a new object took the name.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

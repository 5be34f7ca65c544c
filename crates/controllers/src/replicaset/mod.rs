//! Upstream's ReplicaSet controller (`pkg/controller/replicaset`) and, through the same
//! code, the ReplicationController manager (`pkg/controller/replication`, see
//! [`replication`]): each replica set keeps `spec.replicas` active pods stamped from its
//! template.
//!
//! One sync of a replica set (`reconcile`), as upstream's `syncReplicaSet`:
//!
//! ```text
//!  pods of its namespace it controls or no one controls (cache)
//!    ─▶ active ones claimed: orphans matching adopted, owned non-matching released
//!         (the first adoption re-reads the replica set: same uid, not being deleted)
//!    ─▶ expectations satisfied and not being deleted?
//!         too few:  expect n creations; create in slow-start batches (1, 2, 4, …),
//!                   n ≤ 500; creations never attempted are no longer expected
//!         too many: rank (unassigned < pending < not ready < ready, deletion cost,
//!                   doubled-up, younger …), expect those deletions, delete n ≤ 500
//!    ─▶ status (replicas, fullyLabeled, ready, available, terminating, ReplicaFailure)
//!         written through `/status` only when it changed, observedGeneration set
//!    ─▶ a failed create/delete: error (retried with per-key backoff);
//!       ready pods not yet available (minReadySeconds): sync again when they become so
//! ```
//!
//! The watch drives it (`route_events`, upstream's event handlers): a pod seen created lowers
//! its controller's expected creations, one seen deleted or terminating its expected
//! deletions, and both sync the controller; an orphan syncs every replica set selecting it;
//! a replica set deleted (or re-created under its name) forgets its expectations. Until
//! the watch shows what a sync created or deleted, the next sync only recounts status: a slow
//! watch never makes it create twice.

mod replica_set;
mod replica_set_utils;
pub mod replication;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use api::selector::LabelSelector;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use record::Recorder;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::controller_ref_manager::{recheck_deletion_timestamp, ClaimError, ControllerRefManager};
use crate::controller_utils::pod_control::{self, PodControl};
use crate::controller_utils::{
    filter_active_pods, is_pod_terminating, new_controller_ref, slow_start_batch, OwnerUids,
    UidTrackingControllerExpectations, SLOW_START_INITIAL_BATCH_SIZE,
};
use crate::informer::{Change, Informer};
use crate::routed::Routed;

pub use replica_set::{
    get_pods_to_delete, plan, pod_event_actions, pods_of, Lookup, Plan, PodAction, BURST_REPLICAS,
};
pub use replica_set_utils::{
    calculate_status, next_sync, set_condition, status_unchanged, REPLICA_FAILURE,
};

/// Syncs of different replica sets at once (kube-controller-manager's
/// `--concurrent-replicaset-syncs` and `--concurrent-rc-syncs`, both 5).
const CONCURRENT_SYNCS: u16 = 5;

/// Retries of a status write that failed, after re-reading the object (upstream's
/// `statusUpdateRetries`).
const STATUS_UPDATE_RETRIES: usize = 1;

/// A kind the replica set code runs on: ReplicaSet itself, and ReplicationController
/// converted to one ([`replication`]).
pub trait ReplicaKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name in logs.
    const CONTROLLER: &'static str;
    /// `source.component` of its events.
    const COMPONENT: &'static str;
    /// Whether its status has `terminatingReplicas`.
    const HAS_TERMINATING_REPLICAS: bool;
    /// The object as the ReplicaSet the controller code reads.
    fn to_replica_set(&self) -> ReplicaSet;
    /// The object with a computed status, to write through `/status`.
    fn with_status(&self, status: ReplicaSetStatus) -> Self;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Claim(#[from] ClaimError),
    #[error("{0}")]
    Manage(#[from] pod_control::Error),
    #[error("updating the status of {key}: {}", pod_control::message(.source))]
    Status { key: String, source: kube::Error },
}

struct Ctx<K: ReplicaKind> {
    client: Client,
    owners: Store<K>,
    pods: Store<Pod>,
    expectations: Arc<UidTrackingControllerExpectations>,
    pod_control: PodControl,
    backoff: Backoff,
}

/// The controller for `K`, subscribed to the informers (so call this before they run); the
/// future runs it until `shutdown`.
pub fn controller<K: ReplicaKind>(
    client: Client,
    owners: &Informer<K>,
    pods: &Informer<Pod>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (owner_changes, owner_lagged) = owners.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(K::COMPONENT));
    let expectations = Arc::new(UidTrackingControllerExpectations::new());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        owners: owners.store(),
        pods: pods.store(),
        expectations: expectations.clone(),
        pod_control: PodControl::new(client, recorder),
        backoff: Backoff::controller_default(),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    let router = route_events(
        owner_changes,
        pod_changes,
        owners.store(),
        expectations,
        triggers,
    );
    let routed = Routed {
        name: K::CONTROLLER,
        store: owners.store(),
        triggered,
        lagged: vec![owner_lagged.boxed(), pod_lagged.boxed()],
        // Both controllers wait for the pod cache at once, hence the informer's own signal.
        synced: vec![owners.synced().boxed(), pods.synced().boxed()],
        concurrency: CONCURRENT_SYNCS,
    };
    routed.run(
        router,
        sink,
        shutdown,
        reconcile::<K>,
        error_policy::<K>,
        ctx,
    )
}

/// Finds replica sets of kind `K` in the cache for the pod event handlers.
struct CacheLookup<'a, K: ReplicaKind> {
    owners: &'a Store<K>,
}

impl<K: ReplicaKind> Lookup for CacheLookup<'_, K> {
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String> {
        // Looked up by name (the cache has no uid index), then the uid checked; a
        // reference to another kind is not ours even under the same name.
        if r.kind != K::kind(&()) {
            return None;
        }
        let owner = self
            .owners
            .get(&ObjectRef::new(&r.name).within(namespace))?;
        (owner.meta().uid.as_deref() == Some(r.uid.as_str()))
            .then(|| replica_set::key(namespace, &r.name))
    }

    fn matching(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut keys = Vec::new();
        for owner in self.owners.state() {
            if owner.meta().namespace.as_deref() != Some(namespace) {
                continue;
            }
            let rs = owner.to_replica_set();
            let selector = Some(&rs.spec.selector);
            if LabelSelector::from_label_selector(selector).is_ok_and(|s| s.matches(&labels)) {
                keys.push(replica_set::key(
                    namespace,
                    rs.metadata.name.as_deref().unwrap_or_default(),
                ));
            }
        }
        if keys.len() > 1 {
            // The controller references keep this harmless, but it is the user's mistake.
            warn!(
                pod = %replica_set::pod_key(pod), controllers = ?keys,
                "user error! more than one {} is selecting pods with labels {labels:?}",
                K::kind(&())
            );
        }
        keys
    }
}

fn object_ref<K: ReplicaKind>(key: &str) -> ObjectRef<K> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    ObjectRef::new(name).within(namespace)
}

/// Upstream's event handlers: turns the watch of replica sets and pods into expectation
/// observations and syncs, in the order they happened.
async fn route_events<K: ReplicaKind>(
    owner_changes: impl Stream<Item = Change<K>> + Send + 'static,
    pod_changes: impl Stream<Item = Change<Pod>> + Send + 'static,
    owners: Store<K>,
    expectations: Arc<UidTrackingControllerExpectations>,
    triggers: mpsc::UnboundedSender<ObjectRef<K>>,
) {
    enum Event<K> {
        Owner(Change<K>),
        Pod(Change<Pod>),
    }
    let mut events = futures::stream::select(
        owner_changes.map(Event::Owner).boxed(),
        pod_changes.map(Event::Pod).boxed(),
    );
    // The last version of each pod seen, to compare updates with (client-go's informers
    // hand handlers the old and the new object).
    let mut pods_seen: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut owner_uids = OwnerUids::default();
    let lookup = CacheLookup { owners: &owners };
    while let Some(event) = events.next().await {
        let actions = match event {
            Event::Owner(change) => {
                let (owner, gone) = match &change {
                    Change::Applied(o) => (o, false),
                    Change::Deleted(o) => (o, true),
                };
                let meta = owner.meta();
                let key = replica_set::key(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
                let uid = meta.uid.clone().unwrap_or_default();
                // Deleted, or re-created under the same name: the old one's expectations go.
                let replaced = owner_uids.replaced(&key, &uid, gone);
                if replaced {
                    expectations.delete(&key);
                }
                vec![PodAction::Enqueue(key)]
            }
            Event::Pod(Change::Applied(pod)) => {
                let key = replica_set::pod_key(&pod);
                let old = pods_seen.insert(key, pod.clone());
                pod_event_actions(old.as_deref(), &pod, false, &lookup)
            }
            Event::Pod(Change::Deleted(pod)) => {
                pods_seen.remove(&replica_set::pod_key(&pod));
                pod_event_actions(None, &pod, true, &lookup)
            }
        };
        for action in actions {
            match action {
                PodAction::CreationObserved(key) => expectations.creation_observed(&key),
                PodAction::DeletionObserved { controller, pod } => {
                    expectations.deletion_observed(&controller, &pod)
                }
                PodAction::Enqueue(key) => {
                    if triggers.send(object_ref::<K>(&key)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn reconcile<K: ReplicaKind>(obj: Arc<K>, ctx: Arc<Ctx<K>>) -> Result<Action, Error> {
    let rs = obj.to_replica_set();
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let key = replica_set::key(&namespace, &name);
    let needs_sync = ctx.expectations.satisfied(&key);
    let selector = match LabelSelector::from_label_selector(Some(&rs.spec.selector)) {
        Ok(s) => s,
        Err(e) => {
            // Validation keeps this out; retrying would not fix it.
            warn!(controller = K::CONTROLLER, %key, error = %e, "error converting pod selector");
            return Ok(Action::await_change());
        }
    };

    let all = pods_of(&ctx.pods.state(), &namespace, &uid);
    let manager = ControllerRefManager::new(
        &rs.metadata,
        &K::api_version(&()),
        &K::kind(&()),
        recheck_deletion_timestamp(
            Api::<K>::namespaced(ctx.client.clone(), &namespace),
            name.clone(),
            uid.clone(),
        ),
    );
    let empty = Default::default();
    let matches = |pod: &Pod| selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty));
    let active = manager
        .claim(
            &ctx.client,
            filter_active_pods(all.iter().cloned()),
            matches,
        )
        .await?;
    let terminating = K::HAS_TERMINATING_REPLICAS.then(|| {
        let terminating: Vec<Arc<Pod>> = all
            .iter()
            .filter(|p| is_pod_terminating(p))
            .cloned()
            .collect();
        let claimed = replica_set::filter_claimed_pods(&terminating, &uid, &selector);
        i32::try_from(claimed.len()).unwrap_or(i32::MAX)
    });

    let manage_error = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        manage_replicas(&ctx, &obj, &rs, &key, &active).await.err()
    } else {
        None
    };

    let now = Timestamp::now();
    let message = manage_error.as_ref().map(ToString::to_string);
    let status = calculate_status(&rs, &active, terminating, message.as_deref(), now);
    if !status_unchanged(&rs, &status) {
        let status = replica_set_utils::with_observed_generation(&rs, status.clone());
        update_status(&ctx, &obj, status)
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })?;
    }
    if let Some(e) = manage_error {
        return Err(Error::Manage(e));
    }
    ctx.backoff.forget(&key);
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
    Ok(match next_sync(min_ready, &status, &active, now) {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Upstream's `updateReplicaSetStatus`: a PUT of `/status` guarded by the cached
/// resourceVersion, retried once on a freshly read object.
async fn update_status<K: ReplicaKind>(
    ctx: &Ctx<K>,
    obj: &K,
    status: ReplicaSetStatus,
) -> Result<(), kube::Error> {
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    let mut current = obj.clone();
    let mut attempt = 0;
    loop {
        match api
            .replace_status(
                &name,
                &PostParams::default(),
                &current.with_status(status.clone()),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt >= STATUS_UPDATE_RETRIES => return Err(e),
            Err(e) => {
                debug!(controller = K::CONTROLLER, %name, error = %e, "status update failed; re-reading")
            }
        }
        attempt += 1;
        current = api.get(&name).await?;
    }
}

/// Upstream's `manageReplicas`: creates or deletes pods toward `spec.replicas`.
async fn manage_replicas<K: ReplicaKind>(
    ctx: &Ctx<K>,
    obj: &K,
    rs: &ReplicaSet,
    key: &str,
    active: &[Arc<Pod>],
) -> Result<(), pod_control::Error> {
    let replicas = rs.spec.replicas.unwrap_or(1);
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let reference: ObjectReference = record::object_reference(obj);
    let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    match plan(active.len(), replicas, BURST_REPLICAS) {
        Plan::Nothing => Ok(()),
        Plan::Create(n) => {
            debug!(controller = K::CONTROLLER, %key, need = replicas, creating = n, "too few replicas");
            ctx.expectations.expect_creations(key, wide(n));
            let template = rs.spec.template.clone().unwrap_or_default();
            let owner = new_controller_ref(
                &K::api_version(&()),
                &K::kind(&()),
                rs.metadata.name.as_deref().unwrap_or_default(),
                rs.metadata.uid.as_deref().unwrap_or_default(),
            );
            let (pod_control, namespace, template, reference, owner) =
                (&ctx.pod_control, &namespace, &template, &reference, &owner);
            let (created, error) =
                slow_start_batch(n, SLOW_START_INITIAL_BATCH_SIZE, || async move {
                    match pod_control
                        .create_pods(namespace, template, reference, owner)
                        .await
                    {
                        Ok(_) => Ok(()),
                        // Every create fails in a terminating namespace; nothing to do.
                        Err(e) if e.is_namespace_terminating() => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .await;
            let skipped = n.saturating_sub(created);
            if skipped > 0 {
                // The watch will never show the pods not created.
                debug!(controller = K::CONTROLLER, %key, skipped, "slow-start failure; no longer expecting those pods");
                ctx.expectations.lower(key, wide(skipped), 0);
            }
            error.map_or(Ok(()), Err)
        }
        Plan::Delete(n) => {
            debug!(controller = K::CONTROLLER, %key, need = replicas, deleting = n, "too many replicas");
            let owners: Vec<ReplicaSet> = ctx
                .owners
                .state()
                .iter()
                .map(|o| o.to_replica_set())
                .collect();
            let related_sets = replica_set::related(rs, &owners);
            let related_pods =
                replica_set::indirectly_related_pods(&related_sets, &ctx.pods.state());
            let doomed = get_pods_to_delete(active, &related_pods, n, Timestamp::now());
            ctx.expectations
                .expect_deletions(key, doomed.iter().map(|p| replica_set::pod_key(p)));
            let (pod_control, namespace, reference) = (&ctx.pod_control, &namespace, &reference);
            let results = futures::future::join_all(doomed.iter().map(|pod| async move {
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let result = pod_control.delete_pod(namespace, name, reference).await;
                (pod, result)
            }))
            .await;
            let mut first = None;
            for (pod, result) in results {
                if let Err(e) = result {
                    // The watch will not show a deletion that did not happen.
                    ctx.expectations
                        .deletion_observed(key, &replica_set::pod_key(pod));
                    if !e.is_not_found() && first.is_none() {
                        first = Some(e);
                    }
                }
            }
            first.map_or(Ok(()), Err)
        }
    }
}

fn error_policy<K: ReplicaKind>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx<K>>) -> Action {
    let meta = obj.meta();
    let key = replica_set::key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let delay = ctx.backoff.next(&key);
    warn!(controller = K::CONTROLLER, %key, error = %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

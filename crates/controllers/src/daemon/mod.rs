//! Upstream's DaemonSet controller (`pkg/controller/daemon`): one pod of the template on
//! every node that should run it, pinned there by required node affinity
//! (`metadata.name In [node]`) and left to the scheduler, updated node by node.
//!
//! Owns: which nodes run a daemon pod (`util`: node selector, required node affinity, taints
//! against the template's tolerations plus the daemon tolerations), creating and deleting
//! daemon pods (`daemon_controller`: one per node, failed ones deleted with a per-node
//! backoff, extra ones deleted), the rolling update and the ControllerRevisions of the
//! template (`update`), and the status. Does not own: binding pods (the scheduler), pods
//! bound to nodes that no longer exist (the pod garbage collector, [`crate::podgc`]).
//!
//! One sync of a DaemonSet (`reconcile`), as upstream's `syncDaemonSet`:
//!
//! ```text
//!  being deleted ─▶ nothing
//!  revisions of its namespace it controls or no one controls (cache), claimed
//!    ─▶ current = the one holding the template (none: create `<ds>-<hash>`, numbered one
//!       past the newest; a name taken by another template bumps status.collisionCount);
//!       duplicates deleted (their pods relabelled first), current renumbered to be the newest
//!  pods of its namespace it controls or no one controls, claimed, by target node
//!    ─▶ expectations satisfied?
//!         manage: per node, should run and none ─▶ create (pinned, labelled with the
//!                 revision hash and template generation, daemon tolerations);
//!                 failed ─▶ FailedDaemonPod event + delete (per-node backoff);
//!                 more than one ─▶ all but the oldest deleted (with surge: one old + one new);
//!                 should not run ─▶ delete; unscheduled pods of vanished nodes ─▶ delete
//!         then, still satisfied and RollingUpdate: delete old pods within maxUnavailable,
//!                 or (maxSurge) create new ones beside old ones, old deleted once available
//!         old revisions beyond revisionHistoryLimit no pod runs ─▶ deleted
//!    ─▶ status through /status when a count changed (observedGeneration set when synced)
//!    ─▶ failed pods deleted: error (retried with backoff); a failed pod backing off or
//!       minReadySeconds pending: sync again later
//! ```
//!
//! The watch drives it: a pod added/updated/deleted syncs its DaemonSet (and lowers its
//! expectations) as the ReplicaSet controller's handlers do; a node added, deleted, or whose
//! labels, taints or spec changed syncs every DaemonSet; a DaemonSet deleted or re-created
//! forgets its expectations.

mod daemon_controller;
mod update;
mod util;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::selector::LabelSelector;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::controller_ref_manager::{recheck_deletion_timestamp, ClaimError, ControllerRefManager};
use crate::controller_utils::pod_control::{self, PodControl};
use crate::controller_utils::{
    compute_hash, key, meta_key, new_controller_ref, slow_start_batch, OwnerUids,
    UidTrackingControllerExpectations, SLOW_START_INITIAL_BATCH_SIZE,
};
use crate::history;
use crate::informer::{Change, Informer};
use crate::replicaset::{pod_event_actions, pods_of, Lookup, PodAction};
use crate::routed::Routed;

pub use daemon_controller::{
    calculate_status, manage_plan, nodes_to_daemon_pods, status_unchanged, FailedPodsBackoff,
    ManagePlan, BURST_REPLICAS, FAILED_DAEMON_POD_REASON,
};
pub use update::{
    get_patch, new_revision, revisions_to_clean_up, rolling_update_plan, split_history,
    updated_desired_node_counts, UpdatePlan,
};
pub use util::{
    create_pod_template, daemon_tolerations, is_pod_updated, node_should_run_daemon_pod,
    replace_node_name_affinity, target_node_name, REVISION_HASH_LABEL, TEMPLATE_GENERATION_LABEL,
};

const CONTROLLER: &str = "daemonset";
/// `source.component` of its events.
const COMPONENT: &str = "daemonset-controller";
/// kube-controller-manager's `--concurrent-daemonset-syncs`.
const CONCURRENT_SYNCS: u16 = 2;
/// Retries of a status write after re-reading the DaemonSet (`StatusUpdateRetries`).
const STATUS_UPDATE_RETRIES: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Claim(#[from] ClaimError),
    #[error("{0}")]
    Pods(#[from] pod_control::Error),
    #[error("{action} controller revision {name}: {}", pod_control::message(.source))]
    Revision {
        action: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error(
        "found a stale controller revision {name} for DaemonSet {key}; collision count bumped"
    )]
    Collision { key: String, name: String },
    #[error("updating the status of {key}: {}", pod_control::message(.source))]
    Status { key: String, source: kube::Error },
    #[error("deleted {count} failed pods of DaemonSet {key}")]
    FailedPods { count: usize, key: String },
}

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    expectations: Arc<UidTrackingControllerExpectations>,
    pod_control: PodControl,
    backoff: Backoff,
    failed_pods: Mutex<FailedPodsBackoff>,
}

/// The controller, subscribed to the informers (call before they run); the future runs it
/// until `shutdown`.
pub fn controller(
    client: Client,
    daemon_sets: &Informer<DaemonSet>,
    nodes: &Informer<Node>,
    pods: &Informer<Pod>,
    revisions: &Informer<ControllerRevision>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (ds_changes, ds_lagged) = daemon_sets.subscribe();
    let (node_changes, node_lagged) = nodes.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let expectations = Arc::new(UidTrackingControllerExpectations::new());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        nodes: nodes.store(),
        pods: pods.store(),
        revisions: revisions.store(),
        expectations: expectations.clone(),
        pod_control: PodControl::new(client, recorder),
        backoff: Backoff::controller_default(),
        failed_pods: Mutex::new(FailedPodsBackoff::default()),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    let router = route_events(
        ds_changes,
        node_changes,
        pod_changes,
        daemon_sets.store(),
        expectations,
        triggers,
    );
    Routed {
        name: CONTROLLER,
        store: daemon_sets.store(),
        triggered,
        lagged: vec![ds_lagged.boxed(), node_lagged.boxed(), pod_lagged.boxed()],
        synced: vec![
            daemon_sets.synced().boxed(),
            nodes.synced().boxed(),
            pods.synced().boxed(),
            revisions.synced().boxed(),
        ],
        concurrency: CONCURRENT_SYNCS,
    }
    .run(router, sink, shutdown, reconcile, error_policy, ctx)
}

/// Finds DaemonSets in the cache for the pod event handlers.
struct CacheLookup<'a> {
    daemon_sets: &'a Store<DaemonSet>,
}

impl Lookup for CacheLookup<'_> {
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String> {
        if r.kind != "DaemonSet" {
            return None;
        }
        let ds = self
            .daemon_sets
            .get(&ObjectRef::new(&r.name).within(namespace))?;
        (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key(namespace, &r.name))
    }

    fn matching(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.daemon_sets
            .state()
            .iter()
            .filter(|ds| ds.metadata.namespace.as_deref() == Some(namespace))
            .filter(|ds| {
                LabelSelector::from_label_selector(Some(&ds.spec.selector))
                    .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
            })
            .map(|ds| meta_key(&ds.metadata))
            .collect()
    }
}

fn object_ref(key: &str) -> ObjectRef<DaemonSet> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    ObjectRef::new(name).within(namespace)
}

/// What of a node decides where daemon pods go: a change elsewhere (status heartbeats)
/// syncs nothing (upstream's `shouldIgnoreNodeUpdate`, narrowed to what the predicates read).
fn node_fingerprint(node: &Node) -> String {
    serde_json::to_string(&(&node.metadata.labels, &node.spec)).unwrap_or_default()
}

/// Upstream's event handlers: DaemonSet, node and pod changes turned into expectation
/// observations and syncs, in the order they happened.
async fn route_events(
    ds_changes: impl Stream<Item = Change<DaemonSet>> + Send + 'static,
    node_changes: impl Stream<Item = Change<Node>> + Send + 'static,
    pod_changes: impl Stream<Item = Change<Pod>> + Send + 'static,
    daemon_sets: Store<DaemonSet>,
    expectations: Arc<UidTrackingControllerExpectations>,
    triggers: mpsc::UnboundedSender<ObjectRef<DaemonSet>>,
) {
    enum Event {
        Ds(Change<DaemonSet>),
        Node(Change<Node>),
        Pod(Change<Pod>),
    }
    let mut events = futures::stream::select_all([
        ds_changes.map(Event::Ds).boxed(),
        node_changes.map(Event::Node).boxed(),
        pod_changes.map(Event::Pod).boxed(),
    ]);
    let mut pods_seen: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut nodes_seen: HashMap<String, String> = HashMap::new();
    let mut ds_uids = OwnerUids::default();
    let lookup = CacheLookup {
        daemon_sets: &daemon_sets,
    };
    while let Some(event) = events.next().await {
        let actions = match event {
            Event::Ds(change) => {
                let (ds, gone) = match &change {
                    Change::Applied(d) => (d, false),
                    Change::Deleted(d) => (d, true),
                };
                let key = meta_key(&ds.metadata);
                let uid = ds.metadata.uid.clone().unwrap_or_default();
                // Deleted, or re-created under the same name: the old one's expectations go.
                let replaced = ds_uids.replaced(&key, &uid, gone);
                if replaced {
                    expectations.delete(&key);
                }
                vec![PodAction::Enqueue(key)]
            }
            Event::Node(change) => {
                let (node, gone) = match &change {
                    Change::Applied(n) => (n, false),
                    Change::Deleted(n) => (n, true),
                };
                let name = node.metadata.name.clone().unwrap_or_default();
                let changed = if gone {
                    nodes_seen.remove(&name);
                    true
                } else {
                    let print = node_fingerprint(node);
                    nodes_seen.insert(name, print.clone()) != Some(print)
                };
                if changed {
                    daemon_sets
                        .state()
                        .iter()
                        .map(|ds| PodAction::Enqueue(meta_key(&ds.metadata)))
                        .collect()
                } else {
                    Vec::new()
                }
            }
            Event::Pod(Change::Applied(pod)) => {
                let old = pods_seen.insert(meta_key(&pod.metadata), pod.clone());
                pod_event_actions(old.as_deref(), &pod, false, &lookup)
            }
            Event::Pod(Change::Deleted(pod)) => {
                pods_seen.remove(&meta_key(&pod.metadata));
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
                    if triggers.send(object_ref(&key)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&ds.metadata);
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let selector = match LabelSelector::from_label_selector(Some(&ds.spec.selector)) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            // Validation keeps an empty selector out; it would select every pod.
            ctx.pod_control.recorder().event(
                &record::object_reference(ds.as_ref()),
                EventType::Warning,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::await_change());
        }
        Err(e) => {
            warn!(controller = CONTROLLER, %key, error = %e, "error converting pod selector");
            return Ok(Action::await_change());
        }
    };
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let manager = || {
        ControllerRefManager::new(
            &ds.metadata,
            "apps/v1",
            "DaemonSet",
            recheck_deletion_timestamp(
                Api::<DaemonSet>::namespaced(ctx.client.clone(), &namespace),
                name.clone(),
                uid.clone(),
            ),
        )
    };
    let empty = Default::default();
    let matches = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        selector.matches(labels.unwrap_or(&empty))
    };

    let (current, old) = construct_history(&ctx, &ds, &manager(), &matches).await?;
    let hash = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_default();

    let nodes = ctx.nodes.state();
    let pods = manager()
        .claim(
            &ctx.client,
            pods_of(&ctx.pods.state(), &namespace, &uid),
            |p: &Pod| matches(p.metadata.labels.as_ref()),
        )
        .await?;
    let by_node = nodes_to_daemon_pods(&pods);

    let mut requeue: Option<Duration> = None;
    let mut sync_error = None;
    let synced = ctx.expectations.satisfied(&key);
    if synced {
        let plan = {
            let mut failed = ctx
                .failed_pods
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            failed.gc(now);
            manage_plan(&ds, &nodes, &by_node, &hash, &mut failed, now)
        };
        requeue = plan.requeue_after;
        let reference = record::object_reference(ds.as_ref());
        for message in &plan.failed {
            ctx.pod_control.recorder().event(
                &reference,
                EventType::Warning,
                FAILED_DAEMON_POD_REASON,
                message.clone(),
            );
        }
        let result = sync_nodes(&ctx, &ds, &key, plan.delete, plan.create_on, &hash).await;
        sync_error = match result {
            Err(e) => Some(e),
            Ok(()) if !plan.failed.is_empty() => Some(Error::FailedPods {
                count: plan.failed.len(),
                key: key.clone(),
            }),
            Ok(()) => None,
        };
        if sync_error.is_none() && ctx.expectations.satisfied(&key) && is_rolling_update(&ds) {
            let plan = rolling_update_plan(&ds, &nodes, &by_node, &hash, Timestamp::now());
            if let Err(e) = sync_nodes(&ctx, &ds, &key, plan.delete, plan.create_on, &hash).await {
                sync_error = Some(e);
            }
        }
        if sync_error.is_none() {
            cleanup_history(&ctx, &ds, &old, &pods).await;
        }
    }

    let status = calculate_status(&ds, &nodes, &by_node, &hash, Timestamp::now());
    if !status_unchanged(&ds, &status) || (synced && observed_behind(&ds)) {
        let mut status = status.clone();
        if synced {
            status.observed_generation = ds.metadata.generation;
        }
        update_status(&ctx, &ds, status)
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })?;
    }
    if let Some(e) = sync_error {
        return Err(e);
    }
    ctx.backoff.forget(&key);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
        let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
        requeue = Some(requeue.map_or(after, |r| r.min(after)));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

fn observed_behind(ds: &DaemonSet) -> bool {
    let observed = ds.status.as_ref().and_then(|s| s.observed_generation);
    observed.unwrap_or(0) < ds.metadata.generation.unwrap_or(0)
}

fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("RollingUpdate")
}

/// Upstream's `constructHistory`: the current revision (created, deduplicated or
/// renumbered as needed) and the old ones.
async fn construct_history(
    ctx: &Ctx,
    ds: &DaemonSet,
    manager: &ControllerRefManager,
    matches: &impl Fn(Option<&std::collections::BTreeMap<String, String>>) -> bool,
) -> Result<(ControllerRevision, Vec<ControllerRevision>), Error> {
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let candidates: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|r| history::owned_or_orphan(r, &uid))
        .collect();
    let claimed = manager
        .claim(&ctx.client, candidates, |r: &ControllerRevision| {
            matches(r.metadata.labels.as_ref())
        })
        .await?;
    let refs: Vec<&ControllerRevision> = claimed.iter().map(AsRef::as_ref).collect();
    let split = split_history(ds, &refs);
    let old: Vec<ControllerRevision> = split.old.iter().map(|r| (*r).clone()).collect();
    let revision_error = |action, name: &str| {
        let name = name.to_string();
        move |source| Error::Revision {
            action,
            name,
            source,
        }
    };
    let Some(keep) = split.current.first() else {
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&ds.spec.template, collision_count);
        let revision = new_revision(ds, &hash, split.current_number);
        let name = revision.metadata.name.clone().unwrap_or_default();
        return match api.create(&PostParams::default(), &revision).await {
            Ok(created) => Ok((created, old)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .map_err(revision_error("getting", &name))?;
                if update::revision_matches(ds, &existing) {
                    return Ok((existing, old));
                }
                bump_collision_count(ctx, ds).await?;
                Err(Error::Collision {
                    key: meta_key(&ds.metadata),
                    name,
                })
            }
            Err(e) => Err(revision_error("creating", &name)(e)),
        };
    };
    // Upstream's `dedupCurHistories`: pods of a duplicate take the kept revision's hash
    // before the duplicate goes.
    let hash_of = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL))
            .cloned()
    };
    let keep_hash = hash_of(keep).unwrap_or_default();
    for duplicate in &split.current[1..] {
        let name = duplicate.metadata.name.clone().unwrap_or_default();
        if let Some(dup_hash) = hash_of(duplicate).filter(|h| *h != keep_hash) {
            let patch =
                serde_json::json!({"metadata": {"labels": {REVISION_HASH_LABEL: keep_hash}}});
            for pod in pods_of(&ctx.pods.state(), &namespace, &uid) {
                let labels = pod.metadata.labels.as_ref();
                if !matches(labels)
                    || labels.and_then(|l| l.get(REVISION_HASH_LABEL)) != Some(&dup_hash)
                {
                    continue;
                }
                let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                match ctx
                    .pod_control
                    .patch_pod(&namespace, pod_name, &patch)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(Error::Pods(e)),
                }
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(revision_error("deleting", &name)(e)),
        }
    }
    let name = keep.metadata.name.clone().unwrap_or_default();
    let current = if history::number(keep) < split.current_number {
        history::update_revision(&api, keep, split.current_number)
            .await
            .map_err(revision_error("updating", &name))?
    } else {
        (*keep).clone()
    };
    Ok((current, old))
}

/// A revision name taken by another template: the DaemonSet's `collisionCount` goes up so
/// the next hash differs (upstream's `snapshot`).
async fn bump_collision_count(ctx: &Ctx, ds: &DaemonSet) -> Result<(), Error> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let api: Api<DaemonSet> = Api::namespaced(
        ctx.client.clone(),
        ds.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let status_error = |source| Error::Status {
        key: meta_key(&ds.metadata),
        source,
    };
    let mut current = api.get(&name).await.map_err(status_error)?;
    let status = current.status.get_or_insert_with(Default::default);
    status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
    api.replace_status(&name, &PostParams::default(), &current)
        .await
        .map_err(status_error)?;
    Ok(())
}

/// Upstream's `cleanupHistory`; failures are logged (the next sync tries again).
async fn cleanup_history(ctx: &Ctx, ds: &DaemonSet, old: &[ControllerRevision], pods: &[Arc<Pod>]) {
    let refs: Vec<&ControllerRevision> = old.iter().collect();
    let api: Api<ControllerRevision> = Api::namespaced(
        ctx.client.clone(),
        ds.metadata.namespace.as_deref().unwrap_or_default(),
    );
    for revision in revisions_to_clean_up(ds, &refs, pods) {
        let name = revision.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            debug!(controller = CONTROLLER, revision = %name, error = %e, "deleting an old revision failed");
        }
    }
}

/// Upstream's `syncNodes`: deletes `delete` and creates a pinned pod on each of
/// `create_on`, at most [`BURST_REPLICAS`] of each, expecting them on the watch.
async fn sync_nodes(
    ctx: &Ctx,
    ds: &DaemonSet,
    key: &str,
    mut delete: Vec<String>,
    mut create_on: Vec<String>,
    hash: &str,
) -> Result<(), Error> {
    if delete.is_empty() && create_on.is_empty() {
        return Ok(());
    }
    create_on.truncate(BURST_REPLICAS);
    delete.truncate(BURST_REPLICAS);
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let reference: ObjectReference = record::object_reference(ds);
    let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    ctx.expectations
        .expect_creations(key, wide(create_on.len()));
    ctx.expectations
        .expect_deletions(key, delete.iter().map(|p| self::key(&namespace, p)));
    debug!(controller = CONTROLLER, %key, create = create_on.len(), delete = delete.len(), "syncing nodes");

    let template = create_pod_template(&ds.spec.template, util::template_generation(ds), hash);
    let owner = new_controller_ref(
        "apps/v1",
        "DaemonSet",
        ds.metadata.name.as_deref().unwrap_or_default(),
        ds.metadata.uid.as_deref().unwrap_or_default(),
    );
    let next = AtomicUsize::new(0);
    let (nodes, template, namespace_ref, reference_ref, owner_ref, next_ref) =
        (&create_on, &template, &namespace, &reference, &owner, &next);
    let (created, create_error) = slow_start_batch(
        create_on.len(),
        SLOW_START_INITIAL_BATCH_SIZE,
        || async move {
            let i = next_ref.fetch_add(1, Ordering::SeqCst);
            let Some(node) = nodes.get(i) else {
                return Ok(());
            };
            let mut pod_template = template.clone();
            let spec = pod_template.spec.get_or_insert_with(Default::default);
            spec.affinity = Some(replace_node_name_affinity(spec.affinity.take(), node));
            match ctx
                .pod_control
                .create_pods(namespace_ref, &pod_template, reference_ref, owner_ref)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_namespace_terminating() => Ok(()),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    let skipped = create_on.len().saturating_sub(created);
    if skipped > 0 {
        ctx.expectations.lower(key, wide(skipped), 0);
    }

    let results = futures::future::join_all(delete.iter().map(|pod| async move {
        let result = ctx
            .pod_control
            .delete_pod(namespace_ref, pod, reference_ref)
            .await;
        (pod, result)
    }))
    .await;
    let mut first = create_error;
    for (pod, result) in results {
        if let Err(e) = result {
            ctx.expectations
                .deletion_observed(key, &self::key(&namespace, pod));
            if !e.is_not_found() && first.is_none() {
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), |e| Err(Error::Pods(e)))
}

/// Upstream's `storeDaemonSetStatus`: a PUT of `/status` on the cached object, retried once
/// on a freshly read one.
async fn update_status(
    ctx: &Ctx,
    ds: &DaemonSet,
    status: DaemonSetStatus,
) -> Result<(), kube::Error> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let api: Api<DaemonSet> = Api::namespaced(
        ctx.client.clone(),
        ds.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let mut current = ds.clone();
    let mut attempt = 0;
    loop {
        let mut status = status.clone();
        // The collision count is only ever raised, by the revision code.
        status.collision_count = current.status.as_ref().and_then(|s| s.collision_count);
        if let Some(g) = status.observed_generation {
            status.observed_generation = Some(
                g.max(
                    current
                        .status
                        .as_ref()
                        .and_then(|s| s.observed_generation)
                        .unwrap_or(0),
                ),
            );
        }
        current.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt >= STATUS_UPDATE_RETRIES => return Err(e),
            Err(e) => {
                debug!(controller = CONTROLLER, %name, error = %e, "status update failed; re-reading")
            }
        }
        attempt += 1;
        current = api.get(&name).await?;
    }
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&ds.metadata);
    let delay = ctx.backoff.next(&key);
    warn!(controller = CONTROLLER, %key, error = %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

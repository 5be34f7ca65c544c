//! Upstream's StatefulSet controller (`pkg/controller/statefulset`): each StatefulSet keeps
//! `spec.replicas` pods with stable identities, `<set>-<ordinal>` for the ordinals from
//! `spec.ordinals.start`, each with `hostname` = its name, `subdomain` = `spec.serviceName`,
//! and the labels `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//! `controller-revision-hash`; a pod that fails or is deleted is re-created under the same
//! name.
//!
//! Owns: the sync of a set (pods created, put right and deleted as its pod management
//! policy and update strategy say), its ControllerRevisions (one per distinct template,
//! through [`crate::history`]; the data is upstream's `getPatch`,
//! `{"spec":{"template":{…,"$patch":"replace"}}}`, so `kubectl rollout history` and
//! `rollout undo` work on them), `revisionHistoryLimit` pruning, its status through
//! `/status`, and the events upstream records (`SuccessfulCreate` "create Pod web-0 in
//! StatefulSet web successful", `SuccessfulDelete`, `SuccessfulUpdate`, and `Failed…` with
//! "… failed error: …").
//!
//! Does not own: storage. peapod has no PersistentVolumeClaims yet: a pod of a set with
//! `volumeClaimTemplates` is still created, with the claims' volumes upstream gives it
//! (`<template>-<set>-<ordinal>`, which the node cannot mount), and the controller records
//! a Warning `FailedCreate` event on the StatefulSet saying the claim cannot be created
//! ("create Claim www-web-0 for Pod web-0 in StatefulSet web failed error:
//! PersistentVolumeClaims are not supported by peapod"). No claim is made.
//! `persistentVolumeClaimRetentionPolicy` is accepted and ignored.
//!
//! One sync (`reconcile`, upstream's `sync` and `UpdateStatefulSet`):
//!
//! ```text
//!  revisions of its namespace matching its selector (cache): orphans adopted
//!  pods of its namespace named <set>-<n> and matching its selector: orphans adopted,
//!       owned pods that stopped matching released
//!  update revision: the set's template as a revision — the newest one if equal, an older
//!       equal one renumbered as newest (rollback), else created (a name taken by other
//!       data bumps status.collisionCount); current revision: status.currentRevision's,
//!       else the update revision
//!  plan (stateful_set_control::plan, pure) ─▶ creates / identity updates / deletes,
//!       step by step (Parallel: each step in slow-start batches), first failure stops
//!  status (replicas, ready, available, current, updated, revisions, collisionCount,
//!       observedGeneration; a finished RollingUpdate makes the update revision current)
//!       written through /status when it changed
//!  history beyond revisionHistoryLimit pruned (never the current, update or a pod's)
//!  minReadySeconds with pods not yet available: synced again after minReadySeconds
//! ```
//!
//! The watch drives it as upstream's handlers: a pod change syncs its controlling set (an
//! orphan: every set selecting it); a pod becoming ready syncs its set again after
//! `minReadySeconds` + 1 s. There are no expectations (upstream has none for sets): a sync
//! from a cache that does not show a pod just created yet tries again and is refused
//! (`AlreadyExists`), which retries with backoff.

mod stateful_set_control;
mod stateful_set_utils;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::selector::LabelSelector;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action as RequeueAction;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::controller_ref_manager::{recheck_deletion_timestamp, ClaimError, ControllerRefManager};
use crate::controller_utils::pod_control::message;
use crate::controller_utils::{get_controller_of, is_pod_ready, new_controller_ref};
use crate::history;
use crate::informer::{Change, Informer};
use crate::routed::Routed;

pub use stateful_set_control::{plan, Action, DeleteReason, Plan, Revision};
pub use stateful_set_utils::*;

/// Syncs of different sets at once (`--concurrent-statefulset-syncs`).
const CONCURRENT_SYNCS: u16 = 5;
/// Attempts at a status or pod write that conflicts (upstream's `RetryOnConflict`).
const WRITE_RETRIES: usize = 5;
/// Upstream's `slowStartBatch` cap in Parallel mode.
const MAX_BATCH_SIZE: usize = 500;
/// `source.component` of the events.
const COMPONENT: &str = "statefulset-controller";
const CONTROLLER: &str = "statefulset";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Claim(#[from] ClaimError),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Revision(String),
}

fn api_error(e: &kube::Error) -> Error {
    Error::Api(message(e))
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    backoff: Backoff,
    later: mpsc::UnboundedSender<(ObjectRef<StatefulSet>, Duration)>,
}

/// The controller, subscribed to the informers (call this before they run); the future runs
/// it until `shutdown`.
pub fn controller(
    client: Client,
    sets: &Informer<StatefulSet>,
    pods: &Informer<Pod>,
    revisions: &Informer<ControllerRevision>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (set_changes, set_lagged) = sets.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let (triggers, triggered) = mpsc::unbounded_channel();
    let (later, delayed) = mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.store(),
        revisions: revisions.store(),
        recorder,
        backoff: Backoff::controller_default(),
        later: later.clone(),
    });
    let router = route_events(
        set_changes,
        pod_changes,
        sets.store(),
        triggers.clone(),
        later,
    );
    let delayer = delay(delayed, triggers);
    Routed {
        name: CONTROLLER,
        store: sets.store(),
        triggered,
        lagged: vec![set_lagged.boxed(), pod_lagged.boxed()],
        synced: vec![
            sets.synced().boxed(),
            pods.synced().boxed(),
            revisions.synced().boxed(),
        ],
        concurrency: CONCURRENT_SYNCS,
    }
    .run(
        async move {
            futures::join!(router, delayer);
        },
        sink,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
}

/// Upstream's `enqueueSSAfter`: each request sends the set's trigger after its delay.
async fn delay(
    mut requests: mpsc::UnboundedReceiver<(ObjectRef<StatefulSet>, Duration)>,
    triggers: mpsc::UnboundedSender<ObjectRef<StatefulSet>>,
) {
    while let Some((set, after)) = requests.recv().await {
        let triggers = triggers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = triggers.send(set);
        });
    }
}

fn set_ref(namespace: &str, name: &str) -> ObjectRef<StatefulSet> {
    ObjectRef::new(name).within(namespace)
}

/// The set controlling `pod` by its controller reference, if cached with that uid.
fn resolve(sets: &Store<StatefulSet>, pod: &Pod) -> Option<Arc<StatefulSet>> {
    let r = get_controller_of(&pod.metadata)?;
    if r.kind != "StatefulSet" {
        return None;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let set = sets.get(&set_ref(namespace, &r.name))?;
    (set.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(set)
}

/// Upstream's `getStatefulSetsForPod`: the sets of the pod's namespace selecting it.
fn selecting(sets: &Store<StatefulSet>, pod: &Pod) -> Vec<Arc<StatefulSet>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    sets.state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter(|s| {
            let selector = Some(&s.spec).map(|spec| &spec.selector);
            LabelSelector::from_label_selector(selector).is_ok_and(|sel| {
                // An empty selector selects nothing here, as upstream's handlers.
                !sel.is_empty() && sel.matches(labels)
            })
        })
        .collect()
}

/// Upstream's `addPod`/`updatePod`/`deletePod` handlers.
async fn route_events(
    set_changes: impl Stream<Item = Change<StatefulSet>> + Send + 'static,
    pod_changes: impl Stream<Item = Change<Pod>> + Send + 'static,
    sets: Store<StatefulSet>,
    triggers: mpsc::UnboundedSender<ObjectRef<StatefulSet>>,
    later: mpsc::UnboundedSender<(ObjectRef<StatefulSet>, Duration)>,
) {
    enum Event {
        Set(Change<StatefulSet>),
        Pod(Change<Pod>),
    }
    let mut events = futures::stream::select(
        set_changes.map(Event::Set).boxed(),
        pod_changes.map(Event::Pod).boxed(),
    );
    let mut pods_seen: HashMap<(String, String), Arc<Pod>> = HashMap::new();
    let key = |p: &Pod| {
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        )
    };
    let enqueue = |s: &StatefulSet| triggers.send(set_ref(namespace(s), name(s))).is_ok();
    while let Some(event) = events.next().await {
        let ok = match event {
            Event::Set(Change::Applied(s) | Change::Deleted(s)) => enqueue(&s),
            Event::Pod(Change::Deleted(pod)) => {
                pods_seen.remove(&key(&pod));
                resolve(&sets, &pod).is_none_or(|s| enqueue(&s))
            }
            Event::Pod(Change::Applied(pod)) => {
                let old = pods_seen.insert(key(&pod), pod.clone());
                let mut ok = true;
                let old_controller = old.as_ref().and_then(|o| get_controller_of(&o.metadata));
                let controller = get_controller_of(&pod.metadata);
                if old_controller.is_some() && old_controller != controller {
                    // The old controller must learn it lost the pod.
                    if let Some(old_set) = old.as_ref().and_then(|o| resolve(&sets, o)) {
                        ok &= enqueue(&old_set);
                    }
                }
                if controller.is_some() {
                    if let Some(set) = resolve(&sets, &pod) {
                        ok &= enqueue(&set);
                        let became_ready =
                            old.as_ref().is_some_and(|o| !is_pod_ready(o)) && is_pod_ready(&pod);
                        let min_ready = min_ready_seconds(&set);
                        if became_ready && min_ready > 0 {
                            let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0))
                                + Duration::from_secs(1);
                            let _ = later.send((set_ref(namespace(&set), name(&set)), after));
                        }
                    }
                } else {
                    let labels_changed = old
                        .as_ref()
                        .is_none_or(|o| o.metadata.labels != pod.metadata.labels);
                    if labels_changed || old_controller.is_some() {
                        for set in selecting(&sets, &pod) {
                            ok &= enqueue(&set);
                        }
                    }
                }
                ok
            }
        };
        if !ok {
            return;
        }
    }
}

fn error_policy(set: Arc<StatefulSet>, error: &Error, ctx: Arc<Ctx>) -> RequeueAction {
    let key = format!("{}/{}", namespace(&set), name(&set));
    let delay = ctx.backoff.next(&key);
    warn!(controller = CONTROLLER, %key, error = %error, retry_in = ?delay, "sync failed");
    RequeueAction::requeue(delay)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<RequeueAction, Error> {
    let ns = namespace(&set).to_string();
    let set_name = name(&set).to_string();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let key = format!("{ns}/{set_name}");
    let selector = match LabelSelector::from_label_selector(Some(&set.spec).map(|s| &s.selector)) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            // Upstream: a selector that selects everything is refused; validation keeps it out.
            warn!(controller = CONTROLLER, %key, "the selector selects every pod; ignoring the set");
            return Ok(RequeueAction::await_change());
        }
        Err(e) => {
            warn!(controller = CONTROLLER, %key, error = %e, "error converting the selector");
            return Ok(RequeueAction::await_change());
        }
    };
    let empty = Default::default();
    let matches = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        selector.matches(labels.unwrap_or(&empty))
    };
    let manager = || {
        ControllerRefManager::new(
            &set.metadata,
            "apps/v1",
            "StatefulSet",
            recheck_deletion_timestamp(
                Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns),
                set_name.clone(),
                uid.clone(),
            ),
        )
    };

    // Revisions: orphans matching the selector adopted (upstream's adoptOrphanRevisions).
    let candidates: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|r| matches(r.metadata.labels.as_ref()))
        .filter(|r| history::owned_or_orphan(r, &uid))
        .collect();
    let mut revisions: Vec<Arc<ControllerRevision>> = if candidates
        .iter()
        .any(|r| get_controller_of(&r.metadata).is_none())
    {
        manager().claim(&ctx.client, candidates, |_| true).await?
    } else {
        candidates
    };
    revisions.sort_by(|a, b| history::revision_order(a, b));

    // Pods: this set's by name, claimed by selector.
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let pods = manager()
        .claim(&ctx.client, pods, |p: &Pod| {
            matches(p.metadata.labels.as_ref()) && is_member_of(&set, p)
        })
        .await?;

    // The current and update revisions.
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut collision_count = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let sorted: Vec<&ControllerRevision> = revisions.iter().map(|r| &**r).collect();
    let candidate = new_revision(&set, history::next_revision(&sorted), collision_count);
    let update: ControllerRevision = match choose_update_revision(&sorted, &candidate) {
        UpdateRevision::Newest(i) => sorted[i].clone(),
        UpdateRevision::Renumber(i, number) => history::update_revision(&api, sorted[i], number)
            .await
            .map_err(|e| api_error(&e))?,
        UpdateRevision::Create => {
            history::create_controller_revision(&api, &set_name, &candidate, &mut collision_count)
                .await
                .map_err(|e| api_error(&e))?
        }
    };
    let update_name = update.metadata.name.clone().unwrap_or_default();
    let status_current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .unwrap_or_default();
    let current: ControllerRevision = sorted
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(status_current.as_str()))
        .map(|r| (*r).clone())
        .unwrap_or_else(|| update.clone());
    let current_name = current.metadata.name.clone().unwrap_or_default();
    let update_template = revision_template(&update).map_err(Error::Revision)?;
    let current_template = revision_template(&current).map_err(Error::Revision)?;

    let owner = new_controller_ref("apps/v1", "StatefulSet", &set_name, &uid);
    let now = Timestamp::now();
    let mut plan = plan(
        &set,
        Revision {
            name: &current_name,
            template: &current_template,
        },
        Revision {
            name: &update_name,
            template: &update_template,
        },
        collision_count,
        &pods,
        &owner,
        now,
    );
    let reference = record::object_reference(&*set);
    let burst = allows_burst(&set);
    let mut failure = plan.error.take().map(Error::Revision);
    if failure.is_none() {
        for step in &plan.steps {
            if let Err(e) = run_step(&ctx, &set, &reference, step, burst).await {
                failure = Some(e);
                break;
            }
        }
    }

    let mut status = plan.status.clone();
    complete_rolling_update(&set, &mut status);
    if inconsistent_status(&set, &status) {
        if let Err(e) = update_status(&ctx, &set, &status).await {
            warn!(controller = CONTROLLER, %key, error = %e, "could not update status");
            failure.get_or_insert(e);
        }
    }

    // History beyond the limit (upstream's truncateHistory).
    let limit = Some(&set.spec)
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
    for doomed in revisions_to_prune(
        &sorted,
        &[current_name.as_str(), update_name.as_str()],
        &pod_refs,
        limit,
    ) {
        match api.delete(&doomed, &DeleteParams::default()).await {
            Ok(_) => debug!(controller = CONTROLLER, %key, revision = %doomed, "pruned revision"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                failure.get_or_insert(api_error(&e));
                break;
            }
        }
    }

    if let Some(e) = failure {
        return Err(e);
    }
    ctx.backoff.forget(&key);
    let min_ready = min_ready_seconds(&set);
    if min_ready > 0 && status.available_replicas.unwrap_or(0) != replicas(&set) {
        let _ = ctx.later.send((
            set_ref(&ns, &set_name),
            Duration::from_secs(u64::try_from(min_ready).unwrap_or(0)),
        ));
    }
    Ok(RequeueAction::await_change())
}

/// Runs one step of the plan: its actions one after another (OrderedReady has one per step)
/// or, in Parallel, in slow-start batches (1, 2, 4, … up to 500), stopping after a batch
/// with a failure.
async fn run_step(
    ctx: &Ctx,
    set: &StatefulSet,
    reference: &ObjectReference,
    step: &[Action],
    burst: bool,
) -> Result<(), Error> {
    if !burst {
        for action in step {
            run_action(ctx, set, reference, action).await?;
        }
        return Ok(());
    }
    let mut rest = step;
    let mut size = 1;
    while !rest.is_empty() {
        let (batch, after) = rest.split_at(size.min(rest.len()));
        let results = futures::future::join_all(
            batch
                .iter()
                .map(|action| run_action(ctx, set, reference, action)),
        )
        .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
        rest = after;
        size = (size * 2).min(MAX_BATCH_SIZE);
    }
    Ok(())
}

/// Upstream's `recordPodEvent`: `SuccessfulCreate` "create Pod web-0 in StatefulSet web
/// successful", or `FailedCreate` "create Pod web-0 in StatefulSet web failed error: …".
fn record_pod_event(
    ctx: &Ctx,
    reference: &ObjectReference,
    verb: &str,
    pod: &str,
    set: &str,
    error: Option<&str>,
) {
    let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
    match error {
        None => ctx.recorder.event(
            reference,
            EventType::Normal,
            &format!("Successful{title}"),
            format!("{verb} Pod {pod} in StatefulSet {set} successful"),
        ),
        Some(e) => ctx.recorder.event(
            reference,
            EventType::Warning,
            &format!("Failed{title}"),
            format!("{verb} Pod {pod} in StatefulSet {set} failed error: {e}"),
        ),
    }
}

async fn run_action(
    ctx: &Ctx,
    set: &StatefulSet,
    reference: &ObjectReference,
    action: &Action,
) -> Result<(), Error> {
    let ns = namespace(set);
    let set_name = name(set);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match action {
        Action::Create(pod) => {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            // No PersistentVolumeClaims in peapod: say so for each claim, create the pod.
            for (_, claim) in pod_claims(set, ordinal(pod)) {
                ctx.recorder.event(
                    reference,
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Claim {claim} for Pod {pod_name} in StatefulSet {set_name} failed error: PersistentVolumeClaims are not supported by peapod"
                    ),
                );
            }
            match api.create(&PostParams::default(), pod).await {
                Ok(_) => {
                    info!(controller = CONTROLLER, set = %set_name, pod = %pod_name, "created pod");
                    record_pod_event(ctx, reference, "create", &pod_name, set_name, None);
                    Ok(())
                }
                // The cache is behind: the watch will show it (upstream sinks this too).
                Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Api(s.message)),
                Err(e) => {
                    let m = message(&e);
                    record_pod_event(ctx, reference, "create", &pod_name, set_name, Some(&m));
                    Err(Error::Api(m))
                }
            }
        }
        Action::Delete {
            name: pod_name,
            reason,
        } => {
            info!(controller = CONTROLLER, set = %set_name, pod = %pod_name, ?reason, "deleting pod");
            match api.delete(pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    record_pod_event(ctx, reference, "delete", pod_name, set_name, None);
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => {
                    let m = message(&e);
                    record_pod_event(ctx, reference, "delete", pod_name, set_name, Some(&m));
                    Err(Error::Api(m))
                }
            }
        }
        Action::UpdateIdentity(pod) => {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let mut desired = pod.clone();
            let mut attempt = 0;
            loop {
                match api
                    .replace(&pod_name, &PostParams::default(), &desired)
                    .await
                {
                    Ok(_) => {
                        record_pod_event(ctx, reference, "update", &pod_name, set_name, None);
                        return Ok(());
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 && attempt < WRITE_RETRIES => {
                        attempt += 1;
                        let fresh = api.get(&pod_name).await.map_err(|e| api_error(&e))?;
                        desired = fresh;
                        update_identity(set, &mut desired);
                        if !storage_matches(set, &desired) {
                            update_storage(set, &mut desired);
                        }
                    }
                    Err(e) => {
                        let m = message(&e);
                        record_pod_event(ctx, reference, "update", &pod_name, set_name, Some(&m));
                        return Err(Error::Api(m));
                    }
                }
            }
        }
    }
}

/// Upstream's `UpdateStatefulSetStatus`: the status PUT, retried on a conflict with a
/// freshly read set.
async fn update_status(
    ctx: &Ctx,
    set: &StatefulSet,
    status: &StatefulSetStatus,
) -> Result<(), Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace(set));
    let set_name = name(set);
    let mut current = set.clone();
    let mut attempt = 0;
    loop {
        current.status = Some(status.clone());
        match api
            .replace_status(set_name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => return Ok(()),
            // Deleted meanwhile: nothing left to report on.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < WRITE_RETRIES => {
                attempt += 1;
                current = match api.get(set_name).await {
                    Ok(fresh) => fresh,
                    Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                    Err(e) => return Err(api_error(&e)),
                };
            }
            Err(e) => return Err(api_error(&e)),
        }
    }
}

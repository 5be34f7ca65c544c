//! Upstream's Deployment controller (`pkg/controller/deployment`): each deployment rolls its
//! pod template out through ReplicaSets it owns, one per template (`<deployment>-<hash>`,
//! the `pod-template-hash` label in their selector, template and labels), by its strategy
//! (RollingUpdate within `maxSurge`/`maxUnavailable`, or Recreate), and reports the
//! rollout in its status and conditions.
//!
//! Owns: claiming ReplicaSets (adoption and release), creating the new ReplicaSet (with
//! `collisionCount` on hash collisions), resizing ReplicaSets, their revision and replica
//! annotations and the deployment's revision annotation, history cleanup, the status
//! written through `/status`, and the `ScalingReplicaSet` events. The decisions are pure:
//! [`util`] (upstream's `deployment_util.go` and the rollout arithmetic) and [`sync`] (the
//! choices of `sync.go`, `progress.go`, `recreate.go`). Does not own: pods (the ReplicaSet
//! controller makes them) nor rollbacks (`kubectl rollout undo` rewrites the template
//! client-side; the deprecated rollback annotation is ignored).
//!
//! One sync of a deployment (`reconcile`), as upstream's `syncDeployment`:
//!
//! ```text
//!  selector empty ─▶ Warning SelectingAll, observedGeneration only
//!  ReplicaSets of its namespace (cache) claimed: matching orphans adopted, owned
//!  non-matching released
//!  being deleted ─▶ status only
//!  Progressing ─▶ Unknown DeploymentPaused / DeploymentResumed when paused changes
//!  paused, or a scaling event (an active RS's desired-replicas ≠ replicas):
//!        new RS (if it exists) annotated ─▶ scale: the only active RS gets all replicas,
//!        else old ones to 0 if the new one is saturated, else all proportionally
//!        ─▶ (paused: history cleanup) ─▶ status
//!  RollingUpdate:
//!        new RS found (oldest with the template) and annotated, or created
//!          <name>-<hash>, revision = max(old) + 1, Progressing NewReplicaSetCreated
//!          (exists with another template: collisionCount + 1, retry)
//!        ─▶ scale new up within maxSurge, else old down within maxUnavailable
//!        ─▶ nothing to scale and complete: history cleanup
//!        ─▶ rollout status
//!  Recreate:
//!        old RSs to 0 ─▶ wait until no old pod runs ─▶ new RS created / scaled to
//!        replicas ─▶ complete: history cleanup ─▶ rollout status
//!  rollout status: counts, Available, Progressing (ReplicaSetUpdated while progressing,
//!        NewReplicaSetAvailable when complete, ProgressDeadlineExceeded past the
//!        deadline), ReplicaFailure from the RSs; unchanged and stalled: sync again a
//!        second after the deadline
//! ```
//!
//! The watch drives it (`route_events`, upstream's handlers): a deployment's changes sync
//! it; a ReplicaSet's sync its controlling deployment (and its previous one when the
//! reference moved), an orphan's every deployment selecting it; a pod's deletion syncs the
//! deployment over its ReplicaSet (a Recreate rollout waits for that). Failed writes are
//! retried with per-key backoff; a sync works from the cache, and a write that conflicts
//! with a newer object fails the sync, which the next event redoes.

pub mod sync;
pub mod util;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use api::selector::LabelSelector;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::controller_ref_manager::{recheck_deletion_timestamp, ClaimError, ControllerRefManager};
use crate::controller_utils::get_controller_of;
use crate::controller_utils::pod_control::{is_namespace_terminating, message};
use crate::informer::{Change, Informer};
use crate::routed::Routed;

use util::{
    find_new_replica_set, find_old_replica_sets, max_revision, new_replica_set,
    new_rs_new_replicas, replicas, rs_replicas, set_condition, set_new_replica_set_annotations,
    set_replicas_annotations, RecreateStep, FAILED_RS_CREATE_REASON, FOUND_NEW_RS_REASON,
    NEW_REPLICA_SET_REASON, PROGRESSING, REVISION_ANNOTATION, SCALING_REPLICA_SET,
};

/// Syncs of different deployments at once (`--concurrent-deployment-syncs`).
const CONCURRENT_SYNCS: u16 = 5;

const CONTROLLER: &str = "deployment";
const COMPONENT: &str = "deployment-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Claim(#[from] ClaimError),
    #[error("{what}: {}", message(.source))]
    Api { what: String, source: kube::Error },
    #[error("ReplicaSet {0} exists with another template; collisionCount raised")]
    HashCollision(String),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

struct Ctx {
    client: Client,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (so call this before they run); the future
/// runs it until `shutdown`.
pub fn controller(
    client: Client,
    deployments: &Informer<Deployment>,
    replica_sets: &Informer<ReplicaSet>,
    pods: &Informer<Pod>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (d_changes, d_lagged) = deployments.subscribe();
    let (rs_changes, rs_lagged) = replica_sets.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let ctx = Arc::new(Ctx {
        client,
        replica_sets: replica_sets.store(),
        pods: pods.store(),
        recorder,
        backoff: Backoff::controller_default(),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    let router = route_events(
        d_changes,
        rs_changes,
        pod_changes,
        deployments.store(),
        replica_sets.store(),
        triggers,
    );
    Routed {
        name: CONTROLLER,
        store: deployments.store(),
        triggered,
        lagged: vec![d_lagged.boxed(), rs_lagged.boxed(), pod_lagged.boxed()],
        synced: vec![
            deployments.synced().boxed(),
            replica_sets.synced().boxed(),
            pods.synced().boxed(),
        ],
        concurrency: CONCURRENT_SYNCS,
    }
    .run(router, sink, shutdown, reconcile, error_policy, ctx)
}

fn key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!(
        "{}/{}",
        namespace.unwrap_or_default(),
        name.unwrap_or_default()
    )
}

fn object_ref(key: &str) -> ObjectRef<Deployment> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    ObjectRef::new(name).within(namespace)
}

/// The deployment (key) controlling a ReplicaSet, if it is cached under that uid.
fn controlling_deployment(
    deployments: &Store<Deployment>,
    namespace: &str,
    rs: &ReplicaSet,
) -> Option<String> {
    let r = get_controller_of(&rs.metadata)?;
    if r.kind != "Deployment" {
        return None;
    }
    let d = deployments.get(&ObjectRef::new(&r.name).within(namespace))?;
    (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key(Some(namespace), Some(&r.name)))
}

/// Upstream's `getDeploymentsForReplicaSet`: the deployments of its namespace whose
/// selector matches an orphan ReplicaSet's labels.
fn deployments_selecting(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<String> {
    let namespace = rs.metadata.namespace.as_deref();
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == namespace)
        .filter(|d| d.spec.selector != MetaSelector::default())
        .filter(|d| {
            LabelSelector::from_label_selector(Some(&d.spec.selector))
                .is_ok_and(|s| s.matches(&labels))
        })
        .map(|d| key(namespace, d.metadata.name.as_deref()))
        .collect()
}

/// Upstream's event handlers: deployments, their ReplicaSets and deleted pods turned into
/// syncs, in the order they happened.
async fn route_events(
    d_changes: impl Stream<Item = Change<Deployment>> + Send + 'static,
    rs_changes: impl Stream<Item = Change<ReplicaSet>> + Send + 'static,
    pod_changes: impl Stream<Item = Change<Pod>> + Send + 'static,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    triggers: mpsc::UnboundedSender<ObjectRef<Deployment>>,
) {
    enum Event {
        D(Change<Deployment>),
        Rs(Change<ReplicaSet>),
        Pod(Change<Pod>),
    }
    let mut events = futures::stream::select_all([
        d_changes.map(Event::D).boxed(),
        rs_changes.map(Event::Rs).boxed(),
        pod_changes.map(Event::Pod).boxed(),
    ]);
    // The deployment each ReplicaSet was last seen controlled by, to sync it when the
    // reference moves (client-go hands handlers the old object).
    let mut owner_seen: HashMap<String, Option<String>> = HashMap::new();
    while let Some(event) = events.next().await {
        let keys: Vec<String> = match event {
            Event::D(Change::Applied(d)) | Event::D(Change::Deleted(d)) => {
                vec![key(
                    d.metadata.namespace.as_deref(),
                    d.metadata.name.as_deref(),
                )]
            }
            Event::Rs(change) => {
                let (rs, gone) = match &change {
                    Change::Applied(rs) => (rs, false),
                    Change::Deleted(rs) => (rs, true),
                };
                let namespace = rs.metadata.namespace.clone().unwrap_or_default();
                let rs_key = key(Some(&namespace), rs.metadata.name.as_deref());
                let owner = controlling_deployment(&deployments, &namespace, rs);
                let previous = if gone {
                    owner_seen.remove(&rs_key).flatten()
                } else {
                    owner_seen.insert(rs_key, owner.clone()).flatten()
                };
                let mut keys: Vec<String> = previous.into_iter().collect();
                match owner {
                    Some(k) => keys.push(k),
                    None if !gone && get_controller_of(&rs.metadata).is_none() => {
                        keys.extend(deployments_selecting(&deployments, rs))
                    }
                    None => {}
                }
                keys.dedup();
                keys
            }
            Event::Pod(Change::Deleted(pod)) => {
                // Upstream's deletePod: a Recreate rollout waits for old pods to go.
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                get_controller_of(&pod.metadata)
                    .filter(|r| r.kind == "ReplicaSet")
                    .and_then(|r| replica_sets.get(&ObjectRef::new(&r.name).within(&namespace)))
                    .and_then(|rs| controlling_deployment(&deployments, &namespace, &rs))
                    .into_iter()
                    .collect()
            }
            Event::Pod(Change::Applied(_)) => Vec::new(),
        };
        for k in keys {
            if triggers.send(object_ref(&k)).is_err() {
                return;
            }
        }
    }
}

/// One sync's working state: the deployment as last written and its ReplicaSets as last
/// written, so that later steps decide from what earlier ones did.
struct Sync<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    rss: Vec<ReplicaSet>,
    reference: ObjectReference,
    key: String,
}

impl Sync<'_> {
    fn namespace(&self) -> String {
        self.d.metadata.namespace.clone().unwrap_or_default()
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace())
    }

    fn replica_set_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace())
    }

    fn find(&self, name: &str) -> Option<&ReplicaSet> {
        self.rss
            .iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
    }

    fn replace(&mut self, rs: ReplicaSet) {
        match self
            .rss
            .iter_mut()
            .find(|r| r.metadata.name == rs.metadata.name)
        {
            Some(slot) => *slot = rs,
            None => self.rss.push(rs),
        }
    }

    /// New (by name) and every old ReplicaSet.
    fn split(&self) -> (Option<String>, Vec<ReplicaSet>) {
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new = find_new_replica_set(&self.d, &all).and_then(|rs| rs.metadata.name.clone());
        let (_, old) = find_old_replica_sets(&self.d, &all);
        (new, old.into_iter().cloned().collect())
    }

    /// Writes the deployment's status (and annotations) through `/status`.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let mut d = self.d.clone();
        d.status = Some(status);
        let name = d.metadata.name.clone().unwrap_or_default();
        let written = self
            .deployments()
            .replace_status(&name, &PostParams::default(), &d)
            .await
            .map_err(api_error(format!("updating the status of {}", self.key)))?;
        self.d = written;
        Ok(())
    }

    /// Upstream's `getNewReplicaSet` (with `getAllReplicaSetsAndSyncRevision`): the new
    /// ReplicaSet annotated (and the deployment's revision with it), or created when
    /// `create` and there is none.
    async fn new_replica_set(&mut self, create: bool) -> Result<Option<ReplicaSet>, Error> {
        let (new_name, old) = self.split();
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let new_revision = max_revision(&old_refs) + 1;
        let now = Timestamp::now();
        if let Some(existing) = new_name.and_then(|n| self.find(&n).cloned()) {
            let mut rs = existing.clone();
            let annotated = set_new_replica_set_annotations(&self.d, &mut rs, new_revision, true);
            if annotated || rs.spec.min_ready_seconds != self.d.spec.min_ready_seconds {
                rs.spec.min_ready_seconds = self.d.spec.min_ready_seconds;
                let name = rs.metadata.name.clone().unwrap_or_default();
                let written = self
                    .replica_set_api()
                    .replace(&name, &PostParams::default(), &rs)
                    .await
                    .map_err(api_error(format!("updating ReplicaSet {name}")))?;
                self.replace(written.clone());
                return Ok(Some(written));
            }
            let revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let mut needs_update = self.set_revision(&revision);
            let mut status = self.d.status.clone().unwrap_or_default();
            if util::has_progress_deadline(&self.d)
                && util::get_condition(&status, PROGRESSING).is_none()
            {
                let message = format!(
                    "Found new replica set \"{}\"",
                    rs.metadata.name.as_deref().unwrap_or_default()
                );
                set_condition(
                    &mut status,
                    util::new_condition(PROGRESSING, "True", FOUND_NEW_RS_REASON, &message, now),
                );
                needs_update = true;
            }
            if needs_update {
                self.write_status(status).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }

        let mut rs = new_replica_set(&self.d, new_revision, 0);
        let mut all = old_refs.clone();
        all.push(&rs);
        let count = new_rs_new_replicas(&self.d, &all, &rs);
        rs.spec.replicas = Some(count);
        let name = rs.metadata.name.clone().unwrap_or_default();
        let created = match self
            .replica_set_api()
            .create(&PostParams::default(), &rs)
            .await
        {
            Ok(created) => {
                if count > 0 {
                    self.ctx.recorder.event(
                        &self.reference,
                        EventType::Normal,
                        SCALING_REPLICA_SET,
                        format!("Scaled up replica set {name} from 0 to {count}"),
                    );
                }
                Some(created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => None,
            Err(kube::Error::Api(s)) if is_namespace_terminating(&s) => {
                return Err(Error::Api {
                    what: format!("creating ReplicaSet {name}"),
                    source: kube::Error::Api(s),
                });
            }
            Err(e) => {
                let message = format!(
                    "Failed to create new replica set \"{name}\": {}",
                    message(&e)
                );
                if util::has_progress_deadline(&self.d) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut status,
                        util::new_condition(
                            PROGRESSING,
                            "False",
                            FAILED_RS_CREATE_REASON,
                            &message,
                            now,
                        ),
                    );
                    // The create's failure is the one to report.
                    let _ = self.write_status(status).await;
                }
                self.ctx.recorder.event(
                    &self.reference,
                    EventType::Warning,
                    FAILED_RS_CREATE_REASON,
                    message,
                );
                return Err(Error::Api {
                    what: format!("creating ReplicaSet {name}"),
                    source: e,
                });
            }
        };
        let already_exists = created.is_none();
        let created = match created {
            Some(rs) => rs,
            None => {
                // A slow cache, or a hash collision: the one there is ours only if we
                // control it and it has our template.
                let existing = self
                    .replica_set_api()
                    .get(&name)
                    .await
                    .map_err(api_error(format!("reading ReplicaSet {name}")))?;
                let ours = get_controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref())
                    && existing
                        .spec
                        .template
                        .as_ref()
                        .is_some_and(|t| util::equal_ignore_hash(&self.d.spec.template, t));
                if !ours {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    info!(controller = CONTROLLER, key = %self.key, replica_set = %name, "hash collision; collisionCount raised");
                    return Err(Error::HashCollision(name));
                }
                existing
            }
        };
        self.replace(created.clone());
        let mut needs_update = self.set_revision(&new_revision.to_string());
        let mut status = self.d.status.clone().unwrap_or_default();
        if !already_exists && util::has_progress_deadline(&self.d) {
            let message = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut status,
                util::new_condition(PROGRESSING, "True", NEW_REPLICA_SET_REASON, &message, now),
            );
            needs_update = true;
        }
        if needs_update {
            self.write_status(status).await?;
        }
        Ok(Some(created))
    }

    /// Upstream's `SetDeploymentRevision`.
    fn set_revision(&mut self, revision: &str) -> bool {
        let annotations = self
            .d
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        if annotations.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
            return false;
        }
        annotations.insert(REVISION_ANNOTATION.into(), revision.into());
        true
    }

    /// Upstream's `scaleReplicaSet`: the size and the replica annotations written; the
    /// event when the size changed. Whether it did.
    async fn scale(&mut self, name: &str, to: i32, operation: &str) -> Result<bool, Error> {
        let Some(rs) = self.find(name).cloned() else {
            return Ok(false);
        };
        let from = rs_replicas(&rs);
        let want = replicas(&self.d);
        let max = want + util::max_surge(&self.d);
        let mut updated = rs.clone();
        updated.spec.replicas = Some(to);
        let annotated = set_replicas_annotations(&mut updated, want, max);
        let annotations_changed = updated.metadata.annotations != rs.metadata.annotations;
        if from == to && !(annotated && annotations_changed) {
            return Ok(false);
        }
        let written = self
            .replica_set_api()
            .replace(name, &PostParams::default(), &updated)
            .await
            .map_err(api_error(format!("scaling ReplicaSet {name}")))?;
        self.replace(written);
        if from != to {
            self.ctx.recorder.event(
                &self.reference,
                EventType::Normal,
                SCALING_REPLICA_SET,
                format!("Scaled {operation} replica set {name} from {from} to {to}"),
            );
        }
        Ok(from != to)
    }

    async fn scale_by(&mut self, name: &str, to: i32) -> Result<bool, Error> {
        let from = self.find(name).map_or(0, rs_replicas);
        let operation = if from < to { "up" } else { "down" };
        self.scale(name, to, operation).await
    }

    /// Upstream's `cleanupDeployment`.
    async fn cleanup(&mut self) -> Result<(), Error> {
        let (_, old) = self.split();
        let old: Vec<&ReplicaSet> = old.iter().collect();
        for rs in util::replica_sets_to_clean_up(&self.d, &old) {
            let name = rs.metadata.name.clone().unwrap_or_default();
            debug!(controller = CONTROLLER, key = %self.key, replica_set = %name, "deleting old ReplicaSet");
            match self
                .replica_set_api()
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error(format!("deleting ReplicaSet {name}"))(e)),
            }
        }
        Ok(())
    }

    /// The status from the ReplicaSets (`calculateStatus`), or the rollout's
    /// (`syncRolloutStatus`), written when it changed. When to sync again.
    async fn sync_status(&mut self, rollout: bool) -> Result<Option<std::time::Duration>, Error> {
        let (new_name, _) = self.split();
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new = new_name.as_deref().and_then(|n| self.find(n));
        let now = Timestamp::now();
        let status = if rollout {
            sync::rollout_status(&self.d, &all, new, now)
        } else {
            util::calculate_status(&self.d, &all, new, now)
        };
        let current = self.d.status.clone().unwrap_or_default();
        if sync::status_eq(&current, &status) {
            return Ok(if rollout {
                sync::requeue_after(&self.d, &status, now)
            } else {
                None
            });
        }
        self.write_status(status).await?;
        Ok(None)
    }

    /// Upstream's `sync`: a paused deployment or a scaling event.
    async fn sync_scaling(&mut self) -> Result<Option<std::time::Duration>, Error> {
        self.new_replica_set(false).await?;
        let (new_name, old) = self.split();
        let new = new_name.as_deref().and_then(|n| self.find(n)).cloned();
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        for resize in sync::scale_plan(&self.d, new.as_ref(), &old_refs) {
            self.scale(&resize.name, resize.replicas, resize.operation)
                .await?;
        }
        if self.d.spec.paused == Some(true) {
            self.cleanup().await?;
        }
        self.sync_status(false).await
    }

    /// Upstream's `rolloutRolling`.
    async fn rollout_rolling(&mut self) -> Result<Option<std::time::Duration>, Error> {
        let Some(new) = self.new_replica_set(true).await? else {
            return self.sync_status(true).await;
        };
        let (_, old) = self.split();
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let steps = util::rolling_step(&self.d, &new, &old_refs);
        if steps.is_empty() {
            let status = self.d.status.clone().unwrap_or_default();
            if util::deployment_complete(&self.d, &status) {
                self.cleanup().await?;
            }
        }
        for (name, size) in steps {
            self.scale_by(&name, size).await?;
        }
        self.sync_status(true).await
    }

    /// Upstream's `rolloutRecreate`.
    async fn rollout_recreate(&mut self) -> Result<Option<std::time::Duration>, Error> {
        let new = self.new_replica_set(false).await?;
        let (_, old) = self.split();
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let namespace = self.namespace();
        let pods: Vec<Arc<Pod>> = self
            .ctx
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let running = sync::old_pods_running(new.as_ref(), &old_refs, &pod_refs);
        match util::recreate_step(&self.d, new.as_ref(), &old_refs, running) {
            RecreateStep::ScaleDownOld(names) => {
                for name in names {
                    self.scale(&name, 0, "down").await?;
                }
            }
            RecreateStep::WaitForOldPods => {}
            RecreateStep::ScaleUpNew(n) => {
                let new = match new {
                    Some(rs) => Some(rs),
                    None => self.new_replica_set(true).await?,
                };
                if let Some(rs) = new {
                    let name = rs.metadata.name.clone().unwrap_or_default();
                    self.scale_by(&name, n).await?;
                }
                self.cleanup_if_complete().await?;
            }
            RecreateStep::Done => self.cleanup_if_complete().await?,
        }
        self.sync_status(true).await
    }

    async fn cleanup_if_complete(&mut self) -> Result<(), Error> {
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup().await?;
        }
        Ok(())
    }
}

async fn reconcile(obj: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let d: Deployment = (*obj).clone();
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let key = key(Some(&namespace), Some(&name));
    let reference = record::object_reference(&d);
    let mut sync = Sync {
        ctx: &ctx,
        d,
        rss: Vec::new(),
        reference,
        key: key.clone(),
    };

    if sync.d.spec.selector == MetaSelector::default() {
        ctx.recorder.event(
            &sync.reference,
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        let mut status = sync.d.status.clone().unwrap_or_default();
        if status.observed_generation < sync.d.metadata.generation {
            status.observed_generation = sync.d.metadata.generation;
            sync.write_status(status).await?;
        }
        return Ok(Action::await_change());
    }
    let selector = match LabelSelector::from_label_selector(Some(&sync.d.spec.selector)) {
        Ok(s) => s,
        Err(e) => {
            warn!(controller = CONTROLLER, %key, error = %e, "error converting selector");
            return Ok(Action::await_change());
        }
    };

    // Upstream's getReplicaSetsForDeployment.
    let candidates: Vec<Arc<ReplicaSet>> = ctx
        .replica_sets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let manager = ControllerRefManager::new(
        &sync.d.metadata,
        "apps/v1",
        "Deployment",
        recheck_deletion_timestamp(sync.deployments(), name.clone(), uid),
    );
    let empty = Default::default();
    let claimed = manager
        .claim(&ctx.client, candidates, |rs: &ReplicaSet| {
            selector.matches(rs.metadata.labels.as_ref().unwrap_or(&empty))
        })
        .await?;
    sync.rss = claimed.iter().map(|rs| (**rs).clone()).collect();

    let requeue = if sync.d.metadata.deletion_timestamp.is_some() {
        sync.new_replica_set(false).await?;
        sync.sync_status(false).await?
    } else {
        if let Some(c) = sync::paused_condition(&sync.d, Timestamp::now()) {
            let mut status = sync.d.status.clone().unwrap_or_default();
            set_condition(&mut status, c);
            sync.write_status(status).await?;
        }
        let all: Vec<&ReplicaSet> = sync.rss.iter().collect();
        let scaling = {
            // isScalingEvent looks at the new ReplicaSet as it is and the old ones.
            sync::is_scaling_event(&sync.d, &all)
        };
        if sync.d.spec.paused == Some(true) || scaling {
            sync.sync_scaling().await?
        } else if util::is_rolling_update(&sync.d) {
            sync.rollout_rolling().await?
        } else {
            sync.rollout_recreate().await?
        }
    };
    ctx.backoff.forget(&key);
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

fn error_policy(obj: Arc<Deployment>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = key(
        obj.metadata.namespace.as_deref(),
        obj.metadata.name.as_deref(),
    );
    let delay = ctx.backoff.next(&key);
    match error {
        Error::Api {
            source: kube::Error::Api(s),
            ..
        } if s.code == 409 || s.code == 404 => {
            // A newer object (the next event syncs it again) or one just deleted.
            debug!(controller = CONTROLLER, %key, error = %error, retry_in = ?delay, "sync raced a write")
        }
        _ => warn!(controller = CONTROLLER, %key, error = %error, retry_in = ?delay, "sync failed"),
    }
    Action::requeue(delay)
}

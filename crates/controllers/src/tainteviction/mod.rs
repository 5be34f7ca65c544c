//! Upstream's taint-eviction controller (`pkg/controller/tainteviction`, kube-controller-
//! manager's `taint-eviction-controller`): deletes the pods of nodes tainted `NoExecute`
//! that do not tolerate the taints, at once or when their `tolerationSeconds` run out.
//!
//! ```text
//!  node change ─▶ its NoExecute taints remembered ─▶ every pod on it decided
//!  pod change  ─▶ that pod decided against its node's remembered taints
//!     untolerated ─────────────────▶ deletion due now
//!     tolerated for s seconds ─────▶ due at earliest taint timeAdded + s
//!     tolerated forever / no taint ▶ pending deletion cancelled
//!                                    (event TaintManagerEviction "Cancelling deletion of Pod ns/name")
//!  due ─▶ event TaintManagerEviction "Marking for deletion Pod ns/name"
//!      ─▶ PATCH status: DisruptionTarget=True (DeletionByTaintManager)
//!      ─▶ DELETE (default grace period); 5 tries 10 ms apart; on failure it may be
//!         scheduled again
//!  pod deleted ─▶ pending deletion cancelled (with the event)
//! ```
//!
//! Owns: the pending deletions. Does not own: the taints (the node lifecycle controller's,
//! or anyone's), finishing a deleted pod (its node's agent; a pod on an unreachable node
//! stays `Terminating` until the node comes back or is deleted, as upstream).
//!
//! Pure parts: [`taint_eviction`] (decisions), [`timed_workers`] (the schedule).

pub mod taint_eviction;
pub mod timed_workers;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::Client;
use record::{EventType, Recorder};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controller_utils::pod_control::message;
use crate::informer::{Change, Informer};
use taint_eviction::Decision;
use timed_workers::TimedWorkers;

/// The events' source (kube-controller-manager's controller name).
pub const COMPONENT: &str = "taint-eviction-controller";
/// Tries at patching and deleting a pod (upstream's `retries`).
const RETRIES: usize = 5;

/// The controller, on the shared pod and node informers (call before they run).
pub fn controller(
    client: Client,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (node_changes, node_lagged) = nodes.subscribe();
    let synced: [futures::future::BoxFuture<'static, bool>; 2] =
        [pods.synced().boxed(), nodes.synced().boxed()];
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let mut tc = TaintEviction {
        client,
        pod_store: pods.store(),
        node_store: nodes.store(),
        recorder,
        tainted: HashMap::new(),
        works: TimedWorkers::default(),
    };
    async move {
        let sink = tokio::spawn(sink.run(shutdown.clone()));
        let ready = crate::informer::all_synced(synced, &shutdown).await;
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        if ready {
            info!(controller = COMPONENT, "starting controller");
            tc.resync();
            let mut pod_changes = std::pin::pin!(pod_changes);
            let mut node_changes = std::pin::pin!(node_changes);
            let mut lagged = std::pin::pin!(futures::stream::select(pod_lagged, node_lagged));
            loop {
                let wait = tc
                    .works
                    .next_due()
                    .map(|at| {
                        Duration::try_from(at.duration_since(Timestamp::now()))
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => tc.fire_due(&failed_tx),
                    Some(key) = failed_rx.recv() => {
                        // Upstream forgets a failed work, so it can be scheduled again.
                        tc.works.cancel(&key);
                    }
                    Some(change) = node_changes.next() => match change {
                        Change::Applied(node) => tc.handle_node_update(&node),
                        Change::Deleted(node) => {
                            tc.tainted.remove(node.metadata.name.as_deref().unwrap_or_default());
                        }
                    },
                    Some(change) = pod_changes.next() => match change {
                        Change::Applied(pod) => tc.handle_pod_update(&pod),
                        Change::Deleted(pod) => tc.cancel_with_event(&key(&pod)),
                    },
                    Some(()) = lagged.next() => tc.resync(),
                }
            }
        }
        if let Err(e) = sink.await {
            warn!(controller = COMPONENT, error = %e, "event recorder panicked");
        }
    }
}

struct TaintEviction {
    client: Client,
    pod_store: Store<Pod>,
    node_store: Store<Node>,
    recorder: Recorder,
    /// The NoExecute taints of the nodes that have some (upstream's `taintedNodes`).
    tainted: HashMap<String, Vec<Taint>>,
    works: TimedWorkers,
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn pod_reference(key: &str) -> ObjectReference {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

impl TaintEviction {
    /// Every node and pod again (start, and after missing changes).
    fn resync(&mut self) {
        for node in self.node_store.state() {
            self.handle_node_update(&node);
        }
    }

    fn cancel_with_event(&mut self, key: &str) {
        if self.works.cancel(key) {
            info!(controller = COMPONENT, pod = %key, "cancelling pod deletion");
            self.recorder.event(
                &pod_reference(key),
                EventType::Normal,
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {key}"),
            );
        }
    }

    /// Upstream's `handleNodeUpdate`.
    fn handle_node_update(&mut self, node: &Node) {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let taints = taint_eviction::no_execute_taints(node);
        if taints.is_empty() {
            self.tainted.remove(&node_name);
        } else {
            self.tainted.insert(node_name.clone(), taints.clone());
        }
        let pods: Vec<Arc<Pod>> = self
            .pod_store
            .state()
            .into_iter()
            .filter(|p| node_name_is(p, &node_name))
            .collect();
        let now = Timestamp::now();
        for pod in pods {
            self.process_pod_on_node(&pod, &taints, now);
        }
    }

    /// Upstream's `handlePodUpdate`.
    fn handle_pod_update(&mut self, pod: &Pod) {
        let Some(node) = node_name(pod) else {
            return;
        };
        let Some(taints) = self.tainted.get(node).cloned() else {
            return;
        };
        self.process_pod_on_node(pod, &taints, Timestamp::now());
    }

    /// Upstream's `processPodOnNode`.
    fn process_pod_on_node(&mut self, pod: &Pod, taints: &[Taint], now: Timestamp) {
        let key = key(pod);
        // A pod already being deleted is not deleted again.
        if pod.metadata.deletion_timestamp.is_some() && self.works.get(&key).is_none() {
            return;
        }
        let tolerations = taint_eviction::tolerations(pod);
        match taint_eviction::decide(tolerations, taints, self.works.get(&key), now) {
            Decision::Keep => {}
            Decision::Cancel => self.cancel_with_event(&key),
            Decision::Schedule {
                created_at,
                fire_at,
            } => {
                self.cancel_with_event(&key);
                debug!(controller = COMPONENT, pod = %key, %fire_at, "scheduling pod deletion");
                self.works.schedule(&key, created_at, fire_at);
            }
        }
    }

    /// Deletes the pods whose time came, each in its own task.
    fn fire_due(&mut self, failed: &tokio::sync::mpsc::UnboundedSender<String>) {
        for key in self.works.take_due(Timestamp::now()) {
            info!(controller = COMPONENT, pod = %key, "deleting pod");
            self.recorder.event(
                &pod_reference(&key),
                EventType::Normal,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {key}"),
            );
            let (client, failed) = (self.client.clone(), failed.clone());
            tokio::spawn(async move {
                let mut last = None;
                for _ in 0..RETRIES {
                    match add_condition_and_delete_pod(&client, &key).await {
                        Ok(()) => return,
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let Some(e) = last {
                    warn!(controller = COMPONENT, pod = %key, error = %message(&e), "deleting pod");
                }
                let _ = failed.send(key);
            });
        }
    }
}

fn node_name_is(pod: &Pod, node: &str) -> bool {
    node_name(pod) == Some(node)
}

/// Upstream's `addConditionAndDeletePod`: a fresh read, the `DisruptionTarget` condition
/// through a status patch, then the delete. A pod already gone is done.
async fn add_condition_and_delete_pod(client: &Client, key: &str) -> Result<(), kube::Error> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Some(pod) = api.get_opt(name).await? else {
        return Ok(());
    };
    if let Some(patch) = taint_eviction::disruption_target_patch(&pod, Timestamp::now()) {
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

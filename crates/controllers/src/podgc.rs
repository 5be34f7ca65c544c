//! Upstream's pod garbage collector (`pkg/controller/podgc`), its orphaned-pods part: pods
//! bound to a node that no longer exists are marked `Failed` (with the `DisruptionTarget`
//! condition, reason `DeletionByPodGC`) and deleted at once, since no kubelet is left to
//! finish them.
//!
//! ```text
//!  every 20 s (gcCheckPeriod), once the pod and node caches are synced:
//!    pod bound to a node missing from the cache ─▶ that node quarantined for 40 s
//!    quarantine over, node still missing from the cache ─▶ GET node: 404 ─▶ deleted
//!    every pod bound to a deleted node ─▶ PATCH status (Failed, DisruptionTarget)
//!                                      ─▶ DELETE with gracePeriodSeconds 0
//! ```
//!
//! Does not own: the terminated-pod threshold, unscheduled terminating pods and the
//! out-of-service taint (upstream's other podgc passes, not implemented).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::Client;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controller_utils::pod_control::message;
use crate::informer::Informer;

/// How often the collector looks (upstream's `gcCheckPeriod`).
pub const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
/// How long a node must stay missing before its pods go (upstream's `quarantineTime`): a
/// node cache lagging behind a pod cache must not cost pods.
pub const QUARANTINE_TIME: Duration = Duration::from_secs(40);

/// The nodes waiting out their quarantine (upstream's delaying `nodeQueue`).
#[derive(Debug, Default)]
pub struct Quarantine {
    due: BTreeMap<String, Instant>,
}

impl Quarantine {
    /// Queues `node` to be looked at after the quarantine; a node already queued keeps its
    /// earlier time.
    pub fn add(&mut self, node: &str, now: Instant) {
        self.due
            .entry(node.to_string())
            .or_insert(now + QUARANTINE_TIME);
    }

    /// Takes the nodes whose quarantine is over.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in &due {
            self.due.remove(node);
        }
        due
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The nodes pods are bound to that the node cache does not have.
pub fn missing_nodes(pods: &[Arc<Pod>], existing: &BTreeSet<String>) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| node_name(p))
        .filter(|n| !existing.contains(*n))
        .map(str::to_string)
        .collect()
}

/// The pods bound to `deleted` nodes.
pub fn orphaned_pods<'a>(pods: &'a [Arc<Pod>], deleted: &BTreeSet<String>) -> Vec<&'a Arc<Pod>> {
    pods.iter()
        .filter(|p| node_name(p).is_some_and(|n| deleted.contains(n)))
        .collect()
}

/// The status patch upstream applies before deleting an orphan that has not finished.
pub fn failed_status_patch(now: Timestamp) -> serde_json::Value {
    json!({
        "status": {
            "phase": "Failed",
            "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": now.to_string(),
            }],
        }
    })
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The collector, on the shared pod and node informers (call before they run).
pub fn controller(
    client: Client,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (pod_store, node_store) = (pods.store(), nodes.store());
    let (pods_synced, nodes_synced) = (pods.synced(), nodes.synced());
    async move {
        let synced = async { pods_synced.await && nodes_synced.await };
        let ready = tokio::select! {
            ready = synced => ready,
            _ = shutdown.cancelled() => false,
        };
        if !ready {
            return;
        }
        info!(controller = "podgc", "starting controller");
        let mut quarantine = Quarantine::default();
        let mut interval = tokio::time::interval(GC_CHECK_PERIOD);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            gc_orphaned(&client, &pod_store, &node_store, &mut quarantine).await;
        }
    }
}

/// Upstream's `gcOrphaned`.
async fn gc_orphaned(
    client: &Client,
    pod_store: &Store<Pod>,
    node_store: &Store<Node>,
    quarantine: &mut Quarantine,
) {
    let pods = pod_store.state();
    let existing: BTreeSet<String> = node_store
        .state()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let now = Instant::now();
    for node in missing_nodes(&pods, &existing) {
        quarantine.add(&node, now);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let mut deleted = BTreeSet::new();
    for node in quarantine.take_due(now) {
        if existing.contains(&node) {
            continue;
        }
        match nodes.get_opt(&node).await {
            Ok(None) => {
                deleted.insert(node);
            }
            Ok(Some(_)) => {}
            Err(e) => {
                warn!(controller = "podgc", %node, error = %message(&e), "error while getting node");
                quarantine.add(&node, now);
            }
        }
    }
    for pod in orphaned_pods(&pods, &deleted) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        info!(controller = "podgc", pod = %format!("{namespace}/{name}"), node = node_name(pod).unwrap_or_default(), "found orphaned pod assigned to the node, deleting");
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        if !finished(pod) {
            let patch = failed_status_patch(Timestamp::now());
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    warn!(controller = "podgc", pod = %name, error = %message(&e), "marking orphaned pod failed");
                    continue;
                }
            }
        }
        match api
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {
                info!(controller = "podgc", pod = %format!("{namespace}/{name}"), "forced deletion of orphaned pod succeeded")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                debug!(controller = "podgc", pod = %name, error = %message(&e), "deleting orphaned pod")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, node: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..PodSpec::default()
            }),
            status: None,
        })
    }

    #[test]
    fn missing_and_orphaned() {
        let pods = vec![
            pod("a", Some("n1")),
            pod("b", Some("gone")),
            pod("c", None),
            pod("d", Some("gone")),
        ];
        let existing: BTreeSet<String> = ["n1".to_string()].into();
        let missing = missing_nodes(&pods, &existing);
        assert_eq!(missing, ["gone".to_string()].into());
        let names: Vec<_> = orphaned_pods(&pods, &missing)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["b", "d"]);
        assert!(orphaned_pods(&pods, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn quarantine_waits_and_keeps_the_first_time() {
        let mut q = Quarantine::default();
        let t0 = Instant::now();
        q.add("n", t0);
        q.add("n", t0 + Duration::from_secs(30));
        assert!(q.take_due(t0 + Duration::from_secs(39)).is_empty());
        assert_eq!(q.take_due(t0 + QUARANTINE_TIME), ["n"]);
        assert!(q.take_due(t0 + Duration::from_secs(100)).is_empty());
    }

    #[test]
    fn failed_patch_has_upstreams_condition() {
        let p = failed_status_patch(Timestamp::UNIX_EPOCH);
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(p["status"]["conditions"][0]["reason"], "DeletionByPodGC");
        assert_eq!(
            p["status"]["conditions"][0]["message"],
            "PodGC: node no longer exists"
        );
    }
}

//! Upstream's node lifecycle controller (`pkg/controller/nodelifecycle`): watches each
//! node's heartbeats (its Lease in `kube-node-lease` and its Ready condition), declares a
//! node whose kubelet went quiet `Unknown`, marks its pods not Ready, and taints nodes after
//! their conditions — `NoExecute` `unreachable`/`not-ready` (rate limited per zone; the
//! [`crate::tainteviction`] controller evicts by them) and `NoSchedule` per condition and
//! for `spec.unschedulable` (TaintNodesByCondition).
//!
//! ```text
//!  t=0        agent renews its Lease every 10 s ─▶ probe = now (controller's clock)
//!  t=kill     renewals stop
//!  t≤kill+grace+period   monitor pass (every --node-monitor-period, 5 s):
//!             now > probe + --node-monitor-grace-period (40 s)
//!             ─▶ Ready/MemoryPressure/DiskPressure/PIDPressure := Unknown
//!                (NodeStatusUnknown, "Kubelet stopped posting node status.")
//!             ─▶ event NodeNotReady on the node; every pod on it Ready=False (event
//!                NodeNotReady "Node is not ready" on each)
//!             ─▶ node change: NoSchedule unreachable taint (TaintNodesByCondition)
//!  next pass  observed Ready Unknown ─▶ node queued in its zone's tainting queue
//!  ≤100 ms    queue pass (rate limited, --node-eviction-rate) ─▶ unreachable:NoExecute
//!             (timeAdded now; a not-ready:NoExecute is swapped for it in the same write)
//!             ─▶ taint-eviction controller deletes pods as their tolerations run out
//!  t=back     agent posts Ready=True, renews its Lease ─▶ next pass: both NoExecute
//!             taints removed, node off the queue; NoSchedule taints follow the conditions
//!  never posted a Ready condition: the same after --node-startup-grace-period (60 s)
//!             from the node's creation, reason NodeStatusNeverUpdated
//! ```
//!
//! Owns: the node health map, the per-zone tainting queues and zone states, the writes of
//! node status (Unknown conditions), node taints it manages and pods' Ready condition.
//! Does not own: evicting pods (the taint-eviction controller), the conditions the agent
//! reports.
//!
//! Pure parts: [`health`] (`tryUpdateNodeHealth`), [`taints`] (which taints to add and
//! remove), [`zone`] (zone states and rates), [`scheduler`] (the rate-limited queue),
//! [`pods`] (`MarkPodsNotReady`'s condition); this file is the I/O shell.

pub mod health;
pub mod pods;
pub mod scheduler;
pub mod taints;
pub mod zone;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use record::{EventType, Recorder};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controller_utils::pod_control::message;
use crate::informer::{Change, Informer};
use health::{HealthUpdate, NodeHealth, READY};
use scheduler::{Outcome, RateLimitedTimedQueue, NODE_EVICTION_PERIOD};
use taints::EvictionAction;
use zone::{Rates, ZoneState};

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Attempts at a node status write before the node waits for the next pass (upstream's
/// `nodeStatusUpdateRetry`).
const NODE_STATUS_UPDATE_RETRY: usize = 5;
/// Attempts at a taint write that meets conflicts.
const TAINT_UPDATE_RETRY: usize = 5;
/// The events' source (`node-controller`, as upstream's recorder).
pub const COMPONENT: &str = "node-controller";

/// kube-controller-manager's node lifecycle flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--node-monitor-period`.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`.
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate` (nodes tainted per second per zone).
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate`.
    pub secondary_node_eviction_rate: f64,
    /// `--large-cluster-size-threshold`.
    pub large_cluster_size_threshold: usize,
    /// `--unhealthy-zone-threshold`.
    pub unhealthy_zone_threshold: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

impl Config {
    fn rates(&self) -> Rates {
        Rates {
            eviction: self.node_eviction_rate,
            secondary: self.secondary_node_eviction_rate,
            large_cluster_threshold: self.large_cluster_size_threshold,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
        }
    }
}

/// The controller, on the shared node, Lease (`kube-node-lease` only) and pod informers
/// (call before they run).
pub fn controller(
    client: Client,
    config: Config,
    nodes: &Informer<Node>,
    leases: &Informer<Lease>,
    pods: &Informer<Pod>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (node_changes, node_lagged) = nodes.subscribe();
    let (pod_changes, _) = pods.subscribe();
    let synced: [futures::future::BoxFuture<'static, bool>; 3] = [
        nodes.synced().boxed(),
        leases.synced().boxed(),
        pods.synced().boxed(),
    ];
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    let mut nlc = NodeLifecycle {
        nodes: Api::all(client.clone()),
        client,
        config,
        node_store: nodes.store(),
        lease_store: leases.store(),
        pod_store: pods.store(),
        recorder,
        health: HashMap::new(),
        known: BTreeMap::new(),
        zone_states: BTreeMap::new(),
        tainters: BTreeMap::new(),
        nodes_to_retry: HashSet::new(),
    };
    async move {
        let sink = tokio::spawn(sink.run(shutdown.clone()));
        let ready = crate::informer::all_synced(synced, &shutdown).await;
        if ready {
            info!(controller = COMPONENT, "starting controller");
            let mut monitor = tokio::time::interval(nlc.config.node_monitor_period);
            monitor.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut eviction = tokio::time::interval(NODE_EVICTION_PERIOD);
            eviction.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut node_changes = std::pin::pin!(node_changes);
            let mut node_lagged = std::pin::pin!(node_lagged);
            let mut pod_changes = std::pin::pin!(pod_changes);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = monitor.tick() => nlc.monitor_node_health().await,
                    _ = eviction.tick() => nlc.do_no_execute_tainting_pass().await,
                    Some(change) = node_changes.next() => match change {
                        Change::Applied(node) => nlc.do_no_schedule_tainting_pass(&node).await,
                        Change::Deleted(node) => nlc.forget(&node),
                    },
                    Some(()) = node_lagged.next() => {
                        for node in nlc.node_store.state() {
                            nlc.do_no_schedule_tainting_pass(&node).await;
                        }
                    }
                    Some(change) = pod_changes.next() => {
                        if let Change::Applied(pod) = change {
                            nlc.process_pod(&pod).await;
                        }
                    }
                }
            }
        }
        if let Err(e) = sink.await {
            warn!(controller = COMPONENT, error = %e, "event recorder panicked");
        }
    }
}

struct NodeLifecycle {
    client: Client,
    nodes: Api<Node>,
    config: Config,
    node_store: Store<Node>,
    lease_store: Store<Lease>,
    pod_store: Store<Pod>,
    recorder: Recorder,
    health: HashMap<String, NodeHealth>,
    /// Nodes seen so far, by name, with their uid (upstream's `knownNodeSet`).
    known: BTreeMap<String, String>,
    zone_states: BTreeMap<String, ZoneState>,
    /// Per zone, the nodes waiting for their NoExecute taint.
    tainters: BTreeMap<String, RateLimitedTimedQueue>,
    /// Nodes whose pods could not all be marked not Ready.
    nodes_to_retry: HashSet<String>,
}

fn name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

fn node_reference(name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        ..ObjectReference::default()
    }
}

impl NodeLifecycle {
    /// Upstream's `monitorNodeHealth`: one pass over every node.
    async fn monitor_node_health(&mut self) {
        let nodes = self.node_store.state();
        self.classify_nodes(&nodes);
        let mut zone_conditions: BTreeMap<
            String,
            Vec<Option<k8s_openapi::api::core::v1::NodeCondition>>,
        > = BTreeMap::new();
        for cached in &nodes {
            let node_name = name(cached);
            let Some((node, update)) = self.update_node_health(cached).await else {
                continue;
            };
            if !zone::excluded_from_disruption(&node) {
                zone_conditions
                    .entry(zone::zone_key(&node))
                    .or_default()
                    .push(update.current_ready.clone());
            }
            let Some(current) = &update.current_ready else {
                self.nodes_to_retry.remove(&node_name);
                continue;
            };
            self.process_taint_base_eviction(&node, &update.observed_ready)
                .await;
            let needs_retry = self.nodes_to_retry.contains(&node_name);
            let became_not_ready =
                current.status != "True" && update.observed_ready.status == "True";
            if became_not_ready {
                let uid = node.metadata.name.clone().unwrap_or_default();
                // Upstream's `RecordNodeStatusChange` names the node as its own uid.
                self.recorder.event(
                    &node_reference(&node_name, &uid),
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {node_name} status is now: NodeNotReady"),
                );
            }
            if became_not_ready || (needs_retry && update.observed_ready.status != "True") {
                let pods = self.pods_on(&node_name);
                if !self.mark_pods_not_ready(&pods, &node_name).await {
                    self.nodes_to_retry.insert(node_name);
                    continue;
                }
            }
            self.nodes_to_retry.remove(&node_name);
        }
        self.handle_disruption(&zone_conditions, &nodes).await;
    }

    /// Upstream's `classifyNodes` and what `monitorNodeHealth` does with its result: events
    /// for nodes first seen and gone, a tainting queue per new zone.
    fn classify_nodes(&mut self, nodes: &[Arc<Node>]) {
        let present: HashSet<String> = nodes.iter().map(|n| name(n)).collect();
        for node in nodes {
            let node_name = name(node);
            let zone = zone::zone_key(node);
            if !self.tainters.contains_key(&zone) {
                self.zone_states.insert(zone.clone(), ZoneState::Initial);
                self.tainters.insert(
                    zone,
                    RateLimitedTimedQueue::new(self.config.node_eviction_rate),
                );
            }
            if !self.known.contains_key(&node_name) {
                let uid = node.metadata.uid.clone().unwrap_or_default();
                info!(controller = COMPONENT, node = %node_name, "controller observed a new node");
                self.recorder.event(
                    &node_reference(&node_name, &uid),
                    EventType::Normal,
                    "RegisteredNode",
                    format!("Registered Node {node_name} in Controller"),
                );
                self.known.insert(node_name, uid);
            }
        }
        let gone: Vec<(String, String)> = self
            .known
            .iter()
            .filter(|(n, _)| !present.contains(*n))
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        for (node_name, uid) in gone {
            info!(controller = COMPONENT, node = %node_name, "controller detected that node does not exist; removing it");
            self.recorder.event(
                &node_reference(&node_name, &uid),
                EventType::Normal,
                "RemovingNode",
                format!("Removing Node {node_name} from Controller"),
            );
            self.known.remove(&node_name);
            self.health.remove(&node_name);
        }
    }

    fn forget(&mut self, node: &Node) {
        let node_name = name(node);
        self.health.remove(&node_name);
        self.nodes_to_retry.remove(&node_name);
        for queue in self.tainters.values_mut() {
            queue.remove(&node_name);
        }
    }

    /// `tryUpdateNodeHealth` with upstream's retries: a write refused (the agent wrote the
    /// node meanwhile) is tried again on a fresh read, up to 5 times. Returns the node as
    /// last read and the outcome; None when the node could not be judged this pass.
    async fn update_node_health(&mut self, cached: &Node) -> Option<(Node, HealthUpdate)> {
        let node_name = name(cached);
        let mut node = cached.clone();
        for attempt in 0..NODE_STATUS_UPDATE_RETRY {
            let now = Timestamp::now();
            let update = health::try_update_node_health(
                &node,
                self.lease_renew_time(&node_name),
                self.health.get(&node_name),
                now,
                self.config.node_monitor_grace_period,
                self.config.node_startup_grace_period,
            );
            self.health.insert(node_name.clone(), update.health.clone());
            let Some(status) = &update.new_status else {
                return Some((node, update));
            };
            let mut written = node.clone();
            written.status = Some(status.clone());
            match self
                .nodes
                .replace_status(&node_name, &PostParams::default(), &written)
                .await
            {
                Ok(_) => {
                    info!(controller = COMPONENT, node = %node_name, "node stopped posting status; its conditions are now Unknown");
                    self.health
                        .insert(node_name.clone(), health::written(&update, now));
                    return Some((written, update));
                }
                Err(e) => {
                    debug!(controller = COMPONENT, node = %node_name, attempt, error = %message(&e), "updating node status");
                    match self.nodes.get_opt(&node_name).await {
                        Ok(Some(fresh)) => node = fresh,
                        Ok(None) => return None,
                        Err(e) => {
                            warn!(controller = COMPONENT, node = %node_name, error = %message(&e), "failed while getting a node to retry updating its health");
                            return None;
                        }
                    }
                }
            }
        }
        warn!(controller = COMPONENT, node = %node_name, "update health of node failed; skipping it this pass");
        None
    }

    fn lease_renew_time(&self, node_name: &str) -> Option<Timestamp> {
        let lease = self
            .lease_store
            .get(&ObjectRef::new(node_name).within(NODE_LEASE_NAMESPACE))?;
        lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
    }

    fn pods_on(&self, node_name: &str) -> Vec<Arc<Pod>> {
        self.pod_store
            .state()
            .into_iter()
            .filter(|p| pods::node_name(p) == Some(node_name))
            .collect()
    }

    /// Upstream's `processTaintBaseEviction`.
    async fn process_taint_base_eviction(
        &mut self,
        node: &Node,
        observed: &k8s_openapi::api::core::v1::NodeCondition,
    ) {
        let node_name = name(node);
        let zone = zone::zone_key(node);
        match taints::taint_base_eviction(node, observed) {
            None => {}
            Some(EvictionAction::Swap { add, remove }) => {
                info!(controller = COMPONENT, node = %node_name, taint = %add.key, "swapping the node's NoExecute taint");
                self.update_taints(node, &[add], &[remove]).await;
            }
            Some(EvictionAction::Queue { forget_first }) => {
                let now = Timestamp::now();
                if let Some(queue) = self.tainters.get_mut(&zone) {
                    if forget_first {
                        queue.remove(&node_name);
                    }
                    let uid = node.metadata.uid.clone().unwrap_or_default();
                    if queue.add(&node_name, &uid, now) {
                        info!(controller = COMPONENT, node = %node_name, ready = %observed.status, "node is not ready; adding it to the taint queue");
                    }
                }
            }
            Some(EvictionAction::MarkReachable) => {
                self.mark_node_as_reachable(node).await;
            }
        }
    }

    /// Upstream's `markNodeAsReachable`: both NoExecute taints off, the node off its queue.
    async fn mark_node_as_reachable(&mut self, node: &Node) -> bool {
        let removed = self
            .update_taints(
                node,
                &[],
                &[
                    taints::unreachable_no_execute(),
                    taints::not_ready_no_execute(),
                ],
            )
            .await;
        if let Some(queue) = self.tainters.get_mut(&zone::zone_key(node)) {
            queue.remove(&name(node));
        }
        removed
    }

    /// Upstream's `doNoExecuteTaintingPass`: each zone's queue, as its limiter allows.
    async fn do_no_execute_tainting_pass(&mut self) {
        let now = Timestamp::now();
        let mut swaps: Vec<(String, Arc<Node>, Taint, Taint)> = Vec::new();
        let store = self.node_store.clone();
        for (zone, queue) in self.tainters.iter_mut() {
            if queue.is_empty() {
                continue;
            }
            queue.try_process(now, |value| {
                let Some(node) = store.get(&ObjectRef::new(&value.value)) else {
                    return Outcome::Done;
                };
                let Some(ready) = node
                    .status
                    .as_ref()
                    .and_then(|s| health::condition(s, READY))
                else {
                    return Outcome::Retry(Duration::from_millis(50));
                };
                match taints::no_execute_taint_for(ready) {
                    Some((add, remove)) => {
                        swaps.push((zone.clone(), node.clone(), add, remove));
                        Outcome::Done
                    }
                    None => Outcome::Done,
                }
            });
        }
        for (zone, node, add, remove) in swaps {
            info!(controller = COMPONENT, node = %name(&node), taint = %add.key, "tainting node NoExecute");
            if !self.update_taints(&node, &[add], &[remove]).await {
                // Queued again, to be retried as the limiter allows.
                if let Some(queue) = self.tainters.get_mut(&zone) {
                    queue.remove(&name(&node));
                    let uid = node.metadata.uid.clone().unwrap_or_default();
                    queue.add(&name(&node), &uid, Timestamp::now());
                }
            }
        }
    }

    /// Upstream's `doNoScheduleTaintingPass` for one node.
    async fn do_no_schedule_tainting_pass(&mut self, node: &Node) {
        let (add, remove) = taints::no_schedule_diff(node);
        if add.is_empty() && remove.is_empty() {
            return;
        }
        self.update_taints(node, &add, &remove).await;
    }

    /// Adds and removes taints in one write (a fresh read, then a PUT with its
    /// resourceVersion, retried on conflict); nothing is written when the cached node
    /// already agrees. Whether the node now has them.
    async fn update_taints(&self, cached: &Node, add: &[Taint], remove: &[Taint]) -> bool {
        let node_name = name(cached);
        if taints::swap(taints::node_taints(cached), add, remove, Timestamp::now()).is_none() {
            return true;
        }
        for _ in 0..TAINT_UPDATE_RETRY {
            let mut node = match self.nodes.get_opt(&node_name).await {
                Ok(Some(n)) => n,
                Ok(None) => return false,
                Err(e) => {
                    warn!(controller = COMPONENT, node = %node_name, error = %message(&e), "reading node to update its taints");
                    return false;
                }
            };
            let Some(new) = taints::swap(taints::node_taints(&node), add, remove, Timestamp::now())
            else {
                return true;
            };
            node.spec.get_or_insert_with(Default::default).taints = Some(new);
            match self
                .nodes
                .replace(&node_name, &PostParams::default(), &node)
                .await
            {
                Ok(_) => return true,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => {
                    warn!(controller = COMPONENT, node = %node_name, error = %message(&e), "updating node taints");
                    return false;
                }
            }
        }
        false
    }

    /// Upstream's `MarkPodsNotReady`: whether every pod was marked (or is gone).
    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], node_name: &str) -> bool {
        let mut ok = true;
        for pod in pods {
            if pods::node_name(pod) != Some(node_name) {
                continue;
            }
            let Some(status) = pods::not_ready_status(pod, Timestamp::now()) else {
                continue;
            };
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let mut updated = (**pod).clone();
            updated.status = Some(status);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            match api
                .replace_status(&pod_name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {
                    debug!(controller = COMPONENT, pod = %format!("{namespace}/{pod_name}"), "updated ready status of pod to false");
                    self.recorder.event(
                        &record::object_reference(&**pod),
                        EventType::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                    );
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    warn!(controller = COMPONENT, pod = %format!("{namespace}/{pod_name}"), error = %message(&e), "failed to update status for pod");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Upstream's `processPod`: a pod changed on a node whose Ready condition is not True
    /// is marked not Ready.
    async fn process_pod(&mut self, pod: &Arc<Pod>) {
        let Some(node_name) = pods::node_name(pod) else {
            return;
        };
        let Some(health) = self.health.get(node_name) else {
            return;
        };
        let Some(ready) = health::condition(&health.status, READY) else {
            return;
        };
        if ready.status == "True" || !pods::is_ready(pod) {
            return;
        }
        let node_name = node_name.to_string();
        if !self
            .mark_pods_not_ready(std::slice::from_ref(pod), &node_name)
            .await
        {
            self.nodes_to_retry.insert(node_name);
        }
    }

    /// Upstream's `handleDisruption`, applied.
    async fn handle_disruption(
        &mut self,
        zones: &BTreeMap<String, Vec<Option<k8s_openapi::api::core::v1::NodeCondition>>>,
        nodes: &[Arc<Node>],
    ) {
        let plan = zone::handle_disruption(&self.zone_states, zones, &self.config.rates());
        let now = Timestamp::now();
        if plan.mark_all_reachable {
            info!(
                controller = COMPONENT,
                "controller detected that all nodes are not ready; entering master disruption mode"
            );
            for node in nodes {
                self.mark_node_as_reachable(node).await;
            }
        }
        if plan.reset_probes {
            info!(
                controller = COMPONENT,
                "controller detected that some nodes are ready; exiting master disruption mode"
            );
            for h in self.health.values_mut() {
                h.probe_timestamp = now;
                h.ready_transition_timestamp = now;
            }
        }
        for (zone, qps) in plan.limiters {
            if let Some(queue) = self.tainters.get_mut(&zone) {
                info!(controller = COMPONENT, zone = %zone.replace('\0', ""), qps, "zone tainting rate changed");
                queue.swap_limiter(qps, now);
            }
        }
        self.zone_states = plan.states;
    }
}

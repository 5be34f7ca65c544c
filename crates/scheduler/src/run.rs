//! The running scheduler: watches Nodes and Pods into reflector stores, feeds the queue,
//! schedules one pod at a time (decide, assume, bind), records `PodScheduled=False` on pods
//! that fit nowhere, and writes the `Scheduled` / `FailedScheduling` events from a separate
//! recorder task. All decisions are the pure functions of `decide`, `queue` and `events`;
//! this module only moves data between them and the API server.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;
use record::{EventType, Recorder};
use supervisor::Outage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::decide::{
    assigned_pod_freed, decide_on, needs_scheduling, node_change_may_help, pod_key,
    unschedulable_condition_patch, Decision, DEFAULT_SCHEDULER_NAME,
};
use crate::events::{event_source, scheduled_message, REASON_FAILED_SCHEDULING, REASON_SCHEDULED};
use crate::queue::{Queue, QueueConfig};

/// How often unschedulable pods are checked against `unschedulable_flush` (upstream: 30 s).
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this are ours (`default-scheduler`).
    pub scheduler_name: String,
    /// `reportingInstance` of the events (upstream: `default-scheduler-<hostname>`).
    pub reporting_instance: String,
    pub queue: QueueConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            reporting_instance: format!("{DEFAULT_SCHEDULER_NAME}-{}", hostname()),
            queue: QueueConfig::default(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Why the scheduler stopped before being told to.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A watch stream ended; kube-runtime's watcher retries errors itself, so this only
    /// happens if the stream is dropped underneath us.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    config: SchedulerConfig,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let (recorder, sink) = Recorder::new(client.clone(), event_source(&config.reporting_instance));
    let sink = tokio::spawn(sink.run(shutdown.clone()));
    let result = Scheduler::new(client, config, recorder).run(shutdown).await;
    // Events still queued at shutdown are dropped: they are best effort, as upstream's are.
    if let Err(e) = sink.await {
        warn!(error = %e, "scheduler event recorder panicked");
    }
    result
}

struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    queue: Queue,
    /// Node infos with every counted pod and assumed binding, kept from the watches.
    cache: Cache,
    nodes: Store<Node>,
    pods: Store<Pod>,
    node_writer: reflector::store::Writer<Node>,
    pod_writer: reflector::store::Writer<Pod>,
    nodes_synced: bool,
    pods_synced: bool,
    events: Recorder,
}

impl Scheduler {
    fn new(client: Client, config: SchedulerConfig, events: Recorder) -> Scheduler {
        let (nodes, node_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        Scheduler {
            client,
            queue: Queue::new(config.queue),
            config,
            cache: Cache::default(),
            nodes,
            pods,
            node_writer,
            pod_writer,
            nodes_synced: false,
            pods_synced: false,
            events,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        let mut node_events = pin!(watch::<Node>(self.client.clone()));
        let mut pod_events = pin!(watch::<Pod>(self.client.clone()));
        // Each watch backs off by itself (`default_backoff`); these keep its log bounded.
        let mut node_outage = Outage::new("node watch");
        let mut pod_outage = Outage::new("pod watch");
        let mut flush = tokio::time::interval(FLUSH_CHECK_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(name = %self.config.scheduler_name, "scheduler started");
        loop {
            let now = Instant::now();
            let ready =
                self.nodes_synced && self.pods_synced && self.queue.has_ready(now.into_std());
            let backoff = self.queue.next_backoff_expiry().map(Instant::from_std);
            tokio::select! {
                // Watch events first, so every decision sees the freshest stores.
                biased;
                _ = shutdown.cancelled() => break,
                ev = node_events.next() => match ev {
                    Some(Ok(ev)) => {
                        node_outage.succeeded();
                        self.on_node_event(ev)
                    }
                    Some(Err(e)) => node_outage.failed(&e),
                    None => return Err(SchedulerError::WatchEnded("node")),
                },
                ev = pod_events.next() => match ev {
                    Some(Ok(ev)) => {
                        pod_outage.succeeded();
                        self.on_pod_event(ev)
                    }
                    Some(Err(e)) => pod_outage.failed(&e),
                    None => return Err(SchedulerError::WatchEnded("pod")),
                },
                _ = std::future::ready(()), if ready => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.schedule_one() => {}
                    }
                }
                _ = tokio::time::sleep_until(backoff.unwrap_or(now)), if backoff.is_some() => {}
                _ = flush.tick() => self.queue.flush_unschedulable(std::time::Instant::now()),
            }
        }
        info!("scheduler stopped");
        Ok(())
    }

    fn on_node_event(&mut self, ev: watcher::Event<Node>) {
        match &ev {
            watcher::Event::Apply(node) => {
                let old = self.nodes.get(&ObjectRef::from_obj(node));
                if node_change_may_help(old.as_deref(), node) {
                    self.queue.move_all_unschedulable();
                }
            }
            watcher::Event::InitDone => {
                self.nodes_synced = true;
                self.queue.move_all_unschedulable();
            }
            // A node going away makes nothing fit; the InitApply objects are judged all at
            // once at InitDone.
            watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
        self.node_writer.apply_watcher_event(&ev);
        match &ev {
            watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                self.cache.apply_node(node)
            }
            watcher::Event::Delete(node) => {
                self.cache
                    .delete_node(node.metadata.name.as_deref().unwrap_or_default());
            }
            watcher::Event::InitDone => {
                // The relist replaced the store: drop the nodes it no longer shows.
                let listed = self.nodes.state();
                let gone: Vec<String> = self
                    .cache
                    .infos()
                    .iter()
                    .map(|i| i.name().to_string())
                    .filter(|n| {
                        !listed
                            .iter()
                            .any(|l| l.metadata.name.as_deref() == Some(n.as_str()))
                    })
                    .collect();
                for name in gone {
                    self.cache.delete_node(&name);
                }
            }
            watcher::Event::Init => {}
        }
    }

    fn on_pod_event(&mut self, ev: watcher::Event<Pod>) {
        match &ev {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let old = self.pods.get(&ObjectRef::from_obj(pod));
                self.pod_seen(pod);
                if matches!(ev, watcher::Event::Apply(_))
                    && assigned_pod_freed(old.as_deref(), Some(pod))
                {
                    self.queue.move_all_unschedulable();
                }
            }
            watcher::Event::Delete(pod) => {
                let key = pod_key(pod);
                self.queue.remove(&key);
                self.cache.delete_pod(&key);
                let old = self.pods.get(&ObjectRef::from_obj(pod));
                if assigned_pod_freed(old.as_deref().or(Some(pod)), None) {
                    self.queue.move_all_unschedulable();
                }
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => {}
        }
        self.pod_writer.apply_watcher_event(&ev);
        if matches!(ev, watcher::Event::InitDone) {
            // The relist replaced the store: drop what it no longer shows.
            let pods = &self.pods;
            let listed = |key: &str| {
                key.split_once('/')
                    .and_then(|(ns, name)| pods.get(&ObjectRef::<Pod>::new(name).within(ns)))
            };
            let name = &self.config.scheduler_name;
            self.queue
                .retain(|key| listed(key).is_some_and(|p| needs_scheduling(&p, name)));
            self.cache
                .replace_pods(self.pods.state().iter().map(|p| p.as_ref()));
            self.pods_synced = true;
            self.queue.move_all_unschedulable();
        }
    }

    /// Routes one pod from the watch: into the queue if it needs scheduling, out of it (and
    /// out of the assumed bindings once the watch shows it bound) otherwise.
    fn pod_seen(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if needs_scheduling(pod, &self.config.scheduler_name) {
            self.queue.add_or_update(Arc::new(pod.clone()));
        } else {
            self.queue.remove(&key);
        }
        // Counts the pod on its node once the watch shows it bound, replacing the binding
        // the scheduler assumed.
        self.cache.apply_pod(pod);
    }

    async fn schedule_one(&mut self) {
        let Some(queued) = self.queue.pop(std::time::Instant::now()) else {
            return;
        };
        let key = pod_key(&queued);
        // The store may hold a newer version than the queue saw.
        let pod = match self.pods.get(&ObjectRef::from_obj(&*queued)) {
            Some(p) if needs_scheduling(&p, &self.config.scheduler_name) => p,
            _ => {
                self.queue.done(&key);
                return;
            }
        };
        let decision = decide_on(&pod, self.cache.infos());
        match decision {
            Decision::Bind { node } => self.bind(pod, &key, node).await,
            Decision::Unschedulable { message } => self.unschedulable(pod, &key, message).await,
        }
    }

    async fn bind(&mut self, pod: Arc<Pod>, key: &str, node: String) {
        self.cache.assume(&pod, &node);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..ObjectReference::default()
            },
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let result: Result<serde_json::Value, kube::Error> = api
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await;
        match result {
            Ok(_) => {
                debug!(pod = %key, %node, "bound");
                self.queue.done(key);
                let message = scheduled_message(&namespace, &name, &node);
                self.record(
                    &pod,
                    EventType::Normal,
                    REASON_SCHEDULED,
                    message,
                    "Binding",
                );
            }
            Err(e) if is_gone_or_taken(&e) => {
                // Already bound elsewhere or deleted: the watch brings the truth.
                debug!(pod = %key, error = %e, "binding dropped");
                self.cache.forget(key);
                self.queue.done(key);
            }
            Err(e) => {
                warn!(pod = %key, %node, error = %e, "binding failed; backing off");
                self.cache.forget(key);
                self.queue.failed(key, std::time::Instant::now());
            }
        }
    }

    async fn unschedulable(&mut self, pod: Arc<Pod>, key: &str, message: String) {
        debug!(pod = %key, %message, "unschedulable");
        if let Some(patch) = unschedulable_condition_patch(&pod, &message, Timestamp::now()) {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {
                    self.queue.done(key);
                    return;
                }
                // Most likely a conflict with a newer version of the pod; the next attempt
                // records the condition. The pod still waits as unschedulable, as upstream's
                // queue decides on the fit alone: sent to backoff instead, it would lose its
                // turn to lower-priority pods when room appears.
                Err(e) => debug!(pod = %key, error = %e, "recording PodScheduled=False failed"),
            }
        }
        self.queue.unschedulable(key, std::time::Instant::now());
        self.record(
            &pod,
            EventType::Warning,
            REASON_FAILED_SCHEDULING,
            message,
            "Scheduling",
        );
    }

    fn record(&self, pod: &Pod, type_: EventType, reason: &str, message: String, action: &str) {
        let regarding = record::object_reference(pod);
        self.events
            .event_with_action(&regarding, type_, reason, action, message);
    }
}

/// A kube-runtime watcher over every object of the kind, retrying with backoff.
fn watch<K>(client: Client) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    watcher(Api::<K>::all(client), watcher::Config::default()).default_backoff()
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// 409 (already bound) or 404 (deleted): nothing to retry.
fn is_gone_or_taken(e: &kube::Error) -> bool {
    is_status(e, 409) || is_status(e, 404)
}

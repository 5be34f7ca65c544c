//! Upstream's EndpointSlice controller (`pkg/controller/endpointslice` over the
//! `k8s.io/endpointslice` reconciler): every Service with a selector (not `ExternalName`)
//! gets `discovery.k8s.io/v1` EndpointSlices listing the pods it selects — at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints a slice, one group of slices per set of ports the
//! pods serve, an empty placeholder slice when there is none.
//!
//! ```text
//!  Service applied/deleted ──────────────┐
//!  pod added/deleted/changed ────────────┤ (to the Services of its namespace selecting it,
//!                                        │  before or after; `routing`)
//!  managed slice changed/deleted ────────┴─▶ reconcile(service)
//!     ─▶ slices of the Service in the cache still behind our own writes? requeue shortly
//!     ─▶ pods of its namespace it selects, its managed slices, node zones
//!     ─▶ reconciler::reconcile (pure) ─▶ create / update / delete only what changed
//!     ─▶ failure: Warning FailedToUpdateEndpointSlices on the Service, per-key backoff
//!  Service deleted ─▶ its slices go with it through their owner reference (garbage collector)
//! ```
//!
//! Departures: a pod whose node is missing from the cache is listed without a zone
//! (upstream skips it and retries); no topology hints or traffic distribution; endpoints
//! fill slices in name order where upstream takes them from a set.

pub mod reconciler;
pub(crate) mod routing;
pub mod trigger_time;
pub mod utils;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::controller_utils::key;
use crate::informer::{Change, Informer};
use crate::routed::Routed;

pub use reconciler::{reconcile as plan, Plan};
pub use trigger_time::TriggerTimeTracker;
pub use utils::*;

/// Syncs of different Services at once (`--concurrent-service-endpoint-syncs`, 5).
const CONCURRENT_SYNCS: u16 = 5;
/// How long a write of ours may stay invisible in the cache before it is no longer waited
/// for (a slice someone else deleted meanwhile must not block the Service).
const EXPECTATION_TTL: Duration = Duration::from_secs(30);
/// When to look again while the cache is behind our writes, at the latest: the watch event
/// of the write itself syncs the Service again as soon as the cache shows it.
const STALE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create EndpointSlice for Service {service}: {source}")]
    Create {
        service: String,
        source: kube::Error,
    },
    #[error("failed to update {name} EndpointSlice for Service {service}: {source}")]
    Update {
        service: String,
        name: String,
        source: kube::Error,
    },
    #[error("failed to delete {name} EndpointSlice for Service {service}: {source}")]
    Delete {
        service: String,
        name: String,
        source: kube::Error,
    },
}

/// A write of ours the cache must show before the Service is synced again (upstream's
/// `EndpointSliceTracker`, by resourceVersion rather than generation).
#[derive(Debug, Clone)]
enum Expect {
    /// Created under this name.
    Present(String),
    /// Updated from this resourceVersion: the cache must show another.
    Replaced(String, String),
    /// Deleted.
    Absent(String),
}

#[derive(Debug, Default)]
struct SliceTracker {
    by_service: HashMap<String, Vec<(Expect, Instant)>>,
}

impl SliceTracker {
    fn expect(&mut self, service: &str, e: Expect) {
        self.by_service
            .entry(service.to_string())
            .or_default()
            .push((e, Instant::now()));
    }

    /// Whether the cached `slices` of the Service still miss some of our writes; the ones
    /// they show are forgotten.
    fn stale(&mut self, service: &str, slices: &[Arc<EndpointSlice>]) -> bool {
        let Some(expects) = self.by_service.get_mut(service) else {
            return false;
        };
        let find = |name: &str| {
            slices
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
        };
        expects.retain(|(e, at)| {
            if at.elapsed() > EXPECTATION_TTL {
                return false;
            }
            match e {
                Expect::Present(name) => find(name).is_none(),
                Expect::Replaced(name, rv) => find(name)
                    .is_some_and(|s| s.metadata.resource_version.as_deref() == Some(rv.as_str())),
                Expect::Absent(name) => find(name).is_some(),
            }
        });
        let stale = !expects.is_empty();
        if !stale {
            self.by_service.remove(service);
        }
        stale
    }

    fn forget(&mut self, service: &str) {
        self.by_service.remove(service);
    }
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    recorder: Recorder,
    tracker: Mutex<SliceTracker>,
    trigger_times: Arc<TriggerTimeTracker>,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (so call this before they run).
pub fn controller(
    client: Client,
    services: &Informer<Service>,
    pods: &Informer<Pod>,
    slices: &Informer<EndpointSlice>,
    nodes: &Informer<Node>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (service_changes, service_lagged) = services.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (slice_changes, slice_lagged) = slices.subscribe();
    let (recorder, sink) = Recorder::new(
        client.clone(),
        crate::event_source("endpoint-slice-controller"),
    );
    let trigger_times = Arc::new(TriggerTimeTracker::default());
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.store(),
        slices: slices.store(),
        nodes: nodes.store(),
        recorder,
        tracker: Mutex::new(SliceTracker::default()),
        trigger_times: trigger_times.clone(),
        backoff: Backoff::controller_default(),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    let forget_ctx = ctx.clone();
    let router = route_events(
        service_changes,
        pod_changes,
        slice_changes.map(|c| match c {
            Change::Applied(s) | Change::Deleted(s) => {
                if !managed_by_controller(&s) {
                    return None;
                }
                let name = service_name_of(&s)?.to_string();
                Some((s.namespace().unwrap_or_default(), name))
            }
        }),
        move |gone: &Service| {
            let k = service_key(gone);
            forget_ctx.trigger_times.delete(&k);
            forget_ctx
                .tracker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(&k);
            forget_ctx.backoff.forget(&k);
        },
        triggers,
    );
    let routed = Routed {
        name: "endpointslice",
        store: services.store(),
        triggered,
        lagged: vec![
            service_lagged.boxed(),
            pod_lagged.boxed(),
            slice_lagged.boxed(),
        ],
        synced: vec![
            services.synced().boxed(),
            pods.synced().boxed(),
            slices.synced().boxed(),
            nodes.synced().boxed(),
        ],
        concurrency: CONCURRENT_SYNCS,
    };
    routed.run(router, sink, shutdown, reconcile, error_policy, ctx)
}

fn service_key(service: &Service) -> String {
    key(
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The event handlers of both endpoints controllers: Service changes sync that Service
/// (`on_gone` hears of deletions), pod changes the Services selecting the pod before or
/// after, changes of the controller's own objects (mapped by `owned` to a Service
/// `(namespace, name)`) that Service.
pub(crate) async fn route_events(
    service_changes: impl Stream<Item = Change<Service>> + Send + 'static,
    pod_changes: impl Stream<Item = Change<Pod>> + Send + 'static,
    owned: impl Stream<Item = Option<(String, String)>> + Send + 'static,
    mut on_gone: impl FnMut(&Service) + Send + 'static,
    triggers: mpsc::UnboundedSender<ObjectRef<Service>>,
) {
    enum Event {
        Service(Change<Service>),
        Pod(Change<Pod>),
        Owned(Option<(String, String)>),
    }
    let mut events = futures::stream::select_all([
        service_changes.map(Event::Service).boxed(),
        pod_changes.map(Event::Pod).boxed(),
        owned.map(Event::Owned).boxed(),
    ]);
    let mut index = routing::ServiceIndex::default();
    let mut pods_seen: HashMap<String, Arc<Pod>> = HashMap::new();
    let send = |ns: &str, name: &str| {
        let _ = triggers.send(ObjectRef::new(name).within(ns));
    };
    while let Some(event) = events.next().await {
        match event {
            Event::Service(change) => {
                let (svc, gone) = match &change {
                    Change::Applied(s) => (s, false),
                    Change::Deleted(s) => (s, true),
                };
                index.observe(svc, gone);
                if gone {
                    on_gone(svc);
                }
                send(
                    svc.metadata.namespace.as_deref().unwrap_or_default(),
                    svc.metadata.name.as_deref().unwrap_or_default(),
                );
            }
            Event::Pod(change) => {
                let (pod, gone) = match change {
                    Change::Applied(p) => (p, false),
                    Change::Deleted(p) => (p, true),
                };
                let k = key(
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                );
                let old = if gone {
                    pods_seen.remove(&k)
                } else {
                    pods_seen.insert(k, pod.clone())
                };
                let services = if gone {
                    routing::services_for_pod_change(&index, None, Some(&pod))
                } else {
                    routing::services_for_pod_change(&index, old.as_deref(), Some(&pod))
                };
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                for name in services {
                    send(ns, &name);
                }
            }
            Event::Owned(Some((ns, name))) => send(&ns, &name),
            Event::Owned(None) => {}
        }
    }
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let skey = service_key(&service);
    if !has_managed_endpoints(&service) {
        return Ok(Action::await_change());
    }
    let ns = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let slices: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| managed_by_controller(s) && service_name_of(s) == Some(name.as_str()))
        .collect();
    if ctx
        .tracker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stale(&skey, &slices)
    {
        debug!(service = %skey, "EndpointSlice cache is behind our writes; retrying");
        return Ok(Action::requeue(STALE_RETRY));
    }
    let all_pods = ctx.pods.state();
    let pods: Vec<&Pod> = all_pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| selects(&service, p))
        .collect();
    let trigger = ctx.trigger_times.compute(&skey, &service, &pods);
    let nodes = ctx.nodes.clone();
    let zone_of = move |node: &str| -> Option<String> {
        nodes
            .get(&ObjectRef::new(node))?
            .metadata
            .labels
            .as_ref()?
            .get(LABEL_TOPOLOGY_ZONE)
            .cloned()
    };
    let existing: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
    let plan = plan(
        &service,
        &pods,
        &existing,
        &zone_of,
        MAX_ENDPOINTS_PER_SLICE,
        trigger,
    );
    if let Err(e) = apply(&ctx, &service, plan).await {
        ctx.recorder.event(
            &service.object_ref(&()),
            EventType::Warning,
            "FailedToUpdateEndpointSlices",
            format!("Error updating Endpoint Slices for Service {skey}: {e}"),
        );
        return Err(e);
    }
    ctx.backoff.forget(&skey);
    Ok(Action::await_change())
}

/// `finalize`: the plan's writes, creates first (none while the Service is being deleted),
/// each remembered until the cache shows it.
async fn apply(ctx: &Ctx, service: &Service, plan: Plan) -> Result<(), Error> {
    if plan.is_empty() {
        return Ok(());
    }
    let skey = service_key(service);
    let ns = service.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let expect = |e: Expect| {
        ctx.tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expect(&skey, e);
    };
    for slice in &plan.create {
        match api.create(&PostParams::default(), slice).await {
            Ok(created) => expect(Expect::Present(created.name_any())),
            Err(kube::Error::Api(s)) if crate::is_gone_namespace(&s) => return Ok(()),
            Err(source) => {
                return Err(Error::Create {
                    service: skey,
                    source,
                })
            }
        }
    }
    for slice in &plan.update {
        let name = slice.name_any();
        match api.replace(&name, &PostParams::default(), slice).await {
            Ok(_) => expect(Expect::Replaced(
                name,
                slice.metadata.resource_version.clone().unwrap_or_default(),
            )),
            Err(source) => {
                return Err(Error::Update {
                    service: skey,
                    name,
                    source,
                })
            }
        }
    }
    for slice in &plan.delete {
        let name = slice.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => expect(Expect::Absent(name)),
            Err(kube::Error::Api(s)) if s.code == 404 => expect(Expect::Absent(name)),
            Err(source) => {
                return Err(Error::Delete {
                    service: skey,
                    name,
                    source,
                })
            }
        }
    }
    debug!(
        service = %skey,
        created = plan.create.len(),
        updated = plan.update.len(),
        deleted = plan.delete.len(),
        "EndpointSlices written"
    );
    Ok(())
}

fn error_policy(service: Arc<Service>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let k = service_key(&service);
    let delay = ctx.backoff.next(&k);
    warn!(controller = "endpointslice", service = %k, %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

//! Upstream's Endpoints controller (`pkg/controller/endpoint`): every Service with a
//! selector (not `ExternalName`) gets a core/v1 Endpoints of its name listing the pods it
//! selects, in subsets grouped by the ports they serve ([`repack`]); ready pods under
//! `addresses`, the others under `notReadyAddresses` (all under `addresses` with
//! `publishNotReadyAddresses`, which also keeps terminating pods).
//!
//! ```text
//!  Service applied/deleted, pod changes (to the Services selecting it), Endpoints changed
//!  or deleted ─▶ reconcile(service)
//!     ─▶ desired_subsets (pure) ─▶ sync (pure): nothing to do if subsets, labels and the
//!        capacity annotation already agree; else the new object (Service labels +
//!        managed-by, headless label, trigger-time and over-capacity annotations)
//!     ─▶ create or update (PUT with the cached resourceVersion)
//!  Service deleted ─▶ its Endpoints deleted if this controller manages it (the managed-by
//!     label); at start, managed Endpoints without a Service are deleted too
//! ```

pub mod repack;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use record::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::controller_utils::{is_pod_ready, key};
use crate::endpointslice::utils::{
    find_port, has_managed_endpoints, is_service_ip_set, pod_ips, pod_reference, selects,
    should_pod_be_in_endpoints, should_set_hostname, LABEL_HEADLESS, LAST_CHANGE_TRIGGER_TIME,
};
use crate::endpointslice::{route_events, TriggerTimeTracker};
use crate::informer::{Change, Informer};
use crate::routed::Routed;

pub use repack::{repack_subsets, truncate, MAX_CAPACITY};

/// The label marking Endpoints this controller writes (`LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// Its value (`ControllerName`).
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Set to [`TRUNCATED`] when the addresses were cut at [`MAX_CAPACITY`]
/// (`v1.EndpointsOverCapacity`).
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const TRUNCATED: &str = "truncated";
/// Endpoints of leader election records are never cleaned up
/// (`resourcelock.LeaderElectionRecordAnnotationKey`).
const LEADER_ELECTION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Syncs of different Services at once (`--concurrent-endpoint-syncs`, 5).
const CONCURRENT_SYNCS: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create endpoint for service {service}: {source}")]
    Create {
        service: String,
        source: kube::Error,
    },
    #[error("failed to update endpoint {service}: {source}")]
    Update {
        service: String,
        source: kube::Error,
    },
}

/// `podToEndpointAddressForService`: the pod's address of the Service's first IP family
/// (else the cluster IP's, else for headless the pod's first IP's), its node, target and —
/// for `hostname`/`subdomain` pods — hostname. `None` when the pod has no such address.
pub fn pod_address(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = service.spec.clone().unwrap_or_default();
    let ips = pod_ips(pod);
    let is_v6 = |s: &str| s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6());
    let want_v6 = match spec.ip_families.as_ref().and_then(|f| f.first()) {
        Some(family) => family == "IPv6",
        None if is_service_ip_set(service) => spec.cluster_ip.as_deref().is_some_and(is_v6),
        None => ips.first().is_some_and(|ip| is_v6(ip)),
    };
    let ip = ips.into_iter().find(|ip| is_v6(ip) == want_v6)?;
    Some(EndpointAddress {
        ip,
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        hostname: should_set_hostname(pod, service)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
    })
}

/// The Service's subsets over the pods it selects, repacked (`syncService` up to
/// `RepackSubsets`).
pub fn desired_subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.clone().unwrap_or_default();
    let mut subsets = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(address) = pod_address(service, pod) else {
            continue;
        };
        let ready = publish || is_pod_ready(pod);
        let subset = |port: Option<EndpointPort>| EndpointSubset {
            addresses: ready.then(|| vec![address.clone()]),
            not_ready_addresses: (!ready).then(|| vec![address.clone()]),
            ports: port.map(|p| vec![p]),
        };
        if ports.is_empty() {
            if spec.cluster_ip.as_deref() == Some("None") {
                subsets.push(subset(None));
            }
            continue;
        }
        for sp in &ports {
            let Some(n) = find_port(pod, sp) else {
                continue;
            };
            subsets.push(subset(Some(EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: n,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                app_protocol: sp.app_protocol.clone(),
            })));
        }
    }
    repack_subsets(&subsets)
}

fn without_resource_versions(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let clean = |list: &Option<Vec<EndpointAddress>>| {
        list.clone()
            .map(|l| {
                l.into_iter()
                    .map(|mut a| {
                        if let Some(t) = a.target_ref.as_mut() {
                            t.resource_version = None;
                        }
                        a
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|l| !l.is_empty())
    };
    subsets
        .iter()
        .map(|s| EndpointSubset {
            addresses: clean(&s.addresses),
            not_ready_addresses: clean(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|p| !p.is_empty()),
        })
        .collect()
}

/// The labels the controller's Endpoints carry: the Service's, the managed-by label, and
/// the headless label when it has no cluster IP.
pub fn endpoints_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string());
    if is_service_ip_set(service) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels
}

/// The rest of `syncService`: the Endpoints to write for `subsets`, or `None` when
/// `current` already says it (subsets ignoring the pods' resourceVersions, labels, the
/// over-capacity annotation). `trigger` is the last-change-trigger-time.
pub fn sync(
    service: &Service,
    subsets: Vec<EndpointSubset>,
    current: Option<&Endpoints>,
    trigger: Option<Timestamp>,
) -> Option<Endpoints> {
    let labels = endpoints_labels(service);
    if let Some(cur) = current {
        let cur_subsets = cur.subsets.clone().unwrap_or_default();
        let annotations = cur.metadata.annotations.clone().unwrap_or_default();
        let capacity_ok = address_count_of(&cur_subsets) <= MAX_CAPACITY
            && !annotations.contains_key(OVER_CAPACITY);
        if without_resource_versions(&cur_subsets) == without_resource_versions(&subsets)
            && cur.metadata.labels.clone().unwrap_or_default() == labels
            && capacity_ok
        {
            return None;
        }
    }
    let mut new = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    let mut subsets = subsets;
    let mut annotations = new.metadata.annotations.clone().unwrap_or_default();
    match trigger {
        Some(t) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.to_string(), t.to_string());
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if truncate(&mut subsets) {
        annotations.insert(OVER_CAPACITY.to_string(), TRUNCATED.to_string());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    new.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    new.metadata.labels = Some(labels);
    new.subsets = (!subsets.is_empty()).then_some(subsets);
    Some(new)
}

fn address_count_of(subsets: &[EndpointSubset]) -> usize {
    repack::address_count(subsets)
}

/// Whether this controller manages `endpoints` (its managed-by label).
pub fn is_managed(endpoints: &Endpoints) -> bool {
    endpoints
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == CONTROLLER_NAME)
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    recorder: Recorder,
    trigger_times: Arc<TriggerTimeTracker>,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (so call this before they run).
pub fn controller(
    client: Client,
    services: &Informer<Service>,
    pods: &Informer<Pod>,
    endpoints: &Informer<Endpoints>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (service_changes, service_lagged) = services.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let (endpoints_changes, endpoints_lagged) = endpoints.subscribe();
    let (recorder, sink) =
        Recorder::new(client.clone(), crate::event_source("endpoint-controller"));
    let trigger_times = Arc::new(TriggerTimeTracker::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        endpoints: endpoints.store(),
        recorder,
        trigger_times: trigger_times.clone(),
        backoff: Backoff::controller_default(),
    });
    let (triggers, triggered) = mpsc::unbounded_channel();
    let endpoints_store = endpoints.store();
    let gone_client = client.clone();
    let router = route_events(
        service_changes,
        pod_changes,
        endpoints_changes.map(|c| match c {
            Change::Applied(e) | Change::Deleted(e) => {
                Some((e.namespace().unwrap_or_default(), e.name_any()))
            }
        }),
        move |gone: &Service| {
            let ns = gone.namespace().unwrap_or_default();
            let name = gone.name_any();
            trigger_times.delete(&key(&ns, &name));
            let cached = endpoints_store.get(&ObjectRef::new(&name).within(&ns));
            if let Some(ep) = cached.filter(|e| is_managed(e)) {
                tokio::spawn(delete_endpoints(gone_client.clone(), ep));
            }
        },
        triggers,
    );
    // Upstream's `checkLeftoverEndpoints`: managed Endpoints whose Service went while the
    // controller was down.
    let leftovers = {
        let services_synced = services.synced();
        let endpoints_synced = endpoints.synced();
        let services = services.store();
        let endpoints = endpoints.store();
        let client = client.clone();
        async move {
            if !(services_synced.await && endpoints_synced.await) {
                return;
            }
            for ep in endpoints.state() {
                let ns = ep.namespace().unwrap_or_default();
                let leader = ep
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(LEADER_ELECTION));
                let has_service = services
                    .get(&ObjectRef::new(&ep.name_any()).within(&ns))
                    .is_some();
                if is_managed(&ep) && !leader && !has_service {
                    delete_endpoints(client.clone(), ep).await;
                }
            }
        }
    };
    let router = futures::future::join(router, leftovers).map(|_| ());
    let routed = Routed {
        name: "endpoint",
        store: services.store(),
        triggered,
        lagged: vec![
            service_lagged.boxed(),
            pod_lagged.boxed(),
            endpoints_lagged.boxed(),
        ],
        synced: vec![
            services.synced().boxed(),
            pods.synced().boxed(),
            endpoints.synced().boxed(),
        ],
        concurrency: CONCURRENT_SYNCS,
    };
    routed.run(router, sink, shutdown, reconcile, error_policy, ctx)
}

/// Deletes Endpoints whose Service is gone, with their uid as a precondition (a new
/// Endpoints under the name is not this one).
async fn delete_endpoints(client: Client, ep: Arc<Endpoints>) {
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    let api: Api<Endpoints> = Api::namespaced(client, &ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: ep.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => info!(endpoints = %key(&ns, &name), "deleted the Endpoints of a deleted Service"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => warn!(endpoints = %key(&ns, &name), error = %e, "deleting Endpoints failed"),
    }
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !has_managed_endpoints(&service) {
        return Ok(Action::await_change());
    }
    let ns = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let skey = key(&ns, &name);
    let all_pods = ctx.pods.state();
    let pods: Vec<&Pod> = all_pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| selects(&service, p))
        .collect();
    let trigger = ctx.trigger_times.compute(&skey, &service, &pods);
    let subsets = desired_subsets(&service, &pods);
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let Some(new) = sync(&service, subsets, current.as_deref(), trigger) else {
        ctx.backoff.forget(&skey);
        return Ok(Action::await_change());
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let regarding = new.object_ref(&());
    let written = match &current {
        None => match api.create(&PostParams::default(), &new).await {
            Err(kube::Error::Api(s)) if crate::is_gone_namespace(&s) => {
                return Ok(Action::await_change())
            }
            r => r.map_err(|source| Error::Create {
                service: skey.clone(),
                source,
            }),
        },
        Some(_) => api
            .replace(&name, &PostParams::default(), &new)
            .await
            .map_err(|source| Error::Update {
                service: skey.clone(),
                source,
            }),
    };
    if let Err(e) = written {
        let (reason, message) = match &e {
            Error::Create { source, .. } => (
                "FailedToCreateEndpoint",
                format!("Failed to create endpoint for service {skey}: {source}"),
            ),
            Error::Update { source, .. } => (
                "FailedToUpdateEndpoint",
                format!("Failed to update endpoint {skey}: {source}"),
            ),
        };
        ctx.recorder
            .event(&regarding, EventType::Warning, reason, message);
        return Err(e);
    }
    debug!(service = %skey, "Endpoints written");
    ctx.backoff.forget(&skey);
    Ok(Action::await_change())
}

fn error_policy(service: Arc<Service>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let k = key(
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default(),
    );
    let delay = ctx.backoff.next(&k);
    warn!(controller = "endpoint", service = %k, %error, retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

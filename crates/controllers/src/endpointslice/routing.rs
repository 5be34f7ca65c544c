//! Which Services a change concerns, shared by the EndpointSlice and Endpoints controllers
//! (upstream's `GetPodServiceMemberships` / `GetServicesToUpdateOnPodChange`): a
//! per-namespace index of Service selectors kept from the Service watch, and the pod
//! fields whose change can change an endpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, Service};

use super::utils::{pod_ips, selector_matches};
use crate::controller_utils::{is_pod_ready, is_pod_terminal, pod_ready_condition};

/// Namespace → Service name → its selector (Services without one are not indexed: they
/// select nothing).
#[derive(Debug, Default)]
pub struct ServiceIndex {
    by_namespace: HashMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

impl ServiceIndex {
    /// Records a Service as the watch shows it (`gone`: deleted).
    pub fn observe(&mut self, service: &Service, gone: bool) {
        let ns = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let selector = service.spec.as_ref().and_then(|s| s.selector.clone());
        let services = self.by_namespace.entry(ns.clone()).or_default();
        match selector {
            Some(sel) if !gone => {
                services.insert(name, sel);
            }
            _ => {
                services.remove(&name);
            }
        }
        if services.is_empty() {
            self.by_namespace.remove(&ns);
        }
    }

    /// The names of the Services in `namespace` whose selector matches `labels`.
    pub fn matching(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> BTreeSet<String> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, sel)| selector_matches(sel, labels))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// What of a pod an endpoint reflects, for telling whether an update matters
/// (upstream's `podEndpointsChanged`, plus the phase, node and Ready transition time).
#[derive(Debug, PartialEq)]
struct Projection {
    labels: Option<BTreeMap<String, String>>,
    hostname: Option<String>,
    subdomain: Option<String>,
    deleting: bool,
    ready: bool,
    ready_since: Option<String>,
    ips: Vec<String>,
    terminal: bool,
    node: Option<String>,
}

fn project(pod: &Pod) -> Projection {
    let spec = pod.spec.as_ref();
    Projection {
        labels: pod.metadata.labels.clone(),
        hostname: spec.and_then(|s| s.hostname.clone()),
        subdomain: spec.and_then(|s| s.subdomain.clone()),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready: is_pod_ready(pod),
        ready_since: pod_ready_condition(pod)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string()),
        ips: pod_ips(pod),
        terminal: is_pod_terminal(pod),
        node: spec.and_then(|s| s.node_name.clone()),
    }
}

/// The Services to sync after a pod change: for an add or delete (`old` or `new` `None`)
/// those selecting the pod; for an update that can change an endpoint, those selecting it
/// before or after; nothing for an update that cannot.
pub fn services_for_pod_change(
    index: &ServiceIndex,
    old: Option<&Pod>,
    new: Option<&Pod>,
) -> BTreeSet<String> {
    let ns = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
    match (old, new) {
        (None, None) => BTreeSet::new(),
        (Some(p), None) | (None, Some(p)) => index.matching(&ns(p), p.metadata.labels.as_ref()),
        (Some(old), Some(new)) => {
            if project(old) == project(new) {
                return BTreeSet::new();
            }
            let mut services = index.matching(&ns(new), new.metadata.labels.as_ref());
            services.extend(index.matching(&ns(old), old.metadata.labels.as_ref()));
            services
        }
    }
}

//! The EndpointSlice reconciler's decision (upstream's `staging/src/k8s.io/endpointslice`
//! `reconciler.go`): from a Service, the pods it selects and the slices that exist, which
//! slices to create, update and delete. Pure; the controller applies the [`Plan`].
//!
//! ```text
//!  per address type of the Service (slices of other types: deleted)
//!    slices not owned by the Service (an old one of the same name): deleted
//!    pods in endpoints (not terminal, with an IP; terminating ones too)
//!      ─▶ grouped by the ports they serve (a named targetPort per pod)
//!    per port group (reconcileByPortMapping):
//!      1. existing slices keep the endpoints still desired (updated in place when changed),
//!         an emptied slice is deleted, a slice whose labels differ from the Service's is
//!         updated
//!      2. the remaining endpoints fill the slices already being updated, fullest first
//!      3. then the unchanged slice that ends closest to full, then new slices,
//!         at most `max` endpoints a slice
//!    port groups no longer desired: their slices deleted
//!    nothing left at all: one empty placeholder slice (kept if it already exists)
//!  finally a create and a delete of the same type become an update of the deleted slice
//! ```

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::jiff::Timestamp;

use super::utils::{
    address_types, endpoint_key, endpoint_ports, endpoints_equal_beyond_key, new_endpoint_slice,
    owned_by, pod_to_endpoint, port_map_key, should_pod_be_in_endpoints, slice_labels,
    LAST_CHANGE_TRIGGER_TIME,
};

/// What a sync writes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// New slices (no name: `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with their new content (and the resourceVersion read).
    pub update: Vec<EndpointSlice>,
    /// Existing slices to delete.
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Desired endpoints of one port group, by [`endpoint_key`] (ordered, so the plan is
/// deterministic where upstream pops from a set).
type EndpointSet = BTreeMap<String, Endpoint>;

/// The whole sync of one Service. `zone_of` gives a node's zone label; `trigger` the
/// last-change-trigger-time annotation's value for what is written (`None` removes it).
pub fn reconcile(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    zone_of: &dyn Fn(&str) -> Option<String>,
    max: usize,
    trigger: Option<Timestamp>,
) -> Plan {
    let types = address_types(service);
    let mut plan = Plan::default();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if types.contains(&slice.address_type.as_str()) {
            by_type
                .entry(slice.address_type.as_str())
                .or_default()
                .push(slice);
        } else {
            plan.delete.push((*slice).clone());
        }
    }
    for address_type in types {
        let slices = by_type.remove(address_type).unwrap_or_default();
        let part = reconcile_by_address_type(service, pods, &slices, zone_of, max, address_type);
        plan.create.extend(part.create);
        plan.update.extend(part.update);
        plan.delete.extend(part.delete);
    }
    finalize(service, &mut plan);
    if service.metadata.deletion_timestamp.is_some() {
        // The garbage collector is deleting the Service's slices: creating more would race
        // it.
        plan.create.clear();
    }
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match trigger {
            Some(t) => {
                annotations.insert(LAST_CHANGE_TRIGGER_TIME.to_string(), rfc3339(t));
            }
            None => {
                annotations.remove(LAST_CHANGE_TRIGGER_TIME);
            }
        }
        if annotations.is_empty() {
            slice.metadata.annotations = None;
        }
    }
    plan
}

/// `time.RFC3339Nano` in UTC (trailing zeros of the fraction dropped).
pub fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// A slice's endpoints (none when absent).
pub fn endpoints_of(slice: &EndpointSlice) -> &[Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

fn normalized_ports(slice: &EndpointSlice) -> Vec<EndpointPort> {
    slice.ports.clone().unwrap_or_default()
}

fn reconcile_by_address_type(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    zone_of: &dyn Fn(&str) -> Option<String>,
    max: usize,
    address_type: &str,
) -> Plan {
    let mut plan = Plan::default();
    let mut existing_by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            existing_by_ports
                .entry(port_map_key(&normalized_ports(slice)))
                .or_default()
                .push(slice);
        } else {
            plan.delete.push((*slice).clone());
        }
    }

    let mut desired: BTreeMap<String, (Vec<EndpointPort>, EndpointSet)> = BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(service, pod);
        let key = port_map_key(&ports);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let zone = node.and_then(zone_of);
        let endpoint = pod_to_endpoint(pod, service, address_type, zone);
        let group = desired
            .entry(key)
            .or_insert_with(|| (ports, EndpointSet::new()));
        if !endpoint.addresses.is_empty() {
            group.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    for (key, (ports, set)) in desired.iter() {
        let slices = existing_by_ports.get(key).cloned().unwrap_or_default();
        let part =
            reconcile_by_port_mapping(service, &slices, set.clone(), ports, address_type, max);
        plan.create.extend(part.create);
        plan.update.extend(part.update);
        plan.delete.extend(part.delete);
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }

    // No slice would be left: keep (or create) one empty placeholder.
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_endpoint_slice(service, Vec::new(), address_type);
        if plan.delete.len() == 1 && is_placeholder_of(&plan.delete[0], &placeholder) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    plan
}

/// Upstream's `placeholderSliceCompare`: same namespace, labels, owner references, address
/// type, no ports and no endpoints.
fn is_placeholder_of(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    let labels = |s: &EndpointSlice| s.metadata.labels.clone().unwrap_or_default();
    let owners = |s: &EndpointSlice| s.metadata.owner_references.clone().unwrap_or_default();
    slice.metadata.namespace == placeholder.metadata.namespace
        && labels(slice) == labels(placeholder)
        && owners(slice) == owners(placeholder)
        && slice.address_type == placeholder.address_type
        && normalized_ports(slice).is_empty()
        && endpoints_of(slice).is_empty()
}

/// `reconcileByPortMapping`: creates, updates and deletes for one group of slices sharing
/// ports.
fn reconcile_by_port_mapping(
    service: &Service,
    existing: &[&EndpointSlice],
    mut desired: EndpointSet,
    ports: &[EndpointPort],
    address_type: &str,
    max: usize,
) -> Plan {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();

    // 1. Keep what is still desired, in place.
    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut endpoint_changed = false;
        for ep in endpoints_of(slice) {
            if let Some(want) = desired.remove(&endpoint_key(ep)) {
                if !endpoints_equal_beyond_key(&want, ep) {
                    endpoint_changed = true;
                }
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), service);
        if endpoint_changed || kept.len() != endpoints_of(slice).len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
                by_name.insert(name, (*slice).clone());
            } else {
                let mut new = (*slice).clone();
                new.endpoints = Some(kept);
                new.metadata.labels = Some(labels);
                to_update.insert(name.clone());
                by_name.insert(name, new);
            }
        } else if labels_changed {
            let mut new = (*slice).clone();
            new.metadata.labels = Some(labels);
            to_update.insert(name.clone());
            by_name.insert(name, new);
        } else {
            unchanged.insert(name.clone());
            by_name.insert(name, (*slice).clone());
        }
    }

    // 2. Fill the slices being updated anyway, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_key(|n| std::cmp::Reverse(endpoints_of(&by_name[*n]).len()));
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            let Some(slice) = by_name.get_mut(&name) else {
                continue;
            };
            let eps = slice.endpoints.get_or_insert_with(Vec::new);
            while eps.len() < max {
                let Some((_, ep)) = desired.pop_first() else {
                    break;
                };
                eps.push(ep);
            }
        }
    }

    // 3. The rest: into the unchanged slice that ends closest to full, else new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let mut fill: Option<EndpointSlice> = None;
        if desired.len() < max && !unchanged.is_empty() {
            fill =
                slice_to_fill(unchanged.iter().map(|n| &by_name[n]), desired.len(), max).cloned();
        }
        let mut slice =
            fill.unwrap_or_else(|| new_endpoint_slice(service, ports.to_vec(), address_type));
        let eps = slice.endpoints.get_or_insert_with(Vec::new);
        while eps.len() < max {
            let Some((_, ep)) = desired.pop_first() else {
                break;
            };
            eps.push(ep);
        }
        match slice.metadata.name.clone() {
            Some(name) => {
                unchanged.remove(&name);
                to_update.insert(name.clone());
                by_name.insert(name, slice);
            }
            None => create.push(slice),
        }
    }

    Plan {
        create,
        update: to_update.iter().map(|n| by_name[n].clone()).collect(),
        delete: to_delete.iter().map(|n| by_name[n].clone()).collect(),
    }
}

/// `getSliceToFill`: the slice that ends closest to `max` with `n` more endpoints.
fn slice_to_fill<'a>(
    slices: impl Iterator<Item = &'a EndpointSlice>,
    n: usize,
    max: usize,
) -> Option<&'a EndpointSlice> {
    let mut best: Option<(usize, &EndpointSlice)> = None;
    for slice in slices {
        let Some(left) = max.checked_sub(n + endpoints_of(slice).len()) else {
            continue;
        };
        if best.is_none_or(|(b, _)| left < b) {
            best = Some((left, slice));
            if left == 0 {
                break;
            }
        }
    }
    best.map(|(_, s)| s)
}

/// `finalize`'s first step: a slice to create and one to delete of the same address type
/// (owned by the Service) become an update of the latter under its name.
fn finalize(service: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let doomed = &plan.delete[i];
        let Some(last) = plan.create.last() else {
            break;
        };
        if doomed.address_type == last.address_type && owned_by(doomed, service) {
            let doomed = plan.delete.remove(i);
            let mut slice = plan.create.pop().unwrap_or_default();
            slice.metadata.name = doomed.metadata.name.clone();
            slice.metadata.generate_name = doomed.metadata.generate_name.clone();
            slice.metadata.resource_version = doomed.metadata.resource_version.clone();
            slice.metadata.uid = doomed.metadata.uid.clone();
            slice.metadata.creation_timestamp = doomed.metadata.creation_timestamp.clone();
            plan.update.push(slice);
        } else {
            i += 1;
        }
    }
}

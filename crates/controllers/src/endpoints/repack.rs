//! The canonical layout of an Endpoints object's subsets (upstream's
//! `pkg/api/v1/endpoints` `RepackSubsets`) and its truncation at capacity
//! (`truncateEndpoints`). Pure.
//!
//! ```text
//!  (address, port, ready) triples ─▶ per port: its addresses (not ready wins over ready)
//!    ─▶ ports offered by exactly the same addresses share one subset
//!    ─▶ addresses sorted by IP then pod uid, ports and subsets in a fixed order
//! ```
//!
//! Departure: upstream orders ports and subsets by an md5 of their Go dump; peapod by their
//! fields, so the order is stable but not byte-for-byte upstream's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

/// Upstream's `maxCapacity`: addresses an Endpoints object holds at most.
pub const MAX_CAPACITY: usize = 1000;

/// An address's identity in repacking: its IP and the uid of the pod it points at.
type AddressKey = (String, String);
/// A port's identity: name, number, protocol, appProtocol.
type PortKey = (String, i32, String, String);

fn address_key(a: &EndpointAddress) -> AddressKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|t| t.uid.clone())
            .unwrap_or_default(),
    )
}

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// `RepackSubsets`. Addresses listed without any port (a headless Service without ports)
/// stay in one port-less subset.
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    // Port (`None`: no port) → the port and, per address, whether it is ready.
    type Readiness = BTreeMap<AddressKey, bool>;
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, Readiness)> = BTreeMap::new();
    let mut note = |addr: &EndpointAddress, port: Option<&EndpointPort>, ready: bool| {
        let k = address_key(addr);
        addresses.entry(k.clone()).or_insert_with(|| addr.clone());
        let entry = by_port
            .entry(port.map(port_key))
            .or_insert_with(|| (port.cloned(), BTreeMap::new()));
        let was = entry.1.entry(k).or_insert(ready);
        // Not ready always wins over ready.
        *was = *was && ready;
    };
    for subset in subsets {
        let ports: Vec<Option<&EndpointPort>> = match subset.ports.as_deref() {
            Some(ports) if !ports.is_empty() => ports.iter().map(Some).collect(),
            _ => vec![None],
        };
        for port in ports {
            for a in subset.addresses.iter().flatten() {
                note(a, port, true);
            }
            for a in subset.not_ready_addresses.iter().flatten() {
                note(a, port, false);
            }
        }
    }
    // Ports with exactly the same addresses (and readiness) share a subset.
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, readiness) in by_port.into_values() {
        let key: Vec<_> = readiness.into_iter().collect();
        let ports = groups.entry(key).or_default();
        if let Some(p) = port {
            ports.push(p);
        }
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(members, mut ports)| {
            ports.sort_by_key(port_key);
            let pick = |ready: bool| -> Option<Vec<EndpointAddress>> {
                let list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, r)| *r == ready)
                    .filter_map(|(k, _)| addresses.get(k).cloned())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(subset_order);
    out
}

fn subset_order(s: &EndpointSubset) -> (Vec<PortKey>, Vec<AddressKey>) {
    (
        s.ports.iter().flatten().map(port_key).collect(),
        s.addresses
            .iter()
            .flatten()
            .chain(s.not_ready_addresses.iter().flatten())
            .map(address_key)
            .collect(),
    )
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (
            r + s.addresses.as_ref().map_or(0, Vec::len),
            n + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// The number of addresses (ready and not) in `subsets`.
pub fn address_count(subsets: &[EndpointSubset]) -> usize {
    let (r, n) = count(subsets);
    r + n
}

/// `truncateEndpoints`: cuts `subsets` to [`MAX_CAPACITY`] addresses, each subset keeping
/// its share (rounded up) — ready addresses first: if they alone exceed the capacity the
/// not-ready ones all go, otherwise only not-ready ones are cut. True when it cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut left = max;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let here = list.as_ref().map_or(0, Vec::len);
        // ceil(here / total * max), in integers.
        let share = (here * max).div_ceil(total).min(left);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        left -= list.as_ref().map_or(0, Vec::len);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

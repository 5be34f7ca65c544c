//! The allocators' repair loops (upstream's `ipallocator/controller/repairip.go` and
//! `portallocator/controller/repair.go`): at start and every three minutes, what the stored
//! Services hold is checked against what is recorded as taken. A Service's address or node
//! port missing from the records is claimed again (an older store, a crash between the two
//! writes); an IPAddress or node port no Service holds is given back once it was seen
//! leaked on three repairs in a row, so an allocation whose Service is still being written
//! is never taken from under it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::networking::{IP_ALLOCATOR, LABEL_MANAGED_BY};
use api::service as svcapi;
use k8s_openapi::api::core::v1::Service;
use tokio_util::sync::CancellationToken;

use super::ipalloc::{self, Owner};
use super::portalloc;
use crate::kinds;
use crate::scan::Pages;
use crate::server::ApiServer;

/// Upstream's repair interval.
pub const INTERVAL: Duration = Duration::from_secs(180);
/// Repairs a leak must be seen on before it is given back.
pub const LEAK_ROUNDS: u32 = 3;

/// Counts how many repairs in a row saw each leaked address or port.
#[derive(Default)]
pub struct Leaks {
    ips: HashMap<String, u32>,
    ports: HashMap<i32, u32>,
}

/// Which of `recorded` no Service holds and have now been seen leaked `LEAK_ROUNDS` times
/// (they go), updating the counts; a key held again is forgotten.
pub fn leaked<K: Ord + Clone + std::hash::Hash>(
    recorded: &BTreeSet<K>,
    held: &BTreeSet<K>,
    counts: &mut HashMap<K, u32>,
) -> BTreeSet<K> {
    counts.retain(|k, _| recorded.contains(k) && !held.contains(k));
    let mut out = BTreeSet::new();
    for k in recorded.difference(held) {
        let n = counts.entry(k.clone()).or_insert(0);
        *n += 1;
        if *n >= LEAK_ROUNDS {
            out.insert(k.clone());
        }
    }
    for k in &out {
        counts.remove(k);
    }
    out
}

/// Every stored Service.
async fn services(server: &ApiServer) -> Result<Vec<Service>, store::Error> {
    let prefix = kinds::service::RESOURCE.prefix();
    let mut pages = Pages::new(&server.store, &prefix);
    let mut out = Vec::new();
    while let Some(page) = pages.next().await? {
        for kv in page {
            if let Ok(svc) = serde_json::from_slice::<Service>(&kv.value) {
                out.push(svc);
            }
        }
    }
    Ok(out)
}

/// One repair of both allocators.
pub async fn repair_once(server: &ApiServer, leaks: &mut Leaks) -> Result<(), store::Error> {
    let alloc = server.services();
    let all = services(server).await?;
    // Node ports.
    let range = alloc.config.node_ports;
    let held: BTreeSet<i32> = all
        .iter()
        .flat_map(svcapi::held_node_ports)
        .filter(|p| range.contains(*p))
        .collect();
    loop {
        let snap = portalloc::read(&server.store, range).await?;
        let gone = leaked(&snap.taken, &held, &mut leaks.ports);
        let missing: Vec<i32> = held.difference(&snap.taken).copied().collect();
        if gone.is_empty() && missing.is_empty() {
            break;
        }
        if !missing.is_empty() {
            tracing::info!(ports = ?missing, "repair: node ports held by services were not recorded as taken");
        }
        if !gone.is_empty() {
            tracing::info!(ports = ?gone, "repair: releasing leaked node ports");
        }
        let mut taken: BTreeSet<i32> = snap.taken.difference(&gone).copied().collect();
        taken.extend(missing);
        if portalloc::write(&server.store, range, snap.revision, &taken).await? {
            break;
        }
    }
    // ClusterIPs.
    let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
    for svc in &all {
        for ip in svcapi::held_cluster_ips(svc) {
            owners.insert(
                ip,
                Owner {
                    namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                    name: svc.metadata.name.clone().unwrap_or_default(),
                },
            );
        }
    }
    let prefix = kinds::ipaddress::RESOURCE.prefix();
    let mut pages = Pages::new(&server.store, &prefix);
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    let mut managed: BTreeSet<String> = BTreeSet::new();
    while let Some(page) = pages.next().await? {
        for kv in page {
            let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let Some(name) = v["metadata"]["name"].as_str() else {
                continue;
            };
            recorded.insert(name.to_string());
            let parent = &v["spec"]["parentRef"];
            let owned_as_recorded = owners.get(name).is_some_and(|o| {
                parent["name"] == o.name.as_str() && parent["namespace"] == o.namespace.as_str()
            });
            if v["metadata"]["labels"][LABEL_MANAGED_BY] == IP_ALLOCATOR && !owned_as_recorded {
                managed.insert(name.to_string());
            }
        }
    }
    for (ip, owner) in &owners {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            continue;
        };
        if recorded.contains(ip) || !alloc.config.cidr.contains(addr) {
            continue;
        }
        tracing::info!(%ip, service = %format!("{}/{}", owner.namespace, owner.name), "repair: recreating the IPAddress of a service's ClusterIP");
        match ipalloc::create(&server.store, addr, alloc.config.cidr.family(), owner).await {
            Ok(()) | Err(ipalloc::IpError::Allocated) => {}
            Err(ipalloc::IpError::Store(e)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, %ip, "repair: recreating an IPAddress"),
        }
    }
    let no_owner = BTreeSet::new();
    for ip in leaked(&managed, &no_owner, &mut leaks.ips) {
        tracing::info!(%ip, "repair: deleting an IPAddress no service holds");
        let key = kinds::ipaddress::RESOURCE.key(None, &ip);
        match server.store.delete(&key, None).await {
            Ok(_) | Err(store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The repair loop: every [`INTERVAL`] until `shutdown` (the start's repair runs before
/// the server serves, in `assemble`).
pub async fn run(server: Arc<ApiServer>, mut leaks: Leaks, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        if let Err(e) = repair_once(&server, &mut leaks).await {
            tracing::warn!(error = %e, "service allocator repair");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leak_goes_on_its_third_sighting() {
        let recorded: BTreeSet<i32> = [1, 2, 3].into_iter().collect();
        let held: BTreeSet<i32> = [1].into_iter().collect();
        let mut counts = HashMap::new();
        assert!(leaked(&recorded, &held, &mut counts).is_empty());
        assert!(leaked(&recorded, &held, &mut counts).is_empty());
        // 3 is held again before its third round: forgotten.
        let held3: BTreeSet<i32> = [1, 3].into_iter().collect();
        assert_eq!(
            leaked(&recorded, &held3, &mut counts),
            [2].into_iter().collect()
        );
        assert_eq!(counts.get(&3), None);
    }
}

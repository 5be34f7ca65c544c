//! Upstream's node IPAM controller with its range allocator
//! (`pkg/controller/nodeipam`, `ipam/range_allocator.go`): every Node gets a pod CIDR cut from
//! the cluster CIDR (kube-controller-manager's `--cluster-cidr`, default 10.42.0.0/16 as
//! k3s's) in `--node-cidr-mask-size` pieces (/24), written to `spec.podCIDR` and
//! `spec.podCIDRs` with a strategic merge patch, as upstream's `PatchNodeCIDRs`.
//!
//! ```text
//!  node cache synced ─▶ rebuild: every node's own podCIDR marked taken (oldest node first,
//!                       so of two claiming one subnet the older keeps it), then every
//!                       node without one queued          (restart- and failover-safe: the
//!                       nodes are the only record, nothing is kept elsewhere)
//!  node applied, podCIDR set   ─▶ marked taken; taken by another node ─▶ Warning event
//!                                 CIDRNotAvailable on it, nothing changed
//!  node applied, podCIDR unset ─▶ next free subnet reserved ─▶ PATCH spec.podCIDR(s)
//!                                 range exhausted ─▶ Warning CIDRNotAvailable, retried
//!                                 with backoff (a deleted node frees a subnet)
//!                                 patch failed ─▶ reservation released, retried with backoff
//!  node deleted                ─▶ its subnet is free again; nodes waiting for one try at
//!                                 once (upstream waits for their requeue backoff)
//!  watch lagged                ─▶ rebuild from the cache
//! ```
//!
//! One loop owns the allocator (upstream runs 30 workers over a locked one); patches are
//! few (once per node in its life), so one at a time is plenty.
//!
//! Does not own: the node's own `--pod-cidr` (the agent registers it, and this controller
//! then only marks it taken), IPv6 and dual-stack (a comma list is accepted as upstream's
//! flag, but exactly one IPv4 CIDR in it), the cloud allocator.

mod cidrset;

pub use cidrset::{CidrError, CidrSet, Ipv4Net, Observed, RangeAllocator};

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::Client;
use record::{EventType, Recorder};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::informer::{Change, Informer};

/// The events' `source.component`, upstream's for this allocator.
pub const COMPONENT: &str = "cidrAllocator";
/// kube-controller-manager's `--node-cidr-mask-size` default for IPv4.
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;
/// The default `--cluster-cidr` (k3s's).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// The allocator's configuration, checked before the controller starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub cluster_cidr: Ipv4Net,
    pub node_cidr_mask_size: u8,
    /// The Service range, kept out of the allocation when it overlaps.
    pub service_cidr: Option<Ipv4Net>,
}

impl Config {
    /// From the flags: `cluster_cidrs` is upstream's comma list, of which peapod takes
    /// exactly one IPv4 CIDR.
    pub fn parse(
        cluster_cidrs: &str,
        node_cidr_mask_size: u8,
        service_cidr: Option<&str>,
    ) -> Result<Config, CidrError> {
        let list: Vec<&str> = cluster_cidrs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let [one] = list.as_slice() else {
            return Err(CidrError::Invalid(format!(
                "{cluster_cidrs} (one IPv4 cluster CIDR is supported)"
            )));
        };
        let cluster_cidr = Ipv4Net::parse(one)?;
        // Fails now, not in the controller, when the mask does not fit.
        CidrSet::new(cluster_cidr, node_cidr_mask_size)?;
        Ok(Config {
            cluster_cidr,
            node_cidr_mask_size,
            service_cidr: service_cidr.and_then(|s| Ipv4Net::parse(s).ok()),
        })
    }

    fn allocator(&self) -> Result<RangeAllocator, CidrError> {
        RangeAllocator::new(
            self.cluster_cidr,
            self.node_cidr_mask_size,
            self.service_cidr,
        )
    }
}

/// What to do about one node, from its spec and the allocator (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Its podCIDR is marked taken; nothing to write.
    Nothing,
    /// Write this subnet into its spec.
    Patch(Ipv4Net),
    /// Upstream's `CIDRNotAvailable`: the range is exhausted, or another node holds the
    /// node's own podCIDR. `retry`: try again later (exhausted; a clash needs a new spec).
    NotAvailable { why: String, retry: bool },
    /// A podCIDR this allocator cannot place (not IPv4, not in the cluster CIDR): left alone.
    Ignore(String),
}

/// The first IPv4 podCIDR of a node spec (`podCIDRs`, else the older `podCIDR`); Err holds
/// the CIDRs when there are some but none is IPv4.
fn pod_cidr(node: &Node) -> Result<Option<Ipv4Net>, String> {
    let spec = node.spec.clone().unwrap_or_default();
    let mut cidrs = spec.pod_cidrs.unwrap_or_default();
    if cidrs.is_empty() {
        cidrs.extend(spec.pod_cidr.filter(|c| !c.is_empty()));
    }
    if cidrs.is_empty() {
        return Ok(None);
    }
    cidrs
        .iter()
        .find_map(|c| Ipv4Net::parse(c).ok())
        .map(Some)
        .ok_or_else(|| cidrs.join(","))
}

/// Upstream's `AllocateOrOccupyCIDR` as a decision.
pub fn step(ipam: &mut RangeAllocator, node: &Node) -> Step {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    match pod_cidr(node) {
        Err(cidrs) => Step::Ignore(format!("no IPv4 podCIDR among {cidrs}")),
        Ok(Some(cidr)) => match ipam.observe(name, cidr) {
            Observed::Occupied => Step::Nothing,
            Observed::Clash { holder } => Step::NotAvailable {
                why: format!("podCIDR {cidr} is already allocated to node {holder}"),
                retry: false,
            },
            Observed::OutOfRange => Step::Ignore(format!(
                "podCIDR {cidr} is outside the cluster CIDR; not tracked"
            )),
        },
        Ok(None) => match ipam.allocate(name) {
            Ok(cidr) => Step::Patch(cidr),
            Err(e) => Step::NotAvailable {
                why: e.to_string(),
                retry: true,
            },
        },
    }
}

/// Every node in the order a rebuild visits them: the oldest first.
fn by_age(nodes: Vec<Arc<Node>>) -> Vec<Arc<Node>> {
    let mut nodes = nodes;
    nodes.sort_by(|a, b| {
        let key = |n: &Node| {
            (
                n.metadata.creation_timestamp.as_ref().map(|t| t.0),
                n.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    nodes
}

/// upstream's `PatchNodeCIDRs` body.
pub fn cidr_patch(cidr: &Ipv4Net) -> serde_json::Value {
    json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}})
}

fn node_reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

struct Allocator {
    client: Client,
    cfg: Config,
    nodes: Store<Node>,
    recorder: Recorder,
    ipam: RangeAllocator,
    /// Nodes to look at again, and when.
    due: BTreeMap<String, Instant>,
    backoff: Backoff,
}

impl Allocator {
    /// Starts over from the node cache (at start, and after a lagged watch).
    fn rebuild(&mut self) -> Result<(), CidrError> {
        self.ipam = self.cfg.allocator()?;
        self.due.clear();
        let nodes = by_age(self.nodes.state());
        // Every podCIDR first, so that no allocation hands out one a node already has.
        for node in nodes.iter().filter(|n| matches!(pod_cidr(n), Ok(Some(_)))) {
            self.sync(node, false);
        }
        let now = Instant::now();
        for node in nodes.iter().filter(|n| matches!(pod_cidr(n), Ok(None))) {
            if let Some(name) = &node.metadata.name {
                self.due.insert(name.clone(), now);
            }
        }
        Ok(())
    }

    /// Marks a node's podCIDR taken or queues it for one. `patch`: allowed to write.
    fn sync(&mut self, node: &Node, patch: bool) -> Option<Ipv4Net> {
        let name = node.metadata.name.clone().unwrap_or_default();
        match step(&mut self.ipam, node) {
            Step::Nothing => {
                self.due.remove(&name);
                self.backoff.forget(&name);
                None
            }
            Step::Ignore(why) => {
                debug!(controller = "nodeipam", node = %name, %why, "ignoring node");
                None
            }
            Step::NotAvailable { why, retry } => {
                warn!(controller = "nodeipam", node = %name, %why, "CIDR not available");
                self.recorder.event(
                    &node_reference(node),
                    EventType::Warning,
                    "CIDRNotAvailable",
                    format!("Node {name} status is now: CIDRNotAvailable"),
                );
                if retry {
                    let delay = self.backoff.next(&name);
                    self.due.insert(name, Instant::now() + delay);
                }
                None
            }
            Step::Patch(cidr) if patch => Some(cidr),
            Step::Patch(_) => {
                // A node waiting out a backoff keeps its time.
                self.due.entry(name).or_insert_with(Instant::now);
                None
            }
        }
    }

    /// Gives `name` a subnet if it still has none (upstream's `updateCIDRsAllocation`).
    async fn allocate(&mut self, name: &str) {
        let Some(node) = self
            .nodes
            .get(&kube::runtime::reflector::ObjectRef::new(name))
        else {
            return;
        };
        let Some(cidr) = self.sync(&node, true) else {
            return;
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = cidr_patch(&cidr);
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(updated) => {
                info!(controller = "nodeipam", node = %name, pod_cidr = %cidr, "set node PodCIDR");
                self.backoff.forget(name);
                self.due.remove(name);
                // The node as written: its podCIDR is now its own.
                if let Ok(Some(own)) = pod_cidr(&updated) {
                    if own != cidr {
                        self.ipam.release(name);
                        self.ipam.observe(name, own);
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.ipam.release(name);
                self.due.remove(name);
            }
            Err(e) => {
                // Someone else set it meanwhile (422: podCIDR may not change), or the API
                // failed: free the reservation and look again later, from a fresh node.
                warn!(controller = "nodeipam", node = %name, pod_cidr = %cidr, error = %e,
                    "failed to update node PodCIDR; releasing the reservation");
                self.ipam.release(name);
                let delay = self.backoff.next(name);
                self.due.insert(name.to_string(), Instant::now() + delay);
                if let Ok(fresh) = api.get(name).await {
                    if matches!(pod_cidr(&fresh), Ok(Some(_))) {
                        self.sync(&fresh, false);
                    }
                }
            }
        }
    }

    fn next_due(&self) -> Option<(String, Instant)> {
        self.due
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(n, at)| (n.clone(), *at))
    }
}

/// The controller on the shared node informer (call before it runs).
pub fn controller(
    client: Client,
    cfg: Config,
    nodes: &Informer<Node>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (changes, lagged) = nodes.subscribe();
    let (store, synced) = (nodes.store(), nodes.synced());
    let (recorder, sink) = Recorder::new(client.clone(), crate::event_source(COMPONENT));
    async move {
        let sink = tokio::spawn(sink.run(shutdown.clone()));
        let ready = tokio::select! {
            ready = synced => ready,
            _ = shutdown.cancelled() => false,
        };
        if !ready {
            return;
        }
        let ipam = match cfg.allocator() {
            Ok(ipam) => ipam,
            Err(e) => {
                warn!(controller = "nodeipam", error = %e, "not starting");
                return;
            }
        };
        info!(controller = "nodeipam", cluster_cidr = %cfg.cluster_cidr,
            node_cidr_mask_size = cfg.node_cidr_mask_size, "starting range CIDR allocator");
        let mut me = Allocator {
            client,
            cfg,
            nodes: store,
            recorder,
            ipam,
            due: BTreeMap::new(),
            backoff: Backoff::controller_default(),
        };
        if me.rebuild().is_err() {
            return;
        }
        let mut changes = std::pin::pin!(changes);
        let mut lagged = std::pin::pin!(lagged);
        loop {
            let next = me.next_due();
            let wake = next
                .as_ref()
                .map_or_else(|| Instant::now() + crate::RESYNC, |(_, at)| *at);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                change = changes.next() => match change {
                    Some(Change::Applied(node)) => {
                        me.sync(&node, false);
                    }
                    Some(Change::Deleted(node)) => {
                        if let Some(name) = node.metadata.name.as_deref() {
                            if let Some(cidr) = me.ipam.release(name) {
                                info!(controller = "nodeipam", node = %name, pod_cidr = %cidr, "released the node's CIDR");
                                // Nodes waiting out an exhausted range try at once rather
                                // than at the end of their backoff.
                                let now = Instant::now();
                                me.due.values_mut().for_each(|at| *at = now);
                            }
                            me.due.remove(name);
                            me.backoff.forget(name);
                        }
                    }
                    None => break,
                },
                Some(()) = lagged.next() => {
                    let _ = me.rebuild();
                }
                _ = tokio::time::sleep_until(wake) => {
                    match next {
                        Some((name, _)) => {
                            me.due.remove(&name);
                            me.allocate(&name).await;
                        }
                        None => {
                            let _ = me.rebuild();
                        }
                    }
                }
            }
        }
        let _ = sink.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::time::Duration;

    fn node(name: &str, cidrs: &[&str]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidrs.first().map(|c| c.to_string()),
                pod_cidrs: Some(cidrs.iter().map(|c| c.to_string()).collect()),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn steps() {
        let cfg = Config::parse("10.42.0.0/23", 24, None).unwrap_or_else(|e| panic!("{e}"));
        let mut ipam = cfg.allocator().unwrap_or_else(|e| panic!("{e}"));
        let cases: Vec<(Node, Step)> = vec![
            (node("explicit", &["10.42.1.0/24"]), Step::Nothing),
            (node("a", &[]), Step::Patch(net("10.42.0.0/24"))),
            (
                node("b", &[]),
                Step::NotAvailable {
                    why: "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range".into(),
                    retry: true,
                },
            ),
            (
                node("twin", &["10.42.1.0/24"]),
                Step::NotAvailable {
                    why: "podCIDR 10.42.1.0/24 is already allocated to node explicit".into(),
                    retry: false,
                },
            ),
            (
                node("v6", &["fd00::/64"]),
                Step::Ignore("no IPv4 podCIDR among fd00::/64".into()),
            ),
            (
                node("dual", &["fd00::/64", "192.168.9.0/24"]),
                Step::Ignore("podCIDR 192.168.9.0/24 is outside the cluster CIDR; not tracked".into()),
            ),
            // The patch landed: the node now shows the reserved subnet.
            (node("a", &["10.42.0.0/24"]), Step::Nothing),
        ];
        for (n, want) in cases {
            let name = n.metadata.name.clone().unwrap_or_default();
            assert_eq!(step(&mut ipam, &n), want, "{name}");
        }
    }

    #[test]
    fn flags() {
        let ok = Config::parse("10.42.0.0/16", 24, Some("10.43.0.0/16"));
        assert_eq!(
            ok.map(|c| (c.cluster_cidr.to_string(), c.node_cidr_mask_size)),
            Ok(("10.42.0.0/16".to_string(), 24))
        );
        for bad in ["", "10.42.0.0/16,10.44.0.0/16", "fd00::/48", "10.42.0.0"] {
            assert!(Config::parse(bad, 24, None).is_err(), "{bad:?}");
        }
        assert_eq!(
            Config::parse("10.0.0.0/8", 25, None),
            Err(CidrError::SubnetTooBig)
        );
    }

    #[test]
    fn patch_is_upstreams() {
        assert_eq!(
            cidr_patch(&net("10.42.3.0/24")),
            json!({"spec": {"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24"]}})
        );
    }

    #[test]
    fn rebuild_visits_the_oldest_first() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let mut old = node("zz-old", &["10.42.0.0/24"]);
        old.metadata.creation_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let mut young = node("aa-young", &["10.42.0.0/24"]);
        young.metadata.creation_timestamp =
            Some(Time(jiff::Timestamp::UNIX_EPOCH + Duration::from_secs(5)));
        let order: Vec<_> = by_age(vec![Arc::new(young), Arc::new(old)])
            .iter()
            .map(|n| n.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(order, ["zz-old", "aa-young"]);
    }
}

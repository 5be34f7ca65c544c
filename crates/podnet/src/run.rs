//! The running pod network: a reflector on Nodes feeds a sync loop that reads the kernel's
//! state, plans, and writes the difference.
//!
//! ```text
//!  start ─▶ --node-ip IPv4? ── no ─▶ one error line, idle until shutdown (the node runs on)
//!    │ yes: ip_forward = 1
//!    ▼
//!  Nodes listed ─▶ SYNC: read (ip -j -d -batch -, bridge -j fdb) ─▶ plan ─▶ write the
//!    │              difference (ip -batch -, bridge -batch -) ─▶ publish our VTEP on our
//!    │              Node when it differs. The first sync after a start removes whatever
//!    │              of ours is stale (routes of proto 94, entries on peapod.1).
//!    ├─ Node event ─▶ wait DEBOUNCE ─▶ SYNC, skipped when no input the plan reads changed
//!    │                (a status heartbeat changes nothing)
//!    ├─ RESYNC since the last one ─▶ SYNC even when nothing changed (repairs a route
//!    │                someone deleted, as flannel's route check does)
//!    └─ a sync failed ─▶ SYNC again after RETRY
//!  shutdown: routes, device and entries stay (pods keep talking through an agent restart);
//!  `peapod cleanup-network` removes them.
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;
use supervisor::Outage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::peers::{self, Own, Peer};
use crate::plan::{self, Local, Skip};
use crate::script::script;
use crate::{host, Cidr, PodNetConfig, PodNetError};

/// How long a Node change waits for the ones that follow it.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// A sync this often even when nothing changed (flannel checks its routes every 10 s).
const RESYNC: Duration = Duration::from_secs(30);
/// After a failed sync, another this much later.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the pod network until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    cfg: PodNetConfig,
    shutdown: CancellationToken,
) -> Result<(), PodNetError> {
    let IpAddr::V4(node_ip) = cfg.node_ip else {
        // Said once; the node runs on with its own pods only.
        error!("{}", PodNetError::NodeIp(cfg.node_ip));
        shutdown.cancelled().await;
        return Ok(());
    };
    host::enable_forwarding();
    let (nodes, writer) = reflector::store::<Node>();
    let mut events = pin!(reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff()
    ));
    let mut outage = Outage::new("node watch");
    let mut synced = false;
    let mut syncer = Syncer {
        api: Api::all(client),
        cfg,
        node_ip,
        last: None,
        skipped: BTreeMap::new(),
        sync_outage: Outage::new("pod network sync"),
    };
    let mut due: Option<Instant> = None;
    let mut resync_at = Instant::now() + RESYNC;
    info!(mode = %syncer.cfg.mode, "pod network started");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    outage.succeeded();
                    synced |= matches!(ev, watcher::Event::InitDone);
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                Some(Err(e)) => outage.failed(&e),
                None => return Err(PodNetError::WatchEnded),
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if synced && due.is_some() => {
                due = None;
                if !syncer.sync(&nodes, false).await {
                    due = Some(Instant::now() + RETRY);
                }
            }
            _ = tokio::time::sleep_until(resync_at), if synced => {
                resync_at = Instant::now() + RESYNC;
                if !syncer.sync(&nodes, true).await {
                    due = Some(Instant::now() + RETRY);
                }
            }
        }
    }
    info!("pod network stopped; its routes stay until `peapod cleanup-network`");
    Ok(())
}

/// What one sync planned from: when it is the same as last time, nothing is read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    own: Own,
    peers: Vec<Peer>,
}

struct Syncer {
    api: Api<Node>,
    cfg: PodNetConfig,
    node_ip: Ipv4Addr,
    /// The inputs of the last successful sync.
    last: Option<Inputs>,
    /// Peers without a route and why, as last logged.
    skipped: BTreeMap<String, Skip>,
    sync_outage: Outage,
}

impl Syncer {
    /// One sync; false when it failed.
    async fn sync(&mut self, nodes: &Store<Node>, force: bool) -> bool {
        let state = nodes.state();
        let (own, peers) = peers::peers(state.iter().map(|n| n.as_ref()), &self.cfg.node_name);
        let inputs = Inputs { own, peers };
        if !force && self.last.as_ref() == Some(&inputs) {
            return true;
        }
        match self.sync_inputs(&inputs).await {
            Ok(()) => {
                self.sync_outage.succeeded();
                self.last = Some(inputs);
                true
            }
            Err(e) => {
                self.sync_outage.failed(&e);
                self.last = None;
                false
            }
        }
    }

    async fn sync_inputs(&mut self, inputs: &Inputs) -> Result<(), SyncError> {
        let started = std::time::Instant::now();
        let tools = self.cfg.tools.clone();
        let observed = tools.read().await?;
        let link = observed
            .link_of(self.node_ip)
            .ok_or(SyncError::NoLink(self.node_ip))?;
        let prefix = link
            .addrs
            .iter()
            .find(|(a, _)| *a == self.node_ip)
            .map_or(32, |(_, p)| *p);
        let pod_cidr = match inputs.own.pod_cidr {
            Some(c) => c,
            None => self
                .cfg
                .pod_cidr
                .parse::<Cidr>()
                .map_err(|_| SyncError::PodCidr(self.cfg.pod_cidr.clone()))?,
        };
        let local = Local {
            node_ip: self.node_ip,
            link: link.name.clone(),
            link_mtu: link.mtu,
            loopback: link.loopback,
            subnet: Cidr::new(self.node_ip, prefix),
            addrs: observed.local_addrs(),
            pod_cidr,
        };
        let desired = plan::desired(
            self.cfg.mode,
            &local,
            &inputs.peers,
            observed.vxlan_device().is_some(),
            inputs.own.vtep,
        );
        self.log_skipped(&desired.skipped);
        let script = script(&observed, &desired);
        let mut device_mac = observed.vxlan_device().and_then(|d| d.mac);
        if !script.is_empty() {
            tools.ip_batch(&script.ip).await?;
            tools.bridge_batch(&script.bridge).await?;
            if script.creates_device {
                device_mac = tools.read().await?.vxlan_device().and_then(|d| d.mac);
            }
            info!(
                routes = desired.routes.len(),
                vxlan_peers = desired.fdb.len(),
                commands = script.ip.len() + script.bridge.len(),
                elapsed = ?started.elapsed(),
                "pod network synced"
            );
        } else {
            debug!(elapsed = ?started.elapsed(), "pod network in step");
        }
        if inputs.own.exists {
            let want =
                peers::annotations(device_mac.filter(|_| desired.vxlan.is_some()), self.node_ip);
            if let Some(patch) = peers::annotation_patch(&inputs.own.annotations, &want) {
                self.api
                    .patch(
                        &self.cfg.node_name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(SyncError::Publish)?;
                info!(vtep_mac = ?device_mac.map(|m| m.to_string()), "published this node's pod network backend on its Node");
            }
        }
        Ok(())
    }

    /// One line per peer whose reason for having no route changed.
    fn log_skipped(&mut self, skipped: &[(String, Skip)]) {
        let now: BTreeMap<String, Skip> = skipped.iter().cloned().collect();
        for (peer, why) in &now {
            if self.skipped.get(peer) == Some(why) {
                continue;
            }
            match why {
                Skip::NotDirect => warn!(
                    peer = %peer,
                    "node is not on this node's subnet and --pod-network is host-gw: its pods are not reachable from here"
                ),
                Skip::NoVtep => info!(
                    peer = %peer,
                    "waiting for the node to publish its VXLAN endpoint before routing to its pods"
                ),
                Skip::Overlap => {
                    warn!(peer = %peer, "node's pod CIDR overlaps this node's: not routed")
                }
                Skip::SameHost | Skip::Loopback => {
                    debug!(peer = %peer, reason = ?why, "node not routed")
                }
            }
        }
        self.skipped = now;
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Tools(#[from] PodNetError),
    #[error("no interface holds the node IP {0}")]
    NoLink(Ipv4Addr),
    #[error("this node's pod CIDR {0:?} is not an IPv4 CIDR")]
    PodCidr(String),
    #[error("publishing the VTEP on the Node: {0}")]
    Publish(kube::Error),
}

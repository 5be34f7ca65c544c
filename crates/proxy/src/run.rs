//! The running proxy: reflectors on Services and EndpointSlices (all namespaces) feed a
//! sync loop that writes the table, one `nft -f -` transaction per sync.
//!
//! ```text
//!  start ─▶ nft usable? ── no ─▶ one error line, idle until shutdown (the node runs on)
//!    │ yes: ip_forward, bridge-nf-call-iptables
//!    ▼
//!  both watches listed ─▶ FRESH sync (table deleted and rebuilt in one transaction)
//!    │
//!    ├─ watch event ─▶ wait DEBOUNCE (events meanwhile join) ─▶ PARTIAL sync
//!    │                 (skipped when the layout did not change)
//!    ├─ an hour since the last full one ─▶ FULL sync
//!    └─ a sync failed ─▶ FRESH sync after RETRY
//!  shutdown: the table stays (traffic keeps flowing through an agent restart);
//!  `peapod cleanup-network` removes it.
//! ```

use std::pin::pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;
use supervisor::Outage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::layout::{Layout, LayoutCache};
use crate::model::{desired, Desired};
use crate::nft::Nft;
use crate::render::{fixed_rule_count, render, RenderConfig, SyncKind, Written};
use crate::{conntrack, host, ProxyConfig, ProxyError};

/// How long a change waits for the ones that follow it before the sync (upstream batches
/// with a 1 s minimum between syncs; a new endpoint should take traffic within 100 ms).
const DEBOUNCE: Duration = Duration::from_millis(10);
/// A full sync this often (upstream's `--sync-period` default is 1 h for nftables).
const FULL_SYNC_EVERY: Duration = Duration::from_secs(3600);
/// After a failed sync, a fresh one this much later.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the proxy until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    cfg: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    let render_cfg = cfg.render_config()?;
    let nft = Nft::default();
    if let Err(reason) = nft.check().await {
        // Said once; the rest of the node runs without Services.
        error!("{}", ProxyError::Unavailable { reason });
        shutdown.cancelled().await;
        return Ok(());
    }
    host::enable();

    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let mut svc_events = pin!(reflector::reflector(
        svc_writer,
        watch::<Service>(client.clone())
    ));
    let mut slice_events = pin!(reflector::reflector(
        slice_writer,
        watch::<EndpointSlice>(client)
    ));
    let mut svc_outage = Outage::new("service watch");
    let mut slice_outage = Outage::new("endpointslice watch");
    let (mut svc_synced, mut slices_synced) = (false, false);

    let mut syncer = Syncer::new(cfg, render_cfg, nft);
    // When the next sync is due (None: nothing pending).
    let mut due: Option<Instant> = None;
    info!(table = %syncer.render_cfg.table, "service proxy started");
    loop {
        let ready = svc_synced && slices_synced;
        let full_at = syncer.last_full + FULL_SYNC_EVERY;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ev = svc_events.next() => match ev {
                Some(Ok(ev)) => {
                    svc_outage.succeeded();
                    svc_synced |= matches!(ev, watcher::Event::InitDone);
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                Some(Err(e)) => svc_outage.failed(&e),
                None => return Err(ProxyError::WatchEnded("service")),
            },
            ev = slice_events.next() => match ev {
                Some(Ok(ev)) => {
                    slice_outage.succeeded();
                    slices_synced |= matches!(ev, watcher::Event::InitDone);
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                Some(Err(e)) => slice_outage.failed(&e),
                None => return Err(ProxyError::WatchEnded("endpointslice")),
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if ready && due.is_some() => {
                due = None;
                if !syncer.sync(&services, &slices, false).await {
                    due = Some(Instant::now() + RETRY);
                }
            }
            _ = tokio::time::sleep_until(full_at), if ready && syncer.written.is_some() => {
                if !syncer.sync(&services, &slices, true).await {
                    due = Some(Instant::now() + RETRY);
                }
            }
        }
    }
    info!("service proxy stopped; its table stays until `peapod cleanup-network`");
    Ok(())
}

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

/// What the proxy knows of the table between syncs.
struct Syncer {
    cfg: ProxyConfig,
    render_cfg: RenderConfig,
    nft: Nft,
    /// The table as our last transaction left it; None: rebuild it from scratch.
    written: Option<Written>,
    /// The layout and desired state of the last successful sync.
    last: Option<(Layout, Desired)>,
    last_full: Instant,
    cache: LayoutCache,
}

impl Syncer {
    fn new(cfg: ProxyConfig, render_cfg: RenderConfig, nft: Nft) -> Syncer {
        Syncer {
            cfg,
            render_cfg,
            nft,
            written: None,
            last: None,
            last_full: Instant::now(),
            cache: LayoutCache::default(),
        }
    }

    /// One sync; false when it failed (the next one then starts from scratch).
    async fn sync(
        &mut self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        full: bool,
    ) -> bool {
        let started = std::time::Instant::now();
        let svcs = services.state();
        let eps = slices.state();
        let want = desired(
            svcs.iter().map(|s| s.as_ref()),
            eps.iter().map(|s| s.as_ref()),
            &self.cfg.node_name,
        );
        let want_layout = self.cache.layout(&want, self.render_cfg.cluster_cidr);
        let kind = match (&self.written, full) {
            (None, _) => SyncKind::Fresh,
            (Some(_), true) => SyncKind::Full,
            (Some(_), false) => SyncKind::Partial,
        };
        if kind == SyncKind::Partial && self.last.as_ref().is_some_and(|(l, _)| *l == want_layout) {
            // Nothing the table shows changed (a status update, a resync).
            if let Some((_, d)) = &mut self.last {
                *d = want;
            }
            return true;
        }
        let prev = self.written.clone().unwrap_or_default();
        let tx = render(&self.render_cfg, &want_layout, kind, &prev);
        if let Err(e) = self.nft.apply(&tx.script).await {
            warn!(error = %e, kind = ?tx.kind, "service proxy sync failed; rebuilding the table shortly");
            self.written = None;
            return false;
        }
        let total_rules = fixed_rule_count(&self.render_cfg)
            + want_layout.chains.values().map(Vec::len).sum::<usize>();
        let elapsed = started.elapsed();
        if tx.kind == SyncKind::Partial {
            debug!(
                services = want.len(),
                chains_written = tx.stats.chains_written,
                chains_deleted = tx.stats.chains_deleted,
                ?elapsed,
                "service proxy synced"
            );
        } else {
            info!(
                kind = ?tx.kind,
                service_ports = want.len(),
                rules = total_rules,
                ?elapsed,
                "service proxy synced"
            );
        }
        if tx.kind != SyncKind::Partial {
            self.last_full = Instant::now();
        }
        self.written = Some(tx.written);
        let previous = self.last.take().map(|(_, d)| d).unwrap_or_default();
        let stale = conntrack::stale_entries(&previous, &want);
        self.last = Some((want_layout, want));
        if !stale.is_empty() {
            conntrack::delete(&stale).await;
        }
        true
    }
}

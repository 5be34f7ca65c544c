//! The watchers feeding the cache: kube-runtime reflectors on Namespaces, Services and
//! EndpointSlices (all namespaces). Every change marks the snapshot stale; a rebuild
//! follows [`SETTLE`] later, so a burst (a relist, a rollout) costs one rebuild. While the
//! API server is away the watchers retry with backoff and the last snapshot keeps
//! answering; each watch's outage is logged once (then at most once a minute).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use supervisor::Outage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::zone::{BuildOptions, Cache, Zone};
use crate::Error;

/// How long after a change the snapshot is rebuilt.
pub const SETTLE: Duration = Duration::from_millis(10);

/// Keeps `cache` up to date until `shutdown`.
pub async fn run(
    client: Client,
    cache: Arc<Cache>,
    base: BuildOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let config = watcher::Config::default();
    let ns_events = reflector::reflector(
        ns_writer,
        watcher(Api::<Namespace>::all(client.clone()), config.clone()).default_backoff(),
    )
    .map(|e| (0usize, e.map(|ev| matches!(ev, watcher::Event::InitDone))));
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(Api::<Service>::all(client.clone()), config.clone()).default_backoff(),
    )
    .map(|e| (1usize, e.map(|ev| matches!(ev, watcher::Event::InitDone))));
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), config).default_backoff(),
    )
    .map(|e| (2usize, e.map(|ev| matches!(ev, watcher::Event::InitDone))));
    let mut events =
        stream::select_all([ns_events.boxed(), svc_events.boxed(), slice_events.boxed()]);
    let mut outages = [
        Outage::new("cluster dns namespace watch"),
        Outage::new("cluster dns service watch"),
        Outage::new("cluster dns endpointslice watch"),
    ];
    let mut listed = [false; 3];
    let mut rebuild_at: Option<Instant> = None;
    loop {
        let wake = rebuild_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            event = events.next() => match event {
                Some((which, Ok(init_done))) => {
                    outages[which].succeeded();
                    listed[which] |= init_done;
                    rebuild_at.get_or_insert_with(|| Instant::now() + SETTLE);
                }
                Some((which, Err(e))) => outages[which].failed(&e),
                None => return Err(Error::WatchEnded),
            },
            _ = tokio::time::sleep_until(wake), if rebuild_at.is_some() => {
                rebuild_at = None;
                let opts = BuildOptions {
                    synced: listed.iter().all(|l| *l),
                    serial: now_serial(),
                    ..base.clone()
                };
                cache.store(snapshot(&opts, &namespaces, &services, &slices));
            }
        }
    }
}

fn snapshot(
    opts: &BuildOptions,
    namespaces: &Store<Namespace>,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Zone {
    let namespaces = namespaces.state();
    let services = services.state();
    let slices = slices.state();
    Zone::build(
        opts,
        namespaces.iter().map(|n| &**n),
        services.iter().map(|s| &**s),
        slices.iter().map(|s| &**s),
    )
}

/// The SOA serial: now, in Unix seconds (CoreDNS: the time of the last change).
pub fn now_serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

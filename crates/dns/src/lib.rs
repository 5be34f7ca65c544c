//! Cluster DNS, node-local: every node agent answers DNS for the cluster on its pod
//! bridge's gateway, as CoreDNS's kubernetes plugin answers (the DNS specification for
//! Kubernetes), from a cache its own watchers fill, and forwards other names to the
//! host's resolvers. Pods reach it at the `kube-dns` ClusterIP, which the node proxy sends
//! to the node's own server (the Service is `internalTrafficPolicy: Local` and every node
//! publishes its endpoint, [`publish`]). Being in the agent, it keeps answering from its
//! cache while the API server is away.
//!
//! Owns: the cache ([`zone`]), the answers ([`answer`], pure), the UDP/TCP server
//! ([`server`]), forwarding ([`forward`]), reading the upstream resolvers
//! ([`resolvconf`]), the watchers ([`watch`]) and the node's kube-dns EndpointSlice
//! ([`publish`]).
//!
//! Does not own: the `kube-dns` Service (the API server creates it), the DNAT of its
//! ClusterIP (the node proxy), pods' resolv.conf (the agent).
//!
//! May depend on: hickory-proto for the wire format only, kube/k8s-openapi, tokio,
//! socket2, the workspace's `supervisor` (outage logging). Nothing else of the workspace.

pub mod answer;
pub mod forward;
pub mod publish;
pub mod resolvconf;
pub mod server;
pub mod watch;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use zone::{Cache, Zone};

/// What the node's DNS server serves and where.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The pod bridge's gateway (the first address of the node's pod CIDR).
    pub listen: IpAddr,
    /// 53; 0 picks a free port (tests).
    pub port: u16,
    /// The cluster domain without dots at either end (`cluster.local`).
    pub cluster_domain: String,
    /// The resolvers other names go to (the host's resolv.conf); none: SERVFAIL at once.
    pub upstreams: Vec<SocketAddr>,
    /// The node whose kube-dns EndpointSlice [`run`] keeps published (None: not published).
    pub node_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the cluster DNS server on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("a cluster DNS watch ended")]
    WatchEnded,
    #[error("publishing the node's kube-dns endpoint: {step}: {source}")]
    Publish {
        step: &'static str,
        source: kube::Error,
    },
}

/// A bound server, not yet serving: lets a caller learn the port and fill the cache.
pub struct Server {
    cache: Arc<Cache>,
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
    upstreams: Vec<SocketAddr>,
    forward_budget: Duration,
}

impl Server {
    /// Binds UDP and TCP on `cfg.listen:cfg.port`; the cache starts empty and unsynced.
    pub fn bind(cfg: &DnsConfig) -> Result<Server, Error> {
        let addr = SocketAddr::new(cfg.listen, cfg.port);
        let (udp, tcp) = server::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        let local_addr = udp
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let cache = Arc::new(Cache::new(Zone::build(&build_options(cfg), [], [], [])));
        Ok(Server {
            cache,
            udp,
            tcp,
            local_addr,
            upstreams: cfg.upstreams.clone(),
            forward_budget: forward::BUDGET,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn cache(&self) -> Arc<Cache> {
        self.cache.clone()
    }

    /// Answers until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) {
        let handler = Arc::new(server::Handler::new(
            self.cache,
            self.upstreams,
            self.forward_budget,
        ));
        server::serve(handler, self.udp, self.tcp, shutdown).await
    }
}

fn build_options(cfg: &DnsConfig) -> zone::BuildOptions {
    zone::BuildOptions {
        domain: cfg.cluster_domain.clone(),
        fallback_ns_addr: cfg.listen,
        synced: false,
        serial: watch::now_serial(),
    }
}

/// The node's DNS server: binds, then serves from a cache the watchers keep current and,
/// with `cfg.node_name`, keeps the node's kube-dns endpoint published. Returns on
/// `shutdown`, or with the error that stopped it.
pub async fn run(client: Client, cfg: DnsConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let server = Server::bind(&cfg)?;
    info!(
        addr = %server.local_addr(),
        domain = %cfg.cluster_domain,
        upstreams = ?cfg.upstreams,
        "cluster DNS serving"
    );
    let cache = server.cache();
    let stop = shutdown.child_token();
    let serving = tokio::spawn(server.serve(stop.clone()));
    let publishing = cfg.node_name.clone().map(|node| {
        let client = client.clone();
        let stop = stop.clone();
        let addr = cfg.listen;
        tokio::spawn(async move {
            tokio::select! {
                _ = keep_published(&client, &node, addr) => {}
                _ = stop.cancelled() => {}
            }
        })
    });
    let result = watch::run(client, cache, build_options(&cfg), stop.clone()).await;
    stop.cancel();
    let _ = serving.await;
    if let Some(p) = publishing {
        let _ = p.await;
    }
    result
}

/// Creates or updates this node's EndpointSlice of the `kube-dns` Service (see
/// [`publish`]); idempotent.
pub async fn publish_node_endpoint(
    client: &Client,
    node_name: &str,
    addr: IpAddr,
) -> Result<(), Error> {
    publish::publish(client, node_name, addr).await
}

/// Publishes the node's endpoint, retrying with backoff until it holds, then checks it
/// again every minute (someone may delete it).
async fn keep_published(client: &Client, node: &str, addr: IpAddr) {
    let mut outage = supervisor::Outage::new("publishing the node's kube-dns endpoint");
    let mut delay = Duration::from_millis(500);
    loop {
        match publish::publish(client, node, addr).await {
            Ok(()) => {
                outage.succeeded();
                delay = Duration::from_millis(500);
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Err(e) => {
                outage.failed(&e);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The upstream resolvers of a resolv.conf file; a file that cannot be read gives none
/// (every forwarded question then gets SERVFAIL at once), with a warning.
pub fn upstreams_from(path: &std::path::Path) -> Vec<SocketAddr> {
    match std::fs::read_to_string(path) {
        Ok(text) => resolvconf::nameservers(&text),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "reading the upstream resolvers; names outside the cluster get SERVFAIL");
            Vec::new()
        }
    }
}

//! The Kubernetes API server of peapod.
//!
//! Owns: HTTPS serving with a generated CA, bearer-token authentication, request decoding
//! into typed operations (`request`), REST semantics per verb (`handlers`), watch, discovery,
//! OpenAPI publication, Table output, admission, the system namespaces and priority classes
//! (`bootstrap`), event expiry (`event_ttl`), service-account tokens, and what Services hold
//! outside their objects — ClusterIPs, node ports — with the system Services and the
//! `kubernetes` endpoints (`services`).
//!
//! Does not own: what objects mean (defaulting, validation, patching and printing live in the
//! `api` crate) or how they are stored (the `store` crate's `Store` trait).
//!
//! May depend on: api, store, openapi, hyper, rustls, rcgen. Never on a store backend.

pub mod admission;
pub mod authn;
pub mod authz;
pub mod body;
pub mod bootstrap;
pub mod bootstraptoken;
pub mod bundle;
pub mod convert;
pub mod discovery;
pub mod duplicates;
pub mod errors;
pub mod event_ttl;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
pub mod kinds;
pub mod mirror;
pub mod nodeproxy;
pub mod object;
pub mod registry;
pub mod request;
pub mod scan;
pub mod server;
pub mod serviceaccount;
pub mod services;
pub mod strategy;
pub mod table;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use supervisor::Supervisor;
use tokio_util::sync::CancellationToken;

pub use errors::ApiError;
pub use server::ApiServer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] ApiError),
}

const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// How to run an API server.
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub store: Arc<dyn store::Store>,
    /// How long events live (kube-apiserver's `--event-ttl`, default 1 h).
    pub event_ttl: std::time::Duration,
    /// The address members of the cluster (pods) reach the API on, kube-apiserver's
    /// `--advertise-address`: served on the listen port as well when `listen` does not cover
    /// it, named in the serving certificate, and reported by `/api`.
    pub advertise_address: Option<IpAddr>,
    /// The Service ranges (`--service-cidr`, `--service-node-port-range`) and the kube-dns
    /// address (`--cluster-dns`).
    pub services: services::Config,
}

/// A started API server: it serves until the supervisor's shutdown token is cancelled.
pub struct Running {
    pub server: Arc<ApiServer>,
    pub kubeconfig: PathBuf,
    pub addr: SocketAddr,
    /// The cluster CA (PEM), which the server's certificate chains to.
    pub ca_pem: String,
}

/// Binds, bootstraps the system namespaces, and registers the server's loops with
/// `supervisor`: the HTTPS accept loops are essential (an API server that no longer
/// accepts is of no use, and a half-alive one is worse: kube-apiserver exits too); the
/// admission mirrors, event expiry and the compactor are
/// restarted with backoff, each retrying its own store errors meanwhile.
pub async fn start(config: Config, supervisor: &mut Supervisor) -> Result<Running, Error> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let advertise = config
        .advertise_address
        .map(|ip| SocketAddr::new(ip, addr.port()));
    // A wildcard listen already serves the advertised address.
    let extra = advertise
        .filter(|a| !addr.ip().is_unspecified() && a.ip() != addr.ip())
        .map(|a| bind_freely(a).map_err(|source| Error::Listen { addr: a, source }))
        .transpose()?;
    let (server, pki) = assemble(
        &config.data_dir,
        addr,
        config.store,
        config.advertise_address,
        config.services,
        Agents::Dial,
    )
    .await?;

    // The strategic-merge schema is generated from every kind's types: do it now, off the
    // request path, rather than in the first PATCH (an agent's first status update). A
    // one-shot computation that cannot fail, so nothing supervises it.
    drop(tokio::task::spawn_blocking(handlers::patch::warm));
    let (s, tls_config) = (server.clone(), pki.server_config.clone());
    supervisor.spawn_essential("API server", move |token| {
        server::serve(s, listener, tls_config, token)
    });
    if let Some(listener) = extra {
        let (s, tls_config) = (server.clone(), pki.server_config.clone());
        supervisor.spawn_essential("API server (advertise address)", move |token| {
            server::serve(s, listener, tls_config, token)
        });
    }
    for (name, mirror, prefix) in [
        (
            "namespace mirror",
            server.namespaces.clone(),
            kinds::namespace::RESOURCE.prefix(),
        ),
        (
            "priority class mirror",
            server.priority_classes.clone(),
            kinds::priorityclass::RESOURCE.prefix(),
        ),
        (
            "service account mirror",
            server.service_accounts.clone(),
            kinds::serviceaccount::RESOURCE.prefix(),
        ),
    ] {
        let store = server.store.clone();
        supervisor.spawn_restarting(name, move |token| {
            mirror.clone().run(store.clone(), prefix.clone(), token)
        });
    }
    let mirror = server.services().ips.mirror.clone();
    let store = server.store.clone();
    supervisor.spawn_restarting("IPAddress mirror", move |token| {
        mirror
            .clone()
            .run(store.clone(), kinds::ipaddress::RESOURCE.prefix(), token)
    });
    let s = server.clone();
    supervisor.spawn_restarting("service allocator repair", move |token| {
        services::repair::run(s.clone(), Default::default(), token)
    });
    let s = server.clone();
    supervisor.spawn_restarting("kubernetes service and endpoints", move |token| {
        services::system::run(s.clone(), token)
    });
    let (s, ttl) = (server.clone(), config.event_ttl);
    supervisor.spawn_restarting("event expiry", move |token| {
        event_ttl::run(s.clone(), ttl, token)
    });
    // As kube-apiserver: every 5 minutes, forget history older than the previous tick.
    let store = Arc::downgrade(&server.store);
    supervisor.spawn_restarting("store compactor", move |token: CancellationToken| {
        let store = store.clone();
        async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = store::compact_periodically(store, COMPACTION_INTERVAL, 0) => {}
            }
        }
    });
    server::log_listening(addr);
    // The join token, once the API serves (the accept loop runs: its listener is bound).
    let node_token = config.data_dir.join("node-token");
    tls::write_private(
        &node_token,
        &bootstraptoken::node_token(&pki.ca_pem, &pki.join_token),
    )?;
    if let Some(a) = advertise {
        tracing::info!(advertise = %a, "pods reach the API here");
    }
    Ok(Running {
        server,
        kubeconfig: config.data_dir.join("kubeconfig.yaml"),
        addr,
        ca_pem: pki.ca_pem.clone(),
    })
}

/// Whether a server may connect to node agents (logs, exec, attach, port-forward).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Agents {
    Dial,
    /// Never: a request that would reach an agent is answered 500 "node PKI not ready"
    /// without a connection (the fuzzing harness, whose nodes name any address).
    Never,
}

/// The server state `start` serves from: the PKI in `data_dir` (made on first start), the
/// system namespaces and priority classes, marked ready at the store's current revision.
async fn assemble(
    data_dir: &std::path::Path,
    addr: SocketAddr,
    store: Arc<dyn store::Store>,
    advertise: Option<IpAddr>,
    service_config: services::Config,
    agents: Agents,
) -> Result<(Arc<ApiServer>, tls::Pki), Error> {
    // Pods reach the API at the `kubernetes` Service's address, named in the certificate.
    let bundle = bundle::resolve(store.as_ref(), &data_dir.join("pki")).await?;
    let pki = tls::ensure(
        data_dir,
        &bundle,
        addr,
        advertise,
        &[service_config.kubernetes_ip()],
    )?;
    let tokens = authn::StaticTokens::new(
        &pki.admin_token,
        &pki.controller_manager_token,
        &pki.scheduler_token,
    );
    let server = ApiServer::new(store, addr, tokens);
    if agents == Agents::Dial {
        let _ = server.nodes.set(pki.nodes.clone());
    }
    let _ = server.tokens.set(pki.service_account_keys.clone());
    let _ = server.ca_pem.set(pki.ca_pem.clone());
    if let Some(ip) = advertise {
        let _ = server.advertise.set(SocketAddr::new(ip, addr.port()));
    }
    let _ = server
        .services
        .set(Arc::new(services::Allocators::new(service_config)));
    bootstrap::bootstrap(&server).await?;
    bootstrap::join_token(&server, &pki.join_token).await?;
    // What stored Services hold is claimed before anything new is handed out.
    services::repair::repair_once(&server, &mut Default::default())
        .await
        .map_err(ApiError::from)?;
    services::system::bootstrap(&server).await?;
    let start_revision = server
        .store
        .current_revision()
        .await
        .map_err(ApiError::from)?;
    server.set_ready(start_revision);
    Ok((server, pki))
}

/// A listener on `addr` even if no interface holds the address yet (`IP_FREEBIND`): the
/// all-in-one node advertises its bridge's gateway, which the CNI bridge plugin assigns
/// only when the first pod is attached.
fn bind_freely(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

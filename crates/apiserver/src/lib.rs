//! The Kubernetes API server of peapod.
//!
//! Owns: HTTPS serving with a generated CA, bearer-token authentication, request decoding
//! into typed operations (`request`), REST semantics per verb (`handlers`), watch, discovery,
//! OpenAPI publication, Table output, admission, and the namespace lifecycle and
//! service-account controllers until the controllers crate takes them.
//!
//! Does not own: what objects mean (defaulting, validation, patching and printing live in the
//! `api` crate) or how they are stored (the `store` crate's `Store` trait).
//!
//! May depend on: api, store, openapi, hyper, rustls, rcgen. Never on a store backend.

pub mod admission;
pub mod body;
pub mod convert;
pub mod discovery;
pub mod errors;
pub mod filter;
pub mod handlers;
pub mod lifecycle;
pub mod mirror;
pub mod nodeproxy;
pub mod object;
pub mod registry;
pub mod request;
pub mod scan;
pub mod server;
pub mod serviceaccount;
pub mod strategy;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

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
}

/// A started API server: it serves until the shutdown token is cancelled.
pub struct Running {
    pub server: Arc<ApiServer>,
    pub kubeconfig: PathBuf,
    pub addr: SocketAddr,
    pub tasks: tokio::task::JoinSet<()>,
}

/// Binds, bootstraps the system namespaces and starts serving.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, Error> {
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
    let pki = tls::ensure(&config.data_dir, addr)?;
    let server = ApiServer::new(config.store, addr, pki.admin_token.clone());
    let _ = server.nodes.set(pki.nodes.clone());
    let _ = server.tokens.set(pki.service_account_keys.clone());
    lifecycle::bootstrap(&server).await?;
    let start_revision = server
        .store
        .current_revision()
        .await
        .map_err(ApiError::from)?;
    server.set_ready(start_revision);

    let mut tasks = tokio::task::JoinSet::new();
    let s = server.clone();
    let token = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = server::serve(s, listener, pki.server_config, token).await {
            warn!(error = %e, "API server stopped accepting connections");
        }
    });
    for (mirror, prefix) in [
        (server.namespaces.clone(), registry::namespaces().prefix()),
        (
            server.priority_classes.clone(),
            registry::priority_classes().prefix(),
        ),
        (
            server.service_accounts.clone(),
            registry::service_accounts().prefix(),
        ),
    ] {
        tasks.spawn(mirror.run(server.store.clone(), prefix, shutdown.clone()));
    }
    let s = server.clone();
    let token = shutdown.clone();
    tasks.spawn(lifecycle::run(s, token));
    tasks.spawn(serviceaccount::controller::run(
        server.clone(),
        pki.ca_pem.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(lifecycle::expire_events(
        server.clone(),
        config.event_ttl,
        shutdown.clone(),
    ));
    // As kube-apiserver: every 5 minutes, forget history older than the previous tick.
    let compactor = store::spawn_compactor(&server.store, COMPACTION_INTERVAL, 0);
    let token = shutdown.clone();
    tasks.spawn(async move {
        token.cancelled().await;
        compactor.abort();
    });
    server::log_listening(addr);
    Ok(Running {
        server,
        kubeconfig: config.data_dir.join("kubeconfig.yaml"),
        addr,
        tasks,
    })
}

//! A node agent's way into the cluster (k3s's agent join, kubelet TLS bootstrap and
//! certificate rotation):
//!
//! - `token`: the join token, `K10<CA sha256>::<id>.<secret>`;
//! - `cacerts`: learning the cluster CA from `/cacerts`, accepted only with the pinned hash;
//! - `csr`: a client certificate for `system:node:<name>` through the certificates.k8s.io
//!   CSR API, asked for with the bootstrap token;
//! - `certs`: the certificate kept in `D2/pki/kubelet-client-current.pem`, reused across
//!   restarts while valid, presented by every connection through a resolver that rotation
//!   updates in place;
//! - `client`: kube clients over that TLS;
//! - `lb`: the local load balancer over several API servers every client goes through.
//!
//! ```text
//!  start ─▶ stored cert valid? ──yes──────────────────────────────┐
//!              │ no                                                │
//!              ▼                                                   ▼
//!   token: K10 hash ─▶ GET /cacerts, hash ok? ─▶ CSR (bootstrap) ─▶ cert client ─▶ Rotation::run
//!          plain bearer + --ca-file ─▶ bearer client (legacy, no rotation)
//! ```
//!
//! Does not own: what the agent does with the client (crates/agent).

pub mod cacerts;
pub mod certs;
pub mod client;
pub mod csr;
pub mod lb;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("join token: {0}")]
    Token(String),
    #[error("fetching the cluster CA from {server}: {message}")]
    CaFetch { server: String, message: String },
    #[error("the cluster CA served by {server} has sha256 {got}, but the join token pins {want}: wrong token, or not the server it was made for")]
    CaMismatch {
        server: String,
        got: String,
        want: String,
    },
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("certificate signing request {name}: {message}")]
    Csr { name: String, message: String },
    #[error("API client: {0}")]
    Client(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// What the agent was given.
pub struct Options {
    /// The load balancer's URL (`lb::LoadBalancer::url`).
    pub url: String,
    /// `host:port` of the load balancer, for the unverified CA fetch.
    pub authority: String,
    /// The token file's content, if a token file was given.
    pub token: Option<String>,
    /// `--ca-file`'s content, if given.
    pub ca_pem: Option<String>,
    pub data_dir: PathBuf,
    pub node_name: String,
}

/// The agent's credential: its client, and the rotation loop when it holds a certificate.
pub struct Joined {
    pub client: kube::Client,
    pub rotation: Option<Rotation>,
}

/// Gets the agent a client: the stored certificate while valid, else a join.
pub async fn connect(opts: Options) -> Result<Joined, Error> {
    let now = jiff::Timestamp::now();
    let stored_ca = std::fs::read_to_string(opts.data_dir.join("pki").join(certs::CA)).ok();
    let stored = certs::load(&opts.data_dir)
        .filter(|c| c.valid_at(now) && c.common_name == format!("system:node:{}", opts.node_name));
    if let (Some(cred), Some(ca)) = (stored, stored_ca) {
        tracing::info!(not_after = %cred.not_after, "using the stored client certificate");
        return with_certificate(&opts, ca, cred);
    }
    let token = opts.token.as_deref().ok_or_else(|| {
        Error::Config(format!(
            "no valid client certificate in {} and no --token-file to join with",
            certs::path(&opts.data_dir).display()
        ))
    })?;
    match token::parse(token)? {
        token::Token::Join { ca_hash, bootstrap } => {
            let ca = cacerts::fetch(&opts.authority).await?;
            let got = token::ca_hash(&ca);
            if got != ca_hash {
                return Err(Error::CaMismatch {
                    server: opts.authority.clone(),
                    got,
                    want: ca_hash,
                });
            }
            let ca = String::from_utf8(ca)
                .map_err(|_| Error::Certificate("the cluster CA is not PEM".into()))?;
            certs::write_private(&opts.data_dir.join("pki").join(certs::CA), &ca)?;
            let bootstrap_client = client::build(&opts.url, &ca, client::Auth::Bearer(bootstrap))?;
            let cred = csr::obtain(&bootstrap_client, &opts.node_name).await?;
            certs::save(&opts.data_dir, &cred)?;
            with_certificate(&opts, ca, cred)
        }
        token::Token::Bearer(bearer) => {
            let ca = opts.ca_pem.clone().ok_or_else(|| {
                Error::Config(
                    "a plain bearer token needs --ca-file (a K10 join token from the server's node-token does not)"
                        .into(),
                )
            })?;
            Ok(Joined {
                client: client::build(&opts.url, &ca, client::Auth::Bearer(bearer))?,
                rotation: None,
            })
        }
    }
}

fn with_certificate(opts: &Options, ca: String, cred: certs::Credential) -> Result<Joined, Error> {
    let current = certs::CurrentCert::new(cred.certified_key()?);
    let client = client::build(&opts.url, &ca, client::Auth::Certificate(current.clone()))?;
    Ok(Joined {
        client: client.clone(),
        rotation: Some(Rotation {
            client,
            current,
            credential: cred,
            data_dir: opts.data_dir.clone(),
            node_name: opts.node_name.clone(),
        }),
    })
}

/// Renews the client certificate at its rotation deadline (`certs::rotation_deadline`),
/// authenticated by the current one; the new certificate is stored and takes effect for
/// new connections at once.
pub struct Rotation {
    client: kube::Client,
    current: Arc<certs::CurrentCert>,
    credential: certs::Credential,
    data_dir: PathBuf,
    node_name: String,
}

/// How long a failed renewal waits before the next try, and the least time between two
/// rotations: a short-lived certificate the signer backdated (5 min, upstream's signer) is
/// past its deadline as soon as it is issued, which would otherwise renew it in a loop.
const RETRY: Duration = Duration::from_secs(10);

impl Rotation {
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut first = true;
        loop {
            let deadline = certs::rotation_deadline(
                self.credential.not_before,
                self.credential.not_after,
                rand::random::<f64>(),
            );
            tracing::info!(%deadline, "next client certificate rotation");
            let mut wait: Duration = deadline
                .duration_since(jiff::Timestamp::now())
                .try_into()
                .unwrap_or(Duration::ZERO);
            if !first {
                wait = wait.max(RETRY);
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            loop {
                let renewed = tokio::select! {
                    r = self.renew() => r,
                    _ = shutdown.cancelled() => return Ok(()),
                };
                match renewed {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "rotating the client certificate; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => {}
                            _ = shutdown.cancelled() => return Ok(()),
                        }
                    }
                }
            }
        }
    }

    async fn renew(&mut self) -> Result<(), Error> {
        let cred = csr::obtain(&self.client, &self.node_name).await?;
        certs::save(&self.data_dir, &cred)?;
        self.current.set(cred.certified_key()?);
        tracing::info!(not_after = %cred.not_after, "client certificate rotated");
        self.credential = cred;
        Ok(())
    }
}

//! API clients over our own rustls configuration: kube's `Client` on a hyper connector
//! whose TLS trusts the cluster CA and presents the current client certificate
//! ([`crate::certs::CurrentCert`]) or a bearer token. kube 5 builds its connector from a
//! `Config` whose identity is fixed at build time, so rotation could not take effect
//! without a restart; this assembles the same stack (base URI, auth) on a connector of ours.

use std::sync::Arc;

use kube::client::ConfigExt;

use crate::certs::CurrentCert;
use crate::Error;

/// How the client authenticates.
pub enum Auth {
    Certificate(Arc<CurrentCert>),
    Bearer(String),
}

/// The rustls configuration: the cluster CA, and the client certificate if any.
pub fn tls_config(
    ca_pem: &str,
    cert: Option<Arc<CurrentCert>>,
) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let der = der.map_err(|e| Error::Certificate(format!("reading the CA: {e}")))?;
        roots
            .add(der)
            .map_err(|e| Error::Certificate(format!("the CA: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Certificate(e.to_string()))?
    .with_root_certificates(roots);
    Ok(match cert {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    })
}

/// A kube client of `url` (through the load balancer) trusting `ca_pem`.
pub fn build(url: &str, ca_pem: &str, auth: Auth) -> Result<kube::Client, Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::Client(format!("server URL {url:?}: {e}")))?;
    let mut config = kube::Config::new(uri);
    let resolver = match auth {
        Auth::Certificate(r) => Some(r),
        Auth::Bearer(token) => {
            config.auth_info.token = Some(token.into());
            None
        }
    };
    let tls = tls_config(ca_pem, resolver)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let auth_layer = config
        .auth_layer()
        .map_err(|e| Error::Client(e.to_string()))?;
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(auth_layer)
        .map_err(
            |e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(e)
            },
        )
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

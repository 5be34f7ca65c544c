//! Pulling from an OCI distribution registry: manifest negotiation, index platform pick,
//! bearer-token and basic auth, redirects, blob download with digest verification, and
//! handing layers to the store for unpacking.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tracing::{debug, info};

use crate::digest::{self, Hasher};
use crate::error::IoContext;
use crate::oci::{self, ConfigFile, Descriptor, Document};
use crate::store::ImageStore;
use crate::{ErrorKind, Image, ImageError, PullOptions, Reference};

pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

const USER_AGENT: &str = concat!("peapod/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// No byte for this long on a response means the registry is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

/// An HTTP(S) client trusting the system CA store, speaking HTTP/1.1.
pub(crate) fn new_http_client() -> Result<HttpClient, ImageError> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        debug!(%error, "skipping unreadable system certificate");
    }
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    debug!(certificates = added, "loaded system CA store");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImageError::content(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// Plain HTTP for loopback registries and the ones the operator listed as insecure.
fn uses_plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || insecure
            .iter()
            .any(|entry| entry == registry || entry == host)
}

fn registry_endpoint(registry: &str, insecure: &[String]) -> String {
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    let scheme = if uses_plain_http(registry, insecure) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

/// One pull's conversation with one registry: endpoint, repository, and the auth it earned.
struct Session<'a> {
    client: HttpClient,
    endpoint: String,
    repository: String,
    /// The full reference, for containerd-like messages.
    shown: String,
    opts: &'a PullOptions,
    authorization: Mutex<Option<String>>,
}

impl Session<'_> {
    fn fail(&self, kind: ErrorKind, message: impl Into<String>) -> ImageError {
        ImageError::Pull {
            reference: self.shown.clone(),
            kind,
            message: message.into(),
        }
    }

    fn resolve_failure(&self, kind: ErrorKind, message: impl std::fmt::Display) -> ImageError {
        self.fail(
            kind,
            format!("failed to resolve reference \"{}\": {message}", self.shown),
        )
    }

    /// GET `path` on the registry, answering one auth challenge and following redirects.
    /// Returns the final response whatever its status.
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, ImageError> {
        let mut url = format!("{}{path}", self.endpoint);
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            let same_host = url.starts_with(&self.endpoint);
            let auth = if same_host {
                self.authorization.lock().await.clone()
            } else {
                None
            };
            let response = self.send(&url, accept, auth.as_deref()).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(challenge) = challenge {
                    let authorization = self.answer_challenge(&challenge).await?;
                    *self.authorization.lock().await = Some(authorization);
                    continue;
                }
                return Ok(response);
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                redirects += 1;
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match location {
                    Some(location) if redirects <= MAX_REDIRECTS => {
                        url = absolute_location(&url, &location);
                        continue;
                    }
                    _ => return Ok(response),
                }
            }
            return Ok(response);
        }
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response<Incoming>, ImageError> {
        let uri: Uri = url.parse().map_err(|e| {
            self.resolve_failure(ErrorKind::Network, format!("invalid URL {url}: {e}"))
        })?;
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| self.resolve_failure(ErrorKind::Network, e))?;
        debug!(%url, "registry request");
        match tokio::time::timeout(IDLE_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.resolve_failure(
                ErrorKind::Network,
                format!("failed to do request: Get \"{url}\": {}", error_chain(&e)),
            )),
            Err(_) => Err(self.resolve_failure(
                ErrorKind::Network,
                format!("failed to do request: Get \"{url}\": timeout awaiting response headers"),
            )),
        }
    }

    /// Turns a `WWW-Authenticate` challenge into an `Authorization` header value.
    async fn answer_challenge(&self, challenge: &str) -> Result<String, ImageError> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = self.opts.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => basic.ok_or_else(|| {
                self.resolve_failure(
                    ErrorKind::Unauthorized,
                    "pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials",
                )
            }),
            "bearer" => {
                let realm = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()).ok_or_else(|| {
                    self.resolve_failure(ErrorKind::Unauthorized, "bearer challenge without realm")
                })?;
                let mut query = Vec::new();
                if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                    query.push(format!("service={}", url_encode(service)));
                }
                let scope = params
                    .iter()
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                query.push(format!("scope={}", url_encode(&scope)));
                let separator = if realm.contains('?') { '&' } else { '?' };
                let token_url = format!("{realm}{separator}{}", query.join("&"));
                let response = self.send(&token_url, Some("application/json"), basic.as_deref()).await?;
                let status = response.status();
                let body = read_small(response).await.map_err(|e| self.resolve_failure(ErrorKind::Network, e))?;
                if !status.is_success() {
                    let which = if basic.is_some() { "" } else { "anonymous " };
                    return Err(self.resolve_failure(
                        ErrorKind::Unauthorized,
                        format!(
                            "failed to authorize: failed to fetch {which}token: unexpected status from GET request to {token_url}: {status}"
                        ),
                    ));
                }
                #[derive(serde::Deserialize)]
                struct TokenResponse {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: TokenResponse = serde_json::from_slice(&body)
                    .map_err(|e| self.resolve_failure(ErrorKind::Unauthorized, format!("invalid token response: {e}")))?;
                let token = token.token.or(token.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
                    self.resolve_failure(ErrorKind::Unauthorized, "token response without token")
                })?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(self.resolve_failure(ErrorKind::Unauthorized, format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// The error for a non-success answer about `what` (a manifest reference or a blob).
    async fn status_error(
        &self,
        response: Response<Incoming>,
        what: &str,
        is_manifest: bool,
    ) -> ImageError {
        let status = response.status();
        let body = read_small(response).await.unwrap_or_default();
        let server_message = registry_error_message(&body);
        let (kind, message) = match status {
            StatusCode::NOT_FOUND => (ErrorKind::NotFound, format!("{what}: not found")),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                ErrorKind::Unauthorized,
                format!(
                    "pull access denied, repository does not exist or may require authorization: server message: {}",
                    server_message.unwrap_or_else(|| status.to_string())
                ),
            ),
            _ => (
                ErrorKind::Network,
                format!(
                    "unexpected status from GET request for {what}: {status}{}",
                    server_message.map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ),
        };
        if is_manifest {
            self.resolve_failure(kind, message)
        } else {
            self.fail(kind, message)
        }
    }

    /// A manifest or index by tag or digest: (bytes, content type).
    async fn fetch_manifest(&self, reference: &str) -> Result<(Bytes, Option<String>), ImageError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let response = self.get(&path, Some(oci::MANIFEST_ACCEPT)).await?;
        if !response.status().is_success() {
            return Err(self.status_error(response, &self.shown, true).await);
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_small(response)
            .await
            .map_err(|e| self.resolve_failure(ErrorKind::Network, e))?;
        Ok((body, content_type))
    }

    async fn fetch_small_blob(&self, descriptor: &Descriptor) -> Result<Bytes, ImageError> {
        let path = format!("/v2/{}/blobs/{}", self.repository, descriptor.digest);
        let response = self.get(&path, None).await?;
        if !response.status().is_success() {
            let what = format!("{}@{}", self.shown_name(), descriptor.digest);
            return Err(self.status_error(response, &what, false).await);
        }
        read_small(response)
            .await
            .map_err(|e| self.fail(ErrorKind::Network, e))
    }

    fn shown_name(&self) -> &str {
        self.shown.split(['@']).next().unwrap_or(&self.shown)
    }

    /// Streams a blob into the store, verifying size and digest before it becomes visible.
    async fn download_blob(
        &self,
        store: &ImageStore,
        descriptor: &Descriptor,
    ) -> Result<PathBuf, ImageError> {
        let target = store.blob_path(&descriptor.digest)?;
        if target.is_file() {
            return Ok(target);
        }
        let path = format!("/v2/{}/blobs/{}", self.repository, descriptor.digest);
        let response = self.get(&path, None).await?;
        if !response.status().is_success() {
            let what = format!("{}@{}", self.shown_name(), descriptor.digest);
            return Err(self.status_error(response, &what, false).await);
        }
        let tmp = store.tmp_path("download");
        let result = self.stream_to_file(response, &tmp, descriptor).await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&tmp, &target)
                    .await
                    .ctx(|| format!("storing blob {}", descriptor.digest))?;
                Ok(target)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn stream_to_file(
        &self,
        response: Response<Incoming>,
        tmp: &std::path::Path,
        descriptor: &Descriptor,
    ) -> Result<(), ImageError> {
        let mut file = tokio::fs::File::create(tmp)
            .await
            .ctx(|| format!("creating {}", tmp.display()))?;
        let mut body = response.into_body();
        let mut hasher = Hasher::new();
        loop {
            let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Err(_) => {
                    return Err(self.fail(
                        ErrorKind::Network,
                        format!("failed to copy: timeout reading blob {}", descriptor.digest),
                    ))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(self.fail(
                        ErrorKind::Network,
                        format!("failed to copy: {}", error_chain(&e)),
                    ))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                if hasher.bytes > descriptor.size {
                    return Err(self.fail(
                        ErrorKind::InvalidContent,
                        format!(
                            "failed to copy: blob {} is larger than its size {}",
                            descriptor.digest, descriptor.size
                        ),
                    ));
                }
                file.write_all(&data)
                    .await
                    .ctx(|| format!("writing {}", tmp.display()))?;
            }
        }
        file.flush()
            .await
            .ctx(|| format!("writing {}", tmp.display()))?;
        drop(file);
        if hasher.bytes != descriptor.size {
            return Err(self.fail(
                ErrorKind::InvalidContent,
                format!(
                    "failed to copy: blob {} has {} bytes, expected {}",
                    descriptor.digest, hasher.bytes, descriptor.size
                ),
            ));
        }
        let actual = hasher.finish();
        digest::verify(
            &descriptor.digest,
            &actual,
            &format!("failed commit on ref \"layer-{}\"", descriptor.digest),
        )
        .map_err(|e| self.fail(ErrorKind::InvalidContent, e.to_string()))
    }
}

/// Pulls `reference` into `store`.
pub(crate) async fn pull(
    store: &ImageStore,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<Image, ImageError> {
    let session = Session {
        client: store.http_client()?,
        endpoint: registry_endpoint(&reference.registry, &opts.insecure_registries),
        repository: reference.repository.clone(),
        shown: reference.to_string(),
        opts,
        authorization: Mutex::new(None),
    };
    let wanted = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".to_string());
    let (top_bytes, content_type) = session.fetch_manifest(&wanted).await?;
    let top_digest = digest::sha256_of(&top_bytes);
    if let Some(expected) = &reference.digest {
        digest::verify(expected, &top_digest, &format!("manifest {expected}"))
            .map_err(|e| session.resolve_failure(ErrorKind::InvalidContent, e))?;
    }
    store.put_blob_bytes(&top_digest, &top_bytes)?;

    let (manifest, manifest_len) = match oci::parse_document(&top_bytes, content_type.as_deref())? {
        Document::Manifest(manifest) => (manifest, top_bytes.len()),
        Document::Index(index) => {
            let chosen = oci::pick_platform(&index, &session.shown)?.clone();
            let (bytes, content_type) = session.fetch_manifest(&chosen.digest).await?;
            let actual = digest::sha256_of(&bytes);
            digest::verify(
                &chosen.digest,
                &actual,
                &format!("manifest {}", chosen.digest),
            )?;
            store.put_blob_bytes(&actual, &bytes)?;
            match oci::parse_document(&bytes, content_type.as_deref())? {
                Document::Manifest(manifest) => (manifest, bytes.len()),
                Document::Index(_) => {
                    return Err(ImageError::content(
                        "nested index in an index is not supported",
                    ))
                }
            }
        }
    };

    let config_bytes = if store.has_blob(&manifest.config.digest)? {
        store.read_blob(&manifest.config.digest)?
    } else {
        let bytes = session.fetch_small_blob(&manifest.config).await?;
        store.put_blob_bytes(&manifest.config.digest, &bytes)?;
        bytes.to_vec()
    };
    let config = ConfigFile::parse(&config_bytes)?;
    let diff_ids = config.rootfs.diff_ids.clone();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::content(format!(
            "image config has {} diff ids for {} layers",
            diff_ids.len(),
            manifest.layers.len()
        )));
    }
    for (descriptor, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        if store.has_layer(diff_id)? {
            debug!(layer = %diff_id, "layer already unpacked");
            continue;
        }
        let blob = session.download_blob(store, descriptor).await?;
        let diff_id = diff_id.clone();
        let unpack = {
            // The store is borrowed, so unpack on a blocking-pool thread through block_in_place
            // where the runtime allows it, else inline.
            move || store.ensure_layer(&diff_id, &blob)
        };
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(unpack)?,
            _ => unpack()?,
        }
    }
    let size = manifest_len as u64
        + manifest.config.size
        + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let image = Image {
        id: manifest.config.digest.clone(),
        names: reference.tagged_name().into_iter().collect(),
        repo_digests: vec![format!("{}@{top_digest}", reference.name())],
        size,
        config: config.image_config(),
        layers: diff_ids,
    };
    let stored = store.record(image)?;
    info!(image = %session.shown, id = %stored.id, "pulled image");
    Ok(stored)
}

async fn read_small(response: Response<Incoming>) -> Result<Bytes, String> {
    let limited = Limited::new(response.into_body(), oci::MAX_DOCUMENT_BYTES);
    match tokio::time::timeout(IDLE_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(format!("failed to read response: {e}")),
        Err(_) => Err("failed to read response: timeout".to_string()),
    }
}

/// `{"errors":[{"code":"UNAUTHORIZED","message":"..."}]}` -> `unauthorized: ...`.
fn registry_error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<RegistryError>,
    }
    #[derive(serde::Deserialize)]
    struct RegistryError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let errors: Errors = serde_json::from_slice(body).ok()?;
    let first = errors.errors.into_iter().next()?;
    Some(format!(
        "{}: {}",
        first.code.to_ascii_lowercase(),
        first.message
    ))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn absolute_location(current: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    // scheme://host is everything before the third '/'.
    let origin_end = current
        .match_indices('/')
        .nth(2)
        .map(|(i, _)| i)
        .unwrap_or(current.len());
    if location.starts_with('/') {
        format!("{}{location}", &current[..origin_end])
    } else {
        let base_end = current.rfind('/').map(|i| i + 1).unwrap_or(current.len());
        format!("{}{location}", &current[..base_end.max(origin_end)])
    }
}

/// `Bearer realm="x",service="y",scope="a:b:pull,push"` -> ("Bearer", [(realm,x),...]).
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    (scheme.to_string(), params)
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            vec![
                (
                    "realm".to_string(),
                    "https://auth.docker.io/token".to_string()
                ),
                ("service".to_string(), "registry.docker.io".to_string()),
                ("scope".to_string(), "repository:a/b:pull,push".to_string()),
            ]
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(
            params,
            vec![("realm".to_string(), "basic-realm".to_string())]
        );
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed() {
        let none: Vec<String> = vec![];
        assert!(uses_plain_http("localhost:5000", &none));
        assert!(uses_plain_http("127.0.0.5:80", &none));
        assert!(uses_plain_http("[::1]:5000", &none));
        assert!(!uses_plain_http("docker.io", &none));
        assert!(!uses_plain_http("10.0.0.1:5000", &none));
        assert!(uses_plain_http(
            "reg.lan:5000",
            &["reg.lan:5000".to_string()]
        ));
        assert_eq!(
            registry_endpoint("docker.io", &none),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            registry_endpoint("localhost:5000", &none),
            "http://localhost:5000"
        );
    }

    #[test]
    fn redirects_resolve() {
        assert_eq!(
            absolute_location("http://a:1/v2/x/blobs/y", "/other"),
            "http://a:1/other"
        );
        assert_eq!(
            absolute_location("http://a:1/v2/x", "https://cdn/z"),
            "https://cdn/z"
        );
        assert_eq!(absolute_location("http://a:1/v2/x", "y"), "http://a:1/v2/y");
        assert_eq!(
            url_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}

//! The server's TLS from the cluster's PKI (`crate::bundle`: the CA, the bearer tokens of
//! the admin, the controller manager and the scheduler, the service-account signing key,
//! shared by every server of the cluster through the datastore and mirrored in `DIR/pki`):
//! this server's own serving certificate signed by the CA (re-issued at every start so its
//! names follow `--listen`: every local interface address when it is a wildcard), the
//! client-certificate check (optional certificates verified against the cluster CA:
//! `crate::authn::user_from_certificate`), and the admin kubeconfig at
//! `DIR/kubeconfig.yaml`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;

use crate::serviceaccount::jwt::TokenKeys;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{path}: no usable PEM content")]
    Pem { path: PathBuf },
    #[error("cluster bootstrap data in the datastore: {0}")]
    Store(String),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("{path}: {source}")]
    TokenKey {
        path: PathBuf,
        source: crate::serviceaccount::jwt::JwtError,
    },
}

/// What the server needs from the PKI.
pub struct Pki {
    pub ca_pem: String,
    /// The join token, `<id>.<secret>` (`crate::bootstraptoken`).
    pub join_token: String,
    pub admin_token: String,
    /// The bearer tokens of the controllers and the scheduler (`crate::authn`).
    pub controller_manager_token: String,
    pub scheduler_token: String,
    pub server_config: Arc<rustls::ServerConfig>,
    pub nodes: Arc<NodePki>,
    /// Signs service-account tokens (`DIR/pki/sa.key`, upstream's
    /// `--service-account-key-file`/`--service-account-signing-key-file` in one).
    pub service_account_keys: Arc<TokenKeys>,
}

/// The API server's side of talking to node agents: it signs each agent's serving
/// certificate with the cluster CA, and connects to agents with a client certificate the
/// agents accept (upstream's `kubelet-client-certificate`).
pub struct NodePki {
    ca_pem: String,
    ca_key_pem: String,
    /// TLS to agents: trusts the cluster CA, presents the kubelet-client certificate.
    pub kubelet_client: Arc<rustls::ClientConfig>,
}

impl NodePki {
    /// A serving certificate and key for node `name`, valid for `addresses` (IPs or names).
    pub fn sign_serving_cert(
        &self,
        name: &str,
        addresses: &[String],
    ) -> Result<(String, String), TlsError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let key = KeyPair::generate()?;
        let mut sans = addresses.to_vec();
        sans.push(name.to_string());
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("system:node:{name}"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

pub(crate) fn read(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a file readable by its owner only (keys and tokens).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    // Deterministic, so the CA can be rebuilt as an issuer from its stored key alone.
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "peapod-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// A new CA: its certificate and key, PEM.
pub(crate) fn new_ca() -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The server's TLS and credentials from the cluster's `bundle` (already mirrored in
/// `dir/pki`); writes `dir/kubeconfig.yaml`.
pub fn ensure(
    dir: &Path,
    bundle: &crate::bundle::Bundle,
    listen: SocketAddr,
    advertise: Option<IpAddr>,
    service_ips: &[IpAddr],
) -> Result<Pki, TlsError> {
    let pki = dir.join("pki");
    let ca_key = KeyPair::from_pem(&bundle.ca_key)?;
    let ca_pem = bundle.ca_crt.clone();
    let issuer = Issuer::new(ca_params()?, &ca_key);

    let mut names: Vec<String> = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    if listen.ip().is_unspecified() {
        // A wildcard serves every local address: name them all.
        for ip in local_addresses() {
            if !names.contains(&ip.to_string()) {
                names.push(ip.to_string());
            }
        }
    } else if !names.contains(&listen.ip().to_string()) {
        names.push(listen.ip().to_string());
    }
    // Pods check the server against the CA in their token volume at this address.
    if let Some(ip) = advertise.filter(|ip| !names.contains(&ip.to_string())) {
        names.push(ip.to_string());
    }
    // ... and at the `kubernetes` Service's ClusterIP.
    for ip in service_ips {
        if !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host.parse::<IpAddr>().is_err() {
            names.push(host.to_string());
        }
    }
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer)?;
    write_private(&pki.join("server.crt"), &server_cert.pem())?;
    write_private(&pki.join("server.key"), &server_key.serialize_pem())?;

    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut ca_pem.as_bytes()).flatten() {
        roots.add(der)?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Client certificates are optional (bearer tokens are the other way in); one that is
    // sent must chain to the cluster CA, as upstream's `--client-ca-file`.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let chain = vec![server_cert.der().clone()];
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    // The client certificate the API server presents to node agents.
    let client_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&client_key, &issuer)?;
    let kubelet_client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![client_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
    )?;
    let ca_key_pem = ca_key.serialize_pem();

    let sa_key = KeyPair::from_pem(&bundle.sa_key)?;
    let service_account_keys =
        TokenKeys::from_pkcs8(&sa_key.serialize_der()).map_err(|source| TlsError::TokenKey {
            path: pki.join("sa.key"),
            source,
        })?;
    let admin_token = bundle.admin_token.clone();

    write_kubeconfig(dir, listen, &ca_pem, &admin_token)?;
    Ok(Pki {
        nodes: Arc::new(NodePki {
            ca_pem: ca_pem.clone(),
            ca_key_pem,
            kubelet_client: Arc::new(kubelet_client),
        }),
        ca_pem,
        join_token: bundle.join_token.clone(),
        admin_token,
        controller_manager_token: bundle.controller_manager_token.clone(),
        scheduler_token: bundle.scheduler_token.clone(),
        server_config: Arc::new(config),
        service_account_keys: Arc::new(service_account_keys),
    })
}

/// A new random bearer token (48 hex digits).
pub(crate) fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The addresses of this host's interfaces (`getifaddrs`), for a wildcard listener's
/// certificate.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: the family says which sockaddr type `ifa_addr` points to.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    // Link-local addresses need a zone, which a certificate cannot name.
                    (!ip.is_unicast_link_local()).then_some(IpAddr::V6(ip))
                }
                _ => None,
            }
        };
        if let Some(ip) = ip.filter(|ip| !out.contains(ip)) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The URL clients on this machine use to reach `listen`.
pub fn server_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        listen.ip().to_string()
    };
    match listen {
        SocketAddr::V6(_) if !listen.ip().is_unspecified() => {
            format!("https://[{ip}]:{}", listen.port())
        }
        _ => format!("https://{ip}:{}", listen.port()),
    }
}

fn write_kubeconfig(
    dir: &Path,
    listen: SocketAddr,
    ca_pem: &str,
    token: &str,
) -> Result<(), TlsError> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let server = server_url(listen);
    let doc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: peapod\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: peapod\n  context:\n    cluster: peapod\n    user: admin\n    namespace: default\ncurrent-context: peapod\npreferences: {{}}\n"
    );
    write_private(&dir.join("kubeconfig.yaml"), &doc)
}

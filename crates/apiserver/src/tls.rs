//! The cluster's PKI and credentials, kept in `DIR/pki`: a CA made on first start, a serving
//! certificate signed by it (re-issued at every start so its names follow `--listen`), the
//! bearer tokens of the admin, the controller manager and the scheduler (`crate::authn`), the
//! service-account token signing key (`sa.key`, made on first
//! start and kept, so tokens survive restarts), and the admin kubeconfig at
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
    #[error("{path}: {source}")]
    TokenKey {
        path: PathBuf,
        source: crate::serviceaccount::jwt::JwtError,
    },
}

/// What the server needs from the PKI.
pub struct Pki {
    pub ca_pem: String,
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

fn read(path: &Path) -> Result<Option<String>, TlsError> {
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
fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
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

/// Loads or creates the PKI in `dir/pki` and writes `dir/kubeconfig.yaml`.
pub fn ensure(
    dir: &Path,
    listen: SocketAddr,
    advertise: Option<IpAddr>,
    service_ips: &[IpAddr],
) -> Result<Pki, TlsError> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|source| TlsError::Io {
        path: pki.clone(),
        source,
    })?;
    let ca_key_path = pki.join("ca.key");
    let ca_crt_path = pki.join("ca.crt");
    let (ca_key, ca_pem) = match (read(&ca_key_path)?, read(&ca_crt_path)?) {
        (Some(key), Some(crt)) => (KeyPair::from_pem(&key)?, crt),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_private(&ca_crt_path, &cert.pem())?;
            (key, cert.pem())
        }
    };
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
    if !listen.ip().is_unspecified() {
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

    let admin_token = ensure_token(&pki.join("admin.token"))?;
    let controller_manager_token = ensure_token(&pki.join("kube-controller-manager.token"))?;
    let scheduler_token = ensure_token(&pki.join("kube-scheduler.token"))?;

    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let chain = vec![server_cert.der().clone()];
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
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
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut ca_pem.as_bytes()).flatten() {
        roots.add(der)?;
    }
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

    let sa_key_path = pki.join("sa.key");
    let sa_key = match read(&sa_key_path)? {
        Some(pem) => KeyPair::from_pem(&pem)?,
        None => {
            // An ECDSA P-256 key (rcgen's default), which ES256 signs with.
            let key = KeyPair::generate()?;
            write_private(&sa_key_path, &key.serialize_pem())?;
            key
        }
    };
    let service_account_keys =
        TokenKeys::from_pkcs8(&sa_key.serialize_der()).map_err(|source| TlsError::TokenKey {
            path: sa_key_path.clone(),
            source,
        })?;

    write_kubeconfig(dir, listen, &ca_pem, &admin_token)?;
    Ok(Pki {
        nodes: Arc::new(NodePki {
            ca_pem: ca_pem.clone(),
            ca_key_pem,
            kubelet_client: Arc::new(kubelet_client),
        }),
        ca_pem,
        admin_token,
        controller_manager_token,
        scheduler_token,
        server_config: Arc::new(config),
        service_account_keys: Arc::new(service_account_keys),
    })
}

/// The bearer token kept in `path`, made on first start.
fn ensure_token(path: &Path) -> Result<String, TlsError> {
    match read(path)? {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => {
            let bytes: [u8; 24] = rand::random();
            let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(path, &t)?;
            Ok(t)
        }
    }
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

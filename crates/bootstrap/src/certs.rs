//! The agent's client certificate: kept with its key in
//! `D2/pki/kubelet-client-current.pem` (the kubelet's name), reused across restarts while
//! valid, and handed to every TLS connection through [`CurrentCert`], a rustls client
//! certificate resolver whose certificate rotation replaces in place (new connections
//! present the new one, no restart).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::Error;

/// The file name, under `D2/pki`.
pub const CURRENT: &str = "kubelet-client-current.pem";
/// The cluster CA learnt in the join, under `D2/pki`.
pub const CA: &str = "ca.crt";

/// A certificate and its key, as PEM, with its validity.
#[derive(Clone, Debug)]
pub struct Credential {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    /// Subject CN.
    pub common_name: String,
}

impl Credential {
    /// Reads a certificate (the first in `cert_pem`) and checks it holds a CN.
    pub fn new(cert_pem: String, key_pem: String) -> Result<Credential, Error> {
        let der = first_cert(&cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| Error::Certificate(format!("parsing: {e}")))?;
        let ts = |t: x509_parser::time::ASN1Time| {
            jiff::Timestamp::from_second(t.timestamp())
                .map_err(|e| Error::Certificate(format!("validity: {e}")))
        };
        let not_before = ts(cert.validity().not_before)?;
        let not_after = ts(cert.validity().not_after)?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .find_map(|c| c.as_str().ok())
            .unwrap_or("")
            .to_string();
        Ok(Credential {
            cert_pem,
            key_pem,
            not_before,
            not_after,
            common_name,
        })
    }

    /// Valid at `now`.
    pub fn valid_at(&self, now: jiff::Timestamp) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// The rustls form.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, Error> {
        let chain: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| Error::Certificate(format!("reading PEM: {e}")))?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|e| Error::Certificate(format!("reading key: {e}")))?
            .ok_or_else(|| Error::Certificate("no private key".into()))?;
        let provider = rustls::crypto::ring::default_provider();
        CertifiedKey::from_der(chain, key, &provider)
            .map(Arc::new)
            .map_err(|e| Error::Certificate(e.to_string()))
    }
}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>, Error> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| Error::Certificate("no certificate in PEM".into()))?
        .map_err(|e| Error::Certificate(format!("reading PEM: {e}")))
}

/// When to ask for the next certificate: at a random point between 70 % and 90 % of the
/// lifetime (`jitter` in [0, 1) picks it), as the kubelet's certificate manager
/// (`nextRotationDeadline`: `notBefore + 0.7·total + jitter·0.2·total`).
pub fn rotation_deadline(
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
    jitter: f64,
) -> jiff::Timestamp {
    let total = i128::from((not_after.as_millisecond() - not_before.as_millisecond()).max(0));
    // In thousandths, so whole fractions of the lifetime come out exact.
    let permille = 700 + (jitter.clamp(0.0, 1.0) * 200.0).round() as i128;
    let offset = i64::try_from(total * permille / 1000).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(not_before.as_millisecond().saturating_add(offset))
        .unwrap_or(not_after)
}

/// The pair's file, `D2/pki/kubelet-client-current.pem`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join(CURRENT)
}

/// The stored pair, if any (a damaged file counts as none).
pub fn load(data_dir: &Path) -> Option<Credential> {
    let pem = std::fs::read_to_string(path(data_dir)).ok()?;
    let cert: String = pem_blocks(&pem, "CERTIFICATE");
    let key: String = pem_blocks(&pem, "PRIVATE KEY");
    match Credential::new(cert, key) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, path = %path(data_dir).display(), "ignoring the stored client certificate");
            None
        }
    }
}

/// The PEM blocks whose label ends with `label` (`PRIVATE KEY` matches `EC PRIVATE KEY`).
fn pem_blocks(pem: &str, label: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN ") && line.trim_end_matches('-').ends_with(label) {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END ") {
            inside = false;
        }
    }
    out
}

/// Stores the pair (mode 0600, atomically).
pub fn save(data_dir: &Path, cred: &Credential) -> Result<(), Error> {
    write_private(
        &path(data_dir),
        &format!("{}{}", cred.cert_pem, cred.key_pem),
    )
}

/// Writes a file readable by its owner only, replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
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

/// The certificate TLS connections present: swapped on rotation.
#[derive(Debug)]
pub struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<CurrentCert> {
        Arc::new(CurrentCert(RwLock::new(key)))
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut k) = self.0.write() {
            *k = key;
        }
    }
}

impl rustls::client::ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn deadline_between_70_and_90_percent() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-01-11T00:00:00Z"); // 10 days
        let cases = [
            (0.0, "2026-01-08T00:00:00Z"),
            (0.5, "2026-01-09T00:00:00Z"),
            (1.0, "2026-01-10T00:00:00Z"),
            (-3.0, "2026-01-08T00:00:00Z"),
        ];
        for (jitter, want) in cases {
            assert_eq!(
                rotation_deadline(nb, na, jitter),
                ts(want),
                "jitter {jitter}"
            );
        }
        // A certificate with no lifetime is due at once.
        assert_eq!(rotation_deadline(nb, nb, 0.5), nb);
    }

    #[test]
    fn stored_pair_round_trips() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cred = Credential::new(cert.pem(), key.serialize_pem()).unwrap();
        save(dir.path(), &cred).unwrap();
        let back = load(dir.path()).unwrap();
        assert_eq!(back.common_name, "system:node:n1");
        assert_eq!(back.not_after, cred.not_after);
        assert!(back.certified_key().is_ok());
        assert!(back.valid_at(jiff::Timestamp::now()));
    }
}

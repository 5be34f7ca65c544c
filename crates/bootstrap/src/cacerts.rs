//! Learning the cluster CA from a server not trusted yet, as a k3s agent does: `GET
//! /cacerts` without checking the server's certificate, then accept the answer only if
//! its SHA-256 is the one the join token pins. A man in the middle can answer, but not
//! with a CA of that hash.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

/// The largest answer read.
const LIMIT: usize = 1 << 20;

/// Accepts any server certificate: only for the one request whose answer is checked
/// against the pin.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The body of `GET /cacerts` at `authority` (`host:port`), unverified.
pub async fn fetch(authority: &str) -> Result<Vec<u8>, Error> {
    let err = |m: String| Error::CaFetch {
        server: authority.to_string(),
        message: m,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| err(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| err(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| err(e.to_string()))?;
    let req = format!("GET /cacerts HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut buf = Vec::new();
    let read = (&mut tls).take(LIMIT as u64).read_to_end(&mut buf).await;
    // A server closing without close_notify still gave us the whole answer.
    if let Err(e) = read {
        if buf.is_empty() {
            return Err(err(e.to_string()));
        }
    }
    parse_response(&buf).map_err(err)
}

/// The body of a plain HTTP/1.1 200 answer (Content-Length or read to the end).
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET /cacerts answered {status:?}"));
    }
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    Ok(match len {
        Some(n) if n <= body.len() => body[..n].to_vec(),
        _ => body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nPEMxx";
        assert_eq!(parse_response(ok).unwrap(), b"PEM");
        let no_len = b"HTTP/1.1 200 OK\r\n\r\nPEM";
        assert_eq!(parse_response(no_len).unwrap(), b"PEM");
        assert!(parse_response(b"HTTP/1.1 401 Unauthorized\r\n\r\n").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}

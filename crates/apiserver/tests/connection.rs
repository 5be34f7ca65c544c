//! The served connection, over TLS as clients reach it: an answer given before a request
//! body was read (401, 404, 405) leaves an HTTP/1.1 connection able to carry the next
//! request, or says `Connection: close` when it cannot; HTTP/2 is unaffected (issue 13 7).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

struct Served {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store::SqliteStore::open(&dir.path().join("db.sqlite")).expect("sqlite");
    let shutdown = CancellationToken::new();
    let mut components = supervisor::Supervisor::new(shutdown.clone());
    let running = apiserver::start(
        apiserver::Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            store: Arc::new(store),
            event_ttl: std::time::Duration::from_secs(3600),
            advertise_address: None,
            services: Default::default(),
        },
        &mut components,
    )
    .await
    .expect("start");
    // The server's tasks run until the shutdown token is cancelled (on drop).
    tokio::spawn(components.run());
    let pki = dir.path().join("pki");
    let ca = std::fs::read(pki.join("ca.crt")).expect("ca");
    let token = std::fs::read_to_string(pki.join("admin.token")).expect("token");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.expect("pem")).expect("ca cert");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Served {
        addr: running.addr,
        tls: Arc::new(tls),
        token: token.trim().to_string(),
        shutdown,
        _dir: dir,
    }
}

impl Served {
    async fn connect(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("tls")
    }
}

/// One HTTP/1.1 response read off a raw stream: status, headers (lowercase names), body.
async fn read_response(
    stream: &mut TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .expect("content-length");
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed inside a response");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    (status, headers, body)
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Two requests written back to back on one connection, the first refused before its
/// body is read: both are answered, the first without `Connection: close`.
#[tokio::test]
async fn http1_early_answers_keep_the_connection() {
    let served = serve().await;
    let auth = format!("Authorization: Bearer {}\r\n", served.token);
    for (case, path, auth, want) in [
        ("401", "/api/v1/namespaces/default/configmaps", "", 401),
        ("404", "/api/v1/widgets", auth.as_str(), 404),
        ("405", "/api", auth.as_str(), 405),
    ] {
        let mut stream = served.connect(b"http/1.1").await;
        let body = vec![b'x'; 64 * 1024];
        let mut wire = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n");
        stream.write_all(&wire).await.expect("write");
        let mut buf = Vec::new();
        let (status, headers, _) = read_response(&mut stream, &mut buf).await;
        assert_eq!(status, want, "{case}");
        assert_eq!(header_of(&headers, "connection"), None, "{case}");
        let (status, _, body) = read_response(&mut stream, &mut buf).await;
        assert_eq!(status, 200, "{case}: the second request was answered");
        assert!(
            String::from_utf8_lossy(&body).contains("gitVersion"),
            "{case}"
        );
    }
}

/// A body the server will not wait for (over 256 KiB, or held back for a `100 Continue`)
/// gets `Connection: close`, and then the connection ends.
#[tokio::test]
async fn http1_early_answers_say_when_the_connection_closes() {
    let served = serve().await;
    let path = "/api/v1/namespaces/default/configmaps";

    let mut stream = served.connect(b"http/1.1").await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let (status, headers, _) = read_response(&mut stream, &mut buf).await;
    assert_eq!(status, 401);
    assert_eq!(header_of(&headers, "connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "nothing follows a closing answer");

    let stream = served.connect(b"http/1.1").await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let body = vec![b'x'; 1024 * 1024];
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The server stops reading past 256 KiB: the rest of the upload may fail to send.
    let upload = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before a response");
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    let _ = upload.await;
}

/// HTTP/2: a refused upload ends its stream only; the connection goes on.
#[tokio::test]
async fn http2_early_answers_leave_the_connection_alone() {
    let served = serve().await;
    let stream = served.connect(b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for size in [10 * 1024, 1024 * 1024] {
        let req = Request::post(format!(
            "https://localhost:{}/api/v1/namespaces/default/configmaps",
            served.addr.port()
        ))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(vec![b'x'; size])))
        .expect("request");
        let resp = sender.send_request(req).await.expect("answered");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{size}");
        assert!(resp.headers().get(header::CONNECTION).is_none());
    }
    let req = Request::get(format!("https://localhost:{}/version", served.addr.port()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("gitVersion"));
}

//! Asking the upstream resolvers (CoreDNS's `forward` plugin, reduced): each in turn over
//! UDP from a connected socket, so a resolver that is not there (ICMP port unreachable)
//! fails at once rather than at the timeout; a truncated answer is asked again over TCP.
//! The whole attempt shares one time budget ([`BUDGET`]); when no resolver answers within
//! it the caller answers SERVFAIL.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};
use tracing::debug;

/// How long a forwarded question may take in all, every resolver and retry included.
pub const BUDGET: Duration = Duration::from_secs(2);

/// The upstream answer to the wire-format question `query`, with the question's own id,
/// or None when no resolver answered in time.
pub async fn forward(query: &[u8], upstreams: &[SocketAddr], budget: Duration) -> Option<Vec<u8>> {
    if query.len() < 12 || upstreams.is_empty() {
        return None;
    }
    let deadline = Instant::now() + budget;
    let client_id = [query[0], query[1]];
    // A fresh id per forwarded question (the source port is random too), so an answer
    // cannot be guessed by a third party; the client's is put back.
    let id = fresh_id();
    let mut ours = query.to_vec();
    ours[..2].copy_from_slice(&id);
    for (i, upstream) in upstreams.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Later resolvers keep a share of what is left.
        let left = (upstreams.len() - i) as u32;
        let attempt_deadline = now + (deadline - now) / left;
        match timeout_at(attempt_deadline, ask_udp(&ours, *upstream, id)).await {
            Ok(Ok(mut answer)) => {
                if answer.len() > 2 && answer[2] & 0x02 != 0 {
                    // Truncated: the whole answer over TCP, within what is left.
                    if let Ok(Ok(full)) = timeout_at(deadline, ask_tcp(&ours, *upstream)).await {
                        answer = full;
                    }
                }
                answer[..2].copy_from_slice(&client_id);
                return Some(answer);
            }
            Ok(Err(e)) => debug!(%upstream, error = %e, "upstream resolver failed"),
            Err(_) => debug!(%upstream, "upstream resolver timed out"),
        }
    }
    None
}

async fn ask_udp(query: &[u8], upstream: SocketAddr, id: [u8; 2]) -> std::io::Result<Vec<u8>> {
    let local = if upstream.is_ipv4() {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything not answering our id (a stray or forged packet) is skipped.
        if n >= 12 && buf[..2] == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::Error::other("question too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    if buf.len() < 12 {
        return Err(std::io::Error::other("short answer"));
    }
    Ok(buf)
}

/// A random 16-bit id (std's per-process random SipHash keys, stepped per call).
fn fresh_id() -> [u8; 2] {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    let v = h.finish();
    [(v >> 8) as u8, v as u8]
}

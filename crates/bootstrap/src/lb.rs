//! The agent's local load balancer over the API servers (k3s's agent load balancer): a TCP
//! listener on `127.0.0.1:<ephemeral>` that every client of the agent connects to; each
//! connection is forwarded to the server in use, or, when that one does not answer, to the
//! next that does, which then stays in use. TLS passes through untouched: every server's
//! certificate names 127.0.0.1 and chains to the one cluster CA.
//!
//! ```text
//!   client ──▶ 127.0.0.1:P ──dial servers[current], then current+1, ... ──▶ server i
//!                                     first success: current = i
//! ```
//!
//! A server that dies ends the connections forwarded to it; clients reconnect (watches
//! resume) and land on the next server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervisor::Outage;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long one server gets to accept a connection before the next is tried.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The order servers are tried in for a new connection: the one in use first, then the
/// others in their given order after it.
pub fn dial_order(servers: usize, current: usize) -> Vec<usize> {
    (0..servers)
        .map(|k| (current + k) % servers.max(1))
        .collect()
}

/// `host:port` of a server URL (`https://HOST:PORT[/...]`; port 443 when none).
pub fn authority(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.split('/').next()?;
    if auth.is_empty() {
        return None;
    }
    let has_port = match auth.rfind(']') {
        Some(end) => auth[end..].contains(':'),
        None => auth.contains(':'),
    };
    Some(if has_port {
        auth.to_string()
    } else {
        format!("{auth}:443")
    })
}

/// A started load balancer: where it listens, and the loop to run.
pub struct LoadBalancer {
    listener: TcpListener,
    servers: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    /// While no server answers, one line at first and at most one a minute.
    outage: Arc<Mutex<Outage>>,
}

impl LoadBalancer {
    /// Binds `127.0.0.1:0` in front of `servers` (`host:port` each).
    pub async fn bind(servers: Vec<String>) -> std::io::Result<LoadBalancer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Ok(LoadBalancer {
            listener,
            servers: Arc::new(servers),
            current: Arc::new(AtomicUsize::new(0)),
            outage: Arc::new(Mutex::new(Outage::new("reaching an API server"))),
        })
    }

    /// `https://127.0.0.1:<port>`, the URL clients use.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("https://{}", self.listener.local_addr()?))
    }

    /// Forwards connections until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        info!(servers = ?self.servers, "API server load balancer running");
        loop {
            let (client, _) = tokio::select! {
                accepted = self.listener.accept() => accepted?,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let _ = client.set_nodelay(true);
            let servers = self.servers.clone();
            let current = self.current.clone();
            let shutdown = shutdown.clone();
            let outage = self.outage.clone();
            tokio::spawn(async move {
                let dialed = dial(&servers, &current).await;
                if let Ok(mut o) = outage.lock() {
                    match &dialed {
                        Some(_) => o.succeeded(),
                        None => o.failed(&format!(
                            "no API server accepts a connection ({})",
                            servers.join(", ")
                        )),
                    }
                }
                let Some(mut upstream) = dialed else {
                    return;
                };
                let mut client = client;
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }
}

/// Connects to the first server that answers, in [`dial_order`].
async fn dial(servers: &[String], current: &AtomicUsize) -> Option<TcpStream> {
    let start = current.load(Ordering::Acquire);
    for i in dial_order(servers.len(), start) {
        let addr = &servers[i];
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                if i != start {
                    // Only the first to notice switches; others follow.
                    if current
                        .compare_exchange(start, i, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        warn!(from = %servers[start], to = %addr, "API server unreachable; switched");
                    }
                }
                return Some(s);
            }
            Ok(Err(e)) => debug!(server = %addr, error = %e, "API server refused"),
            Err(_) => debug!(server = %addr, "API server did not answer in time"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order() {
        let cases: &[(usize, usize, &[usize])] = &[
            (1, 0, &[0]),
            (3, 0, &[0, 1, 2]),
            (3, 1, &[1, 2, 0]),
            (3, 2, &[2, 0, 1]),
            (0, 0, &[]),
        ];
        for (n, cur, want) in cases {
            assert_eq!(dial_order(*n, *cur), *want, "{n} servers, current {cur}");
        }
    }

    #[test]
    fn authorities() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://10.0.0.1:6443", Some("10.0.0.1:6443")),
            ("https://10.0.0.1:6443/", Some("10.0.0.1:6443")),
            ("https://example:6443", Some("example:6443")),
            ("https://example", Some("example:443")),
            ("https://[::1]:6443", Some("[::1]:6443")),
            ("https://[::1]", Some("[::1]:443")),
            ("https://", None),
        ];
        for (url, want) in cases {
            assert_eq!(authority(url).as_deref(), *want, "{url}");
        }
    }

    #[tokio::test]
    async fn fails_over_to_the_next_server() {
        // One "server" is a closed port, the other accepts.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap().to_string();
        let current = AtomicUsize::new(0);
        let s = dial(&[dead_addr, live_addr.clone()], &current).await;
        assert!(s.is_some());
        assert_eq!(current.load(Ordering::Acquire), 1);
    }
}

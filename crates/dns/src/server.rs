//! The I/O shell: DNS over UDP (one socket, several receive loops, answers from the cache
//! sent straight from the loop; only forwarded questions get a task of their own) and
//! over TCP (length-prefixed messages, several per connection, closed after
//! [`TCP_IDLE`] without one). Answers larger than the client can take over UDP (512 bytes,
//! or its EDNS size) lose their additional records, then answers, and carry the TC bit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::answer::{self, Outcome, Reply};
use crate::forward;
use crate::zone::Cache;

/// A TCP connection with no new question for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Forwarded questions in flight at once; past this, new ones are dropped (the client
/// retries), so a flood of external names cannot take the node's memory.
const MAX_FORWARDS: usize = 1024;
/// TCP connections served at once.
const MAX_TCP: usize = 256;
/// The EDNS payload size we announce and the most we send over UDP.
const EDNS_PAYLOAD: u16 = 1232;
const UDP_MIN: usize = 512;

/// What answering needs: the cache, the upstream resolvers.
pub struct Handler {
    pub cache: Arc<Cache>,
    pub upstreams: Vec<SocketAddr>,
    pub forward_budget: Duration,
    forwards: Arc<Semaphore>,
}

/// The next step for one received message.
enum Step {
    /// Send these bytes.
    Done(Vec<u8>),
    /// Nothing to send (not a question, or garbage without a header).
    Ignore,
    /// Needs the upstream resolvers.
    Pending(Box<Pending>),
}

struct Pending {
    request: Message,
    limit: usize,
    kind: PendingKind,
}

enum PendingKind {
    Forward,
    Chase {
        cname: Box<Record>,
        target: Box<Name>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Handler {
    pub fn new(cache: Arc<Cache>, upstreams: Vec<SocketAddr>, forward_budget: Duration) -> Handler {
        Handler {
            cache,
            upstreams,
            forward_budget,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        }
    }

    fn step(&self, bytes: &[u8], transport: Transport) -> Step {
        let request = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) if bytes.len() >= 12 && bytes[2] & 0x80 == 0 => {
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                let m = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return m.to_vec().map(Step::Done).unwrap_or(Step::Ignore);
            }
            Err(_) => return Step::Ignore,
        };
        if request.metadata.message_type != MessageType::Query {
            return Step::Ignore;
        }
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => request
                .edns
                .as_ref()
                .map(|e| usize::from(e.max_payload().min(EDNS_PAYLOAD)).max(UDP_MIN))
                .unwrap_or(UDP_MIN),
        };
        if request.metadata.op_code != OpCode::Query {
            return Step::Done(encode(error(&request, ResponseCode::NotImp), limit));
        }
        let [query] = request.queries.as_slice() else {
            return Step::Done(encode(error(&request, ResponseCode::FormErr), limit));
        };
        let zone = self.cache.load();
        match answer::resolve(&zone, query.name(), query.query_type()) {
            Outcome::Reply(reply) => Step::Done(encode(response(&request, reply), limit)),
            Outcome::Forward => Step::Pending(Box::new(Pending {
                request,
                limit,
                kind: PendingKind::Forward,
            })),
            Outcome::Chase { cname, target } => Step::Pending(Box::new(Pending {
                request,
                limit,
                kind: PendingKind::Chase { cname, target },
            })),
        }
    }

    /// Finishes a question that needs the upstream resolvers.
    async fn finish(&self, raw: &[u8], pending: Box<Pending>) -> Vec<u8> {
        let Pending {
            request,
            limit,
            kind,
        } = *pending;
        match kind {
            PendingKind::Forward => {
                match forward::forward(raw, &self.upstreams, self.forward_budget).await {
                    Some(answer) if answer.len() <= limit => answer,
                    Some(answer) => match Message::from_vec(&answer) {
                        Ok(m) => encode(m, limit),
                        Err(_) => encode(error(&request, ResponseCode::ServFail), limit),
                    },
                    None => encode(error(&request, ResponseCode::ServFail), limit),
                }
            }
            PendingKind::Chase { cname, target } => {
                let qtype = request.queries[0].query_type();
                let mut ask = Message::query();
                ask.metadata.recursion_desired = true;
                ask.add_query(Query::query(*target, qtype));
                let mut answers = vec![*cname];
                if let Ok(bytes) = ask.to_vec() {
                    if let Some(got) =
                        forward::forward(&bytes, &self.upstreams, self.forward_budget).await
                    {
                        if let Ok(m) = Message::from_vec(&got) {
                            if m.metadata.response_code == ResponseCode::NoError {
                                answers.extend(m.answers);
                            }
                        }
                    }
                }
                let reply = Reply {
                    rcode: ResponseCode::NoError,
                    answers,
                    authorities: Vec::new(),
                    additionals: Vec::new(),
                };
                encode(response(&request, reply), limit)
            }
        }
    }
}

/// The response to `request` carrying `reply`: the question as asked, authoritative.
fn response(request: &Message, reply: Reply) -> Message {
    let mut m = Message::response(request.metadata.id, request.metadata.op_code);
    m.metadata.authoritative = reply.rcode != ResponseCode::Refused;
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m.metadata.checking_disabled = request.metadata.checking_disabled;
    m.metadata.response_code = reply.rcode;
    m.add_queries(request.queries.iter().cloned());
    m.answers = reply.answers;
    m.authorities = reply.authorities;
    m.additionals = reply.additionals;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

fn error(request: &Message, rcode: ResponseCode) -> Message {
    let mut m = response(
        request,
        Reply {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        },
    );
    m.metadata.authoritative = false;
    m
}

/// `m` in wire format within `limit` bytes: additional records go first, then answers
/// and authorities from the end, with the TC bit set once an answer is left out.
pub(crate) fn encode(mut m: Message, limit: usize) -> Vec<u8> {
    let fits = |m: &Message| m.to_vec().ok().filter(|b| b.len() <= limit);
    if let Some(b) = fits(&m) {
        return b;
    }
    m.additionals.clear();
    if let Some(b) = fits(&m) {
        return b;
    }
    m.metadata.truncation = true;
    while !m.answers.is_empty() || !m.authorities.is_empty() {
        if m.authorities.pop().is_none() {
            m.answers.pop();
        }
        if let Some(b) = fits(&m) {
            return b;
        }
    }
    m.to_vec().unwrap_or_default()
}

/// Binds UDP and TCP on `addr` even before any interface holds the address
/// (`IP_FREEBIND`: the pod bridge gets its gateway with the first pod). Port 0 picks one
/// free for both (a few tries: the UDP port picked may be taken for TCP).
pub fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut tries = if addr.port() == 0 { 16 } else { 1 };
    loop {
        tries -= 1;
        match bind_once(addr) {
            Err(e) if tries > 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            other => return other,
        }
    }
}

fn bind_once(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let freebind = |s: &Socket| {
        if addr.is_ipv4() {
            s.set_freebind_v4(true)
        } else {
            s.set_freebind_v6(true)
        }
    };
    let udp = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    freebind(&udp)?;
    udp.set_nonblocking(true)?;
    udp.bind(&addr.into())?;
    // The port a test asked to be picked (0) is the same for both.
    let bound = udp
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound UDP socket has no address"))?;
    let tcp = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    freebind(&tcp)?;
    tcp.set_reuse_address(true)?;
    tcp.set_nonblocking(true)?;
    tcp.bind(&bound.into())?;
    tcp.listen(1024)?;
    Ok((
        UdpSocket::from_std(udp.into())?,
        TcpListener::from_std(tcp.into())?,
    ))
}

/// Serves `udp` and `tcp` until `shutdown`.
pub async fn serve(
    handler: Arc<Handler>,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: CancellationToken,
) {
    let udp = Arc::new(udp);
    let mut tasks = tokio::task::JoinSet::new();
    // One receive loop per core: a loop answers from the cache without yielding to a task.
    let loops = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    for _ in 0..loops {
        tasks.spawn(serve_udp(handler.clone(), udp.clone(), shutdown.clone()));
    }
    tasks.spawn(serve_tcp(handler, tcp, shutdown.clone()));
    shutdown.cancelled().await;
    tasks.shutdown().await;
}

async fn serve_udp(handler: Arc<Handler>, socket: Arc<UdpSocket>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => return,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "receiving a DNS datagram");
                continue;
            }
        };
        match handler.step(&buf[..n], Transport::Udp) {
            Step::Done(bytes) => {
                if let Err(e) = socket.send_to(&bytes, peer).await {
                    debug!(%peer, error = %e, "sending a DNS answer");
                }
            }
            Step::Ignore => {}
            Step::Pending(pending) => {
                let Ok(permit) = handler.forwards.clone().try_acquire_owned() else {
                    debug!(%peer, "too many forwarded questions in flight; dropped");
                    continue;
                };
                let raw = buf[..n].to_vec();
                let handler = handler.clone();
                let socket = socket.clone();
                tokio::spawn(async move {
                    let bytes = handler.finish(&raw, pending).await;
                    let _ = socket.send_to(&bytes, peer).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_tcp(handler: Arc<Handler>, listener: TcpListener, shutdown: CancellationToken) {
    let connections = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                debug!(error = %e, "accepting a DNS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(%peer, "too many DNS connections; closed");
            continue;
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = serve_connection(&handler, stream) => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "DNS connection ended");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

async fn serve_connection(handler: &Handler, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            // Idle, or the client closed.
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        buf.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timed out reading a question"))??;
        let answer = match handler.step(&buf, Transport::Tcp) {
            Step::Done(bytes) => bytes,
            Step::Ignore => continue,
            Step::Pending(pending) => handler.finish(&buf, pending).await,
        };
        let len = u16::try_from(answer.len()).unwrap_or(u16::MAX);
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer[..usize::from(len)]);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;

    fn big_answer(n: u8) -> Message {
        let name = Name::from_ascii("many.default.svc.cluster.local.").unwrap();
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(name.clone(), hickory_proto::rr::RecordType::A));
        for i in 0..n {
            let rec = Record::from_rdata(
                name.clone(),
                5,
                RData::A(A(std::net::Ipv4Addr::new(10, 42, 0, i))),
            );
            m.answers.push(rec.clone());
            m.additionals.push(rec);
        }
        m
    }

    #[test]
    fn encode_fits_the_limit() {
        // (records, limit, truncated?, answers kept, additionals kept)
        let cases = [
            (2u8, 512usize, false, 2usize, 2usize),
            (20, 512, false, 20, 0),
            (40, 512, true, 0, 0),
            (40, 65535, false, 40, 40),
        ];
        for (n, limit, tc, answers, extra) in cases {
            let bytes = encode(big_answer(n), limit);
            assert!(bytes.len() <= limit, "{n} records in {limit}");
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.metadata.truncation, tc, "{n} in {limit}");
            assert_eq!(m.additionals.len(), extra, "{n} in {limit}");
            if tc {
                assert!(!m.answers.is_empty() && m.answers.len() < usize::from(n));
            } else {
                assert_eq!(m.answers.len(), answers, "{n} in {limit}");
            }
            assert_eq!(m.queries.len(), 1);
        }
    }
}

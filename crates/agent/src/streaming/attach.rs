//! `attach`: a remote-command session (WebSocket or SPDY, as exec's) joined to a running
//! container's own stdio, through the attach socket its monitor serves in the container's
//! directory (the monitor, not the agent, holds the container's stdio, so containers the
//! agent re-adopted after a restart can be attached as well).
//!
//! The monitor's packets are numbered like the channels: 1 stdout and 2 stderr from it;
//! 0 stdin, 3 close stdin, 4 resize (u16 BE width, height) and 5 "this session attaches
//! stdin" to it (see `peapod-shim`'s attach module).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::session::{self, Input, Output, Query, Streams};
use super::{container_not_found, running_container, text, Body};
use crate::Ctx;

const PACKET_STDIN: u8 = 0;
const PACKET_STDOUT: u8 = 1;
const PACKET_STDERR: u8 = 2;
const PACKET_CLOSE_STDIN: u8 = 3;
const PACKET_RESIZE: u8 = 4;
const PACKET_HELLO_STDIN: u8 = 5;
/// The monitor's largest packet.
const MAX_PACKET: usize = 32 * 1024;

/// Attach to a running container. The terminal setting is the container's
/// own (`tty` in its spec), whatever the request says, as the kubelet does: it cannot change
/// once the container runs.
pub(super) async fn attach(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let q = Query::parse(req.uri().query().unwrap_or("")).streams;
    let Some((rec, inst)) = running_container(ctx, ns, pod, container) else {
        return container_not_found(container);
    };
    if !session::is_upgrade(&req) {
        return session::not_an_upgrade("attach");
    }
    let dir = crate::container::container_dir(&ctx.cfg.pods_dir().join(&rec.uid), &inst.id);
    let socket = match AttachSocket::connect(&dir) {
        Ok(s) => s,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("error attaching to container: {e}"),
            )
        }
    };
    let streams = Streams {
        stdin: q.stdin,
        stdout: q.stdout,
        stderr: q.stderr,
        tty: inst.tty,
    };
    session::upgrade(req, streams, "attach", move |input, output| {
        pump_attach(socket, input, output, streams)
    })
}

/// Joins a session to the monitor's socket until the container exits (a `Success` status
/// then, as the kubelet ends an attach that ran to the end) or the client leaves (the
/// container goes on).
async fn pump_attach(
    socket: AttachSocket,
    mut input: mpsc::Receiver<Input>,
    mut output: Output,
    streams: Streams,
) {
    let mut stdin_open = streams.stdin;
    if stdin_open && socket.send(&[PACKET_HELLO_STDIN]).await.is_err() {
        stdin_open = false;
    }
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        tokio::select! {
            msg = input.recv() => match msg {
                Some(Input::Stdin(data)) if stdin_open => {
                    for chunk in data.chunks(MAX_PACKET - 1) {
                        let mut packet = Vec::with_capacity(chunk.len() + 1);
                        packet.push(PACKET_STDIN);
                        packet.extend_from_slice(chunk);
                        if socket.send(&packet).await.is_err() {
                            stdin_open = false;
                            break;
                        }
                    }
                }
                Some(Input::Resize(size)) => {
                    let mut packet = vec![PACKET_RESIZE];
                    packet.extend_from_slice(&size.width.to_be_bytes());
                    packet.extend_from_slice(&size.height.to_be_bytes());
                    let _ = socket.send(&packet).await;
                }
                Some(Input::StdinClosed) if stdin_open => {
                    stdin_open = false;
                    let _ = socket.send(&[PACKET_CLOSE_STDIN]).await;
                }
                Some(_) => {}
                // The client left: the session ends, the container goes on.
                None => return,
            },
            packet = socket.recv(&mut buf) => match packet {
                Ok(n) if n > 1 => {
                    let data = &buf[1..n];
                    let delivered = match buf[0] {
                        PACKET_STDOUT if streams.stdout => output.stdout(data).await,
                        // A terminal has one output stream, carried on stdout.
                        PACKET_STDERR if streams.tty && streams.stdout => output.stdout(data).await,
                        PACKET_STDERR if streams.stderr => output.stderr(data).await,
                        _ => true,
                    };
                    if !delivered {
                        return;
                    }
                }
                Ok(n) if n > 0 => {}
                // End of stream: the monitor recorded the container's exit.
                _ => break,
            },
        }
    }
    output.finish(Some(0), &[]).await;
}

/// A connection to a monitor's `SOCK_SEQPACKET` attach socket (tokio has no seqpacket type).
struct AttachSocket {
    fd: AsyncFd<OwnedFd>,
}

impl AttachSocket {
    /// Connects to `<dir>/attach` through `/proc/self/fd/N/attach` of the directory held
    /// open, since the full path may exceed a unix socket address's 107 bytes.
    fn connect(dir: &Path) -> std::io::Result<AttachSocket> {
        let dir = std::fs::File::open(dir)?;
        let path = format!("/proc/self/fd/{}/attach", dir.as_raw_fd());
        // SAFETY: sockaddr_un is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if path.len() >= addr.sun_path.len() {
            return Err(std::io::Error::other("attach socket path too long"));
        }
        for (dst, src) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        // SAFETY: socket creation with constant arguments; the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
        // SAFETY: addr is an initialised sockaddr_un of length len. A unix-socket connect
        // completes at once (or fails), even on a non-blocking socket.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the socket until dropped; nothing else uses or closes it.
        let fd =
            unsafe { AsyncFd::register(fd) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(AttachSocket { fd })
    }

    /// One packet; Ok(0) at the end of the stream.
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: receiving into a live buffer from our own socket.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            if let Ok(r) = res {
                return r;
            }
        }
    }

    async fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: sending a live buffer on our own socket.
                let n = unsafe {
                    libc::send(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if let Ok(r) = res {
                return r;
            }
        }
    }
}

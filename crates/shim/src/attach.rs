//! The monitor's attach side: a `SOCK_SEQPACKET` unix socket named `attach` in the
//! container's bundle directory, where attach clients (the agent's streaming server) connect
//! to see the container's output as it is written and, when the container has `stdin`, to
//! write to it. This module owns the socket, the connected clients, the message format and
//! the console (pty master) hand-over from the runtime's `--console-socket`.
//!
//! One packet is one message, its first byte the kind (numbered like the Kubernetes channel
//! protocol's channels, so the agent's mapping stays obvious):
//!
//! | direction | kind | payload |
//! |---|---|---|
//! | monitor → client | 1 stdout, 2 stderr (a terminal's output is stdout) | bytes |
//! | client → monitor | 0 stdin | bytes |
//! | client → monitor | 3 close stdin | – |
//! | client → monitor | 4 resize | width, height (u16 big-endian each) |
//! | client → monitor | 5 this session attaches stdin (for `stdinOnce`) | – |
//!
//! The monitor closes every client once the container's exit is recorded: end of stream.
//! A client that cannot keep up with the output (its socket buffer is full) is dropped rather
//! than letting it stall the log.

use std::os::fd::RawFd;

use crate::sys;

pub const OUT_STDOUT: u8 = 1;
pub const OUT_STDERR: u8 = 2;
pub const IN_STDIN: u8 = 0;
pub const IN_CLOSE_STDIN: u8 = 3;
pub const IN_RESIZE: u8 = 4;
pub const IN_HELLO_STDIN: u8 = 5;

/// Largest packet either side sends; output is read in chunks that fit.
pub const MAX_PACKET: usize = 32 * 1024;
/// Send buffer per client: slack for bursts before a slow client is dropped.
const CLIENT_SNDBUF: libc::c_int = 4 * 1024 * 1024;

/// A path under a directory held open as `dirfd`: binding and connecting through
/// `/proc/self/fd/N/...` keeps unix socket paths short whatever the data directory's length
/// (they are limited to 107 bytes), as conmon does.
pub fn fd_path(dirfd: RawFd, name: &str) -> String {
    format!("/proc/self/fd/{dirfd}/{name}")
}

pub struct Listener {
    fd: RawFd,
    dirfd: RawFd,
}

impl Listener {
    /// Listens on `<dir>/attach` (replacing a stale socket of an earlier run).
    pub fn bind(dir: &str) -> Result<Listener, String> {
        let cdir = sys::cstring(dir)?;
        // SAFETY: open with a valid C string; the descriptor is ours.
        let dirfd = sys::check(
            unsafe {
                libc::open(
                    cdir.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            },
            "open bundle directory",
        )?;
        let path = fd_path(dirfd, "attach");
        let _ = std::fs::remove_file(&path);
        // SAFETY: socket creation with constant arguments.
        let fd = sys::check(
            unsafe {
                libc::socket(
                    libc::AF_UNIX,
                    libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                )
            },
            "attach socket",
        )?;
        let (addr, len) = sockaddr(&path)?;
        // SAFETY: addr is an initialised sockaddr_un of length len.
        unsafe {
            sys::check(
                libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len),
                "bind attach socket",
            )?;
            sys::check(libc::listen(fd, 16), "listen on attach socket")?;
        }
        Ok(Listener { fd, dirfd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// A new client, if one is waiting.
    pub fn accept(&self) -> Option<Client> {
        // SAFETY: accept4 on our listening socket; no peer address wanted.
        let fd = unsafe {
            libc::accept4(
                self.fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: setsockopt with a live int of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&CLIENT_SNDBUF as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Some(Client { fd, stdin: false })
    }

    /// Stops listening and removes the socket file: nobody can attach to an exited container.
    pub fn close(self) {
        let _ = std::fs::remove_file(fd_path(self.dirfd, "attach"));
        // SAFETY: closing our own descriptors once.
        unsafe {
            libc::close(self.fd);
            libc::close(self.dirfd);
        }
    }
}

pub struct Client {
    pub fd: RawFd,
    /// Whether this session attached stdin (it said so), which `stdinOnce` counts.
    pub stdin: bool,
}

impl Client {
    /// Sends one output packet; false if the client is gone or cannot keep up.
    pub fn send(&self, kind: u8, data: &[u8]) -> bool {
        let mut packet = Vec::with_capacity(data.len() + 1);
        packet.push(kind);
        packet.extend_from_slice(data);
        // SAFETY: sending a live buffer on our own socket.
        let n = unsafe {
            libc::send(
                self.fd,
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        n == packet.len() as isize
    }

    /// Receives one packet into `buf`: Some(len) (0 never: an empty packet reads as EOF on a
    /// seqpacket socket, and clients never send one), None when the client is gone.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: receiving into a live buffer from our own socket.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            Some(n as usize)
        } else if n < 0
            && matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN) | Some(libc::EINTR)
            )
        {
            Some(0)
        } else {
            None
        }
    }

    pub fn close(self) {
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.fd) };
    }
}

/// Decodes a resize payload (width, height).
pub fn resize_of(payload: &[u8]) -> Option<(u16, u16)> {
    if payload.len() < 4 {
        return None;
    }
    Some((
        u16::from_be_bytes([payload[0], payload[1]]),
        u16::from_be_bytes([payload[2], payload[3]]),
    ))
}

/// Applies a terminal size to the console master; the kernel tells the container (SIGWINCH).
pub fn resize(console: RawFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with an initialised winsize on our own descriptor.
    unsafe { libc::ioctl(console, libc::TIOCSWINSZ, &size) };
}

fn sockaddr(path: &str) -> Result<(libc::sockaddr_un, libc::socklen_t), String> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(format!("socket path too long: {path}"));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// The listening end of the runtime's `--console-socket`: the runtime connects once and
/// passes the container's pty master over it (SCM_RIGHTS).
pub struct ConsoleSocket {
    fd: RawFd,
    dir: String,
    pub path: String,
}

impl ConsoleSocket {
    /// A socket in a fresh private directory under /tmp (short, whatever the bundle path).
    pub fn new() -> Result<ConsoleSocket, String> {
        let mut template = *b"/tmp/peapod-console-XXXXXX\0";
        // SAFETY: mkdtemp rewrites the NUL-terminated template in place.
        let dir = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if dir.is_null() {
            return Err(format!("mkdtemp: {}", std::io::Error::last_os_error()));
        }
        let dir = String::from_utf8_lossy(&template[..template.len() - 1]).into_owned();
        let path = format!("{dir}/console.sock");
        // SAFETY: socket creation with constant arguments.
        let fd = sys::check(
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) },
            "console socket",
        )?;
        let sock = ConsoleSocket { fd, dir, path };
        let (addr, len) = sockaddr(&sock.path)?;
        // SAFETY: addr is an initialised sockaddr_un of length len.
        unsafe {
            sys::check(
                libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len),
                "bind console socket",
            )?;
            sys::check(libc::listen(fd, 1), "listen on console socket")?;
        }
        Ok(sock)
    }

    /// The pty master the runtime sent (it connected and sent it during `create`, so the
    /// connection is already queued; the wait only guards against a runtime that never did).
    pub fn receive_master(&self) -> Result<RawFd, String> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one live pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 5000) } <= 0 {
            return Err("the runtime did not send the container's console".into());
        }
        // SAFETY: accept on our listening socket.
        let conn = sys::check(
            unsafe {
                libc::accept4(
                    self.fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            },
            "accept console connection",
        )?;
        let result = recv_fd(conn);
        // SAFETY: closing the accepted connection once.
        unsafe { libc::close(conn) };
        result
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.fd) };
    }
}

/// Receives one file descriptor passed with SCM_RIGHTS on `conn`.
fn recv_fd(conn: RawFd) -> Result<RawFd, String> {
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one cmsg carrying one int, generously aligned.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; the pointers set below stay valid through recvmsg, and
    // the CMSG_* helpers walk the control buffer recvmsg filled.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(conn, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(format!(
                "receive console: {}",
                std::io::Error::last_os_error()
            ));
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err("the runtime sent no console descriptor".into());
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        Ok(fd)
    }
}

//! Pseudo-terminals for `exec -t`: the container's own pty master, received from the
//! runtime's console socket (crun), or a pty pair whose slave the runtime gets as its
//! controlling terminal and copies from (runc). Either way the agent pumps a master.

/// The master side of a pseudo-terminal the exec'd runtime uses as its terminal.
pub(super) struct Pty {
    master: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Pty {
    /// Wraps a pty master (made non-blocking) for async use.
    fn from_master(master: std::os::fd::OwnedFd) -> std::io::Result<Pty> {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: the AsyncFd owns the master until dropped; nothing else closes it.
        let master = unsafe { tokio::io::unix::AsyncFd::register(master) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Pty { master })
    }

    /// A new pty pair: the master (non-blocking, for us) and the slave (for the child).
    pub(super) fn open() -> std::io::Result<(Pty, std::os::fd::OwnedFd)> {
        use std::os::fd::FromRawFd;
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors we then own; the other arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors from openpty, owned from here on.
        let (master, slave) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(master),
                std::os::fd::OwnedFd::from_raw_fd(slave),
            )
        };
        Ok((Pty::from_master(master)?, slave))
    }

    pub(super) async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.master.readable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own from a descriptor we own.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    pub(super) async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: writing from a buffer we own to a descriptor we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            if let Ok(r) = res {
                data = &data[r?..];
            }
        }
        Ok(())
    }

    /// Applies a resize; the kernel tells the runtime (SIGWINCH), which resizes the
    /// container's terminal.
    pub(super) fn resize(&self, width: u16, height: u16) {
        use std::os::fd::AsRawFd;
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a properly initialised winsize on our own descriptor.
        unsafe { libc::ioctl(self.master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}

/// Starts a runtime command that sends the container's pty master over a console socket
/// (`--console-socket`), and receives that master. The socket lives in a private temporary
/// directory, gone once the master has arrived. Fails if the runtime exits (or takes over
/// `CONSOLE_TIMEOUT`) without sending one, with what it wrote to stderr.
pub(super) async fn spawn_with_console(
    build: impl FnOnce(&std::path::Path) -> tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, Pty)> {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::Builder::new()
        .prefix("peapod-console-")
        .tempdir()?;
    let path = dir.path().join("console.sock");
    let listener = tokio::net::UnixListener::bind(&path)?;
    let mut child = build(&path).kill_on_drop(true).spawn()?;
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept()) => accepted,
        status = child.wait() => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            return Err(std::io::Error::other(format!(
                "the runtime exited ({}) without a terminal: {}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                err.trim()
            )));
        }
    };
    let (conn, _) =
        accepted.map_err(|_| std::io::Error::other("no terminal from the runtime"))??;
    let conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    let master = tokio::task::spawn_blocking(move || receive_fd(&conn))
        .await
        .map_err(std::io::Error::other)??;
    Ok((child, Pty::from_master(master)?))
}

/// How long a runtime may take to send the terminal it made.
const CONSOLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One descriptor passed over a unix socket (SCM_RIGHTS), as runtimes send a console.
fn receive_fd(sock: &std::os::unix::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut name = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: name.as_mut_ptr().cast(),
        iov_len: name.len(),
    };
    // Room for one descriptor's control message, aligned as cmsg requires.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg into buffers we own, described by msg.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: walking the control buffer recvmsg filled, with the libc cmsg helpers.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return Ok(std::os::fd::OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Err(std::io::Error::other(
        "the runtime sent no terminal descriptor",
    ))
}

/// Spawns `cmd` with the pty slave as stdio and controlling terminal, in its own session.
pub(super) fn spawn_on_terminal(
    mut cmd: tokio::process::Command,
    slave: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::process::Child> {
    use std::process::Stdio;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

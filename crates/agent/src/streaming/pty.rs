//! Pseudo-terminals for `exec -t`: the master side the agent pumps, the slave side the
//! runtime gets as its controlling terminal.

/// The master side of a pseudo-terminal the exec'd runtime uses as its terminal.
pub(super) struct Pty {
    master: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Pty {
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
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: the AsyncFd owns the master until dropped; nothing else closes it.
        let master = unsafe { tokio::io::unix::AsyncFd::register(master) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok((Pty { master }, slave))
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

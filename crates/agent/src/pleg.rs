//! Container exits as events (the kubelet's PLEG, without polling): a pidfd per container
//! process becomes readable when the process exits, then the monitor's exit file says how.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// How long the monitor may take after the process exits to drain its output and write
/// the exit file.
const EXIT_FILE_DEADLINE: Duration = Duration::from_secs(5);

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd, when valid, is owned by us alone.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `id` on `tx` once process `pid` has exited (at once if it is already gone).
pub fn watch_exit(pid: u32, id: String, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        if let Ok(fd) = pidfd_open(pid) {
            // SAFETY: the pidfd is owned by the AsyncFd until it is dropped, and nothing else
            // uses or closes it meanwhile.
            if let Ok(async_fd) = unsafe { AsyncFd::register(fd) } {
                let _ = async_fd.readable().await;
            }
        }
        let _ = tx.send(id);
    });
}

/// Waits (briefly) for the monitor to write the exit file.
pub async fn read_exit_with_deadline(path: &Path) -> Option<oci::ExitInfo> {
    let deadline = Instant::now() + EXIT_FILE_DEADLINE;
    loop {
        if let Ok(Some(info)) = oci::read_exit(path) {
            return Some(info);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

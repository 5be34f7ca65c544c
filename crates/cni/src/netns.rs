//! Owns the pinned network namespace lifecycle: a new network namespace kept alive by a bind
//! mount of its nsfs file onto a path (as `ip netns add` does), its existence check and its
//! removal. The caller's own namespace is never touched: the namespace is created by a
//! dedicated short-lived thread, which is the only task that ever enters it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::CniError;

/// `NSFS_MAGIC` from linux/magic.h: the filesystem type of `/proc/*/ns/*` files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Unmounting stops after this many stacked mounts (two racing `create` calls can stack two).
const MAX_STACKED_MOUNTS: usize = 8;

/// Creates a network namespace pinned at `path` (parent directories created). Idempotent: an
/// existing pin is left alone.
pub fn create(path: &Path) -> Result<(), CniError> {
    if exists(path) {
        return Ok(());
    }
    let failed = |operation: &'static str, source: std::io::Error| CniError::Netns {
        path: path.to_path_buf(),
        operation,
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| failed("create parent directory", e))?;
    }
    // The mount point: an empty file, as `ip netns add` makes.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| failed("create pin file", e))?;
    let target = c_path(path).map_err(|e| failed("path", e))?;
    let pinned = std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || unshare_and_pin(&target))
        .map_err(|e| failed("spawn thread", e))?
        .join()
        .unwrap_or_else(|_| {
            Err((
                "join thread",
                std::io::Error::other("netns thread panicked"),
            ))
        });
    if let Err((operation, source)) = pinned {
        // Leave nothing behind; the file is ours (a pinned one returned early above).
        let _ = std::fs::remove_file(path);
        return Err(failed(operation, source));
    }
    tracing::debug!(path = %path.display(), "created network namespace");
    Ok(())
}

/// Runs on the dedicated thread: moves this thread (only) into a new network namespace and
/// bind-mounts that namespace onto `target`. The thread then exits; the mount keeps the
/// namespace alive.
fn unshare_and_pin(target: &CString) -> Result<(), (&'static str, std::io::Error)> {
    // SAFETY: unshare affects only the calling thread's namespace membership for CLONE_NEWNET.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(("unshare(CLONE_NEWNET)", std::io::Error::last_os_error()));
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let source = CString::new(format!("/proc/self/task/{tid}/ns/net"))
        .map_err(|e| ("nsfs path", std::io::Error::other(e)))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; fstype and data may be null for MS_BIND.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(("bind-mount nsfs", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Unmounts the pin (lazily, `MNT_DETACH`) and removes the file. Idempotent. The namespace
/// itself goes away once nothing else (a process, another mount, an open fd) holds it.
pub fn remove(path: &Path) -> Result<(), CniError> {
    let failed = |operation: &'static str, source: std::io::Error| CniError::Netns {
        path: path.to_path_buf(),
        operation,
        source,
    };
    let target = c_path(path).map_err(|e| failed("path", e))?;
    for _ in 0..MAX_STACKED_MOUNTS {
        if !exists(path) {
            break;
        }
        // SAFETY: target is NUL-terminated and outlives the call.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            let error = std::io::Error::last_os_error();
            // EINVAL: not a mount point (any more); ENOENT: gone. Both mean nothing to undo.
            if !matches!(
                error.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOENT)
            ) {
                return Err(failed("unmount", error));
            }
            break;
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("remove pin file", e)),
    }
    tracing::debug!(path = %path.display(), "removed network namespace pin");
    Ok(())
}

/// Whether `path` is a pinned network namespace: a mount of an nsfs file.
pub fn exists(path: &Path) -> bool {
    let Ok(target) = c_path(path) else {
        return false;
    };
    // SAFETY: statfs is plain data; zeroed is a valid initial value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: target is NUL-terminated; stat is a valid out pointer.
    if unsafe { libc::statfs(target.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's integer type differs between libc targets
    let fs_type = stat.f_type as i64;
    fs_type == NSFS_MAGIC
}

fn c_path(path: &Path) -> Result<CString, std::io::Error> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

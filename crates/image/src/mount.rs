//! Per-container overlayfs rootfs: mounting the image's layers under `dir/rootfs` with
//! `dir/upper` and `dir/work`, and taking it all down again.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::error::IoContext;
use crate::ImageError;

/// Mount data longer than this does not fit the kernel's one-page copy of the options.
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts overlayfs at `dir/rootfs` with `lowers` (top first, relative to `store_root`).
pub(crate) fn mount_rootfs(
    store_root: &Path,
    lowers: &[PathBuf],
    dir: &Path,
) -> Result<PathBuf, ImageError> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    let rootfs = dir.join("rootfs");
    for d in [&upper, &work, &rootfs] {
        fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
    }
    if is_mountpoint(&rootfs)? {
        return Ok(rootfs);
    }
    for path in [&upper, &work] {
        let text = path.to_string_lossy();
        if text.contains([',', ':']) {
            return Err(ImageError::content(format!(
                "overlay paths may not contain ',' or ':': {}",
                path.display()
            )));
        }
    }
    let join = |base: Option<&Path>| {
        lowers
            .iter()
            .map(|l| match base {
                Some(base) => base.join(l).to_string_lossy().into_owned(),
                None => l.to_string_lossy().into_owned(),
            })
            .collect::<Vec<_>>()
            .join(":")
    };
    let options = |lowerdir: String| {
        format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            upper.display(),
            work.display()
        )
    };
    let absolute = options(join(Some(store_root)));
    if absolute.len() <= MAX_MOUNT_DATA {
        mount_overlay(&rootfs, &absolute, None)?;
    } else {
        // Too many layers for absolute paths: mount from a child whose cwd is the store root,
        // with lowerdirs relative to it, as containerd does.
        let relative = options(join(None));
        if relative.len() > MAX_MOUNT_DATA {
            return Err(ImageError::content(format!(
                "too many layers ({}) for one overlay mount",
                lowers.len()
            )));
        }
        mount_overlay(&rootfs, &relative, Some(store_root))?;
    }
    debug!(rootfs = %rootfs.display(), layers = lowers.len(), "rootfs mounted");
    Ok(rootfs)
}

fn mount_overlay(target: &Path, data: &str, chdir: Option<&Path>) -> Result<(), ImageError> {
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| ImageError::content("mount argument contains NUL".to_string()))
    };
    let source = c(b"overlay")?;
    let fstype = c(b"overlay")?;
    let target_c = c(target.as_os_str().as_bytes())?;
    let data_c = c(data.as_bytes())?;
    let fail =
        |e: io::Error| ImageError::io(format!("mounting overlay at {}", target.display()), e);
    match chdir {
        None => {
            // SAFETY: all pointers are valid NUL-terminated strings.
            let rc = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target_c.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    data_c.as_ptr().cast(),
                )
            };
            if rc != 0 {
                return Err(fail(io::Error::last_os_error()));
            }
            Ok(())
        }
        Some(dir) => {
            let dir_c = c(dir.as_os_str().as_bytes())?;
            // SAFETY: the child only makes raw syscalls (chdir, mount, _exit) on memory prepared
            // before fork, which is async-signal-safe even in a multi-threaded parent.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(fail(io::Error::last_os_error()));
            }
            if pid == 0 {
                unsafe {
                    if libc::chdir(dir_c.as_ptr()) != 0 {
                        libc::_exit(*libc::__errno_location());
                    }
                    if libc::mount(
                        source.as_ptr(),
                        target_c.as_ptr(),
                        fstype.as_ptr(),
                        0,
                        data_c.as_ptr().cast(),
                    ) != 0
                    {
                        libc::_exit(*libc::__errno_location());
                    }
                    libc::_exit(0);
                }
            }
            let mut status = 0;
            loop {
                // SAFETY: waiting for the child we just forked.
                let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
                if rc == pid {
                    break;
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(fail(err));
                }
            }
            match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
                (true, 0) => Ok(()),
                (true, errno) => Err(fail(io::Error::from_raw_os_error(errno))),
                _ => Err(fail(io::Error::other("mount helper died"))),
            }
        }
    }
}

/// Unmounts `dir/rootfs` (lazily if busy) and removes `dir/{upper,work,rootfs}`. Idempotent,
/// and fine if it was never mounted.
pub fn unmount_rootfs(dir: &Path) -> Result<(), ImageError> {
    let rootfs = dir.join("rootfs");
    // Mounts can be stacked (a retried mount, a runtime's bind): take them all down.
    for _ in 0..16 {
        if !is_mountpoint(&rootfs)? {
            break;
        }
        let target = CString::new(rootfs.as_os_str().as_bytes())
            .map_err(|_| ImageError::content("rootfs path contains NUL".to_string()))?;
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EBUSY) => {
                    warn!(rootfs = %rootfs.display(), "rootfs busy, detaching lazily");
                    // SAFETY: as above.
                    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
                        return Err(ImageError::io(
                            format!("unmounting {}", rootfs.display()),
                            io::Error::last_os_error(),
                        ));
                    }
                }
                Some(libc::EINVAL) => break,
                _ => {
                    return Err(ImageError::io(
                        format!("unmounting {}", rootfs.display()),
                        err,
                    ))
                }
            }
        }
    }
    if is_mountpoint(&rootfs)? {
        return Err(ImageError::io(
            format!("unmounting {}", rootfs.display()),
            io::Error::other("still mounted"),
        ));
    }
    for name in ["rootfs", "upper", "work"] {
        let path = dir.join(name);
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Whether `path` is a mount point in this mount namespace (per /proc/self/mountinfo).
pub(crate) fn is_mountpoint(path: &Path) -> Result<bool, ImageError> {
    let canonical = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ImageError::io(format!("resolving {}", path.display()), e)),
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "reading /proc/self/mountinfo".to_string())?;
    let wanted = canonical.as_os_str().as_bytes();
    Ok(mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| unescape_mountinfo(mount_point) == wanted))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), b"/a b");
        assert_eq!(unescape_mountinfo(r"/a\134"), b"/a\\");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
    }
}

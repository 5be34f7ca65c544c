//! Finding the cgroup hierarchies when the agent starts under `ip netns exec`.
//!
//! `ip netns exec H CMD` runs CMD in a mount namespace of its own (a slave copy of the
//! caller's, made afresh for every start) and mounts a new sysfs on `/sys` there, so
//! `/sys/fs/cgroup` is an empty directory: no cgroup hierarchy is mounted under it. The agent
//! then joins the mount namespace of the nearest ancestor process that has the hierarchies
//! (the one `ip netns exec` was started from: the host's), once, at process start, while it
//! is still single-threaded (`setns(CLONE_NEWNS)` refuses multithreaded callers). Only the
//! mount namespace changes: the network namespace stays the test host's.
//!
//! Why join rather than mount the hierarchies inside the per-start namespace: everything
//! the agent mounts for its pods (the pinned pod netns files under `DIR/run/netns`, overlay
//! root filesystems, volumes) would otherwise live in a namespace that only this start of
//! the agent and its shims see. A restarted agent (a new `ip netns exec`, a new namespace)
//! could neither see nor unmount them, so it could not tear down the pods it re-adopts
//! without leaking mounts. In the host's mount namespace every start of the agent sees the
//! same mounts, as an agent started without `ip netns exec` does. What the agent gives up is
//! its own sysfs: `/sys` there is the host's netns's, which the agent does not read for
//! network state (per-netns sysctls are under `/proc/sys/net`, resolved by the opener's
//! netns; containers mount their own sysfs after joining the pod's netns). ARCHITECTURE §8.
//!
//! Timeline of one start:
//! ```text
//! ip netns exec H peapod agent
//!   └─ own mount ns has cgroup/cgroup2 under /sys/fs/cgroup? ── yes ──► nothing to do
//!        │ no
//!        ▼
//!      walk parent → grandparent → … (stop at pid 1): first whose mount ns differs and has them
//!        │ found                                   │ none
//!        ▼                                         ▼
//!      setns(its mount ns), cd back to the cwd     Ok(None): pods will fail to get cgroups
//! ```

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::OciError;

/// Where the hierarchies are mounted on every layout (v1, v2, hybrid).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether a mountinfo text has a cgroup or cgroup2 filesystem at or under /sys/fs/cgroup.
pub fn has_cgroup_hierarchies(mountinfo: &str) -> bool {
    mountinfo.lines().any(|line| {
        let Some((left, right)) = line.split_once(" - ") else {
            return false;
        };
        let mount = left.split(' ').nth(4).unwrap_or("");
        let under = mount == CGROUP_ROOT
            || mount
                .strip_prefix(CGROUP_ROOT)
                .is_some_and(|rest| rest.starts_with('/'));
        under && matches!(right.split(' ').next(), Some("cgroup" | "cgroup2"))
    })
}

/// The parent pid from a `/proc/<pid>/stat` text (the field after the parenthesised name,
/// which may itself hold spaces and parentheses).
fn parent_pid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// What one ancestor offers: its pid, its mount namespace's inode, whether it sees the
/// hierarchies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    pid: u32,
    mount_ns: u64,
    has_hierarchies: bool,
}

/// The ancestor (nearest first) whose mount namespace to join: one in another namespace
/// than ours that has the hierarchies.
fn choose(own_ns: u64, ancestors: &[Candidate]) -> Option<Candidate> {
    ancestors
        .iter()
        .find(|c| c.mount_ns != own_ns && c.has_hierarchies)
        .copied()
}

/// Joins the nearest ancestor's mount namespace that has the cgroup hierarchies when this
/// process's has none (see the module doc). Must run before any thread starts. Returns the
/// pid whose namespace was joined, `None` when nothing needed doing or no ancestor had them.
pub fn join_cgroup_mount_namespace() -> Result<Option<u32>, OciError> {
    let own = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| OciError::io("read", "/proc/self/mountinfo", e))?;
    if has_cgroup_hierarchies(&own) {
        return Ok(None);
    }
    let own_ns = ns_inode(Path::new("/proc/self/ns/mnt"))?;
    let mut ancestors = Vec::new();
    let mut pid = std::os::unix::process::parent_id();
    while pid > 0 && ancestors.len() < 64 {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let (Ok(mount_ns), Ok(mountinfo)) = (
            ns_inode(&dir.join("ns/mnt")),
            fs::read_to_string(dir.join("mountinfo")),
        ) else {
            break; // gone or not ours to look at: stop here
        };
        ancestors.push(Candidate {
            pid,
            mount_ns,
            has_hierarchies: has_cgroup_hierarchies(&mountinfo),
        });
        if pid == 1 {
            break;
        }
        match fs::read_to_string(dir.join("stat"))
            .ok()
            .as_deref()
            .and_then(parent_pid)
        {
            Some(parent) => pid = parent,
            None => break,
        }
    }
    let Some(chosen) = choose(own_ns, &ancestors) else {
        return Ok(None);
    };
    let path = PathBuf::from(format!("/proc/{}/ns/mnt", chosen.pid));
    let ns = fs::File::open(&path).map_err(|e| OciError::io("open", &path, e))?;
    // The namespace behind the fd is the one inspected (the inode check below), even if the
    // pid was reused between the walk and the open.
    let opened = ns
        .metadata()
        .map_err(|e| OciError::io("stat", &path, e))?
        .ino();
    if opened != chosen.mount_ns {
        return Ok(None);
    }
    let cwd = std::env::current_dir().ok();
    // SAFETY: setns on an fd we own; the process is single-threaded (the caller's contract).
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(OciError::io(
            "setns",
            &path,
            std::io::Error::last_os_error(),
        ));
    }
    // setns(CLONE_NEWNS) moves the root and the working directory to the namespace's root.
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    Ok(Some(chosen.pid))
}

fn ns_inode(path: &Path) -> Result<u64, OciError> {
    fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| OciError::io("stat", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V2: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const V1: &str = "\
31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
    /// What `ip netns exec` leaves: a fresh sysfs, nothing under it.
    const NETNS_EXEC: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
900 27 0:99 / /sys rw,relatime - sysfs H rw
";

    #[test]
    fn sees_hierarchies_on_every_layout() {
        let table = [
            (HYBRID, true),
            (V2, true),
            (V1, true),
            (NETNS_EXEC, false),
            // A tmpfs at /sys/fs/cgroup alone is no hierarchy; a cgroup fs elsewhere is not ours.
            ("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", false),
            (
                "50 23 0:40 / /sys/fs/cgroupx rw - cgroup2 cgroup2 rw\n",
                false,
            ),
            ("50 23 0:40 / /mnt/cg rw - cgroup cgroup rw,cpu\n", false),
            ("", false),
        ];
        for (mountinfo, want) in table {
            assert_eq!(has_cgroup_hierarchies(mountinfo), want, "{mountinfo}");
        }
    }

    #[test]
    fn parses_parent_pid_from_stat() {
        assert_eq!(parent_pid("42 (python3) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("42 (a) b (c)) R 9 1 1"), Some(9));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn chooses_the_nearest_other_namespace_with_hierarchies() {
        let c = |pid, mount_ns, has_hierarchies| Candidate {
            pid,
            mount_ns,
            has_hierarchies,
        };
        let table: [(&str, Vec<Candidate>, Option<u32>); 5] = [
            (
                "parent is the host",
                vec![c(10, 1, true), c(1, 1, true)],
                Some(10),
            ),
            (
                "parent shares our empty namespace",
                vec![c(10, 5, false), c(9, 1, true)],
                Some(9),
            ),
            // Our own namespace would have shown hierarchies already; never "join" it.
            ("same namespace", vec![c(10, 5, true)], None),
            (
                "nobody has them",
                vec![c(10, 2, false), c(1, 3, false)],
                None,
            ),
            ("no ancestors readable", vec![], None),
        ];
        for (what, ancestors, want) in table {
            assert_eq!(choose(5, &ancestors).map(|c| c.pid), want, "{what}");
        }
    }
}

//! Pod-level cgroups (cgroupfs layout, like the kubelet's `kubepods/pod<uid>`), on cgroup v1,
//! v2 and the v1/v2 hybrid layout; and reading back what the runtime set on a container's
//! cgroup (memory limit, OOM kills).
//!
//! The pod cgroup is created in every mounted hierarchy (v1: one per controller mount; v2: one
//! directory with the controllers enabled down the tree), so the runtime's nested container
//! cgroups `<pod>/<container>` land under it wherever the runtime puts them. On v2 the infra
//! process goes into a leaf `<pod>/pause`, because a v2 cgroup that delegates controllers to
//! children cannot hold processes itself.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{OciError, Resources};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";
/// Leaf under a v2 pod cgroup for the infra process ("no internal processes" rule).
const V2_INFRA_LEAF: &str = "pause";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    V1,
    V2,
    /// v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified (systemd's hybrid).
    Hybrid,
}

fn is_cgroup2(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: statfs fills the struct for a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::CGROUP2_SUPER_MAGIC
    }
}

pub fn detect() -> CgroupMode {
    if is_cgroup2(CGROUP_ROOT) {
        CgroupMode::V2
    } else if is_cgroup2(HYBRID_UNIFIED) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

/// One mounted hierarchy.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    /// v1 controller names (including `name=systemd`); empty for cgroup2.
    controllers: Vec<String>,
}

impl Hierarchy {
    fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.mount.join(name.trim_start_matches('/'))
    }
}

/// The cgroup hierarchies mounted under /sys/fs/cgroup, from /proc/self/mountinfo.
fn hierarchies() -> Vec<Hierarchy> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> <source> <super opts>"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (fstype, super_opts) = (right.next(), right.nth(1).unwrap_or(""));
        if !mount.starts_with(CGROUP_ROOT) {
            continue;
        }
        match fstype {
            Some("cgroup2") => found.push(Hierarchy {
                mount: mount.into(),
                controllers: Vec::new(),
            }),
            Some("cgroup") => {
                let controllers = super_opts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "relatime" | "noexec" | "nosuid" | "nodev")
                            && !o.starts_with("release_agent")
                            && *o != "clone_children"
                            && *o != "xattr"
                    })
                    .map(String::from)
                    .collect::<Vec<_>>();
                if !controllers.is_empty() {
                    found.push(Hierarchy {
                        mount: mount.into(),
                        controllers,
                    });
                }
            }
            _ => {}
        }
    }
    found
}

fn write(path: &Path, value: &str) -> Result<(), OciError> {
    fs::write(path, value).map_err(|e| OciError::io("write", path, e))
}

fn mkdir(path: &Path) -> Result<(), OciError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OciError::io("mkdir", path, e)),
    }
}

/// Creates each missing level of `name` under `h`, preparing each as its controllers need
/// (v1 cpuset: copy cpus/mems from the parent; v2: enable the parent's controllers).
fn create_levels(h: &Hierarchy, name: &str) -> Result<PathBuf, OciError> {
    let mut dir = h.mount.clone();
    for part in name.split('/').filter(|p| !p.is_empty()) {
        if h.is_v2() {
            enable_subtree_controllers(&dir);
        }
        let parent = dir.clone();
        dir.push(part);
        mkdir(&dir)?;
        if h.has("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let current = fs::read_to_string(dir.join(file)).unwrap_or_default();
                if current.trim().is_empty() {
                    let inherited = fs::read_to_string(parent.join(file))
                        .map_err(|e| OciError::io("read", parent.join(file), e))?;
                    write(&dir.join(file), inherited.trim())?;
                }
            }
        }
    }
    Ok(dir)
}

/// Enables in `dir`'s subtree every controller `dir` has (best effort: a controller that
/// cannot be enabled, e.g. cpu with realtime threads around, is simply skipped).
fn enable_subtree_controllers(dir: &Path) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for controller in available.split_whitespace() {
        if !enabled.split_whitespace().any(|c| c == controller) {
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"))
            {
                tracing::debug!(dir = %dir.display(), controller, error = %e, "cannot enable cgroup controller");
            }
        }
    }
}

/// Creates the pod cgroup `name` (e.g. `/peapod/pod<uid>`) in every hierarchy and applies
/// the optional pod-level limits.
pub fn create_pod_cgroup(name: &str, limits: &Resources) -> Result<(), OciError> {
    for h in hierarchies() {
        let dir = create_levels(&h, name)?;
        if h.is_v2() {
            enable_subtree_controllers(&dir);
            // On a hybrid host the v2 tree has (almost) no controllers: limits live in v1.
            let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| available.split_whitespace().any(|a| a == c);
            if let (Some(limit), true) = (limits.memory_limit, has("memory")) {
                write(&dir.join("memory.max"), &limit.to_string())?;
            }
            if has("cpu") {
                if let Some(quota) = limits.cpu_quota {
                    let period = limits.cpu_period.unwrap_or(100_000);
                    write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(shares) = limits.cpu_shares {
                    write(
                        &dir.join("cpu.weight"),
                        &shares_to_weight(shares).to_string(),
                    )?;
                }
            }
            if let (Some(pids), true) = (limits.pids_limit, has("pids")) {
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
            continue;
        }
        if h.has("memory") {
            if let Some(limit) = limits.memory_limit {
                write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
            }
        }
        if h.has("cpu") {
            if let Some(period) = limits.cpu_period {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            }
            if let Some(quota) = limits.cpu_quota {
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            if let Some(shares) = limits.cpu_shares {
                write(&dir.join("cpu.shares"), &shares.to_string())?;
            }
        }
        if h.has("pids") {
            if let Some(pids) = limits.pids_limit {
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
        }
    }
    Ok(())
}

/// cgroup v1 cpu.shares to v2 cpu.weight, the conversion runc and crun use.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// Moves `pid` (the infra process) into the pod cgroup in every hierarchy.
pub fn add_process(name: &str, pid: u32) -> Result<(), OciError> {
    for h in hierarchies() {
        let mut dir = h.dir(name);
        if h.is_v2() {
            dir.push(V2_INFRA_LEAF);
            mkdir(&dir)?;
        }
        write(&dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
}

/// Removes the pod cgroup and everything below it in every hierarchy; a missing one is fine.
/// Fails (after a short retry, for processes that are just exiting) if processes remain.
pub fn remove_pod_cgroup(name: &str) -> Result<(), OciError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    for h in hierarchies() {
        let dir = h.dir(name);
        loop {
            match remove_tree(&dir) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(OciError::io("remove cgroup", dir, e)),
            }
        }
    }
    Ok(())
}

/// rmdir children first; cgroupfs directories hold only virtual files, which go with them.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where a container's memory accounting lives: the v1 memory hierarchy, or the v2 tree.
fn memory_dir(cgroup_path: &str) -> Option<PathBuf> {
    let hs = hierarchies();
    let h = match detect() {
        CgroupMode::V2 => hs.into_iter().find(Hierarchy::is_v2)?,
        _ => hs.into_iter().find(|h| h.has("memory"))?,
    };
    Some(h.dir(cgroup_path))
}

fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether the kernel OOM-killed a process in this cgroup. Read it before the runtime's
/// `delete` removes the cgroup.
pub fn oom_killed(cgroup_path: &str) -> bool {
    let Some(dir) = memory_dir(cgroup_path) else {
        return false;
    };
    if let Ok(events) = fs::read_to_string(dir.join("memory.events")) {
        return counter(&events, "oom_kill").unwrap_or(0) > 0;
    }
    match fs::read_to_string(dir.join("memory.oom_control")) {
        Ok(control) => {
            counter(&control, "oom_kill").unwrap_or(0) > 0
                || counter(&control, "under_oom").unwrap_or(0) > 0
        }
        Err(_) => false,
    }
}

/// The memory limit set on a cgroup, `None` if unlimited or unreadable.
pub fn memory_limit(cgroup_path: &str) -> Option<u64> {
    let dir = memory_dir(cgroup_path)?;
    let text = fs::read_to_string(dir.join("memory.max"))
        .or_else(|_| fs::read_to_string(dir.join("memory.limit_in_bytes")))
        .ok()?;
    let value: u64 = text.trim().parse().ok()?;
    // v1 reports "no limit" as the largest page-aligned i64.
    (value < (i64::MAX as u64 & !4095)).then_some(value)
}

/// Every directory the pod cgroup `name` has in the mounted hierarchies that exists now
/// (for tests and cleanup checks).
pub fn existing_dirs(name: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.dir(name))
        .filter(|d| d.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_shares_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn reads_oom_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(counter(v1, "oom_kill"), Some(2));
        assert_eq!(counter(v1, "under_oom"), Some(0));
        assert_eq!(counter("low 0\noom 1\noom_kill 0\n", "oom_kill"), Some(0));
    }
}

//! The OCI runtime spec (`config.json`) of an app container, with the defaults containerd's
//! CRI plugin gives a Kubernetes container: its capability set, masked and read-only paths,
//! standard mounts, a deny-all device cgroup, fresh mount and PID namespaces, the pod's
//! network/IPC/UTS namespaces joined by path, and the agent's own NOFILE rlimit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::seccomp::Seccomp;
use crate::OciError;

/// containerd's default capability set for containers (and so Kubernetes' default).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// cgroup limits, in the units of the OCI spec (cgroup v1 semantics; runtimes convert for v2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Bytes. Swap is turned off for the container (memory+swap = limit), as the kubelet does.
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountKind {
    /// Bind mount of `source` (a host path).
    #[default]
    Bind,
    /// A fresh tmpfs (`source` is ignored).
    Tmpfs,
}

/// A bind mount's propagation (Kubernetes' `mountPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// `None`: mounts on either side stay there (rprivate).
    #[default]
    Private,
    /// `HostToContainer`: mounts made under the source on the host appear (rslave).
    HostToContainer,
    /// `Bidirectional`: both ways (rshared); privileged containers only.
    Bidirectional,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
    pub kind: MountKind,
    pub propagation: Propagation,
}

/// Everything the runtime needs to know about one app container, as plain data. The agent
/// fills it from the PodSpec and the image config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// Extra mounts (emptyDir dirs, /etc/hosts, /etc/hostname, /etc/resolv.conf,
    /// /dev/termination-log), after the standard ones; one with the same destination as a
    /// standard mount replaces it.
    pub mounts: Vec<Mount>,
    /// Namespaces to join (`/proc/<infra pid>/ns/<ns>` or a pinned path); `None` = a new one.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub pidns: Option<PathBuf>,
    /// The pod's shared `/dev/shm` (a tmpfs the agent mounted for the sandbox, see
    /// [`crate::sandbox::mount_shm`]), bind-mounted so POSIX shared memory is shared like the
    /// pod's IPC namespace; `None` = a private tmpfs.
    pub shm: Option<PathBuf>,
    /// cgroupfs-style path, nested under the pod cgroup: `/peapod/pod<uid>/<container id>`.
    pub cgroups_path: String,
    pub resources: Resources,
    pub oom_score_adj: Option<i32>,
    /// A terminal (`process.terminal`): the runtime hands its master to the monitor over a
    /// console socket; the container's output is logged as stdout.
    pub tty: bool,
    /// The monitor holds the container's stdin open for attach sessions (else /dev/null).
    pub stdin: bool,
    /// Stdin closes after the first attach session that used it (piped stdin only).
    pub stdin_once: bool,
    pub no_new_privileges: bool,
    /// Capability names with or without the `CAP_` prefix; `None` = [`DEFAULT_CAPABILITIES`].
    pub capabilities: Option<Vec<String>>,
    /// Kubernetes' privileged mode, as containerd gives it: every capability the runtime's
    /// caller holds, no masked or read-only paths, sysfs and cgroupfs writable, every device allowed
    /// by the device cgroup. Overrides `capabilities`.
    pub privileged: bool,
    /// Namespaces shared with the host rather than made or joined (hostNetwork, hostPID,
    /// hostIPC): left out of the spec, so the container stays in the runtime's own.
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// The seccomp filter (none for a privileged container).
    pub seccomp: Seccomp,
    /// Namespaced kernel parameters set in the container's namespaces at creation.
    pub sysctls: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Every capability by number (`capability.h`), for privileged containers.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities the calling process holds (its effective set), by name: what a
/// privileged container gets, as containerd gives it (a runtime cannot grant more).
fn current_capabilities() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn normalize_capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The default set adjusted by a securityContext's `capabilities.add` / `drop` (names with or
/// without `CAP_`; `drop: [ALL]` empties the default set first, as in Kubernetes).
pub fn capabilities_with(add: &[String], drop: &[String]) -> Vec<String> {
    let drop: Vec<String> = drop.iter().map(|c| normalize_capability(c)).collect();
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for cap in add.iter().map(|c| normalize_capability(c)) {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    caps
}

fn parse_capabilities(names: &[String]) -> Result<Capabilities, OciError> {
    names
        .iter()
        .map(|name| {
            let name = normalize_capability(name);
            serde_json::from_value::<Capability>(serde_json::Value::String(name.clone()))
                .map_err(|_| OciError::Spec(format!("unknown capability {name}")))
        })
        .collect()
}

fn spec_err(e: oci_spec::OciSpecError) -> OciError {
    OciError::Spec(e.to_string())
}

fn mount(
    destination: &str,
    typ: &str,
    source: impl AsRef<Path>,
    options: &[&str],
) -> Result<oci_spec::runtime::Mount, OciError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source.as_ref())
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err)
}

fn standard_mounts(config: &ContainerConfig) -> Result<Vec<oci_spec::runtime::Mount>, OciError> {
    let sys_access = if config.privileged { "rw" } else { "ro" };
    let shm = match &config.shm {
        Some(dir) => mount(
            "/dev/shm",
            "bind",
            dir,
            &["rbind", "rprivate", "nosuid", "nodev", "noexec"],
        )?,
        None => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        shm,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_access],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_access],
        )?,
    ])
}

fn user_mount(m: &Mount) -> Result<oci_spec::runtime::Mount, OciError> {
    if !m.destination.starts_with('/') {
        return Err(OciError::Spec(format!(
            "mount destination {:?} is not absolute",
            m.destination
        )));
    }
    let rw = if m.readonly { "ro" } else { "rw" };
    match m.kind {
        MountKind::Bind => {
            let propagation = match m.propagation {
                Propagation::Private => "rprivate",
                Propagation::HostToContainer => "rslave",
                Propagation::Bidirectional => "rshared",
            };
            mount(
                &m.destination,
                "bind",
                &m.source,
                &["rbind", propagation, rw],
            )
        }
        MountKind::Tmpfs => mount(
            &m.destination,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", rw],
        ),
    }
}

fn namespace(
    typ: LinuxNamespaceType,
    path: Option<&PathBuf>,
) -> Result<oci_spec::runtime::LinuxNamespace, OciError> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    match path {
        Some(path) => builder.path(path.clone()),
        None => builder,
    }
    .build()
    .map_err(spec_err)
}

/// The agent's own NOFILE limits: containers get what the agent has (this machine cannot
/// raise a hard limit, and a spec asking for more than the runtime's own fails to start).
fn nofile_limit() -> (u64, u64) {
    // SAFETY: getrlimit fills the struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            (limit.rlim_cur, limit.rlim_max)
        } else {
            (1024, 1024)
        }
    }
}

/// Builds the container's `config.json` content.
pub fn build_spec(config: &ContainerConfig) -> Result<Spec, OciError> {
    if config.args.is_empty() {
        return Err(OciError::Spec("no command (args is empty)".into()));
    }
    let cap_names: Vec<String> = match &config.capabilities {
        _ if config.privileged => current_capabilities(),
        Some(names) => names.clone(),
        None => DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
    };
    let caps = parse_capabilities(&cap_names)?;
    // Like containerd since 1.6.18: no inheritable (and so no ambient) capabilities.
    let mut capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(spec_err)?;
    // The builder starts from oci-spec's own defaults, which fill these.
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    let (soft, hard) = nofile_limit();
    let mut process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(
            UserBuilder::default()
                .uid(config.uid)
                .gid(config.gid)
                .additional_gids(config.additional_gids.clone())
                .build()
                .map_err(spec_err)?,
        )
        .args(config.args.clone())
        .env(config.env.clone())
        .cwd(if config.cwd.is_empty() {
            "/"
        } else {
            &config.cwd
        })
        .capabilities(capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(spec_err)?])
        .no_new_privileges(config.no_new_privileges)
        .build()
        .map_err(spec_err)?;
    process.set_oom_score_adj(config.oom_score_adj);

    let mut mounts: Vec<oci_spec::runtime::Mount> = standard_mounts(config)?
        .into_iter()
        .filter(|m| {
            !config
                .mounts
                .iter()
                .any(|user| Path::new(&user.destination) == m.destination())
        })
        .collect();
    for m in &config.mounts {
        mounts.push(user_mount(m)?);
    }

    let r = &config.resources;
    let mut resources =
        LinuxResourcesBuilder::default().devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(config.privileged)
            .access("rwm")
            .build()
            .map_err(spec_err)?]);
    if let Some(limit) = r.memory_limit {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .map_err(spec_err)?,
        );
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpuBuilder::default().build().map_err(spec_err)?;
        cpu.set_shares(r.cpu_shares);
        cpu.set_quota(r.cpu_quota);
        cpu.set_period(r.cpu_period);
        resources = resources.cpu(cpu);
    }
    if let Some(limit) = r.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(spec_err)?,
        );
    }

    let linux = LinuxBuilder::default()
        .namespaces(
            [
                (!config.host_pid)
                    .then(|| namespace(LinuxNamespaceType::Pid, config.pidns.as_ref())),
                (!config.host_ipc)
                    .then(|| namespace(LinuxNamespaceType::Ipc, config.ipcns.as_ref())),
                Some(namespace(LinuxNamespaceType::Uts, config.utsns.as_ref())),
                Some(namespace(LinuxNamespaceType::Mount, None)),
                (!config.host_network)
                    .then(|| namespace(LinuxNamespaceType::Network, config.netns.as_ref())),
            ]
            .into_iter()
            .flatten()
            .collect::<Result<Vec<_>, _>>()?,
        )
        .masked_paths(if config.privileged {
            Vec::new()
        } else {
            MASKED_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })
        .readonly_paths(if config.privileged {
            Vec::new()
        } else {
            READONLY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })
        .resources(resources.build().map_err(spec_err)?)
        .build()
        .map_err(spec_err)?;
    let mut linux = linux;
    // As containerd: propagating mounts need the container's root to propagate too.
    let propagations = config.mounts.iter().map(|m| m.propagation);
    if propagations
        .clone()
        .any(|p| p == Propagation::Bidirectional)
    {
        linux.set_rootfs_propagation(Some("rshared".into()));
    } else if propagations
        .clone()
        .any(|p| p == Propagation::HostToContainer)
    {
        linux.set_rootfs_propagation(Some("rslave".into()));
    }
    // As containerd: a privileged container runs without a filter.
    match &config.seccomp {
        _ if config.privileged => {}
        Seccomp::Unconfined => {}
        Seccomp::RuntimeDefault => {
            let held: Vec<String> = cap_names
                .iter()
                .map(|c| {
                    let c = c.to_ascii_uppercase();
                    if c.starts_with("CAP_") {
                        c
                    } else {
                        format!("CAP_{c}")
                    }
                })
                .collect();
            linux.set_seccomp(Some(crate::seccomp::runtime_default(&held)?));
        }
        Seccomp::Profile(p) => {
            linux.set_seccomp(Some(p.clone()));
        }
    }
    if !config.sysctls.is_empty() {
        linux.set_sysctl(Some(config.sysctls.clone().into_iter().collect()));
    }
    linux.set_cgroups_path(
        (!config.cgroups_path.is_empty()).then(|| PathBuf::from(&config.cgroups_path)),
    );

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(config.rootfs.clone())
                .readonly(config.readonly_rootfs)
                .build()
                .map_err(spec_err)?,
        )
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
        .map_err(spec_err)?;
    // The builder starts from oci-spec's example defaults (hostname "youki", ...): set all.
    spec.set_hostname((!config.hostname.is_empty()).then(|| config.hostname.clone()));
    spec.set_annotations(None);
    if !config.annotations.is_empty() {
        spec.set_annotations(Some(
            config
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            rootfs: "/rootfs".into(),
            hostname: "pod-a".into(),
            netns: Some("/proc/10/ns/net".into()),
            ipcns: Some("/proc/10/ns/ipc".into()),
            utsns: Some("/proc/10/ns/uts".into()),
            cgroups_path: "/peapod/podu1/c1".into(),
            resources: Resources {
                memory_limit: Some(64 << 20),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                ..Default::default()
            },
            mounts: vec![Mount {
                source: "/pods/u1/etc-hosts".into(),
                destination: "/etc/hosts".into(),
                readonly: false,
                kind: MountKind::Bind,
                propagation: Propagation::Private,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn builds_containerd_defaults() {
        let spec = build_spec(&config()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(json["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(json["linux"]["maskedPaths"].as_array().unwrap().len(), 9);
        assert_eq!(json["linux"]["readonlyPaths"].as_array().unwrap().len(), 6);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["memory"]["swap"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["cgroupsPath"], "/peapod/podu1/c1");
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        let ns = |t: &str| namespaces.iter().find(|n| n["type"] == t).cloned().unwrap();
        assert_eq!(ns("network")["path"], "/proc/10/ns/net");
        assert!(ns("pid").get("path").is_none());
        assert!(ns("mount").get("path").is_none());
        let destinations: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/hosts"
            ]
        );
        assert_eq!(json["hostname"], "pod-a");
        let bare = ContainerConfig {
            args: vec!["x".into()],
            ..Default::default()
        };
        let json = serde_json::to_value(build_spec(&bare).unwrap()).unwrap();
        assert!(json.get("hostname").is_none());
        assert!(json.get("annotations").is_none());
        assert!(json["linux"].get("cgroupsPath").is_none());
    }

    #[test]
    fn user_mounts_replace_standard_ones() {
        let mut c = config();
        c.mounts.push(Mount {
            source: "/pods/u1/shm".into(),
            destination: "/dev/shm".into(),
            readonly: false,
            kind: MountKind::Bind,
            propagation: Propagation::Private,
        });
        let spec = build_spec(&c).unwrap();
        let shm: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].typ().as_deref(), Some("bind"));
    }

    #[test]
    fn privileged_gets_every_capability_and_no_masks() {
        let mut c = config();
        c.privileged = true;
        let json = serde_json::to_value(build_spec(&c).unwrap()).unwrap();
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(caps.len(), current_capabilities().len(), "{caps:?}");
        assert!(json["linux"]
            .get("maskedPaths")
            .is_none_or(|m| m.as_array().unwrap().is_empty()));
        assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], true);
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().iter().any(|o| o == "rw"));
    }

    #[test]
    fn host_namespaces_are_left_out() {
        let mut c = config();
        c.host_network = true;
        c.host_pid = true;
        let json = serde_json::to_value(build_spec(&c).unwrap()).unwrap();
        let kinds: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["ipc", "uts", "mount"]);
    }

    #[test]
    fn adjusts_capabilities_like_kubernetes() {
        let caps = capabilities_with(&["NET_ADMIN".into()], &["chown".into(), "CAP_KILL".into()]);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            capabilities_with(&["SYS_TIME".into()], &["ALL".into()]),
            ["CAP_SYS_TIME"]
        );
        let mut c = config();
        c.capabilities = Some(vec!["NOT_A_CAP".into()]);
        assert!(build_spec(&c).is_err());
    }
}

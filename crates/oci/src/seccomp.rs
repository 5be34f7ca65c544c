//! Seccomp filters for containers (`securityContext.seccompProfile`).
//!
//! `RuntimeDefault` here is a deny list: every syscall is allowed except those containerd's
//! default profile keeps from a container — the ones no container should make (kernel
//! keyrings, kexec, io_uring, ...) and the ones that need a capability the container does
//! not hold (mount and namespace creation without `CAP_SYS_ADMIN`, ptrace without
//! `CAP_SYS_PTRACE`, ...). Denied calls fail with EPERM, as there; `clone3` fails with
//! ENOSYS so libc falls back to `clone`, whose namespace flags are then checked.
//! containerd's profile is an allow list instead, so a syscall newer than it is refused
//! there and allowed here.
//!
//! `Localhost` profiles are OCI seccomp JSON files, used as they are.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use crate::OciError;

/// A container's seccomp setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// No filter (Kubernetes' default without `--seccomp-default`).
    #[default]
    Unconfined,
    /// The runtime's default filter, fitted to the container's capabilities.
    RuntimeDefault,
    /// A profile loaded from a file on the node.
    Profile(LinuxSeccomp),
}

impl Seccomp {
    /// Parses a `Localhost` profile (OCI seccomp JSON).
    pub fn from_json(bytes: &[u8]) -> Result<Seccomp, OciError> {
        serde_json::from_slice(bytes)
            .map(Seccomp::Profile)
            .map_err(|e| OciError::Spec(format!("decoding the seccomp profile: {e}")))
    }
}

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// Refused to every container.
const ALWAYS_DENIED: &[&str] = &[
    "add_key",
    "keyctl",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// Refused unless the container holds the capability.
const NEED_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount",
            "umount",
            "umount2",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "pivot_root",
            "swapon",
            "swapoff",
            "setns",
            "unshare",
            "sethostname",
            "setdomainname",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "fanotify_init",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["init_module", "finit_module", "delete_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "ptrace",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "clock_adjtime",
            "clock_adjtime64",
            "adjtimex",
        ],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "move_pages",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
];

/// The `CLONE_NEW*` flags: a `clone` asking for any of them needs `CAP_SYS_ADMIN`.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

fn errno(names: Vec<String>, code: u32) -> Result<LinuxSyscall, OciError> {
    LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(code)
        .build()
        .map_err(|e| OciError::Spec(e.to_string()))
}

/// The runtime default filter for a container holding `capabilities` (`CAP_` names).
pub fn runtime_default(capabilities: &[String]) -> Result<LinuxSeccomp, OciError> {
    let holds = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut denied: Vec<String> = ALWAYS_DENIED.iter().map(|s| s.to_string()).collect();
    for (cap, calls) in NEED_CAPABILITY {
        if !holds(cap) {
            denied.extend(calls.iter().map(|s| s.to_string()));
        }
    }
    let mut syscalls = vec![errno(denied, EPERM)?];
    if !holds("CAP_SYS_ADMIN") {
        syscalls.push(errno(vec!["clone3".into()], ENOSYS)?);
        // One rule per flag: a rule's conditions must all hold, rules are alternatives.
        for flag in CLONE_NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(*flag)
                .value_two(*flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .map_err(|e| OciError::Spec(e.to_string()))?;
            let mut rule = errno(vec!["clone".into()], EPERM)?;
            rule.set_args(Some(vec![arg]));
            syscalls.push(rule);
        }
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
            Arch::ScmpArchAarch64,
            Arch::ScmpArchArm,
        ])
        .syscalls(syscalls)
        .build()
        .map_err(|e| OciError::Spec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(filter: &LinuxSeccomp) -> Vec<String> {
        filter.syscalls().as_ref().unwrap()[0].names().clone()
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let plain = runtime_default(&["CAP_CHOWN".into()]).unwrap();
        assert!(denied(&plain).contains(&"mount".to_string()));
        assert!(denied(&plain).contains(&"ptrace".to_string()));
        assert!(denied(&plain).contains(&"keyctl".to_string()));
        // clone3 (ENOSYS) and one clone rule per namespace flag.
        assert_eq!(plain.syscalls().as_ref().unwrap().len(), 2 + 7);

        let admin = runtime_default(&["CAP_SYS_ADMIN".into(), "CAP_SYS_PTRACE".into()]).unwrap();
        assert!(!denied(&admin).contains(&"mount".to_string()));
        assert!(!denied(&admin).contains(&"ptrace".to_string()));
        assert!(denied(&admin).contains(&"keyctl".to_string()));
        assert_eq!(admin.syscalls().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn the_filter_is_written_in_the_runtime_spec_form() {
        let json = serde_json::to_value(runtime_default(&[]).unwrap()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(json["syscalls"][0]["errnoRet"], 1);
        assert_eq!(json["syscalls"][2]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    }

    #[test]
    fn localhost_profiles_are_oci_json() {
        let p = Seccomp::from_json(
            br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert!(matches!(p, Seccomp::Profile(_)));
        assert!(Seccomp::from_json(b"{\"defaultAction\": 3}").is_err());
    }
}

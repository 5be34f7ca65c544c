//! The OCI runtime side of the node agent.
//!
//! Owns: OCI bundle specs built from plain container settings with containerd's CRI defaults
//! ([`build_spec`]), the crun/runc command-line driver ([`Runtime`]), pod-level cgroups on
//! cgroup v1, v2 and v1/v2 hybrid hosts ([`cgroup`]), the pod sandbox's infra process
//! ([`sandbox`], `peapod-shim pause`), per-container monitors (`peapod-shim monitor`, spawned
//! by [`Runtime::create`]) and reading what they leave behind: exit files ([`read_exit`]) and
//! CRI-format logs ([`logs`]); and, for an agent started under `ip netns exec`, joining the
//! mount namespace that has the cgroup hierarchies ([`mountns`]).
//!
//! Does not own: Kubernetes types (the agent translates a PodSpec into [`ContainerConfig`]),
//! images (another crate mounts the rootfs and passes its path), CNI (another crate pins the
//! pod's network namespace and passes its path), restart policy and status computation.
//!
//! May depend on: `oci-spec` (runtime spec types), tokio (child processes), serde_json,
//! libc. It runs the `peapod-shim` binary and crun/runc as child processes; nothing else.

pub mod cgroup;
mod error;
mod exit;
pub mod logs;
pub mod mountns;
mod runtime;
pub mod sandbox;
pub mod seccomp;
mod spec;

pub use error::OciError;
pub use exit::{read_exit, ExitInfo};
pub use runtime::{ContainerIo, ContainerState, Runtime, RuntimeKind};
pub use spec::{
    build_spec, capabilities_with, ContainerConfig, Mount, MountKind, Propagation, Resources,
    DEFAULT_CAPABILITIES,
};

pub use oci_spec;

//! The node's image store.
//!
//! Owns: OCI distribution pulls (manifest negotiation, platform pick, bearer/basic auth, digest
//! verification), docker-archive and OCI-archive import, a content-addressed blob store
//! (`ROOT/blobs/sha256/<hex>`), layers unpacked once with whiteouts turned into overlayfs form
//! (`ROOT/layers/<short diff id>/`), a small JSON index of images (`ROOT/images.json`), and
//! the per-container overlayfs rootfs stacked from those layers.
//!
//! Does not own: running containers, Kubernetes types (no `k8s-openapi` here: the agent maps
//! [`ErrorKind`] to `InvalidImageName` / `ErrImagePull`), events, pull policy decisions.
//!
//! May depend on: tokio, hyper 1 + hyper-util + hyper-rustls (no reqwest), rustls with ring,
//! the system CA store, serde, tar/flate2/ruzstd (pure Rust decompression) and libc for
//! mount, mknod, xattrs and ownership.
//!
//! Crash safety: every blob, unpacked layer and index file is written under `ROOT/tmp` and
//! renamed into place only once complete and verified, so a kill -9 mid-pull leaves at most
//! garbage in `ROOT/tmp` (cleared on [`ImageStore::open`]) and never an image that looks
//! complete but is not. One [`ImageStore`] per root at a time.

mod archive;
mod digest;
mod error;
mod layer;
mod mount;
mod oci;
mod reference;
mod registry;
mod store;

pub use error::{ErrorKind, ImageError};
pub use mount::unmount_rootfs;
pub use reference::Reference;
pub use store::ImageStore;

use serde::{Deserialize, Serialize};

/// What the image says about how to run it (the `config` object of the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Normalised references that point at it (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// `docker.io/library/busybox@sha256:<manifest or index digest>`: what kubelet shows as imageID.
    pub repo_digests: Vec<String>,
    /// Bytes of manifest + config + compressed layers, as containerd reports.
    pub size: u64,
    pub config: ImageConfig,
    /// Diff ids (digests of the uncompressed layer tars), bottom first.
    pub layers: Vec<String>,
}

/// How to reach registries for one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `host` or `host:port` entries reached over plain HTTP (loopback registries always are).
    pub insecure_registries: Vec<String>,
    pub credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never let a password reach a log line through `{:?}`.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

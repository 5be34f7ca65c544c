//! The crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("OCI runtime {0:?} not found in PATH")]
    RuntimeNotFound(String),
    /// The runtime refused to create the container; `message` is its own reason (what the
    /// kubelet shows in `CreateContainerError` / `StartError`).
    #[error("{message}")]
    Create { id: String, message: String },
    /// A runtime command other than `create` failed.
    #[error("{runtime} {op} {id}: {message}")]
    Runtime {
        runtime: &'static str,
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("peapod-shim {0}")]
    Shim(String),
    #[error("invalid container config: {0}")]
    Spec(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out: {0}")]
    Timeout(String),
}

impl OciError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OciError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

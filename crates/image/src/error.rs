//! The crate's error type and the coarse kinds the agent maps to kubelet reasons.

use std::io;

/// What went wrong, coarsely: the agent turns `InvalidReference` into `InvalidImageName`
/// and every pull failure into `ErrImagePull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image name does not parse (kubelet: `InvalidImageName`).
    InvalidReference,
    /// Manifest or blob unknown to the registry, or image/layer missing locally.
    NotFound,
    /// The registry refused us (401/403, token endpoint refused).
    Unauthorized,
    /// Could not talk to the registry (DNS, connect, TLS, timeouts, 5xx).
    Network,
    /// Content is wrong: digest mismatch, unsupported manifest, bad tar, bad archive.
    InvalidContent,
    /// Local filesystem or mount failure.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse; the message is upstream's (`invalid reference format`...).
    #[error("{0}")]
    InvalidReference(String),
    /// A pull failed; the message reads like containerd's.
    #[error("failed to pull and unpack image \"{reference}\": {message}")]
    Pull {
        reference: String,
        kind: ErrorKind,
        message: String,
    },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidContent(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::InvalidReference(_) => ErrorKind::InvalidReference,
            ImageError::Pull { kind, .. } => *kind,
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::InvalidContent(_) => ErrorKind::InvalidContent,
            ImageError::Io { .. } => ErrorKind::Io,
        }
    }

    /// True for errors kubelet reports as `ErrImagePull`.
    pub fn is_pull_error(&self) -> bool {
        matches!(self, ImageError::Pull { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> ImageError {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn content(message: impl Into<String>) -> ImageError {
        ImageError::InvalidContent(message.into())
    }
}

/// `result.ctx(|| format!("writing {path}"))` for io results.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::io(context(), source))
    }
}

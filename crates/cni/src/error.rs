//! Owns the crate's error type, including the CNI error object a plugin reports
//! (`{"code", "msg", "details"}` on stdout, CNI spec "Error" section).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The error object a CNI plugin prints on stdout when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginError {
    /// CNI error code: 1–99 are the spec's well-known codes (e.g. 7 "invalid network config",
    /// 11 "try again later"), 100+ are plugin specific.
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl std::fmt::Display for PluginError {
    /// Formats as libcni does (`msg; details`), which is what container runtimes put into the
    /// kubelet's `FailedCreatePodSandBox` event.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

/// A CNI operation in the chain: which plugin, for which network, which command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCall {
    /// The plugin's `type` (its binary name).
    pub plugin: String,
    /// The network (conflist) name.
    pub network: String,
    /// `ADD`, `DEL` or `CHECK`.
    pub command: &'static str,
}

impl std::fmt::Display for PluginCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The same shape containerd uses: plugin type="bridge" name="peapod" failed (add)
        write!(
            f,
            "plugin type={:?} name={:?} failed ({})",
            self.plugin,
            self.network,
            self.command.to_ascii_lowercase()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin ran and reported a CNI error object.
    #[error("{call}: {error}")]
    Plugin {
        call: PluginCall,
        error: PluginError,
    },
    /// The plugin failed without a parsable CNI error (crash, signal, garbage on stdout).
    #[error("{call}: {status}: {output}")]
    PluginCrashed {
        call: PluginCall,
        status: String,
        output: String,
    },
    #[error("{call}: timed out after {timeout:?}")]
    Timeout { call: PluginCall, timeout: Duration },
    #[error("{call}: invalid result: {reason}")]
    InvalidResult { call: PluginCall, reason: String },
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("CNI config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("invalid attachment: {0}")]
    InvalidAttachment(String),
    #[error("network namespace {path} does not exist (not a pinned nsfs mount)")]
    NetnsMissing { path: PathBuf },
    #[error("network namespace {path}: {operation}: {source}")]
    Netns {
        path: PathBuf,
        operation: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {operation}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        source: std::io::Error,
    },
}

impl CniError {
    /// The CNI error object the plugin reported, if the failure came from one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            CniError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        operation: &'static str,
        source: std::io::Error,
    ) -> Self {
        CniError::Io {
            path: path.into(),
            operation,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_error_formats_like_containerd() {
        let err = CniError::Plugin {
            call: PluginCall {
                plugin: "bridge".into(),
                network: "peapod".into(),
                command: "ADD",
            },
            error: PluginError {
                code: 11,
                msg: "failed to allocate".into(),
                details: "range is full".into(),
            },
        };
        assert_eq!(
            err.to_string(),
            r#"plugin type="bridge" name="peapod" failed (add): failed to allocate; range is full"#
        );
        assert_eq!(err.plugin_error().map(|e| e.code), Some(11));
    }
}

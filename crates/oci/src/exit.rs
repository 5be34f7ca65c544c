//! The exit file a container monitor writes when the container's init is reaped.

use std::path::Path;

use serde::Deserialize;

use crate::OciError;

/// How a container ended, as recorded by its monitor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// The exit status, or 128 + signal when a signal killed it (137 for SIGKILL).
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// RFC 3339 UTC time with nanoseconds.
    pub finished_at: String,
}

/// Reads an exit file; `None` while the container has not exited (or its monitor died
/// before writing one). The monitor writes it atomically, so a present file is complete.
pub fn read_exit(exit_file: &Path) -> Result<Option<ExitInfo>, OciError> {
    let bytes = match std::fs::read(exit_file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OciError::io("read exit file", exit_file, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        OciError::io(
            "parse exit file",
            exit_file,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_monitor_exit_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        assert_eq!(read_exit(&path).unwrap(), None);
        std::fs::write(
            &path,
            "{\"exitCode\":137,\"signal\":9,\"finishedAt\":\"2024-01-01T00:00:00.5Z\"}\n",
        )
        .unwrap();
        let info = read_exit(&path).unwrap().unwrap();
        assert_eq!((info.exit_code, info.signal), (137, Some(9)));
        std::fs::write(
            &path,
            "{\"exitCode\":0,\"signal\":null,\"finishedAt\":\"x\"}",
        )
        .unwrap();
        assert_eq!(read_exit(&path).unwrap().unwrap().signal, None);
    }
}

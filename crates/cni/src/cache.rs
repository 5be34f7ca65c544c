//! Owns the result cache: one file per (network, container, interface) under
//! `<cache_dir>/results/`, named as libcni names them (`<network>-<container>-<ifname>`),
//! holding the conflist the ADD ran with and its result, so DEL and CHECK after an agent
//! restart run the same chain with the same `prevResult`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::write_atomically;
use crate::error::CniError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CachedAttachment {
    /// Format marker, so a future layout change can tell old files apart.
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The conflist (or loopback list) as it was at ADD time.
    pub config: Value,
    pub cni_args: String,
    pub capability_args: Map<String, Value>,
    /// The chain's final result; `null` for a chain whose last plugin printed nothing.
    pub result: Value,
}

pub(crate) const CACHE_KIND: &str = "peapodCniCacheV1";

pub(crate) fn cache_path(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

pub(crate) fn write(path: &Path, entry: &CachedAttachment) -> Result<(), CniError> {
    let bytes = serde_json::to_vec(entry).map_err(|e| CniError::Config {
        path: path.to_path_buf(),
        reason: format!("serializing cache entry: {e}"),
    })?;
    write_atomically(path, &bytes)
}

/// Reads a cache entry; a missing file is `None`, and so is an unreadable one (logged), since
/// DEL must still go ahead with the current config.
pub(crate) fn read(path: &Path) -> Option<CachedAttachment> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading CNI result cache");
            return None;
        }
    };
    match serde_json::from_slice::<CachedAttachment>(&bytes) {
        Ok(entry) if entry.kind == CACHE_KIND => Some(entry),
        Ok(entry) => {
            tracing::warn!(path = %path.display(), kind = %entry.kind, "unknown CNI result cache format");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "corrupt CNI result cache");
            None
        }
    }
}

pub(crate) fn remove(path: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(path, "remove cache entry", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(dir.path(), "net", "abc", "eth0");
        assert!(path.ends_with("results/net-abc-eth0"));
        assert_eq!(read(&path), None);
        let entry = CachedAttachment {
            kind: CACHE_KIND.into(),
            container_id: "abc".into(),
            if_name: "eth0".into(),
            network_name: "net".into(),
            config: json!({"name": "net"}),
            cni_args: "IgnoreUnknown=1".into(),
            capability_args: Map::new(),
            result: json!({"cniVersion": "1.0.0"}),
        };
        write(&path, &entry).unwrap();
        assert_eq!(read(&path), Some(entry));
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(read(&path), None);
    }

    #[test]
    fn corrupt_entry_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(dir.path(), "net", "abc", "eth0");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read(&path), None);
    }
}

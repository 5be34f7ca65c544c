//! The OCI / Docker v2 JSON documents: manifests, indexes (manifest lists), image configs,
//! their media types, and picking this node's platform out of an index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ImageConfig, ImageError};

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The Accept header of a manifest GET, in containerd's order of preference.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and configs are small; anything bigger is not one.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 8 << 20;

pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(crate) const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

pub(crate) enum Document {
    Index(Index),
    Manifest(Manifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or an index; the registry's Content-Type wins, then the document's own
/// `mediaType`, then its shape (OCI allows `mediaType` to be absent).
pub(crate) fn parse_document(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<Document, ImageError> {
    let bad = |e: serde_json::Error| ImageError::content(format!("invalid manifest: {e}"));
    let probe: Probe = serde_json::from_slice(bytes).map_err(bad)?;
    let content_type = content_type
        .map(|ct| ct.split(';').next().unwrap_or(ct).trim())
        .filter(|ct| is_known_document(ct));
    let media_type = content_type.or(probe.media_type.as_deref());
    let is_index = match media_type {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => {
            return Err(ImageError::content(
                "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed",
            ))
        }
        _ if probe.schema_version == Some(1) => {
            return Err(ImageError::content("schema 1 manifests are not supported"))
        }
        _ => probe.manifests.is_some(),
    };
    if is_index {
        Ok(Document::Index(serde_json::from_slice(bytes).map_err(bad)?))
    } else {
        Ok(Document::Manifest(
            serde_json::from_slice(bytes).map_err(bad)?,
        ))
    }
}

fn is_known_document(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_INDEX
            | OCI_MANIFEST
            | DOCKER_LIST
            | DOCKER_MANIFEST
            | DOCKER_SCHEMA1
            | DOCKER_SCHEMA1_SIGNED
    )
}

/// This node's architecture in GOARCH spelling.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The index entry for linux on this node's architecture (arm64 prefers variant v8 or none).
pub(crate) fn pick_platform<'a>(
    index: &'a Index,
    reference: &str,
) -> Result<&'a Descriptor, ImageError> {
    let arch = host_architecture();
    let matching = index.manifests.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    });
    let best =
        matching.min_by_key(
            |d| match d.platform.as_ref().and_then(|p| p.variant.as_deref()) {
                None => 0,
                Some("v8") if arch == "arm64" => 0,
                Some(_) => 1,
            },
        );
    // An index without any platform information (some OCI layouts) has one image: take it.
    let untagged = || match index.manifests.as_slice() {
        [only] if only.platform.is_none() => Some(only),
        _ => None,
    };
    best.or_else(untagged).ok_or_else(|| {
        ImageError::NotFound(format!(
            "{reference}: no match for platform in manifest (linux/{arch})"
        ))
    })
}

/// The image config blob (Docker and OCI share it).
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub(crate) fn parse(bytes: &[u8]) -> Result<ConfigFile, ImageError> {
        serde_json::from_slice(bytes)
            .map_err(|e| ImageError::content(format!("invalid image config: {e}")))
    }

    pub(crate) fn image_config(&self) -> ImageConfig {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        match &self.config {
            None => ImageConfig::default(),
            Some(c) => ImageConfig {
                entrypoint: c.entrypoint.clone(),
                cmd: c.cmd.clone(),
                env: c.env.clone().unwrap_or_default(),
                working_dir: non_empty(&c.working_dir),
                user: non_empty(&c.user),
                stop_signal: non_empty(&c.stop_signal),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        Index {
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, (os, arch, variant))| Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: format!("sha256:{i}"),
                    size: 1,
                    platform: Some(Platform {
                        os: os.to_string(),
                        architecture: arch.to_string(),
                        variant: variant.map(str::to_string),
                    }),
                    annotations: BTreeMap::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn picks_linux_on_this_arch() {
        let arch = host_architecture();
        let idx = index(&[
            ("linux", "s390x", None),
            ("windows", arch, None),
            ("linux", arch, None),
        ]);
        assert_eq!(pick_platform(&idx, "x").unwrap().digest, "sha256:2");
        let idx = index(&[("linux", "mips", None)]);
        let err = pick_platform(&idx, "x").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
    }

    #[test]
    fn document_kind_from_content_type_media_type_or_shape() {
        let manifest =
            br#"{"schemaVersion":2,"config":{"digest":"sha256:a","size":1},"layers":[]}"#;
        assert!(matches!(
            parse_document(manifest, None),
            Ok(Document::Manifest(_))
        ));
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document(index, Some("application/octet-stream")),
            Ok(Document::Index(_))
        ));
        let with_type = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_document(with_type, None),
            Ok(Document::Index(_))
        ));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(parse_document(v1, None).is_err());
    }

    #[test]
    fn config_empty_strings_are_none() {
        let cfg = ConfigFile::parse(
            br#"{"config":{"Entrypoint":null,"Cmd":["sh"],"WorkingDir":"","User":"1000","Env":["A=b"]},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .unwrap();
        let ic = cfg.image_config();
        assert_eq!(ic.entrypoint, None);
        assert_eq!(ic.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(ic.working_dir, None);
        assert_eq!(ic.user.as_deref(), Some("1000"));
        assert_eq!(cfg.rootfs.diff_ids, vec!["sha256:x"]);
    }
}

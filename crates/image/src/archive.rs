//! Importing image tarballs: docker-archive (`manifest.json` with `Config`, `RepoTags`,
//! `Layers`, as `docker save` writes) and OCI image layout archives (`oci-layout`,
//! `index.json` named by `io.containerd.image.name` or `org.opencontainers.image.ref.name`).
//! The tarball may be gzip or zstd compressed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use tracing::{info, warn};

use crate::digest;
use crate::error::IoContext;
use crate::layer::{self, clean_relative};
use crate::oci::{self, ConfigFile, Descriptor, Document};
use crate::store::{hash_file, ImageStore};
use crate::{Image, ImageError, Reference};

/// How many symlinks deep a path in the archive may go (docker save links shared layers).
const MAX_SYMLINK_HOPS: usize = 16;

pub(crate) fn import(store: &ImageStore, path: &Path) -> Result<Vec<Image>, ImageError> {
    let work = TempDir(store.tmp_path("import"));
    fs::create_dir(&work.0).ctx(|| format!("creating {}", work.0.display()))?;
    let files = extract(path, &work.0)?;
    let images = if files.exists("manifest.json") {
        import_docker(store, &files)?
    } else if files.exists("index.json") {
        import_oci(store, &files)?
    } else {
        return Err(ImageError::content(format!(
            "{}: neither a docker archive (manifest.json) nor an OCI archive (index.json)",
            path.display()
        )));
    };
    for image in &images {
        info!(archive = %path.display(), id = %image.id, names = ?image.names, "imported image");
    }
    Ok(images)
}

/// Removes the import's scratch directory however the import ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The archive's regular files unpacked under `root`, and its symlinks kept as a map.
struct ArchiveFiles {
    root: PathBuf,
    symlinks: HashMap<PathBuf, PathBuf>,
}

impl ArchiveFiles {
    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_ok_and(|p| p.is_file())
    }

    /// The file at `name` inside the archive, following archive symlinks without leaving it.
    fn resolve(&self, name: &str) -> Result<PathBuf, ImageError> {
        let mut current = clean_relative(Path::new(name))?
            .ok_or_else(|| ImageError::content(format!("invalid path {name:?} in archive")))?;
        for _ in 0..MAX_SYMLINK_HOPS {
            let Some(target) = self.symlinks.get(&current) else {
                return Ok(self.root.join(&current));
            };
            let base = if target.is_absolute() {
                PathBuf::new()
            } else {
                current.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            current = normalize_within(&base, target).ok_or_else(|| {
                ImageError::content(format!("symlink {} leaves the archive", current.display()))
            })?;
        }
        Err(ImageError::content(format!(
            "too many symlinks resolving {name:?} in archive"
        )))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.resolve(name)?;
        fs::read(&path).map_err(|e| ImageError::content(format!("archive member {name:?}: {e}")))
    }
}

/// `base/target` with `.` and `..` applied lexically; None if it climbs above the root.
fn normalize_within(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut parts: Vec<_> = base
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    for component in target.components() {
        match component {
            Component::Normal(_) => parts.push(component),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

fn extract(path: &Path, dest: &Path) -> Result<ArchiveFiles, ImageError> {
    let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let reader = layer::decompressed(file).ctx(|| format!("reading {}", path.display()))?;
    let corrupt =
        |e: io::Error| ImageError::content(format!("{}: invalid tar: {e}", path.display()));
    let mut archive = tar::Archive::new(reader);
    let mut symlinks = HashMap::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let Some(rel) = clean_relative(&entry.path().map_err(corrupt)?)? else {
            continue;
        };
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
                }
                // A symlink at a parent would be a plain dir here (symlinks are only recorded),
                // so nothing is written outside dest.
                let mut out = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&target)
                    .ctx(|| format!("creating {}", target.display()))?;
                io::copy(&mut entry, &mut out).map_err(corrupt)?;
            }
            tar::EntryType::Symlink => {
                if let Some(link) = entry.link_name().map_err(corrupt)? {
                    symlinks.insert(rel, link.into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(ArchiveFiles {
        root: dest.to_path_buf(),
        symlinks,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn import_docker(store: &ImageStore, files: &ArchiveFiles) -> Result<Vec<Image>, ImageError> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&files.read("manifest.json")?)
            .map_err(|e| ImageError::content(format!("invalid manifest.json: {e}")))?;
    let mut images = Vec::new();
    for entry in entries {
        let config_bytes = files.read(&entry.config)?;
        let id = digest::sha256_of(&config_bytes);
        let config = ConfigFile::parse(&config_bytes)?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::content(format!(
                "image {id}: config has {} diff ids for {} layers",
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        store.put_blob_bytes(&id, &config_bytes)?;
        let mut size = config_bytes.len() as u64;
        for (layer_name, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let layer_path = files.resolve(layer_name)?;
            size += fs::metadata(&layer_path)
                .ctx(|| format!("archive member {layer_name}"))?
                .len();
            store.ensure_layer(diff_id, &layer_path)?;
            keep_blob(store, &layer_path)?;
        }
        let names = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|tag| named(tag))
            .collect();
        images.push(store.record(Image {
            id,
            names,
            repo_digests: Vec::new(),
            size,
            config: config.image_config(),
            layers: diff_ids,
        })?);
    }
    Ok(images)
}

/// Copies an archive member into the blob store under its own digest (hardlink-free: the
/// scratch dir goes away, so a rename is enough).
fn keep_blob(store: &ImageStore, path: &Path) -> Result<(), ImageError> {
    let digest = hash_file(path)?;
    if store.has_blob(&digest)? {
        return Ok(());
    }
    let tmp = store.tmp_path("blob");
    fs::copy(path, &tmp).ctx(|| format!("copying {}", path.display()))?;
    store.commit_blob_file(&tmp, &digest)
}

fn named(name: &str) -> Option<String> {
    match Reference::parse(name) {
        Ok(reference) => Some(
            reference
                .tagged_name()
                .unwrap_or_else(|| reference.to_string()),
        ),
        Err(e) => {
            warn!(name, error = %e, "ignoring unparsable image name in archive");
            None
        }
    }
}

fn import_oci(store: &ImageStore, files: &ArchiveFiles) -> Result<Vec<Image>, ImageError> {
    let index_bytes = files.read("index.json")?;
    let Document::Index(index) = oci::parse_document(&index_bytes, Some(oci::OCI_INDEX))? else {
        return Err(ImageError::content("index.json is not an index"));
    };
    let mut images = Vec::new();
    for descriptor in &index.manifests {
        let name = descriptor
            .annotations
            .get(oci::ANNOTATION_CONTAINERD_NAME)
            .or_else(|| {
                // A bare tag ("latest") names nothing by itself; a full reference does.
                descriptor
                    .annotations
                    .get(oci::ANNOTATION_REF_NAME)
                    .filter(|n| n.contains(['/', ':', '@']))
            })
            .and_then(|n| Reference::parse(n).ok());
        let top = read_verified(files, descriptor)?;
        store.put_blob_bytes(&descriptor.digest, &top)?;
        let (manifest, manifest_len) =
            match oci::parse_document(&top, Some(&descriptor.media_type))? {
                Document::Manifest(m) => (m, top.len()),
                Document::Index(inner) => {
                    let chosen = oci::pick_platform(&inner, &descriptor.digest)?;
                    let bytes = read_verified(files, chosen)?;
                    store.put_blob_bytes(&chosen.digest, &bytes)?;
                    match oci::parse_document(&bytes, Some(&chosen.media_type))? {
                        Document::Manifest(m) => (m, bytes.len()),
                        Document::Index(_) => {
                            return Err(ImageError::content(
                                "nested index in an index is not supported",
                            ))
                        }
                    }
                }
            };
        let config_bytes = read_verified(files, &manifest.config)?;
        store.put_blob_bytes(&manifest.config.digest, &config_bytes)?;
        let config = ConfigFile::parse(&config_bytes)?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::content(format!(
                "image {}: config has {} diff ids for {} layers",
                manifest.config.digest,
                diff_ids.len(),
                manifest.layers.len()
            )));
        }
        for (layer_descriptor, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            let path = blob_member(files, layer_descriptor)?;
            let actual = hash_file(&path)?;
            digest::verify(
                &layer_descriptor.digest,
                &actual,
                &format!("layer {}", layer_descriptor.digest),
            )?;
            store.ensure_layer(diff_id, &path)?;
            keep_blob(store, &path)?;
        }
        let size = manifest_len as u64
            + manifest.config.size
            + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        images.push(
            store.record(Image {
                id: manifest.config.digest.clone(),
                names: name
                    .as_ref()
                    .and_then(Reference::tagged_name)
                    .into_iter()
                    .collect(),
                repo_digests: name
                    .as_ref()
                    .map(|n| format!("{}@{}", n.name(), descriptor.digest))
                    .into_iter()
                    .collect(),
                size,
                config: config.image_config(),
                layers: diff_ids,
            })?,
        );
    }
    Ok(images)
}

fn blob_member(files: &ArchiveFiles, descriptor: &Descriptor) -> Result<PathBuf, ImageError> {
    let hex = digest::sha256_hex(&descriptor.digest)?;
    files.resolve(&format!("blobs/sha256/{hex}"))
}

fn read_verified(files: &ArchiveFiles, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
    let hex = digest::sha256_hex(&descriptor.digest)?;
    let bytes = files.read(&format!("blobs/sha256/{hex}"))?;
    digest::verify(
        &descriptor.digest,
        &digest::sha256_of(&bytes),
        &format!("blob {}", descriptor.digest),
    )?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_stay_inside() {
        assert_eq!(
            normalize_within(Path::new("a"), Path::new("../b/layer.tar")),
            Some(PathBuf::from("b/layer.tar"))
        );
        assert_eq!(normalize_within(Path::new("a"), Path::new("../../x")), None);
        assert_eq!(
            normalize_within(Path::new(""), Path::new("/abs/x")),
            Some(PathBuf::from("abs/x"))
        );
    }
}

//! The on-disk store: layout under the root, the JSON image index, content-addressed blobs,
//! unpacked layers, and the public [`ImageStore`] entry points.
//!
//! Layout: `blobs/sha256/<hex>` (verified content), `layers/<first 16 hex of diff id>/`
//! (unpacked, overlayfs form), `empty/` (the lower dir of an image without layers),
//! `images.json` (the index), `tmp/` (work in progress, emptied on open).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::digest::{self, Hasher};
use crate::error::IoContext;
use crate::{layer, mount, registry, Image, ImageError, PullOptions, Reference};

const INDEX_FILE: &str = "images.json";
/// Length of the layer directory names: overlayfs takes all lower dirs in one mount option
/// of at most a page, so short names mean more layers fit.
const LAYER_DIR_HEX: usize = 16;

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    images: Vec<Image>,
}

/// The node's image store. `Send + Sync`; share it in an `Arc`.
pub struct ImageStore {
    root: PathBuf,
    images: Mutex<Vec<Image>>,
    http: Mutex<Option<registry::HttpClient>>,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl ImageStore {
    /// Opens (creating if needed) the store at `root` and clears leftovers of interrupted work.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for dir in ["blobs/sha256", "layers", "empty"] {
            fs::create_dir_all(root.join(dir))
                .ctx(|| format!("creating {}", root.join(dir).display()))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ctx(|| format!("clearing {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        let index_path = root.join(INDEX_FILE);
        let images = match fs::read(&index_path) {
            Ok(bytes) => {
                serde_json::from_slice::<IndexFile>(&bytes)
                    .map_err(|e| ImageError::content(format!("{}: {e}", index_path.display())))?
                    .images
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ImageError::io(
                    format!("reading {}", index_path.display()),
                    e,
                ))
            }
        };
        // Canonical root so overlay lowerdirs never depend on the caller's cwd.
        let root = fs::canonicalize(root).ctx(|| format!("resolving {}", root.display()))?;
        debug!(root = %root.display(), images = images.len(), "image store opened");
        Ok(ImageStore {
            root,
            images: Mutex::new(images),
            http: Mutex::new(None),
        })
    }

    /// Pulls `reference` from its registry (skipping blobs and layers already here) and
    /// records it under its name; returns the image as stored.
    pub async fn pull(
        &self,
        reference: &Reference,
        opts: &PullOptions,
    ) -> Result<Image, ImageError> {
        let shown = reference.to_string();
        info!(image = %shown, "pulling image");
        let result = registry::pull(self, reference, opts).await;
        result.map_err(|e| match e {
            ImageError::Pull { .. } => e,
            other => ImageError::Pull {
                reference: shown,
                kind: other.kind(),
                message: other.to_string(),
            },
        })
    }

    /// The image `reference` names: by `name:tag`, or by digest (a repo digest of the same
    /// repository, or the image id).
    pub fn get(&self, reference: &Reference) -> Result<Option<Image>, ImageError> {
        let images = self.lock_images();
        if let Some(digest) = &reference.digest {
            let repo_digest = format!("{}@{digest}", reference.name());
            return Ok(images
                .iter()
                .find(|i| i.repo_digests.contains(&repo_digest) || &i.id == digest)
                .cloned());
        }
        let Some(name) = reference.tagged_name() else {
            return Ok(None);
        };
        Ok(images.iter().find(|i| i.names.contains(&name)).cloned())
    }

    /// The image with id `sha256:<config digest>` (what the agent keeps in container status).
    pub fn get_by_id(&self, id: &str) -> Result<Option<Image>, ImageError> {
        Ok(self.lock_images().iter().find(|i| i.id == id).cloned())
    }

    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(self.lock_images().clone())
    }

    /// Imports a docker-archive or OCI-archive tarball (optionally gzip/zstd compressed).
    pub fn import_archive(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        crate::archive::import(self, path)
    }

    /// Makes `dir/{upper,work}` and mounts overlayfs of the image's layers read-write at
    /// `dir/rootfs`. Idempotent: an existing mount there is kept.
    pub fn mount_rootfs(&self, image: &Image, dir: &Path) -> Result<PathBuf, ImageError> {
        let mut lowers = Vec::with_capacity(image.layers.len().max(1));
        for diff_id in image.layers.iter().rev() {
            let layer = self.layer_dir(diff_id)?;
            if !layer.is_dir() {
                return Err(ImageError::NotFound(format!(
                    "layer {diff_id} of image {} is not unpacked",
                    image.id
                )));
            }
            lowers.push(self.layer_dir_relative(diff_id)?);
        }
        if lowers.is_empty() {
            lowers.push(PathBuf::from("empty"));
        }
        mount::mount_rootfs(&self.root, &lowers, dir)
    }

    /// Removes an image record (by id). Layers and blobs stay until a later garbage collection.
    pub fn remove(&self, id: &str) -> Result<bool, ImageError> {
        let mut images = self.lock_images();
        let before = images.len();
        let mut next = images.clone();
        next.retain(|i| i.id != id);
        if next.len() == before {
            return Ok(false);
        }
        self.write_index(&next)?;
        *images = next;
        Ok(true)
    }

    /// The images recorded under `root`, read without opening the store (so it is safe while
    /// a node agent has it open).
    pub fn read_index(root: &Path) -> Result<Vec<Image>, ImageError> {
        let index_path = root.join(INDEX_FILE);
        match fs::read(&index_path) {
            Ok(bytes) => Ok(serde_json::from_slice::<IndexFile>(&bytes)
                .map_err(|e| ImageError::content(format!("{}: {e}", index_path.display())))?
                .images),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ImageError::io(
                format!("reading {}", index_path.display()),
                e,
            )),
        }
    }

    // ----- crate-internal plumbing -----

    fn lock_images(&self) -> std::sync::MutexGuard<'_, Vec<Image>> {
        // A panic while holding the lock leaves the Vec consistent (it is replaced whole).
        self.images
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn http_client(&self) -> Result<registry::HttpClient, ImageError> {
        let mut slot = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = registry::new_http_client()?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Adds (or merges) `image` into the index, moving `names` away from any other image, and
    /// persists the index atomically. Returns the stored record.
    pub(crate) fn record(&self, image: Image) -> Result<Image, ImageError> {
        let mut images = self.lock_images();
        let mut next = images.clone();
        for other in next.iter_mut().filter(|i| i.id != image.id) {
            other.names.retain(|n| !image.names.contains(n));
        }
        let stored = match next.iter_mut().find(|i| i.id == image.id) {
            Some(existing) => {
                for name in &image.names {
                    if !existing.names.contains(name) {
                        existing.names.push(name.clone());
                    }
                }
                for digest in &image.repo_digests {
                    if !existing.repo_digests.contains(digest) {
                        existing.repo_digests.push(digest.clone());
                    }
                }
                existing.config = image.config.clone();
                existing.layers = image.layers.clone();
                existing.size = image.size;
                existing.clone()
            }
            None => {
                next.push(image.clone());
                image
            }
        };
        self.write_index(&next)?;
        *images = next;
        Ok(stored)
    }

    fn write_index(&self, images: &[Image]) -> Result<(), ImageError> {
        let index = IndexFile {
            images: images.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| ImageError::content(format!("encoding image index: {e}")))?;
        let path = self.root.join(INDEX_FILE);
        write_atomic(&self.tmp_path("index"), &path, &bytes)
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("blobs/sha256")
            .join(digest::sha256_hex(digest)?))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// Stores bytes already verified against `digest`.
    pub(crate) fn put_blob_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        digest::verify(digest, &digest::sha256_of(bytes), digest)?;
        let target = self.blob_path(digest)?;
        if target.is_file() {
            return Ok(());
        }
        write_atomic(&self.tmp_path("blob"), &target, bytes)
    }

    /// Moves a finished temp file into the blob store after checking its digest. The file must
    /// live under this store's root (same filesystem).
    pub(crate) fn commit_blob_file(&self, tmp: &Path, digest: &str) -> Result<(), ImageError> {
        let actual = hash_file(tmp)?;
        digest::verify(digest, &actual, digest)?;
        let target = self.blob_path(digest)?;
        fs::rename(tmp, &target).ctx(|| format!("storing blob {digest}"))
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        fs::read(&path).ctx(|| format!("reading blob {digest}"))
    }

    pub(crate) fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join(self.layer_dir_relative(diff_id)?))
    }

    fn layer_dir_relative(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        let hex = digest::sha256_hex(diff_id)?;
        Ok(Path::new("layers").join(&hex[..LAYER_DIR_HEX]))
    }

    pub(crate) fn has_layer(&self, diff_id: &str) -> Result<bool, ImageError> {
        Ok(self.layer_dir(diff_id)?.is_dir())
    }

    /// Unpacks the layer blob `source` into its layer directory unless it is there already.
    /// Blocking. Safe against concurrent unpacks of the same layer: each works in its own temp
    /// dir and the first rename wins.
    pub(crate) fn ensure_layer(&self, diff_id: &str, source: &Path) -> Result<(), ImageError> {
        let target = self.layer_dir(diff_id)?;
        if target.is_dir() {
            return Ok(());
        }
        let work = self.tmp_path("layer");
        fs::create_dir(&work).ctx(|| format!("creating {}", work.display()))?;
        let result = layer::unpack(source, &work, diff_id).and_then(|()| {
            match fs::rename(&work, &target) {
                Ok(()) => Ok(()),
                // Someone else finished the same layer first.
                Err(_) if target.is_dir() => Ok(()),
                Err(e) => Err(ImageError::io(format!("storing layer {diff_id}"), e)),
            }
        });
        if work.exists() {
            let _ = fs::remove_dir_all(&work);
        }
        if result.is_ok() {
            debug!(layer = %diff_id, "layer unpacked");
        }
        result
    }

    /// A fresh path under `tmp/` (nothing is created).
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }
}

pub(crate) fn hash_file(path: &Path) -> Result<String, ImageError> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n =
            io::Read::read(&mut file, &mut buf).ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Write to `tmp`, fsync, rename over `target`: readers see the old or the new file, never half.
pub(crate) fn write_atomic(tmp: &Path, target: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result.ctx(|| format!("writing {}", target.display()))
}

//! Unpacking one layer tar (gzip, zstd or plain) into a directory in overlayfs form:
//! `.wh.NAME` becomes a 0/0 character device, `.wh..wh..opq` becomes the
//! `trusted.overlay.opaque=y` xattr on its directory. Ownership, modes, mtimes, symlinks,
//! hardlinks and xattrs are kept; device nodes are skipped if mknod is refused. Paths that
//! would leave the directory (`..`, writing through a symlink) reject the layer.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use tracing::{debug, warn};

use crate::digest::{self, HashingReader};
use crate::error::IoContext;
use crate::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A reader of `file` with gzip or zstd compression undone, chosen by magic bytes (media types
/// lie often enough in docker archives that the bytes are the better witness).
pub(crate) fn decompressed(file: File) -> io::Result<Box<dyn Read + Send>> {
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let head = reader.fill_buf()?;
    if head.starts_with(GZIP_MAGIC) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(Box::new(ZstdReader::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Unpacks the layer blob at `blob` into the (empty, existing) `dest` and checks that the
/// uncompressed stream hashes to `diff_id`.
pub(crate) fn unpack(blob: &Path, dest: &Path, diff_id: &str) -> Result<(), ImageError> {
    let file = File::open(blob).ctx(|| format!("opening layer {}", blob.display()))?;
    let reader = decompressed(file).ctx(|| format!("reading layer {}", blob.display()))?;
    let mut hashing = HashingReader::new(reader);
    extract(&mut hashing, dest).map_err(|e| match e {
        ImageError::InvalidContent(m) => ImageError::content(format!("layer {diff_id}: {m}")),
        other => other,
    })?;
    let actual = hashing
        .finish()
        .map_err(|e| ImageError::content(format!("layer {diff_id}: {e}")))?;
    digest::verify(diff_id, &actual, &format!("layer {diff_id}"))
}

/// Extracts a tar stream into `dest`.
pub(crate) fn extract(reader: impl Read, dest: &Path) -> Result<(), ImageError> {
    let corrupt = |e: io::Error| ImageError::content(format!("invalid tar: {e}"));
    let mut archive = tar::Archive::new(reader);
    // Directory mtimes are set last: writing their children changes them.
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw_path = entry.path().map_err(corrupt)?.into_owned();
        let Some(rel) = clean_relative(&raw_path)? else {
            // The layer root itself ("./"): keep its metadata for the merged root.
            if entry.header().entry_type().is_dir() {
                let meta = EntryMeta::read(&mut entry).map_err(corrupt)?;
                meta.apply(dest, false)?;
                dir_times.push((dest.to_path_buf(), meta.mtime));
            }
            continue;
        };
        let file_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            apply_whiteout(dest, &rel, &file_name, hidden)?;
            continue;
        }
        let target = dest.join(&rel);
        prepare_parents(dest, &rel)?;
        let meta = EntryMeta::read(&mut entry).map_err(corrupt)?;
        let entry_type = entry.header().entry_type();
        use tar::EntryType as T;
        match entry_type {
            T::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&target)?;
                        make_dir(&target)?;
                    }
                    Err(_) => make_dir(&target)?,
                }
                meta.apply(&target, false)?;
                dir_times.push((target, meta.mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                remove_existing(&target)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .ctx(|| format!("creating {}", target.display()))?;
                io::copy(&mut entry, &mut file).map_err(corrupt)?;
                drop(file);
                meta.apply(&target, false)?;
                meta.set_mtime(&target)?;
            }
            T::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| {
                        ImageError::content(format!("symlink {} without target", rel.display()))
                    })?
                    .into_owned();
                remove_existing(&target)?;
                std::os::unix::fs::symlink(&link, &target)
                    .ctx(|| format!("creating symlink {}", target.display()))?;
                meta.apply(&target, true)?;
                meta.set_mtime(&target)?;
            }
            T::Link => {
                let link = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| {
                        ImageError::content(format!("hardlink {} without target", rel.display()))
                    })?
                    .into_owned();
                let source_rel = clean_relative(&link)?.ok_or_else(|| {
                    ImageError::content(format!("hardlink {} to the layer root", rel.display()))
                })?;
                check_no_symlink_parents(dest, &source_rel)?;
                let source = dest.join(&source_rel);
                if source == target {
                    continue;
                }
                remove_existing(&target)?;
                // link(2) does not follow a symlink source, so the link stays inside the layer.
                fs::hard_link(&source, &target)
                    .ctx(|| format!("hardlinking {} to {}", target.display(), source.display()))?;
            }
            T::Char | T::Block | T::Fifo => {
                remove_existing(&target)?;
                let kind = match entry_type {
                    T::Char => libc::S_IFCHR,
                    T::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                match mknod(
                    &target,
                    kind | (meta.mode & 0o7777),
                    libc::makedev(major, minor),
                ) {
                    Ok(()) => {
                        meta.apply(&target, false)?;
                        meta.set_mtime(&target)?;
                    }
                    Err(e) => warn!(path = %rel.display(), error = %e, "skipping device node"),
                }
            }
            other => debug!(path = %rel.display(), kind = ?other, "skipping tar entry"),
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime)?;
    }
    Ok(())
}

fn apply_whiteout(
    dest: &Path,
    rel: &Path,
    file_name: &str,
    hidden: &str,
) -> Result<(), ImageError> {
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    prepare_parents(dest, rel)?;
    let parent = dest.join(parent_rel);
    if file_name == WHITEOUT_OPAQUE {
        if parent_rel.as_os_str().is_empty() {
            // The layer root is opaque: nothing to hide below it that a new root would not.
            return Ok(());
        }
        match fs::symlink_metadata(&parent) {
            Ok(m) if m.is_dir() => {}
            _ => {
                remove_existing(&parent)?;
                make_dir(&parent)?;
            }
        }
        return set_xattr(&parent, "trusted.overlay.opaque", b"y")
            .ctx(|| format!("marking {} opaque", parent.display()));
    }
    if file_name.starts_with(WHITEOUT_META_PREFIX) {
        // AUFS bookkeeping (.wh..wh.plnk and friends): meaningless for overlayfs.
        return Ok(());
    }
    if hidden.is_empty() || hidden == "." || hidden == ".." {
        return Err(ImageError::content(format!(
            "invalid whiteout {}",
            rel.display()
        )));
    }
    let target = parent.join(hidden);
    remove_existing(&target)?;
    mknod(&target, libc::S_IFCHR, libc::makedev(0, 0))
        .ctx(|| format!("creating whiteout {}", target.display()))
}

/// The entry's path inside the layer, with `.` and leading `/` dropped; `None` for the root.
/// `..` anywhere is refused rather than clamped: no legitimate image needs it.
pub(crate) fn clean_relative(path: &Path) -> Result<Option<PathBuf>, ImageError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::content(format!(
                    "path {} escapes the layer (path traversal)",
                    path.display()
                )))
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Creates missing parent directories of `rel` (0755, root-owned, as containerd does) and
/// refuses parents that are symlinks or files, so no entry can be written outside `dest`.
fn prepare_parents(dest: &Path, rel: &Path) -> Result<(), ImageError> {
    let mut current = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for component in parent.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::content(format!(
                    "path {} goes through a symlink",
                    rel.display()
                )))
            }
            Ok(_) => {
                return Err(ImageError::content(format!(
                    "path {} goes through a non-directory",
                    rel.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_dir(&current)?;
                fs::set_permissions(&current, fs::Permissions::from_mode(0o755))
                    .ctx(|| format!("chmod {}", current.display()))?;
            }
            Err(e) => return Err(ImageError::io(format!("stat {}", current.display()), e)),
        }
    }
    Ok(())
}

fn check_no_symlink_parents(dest: &Path, rel: &Path) -> Result<(), ImageError> {
    let mut current = dest.to_path_buf();
    if let Some(parent) = rel.parent() {
        for component in parent.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(ImageError::content(format!(
                        "hardlink target {} is not inside the layer",
                        rel.display()
                    )))
                }
            }
        }
    }
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), ImageError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ImageError::io(format!("mkdir {}", path.display()), e)),
    }
}

fn remove_existing(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).ctx(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).ctx(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

/// Ownership, mode, mtime and xattrs of one entry (pax records override the header).
struct EntryMeta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
        let header = entry.header();
        let mut meta = EntryMeta {
            // Some tar writers leave numeric fields blank: treat as 0 like GNU tar does.
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            mode: header.mode()?,
            mtime: header.mtime().unwrap_or(0),
            xattrs: Vec::new(),
        };
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                let Ok(key) = extension.key() else { continue };
                let value = extension.value_bytes();
                let number = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
                };
                match key {
                    "uid" => meta.uid = number().unwrap_or(meta.uid),
                    "gid" => meta.gid = number().unwrap_or(meta.gid),
                    "mtime" => meta.mtime = number().unwrap_or(meta.mtime),
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            // overlayfs' own xattrs come only from whiteout markers.
                            if !name.starts_with("trusted.overlay.") {
                                meta.xattrs.push((name.to_string(), value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// chown then chmod (chown clears set-id bits), then xattrs. Symlinks get only lchown.
    fn apply(&self, path: &Path, is_symlink: bool) -> Result<(), ImageError> {
        let c = cpath(path)?;
        let uid = u32::try_from(self.uid).unwrap_or(u32::MAX - 1);
        let gid = u32::try_from(self.gid).unwrap_or(u32::MAX - 1);
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
            return Err(ImageError::io(
                format!("chown {}", path.display()),
                io::Error::last_os_error(),
            ));
        }
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(self.mode & 0o7777))
                .ctx(|| format!("chmod {}", path.display()))?;
        }
        for (name, value) in &self.xattrs {
            if let Err(e) = set_xattr(path, name, value) {
                warn!(path = %path.display(), xattr = %name, error = %e, "could not set xattr from layer");
            }
        }
        Ok(())
    }

    fn set_mtime(&self, path: &Path) -> Result<(), ImageError> {
        set_mtime(path, self.mtime)
    }
}

fn cpath(path: &Path) -> Result<CString, ImageError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ImageError::content(format!("path {} contains NUL", path.display())))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), ImageError> {
    let c = cpath(path)?;
    let time = libc::timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(0) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: valid path and a two-element timespec array, as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(ImageError::io(
            format!("utimensat {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn mknod(path: &Path, mode: u32, dev: libc::dev_t) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid C strings and a buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A zstd decoder over all frames of a stream (ruzstd's StreamingDecoder stops after one;
/// parallel compressors write many), skipping skippable frames.
struct ZstdReader<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(source: R) -> Self {
        ZstdReader {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                    let wanted = buf.len() - self.decoder.can_collect();
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                }
                let n = self.decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                    self.in_frame = false;
                }
            }
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_relative_refuses_traversal() {
        assert_eq!(
            clean_relative(Path::new("./a/b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(
            clean_relative(Path::new("/etc/passwd")).unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(clean_relative(Path::new("./")).unwrap(), None);
        assert!(clean_relative(Path::new("a/../../b")).is_err());
        assert!(clean_relative(Path::new("../x")).is_err());
    }

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o755);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_size(data.len() as u64);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            // set_path refuses "..", which is exactly what these tests need to write.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn refuses_escapes() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let evil = tar_with(&[("../evil", T::Regular, b"x", None)]);
        assert!(extract(&evil[..], dir.path()).is_err());
        let through_link = tar_with(&[
            ("l", T::Symlink, b"", Some("/tmp")),
            ("l/evil", T::Regular, b"x", None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let err = extract(&through_link[..], dir.path()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let hardlink_out = tar_with(&[("h", T::Link, b"", Some("../../etc/passwd"))]);
        let dir = tempfile::tempdir().unwrap();
        assert!(extract(&hardlink_out[..], dir.path()).is_err());
    }

    #[test]
    fn extracts_files_links_and_whiteouts() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let layer = tar_with(&[
            ("a/b/file", T::Regular, b"hello", None),
            ("a/link", T::Symlink, b"", Some("b/file")),
            ("a/hard", T::Link, b"", Some("a/b/file")),
            ("a/.wh.gone", T::Regular, b"", None),
            ("opq/.wh..wh..opq", T::Regular, b"", None),
        ]);
        extract(&layer[..], dir.path()).unwrap();
        let root = dir.path();
        assert_eq!(fs::read(root.join("a/b/file")).unwrap(), b"hello");
        assert_eq!(fs::read(root.join("a/link")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(root.join("a/link")).unwrap(),
            Path::new("b/file")
        );
        assert_eq!(fs::read(root.join("a/hard")).unwrap(), b"hello");
        use std::os::unix::fs::FileTypeExt;
        let whiteout = fs::symlink_metadata(root.join("a/gone")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert!(fs::symlink_metadata(root.join("a/.wh.gone")).is_err());
        assert!(root.join("opq").is_dir());
    }

    #[test]
    fn zstd_multi_frame() {
        // Two frames of "raw block" zstd built by hand: magic, frame header (single segment,
        // 1-byte content size), one last raw block.
        fn frame(data: &[u8]) -> Vec<u8> {
            let mut f = ZSTD_MAGIC.to_vec();
            f.push(0x20); // single segment, FCS field 1 byte
            f.push(data.len() as u8);
            let block_header = 1u32 | ((data.len() as u32) << 3); // last block, raw
            f.extend_from_slice(&block_header.to_le_bytes()[..3]);
            f.extend_from_slice(data);
            f
        }
        let mut stream = frame(b"hello ");
        // A skippable frame in between.
        stream.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]);
        stream.extend(frame(b"world"));
        let mut out = String::new();
        ZstdReader::new(&stream[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
    }
}

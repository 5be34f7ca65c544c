//! sha256 digests: computing them over bytes and streams, and checking `sha256:<hex>` strings.

use std::io::{self, Read};

use crate::ImageError;

pub(crate) fn sha256_of(bytes: &[u8]) -> String {
    format_digest(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn format_digest(raw: &[u8]) -> String {
    let mut out = String::with_capacity(7 + raw.len() * 2);
    out.push_str("sha256:");
    for b in raw {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The hex part of a `sha256:<64 lowercase hex>` digest; anything else is refused, which also
/// makes the hex safe to use as a file name.
pub(crate) fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(ImageError::content(format!(
            "unsupported digest {digest:?}"
        ))),
    }
}

pub(crate) fn verify(expected: &str, actual: &str, what: &str) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::content(format!(
            "{what}: unexpected commit digest {actual}, expected {expected}: failed precondition"
        )))
    }
}

/// Incremental sha256 plus a byte count.
pub(crate) struct Hasher {
    context: ring::digest::Context,
    pub(crate) bytes: u64,
}

impl Hasher {
    pub(crate) fn new() -> Hasher {
        Hasher {
            context: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.context.update(data);
        self.bytes += data.len() as u64;
    }

    pub(crate) fn finish(self) -> String {
        format_digest(self.context.finish().as_ref())
    }
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Reads whatever is left (tar leaves trailing padding unread) and returns the digest.
    pub(crate) fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut reader = HashingReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(
            reader.finish().unwrap(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_hex("sha256:../../etc").is_err());
        assert!(sha256_hex("sha512:00").is_err());
        assert!(sha256_hex(&sha256_of(b"x")).is_ok());
    }
}

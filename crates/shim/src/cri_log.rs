//! The container log file in the CRI format kubelet reads
//! (`<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`), and its rotation.
//!
//! Rotation is a rename chain: before a write would push `FILE` past `max_bytes`, `FILE.N-2`
//! becomes `FILE.N-1` (the oldest is dropped), ..., `FILE` becomes `FILE.1`, and a fresh
//! `FILE` is started, so at most `max_files` files exist (`FILE`, `FILE.1` .. `FILE.<max_files-1>`),
//! newest first. With `max_files` 1 the file is truncated instead. A single entry larger than
//! `max_bytes` is still written whole.

use std::fs::{self, File, OpenOptions};
use std::io::Write;

use crate::sys;

/// Longest content written as one entry; longer lines are split into `P` entries, as the
/// kubelet's and CRI-O's loggers do.
pub const MAX_LINE: usize = 16 * 1024;

pub struct CriLog {
    path: String,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    entry: Vec<u8>,
}

impl CriLog {
    pub fn open(path: &str, max_bytes: u64, max_files: u32) -> Result<CriLog, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("open log {path}: {e}"))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(CriLog {
            path: path.to_string(),
            file,
            size,
            max_bytes,
            max_files: max_files.max(1),
            entry: Vec::with_capacity(MAX_LINE + 64),
        })
    }

    /// Appends one entry. Write errors (a full disk) are dropped: the monitor must keep
    /// draining the container's pipes whatever happens to the log.
    pub fn write_entry(&mut self, stream: &str, partial: bool, content: &[u8]) {
        let (secs, nanos) = sys::now_realtime();
        self.entry.clear();
        self.entry
            .extend_from_slice(sys::rfc3339_nano(secs, nanos).as_bytes());
        self.entry.push(b' ');
        self.entry.extend_from_slice(stream.as_bytes());
        self.entry
            .extend_from_slice(if partial { b" P " } else { b" F " });
        self.entry.extend_from_slice(content);
        self.entry.push(b'\n');
        let len = self.entry.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate();
        }
        if self.file.write_all(&self.entry).is_ok() {
            self.size += len;
        }
    }

    fn rotate(&mut self) {
        if self.max_files > 1 {
            let _ = fs::remove_file(format!("{}.{}", self.path, self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                let _ = fs::rename(
                    format!("{}.{n}", self.path),
                    format!("{}.{}", self.path, n + 1),
                );
            }
            let _ = fs::rename(&self.path, format!("{}.1", self.path));
        }
        let reopened = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path);
        if let Ok(file) = reopened {
            self.file = file;
            self.size = 0;
        }
    }
}

/// Splits one stream's bytes into log entries: whole lines as `F`, and `P` chunks for
/// lines longer than [`MAX_LINE`] or text still without a newline when flushed.
pub struct LineSplitter {
    pub stream: &'static str,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: &'static str) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn feed(&mut self, mut data: &[u8], log: &mut CriLog) {
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&data[..newline], &data[newline + 1..]);
            if self.pending.is_empty() {
                self.write_line(line, log);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.write_line(&whole, log);
            }
            data = rest;
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            log.write_entry(self.stream, true, &self.pending[..MAX_LINE]);
            self.pending.drain(..MAX_LINE);
        }
    }

    /// Writes what has no newline yet as a partial entry.
    pub fn flush_partial(&mut self, log: &mut CriLog) {
        if !self.pending.is_empty() {
            log.write_entry(self.stream, true, &self.pending);
            self.pending.clear();
        }
    }

    fn write_line(&self, mut line: &[u8], log: &mut CriLog) {
        while line.len() > MAX_LINE {
            log.write_entry(self.stream, true, &line[..MAX_LINE]);
            line = &line[MAX_LINE..];
        }
        log.write_entry(self.stream, false, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("shim-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("log").to_string_lossy().into_owned()
    }

    fn entries(path: &str) -> Vec<(String, String, String)> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                parts.next().unwrap();
                (
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_lines_and_long_chunks() {
        let path = temp_path("split");
        let mut log = CriLog::open(&path, u64::MAX, 5).unwrap();
        let mut out = LineSplitter::new("stdout");
        out.feed(b"hello\nwor", &mut log);
        out.feed(b"ld\n\nlast", &mut log);
        let long = vec![b'x'; MAX_LINE + 10];
        let mut err = LineSplitter::new("stderr");
        err.feed(&long, &mut log);
        err.feed(b"\n", &mut log);
        out.flush_partial(&mut log);
        let got = entries(&path);
        let want = [
            ("stdout", "F", "hello".to_string()),
            ("stdout", "F", "world".to_string()),
            ("stdout", "F", String::new()),
            ("stderr", "P", "x".repeat(MAX_LINE)),
            ("stderr", "F", "x".repeat(10)),
            ("stdout", "P", "last".to_string()),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want.iter()) {
            assert_eq!(
                (g.0.as_str(), g.1.as_str(), g.2.as_str()),
                (w.0, w.1, w.2.as_str())
            );
        }
        let _ = fs::remove_dir_all(std::path::Path::new(&path).parent().unwrap());
    }

    #[test]
    fn rotates_through_a_rename_chain() {
        let path = temp_path("rotate");
        let mut log = CriLog::open(&path, 200, 3).unwrap();
        let mut out = LineSplitter::new("stdout");
        for i in 0..40 {
            out.feed(format!("line {i:03}\n").as_bytes(), &mut log);
        }
        assert!(fs::metadata(&path).unwrap().len() <= 200);
        assert!(fs::metadata(format!("{path}.1")).unwrap().len() <= 200);
        assert!(fs::metadata(format!("{path}.2")).is_ok());
        assert!(fs::metadata(format!("{path}.3")).is_err());
        let newest = entries(&path);
        assert_eq!(newest.last().unwrap().2, "line 039");
        let _ = fs::remove_dir_all(std::path::Path::new(&path).parent().unwrap());
    }
}

//! Termination messages, as the kubelet reports them in `state.terminated.message`: what the
//! container wrote to its `terminationMessagePath` (a per-container file bind-mounted there),
//! or, with `terminationMessagePolicy: FallbackToLogsOnError`, the tail of its log when the
//! file is empty and the container failed.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// At most this much of the message file is read (upstream's 4 KiB per container).
const MAX_FILE_MESSAGE: u64 = 4096;
/// The log fallback: the last 80 lines, of which the last 2 KiB (upstream's
/// `MaxContainerTerminationMessageLogLines` / `...LogLength`).
const MAX_LOG_LINES: usize = 80;
const MAX_LOG_BYTES: usize = 2048;
/// How much of the end of the log file is looked at for those lines.
const LOG_WINDOW: u64 = 256 * 1024;

/// The container's message: the file's content if any, else the log's tail when asked
/// for and the container failed.
pub fn message(file: &Path, log: &Path, fallback_to_logs: bool, exit_code: i32) -> Option<String> {
    let from_file = read_file_message(file);
    if from_file.is_some() {
        return from_file;
    }
    if fallback_to_logs && exit_code != 0 {
        return Some(log_tail(log)).filter(|m| !m.is_empty());
    }
    None
}

fn read_file_message(file: &Path) -> Option<String> {
    let f = std::fs::File::open(file).ok()?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_MESSAGE).read_to_end(&mut buf).ok()?;
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

fn log_tail(log: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(LOG_WINDOW);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    // A window that starts mid-entry drops its first, cut, entry.
    let text = if from > 0 {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    tail_of_cri_log(text)
}

/// The last lines of a CRI-format log as the container wrote them (partial entries joined),
/// each with its newline, cut to the last 2 KiB.
pub fn tail_of_cri_log(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut open = String::new();
    for raw in text.lines() {
        let Some(entry) = oci::logs::parse_line(raw) else {
            continue;
        };
        open.push_str(&entry.content);
        if !entry.partial {
            open.push('\n');
            lines.push(std::mem::take(&mut open));
        }
    }
    if !open.is_empty() {
        lines.push(open);
    }
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let joined: String = lines[start..].concat();
    if joined.len() <= MAX_LOG_BYTES {
        return joined;
    }
    let mut cut = joined.len() - MAX_LOG_BYTES;
    while !joined.is_char_boundary(cut) {
        cut += 1;
    }
    joined[cut..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cri(lines: &[(&str, &str)]) -> String {
        lines
            .iter()
            .map(|(tag, content)| {
                format!("2026-01-01T00:00:00.000000000Z stdout {tag} {content}\n")
            })
            .collect()
    }

    #[test]
    fn the_log_tail_keeps_the_last_80_lines() {
        let entries: Vec<(String, String)> = (0..100)
            .map(|i| ("F".to_string(), format!("l{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let tail = tail_of_cri_log(&cri(&refs));
        assert!(tail.starts_with("l20\n"), "{tail}");
        assert!(tail.ends_with("l99\n"));
        assert_eq!(tail.lines().count(), 80);
    }

    #[test]
    fn the_log_tail_joins_partials_and_keeps_the_last_2k() {
        let tail = tail_of_cri_log(&cri(&[("P", "ab"), ("F", "cd"), ("F", "x")]));
        assert_eq!(tail, "abcd\nx\n");
        let long = "y".repeat(3000);
        let tail = tail_of_cri_log(&cri(&[("F", "first"), ("F", &long)]));
        assert_eq!(tail.len(), 2048);
        assert!(tail.ends_with("yy\n"));
    }

    #[test]
    fn the_file_wins_and_logs_only_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("termination-log");
        let log = dir.path().join("0.log");
        std::fs::write(&log, cri(&[("F", "boom")])).expect("log");
        std::fs::write(&file, "").expect("file");
        assert_eq!(message(&file, &log, false, 1), None);
        assert_eq!(message(&file, &log, true, 0), None);
        assert_eq!(message(&file, &log, true, 1).as_deref(), Some("boom\n"));
        std::fs::write(&file, "bye").expect("file");
        assert_eq!(message(&file, &log, true, 1).as_deref(), Some("bye"));
        assert_eq!(message(&file, &log, false, 0).as_deref(), Some("bye"));
        assert_eq!(message(&dir.path().join("none"), &log, false, 0), None);
    }
}

//! Parsing the CRI log format the monitors write:
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`. `P` marks a partial entry whose
//! content continues in the next entry of the same stream (no newline in between).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    /// True for `P` entries: the line continues in the next entry of this stream.
    pub partial: bool,
    pub content: String,
}

/// Parses one line of a CRI log file (without its trailing newline); `None` if malformed.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    // The tag may be missing in old CRI logs (then the whole rest is the content of a full line).
    let (partial, content) = match rest.split_once(' ') {
        Some(("F", content)) => (false, content),
        Some(("P", content)) => (true, content),
        _ if rest == "F" => (false, ""),
        _ if rest == "P" => (true, ""),
        _ => (false, rest),
    };
    Some(LogLine {
        time: time.to_string(),
        stream: stream.to_string(),
        partial,
        content: content.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_entries() {
        let full = parse_line("2024-01-01T00:00:00.123Z stdout F hello world").unwrap();
        assert_eq!(full.stream, "stdout");
        assert!(!full.partial);
        assert_eq!(full.content, "hello world");
        let partial = parse_line("2024-01-01T00:00:00Z stderr P abc\n").unwrap();
        assert!(partial.partial);
        assert_eq!(partial.content, "abc");
        assert_eq!(
            parse_line("2024-01-01T00:00:00Z stdout F").unwrap().content,
            ""
        );
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("t stdin F x").is_none());
    }
}

//! `containerLogs`: a container's CRI log file, rendered with the `pods/log` options and
//! followed until the container exits.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::{find_pod, instance, percent_decode, text, Body};
use crate::record::{ContainerRecord, PodRecord};
use crate::Ctx;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(25);
/// How often a follower checks whether the container has exited.
const FOLLOW_EXIT_CHECK: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub(super) struct LogQuery {
    follow: bool,
    previous: bool,
    tail_lines: Option<usize>,
    since: Option<jiff::Timestamp>,
    timestamps: bool,
    limit_bytes: Option<usize>,
}

impl LogQuery {
    pub(super) fn parse(raw: &str) -> LogQuery {
        let mut q = LogQuery::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            let on = v.is_empty() || v == "true" || v == "1";
            match k {
                "follow" => q.follow = on,
                "previous" => q.previous = on,
                "timestamps" => q.timestamps = on,
                "tailLines" => q.tail_lines = v.parse().ok(),
                "limitBytes" => q.limit_bytes = v.parse().ok(),
                "sinceSeconds" => {
                    if let Ok(secs) = v.parse::<i64>() {
                        q.since = jiff::Timestamp::now()
                            .checked_sub(jiff::SignedDuration::from_secs(secs))
                            .ok();
                    }
                }
                "sinceTime" => q.since = v.parse().ok(),
                _ => {}
            }
        }
        q
    }
}

fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..10)
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// One CRI log line rendered for the client, or None when filtered out.
fn render(line: &str, q: &LogQuery) -> Option<String> {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    if let Some(since) = q.since {
        if ts.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
            return None;
        }
    }
    let mut out = String::new();
    if q.timestamps {
        out.push_str(ts);
        out.push(' ');
    }
    out.push_str(content);
    if !tag.starts_with('P') {
        out.push('\n');
    }
    Some(out)
}

pub(super) async fn container_logs(
    ctx: &Arc<Ctx>,
    ns: &str,
    pod: &str,
    container: &str,
    q: LogQuery,
) -> Response<Body> {
    let Some(rec) = find_pod(ctx, ns, pod) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let Some(inst) = instance(&rec, container, q.previous).cloned() else {
        let msg = if q.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let ctx = ctx.clone();
    let pod_dir = ctx.cfg.pods_dir().join(&rec.uid);
    tokio::spawn(async move {
        if let Err(e) = stream_logs(&pod_dir, inst, q, tx).await {
            debug!(error = %e, "log stream ended");
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

fn tokio_stream_from(
    rx: mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    })
}

struct Sink {
    tx: mpsc::Sender<Bytes>,
    left: Option<usize>,
}

impl Sink {
    /// Sends; false once the client is gone or the byte limit is reached.
    async fn send(&mut self, s: String) -> bool {
        let mut bytes = Bytes::from(s);
        if let Some(left) = self.left.as_mut() {
            if bytes.len() >= *left {
                bytes.truncate(*left);
                *left = 0;
                let _ = self.tx.send(bytes).await;
                return false;
            }
            *left -= bytes.len();
        }
        self.tx.send(bytes).await.is_ok()
    }
}

async fn stream_logs(
    pod_dir: &Path,
    inst: ContainerRecord,
    q: LogQuery,
    tx: mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut sink = Sink {
        tx,
        left: q.limit_bytes,
    };
    // What is already written, with tailLines applied over all of it.
    let mut rendered: Vec<String> = Vec::new();
    let files = log_files(&inst.log_path);
    let mut offset = 0u64;
    for (i, f) in files.iter().enumerate() {
        let data = match tokio::fs::read(f).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // Only complete lines; a partly written last line is read on the next poll.
        let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        if i == files.len() - 1 {
            offset = complete as u64;
        }
        let text = String::from_utf8_lossy(&data[..complete]);
        rendered.extend(text.lines().filter_map(|l| render(l, &q)));
    }
    let skip = q.tail_lines.map_or(0, |n| rendered.len().saturating_sub(n));
    for line in rendered.into_iter().skip(skip) {
        if !sink.send(line).await {
            return Ok(());
        }
    }
    if !q.follow || q.previous {
        return Ok(());
    }
    // Follow: new lines as they land, until the instance has exited and all is read.
    let mut pending = Vec::new();
    let mut exited = false;
    let mut last_exit_check: Option<std::time::Instant> = None;
    loop {
        if last_exit_check.is_none_or(|t| t.elapsed() >= FOLLOW_EXIT_CHECK) {
            last_exit_check = Some(std::time::Instant::now());
            exited = PodRecord::load(pod_dir)
                .ok()
                .flatten()
                .and_then(|r| r.containers.into_iter().find(|c| c.id == inst.id))
                .is_none_or(|c| c.exit.is_some());
        }
        let mut file = match tokio::fs::File::open(&inst.log_path).await {
            Ok(f) => f,
            Err(_) if exited => return Ok(()),
            Err(_) => {
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
        };
        let len = file.metadata().await?.len();
        if len < offset {
            offset = 0; // rotated: the new file starts from the beginning
        }
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).await?;
        offset += buf.len() as u64;
        pending.extend_from_slice(&buf);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let chunk: Vec<u8> = pending.drain(..=end).collect();
            for line in String::from_utf8_lossy(&chunk).lines() {
                if let Some(out) = render(line, &q) {
                    if !sink.send(out).await {
                        return Ok(());
                    }
                }
            }
        }
        if exited && buf.is_empty() {
            return Ok(());
        }
        if sink.tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

//! The server side of a SPDY connection: a reader task that turns the client's frames into
//! [`Stream`]s (replying to each SYN_STREAM as spdystream expects) and routes their data, and
//! a writer task that owns the outgoing half and the header compressor. Streams are
//! handed out on [`Connection::accept`]; each can read its data until the client's FIN or
//! RST_STREAM and write through a cloneable [`StreamWriter`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::frame::{self, status, Frame, FrameReader, HeaderEncoder, Headers};
use super::SpdyError;

/// How many data frames may wait for a slow stream reader before the connection's reader
/// waits too (spdystream's own per-stream buffering is a single frame).
const STREAM_BUFFER: usize = 32;
/// The largest data frame this side writes.
const MAX_DATA_FRAME: usize = 64 * 1024;

/// How long [`Connection::shutdown`] waits for queued frames to go out.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A SPDY connection being served. Dropping it ends the connection at once; call
/// [`Connection::shutdown`] to let queued frames go out first.
pub struct Connection {
    incoming: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Out>,
    closed: CancellationToken,
}

impl Connection {
    /// Ends the connection the way spdystream does: everything already written goes out,
    /// then GOAWAY, then the transport closes.
    pub async fn shutdown(self) {
        if self.out.send(Out::GoAway).await.is_ok() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.closed.cancelled()).await;
        }
    }

    /// The next stream the client opened; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Cancelled when the connection ends (EOF, error, or every handle dropped).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

struct Shared {
    /// Cancelled when the peer resets the stream or the connection ends.
    gone: CancellationToken,
    local_fin: AtomicBool,
}

/// One client-opened stream.
pub struct Stream {
    id: u32,
    headers: Headers,
    data: mpsc::Receiver<Bytes>,
    writer: StreamWriter,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    /// The next chunk from the client; `None` after its FIN, a reset, or the connection's end.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.data.recv().await
    }

    pub fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }
}

enum Out {
    Frame(Frame),
    /// Send GOAWAY after everything queued before it, then close.
    GoAway,
}

/// Writes to one stream. Cloneable; all clones share the stream's state.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Sends `data` as one or more data frames. Fails once the peer reset the stream or the
    /// connection is gone, so a copy loop stops there.
    pub async fn write(&self, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(MAX_DATA_FRAME) {
            self.send(Frame::Data {
                stream_id: self.id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            })
            .await?;
        }
        Ok(())
    }

    /// Sends `data` without copying it (split into frames if it is large).
    pub async fn write_bytes(&self, data: Bytes) -> Result<(), SpdyError> {
        if data.len() > MAX_DATA_FRAME {
            return self.write(&data).await;
        }
        self.send(Frame::Data {
            stream_id: self.id,
            fin: false,
            data,
        })
        .await
    }

    /// Half-closes the stream (an empty data frame with FIN); later calls do nothing.
    pub async fn close(&self) -> Result<(), SpdyError> {
        if self.shared.local_fin.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.send(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        })
        .await
    }

    /// Resets the stream (RST_STREAM CANCEL).
    pub async fn reset(&self) {
        self.shared.local_fin.store(true, Ordering::SeqCst);
        let _ = self
            .out
            .send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status: status::CANCEL,
            }))
            .await;
        self.shared.gone.cancel();
    }

    /// Completes when the peer resets the stream or the connection ends.
    pub async fn gone(&self) {
        self.shared.gone.cancelled().await
    }

    async fn send(&self, frame: Frame) -> Result<(), SpdyError> {
        if self.shared.gone.is_cancelled() {
            return Err(SpdyError::Reset(self.id));
        }
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| SpdyError::Closed)
    }
}

struct Entry {
    data: Option<mpsc::Sender<Bytes>>,
    shared: Arc<Shared>,
}

/// Serves SPDY on `io` (already upgraded): spawns the reader and writer tasks.
pub fn serve<IO>(io: IO) -> Connection
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Out>(256);
    let (incoming_tx, incoming) = mpsc::channel::<Stream>(64);
    let closed = CancellationToken::new();
    tokio::spawn(write_loop(write, out_rx, closed.clone()));
    tokio::spawn(read_loop(read, out_tx.clone(), incoming_tx, closed.clone()));
    Connection {
        incoming,
        out: out_tx,
        closed,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut out: mpsc::Receiver<Out>,
    closed: CancellationToken,
) {
    let mut headers = match HeaderEncoder::new() {
        Ok(h) => h,
        Err(e) => {
            debug!(error = %e, "spdy header compressor");
            closed.cancel();
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(MAX_DATA_FRAME + 64);
    loop {
        let first = tokio::select! {
            _ = closed.cancelled() => break,
            next = out.recv() => match next {
                Some(o) => o,
                None => break,
            },
        };
        // Batch whatever else is already queued into one write.
        let mut next = Some(first);
        let mut going_away = false;
        while let Some(o) = next {
            let f = match o {
                Out::Frame(f) => f,
                Out::GoAway => {
                    going_away = true;
                    Frame::GoAway {
                        last_good_stream_id: 0,
                        status: 0,
                    }
                }
            };
            if let Err(e) = frame::encode(&f, &mut headers, &mut buf) {
                debug!(error = %e, "encoding a spdy frame");
            }
            next = if !going_away && buf.len() < 256 * 1024 {
                out.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = io.write_all(&buf).await {
            debug!(error = %e, "spdy connection write");
            break;
        }
        buf.clear();
        if let Err(e) = io.flush().await {
            debug!(error = %e, "spdy connection flush");
            break;
        }
        if going_away {
            break;
        }
    }
    closed.cancel();
    let _ = io.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    io: R,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<Stream>,
    closed: CancellationToken,
) {
    let mut reader = FrameReader::new(io);
    let mut streams: HashMap<u32, Entry> = HashMap::new();
    loop {
        let frame = tokio::select! {
            _ = closed.cancelled() => break,
            f = reader.read() => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                debug!(error = %e, "spdy connection read");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
                ..
            } => {
                // Forget streams both sides have finished with.
                streams.retain(|_, e| {
                    let both_finished =
                        e.data.is_none() && e.shared.local_fin.load(Ordering::SeqCst);
                    !(both_finished || e.shared.gone.is_cancelled())
                });
                if stream_id % 2 == 0 || streams.contains_key(&stream_id) {
                    let _ = out
                        .send(Out::Frame(Frame::RstStream {
                            stream_id,
                            status: status::PROTOCOL_ERROR,
                        }))
                        .await;
                    continue;
                }
                let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
                let shared = Arc::new(Shared {
                    gone: closed.child_token(),
                    local_fin: AtomicBool::new(false),
                });
                let writer = StreamWriter {
                    id: stream_id,
                    out: out.clone(),
                    shared: shared.clone(),
                };
                streams.insert(
                    stream_id,
                    Entry {
                        data: (!fin).then_some(data_tx),
                        shared,
                    },
                );
                if out
                    .send(Out::Frame(Frame::SynReply {
                        stream_id,
                        fin: false,
                        headers: Vec::new(),
                    }))
                    .await
                    .is_err()
                {
                    break;
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    data: data_rx,
                    writer,
                };
                if incoming.send(stream).await.is_err() {
                    // Nobody accepts streams any more: refuse this one.
                    let _ = out
                        .send(Out::Frame(Frame::RstStream {
                            stream_id,
                            status: status::REFUSED_STREAM,
                        }))
                        .await;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let Some(entry) = streams.get_mut(&stream_id) else {
                    continue;
                };
                if let Some(tx) = entry.data.as_ref() {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        // The reader is gone; drop further data for this stream.
                        entry.data = None;
                    }
                }
                if fin {
                    entry.data = None;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(entry) = streams.remove(&stream_id) {
                    entry.shared.gone.cancel();
                }
            }
            Frame::Ping { id } => {
                // Odd ids are the client's: echo them. Even ones would answer our pings,
                // and this side sends none.
                if id % 2 == 1 && out.send(Out::Frame(Frame::Ping { id })).await.is_err() {
                    break;
                }
            }
            Frame::GoAway { .. } => debug!("spdy peer is going away"),
            Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored { .. } => {}
        }
    }
    closed.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::frame::{encode, FrameReader, HeaderEncoder};

    /// A minimal client on the other end of a duplex pipe, speaking through the same codec.
    struct Client {
        reader: FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
        writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        headers: HeaderEncoder,
    }

    impl Client {
        fn new(io: tokio::io::DuplexStream) -> Client {
            let (r, w) = tokio::io::split(io);
            Client {
                reader: FrameReader::new(r),
                writer: w,
                headers: HeaderEncoder::new().unwrap(),
            }
        }
        async fn send(&mut self, f: Frame) {
            let mut buf = BytesMut::new();
            encode(&f, &mut self.headers, &mut buf).unwrap();
            self.writer.write_all(&buf).await.unwrap();
        }
        async fn next(&mut self) -> Frame {
            self.reader.read().await.unwrap().unwrap()
        }
        async fn open(&mut self, id: u32, kind: &str) {
            self.send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: vec![("streamtype".into(), kind.into())],
            })
            .await;
        }
    }

    #[tokio::test]
    async fn streams_are_replied_to_and_carry_data_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut conn = serve(a);
        let mut client = Client::new(b);
        client.open(1, "data").await;
        assert_eq!(
            client.next().await,
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![]
            }
        );
        let mut stream = conn.accept().await.unwrap();
        assert_eq!(stream.header("streamtype"), Some("data"));
        client
            .send(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"ping"),
            })
            .await;
        assert_eq!(stream.recv().await.as_deref(), Some(&b"ping"[..]));
        assert_eq!(stream.recv().await, None, "FIN ends the client's side");
        let w = stream.writer();
        w.write(b"pong").await.unwrap();
        w.close().await.unwrap();
        assert_eq!(
            client.next().await,
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"pong")
            }
        );
        assert_eq!(
            client.next().await,
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new()
            }
        );
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.next().await, Frame::Ping { id: 1 });
    }

    #[tokio::test]
    async fn a_reset_stops_writers_and_readers() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut conn = serve(a);
        let mut client = Client::new(b);
        client.open(1, "data").await;
        let _reply = client.next().await;
        let mut stream = conn.accept().await.unwrap();
        let w = stream.writer();
        client
            .send(Frame::RstStream {
                stream_id: 1,
                status: status::CANCEL,
            })
            .await;
        w.gone().await;
        assert!(matches!(w.write(b"late").await, Err(SpdyError::Reset(1))));
        assert_eq!(stream.recv().await, None);
    }

    #[tokio::test]
    async fn shutdown_delivers_what_was_written_then_goes_away() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut conn = serve(a);
        let mut client = Client::new(b);
        client.open(1, "stdout").await;
        let _reply = client.next().await;
        let stream = conn.accept().await.unwrap();
        let w = stream.writer();
        w.write(b"last words").await.unwrap();
        w.close().await.unwrap();
        conn.shutdown().await;
        assert!(matches!(
            client.next().await,
            Frame::Data { fin: false, .. }
        ));
        assert!(matches!(client.next().await, Frame::Data { fin: true, .. }));
        assert!(matches!(client.next().await, Frame::GoAway { .. }));
        assert!(client.reader.read().await.unwrap().is_none(), "then EOF");
    }

    #[tokio::test]
    async fn the_connection_ending_ends_every_stream() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut conn = serve(a);
        let mut client = Client::new(b);
        client.open(1, "error").await;
        let mut stream = conn.accept().await.unwrap();
        let closed = conn.closed();
        drop(client);
        closed.cancelled().await;
        assert_eq!(stream.recv().await, None);
        assert!(stream.writer().write(b"x").await.is_err());
        assert!(conn.accept().await.is_none());
    }
}

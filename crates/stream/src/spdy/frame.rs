//! SPDY/3 frames on the wire: the 8-byte frame header, the control frames Kubernetes clients
//! send, data frames, and name/value header blocks compressed with one zlib context per
//! direction, primed with the protocol's dictionary and sync-flushed after every block.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::SpdyError;

const VERSION: u16 = 3;
const CONTROL_BIT: u8 = 0x80;
/// Payloads are 24-bit lengths; anything larger is a protocol error.
const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// A header block that inflates beyond this is refused rather than buffered.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

pub const FLAG_FIN: u8 = 0x01;

mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes this implementation sends.
pub mod status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
}

/// A header block: names are lowercase; several values of one name are NUL-separated on the
/// wire and kept that way here.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// SETTINGS, WINDOW_UPDATE and control types this side has no use for.
    Ignored {
        kind: u16,
    },
}

/// The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed common header
/// names and values, then a run of common text. Its Adler-32 (0xe3c6a7c2) is the DICTID
/// every SPDY/3 header stream announces.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
            "authorization", "cache-control", "connection", "content-base", "content-encoding",
            "content-language", "content-length", "content-location", "content-md5",
            "content-range", "content-type", "date", "etag", "expect", "expires", "from",
            "host", "if-match", "if-modified-since", "if-none-match", "if-range",
            "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
            "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
            "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary",
            "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
            "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
        ];
        const TEXT: &[&str] = &[
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut dict = Vec::with_capacity(1423);
        for word in WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        for text in TEXT {
            dict.extend_from_slice(text.as_bytes());
        }
        dict
    })
}

fn compression(e: impl std::fmt::Display) -> SpdyError {
    SpdyError::Compression(e.to_string())
}

/// Inflates the peer's header blocks: one zlib stream for the whole connection.
pub struct HeaderDecoder {
    inflate: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        HeaderDecoder {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderDecoder {
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        loop {
            let before_in = self.inflate.total_in();
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - before_in) as usize;
            input = &input[consumed..];
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    if input.is_empty() && out.capacity() > out.len() {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(compression)?;
                }
                Err(e) => return Err(compression(e)),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Compression("header block too large".into()));
            }
        }
        parse_header_block(&out)
    }
}

/// Deflates this side's header blocks, with the dictionary, sync-flushed per block.
pub struct HeaderEncoder {
    deflate: Compress,
}

impl HeaderEncoder {
    pub fn new() -> Result<Self, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(dictionary()).map_err(compression)?;
        Ok(HeaderEncoder { deflate })
    }

    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            plain.put_u32(value.len() as u32);
            plain.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = plain.as_slice();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(compression)?;
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            // Done once all input is taken and the flush left room to spare.
            if input.is_empty() && out.capacity() > out.len() {
                return Ok(out);
            }
        }
    }
}

fn parse_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], SpdyError> {
        if block.remaining() < 4 {
            return Err(SpdyError::Protocol("truncated header block".into()));
        }
        let len = block.get_u32() as usize;
        if block.remaining() < len {
            return Err(SpdyError::Protocol("truncated header block".into()));
        }
        let (head, rest) = block.split_at(len);
        *block = rest;
        Ok(head)
    }
    if block.remaining() < 4 {
        return Err(SpdyError::Protocol("truncated header block".into()));
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = String::from_utf8_lossy(take(&mut block)?).to_ascii_lowercase();
        let value = String::from_utf8_lossy(take(&mut block)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// Reads frames off a byte stream, inflating header blocks as they come.
pub struct FrameReader<R> {
    io: R,
    headers: HeaderDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            headers: HeaderDecoder::default(),
        }
    }

    /// The next frame; `None` when the stream ends between frames.
    pub async fn read(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        if head[0] & CONTROL_BIT == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: Bytes::from(payload),
            }));
        }
        let version = u16::from_be_bytes([head[0] & !CONTROL_BIT, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Protocol(format!(
                "unsupported SPDY version {version}"
            )));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        self.control(kind, flags, Bytes::from(payload)).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
        let need = |p: &Bytes, n: usize| {
            if p.len() < n {
                Err(SpdyError::Protocol(format!(
                    "control frame {kind} too short"
                )))
            } else {
                Ok(())
            }
        };
        let fin = flags & FLAG_FIN != 0;
        Ok(match kind {
            kind::SYN_STREAM => {
                need(&p, 10)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = self.headers.decode(&p)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    fin,
                    headers,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                need(&p, 4)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.headers.decode(&p)?;
                if kind == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                need(&p, 8)?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            kind::PING => {
                need(&p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                need(&p, 4)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            kind::SETTINGS | kind::WINDOW_UPDATE => Frame::Ignored { kind },
            other => Frame::Ignored { kind: other },
        })
    }
}

fn control_header(out: &mut BytesMut, kind: u16, flags: u8, len: usize) -> Result<(), SpdyError> {
    if len > MAX_PAYLOAD {
        return Err(SpdyError::Protocol(format!(
            "frame of {len} bytes is too large"
        )));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u8(flags);
    out.put_uint(len as u64, 3);
    Ok(())
}

/// Appends `frame`'s wire form to `out`, deflating its header block if it has one.
pub fn encode(
    frame: &Frame,
    headers: &mut HeaderEncoder,
    out: &mut BytesMut,
) -> Result<(), SpdyError> {
    let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            if data.len() > MAX_PAYLOAD {
                return Err(SpdyError::Protocol("data frame too large".into()));
            }
            out.put_u32(stream_id & 0x7fff_ffff);
            out.put_u8(fin_flag(*fin));
            out.put_uint(data.len() as u64, 3);
            out.extend_from_slice(data);
        }
        Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            fin,
            headers: h,
        } => {
            let block = headers.encode(h)?;
            control_header(out, kind::SYN_STREAM, fin_flag(*fin), 10 + block.len())?;
            out.put_u32(*stream_id);
            out.put_u32(*associated_to);
            out.put_u8(priority << 5);
            out.put_u8(0);
            out.extend_from_slice(&block);
        }
        Frame::SynReply {
            stream_id,
            fin,
            headers: h,
        }
        | Frame::Headers {
            stream_id,
            fin,
            headers: h,
        } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) {
                kind::SYN_REPLY
            } else {
                kind::HEADERS
            };
            let block = headers.encode(h)?;
            control_header(out, kind, fin_flag(*fin), 4 + block.len())?;
            out.put_u32(*stream_id);
            out.extend_from_slice(&block);
        }
        Frame::RstStream { stream_id, status } => {
            control_header(out, kind::RST_STREAM, 0, 8)?;
            out.put_u32(*stream_id);
            out.put_u32(*status);
        }
        Frame::Ping { id } => {
            control_header(out, kind::PING, 0, 4)?;
            out.put_u32(*id);
        }
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            control_header(out, kind::GOAWAY, 0, 8)?;
            out.put_u32(*last_good_stream_id);
            out.put_u32(*status);
        }
        Frame::Ignored { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_protocols() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        let mut adler = flate2::Compress::new(Compression::default(), true);
        assert_eq!(adler.set_dictionary(dict).unwrap(), 0xe3c6_a7c2);
    }

    /// Two SYN_STREAMs as a C-zlib SPDY client deflates them (one context, the second block
    /// leaning on the first), the shape kubectl's port-forward opens each connection with.
    const C_ZLIB_SYN_STREAMS: &str = "800300010000003c0000000100000000000078f9e3c6a7c202253a48f95b044aab4c16064092b308125b99a054cc68004e872545a989b9d0a2863515141100000000ffff800300010000001600000003000000000000224b2ba8944a04000000ffff";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn reads_header_blocks_another_zlib_wrote() {
        let wire = hex(C_ZLIB_SYN_STREAMS);
        let mut reader = FrameReader::new(wire.as_slice());
        let first = reader.read().await.unwrap().unwrap();
        let second = reader.read().await.unwrap().unwrap();
        assert!(reader.read().await.unwrap().is_none());
        let pairs = |v: &[(&str, &str)]| -> Headers {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            first,
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: pairs(&[("port", "80"), ("requestid", "0"), ("streamtype", "error")]),
            }
        );
        assert_eq!(
            second,
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: pairs(&[("port", "80"), ("requestid", "0"), ("streamtype", "data")]),
            }
        );
    }

    #[tokio::test]
    async fn every_frame_round_trips_through_one_header_context() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                headers: h("streamtype", "stdout"),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Headers {
                stream_id: 1,
                fin: true,
                headers: h("x-a", "b\0c"),
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from(vec![7u8; 100_000]),
            },
            Frame::RstStream {
                stream_id: 3,
                status: status::CANCEL,
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        let mut encoder = HeaderEncoder::new().unwrap();
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut encoder, &mut wire).unwrap();
        }
        let wire = wire.freeze();
        let mut reader = FrameReader::new(&wire[..]);
        for f in &frames {
            assert_eq!(&reader.read().await.unwrap().unwrap(), f);
        }
        assert!(reader.read().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let junk: &[u8] = &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2,
        ];
        let mut reader = FrameReader::new(junk);
        assert!(reader.read().await.is_err());
        let wrong_version: &[u8] = &[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
        assert!(FrameReader::new(wrong_version).read().await.is_err());
    }
}

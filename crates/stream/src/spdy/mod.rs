//! SPDY/3.1 as Kubernetes uses it (moby/spdystream on the client side): streams opened by
//! the client with a header block, data frames in both directions, half-close with FIN,
//! RST_STREAM, PING. Flow control is not enforced: spdystream neither sends nor honours
//! WINDOW_UPDATE, so enforcing windows would only stall transfers.

pub mod frame;
pub mod session;

pub use frame::{Frame, Headers};
pub use session::{serve, Connection, Stream, StreamWriter};

/// Errors of the SPDY layer.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("header block: {0}")]
    Compression(String),
    #[error("stream {0} was reset by the peer")]
    Reset(u32),
    #[error("connection closed")]
    Closed,
}

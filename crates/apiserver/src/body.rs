//! The response body type: a whole buffer, or a stream of chunks for watches.

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body that sends each chunk as soon as the stream yields it.
pub fn streaming<S>(chunks: S) -> Body
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    use futures::StreamExt;
    BodyExt::boxed_unsync(StreamBody::new(
        chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ))
}

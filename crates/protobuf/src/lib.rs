//! The Kubernetes protobuf wire format (`application/vnd.kubernetes.protobuf`), transcoded
//! to and from the JSON objects peapod serves.
//!
//! Owns: the `k8s\0` + `runtime.Unknown` envelope, the length-prefixed `WatchEvent`
//! framing of protobuf watch streams, a protobuf wire reader and writer, and the schema
//! table (`generated.rs`) of every message of every upstream API group (the k8s-pb
//! sources), so a kind the API server starts serving needs no regeneration: field
//! numbers, JSON names and kinds, with the special types (Quantity, IntOrString, Time, MicroTime,
//! Duration, RawExtension, FieldsV1, `[]byte`) mapped to their JSON shapes. One generic
//! code path serves every kind, so the JSON form stays the single source of truth: the API
//! server turns a protobuf body into the JSON value its JSON path would have read, and a
//! JSON response into protobuf.
//!
//! Does not own: content negotiation or HTTP (the API server), validation or defaults
//! (they run on the JSON value afterwards), Tables (served as JSON, as upstream does).
//!
//! May depend on: serde_json, base64, jiff, thiserror. Nothing in the workspace; the
//! `openapi` crate only as a dev-dependency, for the generator and the coverage test.

mod envelope;
#[cfg(test)]
mod generate;
#[rustfmt::skip]
mod generated;
pub mod schema;
mod transcode;
pub mod wire;

#[cfg(test)]
mod tests;

pub use envelope::{
    decode_object, decode_watch_event, encode_object, encode_watch_event, message_for, Unknown,
    MAGIC,
};
pub use transcode::{decode as decode_message, encode as encode_message};

/// The media type of protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The media type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// Why bytes could not be decoded, or a value encoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NoMagic,
    #[error("truncated protobuf message")]
    Truncated,
    #[error("malformed protobuf message: {0}")]
    Malformed(String),
    #[error("object has no kind field in its protobuf envelope")]
    MissingKind,
    #[error("no kind {kind:?} is registered for version {api_version:?} in the protobuf scheme")]
    UnknownKind { api_version: String, kind: String },
    #[error("cannot encode as protobuf: {0}")]
    Encode(String),
}

//! The Kubernetes protobuf envelope: the magic `k8s\0` followed by a `runtime.Unknown`
//! message (typeMeta {apiVersion, kind}, raw, contentEncoding, contentType) whose `raw`
//! holds the object's own message; and the length-prefixed `WatchEvent` frames of
//! `application/vnd.kubernetes.protobuf;stream=watch`.

use serde_json::{Map, Value};

use crate::schema::{self, Message};
use crate::transcode;
use crate::wire::{Payload, Reader, Writer};
use crate::Error;

/// The four bytes every protobuf-encoded object starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The `runtime.Unknown` of an encoded object, its payload not yet decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unknown<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
    pub content_encoding: String,
    pub content_type: String,
}

impl<'a> Unknown<'a> {
    /// Reads the envelope of `bytes` (magic included).
    pub fn parse(bytes: &'a [u8]) -> Result<Unknown<'a>, Error> {
        let body = bytes.strip_prefix(&MAGIC).ok_or(Error::NoMagic)?;
        if body.is_empty() {
            return Err(Error::Malformed("empty body".into()));
        }
        let mut unknown = Unknown::default();
        let mut r = Reader::new(body);
        while let Some((tag, payload)) = r.field()? {
            match (tag, payload) {
                (1, Payload::Len(type_meta)) => {
                    let mut tr = Reader::new(type_meta);
                    while let Some((t, p)) = tr.field()? {
                        match (t, p) {
                            (1, Payload::Len(v)) => unknown.api_version = text(v, "apiVersion")?,
                            (2, Payload::Len(v)) => unknown.kind = text(v, "kind")?,
                            _ => {}
                        }
                    }
                }
                (2, Payload::Len(v)) => unknown.raw = v,
                (3, Payload::Len(v)) => unknown.content_encoding = text(v, "contentEncoding")?,
                (4, Payload::Len(v)) => unknown.content_type = text(v, "contentType")?,
                (1..=4, _) => {
                    return Err(Error::Malformed(format!(
                        "runtime.Unknown field {tag} has the wrong wire type"
                    )))
                }
                _ => {}
            }
        }
        Ok(unknown)
    }
}

fn text(b: &[u8], what: &str) -> Result<String, Error> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed(format!("{what} is not UTF-8")))
}

/// The message of `kind` in `api_version`, for every kind of every upstream API group:
/// a group's messages live in its Go package (`rbac.authorization.k8s.io` in
/// `io.k8s.api.rbac`, `apps` in `io.k8s.api.apps`).
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => Some("io.k8s.api.core".to_string()),
        "meta.k8s.io" => None,
        "internal.apiserver.k8s.io" => Some("io.k8s.api.apiserverinternal".to_string()),
        "apiextensions.k8s.io" => {
            Some("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string())
        }
        "apiregistration.k8s.io" => {
            Some("io.k8s.kube-aggregator.pkg.apis.apiregistration".to_string())
        }
        g => g.split('.').next().map(|p| format!("io.k8s.api.{p}")),
    };
    if let Some(package) = package {
        if let Some(m) = schema::message(&format!("{package}.{version}.{kind}")) {
            return Some(m);
        }
    }
    // Status, DeleteOptions and WatchEvent are meta/v1 kinds however they are addressed.
    match kind {
        "Status" | "DeleteOptions" | "WatchEvent" if version == "v1" => {
            schema::message(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"))
        }
        _ => None,
    }
}

/// Decodes an enveloped object into its JSON form, `apiVersion` and `kind` included.
pub fn decode_object(bytes: &[u8]) -> Result<Value, Error> {
    decode_object_at(bytes, 0)
}

pub(crate) fn decode_object_at(bytes: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > 8 {
        return Err(Error::Malformed("objects embedded too deeply".into()));
    }
    let unknown = Unknown::parse(bytes)?;
    if !unknown.content_encoding.is_empty() {
        return Err(Error::Malformed(format!(
            "unsupported content encoding {:?}",
            unknown.content_encoding
        )));
    }
    if unknown.kind.is_empty() {
        return Err(Error::MissingKind);
    }
    let message =
        message_for(&unknown.api_version, &unknown.kind).ok_or_else(|| Error::UnknownKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        })?;
    let mut value = match unknown.content_type.as_str() {
        "" | crate::MEDIA_TYPE => transcode::decode(message, unknown.raw)?,
        "application/json" => serde_json::from_slice(unknown.raw)
            .map_err(|e| Error::Malformed(format!("raw JSON: {e}")))?,
        other => {
            return Err(Error::Malformed(format!(
                "unsupported content type {other:?}"
            )))
        }
    };
    if let Value::Object(m) = &mut value {
        m.insert("apiVersion".into(), Value::String(unknown.api_version));
        m.insert("kind".into(), Value::String(unknown.kind));
    }
    Ok(value)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) in the envelope.
pub fn encode_object(value: &Value) -> Result<Vec<u8>, Error> {
    let obj: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| Error::Encode("not a JSON object".into()))?;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let message = message_for(api_version, kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let raw = transcode::encode(message, value)?;
    let mut w = Writer::default();
    w.buf
        .reserve(raw.len() + api_version.len() + kind.len() + 24);
    w.buf.extend_from_slice(&MAGIC);
    let mark = w.begin_nested(1);
    w.bytes_field(1, api_version.as_bytes());
    w.bytes_field(2, kind.as_bytes());
    w.end_nested(mark);
    w.bytes_field(2, &raw);
    // Go writes its non-pointer strings even when empty.
    w.bytes_field(3, b"");
    w.bytes_field(4, b"");
    Ok(w.buf)
}

/// One frame of a protobuf watch stream: a 4-byte big-endian length, then a bare
/// (unenveloped) `WatchEvent` whose `object.raw` is the enveloped object.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, Error> {
    let inner = encode_object(object)?;
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[0; 4]);
    w.bytes_field(1, event_type.as_bytes());
    let mark = w.begin_nested(2);
    w.bytes_field(1, &inner);
    w.end_nested(mark);
    let len = u32::try_from(w.buf.len() - 4)
        .map_err(|_| Error::Encode("watch event larger than 4 GiB".into()))?;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(w.buf)
}

/// Reads one frame written by [`encode_watch_event`]: the event type, the object, and the
/// bytes after the frame.
pub fn decode_watch_event(bytes: &[u8]) -> Result<(String, Value, &[u8]), Error> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Truncated)?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let frame = bytes.get(4..4 + len).ok_or(Error::Truncated)?;
    let message = message_for("v1", "WatchEvent").ok_or(Error::MissingKind)?;
    let event = transcode::decode(message, frame)?;
    let kind = event["type"].as_str().unwrap_or_default().to_string();
    Ok((kind, event["object"].clone(), &bytes[4 + len..]))
}

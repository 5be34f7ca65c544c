//! Schema-driven transcoding between one message's protobuf bytes and its JSON value.
//!
//! The JSON side is the form kube-apiserver serves (and peapod stores): so the special
//! types turn into their JSON shapes (Quantity and Time into strings, IntOrString into a
//! number or string, `[]byte` into base64, RawExtension and FieldsV1 into embedded JSON),
//! and zero scalars Go writes for unset non-pointer fields are dropped on the way in (see
//! [`Field::keep_zero`]).

use base64::Engine;
use serde_json::{Map, Number, Value};

use crate::schema::{self, Field, Kind, MapValue, Message};
use crate::wire::{Payload, Reader, Writer};
use crate::Error;

/// Deeper nesting than any served kind has; guards against hostile recursion through
/// embedded objects.
const MAX_DEPTH: usize = 64;

/// Decodes one message's bytes into its JSON object.
pub fn decode(message: &'static Message, bytes: &[u8]) -> Result<Value, Error> {
    let mut out = Map::new();
    decode_into(message, bytes, &mut out, 0)?;
    Ok(Value::Object(out))
}

fn decode_into(
    message: &'static Message,
    bytes: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed("messages nested too deeply".into()));
    }
    let mut r = Reader::new(bytes);
    while let Some((tag, payload)) = r.field()? {
        // Fields this schema does not know are skipped, as Go's generated code does.
        let Some(field) = message.field(tag) else {
            continue;
        };
        let at = || format!("{}.{}", short(message.name), field.json);
        if field.inline {
            let (Kind::Message(i), Payload::Len(b)) = (field.kind, payload) else {
                return Err(wrong_wire(&at()));
            };
            decode_into(schema::by_index(i), b, out, depth + 1)?;
            continue;
        }
        if let Kind::Map(value_kind) = field.kind {
            let Payload::Len(entry) = payload else {
                return Err(wrong_wire(&at()));
            };
            let (k, v) = map_entry(value_kind, entry, &at, depth)?;
            let slot = out
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = slot {
                m.insert(k, v);
            }
            continue;
        }
        if field.repeated {
            let slot = out
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = slot else {
                continue;
            };
            match (field.kind, payload) {
                // Packed scalars: proto2 Go writes them unpacked, but accept both.
                (Kind::Int32 | Kind::Int64 | Kind::Bool, Payload::Len(b)) => {
                    let mut pr = Reader::new(b);
                    while !pr.is_empty() {
                        items.push(varint_value(field.kind, pr.varint()?));
                    }
                }
                _ => items.push(single(field, payload, &at, depth)?),
            }
            continue;
        }
        let value = single(field, payload, &at, depth)?;
        if is_unset(field, &value) {
            out.remove(field.json);
        } else {
            out.insert(field.json.to_string(), value);
        }
    }
    Ok(())
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn wrong_wire(at: &str) -> Error {
    Error::Malformed(format!("field {at} has the wrong wire type"))
}

/// A zero scalar Go wrote for a field it would leave out of its JSON.
fn is_unset(field: &Field, value: &Value) -> bool {
    if field.keep_zero {
        return false;
    }
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty() && field.kind == Kind::String,
        Value::Bool(b) => !b,
        Value::Number(n) => {
            matches!(field.kind, Kind::Int32 | Kind::Int64 | Kind::Double)
                && n.as_f64() == Some(0.0)
        }
        _ => false,
    }
}

fn varint_value(kind: Kind, v: u64) -> Value {
    match kind {
        Kind::Bool => Value::Bool(v != 0),
        // int32 is sign-extended to 64 bits on the wire.
        Kind::Int32 => Value::from(v as i64 as i32),
        _ => Value::from(v as i64),
    }
}

fn utf8(b: &[u8], at: &dyn Fn() -> String) -> Result<String, Error> {
    String::from_utf8(b.to_vec())
        .map_err(|_| Error::Malformed(format!("field {} is not valid UTF-8", at())))
}

fn single(
    field: &Field,
    payload: Payload<'_>,
    at: &dyn Fn() -> String,
    depth: usize,
) -> Result<Value, Error> {
    let bad = || Error::Malformed(format!("field {} has the wrong wire type", at()));
    Ok(match (field.kind, payload) {
        (Kind::String, Payload::Len(b)) => Value::String(utf8(b, at)?),
        (Kind::Bytes, Payload::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Bool | Kind::Int32 | Kind::Int64, Payload::Varint(v)) => varint_value(field.kind, v),
        (Kind::Double, Payload::Fixed64(v)) => Number::from_f64(f64::from_bits(v))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        (Kind::Message(i), Payload::Len(b)) => {
            let mut m = Map::new();
            decode_into(schema::by_index(i), b, &mut m, depth + 1)?;
            Value::Object(m)
        }
        (Kind::Quantity, Payload::Len(b)) => quantity(b, at)?,
        (Kind::IntOrString, Payload::Len(b)) => int_or_string(b, at)?,
        (Kind::Time, Payload::Len(b)) => time(b, false)?,
        (Kind::MicroTime, Payload::Len(b)) => time(b, true)?,
        (Kind::Duration, Payload::Len(b)) => duration(b)?,
        (Kind::RawExtension | Kind::FieldsV1, Payload::Len(b)) => raw_json(b, at, depth)?,
        _ => return Err(bad()),
    })
}

fn map_entry(
    value_kind: MapValue,
    entry: &[u8],
    at: &dyn Fn() -> String,
    depth: usize,
) -> Result<(String, Value), Error> {
    let mut key = String::new();
    // An entry without a value holds the value type's zero value, as in Go.
    let mut value = match value_kind {
        MapValue::String | MapValue::Bytes => Value::String(String::new()),
        MapValue::Quantity => Value::String("0".into()),
        MapValue::Message(_) => Value::Object(Map::new()),
    };
    let mut r = Reader::new(entry);
    while let Some((tag, payload)) = r.field()? {
        match (tag, payload) {
            (1, Payload::Len(b)) => key = utf8(b, at)?,
            (2, Payload::Len(b)) => {
                value = match value_kind {
                    MapValue::String => Value::String(utf8(b, at)?),
                    MapValue::Bytes => {
                        Value::String(base64::engine::general_purpose::STANDARD.encode(b))
                    }
                    MapValue::Quantity => quantity(b, at)?,
                    MapValue::Message(i) => {
                        let mut m = Map::new();
                        decode_into(schema::by_index(i), b, &mut m, depth + 1)?;
                        Value::Object(m)
                    }
                }
            }
            _ => {}
        }
    }
    Ok((key, value))
}

/// `resource.Quantity`: field 1 holds the canonical string.
fn quantity(b: &[u8], at: &dyn Fn() -> String) -> Result<Value, Error> {
    let mut s = String::new();
    let mut r = Reader::new(b);
    while let Some((tag, payload)) = r.field()? {
        if let (1, Payload::Len(v)) = (tag, payload) {
            s = utf8(v, at)?;
        }
    }
    // A zero Quantity marshals as "0", as in its JSON.
    if s.is_empty() {
        s.push('0');
    }
    Ok(Value::String(s))
}

/// `intstr.IntOrString`: type (0 int, 1 string), intVal, strVal.
fn int_or_string(b: &[u8], at: &dyn Fn() -> String) -> Result<Value, Error> {
    let (mut kind, mut int, mut string) = (0u64, 0i32, String::new());
    let mut r = Reader::new(b);
    while let Some((tag, payload)) = r.field()? {
        match (tag, payload) {
            (1, Payload::Varint(v)) => kind = v,
            (2, Payload::Varint(v)) => int = v as i64 as i32,
            (3, Payload::Len(v)) => string = utf8(v, at)?,
            _ => {}
        }
    }
    Ok(if kind == 1 {
        Value::String(string)
    } else {
        Value::from(int)
    })
}

/// `metav1.Time`/`MicroTime`: seconds and nanos since the epoch. An empty message is the
/// zero time, which Go's JSON writes as `null`.
fn time(b: &[u8], micro: bool) -> Result<Value, Error> {
    if b.is_empty() {
        return Ok(Value::Null);
    }
    let (mut secs, mut nanos) = (0i64, 0i32);
    let mut r = Reader::new(b);
    while let Some((tag, payload)) = r.field()? {
        match (tag, payload) {
            (1, Payload::Varint(v)) => secs = v as i64,
            (2, Payload::Varint(v)) => nanos = v as i64 as i32,
            _ => {}
        }
    }
    format_time(secs, nanos, micro).map(Value::String)
}

pub(crate) fn format_time(secs: i64, nanos: i32, micro: bool) -> Result<String, Error> {
    let ts = jiff::Timestamp::from_second(secs)
        .map_err(|e| Error::Malformed(format!("time out of range: {e}")))?;
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(if micro {
        format!("{base}.{:06}Z", nanos.clamp(0, 999_999_999) / 1000)
    } else {
        // Time is second-precision in JSON; upstream truncates the same way.
        format!("{base}Z")
    })
}

fn parse_time(s: &str) -> Result<(i64, i32), String> {
    let ts: jiff::Timestamp = s.parse().map_err(|e| format!("invalid time {s:?}: {e}"))?;
    Ok((ts.as_second(), ts.subsec_nanosecond()))
}

/// `metav1.Duration`: nanoseconds, shown as Go's duration string.
fn duration(b: &[u8]) -> Result<Value, Error> {
    let mut nanos = 0i64;
    let mut r = Reader::new(b);
    while let Some((tag, payload)) = r.field()? {
        if let (1, Payload::Varint(v)) = (tag, payload) {
            nanos = v as i64;
        }
    }
    Ok(Value::String(go_duration(nanos)))
}

/// Go's `time.Duration.String` for whole-second durations and below-second fallbacks.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        return format!("{sign}{n}ns");
    }
    let (h, rem) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let (s, frac) = (rem / 1_000_000_000, rem % 1_000_000_000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:09}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{sign}{secs}"),
        (0, m) => format!("{sign}{m}m{secs}"),
        (h, m) => format!("{sign}{h}h{m}m{secs}"),
    }
}

fn parse_go_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += num * scale;
        rest = &rest[unit_end..];
    }
    Ok(if neg { -total } else { total } as i64)
}

/// RawExtension and FieldsV1 carry JSON in field 1. A RawExtension may also carry a
/// protobuf-encoded object (`k8s\0` envelope), as watch events do.
fn raw_json(b: &[u8], at: &dyn Fn() -> String, depth: usize) -> Result<Value, Error> {
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(b);
    while let Some((tag, payload)) = r.field()? {
        if let (1, Payload::Len(v)) = (tag, payload) {
            raw = v;
        }
    }
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(&crate::envelope::MAGIC) {
        return crate::envelope::decode_object_at(raw, depth + 1);
    }
    serde_json::from_slice(raw)
        .map_err(|e| Error::Malformed(format!("field {} does not hold JSON: {e}", at())))
}

/// Encodes a JSON object as one message's bytes.
pub fn encode(message: &'static Message, value: &Value) -> Result<Vec<u8>, Error> {
    let mut w = Writer::default();
    let obj = value
        .as_object()
        .ok_or_else(|| Error::Encode(format!("{} is not a JSON object", short(message.name))))?;
    encode_fields(message, obj, &mut w, 0)?;
    Ok(w.buf)
}

fn encode_fields(
    message: &'static Message,
    obj: &Map<String, Value>,
    w: &mut Writer,
    depth: usize,
) -> Result<(), Error> {
    check_keys(message, obj)?;
    encode_known(message, obj, w, depth)
}

/// Encodes the fields of `message` found in `obj`; an inline struct's fields share the
/// object with its parent's, which [`check_keys`] has already checked.
fn encode_known(
    message: &'static Message,
    obj: &Map<String, Value>,
    w: &mut Writer,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Encode("objects nested too deeply".into()));
    }
    for field in message.fields {
        if field.inline {
            if let Kind::Message(i) = field.kind {
                let mark = w.begin_nested(field.tag);
                encode_known(schema::by_index(i), obj, w, depth + 1)?;
                w.end_nested(mark);
            }
            continue;
        }
        let Some(value) = obj.get(field.json) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let at = || format!("{}.{}", short(message.name), field.json);
        if let Kind::Map(value_kind) = field.kind {
            let map = value
                .as_object()
                .ok_or_else(|| Error::Encode(format!("{} is not an object", at())))?;
            for (k, v) in map {
                let mark = w.begin_nested(field.tag);
                w.bytes_field(1, k.as_bytes());
                match value_kind {
                    MapValue::String => w.bytes_field(2, str_of(v, &at)?.as_bytes()),
                    MapValue::Bytes => w.bytes_field(2, &base64_of(v, &at)?),
                    MapValue::Quantity => {
                        let m = w.begin_nested(2);
                        w.bytes_field(1, quantity_string(v, &at)?.as_bytes());
                        w.end_nested(m);
                    }
                    MapValue::Message(i) => {
                        let m = w.begin_nested(2);
                        let o = v
                            .as_object()
                            .ok_or_else(|| Error::Encode(format!("{} is not an object", at())))?;
                        encode_fields(schema::by_index(i), o, w, depth + 1)?;
                        w.end_nested(m);
                    }
                }
                w.end_nested(mark);
            }
            continue;
        }
        if field.repeated {
            let items = value
                .as_array()
                .ok_or_else(|| Error::Encode(format!("{} is not an array", at())))?;
            for item in items {
                encode_single(field, item, w, &at, depth)?;
            }
            continue;
        }
        encode_single(field, value, w, &at, depth)?;
    }
    Ok(())
}

/// A field the table lacks would be lost silently; refuse instead, so the caller can
/// answer in JSON. apiVersion and kind travel in the envelope, not in the message.
fn check_keys(message: &Message, obj: &Map<String, Value>) -> Result<(), Error> {
    for key in obj.keys() {
        if key != "apiVersion" && key != "kind" && !has_json_field(message, key) {
            return Err(Error::Encode(format!(
                "{}.{key} has no protobuf field number",
                short(message.name)
            )));
        }
    }
    Ok(())
}

fn has_json_field(message: &Message, key: &str) -> bool {
    message.fields.iter().any(|f| match (f.inline, f.kind) {
        (true, Kind::Message(i)) => has_json_field(schema::by_index(i), key),
        _ => f.json == key,
    })
}

fn str_of<'v>(v: &'v Value, at: &dyn Fn() -> String) -> Result<&'v str, Error> {
    v.as_str()
        .ok_or_else(|| Error::Encode(format!("{} is not a string", at())))
}

fn base64_of(v: &Value, at: &dyn Fn() -> String) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD
        .decode(str_of(v, at)?)
        .map_err(|e| Error::Encode(format!("{} is not base64: {e}", at())))
}

fn quantity_string(v: &Value, at: &dyn Fn() -> String) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(Error::Encode(format!("{} is not a quantity", at()))),
    }
}

fn int_of(v: &Value, at: &dyn Fn() -> String) -> Result<i64, Error> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .ok_or_else(|| Error::Encode(format!("{} is not an integer", at())))
}

fn encode_single(
    field: &Field,
    v: &Value,
    w: &mut Writer,
    at: &dyn Fn() -> String,
    depth: usize,
) -> Result<(), Error> {
    let tag = field.tag;
    match field.kind {
        Kind::String => w.bytes_field(tag, str_of(v, at)?.as_bytes()),
        Kind::Bytes => w.bytes_field(tag, &base64_of(v, at)?),
        Kind::Bool => {
            let b = v
                .as_bool()
                .ok_or_else(|| Error::Encode(format!("{} is not a boolean", at())))?;
            w.varint_field(tag, u64::from(b));
        }
        // Negative int32s are sign-extended to ten bytes, as protobuf requires.
        Kind::Int32 => w.varint_field(tag, i64::from(int_of(v, at)? as i32) as u64),
        Kind::Int64 => w.varint_field(tag, int_of(v, at)? as u64),
        Kind::Double => {
            let f = v
                .as_f64()
                .ok_or_else(|| Error::Encode(format!("{} is not a number", at())))?;
            w.double_field(tag, f);
        }
        Kind::Message(i) => {
            let o = v
                .as_object()
                .ok_or_else(|| Error::Encode(format!("{} is not an object", at())))?;
            let mark = w.begin_nested(tag);
            encode_fields(schema::by_index(i), o, w, depth + 1)?;
            w.end_nested(mark);
        }
        Kind::Quantity => {
            let mark = w.begin_nested(tag);
            w.bytes_field(1, quantity_string(v, at)?.as_bytes());
            w.end_nested(mark);
        }
        Kind::IntOrString => {
            let mark = w.begin_nested(tag);
            match v {
                Value::String(s) => {
                    w.varint_field(1, 1);
                    w.bytes_field(3, s.as_bytes());
                }
                other => {
                    w.varint_field(1, 0);
                    w.varint_field(2, i64::from(int_of(other, at)? as i32) as u64);
                }
            }
            w.end_nested(mark);
        }
        Kind::Time | Kind::MicroTime => {
            let (secs, nanos) =
                parse_time(str_of(v, at)?).map_err(|e| Error::Encode(format!("{}: {e}", at())))?;
            let mark = w.begin_nested(tag);
            w.varint_field(1, secs as u64);
            if field.kind == Kind::MicroTime && nanos != 0 {
                w.varint_field(2, i64::from(nanos - nanos % 1000) as u64);
            }
            w.end_nested(mark);
        }
        Kind::Duration => {
            let nanos = parse_go_duration(str_of(v, at)?)
                .map_err(|e| Error::Encode(format!("{}: {e}", at())))?;
            let mark = w.begin_nested(tag);
            w.varint_field(1, nanos as u64);
            w.end_nested(mark);
        }
        Kind::RawExtension | Kind::FieldsV1 => {
            let raw = serde_json::to_vec(v).map_err(|e| Error::Encode(e.to_string()))?;
            let mark = w.begin_nested(tag);
            w.bytes_field(1, &raw);
            w.end_nested(mark);
        }
        Kind::Map(_) => {
            return Err(Error::Encode(format!("{} is a map inside a list", at())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        for (n, s) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
        ] {
            assert_eq!(go_duration(n), s);
            assert_eq!(parse_go_duration(s), Ok(n));
        }
    }

    #[test]
    fn times_keep_their_precision() {
        assert_eq!(
            format_time(1_700_000_000, 123_456_789, true).expect("time"),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            format_time(1_700_000_000, 123_456_789, false).expect("time"),
            "2023-11-14T22:13:20Z"
        );
    }
}

//! Protobuf bodies: the `k8s\0` envelope and the transcoding of every message to the JSON
//! the API server reads, and the length-prefixed watch frames.

use fuzz::proptest::prelude::*;
use fuzz::proptest::test_runner::TestCaseError;
use fuzz::{check, ensure, gen, mutate, seeds};

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// What decodes, encodes, and decodes back to the same value.
#[test]
fn protobuf_bodies() {
    let body = prop_oneof![
        4 => mutate::mutated(seeds::protobuf_bodies(), 8),
        2 => gen::edited(seeds::objects().to_vec(), 4)
            .prop_map(|v| protobuf::encode_object(&v).unwrap_or_default()),
        1 => mutate::noise().prop_map(|b| [protobuf::MAGIC.as_slice(), b.as_slice()].concat()),
    ];
    check("protobuf", 20000, body, |bytes| {
        let _ = protobuf::decode_watch_event(&bytes);
        let Ok(value) = protobuf::decode_object(&bytes) else {
            return Ok(());
        };
        let encoded = protobuf::encode_object(&value)
            .map_err(|e| fail(format!("a decoded object does not encode: {e}: {value}")))?;
        let back = protobuf::decode_object(&encoded).map_err(fail)?;
        ensure(back == value, || {
            format!("round trip changed {value} into {back}")
        })
    });
}

/// A JSON object the schema can express survives protobuf once normalised (what a
/// protobuf client gets back is what it reads again), also as a watch frame.
#[test]
fn json_objects_through_protobuf() {
    let object = gen::edited(seeds::objects().to_vec(), 4);
    check("protobuf-json", 10000, object, |value| {
        let Ok(pb) = protobuf::encode_object(&value) else {
            return Ok(());
        };
        let once = protobuf::decode_object(&pb)
            .map_err(|e| fail(format!("an encoded object does not decode: {e}")))?;
        let pb2 = protobuf::encode_object(&once).map_err(fail)?;
        let twice = protobuf::decode_object(&pb2).map_err(fail)?;
        ensure(twice == once, || format!("not stable: {once} then {twice}"))?;
        let frame = protobuf::encode_watch_event("MODIFIED", &once).map_err(fail)?;
        let (kind, object, rest) = protobuf::decode_watch_event(&frame).map_err(fail)?;
        ensure(
            kind == "MODIFIED" && object == once && rest.is_empty(),
            || format!("watch frame round trip: {kind} {object}"),
        )
    });
}

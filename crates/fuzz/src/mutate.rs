//! Byte-level mutation of seed inputs, the havoc stage of a coverage-blind fuzzer: a seed
//! picked from the corpus, then a few edits (bit flips, interesting bytes, tokens from a
//! dictionary, deletions, duplications, truncation). proptest shrinks a failing input
//! towards fewer and smaller edits of an earlier seed.

use proptest::prelude::*;
use proptest::sample::{select, Index};

/// Fragments that tend to reach the corners of JSON, YAML and protobuf decoders.
const DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-0.0",
    b"9223372036854775808",
    b"18446744073709551616",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"\\",
    b"\"$patch\"",
    b"\"$retainKeys\"",
    b"\"metadata\"",
    b"\"name\"",
    b"\"namespace\"",
    b"\"apiVersion\"",
    b"\"kind\"",
    b"\"spec\"",
    b"\"status\"",
    b"\"labels\"",
    b"\"containers\"",
    b"\"resourceVersion\"",
    // YAML
    b"&a ",
    b"*a",
    b"!!binary ",
    b"!!int ",
    b"<<: ",
    b"? ",
    b"- ",
    b"---\n",
    b"...\n",
    b"\t",
    b"\r\n",
    b"|-\n",
    b"'",
    b"~",
    // protobuf
    b"k8s\x00",
    b"\x0a",
    b"\x12",
    b"\x1a",
    b"\x08",
    b"\xff\xff\xff\xff\x0f",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
];

/// Bytes that often mean something to a decoder.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}', b'\n', b' ',
];

/// One edit of a byte string; positions are relative so they fit any length.
#[derive(Debug, Clone)]
pub enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Interesting(Index, usize),
    InsertToken(Index, usize),
    Delete(Index, usize),
    Duplicate(Index, usize, Index),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        (any::<Index>(), 0..INTERESTING.len()).prop_map(|(i, b)| Edit::Interesting(i, b)),
        (any::<Index>(), 0..DICTIONARY.len()).prop_map(|(i, t)| Edit::InsertToken(i, t)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), 1usize..64, any::<Index>())
            .prop_map(|(i, n, at)| Edit::Duplicate(i, n, at)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

/// `bytes` with `edits` applied in order.
pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        // A position in 0..=len for insertions, in 0..len for changes.
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len + 1) };
        let on = |i: &Index| i.index(len.max(1));
        match e {
            Edit::FlipBit(i, bit) if len > 0 => bytes[on(i)] ^= 1 << bit,
            Edit::SetByte(i, b) if len > 0 => bytes[on(i)] = *b,
            Edit::Interesting(i, k) if len > 0 => bytes[on(i)] = INTERESTING[*k],
            Edit::InsertToken(i, t) => {
                let p = at(i);
                bytes.splice(p..p, DICTIONARY[*t].iter().copied());
            }
            Edit::Delete(i, n) if len > 0 => {
                let p = on(i);
                bytes.drain(p..(p + n).min(len));
            }
            Edit::Duplicate(i, n, to) if len > 0 => {
                let p = on(i);
                let chunk: Vec<u8> = bytes[p..(p + n).min(len)].to_vec();
                let q = at(to);
                bytes.splice(q..q, chunk);
            }
            Edit::Truncate(i) => bytes.truncate(at(i)),
            _ => {}
        }
    }
    bytes
}

/// A seed from `corpus` with up to `max_edits` edits (none at all a quarter of the time, so
/// the valid seeds themselves are tried too).
pub fn mutated(corpus: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop_oneof![
        1 => Just(Vec::new()),
        3 => proptest::collection::vec(edit(), 1..=max_edits.max(1)),
    ];
    (select(corpus), edits).prop_map(|(seed, edits)| apply(seed, &edits))
}

/// Arbitrary bytes, half the time short.
pub fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

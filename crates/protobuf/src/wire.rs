//! The protobuf wire format itself: varints, tags and length-delimited fields.
//!
//! Hand-written rather than taken from `prost` because the transcoder walks fields by
//! schema, not through generated structs, and needs only these few primitives; every read
//! is bounds-checked and returns [`Error::Truncated`] instead of panicking on short input.

use crate::Error;

/// The wire types Kubernetes messages use (proto2, no groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u64) -> Option<WireType> {
        match bits {
            0 => Some(WireType::Varint),
            1 => Some(WireType::Fixed64),
            2 => Some(WireType::Len),
            5 => Some(WireType::Fixed32),
            _ => None,
        }
    }

    fn bits(self) -> u64 {
        match self {
            WireType::Varint => 0,
            WireType::Fixed64 => 1,
            WireType::Len => 2,
            WireType::Fixed32 => 5,
        }
    }
}

/// One field as read from the wire, its payload not yet interpreted.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

/// A cursor over one message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(Error::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Malformed("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// The next field: its number and payload, or `None` at the end of the message.
    pub fn field(&mut self) -> Result<Option<(u32, Payload<'a>)>, Error> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| Error::Malformed(format!("invalid field number {}", key >> 3)))?;
        let wire = WireType::from_bits(key & 7).ok_or_else(|| {
            Error::Malformed(format!("field {tag} has unsupported wire type {}", key & 7))
        })?;
        let payload = match wire {
            WireType::Varint => Payload::Varint(self.varint()?),
            WireType::Fixed64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Payload::Fixed64(u64::from_le_bytes(a))
            }
            WireType::Fixed32 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Payload::Fixed32(u32::from_le_bytes(a))
            }
            WireType::Len => {
                let len = usize::try_from(self.varint()?).map_err(|_| Error::Truncated)?;
                Payload::Len(self.take(len)?)
            }
        };
        Ok(Some((tag, payload)))
    }
}

/// Appends protobuf fields to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn key(&mut self, tag: u32, wire: WireType) {
        self.varint((u64::from(tag) << 3) | wire.bits());
    }

    pub fn varint_field(&mut self, tag: u32, v: u64) {
        self.key(tag, WireType::Varint);
        self.varint(v);
    }

    pub fn bytes_field(&mut self, tag: u32, b: &[u8]) {
        self.key(tag, WireType::Len);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn double_field(&mut self, tag: u32, v: f64) {
        self.key(tag, WireType::Fixed64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Starts a length-delimited field whose content is written next; finish it with
    /// [`Writer::end_nested`] and the returned mark. Lengths are patched in place, so a
    /// nested message is written once rather than encoded twice to learn its size.
    pub fn begin_nested(&mut self, tag: u32) -> usize {
        self.key(tag, WireType::Len);
        // Reserve one byte for the length, the common case; grow it on finish if needed.
        self.buf.push(0);
        self.buf.len()
    }

    pub fn end_nested(&mut self, mark: usize) {
        let len = self.buf.len() - mark;
        let mut encoded = Vec::with_capacity(10);
        let mut v = len as u64;
        while v >= 0x80 {
            encoded.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        encoded.push(v as u8);
        let at = mark - 1;
        if encoded.len() == 1 {
            self.buf[at] = encoded[0];
        } else {
            self.buf.splice(at..mark, encoded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(Reader::new(&w.buf).varint().expect("varint"), v);
        }
    }

    #[test]
    fn nested_lengths_grow_past_one_byte() {
        let mut w = Writer::default();
        let mark = w.begin_nested(3);
        w.bytes_field(1, &[7u8; 200]);
        w.end_nested(mark);
        let mut r = Reader::new(&w.buf);
        let (tag, payload) = r.field().expect("field").expect("some");
        assert_eq!(tag, 3);
        let Payload::Len(inner) = payload else {
            panic!("not length-delimited")
        };
        assert_eq!(inner.len(), 203);
        assert!(r.is_empty());
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0x0a, 0x05, 1]).field().is_err());
        assert!(Reader::new(&[0x0f]).field().is_err());
        assert!(Reader::new(&[0x00]).field().is_err());
    }
}

//! Duplicate keys in a JSON request body, found as upstream's strict decoder
//! (sigs.k8s.io/json) finds them: `fieldValidation=Strict` refuses a body that repeats a
//! field (`strict decoding error: duplicate field "metadata.name"`), `Warn` (the default)
//! warns and keeps the last value, as every JSON decoder here does.
//!
//! One pass over the bytes that allocates only for keys that need unescaping and for the
//! path of a duplicate found; the typed decode that follows is untouched.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The paths of every repeated key in `body` (`data.a`, `spec.containers[0].name`), in
/// document order. A body that is not JSON has none here; its decoder reports it.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Scan {
        path: &Path::Root,
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

/// Where a value is, built on the stack and rendered only for a duplicate.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(parent, k) => write!(f, "{parent}.{k}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

struct Scan<'p, 'o> {
    path: &'p Path<'p>,
    out: &'o mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key, borrowed from the body unless it had escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for Scan<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let path = Path::Index(self.path, i);
            let seed = Scan {
                path: &path,
                out: &mut *self.out,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Objects are small: a linear scan beats hashing.
        let mut seen: Vec<Key<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let path = Path::Key(self.path, key.as_str());
            if seen.iter().any(|k| k.as_str() == key.as_str()) {
                self.out.push(path.to_string());
            }
            map.next_value_seed(Scan {
                path: &path,
                out: &mut *self.out,
            })?;
            seen.push(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeated_keys_with_their_paths() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"a":1,"b":2}"#, &[]),
            (r#"{"a":1,"a":2}"#, &["a"]),
            (
                r#"{"metadata":{"name":"x","name":"y"},"data":{"k":"1","k":"2","k":"3"}}"#,
                &["metadata.name", "data.k", "data.k"],
            ),
            (
                r#"{"spec":{"containers":[{"name":"a"},{"name":"b","image":"i","image":"j"}]}}"#,
                &["spec.containers[1].image"],
            ),
            // Escaped keys compare by their value.
            (r#"{"a\u0062":1,"ab":2}"#, &["ab"]),
            // Equal keys in different objects are not duplicates.
            (r#"{"a":{"x":1},"b":{"x":1}}"#, &[]),
            ("not json", &[]),
        ];
        for (body, want) in cases {
            assert_eq!(duplicate_fields(body.as_bytes()), *want, "{body}");
        }
    }
}

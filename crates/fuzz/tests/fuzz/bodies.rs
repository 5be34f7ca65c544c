//! JSON and YAML request bodies: the typed decode of every served kind's strategy (one
//! pass from bytes, and from a decoded value), the duplicate-key scan, and the stored form.

use fuzz::proptest::prelude::*;
use fuzz::proptest::test_runner::TestCaseError;
use fuzz::{check, ensure, gen, mutate, seeds};
use serde_json::Value;

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Every kind decodes a body or refuses it with a message. What decodes has a stored form
/// that decodes to itself with nothing unknown; the one-pass decode of the hot path and the
/// decode of a parsed value agree on every body without a repeated key.
#[test]
fn json_bodies() {
    let body = prop_oneof![
        3 => mutate::mutated(seeds::json_bodies(), 8),
        3 => gen::edited(seeds::objects().to_vec(), 4)
            .prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        1 => (gen::edited(seeds::objects().to_vec(), 2), 0usize..64)
            .prop_map(|(v, at)| gen::with_duplicate(&v, at).0.into_bytes()),
        1 => mutate::noise(),
    ];
    check("json", 6000, body, |bytes| {
        let duplicates = apiserver::duplicates::duplicate_fields(&bytes);
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        for r in apiserver::registry::all() {
            let one_pass = r.strategy.decode_json(&bytes);
            if let Ok(d) = &one_pass {
                let stored = r.strategy.encode(&d.object).map_err(fail)?;
                let again = r.strategy.decode_json(&stored).map_err(fail)?;
                ensure(again.object == d.object, || {
                    format!("{}: the stored form decodes differently", r.kind)
                })?;
                ensure(again.unknown_fields.is_empty(), || {
                    format!(
                        "{}: the stored form has unknown fields {:?}",
                        r.kind, again.unknown_fields
                    )
                })?;
            }
            // The handler decodes a body with a repeated key through a value (the last
            // occurrence wins); the one-pass decode is for the others.
            if let Some(v) = value.as_ref().filter(|_| duplicates.is_empty()) {
                match (&one_pass, r.strategy.decode(v.clone())) {
                    (Ok(a), Ok(b)) => {
                        ensure(a.object == b.object, || {
                            format!("{}: bytes and value decode differently", r.kind)
                        })?;
                        // In document order from bytes (a repeated one twice), in key
                        // order from a value; the handler sorts and dedups them.
                        let sorted = |f: &[String]| {
                            let mut f = f.to_vec();
                            f.sort();
                            f.dedup();
                            f
                        };
                        ensure(
                            sorted(&a.unknown_fields) == sorted(&b.unknown_fields),
                            || {
                                format!(
                                    "{}: unknown fields {:?} vs {:?}",
                                    r.kind, a.unknown_fields, b.unknown_fields
                                )
                            },
                        )?;
                    }
                    (Err(_), Err(_)) => {}
                    (a, b) => {
                        return Err(fail(format!(
                            "{}: bytes decode {}, value decode {}",
                            r.kind,
                            a.as_ref()
                                .map_or_else(|e| format!("fails ({e})"), |_| "succeeds".into()),
                            b.map_or_else(|e| format!("fails ({e})"), |_| "succeeds".into()),
                        )))
                    }
                }
            }
        }
        Ok(())
    });
}

/// YAML bodies become the JSON value a JSON client would have sent, or an error; that value
/// reads back the same through YAML, and every kind decodes it or refuses it.
#[test]
fn yaml_bodies() {
    let body = prop_oneof![
        3 => mutate::mutated(seeds::yaml_bodies(), 8),
        2 => gen::edited(seeds::objects().to_vec(), 4)
            .prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default().into_bytes()),
        1 => mutate::noise(),
    ];
    check("yaml", 8000, body, |bytes| {
        let Ok(value) = serde_yaml::from_slice::<Value>(&bytes) else {
            return Ok(());
        };
        let text = serde_yaml::to_string(&value).map_err(fail)?;
        let back: Value = serde_yaml::from_str(&text).map_err(fail)?;
        ensure(back == value, || {
            format!("YAML round trip changed {value} into {back}")
        })?;
        for r in apiserver::registry::all() {
            let _ = r.strategy.decode(value.clone());
        }
        Ok(())
    });
}

/// A repeated key is found and named as upstream's strict decoder names it (the body
/// `fieldValidation=Strict` refuses), wherever it is; a body without one has none.
#[test]
fn duplicate_keys() {
    let input = (gen::edited(seeds::objects().to_vec(), 3), 0usize..64);
    check("duplicates", 4000, input, |(value, target)| {
        let clean = serde_json::to_vec(&value).map_err(fail)?;
        let found = apiserver::duplicates::duplicate_fields(&clean);
        ensure(found.is_empty(), || {
            format!("duplicates {found:?} in a body without any")
        })?;
        let (body, duplicated) = gen::with_duplicate(&value, target);
        let found = apiserver::duplicates::duplicate_fields(body.as_bytes());
        match duplicated {
            Some(path) => ensure(found == vec![path.clone()], || {
                format!("{path} repeated, found {found:?} in {body}")
            }),
            None => ensure(found.is_empty(), || format!("found {found:?} in {body}")),
        }
    });
}

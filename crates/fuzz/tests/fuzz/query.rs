//! Query parameters and request routing: any method, path and query string routes to a
//! typed request or an error; every parameter reader returns a value or a 400; continue
//! tokens decode or are refused, and what the list handler writes reads back.

use apiserver::request::{route, Query};
use fuzz::proptest::prelude::*;
use fuzz::proptest::sample::select;
use fuzz::{check, ensure, gen};

fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        select(vec![
            http::Method::GET,
            http::Method::POST,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
            http::Method::HEAD,
            http::Method::OPTIONS,
        ]),
        "[A-Z]{1,8}".prop_filter_map("a method", |m| http::Method::from_bytes(m.as_bytes()).ok()),
    ]
}

#[test]
fn routes_and_query_parameters() {
    let raw_path = any::<String>().prop_map(|s| format!("/{s}"));
    let path = prop_oneof![4 => gen::path(), 1 => raw_path];
    check(
        "query",
        20000,
        (method(), path, gen::query_string()),
        |(method, path, raw)| {
            let query = Query::parse(Some(&raw));
            let _ = route(&method, &path, &query);
            for key in [
                "limit",
                "timeoutSeconds",
                "gracePeriodSeconds",
                "tailLines",
                "resourceVersion",
            ] {
                let _ = query.int(key);
            }
            let _ = (
                query.dry_run(),
                query.field_validation(),
                query.watch(),
                query.flag("pretty"),
            );
            if let Some(token) = query.get("continue") {
                let _ = apiserver::fuzzing::decode_continue(token);
            }
            Ok(())
        },
    );
}

#[test]
fn continue_tokens() {
    let written = (any::<i64>(), any::<String>());
    check(
        "continue",
        10000,
        (gen::continue_token(), written),
        |(token, (rev, key))| {
            let _ = apiserver::fuzzing::decode_continue(&token);
            let token = apiserver::fuzzing::encode_continue(rev, &key);
            let read = apiserver::fuzzing::decode_continue(&token);
            ensure(
                matches!(&read, Ok((r, k)) if *r == rev && *k == key),
                || format!("({rev}, {key:?}) wrote {token:?}, read back as {read:?}"),
            )
        },
    );
}

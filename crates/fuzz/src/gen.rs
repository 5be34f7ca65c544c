//! Structure-aware generators: JSON values and edits of seed objects (a field set to a
//! value of another type, removed, added), label and field selectors built from their
//! grammar, query strings from the parameters the handlers read, and request paths from the
//! served resources.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Value};

use crate::seeds;

/// Strings that reach corners: empty, long, non-ASCII, control characters, JSON and
/// selector syntax, numbers in disguise.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9]([-a-z0-9.]{0,12}[a-z0-9])?",
        1 => Just(String::new()),
        1 => Just("x".repeat(300)),
        1 => select(vec![
            "é", "世界", "\u{0}", "a b", "-x", "x-", "A_B", "a/b", "a.b/c", "..", "%2F", "\\", "\"",
            "=", ",", "!", "(", ")", "1e3", "0x10", "true", "null", "2026-03-01T10:11:12Z",
            "kube-system", "default", "system:masters", "kubernetes.io/x",
        ])
        .prop_map(str::to_string),
        2 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}

/// An arbitrary JSON value, nested a few levels.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        select(vec![
            0i64,
            -1,
            1,
            2,
            420,
            i64::MAX,
            i64::MIN,
            1 << 31,
            1 << 53
        ])
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The field names that occur in the seed objects and patches, and a few more.
fn field_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        fn walk(v: &Value, out: &mut BTreeSet<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        out.insert(k.clone());
                        walk(v, out);
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = BTreeSet::new();
        for o in seeds::objects() {
            walk(o, &mut out);
        }
        for p in seeds::strategic_patches() {
            walk(&p, &mut out);
        }
        out.extend(["$patch", "x-unknown", "", "metadata", "generateName"].map(String::from));
        out.into_iter().collect()
    })
}

pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(field_names()),
        1 => tricky_string(),
    ]
}

/// One edit of a JSON document at a node picked by `Index`.
#[derive(Debug, Clone)]
pub enum ValueEdit {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, String, Value),
    /// The node's value, as a string (numbers and booleans in quotes, and back).
    Retype(Index),
}

fn value_edit() -> impl Strategy<Value = ValueEdit> {
    prop_oneof![
        (any::<Index>(), json_value()).prop_map(|(i, v)| ValueEdit::Replace(i, v)),
        any::<Index>().prop_map(ValueEdit::Remove),
        (any::<Index>(), field_name(), json_value())
            .prop_map(|(i, k, v)| ValueEdit::Insert(i, k, v)),
        any::<Index>().prop_map(ValueEdit::Retype),
    ]
}

/// Every node's path in `v`, the root first.
fn paths(v: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(PathStep::Key(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(PathStep::At(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    At(usize),
}

fn node_mut<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match (step, cur) {
            (PathStep::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (PathStep::At(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// `doc` with `edits` applied in order.
pub fn apply_edits(mut doc: Value, edits: &[ValueEdit]) -> Value {
    for e in edits {
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        let pick = |i: &Index| all[i.index(all.len())].clone();
        match e {
            ValueEdit::Replace(i, v) => {
                if let Some(n) = node_mut(&mut doc, &pick(i)) {
                    *n = v.clone();
                }
            }
            ValueEdit::Remove(i) => {
                let path = pick(i);
                if let Some((last, parent)) = path.split_last() {
                    match (last, node_mut(&mut doc, parent)) {
                        (PathStep::Key(k), Some(Value::Object(m))) => {
                            m.remove(k);
                        }
                        (PathStep::At(i), Some(Value::Array(a))) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            ValueEdit::Insert(i, k, v) => match node_mut(&mut doc, &pick(i)) {
                Some(Value::Object(m)) => {
                    m.insert(k.clone(), v.clone());
                }
                Some(Value::Array(a)) => a.push(v.clone()),
                _ => {}
            },
            ValueEdit::Retype(i) => {
                if let Some(n) = node_mut(&mut doc, &pick(i)) {
                    *n = match n.take() {
                        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                        Value::Object(_) => json!([]),
                        Value::Array(_) => json!({}),
                        other => Value::String(other.to_string()),
                    };
                }
            }
        }
    }
    doc
}

/// A seed from `seeds` with up to `max` structural edits (none a quarter of the time).
pub fn edited(seeds: Vec<Value>, max: usize) -> impl Strategy<Value = Value> {
    let edits = prop_oneof![
        1 => Just(Vec::new()),
        3 => proptest::collection::vec(value_edit(), 1..=max.max(1)),
    ];
    (select(seeds), edits).prop_map(|(seed, edits)| apply_edits(seed, &edits))
}

/// `v` as JSON text with the first key of the object at `target` written twice (its value
/// again), and the path a strict decoder names for that key (`spec.containers[0].name`).
pub fn with_duplicate(v: &Value, target: usize) -> (String, Option<String>) {
    /// Where a value is: the root, or a path a strict decoder would print.
    fn key_path(path: Option<&str>, k: &str) -> String {
        match path {
            None => k.to_string(),
            Some(p) => format!("{p}.{k}"),
        }
    }
    fn write(
        v: &Value,
        path: Option<&str>,
        seen: &mut usize,
        target: usize,
        out: &mut String,
        hit: &mut Option<String>,
    ) {
        match v {
            Value::Object(m) => {
                let here = *seen;
                *seen += 1;
                out.push('{');
                for (i, (k, child)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(child, Some(&key_path(path, k)), seen, target, out, hit);
                }
                if here == target {
                    if let Some((k, child)) = m.iter().next() {
                        out.push(',');
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        out.push_str(&child.to_string());
                        *hit = Some(key_path(path, k));
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, child) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let at = format!("{}[{i}]", path.unwrap_or(""));
                    write(child, Some(&at), seen, target, out, hit);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let (mut out, mut hit) = (String::new(), None);
    write(v, None, &mut 0, target, &mut out, &mut hit);
    (out, hit)
}

// --- selectors ---------------------------------------------------------------------------

/// A label key: a qualified name, sometimes prefixed, sometimes not valid at all.
fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]([-a-z0-9_.]{0,10}[a-z0-9])?",
        2 => ("[a-z]{1,8}(\\.[a-z]{1,5}){0,2}", "[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?")
            .prop_map(|(p, n)| format!("{p}/{n}")),
        1 => tricky_string(),
    ]
}

/// A label value: valid (empty included) or not.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "([A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?)?",
        1 => "-?[0-9]{1,20}",
        1 => tricky_string(),
    ]
}

/// One requirement of a label selector in its text form, spacing varied.
fn label_requirement_text() -> impl Strategy<Value = String> {
    let space = select(vec!["", " ", "  ", "\t"]);
    (
        label_key(),
        0usize..9,
        proptest::collection::vec(label_value(), 0..4),
        space,
    )
        .prop_map(|(key, op, values, sp)| match op {
            0 => key,
            1 => format!("!{key}"),
            2 => format!(
                "{key}{sp}={sp}{}",
                values.first().cloned().unwrap_or_default()
            ),
            3 => format!("{key}=={}", values.first().cloned().unwrap_or_default()),
            4 => format!(
                "{key}{sp}!={sp}{}",
                values.first().cloned().unwrap_or_default()
            ),
            5 => format!("{key} in{sp}({})", values.join(",")),
            6 => format!("{key} notin ({})", values.join(&format!(",{sp}"))),
            7 => format!("{key}>{}", values.first().cloned().unwrap_or_default()),
            _ => format!("{key}{sp}<{}", values.first().cloned().unwrap_or_default()),
        })
}

/// A label selector's text: built from its grammar, a seed, or a mutation of either.
pub fn label_selector_text() -> impl Strategy<Value = String> {
    let built =
        proptest::collection::vec(label_requirement_text(), 0..5).prop_map(|reqs| reqs.join(","));
    prop_oneof![
        4 => built,
        1 => select(seeds::LABEL_SELECTORS).prop_map(str::to_string),
        2 => crate::mutate::mutated(
            seeds::LABEL_SELECTORS.iter().map(|s| s.as_bytes().to_vec()).collect(), 4
        )
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A field selector's text: fields the kinds know (and others), values with escapes.
pub fn field_selector_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        4 => select(api::selector::POD_FIELDS.iter().chain(api::selector::EVENT_FIELDS).copied().collect::<Vec<_>>())
            .prop_map(str::to_string),
        1 => Just("spec.host".to_string()),
        1 => tricky_string(),
    ];
    let value = prop_oneof![
        3 => "[-a-z0-9.]{0,10}",
        1 => tricky_string(),
    ]
    .prop_map(|v| {
        v.replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=")
    });
    let term =
        (field, select(vec!["=", "==", "!="]), value).prop_map(|(f, op, v)| format!("{f}{op}{v}"));
    prop_oneof![
        4 => proptest::collection::vec(term, 0..4).prop_map(|t| t.join(",")),
        1 => select(seeds::FIELD_SELECTORS).prop_map(str::to_string),
        2 => crate::mutate::mutated(
            seeds::FIELD_SELECTORS.iter().map(|s| s.as_bytes().to_vec()).collect(), 4
        )
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

// --- query strings and paths ------------------------------------------------------------

/// A `continue` token: well-formed (base64 of the JSON the list handler writes), with odd
/// contents, or garbage.
pub fn continue_token() -> impl Strategy<Value = String> {
    use base64::Engine;
    let b64 = |v: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    prop_oneof![
        (any::<i64>(), tricky_string()).prop_map(move |(rv, start)| {
            b64(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("/registry/configmaps/default/{start}")})
                .to_string()
                .into_bytes())
        }),
        json_value().prop_map(move |v| b64(v.to_string().into_bytes())),
        tricky_string(),
    ]
}

/// A value for the query parameter `key`, chosen for what its reader expects.
fn query_value(key: &'static str) -> BoxedStrategy<String> {
    let number = prop_oneof![
        select(vec![
            "0",
            "1",
            "-1",
            "5",
            "500",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "1.5",
            "1e3",
            "",
            " 1",
            "+1",
            "0x10"
        ])
        .prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    match key {
        "labelSelector" => label_selector_text().boxed(),
        "fieldSelector" => field_selector_text().boxed(),
        "continue" => continue_token().boxed(),
        "limit" | "timeoutSeconds" | "gracePeriodSeconds" | "tailLines" | "sinceSeconds"
        | "limitBytes" | "resourceVersion" => number.boxed(),
        "resourceVersionMatch" => select(vec!["Exact", "NotOlderThan", "exact", ""])
            .prop_map(str::to_string)
            .boxed(),
        "watch"
        | "allowWatchBookmarks"
        | "sendInitialEvents"
        | "pretty"
        | "verbose"
        | "previous"
        | "follow"
        | "timestamps" => select(vec!["true", "false", "1", "0", "", "yes"])
            .prop_map(str::to_string)
            .boxed(),
        "dryRun" => select(vec!["All", "all", "", "None"])
            .prop_map(str::to_string)
            .boxed(),
        "fieldValidation" => select(vec!["Strict", "Warn", "Ignore", "strict", ""])
            .prop_map(str::to_string)
            .boxed(),
        "propagationPolicy" => select(vec!["Foreground", "Background", "Orphan", "x"])
            .prop_map(str::to_string)
            .boxed(),
        "includeObject" => select(vec!["Object", "Metadata", "None", "x"])
            .prop_map(str::to_string)
            .boxed(),
        "sinceTime" => select(vec!["2026-03-01T10:11:12Z", "yesterday", ""])
            .prop_map(str::to_string)
            .boxed(),
        _ => tricky_string().boxed(),
    }
}

const QUERY_KEYS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "watch",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "dryRun",
    "fieldValidation",
    "gracePeriodSeconds",
    "propagationPolicy",
    "pretty",
    "includeObject",
    "container",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
    "previous",
    "follow",
    "timestamps",
    "verbose",
    "x-unknown",
];

/// One `key=value` pair, percent-encoded or not, sometimes malformed.
fn query_pair() -> impl Strategy<Value = String> {
    (select(QUERY_KEYS), any::<bool>()).prop_flat_map(|(k, encode)| {
        query_value(k).prop_map(move |v| {
            if encode {
                let enc = |s: &str| {
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                };
                format!("{}={}", enc(k), enc(&v))
            } else {
                format!("{k}={v}")
            }
        })
    })
}

/// A raw query string (what follows `?`), from parameters the handlers read and noise.
pub fn query_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(query_pair(), 0..4).prop_map(|p| p.join("&")),
        1 => select(vec!["&&", "=", "a", "%", "%zz", "watch", "=1&=2", "limit=%ff%fe"]).prop_map(str::to_string),
        1 => tricky_string(),
    ]
}

/// A path segment that is a name, a namespace, or something else.
fn name_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["default", "kube-system", "fuzz", "web", "w1", "node-1", "c1", "db",
                         "builder", "tmpl", "system-node-critical", "idle", "web.17f3a"])
            .prop_map(str::to_string),
        1 => tricky_string().prop_map(|s| {
            percent_encoding::utf8_percent_encode(&s, percent_encoding::CONTROLS).to_string().replace(['/', '?', '#', ' '], "-")
        }),
    ]
}

/// A request path: the served resources and their subresources, the discovery, OpenAPI,
/// version and health paths, and near misses of each.
pub fn path() -> impl Strategy<Value = String> {
    let resources: Vec<(String, &'static str, bool, Vec<&'static str>)> =
        apiserver::registry::all()
            .iter()
            .map(|r| {
                let prefix = if r.group.is_empty() {
                    format!("/api/{}", r.version)
                } else {
                    format!("/apis/{}/{}", r.group, r.version)
                };
                (
                    prefix,
                    r.plural,
                    r.namespaced,
                    r.subresources.iter().map(|s| s.name).collect(),
                )
            })
            .collect();
    let resource_path = (
        select(resources),
        name_segment(),
        name_segment(),
        0usize..4,
        any::<Index>(),
    )
        .prop_map(
            |((prefix, plural, namespaced, subs), ns, name, shape, sub)| {
                let scope = if namespaced {
                    format!("/namespaces/{ns}")
                } else {
                    String::new()
                };
                let sub = if subs.is_empty() {
                    "status"
                } else {
                    subs[sub.index(subs.len())]
                };
                match shape {
                    0 => format!("{prefix}{scope}/{plural}"),
                    1 => format!("{prefix}{scope}/{plural}/{name}"),
                    2 => format!("{prefix}{scope}/{plural}/{name}/{sub}"),
                    _ => format!("{prefix}/{plural}"),
                }
            },
        );
    let other = select(vec![
        "/api",
        "/api/v1",
        "/api/v2",
        "/apis",
        "/apis/coordination.k8s.io",
        "/apis/coordination.k8s.io/v1",
        "/apis/example.com/v1",
        "/version",
        "/healthz",
        "/livez",
        "/readyz",
        "/readyz/etcd",
        "/healthz/nope",
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/api/v1",
        "/openapi/v3/apis/nope/v1",
        "/",
        "//",
        "/api/v1/namespaces",
        "/api/v1/namespaces/default/status",
        "/api/v1/namespaces/fuzz/finalize",
        "/api/v1/namespaces/default/pods/web/log",
        "/api/v1/namespaces/default/pods/web/exec",
        "/peapod.io/v1/node-serving-certificate",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        6 => resource_path,
        2 => other,
        1 => (select(vec!["/api/v1/", "/apis/", "/"]), tricky_string())
            .prop_map(|(p, s)| format!("{p}{}", s.replace(['?', '#'], "")))
            .prop_filter("a valid URI path", |p| p.parse::<http::Uri>().is_ok()),
    ]
}

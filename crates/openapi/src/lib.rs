//! OpenAPI documents (v2 and v3) for the kinds peapod serves, as kube-apiserver publishes them.
//!
//! Owns: the `/openapi/v3` index, the per-group-version v3 documents and the
//! `/openapi/v2` Swagger document — their schemas (generated from
//! k8s-openapi's `JsonSchema` impls, which carry upstream's names and
//! descriptions), the `x-kubernetes-*` extensions kubectl reads (kinds,
//! strategic-merge-patch keys, list types), and the REST paths with their
//! operations and parameters. kubectl uses these for `kubectl explain`, to
//! decide whether the server validates fields (`--validate=strict` sends
//! `fieldValidation=Strict` when the PATCH operation of the kind lists that
//! parameter) and to build strategic merge patches in `kubectl apply`.
//!
//! Does not own: HTTP serving (content negotiation, caching headers, the
//! `?hash=` query), discovery documents, or which kinds the API server
//! actually registers — the table in `model.rs` must be kept in step with the
//! API server by hand.
//!
//! May depend on: k8s-openapi (with its `schemars` feature), serde_json, sha2.
//! Nothing else in the workspace.
//!
//! Every document is built once, on first use, and cached as serialized JSON.

mod extensions;
mod model;
mod params;
mod paths;
mod schemas;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use crate::model::GROUP_VERSIONS;
use crate::paths::Document;
use crate::schemas::Dialect;

/// One serialized v3 document and the digest its index entry carries.
struct V3Document {
    bytes: Arc<Vec<u8>>,
    hash: String,
}

/// The v3 documents by index path (`api/v1`, `apis/coordination.k8s.io`, ...).
fn v3_documents() -> &'static BTreeMap<String, V3Document> {
    static DOCS: OnceLock<BTreeMap<String, V3Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        build_v3()
            .into_iter()
            .map(|(path, doc)| {
                let bytes = serde_json::to_vec(&doc).expect("a JSON value serializes");
                let hash = hex_upper(&Sha512::digest(&bytes));
                let doc = V3Document {
                    bytes: Arc::new(bytes),
                    hash,
                };
                (path, doc)
            })
            .collect()
    })
}

/// Builds every v3 document, keyed as kube-apiserver keys its index: the
/// discovery roots `api` and `apis`, each group `apis/<group>`, and each
/// group-version `api/v1` / `apis/<group>/<version>`.
fn build_v3() -> BTreeMap<String, Value> {
    let mut docs = BTreeMap::new();

    let mut api = Document::new(Dialect::V3);
    api.add_core_versions();
    docs.insert("api".to_owned(), api.render());

    let mut apis = Document::new(Dialect::V3);
    apis.add_group_list();
    docs.insert("apis".to_owned(), apis.render());

    for gv in GROUP_VERSIONS {
        if !gv.group.is_empty() && !docs.contains_key(&format!("apis/{}", gv.group)) {
            let mut group = Document::new(Dialect::V3);
            group.add_group(gv.group);
            docs.insert(format!("apis/{}", gv.group), group.render());
        }
        let mut doc = Document::new(Dialect::V3);
        doc.add_group_version(gv);
        docs.insert(gv.index_path(), doc.render());
    }
    docs
}

/// Builds the single v2 document holding every path and definition.
fn build_v2() -> Value {
    let mut doc = Document::new(Dialect::V2);
    doc.add_core_versions();
    doc.add_group_list();
    for gv in GROUP_VERSIONS {
        if !gv.group.is_empty() {
            doc.add_group(gv.group);
        }
        doc.add_group_version(gv);
    }
    doc.render()
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The `/openapi/v3` index:
/// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"}, ...}}`,
/// with an entry for `api`, `apis`, every `apis/<group>` and every
/// group-version. `<HASH>` is the upper-case hex SHA-512 of the document, as
/// upstream publishes; clients cache a document under its URL, so a changed
/// document gets a new URL.
pub fn v3_index() -> Value {
    let paths: serde_json::Map<String, Value> = v3_documents()
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The serialized v3 document for one index path, e.g. `api/v1` or
/// `apis/coordination.k8s.io/v1` (no leading slash, no query). `None` if
/// the path is not in the index.
pub fn v3_document(path: &str) -> Option<Arc<Vec<u8>>> {
    v3_documents().get(path).map(|d| Arc::clone(&d.bytes))
}

/// The hash that [`v3_index`] puts in the URL of a document, for the server
/// to compare with a request's `?hash=` and to use as an ETag.
pub fn v3_document_hash(path: &str) -> Option<&'static str> {
    v3_documents().get(path).map(|d| d.hash.as_str())
}

/// The serialized `/openapi/v2` Swagger document.
pub fn v2_document() -> Arc<Vec<u8>> {
    static DOC: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    Arc::clone(DOC.get_or_init(|| {
        Arc::new(serde_json::to_vec(&build_v2()).expect("a JSON value serializes"))
    }))
}

#[cfg(test)]
mod tests;

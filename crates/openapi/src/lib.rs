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
//! parameter) and to build strategic merge patches in `kubectl apply`; the
//! API server reads the same patch extensions for its own strategic merge.
//!
//! Does not own: HTTP serving (content negotiation, caching headers, the
//! `?hash=` query), discovery documents, or which kinds are served — the caller
//! hands in the served kinds ([`ServedKind`], one per resource, each with its
//! schemars [`SchemaFn`]) and gets [`Documents`] back.
//!
//! May depend on: k8s-openapi (with its `schemars` feature), serde_json, sha2.
//! Nothing else in the workspace.

mod extensions;
mod model;
mod params;
mod paths;
mod schemas;
#[rustfmt::skip]
mod upstream_extensions;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use sha2::{Digest, Sha512};

pub use crate::model::{def, ListSchema, SchemaFn, ServedKind, Subresource, Verbs};
use crate::model::{group_versions, GroupVersion};
use crate::paths::Document;
use crate::schemas::{Dialect, Schemas};

/// One serialized v3 document and the digest its index entry carries.
struct V3Document {
    bytes: Arc<Vec<u8>>,
    hash: String,
}

/// The documents of one set of served kinds. The v3 documents are built with it; the v2
/// one, which only `kubectl` < 1.27 and a few clients ask for, on first use.
pub struct Documents {
    group_versions: Vec<GroupVersion>,
    v3: BTreeMap<String, V3Document>,
    v2: OnceLock<Arc<Vec<u8>>>,
}

impl Documents {
    /// The documents describing exactly `kinds`.
    pub fn new(kinds: Vec<ServedKind>) -> Documents {
        let group_versions = group_versions(&kinds);
        let v3 = build_v3(&group_versions)
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
            .collect();
        Documents {
            group_versions,
            v3,
            v2: OnceLock::new(),
        }
    }

    /// The `/openapi/v3` index:
    /// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"}, ...}}`,
    /// with an entry for `api`, `apis`, every `apis/<group>` and every
    /// group-version. `<HASH>` is the upper-case hex SHA-512 of the document, as
    /// upstream publishes; clients cache a document under its URL, so a changed
    /// document gets a new URL.
    pub fn v3_index(&self) -> Value {
        let paths: serde_json::Map<String, Value> = self
            .v3
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
    pub fn v3_document(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        self.v3.get(path).map(|d| Arc::clone(&d.bytes))
    }

    /// The hash that [`Documents::v3_index`] puts in the URL of a document, for the
    /// server to compare with a request's `?hash=` and to use as an ETag.
    pub fn v3_document_hash(&self, path: &str) -> Option<&str> {
        self.v3.get(path).map(|d| d.hash.as_str())
    }

    /// The serialized `/openapi/v2` Swagger document.
    pub fn v2_document(&self) -> Arc<Vec<u8>> {
        Arc::clone(self.v2.get_or_init(|| {
            Arc::new(
                serde_json::to_vec(&build_v2(&self.group_versions))
                    .expect("a JSON value serializes"),
            )
        }))
    }
}

/// The Swagger 2 definitions of `roots` and everything they reference, with the
/// extensions the documents carry (patch strategies and merge keys, list types):
/// what the API server reads its strategic-merge schema from.
pub fn definitions(roots: &[SchemaFn]) -> serde_json::Map<String, Value> {
    let mut schemas = Schemas::new(Dialect::V2);
    for root in roots {
        schemas.add(*root);
    }
    schemas.finish()
}

/// The definitions whose `required` list the documents publish differently from
/// k8s-openapi's (upstream's, which a protobuf or JSON decoder's zero handling follows):
/// (definition, required fields).
pub fn required_overrides() -> &'static [(&'static str, &'static [&'static str])] {
    extensions::REQUIRED
}

/// Builds every v3 document, keyed as kube-apiserver keys its index: the
/// discovery roots `api` and `apis`, each group `apis/<group>`, and each
/// group-version `api/v1` / `apis/<group>/<version>`.
fn build_v3(group_versions: &[GroupVersion]) -> BTreeMap<String, Value> {
    let mut docs = BTreeMap::new();

    let mut api = Document::new(Dialect::V3);
    api.add_core_versions();
    docs.insert("api".to_owned(), api.render());

    let mut apis = Document::new(Dialect::V3);
    apis.add_group_list();
    docs.insert("apis".to_owned(), apis.render());

    for gv in group_versions {
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
fn build_v2(group_versions: &[GroupVersion]) -> Value {
    let mut doc = Document::new(Dialect::V2);
    doc.add_core_versions();
    doc.add_group_list();
    for gv in group_versions {
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

#[cfg(test)]
mod tests;

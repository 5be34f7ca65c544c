//! LIST with selectors, pagination (limit/continue) and resourceVersion semantics.

use base64::Engine;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use store::{KeyValue, ListOptions, Revision};

use super::{partial_metadata, Call, Output};
use crate::body::Body;
use crate::errors::ApiError;
use crate::filter::Filter;
use crate::registry::Resource;
use crate::{object, table};

/// Most keys one store read returns; longer lists are read in chunks at one revision.
const STORE_CHUNK: usize = 1000;

/// One page of a list: the matching objects, the revision it was read at, and where the
/// next page starts.
pub struct Page {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

pub async fn list(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let filter = Filter::from_query(&call.query, resource)?;
    let page = read_page(&call, resource, &filter).await?;
    let output = call.accept();
    let body = match output {
        Output::Json | Output::Protobuf => encode_list(resource, &page)?,
        Output::Table | Output::PartialObjectMetadata => {
            let mut objs = Vec::with_capacity(page.items.len());
            for kv in &page.items {
                let v = object::parse(kv).map_err(|e| ApiError::Internal(e.to_string()))?;
                objs.push(resource.to_served(v)?);
            }
            let rv = page.revision.to_string();
            if output == Output::Table {
                table::table(
                    resource,
                    &objs,
                    &rv,
                    &call.query,
                    page.continue_token.as_deref(),
                )?
            } else {
                let mut meta = json!({ "resourceVersion": rv });
                if let Some(c) = &page.continue_token {
                    meta["continue"] = json!(c);
                }
                serde_json::to_vec(&json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": objs.iter().map(partial_metadata).collect::<Vec<_>>(),
                }))
                .map_err(|e| ApiError::Internal(e.to_string()))?
            }
        }
    };
    Ok(super::encoded(output, StatusCode::OK, body, &[]))
}

/// Reads the page a list request asks for.
pub async fn read_page(
    call: &Call,
    resource: &'static Resource,
    filter: &Filter,
) -> Result<Page, ApiError> {
    let query = &call.query;
    let limit = query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize)
        .unwrap_or(0);
    let rv = query.non_empty("resourceVersion");
    let rv_match = query.non_empty("resourceVersionMatch");
    let prefix = resource.scope_prefix(call.namespace());

    let (mut start_after, mut revision) = match query.non_empty("continue") {
        Some(token) => {
            if rv.is_some_and(|v| v != "0") {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let (rev, start) = decode_continue(token)?;
            if !start.starts_with(&prefix) {
                return Err(ApiError::BadRequest(
                    "continue key is not valid: inconsistent key".into(),
                ));
            }
            (Some(start), rev)
        }
        None => {
            let requested = match rv {
                None => None,
                Some(v) => Some(v.parse::<Revision>().map_err(|_| {
                    ApiError::BadRequest(format!("invalid resource version: {v:?}"))
                })?),
            };
            match (rv_match, requested) {
                (Some(_), None) => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                    ))
                }
                (Some("Exact"), Some(0)) => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
                    ))
                }
                (Some("Exact"), Some(r)) => (None, r),
                (Some("NotOlderThan") | None, Some(r)) if r > 0 => {
                    let current = call.server.store.current_revision().await?;
                    if r > current {
                        return Err(ApiError::Timeout(format!(
                            "Too large resource version: {r}, current: {current}"
                        )));
                    }
                    (None, 0)
                }
                (Some("NotOlderThan") | None, _) => (None, 0),
                (Some(other), _) => {
                    return Err(ApiError::BadRequest(format!(
                        "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )))
                }
            }
        }
    };

    // A single-object field selector reads one key instead of the whole prefix.
    let exact_key = filter
        .name()
        .filter(|_| resource.namespaced == call.namespace().is_some() || !resource.namespaced)
        .map(|n| resource.key(call.namespace(), &n));

    let mut items = Vec::new();
    let mut remaining;
    loop {
        // Bounded store reads: a page asks for what it still needs (unfiltered) or a chunk.
        let batch = if limit > 0 && filter.is_empty() {
            (limit - items.len()).min(STORE_CHUNK)
        } else {
            STORE_CHUNK
        };
        let res = call
            .server
            .store
            .list(
                &prefix,
                ListOptions {
                    start_after: start_after.clone(),
                    limit: batch,
                    revision,
                },
            )
            .await
            .map_err(|e| match e {
                store::Error::Compacted { .. } if query.non_empty("continue").is_some() => ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                ),
                other => other.into(),
            })?;
        revision = res.revision;
        remaining = res.remaining;
        let mut last = None;
        let fetched = res.items.len();
        for (i, kv) in res.items.into_iter().enumerate() {
            last = Some(kv.key.clone());
            let keep = match &exact_key {
                Some(k) => &kv.key == k && (filter.is_empty() || matches(filter, &kv)),
                None => filter.is_empty() || matches(filter, &kv),
            };
            if keep {
                items.push(kv);
            }
            if limit > 0 && items.len() == limit {
                remaining += fetched - i - 1;
                break;
            }
        }
        start_after = last;
        if remaining == 0 || (limit > 0 && items.len() >= limit) || start_after.is_none() {
            break;
        }
    }
    let continue_token = if limit > 0 && remaining > 0 {
        start_after.as_deref().map(|k| encode_continue(revision, k))
    } else {
        None
    };
    Ok(Page {
        items,
        revision,
        continue_token,
        remaining: (filter.is_empty() && limit > 0 && remaining > 0).then_some(remaining),
    })
}

fn matches(filter: &Filter, kv: &KeyValue) -> bool {
    match object::parse(kv) {
        Ok(v) => filter.matches(&v),
        Err(_) => false,
    }
}

/// The list body, assembled from the stored bytes without parsing them.
pub fn encode_list(resource: &Resource, page: &Page) -> Result<Vec<u8>, ApiError> {
    let mut meta = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let total: usize = page.items.iter().map(|kv| kv.value.len() + 32).sum();
    let mut out = Vec::with_capacity(total + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            resource.list_kind(),
            resource.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, kv) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if resource.conversion.is_some() {
            out.extend_from_slice(&resource.to_served_bytes(object::render(kv))?);
        } else {
            out.extend_from_slice(&object::render(kv));
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

pub(crate) fn encode_continue(rev: Revision, start_after: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rev, "start": start_after });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

pub(crate) fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::BadRequest("continue key is not valid".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    Ok((rev, start))
}

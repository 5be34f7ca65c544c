//! PATCH: JSON patch, merge patch and strategic merge patch of an object or its status.

use http::{Response, StatusCode};
use serde_json::Value;

use std::sync::OnceLock;

use api::patch::PatchSchema;

use super::update::{check_name, guaranteed_update, replace, Target};
use super::{object_response, Call};
use crate::body::Body;
use crate::errors::ApiError;
use crate::object;
use crate::registry;
use crate::request::FieldValidation;

/// The strategic-merge schema of every served kind, read from the OpenAPI definitions
/// (patch strategies and merge keys) the documents publish, once.
fn patch_schema() -> &'static PatchSchema {
    static SCHEMA: OnceLock<PatchSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let roots: Vec<openapi::SchemaFn> = registry::all().iter().map(|r| r.schema).collect();
        PatchSchema::from_definitions(&openapi::definitions(&roots))
    })
}

enum PatchType {
    Json,
    Merge,
    Strategic,
}

pub async fn patch(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let content_type = call
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let kind = match content_type.as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            return Err(ApiError::UnsupportedMediaType(
                "server-side apply is not supported yet; use client-side `kubectl apply`".into(),
            ))
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
            )))
        }
    };
    let patch_value: Value = match kind {
        PatchType::Json => Value::Null,
        _ => serde_json::from_slice(&call.body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
    };
    if !matches!(kind, PatchType::Json) && !patch_value.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request was not a JSON object".into(),
        ));
    }
    let dry_run = call.query.dry_run()?;
    let validation = call.query.field_validation()?;
    let target = Target::of(call.subresource());
    let name = call.name().to_string();
    let mut warnings = Vec::new();
    let root = resource.definition();
    let written = guaranteed_update(
        &call.server,
        resource,
        call.namespace(),
        &name,
        None,
        dry_run,
        |old| {
            let old_rv = object::resource_version(&old).unwrap_or("").to_string();
            let seen = resource.to_served(old.clone())?;
            let patched = match kind {
                PatchType::Json => api::patch::json_patch(&seen, &call.body)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                PatchType::Merge => api::patch::merge_patch(&seen, &patch_value),
                PatchType::Strategic => api::patch::strategic_merge_patch(
                    &seen,
                    &patch_value,
                    patch_schema(),
                    &root,
                )
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            };
            // Upstream's patcher checks the patched object against the URL, so a patch
            // cannot rename or move an object.
            check_name(&patched, &name, call.namespace())?;
            if let Some(rv) = object::resource_version(&patched) {
                if rv != old_rv {
                    return Err(ApiError::conflict(resource, &name));
                }
            }
            let (patched, unknown) = match &resource.conversion {
                Some(c) => (c.to_storage)(patched).map_err(ApiError::BadRequest)?,
                None => (patched, Vec::new()),
            };
            let mut decoded = resource
                .strategy
                .decode(patched)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            decoded.unknown_fields.extend(unknown);
            if !decoded.unknown_fields.is_empty() {
                let list: Vec<String> = decoded
                    .unknown_fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                match validation {
                    FieldValidation::Strict => {
                        return Err(ApiError::BadRequest(format!(
                            "strict decoding error: {}",
                            list.join(", ")
                        )))
                    }
                    FieldValidation::Warn => {
                        warnings.clear();
                        warnings.extend(list);
                    }
                    FieldValidation::Ignore => {}
                }
            }
            replace(resource, decoded.object, &old, target, &name)
        },
    )
    .await?;
    object_response(&call, StatusCode::OK, written.render(), &warnings)
}

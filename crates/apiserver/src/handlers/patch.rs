//! PATCH: JSON patch, merge patch and strategic merge patch of an object or its status.

use http::{Response, StatusCode};
use serde_json::Value;

use super::update::{guaranteed_update, replace, Target};
use super::{object_response, Call};
use crate::body::Body;
use crate::convert;
use crate::errors::ApiError;
use crate::object;
use crate::request::FieldValidation;

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
    let target = Target::of(call.info.subresource.as_deref());
    let name = call.name().to_string();
    let mut warnings = Vec::new();
    let events_v1 = convert::is_events_v1(resource);
    let written = guaranteed_update(
        &call.server,
        resource,
        call.namespace(),
        &name,
        None,
        dry_run,
        |old| {
            let old_rv = object::resource_version(&old).unwrap_or("").to_string();
            let seen = if events_v1 {
                convert::core_to_events_v1(old.clone())?
            } else {
                old.clone()
            };
            let patched = match kind {
                PatchType::Json => api::patch::json_patch(&seen, &call.body)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                PatchType::Merge => api::patch::merge_patch(&seen, &patch_value),
                PatchType::Strategic => api::patch::strategic_merge_patch(
                    &seen,
                    &patch_value,
                    resource.strategy.patch_kind(),
                )
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            };
            if let Some(rv) = object::resource_version(&patched) {
                if rv != old_rv {
                    return Err(ApiError::conflict(resource, &name));
                }
            }
            let patched = if events_v1 {
                convert::events_v1_to_core(patched).map_err(ApiError::BadRequest)?
            } else {
                patched
            };
            let decoded = resource
                .strategy
                .decode(patched)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
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

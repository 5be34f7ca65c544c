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
use crate::registry::{self, SubresourceKind};
use crate::request::FieldValidation;

/// The strategic-merge schema of every served kind, read from the OpenAPI definitions
/// (patch strategies and merge keys) the documents publish, once. The server builds it at
/// start ([`warm`]) so the first patch does not wait for it.
pub fn warm() {
    patch_schema();
    for r in registry::all() {
        r.definition();
    }
}

pub(crate) fn patch_schema() -> &'static PatchSchema {
    static SCHEMA: OnceLock<PatchSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut roots: Vec<openapi::SchemaFn> = registry::all().iter().map(|r| r.schema).collect();
        roots.push(openapi::def::<k8s_openapi::api::autoscaling::v1::Scale>);
        PatchSchema::from_definitions(&openapi::definitions(&roots))
    })
}

enum PatchType {
    Json,
    Merge,
    Strategic,
}

/// A PATCH body, parsed once and applied to each object the write loop reads.
pub struct Patch<'a> {
    kind: PatchType,
    body: &'a [u8],
    value: Value,
}

impl<'a> Patch<'a> {
    /// The patch of a call, by its content type.
    pub fn of(call: &'a Call) -> Result<Patch<'a>, ApiError> {
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
                    "server-side apply is not supported yet; use client-side `kubectl apply`"
                        .into(),
                ))
            }
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
                )))
            }
        };
        let value: Value = match kind {
            PatchType::Json => Value::Null,
            _ => serde_json::from_slice(&call.body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
        };
        if !matches!(kind, PatchType::Json) && !value.is_object() {
            return Err(ApiError::BadRequest(
                "the body of the request was not a JSON object".into(),
            ));
        }
        Ok(Patch {
            kind,
            body: &call.body,
            value,
        })
    }

    /// `doc` patched; `root` is the OpenAPI definition of `doc`'s type, whose patch
    /// strategies a strategic merge follows.
    pub fn apply(&self, doc: &Value, root: &str) -> Result<Value, ApiError> {
        match self.kind {
            PatchType::Json => api::patch::json_patch(doc, self.body)
                .map_err(|e| ApiError::BadRequest(e.to_string())),
            PatchType::Merge => Ok(api::patch::merge_patch(doc, &self.value)),
            PatchType::Strategic => {
                api::patch::strategic_merge_patch(doc, &self.value, patch_schema(), root)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))
            }
        }
    }
}

pub async fn patch(call: Call) -> Result<Response<Body>, ApiError> {
    if call.subresource() == Some(SubresourceKind::Scale) {
        return super::scale::patch(call).await;
    }
    let resource = call.resource();
    let patch = Patch::of(&call)?;
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
            let patched = patch.apply(&seen, root)?;
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

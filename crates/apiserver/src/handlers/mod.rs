//! REST handlers, one file per verb. Each takes a decoded [`Call`] and answers a response;
//! shared pieces (content negotiation, body decoding, admission) live here.

pub mod create;
pub mod delete;
pub mod eviction;
pub mod get;
pub mod list;
pub mod patch;
pub mod scale;
pub mod update;
pub mod watch;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::body::{full, Body};
use crate::errors::ApiError;
use crate::kinds;
use crate::registry::{Resource, SubresourceKind};
use crate::request::{FieldValidation, Query, RequestInfo, Verb};
use crate::server::ApiServer;
use crate::{object, table};

/// One decoded API call.
pub struct Call {
    pub server: Arc<ApiServer>,
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Who sent the request (upstream's `request.UserFrom(ctx)`): kinds that record their
    /// requestor read it (CertificateSigningRequests).
    pub user: crate::authn::UserInfo,
}

impl Call {
    pub fn resource(&self) -> &'static Resource {
        self.info.resource
    }

    pub fn namespace(&self) -> Option<&str> {
        self.info.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or_default()
    }

    /// What the addressed subresource is, if the call is to one.
    pub fn subresource(&self) -> Option<SubresourceKind> {
        self.info.subresource_kind()
    }

    pub fn key(&self) -> String {
        self.resource().key(self.namespace(), self.name())
    }

    pub fn accept(&self) -> Output {
        Output::negotiate(self.headers.get(http::header::ACCEPT))
    }

    /// Decode a JSON, YAML or protobuf request body into its JSON value.
    pub fn body_value(&self) -> Result<Value, ApiError> {
        let content_type = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json" | "" | "*/*" => serde_json::from_slice(&self.body)
                .map_err(|e| ApiError::BadRequest(format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml: {e}"))),
            "application/yaml" => serde_yaml::from_slice(&self.body)
                .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}"))),
            // Transcoded to the JSON value a JSON client would have sent, so validation,
            // defaults and field errors are the JSON path's own.
            protobuf::MEDIA_TYPE => protobuf::decode_object(&self.body).map_err(|e| {
                ApiError::BadRequest(format!(
                    "the body of the request could not be decoded as {}: {e}",
                    protobuf::MEDIA_TYPE
                ))
            }),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
            ))),
        }
    }

    /// Whether the body is in the Kubernetes protobuf envelope.
    pub fn is_protobuf(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.split(';').next().unwrap_or("").trim() == protobuf::MEDIA_TYPE)
    }

    fn is_json(&self) -> bool {
        let content_type = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        matches!(
            content_type.split(';').next().unwrap_or("").trim(),
            "application/json" | "" | "*/*"
        )
    }

    /// Decode a body into `resource`'s normalized form, applying field validation.
    pub fn decode_object(&self, warnings: &mut Vec<String>) -> Result<Value, ApiError> {
        let resource = self.resource();
        let validation = self.query.field_validation()?;
        // Repeated keys only survive a JSON decode (YAML refuses them, protobuf has none).
        let duplicates = if self.is_json() {
            crate::duplicates::duplicate_fields(&self.body)
        } else {
            Vec::new()
        };
        // The one-pass decode reads every occurrence of a key (the typed decoders check
        // `apiVersion` and `kind` at each); a body that repeats one is decoded through a
        // value instead, where the last occurrence wins as in upstream's decoder (found by
        // fuzzing: a repeated `kind` was refused under Warn and Ignore).
        let mut decoded =
            if self.is_json() && resource.conversion.is_none() && duplicates.is_empty() {
                // One pass from bytes to the typed object: the hot path of create and update.
                let type_meta: TypeMeta = serde_json::from_slice(&self.body).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "the body of the request was not a JSON object: {e}"
                    ))
                })?;
                type_meta.check(resource)?;
                resource.strategy.decode_json(&self.body)
            } else {
                let mut value = self.body_value()?;
                check_type_meta(&value, resource)?;
                let mut unknown = Vec::new();
                if let Some(conversion) = &resource.conversion {
                    // Unknown fields are those of the served form the client sent.
                    (value, unknown) =
                        (conversion.to_storage)(value).map_err(|e| cannot_handle(resource, &e))?;
                }
                resource.strategy.decode(value).map(|mut d| {
                    d.unknown_fields.extend(unknown);
                    d
                })
            }
            .map_err(|e| cannot_handle(resource, &e))?;
        decoded.unknown_fields.sort();
        decoded.unknown_fields.dedup();
        let problems: Vec<String> = duplicates
            .iter()
            .map(|f| format!("duplicate field \"{f}\""))
            .chain(
                decoded
                    .unknown_fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\"")),
            )
            .collect();
        if !problems.is_empty() {
            match validation {
                FieldValidation::Strict => {
                    return Err(ApiError::BadRequest(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        resource.kind,
                        resource.api_version(),
                        resource.kind,
                        problems.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings.extend(problems),
                FieldValidation::Ignore => {}
            }
        }
        Ok(decoded.object)
    }
}

fn cannot_handle(resource: &Resource, err: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{} in version \"{}\" cannot be handled as a {}: {err}",
        resource.kind,
        resource.api_version(),
        resource.kind
    ))
}

/// The `apiVersion` and `kind` of a body, read without decoding the rest.
#[derive(serde::Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

impl TypeMeta {
    fn check(&self, resource: &Resource) -> Result<(), ApiError> {
        check_api_version_kind(self.api_version.as_deref(), self.kind.as_deref(), resource)
    }
}

/// apiVersion and kind in a body must match the endpoint (both may be omitted).
fn check_type_meta(value: &Value, resource: &Resource) -> Result<(), ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request was not a JSON object".into(),
        ));
    }
    check_api_version_kind(
        value["apiVersion"].as_str(),
        value["kind"].as_str(),
        resource,
    )
}

fn check_api_version_kind(
    api_version: Option<&str>,
    kind: Option<&str>,
    resource: &Resource,
) -> Result<(), ApiError> {
    if let Some(v) = api_version {
        if v != resource.api_version() {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                resource.api_version()
            )));
        }
    }
    if let Some(k) = kind {
        if k != resource.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    Ok(())
}

/// The response representation the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// The object (or list, or Status) in the Kubernetes protobuf envelope.
    Protobuf,
    /// Tables stay JSON whatever the media type asked for, as upstream serves them.
    Table,
    PartialObjectMetadata,
}

impl Output {
    pub fn negotiate(accept: Option<&HeaderValue>) -> Output {
        let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or("");
        // Clients list their preferences in order; take the first we can serve.
        for clause in accept.split(',') {
            let clause = clause.trim();
            if clause.contains("as=Table") && clause.contains("g=meta.k8s.io") {
                return Output::Table;
            }
            if clause.contains("as=PartialObjectMetadata") {
                return Output::PartialObjectMetadata;
            }
            let media = clause.split(';').next().unwrap_or("").trim();
            if matches!(media, "application/json" | "*/*" | "application/*" | "") {
                return Output::Json;
            }
            if media == protobuf::MEDIA_TYPE {
                return Output::Protobuf;
            }
        }
        Output::Json
    }
}

/// Create-time admission for namespaced objects: the namespace exists and is not terminating
/// (upstream's NamespaceLifecycle). The namespace mirror answers; a miss is checked against
/// the store, since the namespace may have been created a moment ago.
pub async fn admit_namespace(
    server: &ApiServer,
    resource: &Resource,
    ns: &str,
) -> Result<(), ApiError> {
    if !resource.namespaced {
        return Ok(());
    }
    let nsr = &kinds::namespace::RESOURCE;
    let key = nsr.key(None, ns);
    let namespace = match server.namespaces.get(&key) {
        Some(v) => v,
        None => {
            let kv = server
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found(nsr, ns))?;
            std::sync::Arc::new(object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?)
        }
    };
    if namespace["status"]["phase"] == "Terminating"
        || !namespace["metadata"]["deletionTimestamp"].is_null()
    {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

/// A JSON response.
pub fn json(code: StatusCode, body: Vec<u8>, warnings: &[String]) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        // Upstream's Warning header: code 299, agent "-", quoted text.
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// A JSON body (an object, a list or a Status) as `output` asks: in protobuf when the
/// client prefers it, else as it is. A body the protobuf schema cannot express is sent as
/// JSON, which every client that asks for protobuf also accepts (client-go lists both).
pub fn encoded(
    output: Output,
    code: StatusCode,
    body: Vec<u8>,
    warnings: &[String],
) -> Response<Body> {
    if output != Output::Protobuf {
        return json(code, body, warnings);
    }
    let transcoded = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| protobuf::encode_object(&v).map_err(|e| e.to_string()));
    match transcoded {
        Ok(pb) => {
            let mut resp = json(code, pb, warnings);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(protobuf::MEDIA_TYPE),
            );
            resp
        }
        Err(error) => {
            tracing::warn!(%error, "answering in JSON: the body has no protobuf form");
            json(code, body, warnings)
        }
    }
}

/// The success Status a create-only subresource (binding, eviction) answers with: 201.
pub fn created_status(call: &Call) -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
    });
    encoded(
        call.accept(),
        StatusCode::CREATED,
        status.to_string().into_bytes(),
        &[],
    )
}

/// One object in the requested representation.
pub fn object_response(
    call: &Call,
    code: StatusCode,
    rendered: Vec<u8>,
    warnings: &[String],
) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let rendered = resource.to_served_bytes(rendered)?;
    match call.accept() {
        Output::Json | Output::Protobuf => Ok(encoded(call.accept(), code, rendered, warnings)),
        Output::Table => {
            let obj: Value =
                serde_json::from_slice(&rendered).map_err(|e| ApiError::Internal(e.to_string()))?;
            let rv = object::resource_version(&obj).unwrap_or("").to_string();
            let t = table::table(resource, &[obj], &rv, &call.query, None)?;
            Ok(json(code, t, warnings))
        }
        Output::PartialObjectMetadata => {
            let obj: Value =
                serde_json::from_slice(&rendered).map_err(|e| ApiError::Internal(e.to_string()))?;
            let out = partial_metadata(&obj);
            Ok(json(
                code,
                serde_json::to_vec(&out).unwrap_or_default(),
                warnings,
            ))
        }
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}

/// Routes a resource call to its verb's handler.
pub async fn handle(call: Call) -> Result<Response<Body>, ApiError> {
    match call.info.verb {
        Verb::Get if call.subresource() == Some(SubresourceKind::Log) => {
            crate::nodeproxy::pod_log(call).await
        }
        Verb::Get if call.subresource() == Some(SubresourceKind::Scale) => scale::get(call).await,
        Verb::Get => get::get(call).await,
        Verb::List => list::list(call).await,
        Verb::Watch => watch::watch(call).await,
        Verb::Create => create::create(call).await,
        Verb::Update if call.subresource() == Some(SubresourceKind::Scale) => {
            scale::update(call).await
        }
        Verb::Update => update::update(call).await,
        Verb::Patch => patch::patch(call).await,
        Verb::Delete => delete::delete(call).await,
        Verb::DeleteCollection => delete::delete_collection(call).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_order_picks_protobuf_or_json() {
        let n = |s: &'static str| Output::negotiate(Some(&HeaderValue::from_static(s)));
        assert_eq!(
            n("application/vnd.kubernetes.protobuf, application/json"),
            Output::Protobuf
        );
        assert_eq!(
            n("application/json, application/vnd.kubernetes.protobuf"),
            Output::Json
        );
        assert_eq!(
            n("application/json;as=Table;v=v1;g=meta.k8s.io, application/vnd.kubernetes.protobuf"),
            Output::Table
        );
        assert_eq!(
            n("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"),
            Output::PartialObjectMetadata
        );
        assert_eq!(
            n("text/html, application/vnd.kubernetes.protobuf"),
            Output::Protobuf
        );
        assert_eq!(Output::negotiate(None), Output::Json);
    }
}

#[cfg(test)]
mod handler_tests;

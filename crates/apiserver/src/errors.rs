//! API errors and their one mapping to a Kubernetes `metav1.Status` response.
//!
//! Every failure a client can see goes through [`ApiError`]; store errors are mapped here and
//! nowhere else.

use api::field::FieldError;
use serde_json::{json, Value};

use crate::registry::Resource;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        resource: String,
        name: String,
        detail: String,
    },
    #[error("{message}")]
    Invalid {
        kind: String,
        group: String,
        name: String,
        message: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// 403 from authorization, with upstream's details (name, group, kind = resource).
    #[error("{}", .0.status_message())]
    Denied(Box<crate::authz::Denied>),
    #[error("the server could not find the requested resource")]
    RouteNotFound,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// 410: a resource version or continue token older than the store keeps.
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    Timeout(String),
    #[error("Request entity too large: limit is {0}")]
    RequestEntityTooLarge(usize),
    #[error("{0}")]
    Internal(String),
    /// 429, with `details.causes` (`type`, `message`) and a suggested retry in seconds
    /// (0: none), as `errors.NewTooManyRequests` plus the eviction's causes.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: u32,
        causes: Vec<(String, String)>,
    },
}

impl ApiError {
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        ApiError::NotFound {
            resource: resource.qualified(),
            name: name.to_string(),
        }
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        ApiError::AlreadyExists {
            resource: resource.qualified(),
            name: name.to_string(),
        }
    }

    pub fn conflict(resource: &Resource, name: &str) -> Self {
        ApiError::Conflict {
            resource: resource.qualified(),
            name: name.to_string(),
            detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    pub fn invalid(resource: &Resource, name: &str, causes: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            kind: resource.kind.to_string(),
            group: resource.group.to_string(),
            name: name.to_string(),
            // Upstream's `NewInvalid` names the group-qualified kind (`Deployment.apps`).
            message: api::field::invalid_message(
                &if resource.group.is_empty() {
                    resource.kind.to_string()
                } else {
                    format!("{}.{}", resource.kind, resource.group)
                },
                name,
                &causes,
            ),
            causes,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::RouteNotFound => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) | ApiError::Denied(_) => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Expired(_) => 410,
            ApiError::Timeout(_) => 504,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::Internal(_) => 500,
            ApiError::TooManyRequests { .. } => 429,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::RouteNotFound => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) | ApiError::Denied(_) => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Expired(_) => "Expired",
            ApiError::Timeout(_) => "Timeout",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::Internal(_) => "InternalError",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
        }
    }

    /// The `metav1.Status` body, as kube-apiserver writes it.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => Some(details(resource, name)),
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
                ..
            } => {
                let mut d = json!({ "name": name, "kind": kind });
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                d["causes"] = causes
                    .iter()
                    .map(|c| json!({ "reason": c.reason(), "message": c.message(), "field": c.field }))
                    .collect();
                Some(d)
            }
            ApiError::Denied(d) => {
                let mut m = serde_json::Map::new();
                if !d.name.is_empty() {
                    m.insert("name".into(), json!(d.name));
                }
                if !d.group.is_empty() {
                    m.insert("group".into(), json!(d.group));
                }
                if !d.resource.is_empty() {
                    m.insert("kind".into(), json!(d.resource));
                }
                Some(Value::Object(m))
            }
            // go-restful's 405, through upstream's serviceErrorHandler
            // (NewGenericServerResponse), carries empty details.
            ApiError::MethodNotAllowed => Some(json!({})),
            ApiError::TooManyRequests {
                retry_after,
                causes,
                ..
            } => {
                let mut d = json!({});
                if !causes.is_empty() {
                    d["causes"] = causes
                        .iter()
                        // StatusCause's `Type` is `reason` on the wire.
                        .map(|(t, m)| json!({ "reason": t, "message": m }))
                        .collect();
                }
                if *retry_after > 0 {
                    d["retryAfterSeconds"] = json!(retry_after);
                }
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// Field order of `metav1.Status` and its parts as Go's encoder writes them (struct order),
/// by the key a JSON object is under; other objects keep serde_json's sorted order.
fn go_field_order(key: &str) -> &'static [&'static str] {
    match key {
        "" => &[
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ],
        "details" => &[
            "name",
            "group",
            "kind",
            "uid",
            "causes",
            "retryAfterSeconds",
        ],
        "causes" => &["reason", "message", "field"],
        _ => &[],
    }
}

fn write_go_ordered(out: &mut Vec<u8>, key: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            let order = go_field_order(key);
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                write_go_ordered(out, k, &map[k]);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_go_ordered(out, key, item);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
    }
}

impl ApiError {
    /// The `Status` body's bytes exactly as kube-apiserver sends them: fields in Go's struct
    /// order and a final newline (its encoder's). Clients compare them: the Python client's
    /// `FailToCreateError` prints the body, and its e2e tests match the text.
    pub fn status_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_go_ordered(&mut out, "", &self.status());
        out.push(b'\n');
        out
    }
}

/// `pods` → `{"name": n, "kind": "pods"}`; `leases.coordination.k8s.io` → group split out.
fn details(qualified: &str, name: &str) -> Value {
    match qualified.split_once('.') {
        Some((resource, group)) => json!({ "name": name, "group": group, "kind": resource }),
        None => json!({ "name": name, "kind": qualified }),
    }
}

/// Maps a store error on `resource`/`name` to the API error a client sees.
pub fn from_store(err: store::Error, resource: &Resource, name: &str) -> ApiError {
    match err {
        store::Error::NotFound { .. } => ApiError::not_found(resource, name),
        store::Error::AlreadyExists { .. } => ApiError::already_exists(resource, name),
        store::Error::Conflict { .. } => ApiError::conflict(resource, name),
        other => other.into(),
    }
}

/// Store errors that do not concern one named object.
impl From<store::Error> for ApiError {
    fn from(err: store::Error) -> Self {
        match err {
            store::Error::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            store::Error::FutureRevision { requested, current } => ApiError::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            store::Error::Backend(msg) => ApiError::Internal(msg),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bytes_are_kube_apiservers() {
        let cases = [
            (
                ApiError::AlreadyExists {
                    resource: "services".into(),
                    name: "mock-2".into(),
                },
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
                 \"message\":\"services \\\"mock-2\\\" already exists\",\"reason\":\"AlreadyExists\",\
                 \"details\":{\"name\":\"mock-2\",\"kind\":\"services\"},\"code\":409}\n",
            ),
            (
                ApiError::AlreadyExists {
                    resource: "deployments.apps".into(),
                    name: "nginx".into(),
                },
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
                 \"message\":\"deployments.apps \\\"nginx\\\" already exists\",\"reason\":\"AlreadyExists\",\
                 \"details\":{\"name\":\"nginx\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":409}\n",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(String::from_utf8(err.status_bytes()).unwrap(), want);
        }
    }
}

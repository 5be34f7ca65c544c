//! `POST .../serviceaccounts/{name}/token`: the TokenRequest subresource
//! (`authentication.k8s.io/v1`), as upstream's `serviceaccount/storage/token.go` serves it.
//!
//! The request is decoded and checked first (expiration bounds, audiences defaulted to the
//! API's, the bound object's kind), then the account and the bound object are read; the
//! token is signed and returned in `status`. Nothing is stored.

use http::{Response, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::jwt::{self, Bound, Claims, Ref};
use super::DEFAULT_AUDIENCE;
use crate::body::Body;
use crate::errors::ApiError;
use crate::handlers::{json, Call};
use crate::kinds;
use crate::object;
use crate::registry;
use crate::server::ApiServer;

/// kubectl's and the kubelet's default when no expiration is asked for (upstream: 1 h).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime upstream accepts (10 minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (2^32 s).
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What a token is bound to, once its object has been found.
enum BoundObject {
    Pod {
        name: String,
        uid: String,
        node: Option<Ref>,
    },
    Secret {
        name: String,
        uid: String,
    },
}

pub async fn create(call: Call) -> Result<Response<Body>, ApiError> {
    let ns = call.namespace().unwrap_or_default().to_string();
    let name = call.name().to_string();
    let value = call.body_value()?;
    let mut request = decode(value)?;
    let spec = request.spec.get_or_insert_with(Default::default);
    let audiences = spec.audiences.get_or_insert_with(Vec::new);
    if audiences.is_empty() {
        audiences.push(DEFAULT_AUDIENCE.to_string());
    }
    let audiences = audiences.clone();
    let expiration = *spec
        .expiration_seconds
        .get_or_insert(DEFAULT_EXPIRATION_SECONDS);
    validate_expiration(&name, expiration)?;

    let server = &call.server;
    let sa = get(server, &kinds::serviceaccount::RESOURCE, &ns, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(&kinds::serviceaccount::RESOURCE, &name))?;
    let bound = match &spec.bound_object_ref {
        None => None,
        Some(r) => Some(bound_object(server, &ns, &name, r).await?),
    };

    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let exp = iat + expiration;
    let (pod, secret, node) = match bound {
        None => (None, None, None),
        Some(BoundObject::Pod { name, uid, node }) => (Some(Ref { name, uid }), None, node),
        Some(BoundObject::Secret { name, uid }) => (None, Some(Ref { name, uid }), None),
    };
    let claims = Claims {
        aud: audiences,
        exp,
        iat,
        iss: jwt::ISSUER.to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: Bound {
            namespace: ns.clone(),
            node,
            pod,
            secret,
            serviceaccount: Ref {
                name: name.clone(),
                uid: object::uid(&sa).to_string(),
            },
        },
        nbf: iat,
        sub: jwt::subject(&ns, &name),
    };
    let keys = server
        .tokens
        .get()
        .ok_or_else(|| ApiError::Internal("no service-account signing key".into()))?;
    let token = keys
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires =
        jiff::Timestamp::from_second(exp).map_err(|e| ApiError::Internal(e.to_string()))?;

    request.metadata.name = Some(name);
    request.metadata.namespace = Some(ns);
    request.metadata.creation_timestamp = Some(Time(now));
    request.status = Some(TokenRequestStatus {
        token: Some(token),
        expiration_timestamp: Some(Time(expires)),
    });
    let mut out = serde_json::to_value(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
    out["apiVersion"] = "authentication.k8s.io/v1".into();
    out["kind"] = "TokenRequest".into();
    Ok(json(
        StatusCode::CREATED,
        serde_json::to_vec(&out).unwrap_or_default(),
        &[],
    ))
}

/// The body as a TokenRequest; its apiVersion and kind, when given, must say so.
fn decode(value: Value) -> Result<TokenRequest, ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request was not a JSON object".into(),
        ));
    }
    let api_version = value["apiVersion"]
        .as_str()
        .unwrap_or("authentication.k8s.io/v1");
    let kind = value["kind"].as_str().unwrap_or("TokenRequest");
    if api_version != "authentication.k8s.io/v1" || kind != "TokenRequest" {
        return Err(ApiError::BadRequest(format!(
            "the body of the request must be an authentication.k8s.io/v1 TokenRequest, not {api_version} {kind}"
        )));
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::BadRequest(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })
}

/// Upstream's `ValidateTokenRequest` bounds on `spec.expirationSeconds`.
fn validate_expiration(name: &str, seconds: i64) -> Result<(), ApiError> {
    let detail = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    let causes = vec![api::field::FieldError::invalid(
        "spec.expirationSeconds",
        seconds,
        detail,
    )];
    Err(ApiError::Invalid {
        kind: "TokenRequest".into(),
        group: "authentication.k8s.io".into(),
        name: name.to_string(),
        message: api::field::invalid_message("TokenRequest.authentication.k8s.io", name, &causes),
        causes,
    })
}

/// Finds the object a token is to be bound to, with upstream's errors.
async fn bound_object(
    server: &ApiServer,
    ns: &str,
    sa_name: &str,
    r: &k8s_openapi::api::authentication::v1::BoundObjectReference,
) -> Result<BoundObject, ApiError> {
    let api_version = r.api_version.as_deref().unwrap_or_default();
    let kind = r.kind.as_deref().unwrap_or_default();
    let name = r.name.as_deref().unwrap_or_default();
    let bound = match (api_version, kind) {
        ("v1", "Pod") => {
            let pod = get(server, &kinds::pod::RESOURCE, ns, name)
                .await?
                .ok_or_else(|| ApiError::not_found(&kinds::pod::RESOURCE, name))?;
            if pod["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or_default()
                != sa_name
            {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount \"{sa_name}\" to pod running with different serviceaccount name."
                )));
            }
            let node = match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                None => None,
                Some(node_name) => {
                    let key = kinds::node::RESOURCE.key(None, node_name);
                    match server.store.get(&key).await? {
                        Some(kv) => {
                            let node = object::parse(&kv)
                                .map_err(|e| ApiError::Internal(e.to_string()))?;
                            Some(Ref {
                                name: node_name.to_string(),
                                uid: object::uid(&node).to_string(),
                            })
                        }
                        None => None,
                    }
                }
            };
            BoundObject::Pod {
                name: name.to_string(),
                uid: object::uid(&pod).to_string(),
                node,
            }
        }
        ("v1", "Secret") => {
            let secret = get(server, &kinds::secret::RESOURCE, ns, name)
                .await?
                .ok_or_else(|| ApiError::not_found(&kinds::secret::RESOURCE, name))?;
            BoundObject::Secret {
                name: name.to_string(),
                uid: object::uid(&secret).to_string(),
            }
        }
        _ => {
            let gvk = if api_version.contains('/') {
                format!("{api_version}, Kind={kind}")
            } else {
                format!("/{api_version}, Kind={kind}")
            };
            return Err(ApiError::BadRequest(format!(
                "cannot bind token to object of type {gvk}"
            )));
        }
    };
    let actual = match &bound {
        BoundObject::Pod { uid, .. } | BoundObject::Secret { uid, .. } => uid,
    };
    if let Some(want) = r.uid.as_deref().filter(|u| !u.is_empty()) {
        if want != actual {
            return Err(ApiError::Conflict {
                resource: kind.to_string(),
                name: name.to_string(),
                detail: format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
            });
        }
    }
    Ok(bound)
}

/// One object of `resource` in `ns`, parsed, if it exists.
pub(crate) async fn get(
    server: &ApiServer,
    resource: &registry::Resource,
    ns: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    match server.store.get(&resource.key(Some(ns), name)).await? {
        Some(kv) => Ok(Some(
            object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_bounds_are_upstreams() {
        assert!(validate_expiration("a", 600).is_ok());
        assert!(validate_expiration("a", 1 << 32).is_ok());
        let err = validate_expiration("a", 599).unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "TokenRequest.authentication.k8s.io \"a\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        assert!(validate_expiration("a", (1 << 32) + 1).is_err());
    }

    #[test]
    fn only_token_requests_are_decoded() {
        let ok = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["x"]}});
        assert_eq!(
            decode(ok).unwrap().spec.unwrap().audiences,
            Some(vec!["x".to_string()])
        );
        let bare = serde_json::json!({"spec": {}});
        assert!(decode(bare).is_ok());
        let wrong = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "spec": {}});
        assert_eq!(decode(wrong).unwrap_err().code(), 400);
    }
}

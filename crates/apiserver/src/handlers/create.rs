//! CREATE (POST on a collection) and the subresources created by POST (`pods/binding`).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{admit_namespace, object_response, Call};
use crate::admission;
use crate::body::Body;
use crate::errors::ApiError;
use crate::object;
use crate::registry::SubresourceKind;

/// How often a generateName collision is retried with a fresh suffix (upstream: 7).
const GENERATE_NAME_ATTEMPTS: usize = 8;

pub async fn create(call: Call) -> Result<Response<Body>, ApiError> {
    if call.info.subresource.is_some() {
        return match call.subresource() {
            Some(SubresourceKind::Binding) => crate::handlers::update::bind(call).await,
            Some(SubresourceKind::Token) => crate::serviceaccount::tokenrequest::create(call).await,
            Some(SubresourceKind::Eviction) => crate::handlers::eviction::create(call).await,
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    let resource = call.resource();
    if resource.namespaced && call.namespace().is_none() {
        return Err(ApiError::RouteNotFound);
    }
    let dry_run = call.query.dry_run()?;
    let mut warnings = Vec::new();
    let mut obj = call.decode_object(&mut warnings)?;

    // Namespace: from the URL; a different one in the body is refused.
    if resource.namespaced {
        let ns = call.namespace().unwrap_or_default().to_string();
        match object::namespace(&obj) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            _ => {
                object::meta_mut(&mut obj).insert("namespace".into(), json!(ns));
            }
        }
    } else {
        object::meta_mut(&mut obj).remove("namespace");
    }

    let generate = obj["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && obj["metadata"]["generateName"]
            .as_str()
            .is_some_and(|g| !g.is_empty());
    reset_system_fields(&mut obj);
    if let Some(ns) = call.namespace() {
        admit_namespace(&call.server, resource, ns).await?;
    }
    admission::admit_create(&call.server, resource, &mut obj, &call.user).await?;

    for attempt in 0..GENERATE_NAME_ATTEMPTS {
        if generate {
            let prefix = obj["metadata"]["generateName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = api::meta::generate_name(&prefix, rand::random::<u64>());
            object::meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        let name = object::name(&obj).to_string();
        // Upstream's BeginCreate: what the object holds outside itself (a Service's
        // ClusterIPs and node ports) is taken before validation and given back if the
        // create does not land.
        let mut attempt_obj;
        let (target, finish) = match resource.hooks {
            Some(hooks) => {
                attempt_obj = obj.clone();
                let finish = (hooks.begin_create)(&call.server, &mut attempt_obj, dry_run).await?;
                (&attempt_obj, Some(finish))
            }
            None => (&obj, None),
        };
        let stored = match resource
            .strategy
            .prepare_create(target, resource.namespaced)
        {
            Ok(stored) => stored,
            Err(errs) => {
                if let Some(finish) = finish {
                    finish(false).await;
                }
                return Err(ApiError::invalid(resource, &name, errs));
            }
        };
        if dry_run {
            if let Some(finish) = finish {
                finish(true).await;
            }
            return object_response(&call, StatusCode::CREATED, stored, &warnings);
        }
        let key = resource.key(call.namespace(), &name);
        let result = call.server.store.create(&key, Bytes::from(stored)).await;
        if let Some(finish) = finish {
            finish(result.is_ok()).await;
        }
        match result {
            Ok(kv) => {
                return object_response(&call, StatusCode::CREATED, object::render(&kv), &warnings)
            }
            Err(store::Error::AlreadyExists { .. })
                if generate && attempt + 1 < GENERATE_NAME_ATTEMPTS =>
            {
                continue
            }
            Err(e) => return Err(crate::errors::from_store(e, resource, &name)),
        }
    }
    Err(ApiError::Internal(
        "could not generate a unique name".into(),
    ))
}

/// Fields only the server sets (upstream's `rest.FillObjectMetaSystemFields` and friends).
pub fn reset_system_fields(obj: &mut Value) {
    let meta = object::meta_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(field);
    }
    // Kinds that track generation set it in their strategy.
    meta.remove("generation");
}

//! UPDATE (PUT) of an object or its status, the shared read-modify-write loop every write of
//! an existing object goes through, and `pods/binding`.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use store::{KeyValue, Revision};

use super::{object_response, Call};
use crate::body::Body;
use crate::errors::{from_store, ApiError};
use crate::object;
use crate::registry::Resource;
use crate::server::ApiServer;

/// What a read-modify-write ended with.
pub enum Written {
    Updated(KeyValue),
    /// The write removed the last finalizer of an object being deleted, so it is gone.
    Deleted(KeyValue),
}

impl Written {
    pub fn render(&self) -> Vec<u8> {
        match self {
            Written::Updated(kv) | Written::Deleted(kv) => object::render(kv),
        }
    }
}

/// Upstream's GuaranteedUpdate: read the current object, let `mutate` compute the new one,
/// write it with a compare-and-swap on the revision read, and retry on a concurrent write
/// (unless the caller pinned a revision, which then is a 409). A result identical to what is
/// stored is not written. With `dry_run` nothing is written.
pub async fn guaranteed_update<F>(
    server: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    precondition: Option<Revision>,
    dry_run: bool,
    mut mutate: F,
) -> Result<Written, ApiError>
where
    F: FnMut(Value) -> Result<Value, ApiError>,
{
    let key = resource.key(namespace, name);
    loop {
        let current = server
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if let Some(rev) = precondition {
            if rev != current.mod_revision {
                return Err(ApiError::conflict(resource, name));
            }
        }
        let old = object::parse(&current).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut new = mutate(old)?;
        object::meta_mut(&mut new).remove("resourceVersion");
        let bytes = resource.strategy.encode(&new).map_err(ApiError::Internal)?;
        if bytes == current.value {
            return Ok(Written::Updated(current));
        }
        if dry_run {
            return Ok(Written::Updated(KeyValue {
                value: Bytes::from(bytes),
                ..current
            }));
        }
        if finalized(&new) {
            return match server.store.delete(&key, Some(current.mod_revision)).await {
                Ok(kv) => Ok(Written::Deleted(KeyValue {
                    value: Bytes::from(bytes),
                    ..kv
                })),
                Err(store::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => Err(from_store(e, resource, name)),
            };
        }
        match server
            .store
            .update(&key, Bytes::from(bytes), Some(current.mod_revision))
            .await
        {
            Ok(kv) => return Ok(Written::Updated(kv)),
            Err(store::Error::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(from_store(e, resource, name)),
        }
    }
}

/// An object marked for deletion whose finalizers are all gone and whose grace period is
/// over is removed by the write that cleared them.
fn finalized(obj: &Value) -> bool {
    let meta = &obj["metadata"];
    !meta["deletionTimestamp"].is_null()
        && meta["finalizers"].as_array().is_none_or(|f| f.is_empty())
        && meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
        && obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
}

/// Carries the fields only the server owns from the stored object to a replacement.
pub fn copy_system_fields(new: &mut Value, old: &Value) -> Result<(), ApiError> {
    let old_meta = &old["metadata"];
    let old_uid = old_meta["uid"].as_str().unwrap_or_default().to_string();
    let meta = object::meta_mut(new);
    if let Some(uid) = meta.get("uid").and_then(Value::as_str) {
        if !uid.is_empty() && uid != old_uid {
            return Err(ApiError::Conflict {
                resource: String::new(),
                name: old_meta["name"].as_str().unwrap_or_default().to_string(),
                detail: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"),
            });
        }
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match old_meta.get(field) {
            Some(v) if !v.is_null() => {
                meta.insert(field.into(), v.clone());
            }
            _ => {
                meta.remove(field);
            }
        }
    }
    meta.remove("managedFields");
    // Validation of an update wants the version being replaced (the store's CAS enforces it).
    if let Some(rv) = old_meta.get("resourceVersion") {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    Ok(())
}

pub async fn update(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let dry_run = call.query.dry_run()?;
    let mut warnings = Vec::new();
    let mut body = call.decode_object(&mut warnings)?;
    let name = call.name().to_string();
    match object::name(&body) {
        "" => {
            object::meta_mut(&mut body).insert("name".into(), json!(name));
        }
        n if n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    if let (Some(ns), Some(body_ns)) = (call.namespace(), object::namespace(&body)) {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    let precondition = match object::resource_version(&body) {
        Some(rv) => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?,
        ),
        None => None,
    };
    let target = Target::of(call.info.subresource.as_deref());
    let written = guaranteed_update(
        &call.server,
        resource,
        call.namespace(),
        &name,
        precondition,
        dry_run,
        |old| replace(resource, body.clone(), &old, target, &name),
    )
    .await?;
    object_response(&call, StatusCode::OK, written.render(), &warnings)
}

/// What part of an object a PUT or PATCH writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The object (its status, where it has a subresource for it, is kept).
    Main,
    /// The `status` subresource.
    Status,
    /// `pods/ephemeralcontainers`: only `spec.ephemeralContainers`.
    EphemeralContainers,
    /// `namespaces/finalize`: spec and metadata, never status.
    Finalize,
}

impl Target {
    /// Routing only lets through the subresources a resource serves.
    pub fn of(subresource: Option<&str>) -> Target {
        match subresource {
            Some("status") => Target::Status,
            Some("ephemeralcontainers") => Target::EphemeralContainers,
            Some("finalize") => Target::Finalize,
            _ => Target::Main,
        }
    }
}

/// The stored form of `new` replacing `old`, through the kind's update rules.
pub fn replace(
    resource: &'static Resource,
    mut new: Value,
    old: &Value,
    target: Target,
    name: &str,
) -> Result<Value, ApiError> {
    copy_system_fields(&mut new, old).map_err(|e| match e {
        ApiError::Conflict { detail, .. } => ApiError::Conflict {
            resource: resource.qualified(),
            name: name.to_string(),
            detail,
        },
        other => other,
    })?;
    let result = match target {
        Target::Main => resource.strategy.prepare_update(&mut new, old),
        Target::Status => resource.strategy.prepare_status_update(&mut new, old),
        Target::EphemeralContainers => resource
            .strategy
            .prepare_ephemeral_containers_update(&mut new, old)
            .ok_or(ApiError::RouteNotFound)?,
        Target::Finalize => finalize_namespace(&mut new, old),
    };
    result.map_err(|errs| ApiError::invalid(resource, name, errs))?;
    Ok(new)
}

/// Upstream's namespace finalize strategy: the status stays, the rest (`spec.finalizers`
/// above all, which no other write may change) is validated as an update. Once a deleted
/// namespace's last finalizer goes, `guaranteed_update` removes it.
fn finalize_namespace(new: &mut Value, old: &Value) -> Result<(), api::field::FieldErrors> {
    use k8s_openapi::api::core::v1::Namespace;
    use serde::Deserialize;
    let internal = |e: serde_json::Error| {
        vec![api::field::FieldError {
            kind: api::field::ErrorType::Internal,
            field: String::new(),
            value: None,
            detail: e.to_string(),
        }]
    };
    let mut ns = Namespace::deserialize(&*new).map_err(internal)?;
    let old = Namespace::deserialize(old).map_err(internal)?;
    ns.status = old.status.clone();
    let errs = api::validate_namespace_update(&ns, &old);
    if !errs.is_empty() {
        return Err(errs);
    }
    *new = serde_json::to_value(&ns).map_err(internal)?;
    Ok(())
}

/// POST `pods/<name>/binding`: assign a pending pod to a node, once.
pub async fn bind(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let body = call.body_value()?;
    let name = call.name().to_string();
    let node = body["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            resource,
            &name,
            vec![api::field::FieldError {
                kind: api::field::ErrorType::Required,
                field: "target.name".into(),
                value: None,
                detail: String::new(),
            }],
        ));
    }
    let dry_run = call.query.dry_run()?;
    guaranteed_update(
        &call.server,
        resource,
        call.namespace(),
        &name,
        None,
        dry_run,
        |mut pod| {
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::Conflict {
                    resource: "pods/binding".into(),
                    name: name.clone(),
                    detail: format!("pod {name} is being deleted, cannot be assigned to a host"),
                });
            }
            if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::Conflict {
                    resource: "pods/binding".into(),
                    name: name.clone(),
                    detail: format!("pod {name} is already assigned to node \"{current}\""),
                });
            }
            pod["spec"]["nodeName"] = json!(node);
            set_condition(&mut pod, "PodScheduled", "True", None, None);
            Ok(pod)
        },
    )
    .await?;
    Ok(super::created_status(&call))
}

/// Sets a pod condition, keeping its transition time when the status does not change.
pub fn set_condition(
    pod: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = object::now_rfc3339();
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conds) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let mut cond =
        json!({ "type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now });
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    match conds.iter_mut().find(|c| c["type"] == kind) {
        Some(existing) => {
            if existing["status"] == status {
                cond["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = cond;
        }
        None => conds.push(cond),
    }
}

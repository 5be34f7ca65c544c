//! UPDATE (PUT) of an object or its status, the shared read-modify-write loop every write of
//! an existing object goes through (deletes included), and `pods/binding`.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use store::{KeyValue, Revision};

use super::{object_response, Call};
use crate::body::Body;
use crate::errors::{from_store, ApiError};
use crate::object;
use crate::registry::{Resource, SubresourceKind};
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

/// What a mutation decided about the object it was shown.
pub enum Change {
    /// Store this object (unchanged bytes are not written).
    Write(Value),
    /// Remove the object.
    Delete,
}

/// Upstream's GuaranteedUpdate, the one read-modify-write every change of an existing
/// object goes through (update, patch, status, binding, delete, finalization):
///
/// ```text
///  read ──▶ precondition (pinned revision) ──▶ mutate(old) ──▶ Write(new) ─┬─ same bytes: done, no write
///    ▲                                            │                        ├─ finalized: delete at rev
///    │                                            └──▶ Delete ─────────────┼─ delete at rev
///    │                                                                     └─ update at rev
///    └──── the store saw another write since the read (CAS failed): read again,
///          unless the caller pinned a revision (then 409)
/// ```
///
/// `mutate` sees the current object each round, so its checks (uid preconditions, a pod
/// already bound) run against what it is about to replace. With `dry_run` nothing is
/// written and the result is what would have been.
pub async fn read_modify_write<F>(
    server: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    precondition: Option<Revision>,
    dry_run: bool,
    mut mutate: F,
) -> Result<Written, ApiError>
where
    F: FnMut(Value, &KeyValue) -> Result<Change, ApiError>,
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
        // Upstream's BeginUpdate sees the object being replaced too.
        let old_for_hooks = resource.hooks.map(|_| old.clone());
        let mut finish = None;
        let result = match mutate(old, &current)? {
            Change::Delete => {
                if dry_run {
                    return Ok(Written::Deleted(current));
                }
                server
                    .store
                    .delete(&key, Some(current.mod_revision))
                    .await
                    .map(Written::Deleted)
            }
            Change::Write(mut new) => {
                if let (Some(hooks), Some(old)) = (resource.hooks, &old_for_hooks) {
                    finish = Some((hooks.begin_update)(server, &mut new, old, dry_run).await?);
                }
                object::meta_mut(&mut new).remove("resourceVersion");
                let bytes = match resource.strategy.encode(&new) {
                    Ok(b) => b,
                    Err(e) => {
                        if let Some(f) = finish {
                            f(false).await;
                        }
                        return Err(ApiError::Internal(e));
                    }
                };
                if bytes == current.value || dry_run {
                    if let Some(f) = finish {
                        f(true).await;
                    }
                    if bytes == current.value {
                        return Ok(Written::Updated(current));
                    }
                    return Ok(Written::Updated(KeyValue {
                        value: Bytes::from(bytes),
                        ..current
                    }));
                }
                if finalized(resource, &new) {
                    server
                        .store
                        .delete(&key, Some(current.mod_revision))
                        .await
                        .map(|kv| {
                            Written::Deleted(KeyValue {
                                value: Bytes::from(bytes),
                                ..kv
                            })
                        })
                } else {
                    server
                        .store
                        .update(&key, Bytes::from(bytes), Some(current.mod_revision))
                        .await
                        .map(Written::Updated)
                }
            }
        };
        if let Some(f) = finish {
            f(matches!(result, Ok(Written::Updated(_)))).await;
        }
        if let (Some(hooks), Ok(Written::Deleted(kv))) = (resource.hooks, &result) {
            // Upstream's AfterDelete: what the object held goes back.
            if let Ok(gone) = object::parse(kv) {
                (hooks.after_delete)(server, &gone).await;
            }
        }
        match result {
            Ok(w) => return Ok(w),
            Err(store::Error::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(from_store(e, resource, name)),
        }
    }
}

/// [`read_modify_write`] for a mutation that always writes.
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
    read_modify_write(
        server,
        resource,
        namespace,
        name,
        precondition,
        dry_run,
        |old, _| mutate(old).map(Change::Write),
    )
    .await
}

/// An object marked for deletion whose finalizers are all gone and whose grace period is
/// over is removed by the write that cleared them.
fn finalized(resource: &Resource, obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
        && !(resource.delete.has_finalizers)(obj)
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
    // Upstream's update handler: the namespace first (an empty one is the URL's), then the
    // name, which a replacement must carry.
    if let (Some(ns), Some(body_ns)) = (call.namespace(), object::namespace(&body)) {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    check_name(&body, &name, None)?;
    if !resource.namespaced {
        object::meta_mut(&mut body).remove("namespace");
    }
    let precondition = match object::resource_version(&body) {
        Some(rv) => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?,
        ),
        None => None,
    };
    let target = Target::of(call.subresource());
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

/// Upstream's `checkName`: the object's name must be the URL's and, in a namespaced
/// request, a namespace it carries must be the URL's.
pub fn check_name(obj: &Value, name: &str, namespace: Option<&str>) -> Result<(), ApiError> {
    match object::name(obj) {
        "" => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({name} based on URL) was undeterminable: name must be provided"
            )))
        }
        n if n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    if let (Some(ns), Some(obj_ns)) = (namespace, object::namespace(obj)) {
        if !obj_ns.is_empty() && obj_ns != ns {
            return Err(ApiError::BadRequest(format!(
                "the namespace of the object ({obj_ns}) does not match the namespace on the request ({ns})"
            )));
        }
    }
    Ok(())
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
    /// `certificatesigningrequests/approval`: only the conditions.
    Approval,
}

impl Target {
    /// Routing only lets through the subresources a resource serves.
    pub fn of(subresource: Option<SubresourceKind>) -> Target {
        match subresource {
            Some(SubresourceKind::Status) => Target::Status,
            Some(SubresourceKind::EphemeralContainers) => Target::EphemeralContainers,
            Some(SubresourceKind::Finalize) => Target::Finalize,
            Some(SubresourceKind::Approval) => Target::Approval,
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
        Target::Approval => resource
            .strategy
            .prepare_approval_update(&mut new, old)
            .ok_or(ApiError::RouteNotFound)?,
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

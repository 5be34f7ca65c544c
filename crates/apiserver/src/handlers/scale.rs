//! The `scale` subresource of any kind whose descriptor has a [`Scale`] hook (upstream's
//! `ScaleREST` of Deployments, ReplicaSets, StatefulSets, ReplicationControllers and the
//! CRD scale subresource):
//! GET, PUT and PATCH of an autoscaling/v1 Scale read from and written to the kind's own
//! replicas, through the same read-modify-write and update rules as the object.

use http::{Response, StatusCode};
use serde_json::{json, Value};
use store::Revision;

use super::patch::Patch;
use super::update::{check_name, guaranteed_update, replace, Target};
use super::{encoded, Call};
use crate::body::Body;
use crate::errors::ApiError;
use crate::object;
use crate::registry::{Resource, Scale};

const SCALE_DEFINITION: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The autoscaling/v1 Scale of `obj`.
pub fn scale_of(obj: &Value, hook: &Scale) -> Value {
    let meta = &obj["metadata"];
    let mut metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if !meta[field].is_null() {
            metadata[field] = meta[field].clone();
        }
    }
    let mut status = json!({
        "replicas": obj.pointer(hook.status_replicas).and_then(Value::as_i64).unwrap_or(0),
    });
    if let Some(selector) = (hook.selector)(obj).filter(|s| !s.is_empty()) {
        status["selector"] = json!(selector);
    }
    let mut spec = json!({});
    if let Some(r) = obj.pointer(hook.spec_replicas).and_then(Value::as_i64) {
        spec["replicas"] = json!(r);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    })
}

/// `spec.replicas` of a Scale a client sent: present and not negative (upstream's
/// `ValidateScale`).
fn desired_replicas(name: &str, scale: &Value) -> Result<i64, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::Invalid {
            kind: "Scale".into(),
            group: "autoscaling".into(),
            name: name.to_string(),
            message: format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
            causes: vec![api::FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        });
    }
    Ok(replicas)
}

/// `obj` with its desired replicas set, creating the objects on the way.
pub fn set_replicas(obj: &mut Value, hook: &Scale, replicas: i64) {
    let mut target = obj;
    for part in hook.spec_replicas.split('/').filter(|p| !p.is_empty()) {
        if !target.is_object() {
            *target = json!({});
        }
        target = &mut target[part];
    }
    *target = json!(replicas);
}

fn hook(resource: &Resource) -> Result<&Scale, ApiError> {
    // Routing serves `scale` only for kinds that declare it; a descriptor that lists the
    // subresource without the hook is a programming error the registry test catches.
    resource.scale.as_ref().ok_or(ApiError::RouteNotFound)
}

fn respond(call: &Call, rendered: Vec<u8>, hook: &Scale) -> Result<Response<Body>, ApiError> {
    let obj: Value =
        serde_json::from_slice(&rendered).map_err(|e| ApiError::Internal(e.to_string()))?;
    let body =
        serde_json::to_vec(&scale_of(&obj, hook)).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(encoded(call.accept(), StatusCode::OK, body, &[]))
}

pub async fn get(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let hook = hook(resource)?;
    let kv = call
        .server
        .store
        .get(&call.key())
        .await?
        .ok_or_else(|| ApiError::not_found(resource, call.name()))?;
    respond(&call, object::render(&kv), hook)
}

pub async fn update(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let hook = hook(resource)?;
    let scale = call.body_value()?;
    let name = call.name().to_string();
    check_name(&scale, &name, call.namespace())?;
    let replicas = desired_replicas(&name, &scale)?;
    let precondition = match object::resource_version(&scale) {
        Some(rv) => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?,
        ),
        None => None,
    };
    let written = guaranteed_update(
        &call.server,
        resource,
        call.namespace(),
        &name,
        precondition,
        call.query.dry_run()?,
        |mut obj| {
            let old = obj.clone();
            set_replicas(&mut obj, hook, replicas);
            replace(resource, obj, &old, Target::Main, &name)
        },
    )
    .await?;
    respond(&call, written.render(), hook)
}

pub async fn patch(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let hook = hook(resource)?;
    let patch = Patch::of(&call)?;
    let name = call.name().to_string();
    let written = guaranteed_update(
        &call.server,
        resource,
        call.namespace(),
        &name,
        None,
        call.query.dry_run()?,
        |mut obj| {
            let old = obj.clone();
            let scale = patch.apply(&scale_of(&obj, hook), SCALE_DEFINITION)?;
            check_name(&scale, &name, call.namespace())?;
            let replicas = desired_replicas(&name, &scale)?;
            set_replicas(&mut obj, hook, replicas);
            replace(resource, obj, &old, Target::Main, &name)
        },
    )
    .await?;
    respond(&call, written.render(), hook)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_selector(obj: &Value) -> Option<String> {
        obj.pointer("/status/selector")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    const HOOK: Scale = Scale {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector: status_selector,
    };

    #[test]
    fn scale_reads_and_writes_the_kinds_replicas() {
        let mut d = json!({"metadata": {"name": "web", "namespace": "d", "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}});
        assert_eq!(
            scale_of(&d, &HOOK),
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "web", "namespace": "d", "resourceVersion": "7"},
                "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}})
        );
        set_replicas(&mut d, &HOOK, 5);
        assert_eq!(d["spec"]["replicas"], 5);
        let mut bare = json!({"metadata": {"name": "x"}});
        set_replicas(&mut bare, &HOOK, 1);
        assert_eq!(bare["spec"], json!({"replicas": 1}));
        assert_eq!(scale_of(&bare, &HOOK)["status"], json!({"replicas": 0}));
    }
}

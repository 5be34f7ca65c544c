//! `pods/eviction`: the policy/v1 Eviction that `kubectl drain` posts. peapod serves no
//! PodDisruptionBudgets, so every eviction is allowed, as upstream allows one no budget
//! covers: a pod that has not finished gets the `DisruptionTarget` condition
//! (`EvictionByEvictionAPI`), then it is deleted with the eviction's `deleteOptions`
//! (graceful on a node, like any delete). The answer is a 201 success Status.

use http::Response;
use serde_json::Value;

use super::delete::{delete_object, DeleteOptions, Propagation};
use super::update::{guaranteed_update, set_condition};
use super::Call;
use crate::body::Body;
use crate::errors::ApiError;

pub async fn create(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let body = call.body_value()?;
    let name = call.name().to_string();
    if body["kind"].as_str().is_some_and(|k| k != "Eviction") {
        return Err(ApiError::BadRequest(format!(
            "expected an Eviction, got a {}",
            body["kind"].as_str().unwrap_or_default()
        )));
    }
    if body["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let opts = delete_options(&body["deleteOptions"], call.query.dry_run()?)?;
    let ns = call.namespace();
    let key = resource.key(ns, &name);
    let current = call
        .server
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(resource, &name))?;
    let pod: Value =
        crate::object::parse(&current).map_err(|e| ApiError::Internal(e.to_string()))?;
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    // Already going: nothing more to do (upstream answers success too).
    if pod["metadata"]["deletionTimestamp"].is_null() {
        if !finished {
            guaranteed_update(
                &call.server,
                resource,
                ns,
                &name,
                None,
                opts.dry_run,
                |mut p| {
                    set_condition(
                        &mut p,
                        "DisruptionTarget",
                        "True",
                        Some("EvictionByEvictionAPI"),
                        Some("Eviction API: evicting"),
                    );
                    Ok(p)
                },
            )
            .await?;
        }
        delete_object(&call.server, resource, ns, &name, &opts).await?;
    }
    Ok(super::created_status(&call))
}

/// The Eviction's `deleteOptions`.
fn delete_options(v: &Value, dry_run: bool) -> Result<DeleteOptions, ApiError> {
    let grace_period = v["gracePeriodSeconds"].as_i64();
    if grace_period.is_some_and(|g| g < 0) {
        return Err(ApiError::BadRequest(format!(
            "deleteOptions.gracePeriodSeconds: Invalid value: {}: must be greater than or equal to 0",
            grace_period.unwrap_or_default()
        )));
    }
    Ok(DeleteOptions {
        grace_period,
        uid: v["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: v["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run: dry_run
            || v["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "All")),
        propagation: match v["propagationPolicy"].as_str() {
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Foreground") => Some(Propagation::Foreground),
            Some("Background") => Some(Propagation::Background),
            _ => None,
        },
        orphan_dependents: v["orphanDependents"].as_bool(),
    })
}

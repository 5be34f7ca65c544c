//! `pods/eviction`: the policy/v1 Eviction that `kubectl drain` posts, as upstream's
//! `pkg/registry/core/pod/storage/eviction.go`.
//!
//! ```text
//! get pod ─ being deleted ─────────────────────────────────────────────▶ 201 (nothing to do)
//!         ─ Succeeded/Failed/Pending ───────────────────────────────────▶ delete
//!         ─ PDBs of its namespace selecting it: 0 ──────────────────────▶ delete
//!                                               >1 ─────────────────────▶ 500
//!                                               1: api::policy::decide_eviction
//!                                                  unready, policy lets it go ─▶ delete (pod rv pinned)
//!                                                  budget not observed / 0 left ─▶ 429 + DisruptionBudget cause
//!                                                  budget left ─▶ CAS on the PDB's status
//!                                                      (disruptionsAllowed - 1, disruptedPods[pod] = now;
//!                                                       decided again on the fresh PDB after a conflict) ─▶ delete
//! delete = `DisruptionTarget` (EvictionByEvictionAPI) on an unfinished pod, then the
//!          eviction's `deleteOptions` (graceful on a node) ─▶ 201 success Status
//! ```
//!
//! A dry run decides the same and writes nothing.

use http::Response;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::Value;

use super::delete::{delete_object, DeleteOptions, Propagation};
use super::update::{guaranteed_update, set_condition};
use super::Call;
use crate::body::Body;
use crate::errors::ApiError;
use crate::kinds::poddisruptionbudget::RESOURCE as PDBS;
use api::policy::EvictionDecision;

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
    let mut opts = delete_options(&body["deleteOptions"], call.query.dry_run()?)?;
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
    // Already going: nothing more to do (upstream answers success too).
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return Ok(super::created_status(&call));
    }
    let typed: Pod = serde_json::from_value(pod.clone())
        .map_err(|e| ApiError::Internal(format!("decoding pod: {e}")))?;
    if !api::policy::can_ignore_pdb(&typed) {
        let pdbs = pdbs_in(&call, ns).await?;
        let matching = api::policy::matching_pdbs(&typed, &pdbs);
        if matching.len() > 1 {
            return Err(ApiError::Internal(
                "Internal error occurred: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
        if let Some(pdb) = matching.first() {
            let pdb_name = pdb.metadata.name.clone().unwrap_or_default();
            match api::policy::decide_eviction(&typed, pdb, jiff::Timestamp::now()) {
                EvictionDecision::DeleteWithoutBudget => {
                    // The pod must still be the one judged unhealthy.
                    if opts.resource_version.is_none() {
                        opts.resource_version = Some(current.mod_revision.to_string());
                    }
                }
                EvictionDecision::Consume(_) => {
                    consume_budget(&call, ns, &pdb_name, &typed, opts.dry_run).await?
                }
                other => return Err(refusal(other, &pdb_name)),
            }
        }
    }
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !finished {
        // A pinned resourceVersion must hold for the condition's write too; the delete
        // then pins the version that write made (`addConditionAndDeletePod`).
        let pinned = match &opts.resource_version {
            Some(rv) => Some(
                rv.parse::<store::Revision>()
                    .map_err(|_| ApiError::conflict(resource, &name))?,
            ),
            None => None,
        };
        let written = guaranteed_update(
            &call.server,
            resource,
            ns,
            &name,
            pinned,
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
        if let (Some(_), super::update::Written::Updated(kv)) = (&pinned, &written) {
            if !opts.dry_run {
                opts.resource_version = Some(kv.mod_revision.to_string());
            }
        }
    }
    delete_object(&call.server, resource, ns, &name, &opts).await?;
    Ok(super::created_status(&call))
}

/// Every PodDisruptionBudget of the namespace, from the store.
async fn pdbs_in(call: &Call, ns: Option<&str>) -> Result<Vec<PodDisruptionBudget>, ApiError> {
    let listed = call
        .server
        .store
        .list(&PDBS.scope_prefix(ns), store::ListOptions::default())
        .await?;
    let mut out = Vec::with_capacity(listed.items.len());
    for kv in &listed.items {
        let v = crate::object::parse(kv).map_err(|e| ApiError::Internal(e.to_string()))?;
        match serde_json::from_value(v) {
            Ok(pdb) => out.push(pdb),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "undecodable PodDisruptionBudget"),
        }
    }
    Ok(out)
}

/// `checkAndDecrement` under compare-and-swap: the decision is taken again on the PDB as
/// read by each attempt, so a concurrent eviction that used the last disruption makes
/// this one a 429.
async fn consume_budget(
    call: &Call,
    ns: Option<&str>,
    pdb_name: &str,
    pod: &Pod,
    dry_run: bool,
) -> Result<(), ApiError> {
    guaranteed_update(&call.server, &PDBS, ns, pdb_name, None, dry_run, |mut v| {
        let pdb: PodDisruptionBudget = serde_json::from_value(v.clone())
            .map_err(|e| ApiError::Internal(format!("decoding PodDisruptionBudget: {e}")))?;
        match api::policy::decide_eviction(pod, &pdb, jiff::Timestamp::now()) {
            EvictionDecision::Consume(status) => {
                v["status"] =
                    serde_json::to_value(*status).map_err(|e| ApiError::Internal(e.to_string()))?;
                Ok(v)
            }
            EvictionDecision::DeleteWithoutBudget => Ok(v),
            other => Err(refusal(other, pdb_name)),
        }
    })
    .await?;
    Ok(())
}

/// The error for a refused eviction: 429 with the `DisruptionBudget` cause, or 403.
fn refusal(decision: EvictionDecision, pdb_name: &str) -> ApiError {
    match decision {
        EvictionDecision::Refuse { cause, retry_after } => ApiError::TooManyRequests {
            message: api::policy::EVICTION_REFUSED.into(),
            retry_after,
            causes: vec![("DisruptionBudget".into(), cause)],
        },
        EvictionDecision::Forbidden(msg) => ApiError::Forbidden(format!(
            "poddisruptionbudgets.policy \"{pdb_name}\" is forbidden: {msg}"
        )),
        _ => ApiError::Internal("unexpected eviction decision".into()),
    }
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

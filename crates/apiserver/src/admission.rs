//! Mutating admission on create, the subset of kube-apiserver's default plugins that changes
//! what a user sees: ServiceAccount (default account name) and Priority (priority from the
//! pod's PriorityClass).

use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::object;
use crate::registry::{self, Resource};
use crate::server::ApiServer;

pub async fn admit_create(
    server: &ApiServer,
    resource: &Resource,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if resource.plural == "pods" && resource.group.is_empty() {
        admit_pod(server, obj).await?;
    }
    Ok(())
}

async fn admit_pod(server: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    if !pod["spec"].is_object() {
        return Ok(());
    }
    let spec = &mut pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        let sa = spec["serviceAccount"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        spec["serviceAccountName"] = json!(sa);
    }
    spec["serviceAccount"] = spec["serviceAccountName"].clone();

    let class = spec["priorityClassName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let priority = match &class {
        None => default_priority(server).await?,
        Some(name) => {
            let key = registry::priority_classes().key(None, name);
            let pc = match server.priority_classes.get(&key) {
                Some(pc) => pc,
                None => {
                    let kv = server.store.get(&key).await?.ok_or_else(|| {
                        ApiError::Forbidden(format!(
                            "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                            object::name(pod)
                        ))
                    })?;
                    std::sync::Arc::new(
                        object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?,
                    )
                }
            };
            Some((
                name.clone(),
                pc["value"].as_i64().unwrap_or(0),
                pc["preemptionPolicy"].as_str().map(str::to_string),
            ))
        }
    };
    if let Some((name, value, policy)) = priority {
        let spec = &mut pod["spec"];
        if let Some(p) = spec["priority"].as_i64() {
            if p != value {
                return Err(ApiError::Forbidden(format!(
                    "the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                )));
            }
        }
        spec["priorityClassName"] = json!(name);
        spec["priority"] = json!(value);
        if let Some(policy) = policy {
            spec["preemptionPolicy"] = json!(policy);
        }
    }
    Ok(())
}

/// The globalDefault PriorityClass, if one exists.
async fn default_priority(
    server: &ApiServer,
) -> Result<Option<(String, i64, Option<String>)>, ApiError> {
    Ok(server
        .priority_classes
        .values()
        .into_iter()
        .find(|pc| pc["globalDefault"].as_bool() == Some(true))
        .map(|pc| {
            (
                object::name(&pc).to_string(),
                pc["value"].as_i64().unwrap_or(0),
                pc["preemptionPolicy"].as_str().map(str::to_string),
            )
        }))
}

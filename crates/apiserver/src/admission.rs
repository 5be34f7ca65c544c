//! Mutating admission on create, the subset of kube-apiserver's default plugins that changes
//! what a user sees: ServiceAccount (default account name, the account must exist, the
//! `kube-api-access-*` token volume mounted in every container) and Priority (priority from
//! the pod's PriorityClass). A kind opts in through its descriptor's `admit` hook.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::errors::ApiError;
use crate::kinds;
use crate::object;
use crate::registry::Resource;
use crate::server::ApiServer;
use crate::serviceaccount::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP};

/// A kind's mutating admission on create: it may change the object or refuse it. It sees
/// the requesting user, as upstream's admission attributes carry it.
pub type Admit = for<'a> fn(
    &'a ApiServer,
    &'a mut Value,
    &'a UserInfo,
) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;

/// Runs the kind's admission, if it has any.
pub async fn admit_create(
    server: &ApiServer,
    resource: &Resource,
    obj: &mut Value,
    user: &UserInfo,
) -> Result<(), ApiError> {
    match resource.admit {
        Some(admit) => admit(server, obj, user).await,
        None => Ok(()),
    }
}

/// The name an admission refusal quotes (upstream's `extractResourceName`): admission runs
/// before a `generateName` becomes a name, so then the prefix (`web-`), else `Unknown`.
fn forbidden_name(obj: &Value) -> &str {
    let name = object::name(obj);
    if !name.is_empty() {
        return name;
    }
    obj["metadata"]["generateName"]
        .as_str()
        .filter(|g| !g.is_empty())
        .unwrap_or("Unknown")
}

/// Pod admission: ServiceAccount, then Priority.
pub fn admit_pod<'a>(
    server: &'a ApiServer,
    pod: &'a mut Value,
    _user: &'a UserInfo,
) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
    Box::pin(pod_admission(server, pod))
}

async fn pod_admission(server: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
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
    let sa_name = spec["serviceAccountName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ns = object::namespace(pod).unwrap_or_default().to_string();
    let Some(sa) = service_account(server, &ns, &sa_name).await? else {
        return Err(ApiError::Forbidden(format!(
            "pods \"{}\" is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found",
            forbidden_name(pod)
        )));
    };
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or(sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(&mut pod["spec"]);
    }
    let spec = &mut pod["spec"];

    let class = spec["priorityClassName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let priority = match &class {
        None => default_priority(server).await?,
        Some(name) => {
            let key = kinds::priorityclass::RESOURCE.key(None, name);
            let pc = match server.priority_classes.get(&key) {
                Some(pc) => pc,
                None => {
                    let kv = server.store.get(&key).await?.ok_or_else(|| {
                        ApiError::Forbidden(format!(
                            "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                            forbidden_name(pod)
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

/// How often a missing `default` account is looked up again before the pod is refused: the
/// controller creates it right after the namespace, so a pod created at once waits for it
/// (upstream: 10 attempts, 100–200 ms apart).
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;

/// A service account from the mirror, else from the store (it may be a moment old).
async fn service_account(
    server: &ApiServer,
    ns: &str,
    name: &str,
) -> Result<Option<std::sync::Arc<Value>>, ApiError> {
    let key = kinds::serviceaccount::RESOURCE.key(Some(ns), name);
    if let Some(sa) = server.service_accounts.get(&key) {
        return Ok(Some(sa));
    }
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            let jitter = rand::random::<u64>() % 100;
            tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
        }
        if let Some(kv) = server.store.get(&key).await? {
            let sa = object::parse(&kv).map_err(|e| ApiError::Internal(e.to_string()))?;
            return Ok(Some(std::sync::Arc::new(sa)));
        }
    }
    Ok(None)
}

/// Where every container finds the account's token, CA and namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The lifetime the token volume asks for: upstream's 3607 s, an hour and a few seconds so
/// that servers can tell these tokens from others.
const TOKEN_VOLUME_EXPIRATION_SECONDS: i64 = 3607;

/// Upstream's `mountServiceAccountToken`: every init and regular container without a mount
/// at [`TOKEN_MOUNT_PATH`] gets a read-only one of the pod's `kube-api-access-*` volume,
/// which is added (projected: token, `kube-root-ca.crt`'s `ca.crt`, the namespace) if some
/// container needs it and the pod has none. Ephemeral containers are left alone.
fn mount_token(spec: &mut Value) {
    let existing = spec["volumes"].as_array().and_then(|vs| {
        vs.iter()
            .filter_map(|v| v["name"].as_str())
            .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
            .map(str::to_string)
    });
    let name = existing
        .clone()
        .unwrap_or_else(|| api::meta::generate_name(TOKEN_VOLUME_PREFIX, rand::random()));
    let mount = json!({ "name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH });
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec[list].as_array_mut() else {
            continue;
        };
        for c in containers {
            let has = c["volumeMounts"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH));
            if has {
                continue;
            }
            needed = true;
            match c["volumeMounts"].as_array_mut() {
                Some(ms) => ms.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
        }
    }
    if existing.is_some() || !needed {
        return;
    }
    let volume = json!({
        "name": name,
        "projected": {
            "sources": [
                { "serviceAccountToken": {
                    "expirationSeconds": TOKEN_VOLUME_EXPIRATION_SECONDS, "path": "token" } },
                { "configMap": {
                    "name": ROOT_CA_CONFIG_MAP,
                    "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": {
                    "items": [{ "path": "namespace",
                                "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ],
            "defaultMode": 0o644,
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(vs) => vs.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
}

/// The token volume's name before its random suffix (upstream's `ServiceAccountVolumeName`).
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({
            "initContainers": [{ "name": "init", "image": "i" }],
            "containers": [
                { "name": "a", "image": "i" },
                { "name": "b", "image": "i", "volumeMounts": [
                    { "name": "own", "mountPath": TOKEN_MOUNT_PATH }] },
            ],
            "ephemeralContainers": [{ "name": "dbg", "image": "i" }],
        })
    }

    #[test]
    fn refusals_quote_the_name_or_the_generate_name_prefix() {
        let cases = [
            (json!({"metadata": {"name": "web"}}), "web"),
            (json!({"metadata": {"generateName": "web-"}}), "web-"),
            (
                json!({"metadata": {"name": "web", "generateName": "x-"}}),
                "web",
            ),
            (json!({"metadata": {}}), "Unknown"),
        ];
        for (obj, want) in cases {
            assert_eq!(forbidden_name(&obj), want, "{obj}");
        }
    }

    #[test]
    fn the_token_volume_is_mounted_where_no_container_has_its_own() {
        let mut s = spec();
        mount_token(&mut s);
        let vols = s["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert_eq!(name.len(), TOKEN_VOLUME_PREFIX.len() + 5);
        assert!(name.starts_with(TOKEN_VOLUME_PREFIX));
        let sources = &vols[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[1]["configMap"]["items"][0]["path"], "ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(vols[0]["projected"]["defaultMode"], 420);
        let expected = json!([{ "name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH }]);
        assert_eq!(s["initContainers"][0]["volumeMounts"], expected);
        assert_eq!(s["containers"][0]["volumeMounts"], expected);
        // A container that mounts something there already keeps only its own.
        assert_eq!(
            s["containers"][1]["volumeMounts"].as_array().unwrap().len(),
            1
        );
        assert!(s["ephemeralContainers"][0]["volumeMounts"].is_null());
    }

    #[test]
    fn an_existing_token_volume_is_reused_and_none_is_added_when_unneeded() {
        let mut s = json!({
            "containers": [{ "name": "a", "image": "i" }],
            "volumes": [{ "name": "kube-api-access-abcde", "emptyDir": {} }],
        });
        mount_token(&mut s);
        assert_eq!(s["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            s["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
        let mut s = json!({ "containers": [{ "name": "a", "image": "i",
            "volumeMounts": [{ "name": "x", "mountPath": TOKEN_MOUNT_PATH }] }] });
        mount_token(&mut s);
        assert!(s["volumes"].is_null());
    }
}

//! The API objects a container's environment reads: the ConfigMaps and Secrets named by
//! `env[].valueFrom.configMapKeyRef` / `secretKeyRef` and by `envFrom[]`. They are fetched
//! just before the container is created (as the kubelet does), so a container whose object
//! is missing waits in `CreateContainerConfigError` and starts on a later attempt once the
//! object exists. Resolving the values themselves is `container::environment`'s business.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};

use crate::container::StartFailure;

/// The data of each referenced object, `None` when it does not exist.
#[derive(Debug, Default)]
pub struct EnvObjects {
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

/// What a reference into an object found.
pub enum Lookup<'a> {
    Value(&'a str),
    /// The object exists without the key.
    MissingKey,
    /// The object does not exist.
    MissingObject,
}

impl EnvObjects {
    pub fn config_map(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.config_maps.get(name).and_then(Option::as_ref)
    }

    pub fn secret(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.secrets.get(name).and_then(Option::as_ref)
    }

    pub fn config_map_key(&self, name: &str, key: &str) -> Lookup<'_> {
        lookup(self.config_map(name), key)
    }

    pub fn secret_key(&self, name: &str, key: &str) -> Lookup<'_> {
        lookup(self.secret(name), key)
    }

    #[cfg(test)]
    pub fn with_config_map(mut self, name: &str, data: &[(&str, &str)]) -> Self {
        self.config_maps.insert(name.to_string(), Some(pairs(data)));
        self
    }

    #[cfg(test)]
    pub fn with_secret(mut self, name: &str, data: &[(&str, &str)]) -> Self {
        self.secrets.insert(name.to_string(), Some(pairs(data)));
        self
    }
}

#[cfg(test)]
fn pairs(data: &[(&str, &str)]) -> BTreeMap<String, String> {
    data.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lookup<'a>(data: Option<&'a BTreeMap<String, String>>, key: &str) -> Lookup<'a> {
    match data {
        None => Lookup::MissingObject,
        Some(d) => match d.get(key) {
            Some(v) => Lookup::Value(v),
            None => Lookup::MissingKey,
        },
    }
}

/// The names of the ConfigMaps and Secrets `c`'s environment refers to.
fn references(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            config_maps.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in c.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            config_maps.push(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.push(r.name.clone());
        }
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}

/// Fetches every object `c`'s environment refers to in namespace `ns`. A missing object is
/// recorded as such (whether that is an error depends on `optional`); failing to ask the
/// API server is a `CreateContainerConfigError` now, retried later.
pub async fn fetch(
    client: &kube::Client,
    ns: &str,
    c: &Container,
) -> Result<EnvObjects, StartFailure> {
    let (config_maps, secrets) = references(c);
    let mut objects = EnvObjects::default();
    let config_error = |e: kube::Error| StartFailure::config(e.to_string());
    if !config_maps.is_empty() {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
        for name in config_maps {
            let data = api
                .get_opt(&name)
                .await
                .map_err(config_error)?
                .map(|cm| cm.data.unwrap_or_default());
            objects.config_maps.insert(name, data);
        }
    }
    if !secrets.is_empty() {
        let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
        for name in secrets {
            let data = api.get_opt(&name).await.map_err(config_error)?.map(|s| {
                let mut data: BTreeMap<String, String> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                // stringData is write-only upstream, but a server that kept it means it.
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.entry(k).or_insert(v);
                }
                data
            });
            objects.secrets.insert(name, data);
        }
    }
    Ok(objects)
}

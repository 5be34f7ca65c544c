//! What discovery says the collector watches and how it finds an owner's resource
//! (upstream's `GetDeletableResources` and the REST mapper), as pure functions.

use std::collections::{BTreeMap, HashMap};

use kube::core::ApiResource;

use super::graph_builder::ResourceKey;
use crate::namespace::deletion::DiscoveredGroup;

/// Kinds upstream's collector never watches (`DefaultIgnoredResources`): events come and
/// go too often to be worth a graph.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub api_resource: ApiResource,
    pub namespaced: bool,
}

impl Mapping {
    pub fn key(&self) -> ResourceKey {
        (
            self.api_resource.group.clone(),
            self.api_resource.version.clone(),
            self.api_resource.plural.clone(),
        )
    }
}

/// Every served resource of every version, by `(apiVersion, kind)` and by resource key.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    by_kind: HashMap<(String, String), Mapping>,
    by_key: HashMap<ResourceKey, Mapping>,
}

impl Mapper {
    /// The resource an owner reference's `apiVersion` and `kind` name.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Mapping> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
    }

    pub fn by_key(&self, key: &ResourceKey) -> Option<&Mapping> {
        self.by_key.get(key)
    }

    /// Adds what a later discovery found, keeping what it could not reach this time.
    pub fn merge(&mut self, other: Mapper) {
        self.by_kind.extend(other.by_kind);
        self.by_key.extend(other.by_key);
    }
}

/// The mapper, and the resources to watch: each group's preferred version (or the first
/// version serving it) of every resource that serves `list`, `watch` and `delete`, as
/// client-go's `ServerPreferredResources` filtered by `SupportsAllVerbs` yields them.
pub fn discovered(groups: &[DiscoveredGroup]) -> (Mapper, Vec<Mapping>) {
    let mut mapper = Mapper::default();
    let mut chosen: BTreeMap<(String, String), (Mapping, bool)> = BTreeMap::new();
    for group in groups {
        for list in &group.lists {
            let (gv_group, version) = match list.group_version.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), list.group_version.clone()),
            };
            let preferred = version == group.preferred_version;
            for r in &list.resources {
                if r.name.contains('/') {
                    continue;
                }
                let group_name = r.group.clone().unwrap_or_else(|| gv_group.clone());
                let version = r.version.clone().unwrap_or_else(|| version.clone());
                let api_version = if group_name.is_empty() {
                    version.clone()
                } else {
                    format!("{group_name}/{version}")
                };
                let mapping = Mapping {
                    api_resource: ApiResource {
                        group: group_name.clone(),
                        version,
                        api_version: api_version.clone(),
                        kind: r.kind.clone(),
                        plural: r.name.clone(),
                    },
                    namespaced: r.namespaced,
                };
                mapper
                    .by_kind
                    .insert((api_version, r.kind.clone()), mapping.clone());
                mapper.by_key.insert(mapping.key(), mapping.clone());
                let key = (group_name, r.name.clone());
                if chosen.contains_key(&key) && !preferred {
                    continue;
                }
                let has = |verb: &str| r.verbs.iter().any(|v| v == verb);
                let watchable = has("list") && has("watch") && has("delete");
                chosen.insert(key, (mapping, watchable));
            }
        }
    }
    let monitored = chosen
        .into_iter()
        .filter(|((group, plural), (_, watchable))| {
            *watchable && !IGNORED.contains(&(group.as_str(), plural.as_str()))
        })
        .map(|(_, (m, _))| m)
        .collect();
    (mapper, monitored)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};

    use super::*;

    fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        APIResource {
            name: name.into(),
            kind: kind.into(),
            namespaced,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn watches_preferred_deletable_resources_and_maps_every_version() {
        let all = &["create", "delete", "get", "list", "watch"];
        let groups = vec![
            DiscoveredGroup {
                name: String::new(),
                preferred_version: "v1".into(),
                lists: vec![APIResourceList {
                    group_version: "v1".into(),
                    resources: vec![
                        resource("configmaps", "ConfigMap", true, all),
                        resource("pods", "Pod", true, all),
                        resource("pods/status", "Pod", true, &["get"]),
                        resource("events", "Event", true, all),
                        resource("nodes", "Node", false, all),
                        resource("bindings", "Binding", true, &["create"]),
                    ],
                }],
            },
            DiscoveredGroup {
                name: "example.com".into(),
                preferred_version: "v2".into(),
                lists: vec![
                    APIResourceList {
                        group_version: "example.com/v2".into(),
                        resources: vec![resource("widgets", "Widget", false, all)],
                    },
                    APIResourceList {
                        group_version: "example.com/v1".into(),
                        resources: vec![resource("widgets", "Widget", false, all)],
                    },
                ],
            },
        ];
        let (mapper, monitored) = discovered(&groups);
        let names: Vec<String> = monitored
            .iter()
            .map(|m| format!("{}/{}", m.api_resource.api_version, m.api_resource.plural))
            .collect();
        assert_eq!(
            names,
            [
                "v1/configmaps",
                "v1/nodes",
                "v1/pods",
                "example.com/v2/widgets"
            ]
        );
        let old = mapper.by_kind("example.com/v1", "Widget");
        assert!(old.is_some_and(|m| !m.namespaced && m.api_resource.version == "v1"));
        assert!(mapper.by_kind("v1", "Pod").is_some_and(|m| m.namespaced));
        assert!(mapper.by_kind("apps/v1", "Deployment").is_none());
    }
}

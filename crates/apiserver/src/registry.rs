//! The served resources: one [`Resource`] descriptor per group/version/resource, the table
//! discovery, routing and storage all read from.

use crate::strategy::{self, Strategy};

/// One served resource (a REST collection), as discovery describes it.
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    /// The plural, lowercase URL segment (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served under an item (`status`, `binding`, ...).
    pub subresources: &'static [Subresource],
    /// The storage key segment; resources served in two groups share it (events).
    pub storage: &'static str,
    pub strategy: &'static dyn Strategy,
    /// The verbs discovery advertises and routing accepts.
    pub verbs: &'static [&'static str],
}

/// A subresource and the kind its requests and responses carry.
pub struct Subresource {
    pub name: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` for the core group, `leases.coordination.k8s.io` otherwise, as upstream's
    /// messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Key prefix of every object of this resource (`/registry/pods/`).
    pub fn prefix(&self) -> String {
        format!("/registry/{}/", self.storage)
    }

    /// Key prefix of the objects in one namespace, or of all objects.
    pub fn scope_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/", self.storage, ns),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/{}", self.storage, ns, name),
            _ => format!("/registry/{}/{}", self.storage, name),
        }
    }
}

const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Namespaces cannot be deleted as a collection (upstream serves no deletecollection).
const NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const STATUS: Subresource = Subresource {
    name: "status",
    kind: "",
    verbs: &["get", "patch", "update"],
};

static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[
            STATUS,
            // Only `spec.finalizers` changes through it (upstream's FinalizeREST).
            Subresource {
                name: "finalize",
                kind: "",
                verbs: &["update"],
            },
        ],
        storage: "namespaces",
        strategy: &strategy::NAMESPACE,
        verbs: NO_DELETECOLLECTION,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            STATUS,
            Subresource {
                name: "binding",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "log",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "exec",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "attach",
                kind: "PodAttachOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "eviction",
                kind: "Eviction",
                verbs: &["create"],
            },
            Subresource {
                name: "ephemeralcontainers",
                kind: "Pod",
                verbs: &["get", "patch", "update"],
            },
            Subresource {
                name: "portforward",
                kind: "PodPortForwardOptions",
                verbs: &["create", "get"],
            },
        ],
        storage: "pods",
        strategy: &strategy::POD,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[STATUS],
        storage: "minions",
        strategy: &strategy::NODE,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        storage: "events",
        strategy: &strategy::EVENT,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        storage: "configmaps",
        strategy: &strategy::CONFIG_MAP,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "secrets",
        strategy: &strategy::SECRET,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[Subresource {
            name: "token",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
        storage: "serviceaccounts",
        strategy: &strategy::SERVICE_ACCOUNT,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "leases",
        strategy: &strategy::LEASE,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        storage: "events",
        strategy: &strategy::EVENT_V1,
        verbs: STANDARD_VERBS,
    },
    Resource {
        group: "scheduling.k8s.io",
        version: "v1",
        plural: "priorityclasses",
        singular: "priorityclass",
        kind: "PriorityClass",
        namespaced: false,
        short_names: &["pc"],
        categories: &[],
        subresources: &[],
        storage: "priorityclasses",
        strategy: &strategy::PRIORITY_CLASS,
        verbs: STANDARD_VERBS,
    },
];

pub fn all() -> &'static [Resource] {
    RESOURCES
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups served besides core, with their versions, in discovery order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

pub fn pods() -> &'static Resource {
    &RESOURCES[1]
}

pub fn core_events() -> &'static Resource {
    &RESOURCES[3]
}

pub fn priority_classes() -> &'static Resource {
    &RESOURCES[9]
}

pub fn nodes() -> &'static Resource {
    &RESOURCES[2]
}

pub fn config_maps() -> &'static Resource {
    &RESOURCES[4]
}

pub fn secrets() -> &'static Resource {
    &RESOURCES[5]
}

pub fn service_accounts() -> &'static Resource {
    &RESOURCES[6]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI documents are generated from their own table of kinds; every resource
    /// served here must be described there, or kubectl explain and --validate=strict fail.
    #[test]
    fn accessors_name_their_resource() {
        assert_eq!(namespaces().plural, "namespaces");
        assert_eq!(pods().plural, "pods");
        assert_eq!(nodes().plural, "nodes");
        assert_eq!(core_events().plural, "events");
        assert_eq!(core_events().group, "");
        assert_eq!(config_maps().plural, "configmaps");
        assert_eq!(secrets().plural, "secrets");
        assert_eq!(service_accounts().plural, "serviceaccounts");
        assert_eq!(priority_classes().plural, "priorityclasses");
    }

    #[test]
    fn every_served_resource_has_openapi_paths() {
        for r in all() {
            let (doc_path, url) = if r.group.is_empty() {
                ("api/v1".to_string(), format!("/api/{}", r.version))
            } else {
                (
                    format!("apis/{}/{}", r.group, r.version),
                    format!("/apis/{}/{}", r.group, r.version),
                )
            };
            let doc = openapi::v3_document(&doc_path)
                .unwrap_or_else(|| panic!("no OpenAPI v3 document for {doc_path}"));
            let doc: serde_json::Value = serde_json::from_slice(&doc).expect("document is JSON");
            let item = if r.namespaced {
                format!("{url}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
            } else {
                format!("{url}/{}/{{name}}", r.plural)
            };
            assert!(
                doc["paths"].get(&item).is_some(),
                "{item} missing from {doc_path}"
            );
            for sub in r.subresources {
                let sub_path = format!("{item}/{}", sub.name);
                assert!(
                    doc["paths"].get(&sub_path).is_some(),
                    "{sub_path} missing from {doc_path}"
                );
            }
        }
    }
}

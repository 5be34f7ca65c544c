//! The served resources: one [`Resource`] descriptor per group/version/resource, each built
//! by its kind's module in [`crate::kinds`], and the one table that lists them. Discovery,
//! routing, storage keys, OpenAPI, tables, field selectors, patching and the generic
//! handlers all read the descriptor; none of them names a kind.
//!
//! Adding a kind: a module in `kinds/` that builds its `RESOURCE`, plus one line in
//! [`RESOURCES`] (ARCHITECTURE.md §7, "Adding a kind").

use std::sync::OnceLock;

use serde_json::Value;

use crate::admission::Admit;
use crate::convert::Conversion;
use crate::filter::Fields;
use crate::handlers::delete::DeleteStrategy;
use crate::kinds;
use crate::strategy::Strategy;
use crate::table::Printer;

/// One served resource (a REST collection), as discovery describes it, with everything
/// that makes it its kind.
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
    /// The verbs discovery advertises and routing accepts.
    pub verbs: &'static [&'static str],
    /// Decoding, defaults, validation, create/update preparation (`strategy.rs`).
    pub strategy: &'static dyn Strategy,
    /// The OpenAPI schema of the served type (also the root of its strategic-merge-patch
    /// schema) and of its list.
    pub schema: openapi::SchemaFn,
    pub list_schema: openapi::ListSchema,
    /// `kubectl get` columns and cells.
    pub printer: Printer,
    /// The fields a field selector may name, and how to read them from an object.
    pub fields: Fields,
    /// Graceful deletion, finalizers and what a DELETE answers with.
    pub delete: DeleteStrategy,
    /// Mutating admission on create, when the kind has any (pods).
    pub admit: Option<Admit>,
    /// Served in another form than stored (events.k8s.io/v1 Events are core/v1 Events).
    pub conversion: Option<Conversion>,
    /// Where the `scale` subresource reads and writes replicas, for kinds that have one.
    pub scale: Option<Scale>,
    /// Storage hooks, for kinds whose writes hold resources outside their objects
    /// (Services: ClusterIPs and node ports).
    pub hooks: Option<&'static StorageHooks>,
}

/// A future a storage hook returns.
pub type HookFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a hook's transaction does once it is known whether the write landed (`true`) or
/// not: commit (release what the new object no longer holds) or revert (give back what was
/// taken for it).
pub type Finish = Box<dyn FnOnce(bool) -> HookFuture<'static, ()> + Send>;

/// Upstream's generic-store hooks (`BeginCreate`, `BeginUpdate`, `AfterDelete`): the create
/// and update hooks run before the write, may change the object and answer a [`Finish`];
/// the delete hook runs after an object is gone. Dry runs take nothing.
pub struct StorageHooks {
    pub begin_create: BeginCreate,
    pub begin_update: BeginUpdate,
    pub after_delete: AfterDelete,
}

/// `BeginCreate`: the object to be created (may be changed), and whether it is a dry run.
pub type BeginCreate = for<'a> fn(
    &'a crate::server::ApiServer,
    &'a mut Value,
    bool,
) -> HookFuture<'a, Result<Finish, crate::ApiError>>;

/// `BeginUpdate`: the replacement (may be changed), the object it replaces, dry run.
pub type BeginUpdate = for<'a> fn(
    &'a crate::server::ApiServer,
    &'a mut Value,
    &'a Value,
    bool,
) -> HookFuture<'a, Result<Finish, crate::ApiError>>;

/// `AfterDelete`: the object that is gone.
pub type AfterDelete = for<'a> fn(&'a crate::server::ApiServer, &'a Value) -> HookFuture<'a, ()>;

/// What a subresource is, so handlers dispatch on it rather than on its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubresourceKind {
    Status,
    EphemeralContainers,
    Binding,
    Eviction,
    Log,
    Exec,
    Attach,
    PortForward,
    /// `serviceaccounts/token` (TokenRequest).
    Token,
    /// autoscaling/v1 Scale of a kind with a [`Scale`] hook.
    Scale,
    /// `namespaces/finalize`: only `spec.finalizers` changes (upstream's FinalizeREST).
    Finalize,
    /// `certificatesigningrequests/approval`: only the conditions change (upstream's
    /// ApprovalREST).
    Approval,
}

/// A subresource and the kind its requests and responses carry.
pub struct Subresource {
    pub name: &'static str,
    /// The kind of its body; empty for the parent's own kind.
    pub kind: &'static str,
    /// Group and version of that kind when it is not the parent's group (`policy/v1`).
    pub group_version: Option<(&'static str, &'static str)>,
    pub verbs: &'static [&'static str],
    pub handler: SubresourceKind,
}

/// The scale subresource's view of a kind, as a CustomResourceDefinition declares it:
/// JSON pointers to the desired and the observed replicas, and the label selector string
/// the Scale's `status.selector` reports (`a=b,c in (d)`). apps/v1 kinds print their
/// `spec.selector`, a ReplicationController its selector map, a CRD a string at a path; the
/// generic handler (`handlers/scale.rs`) answers autoscaling/v1 Scale from them.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub spec_replicas: &'static str,
    pub status_replicas: &'static str,
    /// The selector string of an object (in its stored form), if it has one.
    pub selector: fn(&Value) -> Option<String>,
}

pub const STATUS: Subresource = Subresource {
    name: "status",
    kind: "",
    group_version: None,
    verbs: &["get", "patch", "update"],
    handler: SubresourceKind::Status,
};

/// The `scale` subresource, for kinds with a [`Scale`] hook.
pub const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    group_version: Some(("autoscaling", "v1")),
    verbs: &["get", "patch", "update"],
    handler: SubresourceKind::Scale,
};

pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every served resource, the core group first, in discovery order. One line per kind.
static RESOURCES: &[&Resource] = &[
    &kinds::namespace::RESOURCE,
    &kinds::pod::RESOURCE,
    &kinds::node::RESOURCE,
    &kinds::event::RESOURCE,
    &kinds::configmap::RESOURCE,
    &kinds::secret::RESOURCE,
    &kinds::serviceaccount::RESOURCE,
    &kinds::podtemplate::RESOURCE,
    &kinds::replicationcontroller::RESOURCE,
    // Upstream lists core resources by name, so `kubectl get all` prints pods, then
    // replicationcontrollers, then services.
    &kinds::service::RESOURCE,
    &kinds::endpoints::RESOURCE,
    // apps/v1 in upstream's order (alphabetical), so `kubectl get all` lists them as
    // against kube-apiserver.
    &kinds::controllerrevision::RESOURCE,
    &kinds::daemonset::RESOURCE,
    &kinds::deployment::RESOURCE,
    &kinds::replicaset::RESOURCE,
    &kinds::statefulset::RESOURCE,
    &kinds::lease::RESOURCE,
    &kinds::event::EVENTS_V1,
    &kinds::priorityclass::RESOURCE,
    // Upstream's discovery lists a group's resources by name: cronjobs before jobs, which is
    // the order `kubectl get all` prints them in.
    &kinds::cronjob::RESOURCE,
    &kinds::job::RESOURCE,
    &kinds::poddisruptionbudget::RESOURCE,
    &kinds::endpointslice::RESOURCE,
    &kinds::ipaddress::RESOURCE,
    &kinds::servicecidr::RESOURCE,
    &kinds::certificatesigningrequest::RESOURCE,
];

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

    /// The OpenAPI definition name of the served type (`io.k8s.api.core.v1.Pod`), the root
    /// of its strategic-merge schema. Worked out once per resource: registering a schema
    /// walks the whole type.
    pub fn definition(&self) -> &'static str {
        static NAMES: OnceLock<Vec<String>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            RESOURCES
                .iter()
                .map(|r| {
                    let mut generator = k8s_openapi::schemars::SchemaGenerator::default();
                    (r.schema)(&mut generator)
                })
                .collect()
        });
        RESOURCES
            .iter()
            .position(|r| std::ptr::eq(*r, self))
            .and_then(|i| names.get(i))
            .map_or("", String::as_str)
    }

    /// A stored object in the form this resource serves.
    pub fn to_served(&self, stored: Value) -> Result<Value, crate::ApiError> {
        match &self.conversion {
            Some(c) => (c.from_storage)(stored).map_err(crate::ApiError::Internal),
            None => Ok(stored),
        }
    }

    /// Stored bytes (already rendered) in the form this resource serves.
    pub fn to_served_bytes(&self, rendered: Vec<u8>) -> Result<Vec<u8>, crate::ApiError> {
        if self.conversion.is_none() {
            return Ok(rendered);
        }
        let v: Value = serde_json::from_slice(&rendered)
            .map_err(|e| crate::ApiError::Internal(e.to_string()))?;
        serde_json::to_vec(&self.to_served(v)?)
            .map_err(|e| crate::ApiError::Internal(e.to_string()))
    }
}

pub fn all() -> &'static [&'static Resource] {
    RESOURCES
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Whether some resource is served at `group`/`version` (`""` for the core group).
pub fn serves(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
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

/// The OpenAPI documents of exactly the served resources, built once.
pub fn openapi() -> &'static openapi::Documents {
    static DOCS: OnceLock<openapi::Documents> = OnceLock::new();
    DOCS.get_or_init(|| openapi::Documents::new(RESOURCES.iter().map(|r| served_kind(r)).collect()))
}

fn served_kind(r: &Resource) -> openapi::ServedKind {
    use openapi::Subresource as S;
    let subresources = r
        .subresources
        .iter()
        .map(|s| match s.handler {
            SubresourceKind::Status => S::Status,
            SubresourceKind::EphemeralContainers => S::EphemeralContainers,
            SubresourceKind::Binding => S::Binding,
            SubresourceKind::Eviction => S::Eviction,
            SubresourceKind::Log => S::Log,
            SubresourceKind::Exec => S::Exec,
            SubresourceKind::Attach => S::Attach,
            SubresourceKind::PortForward => S::PortForward,
            SubresourceKind::Token => S::Token,
            SubresourceKind::Scale => S::Scale,
            SubresourceKind::Finalize => S::Finalize,
            SubresourceKind::Approval => S::Approval,
        })
        .collect();
    openapi::ServedKind {
        group: r.group,
        version: r.version,
        kind: r.kind,
        plural: r.plural,
        namespaced: r.namespaced,
        schema: r.schema,
        list: r.list_schema,
        verbs: openapi::Verbs {
            list: r.allows("list"),
            create: r.allows("create"),
            delete_collection: r.allows("deletecollection"),
            item: r.allows("get"),
        },
        delete_returns_object: r.delete.returns_object,
        subresources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_accessors_name_their_resource() {
        assert_eq!(kinds::namespace::RESOURCE.plural, "namespaces");
        assert_eq!(kinds::pod::RESOURCE.plural, "pods");
        assert_eq!(kinds::node::RESOURCE.storage, "minions");
        assert_eq!(kinds::event::RESOURCE.group, "");
        assert_eq!(kinds::event::EVENTS_V1.group, "events.k8s.io");
        assert_eq!(
            kinds::event::EVENTS_V1.storage,
            kinds::event::RESOURCE.storage
        );
        assert!(std::ptr::eq(
            find("", "v1", "pods").map_or(std::ptr::null(), |r| r as *const _),
            &kinds::pod::RESOURCE
        ));
    }

    #[test]
    fn every_resource_is_listed_once_with_a_schema_of_its_kind() {
        for (i, r) in all().iter().enumerate() {
            assert!(
                all()[..i]
                    .iter()
                    .all(|o| (o.group, o.version, o.plural) != (r.group, r.version, r.plural)),
                "{} listed twice",
                r.qualified()
            );
            let def = r.definition();
            assert!(
                def.ends_with(&format!(".{}", r.kind)),
                "{}: schema {def} is not a {}",
                r.qualified(),
                r.kind
            );
            assert_eq!(r.list_schema.kind, r.list_kind(), "{}", r.qualified());
            for sub in r.subresources {
                assert!(
                    sub.handler != SubresourceKind::Scale || r.scale.is_some(),
                    "{} serves scale without a Scale hook",
                    r.qualified()
                );
            }
        }
    }

    /// `kubectl get all` prints the `all` category in discovery order: upstream lists a
    /// group's resources alphabetically, so pods come before replicationcontrollers and
    /// the apps kinds follow in that order.
    #[test]
    fn the_all_category_is_in_upstreams_order() {
        let in_all: Vec<String> = all()
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.qualified())
            .collect();
        assert_eq!(
            in_all,
            [
                "pods",
                "replicationcontrollers",
                "services",
                "daemonsets.apps",
                "deployments.apps",
                "replicasets.apps",
                "statefulsets.apps",
                "cronjobs.batch",
                "jobs.batch"
            ]
        );
        for group in ["apps", "batch"] {
            let plurals: Vec<&str> = all()
                .iter()
                .filter(|r| r.group == group)
                .map(|r| r.plural)
                .collect();
            let mut sorted = plurals.clone();
            sorted.sort_unstable();
            assert_eq!(plurals, sorted, "{group}");
        }
    }

    #[test]
    fn every_served_resource_has_protobuf_messages() {
        for r in all() {
            for kind in [r.kind.to_string(), r.list_kind()] {
                assert!(
                    protobuf::message_for(&r.api_version(), &kind).is_some(),
                    "no protobuf message for {} {kind}",
                    r.api_version()
                );
            }
        }
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
            let doc = openapi()
                .v3_document(&doc_path)
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

//! What the OpenAPI documents describe: the served kinds the caller hands in
//! ([`ServedKind`]), grouped by group-version, with each kind's verbs and
//! subresources. The crate keeps no table of its own: the API server's kind
//! modules supply it, so a new kind is described by adding it there.

use k8s_openapi::api::{authentication, autoscaling, core, policy};
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};

/// Registers a type's schema (and everything it references) in a generator
/// and returns the definition name it is stored under.
pub type SchemaFn = fn(&mut SchemaGenerator) -> String;

/// The `SchemaFn` for `T`. k8s-openapi names every schema after upstream's
/// dotted Go package path (`io.k8s.api.core.v1.Pod`), so the name is used as is.
pub fn def<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// A group-version-kind, as the `x-kubernetes-group-version-kind` extension spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

pub(crate) const fn gvk(group: &'static str, version: &'static str, kind: &'static str) -> Gvk {
    Gvk {
        group,
        version,
        kind,
    }
}

/// Which verbs a resource's collection and item paths carry.
#[derive(Clone, Copy, Debug)]
pub struct Verbs {
    /// get on the collection (list), plus the watch paths and the list across
    /// all namespaces for namespaced resources.
    pub list: bool,
    pub create: bool,
    pub delete_collection: bool,
    /// get, put, patch and delete on `{name}`.
    pub item: bool,
}

impl Verbs {
    /// Every verb.
    pub const ALL: Verbs = Verbs {
        list: true,
        create: true,
        delete_collection: true,
        item: true,
    };
}

/// The subresources peapod serves, each with the operations upstream gives it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Subresource {
    /// get, put, patch of the parent kind.
    Status,
    /// get, put, patch of the parent kind (pods only).
    EphemeralContainers,
    /// post of a core/v1 Binding (pods only).
    Binding,
    /// post of a policy/v1 Eviction (pods only).
    Eviction,
    /// get of plain text (pods only).
    Log,
    /// connect via get and post (pods only).
    Exec,
    Attach,
    PortForward,
    /// post of an authentication.k8s.io/v1 TokenRequest (serviceaccounts only).
    Token,
    /// get, put, patch of an autoscaling/v1 Scale.
    Scale,
    /// put of the parent kind (namespaces only).
    Finalize,
    /// get, put, patch of the parent kind (certificatesigningrequests only).
    Approval,
}

impl Subresource {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Token => "token",
            Subresource::Scale => "scale",
            Subresource::Finalize => "finalize",
            Subresource::Approval => "approval",
        }
    }
}

/// A `<Kind>List` type. k8s-openapi has one generic `List<T>` with no schema,
/// so a kind supplies its list's upstream descriptions.
#[derive(Clone, Copy, Debug)]
pub struct ListSchema {
    pub kind: &'static str,
    pub description: &'static str,
    /// Description of the `items` field.
    pub items: &'static str,
    /// Description of the `metadata` field.
    pub metadata: &'static str,
}

/// One served resource, as the documents describe it.
#[derive(Clone, Debug)]
pub struct ServedKind {
    /// "" for the legacy core group served under /api.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    pub schema: SchemaFn,
    pub list: ListSchema,
    pub verbs: Verbs,
    /// kube-apiserver answers DELETE of pods and serviceaccounts with the
    /// deleted object rather than a Status, and its documents say so.
    pub delete_returns_object: bool,
    pub subresources: Vec<Subresource>,
}

pub(crate) struct GroupVersion {
    /// "" for the legacy core group served under /api.
    pub group: &'static str,
    pub version: &'static str,
    pub resources: Vec<ServedKind>,
}

/// The group-versions of `kinds`, in the order of their first kind.
pub(crate) fn group_versions(kinds: &[ServedKind]) -> Vec<GroupVersion> {
    let mut out: Vec<GroupVersion> = Vec::new();
    for k in kinds {
        match out
            .iter_mut()
            .find(|gv| gv.group == k.group && gv.version == k.version)
        {
            Some(gv) => gv.resources.push(k.clone()),
            None => out.push(GroupVersion {
                group: k.group,
                version: k.version,
                resources: vec![k.clone()],
            }),
        }
    }
    out
}

impl GroupVersion {
    /// The path key of this group-version in the `/openapi/v3` index: `api/v1`
    /// or `apis/<group>/<version>`.
    pub(crate) fn index_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    /// URL prefix of the group-version's REST paths.
    pub(crate) fn url_prefix(&self) -> String {
        format!("/{}", self.index_path())
    }

    /// Upstream's operation-id and tag infix: `CoreV1`, `CoordinationV1`, ...
    pub(crate) fn op_infix(&self) -> String {
        format!("{}{}", group_camel(self.group), upper_first(self.version))
    }

    /// Upstream's tag: `core_v1`, `coordination_v1`, ...
    pub(crate) fn tag(&self) -> String {
        format!("{}_{}", group_snake(self.group), self.version)
    }
}

/// `coordination.k8s.io` → `Coordination`, `rbac.authorization.k8s.io` →
/// `RbacAuthorization`, `` → `Core`: how upstream names a group in operation ids.
pub(crate) fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(upper_first)
        .collect()
}

/// `coordination.k8s.io` → `coordination`, `` → `core`: upstream's tag prefix.
pub(crate) fn group_snake(group: &str) -> String {
    if group.is_empty() {
        return "core".to_owned();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .collect::<Vec<_>>()
        .join("_")
}

pub(crate) fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Schemas of subresource bodies, with the kinds they carry.
pub(crate) const EVICTION: (SchemaFn, Gvk) =
    (def::<policy::v1::Eviction>, gvk("policy", "v1", "Eviction"));
pub(crate) const TOKEN_REQUEST: (SchemaFn, Gvk) = (
    def::<authentication::v1::TokenRequest>,
    gvk("authentication.k8s.io", "v1", "TokenRequest"),
);
pub(crate) const BINDING: (SchemaFn, Gvk) = (def::<core::v1::Binding>, gvk("", "v1", "Binding"));
pub(crate) const SCALE: (SchemaFn, Gvk) = (
    def::<autoscaling::v1::Scale>,
    gvk("autoscaling", "v1", "Scale"),
);

/// The kinds that connect subresources (exec, attach, portforward) name in
/// their operations' `x-kubernetes-group-version-kind`.
pub(crate) fn connect_options_kind(sub: Subresource) -> &'static str {
    match sub {
        Subresource::Exec => "PodExecOptions",
        Subresource::Attach => "PodAttachOptions",
        _ => "PodPortForwardOptions",
    }
}

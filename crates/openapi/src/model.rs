//! What peapod serves, as the OpenAPI documents describe it: group-versions,
//! their resources, and each resource's verbs and subresources.
//!
//! This table is the only place that knows which kinds are served; the schema
//! and path generators are driven by it.

use k8s_openapi::api::{authentication, coordination, core, events, policy, scheduling};
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};

/// Registers a type's schema (and everything it references) in a generator
/// and returns the definition name it is stored under.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> String;

/// The `SchemaFn` for `T`. k8s-openapi names every schema after upstream's
/// dotted Go package path (`io.k8s.api.core.v1.Pod`), so the name is used as is.
pub(crate) fn def<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
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
#[derive(Clone, Copy)]
pub(crate) struct Verbs {
    /// get on the collection (list), plus the watch paths and the list across
    /// all namespaces for namespaced resources.
    pub list: bool,
    pub create: bool,
    pub delete_collection: bool,
    /// get, put, patch and delete on `{name}`.
    pub item: bool,
}

const ALL: Verbs = Verbs {
    list: true,
    create: true,
    delete_collection: true,
    item: true,
};

/// The subresources peapod serves, each with the operations upstream gives it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Subresource {
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
    /// put of the parent kind (namespaces only).
    Finalize,
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
            Subresource::Finalize => "finalize",
        }
    }
}

/// A `<Kind>List` type. k8s-openapi has one generic `List<T>` with no schema,
/// so list schemas are written here, with upstream's descriptions.
pub(crate) struct ListSchema {
    pub kind: &'static str,
    pub description: &'static str,
    /// Description of the `items` field.
    pub items: &'static str,
    /// Description of the `metadata` field.
    pub metadata: &'static str,
}

pub(crate) struct Resource {
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    pub schema: SchemaFn,
    /// The `<Kind>List` kind; `None` for create-only resources (bindings).
    pub list: Option<ListSchema>,
    pub verbs: Verbs,
    /// kube-apiserver answers DELETE of pods and serviceaccounts with the
    /// deleted object rather than a Status, and its documents say so.
    pub delete_returns_object: bool,
    pub subresources: &'static [Subresource],
}

pub(crate) struct GroupVersion {
    /// "" for the legacy core group served under /api.
    pub group: &'static str,
    pub version: &'static str,
    pub resources: &'static [Resource],
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

const CORE_V1: &[Resource] = &[
    Resource {
        kind: "Binding",
        plural: "bindings",
        namespaced: true,
        schema: def::<core::v1::Binding>,
        list: None,
        verbs: Verbs {
            list: false,
            create: true,
            delete_collection: false,
            item: false,
        },
        delete_returns_object: false,
        subresources: &[],
    },
    Resource {
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        schema: def::<core::v1::ConfigMap>,
        list: Some(ListSchema {
            kind: "ConfigMapList",
            description: "ConfigMapList is a resource containing a list of ConfigMap objects.",
            items: "Items is the list of ConfigMaps.",
            metadata: "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        }),
        verbs: ALL,
        delete_returns_object: false,
        subresources: &[],
    },
    Resource {
        kind: "Event",
        plural: "events",
        namespaced: true,
        schema: def::<core::v1::Event>,
        list: Some(ListSchema {
            kind: "EventList",
            description: "EventList is a list of events.",
            items: "List of events",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        }),
        verbs: ALL,
        delete_returns_object: false,
        subresources: &[],
    },
    Resource {
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        schema: def::<core::v1::Namespace>,
        list: Some(ListSchema {
            kind: "NamespaceList",
            description: "NamespaceList is a list of Namespaces.",
            items: "Items is the list of Namespace objects in the list. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        }),
        // Namespaces have no deletecollection upstream either.
        verbs: Verbs {
            delete_collection: false,
            ..ALL
        },
        delete_returns_object: false,
        subresources: &[Subresource::Finalize, Subresource::Status],
    },
    Resource {
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        schema: def::<core::v1::Node>,
        list: Some(ListSchema {
            kind: "NodeList",
            description: "NodeList is the whole list of all Nodes which have been registered with master.",
            items: "List of nodes",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        }),
        verbs: ALL,
        delete_returns_object: false,
        subresources: &[Subresource::Status],
    },
    Resource {
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        schema: def::<core::v1::Pod>,
        list: Some(ListSchema {
            kind: "PodList",
            description: "PodList is a list of Pods.",
            items: "List of pods. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        }),
        verbs: ALL,
        delete_returns_object: true,
        subresources: &[
            Subresource::Attach,
            Subresource::Binding,
            Subresource::EphemeralContainers,
            Subresource::Eviction,
            Subresource::Exec,
            Subresource::Log,
            Subresource::PortForward,
            Subresource::Status,
        ],
    },
    Resource {
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        schema: def::<core::v1::Secret>,
        list: Some(ListSchema {
            kind: "SecretList",
            description: "SecretList is a list of Secret.",
            items: "Items is a list of secret objects. More info: https://kubernetes.io/docs/concepts/configuration/secret",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        }),
        verbs: ALL,
        delete_returns_object: false,
        subresources: &[],
    },
    Resource {
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        schema: def::<core::v1::ServiceAccount>,
        list: Some(ListSchema {
            kind: "ServiceAccountList",
            description: "ServiceAccountList is a list of ServiceAccount objects",
            items: "List of ServiceAccounts. More info: https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        }),
        verbs: ALL,
        delete_returns_object: true,
        subresources: &[Subresource::Token],
    },
];

const COORDINATION_V1: &[Resource] = &[Resource {
    kind: "Lease",
    plural: "leases",
    namespaced: true,
    schema: def::<coordination::v1::Lease>,
    list: Some(ListSchema {
            kind: "LeaseList",
            description: "LeaseList is a list of Lease objects.",
            items: "items is a list of schema objects.",
            metadata: "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        }),
    verbs: ALL,
    delete_returns_object: false,
    subresources: &[],
}];

const EVENTS_V1: &[Resource] = &[Resource {
    kind: "Event",
    plural: "events",
    namespaced: true,
    schema: def::<events::v1::Event>,
    list: Some(ListSchema {
            kind: "EventList",
            description: "EventList is a list of Event objects.",
            items: "items is a list of schema objects.",
            metadata: "metadata is the standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        }),
    verbs: ALL,
    delete_returns_object: false,
    subresources: &[],
}];

const SCHEDULING_V1: &[Resource] = &[Resource {
    kind: "PriorityClass",
    plural: "priorityclasses",
    namespaced: false,
    schema: def::<scheduling::v1::PriorityClass>,
    list: Some(ListSchema {
            kind: "PriorityClassList",
            description: "PriorityClassList is a collection of priority classes.",
            items: "items is the list of PriorityClasses",
            metadata: "Standard list metadata More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        }),
    verbs: ALL,
    delete_returns_object: false,
    subresources: &[],
}];

/// Every group-version peapod serves, the core group first as discovery lists it.
pub(crate) const GROUP_VERSIONS: &[GroupVersion] = &[
    GroupVersion {
        group: "",
        version: "v1",
        resources: CORE_V1,
    },
    GroupVersion {
        group: "coordination.k8s.io",
        version: "v1",
        resources: COORDINATION_V1,
    },
    GroupVersion {
        group: "events.k8s.io",
        version: "v1",
        resources: EVENTS_V1,
    },
    GroupVersion {
        group: "scheduling.k8s.io",
        version: "v1",
        resources: SCHEDULING_V1,
    },
];

/// Schemas of subresource bodies, with the kinds they carry.
pub(crate) const EVICTION: (SchemaFn, Gvk) =
    (def::<policy::v1::Eviction>, gvk("policy", "v1", "Eviction"));
pub(crate) const TOKEN_REQUEST: (SchemaFn, Gvk) = (
    def::<authentication::v1::TokenRequest>,
    gvk("authentication.k8s.io", "v1", "TokenRequest"),
);
pub(crate) const BINDING: (SchemaFn, Gvk) = (def::<core::v1::Binding>, gvk("", "v1", "Binding"));

/// The kinds that connect subresources (exec, attach, portforward) name in
/// their operations' `x-kubernetes-group-version-kind`.
pub(crate) fn connect_options_kind(sub: Subresource) -> &'static str {
    match sub {
        Subresource::Exec => "PodExecOptions",
        Subresource::Attach => "PodAttachOptions",
        _ => "PodPortForwardOptions",
    }
}

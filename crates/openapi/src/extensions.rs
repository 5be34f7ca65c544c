//! The `x-kubernetes-*` extensions upstream puts on fields, which k8s-openapi's
//! schemas lack.
//!
//! They come from markers and struct tags in k8s.io/api's types.go
//! (`patchStrategy:"merge" patchMergeKey:"name"`, `+listType=map`,
//! `+listMapKeys=name`, `+mapType=atomic`, `+structType=atomic`). kubectl reads
//! the patch ones to build strategic merge patches (`kubectl apply`); the list
//! and map ones drive server-side apply merging; the API server reads the patch
//! ones for its own strategic merge. Two tables: [`UPSTREAM`]
//! (`upstream_extensions.rs`), generated from the Swagger document of
//! Kubernetes 1.36 for every definition of every API group, so a kind that
//! starts being served has its merge keys already; and [`FIELD_EXTENSIONS`],
//! checked by hand against the definitions kube-apiserver 1.37 publishes for
//! every definition reachable from the kinds peapod served then, which wins
//! where both have a row. A unit test keeps the hand table in step with
//! k8s-openapi's field names.

pub(crate) use crate::upstream_extensions::UPSTREAM;

use serde_json::Value;

/// Extensions of one field (or of the definition itself when `field` is "").
pub(crate) struct FieldExtensions {
    pub definition: &'static str,
    pub field: &'static str,
    pub list_type: Option<&'static str>,
    pub list_map_keys: &'static [&'static str],
    pub map_type: Option<&'static str>,
    pub patch_merge_key: Option<&'static str>,
    pub patch_strategy: Option<&'static str>,
}

impl FieldExtensions {
    /// The extension keys and values to insert.
    pub(crate) fn entries(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if !self.list_map_keys.is_empty() {
            let keys = self.list_map_keys.iter().map(|k| Value::from(*k)).collect();
            out.push(("x-kubernetes-list-map-keys", Value::Array(keys)));
        }
        if let Some(v) = self.list_type {
            out.push(("x-kubernetes-list-type", v.into()));
        }
        if let Some(v) = self.map_type {
            out.push(("x-kubernetes-map-type", v.into()));
        }
        if let Some(v) = self.patch_merge_key {
            out.push(("x-kubernetes-patch-merge-key", v.into()));
        }
        if let Some(v) = self.patch_strategy {
            out.push(("x-kubernetes-patch-strategy", v.into()));
        }
        out
    }
}

/// A row of the generated table.
pub(crate) const fn e(
    definition: &'static str,
    field: &'static str,
    list_type: Option<&'static str>,
    list_map_keys: &'static [&'static str],
    map_type: Option<&'static str>,
    patch_merge_key: Option<&'static str>,
    patch_strategy: Option<&'static str>,
) -> FieldExtensions {
    FieldExtensions {
        definition,
        field,
        list_type,
        list_map_keys,
        map_type,
        patch_merge_key,
        patch_strategy,
    }
}

/// `+listType=atomic`.
const fn atomic(definition: &'static str, field: &'static str) -> FieldExtensions {
    FieldExtensions {
        definition,
        field,
        list_type: Some("atomic"),
        list_map_keys: &[],
        map_type: None,
        patch_merge_key: None,
        patch_strategy: None,
    }
}

/// `+listType=set`.
const fn set(definition: &'static str, field: &'static str) -> FieldExtensions {
    FieldExtensions {
        list_type: Some("set"),
        ..atomic(definition, field)
    }
}

/// `+listType=map` with `+listMapKeys`.
const fn map(
    definition: &'static str,
    field: &'static str,
    keys: &'static [&'static str],
) -> FieldExtensions {
    FieldExtensions {
        list_type: Some("map"),
        list_map_keys: keys,
        ..atomic(definition, field)
    }
}

/// `+mapType=...` / `+structType=...` on a definition or a map field.
const fn map_type(
    definition: &'static str,
    field: &'static str,
    value: &'static str,
) -> FieldExtensions {
    FieldExtensions {
        list_type: None,
        map_type: Some(value),
        ..atomic(definition, field)
    }
}

/// Adds `patchStrategy` / `patchMergeKey` struct tags to a row.
const fn patch(
    row: FieldExtensions,
    strategy: &'static str,
    merge_key: Option<&'static str>,
) -> FieldExtensions {
    FieldExtensions {
        patch_strategy: Some(strategy),
        patch_merge_key: merge_key,
        ..row
    }
}

pub(crate) const FIELD_EXTENSIONS: &[FieldExtensions] = &[
    // TokenRequestSpec
    atomic("io.k8s.api.authentication.v1.TokenRequestSpec", "audiences"),
    // Capabilities
    atomic("io.k8s.api.core.v1.Capabilities", "add"),
    atomic("io.k8s.api.core.v1.Capabilities", "drop"),
    // CephFSVolumeSource
    atomic("io.k8s.api.core.v1.CephFSVolumeSource", "monitors"),
    // ConfigMapKeySelector
    map_type("io.k8s.api.core.v1.ConfigMapKeySelector", "", "atomic"),
    // ConfigMapProjection
    atomic("io.k8s.api.core.v1.ConfigMapProjection", "items"),
    // ConfigMapVolumeSource
    atomic("io.k8s.api.core.v1.ConfigMapVolumeSource", "items"),
    // Container
    atomic("io.k8s.api.core.v1.Container", "args"),
    atomic("io.k8s.api.core.v1.Container", "command"),
    patch(
        map("io.k8s.api.core.v1.Container", "env", &["name"]),
        "merge",
        Some("name"),
    ),
    atomic("io.k8s.api.core.v1.Container", "envFrom"),
    patch(
        map(
            "io.k8s.api.core.v1.Container",
            "ports",
            &["containerPort", "protocol"],
        ),
        "merge",
        Some("containerPort"),
    ),
    atomic("io.k8s.api.core.v1.Container", "resizePolicy"),
    atomic("io.k8s.api.core.v1.Container", "restartPolicyRules"),
    patch(
        map(
            "io.k8s.api.core.v1.Container",
            "volumeDevices",
            &["devicePath"],
        ),
        "merge",
        Some("devicePath"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.Container",
            "volumeMounts",
            &["mountPath"],
        ),
        "merge",
        Some("mountPath"),
    ),
    // ContainerImage
    atomic("io.k8s.api.core.v1.ContainerImage", "names"),
    // ContainerRestartRuleOnExitCodes
    set(
        "io.k8s.api.core.v1.ContainerRestartRuleOnExitCodes",
        "values",
    ),
    // ContainerStatus
    patch(
        map(
            "io.k8s.api.core.v1.ContainerStatus",
            "allocatedResourcesStatus",
            &["name"],
        ),
        "merge",
        Some("name"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.ContainerStatus",
            "volumeMounts",
            &["mountPath"],
        ),
        "merge",
        Some("mountPath"),
    ),
    // DownwardAPIProjection
    atomic("io.k8s.api.core.v1.DownwardAPIProjection", "items"),
    // DownwardAPIVolumeSource
    atomic("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items"),
    // EphemeralContainer
    atomic("io.k8s.api.core.v1.EphemeralContainer", "args"),
    atomic("io.k8s.api.core.v1.EphemeralContainer", "command"),
    patch(
        map("io.k8s.api.core.v1.EphemeralContainer", "env", &["name"]),
        "merge",
        Some("name"),
    ),
    atomic("io.k8s.api.core.v1.EphemeralContainer", "envFrom"),
    patch(
        map(
            "io.k8s.api.core.v1.EphemeralContainer",
            "ports",
            &["containerPort", "protocol"],
        ),
        "merge",
        Some("containerPort"),
    ),
    atomic("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy"),
    atomic(
        "io.k8s.api.core.v1.EphemeralContainer",
        "restartPolicyRules",
    ),
    patch(
        map(
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeDevices",
            &["devicePath"],
        ),
        "merge",
        Some("devicePath"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeMounts",
            &["mountPath"],
        ),
        "merge",
        Some("mountPath"),
    ),
    // EvictionResponder
    map_type("io.k8s.api.core.v1.EvictionResponder", "", "atomic"),
    // ExecAction
    atomic("io.k8s.api.core.v1.ExecAction", "command"),
    // FCVolumeSource
    atomic("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs"),
    atomic("io.k8s.api.core.v1.FCVolumeSource", "wwids"),
    // FileKeySelector
    map_type("io.k8s.api.core.v1.FileKeySelector", "", "atomic"),
    // HTTPGetAction
    atomic("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders"),
    // HostAlias
    atomic("io.k8s.api.core.v1.HostAlias", "hostnames"),
    // ISCSIVolumeSource
    atomic("io.k8s.api.core.v1.ISCSIVolumeSource", "portals"),
    // LinuxContainerUser
    atomic(
        "io.k8s.api.core.v1.LinuxContainerUser",
        "supplementalGroups",
    ),
    // LocalObjectReference
    map_type("io.k8s.api.core.v1.LocalObjectReference", "", "atomic"),
    // NamespaceSpec
    atomic("io.k8s.api.core.v1.NamespaceSpec", "finalizers"),
    // NamespaceStatus
    patch(
        map(
            "io.k8s.api.core.v1.NamespaceStatus",
            "conditions",
            &["type"],
        ),
        "merge",
        Some("type"),
    ),
    // NodeAffinity
    atomic(
        "io.k8s.api.core.v1.NodeAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ),
    // NodeAllocatableResourceClaimStatus
    set(
        "io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus",
        "containers",
    ),
    patch(
        map(
            "io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus",
            "mapping",
            &["name"],
        ),
        "merge",
        Some("name"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus",
            "overhead",
            &["name"],
        ),
        "merge",
        Some("name"),
    ),
    // NodePodPreemptionPolicy
    set(
        "io.k8s.api.core.v1.NodePodPreemptionPolicy",
        "disableResizePreemption",
    ),
    // NodeSelector
    map_type("io.k8s.api.core.v1.NodeSelector", "", "atomic"),
    atomic("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms"),
    // NodeSelectorRequirement
    atomic("io.k8s.api.core.v1.NodeSelectorRequirement", "values"),
    // NodeSelectorTerm
    map_type("io.k8s.api.core.v1.NodeSelectorTerm", "", "atomic"),
    atomic("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions"),
    atomic("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields"),
    // NodeSpec
    patch(
        set("io.k8s.api.core.v1.NodeSpec", "podCIDRs"),
        "merge",
        None,
    ),
    atomic("io.k8s.api.core.v1.NodeSpec", "taints"),
    // NodeStatus
    patch(
        map("io.k8s.api.core.v1.NodeStatus", "addresses", &["type"]),
        "merge",
        Some("type"),
    ),
    patch(
        map("io.k8s.api.core.v1.NodeStatus", "conditions", &["type"]),
        "merge",
        Some("type"),
    ),
    atomic("io.k8s.api.core.v1.NodeStatus", "declaredFeatures"),
    atomic("io.k8s.api.core.v1.NodeStatus", "images"),
    atomic("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers"),
    atomic("io.k8s.api.core.v1.NodeStatus", "volumesAttached"),
    atomic("io.k8s.api.core.v1.NodeStatus", "volumesInUse"),
    // ObjectFieldSelector
    map_type("io.k8s.api.core.v1.ObjectFieldSelector", "", "atomic"),
    // ObjectReference
    map_type("io.k8s.api.core.v1.ObjectReference", "", "atomic"),
    // PersistentVolumeClaimSpec
    atomic(
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "accessModes",
    ),
    // PodAffinity
    atomic(
        "io.k8s.api.core.v1.PodAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ),
    atomic(
        "io.k8s.api.core.v1.PodAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
    ),
    // PodAffinityTerm
    atomic("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys"),
    atomic("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys"),
    atomic("io.k8s.api.core.v1.PodAffinityTerm", "namespaces"),
    // PodAntiAffinity
    atomic(
        "io.k8s.api.core.v1.PodAntiAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ),
    atomic(
        "io.k8s.api.core.v1.PodAntiAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
    ),
    // PodDNSConfig
    atomic("io.k8s.api.core.v1.PodDNSConfig", "nameservers"),
    atomic("io.k8s.api.core.v1.PodDNSConfig", "options"),
    atomic("io.k8s.api.core.v1.PodDNSConfig", "searches"),
    // PodExtendedResourceClaimStatus
    atomic(
        "io.k8s.api.core.v1.PodExtendedResourceClaimStatus",
        "requestMappings",
    ),
    // PodSecurityContext
    atomic(
        "io.k8s.api.core.v1.PodSecurityContext",
        "supplementalGroups",
    ),
    atomic("io.k8s.api.core.v1.PodSecurityContext", "sysctls"),
    // PodSpec
    patch(
        map("io.k8s.api.core.v1.PodSpec", "containers", &["name"]),
        "merge",
        Some("name"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.PodSpec",
            "ephemeralContainers",
            &["name"],
        ),
        "merge",
        Some("name"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.PodSpec",
            "evictionResponders",
            &["name"],
        ),
        "merge",
        Some("name"),
    ),
    patch(
        map("io.k8s.api.core.v1.PodSpec", "hostAliases", &["ip"]),
        "merge",
        Some("ip"),
    ),
    patch(
        map("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", &["name"]),
        "merge",
        Some("name"),
    ),
    patch(
        map("io.k8s.api.core.v1.PodSpec", "initContainers", &["name"]),
        "merge",
        Some("name"),
    ),
    map_type("io.k8s.api.core.v1.PodSpec", "nodeSelector", "atomic"),
    atomic("io.k8s.api.core.v1.PodSpec", "readinessGates"),
    patch(
        map("io.k8s.api.core.v1.PodSpec", "resourceClaims", &["name"]),
        "merge,retainKeys",
        Some("name"),
    ),
    patch(
        map("io.k8s.api.core.v1.PodSpec", "schedulingGates", &["name"]),
        "merge",
        Some("name"),
    ),
    atomic("io.k8s.api.core.v1.PodSpec", "tolerations"),
    patch(
        map(
            "io.k8s.api.core.v1.PodSpec",
            "topologySpreadConstraints",
            &["topologyKey", "whenUnsatisfiable"],
        ),
        "merge",
        Some("topologyKey"),
    ),
    patch(
        map("io.k8s.api.core.v1.PodSpec", "volumes", &["name"]),
        "merge,retainKeys",
        Some("name"),
    ),
    // PodStatus
    patch(
        map("io.k8s.api.core.v1.PodStatus", "conditions", &["type"]),
        "merge",
        Some("type"),
    ),
    atomic("io.k8s.api.core.v1.PodStatus", "containerStatuses"),
    atomic("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses"),
    patch(
        atomic("io.k8s.api.core.v1.PodStatus", "hostIPs"),
        "merge",
        Some("ip"),
    ),
    atomic("io.k8s.api.core.v1.PodStatus", "initContainerStatuses"),
    patch(
        map(
            "io.k8s.api.core.v1.PodStatus",
            "nodeAllocatableResourceClaimStatuses",
            &["resourceClaimName"],
        ),
        "merge",
        Some("resourceClaimName"),
    ),
    patch(
        map("io.k8s.api.core.v1.PodStatus", "podIPs", &["ip"]),
        "merge",
        Some("ip"),
    ),
    patch(
        map(
            "io.k8s.api.core.v1.PodStatus",
            "resourceClaimStatuses",
            &["name"],
        ),
        "merge,retainKeys",
        Some("name"),
    ),
    map("io.k8s.api.core.v1.PodStatus", "volumeHealth", &["name"]),
    // PodVolumeHealth
    patch(
        map(
            "io.k8s.api.core.v1.PodVolumeHealth",
            "healthConditions",
            &["status", "reason"],
        ),
        "merge",
        Some("status"),
    ),
    // ProjectedVolumeSource
    atomic("io.k8s.api.core.v1.ProjectedVolumeSource", "sources"),
    // RBDVolumeSource
    atomic("io.k8s.api.core.v1.RBDVolumeSource", "monitors"),
    // ResourceFieldSelector
    map_type("io.k8s.api.core.v1.ResourceFieldSelector", "", "atomic"),
    // ResourceRequirements
    map(
        "io.k8s.api.core.v1.ResourceRequirements",
        "claims",
        &["name"],
    ),
    // ResourceStatus
    map(
        "io.k8s.api.core.v1.ResourceStatus",
        "resources",
        &["resourceID"],
    ),
    // SecretKeySelector
    map_type("io.k8s.api.core.v1.SecretKeySelector", "", "atomic"),
    // SecretProjection
    atomic("io.k8s.api.core.v1.SecretProjection", "items"),
    // SecretVolumeSource
    atomic("io.k8s.api.core.v1.SecretVolumeSource", "items"),
    // ServiceAccount
    atomic("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets"),
    patch(
        map("io.k8s.api.core.v1.ServiceAccount", "secrets", &["name"]),
        "merge",
        Some("name"),
    ),
    // TopologySpreadConstraint
    atomic(
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        "matchLabelKeys",
    ),
    // TypedLocalObjectReference
    map_type("io.k8s.api.core.v1.TypedLocalObjectReference", "", "atomic"),
    // VolumeMount
    set("io.k8s.api.core.v1.VolumeMount", "bindMountOptions"),
    // APIGroup
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
        "serverAddressByClientCIDRs",
    ),
    atomic("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions"),
    // APIGroupList
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
        "groups",
    ),
    // APIResource
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResource",
        "categories",
    ),
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResource",
        "shortNames",
    ),
    // APIResourceList
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
        "resources",
    ),
    // APIVersions
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "serverAddressByClientCIDRs",
    ),
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "versions",
    ),
    // DeleteOptions
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "dryRun",
    ),
    // LabelSelector
    map_type(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "",
        "atomic",
    ),
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "matchExpressions",
    ),
    // LabelSelectorRequirement
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        "values",
    ),
    // ObjectMeta
    patch(
        set(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        ),
        "merge",
        None,
    ),
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "managedFields",
    ),
    patch(
        map(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            &["uid"],
        ),
        "merge",
        Some("uid"),
    ),
    // OwnerReference
    map_type(
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
        "",
        "atomic",
    ),
    // StatusDetails
    atomic(
        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails",
        "causes",
    ),
];

/// Definitions whose `required` list upstream spells differently from
/// k8s-openapi. k8s-openapi marks every field that is not an `Option` in Rust
/// as required (`metadata`, the `name` of local object references), while
/// upstream requires only what the Go JSON tags leave without `omitempty`
/// (and events.k8s.io Event's `eventTime`, which k8s-openapi makes optional).
/// An empty list removes `required`. Checked like the table above.
pub(crate) const REQUIRED: &[(&str, &[&str])] = &[
    ("io.k8s.api.authentication.v1.TokenRequest", &[]),
    ("io.k8s.api.coordination.v1.Lease", &[]),
    ("io.k8s.api.core.v1.Binding", &["target"]),
    ("io.k8s.api.core.v1.ConfigMap", &[]),
    ("io.k8s.api.core.v1.ConfigMapEnvSource", &[]),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", &["key"]),
    ("io.k8s.api.core.v1.ConfigMapProjection", &[]),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", &[]),
    ("io.k8s.api.core.v1.LocalObjectReference", &[]),
    ("io.k8s.api.core.v1.Namespace", &[]),
    ("io.k8s.api.core.v1.Node", &[]),
    ("io.k8s.api.core.v1.Pod", &[]),
    ("io.k8s.api.core.v1.Secret", &[]),
    ("io.k8s.api.core.v1.SecretEnvSource", &[]),
    ("io.k8s.api.core.v1.SecretKeySelector", &["key"]),
    ("io.k8s.api.core.v1.SecretProjection", &[]),
    ("io.k8s.api.core.v1.ServiceAccount", &[]),
    ("io.k8s.api.events.v1.Event", &["eventTime"]),
    ("io.k8s.api.policy.v1.Eviction", &[]),
    ("io.k8s.api.scheduling.v1.PriorityClass", &[]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", &[]),
];

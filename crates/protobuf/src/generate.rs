//! The generator of `generated.rs`, run by hand:
//!
//! ```text
//! cargo test -p protobuf --lib -- --ignored regenerate
//! ```
//!
//! Inputs: the field numbers and wire kinds from the `k8s-pb` crate's sources (kube-rs's
//! prost bindings of upstream's `generated.proto` files, every API group) in the cargo
//! registry, which need not be a dependency, only downloaded: `cargo fetch` of any crate
//! depending on `k8s-pb = "=0.9.0"` does it (crates.io, the ordinary client; e.g. a
//! scratch `cargo init` with that one dependency). The JSON names, required fields and
//! inline structs come from the definitions k8s-openapi 0.29 (v1_37) carries in its
//! `JsonSchema` impls — read from its sources in the same registry, so every type it has
//! is covered, not only the served ones — with the `openapi` crate's corrections of
//! required fields applied (what peapod's documents publish). And two hand-kept lists
//! below: [`KEEP_ZERO`] (Go pointer fields, whose explicit zero means something) and
//! [`EXTRA`] (fields upstream added after the Kubernetes release k8s-pb 0.9 was cut from).
//!
//! Every message of the k8s-pb sources is generated, so a kind the API server starts
//! serving has its protobuf form already, with no regeneration.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Go pointer fields of scalar type (`*bool`, `*int32`, `*int64`, `*string`) in the
/// served kinds, as `(definition suffix, JSON name)`: a zero read from the wire is a value
/// the client set, not "unset". Fields the schema requires keep zeros anyway.
///
/// Missing one here means a Go client's explicit zero is dropped (and the default applies);
/// an extra one means a zero shows in the JSON that upstream's would leave out.
pub const KEEP_ZERO: &[(&str, &str)] = &[
    ("core.v1.PodSpec", "terminationGracePeriodSeconds"),
    ("core.v1.PodSpec", "activeDeadlineSeconds"),
    ("core.v1.PodSpec", "automountServiceAccountToken"),
    ("core.v1.PodSpec", "shareProcessNamespace"),
    ("core.v1.PodSpec", "priority"),
    ("core.v1.PodSpec", "enableServiceLinks"),
    ("core.v1.PodSpec", "setHostnameAsFQDN"),
    ("core.v1.PodSpec", "hostUsers"),
    ("core.v1.PodSpec", "preemptionPolicy"),
    ("core.v1.PodSpec", "runtimeClassName"),
    ("core.v1.PodSpec", "hostnameOverride"),
    ("core.v1.PodSecurityContext", "runAsUser"),
    ("core.v1.PodSecurityContext", "runAsGroup"),
    ("core.v1.PodSecurityContext", "runAsNonRoot"),
    ("core.v1.PodSecurityContext", "fsGroup"),
    ("core.v1.PodSecurityContext", "fsGroupChangePolicy"),
    ("core.v1.PodSecurityContext", "supplementalGroupsPolicy"),
    ("core.v1.PodSecurityContext", "seLinuxChangePolicy"),
    ("core.v1.SecurityContext", "privileged"),
    ("core.v1.SecurityContext", "runAsUser"),
    ("core.v1.SecurityContext", "runAsGroup"),
    ("core.v1.SecurityContext", "runAsNonRoot"),
    ("core.v1.SecurityContext", "readOnlyRootFilesystem"),
    ("core.v1.SecurityContext", "allowPrivilegeEscalation"),
    ("core.v1.SecurityContext", "procMount"),
    ("core.v1.Container", "restartPolicy"),
    ("core.v1.EphemeralContainerCommon", "restartPolicy"),
    ("core.v1.Probe", "terminationGracePeriodSeconds"),
    ("core.v1.GRPCAction", "service"),
    ("core.v1.VolumeMount", "recursiveReadOnly"),
    ("core.v1.VolumeMount", "mountPropagation"),
    ("core.v1.ConfigMapVolumeSource", "defaultMode"),
    ("core.v1.ConfigMapVolumeSource", "optional"),
    ("core.v1.SecretVolumeSource", "defaultMode"),
    ("core.v1.SecretVolumeSource", "optional"),
    ("core.v1.KeyToPath", "mode"),
    ("core.v1.DownwardAPIVolumeSource", "defaultMode"),
    ("core.v1.DownwardAPIVolumeFile", "mode"),
    ("core.v1.ProjectedVolumeSource", "defaultMode"),
    ("core.v1.ConfigMapProjection", "optional"),
    ("core.v1.SecretProjection", "optional"),
    ("core.v1.ServiceAccountTokenProjection", "expirationSeconds"),
    ("core.v1.ClusterTrustBundleProjection", "optional"),
    ("core.v1.ClusterTrustBundleProjection", "name"),
    ("core.v1.ClusterTrustBundleProjection", "signerName"),
    ("core.v1.PodCertificateProjection", "maxExpirationSeconds"),
    ("core.v1.HostPathVolumeSource", "type"),
    ("core.v1.CSIVolumeSource", "readOnly"),
    ("core.v1.CSIVolumeSource", "fsType"),
    ("core.v1.ConfigMapKeySelector", "optional"),
    ("core.v1.SecretKeySelector", "optional"),
    ("core.v1.FileKeySelector", "optional"),
    ("core.v1.ConfigMapEnvSource", "optional"),
    ("core.v1.SecretEnvSource", "optional"),
    ("core.v1.ISCSIVolumeSource", "initiatorName"),
    ("core.v1.FCVolumeSource", "lun"),
    ("core.v1.ContainerStatus", "started"),
    ("core.v1.ContainerStatus", "stopSignal"),
    ("core.v1.Lifecycle", "stopSignal"),
    ("core.v1.Toleration", "tolerationSeconds"),
    ("core.v1.PodDNSConfigOption", "value"),
    ("core.v1.TopologySpreadConstraint", "minDomains"),
    ("core.v1.TopologySpreadConstraint", "nodeAffinityPolicy"),
    ("core.v1.TopologySpreadConstraint", "nodeTaintsPolicy"),
    ("core.v1.SeccompProfile", "localhostProfile"),
    ("core.v1.AppArmorProfile", "localhostProfile"),
    (
        "core.v1.WindowsSecurityContextOptions",
        "gmsaCredentialSpecName",
    ),
    (
        "core.v1.WindowsSecurityContextOptions",
        "gmsaCredentialSpec",
    ),
    ("core.v1.WindowsSecurityContextOptions", "runAsUserName"),
    ("core.v1.WindowsSecurityContextOptions", "hostProcess"),
    ("core.v1.PodResourceClaim", "resourceClaimName"),
    ("core.v1.PodResourceClaim", "resourceClaimTemplateName"),
    ("core.v1.NodeSwapStatus", "capacity"),
    (
        "core.v1.NodeRuntimeHandlerFeatures",
        "recursiveReadOnlyMounts",
    ),
    ("core.v1.NodeRuntimeHandlerFeatures", "userNamespaces"),
    ("core.v1.NodeFeatures", "supplementalGroupsPolicy"),
    ("core.v1.ServiceAccount", "automountServiceAccountToken"),
    ("core.v1.Secret", "immutable"),
    ("core.v1.ConfigMap", "immutable"),
    (
        "apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "deletionGracePeriodSeconds",
    ),
    ("apimachinery.pkg.apis.meta.v1.OwnerReference", "controller"),
    (
        "apimachinery.pkg.apis.meta.v1.OwnerReference",
        "blockOwnerDeletion",
    ),
    (
        "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "gracePeriodSeconds",
    ),
    (
        "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "orphanDependents",
    ),
    (
        "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "propagationPolicy",
    ),
    (
        "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
    ),
    ("apimachinery.pkg.apis.meta.v1.Preconditions", "uid"),
    (
        "apimachinery.pkg.apis.meta.v1.Preconditions",
        "resourceVersion",
    ),
    (
        "apimachinery.pkg.apis.meta.v1.ListMeta",
        "remainingItemCount",
    ),
    ("coordination.v1.LeaseSpec", "holderIdentity"),
    ("coordination.v1.LeaseSpec", "leaseDurationSeconds"),
    ("coordination.v1.LeaseSpec", "leaseTransitions"),
    ("coordination.v1.LeaseSpec", "strategy"),
    ("coordination.v1.LeaseSpec", "preferredHolder"),
    ("scheduling.v1.PriorityClass", "preemptionPolicy"),
    ("authentication.v1.TokenRequestSpec", "expirationSeconds"),
];

/// Fields the served OpenAPI schemas have that k8s-pb 0.9's protos lack (added upstream
/// later): `(definition, JSON name, field number, kind)`, the kind written as in the
/// generated table. Field numbers are upstream's (the `protobuf:` struct tags in
/// k8s.io/api).
pub const EXTRA: &[(&str, &str, u32, &str)] = &[];

/// A crate's sources in the cargo registry (`k8s-pb-0.9.0/src`).
fn registry_dir(krate: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = home.join("registry/src");
    for entry in std::fs::read_dir(&registry).expect("cargo registry sources") {
        let dir = entry.expect("dir entry").path().join(krate);
        if dir.is_dir() {
            return dir;
        }
    }
    panic!(
        "{krate} not found under {}: `cargo fetch` a crate that depends on it",
        registry.display()
    );
}

/// One OpenAPI definition as k8s-openapi describes it: property names and required ones.
#[derive(Default)]
struct Definition {
    properties: Vec<String>,
    required: BTreeSet<String>,
}

/// Every definition in k8s-openapi's sources, by name, read from the `json_schema!`
/// blocks of its `JsonSchema` impls (top-level `properties` keys and `required`).
fn k8s_openapi_definitions() -> BTreeMap<String, Definition> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, Definition>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                parse_definitions(&text, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&registry_dir("k8s-openapi-0.29.0/src/v1_37"), &mut out);
    for (name, required) in openapi::required_overrides() {
        if let Some(d) = out.get_mut(*name) {
            d.required = required.iter().map(|r| r.to_string()).collect();
        }
    }
    out
}

fn parse_definitions(text: &str, out: &mut BTreeMap<String, Definition>) {
    let mut name: Option<String> = None;
    let mut def = Definition::default();
    let mut section = "";
    for line in text.lines() {
        if line.starts_with("impl crate::schemars::JsonSchema for ") {
            name = None;
            def = Definition::default();
            continue;
        }
        let t = line.trim();
        if name.is_none() {
            if let Some(n) = t
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix("\".into()"))
            {
                name = Some(n.to_string());
            }
            continue;
        }
        match line {
            "            \"properties\": {" => section = "properties",
            "            \"required\": [" => section = "required",
            "            }," | "            ]," => section = "",
            "}" => {
                if let Some(n) = name.take() {
                    out.insert(n, std::mem::take(&mut def));
                }
                section = "";
            }
            _ => {
                let Some(rest) = line.strip_prefix("                \"") else {
                    continue;
                };
                let Some((key, _)) = rest.split_once('"') else {
                    continue;
                };
                match section {
                    "properties" => def.properties.push(key.to_string()),
                    "required" => {
                        def.required.insert(key.to_string());
                    }
                    _ => {}
                }
            }
        }
    }
}

struct PbField {
    name: String,
    attr: String,
    ty: String,
}

struct PbMessage {
    module: Vec<String>,
    name: String,
    fields: Vec<PbField>,
}

fn parse_dir(root: &Path, dir: &Path, out: &mut Vec<PbMessage>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            parse_dir(root, &path, out);
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            let module: Vec<String> = path
                .parent()
                .expect("parent")
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&path).expect("read mod.rs");
            parse_file(&module, &text, out);
        }
    }
}

fn parse_file(module: &[String], text: &str, out: &mut Vec<PbMessage>) {
    let mut current: Option<PbMessage> = None;
    let mut attr: Option<String> = None;
    let mut pending: Option<(String, String)> = None;
    for line in text.lines() {
        // A message without fields.
        if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_suffix(" {}"))
        {
            out.push(PbMessage {
                module: module.to_vec(),
                name: name.to_string(),
                fields: Vec::new(),
            });
            continue;
        }
        if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            current = Some(PbMessage {
                module: module.to_vec(),
                name: name.to_string(),
                fields: Vec::new(),
            });
            continue;
        }
        let Some(msg) = current.as_mut() else {
            continue;
        };
        if line == "}" {
            out.extend(current.take());
            continue;
        }
        let t = line.trim();
        if t.starts_with("///") {
            continue;
        }
        if let Some(a) = t
            .strip_prefix("#[prost(")
            .and_then(|r| r.strip_suffix(")]"))
        {
            attr = Some(a.to_string());
            continue;
        }
        if let Some((name, ty)) = pending.as_mut() {
            ty.push_str(t);
            if ty.ends_with(',') && balanced(ty) {
                let (name, ty) = (name.clone(), ty.clone());
                pending = None;
                msg.fields.push(PbField {
                    name,
                    attr: attr.take().expect("attribute before field"),
                    ty,
                });
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("pub ") {
            let (name, ty) = rest.split_once(':').expect("field name: type");
            let name = name.trim_start_matches("r#").to_string();
            let ty = ty.trim();
            if ty.ends_with(',') && balanced(ty) {
                msg.fields.push(PbField {
                    name,
                    attr: attr.take().expect("attribute before field"),
                    ty: ty.to_string(),
                });
            } else {
                pending = Some((name, ty.to_string()));
            }
        }
    }
}

fn balanced(s: &str) -> bool {
    s.matches('<').count() == s.matches('>').count()
}

/// The message a field's Rust type names, as (module path, struct name).
fn referenced(module: &[String], ty: &str) -> (Vec<String>, String) {
    let mut t = ty.trim_end_matches(',').replace(' ', "");
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
        "::prost::alloc::collections::BTreeMap<::prost::alloc::string::String,",
    ] {
        if let Some(inner) = t.strip_prefix(wrapper) {
            t = inner.trim_end_matches('>').to_string();
        }
    }
    let t = t.trim_end_matches('>').trim_end_matches(',');
    let segments: Vec<&str> = t.split("::").collect();
    let supers = segments.iter().take_while(|s| **s == "super").count();
    let mut path: Vec<String> = module[..module.len() - supers].to_vec();
    let rest = &segments[supers..];
    path.extend(rest[..rest.len() - 1].iter().map(|s| s.to_string()));
    (path, rest[rest.len() - 1].to_string())
}

fn special(module: &[String], name: &str) -> Option<&'static str> {
    let m = module.join(".");
    match (m.as_str(), name) {
        ("apimachinery.pkg.api.resource", "Quantity") => Some("Quantity"),
        ("apimachinery.pkg.util.intstr", "IntOrString") => Some("IntOrString"),
        ("apimachinery.pkg.apis.meta.v1", "Time") => Some("Time"),
        ("apimachinery.pkg.apis.meta.v1", "MicroTime") => Some("MicroTime"),
        ("apimachinery.pkg.apis.meta.v1", "Duration") => Some("Duration"),
        ("apimachinery.pkg.apis.meta.v1", "FieldsV1") => Some("FieldsV1"),
        ("apimachinery.pkg.runtime", "RawExtension") => Some("RawExtension"),
        _ => None,
    }
}

/// `core.v1.Pod` → `io.k8s.api.core.v1.Pod`; `apimachinery.…` → `io.k8s.apimachinery.…`.
fn full_def(short: &str) -> String {
    if short.starts_with("apimachinery.") {
        format!("io.k8s.{short}")
    } else {
        format!("io.k8s.api.{short}")
    }
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether every field of a struct embedded inline is a property of the parent, looking
/// through embedded structs embedded in turn (`NamedRuleWithOperations` embeds
/// `RuleWithOperations`, which embeds `Rule`).
fn embedded_fields_present(
    child: &PbMessage,
    props: &[String],
    by_path: &BTreeMap<(Vec<String>, String), String>,
    by_def: &BTreeMap<String, &PbMessage>,
) -> bool {
    child.fields.iter().all(|cf| {
        props.iter().any(|p| norm(p) == norm(&cf.name))
            || (cf.attr.starts_with("message") && {
                let (module, n) = referenced(&child.module, &cf.ty);
                by_path
                    .get(&(module, n))
                    .and_then(|d| by_def.get(d))
                    .is_some_and(|grand| embedded_fields_present(grand, props, by_path, by_def))
            })
    })
}

struct Out {
    name: String,
    fields: Vec<(u32, String, String, bool, bool, bool)>,
}

#[test]
#[ignore = "regenerates src/generated.rs from the k8s-pb sources; run by hand"]
fn regenerate() {
    let root = registry_dir("k8s-pb-0.9.0/src");
    let mut parsed = Vec::new();
    parse_dir(&root, &root, &mut parsed);
    let defs = k8s_openapi_definitions();
    // prost renames acronyms (`PodIP` is `PodIp`) and Rust modules cannot hold dashes
    // (`apiextensions-apiserver`): match definitions case- and dash-insensitively.
    let norm_def = |n: &str| n.to_lowercase().replace('-', "_");
    let def_by_norm: BTreeMap<String, String> =
        defs.keys().map(|k| (norm_def(k), k.clone())).collect();
    let def_name = |m: &PbMessage| -> String {
        let full = format!("io.k8s.{}.{}", m.module.join("."), m.name);
        def_by_norm.get(&norm_def(&full)).cloned().unwrap_or(full)
    };
    let by_def: BTreeMap<String, &PbMessage> = parsed.iter().map(|m| (def_name(m), m)).collect();
    let by_path: BTreeMap<(Vec<String>, String), String> = parsed
        .iter()
        .map(|m| ((m.module.clone(), m.name.clone()), def_name(m)))
        .collect();

    // Every message but the special types, which have their own JSON shapes.
    let wanted: BTreeSet<String> = parsed
        .iter()
        .filter(|m| special(&m.module, &m.name).is_none())
        .map(def_name)
        .collect();
    let index: BTreeMap<&String, usize> = wanted.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let keep: BTreeSet<(String, String)> = KEEP_ZERO
        .iter()
        .map(|(d, f)| (full_def(d), f.to_string()))
        .collect();

    // A struct embedded inline may have no definition of its own (EphemeralContainerCommon):
    // its fields are described by the definition it is embedded in.
    let mut host: BTreeMap<String, String> = BTreeMap::new();
    for name in &wanted {
        let (m, Some(def)) = (by_def[name], defs.get(name)) else {
            continue;
        };
        for f in &m.fields {
            let matched = def.properties.iter().any(|k| norm(k) == norm(&f.name));
            if f.attr.starts_with("message") && !matched {
                let (module, n) = referenced(&m.module, &f.ty);
                if let Some(child) = by_path.get(&(module, n)) {
                    if !defs.contains_key(child) {
                        host.insert(child.clone(), name.clone());
                    }
                }
            }
        }
    }

    let mut outs = Vec::new();
    for name in &wanted {
        let m = by_def[name];
        let def = defs
            .get(name)
            .or_else(|| host.get(name).and_then(|h| defs.get(h)));
        let props: Vec<String> = def.map(|d| d.properties.clone()).unwrap_or_default();
        let required: BTreeSet<String> = def.map(|d| d.required.clone()).unwrap_or_default();
        let mut fields = Vec::new();
        for f in &m.fields {
            let tag: u32 = f
                .attr
                .split("tag = \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|t| t.parse().ok())
                .expect("tag");
            let repeated = f.attr.contains("repeated");
            let scalar = f.attr.split([',', ' ']).next().unwrap_or_default();
            let kind = if let Some(map) = f.attr.strip_prefix("btree_map = \"string, ") {
                match map.split('"').next().unwrap_or_default() {
                    "string" => "Map(MapValue::String)".to_string(),
                    "bytes" => "Map(MapValue::Bytes)".to_string(),
                    "message" => {
                        let (module, n) = referenced(&m.module, &f.ty);
                        match special(&module, &n) {
                            Some("Quantity") => "Map(MapValue::Quantity)".to_string(),
                            Some(other) => {
                                // Only in kinds peapod does not serve (a map of Time in
                                // resource.k8s.io); the encoder then answers such an object
                                // in JSON.
                                println!("skipped {name}.{}: a map of {other}", f.name);
                                continue;
                            }
                            None => match by_path.get(&(module.clone(), n.clone())) {
                                Some(target) => {
                                    format!("Map(MapValue::Message({}))", index[target])
                                }
                                None => panic!("{name}.{}: unresolved {n}", f.name),
                            },
                        }
                    }
                    other => panic!("map of {other}"),
                }
            } else {
                match scalar {
                    "string" => "String".into(),
                    "bytes" => "Bytes".into(),
                    "bool" => "Bool".into(),
                    "int32" => "Int32".into(),
                    "int64" => "Int64".into(),
                    "double" => "Double".into(),
                    "message" => {
                        let (module, n) = referenced(&m.module, &f.ty);
                        match special(&module, &n) {
                            Some(s) => s.to_string(),
                            None => match by_path.get(&(module.clone(), n.clone())) {
                                Some(target) => format!("Message({})", index[target]),
                                None => panic!("{name}.{}: unresolved {n}", f.name),
                            },
                        }
                    }
                    other => panic!("{name}.{}: unsupported {other}", f.name),
                }
            };
            let matched = props.iter().find(|p| norm(p) == norm(&f.name)).cloned();
            let (json, inline) = match matched {
                Some(j) => (j, false),
                None if kind.starts_with("Message(") && def.is_some() => {
                    // An embedded struct: its fields are the parent's properties.
                    let (module, n) = referenced(&m.module, &f.ty);
                    let child = by_def[&by_path[&(module, n)]];
                    let all_there = embedded_fields_present(child, &props, &by_path, &by_def);
                    if !all_there {
                        // Upstream dropped the field after k8s-pb's release (an alpha
                        // field); the served schema does not have it, so neither do we.
                        println!("skipped {name}.{}: not in the schema", f.name);
                        continue;
                    }
                    (f.name.clone(), true)
                }
                None if def.is_some() => {
                    println!("skipped {name}.{}: not in the schema", f.name);
                    continue;
                }
                None => (lower_camel(&f.name), false),
            };
            // k8s-openapi has one generic List<T>, so `<Kind>List` messages have no
            // definition there; upstream's lists all require `items`.
            let list_items = def.is_none() && name.ends_with("List") && json == "items";
            let keep_zero = list_items
                || required.contains(&json)
                || keep.contains(&(name.clone(), json.clone()));
            fields.push((tag, json, kind, repeated, inline, keep_zero));
        }
        for (def_name, json, tag, kind) in EXTRA {
            if def_name == name {
                let keep_zero = keep.contains(&(name.clone(), json.to_string()));
                fields.push((
                    *tag,
                    json.to_string(),
                    kind.to_string(),
                    false,
                    false,
                    keep_zero,
                ));
            }
        }
        fields.sort_by_key(|f| f.0);
        outs.push(Out {
            name: name.clone(),
            fields,
        });
    }

    let mut src = String::new();
    src.push_str(
        "// @generated by `cargo test -p protobuf --lib -- --ignored regenerate` (src/generate.rs)\n\
         // from the k8s-pb 0.9.0 sources and k8s-openapi 0.29's definitions. Do not edit by hand.\n\
         // Each field: f(number, JSON name, kind, flags) with flags R (repeated), I (inline),\n\
         // Z (keep zero) as in `schema::Field`.\n\n\
         use crate::schema::{f, Kind::*, MapValue, Message, I, R, Z};\n\n\
         pub static MESSAGES: &[Message] = &[\n",
    );
    for o in &outs {
        let _ = write!(src, "Message {{ name: {:?}, fields: &[", o.name);
        for (i, (tag, json, kind, repeated, inline, keep_zero)) in o.fields.iter().enumerate() {
            let flags: Vec<&str> = [(*repeated, "R"), (*inline, "I"), (*keep_zero, "Z")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
            let flags = if flags.is_empty() {
                "0".to_string()
            } else {
                flags.join(" | ")
            };
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(src, "{sep}f({tag}, {json:?}, {kind}, {flags})");
        }
        src.push_str("] },\n");
    }
    src.push_str("];\n");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated.rs");
    std::fs::write(&path, src).expect("write generated.rs");
    // Every hand-kept entry must name a generated field.
    for (d, f) in KEEP_ZERO {
        let full = full_def(d);
        let o = outs
            .iter()
            .find(|o| o.name == full)
            .unwrap_or_else(|| panic!("KEEP_ZERO names {full}, not generated"));
        assert!(
            o.fields.iter().any(|x| x.1 == *f),
            "KEEP_ZERO names {full}.{f}, no such field"
        );
    }
}

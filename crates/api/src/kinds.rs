//! Defaulting and validation for the non-pod kinds peapod serves: Namespace, Node,
//! ConfigMap, Secret, ServiceAccount, PodTemplate, core/v1 Event, Lease
//! (coordination.k8s.io/v1) and PriorityClass (scheduling.k8s.io/v1).
//!
//! Owns: upstream's v1 defaults and registry create-time preparation for these kinds, their
//! `Validate*` / `Validate*Update` rules with upstream paths and messages, and the
//! `immutable: true` rule for ConfigMaps and Secrets.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PodTemplate, Secret, ServiceAccount, Taint,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::ByteString;
use serde_json::Value;

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::{validate_object_meta, validate_object_meta_update, NameRule};
use crate::quantity::Quantity;
use crate::validation::{
    invalid_each, is_config_map_key, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
    validate_immutable, FIELD_IMMUTABLE,
};

/// Largest total size of a ConfigMap's or Secret's data (`core.MaxSecretSize`).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

// ---------------------------------------------------------------------------------------
// Namespace

/// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label) and
/// `SetDefaults_NamespaceStatus` (phase Active).
pub fn default_namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("kubernetes.io/metadata.name".into(), name);
    }
    let status = ns.status.get_or_insert_with(Default::default);
    if status.phase.as_deref().unwrap_or("").is_empty() {
        status.phase = Some("Active".into());
    }
}

/// The namespace registry's create step: status reset to Active and the `kubernetes`
/// finalizer added to `spec.finalizers` (kept last if others are present).
pub fn prepare_namespace_for_create(ns: &mut Namespace) {
    ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
        phase: Some("Active".into()),
        ..Default::default()
    });
    let fins = ns
        .spec
        .get_or_insert_with(Default::default)
        .finalizers
        .get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == "kubernetes") {
        fins.push("kubernetes".into());
    }
}

/// The namespace registry's update step: a plain update may not touch spec or status (they
/// have their own `finalize` and `status` subresources).
pub fn prepare_namespace_for_update(new: &mut Namespace, old: &Namespace) {
    new.spec = old.spec.clone();
    new.status = old.status.clone();
}

fn validate_finalizer_name(f: &str, path: &Path) -> FieldErrors {
    let mut errs = invalid_each(path, f, is_qualified_name(f));
    if !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
        errs.push(FieldError::invalid(
            path,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

fn validate_namespace_spec(ns: &Namespace) -> FieldErrors {
    let mut errs = Vec::new();
    let p = Path::new("spec").child("finalizers");
    for f in ns.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
        errs.extend(validate_finalizer_name(f, &p));
    }
    errs
}

/// `ValidateNamespace`: name is a DNS-1123 label, finalizers well-formed.
pub fn validate_namespace(ns: &Namespace) -> FieldErrors {
    let mut errs = validate_object_meta(&ns.metadata, false, NameRule::Dns1123Label);
    errs.extend(validate_namespace_spec(ns));
    errs
}

pub fn validate_namespace_update(new: &Namespace, old: &Namespace) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_namespace_spec(new));
    errs
}

/// `ValidateNamespaceStatusUpdate`: Active while not deleting, Terminating once deleting.
pub fn validate_namespace_status_update(new: &Namespace, old: &Namespace) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let phase = new
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let p = Path::new("status").child("Phase");
    if new.metadata.deletion_timestamp.is_none() {
        if phase != "Active" {
            errs.push(FieldError::invalid(
                p,
                phase,
                "may only be 'Active' if `deletionTimestamp` is empty",
            ));
        }
    } else if phase != "Terminating" {
        errs.push(FieldError::invalid(
            p,
            phase,
            "may only be 'Terminating' if `deletionTimestamp` is not empty",
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Node

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
pub fn default_node(node: &mut Node) {
    if let Some(st) = &mut node.status {
        if st.allocatable.is_none() && st.capacity.is_some() {
            st.allocatable = st.capacity.clone();
        }
    }
}

fn validate_taints(taints: &[Taint], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let ip = path.index(i);
        errs.extend(invalid_each(
            &ip.child("key"),
            &t.key,
            is_qualified_name(&t.key),
        ));
        let v = t.value.as_deref().unwrap_or("");
        let msgs = is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(ip.child("value"), v, msgs.join(";")));
        }
        if t.effect.is_empty() {
            errs.push(FieldError::required(ip.child("effect"), ""));
        } else if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&t.effect.as_str()) {
            errs.push(FieldError::not_supported(
                ip.child("effect"),
                t.effect.as_str(),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
        if !seen.insert((t.key.clone(), t.effect.clone())) {
            let mut e = FieldError::duplicate(&ip, serde_json::to_value(t).unwrap_or(Value::Null));
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    errs
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}

/// `ValidateNode`: name, taints, pod CIDRs, and resource quantities in status.
pub fn validate_node(node: &Node) -> FieldErrors {
    let mut errs = validate_object_meta(&node.metadata, false, NameRule::Dns1123Subdomain);
    let spec = node.spec.clone().unwrap_or_default();
    let sp = Path::new("spec");
    errs.extend(validate_taints(
        spec.taints.as_deref().unwrap_or(&[]),
        &sp.child("taints"),
    ));
    let cidrs = spec.pod_cidrs.clone().unwrap_or_default();
    for (i, c) in cidrs.iter().enumerate() {
        if !is_cidr(c) {
            errs.push(FieldError::invalid(
                sp.child("podCIDRs").index(i),
                c.as_str(),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            sp.child("podCIDRs"),
            Value::from(cidrs.clone()),
            "may specify no more than one CIDR for each IP family",
        ));
    } else if cidrs.len() == 2 {
        let v4 = |c: &String| {
            c.split('/')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        };
        if v4(&cidrs[0]) == v4(&cidrs[1]) {
            errs.push(FieldError::invalid(
                sp.child("podCIDRs"),
                Value::from(cidrs.clone()),
                "may specify no more than one CIDR for each IP family",
            ));
        }
    }
    if let Some(st) = &node.status {
        for (field, list) in [("capacity", &st.capacity), ("allocatable", &st.allocatable)] {
            for (k, q) in list.iter().flatten() {
                let p = Path::new("status").child(field).key(k);
                errs.extend(invalid_each(&p, k, is_qualified_name(k)));
                match Quantity::parse(&q.0) {
                    Ok(v) if v.nanos < 0 => errs.push(FieldError::invalid(
                        p,
                        v.canonical(),
                        "must be greater than or equal to 0",
                    )),
                    Ok(_) => {}
                    Err(e) => errs.push(FieldError::invalid(p, q.0.as_str(), e.to_string())),
                }
            }
        }
    }
    errs
}

/// `ValidateNodeUpdate`: podCIDR and providerID may only go from unset to set.
pub fn validate_node_update(new: &Node, old: &Node) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    // Meta was checked above; re-run the rest of the create rules on the new object.
    errs.extend(
        validate_node(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    let ns = new.spec.clone().unwrap_or_default();
    let os = old.spec.clone().unwrap_or_default();
    let old_cidrs = os.pod_cidrs.clone().unwrap_or_default();
    if !old_cidrs.is_empty() && ns.pod_cidrs.clone().unwrap_or_default() != old_cidrs {
        errs.push(FieldError::forbidden(
            Path::new("spec").child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_pid = os.provider_id.clone().unwrap_or_default();
    if !old_pid.is_empty() && ns.provider_id.clone().unwrap_or_default() != old_pid {
        errs.push(FieldError::forbidden(
            Path::new("spec").child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// ConfigMap

pub fn validate_config_map(cm: &ConfigMap) -> FieldErrors {
    let mut errs = validate_object_meta(&cm.metadata, true, NameRule::Dns1123Subdomain);
    let mut total = 0usize;
    let binary = cm.binary_data.clone().unwrap_or_default();
    for (k, v) in cm.data.iter().flatten() {
        let p = Path::new("data").key(k);
        errs.extend(invalid_each(&p, k, is_config_map_key(k)));
        if binary.contains_key(k) {
            errs.push(FieldError::invalid(
                &p,
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.len();
    }
    for (k, v) in &binary {
        errs.extend(invalid_each(
            &Path::new("binaryData").key(k),
            k,
            is_config_map_key(k),
        ));
        total += v.0.len();
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("", MAX_DATA_SIZE));
    }
    errs
}

fn empty_none<T: Clone>(m: &Option<BTreeMap<String, T>>) -> BTreeMap<String, T> {
    m.clone().unwrap_or_default()
}

pub fn validate_config_map_update(new: &ConfigMap, old: &ConfigMap) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
        }
        if empty_none(&new.data) != empty_none(&old.data) {
            errs.push(FieldError::forbidden("data", IMMUTABLE_SET));
        }
        if empty_none(&new.binary_data) != empty_none(&old.binary_data) {
            errs.push(FieldError::forbidden("binaryData", IMMUTABLE_SET));
        }
    }
    errs.extend(
        validate_config_map(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

// ---------------------------------------------------------------------------------------
// Secret

/// `SetDefaults_Secret` (type Opaque) and the v1→internal conversion folding `stringData`
/// into `data` (stringData wins), which is what gets stored.
pub fn default_secret(secret: &mut Secret) {
    if secret.type_.as_deref().unwrap_or("").is_empty() {
        secret.type_ = Some("Opaque".into());
    }
    if let Some(sd) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in sd {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

pub fn validate_secret(secret: &Secret) -> FieldErrors {
    let mut errs = validate_object_meta(&secret.metadata, true, NameRule::Dns1123Subdomain);
    let data_path = Path::new("data");
    let data = empty_none(&secret.data);
    let mut total = 0usize;
    for (k, v) in &data {
        errs.extend(invalid_each(&data_path.key(k), k, is_config_map_key(k)));
        total += v.0.len();
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    let required =
        |key: &str, errs: &mut FieldErrors| errs.push(FieldError::required(data_path.key(key), ""));
    let json_check = |key: &str, errs: &mut FieldErrors| match data.get(key) {
        None => required(key, errs),
        Some(b) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&b.0) {
                errs.push(FieldError::invalid(
                    data_path.key(key),
                    "<secret contents redacted>",
                    e.to_string(),
                ));
            }
        }
    };
    match secret.type_.as_deref().unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let has = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|v| !v.is_empty());
            if !has {
                errs.push(FieldError::required(
                    Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_check(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => json_check(".dockerconfigjson", &mut errs),
        // Either may be empty, but one of the two must be present.
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            required("username", &mut errs);
            required("password", &mut errs);
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            required("ssh-privatekey", &mut errs);
        }
        "kubernetes.io/tls" => {
            if !data.contains_key("tls.crt") {
                required("tls.crt", &mut errs);
            }
            if !data.contains_key("tls.key") {
                required("tls.key", &mut errs);
            }
        }
        _ => {}
    }
    errs
}

pub fn validate_secret_update(new: &Secret, old: &Secret) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_immutable(
        &new.type_,
        &old.type_,
        &Path::new("type"),
    ));
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
        }
        if empty_none(&new.data) != empty_none(&old.data) {
            errs.push(FieldError::forbidden("data", IMMUTABLE_SET));
        }
    }
    errs.extend(validate_secret(new).into_iter().filter(|e| {
        !e.field.starts_with("metadata.name") && !e.field.starts_with("metadata.namespace")
    }));
    errs
}

// ---------------------------------------------------------------------------------------
// ServiceAccount

pub fn validate_service_account(sa: &ServiceAccount) -> FieldErrors {
    let mut errs = validate_object_meta(&sa.metadata, true, NameRule::Dns1123Subdomain);
    for (i, r) in sa.image_pull_secrets.iter().flatten().enumerate() {
        if r.name.is_empty() {
            errs.push(FieldError::required(
                Path::new("imagePullSecrets").index(i).child("name"),
                "",
            ));
        }
    }
    errs
}

pub fn validate_service_account_update(new: &ServiceAccount, old: &ServiceAccount) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_service_account(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

// ---------------------------------------------------------------------------------------
// PodTemplate

/// `SetDefaults_PodSpec` on the template's spec (the pod-only defaults stay with pods).
pub fn default_pod_template(t: &mut PodTemplate) {
    let template = t.template.get_or_insert_with(Default::default);
    crate::pod::default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// The pod template registry's create step: generation starts at 1.
pub fn prepare_pod_template_for_create(t: &mut PodTemplate) {
    t.metadata.generation = Some(1);
}

/// The pod template registry's update step: any change of the template counts a
/// generation.
pub fn prepare_pod_template_for_update(new: &mut PodTemplate, old: &PodTemplate) {
    let generation = old.metadata.generation.unwrap_or(1);
    new.metadata.generation = Some(if new.template != old.template {
        generation + 1
    } else {
        generation
    });
}

/// `ValidatePodTemplate`.
pub fn validate_pod_template(t: &PodTemplate) -> FieldErrors {
    let mut errs = validate_object_meta(&t.metadata, true, NameRule::Dns1123Subdomain);
    if let Some(template) = &t.template {
        errs.extend(crate::workload::validate_pod_template_spec(
            template,
            &Path::new("template"),
        ));
    }
    errs
}

/// `ValidatePodTemplateUpdate`.
pub fn validate_pod_template_update(new: &PodTemplate, old: &PodTemplate) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    if let Some(template) = &new.template {
        errs.extend(crate::workload::validate_pod_template_spec(
            template,
            &Path::new("template"),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Event (core/v1; events.k8s.io/v1 objects are converted to this before validation)

const EVENT_FIELD_LIMIT: usize = 128;
const NOTE_LENGTH_LIMIT: usize = 1024;

/// `ValidateEventCreate`. `strict` is true for writes through events.k8s.io/v1, which adds
/// the new-API rules (eventTime required, deprecated fields unset, type Normal/Warning);
/// core/v1 writes only get the legacy checks, as upstream keeps them for compatibility.
pub fn validate_event(ev: &Event, strict: bool) -> FieldErrors {
    let mut errs = Vec::new();
    let ns = ev.metadata.namespace.clone().unwrap_or_default();
    let inv_ns = ev.involved_object.namespace.clone().unwrap_or_default();
    let ctrl_field = if strict {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let mismatch = || {
        FieldError::invalid(
            Path::new("involvedObject").child("namespace"),
            inv_ns.as_str(),
            "does not match event.namespace",
        )
    };
    if ev.event_time.is_none() {
        if inv_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != inv_ns {
            errs.push(mismatch());
        }
    } else {
        if inv_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let ctrl = ev.reporting_component.clone().unwrap_or_default();
        if ctrl.is_empty() {
            errs.push(FieldError::required(ctrl_field, ""));
        }
        errs.extend(invalid_each(
            &Path::new(ctrl_field),
            &ctrl,
            is_qualified_name(&ctrl),
        ));
        let instance = ev.reporting_instance.clone().unwrap_or_default();
        if instance.is_empty() {
            errs.push(FieldError::required("reportingInstance", ""));
        }
        let too_long = |field: &str, v: &str, limit: usize, errs: &mut FieldErrors| {
            if v.len() > limit {
                errs.push(FieldError::invalid(
                    field,
                    "",
                    format!("can have at most {limit} characters"),
                ));
            }
        };
        too_long("reportingInstance", &instance, EVENT_FIELD_LIMIT, &mut errs);
        let action = ev.action.clone().unwrap_or_default();
        if action.is_empty() {
            errs.push(FieldError::required("action", ""));
        }
        too_long("action", &action, EVENT_FIELD_LIMIT, &mut errs);
        let reason = ev.reason.clone().unwrap_or_default();
        if reason.is_empty() {
            errs.push(FieldError::required("reason", ""));
        }
        too_long("reason", &reason, EVENT_FIELD_LIMIT, &mut errs);
        too_long(
            "message",
            ev.message.as_deref().unwrap_or(""),
            NOTE_LENGTH_LIMIT,
            &mut errs,
        );
    }
    errs.extend(invalid_each(
        &Path::new("namespace"),
        &ns,
        is_dns1123_subdomain(&ns),
    ));
    if !strict {
        return errs;
    }
    errs.extend(validate_object_meta(
        &ev.metadata,
        true,
        NameRule::Dns1123Subdomain,
    ));
    if let Some(series) = &ev.series {
        if series.count.unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                Path::new("series").child("count"),
                "",
                "should be at least 2",
            ));
        }
        if series.last_observed_time.is_none() {
            errs.push(FieldError::required(
                Path::new("series").child("lastObservedTime"),
                "",
            ));
        }
    }
    if ev.event_time.is_none() {
        errs.push(FieldError::required("eventTime", ""));
    }
    let t = ev.type_.clone().unwrap_or_default();
    if t != "Normal" && t != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            "",
            format!("has invalid value: {t}"),
        ));
    }
    if ev.first_timestamp.is_some() {
        errs.push(FieldError::invalid(
            "firstTimestamp",
            "",
            "needs to be unset",
        ));
    }
    if ev.last_timestamp.is_some() {
        errs.push(FieldError::invalid(
            "lastTimestamp",
            "",
            "needs to be unset",
        ));
    }
    if ev.count.unwrap_or(0) != 0 {
        errs.push(FieldError::invalid("count", "", "needs to be unset"));
    }
    if ev.source.as_ref().is_some_and(|s| {
        s.component.as_deref().is_some_and(|c| !c.is_empty())
            || s.host.as_deref().is_some_and(|h| !h.is_empty())
    }) {
        errs.push(FieldError::invalid("source", "", "needs to be unset"));
    }
    errs
}

/// `ValidateEventUpdate`: the create rules again, plus (through events.k8s.io) the
/// identifying fields are immutable.
pub fn validate_event_update(new: &Event, old: &Event, strict: bool) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_event(new, strict)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    if strict {
        errs.extend(validate_immutable(
            &new.involved_object,
            &old.involved_object,
            &Path::new("involvedObject"),
        ));
        errs.extend(validate_immutable(
            &new.reason,
            &old.reason,
            &Path::new("reason"),
        ));
        errs.extend(validate_immutable(
            &new.message,
            &old.message,
            &Path::new("message"),
        ));
        errs.extend(validate_immutable(
            &new.source,
            &old.source,
            &Path::new("source"),
        ));
        errs.extend(validate_immutable(
            &new.first_timestamp,
            &old.first_timestamp,
            &Path::new("firstTimestamp"),
        ));
        errs.extend(validate_immutable(
            &new.last_timestamp,
            &old.last_timestamp,
            &Path::new("lastTimestamp"),
        ));
        errs.extend(validate_immutable(
            &new.count,
            &old.count,
            &Path::new("count"),
        ));
        errs.extend(validate_immutable(
            &new.type_,
            &old.type_,
            &Path::new("type"),
        ));
        errs.extend(validate_immutable(
            &new.action,
            &old.action,
            &Path::new("action"),
        ));
        errs.extend(validate_immutable(
            &new.related,
            &old.related,
            &Path::new("related"),
        ));
        errs.extend(validate_immutable(
            &new.reporting_component,
            &old.reporting_component,
            &Path::new("reportingController"),
        ));
        errs.extend(validate_immutable(
            &new.reporting_instance,
            &old.reporting_instance,
            &Path::new("reportingInstance"),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Lease

pub fn validate_lease(lease: &Lease) -> FieldErrors {
    let mut errs = validate_object_meta(&lease.metadata, true, NameRule::Dns1123Subdomain);
    if let Some(spec) = &lease.spec {
        let sp = Path::new("spec");
        if let Some(d) = spec.lease_duration_seconds {
            if d <= 0 {
                errs.push(FieldError::invalid(
                    sp.child("leaseDurationSeconds"),
                    d,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(t) = spec.lease_transitions {
            if t < 0 {
                errs.push(FieldError::invalid(
                    sp.child("leaseTransitions"),
                    t,
                    "must be greater than or equal to 0",
                ));
            }
        }
        if spec
            .preferred_holder
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            && spec.strategy.as_deref().unwrap_or("").is_empty()
        {
            errs.push(FieldError::forbidden(
                sp.child("preferredHolder"),
                "may only be specified if `strategy` is defined",
            ));
        }
    }
    errs
}

pub fn validate_lease_update(new: &Lease, old: &Lease) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_lease(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

// ---------------------------------------------------------------------------------------
// PriorityClass

/// Highest value a non-system PriorityClass may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The built-in system classes: (name, value).
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i32)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// `SetDefaults_PriorityClass`.
pub fn default_priority_class(pc: &mut PriorityClass) {
    if pc.preemption_policy.is_none() {
        pc.preemption_policy = Some("PreemptLowerPriority".into());
    }
}

pub fn validate_priority_class(pc: &PriorityClass) -> FieldErrors {
    let mut errs = validate_object_meta(&pc.metadata, false, NameRule::Dns1123Subdomain);
    let name = pc.metadata.name.clone().unwrap_or_default();
    let value = pc.value.unwrap_or(0);
    if name.starts_with("system-") {
        let known = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name);
        let err = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v)) if *v != value => {
                Some(format!("value of {name} PriorityClass must be {v}"))
            }
            Some(_) if pc.global_default == Some(true) => Some(format!(
                "globalDefault of {name} PriorityClass must be false"
            )),
            Some(_) => None,
        };
        if let Some(e) = err {
            errs.push(FieldError::forbidden(
                Path::new("metadata").child("name"),
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {e}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden("value", format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}")));
    }
    if let Some(pp) = pc.preemption_policy.as_deref() {
        if !["Never", "PreemptLowerPriority"].contains(&pp) {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                pp,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    errs
}

pub fn validate_priority_class_update(new: &PriorityClass, old: &PriorityClass) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    if new.value != old.value {
        errs.push(FieldError::forbidden(
            "value",
            "may not be changed in an update.",
        ));
    }
    if new.preemption_policy != old.preemption_policy {
        errs.push(FieldError::invalid(
            "preemptionPolicy",
            new.preemption_policy.clone().unwrap_or_default(),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned + Default>(v: Value) -> T {
        match serde_json::from_value(v) {
            Ok(t) => t,
            Err(e) => panic!("bad fixture: {e}"),
        }
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn namespaces() {
        let mut ns: Namespace = from(json!({"metadata": {"name": "team-a"}}));
        default_namespace(&mut ns);
        prepare_namespace_for_create(&mut ns);
        let v = serde_json::to_value(&ns).unwrap_or_default();
        assert_eq!(
            v["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(v["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(v["status"]["phase"], "Active");
        assert!(validate_namespace(&ns).is_empty());
        let bad: Namespace =
            from(json!({"metadata": {"name": "team.a"}, "spec": {"finalizers": ["custom"]}}));
        let got = msgs(&validate_namespace(&bad));
        assert!(got[0]
            .starts_with("metadata.name: Invalid value: \"team.a\": a lowercase RFC 1123 label"));
        assert_eq!(got[1], "spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified");
        let mut term = ns.clone();
        term.metadata.resource_version = Some("2".into());
        term.status = Some(from(json!({"phase": "Terminating"})));
        assert_eq!(
            msgs(&validate_namespace_status_update(&term, &ns)),
            vec!["status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"]
        );
    }

    #[test]
    fn nodes() {
        let mut n: Node = from(
            json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
            {"key": "k", "effect": "Sometimes"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi"}}}),
        );
        default_node(&mut n);
        assert_eq!(
            n.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .map(|a| a.len()),
            Some(2)
        );
        let got = msgs(&validate_node(&n));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("spec.taints[1]: Duplicate value: "));
        assert!(got[0].ends_with(": taints must be unique by key and effect pair"));
        assert_eq!(got[1], "spec.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"");
        let old: Node = from(
            json!({"metadata": {"name": "n1", "resourceVersion": "1"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}}),
        );
        let mut new = old.clone();
        new.spec = Some(from(
            json!({"podCIDRs": ["10.1.0.0/24"], "unschedulable": true}),
        ));
        assert_eq!(msgs(&validate_node_update(&new, &old)), vec!["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"]);
    }

    #[test]
    fn config_maps() {
        let cm: ConfigMap = from(
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a.conf": "x", "bad/key": "y", "dup": "1"}, "binaryData": {"dup": "AA=="}}),
        );
        let got = msgs(&validate_config_map(&cm));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        assert_eq!(
            got[1],
            "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData"
        );
        let big: ConfigMap = from(
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x".repeat(MAX_DATA_SIZE + 1)}}),
        );
        assert_eq!(
            msgs(&validate_config_map(&big)),
            vec![": Too long: may not be more than 1048576 bytes"]
        );
        let old: ConfigMap = from(
            json!({"metadata": {"name": "c", "namespace": "d", "resourceVersion": "1"}, "data": {"a": "1"}, "immutable": true}),
        );
        let mut new = old.clone();
        new.data = Some(BTreeMap::from([("a".to_string(), "2".to_string())]));
        new.immutable = Some(false);
        assert_eq!(
            msgs(&validate_config_map_update(&new, &old)),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set"
            ]
        );
        let mut ok = old.clone();
        ok.metadata.labels = Some(BTreeMap::from([("x".to_string(), "y".to_string())]));
        assert!(validate_config_map_update(&ok, &old).is_empty());
    }

    #[test]
    fn secrets() {
        let mut s: Secret = from(
            json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "eA=="}, "stringData": {"a": "override", "b": "y"}}),
        );
        default_secret(&mut s);
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            s.data
                .as_ref()
                .and_then(|d| d.get("a"))
                .map(|b| b.0.clone()),
            Some(b"override".to_vec())
        );
        assert!(s.string_data.is_none());
        assert!(validate_secret(&s).is_empty());
        let tls: Secret = from(
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}),
        );
        assert_eq!(
            msgs(&validate_secret(&tls)),
            vec!["data[tls.key]: Required value"]
        );
        let dj: Secret = from(
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm9wZQ=="}}),
        );
        let got = msgs(&validate_secret(&dj));
        assert!(
            got[0].starts_with(
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "
            ),
            "{got:?}"
        );
        let sat: Secret = from(
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/service-account-token"}),
        );
        assert_eq!(
            msgs(&validate_secret(&sat)),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        let old: Secret = from(
            json!({"metadata": {"name": "s", "namespace": "d", "resourceVersion": "1"}, "type": "Opaque", "immutable": true, "data": {"a": "eA=="}}),
        );
        let mut new = old.clone();
        new.type_ = Some("kubernetes.io/tls".into());
        new.data = None;
        let got = msgs(&validate_secret_update(&new, &old));
        assert_eq!(
            got[0],
            "type: Invalid value: \"kubernetes.io/tls\": field is immutable"
        );
        assert_eq!(
            got[1],
            "data: Forbidden: field is immutable when `immutable` is set"
        );
    }

    #[test]
    fn events_leases_priorities() {
        let legacy: Event = from(
            json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}}),
        );
        assert_eq!(msgs(&validate_event(&legacy, false)), vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]);
        let newer: Event = from(
            json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d"},
            "eventTime": "2025-06-01T11:59:00.000000Z", "reportingComponent": "example.com/ctrl", "reportingInstance": "i", "action": "Pull", "reason": "Pulled", "type": "Normal"}),
        );
        assert!(
            validate_event(&newer, true).is_empty(),
            "{:?}",
            msgs(&validate_event(&newer, true))
        );
        let mut bad = newer.clone();
        bad.type_ = Some("Info".into());
        bad.action = None;
        assert_eq!(
            msgs(&validate_event(&bad, true)),
            vec![
                "action: Required value",
                "type: Invalid value: \"\": has invalid value: Info"
            ]
        );

        let lease: Lease = from(
            json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 0}}),
        );
        assert_eq!(
            msgs(&validate_lease(&lease)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );

        let mut pc: PriorityClass =
            from(json!({"metadata": {"name": "high"}, "value": 2000000000}));
        default_priority_class(&mut pc);
        assert_eq!(
            pc.preemption_policy.as_deref(),
            Some("PreemptLowerPriority")
        );
        assert_eq!(
            msgs(&validate_priority_class(&pc)),
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
            ]
        );
        let sys: PriorityClass = from(json!({"metadata": {"name": "system-foo"}, "value": 10}));
        assert_eq!(
            msgs(&validate_priority_class(&sys)),
            vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-foo is not a known system priority class"]
        );
        let ok: PriorityClass =
            from(json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000}));
        assert!(validate_priority_class(&ok).is_empty());
        let old: PriorityClass =
            from(json!({"metadata": {"name": "high", "resourceVersion": "1"}, "value": 10}));
        let mut new = old.clone();
        new.value = Some(11);
        assert_eq!(
            msgs(&validate_priority_class_update(&new, &old)),
            vec!["value: Forbidden: may not be changed in an update."]
        );
    }
}

//! Pods: defaulting, validation on create / update / status update, and QoS class.
//!
//! Owns: upstream's `SetDefaults_Pod` / `PodSpec` / `Container` / `Probe` / volume-source
//! defaults plus the two admission-time defaults peapod applies itself (priority and the
//! `DefaultTolerationSeconds` tolerations); `ValidatePodCreate`, `ValidatePodUpdate`,
//! `ValidatePodStatusUpdate` with upstream's paths and messages for what users commonly hit;
//! and `ComputePodQOS`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, EnvFromSource, EnvVar, HTTPGetAction, LifecycleHandler,
    ObjectFieldSelector, Pod, PodCondition, PodSpec, PodStatus, Probe, ResourceRequirements,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::field::{go_quote, FieldError, FieldErrors, Path};
use crate::meta::{validate_labels, validate_object_meta, validate_object_meta_update, NameRule};
use crate::quantity::Quantity;
use crate::validation::{
    inclusive_range_error, invalid_each, is_config_map_key, is_dns1123_subdomain,
    is_qualified_name, is_relaxed_env_var_name, is_valid_ip, is_valid_label_value,
    is_valid_port_name, is_valid_port_num, validate_dns1123_label, validate_dns1123_subdomain,
    validate_nonnegative, IS_NEGATIVE_ERROR,
};

pub const DEFAULT_TERMINATION_GRACE_PERIOD: i64 = 30;
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// 0644, the default mode of secret / configMap / downwardAPI / projected volumes.
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;
/// The `DefaultTolerationSeconds` admission plugin's default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

// ---------------------------------------------------------------------------------------
// Defaulting

/// Everything upstream's v1 defaulters do to a pod, plus the admission-time defaults a
/// standalone API server must apply itself:
/// * `serviceAccountName` "default" (ServiceAccount admission; the token volume is not added
///   here) and the deprecated `serviceAccount` mirror the conversion keeps in sync;
/// * `priority` 0 and `preemptionPolicy` PreemptLowerPriority when no `priorityClassName`
///   (Priority admission; resolving a named class is the server's job);
/// * the `node.kubernetes.io/not-ready` and `unreachable` NoExecute tolerations for 300 s,
///   each only when the pod does not already tolerate that taint;
/// * `status.phase` Pending and `status.qosClass` when unset (the registry's create step;
///   see also [`prepare_pod_for_create`]).
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    // SetDefaults_Pod: requests default to limits (only on pods, not templates).
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(res) = &mut c.resources {
            if let Some(limits) = &res.limits {
                let req = res.requests.get_or_insert_with(BTreeMap::new);
                for (k, v) in limits {
                    req.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(true);
    }
    if spec.host_network == Some(true) {
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
    // Admission-time defaults.
    let sa = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| spec.service_account.clone().filter(|s| !s.is_empty()));
    let sa = sa.unwrap_or_else(|| "default".to_string());
    spec.service_account_name = Some(sa.clone());
    spec.service_account = Some(sa);
    if spec.priority_class_name.as_deref().unwrap_or("").is_empty() && spec.priority.is_none() {
        spec.priority = Some(0);
    }
    if spec.preemption_policy.is_none() {
        spec.preemption_policy = Some("PreemptLowerPriority".into());
    }
    add_default_tolerations(spec);

    let qos = qos_class(pod);
    let status = pod.status.get_or_insert_with(Default::default);
    if status.phase.is_none() {
        status.phase = Some("Pending".into());
    }
    if status.qos_class.is_none() {
        status.qos_class = Some(qos.into());
    }
}

/// What the pod registry does on create after defaulting: the status is reset to
/// `Pending` with the computed QoS class, and a gated pod gets its `PodScheduled=False`
/// `SchedulingGated` condition.
pub fn prepare_pod_for_create(pod: &mut Pod) {
    let qos = qos_class(pod);
    let gated = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()));
    let mut status = PodStatus {
        phase: Some("Pending".into()),
        qos_class: Some(qos.into()),
        ..Default::default()
    };
    if gated {
        status.conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("SchedulingGated".into()),
            message: Some("Scheduling is blocked due to non-empty scheduling gates".into()),
            ..Default::default()
        }]);
    }
    pod.status = Some(status);
}

fn add_default_tolerations(spec: &mut PodSpec) {
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        // The plugin skips a taint the pod already tolerates (by key with NoExecute or any
        // effect, or an empty-key Exists toleration).
        let tolerated = tols.iter().any(|t| {
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "NoExecute");
            let key_ok = t.key.as_deref() == Some(key)
                || (t.key.as_deref().unwrap_or("").is_empty()
                    && t.operator.as_deref() == Some("Exists"));
            effect_ok && key_ok
        });
        if !tolerated {
            tols.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

/// `SetDefaults_PodSpec` and everything nested in it.
pub fn default_pod_spec(spec: &mut PodSpec) {
    if spec.dns_policy.as_deref().unwrap_or("").is_empty() {
        spec.dns_policy = Some("ClusterFirst".into());
    }
    if spec.restart_policy.as_deref().unwrap_or("").is_empty() {
        spec.restart_policy = Some("Always".into());
    }
    if spec.security_context.is_none() {
        spec.security_context = Some(Default::default());
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_TERMINATION_GRACE_PERIOD);
    }
    if spec.scheduler_name.as_deref().unwrap_or("").is_empty() {
        spec.scheduler_name = Some(DEFAULT_SCHEDULER_NAME.into());
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
    for ec in spec.ephemeral_containers.iter_mut().flatten() {
        if ec.image_pull_policy.as_deref().unwrap_or("").is_empty() {
            ec.image_pull_policy =
                Some(default_pull_policy(ec.image.as_deref().unwrap_or("")).into());
        }
        if ec
            .termination_message_path
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            ec.termination_message_path = Some(TERMINATION_MESSAGE_PATH.into());
        }
        if ec
            .termination_message_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            ec.termination_message_policy = Some("File".into());
        }
        for p in ec.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
        }
        for e in ec.env.iter_mut().flatten() {
            default_env_var(e);
        }
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

/// `SetDefaults_Container` plus the nested port / probe / env / lifecycle defaults.
pub fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    if c.termination_message_path
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        c.termination_message_path = Some(TERMINATION_MESSAGE_PATH.into());
    }
    if c.termination_message_policy
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        c.termination_message_policy = Some("File".into());
    }
    for p in c.ports.iter_mut().flatten() {
        if p.protocol.as_deref().unwrap_or("").is_empty() {
            p.protocol = Some("TCP".into());
        }
    }
    for e in c.env.iter_mut().flatten() {
        default_env_var(e);
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(p);
    }
    if let Some(lc) = &mut c.lifecycle {
        for h in [&mut lc.post_start, &mut lc.pre_stop].into_iter().flatten() {
            default_handler(h);
        }
    }
}

fn default_env_var(e: &mut EnvVar) {
    if let Some(fr) = e.value_from.as_mut().and_then(|vf| vf.field_ref.as_mut()) {
        default_field_selector(fr);
    }
}

fn default_field_selector(fr: &mut ObjectFieldSelector) {
    if fr.api_version.as_deref().unwrap_or("").is_empty() {
        fr.api_version = Some("v1".into());
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    if h.path.as_deref().unwrap_or("").is_empty() {
        h.path = Some("/".into());
    }
    if h.scheme.as_deref().unwrap_or("").is_empty() {
        h.scheme = Some("HTTP".into());
    }
}

fn default_handler(h: &mut LifecycleHandler) {
    if let Some(g) = &mut h.http_get {
        default_http_get(g);
    }
}

fn default_probe(p: &mut Probe) {
    // Zero means unset in the internal API, so zero is defaulted too.
    if p.timeout_seconds.unwrap_or(0) == 0 {
        p.timeout_seconds = Some(1);
    }
    if p.period_seconds.unwrap_or(0) == 0 {
        p.period_seconds = Some(10);
    }
    if p.success_threshold.unwrap_or(0) == 0 {
        p.success_threshold = Some(1);
    }
    if p.failure_threshold.unwrap_or(0) == 0 {
        p.failure_threshold = Some(3);
    }
    if let Some(g) = &mut p.http_get {
        default_http_get(g);
    }
}

/// `SetDefaults_Volume` (no source → emptyDir) and the per-source defaults.
fn default_volume(v: &mut Volume) {
    if volume_sources(v).is_empty() {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = &mut v.secret {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = &mut v.config_map {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = &mut v.downward_api {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for item in s.items.iter_mut().flatten() {
            if let Some(fr) = &mut item.field_ref {
                default_field_selector(fr);
            }
        }
    }
    if let Some(s) = &mut v.projected {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for src in s.sources.iter_mut().flatten() {
            if let Some(t) = &mut src.service_account_token {
                t.expiration_seconds.get_or_insert(3600);
            }
            if let Some(d) = &mut src.downward_api {
                for item in d.items.iter_mut().flatten() {
                    if let Some(fr) = &mut item.field_ref {
                        default_field_selector(fr);
                    }
                }
            }
        }
    }
    if let Some(h) = &mut v.host_path {
        h.type_.get_or_insert_with(String::new);
    }
    if let Some(i) = &mut v.iscsi {
        i.iscsi_interface.get_or_insert_with(|| "default".into());
    }
    if let Some(a) = &mut v.azure_disk {
        a.caching_mode.get_or_insert_with(|| "ReadWrite".into());
        a.kind.get_or_insert_with(|| "Shared".into());
        a.fs_type.get_or_insert_with(|| "ext4".into());
        a.read_only.get_or_insert(false);
    }
}

/// Names of the volume sources set on `v`, in the struct's field order.
fn volume_sources(v: &Volume) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! src {
        ($($f:ident => $n:literal),* $(,)?) => { $( if v.$f.is_some() { out.push($n); } )* };
    }
    src!(
        host_path => "hostPath", empty_dir => "emptyDir", gce_persistent_disk => "gcePersistentDisk",
        aws_elastic_block_store => "awsElasticBlockStore", git_repo => "gitRepo", secret => "secret",
        nfs => "nfs", iscsi => "iscsi", glusterfs => "glusterfs",
        persistent_volume_claim => "persistentVolumeClaim", rbd => "rbd", flex_volume => "flexVolume",
        cinder => "cinder", cephfs => "cephfs", flocker => "flocker", downward_api => "downwardAPI",
        fc => "fc", azure_file => "azureFile", config_map => "configMap", vsphere_volume => "vsphereVolume",
        quobyte => "quobyte", azure_disk => "azureDisk", photon_persistent_disk => "photonPersistentDisk",
        projected => "projected", portworx_volume => "portworxVolume", scale_io => "scaleIO",
        storageos => "storageos", csi => "csi", ephemeral => "ephemeral", image => "image",
    );
    out
}

/// `Always` for `:latest` or an untagged, undigested image; otherwise `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag the kubelet's image-name parser would report: the explicit tag, `latest` when
/// there is neither tag nor digest, `None` when there is only a digest or the reference
/// does not parse.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    // Repository paths are lower case (the registry host part may not be).
    let path = repo.split_once('/').map_or(repo, |(host, rest)| {
        if host.contains(['.', ':']) || host == "localhost" {
            rest
        } else {
            repo
        }
    });
    if path.is_empty() || path.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) if !t.is_empty() => Some(t.to_string()),
        (Some(_), _) => None,
        (None, Some(_)) => None,
        (None, None) => Some("latest".into()),
    }
}

// ---------------------------------------------------------------------------------------
// QoS

fn is_qos_resource(name: &str) -> bool {
    name == "cpu" || name == "memory"
}

fn sum_into(
    acc: &mut BTreeMap<String, i128>,
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (name, q) in list.into_iter().flatten() {
        if !is_qos_resource(name) {
            continue;
        }
        let Ok(q) = Quantity::parse(&q.0) else {
            continue;
        };
        if q.nanos > 0 {
            found.insert(name.clone());
            *acc.entry(name.clone()).or_insert(0) += q.nanos;
        }
    }
    found
}

/// `ComputePodQOS`: Guaranteed when every container sets cpu and memory limits and the
/// summed requests equal the summed limits; BestEffort when nothing is requested or limited;
/// Burstable otherwise. Pod-level `spec.resources`, when set, decides alone.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let mut guaranteed = true;
    let mut account = |res: Option<&ResourceRequirements>| {
        sum_into(&mut requests, res.and_then(|r| r.requests.as_ref()));
        let found = sum_into(&mut limits, res.and_then(|r| r.limits.as_ref()));
        if !(found.contains("cpu") && found.contains("memory")) {
            guaranteed = false;
        }
    };
    if let Some(pod_res) = &spec.resources {
        account(Some(pod_res));
    } else {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            account(c.resources.as_ref());
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}

// ---------------------------------------------------------------------------------------
// Validation helpers

fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

fn enum_check(value: &str, path: &Path, supported: &[&str]) -> FieldErrors {
    if value.is_empty() {
        vec![FieldError::required(path, "")]
    } else if !supported.contains(&value) {
        vec![FieldError::not_supported(path, value, supported)]
    } else {
        Vec::new()
    }
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
/// Every field the downward API conversion knows (a path outside this set fails conversion,
/// a path inside it but outside `ENV_FIELD_PATHS` is "not supported").
const DOWNWARD_CONVERTIBLE: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

// ---------------------------------------------------------------------------------------
// Create

/// `ValidatePodCreate`: metadata, spec, and the create-only rules.
pub fn validate_pod(pod: &Pod) -> FieldErrors {
    let mut errs = validate_object_meta(&pod.metadata, true, NameRule::Dns1123Subdomain);
    let spec_path = Path::new("spec");
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(validate_pod_spec(spec, &spec_path));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            spec_path.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    if !s(&spec.node_name).is_empty()
        && spec
            .scheduling_gates
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    {
        errs.push(FieldError::forbidden(
            spec_path.child("nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    if let Some(st) = &pod.status {
        errs.extend(validate_pod_ips(st));
    }
    errs
}

/// `ValidatePodSpec` (the parts shared by create and update).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &path.child("volumes"),
        &mut errs,
    );
    let grace = spec.termination_grace_period_seconds;
    validate_containers(spec, &volumes, grace, &path.child("containers"), &mut errs);
    validate_init_containers(
        spec,
        &volumes,
        grace,
        &path.child("initContainers"),
        &mut errs,
    );
    if let Some(ecs) = &spec.ephemeral_containers {
        let mut names: BTreeSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        names.extend(
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| c.name.as_str()),
        );
        let ep = path.child("ephemeralContainers");
        for (i, ec) in ecs.iter().enumerate() {
            let ip = ep.index(i);
            if ec.name.is_empty() {
                errs.push(FieldError::required(ip.child("name"), ""));
            } else {
                errs.extend(validate_dns1123_label(&ec.name, &ip.child("name")));
                if !names.insert(ec.name.as_str()) {
                    errs.push(FieldError::duplicate(ip.child("name"), ec.name.as_str()));
                }
            }
            if s(&ec.image).is_empty() {
                errs.push(FieldError::required(ip.child("image"), ""));
            }
            // The target must be a regular or init container (never another ephemeral one).
            if let Some(target) = ec
                .target_container_name
                .as_deref()
                .filter(|t| !t.is_empty())
            {
                let known = spec.containers.iter().any(|c| c.name == target)
                    || spec
                        .init_containers
                        .iter()
                        .flatten()
                        .any(|c| c.name == target);
                if !known {
                    errs.push(FieldError::not_found(
                        ip.child("targetContainerName"),
                        target,
                    ));
                }
            }
            let has_resources = ec.resources.as_ref().is_some_and(|r| {
                r.limits.as_ref().is_some_and(|l| !l.is_empty())
                    || r.requests.as_ref().is_some_and(|l| !l.is_empty())
            });
            for (field, set) in [
                ("resources", has_resources),
                ("restartPolicy", ec.restart_policy.is_some()),
                ("lifecycle", ec.lifecycle.is_some()),
                ("livenessProbe", ec.liveness_probe.is_some()),
                ("readinessProbe", ec.readiness_probe.is_some()),
                ("startupProbe", ec.startup_probe.is_some()),
                ("ports", ec.ports.as_ref().is_some_and(|p| !p.is_empty())),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        ip.child(field),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
    errs.extend(enum_check(
        s(&spec.restart_policy),
        &path.child("restartPolicy"),
        RESTART_POLICIES,
    ));
    let dns = s(&spec.dns_policy);
    errs.extend(enum_check(dns, &path.child("dnsPolicy"), DNS_POLICIES));
    if dns == "None" && spec.dns_config.is_none() {
        errs.push(FieldError::required(
            path.child("dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(ns) = &spec.node_selector {
        errs.extend(validate_labels(ns, &path.child("nodeSelector")));
    }
    if let Some(sc) = &spec.security_context {
        for (field, v) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
            ("fsGroup", sc.fs_group),
        ] {
            if let Some(v) = v {
                errs.extend(validate_nonnegative(
                    v,
                    &path.child("securityContext").child(field),
                ));
            }
        }
    }
    validate_proc_mounts(spec, path, &mut errs);
    for (i, ps) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if ps.name.is_empty() {
            errs.push(FieldError::required(
                path.child("imagePullSecrets").index(i).child("name"),
                "",
            ));
        }
    }
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        errs.extend(invalid_each(
            &path.child("readinessGates").index(i).child("conditionType"),
            &g.condition_type,
            is_qualified_name(&g.condition_type),
        ));
    }
    let mut gates = BTreeSet::new();
    for (i, g) in spec.scheduling_gates.iter().flatten().enumerate() {
        let gp = path.child("schedulingGates").index(i).child("name");
        errs.extend(invalid_each(&gp, &g.name, is_qualified_name(&g.name)));
        if !gates.insert(g.name.as_str()) {
            errs.push(FieldError::duplicate(gp, g.name.as_str()));
        }
    }
    validate_topology_spread(spec, &path.child("topologySpreadConstraints"), &mut errs);
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        errs.extend(invalid_each(
            &path.child("serviceAccountName"),
            sa,
            is_dns1123_subdomain(sa),
        ));
    }
    if let Some(n) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(invalid_each(
            &path.child("nodeName"),
            n,
            is_dns1123_subdomain(n),
        ));
    }
    if let Some(ads) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            errs.push(FieldError::invalid(
                path.child("activeDeadlineSeconds"),
                ads,
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    if let Some(g) = grace {
        errs.extend(validate_nonnegative(
            g,
            &path.child("terminationGracePeriodSeconds"),
        ));
    }
    if let Some(h) = spec.hostname.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_label(h, &path.child("hostname")));
    }
    if let Some(sd) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_label(sd, &path.child("subdomain")));
    }
    if let Some(t) = &spec.tolerations {
        errs.extend(validate_tolerations(t, &path.child("tolerations")));
    }
    for (i, ha) in spec.host_aliases.iter().flatten().enumerate() {
        let hp = path.child("hostAliases").index(i);
        errs.extend(invalid_each(&hp.child("ip"), &ha.ip, is_valid_ip(&ha.ip)));
        for (j, h) in ha.hostnames.iter().flatten().enumerate() {
            errs.extend(validate_dns1123_subdomain(
                h,
                &hp.child("hostnames").index(j),
            ));
        }
    }
    if let Some(pc) = spec
        .priority_class_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        errs.extend(invalid_each(
            &path.child("priorityClassName"),
            pc,
            is_dns1123_subdomain(pc),
        ));
    }
    if let Some(rc) = spec.runtime_class_name.as_deref() {
        errs.extend(invalid_each(
            &path.child("runtimeClassName"),
            rc,
            is_dns1123_subdomain(rc),
        ));
    }
    if let Some(pp) = spec.preemption_policy.as_deref() {
        errs.extend(enum_check(
            pp,
            &path.child("preemptionPolicy"),
            &["Never", "PreemptLowerPriority"],
        ));
    }
    if let Some(os) = &spec.os {
        errs.extend(enum_check(
            &os.name,
            &path.child("os").child("name"),
            &["linux", "windows"],
        ));
    }
    if let Some(sn) = spec.scheduler_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(invalid_each(
            &path.child("schedulerName"),
            sn,
            is_dns1123_subdomain(sn),
        ));
    }
    errs
}

fn validate_topology_spread(spec: &PodSpec, path: &Path, errs: &mut FieldErrors) {
    let mut seen = BTreeSet::new();
    for (i, c) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let ip = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                ip.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                ip.child("topologyKey"),
                "can not be empty",
            ));
        } else {
            errs.extend(invalid_each(
                &ip.child("topologyKey"),
                &c.topology_key,
                is_qualified_name(&c.topology_key),
            ));
        }
        errs.extend(enum_check(
            &c.when_unsatisfiable,
            &ip.child("whenUnsatisfiable"),
            &["DoNotSchedule", "ScheduleAnyway"],
        ));
        let pair = format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable);
        if !seen.insert(pair.clone()) {
            errs.push(FieldError::duplicate(ip, pair));
        }
    }
}

/// `ValidateVolumes`; returns the valid volume names for mount checks.
fn validate_volumes(vols: &[Volume], path: &Path, errs: &mut FieldErrors) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in vols.iter().enumerate() {
        let ip = path.index(i);
        let name_ok = if v.name.is_empty() {
            errs.push(FieldError::required(ip.child("name"), ""));
            false
        } else {
            let e = validate_dns1123_label(&v.name, &ip.child("name"));
            let ok = e.is_empty();
            errs.extend(e);
            ok
        };
        if names.contains(&v.name) {
            errs.push(FieldError::duplicate(ip.child("name"), v.name.as_str()));
        } else if name_ok {
            names.insert(v.name.clone());
        }
        let sources = volume_sources(v);
        match sources.len() {
            0 => errs.push(FieldError::required(&ip, "must specify a volume type")),
            1 => {}
            _ => errs.push(FieldError::forbidden(
                ip.child(sources[1]),
                "may not specify more than 1 volume type",
            )),
        }
        let mode_check = |mode: Option<i32>, p: Path, errs: &mut FieldErrors| {
            if let Some(m) = mode {
                if !(0..=0o777).contains(&m) {
                    errs.push(FieldError::invalid(
                        p,
                        m,
                        "must be a number between 0 and 0777 (octal), both inclusive",
                    ));
                }
            }
        };
        if let Some(cm) = &v.config_map {
            if cm.name.is_empty() {
                errs.push(FieldError::required(
                    ip.child("configMap").child("name"),
                    "",
                ));
            }
            mode_check(
                cm.default_mode,
                ip.child("configMap").child("defaultMode"),
                errs,
            );
            validate_key_to_paths(
                cm.items.as_deref().unwrap_or(&[]),
                &ip.child("configMap").child("items"),
                errs,
            );
        }
        if let Some(sec) = &v.secret {
            if s(&sec.secret_name).is_empty() {
                errs.push(FieldError::required(
                    ip.child("secret").child("secretName"),
                    "",
                ));
            }
            mode_check(
                sec.default_mode,
                ip.child("secret").child("defaultMode"),
                errs,
            );
            validate_key_to_paths(
                sec.items.as_deref().unwrap_or(&[]),
                &ip.child("secret").child("items"),
                errs,
            );
        }
        if let Some(hp) = &v.host_path {
            if hp.path.is_empty() {
                errs.push(FieldError::required(ip.child("hostPath").child("path"), ""));
            }
            if let Some(t) = &hp.type_ {
                let ok = [
                    "",
                    "DirectoryOrCreate",
                    "Directory",
                    "FileOrCreate",
                    "File",
                    "Socket",
                    "CharDevice",
                    "BlockDevice",
                ];
                if !ok.contains(&t.as_str()) {
                    errs.push(FieldError::not_supported(
                        ip.child("hostPath").child("type"),
                        t.as_str(),
                        &ok,
                    ));
                }
            }
        }
        if let Some(pvc) = &v.persistent_volume_claim {
            if pvc.claim_name.is_empty() {
                errs.push(FieldError::required(
                    ip.child("persistentVolumeClaim").child("claimName"),
                    "",
                ));
            }
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(m) = ed.medium.as_deref() {
                if !["", "Memory", "HugePages"].contains(&m) && !m.starts_with("HugePages-") {
                    errs.push(FieldError::not_supported(
                        ip.child("emptyDir").child("medium"),
                        m,
                        &["", "Memory", "HugePages"],
                    ));
                }
            }
        }
    }
    names
}

fn validate_key_to_paths(
    items: &[k8s_openapi::api::core::v1::KeyToPath],
    path: &Path,
    errs: &mut FieldErrors,
) {
    for (i, it) in items.iter().enumerate() {
        let ip = path.index(i);
        if it.key.is_empty() {
            errs.push(FieldError::required(ip.child("key"), ""));
        }
        if it.path.is_empty() {
            errs.push(FieldError::required(ip.child("path"), ""));
        } else {
            errs.extend(validate_local_descending_path(&it.path, &ip.child("path")));
        }
        if let Some(m) = it.mode {
            if !(0..=0o777).contains(&m) {
                errs.push(FieldError::invalid(
                    ip.child("mode"),
                    m,
                    "must be a number between 0 and 0777 (octal), both inclusive",
                ));
            }
        }
    }
}

fn validate_local_descending_path(p: &str, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if p.starts_with('/') {
        errs.push(FieldError::invalid(path, p, "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, p, "must not contain '..'"));
    }
    errs
}

fn validate_containers(
    spec: &PodSpec,
    volumes: &BTreeSet<String>,
    grace: Option<i64>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    if spec.containers.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let ip = path.index(i);
        validate_container_common(c, volumes, &ip, spec.host_network == Some(true), errs);
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(ip.child("name"), c.name.as_str()));
        }
        validate_probes_and_lifecycle(c, grace, &ip, errs);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                ip.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(spec.containers.iter(), path, errs);
}

fn validate_init_containers(
    spec: &PodSpec,
    volumes: &BTreeSet<String>,
    grace: Option<i64>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let Some(inits) = &spec.init_containers else {
        return;
    };
    let mut names: BTreeSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in inits.iter().enumerate() {
        let ip = path.index(i);
        validate_container_common(c, volumes, &ip, spec.host_network == Some(true), errs);
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(ip.child("name"), c.name.as_str()));
        }
        match c.restart_policy.as_deref() {
            None => {}
            Some("Always") => {}
            Some(other) => errs.push(FieldError::not_supported(
                ip.child("restartPolicy"),
                other,
                &["Always"],
            )),
        }
        if is_restartable_init(c) {
            validate_probes_and_lifecycle(c, grace, &ip, errs);
        } else {
            for (field, set) in [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        ip.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    check_host_port_conflicts(inits.iter(), path, errs);
}

fn check_host_port_conflicts<'a>(
    containers: impl Iterator<Item = &'a Container>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let hp = p.host_port.unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{}", s(&p.protocol), s(&p.host_ip), hp);
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

fn validate_container_common(
    c: &Container,
    volumes: &BTreeSet<String>,
    path: &Path,
    host_network: bool,
    errs: &mut FieldErrors,
) {
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        errs.extend(validate_dns1123_label(&c.name, &path.child("name")));
    }
    if s(&c.image).is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    let tmp = s(&c.termination_message_policy);
    errs.extend(enum_check(
        tmp,
        &path.child("terminationMessagePolicy"),
        TERMINATION_MESSAGE_POLICIES,
    ));
    validate_ports(c, &path.child("ports"), host_network, errs);
    validate_env(c.env.as_deref().unwrap_or(&[]), &path.child("env"), errs);
    validate_env_from(
        c.env_from.as_deref().unwrap_or(&[]),
        &path.child("envFrom"),
        errs,
    );
    validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or(&[]),
        volumes,
        &path.child("volumeMounts"),
        errs,
    );
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        if m.mount_propagation.as_deref() == Some("Bidirectional") && !privileged {
            errs.push(FieldError::forbidden(
                path.child("volumeMounts")
                    .index(i)
                    .child("mountPropagation"),
                "Bidirectional mount propagation is available only to privileged containers",
            ));
        }
    }
    errs.extend(enum_check(
        s(&c.image_pull_policy),
        &path.child("imagePullPolicy"),
        PULL_POLICIES,
    ));
    if let Some(r) = &c.resources {
        validate_resources(r, &path.child("resources"), errs);
    }
    if let Some(sc) = &c.security_context {
        let sp = path.child("securityContext");
        for (field, v) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
        ] {
            if let Some(v) = v {
                errs.extend(validate_nonnegative(v, &sp.child(field)));
            }
        }
        if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
            errs.push(FieldError::invalid(
                sp,
                Value::Null,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
    }
}

/// `securityContext.procMount`: `Default` or `Unmasked`, and an unmasked /proc only inside
/// the pod's own user namespace (`hostUsers: false`), as upstream.
fn validate_proc_mounts(spec: &PodSpec, path: &Path, errs: &mut FieldErrors) {
    let host_users = spec.host_users.unwrap_or(true);
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (kind, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let Some(pm) = c
                .security_context
                .as_ref()
                .and_then(|s| s.proc_mount.as_deref())
            else {
                continue;
            };
            let field = path
                .child(kind)
                .index(i)
                .child("securityContext")
                .child("procMount");
            match pm {
                "Default" => {}
                "Unmasked" if host_users => errs.push(FieldError::invalid(
                    field,
                    pm,
                    "`hostUsers` must be false to use `Unmasked`",
                )),
                "Unmasked" => {}
                other => errs.push(FieldError::not_supported(
                    field,
                    other,
                    &["Default", "Unmasked"],
                )),
            }
        }
    }
}

fn validate_ports(c: &Container, path: &Path, host_network: bool, errs: &mut FieldErrors) {
    let mut names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let ip = path.index(i);
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(invalid_each(&ip.child("name"), name, msgs));
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(ip.child("name"), name));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(ip.child("containerPort"), ""));
        } else {
            for m in is_valid_port_num(i64::from(p.container_port)) {
                errs.push(FieldError::invalid(
                    ip.child("containerPort"),
                    p.container_port,
                    m,
                ));
            }
        }
        if let Some(hp) = p.host_port.filter(|h| *h != 0) {
            for m in is_valid_port_num(i64::from(hp)) {
                errs.push(FieldError::invalid(ip.child("hostPort"), hp, m));
            }
            if host_network && hp != p.container_port {
                errs.push(FieldError::invalid(
                    ip.child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
        errs.extend(enum_check(s(&p.protocol), &ip.child("protocol"), PROTOCOLS));
        if let Some(hip) = p.host_ip.as_deref().filter(|h| !h.is_empty()) {
            errs.extend(invalid_each(&ip.child("hostIP"), hip, is_valid_ip(hip)));
        }
    }
}

fn validate_env(env: &[EnvVar], path: &Path, errs: &mut FieldErrors) {
    for (i, e) in env.iter().enumerate() {
        let ip = path.index(i);
        if e.name.is_empty() {
            errs.push(FieldError::required(ip.child("name"), ""));
        }
        errs.extend(invalid_each(
            &ip.child("name"),
            &e.name,
            is_relaxed_env_var_name(&e.name),
        ));
        let Some(vf) = &e.value_from else { continue };
        let vp = ip.child("valueFrom");
        let mut n = 0;
        if let Some(fr) = &vf.field_ref {
            n += 1;
            validate_object_field_selector(fr, &vp.child("fieldRef"), errs);
        }
        if let Some(rf) = &vf.resource_field_ref {
            n += 1;
            if rf.resource.is_empty() {
                errs.push(FieldError::required(
                    vp.child("resourceFieldRef").child("resource"),
                    "",
                ));
            } else {
                let ok = [
                    "limits.cpu",
                    "limits.ephemeral-storage",
                    "limits.memory",
                    "requests.cpu",
                    "requests.ephemeral-storage",
                    "requests.memory",
                ];
                if !ok.contains(&rf.resource.as_str())
                    && !rf.resource.starts_with("limits.hugepages-")
                    && !rf.resource.starts_with("requests.hugepages-")
                {
                    errs.push(FieldError::not_supported(
                        vp.child("resourceFieldRef").child("resource"),
                        rf.resource.as_str(),
                        &ok,
                    ));
                }
            }
        }
        if let Some(cm) = &vf.config_map_key_ref {
            n += 1;
            validate_key_selector(&cm.name, &cm.key, &vp.child("configMapKeyRef"), errs);
        }
        if let Some(sk) = &vf.secret_key_ref {
            n += 1;
            validate_key_selector(&sk.name, &sk.key, &vp.child("secretKeyRef"), errs);
        }
        if vf.file_key_ref.is_some() {
            n += 1;
        }
        if n == 0 {
            errs.push(FieldError::invalid(&vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        } else if !s(&e.value).is_empty() {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_key_selector(name: &str, key: &str, path: &Path, errs: &mut FieldErrors) {
    errs.extend(invalid_each(
        &path.child("name"),
        name,
        is_dns1123_subdomain(name),
    ));
    if key.is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    } else {
        errs.extend(invalid_each(
            &path.child("key"),
            key,
            is_config_map_key(key),
        ));
    }
}

fn validate_object_field_selector(fr: &ObjectFieldSelector, path: &Path, errs: &mut FieldErrors) {
    let api_version = s(&fr.api_version);
    if api_version.is_empty() {
        errs.push(FieldError::required(path.child("apiVersion"), ""));
        return;
    }
    if fr.field_path.is_empty() {
        errs.push(FieldError::required(path.child("fieldPath"), ""));
        return;
    }
    if api_version != "v1" {
        errs.push(FieldError::invalid(
            path.child("fieldPath"),
            fr.field_path.as_str(),
            format!("error converting fieldPath: unsupported pod version: {api_version}"),
        ));
        return;
    }
    // `metadata.labels['key']` / `metadata.annotations['key']`
    if let Some((base, rest)) = fr.field_path.split_once('[') {
        let sub = rest.strip_suffix(']').unwrap_or(rest).trim_matches('\'');
        match base {
            "metadata.labels" => errs.extend(invalid_each(path, sub, is_qualified_name(sub))),
            "metadata.annotations" => errs.extend(invalid_each(
                path,
                sub,
                is_qualified_name(&sub.to_lowercase()),
            )),
            _ if DOWNWARD_CONVERTIBLE.contains(&base) => errs.push(FieldError::invalid(
                path,
                base,
                "does not support subscript",
            )),
            _ => errs.push(FieldError::invalid(
                path.child("fieldPath"),
                fr.field_path.as_str(),
                format!(
                    "error converting fieldPath: field label not supported: {}",
                    fr.field_path
                ),
            )),
        }
        return;
    }
    if !DOWNWARD_CONVERTIBLE.contains(&fr.field_path.as_str()) {
        errs.push(FieldError::invalid(
            path.child("fieldPath"),
            fr.field_path.as_str(),
            format!(
                "error converting fieldPath: field label not supported: {}",
                fr.field_path
            ),
        ));
    } else if !ENV_FIELD_PATHS.contains(&fr.field_path.as_str()) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            fr.field_path.as_str(),
            ENV_FIELD_PATHS,
        ));
    }
}

fn validate_env_from(env_from: &[EnvFromSource], path: &Path, errs: &mut FieldErrors) {
    for (i, ef) in env_from.iter().enumerate() {
        let ip = path.index(i);
        if let Some(p) = ef.prefix.as_deref().filter(|p| !p.is_empty()) {
            errs.extend(invalid_each(
                &ip.child("prefix"),
                p,
                is_relaxed_env_var_name(p),
            ));
        }
        let mut n = 0;
        if let Some(cm) = &ef.config_map_ref {
            n += 1;
            errs.extend(invalid_each(
                &ip.child("configMapRef").child("name"),
                &cm.name,
                is_dns1123_subdomain(&cm.name),
            ));
        }
        if let Some(sr) = &ef.secret_ref {
            n += 1;
            errs.extend(invalid_each(
                &ip.child("secretRef").child("name"),
                &sr.name,
                is_dns1123_subdomain(&sr.name),
            ));
        }
        if n == 0 {
            errs.push(FieldError::invalid(
                &ip,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                &ip,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let mut paths = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let ip = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(ip.child("name"), ""));
        }
        if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(ip.child("name"), m.name.as_str()));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(ip.child("mountPath"), ""));
        }
        if !paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                ip.child("mountPath"),
                m.mount_path.as_str(),
                "must be unique",
            ));
        }
        if let Some(sp) = m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            errs.extend(validate_local_descending_path(sp, &ip.child("subPath")));
        }
        if let Some(mp) = m.mount_propagation.as_deref() {
            let ok = ["Bidirectional", "HostToContainer", "None"];
            if !ok.contains(&mp) {
                errs.push(FieldError::not_supported(
                    ip.child("mountPropagation"),
                    mp,
                    &ok,
                ));
            }
        }
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Native resources (no domain, or a kubernetes.io domain) other than hugepages may be
/// overcommitted: their request may be below the limit.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

fn validate_resources(r: &ResourceRequirements, path: &Path, errs: &mut FieldErrors) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let check_name_and_value =
        |name: &str, q: &str, p: Path, errs: &mut FieldErrors| -> Option<Quantity> {
            let msgs = is_qualified_name(name);
            let bad_name = !msgs.is_empty();
            errs.extend(invalid_each(&p, name, msgs));
            if !bad_name {
                if !name.contains('/') {
                    if !is_standard_container_resource(name) {
                        errs.push(FieldError::invalid(
                            &p,
                            name,
                            "must be a standard resource for containers",
                        ));
                    }
                } else if !name.contains("kubernetes.io/") && name.starts_with("requests.") {
                    errs.push(FieldError::invalid(
                        &p,
                        name,
                        "doesn't follow extended resource name standard",
                    ));
                }
            }
            match Quantity::parse(q) {
                Ok(qty) => {
                    if qty.nanos < 0 {
                        errs.push(FieldError::invalid(&p, qty.canonical(), IS_NEGATIVE_ERROR));
                    }
                    if name.contains('/') && !name.contains("kubernetes.io/") && !qty.is_integer() {
                        errs.push(FieldError::invalid(&p, q, "must be an integer"));
                    }
                    Some(qty)
                }
                Err(e) => {
                    errs.push(FieldError::invalid(&p, q, e.to_string()));
                    None
                }
            }
        };
    let mut limits = BTreeMap::new();
    for (name, q) in r.limits.iter().flatten() {
        if let Some(qty) = check_name_and_value(name, &q.0, lim_path.key(name), errs) {
            limits.insert(name.clone(), qty);
        }
    }
    for (name, q) in r.requests.iter().flatten() {
        let Some(req) = check_name_and_value(name, &q.0, req_path.key(name), errs) else {
            continue;
        };
        match limits.get(name) {
            Some(lim) if req.nanos != lim.nanos && !overcommit_allowed(name) => {
                errs.push(FieldError::invalid(
                    &req_path,
                    req.canonical(),
                    format!("must be equal to {name} limit of {}", lim.canonical()),
                ))
            }
            Some(lim) if req.nanos > lim.nanos => errs.push(FieldError::invalid(
                &req_path,
                req.canonical(),
                format!(
                    "must be less than or equal to {name} limit of {}",
                    lim.canonical()
                ),
            )),
            None if !overcommit_allowed(name)
                && r.limits.as_ref().is_none_or(|l| !l.contains_key(name)) =>
            {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ))
            }
            _ => {}
        }
    }
}

fn validate_probes_and_lifecycle(
    c: &Container,
    grace: Option<i64>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    if let Some(lc) = &c.lifecycle {
        let lp = path.child("lifecycle");
        for (field, h) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
            if let Some(h) = h {
                let hp = lp.child(field);
                let mut n = 0;
                if let Some(e) = &h.exec {
                    n += 1;
                    if e.command.as_ref().is_none_or(|c| c.is_empty()) {
                        errs.push(FieldError::required(hp.child("exec").child("command"), ""));
                    }
                }
                if let Some(g) = &h.http_get {
                    n += 1;
                    validate_http_get(g, &hp.child("httpGet"), errs);
                }
                if let Some(t) = &h.tcp_socket {
                    n += 1;
                    validate_port_num_or_name(&t.port, &hp.child("tcpSocket").child("port"), errs);
                }
                if let Some(sl) = &h.sleep {
                    n += 1;
                    let max = grace.unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD);
                    if sl.seconds < 0 || sl.seconds > max {
                        errs.push(FieldError::invalid(
                            hp.child("sleep").child("seconds"),
                            sl.seconds,
                            format!("must be non-negative and less than terminationGracePeriodSeconds ({max})"),
                        ));
                    }
                }
                if n == 0 {
                    errs.push(FieldError::required(&hp, "must specify a handler type"));
                } else if n > 1 {
                    errs.push(FieldError::forbidden(
                        hp.child("tcpSocket"),
                        "may not specify more than 1 handler type",
                    ));
                }
            }
        }
    }
    for (field, probe, must_be_one) in [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ] {
        let Some(p) = probe else { continue };
        let pp = path.child(field);
        validate_probe(p, &pp, errs);
        if must_be_one && p.success_threshold.unwrap_or(1) != 1 {
            errs.push(FieldError::invalid(
                pp.child("successThreshold"),
                p.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
}

fn validate_probe(p: &Probe, path: &Path, errs: &mut FieldErrors) {
    let mut n = 0;
    if let Some(e) = &p.exec {
        n += 1;
        if e.command.as_ref().is_none_or(|c| c.is_empty()) {
            errs.push(FieldError::required(
                path.child("exec").child("command"),
                "",
            ));
        }
    }
    if let Some(g) = &p.http_get {
        n += 1;
        validate_http_get(g, &path.child("httpGet"), errs);
    }
    if let Some(t) = &p.tcp_socket {
        n += 1;
        validate_port_num_or_name(&t.port, &path.child("tcpSocket").child("port"), errs);
    }
    if let Some(g) = &p.grpc {
        n += 1;
        for m in is_valid_port_num(i64::from(g.port)) {
            errs.push(FieldError::invalid(
                path.child("grpc").child("port"),
                g.port,
                m,
            ));
        }
    }
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    } else if n > 1 {
        errs.push(FieldError::forbidden(
            path.child("tcpSocket"),
            "may not specify more than 1 handler type",
        ));
    }
    for (field, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        errs.extend(validate_nonnegative(
            i64::from(v.unwrap_or(0)),
            &path.child(field),
        ));
    }
    if let Some(t) = p.termination_grace_period_seconds {
        if t <= 0 {
            errs.push(FieldError::invalid(
                path.child("terminationGracePeriodSeconds"),
                t,
                "must be greater than 0",
            ));
        }
    }
}

fn validate_http_get(g: &HTTPGetAction, path: &Path, errs: &mut FieldErrors) {
    if s(&g.path).is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    validate_port_num_or_name(&g.port, &path.child("port"), errs);
    let scheme = s(&g.scheme);
    if !["HTTP", "HTTPS"].contains(&scheme) {
        errs.push(FieldError::not_supported(
            path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
}

fn validate_port_num_or_name(port: &IntOrString, path: &Path, errs: &mut FieldErrors) {
    match port {
        IntOrString::Int(n) => {
            for m in is_valid_port_num(i64::from(*n)) {
                errs.push(FieldError::invalid(path, *n, m));
            }
        }
        IntOrString::String(name) => {
            if name.is_empty() {
                errs.push(FieldError::required(path, ""));
            } else {
                errs.extend(invalid_each(path, name, is_valid_port_name(name)));
            }
        }
    }
}

/// `ValidateTolerations`.
pub fn validate_tolerations(tols: &[Toleration], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, t) in tols.iter().enumerate() {
        let ip = path.index(i);
        let key = s(&t.key);
        let op = s(&t.operator);
        let value = s(&t.value);
        let effect = s(&t.effect);
        if !key.is_empty() {
            errs.extend(invalid_each(&ip.child("key"), key, is_qualified_name(key)));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                ip.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                ip.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        ip.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        ip.child("operator"),
                        serde_json::to_value(t).unwrap_or(Value::Null),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            "Lt" | "Gt" => {
                if value.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        ip.child("value"),
                        value,
                        "must be a valid integer",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                ip.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                ip.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errs
}

fn validate_pod_ips(st: &PodStatus) -> FieldErrors {
    let mut errs = Vec::new();
    let path = Path::new("status").child("podIPs");
    let mut seen = BTreeSet::new();
    for (i, ip) in st.pod_ips.iter().flatten().enumerate() {
        errs.extend(invalid_each(&path.index(i), &ip.ip, is_valid_ip(&ip.ip)));
        if !seen.insert(ip.ip.as_str()) {
            errs.push(FieldError::duplicate(path.index(i), ip.ip.as_str()));
        }
    }
    if let (Some(first), Some(pod_ip)) = (
        st.pod_ips.as_ref().and_then(|v| v.first()),
        st.pod_ip.as_deref(),
    ) {
        if !pod_ip.is_empty() && first.ip != pod_ip {
            errs.push(FieldError::invalid(
                Path::new("status").child("podIP"),
                pod_ip,
                "must match the first entry of `podIPs`",
            ));
        }
    }
    let hpath = Path::new("status").child("hostIPs");
    for (i, ip) in st.host_ips.iter().flatten().enumerate() {
        errs.extend(invalid_each(&hpath.index(i), &ip.ip, is_valid_ip(&ip.ip)));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Update

/// The fields a pod update may change, as upstream's message lists them.
pub const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: metadata update rules, a re-validation of the new spec, and the
/// spec immutability check with its documented exceptions (container images, a decreasing
/// `activeDeadlineSeconds`, added tolerations, removed scheduling gates, and — while the
/// pod is still gated — added `nodeSelector` entries).
pub fn validate_pod_update(new: &Pod, old: &Pod) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let default_spec = PodSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&default_spec);
    let os = old.spec.as_ref().unwrap_or(&default_spec);
    let spec_path = Path::new("spec");
    errs.extend(validate_pod_spec(ns, &spec_path));

    for (field, n, o) in [
        ("containers", &ns.containers, &os.containers),
        (
            "initContainers",
            ns.init_containers.as_ref().unwrap_or(&Vec::new()),
            os.init_containers.as_ref().unwrap_or(&Vec::new()),
        ),
    ] {
        let p = spec_path.child(field);
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                p,
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in n.iter().enumerate() {
            let img = s(&c.image);
            if img.is_empty() {
                errs.push(FieldError::required(p.index(i).child("image"), ""));
            }
            if img.trim() != img {
                errs.push(FieldError::invalid(
                    p.index(i).child("image"),
                    img,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }

    let ads_path = spec_path.child("activeDeadlineSeconds");
    match (ns.active_deadline_seconds, os.active_deadline_seconds) {
        (Some(n), _) if n < 0 || n > i64::from(i32::MAX) => {
            errs.push(FieldError::invalid(
                ads_path,
                n,
                inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                ads_path,
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            ads_path,
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    // Tolerations: every old one must still be there (tolerationSeconds may change).
    let tol_path = spec_path.child("tolerations");
    let new_tols = ns.tolerations.as_deref().unwrap_or(&[]);
    for old_t in os.tolerations.iter().flatten() {
        let found = new_tols.iter().any(|nt| {
            let mut o = old_t.clone();
            o.toleration_seconds = nt.toleration_seconds;
            &o == nt
        });
        if !found {
            errs.push(FieldError::forbidden(
                &tol_path,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }

    // Scheduling gates may only be removed.
    let old_gates: BTreeSet<&str> = os
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    for (i, g) in ns.scheduling_gates.iter().flatten().enumerate() {
        if !old_gates.contains(g.name.as_str()) {
            errs.push(FieldError::forbidden(
                spec_path.child("schedulingGates").index(i).child("name"),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    g.name
                ),
            ));
        }
    }

    if ns == os {
        return errs;
    }
    // Munge the updatable fields back to their old values and compare what is left.
    let mut munged = ns.clone();
    for (c, oc) in munged.containers.iter_mut().zip(&os.containers) {
        c.image = oc.image.clone();
    }
    if let (Some(n), Some(o)) = (munged.init_containers.as_mut(), os.init_containers.as_ref()) {
        for (c, oc) in n.iter_mut().zip(o) {
            c.image = oc.image.clone();
        }
    }
    munged.active_deadline_seconds = os.active_deadline_seconds;
    munged.scheduling_gates = os.scheduling_gates.clone();
    munged.tolerations = os.tolerations.clone();
    if os.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = os.termination_grace_period_seconds;
    }
    let gated = os.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty());
    if gated && munged.node_selector != os.node_selector {
        let old_sel = os.node_selector.clone().unwrap_or_default();
        let new_sel = munged.node_selector.clone().unwrap_or_default();
        for (k, v) in &old_sel {
            if new_sel.get(k) != Some(v) {
                errs.push(FieldError::forbidden(spec_path.child("nodeSelector"), format!("updates may only add to the nodeSelector of a gated pod; cannot change or remove {k}")));
            }
        }
        munged.node_selector = os.node_selector.clone();
    }
    if &munged != os {
        errs.push(FieldError::forbidden(
            &spec_path,
            format!(
                "pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n{}",
                spec_diff(os, &munged)
            ),
        ));
    }
    errs
}

/// A short, stable description of which top-level spec fields differ (upstream prints a Go
/// `cmp.Diff` here, which we cannot reproduce byte for byte).
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let o = serde_json::to_value(old).unwrap_or(Value::Null);
    let n = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut lines = Vec::new();
    let keys: BTreeSet<&String> = o
        .as_object()
        .into_iter()
        .flatten()
        .chain(n.as_object().into_iter().flatten())
        .map(|(k, _)| k)
        .collect();
    for k in keys {
        let (ov, nv) = (o.get(k.as_str()), n.get(k.as_str()));
        if ov != nv {
            lines.push(format!(
                "  core.PodSpec{{\n-   {k}: {}\n+   {k}: {}\n  }}",
                ov.unwrap_or(&Value::Null),
                nv.unwrap_or(&Value::Null)
            ));
        }
    }
    lines.join("\n")
}

/// `ValidatePodEphemeralContainersUpdate`: metadata update rules, the new spec as a whole
/// (names unique across every kind of container, the ephemeral containers' own rules), and
/// existing ephemeral containers neither removed nor changed. Everything else in the spec
/// was already carried over from `old` by the subresource's strategy.
pub fn validate_pod_ephemeral_containers_update(new: &Pod, old: &Pod) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let default_spec = PodSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&default_spec);
    let os = old.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(validate_pod_spec(ns, &Path::new("spec")));
    let path = Path::new("spec").child("ephemeralContainers");
    let new_ecs = ns.ephemeral_containers.as_deref().unwrap_or(&[]);
    for old_ec in os.ephemeral_containers.iter().flatten() {
        // Order is not kept by patches, so each is looked up by name.
        match new_ecs.iter().find(|ec| ec.name == old_ec.name) {
            None => errs.push(FieldError::forbidden(
                &path,
                format!(
                    "existing ephemeral containers {} may not be removed\n",
                    go_quote(&old_ec.name)
                ),
            )),
            Some(ec) if ec != old_ec => errs.push(FieldError::forbidden(
                &path,
                format!(
                    "existing ephemeral containers {} may not be changed\n",
                    go_quote(&old_ec.name)
                ),
            )),
            Some(_) => {}
        }
    }
    errs
}

/// `ValidatePodStatusUpdate`: metadata rules, `spec.nodeName` untouched (reported on
/// `status.nodeName` as upstream does), a valid `nominatedNodeName`, condition types,
/// containers of a non-restarting pod not leaving the terminated state, and pod IPs.
pub fn validate_pod_status_update(new: &Pod, old: &Pod) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let default_status = PodStatus::default();
    let nst = new.status.as_ref().unwrap_or(&default_status);
    let ost = old.status.as_ref().unwrap_or(&default_status);
    let cond_path = Path::new("metadata").child("conditions");
    let well_known = [
        "PodScheduled",
        "Ready",
        "Initialized",
        "ContainersReady",
        "DisruptionTarget",
        "PodReadyToStartContainers",
        "PodResizePending",
        "PodResizeInProgress",
    ];
    for c in nst.conditions.iter().flatten() {
        if !well_known.contains(&c.type_.as_str()) {
            errs.extend(invalid_each(
                &cond_path.child("type"),
                &c.type_,
                is_qualified_name(&c.type_),
            ));
        }
    }
    let st_path = Path::new("status");
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    if node(new) != node(old) {
        errs.push(FieldError::forbidden(
            st_path.child("nodeName"),
            "may not be changed directly",
        ));
    }
    let nnn = s(&nst.nominated_node_name);
    if nnn != s(&ost.nominated_node_name) && !nnn.is_empty() {
        errs.extend(invalid_each(
            &st_path.child("nominatedNodeName"),
            nnn,
            is_dns1123_subdomain(nnn),
        ));
    }
    let restart = old
        .spec
        .as_ref()
        .map(|sp| s(&sp.restart_policy).to_string())
        .unwrap_or_default();
    errs.extend(container_state_transitions(
        nst.container_statuses.as_deref().unwrap_or(&[]),
        ost.container_statuses.as_deref().unwrap_or(&[]),
        &st_path.child("containerStatuses"),
        &restart,
    ));
    // Regular init containers never restart once they succeed; sidecars follow Always.
    let sidecars: BTreeSet<String> = old
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| is_restartable_init(c))
        .map(|c| c.name.clone())
        .collect();
    let init_new: Vec<ContainerStatus> = nst
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| !sidecars.contains(&c.name))
        .cloned()
        .collect();
    let init_old: Vec<ContainerStatus> = ost
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| !sidecars.contains(&c.name))
        .cloned()
        .collect();
    errs.extend(container_state_transitions(
        &init_new,
        &init_old,
        &st_path.child("initContainerStatuses"),
        &restart,
    ));
    errs.extend(container_state_transitions(
        nst.ephemeral_container_statuses.as_deref().unwrap_or(&[]),
        ost.ephemeral_container_statuses.as_deref().unwrap_or(&[]),
        &st_path.child("ephemeralContainerStatuses"),
        "Never",
    ));
    errs.extend(validate_pod_ips(nst));
    errs
}

fn container_state_transitions(
    new: &[ContainerStatus],
    old: &[ContainerStatus],
    path: &Path,
    restart_policy: &str,
) -> FieldErrors {
    let mut errs = Vec::new();
    if restart_policy == "Always" {
        return errs;
    }
    for (i, n) in new.iter().enumerate() {
        let Some(o) = old.iter().find(|o| o.name == n.name) else {
            continue;
        };
        let Some(term) = o.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            continue;
        };
        let still_terminated = n.state.as_ref().is_some_and(|s| s.terminated.is_some());
        if still_terminated {
            continue;
        }
        if restart_policy == "Never" || (restart_policy == "OnFailure" && term.exit_code == 0) {
            errs.push(FieldError::forbidden(
                path.index(i).child("state"),
                "may not be transitioned to non-terminated state",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        match serde_json::from_value(v) {
            Ok(p) => p,
            Err(e) => panic!("bad fixture: {e}"),
        }
    }

    fn nginx() -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}
        }))
    }

    fn defaulted(mut p: Pod) -> Pod {
        default_pod(&mut p);
        p
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn ephemeral_containers_may_be_added_but_not_changed_or_removed() {
        let old = defaulted(nginx());
        let with = |ecs: Value| {
            let mut p = old.clone();
            if let Some(spec) = p.spec.as_mut() {
                spec.ephemeral_containers = serde_json::from_value(ecs).ok();
            }
            defaulted(p)
        };
        let added =
            with(json!([{"name": "dbg", "image": "busybox", "targetContainerName": "nginx"}]));
        assert!(validate_pod_ephemeral_containers_update(&added, &old).is_empty());
        let changed =
            with(json!([{"name": "dbg", "image": "alpine", "targetContainerName": "nginx"}]));
        assert_eq!(
            msgs(&validate_pod_ephemeral_containers_update(&changed, &added)),
            vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed\n"]
        );
        let removed = with(json!([]));
        assert_eq!(
            msgs(&validate_pod_ephemeral_containers_update(&removed, &added)),
            vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"]
        );
        let bad = with(json!([
            {"name": "nginx", "image": "busybox"},
            {"name": "x", "image": "busybox", "targetContainerName": "ghost", "resources": {"limits": {"cpu": "1"}}}
        ]));
        assert_eq!(
            msgs(&validate_pod_ephemeral_containers_update(&bad, &old)),
            vec![
                "spec.ephemeralContainers[0].name: Duplicate value: \"nginx\"",
                "spec.ephemeralContainers[1].targetContainerName: Not found: \"ghost\"",
                "spec.ephemeralContainers[1].resources: Forbidden: cannot be set for an Ephemeral Container",
            ]
        );
    }

    #[test]
    fn defaults() {
        let p = defaulted(pod(json!({
            "metadata": {"name": "x", "namespace": "d"},
            "spec": {
                "containers": [{
                    "name": "a", "image": "busybox",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "livenessProbe": {"httpGet": {"port": 8080}},
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}
                }],
                "initContainers": [{"name": "i", "image": "alpine@sha256:0123"}],
                "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "s"}}, {"name": "c", "configMap": {"name": "c"}}]
            }
        })));
        let v = serde_json::to_value(&p).unwrap_or_default();
        let spec = &v["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(spec["serviceAccountName"], "default");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["volumes"][0], json!({"name": "v", "emptyDir": {}}));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["configMap"]["defaultMode"], 420);
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        // The init container sets no limits, so (as upstream) the pod is not Guaranteed.
        assert_eq!(
            v["status"],
            json!({"phase": "Pending", "qosClass": "Burstable"})
        );
        // Defaulting is idempotent (no duplicate tolerations on a second pass).
        let again = defaulted(p.clone());
        assert_eq!(again, p);
    }

    #[test]
    fn pull_policy() {
        for (image, want) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry:5000/team/app", "Always"),
            ("registry:5000/team/app:v1", "IfNotPresent"),
            ("nginx@sha256:abc", "IfNotPresent"),
            ("nginx:latest@sha256:abc", "Always"),
            ("", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn existing_tolerations_are_respected() {
        let p = defaulted(pod(
            json!({"metadata": {"name": "x"}, "spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}),
        ));
        assert_eq!(p.spec.and_then(|s| s.tolerations).map(|t| t.len()), Some(1));
    }

    #[test]
    fn valid_pod_passes() {
        let p = defaulted(nginx());
        assert!(validate_pod(&p).is_empty(), "{:?}", msgs(&validate_pod(&p)));
    }

    #[test]
    fn create_errors() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"containers": []}), vec!["spec.containers: Required value"]),
            (
                json!({"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}),
                vec!["spec.containers[1].name: Duplicate value: \"c\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "initContainers": [{"name": "c", "image": "y"}]}),
                vec!["spec.initContainers[0].name: Duplicate value: \"c\""],
            ),
            (json!({"containers": [{"name": "c"}]}), vec!["spec.containers[0].image: Required value"]),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Sometimes"}),
                vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Maybe"}]}),
                vec!["spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000, "protocol": "HTTP", "name": "Web"}]}]}),
                vec![
                    "spec.containers[0].ports[0].name: Invalid value: \"Web\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                    "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}),
                vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}),
                vec!["spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1024Mi"}}}]}),
                vec!["spec.containers[0].resources.requests: Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"gpu": "1"}}}]}),
                vec![
                    "spec.containers[0].resources.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
                    // requests were defaulted from limits, so upstream reports both.
                    "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
                ],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B", "value": "x"}]}]}),
                vec!["spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.phase"}}}]}]}),
                vec!["spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"status.phase\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}),
                vec!["spec.volumes[1].name: Duplicate value: \"v\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}),
                vec!["spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "activeDeadlineSeconds": 0}),
                vec!["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": -1}),
                vec!["spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "restartPolicy": "Always"}]}),
                vec!["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "initContainers": [{"name": "i", "image": "x", "restartPolicy": "OnFailure"}]}),
                vec!["spec.initContainers[0].restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "initContainers": [{"name": "i", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}}]}),
                vec!["spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]}),
                vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {"periodSeconds": 5}}]}),
                vec!["spec.containers[0].readinessProbe: Required value: must specify a handler type"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "tolerations": [{"operator": "Equal", "value": "v"}]}),
                vec!["spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]}),
                vec!["spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "nodeSelector": {"disk": "ssd fast"}}),
                vec!["spec.nodeSelector: Invalid value: \"ssd fast\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"],
            ),
            (
                json!({"containers": [{"name": "c", "image": "x"}], "dnsPolicy": "Sometimes"}),
                vec!["spec.dnsPolicy: Unsupported value: \"Sometimes\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\""],
            ),
        ];
        for (spec, want) in cases {
            let mut p = pod(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec}));
            default_pod(&mut p);
            assert_eq!(msgs(&validate_pod(&p)), want, "spec {:?}", p.spec);
        }
        let bad_name = defaulted(pod(
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "Foo_bar", "image": "x"}]}}),
        ));
        let got = msgs(&validate_pod(&bad_name));
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("spec.containers[0].name: Invalid value: \"Foo_bar\": a lowercase RFC 1123 label must consist of"));
        let mut eph = defaulted(nginx());
        if let Some(s) = eph.spec.as_mut() {
            s.ephemeral_containers = Some(vec![Default::default()]);
        }
        assert!(msgs(&validate_pod(&eph))
            .contains(&"spec.ephemeralContainers: Forbidden: cannot be set on create".to_string()));
    }

    #[test]
    fn update_rules() {
        let old = defaulted(nginx());
        // Image change is fine.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.containers[0].image = Some("nginx:1.26".into());
        }
        assert!(
            validate_pod_update(&new, &old).is_empty(),
            "{:?}",
            msgs(&validate_pod_update(&new, &old))
        );
        // Port change is not.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.containers[0].ports = Some(vec![serde_json::from_value(
                json!({"containerPort": 81, "protocol": "TCP"}),
            )
            .unwrap_or_default()]);
        }
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        assert!(errs[0].message().starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"));
        // Adding a container.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            let c = s.containers[0].clone();
            s.containers.push(Container {
                name: "two".into(),
                ..c
            });
        }
        assert_eq!(
            msgs(&validate_pod_update(&new, &old)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        // Tolerations: additions ok, removals not.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.tolerations.get_or_insert_with(Vec::new).push(Toleration {
                key: Some("k".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            });
        }
        assert!(validate_pod_update(&new, &old).is_empty());
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.tolerations = Some(Vec::new());
        }
        assert_eq!(msgs(&validate_pod_update(&new, &old)), vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]);
        // activeDeadlineSeconds may be set and lowered, not raised.
        let mut a = old.clone();
        if let Some(s) = a.spec.as_mut() {
            s.active_deadline_seconds = Some(100);
        }
        assert!(validate_pod_update(&a, &old).is_empty());
        let mut b = a.clone();
        if let Some(s) = b.spec.as_mut() {
            s.active_deadline_seconds = Some(200);
        }
        assert_eq!(msgs(&validate_pod_update(&b, &a)), vec!["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"]);
        // Scheduling gates: removal ok, addition not.
        let mut gated = old.clone();
        if let Some(s) = gated.spec.as_mut() {
            s.scheduling_gates = Some(vec![serde_json::from_value(
                json!({"name": "example.com/a"}),
            )
            .unwrap_or_default()]);
        }
        assert!(validate_pod_update(&old, &gated).is_empty());
        assert_eq!(
            msgs(&validate_pod_update(&gated, &old)),
            vec!["spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new scheduling gate 'example.com/a'"]
        );
        // Metadata label change is fine; name change is not.
        let mut new = old.clone();
        new.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
        assert!(validate_pod_update(&new, &old).is_empty());
        new.metadata.name = Some("other".into());
        assert_eq!(
            msgs(&validate_pod_update(&new, &old)),
            vec!["metadata.name: Invalid value: \"other\": field is immutable"]
        );
    }

    #[test]
    fn status_updates() {
        let mut old = defaulted(nginx());
        if let Some(s) = old.spec.as_mut() {
            s.restart_policy = Some("Never".into());
        }
        old.status = Some(pod(json!({"status": {"containerStatuses": [{"name": "nginx", "image": "", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1}}}]}})).status.unwrap_or_default());
        let mut new = old.clone();
        if let Some(st) = new.status.as_mut() {
            st.phase = Some("Failed".into());
            st.pod_ips = Some(vec![
                serde_json::from_value(json!({"ip": "10.0.0.1"})).unwrap_or_default()
            ]);
        }
        assert!(
            validate_pod_status_update(&new, &old).is_empty(),
            "{:?}",
            msgs(&validate_pod_status_update(&new, &old))
        );
        let mut bad = new.clone();
        if let Some(st) = bad.status.as_mut() {
            if let Some(cs) = st.container_statuses.as_mut() {
                cs[0].state =
                    Some(serde_json::from_value(json!({"running": {}})).unwrap_or_default());
            }
            st.pod_ips = Some(vec![
                serde_json::from_value(json!({"ip": "nope"})).unwrap_or_default()
            ]);
        }
        if let Some(s) = bad.spec.as_mut() {
            s.node_name = Some("n1".into());
        }
        assert_eq!(
            msgs(&validate_pod_status_update(&bad, &old)),
            vec![
                "status.nodeName: Forbidden: may not be changed directly",
                "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state",
                "status.podIPs[0]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ]
        );
    }

    #[test]
    fn qos() {
        let mk =
            |res: Value| pod(json!({"spec": {"containers": [{"name": "a", "resources": res}]}}));
        assert_eq!(qos_class(&mk(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&mk(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&mk(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&mk(
                json!({"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&mk(
                json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Burstable"
        );
        assert_eq!(qos_class(&mk(json!({"limits": {"cpu": "1"}}))), "Burstable");
        assert_eq!(
            qos_class(&mk(json!({"requests": {"nvidia.com/gpu": "1"}}))),
            "BestEffort"
        );
        let mut gated = pod(
            json!({"spec": {"containers": [{"name": "a"}], "schedulingGates": [{"name": "g"}]}}),
        );
        prepare_pod_for_create(&mut gated);
        let st = serde_json::to_value(&gated.status).unwrap_or_default();
        assert_eq!(st["phase"], "Pending");
        assert_eq!(st["conditions"][0]["reason"], "SchedulingGated");
    }
}

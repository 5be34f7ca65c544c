//! One container's life on the node: its image made ready (pull policy, events), its OCI
//! config assembled from the PodSpec and the image config, then created and started by the
//! runtime under a monitor. Stopping honours the image's STOPSIGNAL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use tracing::debug;

use crate::envsource::{EnvObjects, Lookup};
use crate::events::EventType;
use crate::expand::{expand, field_ref, process_args, set_env, split_env};
use crate::record::{ContainerRecord, SandboxRecord};
use crate::sandbox::{hostname, pod_files, uts_hostname};
use crate::Ctx;

/// Why a container could not be made to run, in the kubelet's words (the waiting reason).
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub reason: &'static str,
    pub message: String,
    /// True for image pull failures, which back off as ImagePullBackOff.
    pub image: bool,
}

impl StartFailure {
    fn new(reason: &'static str, message: impl Into<String>) -> StartFailure {
        StartFailure {
            reason,
            message: message.into(),
            image: false,
        }
    }

    /// The container's configuration cannot be resolved yet (a missing ConfigMap, Secret or
    /// key); retried after a backoff.
    pub fn config(message: impl Into<String>) -> StartFailure {
        StartFailure::new("CreateContainerConfigError", message)
    }
}

/// The event's `involvedObject.fieldPath` for a container (names are unique across all
/// kinds of container, so an ephemeral one is recognised by its name).
pub fn field_path(pod: &Pod, init: bool, name: &str) -> String {
    let ephemeral = !init
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_some_and(|ecs| ecs.iter().any(|ec| ec.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else if ephemeral {
        format!("spec.ephemeralContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

/// Makes the image available per `imagePullPolicy`, recording Pulling/Pulled as upstream.
pub async fn ensure_image(
    ctx: &Ctx,
    pod: &Pod,
    c: &Container,
    init: bool,
) -> Result<image::Image, StartFailure> {
    let spec_image = c.image.clone().unwrap_or_default();
    let reference = image::Reference::parse(&spec_image).map_err(|e| {
        StartFailure::new(
            "InvalidImageName",
            format!("Failed to apply default image tag \"{spec_image}\": {e}"),
        )
    })?;
    let policy = c
        .image_pull_policy
        .clone()
        .unwrap_or_else(|| api::pod::default_pull_policy(&spec_image).to_string());
    let fp = field_path(pod, init, &c.name);
    let present = ctx
        .images
        .get(&reference)
        .map_err(|e| StartFailure::new("ErrImagePull", format!("reading the image store: {e}")))?;
    if policy != "Always" {
        if let Some(img) = present {
            ctx.recorder.container_event(
                pod,
                fp,
                EventType::Normal,
                "Pulled",
                format!("Container image \"{spec_image}\" already present on machine"),
            );
            return Ok(img);
        }
        if policy == "Never" {
            let msg = format!(
                "Container image \"{spec_image}\" is not present with pull policy of Never"
            );
            ctx.recorder.container_event(
                pod,
                fp,
                EventType::Warning,
                "ErrImageNeverPull",
                msg.clone(),
            );
            return Err(StartFailure::new("ErrImageNeverPull", msg));
        }
    }
    let waited = Instant::now();
    // One pull per image at a time; the others wait and then find it present.
    let lock = ctx.pull_lock(&reference.to_string());
    let _guard = lock.lock().await;
    if policy != "Always" {
        if let Ok(Some(img)) = ctx.images.get(&reference) {
            return Ok(img);
        }
    }
    ctx.recorder.container_event(
        pod,
        fp.clone(),
        EventType::Normal,
        "Pulling",
        format!("Pulling image \"{spec_image}\""),
    );
    let started = Instant::now();
    let opts = image::PullOptions {
        insecure_registries: ctx.cfg.insecure_registries.clone(),
        credentials: None,
    };
    match ctx.images.pull(&reference, &opts).await {
        Ok(img) => {
            ctx.recorder.container_event(
                pod,
                fp,
                EventType::Normal,
                "Pulled",
                format!(
                    "Successfully pulled image \"{spec_image}\" in {} ({} including waiting). Image size: {} bytes.",
                    go_duration(started.elapsed()),
                    go_duration(waited.elapsed()),
                    img.size
                ),
            );
            Ok(img)
        }
        Err(e) => {
            let message = format!("Failed to pull image \"{spec_image}\": {e}");
            ctx.recorder.container_event(
                pod,
                fp.clone(),
                EventType::Warning,
                "Failed",
                message.clone(),
            );
            ctx.recorder.container_event(
                pod,
                fp,
                EventType::Warning,
                "Failed",
                "Error: ErrImagePull",
            );
            Err(StartFailure {
                reason: "ErrImagePull",
                message,
                image: true,
            })
        }
    }
}

/// Go's `time.Duration` printing as the kubelet's messages show it (`1.234s`, `512ms`).
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        let s = format!("{ms:.3}");
        format!("{}ms", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

fn milli(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<i64> {
    let v = api::quantity::Quantity::parse(&q.0).ok()?;
    i64::try_from((v.nanos + 999_999) / 1_000_000).ok()
}

fn bytes(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<i64> {
    let v = api::quantity::Quantity::parse(&q.0).ok()?;
    i64::try_from((v.nanos + 999_999_999) / 1_000_000_000).ok()
}

/// cgroup settings from `resources`, as the kubelet maps them: shares from the cpu request
/// (min 2), CFS quota from the cpu limit over a 100 ms period, memory limit (swap off).
pub fn resources(c: &Container) -> oci::Resources {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let lim = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let cpu_request = req.and_then(|r| r.get("cpu")).and_then(milli);
    let cpu_limit = lim.and_then(|r| r.get("cpu")).and_then(milli);
    let shares = cpu_request
        .or(cpu_limit)
        .map(|m| (m * 1024 / 1000).max(2) as u64)
        .unwrap_or(2);
    oci::Resources {
        cpu_shares: Some(shares),
        cpu_quota: cpu_limit.map(|m| (m * 100_000 / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit: lim.and_then(|r| r.get("memory")).and_then(bytes),
        pids_limit: None,
    }
}

/// The pod cgroup's settings, as the kubelet's `ResourceConfigForPod`: cpu shares from the
/// pod's effective cpu request (2 for a BestEffort pod), a CFS quota and a memory limit
/// only when every container sets that limit, and the node's per-pod process cap
/// (`--pod-max-pids`), so a fork bomb stays inside its pod.
///
/// The effective amount is the larger of what the app containers and sidecars use together
/// and what any plain init container uses beside the sidecars started before it.
pub fn pod_resources(pod: &Pod, pod_max_pids: Option<i64>) -> oci::Resources {
    let empty = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let amount = |c: &Container, limits: bool, name: &str| -> Option<i64> {
        let r = c.resources.as_ref()?;
        let q = if limits {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }?
        .get(name)?;
        if name == "cpu" {
            milli(q)
        } else {
            bytes(q)
        }
    };
    // Requests default to limits (the API server's defaulting); missing ones count as 0.
    let cpu_request = effective_amount(spec, |c| {
        Some(
            amount(c, false, "cpu")
                .or(amount(c, true, "cpu"))
                .unwrap_or(0),
        )
    })
    .unwrap_or(0);
    let cpu_limit = effective_amount(spec, |c| amount(c, true, "cpu"));
    oci::Resources {
        cpu_shares: Some((cpu_request * 1024 / 1000).max(2) as u64),
        cpu_quota: cpu_limit.map(|m| (m * 100_000 / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit: effective_amount(spec, |c| amount(c, true, "memory")),
        pids_limit: pod_max_pids.filter(|p| *p > 0),
    }
}

/// The pod's effective amount of one resource: the larger of the app containers plus
/// sidecars together, and any plain init container plus the sidecars started before it.
/// None when some container has no amount.
fn effective_amount(spec: &PodSpec, amount: impl Fn(&Container) -> Option<i64>) -> Option<i64> {
    let mut sidecars = 0i64;
    let mut peak = 0i64;
    for c in spec.init_containers.iter().flatten() {
        let v = amount(c)?;
        if crate::podstatus::is_sidecar(c) {
            sidecars += v;
            peak = peak.max(sidecars);
        } else {
            peak = peak.max(sidecars + v);
        }
    }
    let mut app = sidecars;
    for c in &spec.containers {
        app += amount(c)?;
    }
    Some(peak.max(app))
}

/// Resolves the user to run as: securityContext first, then the image's `User`
/// (`uid`, `uid:gid`, `name`, `name:group`, looked up in the image's /etc/passwd and /etc/group).
fn user(
    pod: &Pod,
    c: &Container,
    img: &image::Image,
    rootfs: &Path,
) -> Result<(u32, u32), StartFailure> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let image_user = img.config.user.clone().unwrap_or_default();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (image_user.clone(), None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                let id = f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
                let gid = f.get(3).and_then(|v| v.parse().ok()).unwrap_or(id);
                (id, gid)
            })
        })
    };
    let (mut uid, mut gid) = if user_part.is_empty() {
        (0, 0)
    } else if let Ok(n) = user_part.parse::<u32>() {
        (n, lookup_by_uid(rootfs, n).unwrap_or(0))
    } else {
        lookup("etc/passwd", &user_part).ok_or_else(|| {
            StartFailure::new(
                "CreateContainerConfigError",
                format!("unable to find user {user_part}: no matching entries in passwd file"),
            )
        })?
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", &g).map(|(id, _)| id).ok_or_else(|| {
                StartFailure::new(
                    "CreateContainerConfigError",
                    format!("unable to find group {g}: no matching entries in group file"),
                )
            })?,
        };
    }
    if let Some(u) = run_as_user {
        uid = u32::try_from(u).unwrap_or(0);
        gid = lookup_by_uid(rootfs, uid).unwrap_or(0);
    }
    if let Some(g) = run_as_group {
        gid = u32::try_from(g).unwrap_or(0);
    }
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        == Some(true);
    if non_root && uid == 0 {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
        // The kubelet's wording, which tells a non-numeric image user apart.
        let message = if run_as_user.is_none()
            && !user_part.is_empty()
            && user_part.parse::<u32>().is_err()
        {
            format!(
                "container has runAsNonRoot and image has non-numeric user ({user_part}), cannot verify user is non-root (pod: \"{pod_name}_{ns}({pod_uid})\", container: {})",
                c.name
            )
        } else {
            format!(
                "container has runAsNonRoot and image will run as root (pod: \"{pod_name}_{ns}({pod_uid})\", container: {})",
                c.name
            )
        };
        return Err(StartFailure::new("CreateContainerConfigError", message));
    }
    Ok((uid, gid))
}

/// The groups a container's process gets besides its own: the pod's `supplementalGroups`
/// and its `fsGroup`, as the kubelet passes them to the runtime.
fn supplemental_groups(pod: &Pod) -> Vec<u32> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut groups: Vec<u32> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(pod_sc.and_then(|s| s.fs_group))
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// The kubelet's safe sysctls: namespaced, and unable to affect other pods or the node.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The pod's `securityContext.sysctls`, if all are in the safe set (no node allows unsafe
/// ones yet). Names may use `/` for `.`, as upstream accepts.
fn sysctls(pod: &Pod) -> Result<BTreeMap<String, String>, StartFailure> {
    let mut out = BTreeMap::new();
    let listed = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref());
    for sysctl in listed.into_iter().flatten() {
        let name = sysctl.name.replace('/', ".");
        if !SAFE_SYSCTLS.contains(&name.as_str()) {
            return Err(StartFailure::new(
                "CreateContainerConfigError",
                format!("forbidden sysctl: \"{name}\" not allowlisted"),
            ));
        }
        out.insert(name, sysctl.value.clone());
    }
    Ok(out)
}

fn pod_spec_flag(
    pod: &Pod,
    flag: impl Fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>,
) -> bool {
    pod.spec.as_ref().and_then(flag) == Some(true)
}

/// The pod's `fsGroup`, which owns its volumes.
pub(crate) fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

fn lookup_by_uid(rootfs: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2).and_then(|v| v.parse::<u32>().ok()) == Some(uid))
            .then(|| f.get(3).and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// The container's environment, as the kubelet builds it: the image's env, then the Service
/// variables (`envvars`), then `envFrom` sources in order (with their prefix), then `env` in
/// order, each `value` `$(VAR)`-expanded against what came before (the Service variables
/// included, as upstream's mapping falls back to them). A required ConfigMap, Secret or key
/// that is missing is a `CreateContainerConfigError` in the kubelet's words; an optional one
/// is skipped.
fn environment(
    pod: &Pod,
    c: &Container,
    img: &image::Image,
    objects: &EnvObjects,
    pod_ip: Option<&str>,
    host_ip: &str,
    service_env: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, StartFailure> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env = split_env(&img.config.env);
    // The Service variables come first, so the pod's own `env` may use and override them.
    let mut defined: Vec<(String, String)> = service_env;
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (data, optional, missing) = if let Some(r) = &from.config_map_ref {
            (
                objects.config_map(&r.name),
                r.optional == Some(true),
                format!("configmap \"{}\" not found", r.name),
            )
        } else if let Some(r) = &from.secret_ref {
            (
                objects.secret(&r.name),
                r.optional == Some(true),
                format!("secret \"{}\" not found", r.name),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    let name = format!("{prefix}{k}");
                    // Names the runtime cannot carry are skipped, as the kubelet skips them.
                    if !name.is_empty() && !name.contains('=') {
                        defined.push((name, v.clone()));
                    }
                }
            }
            None if optional => {}
            None => return Err(StartFailure::config(missing)),
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            let lookup = |name: &str| {
                defined
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            expand(v, &lookup)
        } else if let Some(from) = &var.value_from {
            if let Some(fr) = &from.field_ref {
                field_ref(pod, &fr.field_path, pod_ip, host_ip).unwrap_or_default()
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) if name != c.name => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|x| x.name == name)),
                    _ => Some(c),
                };
                target
                    .and_then(|t| {
                        crate::volumes::resource_field(
                            t,
                            &r.resource,
                            r.divisor.as_ref().map(|d| d.0.as_str()),
                        )
                    })
                    .unwrap_or_default()
            } else if let Some(r) = &from.config_map_key_ref {
                match objects.config_map_key(&r.name, &r.key) {
                    Lookup::Value(v) => v.to_string(),
                    _ if r.optional == Some(true) => continue,
                    Lookup::MissingObject => {
                        return Err(StartFailure::config(format!(
                            "configmap \"{}\" not found",
                            r.name
                        )))
                    }
                    Lookup::MissingKey => {
                        return Err(StartFailure::config(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match objects.secret_key(&r.name, &r.key) {
                    Lookup::Value(v) => v.to_string(),
                    _ if r.optional == Some(true) => continue,
                    Lookup::MissingObject => {
                        return Err(StartFailure::config(format!(
                            "secret \"{}\" not found",
                            r.name
                        )))
                    }
                    Lookup::MissingKey => {
                        return Err(StartFailure::config(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        defined.push((var.name.clone(), value));
    }
    for (k, v) in defined {
        set_env(&mut env, &k, v);
    }
    // As containerd does for a terminal, so shells and `top` know what they talk to.
    if c.tty == Some(true) && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    Ok(env)
}

/// Everything needed to create one container instance.
pub struct Prepared {
    pub record: ContainerRecord,
    pub bundle: PathBuf,
    pub spec: oci::ContainerConfig,
}

pub fn container_dir(pod_dir: &Path, id: &str) -> PathBuf {
    pod_dir.join("c").join(&id[..12.min(id.len())])
}

/// Mounts the rootfs and assembles the OCI config. On error the rootfs is unmounted again.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    ctx: &Ctx,
    pod: &Pod,
    pod_dir: &Path,
    sandbox: &SandboxRecord,
    c: &Container,
    init: bool,
    attempt: i32,
    img: &image::Image,
    objects: &EnvObjects,
) -> Result<Prepared, StartFailure> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = container_dir(pod_dir, &id);
    let create_err = |e: String| StartFailure::new("CreateContainerError", e);
    std::fs::create_dir_all(&dir).map_err(|e| create_err(format!("{}: {e}", dir.display())))?;
    let rootfs = ctx
        .images
        .mount_rootfs(img, &dir)
        .map_err(|e| create_err(format!("failed to mount rootfs: {e}")))?;
    let result = assemble(
        ctx, pod, pod_dir, sandbox, c, init, attempt, img, objects, &id, &dir, &rootfs,
    );
    if result.is_err() {
        let _ = image::unmount_rootfs(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    ctx: &Ctx,
    pod: &Pod,
    pod_dir: &Path,
    sandbox: &SandboxRecord,
    c: &Container,
    init: bool,
    attempt: i32,
    img: &image::Image,
    objects: &EnvObjects,
    id: &str,
    dir: &Path,
    rootfs: &Path,
) -> Result<Prepared, StartFailure> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pod_ip = sandbox.ips.first().map(String::as_str);
    let host_ip = ctx.cfg.node_ip.to_string();
    let enable_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let services = ctx.services.services();
    let service_env = crate::envvars::service_env(
        services.iter().map(|s| &**s),
        &ns,
        enable_links,
        ctx.cfg.api_service,
    );
    let mut env = environment(pod, c, img, objects, pod_ip, &host_ip, service_env)?;
    // The sandbox was refused an FQDN too long for the kernel, so this never falls back.
    let kernel_hostname =
        uts_hostname(pod, &ctx.cfg.cluster_domain).unwrap_or_else(|_| hostname(pod));
    // As containerd sets it: the sandbox's hostname, unless the image or pod set one.
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(("HOSTNAME".into(), kernel_hostname.clone()));
    }
    let entrypoint = img.config.entrypoint.clone().unwrap_or_default();
    let cmd = img.config.cmd.clone().unwrap_or_default();
    let args = process_args(c, &entrypoint, &cmd, &env);
    if args.is_empty() {
        return Err(StartFailure::new(
            "CreateContainerError",
            "no command specified",
        ));
    }
    let (run_uid, run_gid) = user(pod, c, img, rootfs)?;
    let files = pod_files(pod_dir);
    let termination_log = dir.join("termination-log");
    std::fs::write(&termination_log, b"")
        .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?;
    // Writable whatever user the container runs as, as the kubelet makes it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?;
    }
    let mut mounts = Vec::new();
    let volumes: BTreeMap<&str, _> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| (v.name.as_str(), v)).collect())
        .unwrap_or_default();
    for vm in c.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.get(vm.name.as_str()) else {
            return Err(StartFailure::new(
                "CreateContainerConfigError",
                format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    vm.name, c.name
                ),
            ));
        };
        let api_backed = crate::volumes::is_api_backed(vol);
        let source = if api_backed {
            crate::volumes::volume_dir(pod_dir, &vm.name)
        } else if vol.empty_dir.is_some() {
            let d = pod_dir.join("volumes").join(&vm.name);
            std::fs::create_dir_all(&d)
                .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?;
            if let Some(g) = fs_group(pod) {
                // As the kubelet's volume ownership: the fsGroup owns it, and new files
                // inherit the group (setgid).
                use std::os::unix::fs::PermissionsExt;
                let _ = std::os::unix::fs::chown(&d, None, Some(g));
                let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o2777));
            }
            d
        } else if let Some(hp) = &vol.host_path {
            // Its type was checked (and DirectoryOrCreate/FileOrCreate made) with the volumes.
            PathBuf::from(&hp.path)
        } else {
            return Err(StartFailure::new(
                "CreateContainerConfigError",
                format!(
                    "volume \"{}\": this volume type is not supported yet",
                    vm.name
                ),
            ));
        };
        // subPathExpr: the container's own environment fills in `$(VAR)`.
        let expanded = vm
            .sub_path_expr
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|e| {
                expand(e, &|name: &str| {
                    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
                })
            });
        let sub_path = expanded.as_deref().or(vm.sub_path.as_deref());
        if sub_path.is_some_and(|p| {
            Path::new(p).is_absolute()
                || Path::new(p)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
        }) {
            return Err(StartFailure::new(
                "CreateContainerConfigError",
                format!(
                    "failed to prepare subPath for volumeMount \"{}\" of container \"{}\"",
                    vm.name, c.name
                ),
            ));
        }
        let source = match sub_path.filter(|s| !s.is_empty()) {
            // A file of an API-backed volume: bound as it is now (it does not update).
            Some(sub) if api_backed => source.join(sub),
            Some(sub) => {
                let p = source.join(sub);
                std::fs::create_dir_all(&p)
                    .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?;
                p
            }
            None => source,
        };
        mounts.push(oci::Mount {
            source,
            destination: vm.mount_path.clone(),
            // The kubelet mounts configMap, secret, downwardAPI and projected volumes
            // read-only whatever the mount asks.
            readonly: api_backed || vm.read_only.unwrap_or(false),
            kind: oci::MountKind::Bind,
            propagation: match vm.mount_propagation.as_deref() {
                Some("HostToContainer") => oci::Propagation::HostToContainer,
                Some("Bidirectional") => oci::Propagation::Bidirectional,
                _ => oci::Propagation::Private,
            },
        });
    }
    let bind = |source: &Path, destination: &str| oci::Mount {
        source: source.to_path_buf(),
        destination: destination.into(),
        readonly: false,
        kind: oci::MountKind::Bind,
        propagation: oci::Propagation::Private,
    };
    if !mounts.iter().any(|m| m.destination == "/etc/hosts") {
        mounts.push(bind(&files.hosts, "/etc/hosts"));
    }
    mounts.push(bind(&files.hostname, "/etc/hostname"));
    mounts.push(bind(&files.resolv_conf, "/etc/resolv.conf"));
    let termination_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(bind(&termination_log, &termination_path));

    let infra = sandbox.infra_pid;
    let share_pid = pod
        .spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged) == Some(true);
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| img.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let spec = oci::ContainerConfig {
        args,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        uid: run_uid,
        gid: run_gid,
        additional_gids: supplemental_groups(pod),
        hostname: kernel_hostname,
        rootfs: rootfs.to_path_buf(),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        mounts,
        netns: Some(oci::sandbox::ns_path(infra, "net")),
        ipcns: Some(oci::sandbox::ns_path(infra, "ipc")),
        utsns: Some(oci::sandbox::ns_path(infra, "uts")),
        pidns: share_pid.then(|| oci::sandbox::ns_path(infra, "pid")),
        shm: Some(pod_dir.join("shm")),
        cgroups_path: format!("/{}/{}", ctx.cfg.pod_cgroup(&uid), id),
        resources: resources(c),
        oom_score_adj: None,
        tty: c.tty.unwrap_or(false),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        no_new_privileges: !privileged
            && sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        capabilities: sc.and_then(|s| s.capabilities.as_ref()).map(|caps| {
            oci::capabilities_with(
                caps.add.as_deref().unwrap_or_default(),
                caps.drop.as_deref().unwrap_or_default(),
            )
        }),
        privileged,
        host_network: sandbox.host_network,
        host_pid: pod_spec_flag(pod, |s| s.host_pid),
        host_ipc: pod_spec_flag(pod, |s| s.host_ipc),
        seccomp: seccomp(ctx, pod, c)?,
        sysctls: sysctls(pod)?,
        annotations: BTreeMap::from([
            ("io.kubernetes.pod.namespace".to_string(), ns.clone()),
            ("io.kubernetes.pod.name".to_string(), name.clone()),
            ("io.kubernetes.pod.uid".to_string(), uid.clone()),
            ("io.kubernetes.container.name".to_string(), c.name.clone()),
        ]),
    };
    let log_path = ctx
        .cfg
        .logs_dir()
        .join(format!("{ns}_{name}_{uid}"))
        .join(&c.name)
        .join(format!("{attempt}.log"));
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?;
    }
    let stop_signal = img
        .config
        .stop_signal
        .as_deref()
        .and_then(signal_number)
        .unwrap_or(libc::SIGTERM);
    debug!(container = %c.name, id, "prepared container");
    Ok(Prepared {
        record: ContainerRecord {
            id: id.to_string(),
            name: c.name.clone(),
            init,
            attempt,
            image: c.image.clone().unwrap_or_default(),
            image_ref: img.names.first().cloned().unwrap_or_default(),
            image_id: img
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| img.id.clone()),
            pid: 0,
            created_at: jiff::Timestamp::now(),
            started_at: None,
            exit: None,
            log_path,
            stop_signal,
            tty: c.tty.unwrap_or(false),
            ephemeral: false,
            post_start_pending: false,
            fallback_to_logs: c.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
        },
        bundle: dir.to_path_buf(),
        spec,
    })
}

/// `SIGTERM`, `TERM`, `15` → 15.
pub fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let name = s.trim_start_matches("SIG");
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        "PWR" => libc::SIGPWR,
        _ => return None,
    })
}

/// The container's `seccompProfile` (the pod's unless it sets one): `RuntimeDefault`,
/// `Unconfined` (also when unset, as the kubelet without `--seccomp-default`), or
/// `Localhost`, a profile file under `DATA/seccomp/` (the kubelet's `<root>/seccomp`).
fn seccomp(ctx: &Ctx, pod: &Pod, c: &Container) -> Result<oci::seccomp::Seccomp, StartFailure> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let profile = c
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or(pod_sc.and_then(|s| s.seccomp_profile.as_ref()));
    let Some(profile) = profile else {
        return Ok(oci::seccomp::Seccomp::Unconfined);
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(oci::seccomp::Seccomp::RuntimeDefault),
        "Localhost" => {
            let name = profile.localhost_profile.as_deref().unwrap_or_default();
            let path = ctx.cfg.data_dir.join("seccomp").join(name);
            let fail = |e: String| {
                StartFailure::new(
                    "CreateContainerError",
                    format!("failed to load seccomp profile {:?}: {e}", path.display()),
                )
            };
            if name.split('/').any(|part| part == "..") || name.starts_with('/') {
                return Err(fail(
                    "the profile must be a relative path inside the profile root".into(),
                ));
            }
            let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
            oci::seccomp::Seccomp::from_json(&bytes).map_err(|e| fail(e.to_string()))
        }
        _ => Ok(oci::seccomp::Seccomp::Unconfined),
    }
}

/// The reason of a container the runtime could not create or start (the command does not
/// exist, ...). As with containerd, such a container counts as having run and exited 128:
/// it is restarted under the restart policy, with the crash backoff.
pub const START_ERROR: &str = "StartError";

/// The exit code recorded for a [`START_ERROR`], containerd's.
pub const START_ERROR_EXIT_CODE: i32 = 128;

/// Creates the container under its monitor, then starts it.
pub async fn create_and_start(ctx: &Ctx, prepared: &mut Prepared) -> Result<(), StartFailure> {
    let spec = oci::build_spec(&prepared.spec)
        .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?;
    let exit_file = prepared.bundle.join("exit.json");
    let pid = ctx
        .runtime
        .create(
            &prepared.record.id,
            &prepared.bundle,
            &spec,
            oci::ContainerIo::of(&prepared.spec),
            &prepared.record.log_path,
            &exit_file,
        )
        .await
        .map_err(|e| StartFailure::new(START_ERROR, e.to_string()))?;
    prepared.record.pid = pid;
    ctx.runtime
        .start(&prepared.record.id)
        .await
        .map_err(|e| StartFailure::new(START_ERROR, e.to_string()))?;
    prepared.record.started_at = Some(jiff::Timestamp::now());
    Ok(())
}

/// The file bind-mounted at the container's `terminationMessagePath`.
pub fn termination_log(pod_dir: &Path, id: &str) -> PathBuf {
    container_dir(pod_dir, id).join("termination-log")
}

pub fn exit_file(pod_dir: &Path, id: &str) -> PathBuf {
    container_dir(pod_dir, id).join("exit.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(spec: serde_json::Value) -> Container {
        serde_json::from_value(spec).unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": []}
        }))
        .unwrap()
    }

    fn pod_with(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn pod_cgroup_sums_app_and_sidecars_and_takes_the_init_peak() {
        let res = |cpu: &str, mem: &str| serde_json::json!({"limits": {"cpu": cpu, "memory": mem}});
        let p = pod_with(serde_json::json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": res("100m", "64Mi")},
                {"name": "big", "resources": res("2", "1Gi")}
            ],
            "containers": [
                {"name": "a", "resources": res("250m", "128Mi")},
                {"name": "b", "resources": res("250m", "128Mi")}
            ]
        }));
        let r = pod_resources(&p, Some(4096));
        // The init peak (sidecar + big) beats the app sum (sidecar + a + b).
        assert_eq!(r.cpu_quota, Some(210_000));
        assert_eq!(r.memory_limit, Some((64 + 1024) * 1024 * 1024));
        assert_eq!(r.cpu_shares, Some(2100 * 1024 / 1000));
        assert_eq!(r.pids_limit, Some(4096));
    }

    #[test]
    fn pod_cgroup_has_no_limit_unless_every_container_sets_one() {
        let p = pod_with(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "64Mi"}}},
            {"name": "b"}
        ]}));
        let r = pod_resources(&p, None);
        assert_eq!(
            (r.cpu_quota, r.memory_limit, r.pids_limit),
            (None, None, None)
        );
        assert_eq!(r.cpu_shares, Some(512));
        // BestEffort gets the minimum shares.
        let p = pod_with(serde_json::json!({"containers": [{"name": "a"}]}));
        assert_eq!(pod_resources(&p, None).cpu_shares, Some(2));
    }

    fn image(env: &[&str]) -> image::Image {
        image::Image {
            id: "sha256:x".into(),
            names: vec![],
            repo_digests: vec![],
            size: 0,
            config: image::ImageConfig {
                env: env.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            layers: vec![],
        }
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_from_then_env_with_expansion_and_overrides() {
        let c = container(serde_json::json!({
            "name": "c",
            "envFrom": [
                {"configMapRef": {"name": "settings"}, "prefix": "APP_"},
                {"secretRef": {"name": "creds"}}
            ],
            "env": [
                {"name": "APP_MODE", "value": "override"},
                {"name": "GREETING", "value": "mode=$(APP_MODE) user=$(USER)"},
                {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}}
            ]
        }));
        let objects = EnvObjects::default()
            .with_config_map("settings", &[("MODE", "fast"), ("level", "3")])
            .with_secret("creds", &[("USER", "alice"), ("PASSWORD", "s3cret")]);
        let env = environment(
            &pod(),
            &c,
            &image(&["PATH=/bin"]),
            &objects,
            None,
            "10.0.0.1",
            Vec::new(),
        )
        .unwrap();
        assert_eq!(get(&env, "PATH"), Some("/bin"));
        assert_eq!(get(&env, "APP_level"), Some("3"));
        assert_eq!(get(&env, "APP_MODE"), Some("override"));
        assert_eq!(get(&env, "GREETING"), Some("mode=override user=alice"));
        assert_eq!(get(&env, "KEY"), Some("3"));
        assert_eq!(get(&env, "PASS"), Some("s3cret"));
    }

    #[test]
    fn service_variables_are_in_every_container_and_the_pod_may_override_them() {
        let c = container(serde_json::json!({"name": "c", "env": [
            {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "KUBERNETES_SERVICE_PORT_HTTPS", "value": "mine"}]}));
        // Without a `kubernetes` Service, from the API's advertise address.
        let api = "10.42.0.1:6443".parse().ok();
        let services = crate::envvars::service_env([], "ns", true, api);
        let env = environment(
            &pod(),
            &c,
            &image(&["KUBERNETES_SERVICE_HOST=image"]),
            &EnvObjects::default(),
            None,
            "h",
            services,
        )
        .unwrap();
        assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.42.0.1"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT"), Some("6443"));
        assert_eq!(get(&env, "KUBERNETES_PORT"), Some("tcp://10.42.0.1:6443"));
        assert_eq!(
            get(&env, "KUBERNETES_PORT_6443_TCP"),
            Some("tcp://10.42.0.1:6443")
        );
        assert_eq!(get(&env, "KUBERNETES_PORT_6443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get(&env, "KUBERNETES_PORT_6443_TCP_PORT"), Some("6443"));
        assert_eq!(
            get(&env, "KUBERNETES_PORT_6443_TCP_ADDR"),
            Some("10.42.0.1")
        );
        assert_eq!(get(&env, "URL"), Some("https://10.42.0.1:6443"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("mine"));
    }

    #[test]
    fn missing_objects_and_keys_are_config_errors_unless_optional() {
        let objects = EnvObjects::default().with_secret("creds", &[("USER", "alice")]);
        let run = |spec| {
            environment(
                &pod(),
                &container(spec),
                &image(&[]),
                &objects,
                None,
                "h",
                Vec::new(),
            )
        };
        let err = run(serde_json::json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}))
        .unwrap_err();
        assert_eq!(err.reason, "CreateContainerConfigError");
        assert_eq!(err.message, "configmap \"nope\" not found");
        let err = run(serde_json::json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}}]}))
        .unwrap_err();
        assert_eq!(err.message, "couldn't find key PASSWORD in Secret ns/creds");
        let err =
            run(serde_json::json!({"name": "c", "envFrom": [{"secretRef": {"name": "gone"}}]}))
                .unwrap_err();
        assert_eq!(err.message, "secret \"gone\" not found");
        let env = run(serde_json::json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "nope", "optional": true}}],
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "X", "optional": true}}},
                    {"name": "B", "value": "b"}]}))
        .unwrap();
        assert_eq!(get(&env, "A"), None);
        assert_eq!(get(&env, "B"), Some("b"));
    }
}

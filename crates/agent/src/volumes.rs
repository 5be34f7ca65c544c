//! Volumes whose files come from the API: `configMap`, `secret`, `downwardAPI` and
//! `projected` (of those and `serviceAccountToken`). Each lives in its own tmpfs at
//! `DATA/pods/<uid>/volumes/<name>`, so secrets never touch the node's disk, and is written
//! the way the kubelet's atomic writer does: the files go into a fresh `..<timestamp>`
//! directory, the `..data` symlink is swapped to it in one rename, and each top-level name is a symlink through `..data`. A container
//! therefore sees a whole new version at once, and a `subPath` mount (bound to the file
//! behind the links when the container is created) keeps the old one, as upstream.
//!
//! [`sync`] also checks hostPath volumes' `type` and mounts memory-backed emptyDirs as
//! tmpfs (capped by `sizeLimit`).
//!
//! A `serviceAccountToken` projection is a TokenRequest for the pod's account bound to the
//! pod (the projection's audience, else the API's; its `expirationSeconds`). The token in
//! the volume is the cache: it is requested again only once 80% of its lifetime has passed
//! or it is 24 h old, as the kubelet's token manager decides, so an agent restart does not
//! re-request it either.
//!
//! The worker calls [`sync`] on every pass, so a changed ConfigMap or Secret reaches running
//! containers within a resync; a missing object keeps the pod in `ContainerCreating` with
//! `FailedMount` events, as the kubelet's volume manager does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};

/// The kubelet's default file mode for these volumes (0644).
const DEFAULT_MODE: i32 = 0o644;
/// The size of each volume's tmpfs; generous for what fits in an object (1 MiB max each).
const TMPFS_SIZE: &str = "size=16m";

/// Every file of a volume: relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// A volume that could not be set up: the kubelet's `FailedMount` wording.
#[derive(Debug)]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
    /// The API server did not answer (see `AgentError::is_unreachable`).
    pub unreachable: bool,
}

/// Why a volume's content could not be made: a message in the kubelet's words, and whether
/// it is only the API server being out of reach.
#[derive(Debug)]
struct RenderError {
    message: String,
    unreachable: bool,
}

impl From<String> for RenderError {
    fn from(message: String) -> Self {
        RenderError {
            message,
            unreachable: false,
        }
    }
}

impl RenderError {
    fn api(e: kube::Error, context: &str) -> RenderError {
        RenderError {
            unreachable: crate::unreachable(&e),
            message: format!("{context}{e}"),
        }
    }
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MountVolume.SetUp failed for volume \"{}\" : {}",
            self.volume, self.message
        )
    }
}

/// Whether this module serves `v`.
pub fn is_api_backed(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// Where volume `name` of the pod in `pod_dir` lives on the node.
pub fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// Brings every API-backed volume of `pod` up to date: fetches the objects, renders the
/// files, and swaps in a new version where anything changed.
pub async fn sync(client: &kube::Client, pod: &Pod, pod_dir: &Path) -> Result<(), VolumeError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    for v in spec.volumes.iter().flatten() {
        let fail = |message: String| VolumeError {
            volume: v.name.clone(),
            message,
            unreachable: false,
        };
        if let Some(hp) = &v.host_path {
            check_host_path(&hp.path, hp.type_.as_deref().unwrap_or_default()).map_err(fail)?;
        } else if let Some(ed) = v
            .empty_dir
            .as_ref()
            .filter(|ed| ed.medium.as_deref() == Some("Memory"))
        {
            let dir = volume_dir(pod_dir, &v.name);
            if !is_mounted(&dir) {
                // A memory-backed emptyDir is a tmpfs, capped by its sizeLimit when it has one.
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
                    .map(|q| (q.nanos / 1_000_000_000).max(4096))
                    .map_or_else(
                        || "mode=0777".to_string(),
                        |b| format!("mode=0777,size={b}"),
                    );
                oci::sandbox::mount_tmpfs(&dir, &size).map_err(|e| fail(e.to_string()))?;
            }
        }
    }
    for v in spec.volumes.iter().flatten().filter(|v| is_api_backed(v)) {
        let fail = |message: String| VolumeError {
            volume: v.name.clone(),
            message,
            unreachable: false,
        };
        let dir = volume_dir(pod_dir, &v.name);
        let mut files = render(client, ns, pod, v, &dir)
            .await
            .map_err(|e| VolumeError {
                volume: v.name.clone(),
                message: e.message,
                unreachable: e.unreachable,
            })?;
        if !is_mounted(&dir) {
            oci::sandbox::mount_tmpfs(&dir, TMPFS_SIZE).map_err(|e| fail(e.to_string()))?;
        }
        let group = crate::container::fs_group(pod);
        if group.is_some() {
            // As the kubelet's volume ownership for a read-only volume: the fsGroup can read.
            for (_, mode) in files.values_mut() {
                *mode |= 0o440;
            }
        }
        write_atomically(&dir, &files, group)
            .map_err(|e| fail(format!("writing the files: {e}")))?;
    }
    Ok(())
}

/// The kubelet eviction manager's emptyDir check: the message for the first emptyDir whose
/// disk usage is over its `sizeLimit` (`Usage of EmptyDir volume "x" exceeds the limit
/// "1Mi". `), None while all fit. A memory-backed one is a tmpfs of that size and cannot
/// go over.
pub fn empty_dir_overrun(pod: &Pod, pod_dir: &Path) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.volumes.iter().flatten().find_map(|v| {
        let limit = v.empty_dir.as_ref()?.size_limit.as_ref()?;
        let bytes = api::quantity::Quantity::parse(&limit.0).ok()?.nanos / 1_000_000_000;
        if bytes <= 0 {
            return None;
        }
        let used = disk_usage(&volume_dir(pod_dir, &v.name));
        (i128::from(used) > bytes).then(|| {
            format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name,
                api::quantity::canonical(&limit.0)
            )
        })
    })
}

/// Bytes a directory tree takes on disk (allocated blocks, each inode once, as `du`).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Unmounts every API-backed volume of the pod in `pod_dir` (fine if none are mounted).
pub fn teardown(pod_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if is_mounted(&dir) {
            if let Err(e) = oci::sandbox::unmount_tmpfs(&dir) {
                tracing::warn!(volume = %dir.display(), error = %e, "unmounting a volume");
            }
        }
    }
}

/// The kubelet's hostPath type check: `DirectoryOrCreate`/`FileOrCreate` make what is
/// missing; the other types must find it as they say.
fn check_host_path(path: &str, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    let is = |test: &dyn Fn(&std::fs::Metadata) -> bool| meta.as_ref().is_ok_and(test);
    let failed = |what: &str| {
        Err(format!(
            "hostPath type check failed: {path} is not a {what}"
        ))
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(p).map_err(|e| format!("creating {path}: {e}"))?;
                return Ok(());
            }
            if is(&|m| m.is_dir()) {
                Ok(())
            } else {
                failed("directory")
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("creating {path}: {e}"))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("creating {path}: {e}"))?;
                return Ok(());
            }
            if is(&|m| m.is_file()) {
                Ok(())
            } else {
                failed("file")
            }
        }
        "Directory" => {
            if is(&|m| m.is_dir()) {
                Ok(())
            } else {
                failed("directory")
            }
        }
        "File" => {
            if is(&|m| m.is_file()) {
                Ok(())
            } else {
                failed("file")
            }
        }
        "Socket" => {
            if is(&|m| m.file_type().is_socket()) {
                Ok(())
            } else {
                failed("socket file")
            }
        }
        "CharDevice" => {
            if is(&|m| m.file_type().is_char_device()) {
                Ok(())
            } else {
                failed("character device")
            }
        }
        "BlockDevice" => {
            if is(&|m| m.file_type().is_block_device()) {
                Ok(())
            } else {
                failed("block device")
            }
        }
        other => Err(format!("invalid hostPath type {other:?}")),
    }
}

fn is_mounted(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = dir.to_string_lossy();
    text.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == target))
}

fn mode_of(mode: Option<i32>, default: Option<i32>) -> u32 {
    (mode.or(default).unwrap_or(DEFAULT_MODE) & 0o777) as u32
}

/// The files of one volume, from the objects as they are now.
async fn render(
    client: &kube::Client,
    ns: &str,
    pod: &Pod,
    v: &Volume,
    dir: &Path,
) -> Result<Files, RenderError> {
    let mut files = Files::new();
    if let Some(src) = &v.config_map {
        let mode = mode_of(None, src.default_mode);
        add_object(
            &mut files,
            client,
            ns,
            Object::ConfigMap,
            &src.name,
            src.items.as_deref(),
            src.optional,
            mode,
        )
        .await?;
    } else if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let mode = mode_of(None, src.default_mode);
        add_object(
            &mut files,
            client,
            ns,
            Object::Secret,
            &name,
            src.items.as_deref(),
            src.optional,
            mode,
        )
        .await?;
    } else if let Some(src) = &v.downward_api {
        for item in src.items.iter().flatten() {
            add_downward(&mut files, pod, item, mode_of(item.mode, src.default_mode))?;
        }
    } else if let Some(src) = &v.projected {
        let mode = mode_of(None, src.default_mode);
        for source in src.sources.iter().flatten() {
            if let Some(p) = &source.config_map {
                add_object(
                    &mut files,
                    client,
                    ns,
                    Object::ConfigMap,
                    &p.name,
                    p.items.as_deref(),
                    p.optional,
                    mode,
                )
                .await?;
            } else if let Some(p) = &source.secret {
                add_object(
                    &mut files,
                    client,
                    ns,
                    Object::Secret,
                    &p.name,
                    p.items.as_deref(),
                    p.optional,
                    mode,
                )
                .await?;
            } else if let Some(p) = &source.downward_api {
                for item in p.items.iter().flatten() {
                    add_downward(&mut files, pod, item, mode_of(item.mode, src.default_mode))?;
                }
            } else if let Some(p) = &source.service_account_token {
                let path = clean_path(&p.path)?;
                let held = std::fs::read_to_string(dir.join("..data").join(&path)).ok();
                let token = service_account_token(client, pod, p, held).await?;
                files.insert(path, (token.into_bytes(), mode));
            }
        }
    }
    Ok(files)
}

/// The kubelet refreshes a token older than this whatever its lifetime.
const TOKEN_MAX_AGE_SECONDS: i64 = 24 * 3600;

/// The token for a projection: `held` (what the volume has) while it is fresh, else a new
/// one from the API.
async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    p: &ServiceAccountTokenProjection,
    held: Option<String>,
) -> Result<String, RenderError> {
    let audience = p.audience.as_deref().unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    if let Some(held) = held.filter(|t| !needs_refresh(t, audience, now)) {
        return Ok(held);
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            // Empty: the API server's own audience.
            audiences: (!audience.is_empty()).then(|| vec![audience.to_string()]),
            expiration_seconds: p.expiration_seconds,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), ns);
    let answer = api
        .create_token_request(sa, &kube::api::PostParams::default(), &request)
        .await
        .map_err(|e| RenderError::api(e, "failed to fetch token: "))?;
    answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            "failed to fetch token: the answer holds no token"
                .to_string()
                .into()
        })
}

/// The kubelet token manager's rule: refresh once 80% of the token's lifetime has passed,
/// or once it is 24 h old; also when it is not one we can read or was for another audience.
fn needs_refresh(token: &str, audience: &str, now: i64) -> bool {
    use base64::Engine;
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(claims) = claims else {
        return true;
    };
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return true;
    };
    if !audience.is_empty() {
        let aud = &claims["aud"];
        let matches = aud == audience
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == audience));
        if !matches {
            return true;
        }
    }
    let ttl = exp - iat;
    now >= exp - ttl / 5 || now >= iat + TOKEN_MAX_AGE_SECONDS
}

/// The API objects a volume's files come from.
#[derive(Clone, Copy)]
enum Object {
    ConfigMap,
    Secret,
}

/// Fetches a ConfigMap or Secret and adds its keys (or `items`) as files, with the
/// kubelet's messages for a missing object or key.
#[allow(clippy::too_many_arguments)]
async fn add_object(
    files: &mut Files,
    client: &kube::Client,
    ns: &str,
    kind: Object,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<(), RenderError> {
    let (data, missing_object, missing_key) = match kind {
        Object::ConfigMap => (
            config_map(client, ns, name).await?,
            format!("configmap \"{name}\" not found"),
            "configmap references non-existent config key",
        ),
        Object::Secret => (
            secret(client, ns, name).await?,
            format!("secret \"{name}\" not found"),
            "references non-existent secret key",
        ),
    };
    Ok(add_keys(
        files,
        data,
        items,
        optional == Some(true),
        mode,
        &missing_object,
        missing_key,
    )?)
}

async fn config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, RenderError> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| RenderError::api(e, ""))?;
    Ok(cm.map(|cm| {
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        data
    }))
}

async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, RenderError> {
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    let s = api
        .get_opt(name)
        .await
        .map_err(|e| RenderError::api(e, ""))?;
    Ok(s.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }))
}

/// A ConfigMap's or Secret's keys as files: all of them, or the `items` asked for (at their
/// paths, with their modes).
fn add_keys(
    files: &mut Files,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: u32,
    missing_object: &str,
    missing_key: &str,
) -> Result<(), String> {
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(missing_object.to_string())
        };
    };
    match items {
        None => {
            for (k, v) in data {
                files.insert(k, (v, mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        let m = item.mode.map_or(mode, |m| (m & 0o777) as u32);
                        files.insert(clean_path(&item.path)?, (v.clone(), m));
                    }
                    None if optional => {}
                    None => return Err(format!("{missing_key}: {}", item.key)),
                }
            }
        }
    }
    Ok(())
}

/// A relative path inside the volume: no absolute paths, no `..` (the API validates this
/// too; the node does not rely on it).
fn clean_path(path: &str) -> Result<String, String> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(path.to_string())
    } else {
        Err(format!("invalid path {path:?} in volume"))
    }
}

fn add_downward(
    files: &mut Files,
    pod: &Pod,
    item: &DownwardAPIVolumeFile,
    mode: u32,
) -> Result<(), String> {
    let value = if let Some(f) = &item.field_ref {
        downward_field(pod, &f.field_path)
            .ok_or_else(|| format!("unsupported fieldPath {:?}", f.field_path))?
    } else if let Some(r) = &item.resource_field_ref {
        let container = r.container_name.as_deref().unwrap_or_default();
        let c = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == container))
            .ok_or_else(|| format!("container {container:?} not found for resourceFieldRef"))?;
        resource_field(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))
            .ok_or_else(|| format!("unsupported resource {:?}", r.resource))?
    } else {
        return Ok(());
    };
    files.insert(clean_path(&item.path)?, (value.into_bytes(), mode));
    Ok(())
}

/// A downward-API field as a volume file shows it: labels and annotations as sorted
/// `key="value"` lines, single ones by `['key']`.
fn downward_field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let pairs = |m: &Option<BTreeMap<String, String>>| -> String {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}\n", quote(v)))
            .collect()
    };
    let one = |m: &Option<BTreeMap<String, String>>, key: &str| -> String {
        m.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    if let Some(key) = path
        .strip_prefix("metadata.labels['")
        .and_then(|k| k.strip_suffix("']"))
    {
        return Some(one(&meta.labels, key));
    }
    if let Some(key) = path
        .strip_prefix("metadata.annotations['")
        .and_then(|k| k.strip_suffix("']"))
    {
        return Some(one(&meta.annotations, key));
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => pairs(&meta.labels),
        "metadata.annotations" => pairs(&meta.annotations),
        _ => return None,
    })
}

/// Go's `%q` for the label and annotation files (quotes, backslashes and control
/// characters escaped).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `limits.cpu`, `requests.memory`... of a container, divided by `divisor` and rounded up
/// as the kubelet does; an unset limit reads as the node's capacity.
pub fn resource_field(c: &Container, resource: &str, divisor: Option<&str>) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let resources = c.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return None,
    }
    .and_then(|m| m.get(name))
    .and_then(|q| api::quantity::Quantity::parse(&q.0).ok());
    let value = match (set, name, kind) {
        (Some(q), _, _) => q.nanos,
        (None, "cpu", _) => {
            std::thread::available_parallelism().map_or(1, |n| n.get()) as i128 * 1_000_000_000
        }
        (None, "memory", _) => memory_total()? as i128 * 1_000_000_000,
        (None, "ephemeral-storage", _) => return Some("0".into()),
        _ => return None,
    };
    let divisor = divisor
        .and_then(|d| api::quantity::Quantity::parse(d).ok())
        .map(|q| q.nanos)
        .filter(|n| *n > 0)
        .unwrap_or(1_000_000_000);
    let rounded_up = (value + divisor - 1) / divisor;
    Some(rounded_up.to_string())
}

fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The files now behind `dir/..data`, to skip a write that would change nothing.
fn current(dir: &Path) -> Option<Files> {
    let data = dir.join("..data");
    let mut files = Files::new();
    fn walk(base: &Path, rel: &str, files: &mut Files) -> Option<()> {
        for entry in std::fs::read_dir(base.join(rel)).ok()? {
            let entry = entry.ok()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                walk(base, &rel_path, files)?;
            } else {
                use std::os::unix::fs::PermissionsExt;
                let content = std::fs::read(base.join(&rel_path)).ok()?;
                files.insert(rel_path, (content, meta.permissions().mode() & 0o777));
            }
        }
        Some(())
    }
    walk(&data, "", &mut files)?;
    Some(files)
}

/// Publishes `files` in `dir` as one version (see the module docs); does nothing when
/// they are what is already there.
/// With `group` (the pod's fsGroup), the new version's files and directories belong to it
/// and its directories are setgid, as the kubelet's volume ownership sets them.
pub fn write_atomically(dir: &Path, files: &Files, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if current(dir).as_ref() == Some(files) {
        return Ok(());
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let version = dir.join(&stamp);
    std::fs::create_dir_all(&version)?;
    for (rel, (content, mode)) in files {
        let path = version.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    if let Some(g) = group {
        own_tree(&version, g)?;
        // The volume's root too, so the group can list it.
        std::os::unix::fs::chown(dir, None, Some(g))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2775))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    // Top-level names point through ..data; names no longer published go.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        if old != Path::new(&stamp) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

/// Gives `dir` and everything below it to `group`; directories become setgid and
/// group-searchable.
fn own_tree(dir: &Path, group: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(dir, None, Some(group))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o2550))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            own_tree(&path, group)?;
        } else {
            std::os::unix::fs::chown(&path, None, Some(group))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str, u32)]) -> Files {
        entries
            .iter()
            .map(|(k, v, m)| (k.to_string(), (v.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn versions_are_swapped_whole_and_old_names_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_atomically(
            dir,
            &files(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]),
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        // Unchanged: no new version.
        write_atomically(
            dir,
            &files(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]),
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
        write_atomically(dir, &files(&[("a", "changed", 0o644)]), None).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert!(
            std::fs::symlink_metadata(dir.join("sub")).is_err(),
            "sub is gone"
        );
        assert!(!dir.join(&first).exists(), "the old version is removed");
        use std::os::unix::fs::PermissionsExt;
        write_atomically(dir, &files(&[("a", "x", 0o400)]), None).unwrap();
        let mode = std::fs::metadata(dir.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o400);
    }

    #[test]
    fn an_empty_dir_over_its_size_limit_is_reported_with_the_kubelet_message() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "roomy", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}},
                {"name": "free", "emptyDir": {}}
            ]}
        }))
        .unwrap();
        for name in ["roomy", "cache", "free"] {
            std::fs::create_dir_all(volume_dir(&dir, name).join("sub")).unwrap();
        }
        assert_eq!(empty_dir_overrun(&pod, &dir), None);
        let big = vec![1u8; 3 << 20];
        std::fs::write(volume_dir(&dir, "free").join("big"), &big).unwrap();
        std::fs::write(volume_dir(&dir, "roomy").join("big"), &big).unwrap();
        assert_eq!(empty_dir_overrun(&pod, &dir), None);
        std::fs::write(volume_dir(&dir, "cache").join("sub/big"), &big).unwrap();
        assert_eq!(
            empty_dir_overrun(&pod, &dir).as_deref(),
            Some("Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". ")
        );
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let file = tmp.path().join("f");
        let (d, f) = (dir.to_str().unwrap(), file.to_str().unwrap());
        assert!(check_host_path(d, "Directory").is_err());
        check_host_path(d, "DirectoryOrCreate").unwrap();
        check_host_path(d, "Directory").unwrap();
        check_host_path(f, "FileOrCreate").unwrap();
        check_host_path(f, "File").unwrap();
        assert_eq!(
            check_host_path(f, "Directory").unwrap_err(),
            format!("hostPath type check failed: {f} is not a directory")
        );
        assert!(check_host_path(d, "Socket").is_err());
        check_host_path("/nonexistent-anything", "").unwrap();
    }

    #[test]
    fn keys_items_and_missing_ones() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("k1".to_string(), b"v1".to_vec()),
            ("k2".to_string(), b"v2".to_vec()),
        ]
        .into();
        let mut all = Files::new();
        add_keys(
            &mut all,
            Some(data.clone()),
            None,
            false,
            0o644,
            "gone",
            "no key",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        let items: Vec<KeyToPath> = serde_json::from_value(serde_json::json!([
            {"key": "k2", "path": "dir/two", "mode": 0o400}
        ]))
        .unwrap();
        let mut some = Files::new();
        add_keys(
            &mut some,
            Some(data.clone()),
            Some(&items),
            false,
            0o644,
            "gone",
            "no key",
        )
        .unwrap();
        assert_eq!(some.get("dir/two"), Some(&(b"v2".to_vec(), 0o400)));
        let missing: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{"key": "k9", "path": "x"}])).unwrap();
        let err = add_keys(
            &mut Files::new(),
            Some(data),
            Some(&missing),
            false,
            0o644,
            "gone",
            "configmap references non-existent config key",
        )
        .unwrap_err();
        assert_eq!(err, "configmap references non-existent config key: k9");
        assert_eq!(
            add_keys(
                &mut Files::new(),
                None,
                None,
                false,
                0o644,
                "configmap \"x\" not found",
                ""
            )
            .unwrap_err(),
            "configmap \"x\" not found"
        );
        assert!(add_keys(&mut Files::new(), None, None, true, 0o644, "gone", "").is_ok());
        let escape: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{"key": "k1", "path": "../etc/passwd"}]))
                .unwrap();
        let data: BTreeMap<String, Vec<u8>> = [("k1".to_string(), b"v".to_vec())].into();
        assert!(add_keys(
            &mut Files::new(),
            Some(data),
            Some(&escape),
            false,
            0o644,
            "",
            ""
        )
        .is_err());
    }

    #[test]
    fn downward_fields_as_files() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "labels": {"app": "web", "tier": "a \"b\""},
                         "annotations": {"note": "x"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]}
        }))
        .unwrap();
        assert_eq!(
            downward_field(&pod, "metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"a \\\"b\\\"\"\n"
        );
        assert_eq!(
            downward_field(&pod, "metadata.labels['app']").unwrap(),
            "web"
        );
        assert_eq!(downward_field(&pod, "metadata.namespace").unwrap(), "ns");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(resource_field(c, "limits.cpu", None).unwrap(), "1");
        assert_eq!(resource_field(c, "limits.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(
            resource_field(c, "limits.memory", Some("1Mi")).unwrap(),
            "64"
        );
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;
    use base64::Engine;

    fn token(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"ES256"}"#),
            enc(&serde_json::to_vec(&claims).unwrap())
        )
    }

    #[test]
    fn tokens_are_refreshed_at_80_percent_or_24_hours() {
        let t = token(serde_json::json!({"iat": 1000, "exp": 1000 + 3600, "aud": ["api"]}));
        assert!(!needs_refresh(&t, "", 1000));
        assert!(!needs_refresh(&t, "api", 1000 + 2879));
        assert!(needs_refresh(&t, "api", 1000 + 2880));
        assert!(needs_refresh(&t, "vault", 1000));
        let year = token(serde_json::json!({"iat": 0, "exp": 365 * 86400, "aud": "api"}));
        assert!(!needs_refresh(&year, "api", 86399));
        assert!(needs_refresh(&year, "api", 86400));
        assert!(needs_refresh("garbage", "", 0));
    }
}

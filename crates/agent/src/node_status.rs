//! Node registration, the node lease and node status — the kubelet's `nodestatus` and
//! `nodelease` in one place. Owns what the node says about itself: capacity read from the
//! machine, conditions, addresses, node info; and, for a node started without `--pod-cidr`,
//! registering early and waiting for the pod CIDR node IPAM writes into its spec
//! ([`await_pod_cidr`]). Does not own pods.
//!
//! ```text
//!  no --pod-cidr: register (Ready=False, "cni plugin not initialized", no podCIDR)
//!                 ─▶ watch the Node ─▶ spec.podCIDR set by node IPAM ─▶ CNI, DNS, proxy,
//!                 pods set up with it ─▶ register again (Ready=True, podCIDR kept)
//!  --pod-cidr:    register (Ready=True, spec.podCIDR(s) = the flag's)
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use supervisor::{Backoff, Outage};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::AgentConfig;
use crate::AgentError;

/// Upstream's default lease duration (the kubelet's `nodeLeaseDurationSeconds`).
pub const DEFAULT_LEASE_DURATION_SECONDS: u32 = 40;

/// The longest wait between two renewals. The kubelet renews every quarter of the duration
/// (10 s by default); a control plane started with a short `--node-monitor-grace-period`
/// (8 s is common in tests and demos) would then see a healthy node late between renewals
/// and flap it to Unknown. Renewing every 2 s keeps every grace of 6 s or more safe, for one
/// small write per node every 2 s.
const MAX_RENEW_INTERVAL: Duration = Duration::from_secs(2);

/// How often the lease is renewed: a quarter of its duration (upstream's
/// `renewIntervalFraction` 0.25), between 1 s and [`MAX_RENEW_INTERVAL`].
pub fn lease_renew_interval(cfg: &AgentConfig) -> Duration {
    renew_interval(cfg.node_lease_duration_seconds)
}

fn renew_interval(lease_duration_seconds: u32) -> Duration {
    Duration::from_millis(u64::from(lease_duration_seconds) * 250)
        .clamp(Duration::from_secs(1), MAX_RENEW_INTERVAL)
}
/// Status is re-posted at least this often even when nothing changed (upstream: 5 min with
/// leases; we post more often so `kubectl get nodes` ages stay fresh).
const STATUS_REPORT: Duration = Duration::from_secs(60);
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Pods a node runs at most, the kubelet's default `--max-pods`.
pub const MAX_PODS: u32 = 110;

/// What the machine has, as the node reports it.
pub fn machine_capacity(data_dir: &Path) -> BTreeMap<String, Quantity> {
    let mut capacity = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    capacity.insert("cpu".into(), Quantity(cpus.to_string()));
    if let Some(kib) = meminfo_kib("MemTotal") {
        capacity.insert("memory".into(), Quantity(format!("{kib}Ki")));
    }
    if let Some(bytes) = filesystem_bytes(data_dir) {
        capacity.insert(
            "ephemeral-storage".into(),
            Quantity(format!("{}Ki", bytes / 1024)),
        );
    }
    capacity.insert("hugepages-1Gi".into(), Quantity("0".into()));
    capacity.insert("hugepages-2Mi".into(), Quantity("0".into()));
    capacity.insert("pods".into(), Quantity(MAX_PODS.to_string()));
    capacity
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn filesystem_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_blocks as u64 * st.f_frsize as u64)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn kernel_version() -> String {
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a properly sized out-parameter.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates the release field.
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, at: &Time) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now()),
        // The conditions have held since the agent started.
        last_transition_time: Some(at.clone()),
    }
}

/// The node's status as it is right now.
pub fn node_status(cfg: &AgentConfig) -> NodeStatus {
    node_status_with(cfg, true)
}

/// The kubelet's Ready=False while its network is not set up (no pod CIDR yet).
const NETWORK_NOT_READY: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

fn node_status_with(cfg: &AgentConfig, ready: bool) -> NodeStatus {
    let at = Time(cfg.started_at);
    let ready = if ready {
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            &at,
        )
    } else {
        condition("Ready", "False", "KubeletNotReady", NETWORK_NOT_READY, &at)
    };
    let capacity = machine_capacity(&cfg.data_dir);
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                &at,
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                &at,
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                &at,
            ),
            ready,
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(cfg.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.replace("x86_64", "amd64"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: cfg.runtime_version.clone(),
            kernel_version: kernel_version(),
            kube_proxy_version: String::new(),
            kubelet_version: crate::KUBELET_VERSION.into(),
            machine_id: read_trimmed("/etc/machine-id"),
            operating_system: "linux".into(),
            os_image: os_image(),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node_labels(cfg: &AgentConfig) -> BTreeMap<String, String> {
    let arch = std::env::consts::ARCH.replace("x86_64", "amd64");
    let mut labels = BTreeMap::from([
        ("beta.kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch),
        ("kubernetes.io/hostname".to_string(), cfg.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
    ]);
    labels.extend(cfg.node_labels.clone());
    labels
}

/// Creates the Node, or on a restart refreshes the existing one's status. Returns its uid.
pub async fn register(client: &kube::Client, cfg: &AgentConfig) -> Result<String, AgentError> {
    register_with(client, cfg, true)
        .await
        .map(|n| n.metadata.uid.unwrap_or_default())
}

/// The node's pod CIDR as its spec says (IPv4: the bridge needs one).
fn spec_pod_cidr(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .find(|c| {
            c.split('/')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        })
        .cloned()
}

/// Registers the node without a pod CIDR (not ready: no network yet) and waits until node
/// IPAM writes one into its spec; returns it. A node that already has one (a restart)
/// returns at once.
pub async fn await_pod_cidr(
    client: &kube::Client,
    cfg: &AgentConfig,
) -> Result<String, AgentError> {
    let node = register_with(client, cfg, false).await?;
    if let Some(cidr) = spec_pod_cidr(&node) {
        info!(node = %cfg.node_name, pod_cidr = %cidr, "node has podCIDR");
        return Ok(cidr);
    }
    info!(node = %cfg.node_name, "waiting for podCIDR");
    let nodes: Api<Node> = Api::all(client.clone());
    let node = kube::runtime::wait::await_condition(nodes, &cfg.node_name, |n: Option<&Node>| {
        n.and_then(spec_pod_cidr).is_some()
    })
    .await
    .map_err(|e| AgentError::State(format!("watching node {}: {e}", cfg.node_name)))?;
    let cidr = node
        .as_ref()
        .and_then(spec_pod_cidr)
        .ok_or_else(|| AgentError::State(format!("node {} has no podCIDR", cfg.node_name)))?;
    info!(node = %cfg.node_name, pod_cidr = %cidr, "node IPAM assigned podCIDR");
    Ok(cidr)
}

/// Creates or refreshes the Node (labels, pod CIDR when known, status). Returns it.
async fn register_with(
    client: &kube::Client,
    cfg: &AgentConfig,
    ready: bool,
) -> Result<Node, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs = (!cfg.pod_cidr.is_empty()).then(|| cfg.pod_cidr.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(node_labels(cfg)),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cidrs.clone(),
            pod_cidrs: cidrs.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: Some(node_status_with(cfg, ready)),
    };
    let created = match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => {
            info!(node = %cfg.node_name, "registered node");
            created
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            info!(node = %cfg.node_name, "node already registered; updating it");
            let mut patch = serde_json::json!({
                "metadata": {"labels": node_labels(cfg)},
            });
            if let Some(c) = &cidrs {
                patch["spec"] = serde_json::json!({"podCIDR": c, "podCIDRs": [c]});
            }
            nodes
                .patch(
                    &cfg.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    post_status(&nodes, cfg, ready).await?;
    Ok(created)
}

async fn post_status(nodes: &Api<Node>, cfg: &AgentConfig, ready: bool) -> Result<(), AgentError> {
    let patch = serde_json::json!({ "status": node_status_with(cfg, ready) });
    nodes
        .patch_status(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
    Ok(())
}

async fn renew_lease(
    leases: &Api<Lease>,
    cfg: &AgentConfig,
    node_uid: &str,
) -> Result<(), AgentError> {
    let renew = MicroTime(jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(cfg.node_name.clone()),
        lease_duration_seconds: Some(
            i32::try_from(cfg.node_lease_duration_seconds).unwrap_or(i32::MAX),
        ),
        renew_time: Some(renew),
        ..Default::default()
    };
    match leases.get_opt(&cfg.node_name).await? {
        Some(mut lease) => {
            let mut merged = lease.spec.take().unwrap_or_default();
            merged.holder_identity = spec.holder_identity;
            merged.lease_duration_seconds = spec.lease_duration_seconds;
            merged.renew_time = spec.renew_time;
            lease.spec = Some(merged);
            leases
                .replace(&cfg.node_name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.node_name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: cfg.node_name.clone(),
                        uid: node_uid.into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    acquire_time: Some(MicroTime(jiff::Timestamp::now())),
                    ..spec
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Waits between failed lease renewals: 200 ms doubling up to the renew interval; started
/// over (a fresh one) after each success.
fn lease_retry(renew: Duration) -> Backoff {
    Backoff::new(Duration::from_millis(200), renew, Duration::MAX)
}

/// Renews the lease every 10 s and re-posts status every minute until shutdown. A failed
/// renewal is retried sooner, with backoff from 200 ms up to the renew interval (the
/// kubelet's lease controller), and the first success after an outage re-posts the status
/// at once and wakes `api_back`. While the API server is unreachable each connection is
/// logged as one [`Outage`], not per attempt.
pub async fn heartbeat(
    client: kube::Client,
    cfg: std::sync::Arc<AgentConfig>,
    node_uid: String,
    api_back: std::sync::Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let mut last_status = std::time::Instant::now();
    let mut lease_outage = Outage::new("node lease renewal");
    let mut status_outage = Outage::new("node status report");
    let renew = lease_renew_interval(&cfg);
    let mut retry = lease_retry(renew);
    let mut post_now = false;
    loop {
        let wait = match renew_lease(&leases, &cfg, &node_uid).await {
            Ok(()) => {
                debug!("renewed node lease");
                // Back after an outage: say how the node is now rather than in a minute.
                if lease_outage.is_down() {
                    post_now = true;
                    api_back.notify_one();
                }
                lease_outage.succeeded();
                // The next failure starts the retries over from 200 ms.
                retry = lease_retry(renew);
                renew
            }
            Err(e) => {
                if e.is_unreachable() {
                    lease_outage.failed(&e);
                } else {
                    warn!(error = %e, "renewing the node lease");
                }
                retry.next_delay(Duration::ZERO)
            }
        };
        if (post_now || last_status.elapsed() >= STATUS_REPORT) && !lease_outage.is_down() {
            post_now = false;
            match post_status(&nodes, &cfg, true).await {
                Ok(()) => status_outage.succeeded(),
                Err(e) if e.is_unreachable() => status_outage.failed(&e),
                Err(e) => warn!(error = %e, "posting node status"),
            }
            last_status = std::time::Instant::now();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod renew_tests {
    use super::*;

    #[test]
    fn renews_at_a_quarter_of_the_lease_but_at_most_every_two_seconds() {
        let table = [
            (40, 2000),
            (8, 2000),
            (6, 1500),
            (4, 1000),
            (1, 1000),
            (0, 1000),
        ];
        for (duration, want_ms) in table {
            assert_eq!(
                renew_interval(duration),
                Duration::from_millis(want_ms),
                "lease duration {duration}"
            );
        }
    }
}

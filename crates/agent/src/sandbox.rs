//! The pod sandbox, built from real parts: a pod cgroup, a pinned network namespace wired by
//! CNI, the pod's `/etc/hosts` (the kubelet's managed hosts file), `/etc/hostname` and
//! `/etc/resolv.conf` (decided by `dns`), and the infra process
//! that holds the network, IPC and UTS namespaces the containers join. Teardown releases all
//! of it, and is safe to repeat (after a crash, half of it may already be gone).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use tracing::{debug, warn};

use crate::events::EventType;
use crate::record::SandboxRecord;
use crate::{AgentError, Ctx};

/// The node's hosts file, which a `hostNetwork` pod gets.
const NODE_HOSTS: &str = "/etc/hosts";

/// hostPort mappings the pod's containers ask for.
fn port_mappings(pod: &Pod) -> Vec<cni::PortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(cni::PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_ip: p.host_ip.clone().filter(|ip| !ip.is_empty()),
            })
        })
        .collect()
}

fn attachment(pod_ns: &str, pod_name: &str, uid: &str, sandbox: &SandboxRecord) -> cni::Attachment {
    cni::Attachment {
        container_id: sandbox.id.clone(),
        netns: sandbox.netns.clone(),
        ifname: "eth0".into(),
        pod_namespace: pod_ns.into(),
        pod_name: pod_name.into(),
        pod_uid: uid.into(),
        port_mappings: sandbox
            .port_mappings
            .iter()
            .map(
                |(host_port, container_port, protocol, host_ip)| cni::PortMapping {
                    host_port: *host_port,
                    container_port: *container_port,
                    protocol: protocol.clone(),
                    host_ip: host_ip.clone(),
                },
            )
            .collect(),
    }
}

/// Files the containers bind-mount: hosts, hostname, resolv.conf.
pub struct PodFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

pub fn pod_files(pod_dir: &Path) -> PodFiles {
    PodFiles {
        hosts: pod_dir.join("etc-hosts"),
        hostname: pod_dir.join("hostname"),
        resolv_conf: pod_dir.join("resolv.conf"),
    }
}

/// The kubelet's header of a managed hosts file.
const HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// Its header when the file is the node's (a `hostNetwork` pod).
const HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// `/etc/hosts` as the kubelet writes it (its managed hosts file): the header, localhost
/// entries, each pod IP with the hostname (the FQDN first when the pod has a subdomain),
/// then `hostAliases`.
pub fn hosts_file(pod: &Pod, ips: &[String], cluster_domain: &str) -> String {
    let mut out = String::from(HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let name = hostname(pod);
    let domain = host_domain(pod, cluster_domain);
    for ip in ips {
        match &domain {
            Some(domain) => out.push_str(&format!("{ip}\t{name}.{domain}\t{name}\n")),
            None => out.push_str(&format!("{ip}\t{name}\n")),
        }
    }
    out.push_str(&host_aliases(pod));
    out
}

/// A `hostNetwork` pod's hosts file: the node's own, marked as managed, with `hostAliases`.
pub fn host_network_hosts_file(pod: &Pod, node_hosts: &str) -> String {
    format!(
        "{HOSTS_HEADER_HOST_NETWORK}{node_hosts}{}",
        host_aliases(pod)
    )
}

/// The `hostAliases` section: one line per alias IP, its names tab-separated.
fn host_aliases(pod: &Pod) -> String {
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref());
    let Some(aliases) = aliases.filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    out
}

/// Whether the pod uses the node's network namespace.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The pod's hostname: `spec.hostname` or the pod name, a name over 63 characters cut there
/// with trailing `-`/`.` dropped, as upstream; a `hostNetwork` pod has the node's.
pub fn hostname(pod: &Pod) -> String {
    if host_network(pod) {
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            return h.trim().to_string();
        }
    }
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    if name.len() <= 63 {
        return name;
    }
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The pod's domain when it has a subdomain: `<subdomain>.<ns>.svc.<cluster domain>`.
pub fn host_domain(pod: &Pod, cluster_domain: &str) -> Option<String> {
    let sub = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    Some(format!("{sub}.{ns}.svc.{cluster_domain}"))
}

/// The longest kernel hostname (the nodename field holds 64 characters and a NUL).
const FQDN_MAX_LEN: usize = 64;

/// The kernel hostname of the pod's UTS namespace: its hostname, or with
/// `setHostnameAsFQDN` and a subdomain its fully qualified name. An FQDN too long for the
/// kernel is an error in the kubelet's words (the sandbox is not created).
pub fn uts_hostname(pod: &Pod, cluster_domain: &str) -> Result<String, String> {
    let name = hostname(pod);
    let fqdn =
        pod.spec.as_ref().and_then(|s| s.set_hostname_as_fqdn) == Some(true) && !host_network(pod);
    match host_domain(pod, cluster_domain).filter(|_| fqdn) {
        Some(domain) => {
            let full = format!("{name}.{domain}");
            if full.len() > FQDN_MAX_LEN {
                return Err(format!(
                    "failed to construct FQDN from pod hostname and cluster domain, FQDN {full} is too long ({FQDN_MAX_LEN} characters is the max, {} characters requested)",
                    full.len()
                ));
            }
            Ok(full)
        }
        None => Ok(name),
    }
}

/// The pod's resolv.conf (`dns`), with the events met forming it recorded. An unreadable
/// `--resolv-conf` fails the sandbox, as it fails the kubelet's sandbox config.
fn resolv_conf(ctx: &Ctx, pod: &Pod) -> Result<String, AgentError> {
    let path = &ctx.cfg.resolv_conf;
    let has_resolv_conf = !path.as_os_str().is_empty();
    let host = if has_resolv_conf {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
        crate::dns::parse_resolv_conf(&text)
    } else {
        crate::dns::DnsConfig::default()
    };
    let node = crate::dns::NodeDns {
        cluster_dns: &ctx.cfg.cluster_dns,
        cluster_domain: &ctx.cfg.cluster_domain,
        has_resolv_conf,
        node_ip: ctx.cfg.node_ip,
    };
    let (cfg, events) = crate::dns::pod_dns(pod, &node, host);
    for event in events {
        match event {
            crate::dns::DnsEvent::MissingClusterDns { node, pod: msg } => {
                ctx.recorder
                    .node_event(EventType::Warning, "MissingClusterDNS", node);
                ctx.recorder
                    .pod_event(pod, EventType::Warning, "MissingClusterDNS", msg);
            }
            crate::dns::DnsEvent::Forming(msg) => {
                warn!(pod = ?pod.metadata.name, "{msg}");
                ctx.recorder
                    .pod_event(pod, EventType::Warning, "DNSConfigForming", msg);
            }
        }
    }
    match crate::dns::render(&cfg) {
        Some(text) => Ok(text),
        // Nothing to write: containerd copies the host's file.
        None => std::fs::read_to_string(HOST_RESOLV_CONF)
            .map_err(|e| AgentError::io(HOST_RESOLV_CONF, e)),
    }
}

/// What containerd copies when the kubelet gives it no DNS settings at all.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

fn write(path: &Path, content: &str) -> Result<(), AgentError> {
    std::fs::write(path, content).map_err(|e| AgentError::io(path, e))
}

/// Creates the sandbox. On failure everything made so far is released again.
pub async fn create(ctx: &Ctx, pod: &Pod, pod_dir: &Path) -> Result<SandboxRecord, AgentError> {
    if pod.spec.as_ref().and_then(|s| s.host_users) == Some(false) {
        // Better no pod than one that believes it is in a user namespace it is not in.
        return Err(AgentError::Sandbox(
            "user namespaces (hostUsers: false) are not supported by this node".into(),
        ));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let host = host_network(pod);
    let mut sandbox = SandboxRecord {
        id: id.clone(),
        infra_pid: 0,
        infra_start: None,
        // The infra process joins this; for hostNetwork, the agent's own (the node's).
        netns: if host {
            PathBuf::from(format!("/proc/{}/ns/net", std::process::id()))
        } else {
            ctx.cfg.netns_dir().join(&id)
        },
        host_network: host,
        ips: Vec::new(),
        created_at: jiff::Timestamp::now(),
        network_ready_at: None,
        port_mappings: port_mappings(pod)
            .into_iter()
            .map(|p| (p.host_port, p.container_port, p.protocol, p.host_ip))
            .collect(),
    };
    match build(ctx, pod, pod_dir, &mut sandbox).await {
        Ok(()) => Ok(sandbox),
        Err(e) => {
            destroy(ctx, &ns, &name, &uid, &sandbox).await;
            Err(e)
        }
    }
}

async fn build(
    ctx: &Ctx,
    pod: &Pod,
    pod_dir: &Path,
    sandbox: &mut SandboxRecord,
) -> Result<(), AgentError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let t0 = std::time::Instant::now();
    let kernel_hostname =
        uts_hostname(pod, &ctx.cfg.cluster_domain).map_err(AgentError::Sandbox)?;
    std::fs::create_dir_all(pod_dir).map_err(|e| AgentError::io(pod_dir, e))?;
    let limits = crate::container::pod_resources(pod, ctx.cfg.pod_max_pids);
    oci::cgroup::create_pod_cgroup(&ctx.cfg.pod_cgroup(&uid), &limits)
        .map_err(|e| AgentError::Sandbox(format!("creating the pod cgroup: {e}")))?;
    let t_netns;
    if sandbox.host_network {
        t_netns = t0.elapsed();
        sandbox.ips = vec![ctx.cfg.node_ip.to_string()];
    } else {
        cni::netns::create(&sandbox.netns)
            .map_err(|e| AgentError::Sandbox(format!("creating the network namespace: {e}")))?;
        t_netns = t0.elapsed();
        let status = ctx
            .cni
            .add(&attachment(&ns, &name, &uid, sandbox))
            .await
            .map_err(|e| {
                AgentError::Sandbox(format!(
                    "plugin type=\"bridge\" name=\"peapod\" failed (add): {e}"
                ))
            })?;
        sandbox.ips = status.ips.iter().map(|ip| ip.to_string()).collect();
    }
    sandbox.network_ready_at = Some(jiff::Timestamp::now());
    let t_cni = t0.elapsed();
    debug!(pod = %name, ips = ?sandbox.ips, "pod network ready");
    // The pod's /dev/shm, shared by its containers like its IPC namespace (64 MiB as upstream).
    oci::sandbox::mount_shm(&pod_dir.join("shm"), 64 * 1024 * 1024)
        .map_err(|e| AgentError::Sandbox(format!("mounting the pod's /dev/shm: {e}")))?;
    let files = pod_files(pod_dir);
    // A hostNetwork pod sees the node's hosts file, as the kubelet gives it.
    let hosts = if sandbox.host_network {
        let node_hosts =
            std::fs::read_to_string(NODE_HOSTS).map_err(|e| AgentError::io(NODE_HOSTS, e))?;
        host_network_hosts_file(pod, &node_hosts)
    } else {
        hosts_file(pod, &sandbox.ips, &ctx.cfg.cluster_domain)
    };
    write(&files.hosts, &hosts)?;
    write(&files.hostname, &format!("{kernel_hostname}\n"))?;
    write(&files.resolv_conf, &resolv_conf(ctx, pod)?)?;
    let share_pid = pod
        .spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    let pid = oci::sandbox::start_infra(&ctx.cfg.shim, &sandbox.netns, &kernel_hostname, share_pid)
        .await
        .map_err(|e| AgentError::Sandbox(format!("starting the infra process: {e}")))?;
    debug!(pod = %name, netns_ms = t_netns.as_millis() as u64, cni_ms = (t_cni - t_netns).as_millis() as u64,
        infra_ms = (t0.elapsed() - t_cni).as_millis() as u64, "sandbox stages");
    sandbox.infra_pid = pid;
    sandbox.infra_start = oci::sandbox::start_time(pid);
    oci::cgroup::add_process(&ctx.cfg.pod_cgroup(&uid), pid).map_err(|e| {
        AgentError::Sandbox(format!("moving the infra process into the pod cgroup: {e}"))
    })?;
    Ok(())
}

/// Releases the sandbox: infra process, CNI attachment (IP lease, veth, port mappings),
/// network namespace, pod cgroup. Each step runs even when an earlier one failed.
pub async fn destroy(ctx: &Ctx, ns: &str, name: &str, uid: &str, sandbox: &SandboxRecord) {
    if sandbox.infra_pid != 0 {
        if let Err(e) = oci::sandbox::stop_infra(sandbox.infra_pid) {
            warn!(pod = %name, error = %e, "stopping the infra process");
        }
    }
    if !sandbox.host_network {
        if let Err(e) = ctx.cni.del(&attachment(ns, name, uid, sandbox)).await {
            warn!(pod = %name, error = %e, "releasing the pod network");
        }
        if let Err(e) = cni::netns::remove(&sandbox.netns) {
            warn!(pod = %name, error = %e, "removing the network namespace");
        }
    }
    if let Err(e) = oci::sandbox::unmount_shm(&pod_dir_of(ctx, uid).join("shm")) {
        warn!(pod = %name, error = %e, "unmounting the pod's /dev/shm");
    }
    if let Err(e) = oci::cgroup::remove_pod_cgroup(&ctx.cfg.pod_cgroup(uid)) {
        warn!(pod = %name, error = %e, "removing the pod cgroup");
    }
}

fn pod_dir_of(ctx: &Ctx, uid: &str) -> PathBuf {
    ctx.cfg.pods_dir().join(uid)
}

/// True while the infra process still holds the pod's namespaces.
pub fn alive(sandbox: &SandboxRecord) -> bool {
    sandbox.infra_pid != 0 && oci::sandbox::is_alive(sandbox.infra_pid, sandbox.infra_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": spec
        }))
        .unwrap()
    }

    const LOCAL: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

    #[test]
    fn hosts_files_as_the_kubelet_writes_them() {
        let ips = vec!["10.42.0.5".to_string()];
        let cases = vec![
            (
                "plain",
                pod(serde_json::json!({"containers": []})),
                format!("{LOCAL}10.42.0.5\tweb-0\n"),
            ),
            (
                "hostname and subdomain: the FQDN first",
                pod(serde_json::json!({"containers": [], "hostname": "db", "subdomain": "pg"})),
                format!("{LOCAL}10.42.0.5\tdb.pg.shop.svc.example.test\tdb\n"),
            ),
            (
                "hostAliases",
                pod(serde_json::json!({"containers": [], "hostAliases": [
                    {"ip": "192.0.2.9", "hostnames": ["a.test", "b.test"]},
                    {"ip": "192.0.2.10", "hostnames": ["c.test"]}]})),
                format!("{LOCAL}10.42.0.5\tweb-0\n\n# Entries added by HostAliases.\n192.0.2.9\ta.test\tb.test\n192.0.2.10\tc.test\n"),
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(hosts_file(&p, &ips, "example.test"), want, "{name}");
        }
        let dual = vec!["10.42.0.5".to_string(), "fd00::5".to_string()];
        assert!(hosts_file(
            &pod(serde_json::json!({"containers": []})),
            &dual,
            "cluster.local"
        )
        .ends_with("10.42.0.5\tweb-0\nfd00::5\tweb-0\n"));
    }

    #[test]
    fn a_host_network_pod_gets_the_nodes_file_with_its_aliases() {
        let p = pod(serde_json::json!({"containers": [], "hostNetwork": true,
            "hostAliases": [{"ip": "192.0.2.9", "hostnames": ["a.test"]}]}));
        assert_eq!(
            host_network_hosts_file(&p, "127.0.0.1 localhost\n"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n192.0.2.9\ta.test\n"
        );
    }

    #[test]
    fn kernel_hostname_and_fqdn() {
        let plain = pod(serde_json::json!({"containers": [], "subdomain": "pg"}));
        assert_eq!(uts_hostname(&plain, "cluster.local").unwrap(), "web-0");
        let fqdn = pod(
            serde_json::json!({"containers": [], "subdomain": "pg", "setHostnameAsFQDN": true}),
        );
        assert_eq!(
            uts_hostname(&fqdn, "example.test").unwrap(),
            "web-0.pg.shop.svc.example.test"
        );
        let long = pod(
            serde_json::json!({"containers": [], "hostname": "a".repeat(40),
            "subdomain": "pg", "setHostnameAsFQDN": true}),
        );
        assert_eq!(
            uts_hostname(&long, "cluster.local").unwrap_err(),
            format!(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN {}.pg.shop.svc.cluster.local is too long (64 characters is the max, 66 characters requested)",
                "a".repeat(40)
            )
        );
        let cut =
            pod(serde_json::json!({"containers": [], "hostname": format!("{}-b", "a".repeat(62))}));
        assert_eq!(hostname(&cut), "a".repeat(62));
    }
}

//! The pod sandbox, built from real parts: a pod cgroup, a pinned network namespace wired by
//! CNI, the pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, and the infra process
//! that holds the network, IPC and UTS namespaces the containers join. Teardown releases all
//! of it, and is safe to repeat (after a crash, half of it may already be gone).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use tracing::{debug, warn};

use crate::record::SandboxRecord;
use crate::{AgentError, Ctx};

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

/// `/etc/hosts` as the kubelet writes it: localhost entries, the pod's IP and name, then
/// `hostAliases`.
pub fn hosts_file(pod: &Pod, ip: Option<&str>) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let name = hostname(pod);
    if let Some(ip) = ip {
        let fqdn = spec.and_then(|s| s.subdomain.as_ref()).map(|sub| {
            format!(
                "{name}.{sub}.{}.svc.cluster.local",
                pod.metadata.namespace.as_deref().unwrap_or("default")
            )
        });
        match fqdn {
            Some(fqdn) => out.push_str(&format!("{ip}\t{fqdn}\t{name}\n")),
            None => out.push_str(&format!("{ip}\t{name}\n")),
        }
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

/// Whether the pod uses the node's network namespace.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The pod's hostname: `spec.hostname` or the pod name, cut to 63 characters as upstream;
/// a `hostNetwork` pod has the node's.
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
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The kernel hostname of the pod's UTS namespace: its hostname, or with
/// `setHostnameAsFQDN` and a subdomain its fully qualified name (cut to 64 characters).
pub fn uts_hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let fqdn = spec.and_then(|s| s.set_hostname_as_fqdn) == Some(true) && !host_network(pod);
    match spec.and_then(|s| s.subdomain.as_deref()).filter(|_| fqdn) {
        Some(sub) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let full = format!("{}.{sub}.{ns}.svc.cluster.local", hostname(pod));
            full.chars().take(64).collect()
        }
        None => hostname(pod),
    }
}

/// resolv.conf for the pod: the host's for now (no cluster DNS yet), or `dnsConfig` with
/// `dnsPolicy: None`.
pub fn resolv_conf(pod: &Pod, host_resolv: &Path) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host = std::fs::read_to_string(host_resolv).unwrap_or_default();
    let mut nameservers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    if policy != "None" {
        for line in host.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => nameservers.extend(words.map(str::to_string)),
                Some("search") => searches.extend(words.map(str::to_string)),
                Some("options") => options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        nameservers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            let Some(name) = o.name.clone() else { continue };
            options.retain(|x| x.split(':').next() != Some(name.as_str()));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for ns in nameservers.iter().take(3) {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

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
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        hosts_file(pod, sandbox.ips.first().map(String::as_str))
    };
    write(&files.hosts, &hosts)?;
    write(&files.hostname, &format!("{}\n", uts_hostname(pod)))?;
    write(&files.resolv_conf, &resolv_conf(pod, &ctx.cfg.resolv_conf))?;
    let share_pid = pod
        .spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    let pid =
        oci::sandbox::start_infra(&ctx.cfg.shim, &sandbox.netns, &uts_hostname(pod), share_pid)
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

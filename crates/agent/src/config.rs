//! The agent's configuration: who the node is, where its state lives, which runtime and
//! network it uses. Filled by the binary from flags.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub node_labels: BTreeMap<String, String>,
    /// Everything the agent keeps: images, pod state, logs, CNI state.
    pub data_dir: PathBuf,
    /// This node's pod CIDR, e.g. `10.42.0.0/24`.
    pub pod_cidr: String,
    /// The whole cluster's pod network (all nodes' pod CIDRs), e.g. `10.42.0.0/16`: traffic
    /// from this node's pods to it is not masqueraded.
    pub cluster_cidr: String,
    /// Name of the Linux bridge the CNI conflist uses.
    pub cni_bridge: String,
    /// Directories searched for CNI plugins.
    pub cni_plugin_dirs: Vec<PathBuf>,
    pub runtime: RuntimeChoice,
    /// `crun://1.8.1`, as the node's `containerRuntimeVersion`.
    pub runtime_version: String,
    /// The `peapod-shim` binary (infra process and container monitors).
    pub shim: PathBuf,
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// The host's resolver configuration (the kubelet's `--resolv-conf`): what pods with
    /// dnsPolicy Default get, and the search domains ClusterFirst pods add to the cluster's.
    pub resolv_conf: PathBuf,
    /// The cluster DNS addresses (the kubelet's `--cluster-dns`), e.g. `10.43.0.10`.
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain without a trailing dot (`cluster.local`).
    pub cluster_domain: String,
    pub started_at: jiff::Timestamp,
    /// The streaming server's port (the kubelet's 10250); 0 picks a free one.
    pub kubelet_port: u16,
    /// The node Lease's duration (the kubelet's `nodeLeaseDurationSeconds`, default 40);
    /// the lease is renewed every quarter of it.
    pub node_lease_duration_seconds: u32,
    /// The cgroup every pod cgroup is created under (the kubelet's `--cgroup-root`), e.g.
    /// `peapod`: pods live at `<root>/pod<uid>` in every hierarchy.
    pub cgroup_root: String,
    /// The most processes one pod may have (the kubelet's `--pod-max-pids`); None: no cap.
    pub pod_max_pids: Option<i64>,
    /// The API server's advertise address: the `kubernetes` Service variables
    /// (`KUBERNETES_SERVICE_HOST`, ...) name it only while no `kubernetes` Service is known
    /// (an API server without Services); otherwise they come from that Service.
    pub api_service: Option<std::net::SocketAddr>,
    /// The pods' MTU (the CNI bridge's `mtu`), from the pod network: the node link's, less
    /// the VXLAN overhead when VXLAN may carry pod traffic. None: the plugin's default.
    pub pod_mtu: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    Crun,
    Runc,
}

impl RuntimeChoice {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeChoice::Crun => "crun",
            RuntimeChoice::Runc => "runc",
        }
    }
}

impl AgentConfig {
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs").join("pods")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
    pub fn netns_dir(&self) -> PathBuf {
        self.data_dir.join("run").join("netns")
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.data_dir.join("run").join("runtime")
    }
    pub fn cni_dir(&self) -> PathBuf {
        self.data_dir.join("cni")
    }
    /// The pod cgroup name under the runtime's cgroup root.
    pub fn pod_cgroup(&self, uid: &str) -> String {
        format!("{}/pod{}", self.cgroup_root, uid.replace('-', ""))
    }
}

//! Pod networking through standard CNI plugins.
//!
//! Owns: the node's default conflist (`bridge` + `host-local` + `portmap`), running a
//! conflist's plugin chain for ADD / DEL / CHECK by the CNI protocol as libcni does (each
//! plugin gets the previous one's result as `prevResult`; DEL runs the chain in reverse with
//! the cached result), bringing up `lo` with the `loopback` plugin, the result cache that lets
//! DEL and CHECK work after an agent restart, reading results into a [`NetworkStatus`], and the
//! pinned network namespaces pods live in ([`netns`]).
//!
//! Does not own: Kubernetes types (the agent hands over plain strings), the infra process that
//! joins the namespace, or any iptables rule of its own — NAT, masquerade and hostPorts are
//! the plugins' business.
//!
//! May depend on: tokio (processes, timeouts), serde/serde_json, libc (namespaces, mounts).
//! Nothing above it in the workspace.

mod cache;
mod config;
mod error;
mod exec;
pub mod netns;
mod result;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

pub use config::{write_default_conflist, DEFAULT_CNI_VERSION};
pub use error::{CniError, PluginCall, PluginError};
pub use result::NetworkStatus;

use cache::{CachedAttachment, CACHE_KIND};
use config::{loopback_network, plugin_stdin, plugin_type, NetworkConfigList};
use exec::{find_plugin, run_plugin, RuntimeArgs};

/// Where plugins are looked for when the agent passes no directories: Debian's package, then
/// the upstream convention.
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// How long one plugin invocation may take before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One pod's attachment to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The sandbox id (stable per pod instance): `CNI_CONTAINERID`.
    pub container_id: String,
    /// The pinned network namespace (see [`netns`]).
    pub netns: PathBuf,
    /// The pod's interface, normally `eth0`.
    pub ifname: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// hostPorts: passed as `runtimeConfig.portMappings` to plugins declaring that capability.
    pub port_mappings: Vec<PortMapping>,
}

/// A hostPort, in the shape of the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (any case: Kubernetes says `TCP`).
    pub protocol: String,
    /// Only this host address; `None` for all.
    pub host_ip: Option<String>,
}

/// The CNI driver for one node: a conflist, the plugin directories and a result cache.
#[derive(Debug, Clone)]
pub struct Cni {
    plugin_dirs: Vec<PathBuf>,
    conflist: PathBuf,
    cache_dir: PathBuf,
    timeout: Duration,
}

/// Which CNI network an operation is about: the pod's conflist on its interface, or loopback on `lo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    Pod,
    Loopback,
}

/// Where a DEL or CHECK takes its chain from.
struct ChainState {
    list: NetworkConfigList,
    prev_result: Option<Value>,
    cni_args: String,
    capability_args: Map<String, Value>,
}

impl Cni {
    /// `plugin_dirs` are searched in order (empty: [`DEFAULT_PLUGIN_DIRS`]); `conflist` must
    /// exist and parse, and every plugin it names (and `loopback`) must be found. `cache_dir`
    /// holds results (`<cache_dir>/results/…`), created on first use.
    pub fn new(
        plugin_dirs: Vec<PathBuf>,
        conflist: PathBuf,
        cache_dir: PathBuf,
    ) -> Result<Cni, CniError> {
        let plugin_dirs = if plugin_dirs.is_empty() {
            DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect()
        } else {
            plugin_dirs
        };
        let list = NetworkConfigList::load(&conflist)?;
        for plugin in list.plugins.iter().map(plugin_type).chain(["loopback"]) {
            find_plugin(plugin, &plugin_dirs)?;
        }
        Ok(Cni {
            plugin_dirs,
            conflist,
            cache_dir,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
        })
    }

    /// Sets the per-plugin timeout (default [`DEFAULT_PLUGIN_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The network name of the current conflist (what cache entries and plugin chains are keyed by).
    pub fn network_name(&self) -> Result<String, CniError> {
        Ok(NetworkConfigList::load(&self.conflist)?.name)
    }

    /// Brings up `lo` (loopback plugin) and attaches `ifname` through the conflist chain.
    /// The conflist is read afresh, so an edited or swapped conflist applies to new pods.
    /// When a plugin of the chain fails, the chain is deleted again (best effort) so no IP
    /// lease leaks, and the plugin's error is returned.
    pub async fn add(&self, attachment: &Attachment) -> Result<NetworkStatus, CniError> {
        validate(attachment)?;
        if !netns::exists(&attachment.netns) {
            return Err(CniError::NetnsMissing {
                path: attachment.netns.clone(),
            });
        }
        let cni_args = cni_args(attachment);
        let capability_args = capability_args(attachment);
        self.add_network(
            attachment,
            Network::Loopback,
            loopback_network(),
            &cni_args,
            &Map::new(),
        )
        .await?;
        let list = NetworkConfigList::load(&self.conflist)?;
        let last_plugin = PluginCall {
            plugin: list
                .plugins
                .last()
                .map(plugin_type)
                .unwrap_or_default()
                .to_string(),
            network: list.name.clone(),
            command: "ADD",
        };
        let result = self
            .add_network(attachment, Network::Pod, list, &cni_args, &capability_args)
            .await?;
        let invalid = |reason: String| CniError::InvalidResult {
            call: last_plugin.clone(),
            reason,
        };
        let result =
            result.ok_or_else(|| invalid("no plugin of the chain printed a result".into()))?;
        let status = result::network_status(&result, &attachment.ifname).map_err(invalid)?;
        tracing::info!(container_id = %attachment.container_id, ips = ?status.ips, "pod network attached");
        Ok(status)
    }

    /// Detaches the pod: runs the chain's DEL in reverse with the config and result cached at
    /// ADD (the current conflist and no `prevResult` when there is no cache), then loopback's.
    /// Idempotent; the cache entry goes only when every plugin succeeded, so a retry redoes it.
    ///
    /// Call it *before* [`netns::remove`]. It also works when the netns is already gone:
    /// plugins then get an empty `CNI_NETNS` (as the spec allows) and release what they can —
    /// the IP lease, portmap's rules — and the veth went with the namespace. But `bridge`
    /// (1.1.1, and upstream since) tears its `ipMasq` chain down only after finding the
    /// interface in the netns, so that case leaves a `CNI-…` masquerade chain in the nat table
    /// until reboot.
    pub async fn del(&self, attachment: &Attachment) -> Result<(), CniError> {
        validate(attachment)?;
        let netns = netns::exists(&attachment.netns).then_some(attachment.netns.as_path());
        for network in [Network::Pod, Network::Loopback] {
            let cache_path = self.cache_path(attachment, network)?;
            let state = match cache::read(&cache_path) {
                Some(entry) => ChainState {
                    list: NetworkConfigList::from_value(&entry.config).map_err(|reason| {
                        CniError::Config {
                            path: cache_path.clone(),
                            reason,
                        }
                    })?,
                    prev_result: Some(entry.result).filter(|r| !r.is_null()),
                    cni_args: entry.cni_args,
                    capability_args: entry.capability_args,
                },
                None => ChainState {
                    list: self.load_network(network)?,
                    prev_result: None,
                    cni_args: cni_args(attachment),
                    capability_args: match network {
                        Network::Pod => capability_args(attachment),
                        Network::Loopback => Map::new(),
                    },
                },
            };
            let args = RuntimeArgs {
                container_id: &attachment.container_id,
                netns,
                ifname: ifname(attachment, network),
                cni_args: &state.cni_args,
            };
            self.run_del(&state, &args).await?;
            cache::remove(&cache_path)?;
        }
        tracing::info!(container_id = %attachment.container_id, "pod network detached");
        Ok(())
    }

    /// Asks every plugin of the chain (and loopback) whether the attachment is still as ADD
    /// left it, with the cached result as `prevResult`. Needs the cache and the netns; skipped
    /// when the conflist sets `disableCheck`.
    ///
    /// Known plugin bug: Debian's `portmap` 1.1.1 fails CHECK for an IPv4-only pod that has
    /// port mappings ("could not check ipv6 dnat: chain … not found"): it looks for its chain
    /// in ip6tables too. The kubelet never calls CHECK; use it for diagnostics only.
    pub async fn check(&self, attachment: &Attachment) -> Result<(), CniError> {
        validate(attachment)?;
        if !netns::exists(&attachment.netns) {
            return Err(CniError::NetnsMissing {
                path: attachment.netns.clone(),
            });
        }
        for network in [Network::Loopback, Network::Pod] {
            let cache_path = self.cache_path(attachment, network)?;
            let entry = cache::read(&cache_path).ok_or_else(|| CniError::Config {
                path: cache_path.clone(),
                reason: "no cached result for CHECK (was ADD run?)".into(),
            })?;
            let list = NetworkConfigList::from_value(&entry.config).map_err(|reason| {
                CniError::Config {
                    path: cache_path.clone(),
                    reason,
                }
            })?;
            if list.disable_check {
                continue;
            }
            if version_tuple(&list.cni_version) < (0, 4, 0) {
                return Err(CniError::Config {
                    path: cache_path,
                    reason: format!("cniVersion {} does not support CHECK", list.cni_version),
                });
            }
            let args = RuntimeArgs {
                container_id: &attachment.container_id,
                netns: Some(&attachment.netns),
                ifname: ifname(attachment, network),
                cni_args: &entry.cni_args,
            };
            let prev_result = Some(entry.result).filter(|r| !r.is_null());
            for plugin in &list.plugins {
                let stdin =
                    plugin_stdin(&list, plugin, prev_result.as_ref(), &entry.capability_args);
                self.invoke(&list, plugin, "CHECK", &args, &stdin).await?;
            }
        }
        Ok(())
    }

    /// Runs the chain's ADD and caches the result. On failure, deletes the chain (best effort).
    async fn add_network(
        &self,
        attachment: &Attachment,
        network: Network,
        list: NetworkConfigList,
        cni_args: &str,
        capability_args: &Map<String, Value>,
    ) -> Result<Option<Value>, CniError> {
        let args = RuntimeArgs {
            container_id: &attachment.container_id,
            netns: Some(&attachment.netns),
            ifname: ifname(attachment, network),
            cni_args,
        };
        let mut prev_result: Option<Value> = None;
        for plugin in &list.plugins {
            let stdin = plugin_stdin(&list, plugin, prev_result.as_ref(), capability_args);
            match self.invoke(&list, plugin, "ADD", &args, &stdin).await {
                // A plugin that prints nothing passes the previous result on.
                Ok(result) => prev_result = result.or(prev_result),
                Err(error) => {
                    let state = ChainState {
                        list,
                        prev_result,
                        cni_args: cni_args.to_string(),
                        capability_args: capability_args.clone(),
                    };
                    if let Err(cleanup) = self.run_del(&state, &args).await {
                        tracing::warn!(container_id = %attachment.container_id, error = %cleanup, "cleaning up after a failed CNI ADD");
                    }
                    return Err(error);
                }
            }
        }
        let entry = CachedAttachment {
            kind: CACHE_KIND.into(),
            container_id: attachment.container_id.clone(),
            if_name: args.ifname.to_string(),
            network_name: list.name.clone(),
            config: list.to_value(),
            cni_args: cni_args.to_string(),
            capability_args: capability_args.clone(),
            result: prev_result.clone().unwrap_or(Value::Null),
        };
        cache::write(&self.cache_path(attachment, network)?, &entry)?;
        Ok(prev_result)
    }

    /// DEL through the chain in reverse; stops at the first failure so a retry runs it all again.
    async fn run_del(&self, state: &ChainState, args: &RuntimeArgs<'_>) -> Result<(), CniError> {
        for plugin in state.list.plugins.iter().rev() {
            let stdin = plugin_stdin(
                &state.list,
                plugin,
                state.prev_result.as_ref(),
                &state.capability_args,
            );
            self.invoke(&state.list, plugin, "DEL", args, &stdin)
                .await?;
        }
        Ok(())
    }

    async fn invoke(
        &self,
        list: &NetworkConfigList,
        plugin: &Map<String, Value>,
        command: &'static str,
        args: &RuntimeArgs<'_>,
        stdin: &Value,
    ) -> Result<Option<Value>, CniError> {
        let plugin_type = plugin_type(plugin);
        let binary = find_plugin(plugin_type, &self.plugin_dirs)?;
        let call = PluginCall {
            plugin: plugin_type.to_string(),
            network: list.name.clone(),
            command,
        };
        run_plugin(&binary, &call, &self.plugin_dirs, args, stdin, self.timeout).await
    }

    fn load_network(&self, network: Network) -> Result<NetworkConfigList, CniError> {
        match network {
            Network::Pod => NetworkConfigList::load(&self.conflist),
            Network::Loopback => Ok(loopback_network()),
        }
    }

    /// The cache file of an attachment. For the pod network it is keyed by the current
    /// conflist's name, which is what libcni does too; renaming the network orphans entries.
    fn cache_path(&self, attachment: &Attachment, network: Network) -> Result<PathBuf, CniError> {
        let name = match network {
            Network::Pod => self.network_name()?,
            Network::Loopback => loopback_network().name,
        };
        Ok(cache::cache_path(
            &self.cache_dir,
            &name,
            &attachment.container_id,
            ifname(attachment, network),
        ))
    }

    /// The cache directory's results folder (for inspection and garbage collection).
    pub fn results_dir(&self) -> PathBuf {
        self.cache_dir.join("results")
    }

    pub fn conflist_path(&self) -> &Path {
        &self.conflist
    }
}

fn ifname(attachment: &Attachment, network: Network) -> &str {
    match network {
        Network::Pod => &attachment.ifname,
        Network::Loopback => "lo",
    }
}

fn validate(attachment: &Attachment) -> Result<(), CniError> {
    config::validate_container_id(&attachment.container_id).map_err(CniError::InvalidAttachment)?;
    config::validate_ifname(&attachment.ifname).map_err(CniError::InvalidAttachment)?;
    if attachment.ifname == "lo" {
        return Err(CniError::InvalidAttachment(
            "the pod interface cannot be \"lo\"".into(),
        ));
    }
    for (key, value) in [
        ("pod namespace", &attachment.pod_namespace),
        ("pod name", &attachment.pod_name),
        ("pod uid", &attachment.pod_uid),
    ] {
        // They go into CNI_ARGS, which is `K=V;K=V`.
        if value.contains([';', '=']) {
            return Err(CniError::InvalidAttachment(format!(
                "{key} {value:?} contains ';' or '='"
            )));
        }
    }
    for mapping in &attachment.port_mappings {
        if !matches!(
            mapping.protocol.to_ascii_lowercase().as_str(),
            "tcp" | "udp" | "sctp"
        ) {
            return Err(CniError::InvalidAttachment(format!(
                "port mapping protocol {:?} is not tcp, udp or sctp",
                mapping.protocol
            )));
        }
        if mapping.container_port == 0 {
            return Err(CniError::InvalidAttachment(
                "port mapping with container port 0".into(),
            ));
        }
    }
    Ok(())
}

/// `CNI_ARGS` as the kubelet's dockershim and CRI runtimes pass them.
fn cni_args(attachment: &Attachment) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        attachment.pod_namespace, attachment.pod_name, attachment.container_id, attachment.pod_uid
    )
}

/// The capability arguments: `portMappings` (hostPort 0 means "no host port", as in the kubelet).
fn capability_args(attachment: &Attachment) -> Map<String, Value> {
    let mappings: Vec<Value> = attachment
        .port_mappings
        .iter()
        .filter(|m| m.host_port != 0)
        .map(|m| {
            let mut mapping = Map::new();
            mapping.insert("hostPort".into(), m.host_port.into());
            mapping.insert("containerPort".into(), m.container_port.into());
            mapping.insert("protocol".into(), m.protocol.to_ascii_lowercase().into());
            if let Some(host_ip) = m.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                mapping.insert("hostIP".into(), host_ip.into());
            }
            Value::Object(mapping)
        })
        .collect();
    let mut args = Map::new();
    if !mappings.is_empty() {
        args.insert("portMappings".into(), Value::Array(mappings));
    }
    args
}

/// `major.minor.patch` as numbers; anything unparsable counts as 0.
fn version_tuple(version: &str) -> (u32, u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attachment() -> Attachment {
        Attachment {
            container_id: "sandbox1".into(),
            netns: PathBuf::from("/run/netns/x"),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "0b1c".into(),
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "TCP".into(),
                    host_ip: None,
                },
                PortMapping {
                    host_port: 0,
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: None,
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: "UDP".into(),
                    host_ip: Some("127.0.0.1".into()),
                },
            ],
        }
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        assert_eq!(
            cni_args(&attachment()),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=0b1c"
        );
    }

    #[test]
    fn port_mappings_skip_zero_host_ports_and_lowercase_protocols() {
        assert_eq!(
            Value::Object(capability_args(&attachment())),
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ]})
        );
        let mut none = attachment();
        none.port_mappings.clear();
        assert!(capability_args(&none).is_empty());
    }

    #[test]
    fn attachments_are_validated() {
        assert!(validate(&attachment()).is_ok());
        let mut bad = attachment();
        bad.container_id = "../x".into();
        assert!(validate(&bad).is_err());
        let mut bad = attachment();
        bad.ifname = "lo".into();
        assert!(validate(&bad).is_err());
        let mut bad = attachment();
        bad.pod_name = "a;b".into();
        assert!(validate(&bad).is_err());
        let mut bad = attachment();
        bad.port_mappings[0].protocol = "icmp".into();
        assert!(validate(&bad).is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_tuple("0.10.0") > version_tuple("0.4.0"));
        assert!(version_tuple("0.3.1") < (0, 4, 0));
        assert_eq!(version_tuple("1.0.0"), (1, 0, 0));
    }

    #[test]
    fn cni_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Cni>();
    }
}

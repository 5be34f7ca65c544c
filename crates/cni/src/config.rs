//! Owns the network configuration: writing the node's default conflist, reading a conflist
//! (or a single-plugin `.conf`, which libcni accepts too), and building the stdin config each
//! plugin of the chain receives (`name`, `cniVersion`, `prevResult`, `runtimeConfig`), as
//! libcni's `buildOneConfig` does.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::CniError;

/// The CNI version the default conflist declares. Debian's containernetworking-plugins 1.1.1
/// (`bridge`, `host-local`, `loopback`, `portmap`) all report 0.1.0 through 1.0.0 as
/// supported (`CNI_COMMAND=VERSION`), so 1.0.0 is the newest they all accept.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";

/// Writes the node's conflist: `bridge` (gateway, hairpin; no per-pod masquerade: the node
/// masquerades its whole pod CIDR with one rule, see the agent) with `host-local` IPAM
/// over `pod_cidr` and a default route, then `portmap` (hostPort via the `portMappings`
/// capability, with SNAT so hairpin and localhost hostPorts work). `mtu`, when given, is the
/// bridge's and the pods' MTU (the pod network's rule). Atomic (temp + rename).
pub fn write_default_conflist(
    path: &Path,
    network_name: &str,
    bridge: &str,
    pod_cidr: &str,
    ipam_dir: &Path,
    mtu: Option<u32>,
) -> Result<(), CniError> {
    let invalid = |reason: String| CniError::Config {
        path: path.to_path_buf(),
        reason,
    };
    validate_network_name(network_name).map_err(invalid)?;
    validate_ifname(bridge).map_err(|reason| invalid(format!("bridge name: {reason}")))?;
    let (network, _) = parse_cidr(pod_cidr).map_err(invalid)?;
    let default_route = if network.is_ipv4() {
        "0.0.0.0/0"
    } else {
        "::/0"
    };
    let mut conflist = json!({
        "cniVersion": DEFAULT_CNI_VERSION,
        "name": network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": default_route }],
                    "dataDir": ipam_dir,
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true
            }
        ]
    });
    if let Some(mtu) = mtu {
        conflist["plugins"][0]["mtu"] = mtu.into();
    }
    let bytes =
        serde_json::to_vec_pretty(&conflist).map_err(|e| invalid(format!("serializing: {e}")))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, creating the parent.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CniError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CniError::io(parent, "create directory", e))?;
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = std::path::PathBuf::from(temp);
    std::fs::write(&temp, bytes).map_err(|e| CniError::io(&temp, "write", e))?;
    std::fs::rename(&temp, path).map_err(|e| CniError::io(path, "rename into place", e))
}

/// A parsed conflist.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<Map<String, Value>>,
}

impl NetworkConfigList {
    pub fn load(path: &Path) -> Result<Self, CniError> {
        let bytes = std::fs::read(path).map_err(|e| CniError::io(path, "read CNI config", e))?;
        Self::parse(&bytes).map_err(|reason| CniError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, String> {
        let object = value.as_object().ok_or("not a JSON object")?;
        let name = string_field(object, "name")?;
        validate_network_name(&name)?;
        let cni_version = string_field(object, "cniVersion")?;
        let plugins = match object.get("plugins") {
            Some(Value::Array(plugins)) => plugins
                .iter()
                .map(|plugin| {
                    plugin
                        .as_object()
                        .cloned()
                        .ok_or("a plugin is not a JSON object")
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err("\"plugins\" is not a list".into()),
            // A single-plugin `.conf`: libcni's ConfListFromConf wraps it the same way.
            None if object.contains_key("type") => vec![object.clone()],
            None => return Err("neither \"plugins\" nor \"type\"".into()),
        };
        if plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        for plugin in &plugins {
            let plugin_type = string_field(plugin, "type")?;
            if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
                return Err(format!("invalid plugin type {plugin_type:?}"));
            }
        }
        let disable_check = object
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            plugins,
        })
    }

    /// The conflist as JSON (what the result cache stores so a later DEL uses the same chain).
    pub fn to_value(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }
}

/// The loopback network run before the main chain, with the same name CRI-O and containerd use.
pub(crate) fn loopback_network() -> NetworkConfigList {
    let mut plugin = Map::new();
    plugin.insert("type".into(), Value::from("loopback"));
    NetworkConfigList {
        name: "cni-loopback".into(),
        cni_version: DEFAULT_CNI_VERSION.into(),
        disable_check: false,
        plugins: vec![plugin],
    }
}

/// Builds the stdin config for one plugin of the chain: the plugin's own object plus the
/// list's `name` and `cniVersion`, the previous plugin's result as `prevResult`, and a
/// `runtimeConfig` holding the capability arguments the plugin declares in `capabilities`.
pub(crate) fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut config = plugin.clone();
    config.insert("name".into(), Value::from(list.name.clone()));
    config.insert("cniVersion".into(), Value::from(list.cni_version.clone()));
    if let Some(prev) = prev_result {
        config.insert("prevResult".into(), prev.clone());
    }
    let runtime_config: Map<String, Value> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, enabled)| enabled.as_bool() == Some(true))
        .filter_map(|(capability, _)| {
            capability_args
                .get(capability)
                .map(|arg| (capability.clone(), arg.clone()))
        })
        .collect();
    if !runtime_config.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    Value::Object(config)
}

pub(crate) fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn string_field(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{key:?} is not a string")),
        None => Err(format!("{key:?} is missing")),
    }
}

/// CNI spec: a network name is alphanumerics plus `_ . -`, and must start with an alphanumeric.
pub(crate) fn validate_network_name(name: &str) -> Result<(), String> {
    validate_identifier("network name", name)
}

/// CNI spec: a container ID is alphanumerics plus `_ . -`, and must start with an alphanumeric.
pub(crate) fn validate_container_id(id: &str) -> Result<(), String> {
    validate_identifier("container id", id)
}

fn validate_identifier(what: &str, value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {value:?} must be alphanumerics, '_', '.', '-', starting with an alphanumeric"
        ))
    }
}

/// CNI spec / Linux: an interface name is 1–15 bytes, not `.`/`..`, without `/`, `:` or whitespace.
pub(crate) fn validate_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!("invalid interface name {name:?}"))
    }
}

/// Parses `ADDRESS/PREFIX`.
pub(crate) fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), String> {
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("CIDR {cidr:?} has no prefix length"))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("CIDR {cidr:?} has an invalid address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("CIDR {cidr:?} has an invalid prefix length"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("CIDR {cidr:?} prefix length exceeds {max}"));
    }
    Ok((address, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_conflist_has_bridge_then_portmap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.d/10-peapod.conflist");
        write_default_conflist(
            &path,
            "peapod",
            "cni0",
            "10.88.0.0/16",
            Path::new("/var/lib/ipam"),
            None,
        )
        .unwrap();
        let list = NetworkConfigList::load(&path).unwrap();
        assert_eq!(list.name, "peapod");
        assert_eq!(list.cni_version, "1.0.0");
        let types: Vec<_> = list.plugins.iter().map(plugin_type).collect();
        assert_eq!(types, ["bridge", "portmap"]);
        let bridge = &list.plugins[0];
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/ipam");
        assert_eq!(list.plugins[1]["capabilities"]["portMappings"], true);
        assert_eq!(bridge.get("mtu"), None);
        // The pod network's MTU goes on the bridge plugin.
        write_default_conflist(
            &path,
            "peapod",
            "cni0",
            "10.88.0.0/16",
            Path::new("/x"),
            Some(1450),
        )
        .unwrap();
        let list = NetworkConfigList::load(&path).unwrap();
        assert_eq!(list.plugins[0]["mtu"], 1450);
    }

    #[test]
    fn default_conflist_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.conflist");
        let ipam = Path::new("/tmp");
        assert!(write_default_conflist(&path, "peapod", "br0", "10.88.0.0", ipam, None).is_err());
        assert!(
            write_default_conflist(&path, "peapod", "br0", "10.88.0.0/33", ipam, None).is_err()
        );
        assert!(
            write_default_conflist(&path, "bad name", "br0", "10.88.0.0/16", ipam, None).is_err()
        );
        assert!(write_default_conflist(
            &path,
            "peapod",
            "a-very-long-bridge",
            "10.88.0.0/16",
            ipam,
            None
        )
        .is_err());
        assert!(!path.exists());
    }

    #[test]
    fn ipv6_pod_cidr_gets_ipv6_default_route() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.conflist");
        write_default_conflist(
            &path,
            "peapod",
            "br0",
            "fd00:10::/64",
            Path::new("/tmp"),
            None,
        )
        .unwrap();
        let list = NetworkConfigList::load(&path).unwrap();
        assert_eq!(list.plugins[0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn single_plugin_conf_is_wrapped_into_a_list() {
        let list = NetworkConfigList::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"ptp","ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(plugin_type(&list.plugins[0]), "ptp");
    }

    #[test]
    fn invalid_conflists_are_rejected() {
        for bad in [
            &br#"[]"#[..],
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../evil"}]}"#,
            br#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
            br#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
        ] {
            assert!(
                NetworkConfigList::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn plugin_stdin_injects_name_version_prev_result_and_declared_capabilities() {
        let list = NetworkConfigList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"bridge"},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
        )
        .unwrap();
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]),
        );
        caps.insert("bandwidth".into(), json!({"ingressRate": 1}));

        let bridge = plugin_stdin(&list, &list.plugins[0], None, &caps);
        assert_eq!(
            bridge,
            json!({"type": "bridge", "name": "net", "cniVersion": "1.0.0"})
        );

        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let portmap = plugin_stdin(&list, &list.plugins[1], Some(&prev), &caps);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": caps["portMappings"]})
        );
    }

    #[test]
    fn identifiers_follow_the_spec() {
        assert!(validate_container_id("abc-123_x.y").is_ok());
        assert!(validate_container_id("").is_err());
        assert!(validate_container_id("-abc").is_err());
        assert!(validate_container_id("a/b").is_err());
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("eth 0").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
    }
}

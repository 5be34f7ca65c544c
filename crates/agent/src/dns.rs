//! A pod's `/etc/resolv.conf`, as the kubelet's DNS configurer decides it
//! (`pkg/kubelet/network/dns`) and containerd writes it: the policy picks a base (the
//! cluster's nameservers and search path, the host's resolver configuration, or nothing),
//! the pod's `dnsConfig` is merged on top, and the result is cut to what libc resolvers
//! take, with a warning event when something had to go.
//!
//! ```text
//!  host resolv.conf (--resolv-conf) ─▶ parse ─▶ base by dnsPolicy
//!     ClusterFirst (no hostNetwork), ClusterFirstWithHostNet ─▶ cluster DNS, cluster search
//!         + host search, ndots:5 (no --cluster-dns: MissingClusterDNS, then as Default)
//!     Default, ClusterFirst with hostNetwork ─▶ the host's (empty --resolv-conf: 127.0.0.1)
//!     None ─▶ nothing
//!  ─▶ + dnsConfig (nameservers, searches appended without duplicates; options by name)
//!  ─▶ limits (3 nameservers, 32 domains, 2048 characters: DNSConfigForming) ─▶ render
//! ```
//!
//! Pure: reading the host's file and recording events are the caller's.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// The most nameservers a resolver uses (glibc's MAXNS; upstream's `MaxDNSNameservers`).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains (upstream's `MaxDNSSearchPaths`).
pub const MAX_SEARCH_PATHS: usize = 32;
/// The longest search line, domains joined by spaces (upstream's `MaxDNSSearchListChars`).
pub const MAX_SEARCH_CHARS: usize = 2048;
/// A search domain longer than a DNS subdomain may be is dropped (some glibc versions abort
/// on one).
const MAX_DOMAIN_LEN: usize = 253;

/// What the node knows about DNS (the kubelet's `--cluster-dns`, `--cluster-domain`,
/// `--resolv-conf`).
#[derive(Debug, Clone, Copy)]
pub struct NodeDns<'a> {
    pub cluster_dns: &'a [IpAddr],
    pub cluster_domain: &'a str,
    /// Whether `--resolv-conf` names a file at all (empty: lookups go to the node itself).
    pub has_resolv_conf: bool,
    /// The node's IP, for the empty `--resolv-conf` case (`::1` for an IPv6 node).
    pub node_ip: IpAddr,
}

/// Nameservers, search domains and options, in the order they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A warning the kubelet records while forming the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsEvent {
    /// `MissingClusterDNS`, on the node and on the pod.
    MissingClusterDns { node: String, pod: String },
    /// `DNSConfigForming` on the pod.
    Forming(String),
}

/// Parses a resolv.conf as the kubelet does: `nameserver` lines accumulate (the first
/// address of each), the last `search` line wins (a trailing dot dropped, `.` skipped),
/// `options` accumulate with a later option replacing an earlier one of the same name.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut out = DnsConfig::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => out.servers.extend(fields.next().map(str::to_string)),
            Some("search") => {
                out.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                    .collect();
            }
            Some("options") => {
                for option in fields {
                    set_option(&mut out.options, option.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

/// Sets an option, replacing one of the same name where it stands. Upstream keeps options in
/// a Go map, so its order is unspecified; first-seen order is ours.
fn set_option(options: &mut Vec<String>, option: String) {
    match options
        .iter_mut()
        .find(|o| option_name(o) == option_name(&option))
    {
        Some(slot) => *slot = option,
        None => options.push(option),
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_label(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// The pod's resolver configuration and the warnings met forming it. `host` is the parsed
/// `--resolv-conf` (empty when there is none).
pub fn pod_dns(pod: &Pod, node: &NodeDns, host: DnsConfig) -> (DnsConfig, Vec<DnsEvent>) {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut events = Vec::new();
    let mut cfg = host;
    // What the API server lets through is one of the four; anything else is taken as
    // ClusterFirst, as upstream does.
    let cluster = match policy {
        "None" => {
            cfg = DnsConfig::default();
            false
        }
        "Default" => false,
        "ClusterFirst" => !host_network,
        _ => true,
    };
    let mut use_host = policy == "Default" || (policy == "ClusterFirst" && host_network);
    if cluster {
        if node.cluster_dns.is_empty() {
            let msg = "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
            events.push(DnsEvent::MissingClusterDns {
                node: msg.to_string(),
                pod: format!("pod: {:?}. {msg}", pod_label(pod)),
            });
            use_host = true;
        } else {
            cfg.servers = node.cluster_dns.iter().map(IpAddr::to_string).collect();
            if !node.cluster_domain.is_empty() {
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                let domain = node.cluster_domain;
                let mut searches = vec![
                    format!("{ns}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_string(),
                ];
                push_unique(&mut searches, std::mem::take(&mut cfg.searches));
                // Upstream removes duplicates from the cluster's own three too.
                let mut unique = Vec::new();
                push_unique(&mut unique, searches);
                cfg.searches = unique;
            }
            cfg.options = vec!["ndots:5".to_string()];
        }
    }
    if use_host && !node.has_resolv_conf {
        // No resolver configuration: lookups go to the node itself, not searched.
        cfg.servers.push(
            if node.node_ip.is_ipv6() {
                "::1"
            } else {
                "127.0.0.1"
            }
            .to_string(),
        );
        cfg.searches = vec![".".to_string()];
    }
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        let mut servers = Vec::new();
        push_unique(&mut servers, std::mem::take(&mut cfg.servers));
        push_unique(&mut servers, extra.nameservers.clone().unwrap_or_default());
        cfg.servers = servers;
        let mut searches = Vec::new();
        push_unique(&mut searches, std::mem::take(&mut cfg.searches));
        push_unique(&mut searches, extra.searches.clone().unwrap_or_default());
        cfg.searches = searches;
        let mut options = Vec::new();
        for o in std::mem::take(&mut cfg.options) {
            set_option(&mut options, o);
        }
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            let option = match o.value.as_deref().filter(|v| !v.is_empty()) {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            set_option(&mut options, option);
        }
        cfg.options = options;
    }
    fit_limits(&mut cfg, &mut events);
    (cfg, events)
}

/// Cuts the configuration to what resolvers take, as upstream's `formDNSConfigFitsLimits`.
fn fit_limits(cfg: &mut DnsConfig, events: &mut Vec<DnsEvent>) {
    if cfg.servers.len() > MAX_NAMESERVERS {
        cfg.servers.truncate(MAX_NAMESERVERS);
        events.push(DnsEvent::Forming(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            cfg.servers.join(" ")
        )));
    }
    let mut exceeded = false;
    if cfg.searches.len() > MAX_SEARCH_PATHS {
        cfg.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = cfg.searches.len();
    cfg.searches.retain(|s| s.len() <= MAX_DOMAIN_LEN);
    exceeded |= cfg.searches.len() != before;
    let line_len =
        |s: &[String]| s.iter().map(String::len).sum::<usize>() + s.len().saturating_sub(1);
    if line_len(&cfg.searches) > MAX_SEARCH_CHARS {
        while line_len(&cfg.searches) > MAX_SEARCH_CHARS {
            cfg.searches.pop();
        }
        exceeded = true;
    }
    if exceeded {
        events.push(DnsEvent::Forming(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            cfg.searches.join(" ")
        )));
    }
}

/// The file containerd writes for the configuration: `search`, then one `nameserver` line
/// each, then `options`. None when all three are empty (containerd then copies the host's
/// `/etc/resolv.conf`).
pub fn render(cfg: &DnsConfig) -> Option<String> {
    let mut out = String::new();
    if !cfg.searches.is_empty() {
        out.push_str(&format!("search {}\n", cfg.searches.join(" ")));
    }
    for server in &cfg.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !cfg.options.is_empty() {
        out.push_str(&format!("options {}\n", cfg.options.join(" ")));
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    const HOST: &str = "# generated\nnameserver 127.0.0.1\nnameserver 192.0.2.53 ignored\nsearch example.test corp.test.\noptions timeout:2 rotate\noptions timeout:3\n";
    const CLUSTER_DNS: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::new(10, 43, 0, 10))];

    fn node() -> NodeDns<'static> {
        NodeDns {
            cluster_dns: &CLUSTER_DNS,
            cluster_domain: "cluster.local",
            has_resolv_conf: true,
            node_ip: "192.0.2.1".parse().unwrap(),
        }
    }

    fn pod(policy: Option<&str>, host_network: bool, dns: Option<PodDNSConfig>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("u1".into());
        p.spec = Some(PodSpec {
            dns_policy: policy.map(str::to_string),
            host_network: host_network.then_some(true),
            dns_config: dns,
            ..Default::default()
        });
        p
    }

    fn option(name: &str, value: Option<&str>) -> PodDNSConfigOption {
        PodDNSConfigOption {
            name: Some(name.into()),
            value: value.map(str::to_string),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_host_file_as_the_kubelet() {
        let cfg = parse_resolv_conf(HOST);
        assert_eq!(cfg.servers, strings(&["127.0.0.1", "192.0.2.53"]));
        assert_eq!(cfg.searches, strings(&["example.test", "corp.test"]));
        assert_eq!(cfg.options, strings(&["timeout:3", "rotate"]));
        let last_search = parse_resolv_conf("search a.test\nsearch b.test . c.test.\n");
        assert_eq!(last_search.searches, strings(&["b.test", "c.test"]));
    }

    #[test]
    fn resolv_conf_per_policy() {
        let custom = PodDNSConfig {
            nameservers: Some(strings(&["192.0.2.10", "127.0.0.1"])),
            searches: Some(strings(&["extra.test", "example.test"])),
            options: Some(vec![option("ndots", Some("2")), option("edns0", None)]),
        };
        let cases: Vec<(&str, Pod, &str)> = vec![
            (
                "ClusterFirst (the default)",
                pod(None, false, None),
                "search shop.svc.cluster.local svc.cluster.local cluster.local example.test corp.test\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                "ClusterFirst",
                pod(Some("ClusterFirst"), false, None),
                "search shop.svc.cluster.local svc.cluster.local cluster.local example.test corp.test\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                "ClusterFirst with hostNetwork is Default",
                pod(Some("ClusterFirst"), true, None),
                "search example.test corp.test\nnameserver 127.0.0.1\nnameserver 192.0.2.53\noptions timeout:3 rotate\n",
            ),
            (
                "ClusterFirstWithHostNet",
                pod(Some("ClusterFirstWithHostNet"), true, None),
                "search shop.svc.cluster.local svc.cluster.local cluster.local example.test corp.test\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                "Default",
                pod(Some("Default"), false, None),
                "search example.test corp.test\nnameserver 127.0.0.1\nnameserver 192.0.2.53\noptions timeout:3 rotate\n",
            ),
            (
                "None with dnsConfig",
                pod(Some("None"), false, Some(custom.clone())),
                "search extra.test example.test\nnameserver 192.0.2.10\nnameserver 127.0.0.1\noptions ndots:2 edns0\n",
            ),
            (
                "ClusterFirst with dnsConfig",
                pod(None, false, Some(custom.clone())),
                "search shop.svc.cluster.local svc.cluster.local cluster.local example.test corp.test extra.test\nnameserver 10.43.0.10\nnameserver 192.0.2.10\nnameserver 127.0.0.1\noptions ndots:2 edns0\n",
            ),
            (
                "Default with dnsConfig: duplicates go, options by name",
                pod(Some("Default"), false, Some(PodDNSConfig {
                    nameservers: Some(strings(&["127.0.0.1"])),
                    searches: None,
                    options: Some(vec![option("rotate", None), option("timeout", Some("1"))]),
                })),
                "search example.test corp.test\nnameserver 127.0.0.1\nnameserver 192.0.2.53\noptions timeout:1 rotate\n",
            ),
        ];
        for (name, pod, want) in cases {
            let (cfg, events) = pod_dns(&pod, &node(), parse_resolv_conf(HOST));
            assert_eq!(render(&cfg).as_deref(), Some(want), "{name}");
            assert!(events.is_empty(), "{name}: {events:?}");
        }
    }

    #[test]
    fn no_cluster_dns_falls_back_to_default_with_an_event() {
        let node = NodeDns {
            cluster_dns: &[],
            ..node()
        };
        let (cfg, events) = pod_dns(&pod(None, false, None), &node, parse_resolv_conf(HOST));
        assert_eq!(cfg.servers, strings(&["127.0.0.1", "192.0.2.53"]));
        assert_eq!(cfg.searches, strings(&["example.test", "corp.test"]));
        let msg = "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
        assert_eq!(
            events,
            vec![DnsEvent::MissingClusterDns {
                node: msg.into(),
                pod: format!("pod: \"web_shop(u1)\". {msg}"),
            }]
        );
    }

    #[test]
    fn no_resolv_conf_points_at_the_node_itself() {
        let node = NodeDns {
            has_resolv_conf: false,
            ..node()
        };
        let (cfg, _) = pod_dns(
            &pod(Some("Default"), false, None),
            &node,
            DnsConfig::default(),
        );
        assert_eq!(
            render(&cfg).as_deref(),
            Some("search .\nnameserver 127.0.0.1\n")
        );
        // The cluster policy does not need the host's file.
        let (cfg, _) = pod_dns(&pod(None, false, None), &node, DnsConfig::default());
        assert_eq!(
            render(&cfg).as_deref(),
            Some("search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n")
        );
    }

    #[test]
    fn no_cluster_domain_keeps_the_host_search() {
        let node = NodeDns {
            cluster_domain: "",
            ..node()
        };
        let (cfg, _) = pod_dns(&pod(None, false, None), &node, parse_resolv_conf(HOST));
        assert_eq!(cfg.searches, strings(&["example.test", "corp.test"]));
        assert_eq!(cfg.servers, strings(&["10.43.0.10"]));
    }

    #[test]
    fn limits_cut_with_an_event() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.test")).collect();
        let p = pod(
            Some("None"),
            false,
            Some(PodDNSConfig {
                nameservers: Some(strings(&[
                    "192.0.2.1",
                    "192.0.2.2",
                    "192.0.2.3",
                    "192.0.2.4",
                ])),
                searches: Some(many.clone()),
                options: None,
            }),
        );
        let (cfg, events) = pod_dns(&p, &node(), DnsConfig::default());
        assert_eq!(
            cfg.servers,
            strings(&["192.0.2.1", "192.0.2.2", "192.0.2.3"])
        );
        assert_eq!(cfg.searches, many[..32].to_vec());
        assert_eq!(
            events,
            vec![
                DnsEvent::Forming("Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 192.0.2.1 192.0.2.2 192.0.2.3".into()),
                DnsEvent::Forming(format!("Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}", many[..32].join(" "))),
            ]
        );
        // Long domains: one over 253 characters goes, and the line is cut to 2048.
        let long: Vec<String> = (0..12)
            .map(|i| format!("{i:0>200}"))
            .chain([format!("{:x>254}", "")])
            .collect();
        let p = pod(
            Some("None"),
            false,
            Some(PodDNSConfig {
                nameservers: Some(strings(&["192.0.2.1"])),
                searches: Some(long.clone()),
                options: None,
            }),
        );
        let (cfg, events) = pod_dns(&p, &node(), DnsConfig::default());
        assert_eq!(cfg.searches, long[..10].to_vec());
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn nothing_to_write_is_none() {
        assert_eq!(render(&DnsConfig::default()), None);
    }
}

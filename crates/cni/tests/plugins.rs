//! ADD / DEL / CHECK with Debian's real CNI plugins (bridge, host-local, loopback, portmap).
//! Needs root. Every test owns its bridge (`pptestXXXX`), an unused 10.2xx.y.0/24, and its
//! IPAM/cache dirs; the `TestNet` guard cleans up even when an assertion fails.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cni::{netns, Cni, CniError, PortMapping};
use common::*;

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    ip.to_string().starts_with(cidr.trim_end_matches("0/24"))
}

fn ping(from_netns: &std::path::Path, to: IpAddr) -> bool {
    run_ok(
        "nsenter",
        &[
            &format!("--net={}", from_netns.display()),
            BUSYBOX,
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            &to.to_string(),
        ],
    )
}

#[tokio::test]
async fn two_pods_get_distinct_ips_and_reach_each_other() {
    let net = TestNet::new();
    let a = net.pod("a", vec![]);
    let b = net.pod("b", vec![]);

    let status_a = net.cni.add(&a).await.unwrap();
    let status_b = net.cni.add(&b).await.unwrap();
    let (ip_a, ip_b) = (status_a.ips[0], status_b.ips[0]);
    assert_ne!(ip_a, ip_b);
    assert!(
        in_cidr(ip_a, &net.pod_cidr) && in_cidr(ip_b, &net.pod_cidr),
        "{ip_a} {ip_b} {}",
        net.pod_cidr
    );
    assert_eq!(status_a.gateway, Some(net.gateway()));
    assert!(status_a.interface_mac.is_some());
    assert!(net.lease_path(ip_a).exists() && net.lease_path(ip_b).exists());
    assert_eq!(net.bridge_ports().len(), 2, "{:?}", net.bridge_ports());

    // lo is up inside (the loopback plugin ran).
    let lo = run(
        "nsenter",
        &[
            &format!("--net={}", a.netns.display()),
            BUSYBOX,
            "ip",
            "addr",
            "show",
            "lo",
        ],
    );
    assert!(lo.contains("UP") && lo.contains("127.0.0.1"), "{lo}");

    assert!(ping(&a.netns, ip_b), "a cannot ping b");
    assert!(ping(&b.netns, ip_a), "b cannot ping a");
    let _greeter = Greeter::start(&b.netns, 8080, "hello from b");
    let target = SocketAddr::new(ip_b, 8080);
    let greeting = in_netns(&a.netns, move || fetch_greeting(target)).unwrap();
    assert_eq!(greeting, "hello from b");

    net.cni.check(&a).await.unwrap();
    net.cni.check(&b).await.unwrap();

    // CHECK notices when the interface no longer is what ADD made (its MAC changed); the
    // plugin's CNI error comes through. (Deleting eth0 instead would make bridge's DEL skip
    // its masquerade teardown, as when the netns is gone.)
    assert!(run_ok(
        "nsenter",
        &[
            &format!("--net={}", b.netns.display()),
            BUSYBOX,
            "ip",
            "link",
            "set",
            "eth0",
            "address",
            "02:00:00:aa:bb:cc",
        ],
    ));
    let err = net.cni.check(&b).await.unwrap_err();
    assert!(matches!(err, CniError::Plugin { .. }), "{err}");
    assert!(err.to_string().contains("type=\"bridge\""), "{err}");

    for pod in [&a, &b] {
        net.cni.del(pod).await.unwrap();
        // Idempotent.
        net.cni.del(pod).await.unwrap();
        assert!(
            iptables_lines_with(&pod.container_id).is_empty(),
            "{:?}",
            iptables_lines_with(&pod.container_id)
        );
    }
    assert!(!net.lease_path(ip_a).exists() && !net.lease_path(ip_b).exists());
    assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
    assert!(net.cache_entries().is_empty(), "{:?}", net.cache_entries());
}

#[tokio::test]
async fn del_after_the_netns_is_gone_releases_the_ip_and_portmap_rules() {
    let net = TestNet::new();
    let mapping = PortMapping {
        host_port: free_host_port(),
        container_port: 8080,
        protocol: "TCP".into(),
        host_ip: None,
    };
    let pod = net.pod("gone", vec![mapping]);
    let ip = net.cni.add(&pod).await.unwrap().ips[0];
    assert!(net.lease_path(ip).exists());
    assert!(iptables_lines_with(&pod.container_id)
        .iter()
        .any(|l| l.contains("dnat")));

    netns::remove(&pod.netns).unwrap();
    // The veth dies with its namespace (the kernel tears namespaces down asynchronously).
    assert!(
        wait_until(Duration::from_secs(10), || net.bridge_ports().is_empty()),
        "{:?}",
        net.bridge_ports()
    );

    net.cni.del(&pod).await.unwrap();
    net.cni.del(&pod).await.unwrap();
    assert!(!net.lease_path(ip).exists());
    assert!(net.cache_entries().is_empty(), "{:?}", net.cache_entries());
    // portmap's per-container rules are gone. bridge 1.1.1 leaves its ipMasq chain when DEL
    // has no netns (it only tears masquerade down after finding the interface), which is why
    // the agent must DEL before removing the netns; the guard removes the leftover here.
    let leftover = iptables_lines_with(&pod.container_id);
    assert!(
        !leftover
            .iter()
            .any(|l| l.contains("dnat") || l.contains("CNI-DN")),
        "{leftover:?}"
    );
}

#[tokio::test]
async fn host_port_reaches_the_pod_from_the_host() {
    let net = TestNet::new();
    let host_port = free_host_port();
    let pod = net.pod(
        "web",
        vec![PortMapping {
            host_port,
            container_port: 8080,
            protocol: "tcp".into(),
            host_ip: None,
        }],
    );
    let ip = net.cni.add(&pod).await.unwrap().ips[0];
    let _greeter = Greeter::start(&pod.netns, 8080, "hello from web");

    // Directly by pod IP from the host.
    assert_eq!(
        fetch_greeting(SocketAddr::new(ip, 8080)).unwrap(),
        "hello from web"
    );
    // Through the hostPort on the host's bridge address.
    let via_bridge = SocketAddr::new(net.gateway(), host_port);
    assert_eq!(fetch_greeting(via_bridge).unwrap(), "hello from web");
    // Through the hostPort on 127.0.0.1: portmap (snat: true) sets route_localnet on the
    // bridge so DNATed loopback traffic may leave through it, and masquerades it.
    let route_localnet = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        net.bridge
    ))
    .unwrap_or_default();
    assert_eq!(route_localnet.trim(), "1");
    let via_loopback = SocketAddr::from(([127, 0, 0, 1], host_port));
    assert_eq!(fetch_greeting(via_loopback).unwrap(), "hello from web");

    net.cni.del(&pod).await.unwrap();
    assert!(
        iptables_lines_with(&pod.container_id).is_empty(),
        "{:?}",
        iptables_lines_with(&pod.container_id)
    );
    assert!(
        fetch_greeting(via_bridge).is_err(),
        "hostPort still forwards after DEL"
    );
}

#[tokio::test]
async fn del_from_a_fresh_cni_uses_the_cached_config_and_result() {
    let net = TestNet::new();
    let pod = net.pod(
        "restart",
        vec![PortMapping {
            host_port: free_host_port(),
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: Some("127.0.0.1".into()),
        }],
    );
    let ip = net.cni.add(&pod).await.unwrap().ips[0];
    assert!(!iptables_lines_with(&pod.container_id).is_empty());
    let cached = std::fs::read_to_string(
        net.cache_dir
            .join("results")
            .join(format!("{}-{}-eth0", net.network, pod.container_id)),
    )
    .unwrap();
    assert!(cached.contains(&ip.to_string()), "{cached}");

    // "Agent restart": a new Cni value, and the conflist no longer has portmap. Only the cached
    // config can still tell DEL to remove the hostPort rules.
    let mut conflist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&net.conflist).unwrap()).unwrap();
    conflist["plugins"].as_array_mut().unwrap().truncate(1);
    std::fs::write(&net.conflist, serde_json::to_vec(&conflist).unwrap()).unwrap();
    let restarted = Cni::new(vec![], net.conflist.clone(), net.cache_dir.clone()).unwrap();

    // No CHECK here: portmap 1.1.1's CHECK looks for its chain in ip6tables too and fails
    // for an IPv4-only pod with port mappings (fixed upstream in later releases).
    restarted.del(&pod).await.unwrap();
    assert!(
        iptables_lines_with(&pod.container_id).is_empty(),
        "{:?}",
        iptables_lines_with(&pod.container_id)
    );
    assert!(!net.lease_path(ip).exists());
    assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
    assert!(net.cache_entries().is_empty(), "{:?}", net.cache_entries());
}

#[tokio::test]
async fn del_without_cache_uses_the_current_conflist() {
    let net = TestNet::new();
    // Never added, netns never created: nothing to do, and no error.
    let never = net.pod("never", vec![]);
    netns::remove(&never.netns).unwrap();
    net.cni.del(&never).await.unwrap();

    let pod = net.pod("nocache", vec![]);
    let ip = net.cni.add(&pod).await.unwrap().ips[0];
    std::fs::remove_dir_all(net.cache_dir.join("results")).unwrap();
    let err = net.cni.check(&pod).await.unwrap_err();
    assert!(err.to_string().contains("no cached result"), "{err}");
    net.cni.del(&pod).await.unwrap();
    assert!(!net.lease_path(ip).exists());
    assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
    assert!(
        iptables_lines_with(&pod.container_id).is_empty(),
        "{:?}",
        iptables_lines_with(&pod.container_id)
    );
}

#[tokio::test]
async fn plugin_errors_carry_the_cni_error_object() {
    let net = TestNet::new();
    // A conflist whose IPAM range is exhausted after one pod: a /30 has one usable address
    // besides the gateway.
    let small_cidr = net.pod_cidr.replace("0/24", "0/30");
    cni::write_default_conflist(
        &net.conflist,
        &net.network,
        &net.bridge,
        &small_cidr,
        &net.ipam_dir,
        None,
    )
    .unwrap();
    let first = net.pod("first", vec![]);
    let second = net.pod("second", vec![]);
    net.cni.add(&first).await.unwrap();

    let err = net.cni.add(&second).await.unwrap_err();
    let plugin_error = err
        .plugin_error()
        .unwrap_or_else(|| panic!("not a plugin error: {err}"));
    assert!(plugin_error.code > 0, "{plugin_error:?}");
    assert!(!plugin_error.msg.is_empty(), "{plugin_error:?}");
    assert!(
        err.to_string().starts_with("plugin type=\"bridge\""),
        "{err}"
    );
    // The failed ADD cleaned up after itself: only the first pod is on the bridge.
    assert_eq!(net.bridge_ports().len(), 1, "{:?}", net.bridge_ports());

    // A missing netns is refused before any plugin runs.
    netns::remove(&second.netns).unwrap();
    assert!(matches!(
        net.cni.add(&second).await,
        Err(CniError::NetnsMissing { .. })
    ));
    net.cni.del(&second).await.unwrap();
    net.cni.del(&first).await.unwrap();
    assert!(iptables_lines_with(&first.container_id).is_empty());
    assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
}

#[test]
fn new_refuses_missing_plugins_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let conflist = dir.path().join("x.conflist");
    assert!(matches!(
        Cni::new(vec![], conflist.clone(), dir.path().join("cache")),
        Err(CniError::Io { .. })
    ));
    std::fs::write(
        &conflist,
        br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    assert!(matches!(
        Cni::new(vec![], conflist, dir.path().join("cache")),
        Err(CniError::PluginNotFound { .. })
    ));
}

//! The cost of one pod-network sync against the real kernel, in a throwaway network namespace
//! (root): `cargo run -p podnet --example sync_bench [peers...]`. For each peer count and
//! backend it times a first sync (everything written), an in-step sync (read, plan, nothing
//! written: what a Node heartbeat would cost were it not skipped before reading), a sync after
//! one peer changed, and the cleanup; and checks that the kernel then reads back as planned.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use podnet::ip::Tools;
use podnet::peers::{Peer, Vtep};
use podnet::plan::{desired, Local};
use podnet::script::script;
use podnet::{Cidr, Mac, Mode};

const ROUNDS: usize = 7;

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("failed: {}", args.join(" "));
        std::process::exit(1);
    }
}

fn peers(n: usize, vxlan: bool) -> Vec<Peer> {
    (0..n)
        .map(|i| {
            let i = i as u32 + 1;
            let ip = if vxlan {
                // Another subnet: only VXLAN reaches it.
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 251, 0, 0)) + i)
            } else {
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 10)) + i)
            };
            Peer {
                name: format!("peer-{i}"),
                pod_cidr: Cidr::new(
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 44, 0, 0)) + (i << 8)),
                    24,
                ),
                ip,
                vtep: Some(Vtep {
                    vni: 1,
                    mac: Mac([0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                }),
            }
        })
        .collect()
}

async fn sync(tools: &Tools, local: &Local, mode: Mode, peers: &[Peer]) -> usize {
    let observed = tools.read().await.expect("read");
    let want = desired(mode, local, peers, observed.vxlan_device().is_some(), None);
    let s = script(&observed, &want);
    tools.ip_batch(&s.ip).await.expect("ip batch");
    tools.bridge_batch(&s.bridge).await.expect("bridge batch");
    s.ip.len() + s.bridge.len()
}

/// The percentiles line, and the `figure` line `make bench` collects (p50).
fn pct(mut v: Vec<Duration>, figure: &str) -> String {
    v.sort();
    let at = |p: usize| v[(v.len() - 1) * p / 100].as_secs_f64() * 1000.0;
    println!(
        "figure {{\"name\": \"podnet_sync/{figure}/p50_ms\", \"value\": {:.3}, \"better\": \"lower\"}}",
        at(50)
    );
    format!(
        "p50 {:7.1} ms  p90 {:7.1} ms  max {:7.1} ms",
        at(50),
        at(90),
        at(100)
    )
}

#[tokio::main]
async fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![10, 100, 1000]
    } else {
        counts
    };
    let ns = format!("pnbench{}", std::process::id());
    sh(&["ip", "netns", "add", &ns]);
    let tools = Tools::in_netns(&ns);
    let n = |args: &[&str]| {
        let mut v = vec!["ip", "-n", ns.as_str()];
        v.extend_from_slice(args);
        sh(&v);
    };
    n(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    n(&["addr", "add", "10.250.0.2/16", "dev", "veth0"]);
    n(&["link", "set", "veth0", "up"]);
    n(&["link", "set", "veth1", "up"]);
    let observed = tools.read().await.expect("read");
    let local = Local {
        node_ip: Ipv4Addr::new(10, 250, 0, 2),
        link: "veth0".into(),
        link_mtu: 1500,
        loopback: false,
        subnet: "10.250.0.0/16".parse().unwrap(),
        addrs: observed.local_addrs(),
        pod_cidr: "10.44.0.0/24".parse().unwrap(),
    };
    println!(
        "{:>6} {:<8} {:<10} time ({ROUNDS} rounds)",
        "peers", "backend", "sync"
    );
    for &count in &counts {
        for (backend, mode, vx) in [("host-gw", Mode::Auto, false), ("vxlan", Mode::Auto, true)] {
            let all = peers(count, vx);
            let mut changed = all.clone();
            if let Some(p) = changed.first_mut() {
                p.ip = Ipv4Addr::from(u32::from(p.ip) + 5000);
            }
            let (mut first, mut in_step, mut one, mut clean) = (vec![], vec![], vec![], vec![]);
            let mut written = 0;
            for _ in 0..ROUNDS {
                let t = Instant::now();
                written = sync(&tools, &local, mode, &all).await;
                first.push(t.elapsed());
                let t = Instant::now();
                let again = sync(&tools, &local, mode, &all).await;
                in_step.push(t.elapsed());
                if again != 0 {
                    eprintln!("{backend} x{count}: the kernel did not read back as planned ({again} commands)");
                    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
                    std::process::exit(1);
                }
                let t = Instant::now();
                sync(&tools, &local, mode, &changed).await;
                one.push(t.elapsed());
                let t = Instant::now();
                podnet::cleanup_with(&tools).await.expect("cleanup");
                clean.push(t.elapsed());
                let left = tools.read().await.expect("read");
                assert!(left.routes.is_empty() && left.vxlan_device().is_none());
            }
            for (kind, times) in [
                ("first", first),
                ("in step", in_step),
                ("one peer", one),
                ("cleanup", clean),
            ] {
                let line = pct(times, &format!("{backend}/{count} peers/{kind}"));
                let note = if kind == "first" {
                    format!("  ({written} commands)")
                } else {
                    String::new()
                };
                println!("{count:>6} {backend:<8} {kind:<10} {line}{note}");
            }
        }
    }
    sh(&["ip", "netns", "del", &ns]);
}

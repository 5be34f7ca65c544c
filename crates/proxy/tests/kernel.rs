//! The rendered transactions against the real kernel, in a throwaway network namespace:
//! they apply, a repeated fresh sync duplicates nothing, a partial sync ends where a fresh
//! one does, and cleanup leaves no table. Needs root and `nft`; skipped (with a line
//! saying so) otherwise.

use std::net::Ipv4Addr;
use std::process::Command;

use proxy::layout::layout;
use proxy::model::desired;
use proxy::nft::Nft;
use proxy::render::{render, RenderConfig, SyncKind, Written};
use proxy::testutil::*;
use proxy::Cidr;

/// A network namespace removed on drop, even when the test fails.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("pxk-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        ok.then_some(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn usable() -> bool {
    let root = unsafe_free_uid() == Some(0);
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && nft) {
        eprintln!("skipped: needs root and nft");
    }
    root && nft
}

fn unsafe_free_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cfg() -> RenderConfig {
    RenderConfig {
        table: "peapod-test".into(),
        cluster_cidr: Cidr {
            addr: Ipv4Addr::new(10, 42, 0, 0),
            prefix: 16,
        },
        node_ips: vec![Ipv4Addr::new(192, 168, 77, 1)],
    }
}

/// The table's listing, lines sorted (element order within a line-wrapped map is not ours).
async fn listing(nft: &Nft, table: &str) -> Result<Vec<String>, proxy::ProxyError> {
    let out = nft.run(&["list", "table", "ip", table], "").await?;
    let mut lines: Vec<String> = out
        .split(|c| c == '\n' || c == ',' || c == '{' || c == '}')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    Ok(lines)
}

#[tokio::test]
async fn transactions_apply_to_the_kernel() {
    if !usable() {
        return;
    }
    let Some(ns) = Netns::new("tx") else {
        panic!("could not create a network namespace");
    };
    let nft = Nft::in_netns(&ns.0);
    let cfg = cfg();
    let (mut svcs, mut slices) = cluster(20, 3);
    svcs.push(with_affinity(
        with_node_port(service("demo", "np", "10.43.200.1", "", 80), 30080),
        Some(60),
    ));
    svcs.push(with_policies(
        with_node_port(service("demo", "loc", "10.43.200.2", "", 80), 30081),
        Some("Local"),
        None,
    ));
    svcs.push(with_protocol(
        service("demo", "empty", "10.43.200.3", "", 53),
        "UDP",
    ));
    slices.push(slice(
        "demo",
        "np",
        "np",
        "",
        8080,
        &[ready("10.42.9.1"), ready("10.42.9.2")],
    ));
    slices.push(slice(
        "demo",
        "loc",
        "loc",
        "",
        8080,
        &[Ep("10.42.9.3", Some("me"), (true, true, false))],
    ));

    let l1 = layout(&desired(&svcs, &slices, "me"), cfg.cluster_cidr);
    let fresh = render(&cfg, &l1, SyncKind::Fresh, &Written::default());
    nft.apply(&fresh.script).await.expect("fresh sync applies");
    let first = listing(&nft, &cfg.table).await.expect("table listed");
    assert!(first
        .iter()
        .any(|l| l.starts_with("chain service-") && l.contains("bench/svc-19/tcp/http")));
    assert!(first.iter().any(|l| l.contains("numgen random mod 3 vmap")));

    // A restarted proxy's fresh sync: the same table, nothing twice.
    nft.apply(&fresh.script)
        .await
        .expect("second fresh sync applies");
    assert_eq!(listing(&nft, &cfg.table).await.expect("listed"), first);

    // Partial syncs: an endpoint more, a Service gone, a Service emptied.
    slices[0] = slice(
        "bench",
        "svc-0",
        "svc-0-abc",
        "http",
        8080,
        &[ready("10.42.0.2"), ready("10.42.50.1")],
    );
    svcs.remove(5);
    slices[7] = slice("bench", "svc-7", "svc-7-abc", "http", 8080, &[]);
    slices.pop();
    let l2 = layout(&desired(&svcs, &slices, "me"), cfg.cluster_cidr);
    let partial = render(&cfg, &l2, SyncKind::Partial, &fresh.written);
    nft.apply(&partial.script)
        .await
        .expect("partial sync applies");
    let after_partial = listing(&nft, &cfg.table).await.expect("listed");
    // Ends where a fresh sync of the same state ends.
    let refresh = render(&cfg, &l2, SyncKind::Fresh, &Written::default());
    nft.apply(&refresh.script)
        .await
        .expect("fresh sync applies");
    assert_eq!(
        listing(&nft, &cfg.table).await.expect("listed"),
        after_partial
    );
    // And a full sync (the hourly one) too.
    let full = render(&cfg, &l2, SyncKind::Full, &refresh.written);
    nft.apply(&full.script).await.expect("full sync applies");
    assert_eq!(
        listing(&nft, &cfg.table).await.expect("listed"),
        after_partial
    );

    proxy::cleanup_with(&nft, &cfg.table)
        .await
        .expect("cleanup");
    assert!(
        listing(&nft, &cfg.table).await.is_err(),
        "the table is gone"
    );
    // Cleaning up twice is fine.
    proxy::cleanup_with(&nft, &cfg.table)
        .await
        .expect("second cleanup");
}

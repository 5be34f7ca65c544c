//! Service proxy sync cost (issue 15): a full sync of 1,000 Services × 10 endpoints (the
//! model, the layout, the script and `nft -f -` applying it as one transaction) in a
//! throwaway network namespace, p50/p99 over a few runs; the rules it writes; and a partial
//! sync after one Service's endpoints changed. Needs root and `nft`.
//!
//! `cargo run --release -p proxy --example sync_bench [services] [endpoints] [runs]`
//! prints `figure {...}` lines (bench/figures.py).

use std::process::Command;
use std::time::{Duration, Instant};

use proxy::layout::{layout, LayoutCache};
use proxy::model::desired;
use proxy::nft::Nft;
use proxy::render::{fixed_rule_count, render, RenderConfig, SyncKind, Written};
use proxy::testutil::*;
use proxy::Cidr;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn figure(name: &str, value: f64, better: &str) {
    println!(
        "figure {{\"name\": \"{name}\", \"value\": {:.3}, \"better\": \"{better}\"}}",
        value
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let services = args.next().flatten().unwrap_or(1000);
    let endpoints = args.next().flatten().unwrap_or(10);
    let runs = args.next().flatten().unwrap_or(7).max(1);
    let ns = Netns(format!("pxbench-{}", std::process::id()));
    let created = Command::new("ip").args(["netns", "add", &ns.0]).status();
    if !created.is_ok_and(|s| s.success()) {
        eprintln!("sync_bench: cannot create a network namespace (needs root)");
        std::process::exit(1);
    }
    let nft = Nft::in_netns(&ns.0);
    let cfg = RenderConfig {
        table: "peapod-bench".into(),
        cluster_cidr: Cidr { addr: [10, 42, 0, 0].into(), prefix: 16 },
        node_ips: vec![[192, 168, 77, 1].into()],
    };
    let (svcs, mut slices) = cluster(services, endpoints);

    let mut full = Vec::new();
    let mut full_compute = Vec::new();
    let mut written = Written::default();
    let mut rules = 0;
    let mut bytes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let d = desired(&svcs, &slices, "bench-node");
        let l = layout(&d, cfg.cluster_cidr);
        let tx = render(&cfg, &l, SyncKind::Fresh, &Written::default());
        full_compute.push(start.elapsed());
        if let Err(e) = nft.apply(&tx.script).await {
            eprintln!("sync_bench: full sync failed: {e}");
            std::process::exit(1);
        }
        full.push(start.elapsed());
        rules = fixed_rule_count(&cfg) + l.chains.values().map(Vec::len).sum::<usize>();
        bytes = tx.script.len();
        written = tx.written;
    }
    full.sort();
    full_compute.sort();

    let mut partial = Vec::new();
    let mut compute = Vec::new();
    // The running proxy keeps a layout cache: only a changed Service is laid out again.
    let mut cache = LayoutCache::default();
    cache.layout(&desired(&svcs, &slices, "bench-node"), cfg.cluster_cidr);
    for run in 0..runs {
        // Service 0 gets one more endpoint, then loses it again.
        let mut ips: Vec<String> = (0..endpoints).map(|j| format!("10.42.0.{}", j + 2)).collect();
        if run % 2 == 0 {
            ips.push("10.42.250.250".into());
        }
        let eps: Vec<Ep<'_>> = ips.iter().map(|ip| ready(ip)).collect();
        slices[0] = slice("bench", "svc-0", "svc-0-abc", "http", 8080, &eps);
        let start = Instant::now();
        let d = desired(&svcs, &slices, "bench-node");
        let l = cache.layout(&d, cfg.cluster_cidr);
        let tx = render(&cfg, &l, SyncKind::Partial, &written);
        compute.push(start.elapsed());
        if let Err(e) = nft.apply(&tx.script).await {
            eprintln!("sync_bench: partial sync failed: {e}");
            std::process::exit(1);
        }
        partial.push(start.elapsed());
        written = tx.written;
    }
    partial.sort();
    compute.sort();

    let listed = nft
        .run(&["list", "table", "ip", &cfg.table], "")
        .await
        .map(|s| s.lines().count())
        .unwrap_or(0);
    println!(
        "full sync of {services} Services x {endpoints} endpoints: p50 {:.1} ms, p99 {:.1} ms \
         over {runs} runs (model, layout and script p50 {:.1} ms); {rules} rules, script {} KiB, \
         table listing {listed} lines",
        pct(&full, 0.5),
        pct(&full, 0.99),
        pct(&full_compute, 0.5),
        bytes / 1024
    );
    println!(
        "partial sync (1 Service changed): p50 {:.1} ms, p99 {:.1} ms (of which model, layout \
         and script p50 {:.1} ms)",
        pct(&partial, 0.5),
        pct(&partial, 0.99),
        pct(&compute, 0.5)
    );
    let tag = format!("proxy/{services}x{endpoints}");
    figure(&format!("{tag}/full sync/p50_ms"), pct(&full, 0.5), "lower");
    figure(&format!("{tag}/full sync/p99_ms"), pct(&full, 0.99), "lower");
    figure(&format!("{tag}/rules"), rules as f64, "lower");
    figure(&format!("{tag}/partial sync 1 service/p50_ms"), pct(&partial, 0.5), "lower");
    figure(&format!("{tag}/partial sync 1 service/p99_ms"), pct(&partial, 0.99), "lower");
}

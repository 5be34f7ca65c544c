//! Prints the fresh-sync script for a small cluster (for reading and trying by hand):
//! `cargo run -p proxy --example script [services] [endpoints]`.
use proxy::layout::layout;
use proxy::model::desired;
use proxy::render::{render, RenderConfig, SyncKind, Written};
use proxy::testutil::*;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(1));
    let (n, m) = (args.next().unwrap_or(1), args.next().unwrap_or(2));
    let (mut svcs, slices) = cluster(n, m);
    svcs.push(with_affinity(
        with_node_port(service("demo", "np", "10.43.200.1", "", 80), 30080),
        None,
    ));
    svcs.push(with_policies(
        with_node_port(service("demo", "local", "10.43.200.2", "", 80), 30081),
        Some("Local"),
        Some("Local"),
    ));
    svcs.push(service("demo", "empty", "10.43.200.3", "", 80));
    let mut slices = slices;
    slices.push(slice(
        "demo",
        "np",
        "np-1",
        "",
        8080,
        &[ready("10.42.9.1"), ready("10.42.9.2")],
    ));
    slices.push(slice(
        "demo",
        "local",
        "l-1",
        "",
        8080,
        &[
            Ep("10.42.9.3", Some("me"), (true, true, false)),
            Ep("10.42.9.4", Some("other"), (true, true, false)),
        ],
    ));
    let d = desired(&svcs, &slices, "me");
    let cfg = RenderConfig {
        table: "peapod".into(),
        cluster_cidr: "10.42.0.0/16".parse().unwrap_or(proxy::Cidr {
            addr: std::net::Ipv4Addr::UNSPECIFIED,
            prefix: 0,
        }),
        node_ips: vec![std::net::Ipv4Addr::new(192, 168, 77, 1)],
    };
    let tx = render(
        &cfg,
        &layout(&d, cfg.cluster_cidr),
        SyncKind::Fresh,
        &Written::default(),
    );
    print!("{}", tx.script);
}

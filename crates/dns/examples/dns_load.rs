//! DNS load generator (issue 15's benchmark): queries/s and p50/p99 latency of the cluster
//! DNS answering from its cache, over UDP on loopback.
//!
//! Without `--target`, it starts the server in this process (its own 2-thread runtime) on
//! 127.0.0.1 with a cache of 1,000 Services × 10 endpoints and asks it; with `--target
//! ADDR:PORT` it asks that server instead (a node's gateway address, from the node). Each of
//! `--concurrency` clients keeps one question in flight for `--seconds`, cycling over
//! ClusterIP names, headless names and SRV names; every answer is checked for NOERROR.
//! Prints a table and `figure` lines (bench/figures.py).
//!
//!     cargo run --release -p dns --example dns_load -- [--seconds 5] [--concurrency 32]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dns::zone::{BuildOptions, SERVICE_NAME_LABEL};
use dns::{DnsConfig, Server, Zone};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::net::UdpSocket;

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 10;

struct Args {
    seconds: u64,
    concurrency: usize,
    target: Option<SocketAddr>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        concurrency: 32,
        target: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--concurrency" => a.concurrency = value.parse().expect("--concurrency N"),
            "--target" => a.target = Some(value.parse().expect("--target ADDR:PORT")),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

/// 1,000 Services in `bench`: even ones ClusterIP, odd ones headless, each with a slice of
/// 10 ready endpoints and a named port.
fn zone() -> Zone {
    let namespaces = [Namespace {
        metadata: ObjectMeta {
            name: Some("bench".into()),
            ..Default::default()
        },
        ..Default::default()
    }];
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..SERVICES {
        let name = format!("svc-{i}");
        let ip = if i % 2 == 0 {
            format!("10.43.{}.{}", i / 250 + 1, i % 250 + 1)
        } else {
            "None".to_string()
        };
        services.push(Service {
            metadata: meta("bench", &name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.clone()),
                cluster_ips: Some(vec![ip]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        });
        let mut m = meta("bench", &format!("{name}-1"));
        m.labels = Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), name)]));
        slices.push(EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints: Some(
                (0..ENDPOINTS)
                    .map(|e| Endpoint {
                        addresses: vec![format!("10.42.{}.{}", i / 20, (i % 20) * 10 + e + 1)],
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        });
    }
    Zone::build(
        &BuildOptions {
            domain: "cluster.local".into(),
            fallback_ns_addr: Ipv4Addr::LOCALHOST.into(),
            synced: true,
            serial: 1,
        },
        namespaces.iter(),
        services.iter(),
        slices.iter(),
    )
}

fn questions() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in (0..SERVICES).step_by(7) {
        for (name, qtype) in [
            (format!("svc-{i}.bench.svc.cluster.local."), RecordType::A),
            (
                format!("_http._tcp.svc-{i}.bench.svc.cluster.local."),
                RecordType::SRV,
            ),
        ] {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(Name::from_ascii(&name).unwrap(), qtype));
            out.push(m.to_vec().unwrap());
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let a = args();
    // The server runs on its own two threads, as on a 2-core node.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let target = match a.target {
        Some(t) => t,
        None => {
            let _guard = server_rt.enter();
            let server = Server::bind(&DnsConfig {
                listen: Ipv4Addr::LOCALHOST.into(),
                port: 0,
                cluster_domain: "cluster.local".into(),
                upstreams: vec![],
                node_name: None,
            })
            .unwrap();
            server.cache().store(zone());
            let addr = server.local_addr();
            server_rt.spawn(server.serve(stop.clone()));
            addr
        }
    };
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let qs = std::sync::Arc::new(questions());
    let (latencies, errors, elapsed) = client_rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(a.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..a.concurrency {
            let qs = qs.clone();
            tasks.push(tokio::spawn(async move {
                let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                s.connect(target).await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut i = c;
                while Instant::now() < deadline {
                    let q = &qs[i % qs.len()];
                    i += a.concurrency;
                    let t = Instant::now();
                    s.send(q).await.unwrap();
                    match tokio::time::timeout(Duration::from_secs(1), s.recv(&mut buf)).await {
                        Ok(Ok(n)) => {
                            let ok = Message::from_vec(&buf[..n])
                                .map(|m| m.metadata.response_code == ResponseCode::NoError)
                                .unwrap_or(false);
                            if ok {
                                lat.push(t.elapsed());
                            } else {
                                errors += 1;
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
        }
        (all, errors, started.elapsed())
    });
    stop.cancel();
    let mut sorted = latencies;
    sorted.sort();
    let qps = sorted.len() as f64 / elapsed.as_secs_f64();
    let p50 = percentile(&sorted, 0.50).as_secs_f64() * 1000.0;
    let p99 = percentile(&sorted, 0.99).as_secs_f64() * 1000.0;
    let where_ = if a.target.is_some() {
        "target"
    } else {
        "loopback"
    };
    println!(
        "cluster DNS from the cache over UDP ({where_}, {} Services x {} endpoints, {} clients, {} s)",
        SERVICES, ENDPOINTS, a.concurrency, a.seconds
    );
    println!(
        "{:<12} {:>12} {:>10} {:>10} {:>8}",
        "", "queries/s", "p50 ms", "p99 ms", "errors"
    );
    println!(
        "{:<12} {:>12.0} {:>10.3} {:>10.3} {:>8}",
        where_, qps, p50, p99, errors
    );
    for (name, value, better) in [
        ("queries_per_s", qps, "higher"),
        ("p50_ms", p50, "lower"),
        ("p99_ms", p99, "lower"),
    ] {
        println!(
            "figure {{\"name\": \"dns/{where_}/{name}\", \"value\": {value:.3}, \"better\": \"{better}\"}}"
        );
    }
}

//! `cargo run --release -p scheduler --example decide_bench`: what one scheduling decision
//! costs with many pods in the cluster, the way the loop makes it (node infos from the
//! incremental [`scheduler::Cache`]) beside the way it used to (node infos rebuilt from every
//! pod and assumed binding at each attempt, [`scheduler::decide`]). Prints p50/p99 for
//! clusters of growing size; the cache's cost should follow the node count only.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Node, NodeSpec, NodeStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scheduler::{decide, decide_on, Assumed, Cache};

const RUNS: usize = 200;

fn node(name: String) -> Node {
    let allocatable: BTreeMap<String, Quantity> =
        [("cpu", "64"), ("memory", "256Gi"), ("pods", "1000")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(allocatable),
            ..Default::default()
        }),
    }
}

fn pod(i: usize, node: Option<String>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("p{i}")),
            namespace: Some("bench".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
            node_name: node,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    (at(0.50), at(0.99))
}

fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    percentiles(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    println!("one decision for a pending pod, {RUNS} runs each");
    println!(
        "{:>6} {:>7} | {:>14} {:>14} | {:>14} {:>14}",
        "nodes", "pods", "cache p50", "cache p99", "rebuild p50", "rebuild p99"
    );
    for (nodes, pods) in [(10, 1_000), (10, 10_000), (100, 10_000), (1_000, 30_000)] {
        let node_list: Vec<Arc<Node>> = (0..nodes)
            .map(|i| Arc::new(node(format!("n{i}"))))
            .collect();
        // Half the pods bound round-robin, half pending.
        let pod_list: Vec<Arc<Pod>> = (0..pods)
            .map(|i| Arc::new(pod(i, (i % 2 == 0).then(|| format!("n{}", i % nodes)))))
            .collect();
        let mut cache = Cache::default();
        for n in &node_list {
            cache.apply_node(n);
        }
        for p in &pod_list {
            cache.apply_pod(p);
        }
        let pending = pod(pods + 1, None);
        let assumed = Assumed::default();
        let (c50, c99) = time(|| {
            black_box(decide_on(&pending, cache.infos()));
        });
        let (r50, r99) = time(|| {
            black_box(decide(&pending, &node_list, &pod_list, &assumed));
        });
        println!(
            "{nodes:>6} {pods:>7} | {:>14?} {:>14?} | {:>14?} {:>14?}",
            c50, c99, r50, r99
        );
        // Machine-readable figure for `make bench` (bench/figures.py).
        let figure = serde_json::json!({
            "name": format!("scheduler/decide/{nodes} nodes {pods} pods/p50_us"),
            "value": c50.as_secs_f64() * 1e6, "better": "lower",
        });
        println!("figure {figure}");
    }
}

//! `cargo run --release -p protobuf --example transcode_bench`: what the protobuf wire
//! format costs the API server per object, beside its JSON peer. For a realistic pod (the
//! first object of `testdata/served.json`): decoding a protobuf body to the JSON value the
//! API server works on, against parsing the same pod's JSON bytes; and encoding that value
//! to protobuf for a response, against serialising it to JSON. Prints p50/p99 over many
//! runs and the sizes on the wire.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::Value;

const RUNS: usize = 20_000;

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    (at(0.50), at(0.99))
}

fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..RUNS / 10 {
        f();
    }
    let samples = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn main() {
    let objects: Vec<Value> = match serde_json::from_str(include_str!("../testdata/served.json")) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("testdata/served.json: {e}");
            std::process::exit(1);
        }
    };
    let pod = &objects[0];
    let json = serde_json::to_vec(pod).unwrap_or_default();
    let pb = match protobuf::encode_object(pod) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("encoding the pod: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "pod: {} bytes as protobuf, {} bytes as JSON; {RUNS} runs each",
        pb.len(),
        json.len()
    );
    let rows = [
        (
            "decode protobuf body -> value",
            time(|| {
                black_box(protobuf::decode_object(black_box(&pb)).ok());
            }),
        ),
        (
            "  peer: parse JSON body -> value",
            time(|| {
                black_box(serde_json::from_slice::<Value>(black_box(&json)).ok());
            }),
        ),
        (
            "encode value -> protobuf",
            time(|| {
                black_box(protobuf::encode_object(black_box(pod)).ok());
            }),
        ),
        (
            "  peer: value -> JSON bytes",
            time(|| {
                black_box(serde_json::to_vec(black_box(pod)).ok());
            }),
        ),
    ];
    println!("{:<34} {:>10} {:>10}", "operation", "p50 µs", "p99 µs");
    for (name, (p50, p99)) in &rows {
        println!(
            "{name:<34} {:>10.1} {:>10.1}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    // Machine-readable figures for `make bench` (bench/figures.py).
    for (name, (p50, _)) in &rows {
        let name = format!("transcode/{}/p50_us", name.trim());
        let figure = serde_json::json!({
            "name": name, "value": p50.as_secs_f64() * 1e6, "better": "lower",
        });
        println!("figure {figure}");
    }
}

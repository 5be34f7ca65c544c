//! Create throughput and latency of the store backends side by side: SQLite (group commit,
//! `synchronous=FULL` and `NORMAL`), etcd through `EtcdStore`, and raw etcd puts through
//! `etcd-client` with no store layer (the floor any etcd-backed store can reach).
//!
//! Each run creates `--ops` distinct keys with `--value-size`-byte values from 1 and from
//! 16 concurrent tokio tasks, and prints p50/p99 latency and ops/s.
//!
//! ```text
//! cargo run --release -p store --example store_bench [-- --ops 5000 --value-size 2048 \
//!     --etcd http://127.0.0.1:2379] [--sqlite-only]
//! ```
//! Without `--etcd` it starts a throwaway etcd (Debian's /usr/bin/etcd, or `ETCD_BIN`).

#[path = "../tests/support/etcd_server.rs"]
mod etcd_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use store::{EtcdStore, SqliteOptions, SqliteStore, Store, Synchronous};

struct Args {
    ops: usize,
    value_size: usize,
    etcd: Option<String>,
    sqlite_only: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        ops: 5000,
        value_size: 2048,
        etcd: None,
        sqlite_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--ops" => args.ops = value()?.parse()?,
            "--value-size" => args.value_size = value()?.parse()?,
            "--etcd" => args.etcd = Some(value()?),
            "--sqlite-only" => args.sqlite_only = true,
            "-h" | "--help" => {
                println!("store_bench [--ops N] [--value-size BYTES] [--etcd URL] [--sqlite-only]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

struct Outcome {
    name: String,
    clients: usize,
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn percentile(&self, p: f64) -> Duration {
        let idx = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(idx).copied().unwrap_or_default()
    }

    fn print(&self) {
        println!(
            "{:<34} {:>7} {:>7} {:>10.3} {:>10.3} {:>10.0}",
            self.name,
            self.clients,
            self.ops,
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.ops as f64 / self.elapsed.as_secs_f64(),
        );
        // Machine-readable figures for `make bench` (bench/figures.py).
        let base = format!("store/{}/x{}", self.name, self.clients);
        for (what, value, better) in [
            ("p50_ms", self.percentile(0.50).as_secs_f64() * 1e3, "lower"),
            (
                "ops_s",
                self.ops as f64 / self.elapsed.as_secs_f64(),
                "higher",
            ),
        ] {
            let figure = serde_json::json!({
                "name": format!("{base}/{what}"), "value": value, "better": better,
            });
            println!("figure {figure}");
        }
    }
}

/// Run `ops` calls of `op(client, i)` spread over `clients` tasks.
async fn run<F, Fut>(name: &str, clients: usize, ops: usize, op: F) -> Result<Outcome>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let op = op.clone();
        let share = ops / clients + usize::from(client < ops % clients);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for i in 0..share {
                let t = Instant::now();
                op(client, i).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Outcome {
        name: name.to_owned(),
        clients,
        ops,
        elapsed,
        latencies,
    })
}

async fn bench_store(name: &str, store: Arc<dyn Store>, args: &Args, run_id: &str) -> Result<()> {
    let value = Bytes::from(vec![b'v'; args.value_size]);
    for clients in [1, 16] {
        let (store, value) = (store.clone(), value.clone());
        let prefix = format!("/bench/{run_id}/{clients}");
        let outcome = run(name, clients, args.ops, move |client, i| {
            let (store, value) = (store.clone(), value.clone());
            let key = format!("{prefix}/{client}/{i}");
            async move {
                store.create(&key, value).await?;
                Ok(())
            }
        })
        .await?;
        outcome.print();
    }
    Ok(())
}

async fn bench_raw_etcd(endpoint: &str, args: &Args) -> Result<()> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = vec![b'v'; args.value_size];
    for clients in [1, 16] {
        let (client, value) = (client.clone(), value.clone());
        let outcome = run(
            "etcd raw put (etcd-client)",
            clients,
            args.ops,
            move |c, i| {
                let mut kv = client.kv_client();
                let value = value.clone();
                async move {
                    kv.put(format!("/raw/{clients}/{c}/{i}"), value, None)
                        .await?;
                    Ok(())
                }
            },
        )
        .await?;
        outcome.print();
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "creates of {}-byte values, {} per run, {} cores",
        args.value_size,
        args.ops,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<34} {:>7} {:>7} {:>10} {:>10} {:>10}",
        "backend", "clients", "ops", "p50 ms", "p99 ms", "ops/s"
    );
    rt.block_on(async {
        for (name, synchronous) in [
            ("sqlite (synchronous=FULL)", Synchronous::Full),
            ("sqlite (synchronous=NORMAL)", Synchronous::Normal),
        ] {
            let dir = tempfile::tempdir()?;
            let options = SqliteOptions {
                synchronous,
                ..SqliteOptions::default()
            };
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with(
                &dir.path().join("bench.db"),
                options,
            )?);
            bench_store(name, store.clone(), &args, "sqlite").await?;
            store.close().await?;
        }

        if args.sqlite_only {
            return Ok(());
        }
        // Declared before the store so it is dropped (killed) after it.
        let server;
        let endpoint = match &args.etcd {
            Some(url) => url.clone(),
            None => {
                server = tokio::task::block_in_place(etcd_server::EtcdServer::start)?;
                server.endpoint.clone()
            }
        };
        let run_id = format!("{}", std::process::id());
        let store: Arc<dyn Store> =
            Arc::new(EtcdStore::connect(std::slice::from_ref(&endpoint), "/store-bench").await?);
        bench_store("etcd (EtcdStore)", store, &args, &run_id).await?;
        bench_raw_etcd(&endpoint, &args).await?;
        anyhow::Ok(())
    })
}

//! The peapod binary: argument parsing and wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "peapod",
    version,
    about = "A Kubernetes-compatible Pod platform in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane only: the API server on the chosen datastore.
    Server(ServerArgs),
    /// All-in-one single node on the embedded store (the node agent arrives with the node issue).
    Up(ServerArgs),
}

#[derive(Args)]
struct ServerArgs {
    /// Where the store, PKI and kubeconfig live.
    #[arg(long, default_value = "/var/lib/peapod")]
    data_dir: PathBuf,
    /// Address the API serves HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// `sqlite` (embedded, DIR/state.db) or `etcd=URL[,URL...]`.
    #[arg(long, default_value = "sqlite")]
    datastore: String,
    /// Key prefix inside etcd, so several clusters can share one etcd.
    #[arg(long, default_value = "/peapod")]
    etcd_prefix: String,
    /// How long events are kept (kube-apiserver's --event-ttl), e.g. `1h`, `90s`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    event_ttl: std::time::Duration,
}

/// `90s`, `5m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration unit in {s:?}: use s, m or h")),
    };
    if secs == 0 {
        return Err("duration must be positive".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Server(args) | Command::Up(args) => run_server(args).await,
        }
    })
}

async fn open_store(args: &ServerArgs) -> Result<Arc<dyn store::Store>> {
    if args.datastore == "sqlite" {
        let path = args.data_dir.join("state.db");
        let store = store::sqlite::SqliteStore::open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    if let Some(urls) = args.datastore.strip_prefix("etcd=") {
        let endpoints: Vec<String> = urls.split(',').map(str::to_string).collect();
        let store = store::etcd::EtcdStore::connect(&endpoints, &args.etcd_prefix)
            .await
            .with_context(|| format!("connecting to etcd at {urls}"))?;
        return Ok(Arc::new(store));
    }
    bail!(
        "unknown --datastore {:?}: use sqlite or etcd=URL[,URL...]",
        args.datastore
    )
}

async fn run_server(args: ServerArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = open_store(&args).await?;
    let shutdown = CancellationToken::new();
    let running = apiserver::start(
        apiserver::Config {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            store,
            event_ttl: args.event_ttl,
        },
        shutdown.clone(),
    )
    .await?;
    // The one line tests and scripts wait for.
    println!("peapod ready: kubeconfig={}", running.kubeconfig.display());
    wait_for_signal().await?;
    info!("shutting down");
    shutdown.cancel();
    let mut tasks = running.tasks;
    while tasks.join_next().await.is_some() {}
    // Queued writes finish before the process goes.
    running
        .server
        .store
        .close()
        .await
        .context("closing the store")?;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

//! The peapod binary: argument parsing and wiring only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use supervisor::Supervisor;
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
    /// Control plane only: the API server, the scheduler and the controllers on the chosen
    /// datastore.
    Server(ServerCmd),
    /// All-in-one single node: control plane and node agent, embedded store.
    Up(UpArgs),
    /// A node agent joining a control plane.
    Agent(AgentArgs),
    /// The node's image store: import archives, list images.
    Images(ImagesArgs),
    /// Removes the service proxy's nftables table and the pod network's vxlan device and
    /// routes, and exits (kube-proxy's `--cleanup`). A stopped node keeps its Service rules
    /// and routes, so traffic keeps flowing through an agent restart; this is what removes
    /// them once the node is gone for good.
    CleanupNetwork(CleanupArgs),
}

#[derive(Args)]
struct CleanupArgs {
    /// The table to remove (`table ip <TABLE>`), as given to the node's `--proxy-table`.
    #[arg(long, default_value = proxy::DEFAULT_TABLE)]
    table: String,
}

#[derive(Args)]
struct ServerCmd {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    cidr: ClusterCidrArg,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// One flag for both halves: the range node IPAM cuts pod CIDRs from, and what the
    /// node does not masquerade.
    #[command(flatten)]
    cidr: ClusterCidrArg,
    #[command(flatten)]
    node: NodeArgs,
}

/// `--cluster-cidr`, kube-controller-manager's flag (and kube-proxy's, k3s's): the server
/// allocates every node's pod CIDR from it, the node does not masquerade pod traffic to it.
/// Its own struct so that `up`, which has both halves, has it once.
#[derive(Args, Clone)]
struct ClusterCidrArg {
    /// The cluster's pod network, every node's pod CIDR lies inside. A comma list is
    /// accepted, as upstream's, but peapod supports exactly one IPv4 CIDR.
    #[arg(long, default_value = controllers::nodeipam::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
}

#[derive(Args)]
struct AgentArgs {
    /// The API servers, e.g. https://10.0.0.1:6443 (repeat the flag or separate with
    /// commas): the agent reaches them through a local load balancer that fails over.
    #[arg(long, required = true, value_delimiter = ',')]
    server: Vec<String>,
    /// The join token (a server's `DIR/node-token`): needed for the first start only; the
    /// agent then holds a client certificate of its own (DIR/pki). A plain bearer token
    /// works too, with --ca-file.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate the API server's certificate is checked against (only with a plain
    /// bearer token: a join token pins the CA itself).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Where images, pod state and logs live.
    #[arg(long, default_value = "/var/lib/peapod")]
    data_dir: PathBuf,
    #[command(flatten)]
    cidr: ClusterCidrArg,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's address (default: the host's primary IPv4 address).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Extra node labels, `key=value,...`.
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// This node's pod CIDR. Without it an agent takes the one node IPAM writes into its
    /// Node (`spec.podCIDR`), and `up` the first subnet of `--cluster-cidr`
    /// (10.42.0.0/24 by default).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The Linux bridge pods attach to.
    #[arg(long, default_value = "peapod0")]
    cni_bridge: String,
    /// Where CNI plugins are looked for (searched in order).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "/usr/lib/cni,/opt/cni/bin"
    )]
    cni_bin_dir: Vec<PathBuf>,
    /// OCI runtime: crun or runc.
    #[arg(long, default_value = "crun")]
    runtime: String,
    /// The agent's streaming server port (logs, exec, port-forward); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The node Lease's duration in seconds (the kubelet's `nodeLeaseDurationSeconds`); the
    /// lease is renewed every quarter of it. Keep it at most the server's
    /// `--node-monitor-grace-period`.
    #[arg(long, default_value_t = agent::node_status::DEFAULT_LEASE_DURATION_SECONDS,
          value_parser = clap::value_parser!(u32).range(1..))]
    node_lease_duration_seconds: u32,
    /// The cgroup pods are created under, as `<root>/pod<uid>` (the kubelet's flag).
    #[arg(long, default_value = "peapod")]
    cgroup_root: String,
    /// The most processes one pod may run (the kubelet's flag); -1 for no cap. Upstream's
    /// default is no cap; peapod caps so a fork bomb cannot take the node's process table.
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true)]
    pod_max_pids: i64,
    /// Registries reached over plain HTTP (loopback ones always are).
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// The cluster DNS service's address, written into pods' resolv.conf (the kubelet's
    /// `--cluster-dns`); the `kube-dns` Service's ClusterIP, the service range's tenth address.
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain (the kubelet's `--cluster-domain`).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The resolver configuration pods with dnsPolicy Default inherit and the cluster DNS
    /// forwards other names to (the kubelet's `--resolv-conf`).
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The service proxy's nftables table (`table ip <TABLE>`); nodes sharing a host (tests)
    /// need one each.
    #[arg(long, default_value = proxy::DEFAULT_TABLE)]
    proxy_table: String,
    /// How other nodes' pods are reached: `host-gw` (a route via the node, same subnet
    /// only), `vxlan` (the kernel's VXLAN device, any subnet) or `auto` (host-gw where the
    /// node is on this node's subnet, vxlan elsewhere). Every node should use the same.
    #[arg(long, default_value = "auto")]
    pod_network: podnet::Mode,
}

#[derive(Args)]
struct ImagesArgs {
    /// The node's data dir (images live in DIR/images).
    #[arg(long, global = true, default_value = "/var/lib/peapod")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Load docker-archive or OCI-archive tarballs.
    Import { files: Vec<PathBuf> },
    /// List the images the node has.
    Ls,
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
    /// Run without the scheduler: pods stay unassigned until bound through `pods/binding`.
    #[arg(long)]
    no_scheduler: bool,
    /// The address pods reach the API on (kube-apiserver's flag), served on the listen port
    /// too. `up` defaults to its pod bridge's gateway (the pod CIDR's first address).
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// The range ClusterIPs are allocated from (kube-apiserver's
    /// `--service-cluster-ip-range`); its first address is the `kubernetes` Service's.
    #[arg(long, default_value = apiserver::services::DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
    /// The range node ports are allocated from (kube-apiserver's flag).
    #[arg(long, default_value = apiserver::services::DEFAULT_NODE_PORT_RANGE)]
    service_node_port_range: String,
    /// The longest certificate the CSR signer issues (kube-controller-manager's flag); a
    /// request's `expirationSeconds` may ask for less.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    cluster_signing_duration: std::time::Duration,
    /// Whether node IPAM gives every node a pod CIDR from `--cluster-cidr`
    /// (kube-controller-manager's flag; peapod's default is true, as k3s's).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The size of each node's pod CIDR (kube-controller-manager's flag, IPv4).
    #[arg(long, default_value_t = controllers::nodeipam::DEFAULT_NODE_CIDR_MASK_SIZE)]
    node_cidr_mask_size: u8,
    #[command(flatten)]
    node_lifecycle: NodeLifecycleArgs,
}

/// kube-controller-manager's node lifecycle flags (the node lifecycle controller).
#[derive(Args, Clone)]
struct NodeLifecycleArgs {
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: std::time::Duration,
    /// How long a node may go without renewing its Lease before it is marked Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How long a new node may go without posting a Ready condition.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    node_startup_grace_period: std::time::Duration,
    /// Nodes tainted NoExecute per second in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Nodes tainted per second in an unhealthy zone of a large cluster.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Zones with at most this many nodes stop tainting when unhealthy.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    /// The share of not-Ready nodes (at least 3) that makes a zone unhealthy.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
}

impl NodeLifecycleArgs {
    fn config(&self) -> controllers::nodelifecycle::Config {
        controllers::nodelifecycle::Config {
            node_monitor_period: self.node_monitor_period,
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_startup_grace_period: self.node_startup_grace_period,
            node_eviction_rate: self.node_eviction_rate,
            secondary_node_eviction_rate: self.secondary_node_eviction_rate,
            large_cluster_size_threshold: self.large_cluster_size_threshold,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
        }
    }
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

/// `info`, without kube-client's own line per failed request: every such failure reaches
/// the caller, which reports it with context (and, while the API server is out of reach,
/// once per outage rather than per retry). `PEAPOD_LOG` replaces the whole filter.
const DEFAULT_LOG: &str = "info,kube_client::client::builder=off";

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Agent(_) | Command::Up(_)) {
        // Before any thread starts: setns(CLONE_NEWNS) refuses multithreaded callers.
        join_cgroup_mount_namespace()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Server(args) => run_server(args.server, &args.cidr.cluster_cidr, None).await,
            Command::Up(args) => {
                run_server(args.server, &args.cidr.cluster_cidr, Some(args.node)).await
            }
            Command::Agent(args) => run_agent(args).await,
            Command::Images(args) => images(args),
            Command::CleanupNetwork(args) => {
                let table = proxy::cleanup(&args.table)
                    .await
                    .with_context(|| format!("removing table ip {}", args.table));
                let routes = podnet::cleanup()
                    .await
                    .context("removing the pod network's device and routes");
                table.and(routes)
            }
        }
    })
}

/// Under `ip netns exec` the agent's own mount namespace has no cgroup hierarchies: it joins
/// the one it was started from (`oci::mountns`, ARCHITECTURE §8).
fn join_cgroup_mount_namespace() -> Result<()> {
    match agent::mountns::join_cgroup_mount_namespace()
        .context("joining the mount namespace with the cgroup hierarchies")?
    {
        Some(pid) => tracing::info!(
            pid,
            "no cgroup hierarchies in this mount namespace (ip netns exec?): joined the mount namespace of an ancestor that has them"
        ),
        None => {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            if !agent::mountns::has_cgroup_hierarchies(&mountinfo) {
                tracing::warn!("no cgroup hierarchies under /sys/fs/cgroup and no ancestor process has them: pods cannot get cgroups");
            }
        }
    }
    Ok(())
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

/// `server` and `up`: the control plane, and with `node` the node agent too. Every
/// long-running component runs under one [`Supervisor`] (the policies are in
/// ARCHITECTURE.md, "Supervision").
async fn run_server(args: ServerArgs, cluster_cidr: &str, node: Option<NodeArgs>) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let ipam = controllers::nodeipam::Config::parse(
        cluster_cidr,
        args.node_cidr_mask_size,
        Some(&args.service_cidr),
    )
    .with_context(|| {
        format!(
            "invalid --cluster-cidr {cluster_cidr:?} with --node-cidr-mask-size {}",
            args.node_cidr_mask_size
        )
    })?;
    // `up`: its node's pod CIDR is needed before anything starts (the advertise address is
    // its bridge's gateway), so it takes the cluster CIDR's first subnet itself unless told.
    let pod_cidr = match &node {
        Some(n) => Some(match &n.pod_cidr {
            Some(c) => c.clone(),
            None => first_subnet(&ipam)?,
        }),
        None => None,
    };
    let store = open_store(&args).await?;
    let shutdown = CancellationToken::new();
    let mut components = Supervisor::new(shutdown.clone());
    let advertise_address = match (&args.advertise_address, &pod_cidr) {
        (Some(ip), _) => Some(*ip),
        // All in one: the pods on this node reach the host through their bridge's gateway.
        (None, Some(pod_cidr)) => Some(bridge_gateway(pod_cidr)?),
        (None, None) => None,
    };
    let services = apiserver::services::Config {
        cidr: apiserver::services::Cidr::parse(&args.service_cidr)
            .with_context(|| format!("invalid --service-cidr {:?}", args.service_cidr))?,
        node_ports: apiserver::services::portalloc::PortRange::parse(&args.service_node_port_range)
            .with_context(|| {
                format!(
                    "invalid --service-node-port-range {:?}",
                    args.service_node_port_range
                )
            })?,
        // `up`: the kube-dns Service is where its node's pods send DNS.
        cluster_dns: node.as_ref().and_then(|n| n.cluster_dns.first().copied()),
    };
    let running = apiserver::start(
        apiserver::Config {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            store: store.clone(),
            event_ttl: args.event_ttl,
            advertise_address,
            services,
        },
        &mut components,
    )
    .await?;
    let client = client_from_parts(
        &apiserver::tls::server_url(args.listen),
        &args.data_dir.join("pki").join("admin.token"),
        &args.data_dir.join("pki").join("ca.crt"),
    )
    .await?;
    control_loops(
        &mut components,
        &args,
        args.allocate_node_cidrs.then_some(ipam),
    )
    .await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    match node {
        Some(node) => {
            let pod_cidr = pod_cidr.unwrap_or_default();
            let mut cfg = agent_config(&node, &args.data_dir, &pod_cidr, cluster_cidr)?;
            cfg.api_service = Some(
                running
                    .server
                    .advertise
                    .get()
                    .copied()
                    .unwrap_or(running.addr),
            );
            cfg.pod_mtu = podnet::pod_mtu_for(node.pod_network, cfg.node_ip).await;
            spawn_proxy(&mut components, client.clone(), &node, &cfg);
            spawn_podnet(&mut components, client.clone(), &node, &cfg);
            cluster_dns(&mut components, client.clone(), &cfg)?;
            let ctx = agent::prepare(client, cfg).context("preparing the node")?;
            // The node is what `up` is for: without its agent the process is not up.
            components.spawn_essential("node agent", move |token| {
                agent::run(ctx, token, move || {
                    let _ = ready_tx.send(());
                })
            });
        }
        None => {
            let _ = ready_tx.send(());
        }
    }
    let kubeconfig = running.kubeconfig.clone();
    let result = supervise(components, shutdown, ready_rx, || {
        // The one line tests and scripts wait for.
        println!("peapod ready: kubeconfig={}", kubeconfig.display());
    })
    .await;
    // Queued writes finish before the process goes, whatever ended it.
    let closed = store.close().await.context("closing the store");
    result.and(closed)
}

/// The control plane's loops beside the API server, each authenticated as its own user
/// (`apiserver::authn`) and restarted with backoff when it fails (they hold no state a
/// fresh start cannot rebuild from the API). Each runs only while this server leads its
/// Lease in kube-system (`kube-scheduler`, `kube-controller-manager`, upstream's names):
/// of several servers sharing one etcd, one schedules and one runs the controllers. On the
/// embedded sqlite store no other server can exist, so the lease is taken at once.
async fn control_loops(
    components: &mut Supervisor,
    args: &ServerArgs,
    node_ipam: Option<controllers::nodeipam::Config>,
) -> Result<()> {
    let identity = leaderelection::identity();
    let sole_candidate = args.datastore == "sqlite";
    if !args.no_scheduler {
        let client = component_client(args, "kube-scheduler.token").await?;
        let mut lease =
            leaderelection::Config::new("kube-scheduler", &identity, "default-scheduler");
        lease.sole_candidate = sole_candidate;
        components.spawn_restarting("scheduler", move |token| {
            let client = client.clone();
            leaderelection::run(client.clone(), lease.clone(), token, move |token| {
                scheduler::run(client.clone(), scheduler::SchedulerConfig::default(), token)
            })
        });
    }
    let root_ca = args.data_dir.join("pki").join("ca.crt");
    let root_ca_key = args.data_dir.join("pki").join("ca.key");
    let config = controllers::Config {
        root_ca: std::fs::read_to_string(&root_ca)
            .with_context(|| format!("reading {}", root_ca.display()))?,
        node_lifecycle: args.node_lifecycle.config(),
        root_ca_key: std::fs::read_to_string(&root_ca_key)
            .with_context(|| format!("reading {}", root_ca_key.display()))?,
        cluster_signing_duration: args.cluster_signing_duration,
        node_ipam,
    };
    let client = component_client(args, "kube-controller-manager.token").await?;
    let mut lease = leaderelection::Config::new(
        "kube-controller-manager",
        &identity,
        "kube-controller-manager",
    );
    lease.sole_candidate = sole_candidate;
    components.spawn_restarting("controllers", move |token| {
        let (client, config) = (client.clone(), config.clone());
        leaderelection::run(client.clone(), lease.clone(), token, move |token| {
            controllers::run(client.clone(), config.clone(), token)
        })
    });
    Ok(())
}

/// The cluster CIDR's first node-sized subnet: `up`'s pod CIDR when none is given.
fn first_subnet(ipam: &controllers::nodeipam::Config) -> Result<String> {
    let mut set = controllers::nodeipam::CidrSet::new(ipam.cluster_cidr, ipam.node_cidr_mask_size)?;
    Ok(set.allocate_next()?.to_string())
}

/// Runs `components` until SIGTERM or SIGINT, or until one whose failure takes the process
/// down fails: then the error is that one line. `announce` runs once `ready` fires (it
/// never fires when the component that sends it fails first).
async fn supervise(
    components: Supervisor,
    shutdown: CancellationToken,
    ready: tokio::sync::oneshot::Receiver<()>,
    announce: impl FnOnce(),
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let run = components.run();
    tokio::pin!(run);
    let ready = async {
        if ready.await.is_err() {
            // Its sender went without a word: the failure arrives through `run`.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ready);
    let mut announce = Some(announce);
    let finished = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = &mut ready, if announce.is_some() => {
                if let Some(announce) = announce.take() {
                    announce();
                }
            }
            _ = term.recv() => {
                info!("shutting down");
                shutdown.cancel();
                break run.await;
            }
            _ = int.recv() => {
                info!("shutting down");
                shutdown.cancel();
                break run.await;
            }
        }
    };
    // One flat line (`Error: node agent failed: ...`), not a chain of causes.
    finished.map_err(|failure| anyhow::anyhow!("{failure}"))
}

/// A client of the local API server authenticated with `DIR/pki/<token_file>`.
async fn component_client(args: &ServerArgs, token_file: &str) -> Result<kube::Client> {
    let pki = args.data_dir.join("pki");
    client_from_parts(
        &apiserver::tls::server_url(args.listen),
        &pki.join(token_file),
        &pki.join("ca.crt"),
    )
    .await
}

/// A client of our own API, as every component other than the store is.
async fn client_from_parts(
    server: &str,
    token_file: &Path,
    ca_file: &Path,
) -> Result<kube::Client> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let kubeconfig = kube::config::Kubeconfig {
        clusters: vec![kube::config::NamedCluster {
            name: "peapod".into(),
            cluster: Some(kube::config::Cluster {
                server: Some(server.into()),
                certificate_authority: Some(ca_file.display().to_string()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![kube::config::NamedAuthInfo {
            name: "peapod".into(),
            auth_info: Some(kube::config::AuthInfo {
                token: Some(token.trim().to_string().into()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![kube::config::NamedContext {
            name: "peapod".into(),
            context: Some(kube::config::Context {
                cluster: "peapod".into(),
                user: Some("peapod".into()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("peapod".into()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("building the API client configuration")?;
    kube::Client::try_from(config).context("building the API client")
}

/// The gateway the CNI bridge gets for `pod_cidr`: its first address, host-local's default.
fn bridge_gateway(pod_cidr: &str) -> Result<std::net::IpAddr> {
    let (net, bits) = pod_cidr
        .split_once('/')
        .with_context(|| format!("--pod-cidr {pod_cidr:?} is not ADDRESS/BITS"))?;
    let net: std::net::Ipv4Addr = net
        .parse()
        .with_context(|| format!("--pod-cidr {pod_cidr:?}: only IPv4 pod CIDRs are supported"))?;
    let bits: u32 =
        bits.parse().ok().filter(|b| *b <= 30).with_context(|| {
            format!("--pod-cidr {pod_cidr:?}: prefix length must be at most 30")
        })?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Ok(std::net::Ipv4Addr::from((u32::from(net) & mask) + 1).into())
}

/// Where the API server says cluster members reach it (`serverAddressByClientCIDRs` of
/// `/api`, which reports its advertise address), for the pods' `KUBERNETES_SERVICE_*`.
async fn advertised_api(client: &kube::Client) -> Option<SocketAddr> {
    let versions = match client.list_core_api_versions().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "reading /api; pods get no KUBERNETES_SERVICE_* variables");
            return None;
        }
    };
    versions
        .server_address_by_client_cidrs
        .iter()
        .find_map(|a| a.server_address.parse().ok())
}

/// The host's primary IPv4 address: the source address of the default route. Connecting a
/// UDP socket sends nothing; it only asks the kernel which address it would use.
fn primary_ip() -> std::net::IpAddr {
    let probe = || -> std::io::Result<std::net::IpAddr> {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
        sock.connect("192.0.2.1:9")?;
        Ok(sock.local_addr()?.ip())
    };
    probe().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_else(|_| "peapod".into())
}

/// The agent's configuration; `pod_cidr` empty: not known yet (node IPAM will say).
fn agent_config(
    node: &NodeArgs,
    data_dir: &Path,
    pod_cidr: &str,
    cluster_cidr: &str,
) -> Result<agent::AgentConfig> {
    let runtime = match node.runtime.as_str() {
        "crun" => agent::RuntimeChoice::Crun,
        "runc" => agent::RuntimeChoice::Runc,
        other => bail!("unknown --runtime {other:?}: use crun or runc"),
    };
    let mut labels = std::collections::BTreeMap::new();
    for kv in node.node_labels.iter().filter(|l| !l.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--node-labels entry {kv:?} is not key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let exe = std::env::current_exe().context("locating the peapod binary")?;
    let shim = exe.with_file_name("peapod-shim");
    if !shim.exists() {
        bail!(
            "{} is missing: it is built with peapod (`cargo build` builds both)",
            shim.display()
        );
    }
    Ok(agent::AgentConfig {
        node_name: node.node_name.clone().unwrap_or_else(host_name),
        node_ip: node.node_ip.unwrap_or_else(primary_ip),
        node_labels: labels,
        data_dir: data_dir.to_path_buf(),
        pod_cidr: pod_cidr.to_string(),
        cluster_cidr: cluster_cidr.to_string(),
        cni_bridge: node.cni_bridge.clone(),
        cni_plugin_dirs: node.cni_bin_dir.clone(),
        runtime,
        runtime_version: runtime_version(runtime.name()),
        shim,
        insecure_registries: node.insecure_registry.clone(),
        resolv_conf: node.resolv_conf.clone(),
        cluster_dns: node.cluster_dns.clone(),
        cluster_domain: node.cluster_domain.trim_matches('.').to_string(),
        started_at: jiff::Timestamp::now(),
        kubelet_port: node.kubelet_port,
        node_lease_duration_seconds: node.node_lease_duration_seconds,
        cgroup_root: node.cgroup_root.trim_matches('/').to_string(),
        pod_max_pids: (node.pod_max_pids > 0).then_some(node.pod_max_pids),
        api_service: None,
        pod_mtu: None,
    })
}

/// The node-local cluster DNS (ARCHITECTURE.md, "Cluster DNS"): on the pod bridge's
/// gateway, port 53, forwarding other names to the resolvers of `--resolv-conf`, and
/// publishing the node's endpoint of the `kube-dns` Service. Restarted with backoff: it
/// holds nothing a fresh start cannot rebuild from the API.
fn cluster_dns(
    components: &mut Supervisor,
    client: kube::Client,
    cfg: &agent::AgentConfig,
) -> Result<()> {
    let dns_cfg = dns::DnsConfig {
        listen: bridge_gateway(&cfg.pod_cidr)?,
        port: 53,
        cluster_domain: cfg.cluster_domain.clone(),
        upstreams: dns::upstreams_from(&cfg.resolv_conf),
        node_name: Some(cfg.node_name.clone()),
    };
    components.spawn_restarting("cluster dns", move |token| {
        dns::run(client.clone(), dns_cfg.clone(), token)
    });
    Ok(())
}

/// The node's service proxy (kube-proxy, nftables mode), restarted with backoff when it
/// fails: its state comes back from a relist and a fresh sync.
fn spawn_proxy(
    components: &mut Supervisor,
    client: kube::Client,
    node: &NodeArgs,
    cfg: &agent::AgentConfig,
) {
    let proxy_cfg = proxy::ProxyConfig {
        node_name: cfg.node_name.clone(),
        node_ips: vec![cfg.node_ip],
        cluster_cidr: cfg.cluster_cidr.clone(),
        table: node.proxy_table.clone(),
    };
    components.spawn_restarting("service proxy", move |token| {
        proxy::run(client.clone(), proxy_cfg.clone(), token)
    });
}

/// The pod network (routes to other nodes' pods: host-gw or vxlan), restarted with backoff
/// when it fails: a fresh start reads the kernel's state back and syncs.
fn spawn_podnet(
    components: &mut Supervisor,
    client: kube::Client,
    node: &NodeArgs,
    cfg: &agent::AgentConfig,
) {
    let podnet_cfg = podnet::PodNetConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        pod_cidr: cfg.pod_cidr.clone(),
        mode: node.pod_network,
        tools: Default::default(),
    };
    components.spawn_restarting("pod network", move |token| {
        podnet::run(client.clone(), podnet_cfg.clone(), token)
    });
}

/// `crun://1.8.1`, from the runtime's own `--version`.
fn runtime_version(name: &str) -> String {
    let out = std::process::Command::new(name).arg("--version").output();
    let version = out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|v| v.split('+').next().unwrap_or(v).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{name}://{version}")
}

/// `agent`: joins (or rejoins with its stored certificate, `crates/bootstrap`) through the
/// local load balancer over `--server`, then runs the node agent, the service proxy and
/// the cluster DNS on that one client.
async fn run_agent(args: AgentArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let mut cfg = agent_config(
        &args.node,
        &args.data_dir,
        args.node.pod_cidr.as_deref().unwrap_or_default(),
        &args.cidr.cluster_cidr,
    )?;
    let servers = args
        .server
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            bootstrap::lb::authority(s).with_context(|| format!("--server {s:?} is not a URL"))
        })
        .collect::<Result<Vec<_>>>()?;
    let shutdown = CancellationToken::new();
    let mut components = Supervisor::new(shutdown.clone());
    let lb = bootstrap::lb::LoadBalancer::bind(servers)
        .await
        .context("starting the API server load balancer")?;
    let url = lb.url().context("starting the API server load balancer")?;
    components.spawn_essential("API server load balancer", move |token| lb.run(token));
    let read = |path: &Option<PathBuf>| -> Result<Option<String>> {
        path.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    let joined = bootstrap::connect(bootstrap::Options {
        authority: url.trim_start_matches("https://").to_string(),
        url,
        token: read(&args.token_file)?,
        ca_pem: read(&args.ca_file)?,
        data_dir: args.data_dir.clone(),
        node_name: cfg.node_name.clone(),
    })
    .await
    .context("joining the cluster")?;
    let client = joined.client;
    if let Some(rotation) = joined.rotation {
        components.spawn_essential("client certificate rotation", move |token| {
            rotation.run(token)
        });
    }
    cfg.api_service = advertised_api(&client).await;
    if args.node.pod_cidr.is_none() {
        // The CNI bridge, the cluster DNS address and the masquerade rule all follow from
        // the pod CIDR: node IPAM's, written into this node's spec.
        cfg.pod_cidr = agent::node_status::await_pod_cidr(&client, &cfg)
            .await
            .context("waiting for the node's pod CIDR")?;
    }
    cfg.pod_mtu = podnet::pod_mtu_for(args.node.pod_network, cfg.node_ip).await;
    spawn_proxy(&mut components, client.clone(), &args.node, &cfg);
    spawn_podnet(&mut components, client.clone(), &args.node, &cfg);
    cluster_dns(&mut components, client.clone(), &cfg)?;
    let ctx = agent::prepare(client, cfg).context("preparing the node")?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // The agent is the whole process: when it fails, the process exits (and its containers
    // keep running for the next agent to re-adopt).
    components.spawn_essential("node agent", move |token| {
        agent::run(ctx, token, move || {
            let _ = ready_tx.send(());
        })
    });
    supervise(components, shutdown, ready_rx, || {
        println!("peapod agent ready");
    })
    .await
}

fn images(args: ImagesArgs) -> Result<()> {
    let dir = args.data_dir.join("images");
    match args.command {
        ImagesCommand::Import { files } => {
            let Some(_lock) = agent::try_lock_images(&dir)? else {
                // A node agent runs on this data dir: hand the archives to it.
                for file in files {
                    let name = file
                        .file_name()
                        .with_context(|| format!("{} is not a file", file.display()))?;
                    let target = dir.join(name).with_extension("tar");
                    let tmp = dir.join(format!(".{}.part", name.to_string_lossy()));
                    std::fs::copy(&file, &tmp)
                        .with_context(|| format!("copying {}", file.display()))?;
                    std::fs::rename(&tmp, &target)
                        .with_context(|| format!("placing {}", target.display()))?;
                    println!("queued {} for the running node agent", target.display());
                }
                return Ok(());
            };
            let store = image::ImageStore::open(&dir).context("opening the image store")?;
            for file in files {
                let imported = store
                    .import_archive(&file)
                    .with_context(|| format!("importing {}", file.display()))?;
                for img in imported {
                    println!("imported {} {}", img.names.join(","), img.id);
                }
            }
        }
        ImagesCommand::Ls => {
            println!("{:<60} {:<14} {:>12}", "IMAGE", "ID", "SIZE");
            for img in image::ImageStore::read_index(&dir).context("listing images")? {
                let id: String = img
                    .id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
                for name in &img.names {
                    println!("{name:<60} {id:<14} {:>12}", img.size);
                }
            }
        }
    }
    Ok(())
}

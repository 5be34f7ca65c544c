//! kube-controller-manager for peapod.
//!
//! Owns: one module per upstream controller, named as upstream names it —
//! [`namespace`] (deleting a terminating namespace's content, then finalizing it),
//! [`serviceaccounts`] (every namespace's `default` ServiceAccount) and
//! [`rootcacertpublisher`] (every namespace's `kube-root-ca.crt`), [`disruption`]
//! (PodDisruptionBudgets' status), [`replicaset`] (ReplicaSets and, through the same
//! code, ReplicationControllers), [`deployment`] (rollouts through ReplicaSets),
//! [`statefulset`] (StatefulSets: ordinal pods with stable
//! names, ordered rollouts, ControllerRevisions), [`daemon`] (DaemonSets: a pod on every eligible node,
//! rolling updates, ControllerRevisions), [`cronjob`] (a Job per CronJob schedule time),
//! [`job`] (Jobs' pods, status and conditions), [`ttlafterfinished`] (finished Jobs deleted
//! after `ttlSecondsAfterFinished`) and [`podgc`] (pods bound to nodes that no longer
//! exist), [`nodeipam`] (every node's pod CIDR, cut from the cluster CIDR),
//! [`nodelifecycle`] (node health from Leases and heartbeats: `Unknown` conditions, pods not
//! Ready, NoExecute and NoSchedule taints), [`tainteviction`] (pods deleted when their
//! node's NoExecute taints are not tolerated), [`endpointslice`] (Services'
//! EndpointSlices) and [`endpoints`] (their core/v1 Endpoints), [`csrapproving`] (node
//! client certificate requests auto-approved), [`csrsigning`] (approved requests of the
//! built-in signers issued with the cluster CA) and [`csrcleaner`] (old requests deleted) —
//! each a kube-runtime `Controller` whose reconcile is a thin shell over a pure
//! "desired vs observed" function — and [`garbagecollector`] (owner references: dependents
//! of absent owners deleted, orphaning and foreground deletion finished, for every kind
//! discovery lists, on its own metadata-only watches and work queue, decisions pure);
//! the shared informers they read (`informer`: one watcher per kind, one cache); what the
//! workload controllers share, named as upstream's files ([`controller_utils`]: pod
//! predicates, pods from templates, expectations, the deletion ranking, pod control with
//! its events, slow-start batches, the template hash; [`controller_ref_manager`]: adoption
//! and release; [`history`]: ControllerRevisions); and [`run`], which starts them all and
//! stops them together.
//!
//! Does not own: the bootstrap of system namespaces and priority classes, token issuing and
//! authentication (the API server's, as upstream), the `orphan`/`foregroundDeletion`
//! finalizers a DELETE adds (the API server's, as upstream's registry store).
//!
//! May depend on: `k8s-openapi`, `kube` (client and runtime), tokio, `api` (pure: label
//! selectors, defaults, PKCS#10 requests), `record` (events), rcgen, yasna and x509-parser
//! (the signer's certificates). Never on the API
//! server or the store: controllers act only through the public API, authenticated as
//! `system:kube-controller-manager`.

mod backoff;
pub mod controller_ref_manager;
pub mod controller_utils;
pub mod cronjob;
pub mod csrapproving;
pub mod csrcleaner;
pub mod csrsigning;
pub mod daemon;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod history;
mod informer;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod rootcacertpublisher;
mod routed;
pub mod serviceaccounts;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;

use std::fmt::Debug;
use std::time::Duration;

use futures::{FutureExt, Stream};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::{controller, watcher};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use informer::Informer;

/// How often every controller reconciles everything regardless (upstream's informer resync
/// and `--namespace-sync-period`, both 5 minutes).
const RESYNC: Duration = Duration::from_secs(300);

/// What the controllers need besides a client.
#[derive(Clone)]
pub struct Config {
    /// The cluster CA (PEM) the root-ca-cert-publisher puts in every namespace
    /// (kube-controller-manager's `--root-ca-file`), which also signs certificates
    /// (`--cluster-signing-cert-file`).
    pub root_ca: String,
    /// The node lifecycle controller's flags (`--node-monitor-period`, grace periods,
    /// eviction rates).
    pub node_lifecycle: nodelifecycle::Config,
    /// The node IPAM controller's range (kube-controller-manager's `--cluster-cidr` and
    /// `--node-cidr-mask-size`); None with `--allocate-node-cidrs=false`.
    pub node_ipam: Option<nodeipam::Config>,
    /// The cluster CA's private key (PEM), the signer's (`--cluster-signing-key-file`).
    pub root_ca_key: String,
    /// The longest certificate the signer issues (`--cluster-signing-duration`).
    pub cluster_signing_duration: Duration,
}

impl Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node_ipam", &self.node_ipam)
            .field("cluster_signing_duration", &self.cluster_signing_duration)
            .field("node_lifecycle", &self.node_lifecycle)
            .finish_non_exhaustive()
    }
}

/// Why the controllers stopped before being told to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// kube-runtime's watcher retries errors itself; its stream only ends if dropped.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
    #[error("the {0} controller stopped")]
    ControllerEnded(&'static str),
    #[error("a controller task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the certificate signer: {0}")]
    Signer(#[from] csrsigning::x509::Error),
}

/// Runs every controller until `shutdown`; the first to fail stops the others.
pub async fn run(client: Client, config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let stop = shutdown.child_token();
    let ca = std::sync::Arc::new(csrsigning::x509::Ca::from_pem(
        &config.root_ca,
        &config.root_ca_key,
    )?);
    let namespaces = Informer::<Namespace>::new(
        "namespaces",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let accounts = Informer::<ServiceAccount>::new(
        "serviceaccounts",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    // Only one ConfigMap per namespace concerns a controller: cache just those, not every
    // ConfigMap's data.
    let config_maps = Informer::<ConfigMap>::new(
        "configmaps",
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!(
            "metadata.name={}",
            rootcacertpublisher::CONFIG_MAP
        )),
    );

    let pdbs = Informer::<PodDisruptionBudget>::new(
        "poddisruptionbudgets",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let pods = Informer::<Pod>::new("pods", Api::all(client.clone()), watcher::Config::default());
    let replica_sets = Informer::<ReplicaSet>::new(
        "replicasets",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = Informer::<Deployment>::new(
        "deployments",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let replication_controllers = Informer::<ReplicationController>::new(
        "replicationcontrollers",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let cron_jobs = Informer::<CronJob>::new(
        "cronjobs",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    // One Job cache for the CronJob, Job and TTL-after-finished controllers.
    let jobs = Informer::<Job>::new("jobs", Api::all(client.clone()), watcher::Config::default());
    let daemon_sets = Informer::<DaemonSet>::new(
        "daemonsets",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let nodes = Informer::<Node>::new(
        "nodes",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let stateful_sets = Informer::<StatefulSet>::new(
        "statefulsets",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    // One ControllerRevision cache for the StatefulSet and DaemonSet controllers.
    let controller_revisions = Informer::<ControllerRevision>::new(
        "controllerrevisions",
        Api::all(client.clone()),
        watcher::Config::default(),
    );

    // One Service cache for the EndpointSlice and Endpoints controllers.
    let services = Informer::<Service>::new(
        "services",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let endpoint_slices = Informer::<EndpointSlice>::new(
        "endpointslices",
        Api::all(client.clone()),
        watcher::Config::default(),
    );
    let endpoints = Informer::<Endpoints>::new(
        "endpoints",
        Api::all(client.clone()),
        watcher::Config::default(),
    );

    // Only the nodes' Leases concern the node lifecycle controller.
    let node_leases = Informer::<Lease>::new(
        "leases",
        Api::namespaced(client.clone(), nodelifecycle::NODE_LEASE_NAMESPACE),
        watcher::Config::default(),
    );
    // One CSR cache for the approving, signing and cleaning controllers.
    let csrs = Informer::<CertificateSigningRequest>::new(
        "certificatesigningrequests",
        Api::all(client.clone()),
        watcher::Config::default(),
    );

    // Controllers subscribe before the informers start, so they miss nothing.
    let mut tasks = tokio::task::JoinSet::new();
    let controllers: Vec<(&'static str, futures::future::BoxFuture<'static, ()>)> = vec![
        (
            "namespace",
            namespace::controller(client.clone(), &namespaces, stop.clone()).boxed(),
        ),
        (
            "serviceaccounts",
            serviceaccounts::controller(client.clone(), &namespaces, &accounts, stop.clone())
                .boxed(),
        ),
        (
            "root-ca-cert-publisher",
            rootcacertpublisher::controller(
                client.clone(),
                config.root_ca,
                &namespaces,
                &config_maps,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "disruption",
            disruption::controller(client.clone(), &pdbs, &pods, stop.clone()).boxed(),
        ),
        (
            "replicaset",
            replicaset::controller(client.clone(), &replica_sets, &pods, stop.clone()).boxed(),
        ),
        (
            "deployment",
            deployment::controller(
                client.clone(),
                &deployments,
                &replica_sets,
                &pods,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "replicationcontroller",
            replicaset::controller(
                client.clone(),
                &replication_controllers,
                &pods,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "cronjob",
            cronjob::controller(client.clone(), &cron_jobs, &jobs, stop.clone()).boxed(),
        ),
        (
            "job",
            job::controller(client.clone(), &jobs, &pods, stop.clone()).boxed(),
        ),
        (
            "ttl-after-finished",
            ttlafterfinished::controller(client.clone(), &jobs, stop.clone()).boxed(),
        ),
        (
            "daemonset",
            daemon::controller(
                client.clone(),
                &daemon_sets,
                &nodes,
                &pods,
                &controller_revisions,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "statefulset",
            statefulset::controller(
                client.clone(),
                &stateful_sets,
                &pods,
                &controller_revisions,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "endpointslice",
            endpointslice::controller(
                client.clone(),
                &services,
                &pods,
                &endpoint_slices,
                &nodes,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "endpoint",
            endpoints::controller(client.clone(), &services, &pods, &endpoints, stop.clone())
                .boxed(),
        ),
        (
            "pod-garbage-collector",
            podgc::controller(client.clone(), &pods, &nodes, stop.clone()).boxed(),
        ),
        (
            "node-lifecycle-controller",
            nodelifecycle::controller(
                client.clone(),
                config.node_lifecycle.clone(),
                &nodes,
                &node_leases,
                &pods,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "taint-eviction-controller",
            tainteviction::controller(client.clone(), &pods, &nodes, stop.clone()).boxed(),
        ),
        (
            "csrapproving",
            csrapproving::controller(client.clone(), &csrs, stop.clone()).boxed(),
        ),
        (
            "csrsigning",
            csrsigning::controller(
                client.clone(),
                ca,
                config.cluster_signing_duration,
                &csrs,
                stop.clone(),
            )
            .boxed(),
        ),
        (
            "csrcleaner",
            csrcleaner::controller(client.clone(), &csrs, stop.clone()).boxed(),
        ),
    ];
    let mut controllers = controllers;
    if let Some(ipam) = config.node_ipam {
        controllers.push((
            "nodeipam",
            nodeipam::controller(client.clone(), ipam, &nodes, stop.clone()).boxed(),
        ));
    }
    for (name, controller) in controllers {
        let token = stop.clone();
        tasks.spawn(async move {
            controller.await;
            if token.is_cancelled() {
                Ok(())
            } else {
                Err(Error::ControllerEnded(name))
            }
        });
    }
    tasks.spawn(garbagecollector::run(client.clone(), stop.clone()));
    tasks.spawn(namespaces.run(stop.clone()));
    tasks.spawn(accounts.run(stop.clone()));
    tasks.spawn(config_maps.run(stop.clone()));
    tasks.spawn(pdbs.run(stop.clone()));
    tasks.spawn(pods.run(stop.clone()));
    tasks.spawn(replica_sets.run(stop.clone()));
    tasks.spawn(replication_controllers.run(stop.clone()));
    tasks.spawn(deployments.run(stop.clone()));
    tasks.spawn(cron_jobs.run(stop.clone()));
    tasks.spawn(jobs.run(stop.clone()));
    tasks.spawn(daemon_sets.run(stop.clone()));
    tasks.spawn(nodes.run(stop.clone()));
    tasks.spawn(stateful_sets.run(stop.clone()));
    tasks.spawn(controller_revisions.run(stop.clone()));
    tasks.spawn(services.run(stop.clone()));
    tasks.spawn(endpoint_slices.run(stop.clone()));
    tasks.spawn(endpoints.run(stop.clone()));
    tasks.spawn(node_leases.run(stop.clone()));
    tasks.spawn(csrs.run(stop.clone()));

    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let failure = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => Error::Task(e),
        };
        if result.is_ok() {
            warn!(error = %failure, "controllers: stopping");
            result = Err(failure);
        }
        stop.cancel();
    }
    result
}

/// Who a controller's events say wrote them: upstream's legacy recorder in
/// kube-controller-manager sets `source.component` (`replicaset-controller`), no host, and
/// the same component as the reporting controller.
fn event_source(component: &str) -> record::Source {
    record::Source {
        component: component.to_string(),
        host: None,
        reporting_controller: component.to_string(),
        reporting_instance: String::new(),
    }
}

/// A stream that yields every `period`, starting one period from now.
fn ticks(period: Duration) -> impl Stream<Item = ()> + Send + 'static {
    let start = tokio::time::Instant::now() + period;
    futures::stream::unfold(
        tokio::time::interval_at(start, period),
        |mut interval| async {
            interval.tick().await;
            Some(((), interval))
        },
    )
}

/// Logs what a controller's reconcile stream reports: failures the error policy already
/// logged are not repeated, and a trigger for an object no longer cached is routine.
fn log_result<K, E, Q>(
    controller: &'static str,
    result: Result<
        (kube::runtime::reflector::ObjectRef<K>, controller::Action),
        controller::Error<E, Q>,
    >,
) where
    K: kube::Resource,
    K::DynamicType: Debug,
    E: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    match result {
        Ok((object, action)) => debug!(controller, %object, ?action, "reconciled"),
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(controller::Error::ObjectNotFound(object)) => {
            debug!(controller, %object, "gone before its reconcile")
        }
        Err(e) => warn!(controller, error = %e, "controller error"),
    }
}

/// Whether the API refused a create because the namespace is gone or terminating
/// (upstream checks the `NamespaceTerminating` cause of the 403; peapod's message says it).
fn is_gone_namespace(status: &kube::core::Status) -> bool {
    status.code == 404
        || (status.code == 403 && status.message.contains("because it is being terminated"))
}

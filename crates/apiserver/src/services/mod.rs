//! What a Service holds outside its object: ClusterIPs (IPAddress objects, [`ipalloc`]) and
//! node ports (the range record, [`portalloc`]), taken and given back by the Service kind's
//! storage hooks as upstream's service REST storage does (`beginCreate`, `beginUpdate`,
//! `afterDelete` with their transactions); the repair of both against the stored Services
//! ([`repair`]); and the system Services kube-apiserver keeps — `kubernetes` with its
//! Endpoints and EndpointSlice listing every live API server, and `kube-dns` ([`system`]).
//!
//! ```text
//!  create:  defaults ─▶ IP families ─▶ ClusterIPs (IPAddress creates) ─▶ node ports (CAS) ─▶ validate ─▶ store
//!                                          │                               │                               │
//!                                          └──── released again if anything after them fails ◀─────────────┘
//!  update:  ... validate ─▶ allocate what the new type needs ─▶ store ─▶ ok: release what it no longer holds
//!  delete:  store ─▶ release ClusterIPs and node ports, delete the Service's Endpoints
//! ```

pub mod ipalloc;
pub mod portalloc;
pub mod repair;
pub mod system;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use api::field::{FieldError, FieldErrors};
pub use api::networking::Cidr;
use api::service::{self as svcapi, AllocError, ClusterFamilies};
use k8s_openapi::api::core::v1::Service;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::ApiError;
use crate::kinds;
use crate::registry::{Finish, HookFuture, StorageHooks};
use crate::server::ApiServer;
use ipalloc::{IpAllocator, IpError, Owner};
use portalloc::{Failure, PortRange};

/// The Service ranges of a cluster (kube-apiserver's `--service-cluster-ip-range`,
/// `--service-node-port-range`) and the kube-dns address.
#[derive(Debug, Clone)]
pub struct Config {
    pub cidr: Cidr,
    pub node_ports: PortRange,
    /// The `kube-dns` Service's ClusterIP; `None`: the range's tenth address.
    pub cluster_dns: Option<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cidr: Cidr::v4([10, 43, 0, 0], 16),
            node_ports: PortRange::default(),
            cluster_dns: None,
        }
    }
}

/// k3s's default Service range, peapod's too.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
pub const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

impl Config {
    /// The `kubernetes` Service's address: the range's first.
    pub fn kubernetes_ip(&self) -> IpAddr {
        self.cidr.first()
    }

    /// The `kube-dns` Service's address.
    pub fn dns_ip(&self) -> IpAddr {
        self.cluster_dns
            .or_else(|| self.cidr.nth(10))
            .unwrap_or_else(|| self.cidr.first())
    }
}

/// The allocators one API server uses.
pub struct Allocators {
    pub config: Config,
    pub ips: IpAllocator,
}

impl Allocators {
    pub fn new(config: Config) -> Allocators {
        Allocators {
            ips: IpAllocator::new(config.cidr),
            config,
        }
    }

    pub fn families(&self) -> ClusterFamilies {
        ClusterFamilies(vec![self.config.cidr.family()])
    }
}

/// The Service kind's storage hooks.
pub static HOOKS: StorageHooks = StorageHooks {
    begin_create,
    begin_update,
    after_delete,
};

fn begin_create<'a>(
    server: &'a ApiServer,
    obj: &'a mut Value,
    dry_run: bool,
) -> HookFuture<'a, Result<Finish, ApiError>> {
    Box::pin(create_hook(server, obj, dry_run))
}

fn begin_update<'a>(
    server: &'a ApiServer,
    new: &'a mut Value,
    old: &'a Value,
    dry_run: bool,
) -> HookFuture<'a, Result<Finish, ApiError>> {
    Box::pin(update_hook(server, new, old, dry_run))
}

fn after_delete<'a>(server: &'a ApiServer, obj: &'a Value) -> HookFuture<'a, ()> {
    Box::pin(delete_hook(server, obj))
}

/// A finish step that does nothing.
pub fn noop() -> Finish {
    Box::new(|_| Box::pin(async {}))
}

fn finish<F, Fut>(f: F) -> Finish
where
    F: FnOnce(bool) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |ok| Box::pin(f(ok)))
}

fn invalid(name: &str, errs: FieldErrors) -> ApiError {
    ApiError::invalid(&kinds::service::RESOURCE, name, errs)
}

fn internal(msg: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("Internal error occurred: {msg}"))
}

fn owner(svc: &Service) -> Owner {
    Owner {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
    }
}

fn port_failure(name: &str, f: Failure) -> ApiError {
    match f {
        Failure::Alloc(AllocError::Invalid(errs)) => invalid(name, errs),
        Failure::Alloc(AllocError::Internal(msg)) => internal(msg),
        Failure::Store(e) => e.into(),
    }
}

fn to_object(svc: &Service) -> Result<Value, ApiError> {
    serde_json::to_value(svc).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Upstream's `beginCreate`: IP families, then ClusterIPs and node ports, taken before
/// validation and released again if the create does not land.
async fn create_hook(
    server: &ApiServer,
    obj: &mut Value,
    dry_run: bool,
) -> Result<Finish, ApiError> {
    let Ok(mut svc) = Service::deserialize(&*obj) else {
        return Ok(noop());
    };
    svcapi::default_service(&mut svc);
    svcapi::normalize_cluster_ips(&mut svc, None);
    let name = svc.metadata.name.clone().unwrap_or_default();
    let alloc = server.services();
    let errs = svcapi::init_ip_family_fields(&mut svc, None, &alloc.families());
    if !errs.is_empty() {
        return Err(invalid(&name, errs));
    }
    let owner = owner(&svc);
    let ips = alloc_cluster_ips(server, &alloc, &mut svc, &owner, dry_run).await?;
    let range = alloc.config.node_ports;
    let ports = match portalloc::allocate(&server.store, range, &mut svc, dry_run, |s, op| {
        svcapi::init_node_ports(s, op)
    })
    .await
    {
        Ok(op) => op.allocated,
        Err(f) => {
            release_ips(&server.store, &ips, &owner).await;
            return Err(port_failure(&name, f));
        }
    };
    *obj = to_object(&svc)?;
    if dry_run {
        return Ok(noop());
    }
    let store = server.store.clone();
    Ok(finish(move |ok| async move {
        if ok {
            if !ips.is_empty() {
                tracing::info!(service = %format!("{}/{}", owner.namespace, owner.name), cluster_ips = ?ips, "allocated clusterIPs");
            }
            return;
        }
        release_ips(&store, &ips, &owner).await;
        if let Err(e) = portalloc::release(&store, range, &ports).await {
            tracing::warn!(error = %e, "releasing node ports after a failed create");
        }
    }))
}

/// Upstream's `beginUpdate` (`allocateUpdate`): on a type change, ClusterIPs are allocated
/// (from ExternalName) or released (to ExternalName) and node ports follow the ports; what
/// is released only goes once the update landed.
async fn update_hook(
    server: &ApiServer,
    new_obj: &mut Value,
    old_obj: &Value,
    dry_run: bool,
) -> Result<Finish, ApiError> {
    let (Ok(mut new), Ok(old)) = (
        Service::deserialize(&*new_obj),
        Service::deserialize(old_obj),
    ) else {
        return Ok(noop());
    };
    if new.spec == old.spec {
        return Ok(noop());
    }
    let name = new.metadata.name.clone().unwrap_or_default();
    let alloc = server.services();
    let errs = svcapi::init_ip_family_fields(&mut new, Some(&old), &alloc.families());
    if !errs.is_empty() {
        return Err(invalid(&name, errs));
    }
    let owner = owner(&new);
    let was_en = svcapi::service_type(&old) == svcapi::TYPE_EXTERNAL_NAME;
    let is_en = svcapi::service_type(&new) == svcapi::TYPE_EXTERNAL_NAME;
    let mut allocated_ips = Vec::new();
    let mut release_ips_after = Vec::new();
    if was_en && !is_en {
        allocated_ips = alloc_cluster_ips(server, &alloc, &mut new, &owner, dry_run).await?;
    } else if !was_en && is_en && !svcapi::is_headless(&old) {
        release_ips_after = svcapi::held_cluster_ips(&old);
    }
    let range = alloc.config.node_ports;
    let op = match portalloc::allocate(&server.store, range, &mut new, dry_run, |s, op| {
        svcapi::update_node_ports(s, &old, op)
    })
    .await
    {
        Ok(op) => op,
        Err(f) => {
            release_ips(&server.store, &allocated_ips, &owner).await;
            return Err(port_failure(&name, f));
        }
    };
    // What allocation filled in is checked like the rest of the update.
    let errs = svcapi::validate_service_update(&new, &old);
    if !errs.is_empty() {
        if !dry_run {
            release_ips(&server.store, &allocated_ips, &owner).await;
            let _ = portalloc::release(&server.store, range, &op.allocated).await;
        }
        return Err(invalid(&name, errs));
    }
    *new_obj = to_object(&new)?;
    if dry_run {
        return Ok(noop());
    }
    let store = server.store.clone();
    let (taken_ports, freed_ports) = (op.allocated, op.released);
    Ok(finish(move |ok| async move {
        let (ips, ports) = if ok {
            let ips: Vec<IpAddr> = release_ips_after
                .iter()
                .filter_map(|i| i.parse().ok())
                .collect();
            (ips, freed_ports)
        } else {
            (allocated_ips, taken_ports)
        };
        release_ips(&store, &ips, &owner).await;
        if let Err(e) = portalloc::release(&store, range, &ports).await {
            tracing::warn!(error = %e, "releasing node ports after a service update");
        }
    }))
}

/// Upstream's `afterDelete`: the Service's ClusterIPs and node ports go back, and its
/// Endpoints go with it.
async fn delete_hook(server: &ApiServer, obj: &Value) {
    let Ok(svc) = Service::deserialize(obj) else {
        return;
    };
    let owner = owner(&svc);
    let ips: Vec<IpAddr> = svcapi::held_cluster_ips(&svc)
        .iter()
        .filter_map(|i| i.parse().ok())
        .collect();
    release_ips(&server.store, &ips, &owner).await;
    let ports: Vec<i32> = svcapi::held_node_ports(&svc).into_iter().collect();
    if let Err(e) =
        portalloc::release(&server.store, server.services().config.node_ports, &ports).await
    {
        tracing::warn!(error = %e, "releasing node ports of a deleted service; the repair loop will");
    }
    let key = kinds::endpoints::RESOURCE.key(Some(&owner.namespace), &owner.name);
    match server.store.delete(&key, None).await {
        Ok(_) | Err(store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(error = %e, "deleting the endpoints of a deleted service"),
    }
}

async fn release_ips(store: &Arc<dyn store::Store>, ips: &[IpAddr], owner: &Owner) {
    for ip in ips {
        if let Err(e) = ipalloc::release(store, &ip.to_string(), owner).await {
            tracing::warn!(error = %e, %ip, "releasing a ClusterIP; the repair loop will");
        }
    }
}

/// `allocClusterIPs`: one address per IP family of a Service that has a ClusterIP, the one
/// asked for or a free one; the addresses actually taken are returned.
async fn alloc_cluster_ips(
    server: &ApiServer,
    alloc: &Allocators,
    svc: &mut Service,
    owner: &Owner,
    dry_run: bool,
) -> Result<Vec<IpAddr>, ApiError> {
    if svcapi::service_type(svc) == svcapi::TYPE_EXTERNAL_NAME || svcapi::is_headless(svc) {
        return Ok(Vec::new());
    }
    let fams = svcapi::ip_families(svc).to_vec();
    let mut ips = svcapi::cluster_ips(svc).to_vec();
    let mut taken: Vec<IpAddr> = Vec::new();
    for (i, fam) in fams.iter().enumerate() {
        if i >= ips.len() {
            ips.push(String::new());
        }
        if fam != alloc.ips.cidr.family() {
            continue;
        }
        let res = if ips[i].is_empty() {
            alloc
                .ips
                .allocate_next(&server.store, owner, dry_run)
                .await
                .map_err(|e| match e {
                    IpError::Store(s) => s.into(),
                    e => internal(format!("failed to allocate a serviceIP: {e}")),
                })
        } else {
            match ips[i].parse::<IpAddr>() {
                Err(_) => Err(internal(format!("failed to parse service IP {:?}", ips[i]))),
                Ok(ip) => alloc
                    .ips
                    .allocate(&server.store, ip, owner, dry_run)
                    .await
                    .map(|()| ip)
                    .map_err(|e| match e {
                        IpError::Store(s) => s.into(),
                        e => invalid(
                            &owner.name,
                            vec![FieldError::invalid(
                                "spec.clusterIPs",
                                Value::from(ips.clone()),
                                format!("failed to allocate IP {ip}: {e}"),
                            )],
                        ),
                    }),
            }
        };
        match res {
            Ok(ip) => {
                if !dry_run {
                    taken.push(ip);
                }
                ips[i] = ip.to_string();
            }
            Err(e) => {
                release_ips(&server.store, &taken, owner).await;
                return Err(e);
            }
        }
    }
    let spec = svc.spec.get_or_insert_with(Default::default);
    spec.cluster_ip = ips.first().cloned();
    spec.cluster_ips = Some(ips);
    Ok(taken)
}

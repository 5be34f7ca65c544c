//! The Services kube-apiserver keeps (its "kubernetes service controller" and lease
//! endpoint reconciler, `pkg/controlplane/controller/kubernetesservice` and
//! `pkg/controlplane/reconcilers/lease.go`), and the cluster DNS Service:
//!
//! - the default ServiceCIDR `kubernetes` for `--service-cidr`, Ready;
//! - `default/kubernetes`: the range's first address, port 443 `https` to the API's port,
//!   labels `component=apiserver`, `provider=kubernetes`, no selector; recreated when
//!   deleted, its ports and type put back when changed;
//! - its Endpoints and EndpointSlice `kubernetes`, listing the advertise address of every
//!   API server with a live lease: each server renews `/registry/masterleases/<ip>` every
//!   10 s with a 15 s expiry, drops expired ones, and writes the list when it changed, so
//!   servers sharing a store converge on the same list; a server that stops removes its
//!   own lease first;
//! - `kube-system/kube-dns`: `--cluster-dns` (default the range's tenth address), ports
//!   `dns` 53/UDP and `dns-tcp` 53/TCP, `internalTrafficPolicy: Local` (every node answers
//!   DNS itself and publishes its own EndpointSlice), no selector; created when missing,
//!   never changed.
//!
//! Where an API server is reached: `--advertise-address` on the listen port; else the
//! listen address unless it is loopback; else, listening on every address, the address of
//! the host's default route (as kube-apiserver picks its host interface). A server
//! listening on loopback only advertises nothing: no pod could reach it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::HOOKS;
use crate::errors::ApiError;
use crate::handlers::create::reset_system_fields;
use crate::kinds;
use crate::object;
use crate::registry::Resource;
use crate::server::ApiServer;

pub const KUBERNETES: &str = "kubernetes";
pub const KUBE_DNS: &str = "kube-dns";
const LEASE_PREFIX: &str = "/registry/masterleases/";
/// Upstream's endpoint reconciler interval and lease TTL.
pub const INTERVAL: Duration = Duration::from_secs(10);
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// Creates what is missing at start: the default ServiceCIDR, `kubernetes`, `kube-dns`,
/// this server's lease and the `kubernetes` endpoints.
pub async fn bootstrap(server: &ApiServer) -> Result<(), ApiError> {
    ensure_service_cidr(server).await?;
    reconcile_once(server, advertised(server)).await
}

async fn ensure_service_cidr(server: &ApiServer) -> Result<(), ApiError> {
    let cidr = server.services().config.cidr.to_string();
    let key = kinds::servicecidr::RESOURCE.key(None, api::networking::DEFAULT_SERVICE_CIDR);
    if let Some(kv) = server.store.get(&key).await? {
        let v: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if v["spec"]["cidrs"][0] != cidr.as_str() {
            tracing::warn!(stored = %v["spec"]["cidrs"], flag = %cidr, "the default ServiceCIDR differs from --service-cidr; keeping the stored one, as kube-apiserver does");
        }
        return Ok(());
    }
    let mut obj = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": api::networking::DEFAULT_SERVICE_CIDR},
        "spec": {"cidrs": [cidr]},
        "status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "",
            "message": "Kubernetes default Service CIDR is ready",
            "lastTransitionTime": object::now_rfc3339(),
        }]},
    });
    reset_system_fields(&mut obj);
    let bytes = kinds::servicecidr::RESOURCE
        .strategy
        .encode(&obj)
        .map_err(ApiError::Internal)?;
    match server.store.create(&key, Bytes::from(bytes)).await {
        Ok(_) | Err(store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where this API server is reached by pods (see the module doc).
pub fn advertised(server: &ApiServer) -> Option<SocketAddr> {
    if let Some(a) = server.advertise.get() {
        return Some(*a);
    }
    let listen = server.listen;
    if listen.ip().is_unspecified() {
        return default_route_address(listen.is_ipv6())
            .map(|ip| SocketAddr::new(ip, listen.port()));
    }
    (!listen.ip().is_loopback()).then_some(listen)
}

/// The source address the host would use towards the world: a UDP socket "connected" to
/// a public address picks its route without sending anything.
fn default_route_address(v6: bool) -> Option<IpAddr> {
    let (bind, target) = if v6 {
        ("[::]:0", "[2001:4860:4860::8888]:53")
    } else {
        ("0.0.0.0:0", "8.8.8.8:53")
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

fn kubernetes_ports(server: &ApiServer) -> Value {
    let port = advertised(server).map_or(server.listen.port(), |a| a.port());
    json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
}

/// `default/kubernetes`: created when missing; its ports and type put back when they
/// differ (upstream's `CreateOrUpdateMasterServiceIfNeeded` with reconcile).
pub async fn ensure_kubernetes_service(server: &ApiServer) -> Result<(), ApiError> {
    let ports = kubernetes_ports(server);
    let ip = server.services().config.kubernetes_ip().to_string();
    let obj = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": KUBERNETES, "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "sessionAffinity": "None", "ports": ports},
    });
    if create_service(server, obj).await? {
        return Ok(());
    }
    let key = kinds::service::RESOURCE.key(Some("default"), KUBERNETES);
    let Some(kv) = server.store.get(&key).await? else {
        return Ok(());
    };
    let current: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
    let same_ports = current["spec"]["ports"].as_array().is_some_and(|p| {
        p.len() == 1
            && p[0]["name"] == "https"
            && p[0]["port"] == 443
            && p[0]["protocol"] == "TCP"
            && p[0]["targetPort"] == ports[0]["targetPort"]
    });
    if same_ports && current["spec"]["type"] == "ClusterIP" {
        return Ok(());
    }
    let resource: &'static Resource = &kinds::service::RESOURCE;
    crate::handlers::update::guaranteed_update(
        server,
        resource,
        Some("default"),
        KUBERNETES,
        None,
        false,
        |old| {
            let mut new = old.clone();
            new["spec"]["ports"] = ports.clone();
            new["spec"]["type"] = json!("ClusterIP");
            crate::handlers::update::replace(
                resource,
                new,
                &old,
                crate::handlers::update::Target::Main,
                KUBERNETES,
            )
        },
    )
    .await?;
    Ok(())
}

/// `kube-system/kube-dns`, created when missing and otherwise left as it is.
pub async fn ensure_dns_service(server: &ApiServer) -> Result<(), ApiError> {
    let ip = server.services().config.dns_ip().to_string();
    let obj = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": KUBE_DNS, "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "internalTrafficPolicy": "Local",
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    });
    create_service(server, obj).await.map(|_| ())
}

/// Creates a Service through the kind's hooks and strategy, as a POST would; `false` if it
/// exists.
pub async fn create_service(server: &ApiServer, mut obj: Value) -> Result<bool, ApiError> {
    let resource = &kinds::service::RESOURCE;
    let name = object::name(&obj).to_string();
    let ns = object::namespace(&obj).unwrap_or_default().to_string();
    let key = resource.key(Some(&ns), &name);
    if server.store.get(&key).await?.is_some() {
        return Ok(false);
    }
    reset_system_fields(&mut obj);
    let finish = (HOOKS.begin_create)(server, &mut obj, false).await?;
    let result = match resource.strategy.prepare_create(&obj, true) {
        Err(errs) => Err(ApiError::invalid(resource, &name, errs)),
        Ok(bytes) => server
            .store
            .create(&key, Bytes::from(bytes))
            .await
            .map_err(ApiError::from),
    };
    finish(result.is_ok()).await;
    match result {
        Ok(_) => Ok(true),
        Err(ApiError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The live API servers' addresses, from the leases; expired leases are deleted.
async fn live_servers(server: &ApiServer, now: i64) -> Result<BTreeMap<IpAddr, u16>, store::Error> {
    let page = server
        .store
        .list(LEASE_PREFIX, store::ListOptions::default())
        .await?;
    let mut out = BTreeMap::new();
    for kv in page.items {
        let v: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let ip = v["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
        let expires = v["expires"].as_i64().unwrap_or(0);
        match ip {
            Some(ip) if expires > now => {
                out.insert(ip, v["port"].as_u64().unwrap_or(0) as u16);
            }
            _ => {
                let _ = server.store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    Ok(out)
}

async fn renew_lease(server: &ApiServer, me: SocketAddr, now: i64) -> Result<(), store::Error> {
    let key = format!("{LEASE_PREFIX}{}", me.ip());
    let v = json!({"ip": me.ip().to_string(), "port": me.port(),
                   "expires": now + LEASE_TTL.as_secs() as i64});
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    match server.store.get(&key).await? {
        Some(kv) => server
            .store
            .update(&key, bytes, Some(kv.mod_revision))
            .await
            .map(|_| ()),
        None => server.store.create(&key, bytes).await.map(|_| ()),
    }
}

/// Writes `obj` (name, namespace and the fields given) unless what is stored already has
/// the same labels and content fields.
async fn write_if_changed(
    server: &ApiServer,
    resource: &'static Resource,
    mut obj: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let name = object::name(&obj).to_string();
    let ns = object::namespace(&obj).unwrap_or_default().to_string();
    let key = resource.key(Some(&ns), &name);
    match server.store.get(&key).await? {
        None => {
            reset_system_fields(&mut obj);
            let bytes = resource
                .strategy
                .prepare_create(&obj, true)
                .map_err(|errs| ApiError::invalid(resource, &name, errs))?;
            match server.store.create(&key, Bytes::from(bytes)).await {
                Ok(_) | Err(store::Error::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Some(kv) => {
            let mut current: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let labels_same =
                fields_same(&current["metadata"]["labels"], &obj["metadata"]["labels"]);
            if labels_same && fields.iter().all(|f| fields_same(&current[*f], &obj[*f])) {
                return Ok(());
            }
            current["metadata"]["labels"] = obj["metadata"]["labels"].clone();
            for f in fields {
                match obj.get(*f) {
                    Some(v) if !v.is_null() => current[*f] = v.clone(),
                    _ => {
                        if let Some(m) = current.as_object_mut() {
                            m.remove(*f);
                        }
                    }
                }
            }
            let bytes = resource
                .strategy
                .encode(&current)
                .map_err(ApiError::Internal)?;
            match server
                .store
                .update(&key, Bytes::from(bytes), Some(kv.mod_revision))
                .await
            {
                // Someone wrote in between: the next round looks again.
                Ok(_) | Err(store::Error::Conflict { .. } | store::Error::NotFound { .. }) => {
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn fields_same(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    a == b || (empty(a) && empty(b))
}

/// Writes `default/kubernetes`' Endpoints and EndpointSlice for `servers`.
async fn write_endpoints(
    server: &ApiServer,
    servers: &BTreeMap<IpAddr, u16>,
    port: u16,
) -> Result<(), ApiError> {
    let v4: Vec<&IpAddr> = servers.keys().filter(|ip| ip.is_ipv4()).collect();
    let v6: Vec<&IpAddr> = servers.keys().filter(|ip| ip.is_ipv6()).collect();
    // One family, as upstream's adapter: IPv6 only when every address is IPv6.
    let (ips, address_type) = if v4.is_empty() && !v6.is_empty() {
        (v6, "IPv6")
    } else {
        (v4, "IPv4")
    };
    let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    let subsets = if ips.is_empty() {
        Value::Null
    } else {
        json!([{
            "addresses": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "ports": ports,
        }])
    };
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": KUBERNETES, "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    write_if_changed(server, &kinds::endpoints::RESOURCE, ep, &["subsets"]).await?;
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": KUBERNETES, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": KUBERNETES}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    write_if_changed(
        server,
        &kinds::endpointslice::RESOURCE,
        slice,
        &["addressType", "endpoints", "ports"],
    )
    .await
}

/// One round: the system Services, this server's lease, the `kubernetes` endpoints.
pub async fn reconcile_once(server: &ApiServer, me: Option<SocketAddr>) -> Result<(), ApiError> {
    ensure_kubernetes_service(server).await?;
    ensure_dns_service(server).await?;
    let now = jiff::Timestamp::now().as_second();
    if let Some(me) = me {
        renew_lease(server, me, now).await?;
    }
    let servers = live_servers(server, now).await?;
    let port = me
        .map(|m| m.port())
        .or_else(|| servers.values().next().copied())
        .unwrap_or(server.listen.port());
    write_endpoints(server, &servers, port).await
}

/// The reconciler loop: a round every [`INTERVAL`], and at once when `kubernetes` or
/// `kube-dns` is deleted; on shutdown this server's lease goes and the endpoints are
/// written without it.
pub async fn run(server: Arc<ApiServer>, shutdown: CancellationToken) {
    let me = advertised(&server);
    let watched = [
        kinds::service::RESOURCE.key(Some("default"), KUBERNETES),
        kinds::service::RESOURCE.key(Some("kube-system"), KUBE_DNS),
        kinds::endpoints::RESOURCE.key(Some("default"), KUBERNETES),
        kinds::endpointslice::RESOURCE.key(Some("default"), KUBERNETES),
    ];
    let mut events = None;
    let mut failures = 0u32;
    loop {
        // A round that failed (a deleted Service's address not yet released, a store
        // hiccup) is tried again soon rather than a whole interval later.
        let wait = match reconcile_once(&server, me).await {
            Ok(()) => {
                failures = 0;
                INTERVAL
            }
            Err(e) => {
                failures += 1;
                if failures >= 3 {
                    tracing::warn!(error = %e, "reconciling the kubernetes service and its endpoints");
                } else {
                    tracing::debug!(error = %e, "reconciling the kubernetes service and its endpoints; retrying");
                }
                Duration::from_secs(1)
            }
        };
        if events.is_none() {
            events = open_watch(&server).await;
        }
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Some(me) = me {
                        let key = format!("{LEASE_PREFIX}{}", me.ip());
                        let _ = server.store.delete(&key, None).await;
                        let now = jiff::Timestamp::now().as_second();
                        if let Ok(servers) = live_servers(&server, now).await {
                            let _ = write_endpoints(&server, &servers, me.port()).await;
                        }
                    }
                    return;
                }
                _ = &mut deadline => break,
                ev = next_event(&mut events) => match ev {
                    Some(store::Event::Delete { prev, .. }) if watched.contains(&prev.key) => break,
                    Some(_) => {}
                    None => events = None,
                },
            }
        }
    }
}

type Events = store::WatchStream;

async fn open_watch(server: &ApiServer) -> Option<Events> {
    let rev = server.store.current_revision().await.ok()?;
    server.store.watch("/registry/services/", rev).await.ok()
}

async fn next_event(events: &mut Option<Events>) -> Option<store::Event> {
    match events {
        Some(s) => s.next().await.and_then(Result::ok),
        None => std::future::pending().await,
    }
}

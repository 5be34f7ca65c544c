//! core/v1 Service as pure functions: upstream's `SetDefaults_Service`
//! (`pkg/apis/core/v1/defaults.go`), `ValidateService` / `ValidateServiceUpdate`
//! (`pkg/apis/core/validation`), the registry strategy's create/update preparation
//! (`pkg/registry/core/service/strategy.go`: status reset, `dropTypeDependentFields`) and the
//! parts of the service REST storage that only look at the object (`storage.go`:
//! `normalizeClusterIPs`, `patchAllocatedValues`; `alloc.go`: `initIPFamilyFields` and the
//! node-port bookkeeping of `initNodePorts` / `updateNodePorts` against a [`PortOperation`]).
//!
//! Owns: what a Service may hold and which addresses and ports it asks for. Does not own:
//! where free ClusterIPs and node ports come from (the API server's allocators) or the
//! store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::{validate_labels, validate_object_meta, validate_object_meta_update, NameRule};
use crate::validation::{
    invalid_each, is_dns1123_subdomain, is_qualified_name, is_valid_ip, is_valid_port_name,
    is_valid_port_num, validate_dns1123_label,
};

pub const TYPE_CLUSTER_IP: &str = "ClusterIP";
pub const TYPE_NODE_PORT: &str = "NodePort";
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";
pub const TYPE_EXTERNAL_NAME: &str = "ExternalName";
pub const CLUSTER_IP_NONE: &str = "None";
pub const IPV4: &str = "IPv4";
pub const IPV6: &str = "IPv6";
pub const SINGLE_STACK: &str = "SingleStack";
pub const PREFER_DUAL_STACK: &str = "PreferDualStack";
pub const REQUIRE_DUAL_STACK: &str = "RequireDualStack";
/// `DefaultClientIPServiceAffinitySeconds`: three hours.
pub const DEFAULT_CLIENT_IP_TIMEOUT: i32 = 10800;
/// `MaxClientIPServiceAffinitySeconds`: one day.
pub const MAX_CLIENT_IP_TIMEOUT: i32 = 86400;

/// Upstream's sorted lists, as `sets.List` prints them in "supported values".
const SERVICE_TYPES: &[&str] = &[
    TYPE_CLUSTER_IP,
    TYPE_EXTERNAL_NAME,
    TYPE_LOAD_BALANCER,
    TYPE_NODE_PORT,
];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILIES: &[&str] = &[IPV4, IPV6];
const IP_FAMILY_POLICIES: &[&str] = &[PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK];

fn spec(svc: &Service) -> &ServiceSpec {
    static EMPTY: std::sync::OnceLock<ServiceSpec> = std::sync::OnceLock::new();
    svc.spec
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(ServiceSpec::default))
}

fn str_of(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// `spec.type` ("" when unset, as Go's zero value).
pub fn service_type(svc: &Service) -> &str {
    str_of(&spec(svc).type_)
}

/// `spec.clusterIP`.
pub fn cluster_ip(svc: &Service) -> &str {
    str_of(&spec(svc).cluster_ip)
}

/// `spec.clusterIPs` (empty when unset).
pub fn cluster_ips(svc: &Service) -> &[String] {
    spec(svc).cluster_ips.as_deref().unwrap_or(&[])
}

pub fn ip_families(svc: &Service) -> &[String] {
    spec(svc).ip_families.as_deref().unwrap_or(&[])
}

pub fn ports(svc: &Service) -> &[ServicePort] {
    spec(svc).ports.as_deref().unwrap_or(&[])
}

/// `isHeadlessService`: exactly one clusterIP and it is `None`.
pub fn is_headless(svc: &Service) -> bool {
    let ips = cluster_ips(svc);
    ips.len() == 1 && ips[0] == CLUSTER_IP_NONE
}

/// Every type but ExternalName has a ClusterIP (even `None` counts).
pub fn needs_cluster_ip(svc: &Service) -> bool {
    service_type(svc) != TYPE_EXTERNAL_NAME
}

pub fn needs_node_port(svc: &Service) -> bool {
    matches!(service_type(svc), TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
}

/// `apiservice.ExternallyAccessible`: NodePort, LoadBalancer, or a ClusterIP Service with
/// external IPs.
pub fn externally_accessible(svc: &Service) -> bool {
    needs_node_port(svc)
        || (service_type(svc) == TYPE_CLUSTER_IP
            && spec(svc)
                .external_ips
                .as_ref()
                .is_some_and(|e| !e.is_empty()))
}

/// `apiservice.NeedsHealthCheck`: a LoadBalancer with `externalTrafficPolicy: Local`.
pub fn needs_health_check(svc: &Service) -> bool {
    service_type(svc) == TYPE_LOAD_BALANCER && str_of(&spec(svc).external_traffic_policy) == "Local"
}

/// Whether new node ports are allocated for ports that ask for none.
pub fn should_allocate_node_ports(svc: &Service) -> bool {
    match service_type(svc) {
        TYPE_NODE_PORT => true,
        TYPE_LOAD_BALANCER => spec(svc).allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

/// The IP family of an address string: `IPv4`, `IPv6`, or `None` when it is no IP.
pub fn family_of(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => Some(IPV4),
        Ok(IpAddr::V6(_)) => Some(IPV6),
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------
// Defaults and strategy

/// `SetDefaults_Service` (and the ServicePort defaults it applies).
pub fn default_service(svc: &mut Service) {
    let externally = externally_accessible_after_type_default(svc);
    let spec = svc.spec.get_or_insert_with(Default::default);
    if str_of(&spec.session_affinity).is_empty() {
        spec.session_affinity = Some("None".into());
    }
    if str_of(&spec.session_affinity) == "None" {
        spec.session_affinity_config = None;
    }
    if str_of(&spec.session_affinity) == "ClientIP" {
        let missing = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .is_none();
        if missing {
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(DEFAULT_CLIENT_IP_TIMEOUT),
                }),
            });
        }
    }
    if str_of(&spec.type_).is_empty() {
        spec.type_ = Some(TYPE_CLUSTER_IP.into());
    }
    for p in spec.ports.iter_mut().flatten() {
        if str_of(&p.protocol).is_empty() {
            p.protocol = Some("TCP".into());
        }
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if externally && str_of(&spec.external_traffic_policy).is_empty() {
        spec.external_traffic_policy = Some("Cluster".into());
    }
    let ty = str_of(&spec.type_).to_string();
    if spec.internal_traffic_policy.is_none()
        && matches!(
            ty.as_str(),
            TYPE_NODE_PORT | TYPE_LOAD_BALANCER | TYPE_CLUSTER_IP
        )
    {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if ty == TYPE_LOAD_BALANCER && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
}

/// `ExternallyAccessible` with the type already defaulted to ClusterIP.
fn externally_accessible_after_type_default(svc: &Service) -> bool {
    let ty = match service_type(svc) {
        "" => TYPE_CLUSTER_IP,
        t => t,
    };
    matches!(ty, TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
        || (ty == TYPE_CLUSTER_IP
            && spec(svc)
                .external_ips
                .as_ref()
                .is_some_and(|e| !e.is_empty()))
}

/// The strategy's `PrepareForCreate`: status starts empty (what a Service's status holds is
/// written by load-balancer controllers), and the service storage's `normalizeClusterIPs`
/// for a create (a lone `clusterIP` fills `clusterIPs`).
pub fn prepare_service_for_create(svc: &mut Service) {
    // `status: {loadBalancer: {}}`, as upstream's non-pointer struct serializes.
    svc.status = Some(ServiceStatus {
        load_balancer: Some(Default::default()),
        ..Default::default()
    });
    normalize_cluster_ips(svc, None);
}

/// The update path's object-only steps, in upstream's order: `patchAllocatedValues` and
/// `normalizeClusterIPs` (service storage's `beginUpdate`), the IP-family fields a client
/// may leave out (`initIPFamilyFields`' policy from the old object and families inferred
/// from the cluster IPs), then the strategy's `PrepareForUpdate` (status kept,
/// `dropTypeDependentFields`).
pub fn prepare_service_for_update(new: &mut Service, old: &Service) {
    patch_allocated_values(new, old);
    normalize_cluster_ips(new, Some(old));
    if needs_cluster_ip(new) {
        let spec = new.spec.get_or_insert_with(Default::default);
        if spec.ip_family_policy.is_none() {
            spec.ip_family_policy = old.spec.as_ref().and_then(|s| s.ip_family_policy.clone());
        }
        infer_families(spec);
    }
    new.status = old.status.clone();
    drop_type_dependent_fields(new, old);
}

/// The status subresource's `PrepareForUpdate`: everything but status from the old object.
pub fn service_status_only(new: &mut Service, old: &Service) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// Appends the family of each cluster IP beyond the families given (a family that does not
/// parse is left for validation).
fn infer_families(spec: &mut ServiceSpec) {
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    let mut fams = spec.ip_families.clone().unwrap_or_default();
    for (i, ip) in ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        if i >= fams.len() {
            match family_of(ip) {
                Some(f) => fams.push(f.to_string()),
                None => break,
            }
        }
    }
    if !fams.is_empty() {
        spec.ip_families = Some(fams);
    }
}

/// `normalizeClusterIPs`: keeps `clusterIP` and `clusterIPs` in step for clients that only
/// know the singular field.
pub fn normalize_cluster_ips(new: &mut Service, old: Option<&Service>) {
    let spec = new.spec.get_or_insert_with(Default::default);
    let ip = str_of(&spec.cluster_ip).to_string();
    let ips_empty = spec.cluster_ips.as_ref().is_none_or(Vec::is_empty);
    let Some(old) = old else {
        if !ip.is_empty() && ips_empty {
            spec.cluster_ips = Some(vec![ip]);
        }
        return;
    };
    let old_ip = cluster_ip(old).to_string();
    let old_ips = cluster_ips(old).to_vec();
    if !old_ips.is_empty() && ips_empty && old_ip == ip {
        spec.cluster_ips = Some(old_ips.clone());
    }
    if old_ip != ip {
        let same = spec.cluster_ips.clone().unwrap_or_default() == old_ips;
        if !old_ip.is_empty() && ip.is_empty() {
            if same {
                spec.cluster_ips = None;
            }
        } else if same {
            spec.cluster_ips = Some(vec![ip]);
        }
    }
}

/// `patchAllocatedValues`: a client that resubmits what it created (no ClusterIP, no node
/// ports) keeps what was allocated for it.
pub fn patch_allocated_values(new: &mut Service, old: &Service) {
    let new_needs_ip = needs_cluster_ip(new);
    let new_needs_np = needs_node_port(new);
    let new_needs_hc = needs_health_check(new);
    let spec = new.spec.get_or_insert_with(Default::default);
    if needs_cluster_ip(old) && new_needs_ip {
        if str_of(&spec.cluster_ip).is_empty() {
            spec.cluster_ip = old.spec.as_ref().and_then(|s| s.cluster_ip.clone());
        }
        if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) && !cluster_ips(old).is_empty() {
            spec.cluster_ips = Some(cluster_ips(old).to_vec());
        }
    }
    if needs_node_port(old) && new_needs_np {
        let used_old: BTreeSet<i32> = node_ports_of(ports(old));
        let used_new: BTreeSet<i32> = node_ports_of(spec.ports.as_deref().unwrap_or(&[]));
        let used: BTreeSet<i32> = used_old.intersection(&used_new).copied().collect();
        let by_name: BTreeMap<String, i32> = ports(old)
            .iter()
            .map(|p| (str_of(&p.name).to_string(), p.node_port.unwrap_or(0)))
            .collect();
        for p in spec.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0 {
                let old_val = by_name.get(str_of(&p.name)).copied().unwrap_or(0);
                if !used.contains(&old_val) && old_val != 0 {
                    p.node_port = Some(old_val);
                }
            }
        }
    }
    if needs_health_check(old) && new_needs_hc && spec.health_check_node_port.unwrap_or(0) == 0 {
        spec.health_check_node_port = old.spec.as_ref().and_then(|s| s.health_check_node_port);
    }
}

fn node_ports_of(ports: &[ServicePort]) -> BTreeSet<i32> {
    ports
        .iter()
        .filter_map(|p| p.node_port.filter(|n| *n != 0))
        .collect()
}

/// `dropTypeDependentFields`: on a type change, the fields the new type has no use for are
/// cleared when the client left them as they were (they are released afterwards).
pub fn drop_type_dependent_fields(new: &mut Service, old: &Service) {
    let same_ips = cluster_ip(old) == cluster_ip(new) && cluster_ips(old) == cluster_ips(new);
    let same_fams = spec(old).ip_families == spec(new).ip_families;
    let same_policy = str_of(&spec(old).ip_family_policy) == str_of(&spec(new).ip_family_policy);
    let drop_ips = needs_cluster_ip(old) && !needs_cluster_ip(new);
    let drop_np = needs_node_port(old)
        && !needs_node_port(new)
        && node_ports_of(ports(old)).is_superset(&node_ports_of(ports(new)));
    let drop_hc = needs_health_check(old)
        && !needs_health_check(new)
        && spec(old).health_check_node_port == spec(new).health_check_node_port;
    let was_lb = service_type(old) == TYPE_LOAD_BALANCER;
    let is_lb = service_type(new) == TYPE_LOAD_BALANCER;
    let needs_etp = |s: &Service| needs_node_port(s);
    let drop_etp = needs_etp(old)
        && !needs_etp(new)
        && spec(old).external_traffic_policy == spec(new).external_traffic_policy;
    let old_alloc = spec(old).allocate_load_balancer_node_ports;
    let same_class = spec(old).load_balancer_class == spec(new).load_balancer_class;
    let spec = new.spec.get_or_insert_with(Default::default);
    if drop_ips {
        if same_ips {
            spec.cluster_ip = None;
            spec.cluster_ips = None;
        }
        if same_fams {
            spec.ip_families = None;
        }
        if same_policy {
            spec.ip_family_policy = None;
        }
    }
    if drop_np {
        for p in spec.ports.iter_mut().flatten() {
            p.node_port = None;
        }
    }
    if drop_hc {
        spec.health_check_node_port = None;
    }
    if was_lb && !is_lb {
        if let (Some(n), Some(o)) = (spec.allocate_load_balancer_node_ports, old_alloc) {
            if n == o {
                spec.allocate_load_balancer_node_ports = None;
            }
        }
        if same_class {
            spec.load_balancer_class = None;
        }
    }
    if drop_etp {
        spec.external_traffic_policy = None;
    }
    if !is_lb {
        if let Some(status) = new.status.as_mut() {
            status.load_balancer = Some(Default::default());
        }
    }
}

// ---------------------------------------------------------------------------------------
// IP families

/// The families this cluster can allocate ClusterIPs in, the first being the default
/// (kube-apiserver's `--service-cluster-ip-range`, one CIDR per family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFamilies(pub Vec<&'static str>);

impl ClusterFamilies {
    pub fn default_family(&self) -> &'static str {
        self.0.first().copied().unwrap_or(IPV4)
    }
    fn has(&self, f: &str) -> bool {
        self.0.contains(&f)
    }
}

fn other_family(f: &str) -> &'static str {
    if f == IPV4 {
        IPV6
    } else {
        IPV4
    }
}

/// `initIPFamilyFields`: defaults `ipFamilyPolicy` and `ipFamilies` from the cluster's
/// families (and, on update, from the old object), refusing families the cluster does not
/// serve. Run before allocation, so dry-run answers show them too.
pub fn init_ip_family_fields(
    svc: &mut Service,
    old: Option<&Service>,
    cluster: &ClusterFamilies,
) -> FieldErrors {
    if service_type(svc) == TYPE_EXTERNAL_NAME {
        return Vec::new();
    }
    if let Some(old) = old {
        if matching_prefer_dual_stack(svc, old) {
            return Vec::new();
        }
    }
    let headless_selectorless = cluster_ip(svc) == CLUSTER_IP_NONE
        && spec(svc).selector.as_ref().is_none_or(BTreeMap::is_empty);
    {
        let spec = svc.spec.get_or_insert_with(Default::default);
        if spec.ip_family_policy.is_none() {
            let from_old = old.and_then(|o| o.spec.as_ref()?.ip_family_policy.clone());
            spec.ip_family_policy = Some(match from_old {
                Some(p) => p,
                None if headless_selectorless => REQUIRE_DUAL_STACK.into(),
                None => SINGLE_STACK.into(),
            });
        }
    }
    let errs = validate_cluster_ips_related_fields(svc);
    if !errs.is_empty() {
        return errs;
    }
    let policy_path = Path::new("spec").child("ipFamilyPolicy");
    let policy = str_of(&spec(svc).ip_family_policy).to_string();
    let mut errs = Vec::new();
    if let Some(old) = old {
        let spec_mut = svc.spec.get_or_insert_with(Default::default);
        if policy == SINGLE_STACK {
            let ips = spec_mut.cluster_ips.clone().unwrap_or_default();
            if ips == cluster_ips(old) && ips.len() > 1 {
                spec_mut.cluster_ips = Some(ips[..1].to_vec());
            }
            let fams = spec_mut.ip_families.clone().unwrap_or_default();
            if fams == ip_families(old) && fams.len() > 1 {
                spec_mut.ip_families = Some(fams[..1].to_vec());
            }
        } else {
            let ips = spec_mut.cluster_ips.as_deref().unwrap_or(&[]);
            if !ips.is_empty() && ips.len() < cluster_ips(old).len() {
                errs.push(FieldError::invalid(
                    &policy_path,
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            let fams = spec_mut.ip_families.as_deref().unwrap_or(&[]);
            if !fams.is_empty() && fams.len() < ip_families(old).len() {
                errs.push(FieldError::invalid(
                    &policy_path,
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == SINGLE_STACK {
        if cluster_ips(svc).len() == 2 {
            errs.push(FieldError::invalid(
                &policy_path,
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if ip_families(svc).len() == 2 {
            errs.push(FieldError::invalid(
                &policy_path,
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    let ips = cluster_ips(svc).to_vec();
    let mut fams = ip_families(svc).to_vec();
    for (i, ip) in ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        let fam = family_of(ip).unwrap_or("unknown");
        if i >= fams.len() {
            if cluster.has(fam) {
                fams.push(fam.to_string());
            } else {
                errs.push(FieldError::invalid(
                    Path::new("spec").child("clusterIPs").index(i),
                    Value::from(ips.clone()),
                    format!("{fam} is not configured on this cluster"),
                ));
            }
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    if headless_selectorless {
        if fams.is_empty() {
            fams.push(cluster.default_family().to_string());
        }
        if fams.len() < 2 && policy != SINGLE_STACK {
            let alt = other_family(&fams[0]);
            fams.push(alt.to_string());
        }
        svc.spec.get_or_insert_with(Default::default).ip_families = Some(fams);
        return Vec::new();
    }
    if policy == REQUIRE_DUAL_STACK && cluster.0.len() < 2 {
        errs.push(FieldError::invalid(
            &policy_path,
            policy.as_str(),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in fams.iter().enumerate() {
        if !cluster.has(f) {
            errs.push(FieldError::invalid(
                Path::new("spec").child("ipFamilies").index(i),
                f.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    if fams.is_empty() {
        fams.push(cluster.default_family().to_string());
    }
    if policy != SINGLE_STACK && fams.len() == 1 && cluster.0.len() == 2 {
        let alt = other_family(&fams[0]);
        fams.push(alt.to_string());
    }
    svc.spec.get_or_insert_with(Default::default).ip_families = Some(fams);
    Vec::new()
}

/// `isMatchingPreferDualStackClusterIPFields`: a PreferDualStack Service whose addresses
/// did not change is left as it is when the cluster gains or loses a family.
fn matching_prefer_dual_stack(new: &Service, old: &Service) -> bool {
    let Some(policy) = spec(new).ip_family_policy.as_deref() else {
        return false;
    };
    service_type(old) == service_type(new)
        && matches!(
            service_type(new),
            TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER
        )
        && policy == PREFER_DUAL_STACK
        && spec(old)
            .ip_family_policy
            .as_deref()
            .is_none_or(|p| p == PREFER_DUAL_STACK)
        && cluster_ips(old) == cluster_ips(new)
        && ip_families(old) == ip_families(new)
}

// ---------------------------------------------------------------------------------------
// Validation

/// `ValidateService` (create).
pub fn validate_service(svc: &Service) -> FieldErrors {
    let mut errs = validate_object_meta(&svc.metadata, true, NameRule::Dns1035Label);
    let sp = Path::new("spec");
    let s = spec(svc);
    let ty = service_type(svc);
    let headless = is_headless(svc);
    let ports = ports(svc);
    if ports.is_empty() && !headless && ty != TYPE_EXTERNAL_NAME {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    match ty {
        TYPE_LOAD_BALANCER if headless => errs.push(FieldError::invalid(
            sp.child("clusterIPs").index(0),
            CLUSTER_IP_NONE,
            "may not be set to 'None' for LoadBalancer services",
        )),
        TYPE_NODE_PORT if headless => errs.push(FieldError::invalid(
            sp.child("clusterIPs").index(0),
            CLUSTER_IP_NONE,
            "may not be set to 'None' for NodePort services",
        )),
        TYPE_EXTERNAL_NAME => {
            if !cluster_ips(svc).is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !ip_families(svc).is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if s.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let name = str_of(&s.external_name);
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required(sp.child("externalName"), ""));
            } else {
                errs.extend(invalid_each(
                    &sp.child("externalName"),
                    cname,
                    is_dns1123_subdomain(cname),
                ));
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &sp.child("ports").index(i),
        ));
    }
    if let Some(sel) = &s.selector {
        errs.extend(validate_labels(sel, &sp.child("selector")));
    }
    let affinity = str_of(&s.session_affinity);
    if affinity.is_empty() {
        errs.push(FieldError::required(sp.child("sessionAffinity"), ""));
    } else if !AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported(
            sp.child("sessionAffinity"),
            affinity,
            AFFINITIES,
        ));
    }
    let cfg_path = sp.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        match s
            .session_affinity_config
            .as_ref()
            .map(|c| c.client_ip.as_ref())
        {
            None => errs.push(FieldError::required(
                &cfg_path,
                "when session affinity type is ClientIP",
            )),
            Some(None) => errs.push(FieldError::required(
                cfg_path.child("clientIP"),
                "when session affinity type is ClientIP",
            )),
            Some(Some(c)) => {
                let t = c.timeout_seconds.unwrap_or(0);
                if t <= 0 || t > MAX_CLIENT_IP_TIMEOUT {
                    errs.push(FieldError::invalid(
                        cfg_path.child("clientIP").child("timeoutSeconds"),
                        t,
                        format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}"),
                    ));
                }
            }
        }
    } else if affinity == "None" && s.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(
            &cfg_path,
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_cluster_ips_related_fields(svc));
    for (i, ip) in s.external_ips.iter().flatten().enumerate() {
        let p = sp.child("externalIPs").index(i);
        let msgs = is_valid_ip(ip);
        if msgs.is_empty() {
            errs.extend(validate_non_special_ip(ip, &p));
        } else {
            errs.extend(invalid_each(&p, ip, msgs));
        }
    }
    if ty.is_empty() {
        errs.push(FieldError::required(sp.child("type"), ""));
    } else if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            sp.child("type"),
            ty,
            SERVICE_TYPES,
        ));
    }
    if ty == TYPE_CLUSTER_IP {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p.node_port.unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((str_of(&p.protocol).to_string(), np)) {
            errs.push(FieldError::duplicate(
                sp.child("ports").index(i).child("nodePort"),
                np,
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = str_of(&p.protocol).to_string();
        if !seen.insert((proto.clone(), p.port)) {
            errs.push(FieldError::duplicate(
                sp.child("ports").index(i),
                serde_json::json!({"port": p.port, "protocol": proto}),
            ));
        }
    }
    if s.load_balancer_source_ranges
        .as_ref()
        .is_some_and(|r| !r.is_empty())
        && ty != TYPE_LOAD_BALANCER
    {
        errs.push(FieldError::forbidden(
            sp.child("LoadBalancerSourceRanges"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if s.allocate_load_balancer_node_ports.is_some() && ty != TYPE_LOAD_BALANCER {
        errs.push(FieldError::forbidden(
            sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == TYPE_LOAD_BALANCER && s.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required(
            Path::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
    if s.load_balancer_class.is_some() && ty != TYPE_LOAD_BALANCER {
        errs.push(FieldError::forbidden(
            sp.child("loadBalancerClass"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    errs.extend(validate_external_traffic_policy(svc));
    match s.internal_traffic_policy.as_deref() {
        None if matches!(ty, TYPE_NODE_PORT | TYPE_LOAD_BALANCER | TYPE_CLUSTER_IP) => {
            errs.push(FieldError::required(sp.child("internalTrafficPolicy"), ""))
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            sp.child("internalTrafficPolicy"),
            p,
            TRAFFIC_POLICIES,
        )),
        _ => {}
    }
    if let Some(td) = s.traffic_distribution.as_deref() {
        const SUPPORTED: &[&str] = &["PreferClose", "PreferSameZone", "PreferSameNode"];
        if !SUPPORTED.contains(&td) {
            errs.push(FieldError::not_supported(
                sp.child("trafficDistribution"),
                td,
                SUPPORTED,
            ));
        }
    }
    errs
}

fn validate_service_port(
    p: &ServicePort,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let name = str_of(&p.name);
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(path.child("name"), name));
        }
    }
    for m in is_valid_port_num(i64::from(p.port)) {
        errs.push(FieldError::invalid(path.child("port"), p.port, m));
    }
    let proto = str_of(&p.protocol);
    if proto.is_empty() {
        errs.push(FieldError::required(path.child("protocol"), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(
            path.child("protocol"),
            proto,
            PROTOCOLS,
        ));
    }
    errs.extend(validate_port_num_or_name(
        p.target_port.as_ref(),
        &path.child("targetPort"),
    ));
    if let Some(ap) = &p.app_protocol {
        errs.extend(invalid_each(
            &path.child("appProtocol"),
            ap,
            is_qualified_name(ap),
        ));
    }
    errs
}

/// `ValidatePortNumOrName`.
pub fn validate_port_num_or_name(port: Option<&IntOrString>, path: &Path) -> FieldErrors {
    match port {
        Some(IntOrString::String(s)) => invalid_each(path, s, is_valid_port_name(s)),
        Some(IntOrString::Int(n)) => is_valid_port_num(i64::from(*n))
            .into_iter()
            .map(|m| FieldError::invalid(path, *n, m))
            .collect(),
        None => is_valid_port_num(0)
            .into_iter()
            .map(|m| FieldError::invalid(path, 0, m))
            .collect(),
    }
}

fn validate_external_traffic_policy(svc: &Service) -> FieldErrors {
    let mut errs = Vec::new();
    let sp = Path::new("spec");
    let etp = str_of(&spec(svc).external_traffic_policy);
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(sp.child("externalTrafficPolicy"), ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported(
            sp.child("externalTrafficPolicy"),
            etp,
            TRAFFIC_POLICIES,
        ));
    }
    let hc = spec(svc).health_check_node_port.unwrap_or(0);
    if !needs_health_check(svc) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                sp.child("healthCheckNodePort"),
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        errs.push(FieldError::required(sp.child("healthCheckNodePort"), ""));
    } else {
        for m in is_valid_port_num(i64::from(hc)) {
            errs.push(FieldError::invalid(sp.child("healthCheckNodePort"), hc, m));
        }
    }
    errs
}

/// `ValidateNonSpecialIP`: no unspecified, loopback or link-local addresses.
pub fn validate_non_special_ip(ip: &str, path: &Path) -> FieldErrors {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return vec![FieldError::invalid(path, ip, "must be a valid IP address")];
    };
    let mut errs = Vec::new();
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let (link_local, link_local_mc) = match addr {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => (
            (v6.segments()[0] & 0xffc0) == 0xfe80,
            (v6.segments()[0] & 0xff0f) == 0xff02,
        ),
    };
    if link_local {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_mc {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// `ValidateServiceClusterIPsRelatedFields`: `clusterIP`/`clusterIPs` in step, well formed,
/// at most one per family and matching `ipFamilies`; `ipFamilies` and `ipFamilyPolicy`
/// values.
pub fn validate_cluster_ips_related_fields(svc: &Service) -> FieldErrors {
    if service_type(svc) == TYPE_EXTERNAL_NAME {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let sp = Path::new("spec");
    let ips_path = sp.child("clusterIPs");
    let ip = cluster_ip(svc);
    let ips = cluster_ips(svc);
    let ips_value = || Value::from(ips.to_vec());
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(&ips_path, ""));
        } else if ips[0] != ip {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, f) in ip_families(svc).iter().enumerate() {
        if !IP_FAMILIES.contains(&f.as_str()) {
            errs.push(FieldError::not_supported(
                sp.child("ipFamilies").index(i),
                f.as_str(),
                IP_FAMILIES,
            ));
        }
        if !seen.insert(f.clone()) {
            errs.push(FieldError::duplicate(
                sp.child("ipFamilies").index(i),
                f.as_str(),
            ));
        }
    }
    if let Some(p) = spec(svc).ip_family_policy.as_deref() {
        if !IP_FAMILY_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                sp.child("ipFamilyPolicy"),
                p,
                IP_FAMILY_POLICIES,
            ));
        }
    }
    let mut invalid = false;
    for (i, c) in ips.iter().enumerate() {
        if i == 0 && c == CLUSTER_IP_NONE {
            if ips.len() > 1 {
                invalid = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips_value(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let msgs = is_valid_ip(c);
        invalid |= !msgs.is_empty();
        errs.extend(invalid_each(&ips_path.index(i), c, msgs));
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value(),
            "may only hold up to 2 values",
        ));
    }
    if invalid {
        return errs;
    }
    if ips.len() > 1 {
        let dual = ips.len() == 2 && family_of(&ips[0]) != family_of(&ips[1]);
        if !dual {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    let fams = ip_families(svc);
    if !is_headless(svc) && !ips.is_empty() && !fams.is_empty() {
        for (i, c) in ips.iter().enumerate() {
            let Some(f) = fams.get(i) else { break };
            let v6 = family_of(c) == Some(IPV6);
            if f == IPV4 && v6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    c.as_str(),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if f == IPV6 && !v6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    c.as_str(),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

/// `ValidateServiceUpdate`.
pub fn validate_service_update(new: &Service, old: &Service) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_upgrade_downgrade_cluster_ips(old, new));
    errs.extend(validate_upgrade_downgrade_ip_families(old, new));
    if service_type(old) == TYPE_LOAD_BALANCER
        && service_type(new) == TYPE_LOAD_BALANCER
        && spec(old).load_balancer_class != spec(new).load_balancer_class
    {
        errs.push(FieldError::invalid(
            Path::new("spec").child("loadBalancerClass"),
            Value::from(spec(new).load_balancer_class.clone()),
            "may not change once set",
        ));
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && spec(old).health_check_node_port != spec(new).health_check_node_port
    {
        errs.push(FieldError::forbidden(
            Path::new("spec").child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
    errs.extend(
        validate_service(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

fn validate_upgrade_downgrade_cluster_ips(old: &Service, new: &Service) -> FieldErrors {
    let mut errs = Vec::new();
    if service_type(new) == TYPE_EXTERNAL_NAME || service_type(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    if is_headless(old) && is_headless(new) {
        return errs;
    }
    let path = Path::new("spec").child("clusterIPs");
    let (o, n) = (cluster_ips(old), cluster_ips(new));
    let value = || Value::from(n.to_vec());
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(FieldError::invalid(
                    path.index(i),
                    value(),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid(
                path.index(0),
                value(),
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                path.index(0),
                value(),
                "may not change once set",
            ));
        }
        if n.len() == 1 && str_of(&spec(new).ip_family_policy) != SINGLE_STACK {
            errs.push(FieldError::invalid(
                Path::new("spec").child("ipFamilyPolicy"),
                Value::from(spec(new).ip_family_policy.clone()),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid(
            path.index(0),
            value(),
            "may not change once set",
        ));
    }
    errs
}

fn validate_upgrade_downgrade_ip_families(old: &Service, new: &Service) -> FieldErrors {
    let mut errs = Vec::new();
    if service_type(new) == TYPE_EXTERNAL_NAME || service_type(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    if is_headless(old) != is_headless(new) || is_headless(new) {
        return errs;
    }
    let path = Path::new("spec").child("ipFamilies");
    let (o, n) = (ip_families(old), ip_families(new));
    if o.len() == n.len() {
        for (i, f) in o.iter().enumerate() {
            if *f != n[i] {
                errs.push(FieldError::invalid(
                    path.index(0),
                    Value::from(n.to_vec()),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        if cluster_ips(new).is_empty() {
            errs.push(FieldError::invalid(
                path.index(0),
                Value::from(n.to_vec()),
                "primary ipFamily can not be unset",
            ));
        }
        if !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                path.index(0),
                Value::from(cluster_ips(new).to_vec()),
                "may not change once set",
            ));
        }
        if n.len() == 1 && str_of(&spec(new).ip_family_policy) != SINGLE_STACK {
            errs.push(FieldError::invalid(
                Path::new("spec").child("ipFamilyPolicy"),
                Value::from(spec(new).ip_family_policy.clone()),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid(
            path.index(0),
            Value::from(cluster_ips(new).to_vec()),
            "may not change once set",
        ));
    }
    errs
}

/// `ValidateServiceStatusUpdate` (load-balancer ingress addresses).
pub fn validate_service_status_update(new: &Service, old: &Service) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let ingress = new
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref());
    let path = Path::new("status").child("loadBalancer").child("ingress");
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        if let Some(ip) = ing.ip.as_deref().filter(|s| !s.is_empty()) {
            errs.extend(invalid_each(
                &path.index(i).child("ip"),
                ip,
                is_valid_ip(ip),
            ));
        }
        if let Some(h) = ing.hostname.as_deref().filter(|s| !s.is_empty()) {
            errs.extend(invalid_each(
                &path.index(i).child("hostname"),
                h,
                is_dns1123_subdomain(h),
            ));
            if h.parse::<IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    path.index(i).child("hostname"),
                    h,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Node ports

/// Why a node port could not be had (portallocator's errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("provided port is already allocated")]
    Allocated,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    NotInRange(String),
    #[error("range is full")]
    Full,
}

/// One allocation operation on the node-port range (upstream's `PortAllocationOperation`):
/// ports taken now, ports to give back once the Service write succeeded.
pub trait PortOperation {
    fn allocate(&mut self, port: i32) -> Result<(), PortError>;
    fn allocate_next(&mut self) -> Result<i32, PortError>;
    fn release_deferred(&mut self, port: i32);
}

/// What allocation answers besides a field error: a node port that could not be had
/// for a port that asked for none (upstream answers 500).
#[derive(Debug, Clone, PartialEq)]
pub enum AllocError {
    Invalid(FieldErrors),
    Internal(String),
}

/// `initNodePorts` (create) and the health-check port: every port of a NodePort or
/// LoadBalancer Service gets a node port, the requested one or a free one; ports with
/// the same port number share one.
pub fn init_node_ports(svc: &mut Service, op: &mut dyn PortOperation) -> Result<(), AllocError> {
    if needs_node_port(svc) {
        let allocate = should_allocate_node_ports(svc);
        let all: Vec<ServicePort> = ports(svc).to_vec();
        let mut by_port: BTreeMap<i32, i32> = BTreeMap::new();
        let spec = svc.spec.get_or_insert_with(Default::default);
        for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
            let np = p.node_port.unwrap_or(0);
            if np == 0 && !allocate {
                continue;
            }
            match by_port.get(&p.port).copied() {
                None => {
                    let requested = all
                        .iter()
                        .find(|q| q.port == p.port && q.node_port.unwrap_or(0) != 0)
                        .and_then(|q| q.node_port)
                        .unwrap_or(0);
                    let got = if requested != 0 {
                        op.allocate(requested)
                            .map_err(|e| node_port_error(i, requested, &e))?;
                        requested
                    } else {
                        op.allocate_next().map_err(|e| {
                            AllocError::Internal(format!("failed to allocate a nodePort: {e}"))
                        })?
                    };
                    p.node_port = Some(got);
                    by_port.insert(p.port, got);
                }
                Some(shared) if np != shared => {
                    if np == 0 {
                        p.node_port = Some(shared);
                    } else {
                        op.allocate(np).map_err(|e| node_port_error(i, np, &e))?;
                    }
                }
                Some(_) => {}
            }
        }
    }
    if needs_health_check(svc) {
        alloc_health_check_node_port(svc, op)?;
    }
    Ok(())
}

fn node_port_error(i: usize, port: i32, e: &PortError) -> AllocError {
    AllocError::Invalid(vec![FieldError::invalid(
        Path::new("spec").child("ports").index(i).child("nodePort"),
        port,
        e.to_string(),
    )])
}

fn alloc_health_check_node_port(
    svc: &mut Service,
    op: &mut dyn PortOperation,
) -> Result<(), AllocError> {
    let spec = svc.spec.get_or_insert_with(Default::default);
    let hc = spec.health_check_node_port.unwrap_or(0);
    if hc != 0 {
        op.allocate(hc).map_err(|e| {
            AllocError::Internal(format!(
                "failed to allocate requested HealthCheck NodePort {hc}: {e}"
            ))
        })
    } else {
        let got = op.allocate_next().map_err(|e| {
            AllocError::Internal(format!("failed to allocate a HealthCheck NodePort 0: {e}"))
        })?;
        spec.health_check_node_port = Some(got);
        Ok(())
    }
}

/// `txnUpdateNodePorts`: node ports of a Service leaving NodePort/LoadBalancer are released,
/// new ones allocated, dropped ones released; the health-check port follows
/// `externalTrafficPolicy`.
pub fn update_node_ports(
    new: &mut Service,
    old: &Service,
    op: &mut dyn PortOperation,
) -> Result<(), AllocError> {
    if needs_node_port(old) && matches!(service_type(new), TYPE_EXTERNAL_NAME | TYPE_CLUSTER_IP) {
        for np in node_ports_of(ports(old)) {
            op.release_deferred(np);
        }
    }
    if needs_node_port(new) {
        let old_ports = node_ports_of(ports(old));
        let allocate = should_allocate_node_ports(new);
        let mut taken = BTreeSet::new();
        let mut seen: Vec<(String, i32)> = Vec::new();
        let spec = new.spec.get_or_insert_with(Default::default);
        for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
            let np = p.node_port.unwrap_or(0);
            if np == 0 && !allocate {
                continue;
            }
            let got = if np != 0 {
                if !old_ports.contains(&np) && !taken.contains(&np) {
                    op.allocate(np).map_err(|e| node_port_error(i, np, &e))?;
                    taken.insert(np);
                }
                np
            } else {
                let n = op.allocate_next().map_err(|e| {
                    AllocError::Internal(format!("failed to allocate a nodePort: {e}"))
                })?;
                p.node_port = Some(n);
                n
            };
            let key = (str_of(&p.protocol).to_string(), got);
            if seen.contains(&key) {
                return Err(AllocError::Internal(format!(
                    "duplicate nodePort: {{{} {got}}}",
                    key.0
                )));
            }
            seen.push(key);
        }
        let new_ports = node_ports_of(spec.ports.as_deref().unwrap_or(&[]));
        for np in old_ports {
            if !new_ports.contains(&np) {
                op.release_deferred(np);
            }
        }
    }
    let (needed, needs) = (needs_health_check(old), needs_health_check(new));
    if !needed && needs {
        alloc_health_check_node_port(new, op)?;
    } else if needed && !needs {
        if let Some(hc) = spec(old).health_check_node_port.filter(|p| *p != 0) {
            op.release_deferred(hc);
        }
    }
    Ok(())
}

/// Every node port a Service holds (its ports' and the health-check one).
pub fn held_node_ports(svc: &Service) -> BTreeSet<i32> {
    let mut out = node_ports_of(ports(svc));
    if needs_health_check(svc) {
        if let Some(hc) = spec(svc).health_check_node_port.filter(|p| *p > 0) {
            out.insert(hc);
        }
    }
    out
}

/// The ClusterIPs a Service holds (none for ExternalName and headless ones).
pub fn held_cluster_ips(svc: &Service) -> Vec<String> {
    if service_type(svc) == TYPE_EXTERNAL_NAME || is_headless(svc) {
        return Vec::new();
    }
    cluster_ips(svc)
        .iter()
        .filter(|ip| family_of(ip).is_some())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;

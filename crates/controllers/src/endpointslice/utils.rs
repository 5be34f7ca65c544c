//! Pure pieces of the EndpointSlice reconciler (upstream's `staging/src/k8s.io/endpointslice`
//! `utils.go` and `util/controller_utils.go`), shared with the Endpoints controller: which
//! pods a Service's endpoints list, the ports a pod offers for a Service (a named
//! `targetPort` looked up in that pod), one pod as an endpoint, a new slice's metadata and
//! labels, and how endpoints are told apart.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controller_utils::{is_pod_ready, is_pod_terminal, new_controller_ref};

/// The label naming the Service a slice belongs to (`discovery.LabelServiceName`).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice (`discovery.LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Set (empty) on the slices and Endpoints of a Service without a cluster IP
/// (`v1.IsHeadlessService`).
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// When the change that caused a slice's or Endpoints' last update happened
/// (`v1.EndpointsLastChangeTriggerTime`).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The node label giving an endpoint's zone (`v1.LabelTopologyZone`).
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// `discovery.AddressType` values this controller writes.
pub const ADDRESS_TYPE_IPV4: &str = "IPv4";
pub const ADDRESS_TYPE_IPV6: &str = "IPv6";

/// Whether the endpoints controllers manage this Service's endpoints at all: it has a
/// selector (a missing one selects nothing, an empty one everything) and is not
/// `ExternalName`.
pub fn has_managed_endpoints(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() != Some("ExternalName") && spec.selector.is_some()
}

/// Whether `pod` is one of `service`'s pods by namespace and selector.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if service.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    selector_matches(selector, pod.metadata.labels.as_ref())
}

/// A Service's set-based selector against a pod's labels (every pair present).
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty() {
        if let Some(ip) = status.pod_ip.as_ref().filter(|ip| !ip.is_empty()) {
            ips.push(ip.clone());
        }
    }
    ips
}

/// `ShouldPodBeInEndpoints`: not finished, has an IP, and — unless `include_terminating` —
/// not being deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if is_pod_terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// `ShouldSetHostname`: the pod has a hostname and its subdomain is the Service's name.
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.is_some()
        && spec.subdomain == service.metadata.name
        && pod.metadata.namespace == service.metadata.namespace
}

/// Whether the Service has a cluster IP (not headless).
pub fn is_service_ip_set(service: &Service) -> bool {
    let ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

fn protocol(p: Option<&String>) -> &str {
    p.map_or("TCP", String::as_str)
}

/// `FindPort`: the container port a Service port reaches in `pod` — a number as is, a name
/// looked up (with the same protocol) in the pod's containers and restartable init
/// containers (sidecars). `None` when the pod has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    let name = match target {
        IntOrString::Int(n) => return Some(n),
        IntOrString::String(s) => match s.parse::<i32>() {
            // A number sent as a string still means that number.
            Ok(n) => return Some(n),
            Err(_) => s,
        },
    };
    let spec = pod.spec.as_ref()?;
    let want = protocol(port.protocol.as_ref());
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name.as_str()) && protocol(p.protocol.as_ref()) == want)
        .map(|p| p.container_port)
}

/// `getEndpointPorts`: the Service's ports as `pod` serves them (ports the pod lacks are
/// left out; a headless Service may have none).
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let n = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(protocol(sp.protocol.as_ref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// A canonical form of a set of endpoint ports, to group pods and slices by
/// (upstream's `PortMapKey`): order-insensitive, an empty name the same as none.
pub fn port_map_key(ports: &[EndpointPort]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.map_or(String::new(), |n| n.to_string()),
                protocol(p.protocol.as_ref()),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// The address types a Service's slices have (`getAddressTypesForService`): its
/// `ipFamilies`, else its cluster IP's family, else (headless, not yet defaulted) both.
pub fn address_types(service: &Service) -> Vec<&'static str> {
    let spec = service.spec.clone().unwrap_or_default();
    let mut types = Vec::new();
    for family in spec.ip_families.iter().flatten() {
        match family.as_str() {
            "IPv4" => types.push(ADDRESS_TYPE_IPV4),
            "IPv6" => types.push(ADDRESS_TYPE_IPV6),
            _ => {}
        }
    }
    if !types.is_empty() {
        types.dedup();
        return types;
    }
    if is_service_ip_set(service) {
        let v6 = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_ipv6());
        return vec![if v6 {
            ADDRESS_TYPE_IPV6
        } else {
            ADDRESS_TYPE_IPV4
        }];
    }
    vec![ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6]
}

/// The pod's addresses of one address type, in canonical text form.
pub fn endpoint_addresses(pod: &Pod, address_type: &str) -> Vec<String> {
    pod_ips(pod)
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| ip.is_ipv6() == (address_type == ADDRESS_TYPE_IPV6))
        .map(|ip| ip.to_string())
        .collect()
}

/// The reference from an endpoint to its pod.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// `podToEndpoint`: ready = (Ready and not terminating) or `publishNotReadyAddresses`;
/// serving = Ready; terminating = being deleted. `zone` is the pod's node's zone label.
pub fn pod_to_endpoint(
    pod: &Pod,
    service: &Service,
    address_type: &str,
    zone: Option<String>,
) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let ready = publish || (serving && !terminating);
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let hostname = should_set_hostname(pod, service)
        .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
        .flatten();
    Endpoint {
        addresses: endpoint_addresses(pod, address_type),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(pod_reference(pod)),
        node_name: node,
        zone: zone.filter(|z| !z.is_empty()),
        hostname,
        ..Endpoint::default()
    }
}

/// What tells endpoints apart within a Service (upstream's `hashEndpoint`): the sorted
/// addresses, the hostname and the pod it points at.
pub fn endpoint_key(ep: &Endpoint) -> String {
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    let target = ep.target_ref.as_ref();
    format!(
        "{}|{}|{}|{}",
        addresses.join(","),
        ep.hostname.as_deref().unwrap_or(""),
        target.and_then(|t| t.namespace.as_deref()).unwrap_or(""),
        target.and_then(|t| t.name.as_deref()).unwrap_or("")
    )
}

/// `EndpointsEqualBeyondHash`: node, zone, conditions and target (its resourceVersion
/// ignored) equal.
pub fn endpoints_equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let cond = |e: &Endpoint| {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    };
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    a.node_name == b.node_name && a.zone == b.zone && cond(a) == cond(b) && target(a) == target(b)
}

fn is_reserved_label(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

/// `setEndpointSliceLabels`: the Service's labels (reserved keys skipped), the headless
/// label when it has no cluster IP, the service-name and managed-by labels; and whether
/// the slice's own non-reserved labels differ from the Service's.
pub fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    service: &Service,
) -> (BTreeMap<String, String>, bool) {
    let slice: BTreeMap<&String, &String> = current
        .into_iter()
        .flatten()
        .filter(|(k, _)| !is_reserved_label(k))
        .collect();
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved_label(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let changed = slice != labels.iter().collect::<BTreeMap<_, _>>();
    if !is_service_ip_set(service) {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.to_string(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string());
    (labels, changed)
}

/// `ownedBy`: the slice has an owner reference to this Service (by uid).
pub fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// `newEndpointSlice`: an empty slice for the Service (`generateName` `<svc>-`, its
/// labels, a controller reference to it) with these ports and address type.
pub fn new_endpoint_slice(
    service: &Service,
    ports: Vec<EndpointPort>,
    address_type: &str,
) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    let uid = service.metadata.uid.clone().unwrap_or_default();
    let (labels, _) = slice_labels(None, service);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![new_controller_ref("v1", "Service", &name, &uid)]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_string(),
        endpoints: Some(Vec::new()),
        ports: Some(ports),
    }
}

/// Whether a slice is this controller's (by its managed-by label).
pub fn managed_by_controller(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == CONTROLLER_NAME)
}

/// The Service a slice belongs to, by its service-name label.
pub fn service_name_of(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(LABEL_SERVICE_NAME)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

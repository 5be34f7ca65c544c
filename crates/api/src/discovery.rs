//! Where a Service's traffic goes, as pure functions: core/v1 Endpoints and
//! `discovery.k8s.io/v1` EndpointSlice defaults (`SetDefaults_Endpoints`,
//! `SetDefaults_EndpointPort`), validation (`ValidateEndpoints`, `ValidateEndpointSlice` with
//! upstream's limits) and the EndpointSlice strategy's generation counting.
//!
//! Owns: what an Endpoints or EndpointSlice object may hold. Does not own: computing them
//! from pods (the controllers') or the labels controllers put on them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints};
use k8s_openapi::api::discovery::v1::{EndpointPort as SlicePort, EndpointSlice};

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::{validate_labels, validate_object_meta, validate_object_meta_update, NameRule};
use crate::service::validate_non_special_ip;
use crate::validation::{
    invalid_each, is_dns1123_subdomain, is_qualified_name, is_valid_ip, is_valid_port_num,
    validate_dns1123_label, validate_immutable,
};
use crate::workload::count_generation;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
/// Upstream's limits on one EndpointSlice.
pub const MAX_ENDPOINTS: usize = 1000;
pub const MAX_ADDRESSES: usize = 100;
pub const MAX_PORTS: usize = 100;
pub const MAX_TOPOLOGY_LABELS: usize = 16;
pub const MAX_HINTS: usize = 8;

// ---------------------------------------------------------------------------------------
// core/v1 Endpoints

/// `SetDefaults_Endpoints`: ports without a protocol are TCP.
pub fn default_endpoints(ep: &mut Endpoints) {
    for ss in ep.subsets.iter_mut().flatten() {
        for p in ss.ports.iter_mut().flatten() {
            if p.protocol.as_deref().unwrap_or("").is_empty() {
                p.protocol = Some("TCP".into());
            }
        }
    }
}

/// `ValidateEndpoints` (create).
pub fn validate_endpoints(ep: &Endpoints) -> FieldErrors {
    let mut errs = validate_object_meta(&ep.metadata, true, NameRule::Dns1123Subdomain);
    let path = Path::new("subsets");
    for (i, ss) in ep.subsets.iter().flatten().enumerate() {
        let ip = path.index(i);
        let ready = ss.addresses.as_deref().unwrap_or(&[]);
        let not_ready = ss.not_ready_addresses.as_deref().unwrap_or(&[]);
        if ready.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &ip,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in ready.iter().enumerate() {
            errs.extend(validate_endpoint_address(
                a,
                &ip.child("addresses").index(j),
            ));
        }
        for (j, a) in not_ready.iter().enumerate() {
            errs.extend(validate_endpoint_address(
                a,
                &ip.child("notReadyAddresses").index(j),
            ));
        }
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        for (j, p) in ports.iter().enumerate() {
            errs.extend(validate_endpoint_port(
                p,
                ports.len() > 1,
                &ip.child("ports").index(j),
            ));
        }
    }
    errs
}

/// `ValidateEndpointsUpdate`.
pub fn validate_endpoints_update(new: &Endpoints, old: &Endpoints) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_endpoints(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs
}

fn validate_endpoint_address(a: &EndpointAddress, path: &Path) -> FieldErrors {
    let ip_path = path.child("ip");
    let msgs = is_valid_ip(&a.ip);
    let mut errs = invalid_each(&ip_path, &a.ip, msgs.clone());
    if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
        errs.extend(validate_dns1123_label(h, &path.child("hostname")));
    }
    if let Some(n) = &a.node_name {
        errs.extend(invalid_each(
            &path.child("nodeName"),
            n,
            is_dns1123_subdomain(n),
        ));
    }
    if msgs.is_empty() {
        errs.extend(validate_non_special_ip(&a.ip, &ip_path));
    }
    errs
}

fn validate_endpoint_port(p: &EndpointPort, require_name: bool, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
    }
    for m in is_valid_port_num(i64::from(p.port)) {
        errs.push(FieldError::invalid(path.child("port"), p.port, m));
    }
    errs.extend(protocol_errors(
        p.protocol.as_deref(),
        &path.child("protocol"),
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

fn protocol_errors(proto: Option<&str>, path: &Path) -> FieldErrors {
    match proto.unwrap_or("") {
        "" => vec![FieldError::required(path, "")],
        p if !PROTOCOLS.contains(&p) => vec![FieldError::not_supported(path, p, PROTOCOLS)],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// discovery.k8s.io/v1 EndpointSlice

/// `SetDefaults_EndpointPort`: an unnamed port's name is `""`, its protocol TCP.
pub fn default_endpoint_slice(slice: &mut EndpointSlice) {
    for p in slice.ports.iter_mut().flatten() {
        default_slice_port(p);
    }
}

fn default_slice_port(p: &mut SlicePort) {
    if p.name.is_none() {
        p.name = Some(String::new());
    }
    if p.protocol.is_none() {
        p.protocol = Some("TCP".into());
    }
}

/// The strategy's `PrepareForCreate`: generation 1.
pub fn prepare_endpoint_slice_for_create(slice: &mut EndpointSlice) {
    slice.metadata.generation = Some(1);
}

/// The strategy's `PrepareForUpdate`: generation counted when anything but metadata changes.
pub fn prepare_endpoint_slice_for_update(new: &mut EndpointSlice, old: &EndpointSlice) {
    let changed = new.address_type != old.address_type
        || new.endpoints != old.endpoints
        || new.ports != old.ports;
    count_generation(&mut new.metadata, &old.metadata, changed);
}

/// `ValidateEndpointSlice` (create).
pub fn validate_endpoint_slice(slice: &EndpointSlice) -> FieldErrors {
    let mut errs = validate_object_meta(&slice.metadata, true, NameRule::Dns1123Subdomain);
    let at = slice.address_type.as_str();
    if at.is_empty() {
        errs.push(FieldError::required(Path::new("addressType"), ""));
    } else if !ADDRESS_TYPES.contains(&at) {
        errs.push(FieldError::not_supported(
            Path::new("addressType"),
            at,
            ADDRESS_TYPES,
        ));
    }
    errs.extend(validate_slice_endpoints(slice));
    errs.extend(validate_slice_ports(slice.ports.as_deref().unwrap_or(&[])));
    errs
}

/// `ValidateEndpointSliceUpdate`: `addressType` is immutable.
pub fn validate_endpoint_slice_update(new: &EndpointSlice, old: &EndpointSlice) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_endpoint_slice(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs.extend(validate_immutable(
        &new.address_type,
        &old.address_type,
        &Path::new("addressType"),
    ));
    errs
}

fn validate_slice_endpoints(slice: &EndpointSlice) -> FieldErrors {
    let path = Path::new("endpoints");
    let endpoints = slice.endpoints.as_deref().unwrap_or(&[]);
    if endpoints.len() > MAX_ENDPOINTS {
        return vec![FieldError::too_many(&path, endpoints.len(), MAX_ENDPOINTS)];
    }
    let mut errs = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let ip = path.index(i);
        let ap = ip.child("addresses");
        if ep.addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if ep.addresses.len() > MAX_ADDRESSES {
            errs.push(FieldError::too_many(&ap, ep.addresses.len(), MAX_ADDRESSES));
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let p = ap.index(j);
            match slice.address_type.as_str() {
                "IPv4" | "IPv6" => {
                    let want_v4 = slice.address_type == "IPv4";
                    match a.parse::<std::net::IpAddr>() {
                        Ok(addr) if addr.is_ipv4() == want_v4 => {
                            errs.extend(validate_non_special_ip(a, &p))
                        }
                        _ => errs.push(FieldError::invalid(
                            &p,
                            a.as_str(),
                            if want_v4 {
                                "must be a valid IPv4 address"
                            } else {
                                "must be a valid IPv6 address"
                            },
                        )),
                    }
                }
                "FQDN" => errs.extend(invalid_each(&p, a, is_fqdn(a))),
                _ => {}
            }
        }
        if let Some(n) = &ep.node_name {
            errs.extend(invalid_each(
                &ip.child("nodeName"),
                n,
                is_dns1123_subdomain(n),
            ));
        }
        if let Some(topo) = &ep.deprecated_topology {
            let tp = ip.child("deprecatedTopology");
            if topo.len() > MAX_TOPOLOGY_LABELS {
                errs.push(FieldError::too_many(&tp, topo.len(), MAX_TOPOLOGY_LABELS));
            }
            errs.extend(validate_labels(topo, &tp));
        }
        if let Some(h) = &ep.hostname {
            errs.extend(validate_dns1123_label(h, &ip.child("hostname")));
        }
        if let Some(hints) = &ep.hints {
            let hp = ip.child("hints");
            let zones = hints.for_zones.as_deref().unwrap_or(&[]);
            if zones.len() > MAX_HINTS {
                errs.push(FieldError::too_many(
                    hp.child("forZones"),
                    zones.len(),
                    MAX_HINTS,
                ));
            }
            let nodes = hints.for_nodes.as_deref().unwrap_or(&[]);
            if nodes.len() > MAX_HINTS {
                errs.push(FieldError::too_many(
                    hp.child("forNodes"),
                    nodes.len(),
                    MAX_HINTS,
                ));
            }
        }
    }
    errs
}

fn validate_slice_ports(ports: &[SlicePort]) -> FieldErrors {
    let path = Path::new("ports");
    if ports.len() > MAX_PORTS {
        return vec![FieldError::too_many(&path, ports.len(), MAX_PORTS)];
    }
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = path.index(i);
        let name = p.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            errs.extend(validate_dns1123_label(name, &ip.child("name")));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(ip.child("name"), name));
        }
        match p.protocol.as_deref() {
            None => errs.push(FieldError::required(ip.child("protocol"), "")),
            Some(pr) if !PROTOCOLS.contains(&pr) => errs.push(FieldError::not_supported(
                ip.child("protocol"),
                pr,
                PROTOCOLS,
            )),
            _ => {}
        }
        if let Some(ap) = &p.app_protocol {
            errs.extend(invalid_each(
                &ip.child("appProtocol"),
                ap,
                is_qualified_name(ap),
            ));
        }
    }
    errs
}

/// `IsFullyQualifiedDomainName`: a DNS-1123 subdomain of at least two labels (a trailing
/// dot allowed).
fn is_fqdn(name: &str) -> Vec<String> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() {
        return vec!["Required value".into()];
    }
    let mut errs = is_dns1123_subdomain(&n.to_lowercase());
    if errs.is_empty() && !n.contains('.') {
        errs.push("should be a domain with at least two segments separated by dots".into());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EndpointSubset;
    use k8s_openapi::api::discovery::v1::Endpoint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        }
    }

    fn fields(errs: &FieldErrors) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn endpoints_rules_are_upstreams() {
        let mut ep = Endpoints {
            metadata: meta("web"),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "10.42.0.5".into(),
                    ..Default::default()
                }]),
                ports: Some(vec![EndpointPort {
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
        };
        default_endpoints(&mut ep);
        assert_eq!(
            ep.subsets
                .as_ref()
                .and_then(|s| s[0].ports.as_ref())
                .map(|p| p[0].protocol.clone()),
            Some(Some("TCP".into()))
        );
        assert!(validate_endpoints(&ep).is_empty());

        let cases: &[(&str, &str)] = &[
            ("127.0.0.1", "subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"),
            ("nope", "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
            ("169.254.1.1", "subsets[0].addresses[0].ip: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
        ];
        for (ip, want) in cases {
            let mut bad = ep.clone();
            if let Some(s) = bad.subsets.as_mut() {
                s[0].addresses = Some(vec![EndpointAddress {
                    ip: ip.to_string(),
                    ..Default::default()
                }]);
            }
            assert_eq!(
                fields(&validate_endpoints(&bad)),
                vec![want.to_string()],
                "{ip}"
            );
        }
        let mut empty = ep.clone();
        if let Some(s) = empty.subsets.as_mut() {
            s[0].addresses = None;
        }
        assert_eq!(
            fields(&validate_endpoints(&empty)),
            vec!["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
        );
    }

    fn slice(at: &str, addrs: &[&str]) -> EndpointSlice {
        EndpointSlice {
            metadata: meta("web-abcde"),
            address_type: at.into(),
            endpoints: Some(vec![Endpoint {
                addresses: addrs.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            }]),
            ports: Some(vec![SlicePort {
                port: Some(80),
                ..Default::default()
            }]),
        }
    }

    #[test]
    fn endpoint_slice_rules_are_upstreams() {
        let mut s = slice("IPv4", &["10.42.0.5"]);
        default_endpoint_slice(&mut s);
        let p = s.ports.as_ref().map(|p| p[0].clone()).unwrap_or_default();
        assert_eq!(
            (p.name.as_deref(), p.protocol.as_deref()),
            (Some(""), Some("TCP"))
        );
        assert!(validate_endpoint_slice(&s).is_empty());

        let cases: &[(EndpointSlice, &str)] = &[
            (slice("IPv4", &["fd00::1"]), "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"),
            (slice("IPv6", &["10.0.0.1"]), "endpoints[0].addresses[0]: Invalid value: \"10.0.0.1\": must be a valid IPv6 address"),
            (slice("IPv4", &[]), "endpoints[0].addresses: Required value: must contain at least 1 address"),
            (slice("Foo", &["x"]), "addressType: Unsupported value: \"Foo\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""),
            (slice("", &["x"]), "addressType: Required value"),
        ];
        for (bad, want) in cases {
            let mut bad = bad.clone();
            default_endpoint_slice(&mut bad);
            assert_eq!(
                fields(&validate_endpoint_slice(&bad)),
                vec![want.to_string()]
            );
        }
        let mut many = s.clone();
        many.endpoints = many
            .endpoints
            .map(|e| vec![e[0].clone(); MAX_ENDPOINTS + 1]);
        assert_eq!(
            fields(&validate_endpoint_slice(&many)),
            vec!["endpoints: Too many: 1001: must have at most 1000 items"]
        );
        let mut dup = slice("IPv4", &["10.42.0.5"]);
        dup.ports = Some(vec![SlicePort::default(), SlicePort::default()]);
        default_endpoint_slice(&mut dup);
        assert_eq!(
            fields(&validate_endpoint_slice(&dup)),
            vec!["ports[1].name: Duplicate value: \"\""]
        );
        let mut changed = slice("IPv6", &["fd00::1"]);
        default_endpoint_slice(&mut changed);
        changed.metadata.resource_version = Some("5".into());
        assert_eq!(
            fields(&validate_endpoint_slice_update(&changed, &s)),
            vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
        );
    }
}

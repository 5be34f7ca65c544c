//! Every record kind the zone answers, against a zone built from k8s-openapi objects.

use std::collections::BTreeMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{resolve, Outcome};
use crate::zone::{BuildOptions, Zone, SERVICE_NAME_LABEL};

fn ns(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn svc(ns: &str, name: &str, spec: ServiceSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn port(name: &str, protocol: &str, port: i32) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.into()),
        protocol: Some(protocol.into()),
        port,
        ..Default::default()
    }
}

fn cluster_ip(ip: &str, ports: Vec<ServicePort>) -> ServiceSpec {
    ServiceSpec {
        type_: Some("ClusterIP".into()),
        cluster_ip: Some(ip.into()),
        cluster_ips: Some(vec![ip.into()]),
        ports: Some(ports),
        ..Default::default()
    }
}

fn external(target: &str) -> ServiceSpec {
    ServiceSpec {
        type_: Some("ExternalName".into()),
        external_name: Some(target.into()),
        ..Default::default()
    }
}

/// (address, hostname, ready)
fn slice(
    ns: &str,
    name: &str,
    service: &str,
    eps: &[(&str, &str, bool)],
    ports: &[(&str, &str, i32)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                service.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            eps.iter()
                .map(|(ip, host, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    hostname: (!host.is_empty()).then(|| host.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(
            ports
                .iter()
                .map(|(name, proto, port)| EndpointPort {
                    name: Some(name.to_string()),
                    protocol: Some(proto.to_string()),
                    port: Some(*port),
                    app_protocol: None,
                })
                .collect(),
        ),
    }
}

fn zone() -> Zone {
    let namespaces = [ns("default"), ns("kube-system"), ns("empty")];
    let headless = ServiceSpec {
        cluster_ip: Some("None".into()),
        cluster_ips: Some(vec!["None".into()]),
        ports: Some(vec![port("web", "TCP", 80)]),
        ..Default::default()
    };
    let services = [
        svc(
            "default",
            "web",
            cluster_ip(
                "10.43.0.20",
                vec![port("http", "TCP", 80), port("dns", "UDP", 53)],
            ),
        ),
        svc("default", "nginx", headless.clone()),
        svc("default", "bare", headless),
        svc("default", "ext", external("Example.COM.")),
        svc(
            "default",
            "inner",
            external("web.default.svc.cluster.local"),
        ),
        svc(
            "default",
            "loop",
            external("loop.default.svc.cluster.local"),
        ),
        svc("default", "extip", external("1.2.3.4")),
        svc("default", "noports", cluster_ip("10.43.0.30", vec![])),
        svc(
            "kube-system",
            "kube-dns",
            cluster_ip("10.43.0.10", vec![port("dns", "UDP", 53)]),
        ),
    ];
    let slices = [
        slice(
            "default",
            "web-abc",
            "web",
            &[("10.42.0.5", "", true), ("10.42.0.6", "", false)],
            &[("http", "TCP", 8080)],
        ),
        slice(
            "default",
            "nginx-1",
            "nginx",
            &[
                ("10.42.0.7", "web-0", true),
                ("10.42.0.8", "web-1", true),
                ("10.42.0.9", "", true),
                ("10.42.0.12", "web-3", false),
            ],
            &[("web", "TCP", 80)],
        ),
        slice(
            "default",
            "nginx-2",
            "nginx",
            &[("10.42.0.10", "", true)],
            &[("web", "TCP", 80)],
        ),
        slice(
            "default",
            "bare-1",
            "bare",
            &[("10.42.0.11", "", true)],
            &[],
        ),
    ];
    Zone::build(
        &BuildOptions {
            domain: "cluster.local".into(),
            fallback_ns_addr: "10.42.0.1".parse().unwrap(),
            synced: true,
            serial: 1234,
        },
        namespaces.iter(),
        services.iter(),
        slices.iter(),
    )
}

/// What a question got, as text: the rcode, the answers, the additionals, and whether
/// the authority section holds the SOA; or "forward" / "chase <cname> -> <target>".
#[derive(Debug, PartialEq)]
struct Got {
    rcode: &'static str,
    answers: Vec<String>,
    extra: Vec<String>,
    soa: bool,
}

fn show(r: &hickory_proto::rr::Record) -> String {
    format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)
}

fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Result<Got, String> {
    let qname = Name::from_ascii(name).unwrap();
    match resolve(zone, &qname, qtype) {
        Outcome::Forward => Err("forward".into()),
        Outcome::Chase { cname, target } => Err(format!("chase {} -> {target}", show(&cname))),
        Outcome::Reply(r) => Ok(Got {
            rcode: match r.rcode {
                ResponseCode::NoError => "NOERROR",
                ResponseCode::NXDomain => "NXDOMAIN",
                ResponseCode::ServFail => "SERVFAIL",
                ResponseCode::Refused => "REFUSED",
                _ => "OTHER",
            },
            answers: r.answers.iter().map(show).collect(),
            extra: r.additionals.iter().map(show).collect(),
            soa: r
                .authorities
                .iter()
                .any(|a| a.record_type() == RecordType::SOA),
        }),
    }
}

fn ok(answers: &[&str]) -> Result<Got, String> {
    Ok(Got {
        rcode: "NOERROR",
        answers: answers.iter().map(|s| s.to_string()).collect(),
        extra: vec![],
        soa: false,
    })
}

fn ok_extra(answers: &[&str], extra: &[&str]) -> Result<Got, String> {
    Ok(Got {
        rcode: "NOERROR",
        answers: answers.iter().map(|s| s.to_string()).collect(),
        extra: extra.iter().map(|s| s.to_string()).collect(),
        soa: false,
    })
}

fn nodata() -> Result<Got, String> {
    Ok(Got {
        rcode: "NOERROR",
        answers: vec![],
        extra: vec![],
        soa: true,
    })
}

fn nxdomain() -> Result<Got, String> {
    Ok(Got {
        rcode: "NXDOMAIN",
        answers: vec![],
        extra: vec![],
        soa: true,
    })
}

#[test]
fn answers_as_the_kubernetes_plugin() {
    use RecordType::*;
    let z = zone();
    let cases: Vec<(&str, RecordType, Result<Got, String>)> = vec![
        // ClusterIP Services.
        (
            "web.default.svc.cluster.local.",
            A,
            ok(&["web.default.svc.cluster.local. 5 A 10.43.0.20"]),
        ),
        // Case-insensitive; the name echoed as asked.
        (
            "WEB.Default.svc.Cluster.Local.",
            A,
            ok(&["WEB.Default.svc.Cluster.Local. 5 A 10.43.0.20"]),
        ),
        ("web.default.svc.cluster.local.", AAAA, nodata()),
        ("web.default.svc.cluster.local.", MX, nodata()),
        ("web.default.svc.cluster.local.", TXT, nodata()),
        ("web.default.svc.cluster.local.", CNAME, nodata()),
        ("web.default.svc.cluster.local.", PTR, nodata()),
        ("nope.default.svc.cluster.local.", A, nxdomain()),
        ("nope.default.svc.cluster.local.", TXT, nxdomain()),
        ("web.nons.svc.cluster.local.", A, nxdomain()),
        // No ports: nothing to answer with, as CoreDNS.
        ("noports.default.svc.cluster.local.", A, nxdomain()),
        // SRV of a ClusterIP Service: named port, target the Service's own name.
        (
            "_http._tcp.web.default.svc.cluster.local.",
            SRV,
            ok_extra(
                &["_http._tcp.web.default.svc.cluster.local. 5 SRV 0 100 80 web.default.svc.cluster.local."],
                &["web.default.svc.cluster.local. 5 A 10.43.0.20"],
            ),
        ),
        (
            "_dns._udp.web.default.svc.cluster.local.",
            SRV,
            ok_extra(
                &["_dns._udp.web.default.svc.cluster.local. 5 SRV 0 100 53 web.default.svc.cluster.local."],
                &["web.default.svc.cluster.local. 5 A 10.43.0.20"],
            ),
        ),
        ("_http._udp.web.default.svc.cluster.local.", SRV, nxdomain()),
        ("_nope._tcp.web.default.svc.cluster.local.", SRV, nxdomain()),
        // An SRV name answers A too (the port labels narrow, the address stays).
        (
            "_http._tcp.web.default.svc.cluster.local.",
            A,
            ok(&["_http._tcp.web.default.svc.cluster.local. 5 A 10.43.0.20"]),
        ),
        // The Service name's SRV: every port, the weight shared.
        (
            "web.default.svc.cluster.local.",
            SRV,
            ok_extra(
                &[
                    "web.default.svc.cluster.local. 5 SRV 0 50 80 web.default.svc.cluster.local.",
                    "web.default.svc.cluster.local. 5 SRV 0 50 53 web.default.svc.cluster.local.",
                ],
                &["web.default.svc.cluster.local. 5 A 10.43.0.20"],
            ),
        ),
        // An endpoint of a ClusterIP Service by its dashed address (ready only).
        (
            "10-42-0-5.web.default.svc.cluster.local.",
            A,
            ok(&["10-42-0-5.web.default.svc.cluster.local. 5 A 10.42.0.5"]),
        ),
        ("10-42-0-6.web.default.svc.cluster.local.", A, nxdomain()),
        // Headless: every ready address of every slice.
        (
            "nginx.default.svc.cluster.local.",
            A,
            ok(&[
                "nginx.default.svc.cluster.local. 5 A 10.42.0.7",
                "nginx.default.svc.cluster.local. 5 A 10.42.0.8",
                "nginx.default.svc.cluster.local. 5 A 10.42.0.9",
                "nginx.default.svc.cluster.local. 5 A 10.42.0.10",
            ]),
        ),
        ("nginx.default.svc.cluster.local.", AAAA, nodata()),
        // StatefulSet-style hostnames, and dashed addresses without one.
        (
            "web-0.nginx.default.svc.cluster.local.",
            A,
            ok(&["web-0.nginx.default.svc.cluster.local. 5 A 10.42.0.7"]),
        ),
        (
            "10-42-0-9.nginx.default.svc.cluster.local.",
            A,
            ok(&["10-42-0-9.nginx.default.svc.cluster.local. 5 A 10.42.0.9"]),
        ),
        ("web-3.nginx.default.svc.cluster.local.", A, nxdomain()),
        ("web-0.nginx.default.svc.cluster.local.", AAAA, nodata()),
        // Headless SRV: one per endpoint, its own name as target, addresses in additional.
        (
            "_web._tcp.nginx.default.svc.cluster.local.",
            SRV,
            ok_extra(
                &[
                    "_web._tcp.nginx.default.svc.cluster.local. 5 SRV 0 25 80 web-0.nginx.default.svc.cluster.local.",
                    "_web._tcp.nginx.default.svc.cluster.local. 5 SRV 0 25 80 web-1.nginx.default.svc.cluster.local.",
                    "_web._tcp.nginx.default.svc.cluster.local. 5 SRV 0 25 80 10-42-0-9.nginx.default.svc.cluster.local.",
                    "_web._tcp.nginx.default.svc.cluster.local. 5 SRV 0 25 80 10-42-0-10.nginx.default.svc.cluster.local.",
                ],
                &[
                    "web-0.nginx.default.svc.cluster.local. 5 A 10.42.0.7",
                    "web-1.nginx.default.svc.cluster.local. 5 A 10.42.0.8",
                    "10-42-0-9.nginx.default.svc.cluster.local. 5 A 10.42.0.9",
                    "10-42-0-10.nginx.default.svc.cluster.local. 5 A 10.42.0.10",
                ],
            ),
        ),
        // A slice without ports: addresses, but no SRV record.
        (
            "bare.default.svc.cluster.local.",
            A,
            ok(&["bare.default.svc.cluster.local. 5 A 10.42.0.11"]),
        ),
        ("bare.default.svc.cluster.local.", SRV, nodata()),
        // ExternalName outside the zone: the CNAME, then the upstream's answer.
        (
            "ext.default.svc.cluster.local.",
            A,
            Err("chase ext.default.svc.cluster.local. 5 CNAME example.com. -> example.com.".into()),
        ),
        (
            "ext.default.svc.cluster.local.",
            CNAME,
            ok(&["ext.default.svc.cluster.local. 5 CNAME example.com."]),
        ),
        ("ext.default.svc.cluster.local.", SRV, nodata()),
        ("_http._tcp.ext.default.svc.cluster.local.", SRV, nxdomain()),
        // ExternalName inside the zone: followed.
        (
            "inner.default.svc.cluster.local.",
            A,
            ok(&[
                "inner.default.svc.cluster.local. 5 CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. 5 A 10.43.0.20",
            ]),
        ),
        ("loop.default.svc.cluster.local.", A, nodata()),
        // An address is no CNAME target.
        ("extip.default.svc.cluster.local.", A, nxdomain()),
        // Pods, insecure: the name's address.
        (
            "10-42-0-99.default.pod.cluster.local.",
            A,
            ok(&["10-42-0-99.default.pod.cluster.local. 5 A 10.42.0.99"]),
        ),
        ("10-42-0-99.default.pod.cluster.local.", AAAA, nodata()),
        ("not-an-ip.default.pod.cluster.local.", A, nxdomain()),
        ("10-42-0-99.nons.pod.cluster.local.", A, nxdomain()),
        // Names that exist without records, and names that do not.
        ("default.svc.cluster.local.", A, nodata()),
        ("empty.svc.cluster.local.", A, nodata()),
        ("nons.svc.cluster.local.", A, nxdomain()),
        ("svc.cluster.local.", A, nodata()),
        ("pod.cluster.local.", A, nodata()),
        ("cluster.local.", A, nodata()),
        ("foo.cluster.local.", A, nxdomain()),
        ("a.b.c.web.default.svc.cluster.local.", A, nxdomain()),
        ("foo.cluster.local.", SOA, nodata()),
        ("cluster.local.", AXFR, Ok(Got { rcode: "REFUSED", answers: vec![], extra: vec![], soa: false })),
        // Apex SOA and NS, the server's own name, the schema version.
        (
            "cluster.local.",
            SOA,
            ok(&["cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1234 7200 1800 86400 5"]),
        ),
        (
            "cluster.local.",
            NS,
            ok_extra(
                &["cluster.local. 5 NS ns.dns.cluster.local."],
                &["ns.dns.cluster.local. 5 A 10.43.0.10"],
            ),
        ),
        (
            "ns.dns.cluster.local.",
            A,
            ok(&["ns.dns.cluster.local. 5 A 10.43.0.10"]),
        ),
        (
            "dns-version.cluster.local.",
            TXT,
            ok(&["dns-version.cluster.local. 28800 TXT 1.1.0"]),
        ),
        // PTR: a ClusterIP names its Service; an endpoint its own name.
        (
            "20.0.43.10.in-addr.arpa.",
            PTR,
            ok(&["20.0.43.10.in-addr.arpa. 5 PTR web.default.svc.cluster.local."]),
        ),
        (
            "7.0.42.10.in-addr.arpa.",
            PTR,
            ok(&["7.0.42.10.in-addr.arpa. 5 PTR web-0.nginx.default.svc.cluster.local."]),
        ),
        (
            "5.0.42.10.in-addr.arpa.",
            PTR,
            ok(&["5.0.42.10.in-addr.arpa. 5 PTR 10-42-0-5.web.default.svc.cluster.local."]),
        ),
        // Not ready, unknown, or not a PTR: the upstream resolvers' business.
        ("6.0.42.10.in-addr.arpa.", PTR, Err("forward".into())),
        ("1.1.168.192.in-addr.arpa.", PTR, Err("forward".into())),
        ("20.0.43.10.in-addr.arpa.", A, Err("forward".into())),
        ("43.10.in-addr.arpa.", PTR, Err("forward".into())),
        // Names outside the cluster domain.
        ("example.com.", A, Err("forward".into())),
        ("local.", A, Err("forward".into())),
        ("xcluster.local.", A, Err("forward".into())),
    ];
    let mut failed = Vec::new();
    for (name, qtype, want) in cases {
        let got = ask(&z, name, qtype);
        if got != want {
            failed.push(format!("{name} {qtype}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn unsynced_cache_says_servfail_not_nxdomain() {
    let mut z = zone();
    z.synced = false;
    let got = ask(&z, "nope.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(got.rcode, "SERVFAIL");
    // What is known is still answered.
    let got = ask(&z, "web.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(got.answers.len(), 1);
}

#[test]
fn ns_dns_falls_back_to_the_listen_address_without_kube_dns() {
    let z = Zone::build(
        &BuildOptions {
            domain: "cluster.local".into(),
            fallback_ns_addr: "10.42.0.1".parse().unwrap(),
            synced: true,
            serial: 1,
        },
        [],
        [],
        [],
    );
    assert_eq!(
        ask(&z, "ns.dns.cluster.local.", RecordType::A),
        ok(&["ns.dns.cluster.local. 5 A 10.42.0.1"])
    );
}

#[test]
fn ipv6_reverse_names_parse() {
    let name = "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa";
    assert_eq!(
        super::reverse_address(name),
        Some("4321:0:1:2:3:4:567:89ab".parse().unwrap())
    );
    assert_eq!(super::reverse_address("1.2.ip6.arpa"), None);
    assert_eq!(
        super::reverse_address("4.3.2.1.in-addr.arpa"),
        Some("1.2.3.4".parse().unwrap())
    );
    assert_eq!(super::reverse_address("256.3.2.1.in-addr.arpa"), None);
}

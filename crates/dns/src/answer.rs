//! What to answer a question with, as CoreDNS's kubernetes plugin answers it (configured
//! as k3s and kubeadm configure it: `kubernetes cluster.local in-addr.arpa ip6.arpa { pods
//! insecure; fallthrough in-addr.arpa ip6.arpa }`, TTL 5). Pure: a [`Zone`] and a question
//! in, an [`Outcome`] out; the server does the I/O.
//!
//! ```text
//! question ─┬─ under <domain> ─────────── apex SOA/NS, ns.dns, dns-version TXT,
//! │         │                             <svc>.<ns>.svc, <ep>.<svc>.<ns>.svc,
//! │         │                             _<port>._<proto>.<svc>.<ns>.svc, <a-b-c-d>.<ns>.pod
//! │         │                             ─▶ Reply (NOERROR, NODATA+SOA, NXDOMAIN+SOA)
//! │         │                             ─▶ Chase (ExternalName outside the zone)
//! │         ├─ PTR of a ClusterIP or a ready endpoint ─▶ Reply
//! │         └─ anything else (other reverse names too) ─▶ Forward
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::zone::{Kind, Zone};

/// The TTL of every record the zone answers with (the plugin's `ttl`, default 5).
pub const TTL: u32 = 5;
/// `dns-version.<domain>` TXT: the version of the DNS specification served.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// CoreDNS gives the schema record a TTL of its own.
const SCHEMA_TTL: u32 = 28800;
/// How many CNAMEs an in-zone ExternalName chain may follow.
const MAX_CNAME_CHAIN: usize = 8;

/// What the server should do with a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answer from the zone.
    Reply(Reply),
    /// Not the cluster's: ask the upstream resolvers.
    Forward,
    /// An ExternalName whose target lies outside the zone: answer `cname`, followed by what
    /// the upstream resolvers answer for `target` and the question's type (CoreDNS asks
    /// them; when none answers, the CNAME alone).
    Chase {
        cname: Box<Record>,
        target: Box<Name>,
    },
}

/// A reply from the zone: the sections and the response code. Authoritative.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Reply {
    fn answer(answers: Vec<Record>, additionals: Vec<Record>) -> Reply {
        Reply {
            rcode: ResponseCode::NoError,
            answers,
            authorities: Vec::new(),
            additionals,
        }
    }

    fn nodata(zone: &Zone) -> Reply {
        Reply {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authorities: soa(zone).into_iter().collect(),
            additionals: Vec::new(),
        }
    }

    /// NXDOMAIN, or SERVFAIL while the cache has not listed yet (the name may exist).
    fn nxdomain(zone: &Zone) -> Reply {
        Reply {
            rcode: if zone.synced {
                ResponseCode::NXDomain
            } else {
                ResponseCode::ServFail
            },
            answers: Vec::new(),
            authorities: soa(zone).into_iter().collect(),
            additionals: Vec::new(),
        }
    }

    fn refused() -> Reply {
        Reply {
            rcode: ResponseCode::Refused,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The answer to `qname`/`qtype` from `zone`.
pub fn resolve(zone: &Zone, qname: &Name, qtype: RecordType) -> Outcome {
    let lower = qname.to_lowercase().to_ascii();
    let name = lower.trim_end_matches('.');
    if let Some(ip) = reverse_address(name) {
        return reverse(zone, qname, qtype, ip);
    }
    let rest = if name == zone.domain {
        ""
    } else if let Some(rest) = name
        .strip_suffix(zone.domain.as_str())
        .and_then(|r| r.strip_suffix('.'))
        .filter(|_| !zone.domain.is_empty())
    {
        rest
    } else {
        return Outcome::Forward;
    };
    in_zone(zone, qname, rest, qtype, 0)
}

/// PTR of a ClusterIP (the Service's name) or else of ready endpoints (their names); any
/// other reverse question falls through to the upstream resolvers.
fn reverse(zone: &Zone, qname: &Name, qtype: RecordType, ip: IpAddr) -> Outcome {
    if qtype != RecordType::PTR {
        return Outcome::Forward;
    }
    let targets: Vec<String> = if let Some(svc) = zone.cluster_ips.get(&ip) {
        vec![format!("{svc}.svc.{}.", zone.domain)]
    } else if let Some(names) = zone.endpoint_ips.get(&ip) {
        names
            .iter()
            .map(|n| format!("{n}.svc.{}.", zone.domain))
            .collect()
    } else {
        return Outcome::Forward;
    };
    let answers = targets
        .iter()
        .filter_map(|t| Name::from_ascii(t).ok())
        .map(|t| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(t))))
        .collect();
    Outcome::Reply(Reply::answer(answers, Vec::new()))
}

/// The address a full reverse name stands for: `4.3.2.1.in-addr.arpa` (four octets) or
/// the 32 nibbles of `ip6.arpa`.
fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rest
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        let [d, c, b, a] = octets.try_into().ok()?;
        return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| {
            (n.len() == 1)
                .then(|| u8::from_str_radix(n, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bits: u128 = 0;
    for n in nibbles.iter().rev() {
        bits = (bits << 4) | u128::from(*n);
    }
    Some(IpAddr::V6(Ipv6Addr::from(bits)))
}

/// A question under the cluster domain; `rest` is the name without the domain.
fn in_zone(zone: &Zone, qname: &Name, rest: &str, qtype: RecordType, depth: usize) -> Outcome {
    let reply = |r| Outcome::Reply(r);
    match qtype {
        RecordType::AXFR | RecordType::IXFR => return reply(Reply::refused()),
        RecordType::SOA if rest.is_empty() => {
            return reply(Reply::answer(soa(zone).into_iter().collect(), Vec::new()))
        }
        RecordType::SOA => return reply(Reply::nodata(zone)),
        RecordType::NS if rest.is_empty() => {
            let ns_name = ns_name(zone);
            let answers = ns_name
                .iter()
                .map(|n| Record::from_rdata(qname.clone(), TTL, RData::NS(NS(n.clone()))))
                .collect();
            let extra = ns_name
                .map(|n| addresses(&n, &zone.ns_addrs, RecordType::A))
                .unwrap_or_default();
            return reply(Reply::answer(answers, extra));
        }
        RecordType::TXT => {
            if rest == "dns-version" {
                let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                let rec = Record::from_rdata(qname.clone(), SCHEMA_TTL, RData::TXT(txt));
                return reply(Reply::answer(vec![rec], Vec::new()));
            }
            // NODATA for a name that has records of another type, NXDOMAIN otherwise.
            return match items(zone, rest) {
                Ok(items) if !items.is_empty() => reply(Reply::nodata(zone)),
                _ => reply(Reply::nxdomain(zone)),
            };
        }
        _ => {}
    }
    if rest == "ns.dns" {
        return match qtype {
            RecordType::A | RecordType::AAAA => {
                let answers = addresses(qname, &zone.ns_addrs, qtype);
                if answers.is_empty() {
                    reply(Reply::nodata(zone))
                } else {
                    reply(Reply::answer(answers, Vec::new()))
                }
            }
            _ => reply(Reply::nodata(zone)),
        };
    }
    let items = match items(zone, rest) {
        Ok(items) => items,
        Err(NotFound) => return reply(Reply::nxdomain(zone)),
    };
    match qtype {
        RecordType::A | RecordType::AAAA => address_answer(zone, qname, qtype, items, depth),
        RecordType::CNAME => match items.first() {
            Some(Item {
                host: Host::Name(target),
                ..
            }) => match fqdn(target) {
                Some(t) => reply(Reply::answer(
                    vec![Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::CNAME(CNAME(t)),
                    )],
                    Vec::new(),
                )),
                None => reply(Reply::nodata(zone)),
            },
            _ => reply(Reply::nodata(zone)),
        },
        RecordType::SRV => srv_answer(zone, qname, items),
        // Every other type: NODATA for a name that exists (a "fake A lookup" in CoreDNS).
        _ => reply(Reply::nodata(zone)),
    }
}

/// A or AAAA: the addresses of the matching items; an ExternalName's CNAME, followed
/// inside the zone or handed to the upstream resolvers outside it.
fn address_answer(
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    items: Vec<Item>,
    depth: usize,
) -> Outcome {
    let mut answers: Vec<Record> = Vec::new();
    let mut seen: Vec<IpAddr> = Vec::new();
    for item in items {
        match item.host {
            Host::Ip(ip) => {
                if seen.contains(&ip) {
                    continue;
                }
                seen.push(ip);
                answers.extend(addresses(qname, &[ip], qtype));
            }
            Host::Name(target) => {
                let Some(target_name) = fqdn(&target) else {
                    continue;
                };
                let lower = qname.to_lowercase().to_ascii();
                if lower.trim_end_matches('.') == target {
                    continue; // x CNAME x
                }
                let cname = Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::CNAME(CNAME(target_name.clone())),
                );
                let inside = target == zone.domain
                    || target
                        .strip_suffix(zone.domain.as_str())
                        .is_some_and(|r| r.ends_with('.'));
                if !inside {
                    return Outcome::Chase {
                        cname: Box::new(cname),
                        target: Box::new(target_name),
                    };
                }
                if depth >= MAX_CNAME_CHAIN {
                    continue;
                }
                let rest = if target == zone.domain {
                    ""
                } else {
                    &target[..target.len() - zone.domain.len() - 1]
                };
                // Only a target with addresses adds the CNAME (CoreDNS drops it otherwise).
                if let Outcome::Reply(next) = in_zone(zone, &target_name, rest, qtype, depth + 1) {
                    if !next.answers.is_empty() {
                        answers.push(cname);
                        answers.extend(next.answers);
                    }
                }
            }
        }
    }
    if answers.is_empty() {
        Outcome::Reply(Reply::nodata(zone))
    } else {
        Outcome::Reply(Reply::answer(answers, Vec::new()))
    }
}

/// SRV as CoreDNS builds it: one record per (target, port), priority 0, the weight 100
/// shared evenly over every matching item (`floor(100 / n)`, at least 1), the target the
/// item's own name (the Service's for a ClusterIP, the endpoint's for a headless Service),
/// and its address in the additional section. ExternalNames give none.
fn srv_answer(zone: &Zone, qname: &Name, items: Vec<Item>) -> Outcome {
    let items: Vec<Item> = items
        .into_iter()
        .filter(|i| matches!(i.host, Host::Ip(_)))
        .collect();
    let n = items.len().max(1);
    let weight = u16::try_from((100 / n).max(1)).unwrap_or(1);
    let mut answers = Vec::new();
    let mut extra = Vec::new();
    let mut seen_srv: Vec<(String, i32)> = Vec::new();
    let mut seen_addr: Vec<(String, IpAddr)> = Vec::new();
    for item in items {
        let Host::Ip(ip) = item.host else { continue };
        if item.port < 0 {
            continue;
        }
        let Some(target) = fqdn(&item.key) else {
            continue;
        };
        if !seen_srv.contains(&(item.key.clone(), item.port)) {
            seen_srv.push((item.key.clone(), item.port));
            let port = u16::try_from(item.port).unwrap_or(0);
            let srv = SRV::new(0, weight, port, target.clone());
            answers.push(Record::from_rdata(qname.clone(), TTL, RData::SRV(srv)));
        }
        if !seen_addr.contains(&(item.key.clone(), ip)) {
            seen_addr.push((item.key.clone(), ip));
            let rtype = if ip.is_ipv4() {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            extra.extend(addresses(&target, &[ip], rtype));
        }
    }
    if answers.is_empty() {
        return Outcome::Reply(Reply::nodata(zone));
    }
    Outcome::Reply(Reply::answer(answers, extra))
}

/// A and AAAA records of `owner` for those of `ips` in the family `qtype` asks for.
fn addresses(owner: &Name, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(owner.clone(), TTL, rdata))
        .collect()
}

/// The zone's SOA: `<domain> SOA ns.dns.<domain>. hostmaster.<domain>. <serial> 7200 1800
/// 86400 <ttl>`, as CoreDNS makes it.
pub fn soa(zone: &Zone) -> Option<Record> {
    let apex = fqdn(&zone.domain)?;
    let mname = ns_name(zone)?;
    let rname = fqdn(&format!("hostmaster.{}", zone.domain))?;
    let soa = SOA::new(mname, rname, zone.serial, 7200, 1800, 86400, TTL);
    Some(Record::from_rdata(apex, TTL, RData::SOA(soa)))
}

fn ns_name(zone: &Zone) -> Option<Name> {
    fqdn(&format!("ns.dns.{}", zone.domain))
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

/// One thing a name stands for (CoreDNS's `msg.Service`): an address or a CNAME target,
/// the port it came with, and its own name (`key`, the SRV target).
#[derive(Debug, Clone, PartialEq)]
struct Item {
    key: String,
    host: Host,
    port: i32,
}

#[derive(Debug, Clone, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The name does not exist (NXDOMAIN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct NotFound;

/// The items a name under the zone stands for (CoreDNS's `Records`): `Ok(empty)` is a name
/// that exists without records (NODATA).
fn items(zone: &Zone, rest: &str) -> Result<Vec<Item>, NotFound> {
    // The apex and the bare `svc`/`pod` subdomains exist and hold nothing.
    if rest.is_empty() || rest == "svc" || rest == "pod" {
        return Ok(Vec::new());
    }
    let labels: Vec<&str> = rest.split('.').collect();
    let (kind, before) = labels.split_last().ok_or(NotFound)?;
    if *kind != "svc" && *kind != "pod" {
        return Err(NotFound);
    }
    let Some((namespace, before)) = before.split_last() else {
        return Ok(Vec::new());
    };
    if !zone.namespace_exists(namespace) {
        return Err(NotFound);
    }
    let Some((service, before)) = before.split_last() else {
        return Ok(Vec::new()); // `<ns>.svc`: the namespace exists
    };
    let (endpoint, port, protocol) = match before {
        [] => ("", "", ""),
        [endpoint] => (*endpoint, "", ""),
        [port, protocol] => (
            "",
            port.strip_prefix('_').unwrap_or(port),
            protocol.strip_prefix('_').unwrap_or(protocol),
        ),
        _ => return Err(NotFound),
    };
    if *kind == "pod" {
        return pod(zone, namespace, service);
    }
    let svc = zone.service(namespace, service).ok_or(NotFound)?;
    let svc_name = format!("{service}.{namespace}.svc.{}", zone.domain);
    let port_matches = |name: &str, proto: &str| {
        (port.is_empty() || port == name) && (protocol.is_empty() || protocol == proto)
    };
    let mut found = Vec::new();
    match &svc.kind {
        Kind::ExternalName(target) => {
            // No endpoints, no port/protocol labels; an IP is no CNAME target.
            if !endpoint.is_empty() || !port.is_empty() || !protocol.is_empty() {
                return Err(NotFound);
            }
            if target.is_empty() || target.parse::<IpAddr>().is_ok() {
                return Err(NotFound);
            }
            found.push(Item {
                key: svc_name,
                host: Host::Name(target.clone()),
                port: 0,
            });
        }
        Kind::ClusterIp(ips) if endpoint.is_empty() => {
            let mut any_port = false;
            for p in &svc.ports {
                if !port_matches(&p.name, &p.protocol) {
                    continue;
                }
                any_port = true;
                for ip in ips {
                    found.push(Item {
                        key: svc_name.clone(),
                        host: Host::Ip(*ip),
                        port: p.port,
                    });
                }
            }
            if !any_port {
                return Err(NotFound);
            }
        }
        // A headless Service, or an endpoint's own name under any Service.
        Kind::Headless | Kind::ClusterIp(_) => {
            for slice in &svc.slices {
                for ep in &slice.endpoints {
                    if !endpoint.is_empty() && endpoint != ep.name {
                        continue;
                    }
                    for p in &slice.ports {
                        if !port_matches(&p.name, &p.protocol) {
                            continue;
                        }
                        found.push(Item {
                            key: format!("{}.{svc_name}", ep.name),
                            host: Host::Ip(ep.ip),
                            port: p.port,
                        });
                    }
                }
            }
            if found.is_empty() {
                return Err(NotFound);
            }
        }
    }
    Ok(found)
}

/// `a-b-c-d.<ns>.pod` under `pods insecure`: the address the name spells, if it is one.
fn pod(zone: &Zone, namespace: &str, name: &str) -> Result<Vec<Item>, NotFound> {
    let text = if name.matches('-').count() == 3 && !name.contains("--") {
        name.replace('-', ".")
    } else {
        name.replace('-', ":")
    };
    let ip: IpAddr = text.parse().map_err(|_| NotFound)?;
    Ok(vec![Item {
        key: format!("{name}.{namespace}.pod.{}", zone.domain),
        host: Host::Ip(ip),
        port: 0,
    }])
}

#[cfg(test)]
mod tests;

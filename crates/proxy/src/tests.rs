//! Table-driven tests of the model, the layout and the rendered transactions.

use std::net::Ipv4Addr;

use crate::conntrack::stale_entries;
use crate::layout::{layout, Layout};
use crate::model::{desired, Desired};
use crate::render::{render, RenderConfig, SyncKind, Written};
use crate::testutil::*;
use crate::Cidr;

const NODE: &str = "node-a";

fn cidr() -> Cidr {
    Cidr {
        addr: Ipv4Addr::new(10, 42, 0, 0),
        prefix: 16,
    }
}

fn cfg() -> RenderConfig {
    RenderConfig {
        table: "peapod".into(),
        cluster_cidr: cidr(),
        node_ips: vec![Ipv4Addr::new(192, 168, 77, 1)],
    }
}

fn lay(
    svcs: &[k8s_openapi::api::core::v1::Service],
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
) -> Layout {
    layout(&desired(svcs, slices, NODE), cidr())
}

fn here(ip: &str) -> Ep<'_> {
    Ep(ip, Some(NODE), (true, true, false))
}
fn elsewhere(ip: &str) -> Ep<'_> {
    Ep(ip, Some("node-b"), (true, true, false))
}
fn not_ready(ip: &str) -> Ep<'_> {
    Ep(ip, None, (false, false, false))
}
fn terminating(ip: &str) -> Ep<'_> {
    Ep(ip, None, (false, true, true))
}
fn terminating_not_serving(ip: &str) -> Ep<'_> {
    Ep(ip, None, (false, false, true))
}

/// The endpoint IPs the service chain picks among (from its numgen rule).
fn picked(l: &Layout, chain_prefix: &str) -> Vec<String> {
    let Some((_, rules)) = l.chains.iter().find(|(n, _)| n.starts_with(chain_prefix)) else {
        return Vec::new();
    };
    let numgen = rules
        .iter()
        .find(|r| r.starts_with("numgen"))
        .cloned()
        .unwrap_or_default();
    numgen
        .split("__")
        .skip(1)
        .map(|s| s.split('/').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn endpoints_used_for_cluster_traffic() {
    let svc = || service("ns", "web", "10.43.0.5", "http", 80);
    let cases: Vec<(&str, Vec<Ep<'_>>, Vec<&str>)> = vec![
        (
            "ready ones only",
            vec![ready("10.42.0.2"), not_ready("10.42.0.3")],
            vec!["10.42.0.2"],
        ),
        (
            "every ready one",
            vec![ready("10.42.0.2"), ready("10.42.0.3")],
            vec!["10.42.0.2", "10.42.0.3"],
        ),
        (
            "serving-terminating when none is ready",
            vec![
                terminating("10.42.0.4"),
                not_ready("10.42.0.3"),
                terminating_not_serving("10.42.0.5"),
            ],
            vec!["10.42.0.4"],
        ),
        (
            "ready ones over serving-terminating ones",
            vec![terminating("10.42.0.4"), ready("10.42.0.2")],
            vec!["10.42.0.2"],
        ),
        ("none usable", vec![not_ready("10.42.0.3")], vec![]),
    ];
    for (what, eps, want) in cases {
        let l = lay(&[svc()], &[slice("ns", "web", "web-1", "http", 8080, &eps)]);
        assert_eq!(picked(&l, "service-"), want, "{what}");
    }
}

#[test]
fn slices_match_ports_by_name_and_protocol_and_merge() {
    let svc = service("ns", "web", "10.43.0.5", "http", 80);
    let l = lay(
        &[svc],
        &[
            slice("ns", "web", "a", "http", 8080, &[ready("10.42.0.2")]),
            // Same endpoint again in another slice: one endpoint.
            slice(
                "ns",
                "web",
                "b",
                "http",
                8080,
                &[ready("10.42.0.2"), ready("10.42.0.3")],
            ),
            slice("ns", "web", "c", "metrics", 9090, &[ready("10.42.0.9")]),
            slice_proto("ns", "web", "d", "http", "UDP", 8080, &[ready("10.42.0.8")]),
            slice("other", "web", "e", "http", 8080, &[ready("10.42.0.7")]),
        ],
    );
    assert_eq!(picked(&l, "service-"), vec!["10.42.0.2", "10.42.0.3"]);
    let dnat: Vec<&String> = l
        .chains
        .values()
        .flatten()
        .filter(|r| r.contains("dnat to"))
        .collect();
    assert_eq!(dnat.len(), 2);
    assert!(dnat.iter().all(|r| r.ends_with(":8080")), "{dnat:?}");
}

#[test]
fn services_not_proxied() {
    let mut headless = service("ns", "h", "None", "", 80);
    let mut external = service("ns", "x", "", "", 80);
    if let Some(s) = external.spec.as_mut() {
        s.type_ = Some("ExternalName".into());
        s.external_name = Some("example.com".into());
    }
    if let Some(s) = headless.spec.as_mut() {
        s.cluster_ips = Some(vec!["None".into()]);
    }
    let d = desired(&[headless, external], &[], NODE);
    assert!(d.is_empty(), "{d:?}");
}

/// (what, services, slices, element that must be there, in which map)
#[test]
fn map_elements() {
    let np = || with_node_port(service("ns", "web", "10.43.0.5", "", 80), 30080);
    let local = |svc, ext, int| with_policies(svc, ext, int);
    type Case<'a> = (
        &'a str,
        k8s_openapi::api::core::v1::Service,
        Vec<Ep<'a>>,
        Vec<(&'a str, &'a str, &'a str)>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "no endpoints: ClusterIP and NodePort rejected",
            np(),
            vec![],
            vec![
                (
                    "no-endpoint-services",
                    "10.43.0.5 . tcp . 80",
                    "goto reject-chain",
                ),
                ("no-endpoint-nodeports", "tcp . 30080", "goto reject-chain"),
            ],
        ),
        (
            "endpoints: ClusterIP to the service chain, NodePort to the external chain",
            np(),
            vec![ready("10.42.0.2")],
            vec![
                ("service-ips", "10.43.0.5 . tcp . 80", "goto service-"),
                ("service-nodeports", "tcp . 30080", "goto external-"),
            ],
        ),
        (
            "internalTrafficPolicy Local, local endpoint: to the local chain",
            local(np(), None, Some("Local")),
            vec![here("10.42.0.2"), elsewhere("10.42.1.2")],
            vec![
                ("service-ips", "10.43.0.5 . tcp . 80", "goto local-"),
                ("service-nodeports", "tcp . 30080", "goto external-"),
            ],
        ),
        (
            "internalTrafficPolicy Local, endpoints only elsewhere: ClusterIP dropped",
            local(np(), None, Some("Local")),
            vec![elsewhere("10.42.1.2")],
            vec![
                ("no-endpoint-services", "10.43.0.5 . tcp . 80", "drop"),
                ("service-nodeports", "tcp . 30080", "goto external-"),
            ],
        ),
        (
            "externalTrafficPolicy Local, endpoints only elsewhere: NodePort dropped",
            local(np(), Some("Local"), None),
            vec![elsewhere("10.42.1.2")],
            vec![
                ("service-ips", "10.43.0.5 . tcp . 80", "goto service-"),
                ("no-endpoint-nodeports", "tcp . 30080", "drop"),
            ],
        ),
    ];
    for (what, svc, eps, want) in cases {
        let l = lay(&[svc], &[slice("ns", "web", "w", "", 8080, &eps)]);
        for (map, key, verdict) in want {
            let elements = match map {
                "service-ips" => &l.service_ips,
                "service-nodeports" => &l.service_nodeports,
                "no-endpoint-services" => &l.no_endpoint_services,
                _ => &l.no_endpoint_nodeports,
            };
            assert!(
                elements
                    .iter()
                    .any(|(k, v)| k == key && v.starts_with(verdict)),
                "{what}: no {key} : {verdict} in {map}: {elements:?}"
            );
        }
    }
}

#[test]
fn masquerade_only_what_must_be() {
    let l = lay(
        &[with_node_port(
            service("ns", "web", "10.43.0.5", "", 80),
            30080,
        )],
        &[slice("ns", "web", "w", "", 8080, &[ready("10.42.0.2")])],
    );
    let chain = |p: &str| -> Vec<String> {
        l.chains
            .iter()
            .find(|(n, _)| n.starts_with(p))
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    // Off-cluster sources to the ClusterIP; pods keep their address.
    assert_eq!(
        chain("service-")[0],
        "ip daddr 10.43.0.5 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
    );
    // NodePort under Cluster policy: always.
    assert_eq!(chain("external-")[0], "jump mark-for-masquerade");
    // Hairpin: an endpoint reaching itself.
    assert_eq!(
        chain("endpoint-"),
        vec![
            "ip saddr 10.42.0.2 jump mark-for-masquerade".to_string(),
            "meta l4proto tcp dnat to 10.42.0.2:8080".to_string(),
        ]
    );

    // externalTrafficPolicy Local: no masquerade for outside clients.
    let l = lay(
        &[with_policies(
            with_node_port(service("ns", "web", "10.43.0.5", "", 80), 30080),
            Some("Local"),
            None,
        )],
        &[slice(
            "ns",
            "web",
            "w",
            "",
            8080,
            &[here("10.42.0.2"), elsewhere("10.42.1.2")],
        )],
    );
    let ext = l
        .chains
        .iter()
        .find(|(n, _)| n.starts_with("external-"))
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    assert!(
        ext[0].starts_with("ip saddr 10.42.0.0/16 goto service-"),
        "{ext:?}"
    );
    assert!(
        ext[1].starts_with("fib saddr type local jump mark-for-masquerade"),
        "{ext:?}"
    );
    assert!(ext[3].starts_with("goto local-"), "{ext:?}");
    assert_eq!(picked(&l, "local-"), vec!["10.42.0.2"]);
}

#[test]
fn session_affinity_sets_and_rules() {
    let l = lay(
        &[with_affinity(
            service("ns", "web", "10.43.0.5", "", 80),
            Some(60),
        )],
        &[slice(
            "ns",
            "web",
            "w",
            "",
            8080,
            &[ready("10.42.0.2"), ready("10.42.0.3")],
        )],
    );
    assert_eq!(l.affinity_sets.len(), 2);
    assert!(l.affinity_sets.values().all(|t| *t == 60));
    let svc = l
        .chains
        .iter()
        .find(|(n, _)| n.starts_with("service-"))
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    assert!(
        svc[1].starts_with("ip saddr @affinity-") && svc[1].contains(" goto endpoint-"),
        "{svc:?}"
    );
    assert!(svc[3].starts_with("numgen random mod 2 vmap"), "{svc:?}");
    let ep = l
        .chains
        .iter()
        .find(|(n, _)| n.starts_with("endpoint-"))
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    assert!(
        ep[1].starts_with("update @affinity-") && ep[1].ends_with("{ ip saddr }"),
        "{ep:?}"
    );

    let default = lay(
        &[with_affinity(
            service("ns", "web", "10.43.0.5", "", 80),
            None,
        )],
        &[slice("ns", "web", "w", "", 8080, &[ready("10.42.0.2")])],
    );
    assert_eq!(
        default.affinity_sets.values().collect::<Vec<_>>(),
        vec![&10800]
    );
}

/// Every chain a rule or element jumps to exists, so stale chains can go at once.
#[test]
fn layout_refers_only_to_its_own_chains() {
    let svcs = vec![
        with_affinity(
            with_node_port(service("a", "s1", "10.43.0.1", "", 80), 30001),
            None,
        ),
        with_policies(
            with_node_port(service("a", "s2", "10.43.0.2", "", 80), 30002),
            Some("Local"),
            Some("Local"),
        ),
        with_policies(
            with_node_port(service("a", "s3", "10.43.0.3", "", 80), 30003),
            Some("Local"),
            None,
        ),
        with_policies(service("a", "s4", "10.43.0.4", "", 80), None, Some("Local")),
    ];
    let slices: Vec<_> = ["s1", "s2", "s3", "s4"]
        .iter()
        .map(|s| {
            slice(
                "a",
                s,
                s,
                "",
                8080,
                &[here("10.42.0.2"), elsewhere("10.42.1.3")],
            )
        })
        .collect();
    let l = lay(&svcs, &slices);
    let fixed = ["mark-for-masquerade", "reject-chain"];
    let targets = l
        .chains
        .values()
        .flatten()
        .chain(l.service_ips.iter().map(|(_, v)| v))
        .chain(l.service_nodeports.iter().map(|(_, v)| v))
        .flat_map(|r| {
            r.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[0] == "goto" || w[0] == "jump")
                .map(|w| w[1].trim_end_matches([',', '}']).to_string())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    assert!(!targets.is_empty());
    for t in targets {
        assert!(
            l.chains.contains_key(&t) || fixed.contains(&t.as_str()),
            "{t} is not defined"
        );
    }
}

fn apply(prev: &Written, l: &Layout, kind: SyncKind) -> crate::render::Transaction {
    render(&cfg(), l, kind, prev)
}

#[test]
fn fresh_sync_rebuilds_the_table_in_one_script() {
    let l = lay(
        &[service("ns", "web", "10.43.0.5", "", 80)],
        &[slice("ns", "web", "w", "", 8080, &[ready("10.42.0.2")])],
    );
    let tx = apply(&Written::default(), &l, SyncKind::Fresh);
    let lines: Vec<&str> = tx.script.lines().collect();
    assert_eq!(
        &lines[..3],
        &[
            "add table ip peapod",
            "delete table ip peapod",
            "add table ip peapod { comment \"rules for the peapod service proxy\" ; }",
        ]
    );
    assert!(tx.script.contains(
        "add chain ip peapod nat-prerouting { type nat hook prerouting priority -100 ; }"
    ));
    assert!(tx
        .script
        .contains("add element ip peapod service-ips { 10.43.0.5 . tcp . 80 : goto service-"));
    assert_eq!(tx.stats.chains_written, 2);
}

#[test]
fn partial_sync_rewrites_only_what_changed() {
    let (svcs, mut slices) = cluster(3, 2);
    let before = layout(&desired(&svcs, &slices, NODE), cidr());
    let first = apply(&Written::default(), &before, SyncKind::Fresh);

    // Service 1 gains an endpoint.
    slices[1] = slice(
        "bench",
        "svc-1",
        "svc-1-abc",
        "http",
        8080,
        &[ready("10.42.0.4"), ready("10.42.0.5"), ready("10.42.9.9")],
    );
    let after = layout(&desired(&svcs, &slices, NODE), cidr());
    let tx = apply(&first.written, &after, SyncKind::Partial);
    assert!(!tx.script.contains("delete table"));
    assert!(!tx.script.contains("nat-prerouting"));
    // Its service chain (flushed, refilled) and the new endpoint chain; nothing else.
    assert_eq!(tx.stats.chains_written, 2, "{}", tx.script);
    assert!(
        tx.script.contains("flush chain ip peapod service-")
            && tx.script.contains("svc-1/tcp/http\n")
    );
    assert!(
        tx.script.contains("add chain ip peapod endpoint-")
            && tx.script.contains("__10.42.9.9/8080\n")
    );
    assert!(!tx.script.contains("svc-0/tcp/http__"), "{}", tx.script);
    // Maps are flushed and refilled.
    assert!(tx.script.contains("flush map ip peapod service-ips"));
    assert_eq!(tx.stats.elements, 3 + 3);

    // Service 2 goes: its chains are emptied and deleted, its endpoints go from the maps.
    let after2 = layout(&desired(&svcs[..2], &slices, NODE), cidr());
    let tx2 = apply(&tx.written, &after2, SyncKind::Partial);
    assert_eq!(tx2.stats.chains_written, 0, "{}", tx2.script);
    assert_eq!(tx2.stats.chains_deleted, 3);
    let flush_at = tx2
        .script
        .find("flush chain ip peapod service-")
        .unwrap_or(usize::MAX);
    let delete_at = tx2.script.find("delete chain").unwrap_or(0);
    assert!(flush_at < delete_at, "{}", tx2.script);
    assert!(!tx2.script.contains("10.43.0.4 . tcp"), "{}", tx2.script);

    // A full sync rewrites every chain without deleting the table.
    let full = apply(&tx2.written, &after2, SyncKind::Full);
    assert_eq!(full.stats.chains_written, after2.chains.len());
    assert!(!full.script.contains("delete table"));
    assert!(full.script.contains("flush chain ip peapod nat-prerouting"));
}

#[test]
fn affinity_sets_come_and_go() {
    let svc = with_affinity(service("ns", "web", "10.43.0.5", "", 80), None);
    let l1 = lay(
        &[svc.clone()],
        &[slice(
            "ns",
            "web",
            "w",
            "",
            8080,
            &[ready("10.42.0.2"), ready("10.42.0.3")],
        )],
    );
    let tx1 = apply(&Written::default(), &l1, SyncKind::Fresh);
    assert_eq!(
        tx1.script
            .matches("flags dynamic,timeout ; timeout 10800s")
            .count(),
        2
    );
    let l2 = lay(
        &[svc.clone()],
        &[slice("ns", "web", "w", "", 8080, &[ready("10.42.0.2")])],
    );
    let tx2 = apply(&tx1.written, &l2, SyncKind::Partial);
    assert_eq!(
        tx2.script.matches("delete set ip peapod affinity-").count(),
        1,
        "{}",
        tx2.script
    );
    assert!(!tx2.script.contains("add set ip peapod affinity-"));
    // A new timeout cannot be set in place: the table is rebuilt.
    let l3 = lay(
        &[with_affinity(svc, Some(30))],
        &[slice("ns", "web", "w", "", 8080, &[ready("10.42.0.2")])],
    );
    let tx3 = apply(&tx2.written, &l3, SyncKind::Partial);
    assert_eq!(tx3.kind, SyncKind::Fresh);
}

#[test]
fn no_nodeport_rules_without_node_addresses() {
    let l = lay(&[], &[]);
    let mut c = cfg();
    c.node_ips.clear();
    let tx = render(&c, &l, SyncKind::Fresh, &Written::default());
    assert!(!tx.script.contains("vmap @service-nodeports"));
    assert!(!tx.script.contains("add element ip peapod nodeport-ips"));
}

#[test]
fn stale_udp_conntrack_entries() {
    let udp = |svc| with_node_port(with_protocol(svc, "UDP"), 30053);
    let svc = udp(service("ns", "dns", "10.43.0.10", "dns", 53));
    let d = |eps: &[Ep<'_>]| -> Desired {
        desired(
            &[svc.clone()],
            &[slice_proto("ns", "dns", "d", "dns", "UDP", 5353, eps)],
            NODE,
        )
    };
    let empty = d(&[]);
    let one = d(&[ready("10.42.0.2")]);
    let two = d(&[ready("10.42.0.2"), ready("10.42.0.3")]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, &Desired, &Desired, Vec<Vec<String>>)> = vec![
        (
            "first endpoint: flows that were never DNATed",
            &empty,
            &one,
            vec![s(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                "10.43.0.10",
                "--orig-port-dst",
                "53",
            ])],
        ),
        ("an endpoint added", &one, &two, vec![]),
        (
            "an endpoint gone",
            &two,
            &one,
            vec![
                s(&[
                    "-D",
                    "-p",
                    "udp",
                    "--orig-dst",
                    "10.43.0.10",
                    "--dst-nat",
                    "10.42.0.3",
                ]),
                s(&[
                    "-D",
                    "-p",
                    "udp",
                    "--orig-port-dst",
                    "30053",
                    "--dst-nat",
                    "10.42.0.3",
                ]),
            ],
        ),
    ];
    for (what, prev, next, mut want) in cases {
        want.sort();
        assert_eq!(stale_entries(prev, next), want, "{what}");
    }
    // TCP needs nothing: its connections end.
    let tcp = desired(
        &[service("ns", "w", "10.43.0.5", "", 80)],
        &[slice("ns", "w", "w", "", 80, &[ready("10.42.0.2")])],
        NODE,
    );
    assert!(stale_entries(&tcp, &Desired::new()).is_empty());
}

#[test]
fn cidr_parsing() {
    let cases = [
        ("10.42.0.0/16", Some("10.42.0.0/16")),
        ("10.42.3.4/16", Some("10.42.0.0/16")),
        ("0.0.0.0/0", Some("0.0.0.0/0")),
        ("10.42.0.0", None),
        ("10.42.0.0/33", None),
        ("fd00::/8", None),
    ];
    for (input, want) in cases {
        let got = input.parse::<Cidr>().ok().map(|c| c.to_string());
        assert_eq!(got.as_deref(), want, "{input}");
    }
}

#[test]
fn the_layout_cache_gives_what_a_fresh_layout_gives() {
    let (svcs, mut slices) = cluster(5, 3);
    let mut cache = crate::layout::LayoutCache::default();
    for step in 0..4 {
        if step == 2 {
            slices[3] = slice("bench", "svc-3", "svc-3-abc", "http", 8080, &[ready("10.42.7.7")]);
        }
        let n = if step == 3 { 4 } else { 5 };
        let d = desired(&svcs[..n], &slices, NODE);
        assert_eq!(cache.layout(&d, cidr()), layout(&d, cidr()), "step {step}");
    }
}

//! The server on 127.0.0.1:<free port>, asked with real DNS messages (hickory-proto) over
//! UDP and TCP: answers from the cache, truncation, forwarding to a stand-in upstream on
//! loopback, and a fast SERVFAIL when no upstream answers.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dns::zone::{BuildOptions, SERVICE_NAME_LABEL};
use dns::{DnsConfig, Server, Zone};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn zone() -> Zone {
    let namespaces = [Namespace {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    }];
    let services = [
        Service {
            metadata: meta("default", "web"),
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.20".into()),
                cluster_ips: Some(vec!["10.43.0.20".into()]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        },
        Service {
            metadata: meta("default", "many"),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                cluster_ips: Some(vec!["None".into()]),
                ..Default::default()
            }),
            status: None,
        },
        Service {
            metadata: meta("default", "ext"),
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("db.example.test".into()),
                ..Default::default()
            }),
            status: None,
        },
    ];
    let mut slice_meta = meta("default", "many-1");
    slice_meta.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.to_string(),
        "many".to_string(),
    )]));
    let slices = [EndpointSlice {
        metadata: slice_meta,
        address_type: "IPv4".into(),
        endpoints: Some(
            (1..=100u8)
                .map(|i| Endpoint {
                    addresses: vec![format!("10.42.1.{i}")],
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![EndpointPort {
            name: Some("web".into()),
            port: Some(80),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
    }];
    Zone::build(
        &BuildOptions {
            domain: "cluster.local".into(),
            fallback_ns_addr: Ipv4Addr::LOCALHOST.into(),
            synced: true,
            serial: 1,
        },
        namespaces.iter(),
        services.iter(),
        slices.iter(),
    )
}

/// A loopback port nothing listens on: asking it is refused at once (ICMP unreachable).
async fn dead_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.local_addr().unwrap()
}

async fn start(upstreams: Vec<SocketAddr>) -> (SocketAddr, CancellationToken) {
    let server = Server::bind(&DnsConfig {
        listen: Ipv4Addr::LOCALHOST.into(),
        port: 0,
        cluster_domain: "cluster.local".into(),
        upstreams,
        node_name: None,
    })
    .unwrap();
    server.cache().store(zone());
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    (addr, stop)
}

fn question(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

async fn ask_udp(server: SocketAddr, q: &Message) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(server).await.unwrap();
    s.send(&q.to_vec().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(stream: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn answers_from_the_cache_over_udp() {
    let (addr, stop) = start(vec![dead_port().await]).await;
    let q = question("Web.Default.svc.cluster.local.", RecordType::A);
    let a = ask_udp(addr, &q).await;
    assert_eq!(a.metadata.id, q.metadata.id);
    assert!(a.metadata.authoritative);
    assert!(a.metadata.recursion_desired);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.queries, q.queries, "the question echoed as asked");
    assert_eq!(addresses(&a), vec!["10.43.0.20"]);
    assert_eq!(
        a.answers[0].name.to_ascii(),
        "Web.Default.svc.cluster.local."
    );

    let a = ask_udp(
        addr,
        &question("nope.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
    stop.cancel();
}

#[tokio::test]
async fn several_questions_on_one_tcp_connection() {
    let (addr, stop) = start(vec![]).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        let a = ask_tcp(
            &mut stream,
            &question("web.default.svc.cluster.local.", RecordType::A),
        )
        .await;
        assert_eq!(addresses(&a), vec!["10.43.0.20"]);
    }
    // TCP carries what UDP cannot: all 100 endpoints.
    let a = ask_tcp(
        &mut stream,
        &question("many.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert!(!a.metadata.truncation);
    assert_eq!(addresses(&a).len(), 100);
    stop.cancel();
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp() {
    let (addr, stop) = start(vec![]).await;
    let a = ask_udp(
        addr,
        &question("many.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert!(a.metadata.truncation, "100 A records do not fit 512 bytes");
    assert!(a.to_vec().unwrap().len() <= 512);
    // With EDNS the client takes more, up to 1232 bytes.
    let mut q = question("many.default.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns);
    let a = ask_udp(addr, &q).await;
    assert!(a.metadata.truncation);
    let len = a.to_vec().unwrap().len();
    assert!(len > 512 && len <= 1232, "{len} bytes");
    assert!(a.edns.is_some());
    stop.cancel();
}

#[tokio::test]
async fn many_concurrent_questions_are_all_answered() {
    let (addr, stop) = start(vec![]).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(addr).await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for i in 0..200u16 {
        let mut q = question("web.default.svc.cluster.local.", RecordType::A);
        q.metadata.id = i;
        s.send(&q.to_vec().unwrap()).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    while ids.len() < 200 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
            .await
            .expect("every answer within 5 s")
            .unwrap();
        let a = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(addresses(&a), vec!["10.43.0.20"]);
        ids.insert(a.metadata.id);
    }
    stop.cancel();
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_fast_servfail() {
    for upstreams in [vec![dead_port().await], vec![]] {
        let (addr, stop) = start(upstreams.clone()).await;
        for (name, qtype) in [
            ("example.test.", RecordType::A),
            ("1.2.0.192.in-addr.arpa.", RecordType::PTR),
        ] {
            let started = Instant::now();
            let a = ask_udp(addr, &question(name, qtype)).await;
            let took = started.elapsed();
            assert_eq!(a.metadata.response_code, ResponseCode::ServFail, "{name}");
            assert!(took < Duration::from_millis(500), "{upstreams:?}: {took:?}");
        }
        // ExternalName outside the zone: the CNAME alone.
        let a = ask_udp(
            addr,
            &question("ext.default.svc.cluster.local.", RecordType::A),
        )
        .await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
        stop.cancel();
    }
}

/// A stand-in upstream resolver on loopback: answers up to 16 questions,
/// each with the address 192.0.2.7.
async fn fake_upstream() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        for _ in 0..16 {
            let Ok((n, peer)) = s.recv_from(&mut buf).await else {
                return;
            };
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            a.metadata.recursion_available = true;
            a.add_queries(q.queries.clone());
            a.add_answer(Record::from_rdata(
                q.queries[0].name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
            ));
            let _ = s.send_to(&a.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test]
async fn other_names_go_to_the_upstream() {
    // The first upstream refuses; the second answers.
    let (addr, stop) = start(vec![dead_port().await, fake_upstream().await]).await;
    let q = question("www.example.test.", RecordType::A);
    let a = ask_udp(addr, &q).await;
    assert_eq!(a.metadata.id, q.metadata.id, "the client's id comes back");
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.recursion_available);
    assert_eq!(addresses(&a), vec!["192.0.2.7"]);

    // ExternalName: the CNAME, then the upstream's answer for the target.
    let a = ask_udp(
        addr,
        &question("ext.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    let types: Vec<RecordType> = a.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, vec![RecordType::CNAME, RecordType::A]);
    assert_eq!(a.answers[1].name.to_ascii(), "db.example.test.");
    stop.cancel();
}

use super::*;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestSpec, CertificateSigningRequestStatus,
};
use x509_parser::extensions::{GeneralName, ParsedExtension};

fn request_pem(cn: &str, org: Option<&str>, sans: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    if let Some(o) = org {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, o);
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn csr(pem: &str, signer: &str, usages: &[&str], conds: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: Default::default(),
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
        status: Some(CertificateSigningRequestStatus {
            conditions: Some(
                conds
                    .iter()
                    .map(|t| CertificateSigningRequestCondition {
                        type_: t.to_string(),
                        status: "True".into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            certificate: None,
        }),
    }
}

const YEAR: Duration = DEFAULT_SIGNING_DURATION;

#[test]
fn decision_table() {
    let node = request_pem("system:node:n1", Some("system:nodes"), &[]);
    let serving = request_pem("system:node:n1", Some("system:nodes"), &["n1", "10.0.0.1"]);
    let user = request_pem("alice", Some("devs"), &[]);
    let client_usages = &["digital signature", "client auth"][..];
    let cases: Vec<(&str, CertificateSigningRequest, Decision)> = vec![
        (
            "approved client request",
            csr(
                &user,
                certs::KUBE_APISERVER_CLIENT_SIGNER,
                client_usages,
                &["Approved"],
            ),
            Decision::Sign(YEAR),
        ),
        (
            "pending",
            csr(
                &user,
                certs::KUBE_APISERVER_CLIENT_SIGNER,
                client_usages,
                &[],
            ),
            Decision::Nothing,
        ),
        (
            "denied",
            csr(
                &user,
                certs::KUBE_APISERVER_CLIENT_SIGNER,
                client_usages,
                &["Denied"],
            ),
            Decision::Nothing,
        ),
        (
            "already failed",
            csr(
                &user,
                certs::KUBE_APISERVER_CLIENT_SIGNER,
                client_usages,
                &["Approved", "Failed"],
            ),
            Decision::Nothing,
        ),
        (
            "someone else's signer",
            csr(&user, "example.com/signer", client_usages, &["Approved"]),
            Decision::Nothing,
        ),
        (
            "client cert asking for server auth",
            csr(
                &user,
                certs::KUBE_APISERVER_CLIENT_SIGNER,
                &["client auth", "server auth"],
                &["Approved"],
            ),
            Decision::Fail("invalid usage for client certificate: server auth".into()),
        ),
        (
            "kubelet client",
            csr(
                &node,
                certs::KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
                client_usages,
                &["Approved"],
            ),
            Decision::Sign(YEAR),
        ),
        (
            "kubelet client not from a node",
            csr(
                &user,
                certs::KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
                client_usages,
                &["Approved"],
            ),
            Decision::Fail("subject organization is not system:nodes".into()),
        ),
        (
            "kubelet serving",
            csr(
                &serving,
                certs::KUBELET_SERVING_SIGNER,
                &["digital signature", "server auth"],
                &["Approved"],
            ),
            Decision::Sign(YEAR),
        ),
        (
            "kubelet serving without SANs",
            csr(
                &node,
                certs::KUBELET_SERVING_SIGNER,
                &["digital signature", "server auth"],
                &["Approved"],
            ),
            Decision::Fail("DNS or IP subjectAltName is required".into()),
        ),
        (
            "kubelet serving for a user",
            csr(
                &user,
                certs::KUBELET_SERVING_SIGNER,
                &["digital signature", "server auth"],
                &["Approved"],
            ),
            Decision::Fail("subject organization is not system:nodes".into()),
        ),
    ];
    for (name, c, want) in cases {
        assert_eq!(decide(&c, YEAR), want, "{name}");
    }
    let mut issued = csr(
        &user,
        certs::KUBE_APISERVER_CLIENT_SIGNER,
        client_usages,
        &["Approved"],
    );
    issued.status.as_mut().expect("status").certificate = Some(ByteString(b"x".to_vec()));
    assert_eq!(decide(&issued, YEAR), Decision::Nothing);
}

#[test]
fn ttl_is_bounded() {
    let cases: &[(Option<i32>, u64)] = &[
        (None, 8760 * 3600),
        (Some(3600), 3600),
        (Some(600), 600),
        (Some(60), 600),
        (Some(-5), 600),
        (Some(i32::MAX), 8760 * 3600),
    ];
    for (asked, want) in cases {
        assert_eq!(ttl(*asked, YEAR), Duration::from_secs(*want), "{asked:?}");
    }
    assert_eq!(
        ttl(Some(7200), Duration::from_secs(3600)),
        Duration::from_secs(3600)
    );
}

#[test]
fn validity_window() {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
    let ca_end: Timestamp = "2124-01-01T00:00:00Z".parse().expect("ts");
    let h = |n: i64| SignedDuration::from_hours(n);
    let m = |n: i64| SignedDuration::from_mins(n);
    // Short: backdated start, end exactly now + ttl.
    assert_eq!(
        validity(now, Duration::from_secs(3600), ca_end),
        Ok((now - m(5), now + h(1)))
    );
    // Long: both ends backdated, so the lifetime is exactly ttl.
    assert_eq!(
        validity(now, YEAR, ca_end),
        Ok((now - m(5), now + h(8760) - m(5)))
    );
    // Capped at the CA's end.
    let soon = now + h(2);
    assert_eq!(validity(now, YEAR, soon), Ok((now - m(5), soon)));
    assert!(validity(now, YEAR, now - h(1)).is_err());
}

fn test_ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("ca");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn issued_certificate_carries_the_request_and_verifies() {
    let (ca_pem, ca_key) = test_ca();
    let ca = x509::Ca::from_pem(&ca_pem, &ca_key).expect("ca");
    let request = request_pem(
        "system:node:n1",
        Some("system:nodes"),
        &["n1.example", "10.1.2.3"],
    );
    let req = certs::parse_request(request.as_bytes()).expect("request");
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
    let (nb, na) = validity(now, Duration::from_secs(3600), ca.not_after()).expect("window");
    let usages: Vec<String> = ["digital signature", "server auth"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let der = ca.sign(&req, &usages, u64::MAX, nb, na).expect("signed");

    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parses");
    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let o: Vec<&str> = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    assert_eq!(cn, ["system:node:n1"]);
    assert_eq!(o, ["system:nodes"]);
    assert_eq!(cert.issuer().to_string(), "CN=test-ca");
    assert_eq!(cert.validity().not_before.timestamp(), nb.as_second());
    assert_eq!(cert.validity().not_after.timestamp(), na.as_second());
    assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
    assert!(cert.raw_serial()[0] & 0x80 == 0, "serial is positive");
    let mut seen = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical);
                assert!(ku.digital_signature() && !ku.key_encipherment());
                seen.push("ku");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.server_auth && !eku.client_auth);
                seen.push("eku");
            }
            ParsedExtension::BasicConstraints(bc) => {
                assert!(ext.critical && !bc.ca);
                seen.push("bc");
            }
            ParsedExtension::AuthorityKeyIdentifier(_) => seen.push("aki"),
            ParsedExtension::SubjectAlternativeName(san) => {
                assert_eq!(
                    san.general_names,
                    [
                        GeneralName::DNSName("n1.example"),
                        GeneralName::IPAddress(&[10, 1, 2, 3])
                    ]
                );
                seen.push("san");
            }
            other => panic!("unexpected extension {other:?}"),
        }
    }
    assert_eq!(seen, ["ku", "eku", "bc", "aki", "san"]);
    let (_, ca_cert) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("pem");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_cert.contents).expect("ca parses");
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA");
    assert!(pem(&der).starts_with("-----BEGIN CERTIFICATE-----\n"));
}

#[test]
fn failure_condition_is_upstreams() {
    let user = request_pem("alice", None, &[]);
    let c = csr(
        &user,
        certs::KUBE_APISERVER_CLIENT_SIGNER,
        &["server auth"],
        &["Approved"],
    );
    let now = Timestamp::UNIX_EPOCH;
    let f = failed(&c, "invalid usage for client certificate: server auth", now);
    let cond = &f
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .expect("conds")[1];
    assert_eq!(cond.type_, "Failed");
    assert_eq!(cond.reason.as_deref(), Some("SignerValidationFailure"));
    assert_eq!(cond.last_update_time, Some(Time(now)));
}

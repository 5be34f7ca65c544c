use super::*;
use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

/// A signed PKCS#10 request for `cn` in organizations `orgs` with DNS SANs `dns`.
pub(crate) fn request_pem(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    // rcgen keeps one value per attribute type; tests needing more use the first.
    if let Some(o) = orgs.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn csr(request: &str, signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some("req".into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    }
}

fn cond(t: &str) -> CertificateSigningRequestCondition {
    CertificateSigningRequestCondition {
        type_: t.into(),
        status: "True".into(),
        reason: Some("R".into()),
        last_update_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
        last_transition_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
        ..Default::default()
    }
}

fn with_conditions(mut c: CertificateSigningRequest, conds: &[&str]) -> CertificateSigningRequest {
    c.status = Some(CertificateSigningRequestStatus {
        conditions: Some(conds.iter().map(|t| cond(t)).collect()),
        certificate: None,
    });
    c
}

fn messages(errs: &FieldErrors) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

#[test]
fn parses_subject_sans_and_key() {
    let pem = request_pem(
        "system:node:n1",
        &["system:nodes"],
        &["n1.example", "10.0.0.1"],
    );
    let req = parse_request(pem.as_bytes()).expect("parses");
    assert_eq!(req.subject.common_name, "system:node:n1");
    assert_eq!(req.subject.organization, ["system:nodes"]);
    assert_eq!(req.dns_names, ["n1.example"]);
    assert_eq!(
        req.ip_addresses,
        ["10.0.0.1".parse::<IpAddr>().expect("ip")]
    );
    assert!(req.has_sans());
    assert!(!req.public_key_info.is_empty());
}

#[test]
fn refuses_what_is_not_a_signed_request() {
    let cases: &[(&str, &str)] = &[
        ("", "PEM block type must be CERTIFICATE REQUEST"),
        ("hello", "PEM block type must be CERTIFICATE REQUEST"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "PEM block type must be CERTIFICATE REQUEST",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_request(input.as_bytes()).unwrap_err(),
            *want,
            "{input}"
        );
    }
    let garbage = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
    assert!(parse_request(garbage.as_bytes()).is_err());
}

#[test]
fn a_tampered_signature_is_refused() {
    let pem = request_pem("alice", &[], &[]);
    let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .expect("pem")
        .1;
    let mut der = parsed.contents.clone();
    let last = der.len() - 1;
    der[last] ^= 0xff;
    let b64 = base64_encode(&der);
    let tampered =
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n");
    assert_eq!(
        parse_request(tampered.as_bytes()).unwrap_err(),
        "x509: signature verification failure"
    );
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn create_validation_table() {
    let good = request_pem("alice", &["devs"], &[]);
    let client = KUBE_APISERVER_CLIENT_SIGNER;
    type Case = (&'static str, CertificateSigningRequest, Vec<&'static str>);
    let mut expiring = csr(&good, client, &["client auth"]);
    expiring.spec.expiration_seconds = Some(599);
    let cases: Vec<Case> = vec![
        ("valid", csr(&good, client, &["digital signature", "client auth"]), vec![]),
        (
            "no usages",
            csr(&good, client, &[]),
            vec!["spec.usages: Required value: usages must be provided"],
        ),
        (
            "unknown usage",
            csr(&good, client, &["client auth", "flying"]),
            vec!["spec.usages[1]: Unsupported value: \"flying\": supported values: \"any\", \"cert sign\", \"client auth\", \"code signing\", \"content commitment\", \"crl sign\", \"data encipherment\", \"decipher only\", \"digital signature\", \"email protection\", \"encipher only\", \"ipsec end system\", \"ipsec tunnel\", \"ipsec user\", \"key agreement\", \"key encipherment\", \"microsoft sgc\", \"netscape sgc\", \"ocsp signing\", \"s/mime\", \"server auth\", \"signing\", \"timestamping\""],
        ),
        (
            "duplicate usage",
            csr(&good, client, &["client auth", "client auth"]),
            vec!["spec.usages[1]: Duplicate value: \"client auth\""],
        ),
        (
            "no signer",
            csr(&good, "", &["client auth"]),
            vec!["spec.signerName: Required value: signerName must be provided"],
        ),
        (
            "signer without a path",
            csr(&good, "example.com", &["client auth"]),
            vec!["spec.signerName: Invalid value: \"example.com\": must be a fully qualified domain and path of the form 'example.com/signer-name'"],
        ),
        (
            "signer domain of one label",
            csr(&good, "example/signer", &["client auth"]),
            vec!["spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots"],
        ),
        (
            "legacy signer",
            csr(&good, LEGACY_UNKNOWN_SIGNER, &["client auth"]),
            vec!["spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version"],
        ),
        (
            "short expiration",
            expiring,
            vec!["spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"],
        ),
        (
            "not a request",
            csr("hello", client, &["client auth"]),
            vec!["spec.request: Invalid value: \"aGVsbG8=\": PEM block type must be CERTIFICATE REQUEST"],
        ),
        (
            "approved and denied",
            with_conditions(csr(&good, client, &["client auth"]), &[APPROVED, DENIED]),
            vec!["status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"],
        ),
        (
            "duplicate condition",
            with_conditions(csr(&good, client, &["client auth"]), &[FAILED, FAILED]),
            vec!["status.conditions[1].type: Duplicate value: \"Failed\""],
        ),
    ];
    for (name, c, want) in cases {
        assert_eq!(messages(&validate_csr(&c)), want, "{name}");
    }
}

#[test]
fn approved_must_be_true() {
    let good = request_pem("alice", &[], &[]);
    let mut c = with_conditions(
        csr(&good, KUBE_APISERVER_CLIENT_SIGNER, &["client auth"]),
        &[APPROVED],
    );
    if let Some(s) = c.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        s[0].status = "False".into();
    }
    assert_eq!(
        messages(&validate_csr(&c)),
        ["status.conditions[0].status: Unsupported value: \"False\": supported values: \"True\""]
    );
}

#[test]
fn update_paths_guard_conditions_and_certificate() {
    let good = request_pem("alice", &[], &[]);
    let base = with_conditions(
        csr(&good, KUBE_APISERVER_CLIENT_SIGNER, &["client auth"]),
        &[],
    );
    let approved = with_conditions(base.clone(), &[APPROVED]);
    // The main resource and status may not add Approved; approval may.
    assert_eq!(
        messages(&validate_csr_status_update(&approved, &base)),
        ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
    );
    assert!(validate_csr_approval_update(&approved, &base).is_empty());
    // Nobody removes one.
    assert_eq!(
        messages(&validate_csr_approval_update(&base, &approved)),
        ["status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""]
    );
    // Approval may not set a certificate; status may, once.
    let mut issued = approved.clone();
    issued.status.as_mut().expect("status").certificate = Some(ByteString(b"junk".to_vec()));
    let msgs = messages(&validate_csr_approval_update(&issued, &approved));
    assert!(
        msgs.contains(
            &"status.certificate: Forbidden: updates may not set certificate content".to_string()
        ),
        "{msgs:?}"
    );
    let msgs = messages(&validate_csr_status_update(&issued, &approved));
    assert_eq!(
        msgs,
        ["status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"]
    );
}

#[test]
fn status_update_keeps_spec_and_approval_and_stamps_conditions() {
    let good = request_pem("alice", &[], &[]);
    let old = with_conditions(
        csr(&good, KUBE_APISERVER_CLIENT_SIGNER, &["client auth"]),
        &[APPROVED],
    );
    let mut new = old.clone();
    new.spec.signer_name = "example.com/other".into();
    let conds = new
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .expect("conds");
    conds[0].message = Some("changed".into());
    conds.push(CertificateSigningRequestCondition {
        type_: FAILED.into(),
        status: "True".into(),
        ..Default::default()
    });
    let now = jiff::Timestamp::from_second(1_000_000).expect("ts");
    prepare_status_update_at(&mut new, &old, now);
    assert_eq!(new.spec, old.spec);
    let conds = conditions(&new);
    assert_eq!(conds[0].message, None, "Approved kept as stored");
    assert_eq!(conds[1].last_update_time, Some(Time(now)));
    assert_eq!(conds[1].last_transition_time, Some(Time(now)));
    assert_eq!(
        messages(&validate_csr_status_update(&new, &old)),
        Vec::<String>::new()
    );
}

#[test]
fn approval_takes_only_conditions() {
    let good = request_pem("alice", &[], &[]);
    let old = with_conditions(
        csr(&good, KUBE_APISERVER_CLIENT_SIGNER, &["client auth"]),
        &[],
    );
    let mut new = with_conditions(old.clone(), &[APPROVED]);
    new.spec.usages = Some(vec!["server auth".into()]);
    new.status.as_mut().expect("status").certificate = Some(ByteString(b"x".to_vec()));
    let now = jiff::Timestamp::from_second(1_000_000).expect("ts");
    assert!(approval_update_at(&mut new, &old, now).is_empty());
    assert_eq!(new.spec, old.spec);
    assert!(issued_certificate(&new).is_empty());
    assert_eq!(condition_summary(&new), "Approved");
}

#[test]
fn condition_column() {
    let good = request_pem("alice", &[], &[]);
    let c = csr(&good, KUBE_APISERVER_CLIENT_SIGNER, &["client auth"]);
    assert_eq!(condition_summary(&c), "Pending");
    assert_eq!(
        condition_summary(&with_conditions(c.clone(), &[DENIED])),
        "Denied"
    );
    let mut done = with_conditions(c, &[APPROVED, FAILED]);
    assert_eq!(condition_summary(&done), "Approved,Failed");
    done.status.as_mut().expect("status").certificate = Some(ByteString(b"x".to_vec()));
    assert_eq!(condition_summary(&done), "Approved,Failed,Issued");
}

#[test]
fn requestor_replaces_what_the_client_sent() {
    let good = request_pem("alice", &[], &[]);
    let mut c = csr(&good, KUBE_APISERVER_CLIENT_SIGNER, &["client auth"]);
    c.spec.username = Some("mallory".into());
    c.spec.extra = Some(Default::default());
    set_requestor(&mut c, "alice", "", &["system:authenticated".into()]);
    assert_eq!(c.spec.username.as_deref(), Some("alice"));
    assert_eq!(c.spec.uid, None);
    assert_eq!(c.spec.groups, Some(vec!["system:authenticated".into()]));
    assert_eq!(c.spec.extra, None);
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn kubelet_client_and_serving_requests() {
    let node = parse_request(request_pem("system:node:n1", &["system:nodes"], &[]).as_bytes())
        .expect("parses");
    let client = strings(&["digital signature", "client auth"]);
    let client_rsa = strings(&["key encipherment", "digital signature", "client auth"]);
    assert_eq!(validate_kubelet_client_csr(&node, &client), Ok(()));
    assert_eq!(validate_kubelet_client_csr(&node, &client_rsa), Ok(()));
    assert_eq!(
        validate_kubelet_client_csr(&node, &strings(&["client auth"])),
        Err("usages did not match [client auth digital signature key encipherment]".into())
    );
    let cases: &[(&str, &[&str], &[&str], &str)] = &[
        (
            "system:node:n1",
            &["devs"],
            &[],
            "subject organization is not system:nodes",
        ),
        (
            "system:node:n1",
            &[],
            &[],
            "subject organization is not system:nodes",
        ),
        (
            "system:node:n1",
            &["system:nodes"],
            &["n1"],
            "DNS subjectAltNames are not allowed",
        ),
        (
            "system:node:n1",
            &["system:nodes"],
            &["10.0.0.1"],
            "IP subjectAltNames are not allowed",
        ),
        (
            "alice",
            &["system:nodes"],
            &[],
            "subject common name does not begin with system:node:",
        ),
    ];
    for (cn, orgs, sans, want) in cases {
        let req = parse_request(request_pem(cn, orgs, sans).as_bytes()).expect("parses");
        assert_eq!(
            validate_kubelet_client_csr(&req, &client),
            Err(want.to_string()),
            "{cn} {orgs:?} {sans:?}"
        );
    }

    let serving = strings(&["digital signature", "server auth"]);
    let with_san = parse_request(
        request_pem("system:node:n1", &["system:nodes"], &["n1", "10.0.0.1"]).as_bytes(),
    )
    .expect("parses");
    assert_eq!(validate_kubelet_serving_csr(&with_san, &serving), Ok(()));
    assert_eq!(
        validate_kubelet_serving_csr(&node, &serving),
        Err("DNS or IP subjectAltName is required".into())
    );
    assert_eq!(
        validate_kubelet_serving_csr(&with_san, &client),
        Err("usages did not match [digital signature key encipherment server auth]".into())
    );
}

#[test]
fn apiserver_client_usages() {
    assert_eq!(
        validate_apiserver_client_usages(&strings(&["client auth"])),
        Ok(())
    );
    assert_eq!(
        validate_apiserver_client_usages(&strings(&["client auth", "server auth"])),
        Err("invalid usage for client certificate: server auth".into())
    );
    assert_eq!(
        validate_apiserver_client_usages(&strings(&["digital signature"])),
        Err("missing required usage for client certificate: client auth".into())
    );
}

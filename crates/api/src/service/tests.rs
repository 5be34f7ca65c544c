use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

fn svc(v: Value) -> Service {
    let mut base =
        json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "5"}});
    if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
        for (k, val) in o {
            b.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(base).unwrap_or_else(|e| panic!("{e}"))
}

fn defaulted(v: Value) -> Service {
    let mut s = svc(v);
    default_service(&mut s);
    prepare_service_for_create(&mut s);
    s
}

fn messages(errs: &FieldErrors) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

fn v4() -> ClusterFamilies {
    ClusterFamilies(vec![IPV4])
}

#[test]
fn defaults_are_upstreams() {
    let s = defaulted(json!({"spec": {"ports": [{"port": 80}]}}));
    let got = serde_json::to_value(&s.spec).unwrap_or_default();
    assert_eq!(
        got,
        json!({"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
               "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]})
    );
    let np = defaulted(
        json!({"spec": {"type": "NodePort", "sessionAffinity": "ClientIP",
        "ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    let spec = np.spec.clone().unwrap_or_default();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(
        spec.session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
        Some(10800)
    );
    assert_eq!(
        spec.ports.unwrap_or_default()[0].target_port,
        Some(IntOrString::String("http".into()))
    );
    let en = defaulted(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let spec = en.spec.unwrap_or_default();
    assert_eq!(spec.internal_traffic_policy, None);
    assert_eq!(spec.external_traffic_policy, None);
    let lb = defaulted(json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}));
    assert_eq!(
        lb.spec
            .unwrap_or_default()
            .allocate_load_balancer_node_ports,
        Some(true)
    );
}

#[test]
fn ip_families_default_from_the_cluster() {
    let mut s = defaulted(json!({"spec": {"ports": [{"port": 80}]}}));
    assert!(init_ip_family_fields(&mut s, None, &v4()).is_empty());
    let spec = s.spec.clone().unwrap_or_default();
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));

    // Headless without selector: RequireDualStack with both families, as upstream.
    let mut h = defaulted(json!({"spec": {"clusterIP": "None"}}));
    assert!(init_ip_family_fields(&mut h, None, &v4()).is_empty());
    let spec = h.spec.clone().unwrap_or_default();
    assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
    assert_eq!(
        spec.ip_families,
        Some(vec!["IPv4".to_string(), "IPv6".to_string()])
    );

    let mut dual =
        defaulted(json!({"spec": {"ports": [{"port": 80}], "ipFamilyPolicy": "RequireDualStack"}}));
    assert_eq!(
        messages(&init_ip_family_fields(&mut dual, None, &v4())),
        vec!["spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"]
    );
    let mut v6 = defaulted(json!({"spec": {"ports": [{"port": 80}], "clusterIP": "fd00::1"}}));
    assert_eq!(
        messages(&init_ip_family_fields(&mut v6, None, &v4())),
        vec!["spec.clusterIPs[0]: Invalid value: [\"fd00::1\"]: IPv6 is not configured on this cluster"]
    );
    let mut bad = defaulted(json!({"spec": {"ports": [{"port": 80}], "clusterIP": "10.43.0.300"}}));
    assert_eq!(
        messages(&init_ip_family_fields(&mut bad, None, &v4())),
        vec!["spec.clusterIPs[0]: Invalid value: \"10.43.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    );
}

#[test]
fn validation_messages_are_upstreams() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"spec": {}}), vec!["spec.ports: Required value"]),
        (json!({"spec": {"clusterIP": "None"}}), vec![]),
        (
            json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
            vec!["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]}}),
            vec!["spec.ports[1].name: Duplicate value: \"a\""],
        ),
        (
            json!({"spec": {"ports": [{"port": 70000}]}}),
            vec![
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "targetPort": "Bad_Name"}]}}),
            vec!["spec.ports[0].targetPort: Invalid value: \"Bad_Name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            json!({"spec": {"type": "ExternalName"}}),
            vec!["spec.externalName: Required value"],
        ),
        (
            json!({"spec": {"type": "ExternalName", "externalName": "Not_A_Name"}}),
            vec!["spec.externalName: Invalid value: \"Not_A_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"],
        ),
        (
            json!({"spec": {"type": "ExternalName", "externalName": "example.com.", "clusterIP": "10.43.0.5"}}),
            vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services"],
        ),
        (
            json!({"spec": {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}}),
            vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"],
        ),
        (
            json!({"spec": {"type": "Foo", "ports": [{"port": 80}]}}),
            vec!["spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "protocol": "ICMP"}]}}),
            vec!["spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}}),
            vec!["spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"],
        ),
    ];
    for (input, want) in cases {
        let s = defaulted(input.clone());
        assert_eq!(messages(&validate_service(&s)), want, "{input}");
    }
    let mut bad_name = defaulted(json!({"spec": {"clusterIP": "None"}}));
    bad_name.metadata = ObjectMeta {
        name: Some("1web".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    assert_eq!(
        messages(&validate_service(&bad_name)),
        vec!["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    );
}

#[test]
fn cluster_ip_is_immutable_but_for_external_name() {
    let old = defaulted(
        json!({"spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}],
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}}),
    );
    let mut changed =
        defaulted(json!({"spec": {"clusterIP": "10.43.0.6", "ports": [{"port": 80}]}}));
    prepare_service_for_update(&mut changed, &old);
    assert_eq!(
        messages(&validate_service_update(&changed, &old)),
        vec!["spec.clusterIPs[0]: Invalid value: [\"10.43.0.6\"]: may not change once set"]
    );
    // A resubmitted manifest without the allocated address keeps it.
    let mut resubmit = defaulted(json!({"spec": {"ports": [{"port": 80}]}}));
    prepare_service_for_update(&mut resubmit, &old);
    assert!(validate_service_update(&resubmit, &old).is_empty());
    assert_eq!(cluster_ips(&resubmit), ["10.43.0.5".to_string()]);
    assert_eq!(ip_families(&resubmit), ["IPv4".to_string()]);
    // To ExternalName: the address, families and policy are dropped.
    let mut to_en = old.clone();
    if let Some(s) = to_en.spec.as_mut() {
        s.type_ = Some("ExternalName".into());
        s.external_name = Some("example.com".into());
        s.internal_traffic_policy = None;
    }
    prepare_service_for_update(&mut to_en, &old);
    assert!(
        validate_service_update(&to_en, &old).is_empty(),
        "{:?}",
        validate_service_update(&to_en, &old)
    );
    assert!(held_cluster_ips(&to_en).is_empty());
    assert_eq!(
        to_en.spec.as_ref().and_then(|s| s.ip_family_policy.clone()),
        None
    );
}

#[test]
fn node_ports_are_dropped_when_leaving_node_port() {
    let old = defaulted(
        json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.5",
        "ports": [{"port": 80, "nodePort": 30080}]}}),
    );
    let mut new = old.clone();
    if let Some(s) = new.spec.as_mut() {
        s.type_ = Some("ClusterIP".into());
    }
    prepare_service_for_update(&mut new, &old);
    assert_eq!(ports(&new)[0].node_port, None);
    assert_eq!(
        new.spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.clone()),
        None
    );
    assert_eq!(
        messages(&validate_service_update(&new, &old)),
        Vec::<String>::new()
    );
}

/// An in-memory [`PortOperation`] over a set of taken ports.
struct Op {
    taken: BTreeSet<i32>,
    got: Vec<i32>,
    released: Vec<i32>,
    next: i32,
}

impl PortOperation for Op {
    fn allocate(&mut self, port: i32) -> Result<(), PortError> {
        if !(30000..=32767).contains(&port) {
            return Err(PortError::NotInRange("30000-32767".into()));
        }
        if !self.taken.insert(port) {
            return Err(PortError::Allocated);
        }
        self.got.push(port);
        Ok(())
    }
    fn allocate_next(&mut self) -> Result<i32, PortError> {
        while self.taken.contains(&self.next) {
            self.next += 1;
        }
        let p = self.next;
        self.taken.insert(p);
        self.got.push(p);
        Ok(p)
    }
    fn release_deferred(&mut self, port: i32) {
        self.released.push(port);
    }
}

fn op(taken: &[i32]) -> Op {
    Op {
        taken: taken.iter().copied().collect(),
        got: Vec::new(),
        released: Vec::new(),
        next: 30000,
    }
}

#[test]
fn node_ports_are_allocated_as_upstream() {
    let mut s = defaulted(json!({"spec": {"type": "NodePort", "ports": [
        {"port": 80, "name": "http"}, {"port": 80, "name": "udp", "protocol": "UDP"},
        {"port": 443, "name": "https", "nodePort": 30443}]}}));
    let mut o = op(&[30000]);
    assert_eq!(init_node_ports(&mut s, &mut o), Ok(()));
    let got: Vec<Option<i32>> = ports(&s).iter().map(|p| p.node_port).collect();
    // Ports sharing a number share a node port.
    assert_eq!(got, vec![Some(30001), Some(30001), Some(30443)]);

    let mut taken = defaulted(
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}),
    );
    assert_eq!(
        init_node_ports(&mut taken, &mut op(&[30080])),
        Err(AllocError::Invalid(vec![FieldError::invalid(
            "spec.ports[0].nodePort",
            30080,
            "provided port is already allocated"
        )]))
    );
    let mut out =
        defaulted(json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}}));
    let err = init_node_ports(&mut out, &mut op(&[]));
    let msg = match err {
        Err(AllocError::Invalid(e)) => messages(&e),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        msg,
        vec!["spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"]
    );
}

#[test]
fn node_ports_follow_updates() {
    let old = defaulted(
        json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.5",
        "ports": [{"port": 80, "name": "a", "nodePort": 30080}, {"port": 81, "name": "b", "nodePort": 30081}]}}),
    );
    // Port b removed, c added: b's node port released, c gets a new one.
    let mut new = defaulted(
        json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.5",
        "ports": [{"port": 80, "name": "a"}, {"port": 82, "name": "c"}]}}),
    );
    prepare_service_for_update(&mut new, &old);
    let mut o = op(&[30080, 30081]);
    assert_eq!(update_node_ports(&mut new, &old, &mut o), Ok(()));
    let got: Vec<Option<i32>> = ports(&new).iter().map(|p| p.node_port).collect();
    assert_eq!(got, vec![Some(30080), Some(30000)]);
    assert_eq!(o.released, vec![30081]);
    // To ClusterIP: every node port released.
    let mut cip = old.clone();
    if let Some(s) = cip.spec.as_mut() {
        s.type_ = Some("ClusterIP".into());
    }
    prepare_service_for_update(&mut cip, &old);
    let mut o = op(&[30080, 30081]);
    assert_eq!(update_node_ports(&mut cip, &old, &mut o), Ok(()));
    assert_eq!(o.released, vec![30080, 30081]);
}

//! The Service environment variables every container gets, as the kubelet builds them
//! (`getServiceEnvVarMap` and `pkg/kubelet/envvars`): the `kubernetes` Service of `default`
//! always, and with `enableServiceLinks` (the default) every Service of the pod's namespace
//! that has a ClusterIP. Each gives `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (first port),
//! `<NAME>_SERVICE_PORT_<PORTNAME>` for named ports, and Docker's link variables
//! (`<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>` with `_PROTO`, `_PORT`, `_ADDR`).
//!
//! Pure: the Services come from the agent's watch-fed cache (`service_cache`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Service;

/// The Services whose variables reach every pod whatever `enableServiceLinks` says
/// (upstream's `masterServices`).
const MASTER_SERVICES: [&str; 1] = ["kubernetes"];

/// A Service's name as a variable prefix: upper case, dashes to underscores.
fn var_name(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// Whether the Service has a ClusterIP (not headless, not ExternalName).
fn has_cluster_ip(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// `host:port`, bracketing an IPv6 host.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The variables of one Service, in upstream's order.
pub fn from_service(svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default();
    // Validation gives every Service with a ClusterIP a port; guard anyway.
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = var_name(svc.metadata.name.as_deref().unwrap_or_default());
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.clone()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", var_name(name)),
                p.port.to_string(),
            ));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let proto = p
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = proto.to_ascii_lowercase();
        let url = format!("{lower}://{}", join_host_port(&ip, p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.clone()));
    }
    out
}

/// The variables a pod in `namespace` gets from `services` (every Service the agent knows).
/// A `kubernetes` Service of the pod's own namespace wins over `default`'s, as upstream.
/// Sorted by name: upstream's order is a Go map's, i.e. none.
///
/// `fallback` is the API server's advertise address, used for the `kubernetes` variables
/// only when no `kubernetes` Service is known (an API server without Services).
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
    fallback: Option<SocketAddr>,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    let mut master_known = false;
    for svc in services {
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let master = ns == "default" && MASTER_SERVICES.contains(&name);
        master_known |= master;
        if !has_cluster_ip(svc) {
            continue;
        }
        if ns == namespace && enable_service_links {
            chosen.insert(name.to_string(), svc);
        } else if master {
            chosen.entry(name.to_string()).or_insert(svc);
        }
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    if !master_known {
        if let Some(api) = fallback {
            vars.extend(fallback_kubernetes(api));
        }
    }
    for svc in chosen.values() {
        vars.extend(from_service(svc));
    }
    vars.into_iter().collect()
}

/// The `kubernetes` variables for an API server that serves no Services: its advertise
/// address and port, port name `https`.
fn fallback_kubernetes(api: SocketAddr) -> Vec<(String, String)> {
    let mut svc = Service::default();
    svc.metadata.name = Some("kubernetes".into());
    svc.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
        cluster_ip: Some(api.ip().to_string()),
        ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
            name: Some("https".into()),
            port: i32::from(api.port()),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    from_service(&svc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some(ns.into());
        s.spec = Some(ServiceSpec {
            cluster_ip: (!ip.is_empty()).then(|| ip.to_string()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: n.map(str::to_string),
                        port: *p,
                        protocol: proto.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        s
    }

    fn kubernetes() -> Service {
        svc(
            "default",
            "kubernetes",
            "10.43.0.1",
            &[(Some("https"), 443, Some("TCP"))],
        )
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, x)| (k.to_string(), x.to_string()))
            .collect()
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn one_service_gives_upstreams_variables() {
        let s = svc(
            "shop",
            "my-db",
            "10.43.5.6",
            &[
                (Some("sql"), 5432, None),
                (Some("metrics-port"), 9187, Some("UDP")),
            ],
        );
        assert_eq!(
            from_service(&s),
            pairs(&[
                ("MY_DB_SERVICE_HOST", "10.43.5.6"),
                ("MY_DB_SERVICE_PORT", "5432"),
                ("MY_DB_SERVICE_PORT_SQL", "5432"),
                ("MY_DB_SERVICE_PORT_METRICS_PORT", "9187"),
                ("MY_DB_PORT", "tcp://10.43.5.6:5432"),
                ("MY_DB_PORT_5432_TCP", "tcp://10.43.5.6:5432"),
                ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
                ("MY_DB_PORT_5432_TCP_PORT", "5432"),
                ("MY_DB_PORT_5432_TCP_ADDR", "10.43.5.6"),
                ("MY_DB_PORT_9187_UDP", "udp://10.43.5.6:9187"),
                ("MY_DB_PORT_9187_UDP_PROTO", "udp"),
                ("MY_DB_PORT_9187_UDP_PORT", "9187"),
                ("MY_DB_PORT_9187_UDP_ADDR", "10.43.5.6"),
            ])
        );
        let v6 = svc("shop", "v6", "fd00::5", &[(None, 80, None)]);
        assert_eq!(
            from_service(&v6)[2],
            ("V6_PORT".to_string(), "tcp://[fd00::5]:80".to_string())
        );
    }

    #[test]
    fn which_services_a_pod_sees() {
        let all = vec![
            kubernetes(),
            svc("shop", "web", "10.43.0.20", &[(None, 80, None)]),
            svc("shop", "headless", "None", &[(None, 80, None)]),
            svc("shop", "external", "", &[]),
            svc("other", "api", "10.43.0.30", &[(None, 8080, None)]),
        ];
        let cases: Vec<(&str, &str, bool, Vec<&str>)> = vec![
            (
                "links on: kubernetes and the namespace's ClusterIP Services",
                "shop",
                true,
                vec!["KUBERNETES_", "WEB_"],
            ),
            (
                "links off: kubernetes only",
                "shop",
                false,
                vec!["KUBERNETES_"],
            ),
            (
                "another namespace",
                "other",
                true,
                vec!["API_", "KUBERNETES_"],
            ),
            ("default itself", "default", true, vec!["KUBERNETES_"]),
        ];
        for (name, ns, links, prefixes) in cases {
            let env = service_env(&all, ns, links, None);
            let mut seen: Vec<&str> = prefixes
                .iter()
                .copied()
                .filter(|p| env.iter().any(|(k, _)| k.starts_with(p)))
                .collect();
            seen.dedup();
            assert_eq!(seen, prefixes, "{name}");
            assert!(
                env.iter()
                    .all(|(k, _)| prefixes.iter().any(|p| k.starts_with(p))),
                "{name}: {:?}",
                names(&env)
            );
            let mut sorted = names(&env);
            sorted.sort();
            assert_eq!(names(&env), sorted, "{name}: sorted");
        }
        let env = service_env(&all, "shop", false, None);
        assert_eq!(
            env,
            pairs(&[
                ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
                ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
                ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
                ("KUBERNETES_PORT_443_TCP_PORT", "443"),
                ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
                ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ])
        );
    }

    #[test]
    fn a_namespaces_own_kubernetes_service_wins() {
        let own = svc("shop", "kubernetes", "10.43.9.9", &[(None, 8443, None)]);
        for order in [
            vec![kubernetes(), own.clone()],
            vec![own.clone(), kubernetes()],
        ] {
            let env: BTreeMap<_, _> = service_env(&order, "shop", true, None)
                .into_iter()
                .collect();
            assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.9.9");
            assert!(!env.contains_key("KUBERNETES_SERVICE_PORT_HTTPS"));
        }
        // Without links, default's.
        let env: BTreeMap<_, _> = service_env(&[own, kubernetes()], "shop", false, None)
            .into_iter()
            .collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
    }

    #[test]
    fn the_advertise_address_stands_in_only_without_a_kubernetes_service() {
        let api: SocketAddr = "192.0.2.7:6443".parse().unwrap();
        let env: BTreeMap<_, _> = service_env(&[], "shop", true, Some(api))
            .into_iter()
            .collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "192.0.2.7");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "6443");
        assert_eq!(env["KUBERNETES_PORT_6443_TCP"], "tcp://192.0.2.7:6443");
        let env: BTreeMap<_, _> = service_env(&[kubernetes()], "shop", true, Some(api))
            .into_iter()
            .collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert!(!env.contains_key("KUBERNETES_PORT_6443_TCP"));
    }
}

//! core/v1 Service (upstream's `pkg/registry/core/service`): SetDefaults_Service, the
//! strategy (status reset on create and kept on update, `dropTypeDependentFields`, the
//! object-only half of the service storage's update hooks), `ValidateService`, the
//! `status` subresource, the `spec.clusterIP` / `spec.type` field selectors, DELETE
//! answered with the object (`ReturnDeletedObject`), and upstream's table. ClusterIPs and
//! node ports are allocated by the descriptor's storage hooks (`crate::services`).

use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::filter::Fields;
use crate::handlers::delete::{self, DeleteStrategy};
use crate::registry::{Resource, STANDARD_VERBS, STATUS};
use crate::strategy::TypedStrategy;
use crate::table::{self, col, Column, Printer, AGE, NAME};

pub static STRATEGY: TypedStrategy<Service> = TypedStrategy {
    default: api::service::default_service,
    on_create: api::service::prepare_service_for_create,
    prepare_for_update: api::service::prepare_service_for_update,
    copy_all_but_status: api::service::service_status_only,
    validate_status_update: api::service::validate_service_status_update,
    ..TypedStrategy::new(
        api::service::validate_service,
        api::service::validate_service_update,
    )
};

/// Upstream's `serviceColumnDefinitions`.
const COLUMNS: &[Column] = &[
    NAME,
    col("Type", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types", 0),
    col("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
    col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.", 0),
    col("Port(s)", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
    AGE,
    col("Selector", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/", 1),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Result<Vec<Value>, ApiError> {
    let svc: Service = table::typed(obj)?;
    let spec = svc.spec.clone().unwrap_or_default();
    let internal = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned())
        .unwrap_or_else(|| "<none>".into());
    let ports = port_string(&svc);
    Ok(vec![
        table::name(obj),
        json!(spec.type_.clone().unwrap_or_default()),
        json!(internal),
        json!(external_ip(&svc)),
        json!(if ports.is_empty() {
            "<none>".into()
        } else {
            ports
        }),
        json!(table::age(obj, now)),
        super::format_labels(obj.pointer("/spec/selector")),
    ])
}

/// `makePortString`: `80/TCP`, or `80:30080/TCP` with a node port.
fn port_string(svc: &Service) -> String {
    api::service::ports(svc)
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port.filter(|n| *n > 0) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `getServiceExternalIP`: external IPs for ClusterIP and NodePort Services, the
/// load balancer's addresses (or `<pending>`) for LoadBalancer ones, the name for
/// ExternalName ones.
fn external_ip(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external = spec.external_ips.clone().unwrap_or_default();
    match spec.type_.as_deref().unwrap_or("") {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| {
                    i.ip.filter(|s| !s.is_empty())
                        .or(i.hostname.filter(|s| !s.is_empty()))
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".into(),
    }
}

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[STATUS],
    storage: "services/specs",
    verbs: STANDARD_VERBS,
    strategy: &STRATEGY,
    schema: openapi::def::<Service>,
    list_schema: super::list(
        "ServiceList",
        "ServiceList holds a list of services.",
        "List of services",
        super::LIST_METADATA,
    ),
    printer: Printer {
        columns: COLUMNS,
        cells,
    },
    fields: Fields {
        names: api::selector::SERVICE_FIELDS,
        get: api::selector::service_fields,
        aliases: &[],
        own_conversion: true,
    },
    // Upstream's service storage sets ReturnDeletedObject.
    delete: DeleteStrategy {
        returns_object: true,
        ..delete::PLAIN
    },
    hooks: Some(&crate::services::HOOKS),
    admit: None,
    conversion: None,
    scale: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_upstreams() {
        let now = jiff::Timestamp::now();
        let np = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"], "selector": {"app": "web"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let got = cells(&np, now).unwrap_or_default();
        assert_eq!(
            got[1..5],
            [
                json!("NodePort"),
                json!("10.43.0.7"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(got[6], json!("app=web"));
        let en = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        let got = cells(&en, now).unwrap_or_default();
        assert_eq!(
            got[1..5],
            [
                json!("ExternalName"),
                json!("<none>"),
                json!("example.com"),
                json!("<none>")
            ]
        );
        let lb = json!({"metadata": {"name": "x"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.9"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}});
        assert_eq!(cells(&lb, now).unwrap_or_default()[3], json!("<pending>"));
    }
}

//! Builders for test pods and nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::NodeInfo;

pub fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

pub fn container(requests: &[(&str, &str)]) -> Container {
    Container {
        name: "c".into(),
        resources: (!requests.is_empty()).then(|| ResourceRequirements {
            requests: Some(list(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn sidecar(requests: &[(&str, &str)]) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..container(requests)
    }
}

pub fn pod(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod_req(requests: &[(&str, &str)]) -> Pod {
    pod(vec![container(requests)])
}

pub fn with_spec(mut p: Pod, f: impl FnOnce(&mut PodSpec)) -> Pod {
    if let Some(spec) = p.spec.as_mut() {
        f(spec);
    }
    p
}

pub fn node(name: &str, allocatable: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(list(allocatable)),
            ..Default::default()
        }),
    }
}

pub fn big_node(name: &str) -> Node {
    node(name, &[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")])
}

pub fn info(n: Node) -> NodeInfo {
    NodeInfo::new(n, &[])
}

pub fn labelled(mut n: Node, labels: &[(&str, &str)]) -> Node {
    n.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    n
}

pub fn tainted(mut n: Node, taints: &[(&str, &str, &str)]) -> Node {
    let spec = n.spec.get_or_insert_with(NodeSpec::default);
    spec.taints = Some(
        taints
            .iter()
            .map(|(k, v, e)| Taint {
                key: k.to_string(),
                value: (!v.is_empty()).then(|| v.to_string()),
                effect: e.to_string(),
                ..Default::default()
            })
            .collect(),
    );
    n
}

/// `(key, operator, value, effect)`, empty strings meaning unset.
pub fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: opt(key),
        operator: opt(op),
        value: opt(value),
        effect: opt(effect),
        ..Default::default()
    }
}

pub fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

pub fn required_affinity(terms: Vec<NodeSelectorTerm>) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

//! Upstream's `pkg/controller/daemon/util` and the node predicates of
//! `NodeShouldRunDaemonPod`: which nodes a daemon pod belongs on, the tolerations every
//! daemon pod gets, the node affinity that pins a pod to its node, and whether a pod is of
//! the current template. All pure.

use std::collections::BTreeMap;

use api::scheduling::{find_untolerated_taint, required_node_affinity_matches, NODE_NAME_FIELD};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};

use crate::deployment::util::scaled_value;

/// The pod label naming the template revision a pod was made from
/// (`apps.DefaultDaemonSetUniqueLabelKey`).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The pod label with the DaemonSet's template generation (`pod-template-generation`).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation the API keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";

/// The tolerations upstream's `AddOrUpdateDaemonPodTolerations` gives every daemon pod: it
/// stays through the node lifecycle's NoExecute taints and is scheduled despite pressure,
/// unschedulable nodes and (host-network pods) a missing network.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Toleration::default()
    };
    let mut tolerations = vec![
        t("node.kubernetes.io/not-ready", NO_EXECUTE),
        t("node.kubernetes.io/unreachable", NO_EXECUTE),
        t("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
        t("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
        t("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
        t("node.kubernetes.io/unschedulable", NO_SCHEDULE),
    ];
    if host_network {
        tolerations.push(t("node.kubernetes.io/network-unavailable", NO_SCHEDULE));
    }
    tolerations
}

/// Upstream's `AddOrUpdateTolerationInPodSpec` for each daemon toleration: one with the
/// same key, operator, value and effect is replaced, otherwise it is appended.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network.unwrap_or(false);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for toleration in daemon_tolerations(host_network) {
        let same = |t: &Toleration| {
            t.key == toleration.key
                && t.operator.as_deref().unwrap_or("Equal")
                    == toleration.operator.as_deref().unwrap_or("Equal")
                && t.value.as_deref().unwrap_or("") == toleration.value.as_deref().unwrap_or("")
                && t.effect == toleration.effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
}

/// Upstream's `NodeShouldRunDaemonPod`: `(shouldRun, shouldContinueRunning)`. The daemon
/// pod (the template with the daemon tolerations) must fit the node's name and affinity;
/// a NoSchedule or NoExecute taint it does not tolerate keeps a new pod off, and only an
/// untolerated NoExecute one evicts a pod already there.
pub fn node_should_run_daemon_pod(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    if !required_node_affinity_matches(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if find_untolerated_taint(taints, tolerations, |e| e == NO_SCHEDULE || e == NO_EXECUTE)
        .is_some()
    {
        let evicted = find_untolerated_taint(taints, tolerations, |e| e == NO_EXECUTE).is_some();
        return (false, !evicted);
    }
    (true, true)
}

/// Upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity pins
/// the pod to `node` by `metadata.name`; every existing term's `matchFields` is replaced,
/// its `matchExpressions` kept.
pub fn replace_node_name_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let requirement = NodeSelectorRequirement {
        key: NODE_NAME_FIELD.to_string(),
        operator: "In".to_string(),
        values: Some(vec![node.to_string()]),
    };
    let pinned = || NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![requirement.clone()]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    match node_affinity
        .required_during_scheduling_ignored_during_execution
        .as_mut()
    {
        Some(required) if !required.node_selector_terms.is_empty() => {
            for term in &mut required.node_selector_terms {
                term.match_fields = Some(vec![requirement.clone()]);
            }
        }
        _ => {
            node_affinity.required_during_scheduling_ignored_during_execution = Some(pinned());
        }
    }
    affinity
}

/// The node a daemon pod is on or pinned to (upstream's `GetTargetNodeName`): its
/// `nodeName`, else the single `metadata.name In [node]` of its required affinity.
pub fn target_node_name(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|term| {
        term.match_fields.as_deref()?.iter().find_map(|f| {
            let values = f.values.as_deref()?;
            (f.key == NODE_NAME_FIELD && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// The DaemonSet's template generation from its annotation (upstream's
/// `GetTemplateGeneration`); `None` when absent or unparsable.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// Upstream's `IsPodUpdated`: the pod has the current revision's hash, or the current
/// template generation.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let generation_matches =
        generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(&g.to_string()));
    let hash_matches = !hash.is_empty() && label(REVISION_HASH_LABEL) == Some(hash);
    hash_matches || generation_matches
}

/// Upstream's `CreatePodTemplate`: the template with the daemon tolerations, the
/// `pod-template-generation` and `controller-revision-hash` labels.
pub fn create_pod_template(
    template: &PodTemplateSpec,
    generation: Option<i64>,
    hash: &str,
) -> PodTemplateSpec {
    let mut template = template.clone();
    add_daemon_tolerations(template.spec.get_or_insert_with(PodSpec::default));
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(g) = generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    }
    template
}

fn rolling_update_value(
    ds: &DaemonSet,
    pick: impl Fn(
        &k8s_openapi::api::apps::v1::RollingUpdateDaemonSet,
    ) -> Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    desired: i32,
) -> i32 {
    let Some(strategy) = ds.spec.update_strategy.as_ref() else {
        return 0;
    };
    if strategy.type_.as_deref() != Some("RollingUpdate") {
        return 0;
    }
    strategy
        .rolling_update
        .as_ref()
        .and_then(pick)
        .and_then(|v| scaled_value(v, desired, true).ok())
        .unwrap_or(0)
}

/// Upstream's `UnavailableCount`: `maxUnavailable` of `desired` nodes, rounded up; 0 for
/// `OnDelete`.
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling_update_value(ds, |r| r.max_unavailable.as_ref(), desired)
}

/// Upstream's `SurgeCount`: `maxSurge` of `desired` nodes, rounded up; 0 for `OnDelete`.
pub fn surge_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling_update_value(ds, |r| r.max_surge.as_ref(), desired)
}

/// Upstream's `AllowsSurge`.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1) != 0
}

//! Filter plugins: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity and (in
//! `resources`) NodeResourcesFit, each a pure function of the pod and the node.

use std::collections::BTreeMap;

use api::selector::{Operator, Requirement};
use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use crate::resources::{node_resources_fit, NodeInfo};

/// NodeUnschedulable's reason.
pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeName's reason.
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodeAffinity's reason (covers `nodeSelector` too).
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// NodeResourcesFit's reason when the node is at its `pods` allocatable.
pub const ERR_TOO_MANY_PODS: &str = "Too many pods";

/// Why a node cannot run a pod: the failing plugin's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfit {
    /// Upstream plugin name, e.g. `"TaintToleration"`.
    pub plugin: &'static str,
    /// Reasons worded exactly as upstream, so `FailedScheduling` can aggregate them.
    /// NodeResourcesFit may give several (`Insufficient cpu`, `Insufficient memory`).
    pub reasons: Vec<String>,
    /// Upstream code `Unschedulable` (true: preemption might help) versus
    /// `UnschedulableAndUnresolvable` (false).
    pub resolvable: bool,
}

impl Unfit {
    fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Unfit {
        Unfit {
            plugin,
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// Runs the filter plugins in upstream's default order (NodeUnschedulable, NodeName,
/// TaintToleration, NodeAffinity, NodeResourcesFit) and stops at the first failure, as the
/// framework does.
pub fn filter(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    node_unschedulable(pod, node)?;
    node_name(pod, node)?;
    taint_toleration(pod, node)?;
    node_affinity(pod, node)?;
    node_resources_fit(pod, node)
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// NodeUnschedulable: a cordoned node only takes pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    let cordoned = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    if tolerations(pod).iter().any(|t| tolerates_taint(t, &taint)) {
        Ok(())
    } else {
        Err(Unfit::unresolvable("NodeUnschedulable", ERR_UNSCHEDULABLE))
    }
}

/// NodeName: a pod naming a node only fits that node.
pub fn node_name(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        None | Some("") => Ok(()),
        Some(want) if want == node.name() => Ok(()),
        Some(_) => Err(Unfit::unresolvable("NodeName", ERR_NODE_NAME)),
    }
}

/// Upstream `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key
/// (only valid with `Exists`) matches every key, `Exists` ignores the value, `Equal` (or no
/// operator) compares it. Unknown operators tolerate nothing.
pub fn tolerates_taint(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// TaintToleration: every `NoSchedule` and `NoExecute` taint must be tolerated
/// (`PreferNoSchedule` only affects scoring). Reports the first untolerated taint.
pub fn taint_toleration(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    let taints = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tols = tolerations(pod);
    let untolerated = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tols.iter().any(|t| tolerates_taint(t, taint)));
    match untolerated {
        None => Ok(()),
        Some(taint) => Err(Unfit::unresolvable(
            "TaintToleration",
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// NodeAffinity: the pod's `nodeSelector` must match the node's labels, and (when present)
/// one of `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms` must match.
pub fn node_affinity(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let empty = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok = required.is_none_or(|r| {
        r.node_selector_terms
            .iter()
            .any(|term| term_matches(term, labels, node.name()))
    });
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Unfit::unresolvable("NodeAffinity", ERR_NODE_AFFINITY))
    }
}

/// One term: all expressions and all fields must match. A term with neither matches nothing,
/// and a term that fails to parse never matches (upstream's lazy-error node selector).
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|e| label_requirement(e).is_some_and(|r| r.matches(labels)))
        && fields.iter().all(|f| field_matches(f, name) == Some(true))
}

/// `NodeSelectorRequirementsAsSelector` for one expression; `None` when it does not parse.
fn label_requirement(e: &NodeSelectorRequirement) -> Option<Requirement> {
    let op = match e.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(&e.key, op, e.values.clone().unwrap_or_default()).ok()
}

/// `matchFields`: only `metadata.name` with `In`/`NotIn` and exactly one value parse.
fn field_matches(f: &NodeSelectorRequirement, name: &str) -> Option<bool> {
    if f.key != "metadata.name" {
        return None;
    }
    let [value] = f.values.as_deref()? else {
        return None;
    };
    match f.operator.as_str() {
        "In" => Some(name == value),
        "NotIn" => Some(name != value),
        _ => None,
    }
}

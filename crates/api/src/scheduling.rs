//! Upstream's `k8s.io/component-helpers/scheduling/corev1`: the node predicates both the
//! scheduler and the DaemonSet controller judge pods by — whether a toleration tolerates a
//! taint, the first taint left untolerated, and whether a pod's `nodeSelector` and required
//! node affinity match a node. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

use crate::selector::{Operator, Requirement};

/// The only node field `matchFields` may name (`metav1.ObjectNameField`).
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Upstream's `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key
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

/// Upstream's `FindMatchingUntoleratedTaint`: the first taint whose effect `effect` accepts
/// that no toleration tolerates.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effect: impl Fn(&str) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|taint| effect(&taint.effect))
        .find(|taint| !tolerations.iter().any(|t| tolerates_taint(t, taint)))
}

/// Upstream's `GetRequiredNodeAffinity(pod).Match(node)`: the pod's `nodeSelector` matches
/// the node's labels and, when present, one of the required node affinity's terms matches.
pub fn required_node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or_default();
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
            .any(|term| term_matches(term, labels, name))
    });
    selector_ok && affinity_ok
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
    if f.key != NODE_NAME_FIELD {
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

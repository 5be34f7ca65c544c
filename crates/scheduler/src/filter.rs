//! Filter plugins: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity and (in
//! `resources`) NodeResourcesFit, each a pure function of the pod and the node.

pub use api::scheduling::tolerates_taint;
use api::scheduling::{find_untolerated_taint, required_node_affinity_matches};
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

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
        key: UNSCHEDULABLE_TAINT.into(),
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

/// The taint the node lifecycle controller mirrors `spec.unschedulable` into.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// TaintToleration: every `NoSchedule` and `NoExecute` taint must be tolerated
/// (`PreferNoSchedule` only affects scoring). Reports the first untolerated taint.
///
/// The `unschedulable:NoSchedule` taint is left to [`node_unschedulable`], which judges
/// `spec.unschedulable` itself with the same toleration. The taint only mirrors that field,
/// a moment late: counted here, an uncordoned node would still refuse pods until the
/// controller removed it, and the pods that tried in that moment would back off while
/// others took the room (a departure from upstream, which counts it in both plugins).
pub fn taint_toleration(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    let taints: Vec<Taint> = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter(|t| !(t.key == UNSCHEDULABLE_TAINT && t.effect == "NoSchedule"))
        .cloned()
        .collect();
    let tols = tolerations(pod);
    match find_untolerated_taint(&taints, tols, |e| e == "NoSchedule" || e == "NoExecute") {
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
    if required_node_affinity_matches(spec, &node.node) {
        Ok(())
    } else {
        Err(Unfit::unresolvable("NodeAffinity", ERR_NODE_AFFINITY))
    }
}

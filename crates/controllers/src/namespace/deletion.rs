//! The decisions of upstream's namespaced-resources deleter
//! (`pkg/controller/namespace/deletion`), as pure functions: what discovery says may be
//! deleted, how long pods may still take, what a pass over the content left, the status
//! conditions that report it, and whether the namespace can be finalized.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResourceList, Time};
use k8s_openapi::jiff::Timestamp;
use kube::core::ApiResource;

/// The finalizer this controller owns on namespaces (`spec.finalizers`).
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// The wait assumed for objects held by finalizers (upstream's `finalizerEstimateSeconds`).
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// One API group as discovery answered it.
#[derive(Debug, Clone, Default)]
pub struct DiscoveredGroup {
    /// `""` for the core group.
    pub name: String,
    pub preferred_version: String,
    /// The resource list of each version that answered, in the group's version order.
    pub lists: Vec<APIResourceList>,
}

/// Why discovery is incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryFailure {
    /// Some group-versions did not answer: (group/version, error).
    Groups(Vec<(String, String)>),
    /// Discovery as a whole failed.
    Failed(String),
}

impl std::fmt::Display for DiscoveryFailure {
    /// client-go's `ErrGroupDiscoveryFailed` text, or the error itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryFailure::Groups(failed) => {
                let mut groups: Vec<String> =
                    failed.iter().map(|(gv, e)| format!("{gv}: {e}")).collect();
                groups.sort();
                write!(
                    f,
                    "unable to retrieve the complete list of server APIs: {}",
                    groups.join(", ")
                )
            }
            DiscoveryFailure::Failed(e) => f.write_str(e),
        }
    }
}

/// A namespaced resource the controller empties, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    /// The server serves `deletecollection` (else each item is deleted).
    pub delete_collection: bool,
    /// The server serves `list` (else what is left cannot be checked).
    pub list: bool,
}

impl Target {
    /// For the dynamic API.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: if self.group.is_empty() {
                self.version.clone()
            } else {
                format!("{}/{}", self.group, self.version)
            },
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// apimachinery's `GroupVersionResource.String()`, as upstream's messages print it.
    pub fn gvr(&self) -> String {
        format!("{}/{}, Resource={}", self.group, self.version, self.plural)
    }

    pub fn is_pods(&self) -> bool {
        self.group.is_empty() && self.plural == "pods"
    }
}

/// apimachinery's `ParseGroupVersion`: `v1`, `group/version`, or `""`.
fn parse_group_version(gv: &str) -> Result<(String, String), String> {
    match gv.split('/').collect::<Vec<_>>().as_slice() {
        [""] => Ok((String::new(), String::new())),
        [version] => Ok((String::new(), version.to_string())),
        [group, version] => Ok((group.to_string(), version.to_string())),
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// What may be deleted: every namespaced resource that serves `delete`, each at its group's
/// preferred version (or the first version serving it), as client-go's
/// `ServerPreferredNamespacedResources` filtered by `delete` yields them; sorted, so passes
/// go in a stable order. Resource lists whose group-version does not parse are skipped and
/// reported (the `NamespaceDeletionGroupVersionParsingFailure` condition).
pub fn targets(groups: &[DiscoveredGroup]) -> (Vec<Target>, Option<String>) {
    // (group, resource) → the chosen version's target, and whether it serves `delete`.
    let mut chosen: BTreeMap<(String, String), (Target, bool)> = BTreeMap::new();
    let mut parse_errors = Vec::new();
    for group in groups {
        for list in &group.lists {
            let (gv_group, version) = match parse_group_version(&list.group_version) {
                Ok(gv) => gv,
                Err(e) => {
                    parse_errors.push(e);
                    continue;
                }
            };
            let preferred = version == group.preferred_version;
            for r in &list.resources {
                if r.name.contains('/') || !r.namespaced {
                    continue;
                }
                let key = (gv_group.clone(), r.name.clone());
                if chosen.contains_key(&key) && !preferred {
                    continue;
                }
                let has = |verb: &str| r.verbs.iter().any(|v| v == verb);
                let target = Target {
                    group: r.group.clone().unwrap_or_else(|| gv_group.clone()),
                    version: r.version.clone().unwrap_or_else(|| version.clone()),
                    plural: r.name.clone(),
                    kind: r.kind.clone(),
                    delete_collection: has("deletecollection"),
                    list: has("list"),
                };
                chosen.insert(key, (target, has("delete")));
            }
        }
    }
    // Only what can be deleted at all (client-go's `SupportsAllVerbs{delete}`).
    let targets = chosen
        .into_values()
        .filter_map(|(t, deletable)| deletable.then_some(t))
        .collect();
    let parse_error = (!parse_errors.is_empty()).then(|| parse_errors.join(", "));
    (targets, parse_error)
}

/// The longest grace period of the pods still running (terminal ones need none): how long
/// they may take to go (upstream's `estimateGracefulTerminationForPods`).
pub fn pods_estimate(pods: &[Pod]) -> i64 {
    pods.iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// An estimate counted from the namespace's deletion: none once that much time has passed.
pub fn remaining_estimate(estimate: i64, deleted_at: Timestamp, now: Timestamp) -> i64 {
    let since = now.as_second() - deleted_at.as_second();
    if since >= estimate {
        0
    } else {
        estimate
    }
}

/// What one resource's deletion left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Seconds the rest may still take to go.
    pub estimate: i64,
    pub remaining: usize,
    /// Objects left per finalizer holding them.
    pub finalizers: BTreeMap<String, usize>,
}

/// The end of upstream's `deleteAllContentForGroupVersionResource`: given the estimate and
/// the finalizers of each object still listed afterwards (`None` when the resource cannot
/// be listed), what is left, and an error when objects remain that nothing explains.
pub fn after_deletion(
    namespace: &str,
    target: &Target,
    estimate: i64,
    remaining: Option<&[Vec<String>]>,
) -> (Outcome, Option<String>) {
    let Some(items) = remaining else {
        return (
            Outcome {
                estimate,
                ..Outcome::default()
            },
            None,
        );
    };
    if items.is_empty() {
        return (Outcome::default(), None);
    }
    let mut finalizers = BTreeMap::new();
    for f in items.iter().flatten() {
        *finalizers.entry(f.clone()).or_insert(0) += 1;
    }
    let left = |estimate, finalizers| Outcome {
        estimate,
        remaining: items.len(),
        finalizers,
    };
    if estimate != 0 {
        return (left(estimate, finalizers), None);
    }
    if !finalizers.is_empty() {
        return (left(FINALIZER_ESTIMATE_SECONDS, finalizers), None);
    }
    (
        left(estimate, BTreeMap::new()),
        Some(format!(
            "unexpected items still remain in namespace: {namespace} for gvr: {}",
            target.gvr()
        )),
    )
}

/// One pass over a namespace's content.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub discovery: Option<DiscoveryFailure>,
    pub parse_error: Option<String>,
    /// Errors deleting or listing resources.
    pub content_errors: Vec<String>,
    pub outcomes: Vec<(Target, Outcome)>,
}

/// What to do after a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is gone: drop the `kubernetes` finalizer.
    Finalize,
    /// Content is going; look again in `requeue_after(estimate)`.
    Wait { estimate: i64 },
    /// Something failed; retry with backoff.
    Failed(String),
}

impl Pass {
    pub fn verdict(&self) -> Verdict {
        let mut errors: Vec<String> = Vec::new();
        errors.extend(self.discovery.iter().map(ToString::to_string));
        errors.extend(self.parse_error.iter().cloned());
        errors.extend(self.content_errors.iter().cloned());
        match errors.len() {
            0 => {}
            // apimachinery's aggregate error text.
            1 => return Verdict::Failed(errors.remove(0)),
            _ => return Verdict::Failed(format!("[{}]", errors.join(", "))),
        }
        let estimate = self
            .outcomes
            .iter()
            .map(|(_, o)| o.estimate)
            .max()
            .unwrap_or(0);
        if estimate > 0 {
            Verdict::Wait { estimate }
        } else {
            Verdict::Finalize
        }
    }

    /// The conditions this pass calls for that report a problem (upstream's condition
    /// updater); the others are set to their "all is well" form by [`update_conditions`].
    pub fn failing_conditions(&self, now: &Time) -> Vec<NamespaceCondition> {
        let condition = |type_: &str, reason: &str, message: String| NamespaceCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(now.clone()),
        };
        let mut out = Vec::new();
        if let Some(failure) = &self.discovery {
            let message = match failure {
                DiscoveryFailure::Groups(groups) => format!(
                    "Discovery failed for some groups, {} failing: {failure}",
                    groups.len()
                ),
                DiscoveryFailure::Failed(e) => e.clone(),
            };
            out.push(condition(DISCOVERY_FAILURE, "DiscoveryFailed", message));
        }
        if let Some(e) = &self.parse_error {
            out.push(condition(
                GV_PARSING_FAILURE,
                "GroupVersionParsingFailed",
                e.clone(),
            ));
        }
        if !self.content_errors.is_empty() {
            let mut errors = self.content_errors.clone();
            errors.sort();
            out.push(condition(
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    errors.len(),
                    errors.join(", ")
                ),
            ));
        }
        let mut remaining: Vec<String> = self
            .outcomes
            .iter()
            .filter(|(_, o)| o.remaining > 0)
            .map(|(t, o)| {
                format!(
                    "{}.{} has {} resource instances",
                    t.plural, t.group, o.remaining
                )
            })
            .collect();
        if !remaining.is_empty() {
            remaining.sort();
            out.push(condition(
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", remaining.join(", ")),
            ));
        }
        let mut by_finalizer: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, o) in self.outcomes.iter().filter(|(_, o)| o.remaining > 0) {
            for (f, n) in &o.finalizers {
                *by_finalizer.entry(f).or_insert(0) += n;
            }
        }
        let mut by_finalizer: Vec<String> = by_finalizer
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !by_finalizer.is_empty() {
            by_finalizer.sort();
            out.push(condition(
                FINALIZERS_REMAINING,
                "SomeFinalizerRemain",
                format!("Some finalizers are remaining: {}", by_finalizer.join(", ")),
            ));
        }
        out
    }
}

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The condition types this controller maintains, with their reason and message when all
/// is well (upstream's `okReasons` / `okMessages`).
const MAINTAINED: &[(&str, &str, &str)] = &[
    (
        DISCOVERY_FAILURE,
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        GV_PARSING_FAILURE,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        CONTENT_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        FINALIZERS_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
];

/// Brings `conditions` to `failing` plus the "all is well" form of every other maintained
/// type, keeping a condition's transition time unless its status changes; `true` if
/// anything changed (upstream's `updateConditions`).
pub fn update_conditions(
    conditions: &mut Vec<NamespaceCondition>,
    failing: &[NamespaceCondition],
    now: &Time,
) -> bool {
    let mut changed = false;
    for (type_, ok_reason, ok_message) in MAINTAINED {
        let wanted = failing
            .iter()
            .find(|c| c.type_ == *type_)
            .cloned()
            .unwrap_or_else(|| NamespaceCondition {
                type_: type_.to_string(),
                status: "False".into(),
                reason: Some(ok_reason.to_string()),
                message: Some(ok_message.to_string()),
                last_transition_time: Some(now.clone()),
            });
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            None => {
                conditions.push(wanted);
                changed = true;
            }
            Some(old)
                if old.status != wanted.status
                    || old.reason != wanted.reason
                    || old.message != wanted.message =>
            {
                if old.status != wanted.status {
                    old.last_transition_time = Some(now.clone());
                }
                old.status = wanted.status;
                old.reason = wanted.reason;
                old.message = wanted.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

/// Whether the namespace still carries this controller's finalizer.
pub fn has_kubernetes_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == KUBERNETES_FINALIZER))
}

/// Whether a namespace being deleted still has to be marked `Terminating`.
pub fn needs_terminating_phase(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// The namespace's finalizers once this controller's is dropped: a sorted set, as upstream
/// writes it through `namespaces/{name}/finalize`.
pub fn finalized(ns: &Namespace) -> Vec<String> {
    let mut rest: Vec<String> = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != KUBERNETES_FINALIZER)
        .collect();
    rest.sort();
    rest.dedup();
    rest
}

/// Upstream's wait after a pass that left content going: half the estimate, plus a second.
pub fn requeue_after(estimate: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1))
}

#[cfg(test)]
mod tests;

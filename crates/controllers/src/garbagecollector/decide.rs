//! The decisions of upstream's `garbagecollector.go` (`attemptToDeleteItem`,
//! `classifyReferences`, `processDeletingDependentsItem`, `orphanDependents`), as pure
//! functions: what the live object and the live owners say in, one action out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph_builder::{FOREGROUND, ORPHAN};

/// What a live read of one owner found (upstream's `isDangling` plus the owner's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists with the referenced uid and is not waiting for its dependents.
    Solid,
    /// Gone: not found, or found with another uid (a new object of the same name).
    Dangling,
    /// Exists and is being deleted in the foreground (`foregroundDeletion`).
    WaitingForDependentsDeletion,
}

/// `DeletePropagation` of the deletes the collector issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// What to do with an object that has owner references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some owner is solid and none is gone or waiting: keep it as it is.
    Keep,
    /// Some owner is solid: drop the references to these (gone or waiting) owners.
    RemoveReferences(Vec<String>),
    /// Delete it. `unblock`: first set `blockOwnerDeletion: false` on the references to
    /// these waiting owners (a dependent of the object waits for it in the foreground too,
    /// which would otherwise be a deadlock: upstream's cycle breaking).
    Delete {
        propagation: Propagation,
        unblock: Vec<String>,
    },
}

/// Upstream's `attemptToDeleteItem` once the references are classified. `has_dependents`:
/// the graph knows dependents of the object; `a_dependent_deletes_dependents`: one of them
/// is itself being deleted in the foreground. `finalizers` are the object's own.
pub fn attempt_to_delete(
    references: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    a_dependent_deletes_dependents: bool,
    finalizers: &[String],
) -> Decision {
    let of = |state: OwnerState| -> Vec<String> {
        references
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(r, _)| r.uid.clone())
            .collect()
    };
    let solid = of(OwnerState::Solid);
    let dangling = of(OwnerState::Dangling);
    let waiting = of(OwnerState::WaitingForDependentsDeletion);
    if references.is_empty() {
        return Decision::Keep;
    }
    if !solid.is_empty() {
        let gone: Vec<String> = dangling.into_iter().chain(waiting).collect();
        return if gone.is_empty() {
            Decision::Keep
        } else {
            Decision::RemoveReferences(gone)
        };
    }
    if !waiting.is_empty() && has_dependents {
        // An owner waits for this object, which has dependents of its own: they go first.
        let unblock = if a_dependent_deletes_dependents {
            waiting
        } else {
            Vec::new()
        };
        return Decision::Delete {
            propagation: Propagation::Foreground,
            unblock,
        };
    }
    // No solid owner and nobody waits on a chain: collect it, as its own finalizers say.
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let propagation = if has(ORPHAN) {
        Propagation::Orphan
    } else if has(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete {
        propagation,
        unblock: Vec::new(),
    }
}

/// What an owner deleting in the foreground does (upstream's
/// `processDeletingDependentsItem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreground {
    /// Nothing blocks it any more: remove `foregroundDeletion`.
    RemoveFinalizer,
    /// Still blocked: look at these dependents (the ones not already waiting for their own
    /// dependents).
    Wait(Vec<String>),
}

/// `blocking`: (uid, deleting its own dependents) of every dependent whose reference to the
/// owner has `blockOwnerDeletion: true`.
pub fn process_deleting_dependents(blocking: &[(String, bool)]) -> Foreground {
    if blocking.is_empty() {
        return Foreground::RemoveFinalizer;
    }
    Foreground::Wait(
        blocking
            .iter()
            .filter(|(_, deleting)| !deleting)
            .map(|(uid, _)| uid.clone())
            .collect(),
    )
}

/// The owner references left once those to `owners` are removed (`None`: nothing to remove).
pub fn without_references(
    references: &[OwnerReference],
    owners: &[String],
) -> Option<Vec<OwnerReference>> {
    let kept: Vec<OwnerReference> = references
        .iter()
        .filter(|r| !owners.contains(&r.uid))
        .cloned()
        .collect();
    (kept.len() != references.len()).then_some(kept)
}

/// The owner references with `blockOwnerDeletion: false` on those to `owners` (upstream's
/// `unblockOwnerReferences`); `None` when none blocks.
pub fn unblocked_references(
    references: &[OwnerReference],
    owners: &[String],
) -> Option<Vec<OwnerReference>> {
    let mut changed = false;
    let refs = references
        .iter()
        .cloned()
        .map(|mut r| {
            if owners.contains(&r.uid) && r.block_owner_deletion == Some(true) {
                r.block_owner_deletion = Some(false);
                changed = true;
            }
            r
        })
        .collect();
    changed.then_some(refs)
}

/// The finalizers left once `finalizer` is removed (`None`: it is not there).
pub fn without_finalizer(finalizers: &[String], finalizer: &str) -> Option<Vec<String>> {
    finalizers.iter().any(|f| f == finalizer).then(|| {
        finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect()
    })
}

/// Upstream's `OwnerRefInvalidNamespace` message: the owner reference printed as
/// `objectReference.String()`, looked up in the dependent's namespace.
pub fn invalid_namespace_message(owner: &OwnerReference, namespace: &str) -> String {
    format!(
        "ownerRef [{}/{}, namespace: {namespace}, name: {}, uid: {}] does not exist in namespace {namespace:?}",
        owner.api_version, owner.kind, owner.name, owner.uid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            block_owner_deletion: Some(true),
            controller: None,
        }
    }

    fn delete(propagation: Propagation) -> Decision {
        Decision::Delete {
            propagation,
            unblock: Vec::new(),
        }
    }

    #[test]
    fn attempt_to_delete_follows_upstream() {
        use OwnerState::*;
        let fin = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (name, owners, has dependents, a dependent deletes dependents, finalizers, want)
        type Case = (
            &'static str,
            Vec<(&'static str, OwnerState)>,
            bool,
            bool,
            Vec<String>,
            Decision,
        );
        let cases: Vec<Case> = vec![
            ("no owners", vec![], false, false, fin(&[]), Decision::Keep),
            (
                "solid owner",
                vec![("a", Solid)],
                false,
                false,
                fin(&[]),
                Decision::Keep,
            ),
            (
                "one owner gone, one present: drop the reference",
                vec![("a", Solid), ("b", Dangling)],
                false,
                false,
                fin(&[]),
                Decision::RemoveReferences(vec!["b".into()]),
            ),
            (
                "solid and waiting: drop the waiting one",
                vec![("a", WaitingForDependentsDeletion), ("b", Solid)],
                true,
                false,
                fin(&[]),
                Decision::RemoveReferences(vec!["a".into()]),
            ),
            (
                "all gone: background",
                vec![("a", Dangling), ("b", Dangling)],
                true,
                false,
                fin(&[]),
                delete(Propagation::Background),
            ),
            (
                "owner waiting, no dependents: background",
                vec![("a", WaitingForDependentsDeletion)],
                false,
                false,
                fin(&[]),
                delete(Propagation::Background),
            ),
            (
                "owner waiting, dependents: foreground",
                vec![("a", WaitingForDependentsDeletion)],
                true,
                false,
                fin(&[]),
                delete(Propagation::Foreground),
            ),
            (
                "owner waiting, a dependent waiting too: unblock first",
                vec![("a", WaitingForDependentsDeletion), ("b", Dangling)],
                true,
                true,
                fin(&[]),
                Decision::Delete {
                    propagation: Propagation::Foreground,
                    unblock: vec!["a".into()],
                },
            ),
            (
                "gone owner, own orphan finalizer",
                vec![("a", Dangling)],
                true,
                false,
                fin(&["orphan"]),
                delete(Propagation::Orphan),
            ),
            (
                "gone owner, own foreground finalizer",
                vec![("a", Dangling)],
                false,
                false,
                fin(&["x", "foregroundDeletion"]),
                delete(Propagation::Foreground),
            ),
        ];
        for (name, owners, deps, deps_waiting, finalizers, want) in cases {
            let refs: Vec<(OwnerReference, OwnerState)> =
                owners.iter().map(|(u, s)| (owner(u), *s)).collect();
            assert_eq!(
                attempt_to_delete(&refs, deps, deps_waiting, &finalizers),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn foreground_owner_waits_for_blocking_dependents() {
        let cases: Vec<(Vec<(&str, bool)>, Foreground)> = vec![
            (vec![], Foreground::RemoveFinalizer),
            (
                vec![("a", false), ("b", true)],
                Foreground::Wait(vec!["a".into()]),
            ),
            (vec![("b", true)], Foreground::Wait(vec![])),
        ];
        for (blocking, want) in cases {
            let blocking: Vec<(String, bool)> =
                blocking.iter().map(|(u, d)| (u.to_string(), *d)).collect();
            assert_eq!(process_deleting_dependents(&blocking), want);
        }
    }

    #[test]
    fn reference_and_finalizer_edits() {
        let refs = vec![owner("a"), owner("b")];
        assert_eq!(
            without_references(&refs, &["a".into()]),
            Some(vec![owner("b")])
        );
        assert_eq!(without_references(&refs, &["c".into()]), None);
        let unblocked = unblocked_references(&refs, &["b".into()]).unwrap_or_default();
        assert_eq!(unblocked[0].block_owner_deletion, Some(true));
        assert_eq!(unblocked[1].block_owner_deletion, Some(false));
        assert_eq!(unblocked_references(&unblocked, &["b".into()]), None);
        let f = vec!["x".to_string(), "orphan".to_string()];
        assert_eq!(without_finalizer(&f, "orphan"), Some(vec!["x".to_string()]));
        assert_eq!(without_finalizer(&f, "foregroundDeletion"), None);
        assert_eq!(
            invalid_namespace_message(&owner("u1"), "ns"),
            "ownerRef [v1/ConfigMap, namespace: ns, name: cm-u1, uid: u1] does not exist in namespace \"ns\""
        );
    }
}

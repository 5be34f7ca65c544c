//! Upstream's `ControllerRefManager` (`pkg/controller/controller_ref_manager.go`): a
//! controller claims the objects its selector matches. Orphans that match are adopted (a
//! patch adding its controller reference), objects it owns that no longer match are
//! released (a patch deleting the reference), and objects another controller owns are
//! never touched. A controller being deleted adopts and releases nothing, and nothing is
//! adopted while it is being deleted itself.
//!
//! ```text
//!            owned by us        owned by other   orphan
//!  matches   keep               ignore           adopt (unless either is being deleted)
//!  no match  release (unless    ignore           ignore
//!            we are deleted)
//! ```
//!
//! The decision is the pure [`claim_decision`]; [`ControllerRefManager::claim`] applies it
//! with upstream's patch shapes (strategic merge patches carrying the dependent's `uid`, so
//! a patch to an object re-created under the same name fails instead of touching it). The
//! first adoption of a pass first re-reads the controller ([`recheck_deletion_timestamp`],
//! upstream's `CanAdopt`): a controller deleted since its cache entry must not adopt.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::info;

use crate::controller_utils::get_controller_of;
use crate::controller_utils::pod_control::message;

/// What a controller does with one object its selector may match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching: claimed, nothing to write.
    Owned,
    /// An orphan that matches: patch in our controller reference.
    Adopt,
    /// Ours but no longer matching: patch our reference out.
    Release,
    /// Another controller's, or not ours to take: leave it.
    Ignore,
}

/// Upstream's `ClaimObject` decision for `object`, given the claiming controller's uid,
/// whether it is being deleted, and whether its selector (and filters) match the object.
pub fn claim_decision(
    controller_uid: &str,
    controller_deleting: bool,
    object: &ObjectMeta,
    matches: bool,
) -> Claim {
    match get_controller_of(object) {
        Some(r) if r.uid != controller_uid => Claim::Ignore,
        // Claiming what we already own takes no action, so it is allowed while deleting.
        Some(_) if matches => Claim::Owned,
        Some(_) if controller_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if controller_deleting || !matches => Claim::Ignore,
        None if object.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The patch that adopts an object (upstream's `ownerRefControllerPatch`).
pub fn owner_ref_controller_patch(
    api_version: &str,
    kind: &str,
    controller_name: &str,
    controller_uid: &str,
    dependent_uid: &str,
) -> Value {
    json!({"metadata": {
        "ownerReferences": [{
            "apiVersion": api_version,
            "kind": kind,
            "name": controller_name,
            "uid": controller_uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }],
        "uid": dependent_uid,
    }})
}

/// The patch that releases an object from the given owners (upstream's
/// `deleteOwnerRefStrategicMergePatch`).
pub fn delete_owner_ref_strategic_merge_patch(dependent_uid: &str, owner_uids: &[&str]) -> Value {
    let pieces: Vec<Value> = owner_uids
        .iter()
        .map(|uid| json!({"$patch": "delete", "uid": uid}))
        .collect();
    json!({"metadata": {"uid": dependent_uid, "ownerReferences": pieces}})
}

/// Claiming failed for some objects; the controller retries later.
#[derive(Debug, thiserror::Error)]
#[error("{}", join(.0))]
pub struct ClaimError(pub Vec<String>);

/// Upstream's aggregate error text: one error as is, several as `[a, b]`.
fn join(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The claiming controller.
pub struct ControllerRefManager {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    deleting: bool,
    can_adopt: Shared<BoxFuture<'static, Result<(), String>>>,
}

impl ControllerRefManager {
    /// `can_adopt` runs at most once, before the first adoption (upstream's
    /// `CanAdoptFunc`); pass [`recheck_deletion_timestamp`].
    pub fn new(
        controller: &ObjectMeta,
        api_version: &str,
        kind: &str,
        can_adopt: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ) -> ControllerRefManager {
        ControllerRefManager {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: controller.name.clone().unwrap_or_default(),
            uid: controller.uid.clone().unwrap_or_default(),
            deleting: controller.deletion_timestamp.is_some(),
            can_adopt: can_adopt.boxed().shared(),
        }
    }

    /// The decision for one object.
    pub fn decide(&self, object: &ObjectMeta, matches: bool) -> Claim {
        claim_decision(&self.uid, self.deleting, object, matches)
    }

    /// Claims `objects` (of any namespaced kind: pods, ReplicaSets, ControllerRevisions):
    /// adopts and releases as [`claim_decision`] says and returns the ones now owned.
    /// An object gone meanwhile is skipped; any other failed patch fails the claim, after
    /// the other objects were handled, as upstream aggregates them.
    pub async fn claim<K>(
        &self,
        client: &Client,
        objects: Vec<Arc<K>>,
        matches: impl Fn(&K) -> bool,
    ) -> Result<Vec<Arc<K>>, ClaimError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let mut claimed = Vec::new();
        let mut errors = Vec::new();
        for obj in objects {
            let meta = obj.meta();
            let namespace = meta.namespace.clone().unwrap_or_default();
            let name = meta.name.clone().unwrap_or_default();
            let dependent_uid = meta.uid.clone().unwrap_or_default();
            let api: Api<K> = Api::namespaced(client.clone(), &namespace);
            match self.decide(meta, matches(&obj)) {
                Claim::Owned => claimed.push(obj),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if let Err(e) = self.can_adopt.clone().await {
                        errors.push(format!(
                            "can't adopt {} {namespace}/{name} ({dependent_uid}): {e}",
                            K::kind(&())
                        ));
                        continue;
                    }
                    // The API refuses this patch if another controller reference exists.
                    let patch = owner_ref_controller_patch(
                        &self.api_version,
                        &self.kind,
                        &self.name,
                        &self.uid,
                        &dependent_uid,
                    );
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(_) => {
                            info!(
                                controller = %self.name, kind = %self.kind,
                                object = %format!("{namespace}/{name}"), "adopted"
                            );
                            claimed.push(obj);
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => errors.push(message(&e)),
                    }
                }
                Claim::Release => {
                    info!(
                        controller = %self.name, kind = %self.kind,
                        object = %format!("{namespace}/{name}"),
                        "patching to remove its controllerRef"
                    );
                    let patch =
                        delete_owner_ref_strategic_merge_patch(&dependent_uid, &[&self.uid]);
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(_) => {}
                        // Gone, or re-created under the name (the uid no longer matches).
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => {}
                        Err(e) => errors.push(message(&e)),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(claimed)
        } else {
            Err(ClaimError(errors))
        }
    }
}

/// Upstream's `RecheckDeletionTimestamp` with the controllers' fresh read: the controller
/// as the API has it now must be the same object (uid) and not being deleted.
pub async fn recheck_deletion_timestamp<K>(
    api: Api<K>,
    name: String,
    uid: String,
) -> Result<(), String>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let fresh = api
        .get(&name)
        .await
        .map_err(|e| format!("can't recheck DeletionTimestamp: {}", message(&e)))?;
    let meta = fresh.meta();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let fresh_uid = meta.uid.clone().unwrap_or_default();
    if fresh_uid != uid {
        return Err(format!(
            "can't recheck DeletionTimestamp: original {} {namespace}/{name} is gone: got uid {fresh_uid}, wanted {uid}",
            K::kind(&())
        ));
    }
    if let Some(t) = &meta.deletion_timestamp {
        return Err(format!(
            "{namespace}/{name} has just been deleted at {}",
            t.0
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller_utils::new_controller_ref;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    fn meta(owner: Option<(&str, bool)>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            uid: Some("pod-uid".into()),
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference {
                    controller: Some(controller),
                    ..new_controller_ref("apps/v1", "ReplicaSet", "rs", uid)
                }]
            }),
            deletion_timestamp: deleting.then_some(Time(Timestamp::UNIX_EPOCH)),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn claims_follow_upstreams_rules() {
        use Claim::*;
        // (owner of the object (uid, controller?), object deleting, matches, we are deleting, want)
        type Case = (
            &'static str,
            Option<(&'static str, bool)>,
            bool,
            bool,
            bool,
            Claim,
        );
        let cases: &[Case] = &[
            (
                "ours, matching",
                Some(("me", true)),
                false,
                true,
                false,
                Owned,
            ),
            (
                "ours, matching, we are deleting",
                Some(("me", true)),
                false,
                true,
                true,
                Owned,
            ),
            (
                "ours, no longer matching",
                Some(("me", true)),
                false,
                false,
                false,
                Release,
            ),
            (
                "ours, no match, we are deleting",
                Some(("me", true)),
                false,
                false,
                true,
                Ignore,
            ),
            (
                "another controller's",
                Some(("other", true)),
                false,
                true,
                false,
                Ignore,
            ),
            (
                "another controller's, no match",
                Some(("other", true)),
                false,
                false,
                false,
                Ignore,
            ),
            ("orphan, matching", None, false, true, false, Adopt),
            ("orphan, not matching", None, false, false, false, Ignore),
            ("orphan, we are deleting", None, false, true, true, Ignore),
            ("orphan being deleted", None, true, true, false, Ignore),
            // A non-controller owner reference leaves it an orphan.
            (
                "owned but not controlled",
                Some(("other", false)),
                false,
                true,
                false,
                Adopt,
            ),
        ];
        for (name, owner, obj_deleting, matches, we_deleting, want) in cases {
            let m = meta(*owner, *obj_deleting);
            assert_eq!(
                claim_decision("me", *we_deleting, &m, *matches),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn patches_have_upstreams_shape() {
        assert_eq!(
            owner_ref_controller_patch("apps/v1", "ReplicaSet", "web", "rs-uid", "pod-uid"),
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": true,
                "blockOwnerDeletion": true}], "uid": "pod-uid"}})
        );
        assert_eq!(
            delete_owner_ref_strategic_merge_patch("pod-uid", &["rs-uid"]),
            json!({"metadata": {"uid": "pod-uid",
                "ownerReferences": [{"$patch": "delete", "uid": "rs-uid"}]}})
        );
    }

    #[test]
    fn aggregated_errors_read_as_upstreams() {
        assert_eq!(ClaimError(vec!["a".into()]).to_string(), "a");
        assert_eq!(
            ClaimError(vec!["a".into(), "b".into()]).to_string(),
            "[a, b]"
        );
    }
}

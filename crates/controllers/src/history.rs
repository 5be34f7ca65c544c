//! Upstream's controller history (`pkg/controller/history`): the ControllerRevisions a
//! StatefulSet or DaemonSet keeps of its pod template, one per distinct template, named
//! `<parent>-<hash>` and labelled `controller.kubernetes.io/hash`.
//!
//! Owns: naming and hashing revisions, building one for a parent, ordering and comparing
//! them (pure), and the two writes upstream's `realHistory` makes with care: creating a
//! revision under a name that may already be taken (a hash collision bumps the parent's
//! `collisionCount` and tries the next name) and renumbering an existing revision.
//!
//! Does not own: what a revision's `data` holds (each controller's patch of its template)
//! or when revisions are made and pruned (the controllers).

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, PostParams};

use crate::controller_utils::{get_controller_of, new_controller_ref, safe_encode_string};

/// The label holding a revision's hash (upstream's `ControllerRevisionHashLabel`).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Longest parent-name prefix of a revision's name, so that `-<hash>` (at most 10 safe
/// characters and the dash) keeps it within a DNS subdomain's 253.
const MAX_PREFIX: usize = 223;

/// Upstream's `ControllerRevisionName`.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let prefix = if prefix.len() > MAX_PREFIX {
        // Names are ASCII (DNS subdomains), so any byte index is a char boundary.
        &prefix[..MAX_PREFIX]
    } else {
        prefix
    };
    format!("{prefix}-{hash}")
}

/// 32-bit FNV-1 (not 1a: upstream's history hashes with `fnv.New32`).
fn fnv32(data: &[u8], mut hash: u32) -> u32 {
    for b in data {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(*b);
    }
    hash
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;

/// The bytes a revision's data is compared and hashed by (upstream's `Data.Raw`).
fn data_bytes(revision: &ControllerRevision) -> Vec<u8> {
    serde_json::to_vec(&revision.data.0).unwrap_or_default()
}

/// Upstream's `HashControllerRevision`: FNV-32 over the data, then the collision count in
/// decimal when there is one, the number safe-encoded.
pub fn hash_revision(revision: &ControllerRevision, probe: Option<i32>) -> String {
    let mut hash = fnv32(&data_bytes(revision), FNV32_OFFSET);
    if let Some(probe) = probe {
        hash = fnv32(probe.to_string().as_bytes(), hash);
    }
    safe_encode_string(&hash.to_string())
}

/// Upstream's `NewControllerRevision`: a revision of `parent` controlled by it (with
/// `blockOwnerDeletion`), labelled with the template's labels and its hash, named
/// `<parent>-<hash>` in the parent's namespace.
pub fn new_controller_revision(
    parent: &ObjectMeta,
    api_version: &str,
    kind: &str,
    template_labels: Option<&std::collections::BTreeMap<String, String>>,
    data: serde_json::Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let name = parent.name.clone().unwrap_or_default();
    let mut cr = ControllerRevision {
        metadata: ObjectMeta {
            namespace: parent.namespace.clone(),
            labels: Some(template_labels.cloned().unwrap_or_default()),
            owner_references: Some(vec![new_controller_ref(
                api_version,
                kind,
                &name,
                parent.uid.as_deref().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        data: RawExtension(data),
        revision: Some(revision),
    };
    let hash = hash_revision(&cr, collision_count);
    cr.metadata.name = Some(revision_name(&name, &hash));
    cr.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.to_string(), hash);
    cr
}

/// A revision's number (the API defaults an absent one to 0).
pub fn number(revision: &ControllerRevision) -> i64 {
    revision.revision.unwrap_or(0)
}

/// Upstream's `SortControllerRevisions` order: by revision, then creation, then name.
pub fn revision_order(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    number(a)
        .cmp(&number(b))
        .then_with(|| {
            let at = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let bt = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            at.cmp(&bt)
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Upstream's `EqualRevision`: the same hash label (when both have one) and the same data.
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let hash = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL).cloned())
    };
    if let (Some(ha), Some(hb)) = (hash(a), hash(b)) {
        if ha != hb {
            return false;
        }
    }
    a.data.0 == b.data.0
}

/// Upstream's `FindEqualRevisions`.
pub fn find_equal_revisions<'a>(
    revisions: &[&'a ControllerRevision],
    needle: &ControllerRevision,
) -> Vec<&'a ControllerRevision> {
    revisions
        .iter()
        .copied()
        .filter(|r| equal_revision(r, needle))
        .collect()
}

/// The next revision number: one past the newest (upstream's `nextRevision`), 1 for none.
pub fn next_revision(revisions: &[&ControllerRevision]) -> i64 {
    revisions.iter().map(|r| number(r)).max().unwrap_or(0) + 1
}

/// Whether a revision belongs to the parent with `uid` or to no one (what upstream's
/// `ListControllerRevisions` keeps of those its selector matches; orphans are then adopted).
pub fn owned_or_orphan(revision: &ControllerRevision, uid: &str) -> bool {
    get_controller_of(&revision.metadata).is_none_or(|r| r.uid == uid)
}

/// Upstream's `realHistory.CreateControllerRevision`: creates `revision` named by its hash
/// with `collision_count`; a name already taken by equal data is that revision, by other
/// data a collision: the count goes up (the caller writes it to the parent's status) and the
/// next name is tried.
pub async fn create_controller_revision(
    api: &Api<ControllerRevision>,
    parent_name: &str,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, kube::Error> {
    let mut clone = revision.clone();
    loop {
        let hash = hash_revision(revision, Some(*collision_count));
        let name = revision_name(parent_name, &hash);
        clone.metadata.name = Some(name.clone());
        match api.create(&PostParams::default(), &clone).await {
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(&name).await?;
                if data_bytes(&existing) == data_bytes(&clone) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            other => return other,
        }
    }
}

/// Upstream's `realHistory.UpdateControllerRevision`: renumbers a revision (a rollback to
/// an old template makes its revision the newest), re-reading it once on a conflict.
pub async fn update_revision(
    api: &Api<ControllerRevision>,
    revision: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, kube::Error> {
    if revision.revision == Some(number) {
        return Ok(revision.clone());
    }
    let name = revision.metadata.name.clone().unwrap_or_default();
    let mut current = revision.clone();
    let mut attempts = 0;
    loop {
        current.revision = Some(number);
        match api.replace(&name, &PostParams::default(), &current).await {
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 5 => {
                attempts += 1;
                current = api.get(&name).await?;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u-1".into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn fnv32_matches_the_reference_vectors() {
        // FNV-1 32-bit of "" is the offset basis; of "a" is 0x050c5d7e.
        assert_eq!(fnv32(b"", FNV32_OFFSET), 0x811c_9dc5);
        assert_eq!(fnv32(b"a", FNV32_OFFSET), 0x050c_5d7e);
    }

    #[test]
    fn revisions_are_named_by_parent_and_hash_and_labelled() {
        let labels = [("app".to_string(), "web".to_string())].into();
        let cr = new_controller_revision(
            &parent(),
            "apps/v1",
            "StatefulSet",
            Some(&labels),
            json!({"spec": {"template": {"$patch": "replace"}}}),
            3,
            None,
        );
        let hash = cr.metadata.labels.as_ref().unwrap()[HASH_LABEL].clone();
        assert_eq!(
            cr.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(cr.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(number(&cr), 3);
        assert_eq!(cr.metadata.labels.as_ref().unwrap()["app"], "web");
        let owner = get_controller_of(&cr.metadata).unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "u-1")
        );
        assert!(hash
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn a_collision_count_changes_the_hash() {
        let cr =
            new_controller_revision(&parent(), "apps/v1", "DaemonSet", None, json!(1), 1, None);
        assert_ne!(hash_revision(&cr, None), hash_revision(&cr, Some(1)));
        assert_ne!(hash_revision(&cr, Some(1)), hash_revision(&cr, Some(2)));
    }

    #[test]
    fn long_parent_names_are_cut_to_keep_the_name_valid() {
        let long = "a".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), MAX_PREFIX + 2);
        assert_eq!(revision_name("web", "abc"), "web-abc");
    }

    #[test]
    fn equality_is_by_hash_label_then_data() {
        let a = new_controller_revision(
            &parent(),
            "apps/v1",
            "StatefulSet",
            None,
            json!({"x": 1}),
            1,
            None,
        );
        let mut b = a.clone();
        b.revision = Some(7);
        assert!(equal_revision(&a, &b));
        let c = new_controller_revision(
            &parent(),
            "apps/v1",
            "StatefulSet",
            None,
            json!({"x": 2}),
            1,
            None,
        );
        assert!(!equal_revision(&a, &c));
        let all = [&a, &b, &c];
        assert_eq!(find_equal_revisions(&all, &a).len(), 2);
        assert_eq!(next_revision(&all), 8);
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn order_is_revision_then_creation_then_name() {
        let mk = |name: &str, revision: i64| ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: RawExtension(serde_json::Value::Null),
            revision: Some(revision),
        };
        let mut all = [mk("b", 2), mk("c", 1), mk("a", 2)];
        all.sort_by(revision_order);
        let names: Vec<_> = all
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn orphans_and_own_revisions_are_kept() {
        let mut cr =
            new_controller_revision(&parent(), "apps/v1", "StatefulSet", None, json!(1), 1, None);
        assert!(owned_or_orphan(&cr, "u-1"));
        assert!(!owned_or_orphan(&cr, "u-2"));
        cr.metadata.owner_references = None;
        assert!(owned_or_orphan(&cr, "u-2"));
    }
}

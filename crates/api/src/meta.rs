//! ObjectMeta rules shared by every kind.
//!
//! Owns: `ValidateObjectMeta` / `ValidateObjectMetaUpdate` (names per kind, namespace rules,
//! labels, annotations, owner references, finalizers, immutable identity fields) and the
//! `generateName` suffix generator.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;

use crate::field::{FieldError, FieldErrors, Path};
use crate::validation::{
    invalid_each, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, validate_immutable, validate_nonnegative,
};

/// Total size of all annotation keys and values (upstream `TotalAnnotationSizeLimitB`).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Which rule a kind's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Pods, ConfigMaps, Secrets, ServiceAccounts, Nodes, Events, Leases, PriorityClasses.
    Dns1123Subdomain,
    /// Namespaces.
    Dns1123Label,
    /// Services (upstream's `NameIsDNS1035Label`).
    Dns1035Label,
    /// Anything that only needs to be a valid URL path segment.
    PathSegment,
}

impl NameRule {
    /// Messages for `name`; with `prefix` set the value is a `generateName` prefix, whose
    /// trailing dash is allowed because a random suffix follows.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(&mask_trailing_dash(name, prefix)),
            NameRule::Dns1123Label => is_dns1123_label(&mask_trailing_dash(name, prefix)),
            NameRule::Dns1035Label => is_dns1035_label(&mask_trailing_dash(name, prefix)),
            NameRule::PathSegment => is_valid_path_segment_name(name, prefix),
        }
    }
}

fn mask_trailing_dash(name: &str, prefix: bool) -> String {
    if prefix && name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 1])
    } else {
        name.to_string()
    }
}

/// `IsValidPathSegmentName` (and its prefix variant, which skips the `.`/`..` check).
pub fn is_valid_path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if name == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// `ValidateObjectMeta` for a create. The caller has already filled `namespace` from the URL
/// and generated `name` from `generateName` (as the registry does before validating).
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_rule: NameRule,
) -> FieldErrors {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    if let Some(gn) = meta.generate_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(invalid_each(
            &path.child("generateName"),
            gn,
            name_rule.check(gn, true),
        ));
    }
    match meta.name.as_deref().filter(|s| !s.is_empty()) {
        None => errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        )),
        Some(name) => errs.extend(invalid_each(
            &path.child("name"),
            name,
            name_rule.check(name, false),
        )),
    }
    let ns = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required(path.child("namespace"), ""));
        } else {
            errs.extend(invalid_each(
                &path.child("namespace"),
                ns,
                is_dns1123_label(ns),
            ));
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        ));
    }
    errs.extend(validate_nonnegative(
        meta.generation.unwrap_or(0),
        &path.child("generation"),
    ));
    errs.extend(common_meta_checks(meta, &path));
    errs
}

/// The checks create and update share.
fn common_meta_checks(meta: &ObjectMeta, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(ann) = &meta.annotations {
        errs.extend(validate_annotations(ann, &path.child("annotations")));
    }
    if let Some(refs) = &meta.owner_references {
        errs.extend(validate_owner_references(
            refs,
            &path.child("ownerReferences"),
        ));
    }
    if let Some(f) = &meta.finalizers {
        errs.extend(validate_finalizers(f, &path.child("finalizers")));
    }
    errs
}

/// `ValidateLabels`: keys are qualified names, values valid label values; every error is
/// reported on the map's own path, as upstream does.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(invalid_each(path, k, is_qualified_name(k)));
        errs.extend(invalid_each(path, v, is_valid_label_value(v)));
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names (checked lower-cased), total size capped.
pub fn validate_annotations(ann: &BTreeMap<String, String>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in ann {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_owner_references(refs: &[OwnerReference], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion"),
                r.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                path.child("kind"),
                "",
                "must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                path.child("name"),
                "",
                "must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                path.child("uid"),
                "",
                "must not be empty",
            ));
        }
        if r.controller == Some(true) {
            let cur = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    serde_json::to_value(refs).unwrap_or(Value::Null),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {cur}"),
                )),
                None => first_controller = Some(cur),
            }
        }
    }
    errs
}

fn validate_finalizers(finalizers: &[String], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for f in finalizers {
        errs.extend(invalid_each(path, f, is_qualified_name(f)));
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(FieldError::invalid(
            path,
            Value::from(finalizers.to_vec()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: identity and lifecycle fields are immutable, `resourceVersion`
/// must be present (the registry copies the stored one in for unconditional updates before
/// validating), `generation` may not go down, and no finalizer may be added once deletion
/// has started.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> FieldErrors {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        let old_set: BTreeSet<&String> = old.finalizers.iter().flatten().collect();
        let extra: Vec<String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_set.contains(f))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|s| crate::field::go_quote(s)).collect();
            errs.push(FieldError::forbidden(
                path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    if new.resource_version.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::invalid(
            path.child("resourceVersion"),
            "",
            "must be specified for an update",
        ));
    }
    if new.generation.unwrap_or(0) < old.generation.unwrap_or(0) {
        errs.push(FieldError::invalid(
            path.child("generation"),
            new.generation.unwrap_or(0),
            "must not be decremented",
        ));
    }
    errs.extend(validate_immutable(
        &new.name,
        &old.name,
        &path.child("name"),
    ));
    errs.extend(validate_immutable(
        &new.namespace,
        &old.namespace,
        &path.child("namespace"),
    ));
    errs.extend(validate_immutable(&new.uid, &old.uid, &path.child("uid")));
    errs.extend(validate_immutable(
        &new.creation_timestamp,
        &old.creation_timestamp,
        &path.child("creationTimestamp"),
    ));
    errs.extend(validate_immutable(
        &new.deletion_timestamp,
        &old.deletion_timestamp,
        &path.child("deletionTimestamp"),
    ));
    errs.extend(validate_immutable(
        &new.deletion_grace_period_seconds,
        &old.deletion_grace_period_seconds,
        &path.child("deletionGracePeriodSeconds"),
    ));
    errs.extend(common_meta_checks(new, &path));
    errs
}

const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const MAX_GENERATED_PREFIX: usize = 63 - 5;

/// `generateName` + 5 random characters from upstream's alphabet (no vowels, no confusable
/// digits); the prefix is cut to 58 bytes so the whole fits a DNS label. `random` is the
/// caller's entropy; it is mixed so that consecutive seeds still give unrelated suffixes.
pub fn generate_name(prefix: &str, random: u64) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = prefix[..cut].to_string();
    // splitmix64 finaliser: spreads every input bit over the output.
    let mut z = random.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    for _ in 0..5 {
        out.push(NAME_ALPHABET[(z % NAME_ALPHABET.len() as u64) as usize] as char);
        z /= NAME_ALPHABET.len() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn names() {
        assert!(validate_object_meta(
            &meta("web-1.example", Some("default")),
            true,
            NameRule::Dns1123Subdomain
        )
        .is_empty());
        let errs = validate_object_meta(
            &meta("Foo_bar", Some("default")),
            true,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with(
            "metadata.name: Invalid value: \"Foo_bar\": a lowercase RFC 1123 subdomain"
        ));
        let errs = validate_object_meta(&meta("a.b", None), false, NameRule::Dns1123Label);
        assert!(errs[0]
            .to_string()
            .starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"));
        let errs = validate_object_meta(&ObjectMeta::default(), true, NameRule::Dns1123Subdomain);
        assert_eq!(
            msgs(&errs),
            vec![
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value"
            ]
        );
        let errs = validate_object_meta(&meta("n", Some("x")), false, NameRule::Dns1123Subdomain);
        assert_eq!(
            msgs(&errs),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let mut m = meta("web-abcde", Some("default"));
        m.generate_name = Some("web-".into());
        assert!(validate_object_meta(&m, true, NameRule::Dns1123Subdomain).is_empty());
        assert_eq!(
            is_valid_path_segment_name("..", false),
            vec!["may not be '..'"]
        );
        assert_eq!(
            is_valid_path_segment_name("a/b%", false),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let mut m = meta("x", Some("d"));
        m.labels = Some(BTreeMap::from([
            ("app".into(), "web".into()),
            ("bad key".into(), "v".into()),
        ]));
        m.annotations = Some(BTreeMap::from([(
            "k".into(),
            "v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT),
        )]));
        let errs = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        let got = msgs(&errs);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0]
            .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of"));
        assert_eq!(
            got[1],
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        let mut m = meta("x", Some("d"));
        m.labels = Some(BTreeMap::from([("app".into(), "x".repeat(64))]));
        let got = msgs(&validate_object_meta(&m, true, NameRule::Dns1123Subdomain));
        assert_eq!(
            got,
            vec![format!(
                "metadata.labels: Invalid value: \"{}\": must be no more than 63 characters",
                "x".repeat(64)
            )]
        );
    }

    #[test]
    fn owner_refs_and_finalizers() {
        let mut m = meta("x", Some("d"));
        let r = |name: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        };
        m.owner_references = Some(vec![r("a"), r("b")]);
        m.finalizers = Some(vec!["example.com/f".into(), "bad finalizer".into()]);
        let got = msgs(&validate_object_meta(&m, true, NameRule::Dns1123Subdomain));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"));
        assert!(got[1].starts_with("metadata.finalizers: Invalid value: \"bad finalizer\""));
    }

    #[test]
    fn updates() {
        let mut old = meta("x", Some("d"));
        old.uid = Some("1".into());
        old.resource_version = Some("5".into());
        let mut new = old.clone();
        assert!(validate_object_meta_update(&new, &old).is_empty());
        new.name = Some("y".into());
        new.uid = Some("2".into());
        new.resource_version = None;
        assert_eq!(
            msgs(&validate_object_meta_update(&new, &old)),
            vec![
                "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
                "metadata.name: Invalid value: \"y\": field is immutable",
                "metadata.uid: Invalid value: \"2\": field is immutable",
            ]
        );
        let mut old = meta("x", Some("d"));
        old.resource_version = Some("1".into());
        old.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(1).unwrap_or_default(),
        ));
        let mut new = old.clone();
        new.finalizers = Some(vec!["example.com/x".into()]);
        assert_eq!(
            msgs(&validate_object_meta_update(&new, &old)),
            vec!["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/x\"}"]
        );
    }

    #[test]
    fn generated_names() {
        let n = generate_name("web-", 42);
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(n[4..].bytes().all(|b| NAME_ALPHABET.contains(&b)));
        assert_ne!(generate_name("web-", 1), generate_name("web-", 2));
        let long = "a".repeat(100);
        assert_eq!(generate_name(&long, 7).len(), 63);
    }
}

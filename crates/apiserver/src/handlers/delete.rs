//! DELETE of one object and DELETECOLLECTION, with graceful deletion (the kind's hook: pods
//! on nodes), finalizers, preconditions and the garbage collector's propagation policies,
//! through the shared read-modify-write loop.
//!
//! Propagation (upstream's `deletionFinalizersForGarbageCollection`): `Orphan` puts the
//! `orphan` finalizer on the object, `Foreground` the `foregroundDeletion` finalizer, so the
//! object is only marked until the garbage collector has orphaned or deleted its dependents
//! and removed the finalizer; `Background` removes both and deletes at once (the collector
//! deletes the dependents afterwards). A request that names no policy keeps a GC finalizer
//! already on the object, else the kind's [`GarbageCollectionPolicy`] decides.

use http::{Response, StatusCode};
use serde_json::{json, Value};
use store::{KeyValue, Revision};

use super::list::{encode_list, read_page, Page};
use super::update::{read_modify_write, Change, Written};
use super::{object_response, Call};
use api::field::FieldError;

use crate::body::Body;
use crate::errors::ApiError;
use crate::filter::Filter;
use crate::object;
use crate::registry::Resource;
use crate::server::ApiServer;

/// How a kind is deleted (upstream's `RESTGracefulDeleteStrategy` and the store's
/// `ReturnDeletedObject`).
#[derive(Clone, Copy)]
pub struct DeleteStrategy {
    /// DELETE answers with the object rather than a Status (pods, service accounts).
    pub returns_object: bool,
    /// The grace period with which the object is only marked (deletionTimestamp = now +
    /// grace) until a zero-grace delete confirms; `None`: it goes at once unless it has
    /// finalizers.
    pub graceful: fn(&Value, &DeleteOptions) -> Option<i64>,
    /// Whether finalizers still hold the object (`metadata.finalizers`, and for namespaces
    /// `spec.finalizers`).
    pub has_finalizers: fn(&Value) -> bool,
    /// What marking an object for deletion changes beyond its metadata (a namespace turns
    /// `Terminating`).
    pub on_mark: fn(&mut Value),
    /// What happens to the dependents when the request names no propagation policy
    /// (upstream's `DefaultGarbageCollectionPolicy`; batch/v1 Jobs and core/v1
    /// ReplicationControllers orphan).
    pub gc_policy: GarbageCollectionPolicy,
}

/// Upstream's `rest.GarbageCollectionPolicy`: a kind's default for its dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GarbageCollectionPolicy {
    /// Dependents are deleted (in the background unless the request says foreground).
    DeleteDependents,
    /// Dependents are orphaned: the `orphan` finalizer is added.
    OrphanDependents,
    /// The kind takes no part in garbage collection: no GC finalizer is ever added.
    Unsupported,
}

/// `metav1.DeletionPropagation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// The finalizer that makes the garbage collector orphan the dependents first
/// (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that makes the garbage collector delete the dependents first
/// (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Deleted at once unless `metadata.finalizers` hold it; answers with a Status.
pub const PLAIN: DeleteStrategy = DeleteStrategy {
    returns_object: false,
    graceful: no_grace,
    has_finalizers: metadata_finalizers,
    on_mark: unchanged,
    gc_policy: GarbageCollectionPolicy::DeleteDependents,
};

fn no_grace(_: &Value, _: &DeleteOptions) -> Option<i64> {
    None
}

fn unchanged(_: &mut Value) {}

/// `metadata.finalizers` is not empty.
pub fn metadata_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// `metav1.DeleteOptions`, from the body or the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    pub propagation: Option<Propagation>,
    /// The deprecated `orphanDependents`.
    pub orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    pub fn from_call(call: &Call) -> Result<DeleteOptions, ApiError> {
        let mut opts = DeleteOptions {
            grace_period: call.query.int("gracePeriodSeconds")?,
            dry_run: call.query.dry_run()?,
            orphan_dependents: match call.query.non_empty("orphanDependents") {
                None => None,
                Some("true" | "1") => Some(true),
                Some("false" | "0") => Some(false),
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid value for orphanDependents: {other:?}"
                    )))
                }
            },
            ..Default::default()
        };
        let mut policy = call
            .query
            .non_empty("propagationPolicy")
            .map(str::to_string);
        if !call.body.is_empty() {
            let body: Value = if call.is_protobuf() {
                call.body_value()?
            } else {
                serde_json::from_slice(&call.body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
            };
            if let Some(g) = body["gracePeriodSeconds"].as_i64() {
                opts.grace_period = Some(g);
            }
            if let Some(u) = body["preconditions"]["uid"].as_str() {
                opts.uid = Some(u.to_string());
            }
            if let Some(rv) = body["preconditions"]["resourceVersion"].as_str() {
                opts.resource_version = Some(rv.to_string());
            }
            if body["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"))
            {
                opts.dry_run = true;
            }
            if let Some(p) = body.get("propagationPolicy").filter(|p| !p.is_null()) {
                policy = Some(p.as_str().unwrap_or_default().to_string());
            }
            if let Some(o) = body["orphanDependents"].as_bool() {
                opts.orphan_dependents = Some(o);
            }
        }
        let mut causes = Vec::new();
        if let Some(policy) = &policy {
            opts.propagation = match policy.as_str() {
                "Orphan" => Some(Propagation::Orphan),
                "Background" => Some(Propagation::Background),
                "Foreground" => Some(Propagation::Foreground),
                other => {
                    causes.push(FieldError::not_supported(
                        "propagationPolicy",
                        other,
                        &["Foreground", "Background", "Orphan", "nil"],
                    ));
                    None
                }
            };
            if opts.orphan_dependents.is_some() {
                causes.insert(
                    0,
                    FieldError::invalid(
                        "propagationPolicy",
                        policy.as_str(),
                        "orphanDependents and deletionPropagation cannot be both set",
                    ),
                );
            }
        }
        // Upstream's ValidateDeleteOptions, answered as an invalid `DeleteOptions`.
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                kind: "DeleteOptions".into(),
                group: "meta.k8s.io".into(),
                name: String::new(),
                message: api::field::invalid_message("DeleteOptions.meta.k8s.io", "", &causes),
                causes,
            });
        }
        if let Some(g) = opts.grace_period {
            if g < 0 {
                return Err(ApiError::BadRequest(format!(
                    "gracePeriodSeconds: Invalid value: {g}: must be greater than or equal to 0"
                )));
            }
        }
        Ok(opts)
    }
}

/// What a delete did.
pub enum Deleted {
    /// The object is gone; the value is its last state, at the deletion revision.
    Gone(KeyValue),
    /// The object is marked for deletion (graceful period or finalizers) and still exists.
    Marked(KeyValue),
}

pub async fn delete(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let opts = DeleteOptions::from_call(&call)?;
    let deleted =
        delete_object(&call.server, resource, call.namespace(), call.name(), &opts).await?;
    let kv = match &deleted {
        Deleted::Gone(kv) | Deleted::Marked(kv) => kv,
    };
    // A marked object, or a kind that says so, answers with the object; others with a
    // success Status.
    if resource.delete.returns_object || matches!(deleted, Deleted::Marked(_)) {
        return object_response(&call, StatusCode::OK, object::render(kv), &[]);
    }
    let uid = object::parse(kv)
        .ok()
        .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut details = json!({ "name": call.name(), "kind": resource.plural, "uid": uid });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details,
    });
    Ok(super::encoded(
        call.accept(),
        StatusCode::OK,
        status.to_string().into_bytes(),
        &[],
    ))
}

/// Deletes one object, as upstream's registry does: preconditions first; an object the
/// kind's graceful hook holds (a pod running on a node) is only marked (deletionTimestamp =
/// now + grace) until a zero-grace delete confirms; an object with finalizers is marked
/// until they are removed. Runs in the shared read-modify-write loop, so a concurrent write
/// makes it look again.
pub async fn delete_object(
    server: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let written = read_modify_write(
        server,
        resource,
        namespace,
        name,
        None,
        opts.dry_run,
        |mut obj, current| {
            check_preconditions(resource, name, &obj, current.mod_revision, opts)?;
            // A graceful deletion still pending keeps its finalizers (upstream's
            // `pendingGraceful`: they cannot be changed through DeleteOptions then).
            if !pending_graceful(resource, &obj, opts) {
                let current: Vec<String> = obj["metadata"]["finalizers"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(finalizers) =
                    deletion_finalizers(resource.delete.gc_policy, &current, opts)
                {
                    let meta = object::meta_mut(&mut obj);
                    if finalizers.is_empty() {
                        meta.remove("finalizers");
                    } else {
                        meta.insert("finalizers".into(), json!(finalizers));
                    }
                }
            }
            let Some(grace) = marking(resource, &obj, opts) else {
                return Ok(Change::Delete);
            };
            let meta = object::meta_mut(&mut obj);
            let now = jiff::Timestamp::now();
            let deadline = now + jiff::SignedDuration::from_secs(grace);
            let existing = meta
                .get("deletionTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            // A second delete may only shorten the grace period.
            let keep_existing = existing.is_some_and(|e| e <= deadline);
            if !keep_existing {
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            (resource.delete.on_mark)(&mut obj);
            Ok(Change::Write(obj))
        },
    )
    .await?;
    Ok(match written {
        Written::Deleted(kv) => Deleted::Gone(kv),
        Written::Updated(kv) => Deleted::Marked(kv),
    })
}

fn check_preconditions(
    resource: &Resource,
    name: &str,
    obj: &Value,
    rev: Revision,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &opts.uid {
        let actual = obj["metadata"]["uid"].as_str().unwrap_or_default();
        if uid != actual {
            return Err(ApiError::Conflict {
                resource: resource.qualified(),
                name: name.to_string(),
                detail: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            });
        }
    }
    if let Some(rv) = &opts.resource_version {
        if *rv != rev.to_string() {
            return Err(ApiError::Conflict {
                resource: resource.qualified(),
                name: name.to_string(),
                detail: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
                ),
            });
        }
    }
    Ok(())
}

/// Whether the object is already in a graceful deletion this request does not shorten.
fn pending_graceful(resource: &Resource, obj: &Value, opts: &DeleteOptions) -> bool {
    let meta = &obj["metadata"];
    let current = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
    if meta["deletionTimestamp"].is_null() || current <= 0 {
        return false;
    }
    (resource.delete.graceful)(obj, opts).is_some_and(|grace| grace >= current)
}

/// Upstream's `deletionFinalizersForGarbageCollection`: the finalizers the object must carry
/// for the propagation this delete asks for, or `None` when they are right already. An
/// explicit `orphanDependents` wins, then `propagationPolicy`, then a GC finalizer already on
/// the object, then the kind's default.
pub fn deletion_finalizers(
    policy: GarbageCollectionPolicy,
    finalizers: &[String],
    opts: &DeleteOptions,
) -> Option<Vec<String>> {
    if policy == GarbageCollectionPolicy::Unsupported {
        return None;
    }
    let existing = finalizers.iter().find_map(|f| match f.as_str() {
        ORPHAN_FINALIZER => Some(Propagation::Orphan),
        FOREGROUND_FINALIZER => Some(Propagation::Foreground),
        _ => None,
    });
    let propagation = match (opts.orphan_dependents, opts.propagation) {
        (Some(true), _) => Propagation::Orphan,
        (Some(false), _) => Propagation::Background,
        (None, Some(p)) => p,
        (None, None) => existing.unwrap_or(match policy {
            GarbageCollectionPolicy::OrphanDependents => Propagation::Orphan,
            _ => Propagation::Background,
        }),
    };
    let mut wanted: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    match propagation {
        Propagation::Orphan => wanted.push(ORPHAN_FINALIZER.into()),
        Propagation::Foreground => wanted.push(FOREGROUND_FINALIZER.into()),
        Propagation::Background => {}
    }
    let as_set = |f: &[String]| f.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    (as_set(&wanted) != as_set(finalizers)).then_some(wanted)
}

/// `Some(grace)` when the object must be marked instead of removed.
fn marking(resource: &Resource, obj: &Value, opts: &DeleteOptions) -> Option<i64> {
    if let Some(grace) = (resource.delete.graceful)(obj, opts) {
        return Some(grace);
    }
    (resource.delete.has_finalizers)(obj).then_some(0)
}

pub async fn delete_collection(call: Call) -> Result<Response<Body>, ApiError> {
    let resource = call.resource();
    let opts = DeleteOptions::from_call(&call)?;
    let filter = Filter::from_query(&call.query, resource)?;
    let page = read_page(&call, resource, &filter).await?;
    let mut deleted = Vec::with_capacity(page.items.len());
    for kv in &page.items {
        let obj = object::parse(kv).map_err(|e| ApiError::Internal(e.to_string()))?;
        let ns = object::namespace(&obj).map(str::to_string);
        match delete_object(
            &call.server,
            resource,
            ns.as_deref(),
            object::name(&obj),
            &opts,
        )
        .await
        {
            Ok(Deleted::Gone(kv) | Deleted::Marked(kv)) => deleted.push(kv),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let out = Page {
        items: deleted,
        revision: page.revision,
        continue_token: None,
        remaining: None,
    };
    Ok(super::encoded(
        call.accept(),
        StatusCode::OK,
        encode_list(resource, &out)?,
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn deletion_finalizers_follow_upstream_precedence() {
        use GarbageCollectionPolicy::*;
        let opts = |propagation, orphan_dependents| DeleteOptions {
            propagation,
            orphan_dependents,
            ..Default::default()
        };
        let fg = Some(Propagation::Foreground);
        let bg = Some(Propagation::Background);
        let orphan = Some(Propagation::Orphan);
        // (kind default, finalizers, propagation, orphanDependents) → wanted finalizers
        type Case = (
            GarbageCollectionPolicy,
            &'static [&'static str],
            Option<Propagation>,
            Option<bool>,
            Option<&'static [&'static str]>,
        );
        let cases: Vec<Case> = vec![
            (DeleteDependents, &[], None, None, None),
            (
                DeleteDependents,
                &[],
                fg,
                None,
                Some(&["foregroundDeletion"]),
            ),
            (DeleteDependents, &[], orphan, None, Some(&["orphan"])),
            (DeleteDependents, &[], bg, None, None),
            (OrphanDependents, &[], None, None, Some(&["orphan"])),
            (OrphanDependents, &[], bg, None, None),
            (DeleteDependents, &[], None, Some(true), Some(&["orphan"])),
            (OrphanDependents, &[], None, Some(false), None),
            // A finalizer already there is kept when the request says nothing…
            (OrphanDependents, &["foregroundDeletion"], None, None, None),
            (DeleteDependents, &["orphan"], None, None, None),
            // …and replaced when it asks for another policy.
            (
                DeleteDependents,
                &["x/y", "foregroundDeletion"],
                orphan,
                None,
                Some(&["x/y", "orphan"]),
            ),
            (
                DeleteDependents,
                &["orphan", "x/y"],
                bg,
                None,
                Some(&["x/y"]),
            ),
            (DeleteDependents, &["orphan"], orphan, None, None),
            (Unsupported, &[], fg, None, None),
        ];
        for (policy, finalizers, propagation, orphan_dependents, want) in cases {
            let got = deletion_finalizers(
                policy,
                &strings(finalizers),
                &opts(propagation, orphan_dependents),
            );
            assert_eq!(
                got,
                want.map(strings),
                "{policy:?} {finalizers:?} {propagation:?} {orphan_dependents:?}"
            );
        }
    }
}

//! DELETE of one object and DELETECOLLECTION, with graceful deletion (the kind's hook: pods
//! on nodes), finalizers and preconditions, through the shared read-modify-write loop.

use http::{Response, StatusCode};
use serde_json::{json, Value};
use store::{KeyValue, Revision};

use super::list::{encode_list, read_page, Page};
use super::update::{read_modify_write, Change, Written};
use super::{object_response, Call};
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
}

/// Deleted at once unless `metadata.finalizers` hold it; answers with a Status.
pub const PLAIN: DeleteStrategy = DeleteStrategy {
    returns_object: false,
    graceful: no_grace,
    has_finalizers: metadata_finalizers,
    on_mark: unchanged,
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
}

impl DeleteOptions {
    pub fn from_call(call: &Call) -> Result<DeleteOptions, ApiError> {
        let mut opts = DeleteOptions {
            grace_period: call.query.int("gracePeriodSeconds")?,
            dry_run: call.query.dry_run()?,
            ..Default::default()
        };
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
            match body["propagationPolicy"].as_str() {
                None | Some("Orphan" | "Background" | "Foreground") => {}
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    )))
                }
            }
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

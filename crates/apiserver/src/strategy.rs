//! Per-kind REST strategy: how a kind is decoded, defaulted, validated and reset on create,
//! update and status update, as upstream's `registry/<kind>/strategy.go` files do.
//!
//! The handlers work on `serde_json::Value`; a strategy goes through the typed k8s-openapi
//! struct for everything kind-specific, so what is stored is always what the typed schema
//! allows, in the typed field order (`apiVersion`, `kind`, `metadata` first).

use std::marker::PhantomData;

use api::field::{FieldError, FieldErrors};
use api::patch::PatchKind;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A decoded request body: the normalized object and the unknown fields it carried.
pub struct Decoded {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

pub trait Strategy: Sync {
    /// Decode through the typed schema; `Err` is the decoder's message (a 400).
    fn decode(&self, object: Value) -> Result<Decoded, String>;
    /// The same from JSON bytes, in one pass (the hot path of create and update).
    fn decode_json(&self, body: &[u8]) -> Result<Decoded, String>;
    /// Defaults and create-time resets, then validation; the stored form.
    fn prepare_create(&self, object: &Value) -> Result<Vec<u8>, FieldErrors>;
    /// Update of the main resource: status is carried over from `old` where the kind has one.
    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), FieldErrors>;
    /// Update of the `status` subresource: everything but status comes from `old`.
    fn prepare_status_update(&self, new: &mut Value, old: &Value) -> Result<(), FieldErrors>;
    /// Update of `pods/ephemeralcontainers`: only `spec.ephemeralContainers` (and metadata)
    /// comes from `new`. `None` for kinds without that subresource.
    fn prepare_ephemeral_containers_update(
        &self,
        new: &mut Value,
        old: &Value,
    ) -> Option<Result<(), FieldErrors>>;
    /// The stored form (typed field order).
    fn encode(&self, object: &Value) -> Result<Vec<u8>, String>;
    fn patch_kind(&self) -> PatchKind;
}

/// A [`Strategy`] assembled from the typed functions of one kind.
pub struct Kind<T> {
    default: fn(&mut T),
    validate: fn(&T) -> FieldErrors,
    validate_update: fn(&T, &T) -> FieldErrors,
    /// Create-time resets (pods start `Pending`; namespaces `Active`).
    on_create: fn(&mut T),
    /// Whether the main resource ignores status (kinds with a `status` subresource).
    status_subresource: bool,
    copy_status: fn(&mut T, &T),
    copy_all_but_status: fn(&mut T, &T),
    validate_status_update: fn(&T, &T) -> FieldErrors,
    /// The `ephemeralcontainers` subresource's update: carry over everything else from the
    /// old object, then validate (pods only).
    ephemeral_containers_update: Option<fn(&mut T, &T) -> FieldErrors>,
    patch_kind: PatchKind,
    _kind: PhantomData<fn() -> T>,
}

fn nothing<T>(_: &mut T) {}
fn no_errors<T>(_: &T, _: &T) -> FieldErrors {
    Vec::new()
}
fn keep<T>(_: &mut T, _: &T) {}

impl<T> Strategy for Kind<T>
where
    T: Serialize + DeserializeOwned + Clone,
{
    fn decode(&self, object: Value) -> Result<Decoded, String> {
        let mut unknown = Vec::new();
        let typed: T = serde_ignored::deserialize(object, |path| unknown.push(field_path(&path)))
            .map_err(|e| e.to_string())?;
        let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        Ok(Decoded {
            object,
            unknown_fields: unknown,
        })
    }

    fn decode_json(&self, body: &[u8]) -> Result<Decoded, String> {
        let mut unknown = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(body);
        let typed: T = serde_ignored::deserialize(&mut de, |path| unknown.push(field_path(&path)))
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        Ok(Decoded {
            object,
            unknown_fields: unknown,
        })
    }

    fn prepare_create(&self, object: &Value) -> Result<Vec<u8>, FieldErrors> {
        let mut typed: T = from_value(object)?;
        (self.default)(&mut typed);
        (self.on_create)(&mut typed);
        let errs = (self.validate)(&typed);
        if !errs.is_empty() {
            return Err(errs);
        }
        serde_json::to_vec(&typed).map_err(|e| vec![internal(e.to_string())])
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), FieldErrors> {
        let mut typed: T = from_value(new)?;
        let old_typed: T = from_value(old)?;
        (self.default)(&mut typed);
        if self.status_subresource {
            (self.copy_status)(&mut typed, &old_typed);
        }
        let errs = (self.validate_update)(&typed, &old_typed);
        if !errs.is_empty() {
            return Err(errs);
        }
        *new = to_value(&typed)?;
        Ok(())
    }

    fn prepare_status_update(&self, new: &mut Value, old: &Value) -> Result<(), FieldErrors> {
        let mut typed: T = from_value(new)?;
        let old_typed: T = from_value(old)?;
        (self.copy_all_but_status)(&mut typed, &old_typed);
        let errs = (self.validate_status_update)(&typed, &old_typed);
        if !errs.is_empty() {
            return Err(errs);
        }
        *new = to_value(&typed)?;
        Ok(())
    }

    fn prepare_ephemeral_containers_update(
        &self,
        new: &mut Value,
        old: &Value,
    ) -> Option<Result<(), FieldErrors>> {
        let update = self.ephemeral_containers_update?;
        Some((|| {
            let mut typed: T = from_value(new)?;
            let old_typed: T = from_value(old)?;
            (self.default)(&mut typed);
            let errs = update(&mut typed, &old_typed);
            if !errs.is_empty() {
                return Err(errs);
            }
            *new = to_value(&typed)?;
            Ok(())
        })())
    }

    fn encode(&self, object: &Value) -> Result<Vec<u8>, String> {
        let typed: T = T::deserialize(object).map_err(|e| e.to_string())?;
        serde_json::to_vec(&typed).map_err(|e| e.to_string())
    }

    fn patch_kind(&self) -> PatchKind {
        self.patch_kind
    }
}

fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, FieldErrors> {
    // Deserializing from a borrowed Value avoids cloning the whole tree first.
    T::deserialize(v).map_err(|e| vec![internal(e.to_string())])
}

fn to_value<T: Serialize>(t: &T) -> Result<Value, FieldErrors> {
    serde_json::to_value(t).map_err(|e| vec![internal(e.to_string())])
}

fn internal(detail: String) -> FieldError {
    FieldError {
        kind: api::field::ErrorType::Internal,
        field: String::new(),
        value: None,
        detail,
    }
}

/// `spec.containers[0].imagePullPolice`, as upstream's strict decoder names unknown fields.
pub(crate) fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

// ---- pods -------------------------------------------------------------------------------

fn pod_on_create(pod: &mut Pod) {
    api::pod::prepare_pod_for_create(pod);
    pod.metadata.generation = Some(1);
}

fn pod_copy_status(new: &mut Pod, old: &Pod) {
    new.status = old.status.clone();
    // Pod generation counts spec changes (PodObservedGenerationTracking).
    let generation = old.metadata.generation.unwrap_or(1);
    new.metadata.generation = Some(if new.spec != old.spec {
        generation + 1
    } else {
        generation
    });
}

fn pod_copy_all_but_status(new: &mut Pod, old: &Pod) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// Upstream's `dropNonEphemeralContainerUpdates`: the spec is the old one but for its
/// ephemeral containers, the status the old one; generation counts the change.
fn pod_ephemeral_containers_update(new: &mut Pod, old: &Pod) -> FieldErrors {
    let ephemeral = new
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone());
    let mut spec = old.spec.clone().unwrap_or_default();
    spec.ephemeral_containers = ephemeral;
    new.spec = Some(spec);
    pod_copy_status(new, old);
    api::pod::validate_pod_ephemeral_containers_update(new, old)
}

pub static POD: Kind<Pod> = Kind {
    default: api::pod::default_pod,
    validate: api::pod::validate_pod,
    validate_update: api::pod::validate_pod_update,
    on_create: pod_on_create,
    status_subresource: true,
    copy_status: pod_copy_status,
    copy_all_but_status: pod_copy_all_but_status,
    validate_status_update: api::pod::validate_pod_status_update,
    ephemeral_containers_update: Some(pod_ephemeral_containers_update),
    patch_kind: PatchKind::Pod,
    _kind: PhantomData,
};

// ---- namespaces -------------------------------------------------------------------------

fn namespace_copy_all_but_status(new: &mut Namespace, old: &Namespace) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

pub static NAMESPACE: Kind<Namespace> = Kind {
    default: api::default_namespace,
    validate: api::validate_namespace,
    validate_update: api::validate_namespace_update,
    on_create: api::prepare_namespace_for_create,
    status_subresource: true,
    copy_status: api::prepare_namespace_for_update,
    copy_all_but_status: namespace_copy_all_but_status,
    validate_status_update: api::validate_namespace_status_update,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::Namespace,
    _kind: PhantomData,
};

// ---- nodes ------------------------------------------------------------------------------

fn node_copy_status(new: &mut Node, old: &Node) {
    new.status = old.status.clone();
}

fn node_copy_all_but_status(new: &mut Node, old: &Node) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

pub static NODE: Kind<Node> = Kind {
    default: api::default_node,
    validate: api::validate_node,
    validate_update: api::validate_node_update,
    on_create: nothing,
    status_subresource: true,
    copy_status: node_copy_status,
    copy_all_but_status: node_copy_all_but_status,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::Node,
    _kind: PhantomData,
};

// ---- kinds without a status subresource -------------------------------------------------

fn validate_core_event(e: &Event) -> FieldErrors {
    api::validate_event(e, false)
}
fn validate_core_event_update(new: &Event, old: &Event) -> FieldErrors {
    api::validate_event_update(new, old, false)
}
fn validate_event_v1(e: &Event) -> FieldErrors {
    api::validate_event(e, true)
}
fn validate_event_v1_update(new: &Event, old: &Event) -> FieldErrors {
    api::validate_event_update(new, old, true)
}

pub static EVENT: Kind<Event> = Kind {
    default: nothing,
    validate: validate_core_event,
    validate_update: validate_core_event_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::Event,
    _kind: PhantomData,
};

/// events.k8s.io/v1 events are stored as core/v1 events; the handlers convert at the edge
/// (see `crate::convert`), so the strategy is the core one.
pub static EVENT_V1: Kind<Event> = Kind {
    default: nothing,
    validate: validate_event_v1,
    validate_update: validate_event_v1_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::Event,
    _kind: PhantomData,
};

pub static CONFIG_MAP: Kind<ConfigMap> = Kind {
    default: nothing,
    validate: api::validate_config_map,
    validate_update: api::validate_config_map_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::ConfigMap,
    _kind: PhantomData,
};

pub static SECRET: Kind<Secret> = Kind {
    default: api::default_secret,
    validate: api::validate_secret,
    validate_update: api::validate_secret_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::Secret,
    _kind: PhantomData,
};

pub static SERVICE_ACCOUNT: Kind<ServiceAccount> = Kind {
    default: nothing,
    validate: api::validate_service_account,
    validate_update: api::validate_service_account_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::ServiceAccount,
    _kind: PhantomData,
};

pub static LEASE: Kind<Lease> = Kind {
    default: nothing,
    validate: api::validate_lease,
    validate_update: api::validate_lease_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::Lease,
    _kind: PhantomData,
};

pub static PRIORITY_CLASS: Kind<PriorityClass> = Kind {
    default: api::default_priority_class,
    validate: api::validate_priority_class,
    validate_update: api::validate_priority_class_update,
    on_create: nothing,
    status_subresource: false,
    copy_status: keep,
    copy_all_but_status: keep,
    validate_status_update: no_errors,
    ephemeral_containers_update: None,
    patch_kind: PatchKind::PriorityClass,
    _kind: PhantomData,
};

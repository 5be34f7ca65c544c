//! The typed half of the per-kind recipe: how a kind is decoded, defaulted, validated and
//! reset on create, update and status update, as upstream's `registry/<kind>/strategy.go`
//! files do. Each kind module in [`crate::kinds`] builds one [`TypedStrategy`] from the
//! pure functions of its type (in the `api` crate); this file owns what every kind gets
//! alike, so no kind can miss it:
//!
//! - the decode through the typed k8s-openapi struct (unknown fields reported), so what is
//!   stored is always what the typed schema allows, in the typed field order (`apiVersion`,
//!   `kind`, `metadata` first);
//! - upstream's `rest.BeforeCreate` / `rest.BeforeUpdate` ObjectMeta checks, run after the
//!   kind's own validation passed (path-segment name, namespace present or forbidden by
//!   scope, labels, annotations up to 256 KiB, owner references, finalizers; on update the
//!   immutable identity fields). A kind whose validator forgets metadata is still checked.

use std::marker::PhantomData;

use api::field::{FieldError, FieldErrors};
use api::meta::{validate_object_meta, validate_object_meta_update, NameRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
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
    /// Defaults and create-time resets, then validation (the kind's, then the generic
    /// ObjectMeta rules for a resource of this scope); the stored form.
    fn prepare_create(&self, object: &Value, namespaced: bool) -> Result<Vec<u8>, FieldErrors>;
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
    /// Update of `certificatesigningrequests/approval`: only the conditions come from
    /// `new`. `None` for kinds without that subresource.
    fn prepare_approval_update(
        &self,
        new: &mut Value,
        old: &Value,
    ) -> Option<Result<(), FieldErrors>>;
    /// The stored form (typed field order).
    fn encode(&self, object: &Value) -> Result<Vec<u8>, String>;
}

/// A [`Strategy`] assembled from the typed functions of one kind. Start from
/// [`TypedStrategy::new`] and override what the kind has:
///
/// ```ignore
/// pub static STRATEGY: TypedStrategy<Secret> = TypedStrategy {
///     default: api::default_secret,
///     ..TypedStrategy::new(api::validate_secret, api::validate_secret_update)
/// };
/// ```
pub struct TypedStrategy<T> {
    pub default: fn(&mut T),
    pub validate: fn(&T) -> FieldErrors,
    pub validate_update: fn(&T, &T) -> FieldErrors,
    /// Create-time resets (pods start `Pending`; namespaces `Active`).
    pub on_create: fn(&mut T),
    /// Upstream's `PrepareForUpdate` of the main resource: kinds with a `status`
    /// subresource carry status over from the old object; generations are counted here.
    pub prepare_for_update: fn(&mut T, &T),
    /// The `status` subresource's `PrepareForUpdate`: everything but status from the old
    /// object.
    pub copy_all_but_status: fn(&mut T, &T),
    pub validate_status_update: fn(&T, &T) -> FieldErrors,
    /// The `ephemeralcontainers` subresource's update: carry over everything else from the
    /// old object, then validate (pods only).
    pub ephemeral_containers_update: Option<fn(&mut T, &T) -> FieldErrors>,
    /// The `approval` subresource's update: carry over everything but the conditions,
    /// then validate (CertificateSigningRequests only).
    pub approval_update: Option<fn(&mut T, &T) -> FieldErrors>,
    pub _kind: PhantomData<fn() -> T>,
}

fn nothing<T>(_: &mut T) {}
fn no_errors<T>(_: &T, _: &T) -> FieldErrors {
    Vec::new()
}
fn keep<T>(_: &mut T, _: &T) {}

impl<T> TypedStrategy<T> {
    /// A kind with no defaults, no create-time resets and no status subresource.
    pub const fn new(
        validate: fn(&T) -> FieldErrors,
        validate_update: fn(&T, &T) -> FieldErrors,
    ) -> Self {
        TypedStrategy {
            default: nothing,
            validate,
            validate_update,
            on_create: nothing,
            prepare_for_update: keep,
            copy_all_but_status: keep,
            validate_status_update: no_errors,
            ephemeral_containers_update: None,
            approval_update: None,
            _kind: PhantomData,
        }
    }
}

/// Upstream's `rest.BeforeCreate` ObjectMeta check, run once the kind's validation passed:
/// names need only be valid path segments here (kinds check their stricter rule themselves).
fn generic_create_meta(meta: &ObjectMeta, namespaced: bool) -> FieldErrors {
    validate_object_meta(meta, namespaced, NameRule::PathSegment)
}

/// Upstream's `rest.BeforeUpdate` ObjectMeta check, likewise.
fn generic_update_meta(new: &ObjectMeta, old: &ObjectMeta) -> FieldErrors {
    validate_object_meta_update(new, old)
}

impl<T> Strategy for TypedStrategy<T>
where
    T: Serialize + DeserializeOwned + Clone + Metadata<Ty = ObjectMeta>,
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

    fn prepare_create(&self, object: &Value, namespaced: bool) -> Result<Vec<u8>, FieldErrors> {
        let mut typed: T = from_value(object)?;
        (self.default)(&mut typed);
        (self.on_create)(&mut typed);
        let errs = (self.validate)(&typed);
        if !errs.is_empty() {
            return Err(errs);
        }
        let errs = generic_create_meta(typed.metadata(), namespaced);
        if !errs.is_empty() {
            return Err(errs);
        }
        serde_json::to_vec(&typed).map_err(|e| vec![internal(e.to_string())])
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), FieldErrors> {
        let mut typed: T = from_value(new)?;
        let old_typed: T = from_value(old)?;
        (self.default)(&mut typed);
        (self.prepare_for_update)(&mut typed, &old_typed);
        let errs = (self.validate_update)(&typed, &old_typed);
        if !errs.is_empty() {
            return Err(errs);
        }
        let errs = generic_update_meta(typed.metadata(), old_typed.metadata());
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
        let errs = generic_update_meta(typed.metadata(), old_typed.metadata());
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
            let mut errs = update(&mut typed, &old_typed);
            if errs.is_empty() {
                errs = generic_update_meta(typed.metadata(), old_typed.metadata());
            }
            if !errs.is_empty() {
                return Err(errs);
            }
            *new = to_value(&typed)?;
            Ok(())
        })())
    }

    fn prepare_approval_update(
        &self,
        new: &mut Value,
        old: &Value,
    ) -> Option<Result<(), FieldErrors>> {
        let update = self.approval_update?;
        Some(subresource_update(new, old, update))
    }

    fn encode(&self, object: &Value) -> Result<Vec<u8>, String> {
        let typed: T = T::deserialize(object).map_err(|e| e.to_string())?;
        serde_json::to_vec(&typed).map_err(|e| e.to_string())
    }
}

/// A subresource's own update (`update` carries over what it does not write and
/// validates), then the generic ObjectMeta update rules.
fn subresource_update<T>(
    new: &mut Value,
    old: &Value,
    update: fn(&mut T, &T) -> FieldErrors,
) -> Result<(), FieldErrors>
where
    T: Serialize + DeserializeOwned + Metadata<Ty = ObjectMeta>,
{
    let mut typed: T = from_value(new)?;
    let old_typed: T = from_value(old)?;
    let mut errs = update(&mut typed, &old_typed);
    if errs.is_empty() {
        errs = generic_update_meta(typed.metadata(), old_typed.metadata());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    *new = to_value(&typed)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::Strategy;
    use crate::kinds;

    /// What a kind decodes has a stored form that decodes to itself, floats included: the
    /// fuzzer found a float in `managedFields[].fieldsV1` (free-form JSON) that changed in
    /// its last bit on every store until JSON parsing was made correctly rounded
    /// (serde_json's `float_roundtrip`, as Go's encoding/json parses).
    #[test]
    fn stored_forms_decode_to_themselves() {
        let body = br#"{"metadata":{"name":"c","managedFields":[{"manager":"m",
            "fieldsType":"FieldsV1","fieldsV1":[7.950001771221032e-159, 0.1, 1e300]}]}}"#;
        let strategy: &dyn Strategy = &kinds::configmap::STRATEGY;
        let decoded = strategy.decode_json(body).unwrap_or_else(|e| panic!("{e}"));
        let stored = strategy
            .encode(&decoded.object)
            .unwrap_or_else(|e| panic!("{e}"));
        let again = strategy
            .decode_json(&stored)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.object, decoded.object);
        assert_eq!(
            decoded.object["metadata"]["managedFields"][0]["fieldsV1"][0],
            serde_json::json!(7.950001771221032e-159)
        );
    }
}

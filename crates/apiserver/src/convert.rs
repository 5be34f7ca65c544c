//! Conversion at the API edge, for kinds served in another form than they are stored in
//! (events.k8s.io/v1 Events are stored as core/v1 Events, as upstream stores them). A kind
//! module declares its [`Conversion`]; the handlers call it on the way in and out and
//! never ask which kind it is.

use serde_json::Value;

/// A body in the stored form, and the fields of the served form it had that the served
/// schema lacks.
pub type Stored = (Value, Vec<String>);

/// How a resource's served form maps to its stored form.
#[derive(Clone, Copy)]
pub struct Conversion {
    /// A request body (served form) as the stored form, with the fields of the served form's
    /// schema the body had but the schema lacks (for field validation).
    pub to_storage: fn(Value) -> Result<Stored, String>,
    /// A stored object as the served form.
    pub from_storage: fn(Value) -> Result<Value, String>,
}

/// A body in the served form `S` as the stored form `T`, via `convert`, naming the unknown
/// fields of `S` the body carried.
pub fn typed_to_storage<S, T>(v: Value, convert: fn(S) -> T) -> Result<Stored, String>
where
    S: serde::de::DeserializeOwned,
    T: serde::Serialize,
{
    let mut unknown = Vec::new();
    let served: S =
        serde_ignored::deserialize(v, |path| unknown.push(crate::strategy::field_path(&path)))
            .map_err(|e| e.to_string())?;
    let stored = serde_json::to_value(convert(served)).map_err(|e| e.to_string())?;
    Ok((stored, unknown))
}

/// A stored object `T` as the served form `S`, via `convert`.
pub fn typed_from_storage<T, S>(v: Value, convert: fn(T) -> S) -> Result<Value, String>
where
    T: serde::de::DeserializeOwned,
    S: serde::Serialize,
{
    let stored: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(convert(stored)).map_err(|e| e.to_string())
}

//! apps/v1 ControllerRevision: `ValidateControllerRevision*` (`data` required and immutable,
//! `revision` not negative).

use super::*;

/// `ValidateControllerRevision`.
pub fn validate_controller_revision(r: &ControllerRevision) -> FieldErrors {
    let mut errs = validate_object_meta(&r.metadata, true, NameRule::Dns1123Subdomain);
    if r.data.0.is_null() {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    errs.extend(validate_nonnegative(
        r.revision.unwrap_or(0),
        &Path::new("revision"),
    ));
    errs
}

/// `ValidateControllerRevisionUpdate`: `data` may not change.
pub fn validate_controller_revision_update(
    new: &ControllerRevision,
    old: &ControllerRevision,
) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_controller_revision(new));
    if new.data != old.data {
        // A RawExtension marshals as its raw JSON.
        let raw = serde_json::to_string(&new.data.0).unwrap_or_default();
        errs.push(invalid_rendered(&Path::new("data"), &raw, FIELD_IMMUTABLE));
    }
    errs
}

//! Rules shared by the kinds that stamp pods from a template or select pods: Jobs,
//! CronJobs, PodDisruptionBudgets, the apps/v1 kinds and ReplicationControllers.
//!
//! Owns: apimachinery's `ValidateLabelSelector`, core's `ValidatePodTemplateSpec` at any
//! path (PodTemplates use it too), apps' `ValidatePositiveIntOrPercent` /
//! `IsNotMoreThan100Percent` and the percent helpers around them, and the "`selector` does
//! not match template `labels`" error, each with upstream's paths and messages; and the
//! registries' create / update steps (status reset, generation counted). Bad values
//! are rendered as upstream's `field.Error.ErrorBody` does since it marshals composite
//! values as JSON (`"150%"`, `{"app":"web"}`). One implementation each: the kinds' modules
//! call these rather than keeping their own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{FieldError, FieldErrors, Path};
use crate::selector::LabelSelector;
use crate::validation::{
    invalid_each, is_qualified_name, is_valid_label_value, regex_error, validate_nonnegative,
};

/// `metav1validation.ValidateLabelSelector` (label values in selectors checked).
pub fn validate_label_selector(sel: Option<&MetaSelector>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let Some(sel) = sel else {
        return errs;
    };
    if let Some(ml) = &sel.match_labels {
        errs.extend(crate::meta::validate_labels(ml, &path.child("matchLabels")));
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(invalid_each(
            &p.child("key"),
            &req.key,
            is_qualified_name(&req.key),
        ));
        for (j, v) in values.iter().enumerate() {
            errs.extend(invalid_each(
                &p.child("values").index(j),
                v,
                is_valid_label_value(v),
            ));
        }
    }
    errs
}

/// Whether `sel` (as `metav1.LabelSelectorAsSelector`) matches `labels`; `None` when the
/// selector does not convert (its own validation reports why).
pub fn selector_matches(
    sel: Option<&MetaSelector>,
    labels: &BTreeMap<String, String>,
) -> Option<bool> {
    LabelSelector::from_label_selector(sel)
        .ok()
        .map(|s| s.matches(labels))
}

/// `ValidatePodTemplateSpec`: the template's labels, annotations and pod spec; no
/// ephemeral containers.
pub fn validate_pod_template_spec(t: &PodTemplateSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(meta) = &t.metadata {
        if let Some(labels) = &meta.labels {
            errs.extend(crate::meta::validate_labels(labels, &path.child("labels")));
        }
        if let Some(ann) = &meta.annotations {
            errs.extend(crate::meta::validate_annotations(
                ann,
                &path.child("annotations"),
            ));
        }
    }
    let default_spec = Default::default();
    let spec = t.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(crate::pod::validate_pod_spec(spec, &path.child("spec")));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// The template's labels (empty when it has none).
pub fn template_labels(t: &PodTemplateSpec) -> BTreeMap<String, String> {
    t.metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// The "`selector` does not match template `labels`" error of the template at `path`, at
/// its `metadata.labels`. Upstream's `ErrorBody` renders the labels by `json.Marshal`:
/// `{"app":"web"}`, or `null` when the template has none.
pub fn template_labels_mismatch(t: &PodTemplateSpec, path: &Path) -> FieldError {
    let labels = t.metadata.as_ref().and_then(|m| m.labels.as_ref());
    FieldError::invalid(
        path.child("metadata").child("labels"),
        serde_json::to_value(labels).unwrap_or_default(),
        "`selector` does not match template `labels`",
    )
}

const PERCENT_ERR: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";

/// `validation.IsValidPercent`.
pub fn is_valid_percent(s: &str) -> Vec<String> {
    if percent_digits(s).is_some() {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_ERR, "[0-9]+%", &["1%", "93%"])]
    }
}

/// The digits of a valid `N%` (`[0-9]+%`; Rust's parse would also take a sign).
fn percent_digits(s: &str) -> Option<&str> {
    s.strip_suffix('%')
        .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
}

/// apps' `getPercentValue`: the number of a valid `N%` (none for an int, an invalid
/// string, or one too large to parse, which Go's `Atoi` reads as 0).
pub fn percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) => percent_digits(s)?.parse().ok(),
        IntOrString::Int(_) => None,
    }
}

/// apps' `getIntOrPercentValue` (Go's `IntValue` of a non-number string is 0).
pub fn int_or_percent_value(v: &IntOrString) -> i64 {
    match (percent_value(v), v) {
        (Some(p), _) => p,
        (None, IntOrString::Int(i)) => i64::from(*i),
        (None, IntOrString::String(s)) => s.parse().unwrap_or(0),
    }
}

/// An `IntOrString` as a field error's bad value: upstream's `ErrorBody` renders it by its
/// `MarshalJSON`, so a string is quoted (`"150%"`) and an int plain.
pub fn int_or_string_value(v: &IntOrString) -> serde_json::Value {
    match v {
        IntOrString::Int(i) => (*i).into(),
        IntOrString::String(s) => s.as_str().into(),
    }
}

/// apps' `ValidatePositiveIntOrPercent`.
pub fn validate_positive_int_or_percent(v: &IntOrString, path: &Path) -> FieldErrors {
    match v {
        IntOrString::Int(i) => validate_nonnegative(i64::from(*i), path),
        IntOrString::String(s) => is_valid_percent(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, int_or_string_value(v), m))
            .collect(),
    }
}

/// apps' `IsNotMoreThan100Percent`.
pub fn is_not_more_than_100_percent(v: &IntOrString, path: &Path) -> FieldErrors {
    match percent_value(v) {
        Some(p) if p > 100 => vec![FieldError::invalid(
            path,
            int_or_string_value(v),
            "must not be greater than 100%",
        )],
        _ => Vec::new(),
    }
}

/// `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent` together, as the
/// PodDisruptionBudget runs them.
pub fn validate_int_or_percent(v: &IntOrString, path: &Path) -> FieldErrors {
    let mut errs = validate_positive_int_or_percent(v, path);
    errs.extend(is_not_more_than_100_percent(v, path));
    errs
}

/// The registries' create step of these kinds: status cleared, generation 1.
pub fn reset_on_create<S: Default>(meta: &mut ObjectMeta, status: &mut Option<S>) {
    *status = Some(S::default());
    meta.generation = Some(1);
}

/// The registries' update step for the generation: counted when `changed` (the caller
/// keeps the old status: `new.status.clone_from(&old.status)`).
pub fn count_generation(meta: &mut ObjectMeta, old_meta: &ObjectMeta, changed: bool) {
    let generation = old_meta.generation.unwrap_or(1);
    meta.generation = Some(if changed { generation + 1 } else { generation });
}

/// `intstr.GetScaledValueFromIntOrPercent`: an int as is, a percent of `total` rounded up
/// or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let n: i64 = s
                .strip_suffix('%')
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = n * i64::from(total);
            let v = if round_up {
                (product + 99) / 100
            } else {
                product / 100
            };
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn label_selector_rules() {
        let sel = MetaSelector {
            match_labels: Some([("a".to_string(), "-bad".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "In".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Exists".into(),
                    values: Some(vec!["x".into()]),
                },
                LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Near".into(),
                    values: None,
                },
            ]),
        };
        let errs = validate_label_selector(Some(&sel), &Path::new("spec.selector"));
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with("spec.selector.matchLabels: Invalid value: \"-bad\""));
        assert_eq!(got[1], "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'");
        assert_eq!(got[2], "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
        assert_eq!(got[3], "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator");
    }

    #[test]
    fn int_or_percent() {
        let p = Path::new("spec.minAvailable");
        let cases: [(IntOrString, Vec<&str>); 6] = [
            (IntOrString::Int(2), vec![]),
            (IntOrString::String("50%".into()), vec![]),
            (
                IntOrString::Int(-1),
                vec!["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                IntOrString::String("150%".into()),
                vec!["spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"],
            ),
            // `IsValidPercent` refuses a sign, and `getPercentValue` then reads no percent.
            (
                IntOrString::String("+150%".into()),
                vec!["spec.minAvailable: Invalid value: \"+150%\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"],
            ),
            (
                IntOrString::String("x".into()),
                vec!["spec.minAvailable: Invalid value: \"x\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"],
            ),
        ];
        for (v, want) in cases {
            let got: Vec<String> = validate_int_or_percent(&v, &p)
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert_eq!(got, want, "{v:?}");
        }
        assert_eq!(
            scaled_value(&IntOrString::String("50%".into()), 3, true),
            Ok(2)
        );
        assert_eq!(
            scaled_value(&IntOrString::String("50%".into()), 3, false),
            Ok(1)
        );
        assert_eq!(scaled_value(&IntOrString::Int(4), 3, true), Ok(4));
    }
}

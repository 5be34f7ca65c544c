//! Label and field selectors: parsed or refused with upstream's message, and their string
//! forms parse back to the same selector.

use std::collections::BTreeMap;

use api::selector::{FieldSelector, LabelSelector};
use fuzz::proptest::prelude::*;
use fuzz::{check, ensure, gen};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

#[test]
fn label_selectors() {
    let labels = proptest::collection::btree_map("[a-z]{1,3}", "[a-z0-9]{0,3}", 0..4);
    check(
        "label-selector",
        20000,
        (gen::label_selector_text(), labels),
        |(text, labels)| {
            let Ok(sel) = LabelSelector::parse(&text) else {
                return Ok(());
            };
            let canonical = sel.to_string();
            let again = LabelSelector::parse(&canonical);
            ensure(again.as_ref() == Ok(&sel), || {
                format!("{text:?} prints as {canonical:?}, which parses as {again:?}")
            })?;
            let _ = sel.matches(&labels);
            Ok(())
        },
    );
}

/// `metav1.LabelSelector` (matchLabels and matchExpressions, as in a Deployment's spec).
#[test]
fn label_selector_objects() {
    let operator = prop_oneof![
        Just("In".to_string()),
        Just("NotIn".to_string()),
        Just("Exists".to_string()),
        Just("DoesNotExist".to_string()),
        "[A-Za-z]{0,6}",
    ];
    let requirement = (
        "[a-z./]{0,8}",
        operator,
        proptest::option::of(proptest::collection::vec("[a-z0-9 ]{0,4}", 0..3)),
    )
        .prop_map(|(key, operator, values)| metav1::LabelSelectorRequirement {
            key,
            operator,
            values,
        });
    let selector = (
        proptest::option::of(proptest::collection::btree_map(
            "[a-z./]{0,6}",
            "[a-z0-9 ]{0,4}",
            0..3,
        )),
        proptest::option::of(proptest::collection::vec(requirement, 0..3)),
    )
        .prop_map(|(match_labels, match_expressions)| metav1::LabelSelector {
            match_labels,
            match_expressions,
        });
    check("label-selector-object", 10000, selector, |sel| {
        if let Ok(parsed) = LabelSelector::from_label_selector(Some(&sel)) {
            let canonical = parsed.to_string();
            let again = LabelSelector::parse(&canonical);
            ensure(again.as_ref() == Ok(&parsed), || {
                format!("{sel:?} prints as {canonical:?}, which parses as {again:?}")
            })?;
            let _ = parsed.matches(&BTreeMap::new());
        }
        Ok(())
    });
}

#[test]
fn field_selectors() {
    check(
        "field-selector",
        20000,
        gen::field_selector_text(),
        |text| {
            let Ok(sel) = FieldSelector::parse(&text) else {
                return Ok(());
            };
            let canonical = sel.to_string();
            let again = FieldSelector::parse(&canonical);
            let sorted = |s: &FieldSelector| {
                let mut r = s.requirements.clone();
                r.sort_by(|a, b| (&a.field, a.not, &a.value).cmp(&(&b.field, b.not, &b.value)));
                r
            };
            ensure(again.as_ref().map(sorted) == Ok(sorted(&sel)), || {
                format!("{text:?} prints as {canonical:?}, which parses as {again:?}")
            })?;
            for kind in apiserver::registry::all() {
                let f = &kind.fields;
                if let Ok(n) = sel.clone().normalize(f.names, f.aliases, f.own_conversion) {
                    let _ = n.matches_fields(&[("metadata.name", "x".to_string())]);
                }
            }
            Ok(())
        },
    );
}

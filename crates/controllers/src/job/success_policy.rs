//! An Indexed Job's `successPolicy` (upstream's `success_policy.go`): the Job meets its
//! success criteria when some rule's `succeededIndexes` all succeeded, or `succeededCount`
//! of them (or of all indexes, for a rule with only a count). Pure.

use k8s_openapi::api::batch::v1::SuccessPolicy;

use super::indexed_job_utils::Intervals;

/// The `SuccessCriteriaMet` message when a rule matched (`Matched rules at index N`).
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.0.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = match &rule.succeeded_indexes {
            Some(s) => {
                let required = Intervals::parse(s, completions);
                if required.0.is_empty() {
                    continue;
                }
                let contains = overlap(&required, succeeded);
                match rule.succeeded_count {
                    None => contains == required.total(),
                    Some(n) => contains >= n,
                }
            }
            None => rule.succeeded_count.is_some_and(|n| succeeded.total() >= n),
        };
        if matched {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// How many indexes the two sets share.
fn overlap(a: &Intervals, b: &Intervals) -> i32 {
    let mut n = 0;
    for &(a1, a2) in &a.0 {
        for &(b1, b2) in &b.0 {
            let o = a2.min(b2) - a1.max(b1) + 1;
            if o > 0 {
                n += o;
            }
        }
    }
    n
}

//! Label and field selectors.
//!
//! Owns: parsing label selectors with apimachinery's grammar and error wording
//! (`labels.Parse`), converting `metav1.LabelSelector`, parsing field selectors
//! (`fields.ParseSelector`, with `\,` `\=` `\\` escapes), the per-kind list of fields
//! kube-apiserver lets you select on, and extracting those fields from stored objects.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::field::{go_quote, FieldError};
use crate::validation::{is_qualified_name, is_valid_label_value};

/// A selector that could not be parsed or names an unsupported field; the message is the
/// text upstream returns, which the server puts in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A label-selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement: `key op values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and de-duplicated, like upstream's `sets.String`.
    pub values: Vec<String>,
}

impl Requirement {
    /// `NewRequirement`: validates the key, the value count for the operator, and each value.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errs: Vec<String> = Vec::new();
        if let Some(e) = validate_label_key(key, "key") {
            errs.push(e.to_string());
        }
        let vals_json = Value::from(values.clone());
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(
                FieldError::invalid(
                    "values",
                    vals_json,
                    "for 'in', 'notin' operators, values set can't be empty",
                )
                .to_string(),
            ),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(
                    FieldError::invalid(
                        "values",
                        vals_json,
                        "exact-match compatibility requires one single value",
                    )
                    .to_string(),
                )
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(
                FieldError::invalid(
                    "values",
                    vals_json,
                    "values set must be empty for exists and does not exist",
                )
                .to_string(),
            ),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(
                        FieldError::invalid(
                            "values",
                            vals_json,
                            "for 'Gt', 'Lt' operators, exactly one value is required",
                        )
                        .to_string(),
                    );
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(
                            FieldError::invalid(
                                format!("values[{i}]"),
                                v.as_str(),
                                "for 'Gt', 'Lt' operators, the value must be an integer",
                            )
                            .to_string(),
                        );
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(
                    FieldError::invalid(format!("values[{i}][{key}]"), v.as_str(), msgs.join("; "))
                        .to_string(),
                );
            }
        }
        match errs.len() {
            0 => Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            }),
            1 => Err(SelectorError(errs.remove(0))),
            _ => Err(SelectorError(format!("[{}]", errs.join(", ")))),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                got.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotIn | Operator::NotEquals => got.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(have)) = got.map(|v| v.parse::<i64>()) else {
                    return false;
                };
                self.values
                    .iter()
                    .filter_map(|v| v.parse::<i64>().ok())
                    .any(|want| {
                        if self.operator == Operator::GreaterThan {
                            have > want
                        } else {
                            have < want
                        }
                    })
            }
        }
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vals = self.values.join(",");
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In => write!(f, "{} in ({vals})", self.key),
            Operator::NotIn => write!(f, "{} notin ({vals})", self.key),
            Operator::Equals => write!(f, "{}={vals}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={vals}", self.key),
            Operator::NotEquals => write!(f, "{}!={vals}", self.key),
            Operator::GreaterThan => write!(f, "{}>{vals}", self.key),
            Operator::LessThan => write!(f, "{}<{vals}", self.key),
        }
    }
}

fn validate_label_key(key: &str, path: &str) -> Option<FieldError> {
    let msgs = is_qualified_name(key);
    (!msgs.is_empty()).then(|| FieldError::invalid(path, key, msgs.join("; ")))
}

/// A parsed label selector: all requirements must match. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    /// True for a `metav1.LabelSelector` that can match nothing (upstream's `Nothing()`).
    nothing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    Gt,
    Lt,
    In,
    NotIn,
    OpenPar,
    ClosePar,
    Comma,
    End,
    Error(String),
}

impl Tok {
    fn literal(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Error(s) => s.clone(),
            Tok::DoesNotExist => "!".into(),
            Tok::Equals => "=".into(),
            Tok::DoubleEquals => "==".into(),
            Tok::NotEquals => "!=".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::In => "in".into(),
            Tok::NotIn => "notin".into(),
            Tok::OpenPar => "(".into(),
            Tok::ClosePar => ")".into(),
            Tok::Comma => ",".into(),
            Tok::End => String::new(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// The lexer of `labels.Parse`: identifiers run until whitespace or a special symbol; runs
/// of symbols are read greedily while they still form a known operator.
fn lex(input: &str) -> Vec<Tok> {
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            out.push(Tok::End);
            return out;
        }
        let c = chars[i];
        if is_special(c) {
            let mut lit = String::new();
            let mut best: Option<(Tok, usize)> = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                lit.push(chars[j]);
                j += 1;
                let tok = match lit.as_str() {
                    "!" => Some(Tok::DoesNotExist),
                    "=" => Some(Tok::Equals),
                    "==" => Some(Tok::DoubleEquals),
                    "!=" => Some(Tok::NotEquals),
                    ">" => Some(Tok::Gt),
                    "<" => Some(Tok::Lt),
                    "(" => Some(Tok::OpenPar),
                    ")" => Some(Tok::ClosePar),
                    "," => Some(Tok::Comma),
                    _ => None,
                };
                match tok {
                    Some(t) => best = Some((t, j)),
                    None => break,
                }
            }
            match best {
                Some((t, end)) => {
                    out.push(t);
                    i = end;
                }
                None => {
                    out.push(Tok::Error(lit));
                    i = j;
                }
            }
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident(word),
            });
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    /// In value position the keywords `in`/`notin` are ordinary identifiers.
    fn lookahead(&self, values: bool) -> Tok {
        let t = self.toks.get(self.pos).cloned().unwrap_or(Tok::End);
        match t {
            Tok::In | Tok::NotIn if values => Tok::Ident(t.literal()),
            t => t,
        }
    }
    fn consume(&mut self, values: bool) -> Tok {
        let t = self.lookahead(values);
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.lookahead(true) {
                Tok::Ident(_) | Tok::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        SelectorError(format!("unable to parse requirement: {}", e.0))
                    })?;
                    reqs.push(r);
                    match self.consume(true) {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let t2 = self.lookahead(true);
                            if !matches!(t2, Tok::Ident(_) | Tok::DoesNotExist) {
                                return Err(SelectorError(format!(
                                    "found '{}', expected: identifier after ','",
                                    t2.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut op = None;
        let mut tok = self.consume(true);
        if tok == Tok::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            tok = self.consume(true);
        }
        let Tok::Ident(key) = tok else {
            return Err(SelectorError(format!(
                "found '{}', expected: identifier",
                tok.literal()
            )));
        };
        if let Some(e) = validate_label_key(&key, "<nil>") {
            return Err(SelectorError(e.to_string()));
        }
        if matches!(self.lookahead(true), Tok::End | Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = match self.consume(false) {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                )))
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values.into_iter().collect())
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let t = self.consume(true);
        if t != Tok::OpenPar {
            return Err(SelectorError(format!(
                "found '{}' expected: '('",
                t.literal()
            )));
        }
        let t = self.lookahead(true);
        match t {
            Tok::Ident(_) | Tok::Comma => {
                let s = self.parse_identifiers_list()?;
                if self.consume(true) != Tok::ClosePar {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ')'",
                        t.literal()
                    )));
                }
                Ok(s)
            }
            Tok::ClosePar => {
                self.consume(true);
                Ok(BTreeSet::from([String::new()]))
            }
            t => Err(SelectorError(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut s = BTreeSet::new();
        loop {
            match self.consume(true) {
                Tok::Ident(v) => {
                    s.insert(v);
                    match self.lookahead(true) {
                        Tok::Comma => continue,
                        Tok::ClosePar => return Ok(s),
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or ')'",
                                t.literal()
                            )))
                        }
                    }
                }
                Tok::Comma => {
                    // `(,` `,)` and `,,` stand for empty values.
                    if s.is_empty() {
                        s.insert(String::new());
                    }
                    match self.lookahead(true) {
                        Tok::ClosePar => {
                            s.insert(String::new());
                            return Ok(s);
                        }
                        Tok::Comma => {
                            self.consume(true);
                            s.insert(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    )))
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        if matches!(self.lookahead(true), Tok::End | Tok::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.consume(true) {
            Tok::Ident(v) => Ok(BTreeSet::from([v])),
            t => Err(SelectorError(format!(
                "found '{}', expected: identifier",
                t.literal()
            ))),
        }
    }
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        let mut requirements = p.parse()?;
        // Upstream sorts requirements by key so the selector's string form is canonical.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Selects everything.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// `metav1.LabelSelectorAsSelector`: `None` selects nothing, an empty selector everything.
    pub fn from_label_selector(
        sel: Option<&metav1::LabelSelector>,
    ) -> Result<LabelSelector, SelectorError> {
        let Some(sel) = sel else {
            return Ok(LabelSelector {
                requirements: Vec::new(),
                nothing: true,
            });
        };
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for e in sel.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )))
                }
            };
            let vals: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            requirements.push(Requirement::new(&e.key, op, vals.into_iter().collect())?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl TryFrom<&metav1::LabelSelector> for LabelSelector {
    type Error = SelectorError;

    fn try_from(sel: &metav1::LabelSelector) -> Result<Self, Self::Error> {
        LabelSelector::from_label_selector(Some(sel))
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// One `field op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    /// True for `!=`.
    pub not: bool,
    /// Unescaped value.
    pub value: String,
}

/// A parsed field selector: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Splits a term at the first operator, preferring `!=` and `==` over `=` at the same
/// place, as upstream's `splitTerm` (fields/selector.go) does: the field name knows no
/// escapes, so an operator after a backslash still splits; only the value is unescaped.
/// Scanned by character, so a field or value in any script is split, never cut inside a
/// character.
fn split_term(term: &str) -> Option<(String, &'static str, String)> {
    term.char_indices().find_map(|(i, _)| {
        ["!=", "==", "="]
            .into_iter()
            .find(|op| term[i..].starts_with(op))
            .map(|op| (term[..i].to_string(), op, term[i + op.len()..].to_string()))
    })
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                Some(n) => {
                    return Err(SelectorError(format!(
                        "invalid field selector: invalid escape sequence: \\{n}"
                    )))
                }
                None => {
                    return Err(SelectorError(
                        "invalid field selector: invalid escape sequence: \\".into(),
                    ))
                }
            },
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped {c}"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `metadata.name=x,spec.nodeName!=,status.phase==Running`.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(&rhs)?;
            requirements.push(FieldRequirement {
                field: lhs,
                not: op == "!=",
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The field names the selector mentions, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.requirements.iter().map(|r| r.field.as_str()).collect()
    }

    /// The value required by an `=` term on `field`, if any (lets a caller narrow a list,
    /// e.g. `metadata.name=x` or `spec.nodeName=n`).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.not)
            .map(|r| r.value.as_str())
    }

    /// A missing field compares as the empty string, as in a `fields.Set`.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            (have == r.value) != r.not
        })
    }

    /// Matches against a field list such as [`object_fields`] returns.
    pub fn matches_fields(&self, fields: &[(&str, String)]) -> bool {
        self.matches(|f| fields.iter().find(|(k, _)| *k == f).map(|(_, v)| v.clone()))
    }

    /// Checks every field is one of `allowed`, with upstream's wording, and rewrites legacy
    /// names (`aliases`: the pod field `spec.host` is `spec.nodeName`). Kinds with their own
    /// field label conversion (`own_conversion`) say "field label not supported"; the
    /// default conversion names the two fields it knows.
    pub fn normalize(
        mut self,
        allowed: &[&str],
        aliases: &[(&str, &str)],
        own_conversion: bool,
    ) -> Result<FieldSelector, SelectorError> {
        for r in &mut self.requirements {
            if let Some((_, to)) = aliases.iter().find(|(from, _)| *from == r.field) {
                r.field = (*to).to_string();
            }
            if !allowed.contains(&r.field.as_str()) {
                return Err(SelectorError(if own_conversion {
                    format!("field label not supported: {}", r.field)
                } else {
                    format!(
                        "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                        go_quote(&r.field)
                    )
                }));
            }
        }
        Ok(self)
    }
}

impl std::fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let esc = |v: &str| {
            v.replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('=', "\\=")
        };
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.field,
                    if r.not { "!=" } else { "=" },
                    esc(&r.value)
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

pub const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
pub const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
pub const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
pub const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "status.phase"];
pub const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];
/// ReplicaSets and ReplicationControllers (`ReplicaSetToSelectableFields`,
/// `ControllerToSelectableFields`).
pub const REPLICA_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
/// Upstream's Service field label conversion: `spec.clusterIP` and `spec.type` besides the
/// metadata.
pub const SERVICE_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.clusterIP",
    "spec.type",
];
/// `metadata.name` and `metadata.namespace`: what every kind can be selected by.
pub const GENERIC_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn meta_fields(obj: &Value, namespaced: bool) -> Vec<(&'static str, String)> {
    let mut out = vec![("metadata.name", s(obj, "/metadata/name"))];
    if namespaced {
        out.push(("metadata.namespace", s(obj, "/metadata/namespace")));
    }
    out
}

/// Pod fields as the pod registry exposes them (`status.podIP` is the first of `podIPs`,
/// `spec.hostNetwork` defaults to `false`).
pub fn pod_fields(pod: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(pod, true);
    let host_network = pod
        .pointer("/spec/hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pod_ip = match pod.pointer("/status/podIPs/0/ip").and_then(Value::as_str) {
        Some(ip) => ip.to_string(),
        None => s(pod, "/status/podIP"),
    };
    out.extend([
        ("spec.nodeName", s(pod, "/spec/nodeName")),
        ("spec.restartPolicy", s(pod, "/spec/restartPolicy")),
        ("spec.schedulerName", s(pod, "/spec/schedulerName")),
        (
            "spec.serviceAccountName",
            s(pod, "/spec/serviceAccountName"),
        ),
        ("spec.hostNetwork", host_network.to_string()),
        ("status.phase", s(pod, "/status/phase")),
        ("status.podIP", pod_ip),
        (
            "status.nominatedNodeName",
            s(pod, "/status/nominatedNodeName"),
        ),
    ]);
    out
}

/// core/v1 Event fields; `source` falls back to `reportingComponent` for events written
/// through events.k8s.io.
pub fn event_fields(ev: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(ev, true);
    let mut source = s(ev, "/source/component");
    if source.is_empty() {
        source = s(ev, "/reportingComponent");
    }
    out.extend([
        ("involvedObject.kind", s(ev, "/involvedObject/kind")),
        (
            "involvedObject.namespace",
            s(ev, "/involvedObject/namespace"),
        ),
        ("involvedObject.name", s(ev, "/involvedObject/name")),
        ("involvedObject.uid", s(ev, "/involvedObject/uid")),
        (
            "involvedObject.apiVersion",
            s(ev, "/involvedObject/apiVersion"),
        ),
        (
            "involvedObject.resourceVersion",
            s(ev, "/involvedObject/resourceVersion"),
        ),
        (
            "involvedObject.fieldPath",
            s(ev, "/involvedObject/fieldPath"),
        ),
        ("reason", s(ev, "/reason")),
        ("reportingComponent", s(ev, "/reportingComponent")),
        ("source", source),
        ("type", s(ev, "/type")),
    ]);
    out
}

pub fn node_fields(node: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(node, false);
    let unsched = node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    out.push(("spec.unschedulable", unsched.to_string()));
    out
}

pub fn namespace_fields(ns: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(ns, false);
    out.push(("status.phase", s(ns, "/status/phase")));
    out
}

pub fn secret_fields(secret: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(secret, true);
    out.push(("type", s(secret, "/type")));
    out
}

/// `status.replicas` (0 when unset, as Go's zero value prints) besides the metadata.
pub fn replica_fields(obj: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(obj, true);
    let replicas = obj
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    out.push(("status.replicas", replicas.to_string()));
    out
}

/// Service fields (`spec.clusterIP`, `spec.type`).
pub fn service_fields(svc: &Value) -> Vec<(&'static str, String)> {
    let mut out = meta_fields(svc, true);
    out.push(("spec.clusterIP", s(svc, "/spec/clusterIP")));
    out.push(("spec.type", s(svc, "/spec/type")));
    out
}

/// `metadata.name` and `metadata.namespace` only.
pub fn generic_fields(obj: &Value) -> Vec<(&'static str, String)> {
    meta_fields(obj, true)
}

/// `metadata.name` only, for cluster-scoped kinds.
pub fn cluster_fields(obj: &Value) -> Vec<(&'static str, String)> {
    meta_fields(obj, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_matching() {
        let sel = match LabelSelector::parse("a=b,c!=d,e in (x,y),f notin (z),g,!h") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let ok = labels(&[("a", "b"), ("e", "x"), ("g", "1")]);
        assert!(sel.matches(&ok));
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("a", "b"), ("e", "x"), ("g", "")], true),
            (&[("a", "b"), ("c", "d"), ("e", "x"), ("g", "")], false),
            (&[("a", "b"), ("e", "q"), ("g", "")], false),
            (&[("a", "b"), ("e", "y"), ("f", "z"), ("g", "")], false),
            (&[("a", "b"), ("e", "y"), ("g", ""), ("h", "")], false),
            (&[("a", "b"), ("e", "y")], false),
        ];
        for (l, want) in cases {
            assert_eq!(sel.matches(&labels(l)), *want, "{l:?}");
        }
        assert_eq!(sel.to_string(), "a=b,c!=d,e in (x,y),f notin (z),g,!h");
        assert!(LabelSelector::parse("")
            .map(|s| s.matches(&BTreeMap::new()))
            .unwrap_or(false));
        let gt = LabelSelector::parse("n>3, n<10").unwrap_or_default();
        assert!(gt.matches(&labels(&[("n", "5")])));
        assert!(!gt.matches(&labels(&[("n", "3")])));
        assert!(LabelSelector::parse("x in (in,notin)")
            .is_ok_and(|s| s.matches(&labels(&[("x", "in")]))));
        assert!(LabelSelector::parse("x==y").is_ok_and(|s| s.matches(&labels(&[("x", "y")]))));
        assert!(LabelSelector::parse("x=").is_ok_and(|s| s.matches(&labels(&[("x", "")]))));
    }

    #[test]
    fn label_selector_errors() {
        let cases = [
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x=,", "found '', expected: identifier after ','"),
            ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"),
            ("x in y", "unable to parse requirement: found 'y' expected: '('"),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("=x", "found '=', expected: !, identifier, or 'end of string'"),
            ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("x=a$", "unable to parse requirement: values[0][x]: Invalid value: \"a$\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
        ];
        for (input, want) in cases {
            match LabelSelector::parse(input) {
                Ok(s) => panic!("{input} parsed as {s:?}"),
                Err(e) => assert_eq!(e.0, want, "{input}"),
            }
        }
        let err = LabelSelector::parse("-x=y")
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(err.starts_with("unable to parse requirement: <nil>: Invalid value: \"-x\": name part must consist of"), "{err}");
    }

    /// `a in ()` is `a in ("")`, not an error: upstream's `Parser.parseValues`
    /// (apimachinery `pkg/labels/selector.go`, `case ClosedParToken: // handles "()"`)
    /// returns the set {""}, `NewRequirement` accepts one empty value, and kube-apiserver
    /// adds no check of label selectors of its own (`ValidateListOptions` in
    /// `apis/meta/internalversion/validation` looks at resourceVersionMatch and
    /// sendInitialEvents only). So `a in ()` selects the objects whose label `a` is empty.
    #[test]
    fn empty_value_set_is_the_empty_value() {
        let cases = [
            ("a in ()", Operator::In, "a in ()"),
            ("a notin ()", Operator::NotIn, "a notin ()"),
            ("a in (,)", Operator::In, "a in ()"),
            ("a in ( )", Operator::In, "a in ()"),
        ];
        for (input, operator, canonical) in cases {
            let sel = match LabelSelector::parse(input) {
                Ok(s) => s,
                Err(e) => panic!("{input}: {e}"),
            };
            let want = Requirement {
                key: "a".into(),
                operator,
                values: vec![String::new()],
            };
            assert_eq!(sel.requirements, vec![want], "{input}");
            assert_eq!(sel.to_string(), canonical, "{input}");
            assert_eq!(
                LabelSelector::parse(canonical).as_ref(),
                Ok(&sel),
                "{input}"
            );
        }
        let empty = LabelSelector::parse("a in ()").unwrap_or_default();
        assert!(empty.matches(&labels(&[("a", "")])));
        assert!(!empty.matches(&labels(&[("a", "x")])));
        assert!(!empty.matches(&labels(&[])));
    }

    #[test]
    fn metav1_selectors() {
        let sel = metav1::LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            match_expressions: Some(vec![metav1::LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["fe".into(), "be".into()]),
            }]),
        };
        let s = LabelSelector::from_label_selector(Some(&sel)).unwrap_or_default();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "be")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!LabelSelector::from_label_selector(None)
            .unwrap_or_default()
            .matches(&BTreeMap::new()));
        let bad = metav1::LabelSelector {
            match_expressions: Some(vec![metav1::LabelSelectorRequirement {
                key: "tier".into(),
                operator: "in".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_label_selector(Some(&bad))
                .err()
                .map(|e| e.0),
            Some("\"in\" is not a valid label selector operator".to_string())
        );
    }

    #[test]
    fn field_selectors() {
        let sel = FieldSelector::parse("metadata.name=x,spec.nodeName!=,status.phase==Running")
            .unwrap_or_default();
        assert_eq!(
            sel.fields(),
            vec!["metadata.name", "spec.nodeName", "status.phase"]
        );
        let pod = json!({"metadata": {"name": "x", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(sel.matches_fields(&pod_fields(&pod)));
        let pod2 =
            json!({"metadata": {"name": "x", "namespace": "d"}, "status": {"phase": "Running"}});
        assert!(!sel.matches_fields(&pod_fields(&pod2)));
        let esc = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap_or_default();
        assert_eq!(esc.requirements[0].value, "a,b=c");
        assert_eq!(esc.to_string(), r"metadata.name=a\,b\=c");
        assert_eq!(
            FieldSelector::parse("foo").err().map(|e| e.0),
            Some("invalid selector: 'foo'; can't understand 'foo'".into())
        );
        // Fields and values in any script, split where upstream splits them (issue 13: a
        // non-ASCII field selector panicked the request).
        let wide = FieldSelector::parse("é=世界,metadata.name!=ü").unwrap_or_default();
        assert_eq!(
            wide.requirements
                .iter()
                .map(|r| (r.field.as_str(), r.not, r.value.as_str()))
                .collect::<Vec<_>>(),
            vec![("metadata.name", true, "ü"), ("é", false, "世界")]
        );
        assert_eq!(
            FieldSelector::parse("世").err().map(|e| e.0),
            Some("invalid selector: '世'; can't understand '世'".into())
        );
        // The field name has no escapes: the first operator splits, even after a backslash.
        assert_eq!(
            FieldSelector::parse(r"a\=b=c").err().map(|e| e.0),
            Some("invalid field selector: unescaped =".into())
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").err().map(|e| e.0),
            Some(r"invalid field selector: invalid escape sequence: \x".into())
        );
        let pod_aliases: &[(&str, &str)] = &[("spec.host", "spec.nodeName")];
        let norm = |allowed, aliases, own, s: &str| {
            FieldSelector::parse(s)
                .and_then(|f| f.normalize(allowed, aliases, own))
                .map(|f| f.to_string())
        };
        assert_eq!(
            norm(POD_FIELDS, pod_aliases, true, "spec.host=n").ok(),
            Some("spec.nodeName=n".into())
        );
        assert_eq!(
            norm(POD_FIELDS, pod_aliases, true, "spec.foo=n")
                .err()
                .map(|e| e.0),
            Some("field label not supported: spec.foo".into())
        );
        assert_eq!(
            norm(GENERIC_FIELDS, &[], false, "foo=n").err().map(|e| e.0),
            Some("\"foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".into())
        );
        assert!(norm(
            EVENT_FIELDS,
            &[],
            true,
            "involvedObject.name=x,type=Warning"
        )
        .is_ok());
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert!(FieldSelector::parse("spec.unschedulable=true")
            .unwrap_or_default()
            .matches_fields(&node_fields(&node)));
        let ev =
            json!({"metadata": {"name": "e", "namespace": "d"}, "reportingComponent": "kubelet"});
        assert!(FieldSelector::parse("source=kubelet")
            .unwrap_or_default()
            .matches_fields(&event_fields(&ev)));
    }
}

//! Validation errors shaped like apimachinery's `field.Error`.
//!
//! Owns: the error type every validator in this crate returns, the upstream wording of each
//! error kind (`Required value`, `Invalid value: "x": ...`), the `metav1.CauseType` reason
//! strings the API server puts in a `Status`'s causes, and the aggregate `Kind "name" is
//! invalid: [...]` message.

use serde_json::Value;

/// The kind of a validation failure (apimachinery's `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    NotFound,
}

impl ErrorType {
    /// The human text upstream prints for this type (`ErrorType.String()`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::NotFound => "Not found",
        }
    }
}

/// One validation failure at one field path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    /// Upstream path syntax: `spec.containers[0].name`, `metadata.labels`, `data[key]`.
    pub field: String,
    /// The offending value, when upstream prints one.
    pub value: Option<Value>,
    pub detail: String,
}

pub type FieldErrors = Vec<FieldError>;

impl FieldError {
    fn new(
        kind: ErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value.into()), detail)
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(value.into()), "")
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(ErrorType::NotFound, field, Some(value.into()), "")
    }

    /// `Unsupported value: "x": supported values: "a", "b"` — `supported` is printed in the
    /// order given, exactly as upstream does (callers pass upstream's order).
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, Some(value.into()), detail)
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::new(
            ErrorType::TooLong,
            field,
            None,
            format!("may not be more than {max} {unit}"),
        )
    }

    /// `Too many: 5: must have at most 3 items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::new(
            ErrorType::TooMany,
            field,
            Some(Value::from(actual)),
            format!("must have at most {max} {unit}"),
        )
    }

    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, field, None, detail)
    }

    /// The `metav1.CauseType` the API server reports for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }

    /// The error without its field path (upstream's `ErrorBody()`), which is what a Status
    /// cause's `message` carries.
    pub fn message(&self) -> String {
        // Upstream never prints the value for these types, even when one is recorded.
        let omit_value = matches!(
            self.kind,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        let mut s = match (&self.value, omit_value) {
            (Some(v), false) => format!("{}: {}", self.kind.as_str(), render_value(v)),
            _ => self.kind.as_str().to_string(),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value as upstream's `field.Error` does: strings Go-quoted, numbers and
/// booleans plain, anything else through `json.Marshal` (lists `["a","b"]`, objects with
/// sorted keys as Go prints maps).
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

/// Go's `strconv.Quote`: double quotes, backslash escapes, printable Unicode kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream's aggregate message, as `errors.NewInvalid` builds it:
/// `Pod "x" is invalid: [spec.a: Required value, spec.b: ...]`, with no brackets when there is
/// exactly one (distinct) error. Identical messages are printed once, like `ToAggregate`.
/// `kind` is the qualified kind upstream prints (`Pod`, `PriorityClass.scheduling.k8s.io`).
pub fn invalid_message(kind: &str, name: &str, errs: &[FieldError]) -> String {
    let mut seen = std::collections::HashSet::new();
    let msgs: Vec<String> = errs
        .iter()
        .map(|e| e.to_string())
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let agg = match msgs.len() {
        0 => String::new(),
        1 => msgs[0].clone(),
        _ => format!("[{}]", msgs.join(", ")),
    };
    format!("{kind} {} is invalid: {agg}", go_quote(name))
}

/// A field path under construction; helps keep paths in upstream syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Self {
        Path(root.to_string())
    }
    /// `a.b`
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }
    /// `a[3]`
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{}]", self.0, i))
    }
    /// `a[key]`
    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{}]", self.0, k))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Path> for String {
    fn from(p: Path) -> String {
        p.0
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_upstream() {
        let cases: Vec<(FieldError, &str, &str)> = vec![
            (FieldError::required("spec.containers", ""), "Required value", "FieldValueRequired"),
            (
                FieldError::required("metadata.name", "name or generateName is required"),
                "Required value: name or generateName is required",
                "FieldValueRequired",
            ),
            (FieldError::duplicate("spec.containers[1].name", "c"), "Duplicate value: \"c\"", "FieldValueDuplicate"),
            (
                FieldError::not_supported("spec.restartPolicy", "Sometimes", &["Always", "OnFailure", "Never"]),
                "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "FieldValueNotSupported",
            ),
            (
                FieldError::invalid("spec.activeDeadlineSeconds", 0, "must be between 1 and 2147483647, inclusive"),
                "Invalid value: 0: must be between 1 and 2147483647, inclusive",
                "FieldValueInvalid",
            ),
            (FieldError::too_long("metadata.annotations", 262144), "Too long: may not be more than 262144 bytes", "FieldValueTooLong"),
            (FieldError::too_many("spec.x", 5, 3), "Too many: 5: must have at most 3 items", "FieldValueTooMany"),
            (FieldError::forbidden("spec", "nope"), "Forbidden: nope", "FieldValueForbidden"),
            (FieldError::not_found("spec.containers[0].volumeMounts[0].name", "v"), "Not found: \"v\"", "FieldValueNotFound"),
            (
                FieldError::invalid("values", Value::from(Vec::<String>::new()), "x"),
                "Invalid value: []: x",
                "FieldValueInvalid",
            ),
        ];
        for (err, msg, reason) in cases {
            assert_eq!(err.message(), msg);
            assert_eq!(err.reason(), reason);
        }
    }

    #[test]
    fn aggregate() {
        let one = vec![FieldError::required("spec.containers", "")];
        assert_eq!(
            invalid_message("Pod", "x", &one),
            "Pod \"x\" is invalid: spec.containers: Required value"
        );
        let two = vec![
            FieldError::required("spec.a", ""),
            FieldError::invalid("spec.b", "Foo", "bad"),
            FieldError::required("spec.a", ""),
        ];
        assert_eq!(
            invalid_message("Pod", "x", &two),
            "Pod \"x\" is invalid: [spec.a: Required value, spec.b: Invalid value: \"Foo\": bad]"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("é"), "\"é\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
    }

    #[test]
    fn paths() {
        let p = Path::new("spec")
            .child("containers")
            .index(0)
            .child("resources")
            .child("requests")
            .key("cpu");
        assert_eq!(p.as_str(), "spec.containers[0].resources.requests[cpu]");
    }
}

//! The schema table: for each protobuf message peapod reads or writes, its fields (number,
//! JSON name, kind). The table itself is generated (`generated.rs`); this module holds its
//! types and the lookups.

/// One message type, named as its OpenAPI definition is (`io.k8s.api.core.v1.Pod`).
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    /// Sorted by field number.
    pub fields: &'static [Field],
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The JSON property; for an inline field, the name of its protobuf field (unused).
    pub json: &'static str,
    pub kind: Kind,
    pub repeated: bool,
    /// A Go struct embedded with `json:",inline"` (`Volume.VolumeSource`): a message on
    /// the wire whose fields sit directly in the parent's JSON object.
    pub inline: bool,
    /// Whether a zero value (`""`, `0`, `false`) read from the wire is kept in the JSON.
    ///
    /// Go's protobuf encoder writes every non-pointer scalar, zero or not, while its JSON
    /// encoder leaves out zero `omitempty` fields; so a zero on the wire usually means
    /// "unset" and is dropped, mirroring the JSON a Go client would have sent. It is kept
    /// for fields the OpenAPI schema requires and for Go pointer fields, where an explicit
    /// zero means something (`automountServiceAccountToken: false`, `runAsUser: 0`).
    pub keep_zero: bool,
}

/// [`Field::repeated`], as the generated table writes it.
pub(crate) const R: u8 = 1;
/// [`Field::inline`].
pub(crate) const I: u8 = 2;
/// [`Field::keep_zero`].
pub(crate) const Z: u8 = 4;

/// One field of the generated table: number, JSON name, kind and `R | I | Z` flags.
pub(crate) const fn f(tag: u32, json: &'static str, kind: Kind, flags: u8) -> Field {
    Field {
        tag,
        json,
        kind,
        repeated: flags & R != 0,
        inline: flags & I != 0,
        keep_zero: flags & Z != 0,
    }
}

/// How a field's value is represented on the wire and in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    /// Raw bytes on the wire, base64 in JSON (`Secret.data`).
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// A nested message: an index into [`messages`].
    Message(u16),
    /// `resource.Quantity`: a message holding the string form; a JSON string.
    Quantity,
    /// `intstr.IntOrString`: type, intVal, strVal; a JSON number or string.
    IntOrString,
    /// `metav1.Time`: seconds and nanos; RFC 3339 to the second in JSON.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with six fractional digits in JSON.
    MicroTime,
    /// `metav1.Duration`: nanoseconds; Go's duration string in JSON.
    Duration,
    /// `runtime.RawExtension`: raw bytes holding an embedded object's JSON.
    RawExtension,
    /// `metav1.FieldsV1`: raw bytes holding a JSON fields set.
    FieldsV1,
    /// `map<string, V>`: repeated entries (key 1, value 2); a JSON object.
    Map(MapValue),
}

/// The value type of a map field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapValue {
    String,
    Bytes,
    Quantity,
    Message(u16),
}

pub use crate::generated::MESSAGES;

/// All messages, sorted by name.
pub fn messages() -> &'static [Message] {
    MESSAGES
}

/// The message named `name` (an OpenAPI definition name).
pub fn message(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .and_then(|i| MESSAGES.get(i))
}

pub fn by_index(i: u16) -> &'static Message {
    // The generator only emits indices of messages it emitted.
    &MESSAGES[usize::from(i)]
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

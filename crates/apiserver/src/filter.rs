//! Label and field selectors from a request's query, applied to objects on list, watch and
//! deletecollection. Which fields a kind can be selected by is its module's [`Fields`].

use api::selector::{FieldSelector, LabelSelector};
use serde_json::Value;

use crate::errors::ApiError;
use crate::object;
use crate::registry::Resource;
use crate::request::Query;

/// The fields a kind's objects can be selected by (upstream's `GetAttrs` and field label
/// conversion function for the kind).
#[derive(Clone, Copy)]
pub struct Fields {
    /// Every field a selector may name.
    pub names: &'static [&'static str],
    /// The values of those fields in one object (in the stored form).
    pub get: fn(&Value) -> Vec<(&'static str, String)>,
    /// Legacy names rewritten to the current one (`spec.host` → `spec.nodeName` for pods).
    pub aliases: &'static [(&'static str, &'static str)],
    /// Kinds with their own field label conversion function refuse other fields with
    /// "field label not supported: X"; the default one names the two it allows.
    pub own_conversion: bool,
}

/// `metadata.name` and `metadata.namespace`, upstream's default for namespaced kinds.
pub const NAMESPACED_META: Fields = Fields {
    names: api::selector::GENERIC_FIELDS,
    get: api::selector::generic_fields,
    aliases: &[],
    own_conversion: false,
};

/// `metadata.name` (a `metadata.namespace` selector matches the empty namespace), upstream's
/// default for cluster-scoped kinds.
pub const CLUSTER_META: Fields = Fields {
    names: api::selector::GENERIC_FIELDS,
    get: api::selector::cluster_fields,
    aliases: &[],
    own_conversion: false,
};

pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    get: fn(&Value) -> Vec<(&'static str, String)>,
}

impl Filter {
    pub fn from_query(query: &Query, resource: &'static Resource) -> Result<Filter, ApiError> {
        let kind = &resource.fields;
        let labels = query
            .non_empty("labelSelector")
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .filter(|s| !s.is_empty());
        let fields = query
            .non_empty("fieldSelector")
            .map(|s| {
                FieldSelector::parse(s)
                    .and_then(|f| f.normalize(kind.names, kind.aliases, kind.own_conversion))
            })
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .filter(|s| !s.is_empty());
        Ok(Filter {
            labels,
            fields,
            get: kind.get,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// The exact name a `metadata.name=` field selector asks for, if any.
    pub fn name(&self) -> Option<String> {
        self.fields
            .as_ref()
            .and_then(|f| f.required_value("metadata.name"))
            .map(str::to_string)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ls) = &self.labels {
            if !ls.matches(&object::labels(obj)) {
                return false;
            }
        }
        match &self.fields {
            Some(fs) => fs.matches_fields(&(self.get)(obj)),
            None => true,
        }
    }
}

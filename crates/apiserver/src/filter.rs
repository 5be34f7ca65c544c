//! Label and field selectors from a request's query, applied to objects on list, watch and
//! deletecollection.

use api::patch::PatchKind;
use api::selector::{FieldSelector, LabelSelector};
use serde_json::Value;

use crate::errors::ApiError;
use crate::object;
use crate::registry::Resource;
use crate::request::Query;

pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    kind: PatchKind,
}

impl Filter {
    pub fn from_query(query: &Query, resource: &'static Resource) -> Result<Filter, ApiError> {
        let kind = resource.strategy.patch_kind();
        let labels = query
            .non_empty("labelSelector")
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .filter(|s| !s.is_empty());
        let fields = query
            .non_empty("fieldSelector")
            .map(|s| FieldSelector::parse(s).and_then(|f| f.normalize(kind)))
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .filter(|s| !s.is_empty());
        Ok(Filter {
            labels,
            fields,
            kind,
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
            Some(fs) => fs.matches_fields(&api::selector::object_fields(self.kind, obj)),
            None => true,
        }
    }
}

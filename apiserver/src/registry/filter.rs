//! Which objects a list or watch returns: the label and field selectors of a
//! request, parsed once and applied per object. Entry point: [`Filter::parse`].

use std::collections::BTreeMap;

use ferrokube_api::selector::field::{self, FieldSelector};
use ferrokube_api::selector::label::LabelSelector;
use ferrokube_api::ResourceInfo;
use serde_json::Value;

use crate::error::ApiError;

/// The selectors of one request.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
    kind: &'static str,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector`; a malformed selector or an
    /// unsupported field label is a 400 with the parser's message.
    pub fn parse(
        res: &ResourceInfo,
        label: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let label = match label.filter(|s| !s.trim().is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let field = match field_selector.filter(|s| !s.trim().is_empty()) {
            Some(s) => {
                let sel =
                    FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                field::validate_fields(res.kind, &sel)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(sel)
            }
            None => None,
        };
        Ok(Filter {
            label,
            field,
            kind: res.kind,
        })
    }

    /// True when the request selects everything.
    pub fn is_everything(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    /// The single name a `metadata.name=<x>` field selector pins, if any:
    /// the read can then go to one key.
    pub fn exact_name(&self) -> Option<String> {
        self.field
            .as_ref()?
            .required_value("metadata.name")
            .map(str::to_string)
    }

    /// The namespace a `metadata.namespace=<x>` field selector pins, if any.
    pub fn exact_namespace(&self) -> Option<String> {
        self.field
            .as_ref()?
            .required_value("metadata.namespace")
            .map(str::to_string)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(label) = &self.label {
            let labels: BTreeMap<String, String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            if !label.matches(&labels) {
                return false;
            }
        }
        if let Some(sel) = &self.field {
            if !sel.matches(&field::field_set(self.kind, obj)) {
                return false;
            }
        }
        true
    }
}

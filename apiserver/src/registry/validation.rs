//! Upstream's validation of objects: what makes a create or update a 422
//! Invalid with field causes. Entry points: [`validate`], [`validate_update`].

use ferrokube_api::validation as rules;
use ferrokube_api::ResourceInfo;
use serde_json::{json, Value};

use crate::error::Cause;

/// Validation of a whole object (on create, and on update before
/// [`validate_update`]).
pub fn validate(res: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_metadata(res, obj, &mut causes);
    causes
}

/// What an update may not change (immutable fields).
pub fn validate_update(_res: &ResourceInfo, _new: &Value, _old: &Value) -> Vec<Cause> {
    Vec::new()
}

fn validate_metadata(res: &ResourceInfo, obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else {
        for msg in rules::name_rule(res.kind).check(name) {
            causes.push(Cause::invalid("metadata.name", &json!(name), &msg));
        }
    }
    if res.namespaced {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if ns.is_empty() {
            causes.push(Cause::required("metadata.namespace"));
        }
    }
}

//! Upstream's defaulting for the fields users see: what `kubectl get -o
//! yaml` shows that the manifest did not say. Entry point: [`apply`].

use ferrokube_api::ResourceInfo;
use serde_json::{json, Value};

/// Sets `obj[key]` unless it is already set.
fn default_at(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        map.entry(key.to_string()).or_insert(value);
    }
}

/// Applies the defaults of `res` to `obj`, on create and on every update.
pub fn apply(res: &ResourceInfo, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Namespace") => namespace(obj),
        _ => {}
    }
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !obj["metadata"].get("labels").is_some_and(Value::is_object) {
        obj["metadata"]["labels"] = json!({});
    }
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    default_at(&mut obj["spec"], "finalizers", json!(["kubernetes"]));
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    default_at(&mut obj["status"], "phase", json!("Active"));
}

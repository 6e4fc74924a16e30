//! What the registry does to an object on its way in, per resource, as
//! upstream's `rest.RESTCreateStrategy`/`RESTUpdateStrategy` do: system
//! metadata, status reset, generation, then defaulting and validation
//! (see [`defaults`](super::defaults) and [`validation`](super::validation)).

use ferrokube_api::ResourceInfo;
use serde_json::{json, Map, Value};

/// Resources whose `metadata.generation` counts spec changes.
fn tracks_generation(res: &ResourceInfo) -> bool {
    matches!(res.group, "apps" | "batch" | "admissionregistration.k8s.io")
        || res.plural == "replicationcontrollers"
}

/// Resources whose status a create or a main-resource update may not set:
/// those with a `status` subresource, except nodes, whose agent registers
/// them with their status, as upstream allows.
fn status_is_separate(res: &ResourceInfo) -> bool {
    res.has_subresource("status") && res.plural != "nodes"
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Sets the metadata the system owns and resets what clients may not set on
/// create: `uid`, `creationTimestamp`, `generation`, status.
pub fn prepare_for_create(res: &ResourceInfo, obj: &mut Value, now: &str) {
    let meta = meta_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(field);
    }
    if tracks_generation(res) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    drop_empty_collections(meta);
    if status_is_separate(res) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
}

/// Carries over what an update of the main resource may not change:
/// system metadata and, where it has its own subresource, the status; bumps
/// `generation` when the spec changed.
pub fn prepare_for_update(res: &ResourceInfo, new: &mut Value, old: &Value) {
    copy_system_metadata(new, old);
    drop_empty_collections(meta_mut(new));
    if status_is_separate(res) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if tracks_generation(res) {
        let old_gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec_changed = new.get("spec") != old.get("spec")
            || (res.plural == "mutatingwebhookconfigurations"
                || res.plural == "validatingwebhookconfigurations")
                && new.get("webhooks") != old.get("webhooks");
        let deleting_now = new.pointer("/metadata/deletionTimestamp").is_some()
            && old.pointer("/metadata/deletionTimestamp").is_none();
        let generation = if spec_changed || deleting_now {
            old_gen + 1
        } else {
            old_gen
        };
        meta_mut(new).insert("generation".into(), json!(generation));
    }
}

/// Empty `labels`, `annotations`, `finalizers` and `ownerReferences` are
/// absent, as upstream's `omitempty` drops them: a patch that empties a map
/// (`kubectl diff` sends `"annotations":{}`) then leaves no trace, and an
/// update that only empties one is a no-op.
fn drop_empty_collections(meta: &mut Map<String, Value>) {
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match meta.get(field) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

/// A status update changes only the status: everything else comes from
/// the stored object, as upstream's status strategies do.
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    let mut merged = old.clone();
    match status {
        Some(s) => merged["status"] = s,
        None => {
            if let Some(o) = merged.as_object_mut() {
                o.remove("status");
            }
        }
    }
    *new = merged;
}

/// For internal writes that start from the stored object: only the system
/// metadata is forced back.
pub fn keep_system_metadata(new: &mut Value, old: &Value) {
    copy_system_metadata(new, old);
}

fn copy_system_metadata(new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
        "generateName",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("selfLink");
}

/// True when an update changes nothing a client could observe: upstream
/// skips writing such an update and returns the stored object.
pub fn is_noop(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(new) == strip(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_api::resources::find;

    #[test]
    fn create_sets_system_metadata_and_drops_status() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"metadata": {"name": "web", "uid": "forged", "resourceVersion": "7"}, "spec": {}, "status": {"replicas": 9}});
        prepare_for_create(deploy, &mut obj, "2026-01-01T00:00:00Z");
        assert_ne!(obj["metadata"]["uid"], "forged");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj["metadata"].get("resourceVersion").is_none());
        assert!(obj.get("status").is_none());
    }

    #[test]
    fn generation_counts_spec_changes_only() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "web", "uid": "u", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut same = json!({"metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {}});
        prepare_for_update(deploy, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["metadata"]["uid"], "u");
        assert_eq!(
            same["status"]["replicas"], 1,
            "status comes from the stored object"
        );
        let mut scaled = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}});
        prepare_for_update(deploy, &mut scaled, &old);
        assert_eq!(scaled["metadata"]["generation"], 4);
    }

    #[test]
    fn status_update_keeps_spec_and_metadata() {
        let old =
            json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"nodeName": "n1"}});
        let mut new = json!({"metadata": {"name": "p", "labels": {}}, "spec": {"nodeName": "evil"}, "status": {"phase": "Running"}});
        prepare_for_status_update(&mut new, &old);
        assert_eq!(new["spec"]["nodeName"], "n1");
        assert_eq!(new["metadata"]["labels"]["a"], "b");
        assert_eq!(new["status"]["phase"], "Running");
    }
}

//! Upstream's validation of objects: what makes a create or update a 422
//! Invalid with field causes. Entry points: [`validate`], [`validate_update`].
//!
//! Messages are upstream's `field.Error` texts, so what users learned from
//! `kubectl apply` errors reads the same here. Objects arrive defaulted (see
//! [`defaults`](super::defaults)) in upstream's JSON shape.

mod cluster;
mod config;
mod pod;
pub(in crate::registry) mod quantity;
mod service;
mod workloads;

use std::collections::BTreeMap;

use ferrokube_api::validation as rules;
use ferrokube_api::ResourceInfo;
use serde_json::{json, Value};

use crate::error::Cause;

/// Validation of a whole object (on create, and on update before
/// [`validate_update`]).
pub fn validate(res: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_metadata(res, obj, &mut causes);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match (res.group, res.kind) {
        ("", "Pod") => {
            pod::validate_pod_spec(spec, "spec", &mut causes);
            pod::validate_pod_specific_annotations(obj, &mut causes);
        }
        ("", "Service") => service::validate(spec, &mut causes),
        ("", "ConfigMap") => config::validate_config_map(obj, &mut causes),
        ("", "Secret") => config::validate_secret(obj, &mut causes),
        ("", "Node") => cluster::validate_node(spec, &mut causes),
        ("", "Event") => cluster::validate_event(obj, &mut causes),
        ("", "ReplicationController") => {
            workloads::validate_replication_controller(spec, &mut causes)
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workloads::validate_apps(res.kind, spec, &mut causes)
        }
        ("batch", "Job") => workloads::validate_job(obj, &mut causes),
        ("batch", "CronJob") => workloads::validate_cron_job(spec, &mut causes),
        ("coordination.k8s.io", "Lease") => cluster::validate_lease(spec, &mut causes),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            cluster::validate_role_binding(res.kind, obj, &mut causes)
        }
        _ => {}
    }
    causes
}

/// What an update may not change (immutable fields).
pub fn validate_update(res: &ResourceInfo, new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let new_spec = new.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    match (res.group, res.kind) {
        ("", "Pod") => {
            pod::validate_pod_specific_annotation_updates(new, old, &mut causes);
            pod::validate_pod_update(new_spec, old_spec, &mut causes);
        }
        ("", "Service") => service::validate_update(new_spec, old_spec, &mut causes),
        ("", "Secret") => config::validate_secret_update(new, old, &mut causes),
        ("", "ConfigMap") => config::validate_immutable_data(new, old, &mut causes),
        ("", "Node") => cluster::validate_node_update(new_spec, old_spec, &mut causes),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workloads::validate_apps_update(res.kind, new_spec, old_spec, &mut causes)
        }
        ("batch", "Job") => workloads::validate_job_update(new_spec, old_spec, &mut causes),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            cluster::validate_role_ref_update(new, old, &mut causes)
        }
        _ => {}
    }
    causes
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
    let generate_name = str_at(obj, "/metadata/generateName");
    if !generate_name.is_empty() {
        // A prefix may end in `-`: the random suffix follows it.
        let masked = match generate_name.strip_suffix('-') {
            Some(head) if !head.is_empty() => format!("{head}a"),
            _ => generate_name.to_string(),
        };
        for msg in rules::name_rule(res.kind).check(&masked) {
            causes.push(Cause::invalid(
                "metadata.generateName",
                &json!(generate_name),
                &msg,
            ));
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
    validate_labels_and_annotations(obj.get("metadata"), "metadata", causes);
}

/// `ValidateLabels` and `ValidateAnnotations` of an object's or a
/// template's metadata at `path`.
fn validate_labels_and_annotations(meta: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(meta) = meta else { return };
    let labels = string_map(meta.get("labels"));
    for e in rules::validate_labels(&labels, &format!("{path}.labels")) {
        causes.push(field_error(e));
    }
    let annotations = string_map(meta.get("annotations"));
    for e in rules::validate_annotations(&annotations, &format!("{path}.annotations")) {
        causes.push(field_error(e));
    }
}

fn field_error(e: rules::FieldError) -> Cause {
    match e.error_type {
        rules::FieldErrorType::Invalid => Cause::invalid(e.field, &json!(e.value), &e.message),
        rules::FieldErrorType::TooLong => Cause::new(
            e.error_type.cause_reason(),
            e.field,
            format!("{}: {}", e.error_type.as_str(), e.message),
        ),
    }
}

/// The string at `pointer`, or `""` when absent.
fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The elements of the array at `v[key]` (none when absent).
fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `%#v` of a `map[string]string`, as upstream prints a bad label map:
/// `map[string]string{"app":"web", "tier":"db"}`.
fn go_string_map(v: Option<&Value>) -> String {
    let map = string_map(v);
    if v.is_none_or(Value::is_null) {
        return "map[string]string(nil)".to_string();
    }
    let entries: Vec<String> = map.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// `Invalid value: <shown>: why` where `shown` is already rendered the way
/// upstream's `%#v` renders a struct or map.
fn invalid_shown(field: impl Into<String>, shown: &str, why: &str) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {shown}: {why}"),
    )
}

/// Upstream's `ValidateNonnegativeField`.
fn nonnegative(v: &Value, key: &str, path: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = v.get(key).and_then(Value::as_i64) {
        if n < 0 {
            causes.push(Cause::invalid(
                format!("{path}.{key}"),
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Upstream's `IsValidPortNum` for a present, numeric port.
fn port_in_range(v: &Value, field: String, causes: &mut Vec<Cause>) {
    let n = v.as_i64().unwrap_or(0);
    if !(1..=65535).contains(&n) {
        causes.push(Cause::invalid(
            field,
            v,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// A string field that must be one of `supported` (an empty one is missing).
fn one_of(v: &Value, key: &str, path: &str, supported: &[&str], causes: &mut Vec<Cause>) {
    let field = if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    };
    match v.get(key).and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required(field)),
        Some(s) if !supported.contains(&s) => {
            causes.push(Cause::not_supported(field, &json!(s), supported))
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_api::resources::find;

    pub(super) fn res(group: &str, plural: &str) -> &'static ResourceInfo {
        find(group, "v1", plural).expect("served")
    }

    /// The rendered causes (`field: message`), as `kubectl` shows them.
    pub(super) fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::render).collect()
    }

    #[test]
    fn metadata_name_and_namespace_are_required() {
        let got = messages(validate(res("", "configmaps"), &json!({"metadata": {}})));
        assert_eq!(
            got,
            [
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value",
            ]
        );
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        let got = messages(validate(
            res("", "namespaces"),
            &json!({"metadata": {"name": "a.b"}}),
        ));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("metadata.name: Invalid value: \"a.b\": "),
            "{got:?}"
        );
    }

    #[test]
    fn labels_annotations_and_generate_name_are_checked() {
        let obj = json!({"metadata": {
            "name": "Bad_x", "generateName": "Bad_", "namespace": "default",
            "labels": {"app": "not valid"},
            "annotations": {"a b": "x"},
        }});
        let got = messages(validate(res("", "configmaps"), &obj));
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with(
            "metadata.name: Invalid value: \"Bad_x\": a lowercase RFC 1123 subdomain"
        ));
        assert!(got[1].starts_with(
            "metadata.generateName: Invalid value: \"Bad_\": a lowercase RFC 1123 subdomain"
        ));
        assert!(
            got[2].starts_with(
                "metadata.labels: Invalid value: \"not valid\": a valid label must be"
            ),
            "{}",
            got[2]
        );
        assert!(got[3].starts_with(
            "metadata.annotations: Invalid value: \"a b\": name part must consist of"
        ));
        let ok =
            json!({"metadata": {"name": "web-x1y2z", "generateName": "web-", "namespace": "d"}});
        assert!(validate(res("", "configmaps"), &ok).is_empty());
    }

    #[test]
    fn go_string_map_prints_like_upstream() {
        assert_eq!(
            go_string_map(Some(&json!({"b": "2", "a": "1"}))),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(go_string_map(None), "map[string]string(nil)");
    }
}

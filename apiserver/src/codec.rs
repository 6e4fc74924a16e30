//! Request bodies in, upstream-shaped objects out: JSON or YAML is decoded,
//! checked against the resource's `apiVersion`/`kind`, and passed through the
//! upstream type (k8s-openapi) so that wrongly typed fields are refused and
//! unknown fields are reported (`fieldValidation=Strict|Warn|Ignore`).
//! Entry point: [`decode_object`].

use ferrokube_api::ResourceInfo;
use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    rbac::v1 as rbac, scheduling::v1 as scheduling,
};
use serde_json::Value;

use crate::error::ApiError;

/// How unknown or duplicate fields are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    /// Accept, and tell the client in a `Warning` header (upstream's default).
    #[default]
    Warn,
    /// Refuse with 400 BadRequest.
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<FieldValidation, ApiError> {
        match s.unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation directive must be one of Ignore, Warn, Strict, got {other:?}"
            ))),
        }
    }
}

/// Parses a body as JSON, or as YAML or Kubernetes protobuf when the content
/// type says so.
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
        }
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "error decoding request body: invalid character or structure at line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        }),
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// A decoded object and the warnings to send back.
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Checks a body's `apiVersion`/`kind` against the resource (filling them
/// in when absent), then normalizes it through the upstream type.
pub fn decode_object(
    res: &ResourceInfo,
    mut body: Value,
    validation: FieldValidation,
) -> Result<Decoded, ApiError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: the body is not a JSON object",
            res.kind, res.version, res.kind
        )));
    };
    let expected_av = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("apiVersion".into(), Value::String(expected_av.clone()));
        }
        Some(av) if av != expected_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected_av})"
            )))
        }
        Some(_) => {}
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("kind".into(), Value::String(res.kind.to_string()));
        }
        Some(k) if k != res.kind => {
            return Err(ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind ({})",
                res.kind, res.version, res.kind, res.kind
            )))
        }
        Some(_) => {}
    }
    normalize_quantities(&mut body, None);
    let normalized = roundtrip(res, &body).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&body, &normalized, "", &mut unknown);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field {f:?}"))
                    .collect();
                // Upstream wraps the strict error like any decode error.
                return Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                    res.kind,
                    res.version,
                    res.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field {f:?}")));
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(Decoded {
        object: normalized,
        warnings,
    })
}

/// Quantities may be written as numbers (`cpu: 1`); upstream's Quantity
/// accepts that, the generated type wants a string.
fn normalize_quantities(v: &mut Value, parent: Option<&str>) {
    const QUANTITY_MAPS: &[&str] = &[
        "limits",
        "requests",
        "capacity",
        "allocatable",
        "hard",
        "used",
        "max",
        "min",
        "default",
        "defaultRequest",
        "maxLimitRequestRatio",
        "overhead",
    ];
    match v {
        Value::Object(map) => {
            let in_quantity_map = parent.is_some_and(|p| QUANTITY_MAPS.contains(&p));
            for (k, child) in map.iter_mut() {
                if (in_quantity_map || k == "sizeLimit") && child.is_number() {
                    *child = Value::String(child.to_string());
                } else {
                    normalize_quantities(child, Some(k));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                normalize_quantities(item, None);
            }
        }
        _ => {}
    }
}

/// Paths present in `input` but dropped by the typed round trip: fields the
/// upstream type does not know. `null` inputs are not reported.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, &child, out),
                    None if v.is_null() => {}
                    None if is_empty_container(v) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        // Maps typed as free-form (labels, data) keep every key; nothing else to compare.
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn through<T>(v: &Value) -> Result<Value, String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Passes `v` through the upstream type of `res`.
fn roundtrip(res: &ResourceInfo, v: &Value) -> Result<Value, String> {
    match (res.group, res.kind) {
        ("", "Namespace") => through::<core::Namespace>(v),
        ("", "Pod") => through::<core::Pod>(v),
        ("", "Node") => through::<core::Node>(v),
        ("", "Service") => through::<core::Service>(v),
        ("", "Endpoints") => through::<core::Endpoints>(v),
        ("", "ConfigMap") => through::<core::ConfigMap>(v),
        ("", "Secret") => through::<core::Secret>(v),
        ("", "ServiceAccount") => through::<core::ServiceAccount>(v),
        ("", "Event") => through::<core::Event>(v),
        ("", "ReplicationController") => through::<core::ReplicationController>(v),
        ("", "LimitRange") => through::<core::LimitRange>(v),
        ("", "ResourceQuota") => through::<core::ResourceQuota>(v),
        ("apps", "Deployment") => through::<apps::Deployment>(v),
        ("apps", "ReplicaSet") => through::<apps::ReplicaSet>(v),
        ("apps", "StatefulSet") => through::<apps::StatefulSet>(v),
        ("apps", "DaemonSet") => through::<apps::DaemonSet>(v),
        ("apps", "ControllerRevision") => through::<apps::ControllerRevision>(v),
        ("batch", "Job") => through::<batch::Job>(v),
        ("batch", "CronJob") => through::<batch::CronJob>(v),
        ("rbac.authorization.k8s.io", "Role") => through::<rbac::Role>(v),
        ("rbac.authorization.k8s.io", "RoleBinding") => through::<rbac::RoleBinding>(v),
        ("rbac.authorization.k8s.io", "ClusterRole") => through::<rbac::ClusterRole>(v),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            through::<rbac::ClusterRoleBinding>(v)
        }
        ("coordination.k8s.io", "Lease") => through::<coordination::Lease>(v),
        ("discovery.k8s.io", "EndpointSlice") => through::<discovery::EndpointSlice>(v),
        ("scheduling.k8s.io", "PriorityClass") => through::<scheduling::PriorityClass>(v),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            through::<admission::MutatingWebhookConfiguration>(v)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            through::<admission::ValidatingWebhookConfiguration>(v)
        }
        (group, kind) => Err(format!("no type registered for {kind} in group {group:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_api::resources::find;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        find("", "v1", "pods").unwrap()
    }

    #[test]
    fn every_served_kind_has_a_type() {
        for res in ferrokube_api::RESOURCES {
            let v = json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": {"name": "x"}});
            roundtrip(res, &v).unwrap_or_else(|e| panic!("{}: {e}", res.kind));
        }
    }

    #[test]
    fn unknown_fields_are_named_and_refused_when_strict() {
        let body = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox", "imagePolicy": "x"}]}, "bogus": 1});
        let err = decode_object(pods(), body.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.starts_with(
                "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: "
            ),
            "{}",
            err.message
        );
        assert!(
            err.message
                .contains("unknown field \"spec.containers[0].imagePolicy\""),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("unknown field \"bogus\""),
            "{}",
            err.message
        );
        let ok = decode_object(pods(), body, FieldValidation::Warn).unwrap();
        assert_eq!(ok.warnings.len(), 2);
        assert!(ok.object.get("bogus").is_none());
        assert_eq!(ok.object["kind"], "Pod");
    }

    #[test]
    fn wrong_kind_or_version_is_a_bad_request() {
        let err = decode_object(
            pods(),
            json!({"apiVersion": "apps/v1", "kind": "Pod"}),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "the API version in the data (apps/v1) does not match the expected API version (v1)"
        );
        let err =
            decode_object(pods(), json!({"kind": "Service"}), FieldValidation::Strict).unwrap_err();
        assert!(err
            .message
            .contains("does not match the expected kind (Pod)"));
    }

    #[test]
    fn mistyped_fields_are_refused_and_numeric_quantities_accepted() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let err = decode_object(
            deploy,
            json!({"spec": {"replicas": "three"}}),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err
            .message
            .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment"));
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}]}});
        let ok = decode_object(pods(), pod, FieldValidation::Strict).unwrap();
        assert_eq!(
            ok.object["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }

    #[test]
    fn yaml_bodies_are_read() {
        let v = parse_body("application/yaml", b"kind: Pod\nmetadata:\n  name: p\n").unwrap();
        assert_eq!(v["metadata"]["name"], "p");
        let err = parse_body("application/json", b"{\"kind\": ").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(parse_body("text/plain", b"x").unwrap_err().code, 415);
    }
}

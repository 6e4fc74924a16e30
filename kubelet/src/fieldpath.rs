//! The downward API's values, as upstream's `pkg/fieldpath`: pod metadata
//! by field path ([`extract_field_path_as_string`]) and a container's
//! requests/limits by resource name ([`container_resource_value`]). Shared
//! by `env` (fieldRef, resourceFieldRef) and the downwardAPI volume.

use std::collections::BTreeMap;

use ferrokube_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// A field path or resource this kubelet cannot evaluate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldPathError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("fieldPath {0:?} does not support subscript")]
    NoSubscript(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("invalid divisor {divisor:?} for {resource}: must be a positive quantity")]
    InvalidDivisor { resource: String, divisor: String },
    #[error("invalid quantity {value:?} for {resource}")]
    InvalidQuantity { resource: String, value: String },
    #[error("container {0:?} not found in the pod")]
    ContainerNotFound(String),
}

/// `metadata.labels['k']` → (`metadata.labels`, `k`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let open = inner.find("['")?;
    Some((&inner[..open], &inner[open + 2..]))
}

/// A map as the downward API writes it: `key="value"` lines, keys sorted,
/// values quoted like Go's `%q`.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", ferrokube_api::validation::go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pod metadata field: `metadata.name`, `metadata.namespace`,
/// `metadata.uid`, `metadata.labels`, `metadata.annotations`, and
/// `metadata.labels['k']` / `metadata.annotations['k']` (empty when absent).
pub fn extract_field_path_as_string(pod: &Pod, path: &str) -> Result<String, FieldPathError> {
    let m = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.labels" => &m.labels,
            "metadata.annotations" => &m.annotations,
            _ => return Err(FieldPathError::NoSubscript(path.to_string())),
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&m.labels.clone().unwrap_or_default()),
        "metadata.annotations" => format_map(&m.annotations.clone().unwrap_or_default()),
        _ => return Err(FieldPathError::UnsupportedFieldPath(path.to_string())),
    })
}

fn parse(resource: &str, q: &ApiQuantity) -> Result<Quantity, FieldPathError> {
    Quantity::parse(&q.0).map_err(|_| FieldPathError::InvalidQuantity {
        resource: resource.to_string(),
        value: q.0.clone(),
    })
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) == (b < 0)) {
        q + 1
    } else {
        q
    }
}

/// `limits.cpu`, `limits.memory`, `limits.ephemeral-storage` and the same
/// for `requests.*`, divided by `divisor` (default 1) and rounded up, as
/// upstream. Limits a container does not set default to the node's
/// allocatable, as upstream's `MergeContainerResourceLimits`.
pub fn container_resource_value(
    resource: &str,
    divisor: Option<&ApiQuantity>,
    container: &Container,
    allocatable: &BTreeMap<String, ApiQuantity>,
) -> Result<String, FieldPathError> {
    let (section, name) = resource
        .split_once('.')
        .ok_or_else(|| FieldPathError::UnsupportedResource(resource.to_string()))?;
    if !matches!(name, "cpu" | "memory" | "ephemeral-storage") {
        return Err(FieldPathError::UnsupportedResource(resource.to_string()));
    }
    let r = container.resources.clone().unwrap_or_default();
    let value = match section {
        "limits" => r
            .limits
            .as_ref()
            .and_then(|l| l.get(name))
            .or_else(|| allocatable.get(name)),
        "requests" => r.requests.as_ref().and_then(|l| l.get(name)),
        _ => return Err(FieldPathError::UnsupportedResource(resource.to_string())),
    };
    let value = match value {
        Some(q) => parse(resource, q)?,
        None => Quantity::parse("0").expect("0 is a quantity"),
    };
    let divisor = match divisor {
        Some(d) if !d.0.is_empty() => parse(resource, d)?,
        _ => Quantity::parse("1").expect("1 is a quantity"),
    };
    let invalid = || FieldPathError::InvalidDivisor {
        resource: resource.to_string(),
        divisor: divisor.to_string(),
    };
    let n = if name == "cpu" {
        let d = divisor.milli_value();
        if d <= 0 {
            return Err(invalid());
        }
        ceil_div(value.milli_value(), d)
    } else {
        let d = divisor.value();
        if d <= 0 {
            return Err(invalid());
        }
        ceil_div(value.value(), d)
    };
    Ok(n.to_string())
}

/// The container named `name` among the pod's init and regular containers.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, FieldPathError> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| FieldPathError::ContainerNotFound(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\""}},
            "spec": {"containers": [{"name": "app", "image": "busybox",
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                              "requests": {"cpu": "250m", "memory": "32Mi"}}},
                {"name": "bare", "image": "busybox"}]}
        }))
        .unwrap()
    }

    #[test]
    fn metadata_fields_and_subscripts() {
        let p = pod();
        let get = |f: &str| extract_field_path_as_string(&p, f);
        assert_eq!(get("metadata.name").unwrap(), "web");
        assert_eq!(get("metadata.namespace").unwrap(), "prod");
        assert_eq!(get("metadata.uid").unwrap(), "u-1");
        assert_eq!(
            get("metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"front\""
        );
        assert_eq!(
            get("metadata.annotations").unwrap(),
            "note=\"say \\\"hi\\\"\""
        );
        assert_eq!(get("metadata.labels['tier']").unwrap(), "front");
        assert_eq!(get("metadata.labels['missing']").unwrap(), "");
        assert_eq!(
            get("spec.bogus").unwrap_err().to_string(),
            "unsupported fieldPath: spec.bogus"
        );
        assert!(matches!(
            get("metadata.name['x']"),
            Err(FieldPathError::NoSubscript(_))
        ));
    }

    #[test]
    fn resource_values_divide_and_round_up() {
        let p = pod();
        let app = find_container(&p, "app").unwrap();
        let alloc = BTreeMap::from([
            ("cpu".to_string(), ApiQuantity("2".into())),
            ("memory".to_string(), ApiQuantity("1Gi".into())),
        ]);
        let v = |r: &str, d: Option<&str>, c: &Container| {
            container_resource_value(r, d.map(|d| ApiQuantity(d.into())).as_ref(), c, &alloc)
        };
        // 500m cpu with divisor 1 rounds up to one core.
        assert_eq!(v("limits.cpu", None, app).unwrap(), "1");
        assert_eq!(v("limits.cpu", Some("1m"), app).unwrap(), "500");
        assert_eq!(v("requests.cpu", Some("1m"), app).unwrap(), "250");
        assert_eq!(v("limits.memory", None, app).unwrap(), "67108864");
        assert_eq!(v("limits.memory", Some("1Mi"), app).unwrap(), "64");
        assert_eq!(v("requests.memory", Some("1Mi"), app).unwrap(), "32");
        // No limits: the node's allocatable; no requests: zero.
        let bare = find_container(&p, "bare").unwrap();
        assert_eq!(v("limits.cpu", None, bare).unwrap(), "2");
        assert_eq!(v("limits.memory", Some("1Mi"), bare).unwrap(), "1024");
        assert_eq!(v("requests.cpu", None, bare).unwrap(), "0");
        assert_eq!(
            v("limits.gpu", None, app).unwrap_err().to_string(),
            "unsupported container resource : limits.gpu"
        );
        assert!(matches!(
            v("limits.cpu", Some("0"), app),
            Err(FieldPathError::InvalidDivisor { .. })
        ));
    }
}

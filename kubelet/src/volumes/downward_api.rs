//! downwardAPI: pod metadata (`fieldRef`) and container resources
//! (`resourceFieldRef`) as files; refreshed like configMaps, so label and
//! annotation changes reach the running pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer::Payload;
use super::config_map::file;
use super::PluginError;
use crate::fieldpath;

/// One file per item; `allocatable` stands in for limits a container
/// does not set.
pub fn make_payload(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    default_mode: i32,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, PluginError> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            fieldpath::extract_field_path_as_string(pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let c = fieldpath::find_container(pod, r.container_name.as_deref().unwrap_or(""))?;
            fieldpath::container_resource_value(&r.resource, r.divisor.as_ref(), c, allocatable)?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            file(value.into_bytes(), item.mode.unwrap_or(default_mode)),
        );
    }
    Ok(payload)
}

/// Whether any item needs the node's allocatable.
pub fn needs_allocatable(items: &[DownwardAPIVolumeFile]) -> bool {
    items.iter().any(|i| i.resource_field_ref.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_resources_as_files() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "app",
                "resources": {"limits": {"memory": "32Mi"}}}]}
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o400},
            {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        assert!(needs_allocatable(&items));
        let p = make_payload(&items, &pod, 0o644, &BTreeMap::new()).unwrap();
        assert_eq!(p["name"].data, b"web");
        assert_eq!(p["labels"].data, b"a=\"1\"\nb=\"2\"");
        assert_eq!(p["labels"].mode, 0o400);
        assert_eq!(p["mem"].data, b"32");
        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}
        ]))
        .unwrap();
        assert_eq!(
            make_payload(&bad, &pod, 0o644, &BTreeMap::new())
                .unwrap_err()
                .to_string(),
            "unsupported fieldPath: status.podIP"
        );
    }
}

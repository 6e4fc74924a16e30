//! configMap: the configMap's keys (or the listed `items`) as files,
//! written through the [`AtomicWriter`](super::atomic_writer::AtomicWriter)
//! so a running pod sees updates whole.

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath};

use super::atomic_writer::{FileProjection, Payload};
use super::{PluginError, DEFAULT_MODE};
use crate::object_source::ObjectSource;

/// Upstream's `MakePayload`: every key of `data` and `binaryData` with
/// `default_mode`, or only `items` (their own mode, if set); a listed key
/// that is missing fails unless the source is optional.
pub fn make_payload(
    items: &[KeyToPath],
    cm: &ConfigMap,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, PluginError> {
    let data = cm.data.clone().unwrap_or_default();
    let binary = cm.binary_data.clone().unwrap_or_default();
    let mut payload = Payload::new();
    if items.is_empty() {
        for (k, v) in data {
            payload.insert(k, file(v.into_bytes(), default_mode));
        }
        for (k, v) in binary {
            payload.insert(k, file(v.0, default_mode));
        }
        return Ok(payload);
    }
    for item in items {
        let bytes = match (data.get(&item.key), binary.get(&item.key)) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(b)) => b.0.clone(),
            (None, None) if optional => continue,
            (None, None) => return Err(PluginError::ConfigMapKey(item.key.clone())),
        };
        payload.insert(
            item.path.clone(),
            file(bytes, item.mode.unwrap_or(default_mode)),
        );
    }
    Ok(payload)
}

pub(super) fn file(data: Vec<u8>, mode: i32) -> FileProjection {
    FileProjection {
        data,
        mode: mode as u32,
    }
}

/// The volume's payload; a missing optional configMap projects nothing.
pub async fn payload(
    objects: &dyn ObjectSource,
    namespace: &str,
    src: &ConfigMapVolumeSource,
) -> Result<Payload, PluginError> {
    let optional = src.optional == Some(true);
    match objects.config_map(namespace, &src.name).await {
        Ok(cm) => make_payload(
            src.items.as_deref().unwrap_or_default(),
            &cm,
            src.default_mode.unwrap_or(DEFAULT_MODE),
            optional,
        ),
        Err(e) if e.is_not_found() && optional => Ok(Payload::new()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm() -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg", "namespace": "ns"},
            "data": {"a": "1", "b": "2"},
            "binaryData": {"bin": "AAEC"}
        }))
        .unwrap()
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn all_keys_or_listed_items_with_modes() {
        let p = make_payload(&[], &cm(), 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(p["a"], file(b"1".to_vec(), 0o644));
        assert_eq!(p["bin"].data, vec![0, 1, 2]);

        let p = make_payload(
            &[item("a", "conf/a.txt", Some(0o400)), item("b", "b", None)],
            &cm(),
            0o640,
            false,
        )
        .unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["b", "conf/a.txt"]);
        assert_eq!(p["conf/a.txt"].mode, 0o400);
        assert_eq!(p["b"].mode, 0o640);
    }

    #[test]
    fn missing_item_key_fails_unless_optional() {
        let items = [item("nope", "x", None)];
        assert_eq!(
            make_payload(&items, &cm(), 0o644, false)
                .unwrap_err()
                .to_string(),
            "configmap references non-existent config key: nope"
        );
        assert!(make_payload(&items, &cm(), 0o644, true).unwrap().is_empty());
    }
}

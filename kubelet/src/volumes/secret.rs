//! secret: the secret's keys (or the listed `items`) as files, written
//! through the [`AtomicWriter`](super::atomic_writer::AtomicWriter).

use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource};

use super::atomic_writer::Payload;
use super::config_map::file;
use super::{PluginError, DEFAULT_MODE};
use crate::object_source::ObjectSource;

/// As the configMap payload, over the secret's `data` (and `stringData`,
/// should a stored secret still carry it).
pub fn make_payload(
    items: &[KeyToPath],
    secret: &Secret,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, PluginError> {
    let mut data: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    let mut payload = Payload::new();
    if items.is_empty() {
        for (k, v) in data {
            payload.insert(k, file(v, default_mode));
        }
        return Ok(payload);
    }
    for item in items {
        match data.get(&item.key) {
            Some(v) => {
                payload.insert(
                    item.path.clone(),
                    file(v.clone(), item.mode.unwrap_or(default_mode)),
                );
            }
            None if optional => continue,
            None => return Err(PluginError::SecretKey(item.key.clone())),
        }
    }
    Ok(payload)
}

/// The volume's payload; a missing optional secret projects nothing.
pub async fn payload(
    objects: &dyn ObjectSource,
    namespace: &str,
    src: &SecretVolumeSource,
) -> Result<Payload, PluginError> {
    let optional = src.optional == Some(true);
    let name = src.secret_name.clone().unwrap_or_default();
    match objects.secret(namespace, &name).await {
        Ok(s) => make_payload(
            src.items.as_deref().unwrap_or_default(),
            &s,
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

    #[test]
    fn secret_keys_as_files_and_missing_key_message() {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "data": {"password": "czNjcjN0"}
        }))
        .unwrap();
        let p = make_payload(&[], &s, 0o400, false).unwrap();
        assert_eq!(p["password"].data, b"s3cr3t");
        assert_eq!(p["password"].mode, 0o400);
        let missing = [KeyToPath {
            key: "token".into(),
            path: "t".into(),
            mode: None,
        }];
        assert_eq!(
            make_payload(&missing, &s, 0o644, false)
                .unwrap_err()
                .to_string(),
            "secret references non-existent secret key: token"
        );
    }
}

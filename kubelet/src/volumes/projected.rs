//! projected: configMap, secret, downwardAPI and serviceAccountToken
//! sources merged into one directory under one `defaultMode`. A token is
//! requested for the pod's service account, bound to the pod, and reused
//! until the token manager refreshes it.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource, ServiceAccountTokenProjection};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer::Payload;
use super::{config_map, downward_api, secret, PluginError, DEFAULT_MODE};
use crate::object_source::ObjectSource;

/// Whether any downwardAPI source needs the node's allocatable.
pub fn needs_allocatable(src: &ProjectedVolumeSource) -> bool {
    src.sources.iter().flatten().any(|s| {
        s.downward_api.as_ref().is_some_and(|d| {
            downward_api::needs_allocatable(d.items.as_deref().unwrap_or_default())
        })
    })
}

pub async fn payload(
    objects: &dyn ObjectSource,
    pod: &Pod,
    src: &ProjectedVolumeSource,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, PluginError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    for s in src.sources.iter().flatten() {
        if let Some(c) = &s.config_map {
            let optional = c.optional == Some(true);
            match objects.config_map(&namespace, &c.name).await {
                Ok(cm) => payload.extend(config_map::make_payload(
                    c.items.as_deref().unwrap_or_default(),
                    &cm,
                    mode,
                    optional,
                )?),
                Err(e) if e.is_not_found() && optional => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(c) = &s.secret {
            let optional = c.optional == Some(true);
            match objects.secret(&namespace, &c.name).await {
                Ok(sec) => payload.extend(secret::make_payload(
                    c.items.as_deref().unwrap_or_default(),
                    &sec,
                    mode,
                    optional,
                )?),
                Err(e) if e.is_not_found() && optional => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(d) = &s.downward_api {
            payload.extend(downward_api::make_payload(
                d.items.as_deref().unwrap_or_default(),
                pod,
                mode,
                allocatable,
            )?);
        }
        if let Some(t) = &s.service_account_token {
            let token = objects
                .service_account_token(
                    &namespace,
                    service_account_name(pod),
                    &token_request(pod, t),
                )
                .await
                .map_err(PluginError::Token)?;
            let token = token.status.map(|s| s.token).unwrap_or_default();
            payload.insert(t.path.clone(), config_map::file(token.into_bytes(), mode));
        }
    }
    Ok(payload)
}

/// The pod's `serviceAccountName`, `default` when unset.
fn service_account_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

/// The TokenRequest upstream's kubelet sends for a source: its audience
/// (none means the API's), its lifetime (default 1 h), bound to the pod.
fn token_request(pod: &Pod, source: &ServiceAccountTokenProjection) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: source
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: Some(source.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_source::FakeObjectSource;

    #[tokio::test]
    async fn sources_merge_under_one_default_mode() {
        let o = FakeObjectSource::default();
        o.insert_config_map(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cfg", "namespace": "ns"}, "data": {"a": "1"}
            }))
            .unwrap(),
        );
        o.insert_secret(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "s", "namespace": "ns"}, "data": {"token": "dA=="}
            }))
            .unwrap(),
        );
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"}, "spec": {"containers": []}
        }))
        .unwrap();
        let src: ProjectedVolumeSource = serde_json::from_value(serde_json::json!({
            "defaultMode": 0o440,
            "sources": [
                {"configMap": {"name": "cfg"}},
                {"secret": {"name": "s", "items": [{"key": "token", "path": "auth/token"}]}},
                {"configMap": {"name": "gone", "optional": true}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "sa-token"}}
            ]
        }))
        .unwrap();
        assert!(!needs_allocatable(&src));
        // The pod runs as `default`, which does not exist yet.
        assert_eq!(
            payload(&o, &pod, &src, &BTreeMap::new())
                .await
                .unwrap_err()
                .to_string(),
            "failed to fetch token: serviceaccounts \"default\" not found"
        );
        o.insert_service_account(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "default", "namespace": "ns"}
            }))
            .unwrap(),
        );
        let p = payload(&o, &pod, &src, &BTreeMap::new()).await.unwrap();
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            ["a", "auth/token", "ns", "sa-token"]
        );
        assert_eq!(p["sa-token"].data, b"fake-token:ns:default:web");
        assert!(p.values().all(|f| f.mode == 0o440));
        assert_eq!(p["auth/token"].data, b"t");
        assert_eq!(p["ns"].data, b"ns");

        let mut missing = src.clone();
        missing.sources.as_mut().unwrap()[0]
            .config_map
            .as_mut()
            .unwrap()
            .name = "absent".into();
        assert_eq!(
            payload(&o, &pod, &missing, &BTreeMap::new())
                .await
                .unwrap_err()
                .to_string(),
            "configmap \"absent\" not found"
        );
    }
}

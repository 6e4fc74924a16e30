//! Subresources other than `status`: `scale` (Deployments, ReplicaSets,
//! StatefulSets, ReplicationControllers), pods' `binding` and `eviction`,
//! namespaces' `finalize` and serviceaccounts' `token` (TokenRequest).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use ferrokube_api::selector::label::LabelSelector;
use serde_json::{json, Value};

use super::request::RequestInfo;
use super::{respond, AppState};
use crate::codec;
use crate::error::ApiError;
use crate::registry::{Context, DeleteOptions, PatchType, WriteScope};

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

/// Serves one subresource request.
pub async fn handle(
    state: &AppState,
    info: &RequestInfo,
    sub: &str,
    method: &Method,
    content_type: &str,
    body: &[u8],
    ctx: &Context,
) -> Result<Response, ApiError> {
    let res = info.resource;
    let ns = info.namespace.as_deref();
    let name = info.name.as_deref().unwrap_or_default();
    let registry = &state.registry;
    match (sub, method.as_str()) {
        ("scale", "GET") => {
            let obj = registry.get(res, ns, name).await?;
            Ok(respond(StatusCode::OK, &scale_of(&obj)?))
        }
        ("scale", "PUT" | "PATCH") => {
            let current = scale_of(&registry.get(res, ns, name).await?)?;
            let desired = if method == Method::PUT {
                codec::parse_body(content_type, body)?
            } else {
                let patch_type = PatchType::from_content_type(content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
                apply_patch(patch_type, "Scale", &current, body)?
            };
            let replicas = desired
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::bad_request("Scale: spec.replicas must be an integer"))?;
            if replicas < 0 {
                let scale = ferrokube_api::resources::ResourceInfo {
                    kind: "Scale",
                    ..*res
                };
                return Err(ApiError::invalid(
                    &scale,
                    name,
                    vec![crate::error::Cause::invalid(
                        "spec.replicas",
                        &json!(replicas),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let rv = desired
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse().ok());
            let written = registry
                .update_with(res, ns, name, WriteScope::Object, rv, ctx, move |old| {
                    let mut new = old.clone();
                    new["spec"]["replicas"] = json!(replicas);
                    Ok(new)
                })
                .await?;
            Ok(respond(StatusCode::OK, &scale_of(&written.object)?))
        }
        ("binding", "POST") => {
            let binding = codec::parse_body(content_type, body)?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    let bindings = ferrokube_api::resources::ResourceInfo {
                        kind: "Binding",
                        ..*res
                    };
                    ApiError::invalid(
                        &bindings,
                        name,
                        vec![crate::error::Cause::required("target.name")],
                    )
                })?
                .to_string();
            let annotations = binding.pointer("/metadata/annotations").cloned();
            let pod_name = name.to_string();
            registry
                .update_with(res, ns, name, WriteScope::System, None, ctx, move |old| {
                    bind(old, &pod_name, &node, annotations.as_ref())
                })
                .await?;
            Ok(respond(StatusCode::CREATED, &success(201)))
        }
        ("eviction", "POST") => {
            let eviction = codec::parse_body(content_type, body)?;
            let opts = eviction
                .get("deleteOptions")
                .map(|d| DeleteOptions {
                    grace_period_seconds: d.get("gracePeriodSeconds").and_then(Value::as_i64),
                    propagation_policy: d
                        .get("propagationPolicy")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    precondition_uid: d
                        .pointer("/preconditions/uid")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    precondition_resource_version: d
                        .pointer("/preconditions/resourceVersion")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    dry_run: false,
                })
                .unwrap_or_default();
            registry.delete(res, ns, name, &opts, ctx).await?;
            Ok(respond(StatusCode::CREATED, &success(201)))
        }
        ("token", "POST") => {
            let request = codec::parse_body(content_type, body)?;
            let issued = super::token_request::create(
                &state.service_accounts,
                registry,
                ns.unwrap_or_default(),
                name,
                request,
                chrono::Utc::now(),
            )
            .await?;
            Ok(respond(StatusCode::CREATED, &issued))
        }
        ("finalize", "PUT") => {
            let body = codec::parse_body(content_type, body)?;
            let finalizers = body
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or_else(|| json!([]));
            let written = registry.finalize_namespace(name, finalizers, ctx).await?;
            Ok(respond(StatusCode::OK, &written))
        }
        (sub, m) => Err(ApiError::method_not_supported(
            res,
            &format!("{m} on subresource {sub}"),
        )),
    }
}

fn apply_patch(
    patch_type: PatchType,
    kind: &str,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    let parse = || {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    let patched = match patch_type {
        PatchType::Json => ferrokube_api::patch::apply_json_patch(current, body),
        PatchType::Merge => ferrokube_api::patch::apply_merge_patch(current, &parse()?),
        PatchType::StrategicMerge => {
            ferrokube_api::patch::apply_strategic_merge_patch(kind, current, &parse()?)
        }
    };
    patched.map_err(|e| ApiError::new_unprocessable_patch(e.to_string()))
}

/// The `autoscaling/v1` Scale view of a scalable object.
fn scale_of(obj: &Value) -> Result<Value, ApiError> {
    let selector = match obj.pointer("/spec/selector") {
        Some(sel) if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() => {
            let parsed: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(sel.clone())
                    .map_err(|e| ApiError::internal(format!("stored selector: {e}")))?;
            LabelSelector::from_metav1(&parsed)
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        // ReplicationControllers select with a plain map.
        Some(Value::Object(map)) => {
            let mut pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => String::new(),
    };
    let meta = &obj["metadata"];
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

/// Binds a pod to a node: sets `spec.nodeName` and the PodScheduled
/// condition, refusing a pod that is already bound or being deleted.
/// Shared by REST's `pods/binding` and gRPC's `Bind`.
pub(crate) fn bind(
    old: &Value,
    pod: &str,
    node: &str,
    annotations: Option<&Value>,
) -> Result<Value, ApiError> {
    let pods = ferrokube_api::resources::find("", "v1", "pods").expect("served");
    let binding = ferrokube_api::resources::ResourceInfo {
        plural: "pods/binding",
        ..*pods
    };
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::conflict(
            &binding,
            pod,
            &format!("pod {pod} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(current) = old
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(ApiError::conflict(
            &binding,
            pod,
            &format!("pod {pod} is already assigned to node {current:?}"),
        ));
    }
    let mut new = old.clone();
    new["spec"]["nodeName"] = json!(node);
    if let Some(Value::Object(extra)) = annotations {
        if !new["metadata"]
            .get("annotations")
            .is_some_and(Value::is_object)
        {
            new["metadata"]["annotations"] = json!({});
        }
        for (k, v) in extra {
            new["metadata"]["annotations"][k] = v.clone();
        }
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    if !new.get("status").is_some_and(Value::is_object) {
        new["status"] = json!({});
    }
    let conditions = new["status"]
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        list.push(condition);
    }
    Ok(new)
}

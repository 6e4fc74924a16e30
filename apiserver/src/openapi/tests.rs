use super::*;
use std::sync::OnceLock;

fn openapi() -> &'static OpenApi {
    static API: OnceLock<OpenApi> = OnceLock::new();
    API.get_or_init(OpenApi::build)
}

fn doc(path: &str) -> Value {
    serde_json::from_slice(&openapi().document(path).unwrap().bytes).unwrap()
}

/// Resolves `#/components/schemas/X` in `doc`.
fn resolve<'a>(doc: &'a Value, r: &str) -> &'a Value {
    let name = r.strip_prefix(SCHEMA_PREFIX).unwrap();
    &doc["components"]["schemas"][name]
}

#[test]
fn index_links_every_group_version_with_its_hash() {
    let index: Value = serde_json::from_slice(&openapi().index().bytes).unwrap();
    let paths = index["paths"].as_object().unwrap();
    for gv in ferrokube_api::resources::group_versions() {
        let key = gv_index_path(&gv);
        let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
        let hash = &openapi().document(&key).unwrap().hash;
        assert_eq!(url, format!("/openapi/v3/{key}?hash={hash}"));
    }
    assert!(paths.contains_key("api/v1"));
    assert!(paths.contains_key("apis/apps/v1"));
    assert!(openapi().document("/openapi/v3/apis/apps/v1").is_some());
    assert!(openapi().document("apis/apps/v2").is_none());
    assert_eq!(v3_index(), index);
}

#[test]
fn deployment_patch_declares_field_validation_and_gvk() {
    let d = doc("apis/apps/v1");
    let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(
        !content.contains_key("application/strategic-merge-patch+json"),
        "kubectl must fall back to its built-in patch strategies"
    );
    let scale =
        &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    for (path, method) in [
        ("/apis/apps/v1/namespaces/{namespace}/deployments", "post"),
        (
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            "put",
        ),
    ] {
        assert!(d["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
    }
}

#[test]
fn pod_schema_exists_with_gvk_and_explain_can_walk_to_containers() {
    let d = doc("api/v1");
    let schemas = d["components"]["schemas"].as_object().unwrap();
    let pod = &schemas["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"][0]["kind"],
        "PodList"
    );
    assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"));
    assert!(schemas.contains_key("io.k8s.api.policy.v1.Eviction"));

    // What kubectl explain pods.spec.containers does: spec → allOf[$ref]
    // → properties.containers → items → $ref → Container with properties.
    let spec = &pod["properties"]["spec"];
    assert!(spec["description"].is_string());
    let spec_ref = spec["allOf"][0]["$ref"].as_str().unwrap();
    let pod_spec = resolve(&d, spec_ref);
    let containers = &pod_spec["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    let item_ref = containers["items"]["$ref"].as_str().unwrap();
    let container = resolve(&d, item_ref);
    assert!(container["properties"]["image"]["description"].is_string());
    assert_eq!(container["required"], json!(["name"]));

    // The explain template finds the GVK on the resource's own path.
    let list = &d["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    assert_eq!(list["x-kubernetes-action"], "list");
    assert!(d["paths"]["/api/v1/pods"]["get"].is_object());
    assert!(d["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
    assert!(d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["get"].is_object());
}

#[test]
fn no_ref_keeps_siblings() {
    fn check(v: &Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("$ref") {
                    assert_eq!(m.len(), 1, "$ref with siblings: {v}");
                }
                m.values().for_each(check);
            }
            Value::Array(a) => a.iter().for_each(check),
            _ => {}
        }
    }
    check(&doc("apis/apps/v1")["components"]);
}

#[test]
fn operation_ids_follow_upstream_naming() {
    assert_eq!(operation_infix("", "v1"), "CoreV1");
    assert_eq!(operation_infix("apps", "v1"), "AppsV1");
    assert_eq!(
        operation_infix("rbac.authorization.k8s.io", "v1"),
        "RbacAuthorizationV1"
    );
    assert_eq!(
        operation_infix("admissionregistration.k8s.io", "v1"),
        "AdmissionregistrationV1"
    );
}

#[test]
fn etag_is_the_quoted_hash() {
    let d = openapi().document("api/v1").unwrap();
    assert_eq!(d.hash.len(), 128);
    assert_eq!(d.etag(), format!("\"{}\"", d.hash));
    assert_eq!(v2_not_found_status()["code"], 404);
}

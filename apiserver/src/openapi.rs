//! OpenAPI v3 as upstream serves it: the `/openapi/v3` index and one document
//! per group/version (`/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`), built
//! once at startup into [`OpenApi`]. kubectl reads these for `kubectl explain`,
//! for deciding whether the server validates fields (`kubectl apply/create`
//! without `--validate=false`) and for apply's patch computation.
//!
//! ## What kubectl looks for, and what each document carries
//!
//! - **Schemas**: `components.schemas`, named like upstream
//!   (`io.k8s.api.core.v1.Pod`), generated from k8s-openapi's schemars
//!   impls for every kind in [`ferrokube_api::RESOURCES`], its `…List`, the
//!   subresource kinds (`Scale`, `Binding`, `Eviction`, `TokenRequest`) and
//!   the meta types (`DeleteOptions`, `Status`, `WatchEvent`, `Patch`).
//!   References with siblings are wrapped in `allOf` as upstream does. Kinds
//!   and lists carry `x-kubernetes-group-version-kind` (a list of GVKs).
//! - **Paths**: for each resource, upstream's list/create/deletecollection,
//!   get/replace/patch/delete and subresource paths, each operation with
//!   `x-kubernetes-action` and `x-kubernetes-group-version-kind` (one GVK).
//!   `kubectl explain pods.spec.containers` finds the GVK on the resource's
//!   path, then the schema whose GVK list contains it, then follows `$ref`
//!   and `allOf` down the field path.
//! - **`fieldValidation`** is declared on every POST, PUT and PATCH. kubectl's
//!   `QueryParamVerifierV3` looks for it in the PATCH operation of the GVK;
//!   when found, kubectl sends `?fieldValidation=Strict` and leaves
//!   validation to the server (which must then honour it); when not found it
//!   would fall back to client-side validation against OpenAPI v2, which we
//!   do not serve, and `kubectl apply` would fail.
//! - **PATCH `requestBody.content`** lists `application/json-patch+json`,
//!   `application/merge-patch+json` and `application/apply-patch+yaml`, but
//!   deliberately **not** `application/strategic-merge-patch+json`. kubectl's
//!   apply patcher (`gvkSupportsPatchOpenAPIV3`) would otherwise compute the
//!   three-way strategic merge patch from these schemas, and k8s-openapi's
//!   schemas lack upstream's `x-kubernetes-patch-merge-key` /
//!   `x-kubernetes-patch-strategy`, so lists such as `containers` would be
//!   replaced instead of merged by name. Without it kubectl falls back (v2 is
//!   absent, see below) to its compiled-in Go types, which carry the exact
//!   upstream patch strategies for every built-in kind we serve. The server
//!   still accepts strategic merge patches.
//!
//! ## `/openapi/v2`
//!
//! Not served: the router answers `404` with [`v2_not_found_status`] for any
//! `Accept`. client-go's `OpenAPISchema` then retries the pre-1.10
//! `/swagger-2.0.0.pb-v1`, which also gets 404, and returns an error; every
//! kubectl caller tolerates that (the apply patcher ignores it and uses
//! built-in types, validation asks the v3 verifier first and finds
//! `fieldValidation`). Only `kubectl explain --output=plaintext-openapiv2`
//! needs v2 and reports the error.
//!
//! ## Caching (for the router)
//!
//! The index points at `/openapi/v3/<path>?hash=<HASH>`; upstream answers a
//! request whose `hash` matches with `Cache-Control: public, immutable`
//! (max-age one year), a stale `hash` with `301` to the current URL, and a
//! request without `hash` with `Cache-Control: no-cache, private`. Every
//! answer carries `ETag: "<HASH>"` ([`OpenApiDocument::etag`]) and honours
//! `If-None-Match` with `304`. Content-Type is `application/json`.

use bytes::Bytes;
use ferrokube_api::{GroupVersion, ResourceInfo, RESOURCES};
use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::gen::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const SCHEMA_PREFIX: &str = "#/components/schemas/";

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{SCHEMA_PREFIX}{name}")})
}

/// Adds the schema of `kind` in `group` (and everything it references) to
/// `gen`, returning its schema name, or `None` for a kind we have no type for.
fn add_kind_schema(gen: &mut SchemaGenerator, group: &str, kind: &str) -> Option<String> {
    macro_rules! kinds {
        ($( ($g:literal, $k:literal) => $t:ty ),* $(,)?) => {
            match (group, kind) {
                $( ($g, $k) => { gen.subschema_for::<$t>(); Some(<$t as schemars::JsonSchema>::schema_name()) } )*
                _ => None,
            }
        };
    }
    kinds! {
        ("", "Namespace") => api::core::v1::Namespace,
        ("", "Pod") => api::core::v1::Pod,
        ("", "Node") => api::core::v1::Node,
        ("", "Service") => api::core::v1::Service,
        ("", "Endpoints") => api::core::v1::Endpoints,
        ("", "ConfigMap") => api::core::v1::ConfigMap,
        ("", "Secret") => api::core::v1::Secret,
        ("", "ServiceAccount") => api::core::v1::ServiceAccount,
        ("", "Event") => api::core::v1::Event,
        ("", "ReplicationController") => api::core::v1::ReplicationController,
        ("", "LimitRange") => api::core::v1::LimitRange,
        ("", "ResourceQuota") => api::core::v1::ResourceQuota,
        ("", "Binding") => api::core::v1::Binding,
        ("apps", "Deployment") => api::apps::v1::Deployment,
        ("apps", "ReplicaSet") => api::apps::v1::ReplicaSet,
        ("apps", "StatefulSet") => api::apps::v1::StatefulSet,
        ("apps", "DaemonSet") => api::apps::v1::DaemonSet,
        ("apps", "ControllerRevision") => api::apps::v1::ControllerRevision,
        ("batch", "Job") => api::batch::v1::Job,
        ("batch", "CronJob") => api::batch::v1::CronJob,
        ("rbac.authorization.k8s.io", "Role") => api::rbac::v1::Role,
        ("rbac.authorization.k8s.io", "RoleBinding") => api::rbac::v1::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRole") => api::rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
        ("coordination.k8s.io", "Lease") => api::coordination::v1::Lease,
        ("discovery.k8s.io", "EndpointSlice") => api::discovery::v1::EndpointSlice,
        ("scheduling.k8s.io", "PriorityClass") => api::scheduling::v1::PriorityClass,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => api::admissionregistration::v1::MutatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => api::admissionregistration::v1::ValidatingWebhookConfiguration,
        ("autoscaling", "Scale") => api::autoscaling::v1::Scale,
        ("policy", "Eviction") => api::policy::v1::Eviction,
        ("authentication.k8s.io", "TokenRequest") => api::authentication::v1::TokenRequest,
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The `…List` schema upstream publishes next to each kind.
fn list_schema(res: &ResourceInfo, item_schema: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}.", res.list_kind(), res.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string"
            },
            "items": {
                "description": format!("List of {}.", res.plural),
                "type": "array",
                "items": {"allOf": [schema_ref(item_schema)], "default": {}}
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string"
            },
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")],
                "default": {}
            }
        },
        "x-kubernetes-group-version-kind": [gvk(res.group, res.version, &res.list_kind())]
    })
}

/// Rewrites `{"$ref": r, <siblings>}` into `{"allOf": [{"$ref": r}], <siblings>}`
/// everywhere: OpenAPI 3.0 ignores siblings of `$ref`, and upstream's
/// documents (and kubectl explain's descriptions) rely on the `allOf` form.
fn wrap_ref_siblings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.len() > 1 {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            for child in m.values_mut() {
                wrap_ref_siblings(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}

// ---- parameters ----

fn query_param(name: &str, description: &str, type_: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": type_, "uniqueItems": true}
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true}
    })
}

fn pretty() -> Value {
    query_param("pretty", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).", "string")
}

fn dry_run() -> Value {
    query_param("dryRun", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed", "string")
}

fn field_manager() -> Value {
    query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.", "string")
}

/// The parameter kubectl's `QueryParamVerifierV3` looks for.
fn field_validation() -> Value {
    query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.", "string")
}

fn list_params() -> Vec<Value> {
    vec![
        query_param("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.", "boolean"),
        query_param("continue", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.", "string"),
        query_param("fieldSelector", "A selector to restrict the list of returned objects by their fields. Defaults to everything.", "string"),
        query_param("labelSelector", "A selector to restrict the list of returned objects by their labels. Defaults to everything.", "string"),
        query_param("limit", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.", "integer"),
        query_param("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset", "string"),
        query_param("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset", "string"),
        query_param("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection.", "boolean"),
        query_param("timeoutSeconds", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.", "integer"),
        query_param("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.", "boolean"),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query_param("gracePeriodSeconds", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.", "integer"),
        query_param("orphanDependents", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.", "boolean"),
        query_param("propagationPolicy", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.", "string"),
    ]
}

// ---- operations ----

fn json_content(schema: Value) -> Value {
    json!({
        "application/json": {"schema": schema.clone()},
        "application/yaml": {"schema": schema},
    })
}

fn response(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": json_content(schema_ref(schema))})
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: upstream's operationId infix.
fn operation_infix(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out = String::new();
    for part in group.split('.').chain(std::iter::once(version)) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// The GVK, schema and description subject one operation is about.
struct Target<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    schema: &'a str,
}

struct Op<'a> {
    action: &'static str,
    operation_id: String,
    description: String,
    parameters: Vec<Value>,
    request_body: Option<Value>,
    responses: Value,
    target: &'a Target<'a>,
    tag: &'a str,
}

impl Op<'_> {
    fn into_value(self) -> Value {
        let mut op = Map::new();
        op.insert("tags".into(), json!([self.tag]));
        op.insert("description".into(), json!(self.description));
        op.insert("operationId".into(), json!(self.operation_id));
        if !self.parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(self.parameters));
        }
        if let Some(body) = self.request_body {
            op.insert("requestBody".into(), body);
        }
        op.insert("responses".into(), self.responses);
        op.insert("x-kubernetes-action".into(), json!(self.action));
        op.insert(
            "x-kubernetes-group-version-kind".into(),
            gvk(self.target.group, self.target.version, self.target.kind),
        );
        Value::Object(op)
    }
}

fn body_of(schema: &str) -> Value {
    json!({"content": json_content(schema_ref(schema)), "required": true})
}

/// PATCH bodies: every patch type the server accepts except strategic merge
/// patch, which kubectl would compute from our schemas (see module doc).
fn patch_body() -> Value {
    let patch = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    json!({
        "content": {
            "application/apply-patch+yaml": {"schema": patch},
            "application/json-patch+json": {"schema": patch},
            "application/merge-patch+json": {"schema": patch},
        },
        "required": true
    })
}

fn unauthorized(mut responses: Value) -> Value {
    responses["401"] = json!({"description": "Unauthorized"});
    responses
}

/// get / put / patch on an object path (the object itself, `status`, `scale`).
fn object_ops(
    target: &Target<'_>,
    id: &str,
    subject: &str,
    tag: &str,
) -> Vec<(&'static str, Value)> {
    let s = target.schema;
    let write_params = || vec![dry_run(), field_manager(), field_validation()];
    let mut patch_params = write_params();
    patch_params.push(query_param("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", "boolean"));
    vec![
        (
            "get",
            Op {
                action: "get",
                operation_id: format!("read{id}"),
                description: format!("read {subject}"),
                parameters: vec![],
                request_body: None,
                responses: unauthorized(json!({"200": response("OK", s)})),
                target,
                tag,
            }
            .into_value(),
        ),
        (
            "put",
            Op {
                action: "put",
                operation_id: format!("replace{id}"),
                description: format!("replace {subject}"),
                parameters: write_params(),
                request_body: Some(body_of(s)),
                responses: unauthorized(
                    json!({"200": response("OK", s), "201": response("Created", s)}),
                ),
                target,
                tag,
            }
            .into_value(),
        ),
        (
            "patch",
            Op {
                action: "patch",
                operation_id: format!("patch{id}"),
                description: format!("partially update {subject}"),
                parameters: patch_params,
                request_body: Some(patch_body()),
                responses: unauthorized(
                    json!({"200": response("OK", s), "201": response("Created", s)}),
                ),
                target,
                tag,
            }
            .into_value(),
        ),
    ]
}

fn path_item(params: Vec<Value>, ops: Vec<(&'static str, Value)>) -> Value {
    let mut item = Map::new();
    for (method, op) in ops {
        item.insert(method.into(), op);
    }
    item.insert("parameters".into(), Value::Array(params));
    Value::Object(item)
}

/// All paths of one resource, keyed by URL template.
fn resource_paths(res: &ResourceInfo, schema: &str, paths: &mut Map<String, Value>) {
    let gv = res.group_version();
    let infix = operation_infix(res.group, res.version);
    let tag = format!(
        "{}_{}",
        if res.group.is_empty() {
            "core"
        } else {
            res.group.split('.').next().unwrap_or(res.group)
        },
        res.version
    );
    let ns = if res.namespaced { "Namespaced" } else { "" };
    let collection = if res.namespaced {
        format!(
            "{}/namespaces/{{namespace}}/{}",
            gv.path_prefix(),
            res.plural
        )
    } else {
        format!("{}/{}", gv.path_prefix(), res.plural)
    };
    let object = format!("{collection}/{{name}}");
    let mut scope_params = Vec::new();
    if res.namespaced {
        scope_params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    let name_param = path_param("name", &format!("name of the {}", res.kind));
    let kind_target = Target {
        group: res.group,
        version: res.version,
        kind: res.kind,
        schema,
    };
    let list_schema_name = format!("{}List", schema);
    let list_target = Target {
        group: res.group,
        version: res.version,
        kind: res.kind,
        schema: &list_schema_name,
    };
    let status_schema = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
    let verbs = res.verbs;

    // Collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if verbs.contains(&"list") {
        let mut list_response = json_content(schema_ref(&list_schema_name));
        list_response["application/json;stream=watch"] =
            json!({"schema": schema_ref(&list_schema_name)});
        ops.push((
            "get",
            Op {
                action: "list",
                operation_id: format!("list{infix}{ns}{}", res.kind),
                description: format!("list or watch objects of kind {}", res.kind),
                parameters: list_params(),
                request_body: None,
                responses: unauthorized(
                    json!({"200": {"description": "OK", "content": list_response}}),
                ),
                target: &list_target,
                tag: &tag,
            }
            .into_value(),
        ));
    }
    if verbs.contains(&"create") {
        ops.push((
            "post",
            Op {
                action: "post",
                operation_id: format!("create{infix}{ns}{}", res.kind),
                description: format!("create a {}", res.kind),
                parameters: vec![dry_run(), field_manager(), field_validation()],
                request_body: Some(body_of(schema)),
                responses: unauthorized(json!({
                    "200": response("OK", schema),
                    "201": response("Created", schema),
                    "202": response("Accepted", schema),
                })),
                target: &kind_target,
                tag: &tag,
            }
            .into_value(),
        ));
    }
    if verbs.contains(&"deletecollection") {
        let mut params = list_params();
        params.extend(delete_params());
        ops.push(("delete", Op {
            action: "deletecollection",
            operation_id: format!("deletecollection{infix}{ns}{}", res.kind),
            description: format!("delete collection of {}", res.kind),
            parameters: params,
            request_body: Some(json!({"content": json_content(schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"))})),
            responses: unauthorized(json!({"200": response("OK", status_schema)})),
            target: &kind_target,
            tag: &tag,
        }.into_value()));
    }
    let mut params = scope_params.clone();
    params.push(pretty());
    paths.insert(collection.clone(), path_item(params, ops));

    // Object: get, put, patch, delete.
    let subject = format!("the specified {}", res.kind);
    let mut ops = object_ops(
        &kind_target,
        &format!("{infix}{ns}{}", res.kind),
        &subject,
        &tag,
    );
    if verbs.contains(&"delete") {
        ops.push(("delete", Op {
            action: "delete",
            operation_id: format!("delete{infix}{ns}{}", res.kind),
            description: format!("delete a {}", res.kind),
            parameters: delete_params(),
            request_body: Some(json!({"content": json_content(schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"))})),
            responses: unauthorized(json!({
                "200": response("OK", schema),
                "202": response("Accepted", schema),
            })),
            target: &kind_target,
            tag: &tag,
        }.into_value()));
    }
    let mut object_params = vec![name_param.clone()];
    object_params.extend(scope_params.clone());
    object_params.push(pretty());
    paths.insert(object.clone(), path_item(object_params.clone(), ops));

    // Cluster-wide list of a namespaced resource (`kubectl get pods -A`).
    if res.namespaced && verbs.contains(&"list") {
        let mut list_response = json_content(schema_ref(&list_schema_name));
        list_response["application/json;stream=watch"] =
            json!({"schema": schema_ref(&list_schema_name)});
        let op = Op {
            action: "list",
            operation_id: format!("list{infix}{}ForAllNamespaces", res.kind),
            description: format!("list or watch objects of kind {}", res.kind),
            parameters: vec![],
            request_body: None,
            responses: unauthorized(
                json!({"200": {"description": "OK", "content": list_response}}),
            ),
            target: &list_target,
            tag: &tag,
        };
        let mut params = list_params();
        params.push(pretty());
        paths.insert(
            format!("{}/{}", gv.path_prefix(), res.plural),
            path_item(params, vec![("get", op.into_value())]),
        );
    }

    // Subresources with a schema'd body.
    for sub in res.subresources {
        let sub_path = format!("{object}/{sub}");
        let cap = capitalize(sub);
        let id = format!("{infix}{ns}{}{cap}", res.kind);
        let ops = match *sub {
            "status" => object_ops(
                &kind_target,
                &id,
                &format!("status of the specified {}", res.kind),
                &tag,
            ),
            "scale" => {
                let t = Target {
                    group: "autoscaling",
                    version: "v1",
                    kind: "Scale",
                    schema: "io.k8s.api.autoscaling.v1.Scale",
                };
                object_ops(
                    &t,
                    &id,
                    &format!("scale of the specified {}", res.kind),
                    &tag,
                )
                .into_iter()
                .map(|(m, mut v)| {
                    v["x-kubernetes-group-version-kind"] = gvk("autoscaling", "v1", "Scale");
                    (m, v)
                })
                .collect()
            }
            "binding" | "eviction" | "token" => {
                let (g, v, k, schema) = match *sub {
                    "binding" => ("", "v1", "Binding", "io.k8s.api.core.v1.Binding"),
                    "eviction" => ("policy", "v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
                    _ => (
                        "authentication.k8s.io",
                        "v1",
                        "TokenRequest",
                        "io.k8s.api.authentication.v1.TokenRequest",
                    ),
                };
                let t = Target {
                    group: g,
                    version: v,
                    kind: k,
                    schema,
                };
                vec![(
                    "post",
                    Op {
                        action: "post",
                        operation_id: format!("create{id}"),
                        description: format!("create {} of a {}", sub, res.kind),
                        parameters: vec![dry_run(), field_manager(), field_validation()],
                        request_body: Some(body_of(schema)),
                        responses: unauthorized(json!({
                            "200": response("OK", schema),
                            "201": response("Created", schema),
                            "202": response("Accepted", schema),
                        })),
                        target: &t,
                        tag: &tag,
                    }
                    .into_value(),
                )]
            }
            "log" => vec![(
                "get",
                json!({
                    "tags": [tag],
                    "description": format!("read log of the specified {}", res.kind),
                    "operationId": format!("read{id}"),
                    "parameters": [
                        query_param("container", "The container for which to stream logs. Defaults to only container if there is one container in the pod.", "string"),
                        query_param("follow", "Follow the log stream of the pod. Defaults to false.", "boolean"),
                        query_param("previous", "Return previous terminated container logs. Defaults to false.", "boolean"),
                        query_param("sinceSeconds", "A relative time in seconds before the current time from which to show logs.", "integer"),
                        query_param("tailLines", "If set, the number of lines from the end of the logs to show.", "integer"),
                        query_param("timestamps", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.", "boolean"),
                    ],
                    "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"description": "Unauthorized"}},
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk(res.group, res.version, res.kind),
                }),
            )],
            _ => continue,
        };
        paths.insert(sub_path, path_item(object_params.clone(), ops));
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `api/v1` or `apis/apps/v1` (no leading slash): the index key of `gv`.
fn gv_index_path(gv: &GroupVersion) -> String {
    gv.path_prefix().trim_start_matches('/').to_string()
}

/// The OpenAPI v3 document of one group/version, uncached.
fn build_document(gv: GroupVersion) -> Value {
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut extra = Map::new();
    let mut gvks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut paths = Map::new();
    for res in RESOURCES.iter().filter(|r| r.group_version() == gv) {
        let Some(schema) = add_kind_schema(&mut gen, res.group, res.kind) else {
            continue;
        };
        gvks.entry(schema.clone())
            .or_default()
            .push(gvk(res.group, res.version, res.kind));
        extra.insert(format!("{schema}List"), list_schema(res, &schema));
        for sub in res.subresources {
            match *sub {
                "scale" => add_kind_schema(&mut gen, "autoscaling", "Scale"),
                "binding" => add_kind_schema(&mut gen, "", "Binding"),
                "eviction" => add_kind_schema(&mut gen, "policy", "Eviction"),
                "token" => add_kind_schema(&mut gen, "authentication.k8s.io", "TokenRequest"),
                _ => None,
            };
        }
        resource_paths(res, &schema, &mut paths);
    }
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::WatchEvent<serde_json::Value>>();
    gen.subschema_for::<meta::Patch>();

    let mut schemas: Map<String, Value> = gen
        .take_definitions()
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or(Value::Null)))
        .collect();
    for (name, v) in schemas.iter_mut() {
        wrap_ref_siblings(v);
        let subresource_gvk = match name.as_str() {
            "io.k8s.api.autoscaling.v1.Scale" => Some(gvk("autoscaling", "v1", "Scale")),
            "io.k8s.api.core.v1.Binding" => Some(gvk("", "v1", "Binding")),
            "io.k8s.api.policy.v1.Eviction" => Some(gvk("policy", "v1", "Eviction")),
            "io.k8s.api.authentication.v1.TokenRequest" => {
                Some(gvk("authentication.k8s.io", "v1", "TokenRequest"))
            }
            _ => None,
        };
        let list = gvks
            .get(name)
            .cloned()
            .or_else(|| subresource_gvk.map(|g| vec![g]));
        if let (Some(list), Some(obj)) = (list, v.as_object_mut()) {
            obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
        }
    }
    schemas.extend(extra);

    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::git_version()},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}
            }
        },
        "security": [{"BearerToken": []}]
    })
}

fn hash_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// One served document: its bytes and the hash the index links it with.
#[derive(Debug, Clone)]
pub struct OpenApiDocument {
    pub bytes: Bytes,
    /// Upper-case hex SHA-512 of `bytes`, as upstream computes it.
    pub hash: String,
}

impl OpenApiDocument {
    fn new(value: &Value) -> Self {
        let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let hash = hash_hex(&bytes);
        OpenApiDocument { bytes, hash }
    }

    /// The `ETag` header value (quoted).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

/// Every OpenAPI v3 document, serialized once at startup. Cheap to share
/// (`Bytes` clones are reference counts).
#[derive(Debug, Clone)]
pub struct OpenApi {
    index: OpenApiDocument,
    documents: BTreeMap<String, OpenApiDocument>,
}

impl OpenApi {
    /// Builds every group/version document and the index.
    pub fn build() -> Self {
        let mut documents = BTreeMap::new();
        for gv in ferrokube_api::resources::group_versions() {
            documents.insert(
                gv_index_path(&gv),
                OpenApiDocument::new(&build_document(gv)),
            );
        }
        let paths: Map<String, Value> = documents
            .iter()
            .map(|(path, doc)| {
                (
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
                )
            })
            .collect();
        let index = OpenApiDocument::new(&json!({"paths": paths}));
        OpenApi { index, documents }
    }

    /// `GET /openapi/v3`.
    pub fn index(&self) -> &OpenApiDocument {
        &self.index
    }

    /// `GET /openapi/v3/<gv_path>` where `gv_path` is `api/v1` or
    /// `apis/apps/v1` (a leading `/` or `/openapi/v3/` is tolerated; the
    /// `?hash=` query is the router's business). `None` → 404.
    pub fn document(&self, gv_path: &str) -> Option<&OpenApiDocument> {
        let path = gv_path
            .trim_start_matches("/openapi/v3")
            .trim_start_matches('/')
            .trim_end_matches('/');
        self.documents.get(path)
    }
}

/// The `/openapi/v3` index as a value (builds every document; prefer
/// [`OpenApi`] in the server).
pub fn v3_index() -> Value {
    serde_json::from_slice(&OpenApi::build().index.bytes).unwrap_or(Value::Null)
}

/// One group/version document as a value, uncached; `None` for a path we do
/// not serve.
pub fn v3_document(gv_path: &str) -> Option<Value> {
    let path = gv_path.trim_start_matches('/');
    ferrokube_api::resources::group_versions()
        .into_iter()
        .find(|gv| gv_index_path(gv) == path)
        .map(build_document)
}

/// The body of the `404` for `/openapi/v2` (and `/swagger-2.0.0.pb-v1`).
pub fn v2_not_found_status() -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server does not serve OpenAPI v2; use /openapi/v3",
        "reason": "NotFound",
        "details": {},
        "code": 404
    })
}

#[cfg(test)]
mod tests;

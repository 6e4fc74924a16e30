//! The gRPC API the components use (`proto/api.proto`): a second thin
//! transport over the [`Registry`], sharing the secure port with REST
//! (requests with `content-type: application/grpc*` come here, see
//! [`is_grpc`]). Entry point: [`router`].
//!
//! Every call is authenticated by the REST router's middleware, which puts
//! the caller's [`UserInfo`] into the request's extensions; anonymous callers
//! are refused here with upstream's 403 message. Errors leave through one
//! table, [`status_from_api_error`].
#![allow(
    clippy::result_large_err,
    reason = "ApiError is the server's one error type, built once per failed call"
)]

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_api::ResourceInfo;
use ferrokube_proto::api as pb;
use ferrokube_proto::api::api_server::{Api, ApiServer};
use ferrokube_proto::kubelet as kpb;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::auth::{self, RequestAttributes, UserInfo};
use crate::codec::FieldValidation;
use crate::error::{ApiError, Cause};
use crate::registry::{
    Context, DeleteOptions, Deleted, ListOptions, PatchType, Registry, WatchItem, WatchOptions,
    WriteScope,
};
use crate::watch_cache::EventType;

/// True for a request that speaks gRPC (`application/grpc`, `+proto`, ...).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The gRPC service as an axum router, to be routed to by content type.
pub fn router(
    registry: Arc<Registry>,
    kubelets: crate::kubelet::KubeletClient,
    service_accounts: Arc<crate::serviceaccount::ServiceAccountTokens>,
) -> axum::Router {
    tonic::service::Routes::new(ApiServer::new(ApiService {
        registry,
        kubelets,
        service_accounts,
    }))
    .prepare()
    .into_axum_router()
}

/// The gRPC code for an API error's HTTP code (the table in `api.proto`).
pub fn code_for(e: &ApiError) -> Code {
    match (e.code, e.reason) {
        (400 | 415 | 422, _) => Code::InvalidArgument,
        (401, _) => Code::Unauthenticated,
        (403, _) => Code::PermissionDenied,
        (404, _) => Code::NotFound,
        (405, _) => Code::Unimplemented,
        (409, "AlreadyExists") => Code::AlreadyExists,
        (409, _) => Code::Aborted,
        (410, _) => Code::OutOfRange,
        (413 | 429, _) => Code::ResourceExhausted,
        (503, _) => Code::Unavailable,
        (504, _) => Code::DeadlineExceeded,
        (500, _) => Code::Internal,
        _ => Code::Unknown,
    }
}

/// An API error as a gRPC status: the mapped code, the message, and the
/// `metav1.Status` JSON in the details so clients rebuild the exact error.
pub fn status_from_api_error(e: &ApiError) -> Status {
    let details = serde_json::to_vec(&e.to_status()).expect("JSON serializes");
    Status::with_details(code_for(e), e.message.clone(), details.into())
}

/// The tonic service over the registry.
pub struct ApiService {
    registry: Arc<Registry>,
    /// Dials kubelets for `Logs` and `Exec`.
    kubelets: crate::kubelet::KubeletClient,
    /// Signs the tokens `Create` with subresource `token` asks for.
    service_accounts: Arc<crate::serviceaccount::ServiceAccountTokens>,
}

type ApiResult<T> = Result<T, ApiError>;

fn find_resource(r: &pb::ResourceRef) -> ApiResult<&'static ResourceInfo> {
    ferrokube_api::resources::find(&r.group, &r.version, &r.resource)
        .ok_or_else(|| ApiError::no_route(&format!("{}/{}/{}", r.group, r.version, r.resource)))
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn opt_string(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The caller, refused with upstream's 403 when anonymous.
fn caller<T>(req: &Request<T>, attributes: RequestAttributes<'_>) -> ApiResult<UserInfo> {
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(|| UserInfo {
            name: auth::ANONYMOUS_USER.into(),
            groups: vec![auth::UNAUTHENTICATED_GROUP.into()],
            ..Default::default()
        });
    if auth::is_anonymous(&user) {
        return Err(auth::forbidden(&user, &attributes));
    }
    Ok(user)
}

fn resource_attributes<'a>(
    verb: &'a str,
    r: &'a pb::ResourceRef,
    subresource: &'a str,
) -> RequestAttributes<'a> {
    RequestAttributes::Resource {
        verb,
        api_group: &r.group,
        resource: &r.resource,
        subresource,
        namespace: &r.namespace,
        name: &r.name,
    }
}

fn context(user: &UserInfo, options: Option<&pb::WriteOptions>) -> ApiResult<Context> {
    let options = options.cloned().unwrap_or_default();
    Ok(Context {
        user: user.name.clone(),
        dry_run: options.dry_run,
        field_validation: FieldValidation::parse(opt(&options.field_validation))?,
    })
}

fn parse_object(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding object: invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// An object in its envelope; list items get apiVersion and kind from the
/// resource, since their JSON carries none.
fn envelope(res: &ResourceInfo, obj: &Value, warnings: Vec<String>) -> pb::Object {
    pb::Object {
        api_version: str_at(obj, "/apiVersion")
            .map(str::to_string)
            .unwrap_or_else(|| res.api_version()),
        kind: str_at(obj, "/kind").unwrap_or(res.kind).to_string(),
        resource_version: str_at(obj, "/metadata/resourceVersion")
            .unwrap_or_default()
            .to_string(),
        object: serde_json::to_vec(obj).expect("JSON serializes"),
        warnings,
    }
}

/// The namespace and name a write addresses: the request's, or else the
/// object's own metadata.
fn target<'a>(
    res: &ResourceInfo,
    r: &'a pb::ResourceRef,
    obj: &'a Value,
) -> (Option<&'a str>, &'a str) {
    let ns = if res.namespaced {
        opt(&r.namespace).or_else(|| str_at(obj, "/metadata/namespace").filter(|s| !s.is_empty()))
    } else {
        None
    };
    let name = opt(&r.name)
        .or_else(|| str_at(obj, "/metadata/name"))
        .unwrap_or_default();
    (ns, name)
}

fn required(r: &Option<pb::ResourceRef>) -> ApiResult<&pb::ResourceRef> {
    r.as_ref()
        .ok_or_else(|| ApiError::bad_request("resource: Required value"))
}

fn to_grpc<T>(r: ApiResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(|e| status_from_api_error(&e))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

impl ApiService {
    async fn get(&self, req: Request<pb::GetRequest>) -> ApiResult<pb::Object> {
        let r = required(&req.get_ref().resource)?;
        caller(&req, resource_attributes("get", r, ""))?;
        let res = find_resource(r)?;
        let obj = self.registry.get(res, opt(&r.namespace), &r.name).await?;
        Ok(envelope(res, &obj, Vec::new()))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> ApiResult<pb::ObjectList> {
        let r = required(&req.get_ref().resource)?;
        caller(&req, resource_attributes("list", r, ""))?;
        let res = find_resource(r)?;
        let body = req.get_ref().clone();
        let opts = ListOptions {
            label_selector: opt_string(body.label_selector),
            field_selector: opt_string(body.field_selector),
            limit: body.limit,
            continue_token: opt_string(body.r#continue),
            resource_version: opt_string(body.resource_version),
        };
        let list = self.registry.list(res, opt(&r.namespace), &opts).await?;
        Ok(pb::ObjectList {
            api_version: res.api_version(),
            kind: res.list_kind(),
            resource_version: list.resource_version.to_string(),
            r#continue: list.continue_token.unwrap_or_default(),
            remaining_item_count: list.remaining,
            items: list
                .items
                .iter()
                .map(|o| envelope(res, o, Vec::new()))
                .collect(),
        })
    }

    async fn watch(&self, req: Request<pb::WatchRequest>) -> ApiResult<WatchStream> {
        let r = required(&req.get_ref().resource)?;
        caller(&req, resource_attributes("watch", r, ""))?;
        let res = find_resource(r)?;
        let body = req.get_ref().clone();
        let mut field_selector = opt_string(body.field_selector);
        if !r.name.is_empty() {
            let by_name = format!("metadata.name={}", r.name);
            field_selector = Some(match field_selector {
                Some(f) => format!("{f},{by_name}"),
                None => by_name,
            });
        }
        let opts = WatchOptions {
            label_selector: opt_string(body.label_selector),
            field_selector,
            resource_version: opt_string(body.resource_version),
            allow_bookmarks: body.allow_bookmarks,
            timeout: (body.timeout_seconds > 0)
                .then(|| Duration::from_secs(body.timeout_seconds as u64)),
        };
        let stream = self.registry.watch(res, opt(&r.namespace), &opts).await?;
        // A watch error (410 Gone) is the stream's last item: tonic ends the
        // call with it as the status.
        Ok(stream
            .map(move |item| match item {
                WatchItem::Event(kind, obj) => Ok(pb::WatchEvent {
                    r#type: match kind {
                        EventType::Added => pb::watch_event::Type::Added,
                        EventType::Modified => pb::watch_event::Type::Modified,
                        EventType::Deleted => pb::watch_event::Type::Deleted,
                    } as i32,
                    object: Some(envelope(res, &obj, Vec::new())),
                }),
                WatchItem::Bookmark(rev) => Ok(pb::WatchEvent {
                    r#type: pb::watch_event::Type::Bookmark as i32,
                    object: Some(pb::Object {
                        api_version: res.api_version(),
                        kind: res.kind.to_string(),
                        resource_version: rev.to_string(),
                        ..Default::default()
                    }),
                }),
                WatchItem::Error(e) => Err(status_from_api_error(&e)),
            })
            .boxed())
    }

    async fn create(&self, req: Request<pb::CreateRequest>) -> ApiResult<pb::Object> {
        let r = required(&req.get_ref().resource)?;
        let subresource = req.get_ref().subresource.as_str();
        let user = caller(&req, resource_attributes("create", r, subresource))?;
        let res = find_resource(r)?;
        let ctx = context(&user, req.get_ref().options.as_ref())?;
        let obj = parse_object(&req.get_ref().object)?;
        match (res.plural, subresource) {
            (_, "") => {}
            ("serviceaccounts", "token") => {
                let issued = crate::rest::token_request::create(
                    &self.service_accounts,
                    &self.registry,
                    &r.namespace,
                    &r.name,
                    obj,
                    chrono::Utc::now(),
                )
                .await?;
                return Ok(pb::Object {
                    api_version: "authentication.k8s.io/v1".to_string(),
                    kind: "TokenRequest".to_string(),
                    object: serde_json::to_vec(&issued).unwrap_or_default(),
                    ..Default::default()
                });
            }
            (_, sub) => {
                return Err(ApiError::method_not_supported(
                    res,
                    &format!("create on subresource {sub}"),
                ))
            }
        }
        let (ns, _) = target(res, r, &obj);
        let ns = ns.map(str::to_string);
        let written = self.registry.create(res, ns.as_deref(), obj, &ctx).await?;
        Ok(envelope(res, &written.object, written.warnings))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
        subresource: Option<&str>,
    ) -> ApiResult<pb::Object> {
        let r = required(&req.get_ref().resource)?;
        let user = caller(
            &req,
            resource_attributes("update", r, subresource.unwrap_or("")),
        )?;
        let res = find_resource(r)?;
        let ctx = context(&user, req.get_ref().options.as_ref())?;
        let obj = parse_object(&req.get_ref().object)?;
        let (ns, name) = target(res, r, &obj);
        let (ns, name) = (ns.map(str::to_string), name.to_string());
        let written = self
            .registry
            .update(res, ns.as_deref(), &name, subresource, obj, &ctx)
            .await?;
        Ok(envelope(res, &written.object, written.warnings))
    }

    async fn patch(&self, req: Request<pb::PatchRequest>) -> ApiResult<pb::Object> {
        let body = req.get_ref();
        let r = required(&body.resource)?;
        let user = caller(&req, resource_attributes("patch", r, &body.subresource))?;
        let res = find_resource(r)?;
        let ctx = context(&user, body.options.as_ref())?;
        let patch_type = match pb::patch_request::Type::try_from(body.r#type) {
            Ok(pb::patch_request::Type::Json) => PatchType::Json,
            Ok(pb::patch_request::Type::Merge) => PatchType::Merge,
            Ok(pb::patch_request::Type::StrategicMerge) => PatchType::StrategicMerge,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "patch type: Unsupported value: {}: supported values: \"JSON\", \"MERGE\", \"STRATEGIC_MERGE\"",
                    body.r#type
                )))
            }
        };
        let subresource = match body.subresource.as_str() {
            "" => None,
            "status" => Some("status"),
            other => {
                return Err(ApiError::method_not_supported(
                    res,
                    &format!("PATCH on subresource {other}"),
                ))
            }
        };
        let written = self
            .registry
            .patch(
                res,
                opt(&r.namespace),
                &r.name,
                subresource,
                patch_type,
                &body.patch,
                &ctx,
            )
            .await?;
        Ok(envelope(res, &written.object, written.warnings))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> ApiResult<pb::DeleteResponse> {
        let body = req.get_ref();
        let r = required(&body.resource)?;
        let user = caller(&req, resource_attributes("delete", r, ""))?;
        let res = find_resource(r)?;
        if let Some(p) = opt(&body.propagation_policy) {
            if !matches!(p, "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: {p:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
                )));
            }
        }
        let opts = DeleteOptions {
            grace_period_seconds: body.grace_period_seconds,
            propagation_policy: opt_string(body.propagation_policy.clone()),
            precondition_uid: opt_string(body.precondition_uid.clone()),
            precondition_resource_version: opt_string(body.precondition_resource_version.clone()),
            dry_run: body.dry_run,
        };
        let ctx = Context {
            user: user.name,
            dry_run: body.dry_run,
            ..Default::default()
        };
        let deleted = self
            .registry
            .delete(res, opt(&r.namespace), &r.name, &opts, &ctx)
            .await?;
        let (obj, pending) = match deleted {
            Deleted::Gone(v) => (v, false),
            Deleted::Pending(v) => (v, true),
        };
        Ok(pb::DeleteResponse {
            object: Some(envelope(res, &obj, Vec::new())),
            pending,
        })
    }

    async fn bind(&self, req: Request<pb::BindRequest>) -> ApiResult<pb::Object> {
        let body = req.get_ref();
        let pods = ferrokube_api::resources::find("", "v1", "pods").expect("served");
        let pod_ref = pb::ResourceRef {
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
            namespace: body.namespace.clone(),
            name: body.name.clone(),
        };
        let user = caller(&req, resource_attributes("create", &pod_ref, "binding"))?;
        if body.node_name.is_empty() {
            let bindings = ResourceInfo {
                kind: "Binding",
                ..*pods
            };
            return Err(ApiError::invalid(
                &bindings,
                &body.name,
                vec![Cause::required("target.name")],
            ));
        }
        let ctx = Context {
            user: user.name,
            dry_run: body.dry_run,
            ..Default::default()
        };
        let annotations = (!body.annotations.is_empty()).then(|| {
            Value::Object(
                body.annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )
        });
        let (pod, node) = (body.name.clone(), body.node_name.clone());
        let written = self
            .registry
            .update_with(
                pods,
                opt(&body.namespace),
                &body.name,
                WriteScope::System,
                None,
                &ctx,
                move |old| crate::rest::subresource::bind(old, &pod, &node, annotations.as_ref()),
            )
            .await?;
        Ok(envelope(pods, &written.object, Vec::new()))
    }

    /// `pods/log` proxied to the pod's kubelet.
    async fn logs(&self, req: Request<pb::LogsRequest>) -> ApiResult<LogsStream> {
        let pod = pod_ref(&req.get_ref().namespace, &req.get_ref().pod);
        caller(&req, resource_attributes("get", &pod, "log"))?;
        let r = req.into_inner();
        let (typed, location) = self
            .kubelets
            .locate(&self.registry, &r.namespace, &r.pod)
            .await?;
        let container = ferrokube_api::remotecommand::container_for_request(&typed, &r.container)
            .map_err(ApiError::bad_request)?;
        let mut client = self.kubelets.client(&location)?;
        let stream = client
            .container_logs(kpb::ContainerLogsRequest {
                namespace: r.namespace,
                pod: r.pod,
                container,
                follow: r.follow,
                previous: r.previous,
                timestamps: r.timestamps,
                tail_lines: r.tail_lines,
                since_seconds: r.since_seconds,
                since_time: String::new(),
                limit_bytes: r.limit_bytes,
            })
            .await
            .map_err(|s| crate::kubelet::api_error(&location, &s))?
            .into_inner();
        Ok(Box::pin(stream))
    }

    /// `pods/exec` proxied to the pod's kubelet; the first frame must be
    /// `start`.
    async fn exec(&self, req: Request<Streaming<pb::ExecInput>>) -> ApiResult<ExecStream> {
        use pb::exec_input::Frame as In;
        let mut user_req = Request::new(());
        *user_req.extensions_mut() = req.extensions().clone();
        let mut input = req.into_inner();
        let start = match input.message().await {
            Ok(Some(pb::ExecInput {
                frame: Some(In::Start(s)),
            })) => s,
            Ok(_) => return Err(ApiError::bad_request("the first exec frame must be start")),
            Err(e) => return Err(ApiError::bad_request(e.message().to_string())),
        };
        let pod = pod_ref(&start.namespace, &start.pod);
        caller(&user_req, resource_attributes("create", &pod, "exec"))?;
        let (typed, location) = self
            .kubelets
            .locate(&self.registry, &start.namespace, &start.pod)
            .await?;
        let container =
            ferrokube_api::remotecommand::container_for_request(&typed, &start.container)
                .map_err(ApiError::bad_request)?;
        // The kubelet speaks the same frames: the start with the container
        // resolved, then the caller's frames as they come (a second start or
        // an empty frame ends the input).
        let first = pb::ExecInput {
            frame: Some(In::Start(pb::ExecStart { container, ..start })),
        };
        let rest = futures::stream::unfold(input, |mut input| async move {
            let frame = input.message().await.ok()??;
            match frame.frame {
                Some(In::Start(_)) | None => None,
                Some(_) => Some((frame, input)),
            }
        });
        let mut client = self.kubelets.client(&location)?;
        let output = client
            .exec(futures::stream::iter([first]).chain(rest))
            .await
            .map_err(|s| crate::kubelet::api_error(&location, &s))?
            .into_inner();
        Ok(Box::pin(output))
    }
}

type LogsStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;
type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecOutput, Status>> + Send>>;

fn pod_ref(namespace: &str, name: &str) -> pb::ResourceRef {
    pb::ResourceRef {
        group: String::new(),
        version: "v1".into(),
        resource: "pods".into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

#[tonic::async_trait]
impl Api for ApiService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Object>, Status> {
        to_grpc(ApiService::get(self, req).await)
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        to_grpc(ApiService::list(self, req).await)
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        to_grpc(ApiService::watch(self, req).await)
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        to_grpc(ApiService::create(self, req).await)
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        to_grpc(ApiService::update(self, req, None).await)
    }

    async fn update_status(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        to_grpc(ApiService::update(self, req, Some("status")).await)
    }

    async fn patch(&self, req: Request<pb::PatchRequest>) -> Result<Response<pb::Object>, Status> {
        to_grpc(ApiService::patch(self, req).await)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        to_grpc(ApiService::delete(self, req).await)
    }

    async fn bind(&self, req: Request<pb::BindRequest>) -> Result<Response<pb::Object>, Status> {
        to_grpc(ApiService::bind(self, req).await)
    }

    type LogsStream = LogsStream;

    /// `pods/log`: the container's log, proxied to its kubelet.
    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        to_grpc(ApiService::logs(self, req).await)
    }

    type ExecStream = ExecStream;

    /// `pods/exec`: a command in a container, proxied to its kubelet.
    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        to_grpc(ApiService::exec(self, req).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_api::resources::find;

    #[test]
    fn conflicts_and_already_exists_map_to_different_codes() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            code_for(&ApiError::already_exists(pods, "web")),
            Code::AlreadyExists
        );
        assert_eq!(code_for(&ApiError::stale(pods, "web")), Code::Aborted);
        assert_eq!(code_for(&ApiError::not_found(pods, "web")), Code::NotFound);
        assert_eq!(code_for(&ApiError::gone("too old")), Code::OutOfRange);
        assert_eq!(
            code_for(&ApiError::invalid(pods, "web", vec![])),
            Code::InvalidArgument
        );
        assert_eq!(code_for(&ApiError::too_large()), Code::ResourceExhausted);
        assert_eq!(code_for(&ApiError::unavailable("x")), Code::Unavailable);
        assert_eq!(code_for(&ApiError::timeout("x")), Code::DeadlineExceeded);
        assert_eq!(code_for(&ApiError::unauthorized()), Code::Unauthenticated);
        assert_eq!(code_for(&ApiError::forbidden("x")), Code::PermissionDenied);
    }

    #[test]
    fn status_details_carry_the_metav1_status() {
        let pods = find("", "v1", "pods").unwrap();
        let e = ApiError::stale(pods, "web");
        let status = status_from_api_error(&e);
        assert_eq!(status.message(), e.message);
        let details: Value = serde_json::from_slice(status.details()).unwrap();
        assert_eq!(details, e.to_status());
        assert_eq!(details["reason"], "Conflict");
    }
}

//! The Kubernetes REST API on axum: discovery, OpenAPI, health, and every
//! resource verb, mapped onto the [`Registry`]. Errors leave as
//! `metav1.Status`. Entry point: [`router`].

pub(crate) mod portforward;
pub mod request;
pub(crate) mod streaming;
pub(crate) mod subresource;
pub mod token_request;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::auth::{self, Authenticator, RequestAttributes, UserInfo};
use crate::codec::{self, FieldValidation};
use crate::discovery::{self, DiscoveryFormat, DiscoveryRoot};
use crate::error::ApiError;
use crate::openapi::OpenApi;
use crate::registry::{
    Context, DeleteOptions, Deleted, ListOptions, PatchType, Registry, WatchItem, WatchOptions,
};
use crate::table::{self, IncludeObject};
use request::{PathError, Target, Verb};

/// What every handler shares.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub authenticator: Authenticator,
    /// TokenRequest's signer and the verifier of service-account JWTs.
    pub service_accounts: Arc<crate::serviceaccount::ServiceAccountTokens>,
    pub openapi: OpenApi,
    pub max_request_bytes: usize,
    /// `host:port` clients reach us at, for `/api`'s server addresses.
    pub server_address: String,
    /// Dials kubelets for `pods/log` and `pods/exec`.
    pub kubelets: crate::kubelet::KubeletClient,
}

/// The verified client certificate of the connection, set by the server
/// for each request (absent for clients without one).
#[derive(Clone, Default)]
pub struct PeerCertificate(pub Option<rustls::pki_types::CertificateDer<'static>>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, json_body(&self.to_status())).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

fn json_body(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("JSON serializes"))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    json_with_type(code, v, "application/json")
}

fn json_with_type(code: StatusCode, v: &Value, content_type: &'static str) -> Response {
    let mut resp = (code, json_body(v)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The secure port's router: REST, and gRPC for requests with a
/// `content-type: application/grpc*` (see [`crate::grpc`]), both behind the
/// same authentication.
pub fn router(state: Arc<AppState>) -> Router {
    let rest = rest_router(state.clone());
    let grpc = crate::grpc::router(
        state.registry.clone(),
        state.kubelets.clone(),
        state.service_accounts.clone(),
    );
    let by_content_type = tower::service_fn(move |req: Request| {
        let target = if crate::grpc::is_grpc(req.headers()) {
            grpc.clone()
        } else {
            rest.clone()
        };
        tower::ServiceExt::oneshot(target, req)
    });
    Router::new()
        .fallback_service(by_content_type)
        .layer(middleware::from_fn_with_state(state, authenticate))
}

/// The REST routes.
fn rest_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .route("/healthz/{check}", get(health))
        .route("/livez/{check}", get(health))
        .route("/readyz/{check}", get(ready))
        .route("/version", get(version))
        .route("/api", get(api_root))
        .route("/apis", get(apis_root))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .route("/openapi/v2", get(openapi_v2))
        .fallback(resource)
        .with_state(state)
}

/// Authenticates every request and applies the interim policy: anonymous
/// requests reach only health and discovery. gRPC requests carry the user
/// on; the gRPC service refuses anonymous calls itself, per method.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let cert = req
        .extensions()
        .get::<PeerCertificate>()
        .cloned()
        .unwrap_or_default();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user = match state
        .authenticator
        .authenticate(cert.0.as_ref(), authorization.as_deref())
    {
        Ok(u) => Ok(u),
        Err(e) => match authorization.as_deref().and_then(auth::bearer_token) {
            Some(token) if crate::serviceaccount::looks_like_jwt(token) => {
                service_account_user(&state, token).await
            }
            _ => Err(e),
        },
    };
    let user = match user {
        Ok(u) => u,
        Err(e) if crate::grpc::is_grpc(req.headers()) => {
            return crate::grpc::status_from_api_error(&e).into_http()
        }
        Err(e) => return e.into_response(),
    };
    if crate::grpc::is_grpc(req.headers()) {
        req.extensions_mut().insert(user);
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    if auth::is_anonymous(&user) && !auth::is_health_or_discovery_path(&path) {
        let watch = query_map(req.uri().query())
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1");
        let verb = req.method().as_str().to_ascii_lowercase();
        let denied = match Target::parse(req.method(), &path, watch) {
            Ok(Target::Resource(info)) => auth::forbidden(
                &user,
                &RequestAttributes::Resource {
                    verb: info.verb.as_str(),
                    api_group: info.resource.group,
                    resource: info.resource.plural,
                    subresource: info.subresource.as_deref().unwrap_or(""),
                    namespace: info.namespace.as_deref().unwrap_or(""),
                    name: info.name.as_deref().unwrap_or(""),
                },
            ),
            _ => auth::forbidden(
                &user,
                &RequestAttributes::NonResource {
                    verb: &verb,
                    path: &path,
                },
            ),
        };
        return denied.into_response();
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// Upstream's service-account token authenticator: the JWT must verify
/// (key, issuer, API audience, expiry) and the ServiceAccount and the object
/// the token is bound to must still exist with the uids it names.
async fn service_account_user(state: &AppState, token: &str) -> Result<UserInfo, ApiError> {
    let verifier = state
        .service_accounts
        .verifier
        .as_ref()
        .ok_or_else(ApiError::unauthorized)?;
    let claims = verifier
        .verify(token, chrono::Utc::now().timestamp())
        .map_err(|e| {
            tracing::debug!(error = %e, "rejected a service account token");
            ApiError::unauthorized()
        })?;
    let k = claims.kubernetes.clone().unwrap_or_default();
    let mut refs = vec![("serviceaccounts", &k.serviceaccount)];
    refs.extend(k.pod.as_ref().map(|p| ("pods", p)));
    refs.extend(k.secret.as_ref().map(|s| ("secrets", s)));
    for (plural, r) in refs {
        let res = ferrokube_api::resources::find("", "v1", plural).expect("core resource");
        let current = state
            .registry
            .get(res, Some(&k.namespace), &r.name)
            .await
            .ok()
            .and_then(|o| {
                o.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if current.as_deref() != Some(r.uid.as_str()) {
            tracing::debug!(plural, name = %r.name, "service account token names an object that no longer exists");
            return Err(ApiError::unauthorized());
        }
    }
    let mut user = crate::serviceaccount::user_info(&claims);
    user.groups.push(auth::AUTHENTICATED_GROUP.to_string());
    Ok(user)
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.registry.is_ready() {
        "ok".into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "[-]informer-sync failed: watch caches are not ready\nreadyz check failed",
        )
            .into_response()
    }
}

async fn version() -> Response {
    json_response(StatusCode::OK, &discovery::version_info())
}

fn accept(headers: &HeaderMap) -> String {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

async fn api_root(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    discovery_root(&state, &headers, DiscoveryRoot::Core)
}

async fn apis_root(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    discovery_root(&state, &headers, DiscoveryRoot::Groups)
}

fn discovery_root(state: &AppState, headers: &HeaderMap, root: DiscoveryRoot) -> Response {
    let accept = accept(headers);
    let format = discovery::negotiate_discovery(&accept);
    match format {
        DiscoveryFormat::NotAcceptable => ApiError::not_acceptable(&accept).into_response(),
        DiscoveryFormat::Legacy => match root {
            DiscoveryRoot::Core => json_response(
                StatusCode::OK,
                &discovery::api_versions(&state.server_address),
            ),
            DiscoveryRoot::Groups => json_response(StatusCode::OK, &discovery::api_group_list()),
        },
        aggregated => json_with_type(
            StatusCode::OK,
            &discovery::aggregated_discovery(root, aggregated),
            aggregated.content_type(),
        ),
    }
}

async fn openapi_index(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = (StatusCode::OK, state.openapi.index().bytes.clone()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn openapi_document(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    match state.openapi.document(&path) {
        Some(doc) => {
            let mut resp = (StatusCode::OK, doc.bytes.clone()).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        None => ApiError::no_route(&path).into_response(),
    }
}

/// OpenAPI v2 is not served (kubectl uses v3); the 404 is what kubectl
/// expects from a server without it.
async fn openapi_v2() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &crate::openapi::v2_not_found_status(),
    )
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Every request under `/api/...` and `/apis/...`.
async fn resource(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match handle(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// How much of an oversized body is read (and thrown away) before the 413
/// is sent: a client still writing when the server answers and closes gets
/// a reset instead of the Status, so modest excesses are drained first.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The request body, or 413 when it is over `limit`.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(ApiError::too_large());
    }
    Ok(buf.freeze())
}

fn bool_param(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

fn context(user: &UserInfo, q: &HashMap<String, String>) -> Result<Context, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )))
        }
    };
    Ok(Context {
        user: user.name.clone(),
        dry_run,
        field_validation: FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?,
    })
}

async fn handle(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let q = query_map(parts.uri.query());
    let watch = bool_param(&q, "watch");
    let path = parts.uri.path();
    let target = Target::parse(&parts.method, path, watch).map_err(|e| match e {
        PathError::NotFound => ApiError::no_route(path),
        PathError::MethodNotAllowed(res, verb) => ApiError::method_not_supported(res, verb),
    })?;
    let info = match target {
        Target::GroupVersion(gv) => {
            return discovery::api_resource_list(gv.group, gv.version)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(|| ApiError::no_route(path));
        }
        Target::Group(g) => {
            return discovery::api_group(&g)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(|| ApiError::no_route(path));
        }
        Target::Resource(info) => info,
    };
    let user = parts
        .extensions
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_default();
    let accept = accept(&parts.headers);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let table_version = table::negotiate_table(&accept);
    let include = IncludeObject::from_query(q.get("includeObject").map(String::as_str))
        .map_err(|e| ApiError::bad_request(format!("invalid includeObject: {:?}", e.0)))?;
    let registry = &state.registry;
    let res = info.resource;
    let ns = info.namespace.as_deref();
    if let (Some(sub), Some(ns), Some(name)) = (
        info.subresource.as_deref(),
        info.namespace.as_deref(),
        info.name.as_deref(),
    ) {
        match (res.plural, sub) {
            ("pods", "log") => return streaming::logs(state, ns, name, &parts).await,
            ("pods", "exec") => return streaming::exec(state, ns, name, &mut parts).await,
            ("pods", "portforward") => {
                return portforward::portforward(state, ns, name, &mut parts).await
            }
            _ => {}
        }
    }
    if let Some(sub) = info.subresource.as_deref() {
        if sub != "status" {
            let body = read_body(body, state.max_request_bytes).await?;
            let ctx = context(&user, &q)?;
            return subresource::handle(
                state,
                &info,
                sub,
                &parts.method,
                &content_type,
                &body,
                &ctx,
            )
            .await;
        }
    }
    let name = info.name.clone().unwrap_or_default();
    match info.verb {
        Verb::Get => {
            let obj = registry.get(res, ns, &name).await?;
            if let Some(v) = table_version {
                let mut t =
                    table::table(res, std::slice::from_ref(&obj), include, chrono::Utc::now());
                table::set_list_metadata(&mut t, &obj["metadata"], v);
                return Ok(json_with_type(StatusCode::OK, &t, v.content_type()));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        Verb::List => {
            let opts = list_options(&q)?;
            let list = registry.list(res, ns, &opts).await?;
            let mut metadata = json!({"resourceVersion": list.resource_version.to_string()});
            if let Some(c) = &list.continue_token {
                metadata["continue"] = json!(c);
            }
            if let Some(r) = list.remaining {
                metadata["remainingItemCount"] = json!(r);
            }
            if let Some(v) = table_version {
                let mut t = table::table(res, &list.items, include, chrono::Utc::now());
                table::set_list_metadata(&mut t, &metadata, v);
                return Ok(json_with_type(StatusCode::OK, &t, v.content_type()));
            }
            let body = json!({
                "kind": res.list_kind(),
                "apiVersion": res.api_version(),
                "metadata": metadata,
                "items": list.items,
            });
            Ok(json_response(StatusCode::OK, &body))
        }
        Verb::Watch => {
            let mut opts = WatchOptions {
                label_selector: q.get("labelSelector").cloned(),
                field_selector: q.get("fieldSelector").cloned(),
                resource_version: q.get("resourceVersion").cloned(),
                allow_bookmarks: bool_param(&q, "allowWatchBookmarks"),
                timeout: match q.get("timeoutSeconds") {
                    Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}"))
                    })?)),
                    None => None,
                },
            };
            if let Some(n) = &info.name {
                let by_name = format!("metadata.name={n}");
                opts.field_selector = Some(match opts.field_selector {
                    Some(f) if !f.is_empty() => format!("{f},{by_name}"),
                    _ => by_name,
                });
            }
            let stream = registry.watch(res, ns, &opts).await?;
            Ok(watch_response(
                res,
                stream,
                table_version.is_some(),
                include,
            ))
        }
        Verb::Create => {
            let body = read_body(body, state.max_request_bytes).await?;
            let obj = codec::parse_body(&content_type, &body)?;
            let ctx = context(&user, &q)?;
            let written = registry.create(res, ns, obj, &ctx).await?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &written.object),
                &written.warnings,
            ))
        }
        Verb::Update => {
            let body = read_body(body, state.max_request_bytes).await?;
            let obj = codec::parse_body(&content_type, &body)?;
            let ctx = context(&user, &q)?;
            let written = registry
                .update(res, ns, &name, info.subresource.as_deref(), obj, &ctx)
                .await?;
            let code = if written.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                json_response(code, &written.object),
                &written.warnings,
            ))
        }
        Verb::Patch => {
            let body = read_body(body, state.max_request_bytes).await?;
            let patch_type = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let ctx = context(&user, &q)?;
            let written = registry
                .patch(
                    res,
                    ns,
                    &name,
                    info.subresource.as_deref(),
                    patch_type,
                    &body,
                    &ctx,
                )
                .await?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &written.object),
                &written.warnings,
            ))
        }
        Verb::Delete => {
            let body = read_body(body, state.max_request_bytes).await?;
            let opts = delete_options(&q, &content_type, &body)?;
            let ctx = context(&user, &q)?;
            match registry.delete(res, ns, &name, &opts, &ctx).await? {
                Deleted::Pending(obj) => Ok(json_response(StatusCode::OK, &obj)),
                Deleted::Gone(obj) => {
                    if res.plural == "pods" && res.group.is_empty() {
                        return Ok(json_response(StatusCode::OK, &obj));
                    }
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "group": res.group, "kind": res.plural,
                                    "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
                    });
                    Ok(json_response(StatusCode::OK, &status))
                }
            }
        }
        Verb::DeleteCollection => {
            let body = read_body(body, state.max_request_bytes).await?;
            let opts = delete_options(&q, &content_type, &body)?;
            let list = list_options(&q)?;
            let ctx = context(&user, &q)?;
            let deleted = registry
                .delete_collection(res, ns, &list, &opts, &ctx)
                .await?;
            let body = json!({
                "kind": res.list_kind(), "apiVersion": res.api_version(),
                "metadata": {}, "items": deleted,
            });
            Ok(json_response(StatusCode::OK, &body))
        }
    }
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn list_options(q: &HashMap<String, String>) -> Result<ListOptions, ApiError> {
    Ok(ListOptions {
        label_selector: q.get("labelSelector").cloned(),
        field_selector: q.get("fieldSelector").cloned(),
        limit: match q.get("limit") {
            Some(l) if !l.is_empty() => l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
            _ => 0,
        },
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
    })
}

/// DeleteOptions from the query and, as kubectl sends them, the body.
fn delete_options(
    q: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = codec::parse_body(content_type, body)?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation_policy = Some("Orphan".into());
        }
        opts.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation_policy = Some(p.clone());
    }
    if let Some(p) = &opts.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
            )));
        }
    }
    Ok(opts)
}

/// A watch as upstream streams it: one JSON event per line, flushed as it
/// happens; Table events when the client asked for tables.
fn watch_response(
    res: &'static ferrokube_api::ResourceInfo,
    stream: futures::stream::BoxStream<'static, WatchItem>,
    tables: bool,
    include: IncludeObject,
) -> Response {
    let mut first_table = true;
    let lines = stream.map(move |item| {
        let event = match item {
            WatchItem::Event(kind, obj) if tables => {
                let with_headers = std::mem::replace(&mut first_table, false);
                table::watch_event_table(
                    res,
                    kind.as_str(),
                    &obj,
                    include,
                    chrono::Utc::now(),
                    with_headers,
                )
            }
            WatchItem::Event(kind, obj) => json!({"type": kind.as_str(), "object": &*obj}),
            WatchItem::Bookmark(rev) => json!({
                "type": "BOOKMARK",
                "object": {"kind": res.kind, "apiVersion": res.api_version(),
                           "metadata": {"resourceVersion": rev.to_string()}},
            }),
            WatchItem::Error(e) => json!({"type": "ERROR", "object": e.to_status()}),
        };
        let mut line = serde_json::to_vec(&event).expect("JSON serializes");
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn respond(code: StatusCode, v: &Value) -> Response {
    json_response(code, v)
}

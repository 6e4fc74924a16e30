//! The registry: every verb on every resource, once, for both transports
//! (REST and gRPC are thin layers over it). Objects are upstream-shaped JSON;
//! per-resource behaviour lives in [`strategy`], [`defaults`],
//! [`validation`], [`allocator`] and the admission chain.
//! Entry point: [`Registry::start`].

pub mod allocator;
pub mod defaults;
pub mod filter;
pub mod strategy;
pub mod validation;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use ferrokube_api::{validation as names, ResourceInfo, RESOURCES};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::admission::{self, Operation};
use crate::codec::{self, FieldValidation};
use crate::error::{ApiError, Cause};
use crate::storage::{Storage, StorageError, Stored};
use crate::watch_cache::{self, EventType, Start, WatchCache, WatchError};
pub use allocator::ServiceAllocator;
pub use filter::Filter;

/// Namespaces that exist from the start and may not be deleted.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How many times an update without a resourceVersion (a patch, a
/// status write) is retried when it loses a race.
const MAX_RETRIES: usize = 16;

/// How many times a create picks a fresh ClusterIP/nodePort after losing
/// the one it picked to a concurrent create.
const ALLOCATION_ATTEMPTS: usize = 16;

/// Keys read per etcd range when a list has no limit of its own.
const STORAGE_PAGE: i64 = 1000;

/// How long a request for a resourceVersion newer than the cache waits.
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// Who asks, and how.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The authenticated user's name.
    pub user: String,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

/// Which part of an object a write may change, as upstream's per-subresource
/// update strategies decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// The main resource: status and system metadata come from the stored object.
    Object,
    /// The `status` subresource: only the status changes.
    Status,
    /// An internal write (pod binding, namespace finalize) that starts from
    /// the stored object: only the system metadata is forced back.
    System,
}

impl WriteScope {
    /// The scope of a client's update or patch of `subresource`.
    pub fn of_subresource(subresource: Option<&str>) -> Result<WriteScope, ApiError> {
        match subresource {
            None => Ok(WriteScope::Object),
            Some("status") => Ok(WriteScope::Status),
            Some(other) => Err(ApiError::no_route(other)),
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// True when a PUT created the object.
    pub created: bool,
}

impl Written {
    /// An object written (or, for a dry run, that would be) at `revision`.
    fn at(object: Value, revision: i64, created: bool) -> Written {
        Written {
            object: watch_cache::with_resource_version(object, revision),
            warnings: Vec::new(),
            created,
        }
    }
}

/// The result of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; this is its last state.
    Gone(Value),
    /// The object is marked for deletion (graceful, finalizers) and stays
    /// until its owner confirms.
    Pending(Value),
}

/// `?labelSelector&fieldSelector&limit&continue&resourceVersion`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: i64,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
}

/// `?watch&resourceVersion&allowWatchBookmarks&timeoutSeconds`.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
    pub allow_bookmarks: bool,
    pub timeout: Option<Duration>,
}

/// `DeleteOptions`, from the query or the body.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// One item of a watch stream.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Event(EventType, Arc<Value>),
    /// Everything up to this resourceVersion has been sent.
    Bookmark(i64),
    /// The watch ends with this error (e.g. 410 Gone).
    Error(ApiError),
}

/// The registry of all served resources.
pub struct Registry {
    storage: Storage,
    caches: HashMap<String, Arc<WatchCache>>,
    pub services: ServiceAllocator,
    bookmark_interval: Duration,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Maps a storage failure to what the client sees.
fn storage_error(res: &ResourceInfo, name: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::AlreadyExists(_) => ApiError::already_exists(res, name),
        StorageError::NotFound(_) => ApiError::not_found(res, name),
        StorageError::Conflict { .. } => ApiError::stale(res, name),
        StorageError::Reserved(key) => {
            let what = key.rsplit('/').next().unwrap_or_default().to_string();
            let cause = if key.contains("/serviceips/") {
                Cause::invalid(
                    "spec.clusterIPs",
                    &json!([what]),
                    &format!("failed to allocate IP {what}: provided IP is already allocated"),
                )
            } else {
                Cause::invalid(
                    "spec.ports[].nodePort",
                    &json!(what.parse::<i64>().unwrap_or_default()),
                    "provided port is already allocated",
                )
            };
            ApiError::invalid(res, name, vec![cause])
        }
        StorageError::Compacted { .. } => ApiError::gone("too old resource version"),
        StorageError::Timeout => {
            ApiError::timeout("request did not complete within the allowed duration")
        }
        StorageError::Decode { key, source } => {
            ApiError::internal(format!("stored object {key} is not valid JSON: {source}"))
        }
        StorageError::Etcd(e) => ApiError::unavailable(format!("etcd is unavailable: {e}")),
    }
}

fn parse_rv(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

/// The continue token upstream hands out: base64 JSON naming the list's
/// revision and the key after which the next page starts.
fn encode_continue(revision: i64, start_after: &str) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": revision, "start": format!("{start_after}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v
        .get("rv")
        .and_then(Value::as_i64)
        .filter(|r| *r > 0)
        .ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, format!("{prefix}{start}")))
}

impl Registry {
    /// Connects the caches of every resource and makes sure the system
    /// namespaces and the `kubernetes` Service exist.
    pub async fn start(
        storage: Storage,
        services: ServiceAllocator,
        cache_size: usize,
    ) -> Result<Arc<Registry>, ApiError> {
        let caches = RESOURCES
            .iter()
            .map(|res| {
                let prefix = res.key_prefix();
                (
                    prefix.clone(),
                    WatchCache::start(storage.clone(), prefix, cache_size),
                )
            })
            .collect();
        let registry = Arc::new(Registry {
            storage,
            caches,
            services,
            bookmark_interval: Duration::from_secs(5),
        });
        Ok(registry)
    }

    /// Sets how often idle watches that asked for bookmarks get one.
    pub fn set_bookmark_interval(&mut self, interval: Duration) {
        self.bookmark_interval = interval;
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn cache(&self, res: &ResourceInfo) -> &Arc<WatchCache> {
        &self.caches[&res.key_prefix()]
    }

    /// True once every watch cache has listed.
    pub fn is_ready(&self) -> bool {
        self.caches.values().all(|c| c.is_ready())
    }

    /// The etcd key of one object.
    pub fn key(res: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
        match (res.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", res.key_prefix()),
            _ => format!("{}{name}", res.key_prefix()),
        }
    }

    /// The key prefix of a list: one namespace, or all of them.
    fn list_prefix(res: &ResourceInfo, namespace: Option<&str>) -> String {
        match (res.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", res.key_prefix()),
            _ => res.key_prefix(),
        }
    }

    /// GET one object.
    pub async fn get(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get_stored(res, namespace, name)
            .await
            .map(watch_cache::visible)
    }

    /// GET from the watch cache, falling back to etcd when the cache has
    /// not seen the object (yet): for admission checks, which upstream also
    /// answers from informers, so a write costs no extra quorum read.
    pub async fn get_cached(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        match self.cache(res).get(&Self::key(res, namespace, name)) {
            Some(obj) => Ok((*obj).clone()),
            None => self.get(res, namespace, name).await,
        }
    }

    async fn get_stored(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        let key = Self::key(res, namespace, name);
        match self.storage.get(&key).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(ApiError::not_found(res, name)),
            Err(e) => Err(storage_error(res, name, e)),
        }
    }

    /// LIST, consistent (from etcd) unless `resourceVersion=0` asks for the
    /// cache; paginated with `limit`/`continue` at one revision.
    pub async fn list(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let filter = Filter::parse(
            res,
            opts.label_selector.as_deref(),
            opts.field_selector.as_deref(),
        )?;
        let namespace = namespace
            .map(str::to_string)
            .or_else(|| res.namespaced.then(|| filter.exact_namespace()).flatten());
        let prefix = Self::list_prefix(res, namespace.as_deref());
        let from_cache = opts.resource_version.as_deref() == Some("0")
            && opts.continue_token.is_none()
            && opts.limit <= 0;
        if from_cache {
            let (items, revision) = self.cache(res).snapshot(&prefix);
            let items = items
                .iter()
                .filter(|o| filter.matches(o))
                .map(|o| strip_type_meta((**o).clone()))
                .collect();
            return Ok(ListResult {
                items,
                resource_version: revision,
                continue_token: None,
                remaining: None,
            });
        }
        let (mut revision, mut start) = match &opts.continue_token {
            Some(t) => decode_continue(t, &prefix)?,
            None => (0, String::new()),
        };
        if opts.continue_token.is_none() {
            if let Some(rv) = opts
                .resource_version
                .as_deref()
                .filter(|s| !s.is_empty() && *s != "0")
            {
                revision = parse_rv(rv)?;
            }
        }
        let limit = opts.limit.max(0);
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = None;
        loop {
            let want = if limit > 0 {
                (limit - items.len() as i64).max(1)
            } else {
                0
            };
            // Filtering may drop items: read a little more than asked. An
            // unlimited list is still read in pages (all at one revision),
            // so no single etcd response grows with the collection.
            let page_size = if limit == 0 {
                STORAGE_PAGE
            } else if !filter.is_everything() {
                want.max(100)
            } else {
                want
            };
            let page = match self
                .storage
                .list(&prefix, &start, revision, page_size)
                .await
            {
                Ok(p) => p,
                Err(StorageError::Compacted { .. }) if opts.continue_token.is_some() => {
                    return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                }
                Err(StorageError::Compacted { .. }) => {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {revision}"
                    )));
                }
                Err(e) => return Err(storage_error(res, "", e)),
            };
            if revision == 0 {
                revision = page.revision;
            }
            let mut last_key = None;
            let total = page.items.len();
            for (i, stored) in page.items.into_iter().enumerate() {
                last_key = Some(stored.key.clone());
                let obj = watch_cache::visible(stored);
                if filter.matches(&obj) {
                    items.push(strip_type_meta(obj));
                }
                if limit > 0 && items.len() as i64 >= limit {
                    let more_here = i + 1 < total;
                    if more_here || page.more {
                        let key = last_key.clone().unwrap_or_default();
                        continue_token = Some(encode_continue(
                            revision,
                            key.strip_prefix(&prefix).unwrap_or(&key),
                        ));
                        if filter.is_everything() {
                            remaining = Some(page.remaining + (total - i - 1) as i64);
                        }
                    }
                    return Ok(ListResult {
                        items,
                        resource_version: revision,
                        continue_token,
                        remaining,
                    });
                }
            }
            if !page.more {
                break;
            }
            start = format!("{}\0", last_key.unwrap_or_default());
        }
        Ok(ListResult {
            items,
            resource_version: revision,
            continue_token,
            remaining,
        })
    }

    /// WATCH from the resource's cache.
    pub async fn watch(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        opts: &WatchOptions,
    ) -> Result<BoxStream<'static, WatchItem>, ApiError> {
        let filter = Filter::parse(
            res,
            opts.label_selector.as_deref(),
            opts.field_selector.as_deref(),
        )?;
        let cache = self.cache(res).clone();
        let start = match opts.resource_version.as_deref() {
            None | Some("") => {
                // A fresh start: the state as of now, then changes.
                let rev = self
                    .storage
                    .current_revision()
                    .await
                    .map_err(|e| storage_error(res, "", e))?;
                cache
                    .wait_for(rev, FRESHNESS_WAIT)
                    .await
                    .map_err(|e| ApiError::timeout(e.to_string()))?;
                Start::Now
            }
            Some("0") => Start::Now,
            Some(s) => {
                let rev = parse_rv(s)?;
                cache
                    .wait_for(rev, FRESHNESS_WAIT)
                    .await
                    .map_err(|e| ApiError::timeout(e.to_string()))?;
                Start::After(rev)
            }
        };
        let prefix = Self::list_prefix(res, namespace);
        let sub = match cache.subscribe(start) {
            Ok(s) => s,
            Err(WatchError::TooOld { requested, oldest }) => {
                // Upstream answers 200 and sends the 410 as the only event.
                let err =
                    ApiError::gone(format!("too old resource version: {requested} ({oldest})"));
                return Ok(futures::stream::once(async move { WatchItem::Error(err) }).boxed());
            }
            Err(e) => return Err(ApiError::timeout(e.to_string())),
        };
        let allow_bookmarks = opts.allow_bookmarks;
        let interval = self.bookmark_interval;
        let deadline =
            tokio::time::Instant::now() + opts.timeout.unwrap_or(Duration::from_secs(1800));
        let select = move |kind: EventType, ev: &watch_cache::CacheEvent| -> Option<WatchItem> {
            if !ev.key.starts_with(&prefix) {
                return None;
            }
            let now_matches = filter.matches(&ev.object);
            let was_matching = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
            match kind {
                EventType::Added => {
                    now_matches.then(|| WatchItem::Event(EventType::Added, ev.object.clone()))
                }
                EventType::Deleted => {
                    let prev_matched = ev.prev.as_ref().is_none_or(|p| filter.matches(p));
                    prev_matched.then(|| WatchItem::Event(EventType::Deleted, ev.object.clone()))
                }
                EventType::Modified => match (was_matching, now_matches) {
                    (true, true) => Some(WatchItem::Event(EventType::Modified, ev.object.clone())),
                    (false, true) => Some(WatchItem::Event(EventType::Added, ev.object.clone())),
                    (true, false) => {
                        let prev = ev.prev.as_ref().expect("was matching").as_ref().clone();
                        Some(WatchItem::Event(
                            EventType::Deleted,
                            Arc::new(watch_cache::with_resource_version(prev, ev.revision)),
                        ))
                    }
                    (false, false) => None,
                },
            }
        };
        let stream = async_stream(sub, select, allow_bookmarks, interval, deadline, cache);
        Ok(stream)
    }

    /// CREATE.
    pub async fn create(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        ctx: &Context,
    ) -> Result<Written, ApiError> {
        let decoded = codec::decode_object(res, body, ctx.field_validation)?;
        let mut obj = decoded.object;
        self.check_namespace_matches(res, namespace, &mut obj)?;
        let generate = str_at(&obj, "/metadata/name").is_none_or(str::is_empty)
            && str_at(&obj, "/metadata/generateName").is_some_and(|g| !g.is_empty());
        let attempts = if generate { 8 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            let mut candidate = obj.clone();
            if generate {
                let prefix = str_at(&candidate, "/metadata/generateName")
                    .unwrap_or_default()
                    .to_string();
                strategy::meta_mut(&mut candidate)
                    .insert("name".into(), json!(names::generate_name(&prefix)));
            }
            match self.create_once(res, namespace, candidate, ctx).await {
                Err(e) if generate && e.reason == "AlreadyExists" => last_err = Some(e),
                Ok(mut w) => {
                    w.warnings.splice(0..0, decoded.warnings.iter().cloned());
                    return Ok(w);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn create_once(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        ctx: &Context,
    ) -> Result<Written, ApiError> {
        let name = str_at(&obj, "/metadata/name")
            .unwrap_or_default()
            .to_string();
        strategy::prepare_for_create(res, &mut obj, &now());
        defaults::apply(res, &mut obj);
        admission::mutate(self, res, Operation::Create, &mut obj, None, ctx).await?;
        let causes = validation::validate(res, &obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, &name, causes));
        }
        admission::validate(self, res, Operation::Create, &obj, None, ctx).await?;
        // What the client asked for; anything else the allocator picked.
        let requested = allocator::held_keys(&obj);
        let key = Self::key(res, namespace, &name);
        for _ in 0..ALLOCATION_ATTEMPTS {
            let mut candidate = obj.clone();
            let plan = self
                .allocation_plan(res, &name, &mut candidate, None)
                .await?;
            if ctx.dry_run {
                return Ok(Written {
                    object: candidate,
                    warnings: vec![],
                    created: true,
                });
            }
            match self.storage.create(&key, &candidate, &plan.reserve).await {
                Ok(rev) => return Ok(Written::at(candidate, rev, true)),
                // A concurrent create claimed the address or port we
                // picked: pick again.
                Err(StorageError::Reserved(k)) if !requested.contains(&k) => continue,
                Err(e) => return Err(storage_error(res, &name, e)),
            }
        }
        Err(ApiError::conflict(
            res,
            &name,
            "too many concurrent allocations, please try again",
        ))
    }

    /// Deletes a stored object if it is unchanged, releasing what it holds
    /// (a Service's ClusterIP and NodePorts) in the same transaction.
    async fn remove(&self, stored: &Stored) -> Result<(Stored, i64), StorageError> {
        self.storage
            .delete(
                &stored.key,
                stored.mod_revision,
                &allocator::held_keys(&stored.value),
            )
            .await
    }

    /// The allocation keys a write claims and releases: a Service's
    /// ClusterIP and NodePorts (filled into `obj`); nothing for other kinds.
    async fn allocation_plan(
        &self,
        res: &ResourceInfo,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<allocator::Plan, ApiError> {
        if res.plural != "services" || !res.group.is_empty() {
            return Ok(allocator::Plan::default());
        }
        self.services
            .plan(&self.storage, obj, old)
            .await
            .map_err(|c| ApiError::invalid(res, name, c))
    }

    /// Fills the URL's namespace into the object, refusing a different one.
    fn check_namespace_matches(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let meta = strategy::meta_mut(obj);
        if !res.namespaced {
            meta.remove("namespace");
            return Ok(());
        }
        let ns = namespace.unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta.insert("namespace".into(), json!(ns));
                Ok(())
            }
        }
    }

    /// UPDATE (PUT) of the object or of its `status`/`scale`... subresource.
    pub async fn update(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        body: Value,
        ctx: &Context,
    ) -> Result<Written, ApiError> {
        let scope = WriteScope::of_subresource(subresource)?;
        let decoded = codec::decode_object(res, body, ctx.field_validation)?;
        let mut obj = decoded.object;
        self.check_namespace_matches(res, namespace, &mut obj)?;
        match str_at(&obj, "/metadata/name") {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {
                strategy::meta_mut(&mut obj).insert("name".into(), json!(name));
            }
        }
        let requested_rv = str_at(&obj, "/metadata/resourceVersion")
            .filter(|s| !s.is_empty())
            .map(parse_rv)
            .transpose()?;
        let body = obj;
        let mut w = self
            .update_with(res, namespace, name, scope, requested_rv, ctx, |_| {
                Ok(body.clone())
            })
            .await?;
        w.warnings.splice(0..0, decoded.warnings);
        Ok(w)
    }

    /// PATCH: applies the patch to the stored object, then updates it,
    /// retrying on a lost race unless the patch pins a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &[u8],
        ctx: &Context,
    ) -> Result<Written, ApiError> {
        let scope = WriteScope::of_subresource(subresource)?;
        let parsed: Value = serde_json::from_slice(patch)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let requested_rv = match patch_type {
            PatchType::Json => None,
            _ => str_at(&parsed, "/metadata/resourceVersion")
                .map(parse_rv)
                .transpose()?,
        };
        let kind = res.kind;
        let validation = ctx.field_validation;
        self.update_with(
            res,
            namespace,
            name,
            scope,
            requested_rv,
            ctx,
            move |current| {
                let patched = match patch_type {
                    PatchType::Json => ferrokube_api::patch::apply_json_patch(current, patch),
                    PatchType::Merge => ferrokube_api::patch::apply_merge_patch(current, &parsed),
                    PatchType::StrategicMerge => {
                        ferrokube_api::patch::apply_strategic_merge_patch(kind, current, &parsed)
                    }
                }
                .map_err(|e| ApiError::new_unprocessable_patch(e.to_string()))?;
                let decoded = codec::decode_object(res, patched, validation)?;
                Ok(decoded.object)
            },
        )
        .await
    }

    /// The read-modify-write loop behind update and patch. `change` maps
    /// the stored object to the new one; `requested_rv` makes the write
    /// conditional (409 when stale) instead of retried.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_with(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        scope: WriteScope,
        requested_rv: Option<i64>,
        ctx: &Context,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        for _ in 0..MAX_RETRIES {
            let stored = self.get_stored(res, namespace, name).await?;
            if let Some(rv) = requested_rv {
                if rv != stored.mod_revision {
                    return Err(ApiError::stale(res, name));
                }
            }
            let old = watch_cache::visible(stored.clone());
            let mut new = change(&old)?;
            match scope {
                WriteScope::Object => strategy::prepare_for_update(res, &mut new, &old),
                WriteScope::Status => strategy::prepare_for_status_update(&mut new, &old),
                WriteScope::System => strategy::keep_system_metadata(&mut new, &old),
            }
            defaults::apply(res, &mut new);
            admission::mutate(self, res, Operation::Update, &mut new, Some(&old), ctx).await?;
            let mut causes = validation::validate(res, &new);
            causes.extend(validation::validate_update(res, &new, &old));
            if !causes.is_empty() {
                return Err(ApiError::invalid(res, name, causes));
            }
            admission::validate(self, res, Operation::Update, &new, Some(&old), ctx).await?;
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let mut stored_old = stored.value.clone();
            if let Some(m) = stored_old
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
            {
                m.remove("resourceVersion");
            }
            if strategy::is_noop(&new, &stored_old) {
                return Ok(Written {
                    object: old,
                    warnings: vec![],
                    created: false,
                });
            }
            let plan = self
                .allocation_plan(res, name, &mut new, Some(&stored.value))
                .await?;
            // A dry run shows the object as it would be stored, at the
            // stored resourceVersion (nothing was written).
            if ctx.dry_run {
                return Ok(Written::at(new, stored.mod_revision, false));
            }
            // The last finalizer removed from an object being deleted: it goes.
            if finalized(&new) && res.plural != "namespaces" {
                match self.remove(&stored).await {
                    Ok((_, rev)) => return Ok(Written::at(new, rev, false)),
                    Err(StorageError::Conflict { .. }) if requested_rv.is_none() => continue,
                    Err(e) => return Err(storage_error(res, name, e)),
                }
            }
            match self
                .storage
                .update(
                    &stored.key,
                    &new,
                    stored.mod_revision,
                    &plan.reserve,
                    &plan.release,
                )
                .await
            {
                Ok(rev) => return Ok(Written::at(new, rev, false)),
                Err(StorageError::Conflict { .. }) if requested_rv.is_none() => continue,
                Err(e) => return Err(storage_error(res, name, e)),
            }
        }
        Err(ApiError::conflict(
            res,
            name,
            "too many concurrent updates, please try again",
        ))
    }

    /// DELETE one object: graceful for bound pods, two-phase when it has
    /// finalizers, immediate otherwise.
    pub async fn delete(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        ctx: &Context,
    ) -> Result<Deleted, ApiError> {
        if res.plural == "namespaces" && SYSTEM_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
            )));
        }
        for _ in 0..MAX_RETRIES {
            let stored = self.get_stored(res, namespace, name).await?;
            let current = watch_cache::visible(stored.clone());
            if let Some(uid) = &opts.precondition_uid {
                let actual = str_at(&current, "/metadata/uid").unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict(res, name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    )));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                let actual = stored.mod_revision.to_string();
                if *rv != actual {
                    return Err(ApiError::conflict(res, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in meta: {actual}"
                    )));
                }
            }
            admission::validate_delete(self, res, &current, ctx).await?;
            let mut marked = current.clone();
            let pending = self.mark_for_deletion(res, &mut marked, opts);
            if ctx.dry_run || opts.dry_run {
                return Ok(if pending {
                    Deleted::Pending(marked)
                } else {
                    Deleted::Gone(current)
                });
            }
            if pending {
                if marked == current {
                    return Ok(Deleted::Pending(current));
                }
                let mut value = marked.clone();
                if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                match self
                    .storage
                    .update(&stored.key, &value, stored.mod_revision, &[], &[])
                    .await
                {
                    Ok(rev) => {
                        return Ok(Deleted::Pending(watch_cache::with_resource_version(
                            value, rev,
                        )))
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(storage_error(res, name, e)),
                }
            }
            match self.remove(&stored).await {
                Ok((prev, rev)) => {
                    return Ok(Deleted::Gone(watch_cache::with_resource_version(
                        prev.value, rev,
                    )))
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(storage_error(res, name, e)),
            }
        }
        Err(ApiError::conflict(
            res,
            name,
            "too many concurrent updates, please try again",
        ))
    }

    /// Marks `obj` for deletion where it must wait (graceful pod
    /// termination, finalizers, namespaces); returns false when it can go now.
    fn mark_for_deletion(&self, res: &ResourceInfo, obj: &mut Value, opts: &DeleteOptions) -> bool {
        let is_pod = res.plural == "pods" && res.group.is_empty();
        let is_namespace = res.plural == "namespaces" && res.group.is_empty();
        let mut finalizers: Vec<String> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        match opts.propagation_policy.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into())
            }
            _ => {}
        }
        let already = obj.pointer("/metadata/deletionTimestamp").is_some();
        let grace = if is_pod {
            let bound = str_at(obj, "/spec/nodeName").is_some_and(|n| !n.is_empty());
            let terminal = matches!(str_at(obj, "/status/phase"), Some("Succeeded" | "Failed"));
            let default = obj
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            let g = opts.grace_period_seconds.unwrap_or(default).max(0);
            if bound && !terminal {
                g
            } else {
                0
            }
        } else {
            0
        };
        if grace == 0 && finalizers.is_empty() && !is_namespace {
            return false;
        }
        if is_namespace {
            obj["status"]["phase"] = json!("Terminating");
        }
        let meta = strategy::meta_mut(obj);
        if !finalizers.is_empty() {
            meta.insert("finalizers".into(), json!(finalizers));
        }
        let current_grace = meta
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if !already || current_grace.is_some_and(|g| grace < g) {
            let when = Utc::now() + chrono::Duration::seconds(grace);
            meta.insert(
                "deletionTimestamp".into(),
                json!(when.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
            if is_pod || grace > 0 {
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            } else {
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
        }
        if is_pod && grace == 0 && finalizers.is_empty() {
            return false;
        }
        true
    }

    /// DELETECOLLECTION: deletes every object the selectors match.
    pub async fn delete_collection(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
        ctx: &Context,
    ) -> Result<Vec<Value>, ApiError> {
        let listed = self.list(res, namespace, list).await?;
        let mut deleted = Vec::new();
        for item in listed.items {
            let name = str_at(&item, "/metadata/name")
                .unwrap_or_default()
                .to_string();
            let ns = str_at(&item, "/metadata/namespace").map(str::to_string);
            match self.delete(res, ns.as_deref(), &name, opts, ctx).await {
                Ok(Deleted::Gone(v)) | Ok(Deleted::Pending(v)) => deleted.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// PUT `namespaces/<name>/finalize`: sets `spec.finalizers`; a
    /// terminating namespace with no finalizers left is removed.
    pub async fn finalize_namespace(
        &self,
        name: &str,
        finalizers: Value,
        ctx: &Context,
    ) -> Result<Value, ApiError> {
        let namespaces = ferrokube_api::resources::find("", "v1", "namespaces").expect("served");
        let written = self
            .update_with(
                namespaces,
                None,
                name,
                WriteScope::System,
                None,
                ctx,
                |old| {
                    let mut new = old.clone();
                    new["spec"]["finalizers"] = finalizers.clone();
                    Ok(new)
                },
            )
            .await?;
        let obj = written.object;
        let done = obj.pointer("/metadata/deletionTimestamp").is_some()
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty())
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
        if done && !ctx.dry_run {
            let stored = self.get_stored(namespaces, None, name).await?;
            self.remove(&stored)
                .await
                .map_err(|e| storage_error(namespaces, name, e))?;
        }
        Ok(obj)
    }

    /// Creates the system namespaces and the `kubernetes` Service (with its
    /// Endpoints) if they are missing. Idempotent; run at every start.
    pub async fn bootstrap(&self, advertise: std::net::IpAddr, port: u16) -> Result<(), ApiError> {
        let ctx = Context {
            user: "system:apiserver".into(),
            ..Default::default()
        };
        let namespaces = ferrokube_api::resources::find("", "v1", "namespaces").expect("served");
        for ns in SYSTEM_NAMESPACES {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(namespaces, None, body, &ctx).await {
                Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let services = ferrokube_api::resources::find("", "v1", "services").expect("served");
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                          "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": self.services.first_ip().to_string(),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                     "sessionAffinity": "None", "type": "ClusterIP"}
        });
        match self.create(services, Some("default"), svc, &ctx).await {
            Ok(_) => tracing::info!("created the kubernetes Service"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
        let endpoints = ferrokube_api::resources::find("", "v1", "endpoints").expect("served");
        let ep = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                          "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": advertise.to_string()}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        });
        match self
            .create(endpoints, Some("default"), ep.clone(), &ctx)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 409 => {
                let current = self.get(endpoints, Some("default"), "kubernetes").await?;
                if current.get("subsets") != ep.get("subsets") {
                    self.update(endpoints, Some("default"), "kubernetes", None, ep, &ctx)
                        .await?;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// PATCH content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            _ => None,
        }
    }
}

impl ApiError {
    /// 422 for a patch that cannot be applied, as upstream reports it.
    pub fn new_unprocessable_patch(message: String) -> ApiError {
        let mut e = ApiError::bad_request(message);
        e.code = 422;
        e.reason = "Invalid";
        e
    }
}

/// True for an object marked for deletion whose finalizers are all done.
fn finalized(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|g| g == 0)
}

/// List items carry no `apiVersion`/`kind`, as upstream's typed lists.
fn strip_type_meta(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    v
}

/// Turns a cache subscription into the client's stream: replayed events,
/// then live ones (skipping any already replayed), with bookmarks when idle
/// and an end at the deadline.
fn async_stream(
    sub: watch_cache::Subscription,
    select: impl Fn(EventType, &watch_cache::CacheEvent) -> Option<WatchItem> + Send + 'static,
    allow_bookmarks: bool,
    interval: Duration,
    deadline: tokio::time::Instant,
    cache: Arc<WatchCache>,
) -> BoxStream<'static, WatchItem> {
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchItem>(64);
    tokio::spawn(async move {
        let mut last = sub.revision;
        for ev in &sub.initial {
            if let Some(item) = select(ev.kind, ev) {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            last = last.max(ev.revision);
        }
        let mut live = sub.live;
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if allow_bookmarks => {
                    let rev = cache.revision().max(last);
                    if tx.send(WatchItem::Bookmark(rev)).await.is_err() { return; }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.revision <= last { continue; }
                        last = ev.revision;
                        if let Some(item) = select(ev.kind, &ev) {
                            if tx.send(item).await.is_err() { return; }
                            ticker.reset();
                        }
                    }
                    // Too slow to keep up, or the cache relisted: end the
                    // watch; the client resumes from its last resourceVersion.
                    Err(_) => return,
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let t = encode_continue(42, "default/web");
        let (rv, start) = decode_continue(&t, "/registry/pods/").unwrap();
        assert_eq!(rv, 42);
        assert_eq!(start, "/registry/pods/default/web\u{0}");
        assert_eq!(
            decode_continue("!!", "/registry/pods/").unwrap_err().code,
            400
        );
    }

    #[test]
    fn finalized_means_marked_and_nothing_left_to_wait_for() {
        assert!(finalized(
            &json!({"metadata": {"deletionTimestamp": "x", "finalizers": []}})
        ));
        assert!(!finalized(
            &json!({"metadata": {"deletionTimestamp": "x", "finalizers": ["a"]}})
        ));
        assert!(!finalized(&json!({"metadata": {"finalizers": []}})));
        assert!(!finalized(
            &json!({"metadata": {"deletionTimestamp": "x", "deletionGracePeriodSeconds": 30}})
        ));
    }
}

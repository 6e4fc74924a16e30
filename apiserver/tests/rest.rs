//! The REST API as a client sees it: the real kube-apiserver on a real
//! etcd-lite (see `support`), driven over HTTPS with reqwest. Every test
//! asserts what kubectl or a client library would notice: HTTP codes,
//! `metav1.Status` reason/message/causes, object fields, watch events.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use support::{wait_for, TestCluster};

/// How long one request or one watch event may take.
const STEP: Duration = Duration::from_secs(15);

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// A response: code, headers, body as JSON (`Value::String` for text).
#[derive(Debug)]
struct Resp {
    code: u16,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    /// `status.reason` of a Status body.
    fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or_default()
    }
    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
    #[track_caller]
    fn expect(self, code: u16) -> Value {
        assert_eq!(self.code, code, "unexpected response: {:#}", self.body);
        self.body
    }
}

/// An HTTPS client of the test cluster, as the admin or anonymous.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    /// Without the overall request timeout, which would cut watches.
    watch_http: reqwest::Client,
    base: String,
}

fn tls_config(cluster: &TestCluster, as_admin: bool) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cluster.ca().cert_der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    if as_admin {
        builder
            .with_client_auth_cert(vec![cluster.admin().cert_der()], cluster.admin().key_der())
            .unwrap()
    } else {
        builder.with_no_client_auth()
    }
}

impl Api {
    fn admin(cluster: &TestCluster) -> Api {
        Api::build(cluster, true)
    }

    fn anonymous(cluster: &TestCluster) -> Api {
        Api::build(cluster, false)
    }

    fn build(cluster: &TestCluster, as_admin: bool) -> Api {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(cluster, as_admin))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let watch_http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(cluster, as_admin))
            .build()
            .unwrap();
        Api {
            http,
            watch_http,
            base: cluster.base_url(),
        }
    }

    async fn send(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_empty() {
            req = req.header(CONTENT_TYPE, content_type).body(body);
        }
        let resp = tokio::time::timeout(STEP, req.send())
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within {STEP:?}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp {
            code,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, JSON, vec![]).await
    }
    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, JSON, body.to_string().into_bytes())
            .await
    }
    async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, JSON, body.to_string().into_bytes())
            .await
    }
    async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Resp {
        self.send(
            Method::PATCH,
            path,
            content_type,
            body.to_string().into_bytes(),
        )
        .await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, JSON, vec![]).await
    }
    async fn delete_with(&self, path: &str, options: &Value) -> Resp {
        self.send(Method::DELETE, path, JSON, options.to_string().into_bytes())
            .await
    }

    /// Creates a namespace for one test's objects.
    async fn namespace(&self, name: &str) {
        self.post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await
        .expect(201);
    }

    /// Creates a ConfigMap; returns the stored object.
    async fn configmap(&self, ns: &str, name: &str, labels: Value) -> Value {
        self.post(
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
        )
        .await
        .expect(201)
    }

    /// Names of the items of a list, in the order served.
    async fn names(&self, path: &str) -> Vec<String> {
        let list = self.get(path).await.expect(200);
        item_names(&list)
    }

    /// Opens a watch; the answer's code and its stream of events.
    async fn watch(&self, path: &str) -> Watch {
        let url = format!("{}{path}", self.base);
        let resp = tokio::time::timeout(STEP, self.watch_http.get(url).send())
            .await
            .expect("watch answered in time")
            .unwrap();
        let code = resp.status().as_u16();
        Watch {
            code,
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }
}

fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// A watch response being read line by line.
struct Watch {
    code: u16,
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event; `None` when the server ended the stream. Panics
    /// when nothing arrives within `timeout`.
    async fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(serde_json::from_slice(&line).expect("watch events are JSON"));
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => panic!("watch stream failed: {e}"),
                Ok(None) => {
                    assert!(self.buf.is_empty(), "watch ended mid-event");
                    return None;
                }
                Err(_) => panic!("no watch event within {timeout:?}"),
            }
        }
    }

    /// The next event, which must arrive.
    async fn next(&mut self) -> Value {
        self.next_within(STEP).await.expect("the watch ended early")
    }

    /// The next event as (type, name, resourceVersion).
    async fn next_summary(&mut self) -> (String, String, i64) {
        summary(&self.next().await)
    }
}

fn summary(ev: &Value) -> (String, String, i64) {
    (
        ev["type"].as_str().unwrap().to_string(),
        ev["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        ev["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap(),
    )
}

fn rv_of(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [
                                     {"name": "a", "image": "x",
                                      "ports": [{"containerPort": 80, "name": "http"}]},
                                     {"name": "b", "image": "y"}]}}}})
}

fn service(name: &str, type_: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}]}})
}

// ---------------------------------------------------------------- watch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_exactly_after_a_resource_version_and_follows_selectors() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    api.namespace("w").await;
    let cms = "/api/v1/namespaces/w/configmaps";

    let a = api.configmap("w", "a", json!({})).await;
    let from = rv_of(&a);
    let a2 = api
        .patch(
            &format!("{cms}/a"),
            MERGE,
            &json!({"data": {"k": "changed"}}),
        )
        .await
        .expect(200);
    let b = api.configmap("w", "b", json!({})).await;
    let gone = api.delete(&format!("{cms}/a")).await.expect(200);
    let _ = gone;

    // Resuming replays exactly the later events, in order.
    let mut w = api
        .watch(&format!("{cms}?watch=true&resourceVersion={from}"))
        .await;
    assert_eq!(w.code, 200);
    let (t, n, rv1) = w.next_summary().await;
    assert_eq!((t.as_str(), n.as_str(), rv1), ("MODIFIED", "a", rv_of(&a2)));
    let (t, n, rv2) = w.next_summary().await;
    assert_eq!((t.as_str(), n.as_str(), rv2), ("ADDED", "b", rv_of(&b)));
    let (t, n, rv3) = w.next_summary().await;
    assert_eq!((t.as_str(), n.as_str()), ("DELETED", "a"));
    assert!(rv3 > rv2, "DELETED carries the deletion's revision");
    // Nothing more was replayed: the next event is the next write.
    api.configmap("w", "marker", json!({})).await;
    let (t, n, _) = w.next_summary().await;
    assert_eq!((t.as_str(), n.as_str()), ("ADDED", "marker"));

    // resourceVersion=0 and unset start with the current objects as ADDED.
    let mut current = BTreeSet::from(["b".to_string(), "marker".to_string()]);
    for query in ["watch=1&resourceVersion=0", "watch=1"] {
        let mut w = api.watch(&format!("{cms}?{query}")).await;
        assert_eq!(w.code, 200);
        let mut initial = BTreeSet::new();
        for _ in 0..current.len() {
            let (t, n, _) = w.next_summary().await;
            assert_eq!(t, "ADDED", "{query}");
            initial.insert(n);
        }
        assert_eq!(initial, current, "{query}");
        let next = format!("after-{}", query.len());
        api.configmap("w", &next, json!({})).await;
        let (t, n, _) = w.next_summary().await;
        assert_eq!((t.as_str(), n.as_str()), ("ADDED", next.as_str()));
        current.insert(next);
    }

    // A selector watch sees objects enter and leave the selection.
    let mut w = api
        .watch(&format!("{cms}?watch=1&labelSelector=app%3Dweb"))
        .await;
    api.configmap("w", "sel", json!({"app": "web"})).await;
    assert_eq!(w.next_summary().await.0, "ADDED");
    api.patch(
        &format!("{cms}/sel"),
        MERGE,
        &json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await
    .expect(200);
    let ev = w.next().await;
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["name"], "sel");
    api.patch(
        &format!("{cms}/sel"),
        MERGE,
        &json!({"data": {"k": "unseen"}}),
    )
    .await
    .expect(200);
    api.patch(
        &format!("{cms}/sel"),
        MERGE,
        &json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await
    .expect(200);
    let ev = w.next().await;
    assert_eq!(ev["type"], "ADDED", "a change that starts matching: {ev:#}");
    assert_eq!(ev["object"]["data"]["k"], "unseen");

    // timeoutSeconds ends the stream.
    let mut w = api.watch(&format!("{cms}?watch=1&timeoutSeconds=1")).await;
    let mut seen = 0;
    while w.next_within(STEP).await.is_some() {
        seen += 1;
        assert!(seen < 100, "the watch did not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watch_with_bookmarks_gets_a_bookmark() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let cm = api.configmap("default", "bm", json!({})).await;
    let mut w = api
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion={}",
            rv_of(&cm)
        ))
        .await;
    assert_eq!(w.code, 200);
    // The registry's bookmark interval is 5 s.
    let ev = w.next_within(Duration::from_secs(15)).await.unwrap();
    assert_eq!(ev["type"], "BOOKMARK", "{ev:#}");
    assert_eq!(ev["object"]["kind"], "ConfigMap");
    assert!(rv_of(&ev["object"]) >= rv_of(&cm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_list_from_a_revision_that_is_gone_get_410_expired() {
    let cluster = TestCluster::start_with(&["--default-watch-cache-size=10"]).await;
    let api = Api::admin(&cluster);
    let cms = "/api/v1/namespaces/default/configmaps";
    let first = api.configmap("default", "old", json!({})).await;
    let old = rv_of(&first);
    for i in 0..12 {
        api.patch(
            &format!("{cms}/old"),
            MERGE,
            &json!({"data": {"k": i.to_string()}}),
        )
        .await
        .expect(200);
    }
    let mut w = api
        .watch(&format!("{cms}?watch=1&resourceVersion={old}"))
        .await;
    assert_eq!(w.code, 200, "upstream answers 200 and sends the error");
    let ev = w.next().await;
    assert_eq!(ev["type"], "ERROR", "{ev:#}");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    let msg = ev["object"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("too old resource version: {old}")),
        "{msg}"
    );
    assert!(
        w.next_within(STEP).await.is_none(),
        "the error ends the watch"
    );

    // A paginated list's continue token, then compaction past it.
    api.configmap("default", "second", json!({})).await;
    let page = api.get(&format!("{cms}?limit=1")).await.expect(200);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    let now = rv_of(&api.configmap("default", "third", json!({})).await);

    let mut etcd = etcd_client::Client::connect([cluster.etcd_url()], None)
        .await
        .unwrap();
    etcd.compact(
        now,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();

    let r = api
        .get(&format!(
            "{cms}?resourceVersion={old}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(r.code, 410, "{:#}", r.body);
    assert_eq!(r.reason(), "Expired");
    assert!(
        r.message().contains("too old resource version"),
        "{}",
        r.message()
    );

    let r = api.get(&format!("{cms}?limit=1&continue={token}")).await;
    assert_eq!(r.code, 410, "{:#}", r.body);
    assert_eq!(r.reason(), "Expired");
    assert!(r.message().contains("continue"), "{}", r.message());

    // The current state is still readable.
    let names = api.names(cms).await;
    assert_eq!(names, ["old", "second", "third"]);
}

// ------------------------------------------------- optimistic concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_updates_conflict_and_concurrent_patches_lose_nothing() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let path = "/api/v1/namespaces/default/configmaps/x";
    let created = api.configmap("default", "x", json!({})).await;

    let mut first = created.clone();
    first["data"]["k"] = json!("first");
    let updated = api.put(path, &first).await.expect(200);
    assert!(rv_of(&updated) > rv_of(&created));

    let mut stale = created.clone();
    stale["data"]["k"] = json!("stale");
    let r = api.put(path, &stale).await;
    assert_eq!(r.code, 409, "{:#}", r.body);
    assert_eq!(r.reason(), "Conflict");
    assert_eq!(
        r.message(),
        "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(api.get(path).await.expect(200)["data"]["k"], "first");

    let patches = (0..20).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.patch(
                path,
                MERGE,
                &json!({"metadata": {"labels": {format!("l{i}"): "set"}}}),
            )
            .await
        })
    });
    for r in futures::future::join_all(patches).await {
        let r = r.unwrap();
        assert_eq!(r.code, 200, "{:#}", r.body);
    }
    let labels = api.get(path).await.expect(200)["metadata"]["labels"].clone();
    let labels = labels.as_object().unwrap();
    for i in 0..20 {
        assert_eq!(
            labels.get(&format!("l{i}")),
            Some(&json!("set")),
            "{labels:?}"
        );
    }
}

// ----------------------------------------------- selectors and pagination

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_select_like_upstream() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    api.namespace("s").await;
    api.configmap("s", "a", json!({"app": "web", "tier": "fe"}))
        .await;
    api.configmap("s", "b", json!({"app": "web", "tier": "be"}))
        .await;
    api.configmap("s", "c", json!({"app": "db"})).await;
    api.configmap("s", "d", json!({})).await;
    let cms = "/api/v1/namespaces/s/configmaps";
    let cases = [
        ("labelSelector=app%3Dweb", vec!["a", "b"]),
        ("labelSelector=app%3D%3Dweb", vec!["a", "b"]),
        ("labelSelector=app!%3Dweb", vec!["c", "d"]),
        ("labelSelector=app%20in%20(web,db)", vec!["a", "b", "c"]),
        ("labelSelector=tier%20notin%20(fe)", vec!["b", "c", "d"]),
        ("labelSelector=tier", vec!["a", "b"]),
        ("labelSelector=!tier", vec!["c", "d"]),
        ("labelSelector=app%3Dweb,tier%3Dbe", vec!["b"]),
        ("fieldSelector=metadata.name%3Dc", vec!["c"]),
        ("fieldSelector=metadata.name!%3Dc", vec!["a", "b", "d"]),
    ];
    for (query, want) in cases {
        assert_eq!(api.names(&format!("{cms}?{query}")).await, want, "{query}");
    }
    assert_eq!(
        api.names("/api/v1/configmaps?fieldSelector=metadata.namespace%3Ds,metadata.name%3Da")
            .await,
        ["a"]
    );

    let pods = "/api/v1/namespaces/s/pods";
    api.post(pods, &pod("bound", Some("n1"))).await.expect(201);
    api.post(pods, &pod("pending", None)).await.expect(201);
    let cases = [
        ("fieldSelector=spec.nodeName%3Dn1", vec!["bound"]),
        ("fieldSelector=spec.nodeName%3D", vec!["pending"]),
        (
            "fieldSelector=status.phase%3DPending",
            vec!["bound", "pending"],
        ),
        ("fieldSelector=status.phase%3DRunning", vec![]),
    ];
    for (query, want) in cases {
        assert_eq!(api.names(&format!("{pods}?{query}")).await, want, "{query}");
    }
    api.patch(
        &format!("{pods}/bound/status"),
        MERGE,
        &json!({"status": {"phase": "Running"}}),
    )
    .await
    .expect(200);
    assert_eq!(
        api.names(&format!("{pods}?fieldSelector=status.phase%3DRunning"))
            .await,
        ["bound"]
    );

    let r = api
        .get(&format!("{cms}?fieldSelector=spec.bogus%3Dx"))
        .await;
    assert_eq!(r.code, 400, "{:#}", r.body);
    assert_eq!(r.reason(), "BadRequest");
    // Upstream's generic conversion for kinds without field labels of
    // their own, and the pods' conversion.
    assert_eq!(
        r.message(),
        r#""spec.bogus" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    let r = api
        .get(&format!("{pods}?fieldSelector=spec.bogus%3Dx"))
        .await;
    assert_eq!(r.code, 400, "{:#}", r.body);
    assert_eq!(r.message(), "field label not supported: spec.bogus");
    let r = api.get(&format!("{cms}?labelSelector=a%20in%20b")).await;
    assert_eq!(r.code, 400, "{:#}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_a_list_are_consistent_at_the_first_pages_revision() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    api.namespace("p").await;
    for i in 0..25 {
        api.configmap("p", &format!("cm-{i:02}"), json!({})).await;
    }
    let cms = "/api/v1/namespaces/p/configmaps";
    let first = api.get(&format!("{cms}?limit=10")).await.expect(200);
    let revision = first["metadata"]["resourceVersion"].clone();
    assert_eq!(first["metadata"]["remainingItemCount"], 15);
    let mut seen = item_names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Written between pages: not part of this list.
    api.configmap("p", "cm-99", json!({})).await;
    let mut remaining = vec![];
    loop {
        let page = api
            .get(&format!("{cms}?limit=10&continue={token}"))
            .await
            .expect(200);
        assert_eq!(page["metadata"]["resourceVersion"], revision);
        seen.extend(item_names(&page));
        remaining.push(page["metadata"]["remainingItemCount"].clone());
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
        assert!(remaining.len() < 5, "too many pages");
    }
    assert_eq!(remaining, [json!(5), Value::Null]);
    let want: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(seen, want, "every object exactly once, in key order");
    assert_eq!(api.names(cms).await.len(), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_larger_than_one_etcd_response_returns_every_object() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    api.namespace("big").await;
    // 24 ConfigMaps of 256 KiB: 6 MiB, more than one gRPC message may carry.
    let value = "x".repeat(256 * 1024);
    for i in 0..24 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i:02}")}, "data": {"v": value}});
        api.post("/api/v1/namespaces/big/configmaps", &cm)
            .await
            .expect(201);
    }
    for query in ["", "?resourceVersion=0"] {
        let list = api
            .get(&format!("/api/v1/namespaces/big/configmaps{query}"))
            .await
            .expect(200);
        assert_eq!(item_names(&list).len(), 24, "LIST{query}");
        assert!(list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|cm| cm["data"]["v"] == value.as_str()));
    }
}

// -------------------------------------------------------------- patches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_merge_and_strategic_patches_apply_like_upstream() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let path = "/api/v1/namespaces/default/configmaps/pt";
    api.post(
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"name": "pt"}, "data": {"a": "1", "c": "3"}}),
    )
    .await
    .expect(201);

    let ops = json!([
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/a", "value": "x"},
        {"op": "remove", "path": "/data/c"},
    ]);
    let got = api.patch(path, JSON_PATCH, &ops).await.expect(200);
    assert_eq!(got["data"], json!({"a": "x", "b": "2"}));

    let failing = json!([
        {"op": "test", "path": "/data/a", "value": "nope"},
        {"op": "replace", "path": "/data/a", "value": "y"},
    ]);
    let r = api.patch(path, JSON_PATCH, &failing).await;
    assert_eq!(r.code, 422, "{:#}", r.body);
    assert_eq!(r.reason(), "Invalid");
    assert_eq!(api.get(path).await.expect(200)["data"]["a"], "x");

    let got = api
        .patch(path, MERGE, &json!({"data": {"a": null, "d": "4"}}))
        .await
        .expect(200);
    assert_eq!(got["data"], json!({"b": "2", "d": "4"}));

    let r = api
        .patch(
            "/api/v1/namespaces/default/configmaps/missing",
            MERGE,
            &json!({}),
        )
        .await;
    assert_eq!(r.code, 404, "{:#}", r.body);
    assert_eq!(r.message(), "configmaps \"missing\" not found");
    let r = api
        .send(Method::PATCH, path, "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(r.code, 415, "{:#}", r.body);

    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    api.post(deploys, &deployment("smp")).await.expect(201);
    let path = format!("{deploys}/smp");
    let got = api
        .patch(
            &path,
            STRATEGIC,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "x2", "ports": [{"containerPort": 443, "name": "https"}]}
            ]}}}}),
        )
        .await
        .expect(200);
    let containers = &got["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 2, "{containers:#}");
    assert_eq!(containers[0]["name"], "a");
    assert_eq!(containers[0]["image"], "x2");
    let ports: BTreeSet<i64> = containers[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([80, 443]),
        "ports merge by containerPort"
    );
    assert_eq!(containers[1]["name"], "b");
    assert_eq!(containers[1]["image"], "y");

    let got = api
        .patch(
            &path,
            STRATEGIC,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "b", "$patch": "delete"}
            ]}}}}),
        )
        .await
        .expect(200);
    let names: Vec<&str> = got["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"]);

    let got = api
        .patch(
            &path,
            STRATEGIC,
            &json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [{"name": "c", "image": "z"}]
            }}}}),
        )
        .await
        .expect(200);
    let names: Vec<&str> = got["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "a"]);
    assert!(got.to_string().find("$setElementOrder").is_none());
}

// ----------------------------------------------------------- allocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_ips_and_node_ports_are_allocated_once_and_survive_a_restart() {
    let mut cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let svcs = "/api/v1/namespaces/default/services";
    let creates = (0..50).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.post(svcs, &service(&format!("svc-{i}"), "ClusterIP"))
                .await
        })
    });
    let mut ips = Vec::new();
    for r in futures::future::join_all(creates).await {
        let body = r.unwrap().expect(201);
        let ip: Ipv4Addr = body["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert_eq!(body["spec"]["clusterIPs"], json!([ip.to_string()]));
        ips.push(ip);
    }
    let distinct: HashSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), 50, "{ips:?}");
    for ip in &ips {
        let o = ip.octets();
        assert!(
            o[0] == 10 && (96..112).contains(&o[1]),
            "{ip} outside 10.96.0.0/12"
        );
        assert_ne!(
            *ip,
            Ipv4Addr::new(10, 96, 0, 1),
            "held by the kubernetes Service"
        );
    }
    let kubernetes = api
        .get("/api/v1/namespaces/default/services/kubernetes")
        .await
        .expect(200);
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1");

    let creates = (0..5).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.post(svcs, &service(&format!("np-{i}"), "NodePort"))
                .await
        })
    });
    let mut ports = HashSet::new();
    for r in futures::future::join_all(creates).await {
        let body = r.unwrap().expect(201);
        let port = body["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&port), "{port}");
        assert!(ports.insert(port), "nodePort {port} given twice");
    }

    let taken = ips[0].to_string();
    let mut dup = service("dup", "ClusterIP");
    dup["spec"]["clusterIP"] = json!(taken);
    let r = api.post(svcs, &dup).await;
    assert_eq!(r.code, 422, "{:#}", r.body);
    assert_eq!(r.reason(), "Invalid");
    assert!(
        r.message().contains("provided IP is already allocated"),
        "{}",
        r.message()
    );
    assert_eq!(api.get(&format!("{svcs}/dup")).await.code, 404);

    let owner = ips.iter().position(|ip| ip.to_string() == taken).unwrap();
    api.delete(&format!("{svcs}/svc-{owner}")).await.expect(200);
    let reused = api.post(svcs, &dup).await.expect(201);
    assert_eq!(reused["spec"]["clusterIP"], json!(taken));

    // The claims live in etcd, not in the apiserver's memory.
    let mut etcd = etcd_client::Client::connect([cluster.etcd_url()], None)
        .await
        .unwrap();
    let held = etcd
        .get(
            "/registry/ranges/serviceips/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    let held: HashSet<String> = held
        .kvs()
        .iter()
        .map(|kv| {
            kv.key_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    for ip in &ips {
        assert!(held.contains(&ip.to_string()), "{ip} has no claim in etcd");
    }

    cluster.restart_apiserver().await;
    let api = Api::admin(&cluster);
    let mut again = service("again", "ClusterIP");
    again["spec"]["clusterIP"] = json!(ips[1].to_string());
    let r = api.post(svcs, &again).await;
    assert_eq!(r.code, 422, "after a restart: {:#}", r.body);
    let fresh = api
        .post(svcs, &service("fresh", "ClusterIP"))
        .await
        .expect(201);
    let ip: Ipv4Addr = fresh["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !distinct.contains(&ip) && ip != Ipv4Addr::new(10, 96, 0, 1),
        "{ip} reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_node_port_services_fill_a_small_range_without_spurious_conflicts() {
    let cluster = TestCluster::start_with(&["--service-node-port-range=30000-30007"]).await;
    let api = Api::admin(&cluster);
    let svcs = "/api/v1/namespaces/default/services";
    // Eight creates racing for eight ports: most first picks collide.
    let creates = (0..8).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.post(svcs, &service(&format!("np-{i}"), "NodePort"))
                .await
        })
    });
    let mut ports = BTreeSet::new();
    for r in futures::future::join_all(creates).await {
        let body = r.unwrap().expect(201);
        ports.insert(body["spec"]["ports"][0]["nodePort"].as_i64().unwrap());
    }
    assert_eq!(ports, (30000..=30007).collect::<BTreeSet<i64>>());
    let r = api.post(svcs, &service("one-too-many", "NodePort")).await;
    assert!(r.code >= 400, "{:#}", r.body);
    assert!(r.message().contains("range is full"), "{}", r.message());
    assert_eq!(api.get(&format!("{svcs}/one-too-many")).await.code, 404);
}

// ------------------------------------------------------------ bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_status_and_changes_nothing() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let cms = "/api/v1/namespaces/default/configmaps";
    let pods = "/api/v1/namespaces/default/pods";

    let r = api
        .post(cms, &json!({"metadata": {"name": "Bad_Name"}}))
        .await;
    assert_eq!(r.code, 422, "{:#}", r.body);
    assert_eq!(r.reason(), "Invalid");
    assert!(
        r.message().starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{}",
        r.message()
    );
    let cause = &r.body["details"]["causes"][0];
    assert_eq!(cause["field"], "metadata.name");
    assert_eq!(cause["reason"], "FieldValueInvalid");
    assert_eq!(api.get(&format!("{cms}/Bad_Name")).await.code, 404);

    let r = api
        .post(
            pods,
            &json!({"metadata": {"name": "empty"}, "spec": {"containers": []}}),
        )
        .await;
    assert_eq!(r.code, 422, "{:#}", r.body);
    let causes = r.body["details"]["causes"].as_array().unwrap();
    assert!(
        causes
            .iter()
            .any(|c| c["field"] == "spec.containers" && c["reason"] == "FieldValueRequired"),
        "{causes:?}"
    );
    assert_eq!(api.get(&format!("{pods}/empty")).await.code, 404);

    // Immutable fields.
    let svc = api
        .post(
            "/api/v1/namespaces/default/services",
            &service("imm", "ClusterIP"),
        )
        .await
        .expect(201);
    let mut changed = svc.clone();
    let other = if svc["spec"]["clusterIP"] == "10.96.0.77" {
        "10.96.0.78"
    } else {
        "10.96.0.77"
    };
    changed["spec"]["clusterIP"] = json!(other);
    changed["spec"]["clusterIPs"] = json!([other]);
    let r = api
        .put("/api/v1/namespaces/default/services/imm", &changed)
        .await;
    assert_eq!(r.code, 422, "{:#}", r.body);
    assert!(r.message().contains("spec.clusterIP"), "{}", r.message());
    let now = api
        .get("/api/v1/namespaces/default/services/imm")
        .await
        .expect(200);
    assert_eq!(now["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
    assert_eq!(
        now["metadata"]["resourceVersion"],
        svc["metadata"]["resourceVersion"]
    );

    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let d = api.post(deploys, &deployment("imm")).await.expect(201);
    let r = api
        .patch(
            &format!("{deploys}/imm"),
            MERGE,
            &json!({"spec": {"selector": {"matchLabels": {"app": "other"}},
                             "template": {"metadata": {"labels": {"app": "other"}}}}}),
        )
        .await;
    assert_eq!(r.code, 422, "{:#}", r.body);
    let causes = r.body["details"]["causes"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c["field"] == "spec.selector"),
        "{causes:?}"
    );
    assert!(
        r.message().contains("field is immutable"),
        "{}",
        r.message()
    );
    let now = api.get(&format!("{deploys}/imm")).await.expect(200);
    assert_eq!(now["spec"]["selector"], d["spec"]["selector"]);

    // Paths and bodies the server cannot read.
    let r = api.get("/api/v1/namespaces/default/frobs").await;
    assert_eq!(r.code, 404, "{:#}", r.body);
    assert_eq!(r.reason(), "NotFound");
    let r = api
        .send(
            Method::POST,
            cms,
            JSON,
            b"{\"metadata\": {\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(r.code, 400, "{:#}", r.body);
    assert_eq!(r.reason(), "BadRequest");

    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n";
    let r = api
        .send(
            Method::POST,
            cms,
            "application/yaml",
            yaml.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.expect(201)["data"]["k"], "v");

    let big = "x".repeat(3 * 1024 * 1024 + 512 * 1024);
    let r = api
        .post(
            cms,
            &json!({"metadata": {"name": "big"}, "data": {"k": big}}),
        )
        .await;
    assert_eq!(r.code, 413, "{:#}", r.body);
    assert_eq!(r.reason(), "RequestEntityTooLarge");
    assert_eq!(api.get(&format!("{cms}/big")).await.code, 404);

    let mut bogus = pod("bogus", None);
    bogus["spec"]["bogus"] = json!(true);
    let r = api
        .post(&format!("{pods}?fieldValidation=Strict"), &bogus)
        .await;
    assert_eq!(r.code, 400, "{:#}", r.body);
    assert_eq!(r.reason(), "BadRequest");
    assert_eq!(
        r.message(),
        "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.bogus\""
    );
    assert_eq!(api.get(&format!("{pods}/bogus")).await.code, 404);
    let r = api.post(pods, &bogus).await;
    assert_eq!(r.code, 201, "{:#}", r.body);
    let warning = r
        .headers
        .get("warning")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        warning.contains(r#"unknown field \"spec.bogus\""#),
        "{warning:?}"
    );

    let r = api
        .post(
            "/api/v1/namespaces/nope/configmaps",
            &json!({"metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(r.code, 404, "{:#}", r.body);
    assert_eq!(r.message(), "namespaces \"nope\" not found");
    assert_eq!(
        api.get("/api/v1/namespaces/nope/configmaps/x").await.code,
        404
    );
}

// -------------------------------------------------------------- delete

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_graceful_two_phase_or_immediate_as_upstream() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let pods = "/api/v1/namespaces/default/pods";

    api.post(pods, &pod("bound", Some("n1"))).await.expect(201);
    let marked = api.delete(&format!("{pods}/bound")).await.expect(200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked:#}"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let still = api.get(&format!("{pods}/bound")).await.expect(200);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    api.delete(&format!("{pods}/bound?gracePeriodSeconds=0"))
        .await
        .expect(200);
    assert_eq!(api.get(&format!("{pods}/bound")).await.code, 404);

    api.post(pods, &pod("graced", Some("n1"))).await.expect(201);
    let marked = api
        .delete_with(
            &format!("{pods}/graced"),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 7}),
        )
        .await
        .expect(200);
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 7);

    api.post(pods, &pod("unbound", None)).await.expect(201);
    api.delete(&format!("{pods}/unbound")).await.expect(200);
    assert_eq!(api.get(&format!("{pods}/unbound")).await.code, 404);

    // Finalizers hold an object until they are removed.
    let cms = "/api/v1/namespaces/default/configmaps";
    api.post(
        cms,
        &json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await
    .expect(201);
    api.delete(&format!("{cms}/held")).await.expect(200);
    let held = api.get(&format!("{cms}/held")).await.expect(200);
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "{held:#}"
    );
    api.patch(
        &format!("{cms}/held"),
        MERGE,
        &json!({"metadata": {"finalizers": null}}),
    )
    .await
    .expect(200);
    assert_eq!(api.get(&format!("{cms}/held")).await.code, 404);

    let uid_check = api.configmap("default", "uid-check", json!({})).await;
    let r = api
        .delete_with(
            &format!("{cms}/uid-check"),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}),
        )
        .await;
    assert_eq!(r.code, 409, "{:#}", r.body);
    assert_eq!(r.reason(), "Conflict");
    assert!(
        r.message()
            .contains("Precondition failed: UID in precondition: not-the-uid"),
        "{}",
        r.message()
    );
    let now = api.get(&format!("{cms}/uid-check")).await.expect(200);
    assert_eq!(now["metadata"]["uid"], uid_check["metadata"]["uid"]);

    for ns in ["default", "kube-system"] {
        let r = api.delete(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!(r.code, 403, "{:#}", r.body);
        assert_eq!(r.reason(), "Forbidden");
        assert_eq!(
            r.message(),
            format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
        );
        let still = api
            .get(&format!("/api/v1/namespaces/{ns}"))
            .await
            .expect(200);
        assert_eq!(still["status"]["phase"], "Active");
    }

    api.namespace("doomed").await;
    api.configmap("doomed", "inside", json!({})).await;
    api.delete("/api/v1/namespaces/doomed").await.expect(200);
    let ns = api.get("/api/v1/namespaces/doomed").await.expect(200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let r = api
        .post(
            "/api/v1/namespaces/doomed/configmaps",
            &json!({"metadata": {"name": "late"}}),
        )
        .await;
    assert_eq!(r.code, 403, "{:#}", r.body);
    assert_eq!(r.reason(), "Forbidden");
    assert!(
        r.message().ends_with(
            "unable to create new content in namespace doomed because it is being terminated"
        ),
        "{}",
        r.message()
    );

    api.namespace("dc").await;
    api.configmap("dc", "one", json!({"x": "1"})).await;
    api.configmap("dc", "two", json!({"x": "1"})).await;
    api.configmap("dc", "three", json!({"x": "2"})).await;
    api.delete("/api/v1/namespaces/dc/configmaps?labelSelector=x%3D1")
        .await
        .expect(200);
    assert_eq!(
        api.names("/api/v1/namespaces/dc/configmaps").await,
        ["three"]
    );

    // dryRun=All answers as if, and changes nothing.
    let before = api
        .get("/api/v1/namespaces/dc/configmaps/three")
        .await
        .expect(200);
    api.delete("/api/v1/namespaces/dc/configmaps/three?dryRun=All")
        .await
        .expect(200);
    api.post(
        "/api/v1/namespaces/dc/configmaps?dryRun=All",
        &json!({"metadata": {"name": "dry"}}),
    )
    .await
    .expect(201);
    let mut edited = before.clone();
    edited["data"]["k"] = json!("dry");
    api.put("/api/v1/namespaces/dc/configmaps/three?dryRun=All", &edited)
        .await
        .expect(200);
    assert_eq!(
        api.names("/api/v1/namespaces/dc/configmaps").await,
        ["three"]
    );
    let after = api
        .get("/api/v1/namespaces/dc/configmaps/three")
        .await
        .expect(200);
    assert_eq!(after, before);
}

// --------------------------------------------------------- subresources

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_scale_and_binding_subresources_touch_only_their_part() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let pods = "/api/v1/namespaces/default/pods";
    let created = api.post(pods, &pod("st", None)).await.expect(201);

    let mut body = created.clone();
    body["status"]["phase"] = json!("Running");
    body["spec"]["containers"][0]["image"] = json!("changed");
    body["metadata"]["labels"] = json!({"via": "status"});
    let got = api
        .put(&format!("{pods}/st/status"), &body)
        .await
        .expect(200);
    assert_eq!(got["status"]["phase"], "Running");
    assert_eq!(got["spec"]["containers"][0]["image"], "busybox");
    let now = api.get(&format!("{pods}/st")).await.expect(200);
    assert_eq!(now["spec"], created["spec"]);
    assert_eq!(now["status"]["phase"], "Running");

    let got = api
        .patch(
            &format!("{pods}/st/status"),
            MERGE,
            &json!({"status": {"phase": "Succeeded"}, "spec": {"activeDeadlineSeconds": 5}}),
        )
        .await
        .expect(200);
    assert_eq!(got["status"]["phase"], "Succeeded");
    assert!(
        got["spec"].get("activeDeadlineSeconds").is_none(),
        "{got:#}"
    );

    let mut body = api.get(&format!("{pods}/st")).await.expect(200);
    body["status"]["phase"] = json!("Failed");
    body["metadata"]["labels"] = json!({"via": "main"});
    let got = api.put(&format!("{pods}/st"), &body).await.expect(200);
    assert_eq!(got["metadata"]["labels"]["via"], "main");
    assert_eq!(
        got["status"]["phase"], "Succeeded",
        "main resource cannot set status"
    );

    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let d = api.post(deploys, &deployment("web")).await.expect(201);
    let generation = d["metadata"]["generation"].as_i64().unwrap();
    let scale = api.get(&format!("{deploys}/web/scale")).await.expect(200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let got = api
        .patch(
            &format!("{deploys}/web/scale"),
            MERGE,
            &json!({"spec": {"replicas": 5}}),
        )
        .await
        .expect(200);
    assert_eq!(got["spec"]["replicas"], 5);
    let d = api.get(&format!("{deploys}/web")).await.expect(200);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], generation + 1);

    api.post(pods, &pod("tobind", None)).await.expect(201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "tobind"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let r = api.post(&format!("{pods}/tobind/binding"), &binding).await;
    assert_eq!(r.code, 201, "{:#}", r.body);
    let bound = api.get(&format!("{pods}/tobind")).await.expect(200);
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let conditions = bound["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"),
        "{conditions:?}"
    );
    let mut again = binding.clone();
    again["target"]["name"] = json!("n2");
    let r = api.post(&format!("{pods}/tobind/binding"), &again).await;
    assert_eq!(r.code, 409, "{:#}", r.body);
    assert_eq!(r.reason(), "Conflict");
    assert_eq!(
        api.get(&format!("{pods}/tobind")).await.expect(200)["spec"]["nodeName"],
        "n1"
    );
}

// ------------------------------------------------ discovery and health

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_version_discovery_and_anonymous_access() {
    let cluster = TestCluster::start().await;
    let api = Api::admin(&cluster);
    let anonymous = Api::anonymous(&cluster);
    for path in ["/healthz", "/readyz", "/livez"] {
        let r = anonymous.get(path).await;
        assert_eq!((r.code, r.body), (200, json!("ok")), "{path}");
    }
    let version = api.get("/version").await.expect(200);
    assert!(
        version["gitVersion"].as_str().unwrap().starts_with('v'),
        "{version:#}"
    );
    assert!(version["major"].is_string());

    let r = anonymous.get("/api/v1/pods").await;
    assert_eq!(r.code, 403, "{:#}", r.body);
    assert_eq!(r.reason(), "Forbidden");
    assert_eq!(
        r.message(),
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    let groups = anonymous.get("/apis").await.expect(200);
    assert_eq!(groups["kind"], "APIGroupList");
    let core = api.get("/api").await.expect(200);
    assert_eq!(core["versions"], json!(["v1"]));
    let v1 = api.get("/api/v1").await.expect(200);
    let names: BTreeMap<String, Value> = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert!(names.contains_key("pods/status") && names.contains_key("pods/binding"));

    // Readiness holds for as long as the caches are synced.
    assert!(wait_for(STEP, || async { api.get("/readyz").await.code == 200 }).await);
}

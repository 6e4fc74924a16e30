//! The prober against FakeRuntime (exec probes, thresholds, timing under
//! paused time) and against local listeners (http, tcp, grpc).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrokube_client::EventSink;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::http::{HttpTarget, Scheme};
use super::*;
use crate::backoff::CrashLoopBackOff;
use crate::cri::FakeRuntime;
use crate::pod_worker::status_of as status;
use crate::pod_worker::{PodWorker, WorkerSettings};

/// Keeps Events in memory, applying merge patches to the top level.
#[derive(Default, Clone)]
struct FakeSink {
    events: Arc<Mutex<Vec<Value>>>,
}

#[async_trait::async_trait]
impl EventSink for FakeSink {
    async fn create(&self, _ns: &str, event: Value) -> Result<Value, ferrokube_client::Error> {
        self.events.lock().unwrap().push(event.clone());
        Ok(event)
    }
    async fn patch(
        &self,
        _ns: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, ferrokube_client::Error> {
        let mut events = self.events.lock().unwrap();
        let e = events
            .iter_mut()
            .find(|e| e["metadata"]["name"] == name)
            .expect("patched events exist");
        for (k, v) in patch.as_object().unwrap() {
            e[k] = v.clone();
        }
        Ok(e.clone())
    }
}

impl FakeSink {
    /// (type, reason, message, count) of every Event.
    fn seen(&self) -> Vec<(String, String, String, i64)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["reason"].as_str().unwrap().to_string(),
                    e["message"].as_str().unwrap().to_string(),
                    e["count"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

struct Setup {
    rt: FakeRuntime,
    sink: FakeSink,
    probes: Arc<ProbeManager<FakeRuntime>>,
    worker: PodWorker<FakeRuntime>,
}

fn setup() -> Setup {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let sink = FakeSink::default();
    let probes = Arc::new(ProbeManager::new(
        Arc::new(rt.clone()),
        Arc::new(sink.clone()),
        "n1",
    ));
    let worker = PodWorker::new(
        Arc::new(rt.clone()),
        WorkerSettings {
            node_name: "n1".into(),
            host_ip: "10.0.0.1".into(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            pod_logs_dir: std::env::temp_dir().join("ferrokube-kubelet-unit-logs"),
        },
        CrashLoopBackOff::new(Duration::from_secs(10), Duration::from_secs(300)),
    )
    .with_probes(probes.clone());
    Setup {
        rt,
        sink,
        probes,
        worker,
    }
}

/// A pod `web` with one container `app` carrying `probes` (e.g.
/// `{"livenessProbe": {...}}`).
fn pod_with(probes: Value) -> Pod {
    let mut app = json!({"name": "app", "image": "busybox:1.36",
        "ports": [{"name": "http", "containerPort": 8080}]});
    for (k, v) in probes.as_object().unwrap() {
        app[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30, "containers": [app]}
    }))
    .unwrap()
}

fn exec_probe(cmd: &str, extra: Value) -> Value {
    let mut p = json!({"exec": {"command": ["sh", "-c", cmd]}, "periodSeconds": 1});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// Answers ExecSync by the command's last word: the exit code set for it
/// (0 unless set), with `cat`'s complaint on stderr when failing.
#[derive(Clone, Default)]
struct Commands(Arc<Mutex<std::collections::HashMap<String, Arc<AtomicI32>>>>);

impl Commands {
    fn install(&self, rt: &FakeRuntime) {
        let this = self.clone();
        rt.on_exec(move |_id, cmd| {
            let code = this.code(cmd.last().unwrap()).load(Ordering::SeqCst);
            cri::ExecSyncResponse {
                stdout: vec![],
                stderr: if code == 0 {
                    vec![]
                } else {
                    b"cat: can't open '/tmp/healthy': No such file or directory\n".to_vec()
                },
                exit_code: code,
            }
        });
    }

    fn code(&self, cmd: &str) -> Arc<AtomicI32> {
        self.0
            .lock()
            .unwrap()
            .entry(cmd.into())
            .or_default()
            .clone()
    }

    fn set(&self, cmd: &str, exit_code: i32) {
        self.code(cmd).store(exit_code, Ordering::SeqCst);
    }
}

fn ready_condition(s: &PodStatus) -> String {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .status
        .clone()
}

fn app(s: &PodStatus) -> k8s_openapi::api::core::v1::ContainerStatus {
    s.container_statuses.as_ref().unwrap()[0].clone()
}

fn exec_calls(rt: &FakeRuntime, word: &str) -> usize {
    rt.calls()
        .iter()
        .filter(|c| c.starts_with("ExecSync") && c.ends_with(word))
        .count()
}

/// Lets (paused) time pass so that the workers probe.
async fn pass(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn readiness_is_false_until_success_threshold_and_false_again_after_failure_threshold() {
    let s = setup();
    let cmds = Commands::default();
    cmds.install(&s.rt);
    let pod = pod_with(json!({"readinessProbe": exec_probe("ready",
        json!({"successThreshold": 2, "failureThreshold": 2}))}));
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert!(!app(&st).ready, "not ready before the first probe");
    assert_eq!(app(&st).started, Some(true));
    assert_eq!(ready_condition(&st), "False");

    pass(0.5).await; // one success
    assert_eq!(exec_calls(&s.rt, "ready"), 1);
    assert!(!app(&status(s.worker.sync_pod(&pod).await.unwrap())).ready);
    pass(1.0).await; // two successes
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert!(app(&st).ready);
    assert_eq!(ready_condition(&st), "True");

    cmds.set("ready", 1);
    pass(1.0).await; // one failure: still ready
    assert!(app(&status(s.worker.sync_pod(&pod).await.unwrap())).ready);
    pass(1.0).await; // two failures
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert!(!app(&st).ready);
    assert_eq!(ready_condition(&st), "False");
    let unhealthy = s.sink.seen();
    assert_eq!(
        unhealthy,
        [(
            "Warning".into(),
            "Unhealthy".into(),
            "Readiness probe failed: cat: can't open '/tmp/healthy': No such file or directory"
                .into(),
            2
        )]
    );
    // A failing readiness probe never stops the container.
    assert!(!s.rt.calls().iter().any(|c| c.starts_with("StopContainer")));
}

#[tokio::test(start_paused = true)]
async fn readiness_change_wakes_the_status_loop() {
    let s = setup();
    Commands::default().install(&s.rt);
    let pod = pod_with(json!({"readinessProbe": exec_probe("ready", json!({}))}));
    s.worker.sync_pod(&pod).await.unwrap();
    tokio::time::timeout(Duration::from_millis(500), s.probes.changed())
        .await
        .expect("the first success is announced");
    assert!(app(&status(s.worker.sync_pod(&pod).await.unwrap())).ready);
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_past_threshold_kills_the_container_and_the_pod_worker_restarts_it() {
    let s = setup();
    let cmds = Commands::default();
    cmds.install(&s.rt);
    cmds.set("alive", 1);
    let pod = pod_with(json!({"livenessProbe": exec_probe("alive",
        json!({"failureThreshold": 3, "terminationGracePeriodSeconds": 5}))}));
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert!(
        app(&st).ready,
        "a liveness probe alone does not hold readiness back"
    );
    let first = s.rt.containers_named("app")[0].clone();

    pass(1.5).await; // two failures
    assert!(!s.rt.calls().iter().any(|c| c.starts_with("StopContainer")));
    pass(1.0).await; // three
    assert!(
        s.rt.calls().contains(&format!("StopContainer {first} 5")),
        "the probe's grace period is used: {:?}",
        s.rt.calls()
    );
    assert_eq!(
        s.sink.seen(),
        [
            (
                "Warning".into(),
                "Unhealthy".into(),
                "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory"
                    .into(),
                3
            ),
            (
                "Normal".into(),
                "Killing".into(),
                "Container app failed liveness probe, will be restarted".into(),
                1
            ),
        ]
    );
    // The worker of the dead container stops probing it.
    let probes_before = exec_calls(&s.rt, "alive");
    pass(3.0).await;
    assert_eq!(exec_calls(&s.rt, "alive"), probes_before);

    // The relist notices the kill, the pod worker restarts it (the first
    // restart is immediate); the new container gets a fresh liveness worker.
    cmds.set("alive", 0);
    s.worker.pleg().relist().await.unwrap();
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    let c = app(&st);
    assert_eq!(c.restart_count, 1);
    assert_eq!(
        c.last_state.unwrap().terminated.unwrap().exit_code,
        143,
        "the fake runtime's SIGTERM exit"
    );
    let second = s.rt.containers_named("app")[1].clone();
    assert_ne!(first, second);
    pass(0.5).await;
    assert!(s
        .rt
        .calls()
        .contains(&format!("ExecSync {second} sh -c alive")));
}

#[tokio::test(start_paused = true)]
async fn initial_delay_holds_the_first_probe_back() {
    let s = setup();
    Commands::default().install(&s.rt);
    let pod = pod_with(json!({"livenessProbe": exec_probe("alive",
        json!({"initialDelaySeconds": 10}))}));
    s.worker.sync_pod(&pod).await.unwrap();
    pass(9.0).await;
    assert_eq!(exec_calls(&s.rt, "alive"), 0);
    pass(2.0).await;
    assert!(exec_calls(&s.rt, "alive") >= 1);
}

#[tokio::test(start_paused = true)]
async fn startup_probe_gates_liveness_and_readiness_until_it_succeeds() {
    let s = setup();
    let cmds = Commands::default();
    cmds.install(&s.rt);
    cmds.set("started", 1);
    let pod = pod_with(json!({
        "startupProbe": exec_probe("started", json!({"failureThreshold": 30})),
        "livenessProbe": exec_probe("alive", json!({})),
        "readinessProbe": exec_probe("ready", json!({})),
    }));
    s.worker.sync_pod(&pod).await.unwrap();
    pass(3.5).await;
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert_eq!(app(&st).started, Some(false));
    assert!(!app(&st).ready);
    assert!(exec_calls(&s.rt, "started") >= 3);
    assert_eq!(exec_calls(&s.rt, "alive") + exec_calls(&s.rt, "ready"), 0);

    cmds.set("started", 0);
    pass(2.0).await;
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert_eq!(app(&st).started, Some(true));
    assert!(app(&st).ready);
    assert!(exec_calls(&s.rt, "alive") >= 1 && exec_calls(&s.rt, "ready") >= 1);
    // Once started, the startup probe is done.
    let startup_probes = exec_calls(&s.rt, "started");
    pass(3.0).await;
    assert_eq!(exec_calls(&s.rt, "started"), startup_probes);
}

#[tokio::test(start_paused = true)]
async fn startup_failure_past_threshold_kills_the_container() {
    let s = setup();
    let cmds = Commands::default();
    cmds.install(&s.rt);
    cmds.set("started", 1);
    let mut pod = pod_with(json!({"startupProbe": exec_probe("started",
        json!({"failureThreshold": 2}))}));
    pod.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    s.worker.sync_pod(&pod).await.unwrap();
    let id = s.rt.containers_named("app")[0].clone();
    pass(1.5).await;
    assert!(s.rt.calls().contains(&format!("StopContainer {id} 30")));
    assert!(s
        .sink
        .seen()
        .iter()
        .any(|(_, reason, message, _)| reason == "Killing"
            && message == "Container app failed startup probe"));
}

#[test]
fn probe_ports_resolve_by_number_or_by_container_port_name() {
    let c: Container = serde_json::from_value(json!({"name": "app",
        "ports": [{"name": "http", "containerPort": 8080}]}))
    .unwrap();
    assert_eq!(resolve_port(&IntOrString::Int(81), &c).unwrap(), 81);
    assert_eq!(
        resolve_port(&IntOrString::String("http".into()), &c).unwrap(),
        8080
    );
    let err = resolve_port(&IntOrString::String("metrics".into()), &c).unwrap_err();
    assert_eq!(
        err.to_string(),
        "couldn't find port \"metrics\" in container \"app\""
    );
    assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
}

/// Serves one canned status per connection and keeps the request heads.
async fn http_server(code: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            let response = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
            let _ = conn.write_all(response.as_bytes()).await;
        }
    });
    (port, heads)
}

/// A port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn target(port: u16) -> HttpTarget {
    HttpTarget {
        scheme: Scheme::Http,
        host: "127.0.0.1".into(),
        port,
        path: "/healthz".into(),
        headers: vec![("X-Probe".into(), "yes".into())],
    }
}

#[tokio::test]
async fn http_probe_succeeds_below_400_and_sends_path_headers_and_user_agent() {
    let (port, heads) = http_server(200).await;
    assert_eq!(
        http::probe(&target(port), Duration::from_secs(1)).await,
        ProbeResult::Success
    );
    let head = heads.lock().unwrap()[0].to_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains("x-probe: yes"), "{head}");
    assert!(head.contains("user-agent: kube-probe/1.32"), "{head}");
    assert!(head.contains(&format!("host: 127.0.0.1:{port}")), "{head}");

    // A 3xx that is not followed (here: no Location) is a success with a
    // warning, as upstream.
    let (port, _) = http_server(302).await;
    assert_eq!(
        http::probe(&target(port), Duration::from_secs(1)).await,
        ProbeResult::Warning("Probe terminated redirects, Response body: ".into())
    );
}

/// Answers each request by its path: `/hop/<n>` redirects to `/hop/<n-1>`
/// (relative), `/hop/0` to `/healthz`, `/elsewhere` to another host name
/// (`localhost`, absolute, with a body), `/other-port` to the same host on
/// `other_port`; `/healthz` answers 200. Keeps the request heads.
async fn redirecting_server(other_port: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push(head);
            let redirect = |code: u16, to: String, body: &str| {
                format!(
                    "HTTP/1.1 {code} Redirect\r\nlocation: {to}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let response = match path.as_str() {
                "/healthz" => "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string(),
                "/hop/0" => redirect(302, "/healthz".into(), ""),
                "/elsewhere" => redirect(301, format!("http://localhost:{port}/healthz"), "moved"),
                "/other-port" => {
                    redirect(307, format!("http://127.0.0.1:{other_port}/healthz"), "")
                }
                p => match p.strip_prefix("/hop/").and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) => redirect(302, format!("/hop/{}", n - 1), ""),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string(),
                },
            };
            let _ = conn.write_all(response.as_bytes()).await;
        }
    });
    (port, heads)
}

fn at(port: u16, path: &str) -> HttpTarget {
    HttpTarget {
        path: path.into(),
        ..target(port)
    }
}

#[tokio::test]
async fn http_probe_follows_redirects_to_the_same_host_with_its_headers() {
    let (other, other_heads) = http_server(200).await;
    let (port, heads) = redirecting_server(other).await;
    // 9 redirects (hop/8 .. hop/0) and then 200: followed to the end.
    assert_eq!(
        http::probe(&at(port, "/hop/8"), Duration::from_secs(2)).await,
        ProbeResult::Success
    );
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 10, "{heads:?}");
    let last = heads.last().unwrap().to_lowercase();
    assert!(last.starts_with("get /healthz http/1.1\r\n"), "{last}");
    assert!(last.contains("x-probe: yes"), "{last}");
    // Same host name, another port: followed too.
    assert_eq!(
        http::probe(&at(port, "/other-port"), Duration::from_secs(2)).await,
        ProbeResult::Success
    );
    let head = other_heads.lock().unwrap()[0].to_lowercase();
    assert!(head.contains(&format!("host: 127.0.0.1:{other}")), "{head}");
}

#[tokio::test]
async fn http_probe_fails_at_the_tenth_redirect() {
    let (port, heads) = redirecting_server(0).await;
    assert_eq!(
        http::probe(&at(port, "/hop/9"), Duration::from_secs(2)).await,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": stopped after 10 redirects"
        ))
    );
    assert_eq!(
        heads.lock().unwrap().len(),
        10,
        "the 11th request is not made"
    );
}

#[tokio::test]
async fn http_probe_redirected_to_another_host_succeeds_with_a_warning() {
    let (port, heads) = redirecting_server(0).await;
    assert_eq!(
        http::probe(&at(port, "/elsewhere"), Duration::from_secs(2)).await,
        ProbeResult::Warning("Probe terminated redirects, Response body: moved".into())
    );
    assert_eq!(heads.lock().unwrap().len(), 1, "localhost is not asked");
}

#[tokio::test]
async fn http_probe_fails_with_upstreams_messages() {
    let (port, _) = http_server(500).await;
    assert_eq!(
        http::probe(&target(port), Duration::from_secs(1)).await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
    );
    let port = closed_port().await;
    assert_eq!(
        http::probe(&target(port), Duration::from_secs(1)).await,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn tcp_probe_succeeds_when_the_port_accepts_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(
        tcp::probe("127.0.0.1", port, Duration::from_secs(1)).await,
        ProbeResult::Success
    );
    drop(listener);
    assert_eq!(
        tcp::probe("127.0.0.1", port, Duration::from_secs(1)).await,
        ProbeResult::Failure(format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn grpc_probe_asks_the_health_service_about_the_named_service() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("web", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("db", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let t = Duration::from_secs(2);
    assert_eq!(
        grpc::probe("127.0.0.1", port, "web", t).await,
        ProbeResult::Success
    );
    assert_eq!(
        grpc::probe("127.0.0.1", port, "db", t).await,
        ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    let closed = closed_port().await;
    assert!(matches!(
        grpc::probe("127.0.0.1", closed, "", t).await,
        ProbeResult::Failure(m) if m.starts_with("timeout: failed to connect service")
    ));
}

#[tokio::test]
async fn https_probe_does_not_verify_the_serving_certificate() {
    let cert = kube_apiserver::pki::self_signed_serving(
        "probe-target",
        &["127.0.0.1".parse().unwrap()],
        &[],
    )
    .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der()], cert.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(conn).await else {
                continue;
            };
            let mut buf = [0u8; 1024];
            let _ = tls.read(&mut buf).await;
            let _ = tls
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = tls.flush().await;
        }
    });
    let mut t = target(port);
    t.scheme = Scheme::Https;
    assert_eq!(
        http::probe(&t, Duration::from_secs(2)).await,
        ProbeResult::Success
    );
}

#[tokio::test]
async fn readiness_probe_redirected_elsewhere_is_ready_with_a_probe_warning_event() {
    let s = setup();
    let (port, _) = redirecting_server(0).await;
    let pod = pod_with(json!({"readinessProbe": {
        "httpGet": {"host": "127.0.0.1", "port": port, "path": "/elsewhere"},
        "periodSeconds": 1
    }}));
    s.worker.sync_pod(&pod).await.unwrap();
    let warned = |s: &Setup| {
        s.sink.seen().iter().any(|(kind, reason, message, _)| {
            kind == "Warning"
                && reason == "ProbeWarning"
                && message
                    == "Readiness probe warning: Probe terminated redirects, Response body: moved"
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !warned(&s) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(warned(&s), "{:?}", s.sink.seen());
    let st = status(s.worker.sync_pod(&pod).await.unwrap());
    assert!(app(&st).ready, "a warning is a success");
    assert!(
        s.sink
            .seen()
            .iter()
            .all(|(_, reason, _, _)| reason != "Unhealthy"),
        "{:?}",
        s.sink.seen()
    );
}

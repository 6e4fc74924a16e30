//! Probes on the node rig: a real kubelet in a node's network namespace,
//! its containerd and busybox containers. Liveness (exec) restarts a
//! container, readiness (httpGet, tcpSocket on a named port, grpc) flips
//! the pod's Ready condition. Root only: skipped with a message otherwise.

mod support;

use std::time::Duration;

use ferrokube_client::{Client, ListParams};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use serde_json::json;
use support::{wait_for, Rig, TestNode};

fn pod(node: &str, name: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [container]
        }
    }))
    .unwrap()
}

async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    client.get::<Pod>("default", name).await.ok()
}

fn ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn container(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn running(pod: &Pod) -> bool {
    container(pod).is_some_and(|c| c.state.is_some_and(|s| s.running.is_some()))
}

/// Waits until the pod satisfies `check`; panics with the kubelet's log.
async fn wait_pod(
    client: &Client,
    node: &TestNode,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let ok = wait_for(timeout, || async {
        get_pod(client, name).await.is_some_and(|p| check(&p))
    })
    .await;
    let pod = get_pod(client, name).await;
    assert!(
        ok,
        "pod {name}: {what}; last status: {:#?}\nkubelet log:\n{}",
        pod.and_then(|p| p.status),
        node.kubelet_log()
    );
    get_pod(client, name).await.unwrap()
}

/// Runs `script` in the pod's (first) container through the node's containerd.
fn exec_in(node: &TestNode, pod: &Pod, exec_id: &str, script: &str) {
    let id = container(pod)
        .and_then(|c| c.container_id)
        .expect("a running container has an id");
    let id = id.trim_start_matches("containerd://");
    let out = node.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        exec_id,
        id,
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "ctr tasks exec {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn events_of(client: &Client, pod: &str) -> Vec<Event> {
    client
        .list::<Event>("default", &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_unhealthy_containers_and_gate_readiness() {
    let Some(rig) = Rig::start("probes", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];

    // (1) Liveness exec: healthy for a few seconds, then restarted.
    let liveness = pod(
        &node.name,
        "liveness-exec",
        json!({
            "name": "liveness",
            "image": "busybox:1.36",
            "command": ["sh", "-c", "touch /tmp/healthy; sleep 4; rm -f /tmp/healthy; sleep 600"],
            "livenessProbe": {
                "exec": {"command": ["cat", "/tmp/healthy"]},
                "initialDelaySeconds": 1,
                "periodSeconds": 1,
                "failureThreshold": 2
            }
        }),
    );
    // (2) Readiness httpGet: ready only while /www/ready exists.
    let http = pod(
        &node.name,
        "readiness-http",
        json!({
            "name": "web",
            "image": "busybox:1.36",
            "command": ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": 8080,
                    "httpHeaders": [{"name": "X-Probe", "value": "yes"}]},
                "periodSeconds": 1
            }
        }),
    );
    // (3) Readiness tcpSocket on a named port: ready once something listens.
    let tcp = pod(
        &node.name,
        "readiness-tcp",
        json!({
            "name": "tcp",
            "image": "busybox:1.36",
            "command": ["sleep", "600"],
            "ports": [{"name": "probe-port", "containerPort": 9000}],
            "readinessProbe": {
                "tcpSocket": {"port": "probe-port"},
                "periodSeconds": 1
            }
        }),
    );
    for p in [&liveness, &http, &tcp] {
        client.create("default", p).await.unwrap();
    }

    // (2) Running but not ready: the file is not there yet (HTTP 404).
    let long = Duration::from_secs(90);
    let p = wait_pod(
        &client,
        node,
        "readiness-http",
        "running, not ready",
        long,
        |p| running(p) && ready(p).as_deref() == Some("False"),
    )
    .await;
    assert!(!container(&p).unwrap().ready);
    exec_in(node, &p, "ready-on", "echo ok > /www/ready");
    let p = wait_pod(
        &client,
        node,
        "readiness-http",
        "Ready after /ready appeared",
        long,
        |p| ready(p).as_deref() == Some("True"),
    )
    .await;
    assert!(container(&p).unwrap().ready);
    assert_eq!(container(&p).unwrap().restart_count, 0);
    let jsonpath = rig.kubectl(&[
        "get",
        "pod",
        "readiness-http",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(String::from_utf8_lossy(&jsonpath.stdout), "True");
    exec_in(node, &p, "ready-off", "rm /www/ready");
    wait_pod(
        &client,
        node,
        "readiness-http",
        "not Ready after /ready went",
        long,
        |p| ready(p).as_deref() == Some("False") && running(p),
    )
    .await;
    let unhealthy = wait_for(Duration::from_secs(10), || async {
        events_of(&client, "readiness-http").await.iter().any(|e| {
            e.reason.as_deref() == Some("Unhealthy")
                && e.message.as_deref()
                    == Some("Readiness probe failed: HTTP probe failed with statuscode: 404")
        })
    })
    .await;
    assert!(
        unhealthy,
        "events: {:#?}",
        events_of(&client, "readiness-http").await
    );

    // (3) Not ready until something listens on the named port.
    let p = wait_pod(
        &client,
        node,
        "readiness-tcp",
        "running, not ready",
        long,
        |p| running(p) && ready(p).as_deref() == Some("False"),
    )
    .await;
    exec_in(node, &p, "listen", "httpd -p 9000 -h /tmp");
    wait_pod(
        &client,
        node,
        "readiness-tcp",
        "Ready once port 9000 listens",
        long,
        |p| ready(p).as_deref() == Some("True") && container(p).is_some_and(|c| c.ready),
    )
    .await;

    // (1) The liveness probe fails once /tmp/healthy is gone: restarted.
    let p = wait_pod(
        &client,
        node,
        "liveness-exec",
        "restarted by its liveness probe",
        long,
        |p| container(p).is_some_and(|c| c.restart_count >= 1),
    )
    .await;
    let c = container(&p).unwrap();
    let last = c.last_state.clone().and_then(|s| s.terminated);
    // sh as PID 1 ignores SIGTERM: killed after the 1 s grace period.
    assert_eq!(
        last.map(|t| t.exit_code),
        Some(137),
        "last state is terminated by SIGKILL: {c:#?}"
    );
    let events = events_of(&client, "liveness-exec").await;
    let has = |reason: &str, message: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.starts_with(message))
        })
    };
    assert!(
        has(
            "Unhealthy",
            "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory"
        ),
        "events: {events:#?}"
    );
    assert!(
        has(
            "Killing",
            "Container liveness failed liveness probe, will be restarted"
        ),
        "events: {events:#?}"
    );
}

/// Serves gRPC health (tonic-health) on the node's address, inside the
/// node's network namespace, until the returned sender is dropped; gives
/// the port. No binary in the rig's busybox image serves gRPC health, so
/// the server runs on the node itself: what a hostNetwork pod's grpc probe
/// reaches, since such a pod's IP is the node's.
fn serve_grpc_health_on_node(
    node: &TestNode,
) -> (
    u16,
    tonic_health::server::HealthReporter,
    tokio::sync::oneshot::Sender<()>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let netns = format!("/var/run/netns/{}", node.netns);
    let ip = node.ip;
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).expect("the node's netns");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await;
        });
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the health server listens");
    (port, reporter, stop_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_readiness_probe_follows_the_health_service() {
    let Some(rig) = Rig::start("grpcpr", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];
    let (port, reporter, _stop) = serve_grpc_health_on_node(node);
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let mut p = pod(
        &node.name,
        "readiness-grpc",
        json!({
            "name": "app",
            "image": "busybox:1.36",
            "command": ["sleep", "600"],
            "readinessProbe": {
                "grpc": {"port": port},
                "periodSeconds": 1,
                "failureThreshold": 1
            }
        }),
    );
    p.spec.as_mut().unwrap().host_network = Some(true);
    client.create("default", &p).await.unwrap();
    wait_pod(
        &client,
        node,
        "readiness-grpc",
        "Ready through the grpc probe",
        Duration::from_secs(60),
        |p| running(p) && ready(p).as_deref() == Some("True"),
    )
    .await;

    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    wait_pod(
        &client,
        node,
        "readiness-grpc",
        "not Ready once the health service says NOT_SERVING",
        Duration::from_secs(30),
        |p| running(p) && ready(p).as_deref() == Some("False"),
    )
    .await;
    let unhealthy = wait_for(Duration::from_secs(15), || async {
        events_of(&client, "readiness-grpc").await.iter().any(|e| {
            e.reason.as_deref() == Some("Unhealthy")
                && e.message.as_deref()
                    == Some("Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")")
        })
    })
    .await;
    assert!(
        unhealthy,
        "events: {:#?}",
        events_of(&client, "readiness-grpc").await
    );
}

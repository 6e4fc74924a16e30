//! PodWorker against FakeRuntime.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::cri::FakeRuntime;
use crate::pod_worker::status_of as status;

pub(crate) fn worker(rt: &FakeRuntime, initial_backoff: Duration) -> PodWorker<FakeRuntime> {
    PodWorker::new(
        Arc::new(rt.clone()),
        WorkerSettings {
            node_name: "n1".into(),
            host_ip: "10.0.0.1".into(),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            pod_logs_dir: std::env::temp_dir().join("ferrokube-kubelet-unit-logs"),
        },
        CrashLoopBackOff::new(initial_backoff, Duration::from_secs(300)),
    )
}

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn web() -> Pod {
    pod(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "spec": {
            "nodeName": "n1",
            "initContainers": [
                {"name": "init-a", "image": "busybox:1.36"},
                {"name": "init-b", "image": "busybox:1.36"}
            ],
            "containers": [
                {"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]},
                {"name": "side", "image": "busybox:1.36"}
            ]
        }
    }))
}

fn creates(rt: &FakeRuntime) -> Vec<String> {
    rt.calls()
        .into_iter()
        .filter(|c| c.starts_with("RunPodSandbox") || c.starts_with("CreateContainer"))
        .collect()
}

#[tokio::test]
async fn pod_worker_creates_sandbox_then_init_containers_in_order_then_containers() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt, Duration::from_secs(10));
    let p = web();
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(
        creates(&rt),
        ["RunPodSandbox web", "CreateContainer init-a"]
    );

    // init-a still running: nothing new.
    w.sync_pod(&p).await.unwrap();
    assert_eq!(creates(&rt).len(), 2);

    rt.exit_container(&rt.containers_named("init-a")[0], 0);

    w.pleg().relist().await.unwrap();
    w.sync_pod(&p).await.unwrap();
    assert_eq!(creates(&rt).last().unwrap(), "CreateContainer init-b");
    rt.exit_container(&rt.containers_named("init-b")[0], 0);
    w.pleg().relist().await.unwrap();
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(
        creates(&rt),
        [
            "RunPodSandbox web",
            "CreateContainer init-a",
            "CreateContainer init-b",
            "CreateContainer app",
            "CreateContainer side"
        ]
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(
        s.pod_ip.as_deref().map(|ip| ip.starts_with("10.244.0.")),
        Some(true)
    );
    let ready = s
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
}

#[tokio::test]
async fn sandbox_creation_failure_is_retried_on_the_next_sync() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    rt.fail_once("RunPodSandbox");
    let w = worker(&rt, Duration::from_secs(10));
    let p = web();
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(creates(&rt), ["RunPodSandbox web"]);
    w.sync_pod(&p).await.unwrap();
    assert_eq!(
        creates(&rt),
        [
            "RunPodSandbox web",
            "RunPodSandbox web",
            "CreateContainer init-a"
        ]
    );
}

fn crasher(policy: &str) -> Pod {
    pod(serde_json::json!({
        "metadata": {"name": "crash", "namespace": "default", "uid": "uid-crash"},
        "spec": {"restartPolicy": policy, "containers": [{"name": "app", "image": "busybox:1.36"}]}
    }))
}

#[tokio::test]
async fn dead_container_restarts_at_once_then_waits_in_crash_loop_back_off() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt, Duration::from_secs(60));
    let p = crasher("Always");
    w.sync_pod(&p).await.unwrap();
    rt.exit_container(&rt.containers_named("app")[0], 1);
    w.pleg().relist().await.unwrap();
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(
        rt.containers_named("app").len(),
        2,
        "first restart is immediate"
    );
    assert_eq!(s.container_statuses.unwrap()[0].restart_count, 1);

    rt.exit_container(&rt.containers_named("app")[1], 1);

    w.pleg().relist().await.unwrap();
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(rt.containers_named("app").len(), 2, "second restart waits");
    let c = &s.container_statuses.unwrap()[0];
    let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        c.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert_eq!(c.restart_count, 1);
}

#[tokio::test]
async fn never_policy_pod_that_exits_zero_succeeds_and_is_not_restarted() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt, Duration::from_secs(10));
    let mut p = crasher("Never");
    w.sync_pod(&p).await.unwrap();
    rt.exit_container(&rt.containers_named("app")[0], 0);
    w.pleg().relist().await.unwrap();
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    p.status = Some(s);
    assert!(matches!(
        w.sync_pod(&p).await.unwrap(),
        SyncOutcome::Finished
    ));
    assert_eq!(rt.containers_named("app").len(), 1);
}

#[tokio::test]
async fn missing_image_is_reported_without_a_registry() {
    let rt = FakeRuntime::with_images(&[]);
    let w = worker(&rt, Duration::from_secs(10));
    let s = status(w.sync_pod(&crasher("Always")).await.unwrap());
    let c = &s.container_statuses.unwrap()[0];
    let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ErrImagePull"));
    assert!(rt.calls().contains(&"PullImage busybox:1.36".to_string()));
}

#[tokio::test]
async fn deleted_pod_is_stopped_with_its_grace_period_and_removed() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt, Duration::from_secs(10));
    let mut p = crasher("Always");
    w.sync_pod(&p).await.unwrap();
    p.metadata.deletion_timestamp = Some(crate::status::now_time());
    p.metadata.deletion_grace_period_seconds = Some(7);
    assert!(matches!(w.sync_pod(&p).await.unwrap(), SyncOutcome::Killed));
    let calls = rt.calls();
    let stop = calls
        .iter()
        .position(|c| c.starts_with("StopContainer") && c.ends_with(" 7"));
    let remove = calls.iter().position(|c| c.starts_with("RemovePodSandbox"));
    assert!(
        stop.is_some() && remove.is_some() && stop < remove,
        "{calls:?}"
    );
    assert!(rt.containers_named("app").is_empty());
}

#[tokio::test]
async fn restarted_worker_adopts_running_containers() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let p = crasher("Always");
    worker(&rt, Duration::from_secs(10))
        .sync_pod(&p)
        .await
        .unwrap();
    let before = rt.containers_named("app");
    let s = status(
        worker(&rt, Duration::from_secs(10))
            .sync_pod(&p)
            .await
            .unwrap(),
    );
    assert_eq!(rt.containers_named("app"), before);
    assert_eq!(creates(&rt).len(), 2);
    assert_eq!(s.container_statuses.unwrap()[0].restart_count, 0);
}

#[test]
fn cluster_first_dns_uses_cluster_dns_and_search_path() {
    let rt = FakeRuntime::default();
    let w = worker(&rt, Duration::from_secs(10));
    let dns = w.dns_config(&crasher("Always")).unwrap();
    assert_eq!(dns.servers, ["10.96.0.10"]);
    assert_eq!(dns.searches[0], "default.svc.cluster.local");
    let mut host = crasher("Always");
    host.spec.as_mut().unwrap().host_network = Some(true);
    assert!(w.dns_config(&host).is_none());
}

#[test]
fn limits_become_cgroup_settings() {
    let c: k8s_openapi::api::core::v1::Container = serde_json::from_value(serde_json::json!({
        "name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}
    }))
    .unwrap();
    let r = container_resources(&c);
    assert_eq!(
        (r.cpu_quota, r.cpu_period, r.cpu_shares),
        (50_000, 100_000, 512)
    );
    assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
}

#[test]
fn sandbox_goes_to_its_qos_cgroup_with_the_pods_security_context() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let p = pod(serde_json::json!({
        "metadata": {"name": "lim", "namespace": "default", "uid": "uid-lim"},
        "spec": {
            "securityContext": {"runAsUser": 1000, "sysctls": [{"name": "net.ipv4.ping_group_range", "value": "0 10"}]},
            "containers": [{"name": "a", "image": "busybox:1.36",
                "securityContext": {"readOnlyRootFilesystem": true},
                "resources": {"limits": {"memory": "20Mi"}}}]
        }
    }));
    let linux = worker(&rt, Duration::from_secs(1))
        .sandbox_config(&p, 0)
        .linux
        .unwrap();
    assert_eq!(linux.cgroup_parent, "/kubepods/burstable/poduid-lim");
    assert_eq!(
        linux.security_context.unwrap().run_as_user.map(|u| u.value),
        Some(1000)
    );
    assert_eq!(linux.sysctls["net.ipv4.ping_group_range"], "0 10");
    let systemd = worker(&rt, Duration::from_secs(1))
        .with_cgroup_driver(crate::cgroups::CgroupDriver::Systemd)
        .sandbox_config(&web(), 0);
    assert_eq!(
        systemd.linux.unwrap().cgroup_parent,
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poduid_web.slice"
    );
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let sc = worker(&rt, Duration::from_secs(1))
        .container_config(&p, &c, 0)
        .linux
        .unwrap()
        .security_context
        .unwrap();
    assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
    assert!(sc.readonly_rootfs);
}

#[tokio::test]
async fn run_as_non_root_container_of_a_root_image_is_not_created() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt, Duration::from_secs(1));
    let p = pod(serde_json::json!({
        "metadata": {"name": "nr", "namespace": "default", "uid": "uid-nr"},
        "spec": {"securityContext": {"runAsNonRoot": true},
                 "containers": [{"name": "a", "image": "busybox:1.36"}]}
    }));
    let s = status(w.sync_pod(&p).await.unwrap());
    let waiting = s.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        waiting.reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert!(waiting
        .message
        .unwrap()
        .contains("container has runAsNonRoot and image will run as root"));
    assert!(rt.calls().iter().all(|c| !c.starts_with("CreateContainer")));
}

#[tokio::test]
async fn evicted_pod_is_stopped_reported_failed_and_never_restarted() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt, Duration::from_millis(1));
    let mut p = crasher("Always");
    w.sync_pod(&p).await.unwrap();
    assert!(!w.is_evicted("uid-crash"));
    let message = "The node was low on resource: memory. ";
    w.evict(
        "uid-crash",
        Eviction {
            grace_seconds: 1,
            message: message.into(),
        },
    );
    assert!(w.is_evicted("uid-crash"));
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("Evicted"));
    assert_eq!(s.message.as_deref(), Some(message));
    let conditions = s.conditions.clone().unwrap();
    let disruption = conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(
        (disruption.status.as_str(), disruption.reason.as_deref()),
        ("True", Some("TerminationByKubelet"))
    );
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert!(app.state.as_ref().unwrap().terminated.is_some(), "{app:?}");
    let calls = rt.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("StopContainer") && c.ends_with(" 1")),
        "{calls:?}"
    );

    // Synced again before its status is written: still not restarted.
    w.pleg().relist().await.unwrap();
    w.sync_pod(&p).await.unwrap();
    assert_eq!(creates(&rt).len(), 2, "{:?}", rt.calls());

    // Once the API has it Failed, its content is removed.
    p.status = Some(s);
    assert!(matches!(
        w.sync_pod(&p).await.unwrap(),
        SyncOutcome::Finished
    ));
    assert!(rt.calls().iter().any(|c| c.starts_with("RemovePodSandbox")));
    assert!(rt.containers_named("app").is_empty());
    assert_eq!(creates(&rt).len(), 2);
}

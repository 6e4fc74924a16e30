//! The relist and the pod syncs that read from it, against FakeRuntime.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::*;
use crate::cri::FakeRuntime;
use crate::pod_worker::{status_of as status, PodWorker};

fn worker(rt: &FakeRuntime) -> PodWorker<FakeRuntime> {
    crate::pod_worker::tests::worker(rt, Duration::from_secs(10))
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}
    }))
    .unwrap()
}

fn running(s: &PodStatus) -> bool {
    s.container_statuses
        .iter()
        .flatten()
        .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
}

/// Every read-only call the fake counts.
fn reads(rt: &FakeRuntime) -> [usize; 6] {
    [
        "ListPodSandbox",
        "ListContainers",
        "ListPodSandbox filtered",
        "ListContainers filtered",
        "ContainerStatus",
        "PodSandboxStatus",
    ]
    .map(|op| rt.reads(op))
}

#[tokio::test]
async fn relist_notices_a_container_that_died_and_its_pods_sync_restarts_it() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt);
    let p = pod("web");
    w.sync_pod(&p).await.unwrap();
    // The sync cached what it started: nothing changed since.
    assert!(w.pleg().relist().await.unwrap().changed.is_empty());

    rt.exit_container(&rt.containers_named("app")[0], 1);
    let relist = w.pleg().relist().await.unwrap();
    assert_eq!(relist.changed, HashSet::from(["uid-web".to_string()]));
    let s = status(w.sync_pod(&p).await.unwrap());
    assert_eq!(rt.containers_named("app").len(), 2, "restarted");
    let c = &s.container_statuses.unwrap()[0];
    assert_eq!(c.restart_count, 1);
    assert!(c.state.as_ref().unwrap().running.is_some());
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
}

#[tokio::test]
async fn one_relist_lists_the_runtime_once_for_all_pods_and_unchanged_pods_are_not_requeried() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt);
    let pods: Vec<Pod> = (0..5).map(|i| pod(&format!("p{i}"))).collect();
    for p in &pods {
        assert!(running(&status(w.sync_pod(p).await.unwrap())));
    }
    let before = reads(&rt);
    let relist = w.pleg().relist().await.unwrap();
    assert!(relist.changed.is_empty());
    assert_eq!(relist.sandboxes.len(), 5);
    // One list each for all five pods, and no container asked about.
    let after = reads(&rt);
    assert_eq!(after[0] - before[0], 1, "ListPodSandbox");
    assert_eq!(after[1] - before[1], 1, "ListContainers");
    assert_eq!(after[2..], before[2..], "no per-pod call");

    // Syncing pods with nothing to do asks the runtime nothing.
    let quiet = reads(&rt);
    for p in &pods {
        assert!(running(&status(w.sync_pod(p).await.unwrap())));
    }
    assert_eq!(reads(&rt), quiet);

    // One pod's container dies: only its status is asked for.
    rt.exit_container(&rt.containers_named("app")[3], 0);
    let before = reads(&rt);
    let relist = w.pleg().relist().await.unwrap();
    assert_eq!(relist.changed, HashSet::from(["uid-p3".to_string()]));
    assert_eq!(reads(&rt)[4] - before[4], 1, "ContainerStatus");
}

#[tokio::test]
async fn status_reported_after_starting_containers_is_fresh_not_the_cached_relist() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt);
    // The relist saw an empty runtime; the sync then starts the pod.
    w.pleg().relist().await.unwrap();
    let s = status(w.sync_pod(&pod("web")).await.unwrap());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert!(running(&s));
    assert!(s.pod_ip.is_some());
    // The sandbox's IP was asked once, for the environment and the status.
    assert_eq!(rt.reads("PodSandboxStatus"), 1);
    // What it reported is what is cached, so the next relist is quiet.
    assert!(w.pleg().relist().await.unwrap().changed.is_empty());
}

#[tokio::test]
async fn a_relist_that_began_before_a_sync_does_not_put_the_older_state_back() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt);
    let p = pod("web");
    // A relist lists the empty runtime, then a sync starts the pod...
    let old = w.pleg().list_all().await.unwrap();
    w.sync_pod(&p).await.unwrap();
    // ...and only then does the relist compare and cache.
    let relist = w.pleg().apply(old).await;
    assert!(relist.changed.is_empty(), "{:?}", relist.changed);
    let state = w.pleg().pod_state("uid-web").await.unwrap();
    assert_eq!(state.sandboxes.len(), 1);
    assert_eq!(state.containers.len(), 1);
    // So the next sync does not start the pod a second time.
    w.sync_pod(&p).await.unwrap();
    assert_eq!(rt.containers_named("app").len(), 1);
}

#[tokio::test]
async fn relist_reports_a_pod_whose_sandbox_went_away() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let w = worker(&rt);
    w.sync_pod(&pod("web")).await.unwrap();
    w.pleg().relist().await.unwrap();
    let sandbox = w.pleg().pod_state("uid-web").await.unwrap().sandboxes[0]
        .id
        .clone();
    // Removed behind the kubelet's back (e.g. with crictl).
    rt.remove_pod_sandbox(&sandbox).await.unwrap();
    let relist = w.pleg().relist().await.unwrap();
    assert_eq!(relist.changed, HashSet::from(["uid-web".to_string()]));
    assert!(w.pleg().pod_state("uid-web").await.unwrap().is_empty());
}

#[tokio::test]
async fn before_the_first_relist_a_sync_lists_its_own_pod() {
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let p = pod("web");
    worker(&rt).sync_pod(&p).await.unwrap();
    // A restarted kubelet: an empty cache and no relist yet.
    let w = worker(&rt);
    let s = status(w.sync_pod(&p).await.unwrap());
    assert!(running(&s));
    assert_eq!(
        rt.containers_named("app").len(),
        1,
        "adopted, not restarted"
    );
    assert!(rt.reads("ListPodSandbox filtered") > 0);
}

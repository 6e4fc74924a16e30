//! Static pods and what a container's spec asks of the runtime, on a node of
//! the rig (real kubelet binary, containerd + runc, kubectl-visible API):
//! a manifest file runs and gets a mirror pod that the API cannot change and
//! that comes back when deleted, without the container restarting; editing
//! the file replaces the pod, removing it stops the pod. A memory limit
//! OOM-kills; runAsUser, readOnlyRootFilesystem and runAsNonRoot reach the
//! container. Root only: skipped with a message otherwise.

mod support;

use std::time::Duration;

use ferrokube_client::{Client, DeleteParams};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use support::{wait_for, Rig};

const TIMEOUT: Duration = Duration::from_secs(60);
const MIRROR: &str = "kubernetes.io/config.mirror";

fn manifest(message: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [sh, -c, 'echo {message}; exec sleep 3600']\n"
    )
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.annotations.as_ref()?.get(key).cloned()
}

fn main_status(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.phase.clone()
}

/// The running container's id, once the pod reports one.
fn running_container(pod: &Pod) -> Option<String> {
    let s = main_status(pod)?;
    s.state.as_ref()?.running.as_ref()?;
    s.container_id
}

async fn get(client: &Client, name: &str) -> Option<Pod> {
    client.get::<Pod>("default", name).await.ok()
}

/// The ids of the containers the node's containerd has.
fn containerd_containers(node: &support::TestNode) -> String {
    String::from_utf8_lossy(&node.ctr(&["containers", "ls", "-q"]).stdout).into_owned()
}

fn strip_runtime(id: &str) -> &str {
    id.trim_start_matches("containerd://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_runs_from_its_file_and_its_mirror_pod_follows_it() {
    let Some(mut rig) = Rig::start("static", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node_name = rig.nodes[0].name.clone();
    let mirror_name = format!("web-{node_name}");
    let file = rig.nodes[0].static_pod_dir().join("web.yaml");
    std::fs::write(&file, manifest("first")).unwrap();

    // The file runs; its mirror pod appears, Running, annotated and owned
    // by the Node.
    let running = wait_for(TIMEOUT, || async {
        get(&client, &mirror_name)
            .await
            .is_some_and(|p| running_container(&p).is_some())
    })
    .await;
    let mirror = get(&client, &mirror_name).await;
    assert!(
        running,
        "no running mirror pod: {mirror:?}\n{}",
        rig.nodes[0].kubelet_log()
    );
    let mirror = mirror.unwrap();
    assert_eq!(phase(&mirror).as_deref(), Some("Running"));
    let hash = annotation(&mirror, "kubernetes.io/config.hash").unwrap();
    assert_eq!(annotation(&mirror, MIRROR), Some(hash.clone()));
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.source").as_deref(),
        Some("file")
    );
    let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", node_name.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        mirror.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node_name.as_str())
    );
    let container = running_container(&mirror).unwrap();

    // The API cannot change the mirror annotation.
    let mut changed = mirror.clone();
    changed
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(MIRROR.into(), "something-else".into());
    let err = client.update(&changed).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("may not remove or update mirror pod annotation"),
        "{err}"
    );

    // Deleting the mirror pod does not stop the static pod: a new mirror
    // comes, reporting the same container.
    let old_uid = mirror.metadata.uid.clone().unwrap();
    client
        .delete::<Pod>("default", &mirror_name, &DeleteParams::default())
        .await
        .unwrap();
    let recreated = wait_for(TIMEOUT, || async {
        get(&client, &mirror_name).await.is_some_and(|p| {
            p.metadata.uid.as_deref() != Some(old_uid.as_str())
                && p.metadata.deletion_timestamp.is_none()
                && running_container(&p).is_some()
        })
    })
    .await;
    let again = get(&client, &mirror_name).await;
    assert!(
        recreated,
        "mirror pod not recreated: {again:?}\n{}",
        rig.nodes[0].kubelet_log()
    );
    let again = again.unwrap();
    assert_eq!(running_container(&again), Some(container.clone()));
    assert_eq!(main_status(&again).unwrap().restart_count, 0);

    // A restarted kubelet adopts the static pod's container.
    rig.nodes[0].stop_kubelet().await;
    rig.nodes[0].start_kubelet().await;
    let node = &rig.nodes[0];
    assert!(
        wait_for(TIMEOUT, || async {
            node.kubelet_log()
                .matches("connected to the apiserver")
                .count()
                >= 2
        })
        .await,
        "{}",
        node.kubelet_log()
    );
    let adopted = wait_for(Duration::from_secs(10), || async {
        get(&client, &mirror_name)
            .await
            .is_some_and(|p| running_container(&p) == Some(container.clone()))
    })
    .await;
    assert!(adopted, "{}", node.kubelet_log());
    assert!(containerd_containers(node).contains(strip_runtime(&container)));

    // Editing the file replaces the pod: a new hash, a new container, the
    // old one gone.
    std::fs::write(&file, manifest("second")).unwrap();
    let replaced = wait_for(TIMEOUT, || async {
        get(&client, &mirror_name).await.is_some_and(|p| {
            annotation(&p, MIRROR).is_some_and(|h| h != hash)
                && running_container(&p).is_some_and(|c| c != container)
        })
    })
    .await;
    let edited = get(&client, &mirror_name).await;
    assert!(
        replaced,
        "mirror pod not replaced: {edited:?}\n{}",
        node.kubelet_log()
    );
    let new_container = running_container(&edited.unwrap()).unwrap();
    assert!(
        wait_for(TIMEOUT, || async {
            !containerd_containers(node).contains(strip_runtime(&container))
        })
        .await,
        "the old container stays: {}",
        containerd_containers(node)
    );

    // Removing the file stops the pod and deletes its mirror.
    std::fs::remove_file(&file).unwrap();
    let stopped = wait_for(TIMEOUT, || async {
        get(&client, &mirror_name).await.is_none()
            && !containerd_containers(node).contains(strip_runtime(&new_container))
    })
    .await;
    assert!(
        stopped,
        "static pod still there: {:?}\n{}",
        get(&client, &mirror_name).await,
        node.kubelet_log()
    );
}

fn api_pod(node: &str, name: &str, container: serde_json::Value, pod_sc: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": pod_sc,
            "containers": [container]
        }
    }))
    .unwrap()
}

/// What pod `pod`'s `main` container wrote.
fn container_log(node: &support::TestNode, pod: &Pod) -> String {
    let meta = &pod.metadata;
    let (name, uid) = (meta.name.as_deref().unwrap(), meta.uid.as_deref().unwrap());
    node.container_logs(&format!("default_{name}_{uid}"), "main")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_and_security_context_reach_the_container() {
    let Some(rig) = Rig::start("secctx", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];
    let n = node.name.as_str();
    let pods = [
        api_pod(
            n,
            "oom",
            serde_json::json!({"name": "main", "image": "busybox:1.36", "command": ["tail", "/dev/zero"],
                "resources": {"limits": {"memory": "20Mi"}}}),
            serde_json::json!({}),
        ),
        api_pod(
            n,
            "uid",
            serde_json::json!({"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo uid=$(id -u) gid=$(id -g)"]}),
            serde_json::json!({"runAsUser": 1000, "runAsGroup": 3000}),
        ),
        api_pod(
            n,
            "ro",
            serde_json::json!({"name": "main", "image": "busybox:1.36",
                "command": ["sh", "-c", "if touch /probe; then echo rootfs=writable; else echo rootfs=read-only; fi"],
                "securityContext": {"readOnlyRootFilesystem": true}}),
            serde_json::json!({}),
        ),
        api_pod(
            n,
            "nonroot",
            serde_json::json!({"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}),
            serde_json::json!({"runAsNonRoot": true}),
        ),
    ];
    for p in &pods {
        client.create("default", p).await.unwrap();
    }
    let terminated = |name: &'static str| {
        let client = client.clone();
        async move {
            get(&client, name)
                .await
                .and_then(|p| main_status(&p)?.state?.terminated)
        }
    };

    // tail /dev/zero grows until the 20Mi limit: the kernel kills it.
    assert!(
        wait_for(TIMEOUT, || async { terminated("oom").await.is_some() }).await,
        "oom pod did not end: {:?}\n{}",
        get(&client, "oom").await.map(|p| p.status),
        node.kubelet_log()
    );
    let oom = terminated("oom").await.unwrap();
    assert_eq!(
        (oom.reason.as_deref(), oom.exit_code),
        (Some("OOMKilled"), 137),
        "{oom:?}"
    );
    // A memory limit without a cpu one: Burstable, in that QoS class's cgroup.
    let oom_pod = get(&client, "oom").await.unwrap();
    assert_eq!(
        oom_pod.status.as_ref().unwrap().qos_class.as_deref(),
        Some("Burstable")
    );
    let id = main_status(&oom_pod).unwrap().container_id.unwrap();
    let info = node.ctr(&["containers", "info", strip_runtime(&id)]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let cgroup = info["Spec"]["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or_default();
    let want = format!(
        "/kubepods/burstable/pod{}/",
        oom_pod.metadata.uid.as_deref().unwrap()
    );
    assert!(
        cgroup.starts_with(&want),
        "cgroupsPath {cgroup:?}, want under {want}"
    );

    // runAsUser/runAsGroup: the process's ids.
    assert!(wait_for(TIMEOUT, || async { terminated("uid").await.is_some() }).await);
    let uid_pod = get(&client, "uid").await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            container_log(node, &uid_pod).contains("uid=1000 gid=3000")
        })
        .await,
        "log: {:?}",
        container_log(node, &uid_pod)
    );

    // readOnlyRootFilesystem: the write fails.
    assert!(wait_for(TIMEOUT, || async { terminated("ro").await.is_some() }).await);
    let ro_pod = get(&client, "ro").await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            container_log(node, &ro_pod).contains("rootfs=read-only")
        })
        .await,
        "log: {:?}",
        container_log(node, &ro_pod)
    );

    // runAsNonRoot with an image that runs as root: never created.
    let refused = wait_for(TIMEOUT, || async {
        get(&client, "nonroot").await.is_some_and(|p| {
            main_status(&p)
                .and_then(|s| s.state?.waiting?.reason)
                .as_deref()
                == Some("CreateContainerConfigError")
        })
    })
    .await;
    let nonroot = get(&client, "nonroot").await.and_then(|p| main_status(&p));
    assert!(refused, "{nonroot:?}");
    assert!(nonroot
        .unwrap()
        .state
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap()
        .contains("container has runAsNonRoot and image will run as root"));

    // Deleted pods leave no cgroups behind.
    for p in &pods {
        let name = p.metadata.name.as_deref().unwrap();
        client
            .delete::<Pod>("default", name, &DeleteParams::default())
            .await
            .unwrap();
    }
    let cgroup_dir = std::path::Path::new("/sys/fs/cgroup/memory").join(want.trim_matches('/'));
    let cleaned = wait_for(TIMEOUT, || async {
        let mut left = 0;
        for p in &pods {
            left += usize::from(
                get(&client, p.metadata.name.as_deref().unwrap())
                    .await
                    .is_some(),
            );
        }
        left == 0 && !cgroup_dir.exists()
    })
    .await;
    assert!(
        cleaned,
        "pods or {} still there\n{}",
        cgroup_dir.display(),
        node.kubelet_log()
    );
}

/// What static pod `web`'s container wrote, every attempt.
fn web_log(node: &support::TestNode) -> String {
    node.container_logs("default_web-", "main")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_runs_without_an_apiserver_and_is_mirrored_once_one_answers() {
    let Some(mut rig) = Rig::start("nosrv", 1).await else {
        return;
    };
    let client = rig.client().await;
    rig.nodes[0].stop_kubelet().await;
    let node = &rig.nodes[0];

    // A kubelet whose apiserver never answers (its kubeconfig is missing),
    // on the node's containerd and manifest directory.
    let config_file = node.dir().join("offline-kubelet.yaml");
    std::fs::write(
        &config_file,
        format!(
            "kind: KubeletConfiguration\nstaticPodPath: {}\npodLogsDir: {}\nfileCheckFrequency: 1s\n",
            node.static_pod_dir().display(),
            node.pod_logs_dir().display()
        ),
    )
    .unwrap();
    let flags = <kubelet::Flags as clap::Parser>::try_parse_from([
        "kubelet".to_string(),
        format!("--config={}", config_file.display()),
        format!("--kubeconfig={}", node.dir().join("missing.conf").display()),
        format!("--hostname-override={}", node.name),
        format!("--node-ip={}", node.ip),
        format!(
            "--container-runtime-endpoint=unix://{}",
            node.containerd_dir().join("containerd.sock").display()
        ),
    ])
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let offline = tokio::spawn(kubelet::run(flags.into_config().unwrap(), async {
        let _ = stopped.await;
    }));
    std::fs::write(node.static_pod_dir().join("web.yaml"), manifest("offline")).unwrap();
    let ran = wait_for(TIMEOUT, || async { web_log(node).contains("offline") }).await;
    assert!(ran, "static pod did not run without an apiserver");
    let _ = stop.send(());
    offline.await.unwrap().unwrap();

    // The real kubelet (with its apiserver) adopts the pod and mirrors it.
    let mirror_name = format!("web-{}", node.name);
    rig.nodes[0].start_kubelet().await;
    let node = &rig.nodes[0];
    let mirrored = wait_for(TIMEOUT, || async {
        get(&client, &mirror_name).await.is_some_and(|p| {
            annotation(&p, MIRROR).is_some()
                && running_container(&p).is_some()
                && main_status(&p).is_some_and(|s| s.restart_count == 0)
        })
    })
    .await;
    assert!(
        mirrored,
        "{:?}\n{}",
        get(&client, &mirror_name).await,
        node.kubelet_log()
    );
    assert_eq!(
        web_log(node).matches("offline").count(),
        1,
        "the container ran once: adopted, not restarted"
    );
}

//! The kubelet binary on a node of the rig (its own network namespace,
//! containerd + runc, cni-bridge) against a real control plane: the Node
//! registers and heartbeats, pods run with an IP from the node's podCIDR,
//! restart under backoff, finish, are adopted by a restarted kubelet and
//! stop on deletion. Root only: skipped with a message otherwise.

mod support;

use std::time::Duration;

use ferrokube_client::{Client, DeleteParams};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use support::{wait_for, Rig};

fn pod(node: &str, name: &str, policy: &str, command: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 3,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": command}]
        }
    }))
    .unwrap()
}

async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    client.get::<Pod>("default", name).await.ok()
}

fn condition(pod: &Pod, t: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

fn main_status(pod: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_registers_runs_pods_and_adopts_them_after_restart() {
    let Some(mut rig) = Rig::start("node", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];
    let (node_name, pod_cidr) = (node.name.clone(), node.pod_cidr.clone());
    let node_name = node_name.as_str();

    // The Node registered (the rig waited for Ready); its Lease renews.
    let n: Node = client.get("", node_name).await.unwrap();
    let labels = n.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], node_name);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    let status = n.status.unwrap();
    // maxPods left at upstream's default.
    assert_eq!(status.capacity.unwrap()["pods"].0, "110");
    assert!(status
        .node_info
        .unwrap()
        .container_runtime_version
        .starts_with("containerd://"));
    let lease_time = || async {
        client
            .get::<Lease>("kube-node-lease", node_name)
            .await
            .ok()
            .and_then(|l| l.spec?.renew_time)
    };
    assert!(
        wait_for(Duration::from_secs(15), || async {
            lease_time().await.is_some()
        })
        .await
    );
    let first = lease_time().await.unwrap();
    assert!(
        wait_for(Duration::from_secs(25), || async {
            lease_time().await.is_some_and(|t| t != first)
        })
        .await,
        "lease was not renewed"
    );

    // A sleeping busybox pod runs with an IP from the podCIDR and is Ready.
    client
        .create(
            "default",
            &pod(node_name, "sleeper", "Always", &["sleep", "3600"]),
        )
        .await
        .unwrap();
    let running = wait_for(Duration::from_secs(60), || async {
        get_pod(&client, "sleeper").await.is_some_and(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && condition(&p, "Ready").as_deref() == Some("True")
        })
    })
    .await;
    let p = get_pod(&client, "sleeper").await.unwrap();
    assert!(
        running,
        "sleeper did not become Running and Ready: {:?}",
        p.status
    );
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(
        kubelet::cni::contains(&pod_cidr, &ip),
        "pod IP {ip} not in {pod_cidr}"
    );
    let cs = main_status(&p).unwrap();
    assert!(
        cs.image_id.starts_with("sha256:") || cs.image_id.contains("@sha256:"),
        "{cs:?}"
    );
    let sleeper_id = cs.container_id.clone().unwrap();

    // A container that exits 1 under Always is restarted and backs off.
    client
        .create(
            "default",
            &pod(node_name, "crasher", "Always", &["sh", "-c", "exit 1"]),
        )
        .await
        .unwrap();
    let looping = wait_for(Duration::from_secs(60), || async {
        get_pod(&client, "crasher")
            .await
            .and_then(|p| main_status(&p))
            .is_some_and(|c| {
                c.restart_count >= 2
                    && c.state
                        .and_then(|s| s.waiting)
                        .and_then(|w| w.reason)
                        .as_deref()
                        == Some("CrashLoopBackOff")
            })
    })
    .await;
    assert!(
        looping,
        "crasher: {:?}",
        get_pod(&client, "crasher").await.map(|p| p.status)
    );

    // restartPolicy Never, exit 0: Succeeded.
    client
        .create(
            "default",
            &pod(node_name, "once", "Never", &["sh", "-c", "echo done"]),
        )
        .await
        .unwrap();
    let succeeded = wait_for(Duration::from_secs(60), || async {
        get_pod(&client, "once")
            .await
            .and_then(|p| p.status?.phase)
            .as_deref()
            == Some("Succeeded")
    })
    .await;
    assert!(
        succeeded,
        "once: {:?}",
        get_pod(&client, "once").await.map(|p| p.status)
    );

    // A restarted kubelet adopts the running container. That it has synced
    // pods shows in the crasher: only a running kubelet restarts it.
    let restarts = |p: Option<Pod>| {
        p.and_then(|p| main_status(&p))
            .map_or(0, |c| c.restart_count)
    };
    rig.nodes[0].stop_kubelet().await;
    let before = restarts(get_pod(&client, "crasher").await);
    rig.nodes[0].start_kubelet().await;
    let node = &rig.nodes[0];
    let synced = wait_for(Duration::from_secs(330), || async {
        restarts(get_pod(&client, "crasher").await) > before
    })
    .await;
    assert!(synced, "the restarted kubelet never synced the crasher");
    let p = get_pod(&client, "sleeper").await.unwrap();
    let cs = main_status(&p).unwrap();
    assert_eq!(
        cs.container_id.as_deref(),
        Some(sleeper_id.as_str()),
        "container was replaced"
    );
    assert_eq!(cs.restart_count, 0);
    assert!(cs.state.unwrap().running.is_some());

    // Deleting a pod stops its containers and the object goes away.
    client
        .delete::<Pod>("default", "sleeper", &DeleteParams::default())
        .await
        .unwrap();
    let gone = wait_for(Duration::from_secs(30), || async {
        get_pod(&client, "sleeper").await.is_none()
    })
    .await;
    assert!(gone, "sleeper was not deleted");
    let ctr = node.ctr(&["tasks", "ls"]);
    let tasks = String::from_utf8_lossy(&ctr.stdout);
    let short = sleeper_id.trim_start_matches("containerd://");
    assert!(
        !tasks.contains(short),
        "sleeper's task still listed: {tasks}"
    );
}

/// Eviction thresholds drive the node's pressure conditions: a
/// `memory.available` threshold above what any machine has puts the node
/// under MemoryPressure; the default disk and PID thresholds are not met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_threshold_met_sets_memory_pressure() {
    let options = support::RigOptions {
        kubelet_config: "evictionHard:\n  memory.available: 100Ti\n  nodefs.available: 1%\n".into(),
        ..Default::default()
    };
    let Some(rig) = Rig::start_with("evict", 1, options).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];
    let conditions = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
    };
    let pressured = wait_for(Duration::from_secs(30), || async {
        client.get::<Node>("", &node.name).await.is_ok_and(|n| {
            conditions(&n)
                .iter()
                .any(|c| c.type_ == "MemoryPressure" && c.status == "True")
        })
    })
    .await;
    let n: Node = client.get("", &node.name).await.unwrap();
    assert!(
        pressured,
        "{:?}\nkubelet log:\n{}",
        conditions(&n),
        node.kubelet_log()
    );
    let get = |t: &str| conditions(&n).into_iter().find(|c| c.type_ == t).unwrap();
    let memory = get("MemoryPressure");
    assert_eq!(
        memory.reason.as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    assert_eq!(get("DiskPressure").status, "False");
    assert_eq!(get("PIDPressure").status, "False");
    assert_eq!(get("Ready").status, "True");
    assert!(node.kubelet_log().contains("eviction threshold met"));

    // Under MemoryPressure alone a BestEffort pod is refused, as upstream's
    // eviction manager refuses it; a pod with a memory request runs.
    let mut burstable = pod(&node.name, "burstable", "Always", &["sleep", "3600"]);
    burstable.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(serde_json::json!({"requests": {"memory": "16Mi"}})).unwrap());
    client.create("default", &burstable).await.unwrap();
    client
        .create(
            "default",
            &pod(&node.name, "best-effort", "Always", &["sleep", "3600"]),
        )
        .await
        .unwrap();
    let phase = |name: &'static str| {
        let client = client.clone();
        async move {
            get_pod(&client, name)
                .await
                .and_then(|p| p.status?.phase)
                .unwrap_or_default()
        }
    };
    let settled = wait_for(Duration::from_secs(60), || async {
        phase("burstable").await == "Running" && phase("best-effort").await == "Failed"
    })
    .await;
    assert!(
        settled,
        "burstable {:?}, best-effort {:?}",
        phase("burstable").await,
        phase("best-effort").await
    );
    let status = get_pod(&client, "best-effort")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: The node had condition: [MemoryPressure]. ")
    );
}

/// Pod admission, as upstream's kubelet: with `maxPods: 2`, a third pod is
/// rejected (Failed, `OutOfpods`, a Warning event) and never started, as is
/// a pod asking for more cpu than the node has; a restarted kubelet keeps
/// the two it admitted; deleting one makes room for a new pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_beyond_max_pods_or_the_nodes_cpu_are_rejected_and_never_started() {
    let options = support::RigOptions {
        kubelet_config: "maxPods: 2\n".into(),
        ..Default::default()
    };
    let Some(mut rig) = Rig::start_with("admit", 1, options).await else {
        return;
    };
    let client = rig.client().await;
    let node_name = rig.nodes[0].name.clone();
    let n: Node = client.get("", &node_name).await.unwrap();
    assert_eq!(n.status.unwrap().allocatable.unwrap()["pods"].0, "2");
    let phase = |p: Option<Pod>| p.and_then(|p| p.status?.phase).unwrap_or_default();
    let sleeper = |name: &str| pod(&node_name, name, "Always", &["sleep", "3600"]);
    let wait_phase = |name: &'static str, want: &'static str| {
        let client = client.clone();
        async move {
            wait_for(Duration::from_secs(60), || async {
                phase(get_pod(&client, name).await) == want
            })
            .await
        }
    };

    // More cpu than any node here has: rejected although a slot is free.
    let mut greedy = sleeper("greedy");
    greedy.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": "1000"}})).unwrap());
    client.create("default", &greedy).await.unwrap();
    assert!(
        wait_phase("greedy", "Failed").await,
        "greedy was not rejected"
    );
    let status = get_pod(&client, "greedy").await.unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: 0, capacity: "),
        "{status:?}"
    );

    for name in ["first", "second"] {
        client.create("default", &sleeper(name)).await.unwrap();
    }
    assert!(wait_phase("first", "Running").await, "first did not run");
    assert!(wait_phase("second", "Running").await, "second did not run");
    client.create("default", &sleeper("third")).await.unwrap();
    assert!(
        wait_phase("third", "Failed").await,
        "third was not rejected"
    );
    let status = get_pod(&client, "third").await.unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfpods"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2")
    );
    let events: Vec<k8s_openapi::api::core::v1::Event> = client
        .list::<k8s_openapi::api::core::v1::Event>("default", &Default::default())
        .await
        .unwrap()
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("third")
                && e.reason.as_deref() == Some("OutOfpods")
                && e.type_.as_deref() == Some("Warning")),
        "no OutOfpods event for third: {events:?}"
    );
    let log = rig.nodes[0].kubelet_log();
    for name in ["greedy", "third"] {
        assert!(
            !log.contains(&format!("started pod sandbox pod=default/{name} ")),
            "{name} was started:\n{log}"
        );
    }

    // The two admitted pods stay admitted across a kubelet restart.
    let first_uid = get_pod(&client, "first").await.unwrap().metadata.uid;
    rig.nodes[0].stop_kubelet().await;
    rig.nodes[0].start_kubelet().await;
    client.create("default", &sleeper("fourth")).await.unwrap();
    assert!(
        wait_phase("fourth", "Failed").await,
        "fourth was not rejected: {:?}\nkubelet log:\n{}",
        get_pod(&client, "fourth").await.map(|p| p.status),
        rig.nodes[0].kubelet_log()
    );
    for name in ["first", "second"] {
        assert_eq!(phase(get_pod(&client, name).await), "Running", "{name}");
    }

    // Deleting one makes room.
    client
        .delete::<Pod>("default", "first", &DeleteParams::default())
        .await
        .unwrap();
    let gone = wait_for(Duration::from_secs(60), || async {
        get_pod(&client, "first").await.and_then(|p| p.metadata.uid) != first_uid
    })
    .await;
    assert!(gone, "first was not deleted");
    client.create("default", &sleeper("fifth")).await.unwrap();
    assert!(
        wait_phase("fifth", "Running").await,
        "fifth did not run in the freed slot: {:?}\n{}",
        get_pod(&client, "fifth").await.map(|p| p.status),
        rig.nodes[0].kubelet_log()
    );
}

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

fn phase_of(pod: &Option<Pod>) -> String {
    pod.as_ref()
        .and_then(|p| p.status.as_ref()?.phase.clone())
        .unwrap_or_default()
}

fn with_memory_request(mut p: Pod, request: &str) -> Pod {
    p.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(serde_json::json!({"requests": {"memory": request}})).unwrap());
    p
}

async fn events_about(client: &Client, name: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
    client
        .list::<k8s_openapi::api::core::v1::Event>("default", &Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect()
}

/// Whether the Node reports `MemoryPressure`.
async fn under_memory_pressure(client: &Client, node: &str) -> bool {
    client.get::<Node>("", node).await.is_ok_and(|n| {
        n.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "MemoryPressure" && c.status == "True")
    })
}

/// The kubelet's log without its colours, so that fields read `key=value`.
fn plain_log(node: &support::TestNode) -> String {
    support::strip_ansi(&node.kubelet_log())
}

/// The lines of the kubelet's log that start a container of `pod`.
fn container_starts(log: &str, pod: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("started container") && l.contains(&format!("pod=default/{pod} ")))
        .count()
}

/// A hard `memory.available` threshold above what any machine has: the
/// node reports MemoryPressure; a new BestEffort pod is refused (admission),
/// a Burstable one is admitted, runs, and is then evicted as upstream's
/// eviction manager evicts it — Failed, reason `Evicted`, upstream's
/// message, a `DisruptionTarget` condition and a Warning event, its
/// containers removed from containerd, never restarted, also not by a
/// restarted kubelet — while a static pod, critical, keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_memory_threshold_evicts_running_pods_but_not_static_ones() {
    let options = support::RigOptions {
        kubelet_config: "evictionHard:\n  memory.available: 100Ti\n  nodefs.available: 1%\n".into(),
        ..Default::default()
    };
    let Some(mut rig) = Rig::start_with("evict", 1, options).await else {
        return;
    };
    let client = rig.client().await;
    let node_name = rig.nodes[0].name.clone();
    std::fs::write(
        rig.nodes[0].static_pod_dir().join("keeper.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: keeper\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [sleep, '3600']\n",
    )
    .unwrap();
    let conditions = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
    };
    let pressured = wait_for(Duration::from_secs(30), || {
        under_memory_pressure(&client, &node_name)
    })
    .await;
    let n: Node = client.get("", &node_name).await.unwrap();
    assert!(
        pressured,
        "{:?}\nkubelet log:\n{}",
        conditions(&n),
        plain_log(&rig.nodes[0])
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
    assert!(rig.nodes[0]
        .kubelet_log()
        .contains("eviction threshold met"));

    // The static pod runs (its mirror pod says so).
    let keeper = format!("keeper-{node_name}");
    let keeper_running = wait_for(Duration::from_secs(60), || async {
        get_pod(&client, &keeper)
            .await
            .and_then(|p| main_status(&p))
            .is_some_and(|c| c.state.is_some_and(|s| s.running.is_some()))
    })
    .await;
    assert!(
        keeper_running,
        "static pod did not run: {:?}\n{}",
        get_pod(&client, &keeper).await.map(|p| p.status),
        plain_log(&rig.nodes[0])
    );
    let keeper_id = main_status(&get_pod(&client, &keeper).await.unwrap())
        .unwrap()
        .container_id;

    // Admission: under MemoryPressure alone a BestEffort pod is refused; a
    // pod with a memory request is admitted.
    let burstable = with_memory_request(
        pod(&node_name, "burstable", "Always", &["sleep", "3600"]),
        "16Mi",
    );
    client.create("default", &burstable).await.unwrap();
    client
        .create(
            "default",
            &pod(&node_name, "best-effort", "Always", &["sleep", "3600"]),
        )
        .await
        .unwrap();
    let refused = wait_for(Duration::from_secs(60), || async {
        phase_of(&get_pod(&client, "best-effort").await) == "Failed"
    })
    .await;
    let status = get_pod(&client, "best-effort").await.unwrap().status;
    assert!(refused, "best-effort: {status:?}");
    let status = status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: The node had condition: [MemoryPressure]. ")
    );

    // Eviction: the admitted pod ran, and is evicted.
    let evicted = wait_for(Duration::from_secs(90), || async {
        phase_of(&get_pod(&client, "burstable").await) == "Failed"
    })
    .await;
    let p = get_pod(&client, "burstable").await.unwrap();
    assert!(
        evicted,
        "burstable was not evicted: {:?}\n{}",
        p.status,
        plain_log(&rig.nodes[0])
    );
    let log_at_eviction = plain_log(&rig.nodes[0]).len();
    let status = p.status.clone().unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    let message = status.message.clone().unwrap();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Ti, available: "
        ),
        "{message}"
    );
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap_or_else(|| panic!("no DisruptionTarget condition: {status:?}"));
    assert_eq!(disruption.status, "True");
    assert_eq!(disruption.reason.as_deref(), Some("TerminationByKubelet"));
    assert_eq!(disruption.message.as_deref(), Some(message.as_str()));
    let cs = main_status(&p).unwrap();
    let terminated = cs.state.as_ref().and_then(|s| s.terminated.clone());
    assert!(
        terminated.as_ref().is_some_and(|t| t.started_at.is_some()),
        "the container did not run and stop: {cs:?}"
    );
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    let events = events_about(&client, "burstable").await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Evicted")
            && e.type_.as_deref() == Some("Warning")
            && e.message.as_deref() == Some(message.as_str())),
        "no Evicted event with the status's message: {events:?}"
    );
    let node_events = events_about(&client, &node_name).await;
    assert!(
        node_events
            .iter()
            .any(|e| e.reason.as_deref() == Some("EvictionThresholdMet")
                && e.message.as_deref() == Some("Attempting to reclaim memory")),
        "no EvictionThresholdMet node event: {node_events:?}"
    );

    // Its containers leave containerd.
    let id = cs.container_id.clone().unwrap();
    let short = id.trim_start_matches("containerd://").to_string();
    let removed = wait_for(Duration::from_secs(30), || async {
        let ls = rig.nodes[0].ctr(&["containers", "ls", "-q"]);
        !String::from_utf8_lossy(&ls.stdout).contains(&short)
    })
    .await;
    assert!(
        removed,
        "the evicted pod's container is still in containerd"
    );

    // A later pass finds only the static pod, which it may not evict.
    let passed = wait_for(Duration::from_secs(60), || async {
        let log = plain_log(&rig.nodes[0]);
        log[log_at_eviction..].contains("unable to evict any pods from the node")
    })
    .await;
    let log = plain_log(&rig.nodes[0]);
    assert!(passed, "no later eviction pass:\n{log}");
    assert!(
        log.contains(&format!("cannot evict a critical pod pod=default/{keeper}")),
        "{log}"
    );
    assert_eq!(container_starts(&log, "burstable"), 1, "{log}");
    assert_eq!(phase_of(&get_pod(&client, "burstable").await), "Failed");

    // A restarted kubelet does not bring it back; the static pod runs on.
    rig.nodes[0].stop_kubelet().await;
    let log_before_restart = plain_log(&rig.nodes[0]).len();
    rig.nodes[0].start_kubelet().await;
    let resynced = wait_for(Duration::from_secs(90), || async {
        let log = plain_log(&rig.nodes[0]);
        log[log_before_restart..].contains("unable to evict any pods from the node")
    })
    .await;
    let log = plain_log(&rig.nodes[0]);
    assert!(
        resynced,
        "the restarted kubelet made no eviction pass:\n{log}"
    );
    assert_eq!(container_starts(&log, "burstable"), 1, "{log}");
    let p = get_pod(&client, "burstable").await.unwrap();
    assert_eq!(phase_of(&Some(p.clone())), "Failed");
    assert_eq!(p.status.unwrap().reason.as_deref(), Some("Evicted"));
    let k = main_status(&get_pod(&client, &keeper).await.unwrap()).unwrap();
    assert_eq!(k.container_id, keeper_id, "the static pod was restarted");
    assert!(k.state.unwrap().running.is_some());
}

/// A soft threshold sets the condition at once but evicts only once it
/// has been met for its grace period: the pod started while the node was
/// already under MemoryPressure, and was evicted only later, with
/// `evictionMaxPodGracePeriod` as its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_memory_threshold_evicts_only_after_its_grace_period() {
    let options = support::RigOptions {
        kubelet_config: "evictionHard:\n  nodefs.available: 1%\nevictionSoft:\n  memory.available: 100Ti\nevictionSoftGracePeriod:\n  memory.available: 45s\nevictionMaxPodGracePeriod: 2\n".into(),
        ..Default::default()
    };
    let Some(rig) = Rig::start_with("soft", 1, options).await else {
        return;
    };
    let client = rig.client().await;
    let node_name = rig.nodes[0].name.clone();
    let pressured = wait_for(Duration::from_secs(30), || {
        under_memory_pressure(&client, &node_name)
    })
    .await;
    assert!(pressured, "{}", plain_log(&rig.nodes[0]));
    let soft = with_memory_request(
        pod(&node_name, "soft", "Always", &["sleep", "3600"]),
        "16Mi",
    );
    client.create("default", &soft).await.unwrap();
    let evicted = wait_for(Duration::from_secs(120), || async {
        phase_of(&get_pod(&client, "soft").await) == "Failed"
    })
    .await;
    let log = plain_log(&rig.nodes[0]);
    let p = get_pod(&client, "soft").await.unwrap();
    assert!(evicted, "soft was not evicted: {:?}\n{log}", p.status);
    let status = p.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(
        status.message.as_deref().unwrap_or_default().starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Ti, available: "
        ),
        "{status:?}"
    );
    // In the log: pressure first, then the pod's start, then the first
    // attempt to reclaim, with the soft grace.
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the kubelet log:\n{log}"))
    };
    let met = at("eviction threshold met");
    let started = at("started container pod=default/soft ");
    let reclaim = at("eviction manager: attempting to reclaim");
    assert!(met < started && started < reclaim, "{log}");
    assert!(
        log[reclaim..].contains("pod evicted: containers stopped pod=default/soft grace_seconds=2"),
        "{log}"
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
    let log = plain_log(&rig.nodes[0]);
    assert!(
        log.contains("started pod sandbox pod=default/first "),
        "{log}"
    );
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

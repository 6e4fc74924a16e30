//! The kubelet against a real control plane (TestCluster) and a private
//! containerd + runc with the reference CNI plugins, in a network namespace
//! the test creates. Root only: skipped with a message otherwise.

#[path = "../../apiserver/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use ferrokube_client::{Client, DeleteParams};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube_apiserver::pki;
use support::{wait_for, TestCluster};
use tokio::sync::oneshot;

const NODE: &str = "kubelet-it-node";
const POD_CIDR: &str = "10.244.7.0/24";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a private containerd in it; both go on drop.
struct TestNode {
    dir: tempfile::TempDir,
    netns: String,
}

impl TestNode {
    fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let netns = format!("fk-kubelet-{}", std::process::id());
        sh(Command::new("ip").args(["netns", "add", &netns]));
        sh(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]));
        let node = TestNode { dir, netns };
        let d = node.ctd_dir();
        sh(Command::new("bash")
            .arg(repo().join("deploy/containerd/containerd.sh"))
            .args([
                "start",
                d.to_str().unwrap(),
                "--netns",
                &node.netns,
                "--cni-bin-dir",
                "/usr/lib/cni",
                "--cni-conf-dir",
                node.dir.path().join("net.d").to_str().unwrap(),
            ]));
        sh(Command::new("bash")
            .arg(repo().join("deploy/images/build.sh"))
            .args([
                "--out",
                node.dir.path().join("images").to_str().unwrap(),
                "--import",
                "--address",
                d.join("containerd.sock").to_str().unwrap(),
            ]));
        node
    }

    fn ctd_dir(&self) -> PathBuf {
        self.dir.path().join("containerd")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("deploy/containerd/containerd.sh"))
            .args(["stop", self.ctd_dir().to_str().unwrap()])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

fn kubelet_config(cluster: &TestCluster, node: &TestNode) -> kubelet::Config {
    let cert = cluster
        .ca()
        .issue_client(&format!("system:node:{NODE}"), &["system:nodes"])
        .unwrap();
    let kubeconfig = node.dir.path().join("kubelet.conf");
    pki::write_kubeconfig(
        &kubeconfig,
        &cluster.base_url(),
        cluster.ca_pem(),
        &cert.cert_pem,
        &cert.key_pem,
        &format!("system:node:{NODE}"),
        "kubernetes",
    )
    .unwrap();
    let config_file = node.dir.path().join("kubelet.yaml");
    std::fs::write(
        &config_file,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodCIDR: {POD_CIDR}\nclusterDNS: [10.96.0.10]\nmaxPods: 30\ncgroupDriver: cgroupfs\nnodeStatusUpdateFrequency: 2s\npodLogsDir: {}\n",
            node.dir.path().join("pod-logs").display()
        ),
    )
    .unwrap();
    let sock = node.ctd_dir().join("containerd.sock");
    kubelet::Flags::try_parse_from([
        "kubelet".to_string(),
        format!("--config={}", config_file.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--hostname-override={NODE}"),
        "--node-ip=127.0.0.1".into(),
        format!("--root-dir={}", node.dir.path().join("root").display()),
        format!("--container-runtime-endpoint=unix://{}", sock.display()),
        format!("--cni-conf-dir={}", node.dir.path().join("net.d").display()),
        "--cni-bin-dir=/usr/lib/cni".into(),
        "--cni-plugin-type=bridge".into(),
    ])
    .unwrap()
    .into_config()
    .unwrap()
}

struct Kubelet {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), kubelet::RunError>>,
}

impl Kubelet {
    fn start(config: kubelet::Config) -> Kubelet {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kubelet::run(config, async {
            let _ = stopped.await;
        }));
        Kubelet {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        assert!(done.is_ok(), "kubelet did not stop in time");
    }
}

fn pod(name: &str, policy: &str, command: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
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
    if !is_root() {
        eprintln!(
            "SKIPPED: kubelet/tests/node.rs needs root (network namespace, containerd, runc)"
        );
        return;
    }
    let node = TestNode::start();
    let cluster = TestCluster::start().await;
    let client = Client::connect(cluster.kubeconfig_path()).await.unwrap();
    let config = kubelet_config(&cluster, &node);
    let kubelet = Kubelet::start(config.clone());

    // The Node registers and becomes Ready; its Lease renews.
    let ready = wait_for(Duration::from_secs(30), || async {
        let Ok(n) = client.get::<Node>("", NODE).await else {
            return false;
        };
        n.status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    assert!(ready, "node {NODE} did not become Ready");
    let n: Node = client.get("", NODE).await.unwrap();
    let labels = n.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    let status = n.status.unwrap();
    assert_eq!(status.capacity.unwrap()["pods"].0, "30");
    assert!(status
        .node_info
        .unwrap()
        .container_runtime_version
        .starts_with("containerd://"));
    let lease_time = || async {
        client
            .get::<Lease>("kube-node-lease", NODE)
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
        .create("default", &pod("sleeper", "Always", &["sleep", "3600"]))
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
        kubelet::cni::contains(POD_CIDR, &ip),
        "pod IP {ip} not in {POD_CIDR}"
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
            &pod("crasher", "Always", &["sh", "-c", "exit 1"]),
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
        .create("default", &pod("once", "Never", &["sh", "-c", "echo done"]))
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
    kubelet.stop().await;
    let before = restarts(get_pod(&client, "crasher").await);
    let kubelet = Kubelet::start(config.clone());
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
    let ctr = Command::new("ctr")
        .args([
            "--address",
            node.ctd_dir().join("containerd.sock").to_str().unwrap(),
            "-n",
            "k8s.io",
            "tasks",
            "ls",
        ])
        .output()
        .unwrap();
    let tasks = String::from_utf8_lossy(&ctr.stdout);
    let short = sleeper_id.trim_start_matches("containerd://");
    assert!(
        !tasks.contains(short),
        "sleeper's task still listed: {tasks}"
    );

    kubelet.stop().await;
}

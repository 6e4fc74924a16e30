//! The node rig: a control plane (etcd-lite + kube-apiserver, in the test
//! process) and N nodes, each its own network namespace on a bridge the rig
//! creates, with its own containerd (images imported) and the real `kubelet`
//! binary started inside the namespace, using `cni-bridge` as its CNI plugin.
//! Root only. Everything goes away on drop.
//!
//! Entry point: [`Rig::start`]. Test files include it with `mod support;`.
//!
//! Addressing: the rig's bridge gets `172.30.<n>.1/24` on the host (the
//! apiserver listens there), node `i` is `172.30.<n>.<10+i>` with pod CIDR
//! `10.244.<i>.0/24`. `<n>` is chosen under a lock so rigs of test binaries
//! running side by side never share a subnet.

#![allow(dead_code, reason = "each test binary uses a different part")]

#[path = "../../../apiserver/tests/support/mod.rs"]
pub mod cluster;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use cluster::{wait_for, TestCluster};
use ferrokube_client::Client;
use k8s_openapi::api::core::v1::Node;
use kube_apiserver::pki;

/// How long a node may take to register and become Ready.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
const RIG_LOCK: &str = "/run/ferrokube-test-rig.lock";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `text` without its ANSI escapes (the colours of the kubelet's log), so
/// that log fields read `key=value`.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ended by a letter.
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs a command that must succeed; panics with its output otherwise.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> Output {
    sh(Command::new("ip").args(args))
}

/// The `cni-bridge` binary of the same profile as this test (`cargo nextest
/// run --workspace` builds it; for benchmarks `cargo build --release -p
/// ferrokube-cni-bridge`).
fn cni_bridge_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("cni-bridge");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build [--release] -p ferrokube-cni-bridge`",
        bin.display()
    );
    bin
}

/// The rig's hard eviction thresholds, unless a test sets its own
/// `evictionHard`: upstream's defaults (`imagefs.available` 15 %,
/// `nodefs.available` 10 %) put a host whose disk is fuller than that under
/// DiskPressure, which refuses every pod, so the tests would pass or fail
/// with the host's free disk space.
const RIG_EVICTION_HARD: &str = "evictionHard:\n  memory.available: 100Mi\n  nodefs.available: 1%\n  nodefs.inodesFree: 1%\n  imagefs.available: 1%\n";

/// What a rig's kubelets and apiserver get beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct RigOptions {
    /// YAML lines appended to every node's KubeletConfiguration.
    pub kubelet_config: String,
    /// Extra kubelet flags.
    pub kubelet_flags: Vec<String>,
    /// Extra kube-apiserver flags.
    pub apiserver_flags: Vec<String>,
}

pub struct Rig {
    pub nodes: Vec<TestNode>,
    pub cluster: TestCluster,
    bridge: String,
    dir: tempfile::TempDir,
}

impl Rig {
    /// A rig with `nodes` Ready nodes; `None` (after saying why) when not
    /// root. `name` (at most 6 characters) tells rigs apart in `ip link`.
    pub async fn start(name: &str, nodes: usize) -> Option<Rig> {
        Rig::start_with(name, nodes, RigOptions::default()).await
    }

    pub async fn start_with(name: &str, nodes: usize, options: RigOptions) -> Option<Rig> {
        if !is_root() {
            eprintln!("SKIPPED: the node rig needs root (network namespaces, containerd, runc)");
            return None;
        }
        assert!(name.len() <= 6, "rig name {name:?} is longer than 6");
        let dir = tempfile::tempdir().unwrap();
        let (bridge, subnet) = create_bridge(name);
        let gateway = Ipv4Addr::new(172, 30, subnet, 1);
        // From here on, drop cleans up: the bridge goes with the rig.
        let flags: Vec<&str> = options.apiserver_flags.iter().map(String::as_str).collect();
        let cluster = TestCluster::start_on(IpAddr::V4(gateway), &flags).await;
        let images = dir.path().join("images");
        sh(Command::new("bash")
            .arg(repo().join("deploy/images/build.sh"))
            .args(["--out", images.to_str().unwrap()]));
        let mut rig = Rig {
            nodes: Vec::new(),
            cluster,
            bridge,
            dir,
        };
        for i in 0..nodes {
            let node = TestNode::create(&rig, name, subnet, i, &images, &options);
            rig.nodes.push(node);
        }
        for node in &mut rig.nodes {
            node.start_kubelet().await;
        }
        let client = rig.client().await;
        for node in &rig.nodes {
            let ready = wait_for(NODE_READY_TIMEOUT, || async {
                client.get::<Node>("", &node.name).await.is_ok_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
            })
            .await;
            assert!(
                ready,
                "node {} did not become Ready; kubelet log:\n{}",
                node.name,
                node.kubelet_log()
            );
        }
        Some(rig)
    }

    /// A client with the admin kubeconfig.
    pub async fn client(&self) -> Client {
        Client::connect(self.cluster.kubeconfig_path())
            .await
            .unwrap()
    }

    /// The admin kubeconfig, for real kubectl on the host.
    pub fn kubeconfig(&self) -> &Path {
        self.cluster.kubeconfig_path()
    }

    /// Real kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .args(args)
            .output()
            .expect("kubectl")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Nodes first (their veths hang off the bridge), then the bridge.
        self.nodes.clear();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}

/// Creates the rig's bridge with `172.30.<n>.1/24` for an `n` no other rig
/// on this host uses; the lock makes the choice and the claim one step.
fn create_bridge(name: &str) -> (String, u8) {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(RIG_LOCK)
        .unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let routes = String::from_utf8_lossy(&ip(&["-4", "route", "show"]).stdout).into_owned();
    let start = (std::process::id() % 250) as u8;
    let subnet = (0..250u8)
        .map(|k| start.wrapping_add(k) % 250)
        .find(|n| !routes.contains(&format!("172.30.{n}.")))
        .expect("a free 172.30.<n>.0/24");
    let bridge = format!("fk-{name}-{subnet}");
    ip(&["link", "add", &bridge, "type", "bridge"]);
    ip(&[
        "addr",
        "add",
        &format!("172.30.{subnet}.1/24"),
        "dev",
        &bridge,
    ]);
    ip(&["link", "set", &bridge, "up"]);
    (bridge, subnet)
}

/// One node: a network namespace plugged into the rig's bridge, a private
/// containerd inside it, and a `kubelet` process inside it.
pub struct TestNode {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    pub netns: String,
    dir: tempfile::TempDir,
    kubelet_args: Vec<String>,
    kubelet: Option<Child>,
}

impl TestNode {
    fn create(
        rig: &Rig,
        name: &str,
        subnet: u8,
        index: usize,
        images: &Path,
        options: &RigOptions,
    ) -> TestNode {
        let node_name = format!("{name}-node-{index}");
        let node_ip = Ipv4Addr::new(172, 30, subnet, 10 + index as u8);
        let netns = format!("fk-{name}-{subnet}-{index}");
        let dir = tempfile::tempdir().unwrap();
        ip(&["netns", "add", &netns]);
        let host_veth = format!("fk{subnet}v{index}");
        ip(&[
            "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["link", "set", &host_veth, "master", &rig.bridge, "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{node_ip}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        let mut node = TestNode {
            name: node_name,
            ip: node_ip,
            pod_cidr: format!("10.244.{index}.0/24"),
            netns,
            dir,
            kubelet_args: Vec::new(),
            kubelet: None,
        };

        let cni_bin = node.dir().join("cni-bin");
        std::fs::create_dir_all(&cni_bin).unwrap();
        let plugin = cni_bridge_binary();
        for link in ["cni-bridge", "loopback"] {
            std::os::unix::fs::symlink(&plugin, cni_bin.join(link)).unwrap();
        }
        std::fs::create_dir_all(node.static_pod_dir()).unwrap();
        let ctd = node.containerd_dir();
        sh(Command::new("bash")
            .arg(repo().join("deploy/containerd/containerd.sh"))
            .args(["start", ctd.to_str().unwrap(), "--netns", &node.netns])
            .args(["--cni-bin-dir", cni_bin.to_str().unwrap()])
            .args(["--cni-conf-dir", node.cni_conf_dir().to_str().unwrap()]));
        for tarball in ["busybox-1.36.tar", "pause-3.9.tar"] {
            node.ctr_ok(&["images", "import", images.join(tarball).to_str().unwrap()]);
        }
        node.kubelet_args = node.build_kubelet_args(rig, options);
        node
    }

    fn build_kubelet_args(&self, rig: &Rig, options: &RigOptions) -> Vec<String> {
        let cluster = &rig.cluster;
        let cert = cluster
            .ca()
            .issue_client(&format!("system:node:{}", self.name), &["system:nodes"])
            .unwrap();
        let kubeconfig = self.dir().join("kubelet.conf");
        pki::write_kubeconfig(
            &kubeconfig,
            &cluster.base_url(),
            cluster.ca_pem(),
            &cert.cert_pem,
            &cert.key_pem,
            &format!("system:node:{}", self.name),
            "kubernetes",
        )
        .unwrap();
        let config = self.dir().join("kubelet.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\n\
                 kind: KubeletConfiguration\n\
                 podCIDR: {}\n\
                 clusterDNS: [10.96.0.10]\n\
                 cgroupDriver: cgroupfs\n\
                 nodeStatusUpdateFrequency: 2s\n\
                 podLogsDir: {}\n\
                 staticPodPath: {}\n\
                 {}{}",
                self.pod_cidr,
                self.pod_logs_dir().display(),
                self.static_pod_dir().display(),
                if options.kubelet_config.contains("evictionHard:") {
                    ""
                } else {
                    RIG_EVICTION_HARD
                },
                options.kubelet_config,
            ),
        )
        .unwrap();
        let mut args = vec![
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={}", self.name),
            format!("--node-ip={}", self.ip),
            format!("--root-dir={}", self.dir().join("root").display()),
            format!(
                "--container-runtime-endpoint=unix://{}",
                self.containerd_dir().join("containerd.sock").display()
            ),
            format!("--cni-conf-dir={}", self.cni_conf_dir().display()),
            format!("--cni-bin-dir={}", self.dir().join("cni-bin").display()),
        ];
        args.extend(options.kubelet_flags.iter().cloned());
        args
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pod_logs_dir(&self) -> PathBuf {
        self.dir().join("pod-logs")
    }

    pub fn static_pod_dir(&self) -> PathBuf {
        self.dir().join("manifests")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir().join("net.d")
    }

    pub fn containerd_dir(&self) -> PathBuf {
        self.dir().join("containerd")
    }

    fn kubelet_log_path(&self) -> PathBuf {
        self.dir().join("kubelet.log")
    }

    /// The kubelet's log so far (all its runs).
    pub fn kubelet_log(&self) -> String {
        std::fs::read_to_string(self.kubelet_log_path()).unwrap_or_default()
    }

    /// Starts the `kubelet` binary inside the node's namespace (a no-op if
    /// it runs).
    pub async fn start_kubelet(&mut self) {
        if self.kubelet.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.kubelet_log_path())
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_kubelet"))
            .args(&self.kubelet_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kubelet");
        self.kubelet = Some(child);
    }

    /// SIGTERM, then waits (at most 15 s, then SIGKILL). Containers keep
    /// running.
    pub async fn stop_kubelet(&mut self) {
        let Some(mut child) = self.kubelet.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "kubelet on {} did not stop within 15 s of SIGTERM; log:\n{}",
            self.name,
            self.kubelet_log()
        );
    }

    /// What the containers named `container` of the pods whose log
    /// directory (`<namespace>_<name>_<uid>`) starts with `prefix` wrote,
    /// every attempt in order, from the CRI log files, without their
    /// `<time> <stream> <tag> ` prefix.
    pub fn container_logs(&self, prefix: &str, container: &str) -> String {
        let Ok(pods) = std::fs::read_dir(self.pod_logs_dir()) else {
            return String::new();
        };
        let mut files: Vec<PathBuf> = pods
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with(prefix))
            .filter_map(|d| std::fs::read_dir(d.path().join(container)).ok())
            .flat_map(|attempts| attempts.flatten().map(|f| f.path()))
            .collect();
        files.sort();
        let mut out = String::new();
        for f in files {
            for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
                out.push_str(line.splitn(4, ' ').nth(3).unwrap_or_default());
                out.push('\n');
            }
        }
        out
    }

    /// The running kubelet's process id.
    pub fn kubelet_pid(&self) -> Option<u32> {
        self.kubelet.as_ref().map(Child::id)
    }

    /// `ctr` against the node's containerd, namespace `k8s.io`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_dir().join("containerd.sock"))
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr")
    }

    fn ctr_ok(&self, args: &[&str]) {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command inside the node's network namespace.
    pub fn netns_exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args(args)
            .output()
            .expect("nsenter")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.kubelet.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("bash")
            .arg(repo().join("deploy/containerd/containerd.sh"))
            .args(["stop", self.containerd_dir().to_str().unwrap()])
            .status();
        // What the kubelet mounted (tmpfs volumes) if a test ended early.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let under = format!("{}/", self.dir().display());
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&under))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

//! Real kubectl 1.32 (`/usr/bin/kubectl`) against the real apiserver: what a
//! Kubernetes user types and sees — `apply`, `create`, `get` in every output
//! format, `describe`, `delete`, `label`, `patch`, `edit`, `wait`, node
//! maintenance, discovery commands, and upstream's errors for bad input.
//!
//! kubectl runs as a subprocess with the cluster's admin kubeconfig, a
//! private `HOME` and cache directory, and a bounded time per command.
//! No controllers run here: a Deployment never gets pods and nothing
//! finishes a pod's graceful deletion.

mod support;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use support::{jwt_payload, TestCluster};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Longest a single kubectl command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// What kubectl itself is told (`--request-timeout`).
const REQUEST_TIMEOUT: &str = "20s";

/// What one kubectl run printed and how it ended.
struct Output {
    stdout: String,
    stderr: String,
    status: ExitStatus,
}

impl Output {
    /// Asserts exit code 0; returns stdout.
    #[track_caller]
    fn ok(self) -> String {
        assert!(
            self.status.success(),
            "kubectl failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Asserts a non-zero exit; returns stderr.
    #[track_caller]
    fn err(self) -> String {
        assert!(
            !self.status.success(),
            "kubectl succeeded but should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.stderr
    }
}

/// `kubectl` with the cluster's admin kubeconfig, a private HOME and cache
/// directory, and `--request-timeout`.
fn command(cluster: &TestCluster, args: &[&str]) -> Command {
    let home = cluster.dir().join("home");
    let mut cmd = Command::new("/usr/bin/kubectl");
    cmd.env("HOME", &home)
        .env_remove("KUBECONFIG")
        .env_remove("KUBE_EDITOR")
        .env_remove("EDITOR")
        .env("TMPDIR", cluster.dir())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("--cache-dir")
        .arg(home.join(".kube/cache"))
        .arg(format!("--request-timeout={REQUEST_TIMEOUT}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` (feeding `stdin` if given) and kills it after
/// [`COMMAND_TIMEOUT`].
async fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("/usr/bin/kubectl runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl did not finish within {COMMAND_TIMEOUT:?}"))
        .unwrap();
    Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    }
}

/// `kubectl args…`.
async fn kubectl(cluster: &TestCluster, args: &[&str]) -> Output {
    run(command(cluster, args), None).await
}

/// `kubectl args…` with `input` on stdin (for `-f -`).
async fn kubectl_stdin(cluster: &TestCluster, args: &[&str], input: &str) -> Output {
    run(command(cluster, args), Some(input)).await
}

/// Writes `text` into the cluster's scratch directory; returns the path.
fn manifest(cluster: &TestCluster, name: &str, text: &str) -> PathBuf {
    let path = cluster.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `kubectl get … -o jsonpath=<path>`; must succeed.
async fn jsonpath(cluster: &TestCluster, target: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(target);
    let output = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &output]);
    kubectl(cluster, &args).await.ok()
}

const APP_V1: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: hello
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_a_multi_document_manifest_and_reapply_merges_the_edit() {
    let cluster = TestCluster::start().await;
    let file = manifest(&cluster, "app.yaml", APP_V1);
    let file = file.to_str().unwrap();

    let out = kubectl(&cluster, &["apply", "-f", file]).await.ok();
    for line in [
        "namespace/shop created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let last_applied = jsonpath(
        &cluster,
        &["deployment", "web", "-n", "shop"],
        r#"{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#,
    )
    .await;
    let last_applied: serde_json::Value = serde_json::from_str(&last_applied).unwrap();
    assert_eq!(last_applied["spec"]["replicas"], 2, "{last_applied}");

    // Applying the same file again changes nothing.
    let out = kubectl(&cluster, &["apply", "-f", file]).await.ok();
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    assert!(out.contains("configmap/web-config unchanged"), "{out}");

    // Nothing to show: `diff` against the live objects is empty.
    let diff = kubectl(&cluster, &["diff", "-f", file]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        diff.stdout,
        diff.stderr
    );
    assert_eq!(diff.stdout, "");

    // A field set by someone else survives the re-apply (three-way merge).
    kubectl(
        &cluster,
        &["annotate", "deployment", "web", "-n", "shop", "owner=ops"],
    )
    .await
    .ok();

    let edited = APP_V1
        .replace("replicas: 2", "replicas: 4")
        .replace("image: nginx:1.25", "image: nginx:1.27")
        .replace(
            "        - containerPort: 80\n",
            "        - containerPort: 80\n        - containerPort: 9090\n          name: metrics\n",
        )
        .replace("greeting: hello", "greeting: bonjour");
    let file = manifest(&cluster, "app-v2.yaml", &edited);
    let file = file.to_str().unwrap();
    // `diff` shows the edit (exit 1: there are differences) and stores nothing.
    let diff = kubectl(&cluster, &["diff", "-f", file]).await;
    assert_eq!(diff.status.code(), Some(1), "{}", diff.stderr);
    for line in [
        "-  replicas: 2",
        "+  replicas: 4",
        "+      - image: nginx:1.27",
    ] {
        assert!(
            diff.stdout.lines().any(|l| l == line),
            "{line:?} in\n{}",
            diff.stdout
        );
    }
    assert_eq!(
        jsonpath(
            &cluster,
            &["deployment", "web", "-n", "shop"],
            "{.spec.replicas}"
        )
        .await,
        "2"
    );

    let out = kubectl(&cluster, &["apply", "-f", file]).await.ok();
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/web-config configured"), "{out}");
    assert!(out.contains("namespace/shop unchanged"), "{out}");

    let deploy = ["deployment", "web", "-n", "shop"];
    assert_eq!(jsonpath(&cluster, &deploy, "{.spec.replicas}").await, "4");
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[0].image}"
        )
        .await,
        "nginx:1.27"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[0].ports[*].containerPort}"
        )
        .await,
        "80 9090"
    );
    assert_eq!(
        jsonpath(&cluster, &deploy, "{.metadata.annotations.owner}").await,
        "ops"
    );
    let last_applied = jsonpath(
        &cluster,
        &deploy,
        r#"{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#,
    )
    .await;
    assert!(last_applied.contains("nginx:1.27"), "{last_applied}");
    assert_eq!(
        jsonpath(
            &cluster,
            &["configmap", "web-config", "-n", "shop"],
            "{.data.greeting}"
        )
        .await,
        "bonjour"
    );

    // Deleting by file removes what the file names (the namespace is only
    // marked Terminating: no namespace controller runs here).
    let out = kubectl(&cluster, &["delete", "-f", file, "--wait=false"])
        .await
        .ok();
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    assert!(out.contains("configmap \"web-config\" deleted"), "{out}");
    let err = kubectl(&cluster, &["get", "configmap", "web-config", "-n", "shop"])
        .await
        .err();
    assert!(
        err.contains(r#"configmaps "web-config" not found"#),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imperative_create_run_and_expose_make_the_objects_users_expect() {
    let cluster = TestCluster::start().await;
    let ok = |args: &'static [&'static str]| {
        let cluster = &cluster;
        async move { kubectl(cluster, args).await.ok() }
    };

    assert_eq!(
        ok(&["create", "namespace", "dev"]).await.trim(),
        "namespace/dev created"
    );
    assert_eq!(
        ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "dev",
            "--from-literal=mode=fast",
            "--from-literal=level=3"
        ])
        .await
        .trim(),
        "configmap/settings created"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &["configmap", "settings", "-n", "dev"],
            "{.data.mode}/{.data.level}"
        )
        .await,
        "fast/3"
    );
    assert_eq!(
        ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "dev",
            "--from-literal=password=s3cret"
        ])
        .await
        .trim(),
        "secret/creds created"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &["secret", "creds", "-n", "dev"],
            "{.type} {.data.password}"
        )
        .await,
        "Opaque czNjcmV0"
    );
    assert_eq!(
        ok(&[
            "create",
            "deployment",
            "api",
            "-n",
            "dev",
            "--image=registry.local/api:v1",
            "--replicas=2",
            "--port=8080"
        ])
        .await
        .trim(),
        "deployment.apps/api created"
    );
    assert_eq!(
        ok(&[
            "create",
            "service",
            "clusterip",
            "cache",
            "-n",
            "dev",
            "--tcp=6379:6379"
        ])
        .await
        .trim(),
        "service/cache created"
    );
    let cluster_ip = jsonpath(
        &cluster,
        &["service", "cache", "-n", "dev"],
        "{.spec.clusterIP}",
    )
    .await;
    assert!(
        cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "a ClusterIP was allocated: {cluster_ip:?}"
    );

    assert_eq!(
        ok(&[
            "run",
            "box",
            "-n",
            "dev",
            "--image=busybox",
            "--labels=tier=debug",
            "--",
            "sleep",
            "3600"
        ])
        .await
        .trim(),
        "pod/box created"
    );
    let pod = ["pod", "box", "-n", "dev"];
    assert_eq!(
        jsonpath(
            &cluster,
            &pod,
            "{.spec.containers[0].image} {.spec.containers[0].args} {.metadata.labels.tier}"
        )
        .await,
        r#"busybox ["sleep","3600"] debug"#
    );
    assert_eq!(jsonpath(&cluster, &pod, "{.status.phase}").await, "Pending");

    assert_eq!(
        ok(&[
            "expose",
            "deployment",
            "api",
            "-n",
            "dev",
            "--port=80",
            "--target-port=8080"
        ])
        .await
        .trim(),
        "service/api exposed"
    );
    let svc = ["service", "api", "-n", "dev"];
    assert_eq!(
        jsonpath(
            &cluster,
            &svc,
            "{.spec.selector.app} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.type}"
        )
        .await,
        "api 80 8080 ClusterIP"
    );

    // A server-side dry run answers like a create and stores nothing.
    let out = kubectl(
        &cluster,
        &[
            "create",
            "deployment",
            "dry",
            "-n",
            "dev",
            "--image=nginx",
            "--dry-run=server",
            "-o",
            "name",
        ],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "deployment.apps/dry");
    let err = kubectl(&cluster, &["get", "deployment", "dry", "-n", "dev"])
        .await
        .err();
    assert!(err.contains(r#"deployments.apps "dry" not found"#), "{err}");

    // `create -f` from stdin; creating it again is AlreadyExists.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-file\n  namespace: dev\ndata:\n  k: v\n";
    let out = kubectl_stdin(&cluster, &["create", "-f", "-"], cm)
        .await
        .ok();
    assert_eq!(out.trim(), "configmap/from-file created");
    let diff = kubectl_stdin(&cluster, &["diff", "-f", "-"], cm).await;
    assert_eq!(
        (diff.status.code(), diff.stdout.as_str()),
        (Some(0), ""),
        "an unchanged object shows no difference"
    );
    let err = kubectl_stdin(&cluster, &["create", "-f", "-"], cm)
        .await
        .err();
    assert!(
        err.contains(r#"configmaps "from-file" already exists"#),
        "{err}"
    );
}

/// Three pods in two namespaces, labelled for selector tests.
const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: blue
---
apiVersion: v1
kind: Pod
metadata:
  name: front
  namespace: default
  labels: {app: shop, tier: frontend}
spec:
  containers:
  - name: c
    image: nginx
---
apiVersion: v1
kind: Pod
metadata:
  name: back
  namespace: default
  labels: {app: shop, tier: backend}
spec:
  containers:
  - name: c
    image: redis
---
apiVersion: v1
kind: Pod
metadata:
  name: lone
  namespace: blue
  labels: {app: other}
spec:
  containers:
  - name: c
    image: busybox
"#;

/// Asserts that `describe` output has each `Key:  value` line (first
/// occurrence of the key, any indentation and padding).
#[track_caller]
fn assert_fields(describe: &str, fields: &[(&str, &str)]) {
    for (key, want) in fields {
        let prefix = format!("{key}:");
        let got = describe
            .lines()
            .map(str::trim_start)
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim);
        assert_eq!(got, Some(*want), "{key}: in\n{describe}");
    }
}

/// The NAME column of a `kubectl get` table, header excluded.
fn names(table: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.split_whitespace().position(|h| h == "NAME").unwrap();
    let mut names: Vec<String> = lines
        .filter_map(|l| l.split_whitespace().nth(col).map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_tables_yaml_json_jsonpath_and_names_and_filters_by_selectors() {
    let cluster = TestCluster::start().await;
    kubectl_stdin(&cluster, &["create", "-f", "-"], PODS)
        .await
        .ok();

    let table = kubectl(&cluster, &["get", "pods"]).await.ok();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(names(&table), ["back", "front"]);
    let front = table.lines().find(|l| l.starts_with("front")).unwrap();
    let cols: Vec<&str> = front.split_whitespace().collect();
    assert_eq!(&cols[..4], ["front", "0/1", "Pending", "0"], "{table}");

    let wide = kubectl(&cluster, &["get", "pods", "-o", "wide"]).await.ok();
    let header = wide.lines().next().unwrap();
    for col in ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] {
        assert!(header.contains(col), "{wide}");
    }

    let yaml = kubectl(&cluster, &["get", "pod", "front", "-o", "yaml"])
        .await
        .ok();
    assert!(yaml.starts_with("apiVersion: v1\nkind: Pod\n"), "{yaml}");
    assert!(yaml.contains("  name: front\n"), "{yaml}");
    assert!(yaml.contains("image: nginx"), "{yaml}");

    let json = kubectl(&cluster, &["get", "pods", "-o", "json"]).await.ok();
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["items"][0]["kind"], "Pod");

    assert_eq!(
        kubectl(&cluster, &["get", "pods", "-o", "name"]).await.ok(),
        "pod/back\npod/front\n"
    );
    assert_eq!(
        jsonpath(&cluster, &["pods"], "{.items[*].metadata.name}").await,
        "back front"
    );

    // Label selectors: equality, inequality and set-based.
    let by_label = |selector: &'static str| {
        let cluster = &cluster;
        async move {
            kubectl(
                cluster,
                &["get", "pods", "-A", "-l", selector, "-o", "name"],
            )
            .await
            .ok()
        }
    };
    assert_eq!(by_label("tier=frontend").await, "pod/front\n");
    assert_eq!(by_label("app=shop,tier!=frontend").await, "pod/back\n");
    assert_eq!(
        by_label("app in (shop,other)").await,
        "pod/lone\npod/back\npod/front\n",
        "ordered by namespace, then name"
    );
    assert_eq!(by_label("app notin (shop)").await, "pod/lone\n");
    assert_eq!(by_label("!tier").await, "pod/lone\n");
    let none = kubectl(&cluster, &["get", "pods", "-l", "app=nothing"]).await;
    assert!(none.status.success());
    assert_eq!(
        none.stderr.trim(),
        "No resources found in default namespace."
    );

    // All namespaces: the NAMESPACE column comes first.
    let all = kubectl(&cluster, &["get", "pods", "-A"]).await.ok();
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(2).eq(["blue", "lone"])),
        "{all}"
    );

    // Field selectors: by name, and by status.phase once a pod reports one.
    assert_eq!(
        kubectl(
            &cluster,
            &[
                "get",
                "pods",
                "--field-selector",
                "metadata.name=back",
                "-o",
                "name"
            ]
        )
        .await
        .ok(),
        "pod/back\n"
    );
    kubectl(
        &cluster,
        &[
            "patch",
            "pod",
            "front",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
    )
    .await
    .ok();
    assert_eq!(
        kubectl(
            &cluster,
            &[
                "get",
                "pods",
                "-A",
                "--field-selector",
                "status.phase=Running",
                "-o",
                "name"
            ]
        )
        .await
        .ok(),
        "pod/front\n"
    );
    assert_eq!(
        kubectl(
            &cluster,
            &[
                "get",
                "pods",
                "-A",
                "--field-selector",
                "status.phase!=Running,metadata.namespace=default",
                "-o",
                "name"
            ]
        )
        .await
        .ok(),
        "pod/back\n"
    );
    let err = kubectl(
        &cluster,
        &["get", "pods", "--field-selector", "spec.image=nginx"],
    )
    .await
    .err();
    assert!(
        err.contains(r#"field label not supported: spec.image"#),
        "{err}"
    );
}

/// The lines a background kubectl prints (stdout or stderr).
struct WatchRows<R> {
    lines: tokio::io::Lines<BufReader<R>>,
    seen: Vec<String>,
}

impl<R: tokio::io::AsyncRead + Unpin> WatchRows<R> {
    /// The next line, within [`COMMAND_TIMEOUT`].
    async fn next(&mut self) -> String {
        let line = tokio::time::timeout(COMMAND_TIMEOUT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no new line from kubectl; so far: {:?}", self.seen))
            .unwrap()
            .expect("kubectl still running");
        self.seen.push(line.clone());
        line
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_a_new_row_when_a_pod_changes() {
    let cluster = TestCluster::start().await;
    kubectl_stdin(&cluster, &["create", "-f", "-"], PODS)
        .await
        .ok();

    let mut watch = command(&cluster, &["get", "pods", "-w"]).spawn().unwrap();
    let mut rows = WatchRows {
        lines: BufReader::new(watch.stdout.take().unwrap()).lines(),
        seen: Vec::new(),
    };
    // The initial table: a header and both pods.
    assert!(rows.next().await.starts_with("NAME"));
    rows.next().await;
    rows.next().await;

    kubectl(
        &cluster,
        &[
            "patch",
            "pod",
            "back",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Failed"}}"#,
        ],
    )
    .await
    .ok();
    let row = rows.next().await;
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["back", "0/1", "Failed"], "{:?}", rows.seen);

    kubectl(&cluster, &["label", "pod", "front", "seen=yes"])
        .await
        .ok();
    let row = rows.next().await;
    assert!(row.starts_with("front "), "{:?}", rows.seen);

    watch.start_kill().unwrap();
    watch.wait().await.unwrap();
}

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-1
  labels:
    kubernetes.io/hostname: worker-1
    node-role.kubernetes.io/worker: ""
spec:
  podCIDR: 10.244.1.0/24
status:
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  addresses:
  - {type: InternalIP, address: 192.168.56.11}
  - {type: Hostname, address: worker-1}
  conditions:
  - type: Ready
    status: "True"
    reason: KubeletReady
    message: kubelet is posting ready status
    lastHeartbeatTime: "2025-01-01T00:00:00Z"
    lastTransitionTime: "2025-01-01T00:00:00Z"
  nodeInfo:
    kubeletVersion: v1.32.0
    containerRuntimeVersion: containerd://1.6.20
    osImage: Debian GNU/Linux 12
    kernelVersion: 6.1.0
    architecture: amd64
    operatingSystem: linux
    machineID: m
    systemUUID: s
    bootID: b
    kubeProxyVersion: v1.32.0
"#;

const EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata:
  name: front.pulled
  namespace: default
involvedObject:
  apiVersion: v1
  kind: Pod
  name: front
  namespace: default
reason: Pulled
message: Successfully pulled image "nginx"
type: Normal
source:
  component: kubelet
  host: worker-1
count: 1
firstTimestamp: "2025-01-01T00:00:00Z"
lastTimestamp: "2025-01-01T00:00:00Z"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_usual_sections_and_the_events_about_an_object() {
    let cluster = TestCluster::start().await;
    kubectl_stdin(&cluster, &["create", "-f", "-"], PODS)
        .await
        .ok();
    // The event's involvedObject.uid must match the pod's for describe.
    let uid = jsonpath(&cluster, &["pod", "front"], "{.metadata.uid}").await;
    let event = EVENT.replace(
        "  namespace: default\nreason",
        &format!("  namespace: default\n  uid: {uid}\nreason"),
    );
    let event_file = manifest(&cluster, "event.yaml", &event);
    let out = kubectl(&cluster, &["create", "-f", event_file.to_str().unwrap()])
        .await
        .ok();
    assert_eq!(out.trim(), "event/front.pulled created");

    let pod = kubectl(&cluster, &["describe", "pod", "front"]).await.ok();
    assert_fields(
        &pod,
        &[
            ("Name", "front"),
            ("Namespace", "default"),
            ("Node", "<none>"),
            ("Labels", "app=shop"),
            ("Status", "Pending"),
            ("Image", "nginx"),
            ("QoS Class", "BestEffort"),
        ],
    );
    assert!(pod.contains("\nContainers:\n  c:\n"), "{pod}");
    let events = pod.split("\nEvents:").nth(1).unwrap();
    let row: Vec<&str> = events.lines().nth(3).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["Normal", "Pulled"], "{pod}");
    assert_eq!(
        row[3..],
        ["kubelet", "Successfully", "pulled", "image", "\"nginx\""],
        "{pod}"
    );

    let events = kubectl(&cluster, &["get", "events"]).await.ok();
    let header: Vec<&str> = events.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(events.contains("pod/front"), "{events}");

    kubectl(
        &cluster,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=3",
        ],
    )
    .await
    .ok();
    let deploy = kubectl(&cluster, &["describe", "deployment", "web"])
        .await
        .ok();
    assert_fields(
        &deploy,
        &[
            ("Name", "web"),
            ("Selector", "app=web"),
            (
                "Replicas",
                "3 desired | 0 updated | 0 total | 0 available | 0 unavailable",
            ),
            ("StrategyType", "RollingUpdate"),
            (
                "RollingUpdateStrategy",
                "25% max unavailable, 25% max surge",
            ),
            ("Image", "nginx:1.27"),
        ],
    );
    assert!(deploy.contains("\nPod Template:\n"), "{deploy}");

    kubectl(
        &cluster,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ],
    )
    .await
    .ok();
    let svc = kubectl(&cluster, &["describe", "service", "web"])
        .await
        .ok();
    assert_fields(
        &svc,
        &[
            ("Name", "web"),
            ("Selector", "app=web"),
            ("Type", "ClusterIP"),
            ("IP Family Policy", "SingleStack"),
            ("IP Families", "IPv4"),
            ("Port", "<unset>  80/TCP"),
            ("TargetPort", "8080/TCP"),
            ("Session Affinity", "None"),
        ],
    );

    kubectl_stdin(&cluster, &["create", "-f", "-"], NODE)
        .await
        .ok();
    let node = kubectl(&cluster, &["describe", "node", "worker-1"])
        .await
        .ok();
    assert_fields(
        &node,
        &[
            ("Name", "worker-1"),
            ("Roles", "worker"),
            ("Taints", "<none>"),
            ("Unschedulable", "false"),
            ("InternalIP", "192.168.56.11"),
            ("Kubelet Version", "v1.32.0"),
            ("PodCIDR", "10.244.1.0/24"),
            ("PodCIDRs", "10.244.1.0/24"),
            ("Non-terminated Pods", "(0 in total)"),
        ],
    );
    for section in [
        "\nConditions:\n",
        "\nCapacity:\n",
        "\nAllocated resources:\n",
    ] {
        assert!(node.contains(section), "missing {section:?} in:\n{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_name_label_force_and_cascade() {
    let cluster = TestCluster::start().await;
    kubectl_stdin(&cluster, &["create", "-f", "-"], PODS)
        .await
        .ok();

    // By name.
    let out = kubectl(&cluster, &["delete", "pod", "lone", "-n", "blue"])
        .await
        .ok();
    assert_eq!(out.trim(), r#"pod "lone" deleted"#);

    // A pod bound to a node waits for its kubelet: without --force it stays
    // Terminating with a deletionTimestamp.
    let bound = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\n  labels: {app: bound}\nspec:\n  nodeName: worker-1\n  containers:\n  - name: c\n    image: nginx\n";
    kubectl_stdin(&cluster, &["create", "-f", "-"], bound)
        .await
        .ok();
    let out = kubectl(&cluster, &["delete", "pod", "bound", "--wait=false"])
        .await
        .ok();
    assert_eq!(out.trim(), r#"pod "bound" deleted"#);
    let pod = ["pod", "bound"];
    let deletion = jsonpath(&cluster, &pod, "{.metadata.deletionTimestamp}").await;
    assert!(!deletion.is_empty(), "deletionTimestamp is set");
    assert_eq!(
        jsonpath(&cluster, &pod, "{.metadata.deletionGracePeriodSeconds}").await,
        "30"
    );
    let table = kubectl(&cluster, &["get", "pod", "bound"]).await.ok();
    assert!(table.contains("Terminating"), "{table}");
    let out = kubectl(
        &cluster,
        &["delete", "pod", "bound", "--grace-period=0", "--force"],
    )
    .await;
    assert!(
        out.stderr
            .contains("Immediate deletion does not wait for confirmation"),
        "{}",
        out.stderr
    );
    assert_eq!(out.ok().trim(), r#"pod "bound" force deleted"#);
    let err = kubectl(&cluster, &["get", "pod", "bound"]).await.err();
    assert!(err.contains(r#"pods "bound" not found"#), "{err}");

    // By label (pods without a node go at once).
    let out = kubectl(&cluster, &["delete", "pods", "-l", "app=shop"])
        .await
        .ok();
    assert_eq!(out, "pod \"back\" deleted\npod \"front\" deleted\n");
    let none = kubectl(&cluster, &["get", "pods"]).await;
    assert_eq!(
        none.stderr.trim(),
        "No resources found in default namespace."
    );

    // --cascade: background removes the object at once; orphan and
    // foreground leave it with a finalizer until the garbage collector (not
    // running here) has orphaned or removed its dependents.
    for name in ["orphaned", "background", "foreground"] {
        kubectl(&cluster, &["create", "deployment", name, "--image=nginx"])
            .await
            .ok();
    }
    for (name, cascade) in [
        ("orphaned", "--cascade=orphan"),
        ("background", "--cascade=background"),
        ("foreground", "--cascade=foreground"),
    ] {
        let out = kubectl(
            &cluster,
            &["delete", "deployment", name, cascade, "--wait=false"],
        )
        .await
        .ok();
        assert_eq!(out.trim(), format!(r#"deployment.apps "{name}" deleted"#));
    }
    assert_eq!(
        kubectl(&cluster, &["get", "deployments", "-o", "name"])
            .await
            .ok(),
        "deployment.apps/foreground\ndeployment.apps/orphaned\n"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &["deployments"],
            "{range .items[*]}{.metadata.name}={.metadata.finalizers} {end}"
        )
        .await,
        r#"foreground=["foregroundDeletion"] orphaned=["orphan"] "#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_annotate_patch_replace_edit_scale_and_set_image_change_the_object() {
    let cluster = TestCluster::start().await;
    kubectl(
        &cluster,
        &["create", "deployment", "web", "--image=nginx:1.25"],
    )
    .await
    .ok();
    let deploy = ["deployment", "web"];

    // label: add, refuse to overwrite, overwrite, remove.
    let out = kubectl(&cluster, &["label", "deployment", "web", "env=dev"])
        .await
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web labeled");
    let err = kubectl(&cluster, &["label", "deployment", "web", "env=prod"])
        .await
        .err();
    assert!(
        err.contains("'env' already has a value (dev), and --overwrite is false"),
        "{err}"
    );
    kubectl(
        &cluster,
        &["label", "deployment", "web", "env=prod", "--overwrite"],
    )
    .await
    .ok();
    assert_eq!(
        jsonpath(&cluster, &deploy, "{.metadata.labels.env}").await,
        "prod"
    );
    kubectl(&cluster, &["label", "deployment", "web", "env-"])
        .await
        .ok();
    assert_eq!(
        jsonpath(&cluster, &deploy, "{.metadata.labels}").await,
        r#"{"app":"web"}"#
    );
    let out = kubectl(
        &cluster,
        &["annotate", "deployment", "web", "note=first rollout"],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "deployment.apps/web annotated");
    assert_eq!(
        jsonpath(&cluster, &deploy, "{.metadata.annotations.note}").await,
        "first rollout"
    );

    // patch: strategic merge adds a container by name, merge replaces the
    // list, JSON patch edits by path.
    let out = kubectl(
        &cluster,
        &[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
        ],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "deployment.apps/web patched");
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[*].name}"
        )
        .await,
        "sidecar nginx",
        "a strategic merge puts new list items first, as upstream does"
    );
    kubectl(
        &cluster,
        &[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"busybox:1.36"},{"op":"add","path":"/metadata/labels/patched","value":"json"}]"#,
        ],
    )
    .await
    .ok();
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[0].image} {.metadata.labels.patched}"
        )
        .await,
        "busybox:1.36 json"
    );
    kubectl(
        &cluster,
        &[
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"nginx:1.26"}]}}}}"#,
        ],
    )
    .await
    .ok();
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[*].name}"
        )
        .await,
        "only"
    );
    let out = kubectl(
        &cluster,
        &[
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"json"}}}"#,
        ],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");

    // scale, set image.
    let out = kubectl(&cluster, &["scale", "deployment", "web", "--replicas=5"])
        .await
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    assert_eq!(jsonpath(&cluster, &deploy, "{.spec.replicas}").await, "5");
    let out = kubectl(
        &cluster,
        &["set", "image", "deployment/web", "only=nginx:1.27"],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "deployment.apps/web image updated");
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[0].image}"
        )
        .await,
        "nginx:1.27"
    );

    // edit with a non-interactive editor.
    // The quotes make kubectl run the editor through a shell.
    let mut edit = command(&cluster, &["edit", "deployment", "web"]);
    edit.env("EDITOR", "sed -i 's/replicas: 5/replicas: 1/'");
    let out = run(edit, None).await.ok();
    assert_eq!(out.trim(), "deployment.apps/web edited");
    assert_eq!(jsonpath(&cluster, &deploy, "{.spec.replicas}").await, "1");
    let mut edit = command(&cluster, &["edit", "deployment", "web"]);
    edit.env("EDITOR", "sed -i 's/replicas: 1/replicas: 3/'");
    run(edit, None).await.ok();
    assert_eq!(jsonpath(&cluster, &deploy, "{.spec.replicas}").await, "3");

    // replace -f: the whole object is the file's.
    let yaml = kubectl(&cluster, &["get", "deployment", "web", "-o", "yaml"])
        .await
        .ok();
    let replaced = yaml.replace("nginx:1.27", "nginx:1.28");
    let out = kubectl_stdin(&cluster, &["replace", "-f", "-"], &replaced)
        .await
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web replaced");
    assert_eq!(
        jsonpath(
            &cluster,
            &deploy,
            "{.spec.template.spec.containers[0].image}"
        )
        .await,
        "nginx:1.28"
    );
    // Replacing with the stale resourceVersion is a conflict.
    let err = kubectl_stdin(&cluster, &["replace", "-f", "-"], &replaced)
        .await
        .err();
    assert!(
        err.contains("the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_a_condition_is_met_or_the_object_is_deleted() {
    let cluster = TestCluster::start().await;
    kubectl(&cluster, &["run", "app", "--image=nginx"])
        .await
        .ok();

    // No condition yet: wait times out with upstream's message.
    let err = kubectl(
        &cluster,
        &["wait", "pod/app", "--for=condition=Ready", "--timeout=1s"],
    )
    .await
    .err();
    assert!(
        err.contains("timed out waiting for the condition on pods/app"),
        "{err}"
    );

    kubectl(
        &cluster,
        &[
            "patch",
            "pod",
            "app",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
        ],
    )
    .await
    .ok();
    let out = kubectl(
        &cluster,
        &[
            "wait",
            "pod/app",
            "--for=condition=Ready=false",
            "--timeout=10s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "pod/app condition met");
    let out = kubectl(
        &cluster,
        &[
            "wait",
            "pod/app",
            "--for=jsonpath={.status.phase}=Pending",
            "--timeout=10s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "pod/app condition met");

    // wait --for=delete returns once another client deletes the object.
    // The pod is deleted only after the waiter's watch is open (it logs the
    // request at -v=6), so the waiter sees the deletion rather than nothing.
    let mut waiter = command(
        &cluster,
        &["wait", "pod/app", "--for=delete", "--timeout=25s", "-v=6"],
    )
    .spawn()
    .unwrap();
    let mut log = WatchRows {
        lines: BufReader::new(waiter.stderr.take().unwrap()).lines(),
        seen: Vec::new(),
    };
    while !log.next().await.contains("watch=true") {}
    kubectl(&cluster, &["delete", "pod", "app", "--wait=false"])
        .await
        .ok();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, waiter.wait_with_output())
        .await
        .expect("kubectl wait --for=delete returns")
        .unwrap();
    assert!(out.status.success(), "{:?}", log.seen);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pod/app condition met"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_explain_version_and_events_commands_work() {
    let cluster = TestCluster::start().await;

    let resources = kubectl(&cluster, &["api-resources"]).await.ok();
    let header: Vec<&str> = resources
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for row in [
        ["pods", "po", "v1", "true", "Pod"],
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["nodes", "no", "v1", "false", "Node"],
        ["services", "svc", "v1", "true", "Service"],
    ] {
        assert!(
            resources
                .lines()
                .any(|l| l.split_whitespace().eq(row.iter().copied())),
            "no {row:?} in:\n{resources}"
        );
    }
    let namespaced = kubectl(
        &cluster,
        &["api-resources", "--namespaced=false", "-o", "name"],
    )
    .await
    .ok();
    assert!(namespaced.lines().any(|l| l == "nodes"), "{namespaced}");
    assert!(!namespaced.lines().any(|l| l == "pods"), "{namespaced}");

    let versions = kubectl(&cluster, &["api-versions"]).await.ok();
    for v in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"] {
        assert!(versions.lines().any(|l| l == v), "no {v} in:\n{versions}");
    }

    let explain = kubectl(&cluster, &["explain", "pod.spec.containers"])
        .await
        .ok();
    for text in [
        "KIND:       Pod",
        "VERSION:    v1",
        "FIELD: containers <[]Container>",
        "DESCRIPTION:",
        "FIELDS:",
        "  image\t<string>",
        "  name\t<string> -required-",
    ] {
        assert!(explain.contains(text), "missing {text:?} in:\n{explain}");
    }

    let version = kubectl(&cluster, &["version", "-o", "json"]).await.ok();
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert!(
        version["clientVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.32.")),
        "{version}"
    );
    assert!(
        version["serverVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{version}"
    );
    let version = kubectl(&cluster, &["version"]).await.ok();
    assert!(version.contains("Server Version: v1."), "{version}");

    let none = kubectl(&cluster, &["get", "events"]).await;
    assert!(none.status.success(), "{}", none.stderr);
    assert_eq!(
        none.stderr.trim(),
        "No resources found in default namespace."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_uncordon_and_taint_a_node() {
    let cluster = TestCluster::start().await;
    kubectl_stdin(&cluster, &["create", "-f", "-"], NODE)
        .await
        .ok();
    let nodes = kubectl(&cluster, &["get", "nodes"]).await.ok();
    let row: Vec<&str> = nodes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["worker-1", "Ready", "worker"], "{nodes}");

    let out = kubectl(&cluster, &["cordon", "worker-1"]).await.ok();
    assert_eq!(out.trim(), "node/worker-1 cordoned");
    assert_eq!(
        jsonpath(&cluster, &["node", "worker-1"], "{.spec.unschedulable}").await,
        "true"
    );
    let nodes = kubectl(&cluster, &["get", "nodes"]).await.ok();
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    let out = kubectl(&cluster, &["uncordon", "worker-1"]).await.ok();
    assert_eq!(out.trim(), "node/worker-1 uncordoned");
    let nodes = kubectl(&cluster, &["get", "nodes"]).await.ok();
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");

    let out = kubectl(
        &cluster,
        &["taint", "nodes", "worker-1", "dedicated=gpu:NoSchedule"],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "node/worker-1 tainted");
    let describe = kubectl(&cluster, &["describe", "node", "worker-1"])
        .await
        .ok();
    assert!(
        describe.contains("Taints:             dedicated=gpu:NoSchedule"),
        "{describe}"
    );
    let out = kubectl(
        &cluster,
        &["taint", "nodes", "worker-1", "dedicated=gpu:NoSchedule-"],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "node/worker-1 untainted");
    assert_eq!(
        jsonpath(&cluster, &["node", "worker-1"], "{.spec.taints}").await,
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_upstreams_messages_and_changes_nothing() {
    let cluster = TestCluster::start().await;

    let err = kubectl(&cluster, &["create", "configmap", "Bad_Name"])
        .await
        .err();
    assert!(
        err.contains(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"#),
        "{err}"
    );

    let typo = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\nspec:\n  replicaz: 3\n  selector:\n    matchLabels: {app: typo}\n  template:\n    metadata:\n      labels: {app: typo}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n";
    for verb in ["create", "apply"] {
        let err = kubectl_stdin(&cluster, &[verb, "-f", "-"], typo)
            .await
            .err();
        assert!(
            err.contains(r#"strict decoding error: unknown field "spec.replicaz""#),
            "{verb}: {err}"
        );
    }
    let err = kubectl(&cluster, &["get", "deployment", "typo"])
        .await
        .err();
    assert!(
        err.contains(r#"deployments.apps "typo" not found"#),
        "{err}"
    );
    // Told not to validate, the server drops the unknown field.
    let out = kubectl_stdin(&cluster, &["create", "--validate=false", "-f", "-"], typo)
        .await
        .ok();
    assert_eq!(out.trim(), "deployment.apps/typo created");

    let broken = manifest(
        &cluster,
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n data: [\n",
    );
    let err = kubectl(&cluster, &["apply", "-f", broken.to_str().unwrap()])
        .await
        .err();
    assert!(err.contains("error converting YAML to JSON"), "{err}");
    assert!(err.contains("broken.yaml"), "{err}");

    let err = kubectl(&cluster, &["create", "configmap", "x", "-n", "nope"])
        .await
        .err();
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");
    // A namespace being deleted (Terminating: no namespace controller here)
    // takes no new objects.
    kubectl(&cluster, &["create", "namespace", "gone"])
        .await
        .ok();
    let out = kubectl(&cluster, &["delete", "namespace", "gone", "--wait=false"])
        .await
        .ok();
    assert_eq!(out.trim(), r#"namespace "gone" deleted"#);
    assert_eq!(
        jsonpath(&cluster, &["namespace", "gone"], "{.status.phase}").await,
        "Terminating"
    );
    let err = kubectl(&cluster, &["create", "configmap", "x", "-n", "gone"])
        .await
        .err();
    assert!(
        err.contains(r#"configmaps "x" is forbidden: unable to create new content in namespace gone because it is being terminated"#),
        "{err}"
    );
    let err = kubectl(&cluster, &["get", "configmaps", "-n", "nope", "-o", "name"]).await;
    assert_eq!(err.ok(), "");
}

/// kubectl's `-v=8` log line for a protobuf request body.
fn sent_protobuf(stderr: &str) -> bool {
    stderr.contains("Content-Type: application/vnd.kubernetes.protobuf")
}

/// `kubectl args… -v=8`, which must succeed and must have sent protobuf
/// (kubectl does for built-in types); returns stdout.
async fn kubectl_protobuf(cluster: &TestCluster, args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.push("-v=8");
    let out = kubectl(cluster, &args).await;
    assert!(
        sent_protobuf(&out.stderr),
        "kubectl did not send protobuf:\n{}",
        out.stderr
    );
    out.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_and_the_objects_are_stored_as_upstream_json() {
    let cluster = TestCluster::start().await;
    kubectl_protobuf(&cluster, &["create", "namespace", "demo"]).await;
    kubectl_protobuf(
        &cluster,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--port=8080",
            "-n",
            "demo",
        ],
    )
    .await;
    kubectl_protobuf(
        &cluster,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=b",
            "-n",
            "demo",
        ],
    )
    .await;
    // nodePort 0 is always on the wire (a plain int32): "pick one".
    kubectl_protobuf(
        &cluster,
        &[
            "create",
            "service",
            "nodeport",
            "web",
            "--tcp=80:8080",
            "-n",
            "demo",
        ],
    )
    .await;

    assert_eq!(
        jsonpath(&cluster, &["namespace", "demo"], "{.status.phase}").await,
        "Active"
    );
    let deploy = kubectl(
        &cluster,
        &["get", "deployment", "web", "-n", "demo", "-o", "json"],
    )
    .await
    .ok();
    let deploy: serde_json::Value = serde_json::from_str(&deploy).unwrap();
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "web");
    // Plain Go fields that upstream's JSON omits when zero stay omitted.
    for absent in [
        "/spec/paused",
        "/spec/minReadySeconds",
        "/spec/template/spec/hostNetwork",
        "/spec/template/spec/containers/0/stdin",
    ] {
        assert!(deploy.pointer(absent).is_none(), "{absent} in {deploy:#}");
    }
    assert_eq!(
        jsonpath(&cluster, &["secret", "s", "-n", "demo"], "{.data.a}").await,
        "Yg==",
        "base64 of \"b\""
    );
    let svc = kubectl(
        &cluster,
        &["get", "service", "web", "-n", "demo", "-o", "json"],
    )
    .await
    .ok();
    let svc: serde_json::Value = serde_json::from_str(&svc).unwrap();
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["targetPort"], 8080, "{svc:#}");
    let node_port = port["nodePort"].as_i64().unwrap_or(0);
    assert!((30000..=32767).contains(&node_port), "{svc:#}");
}

/// A kubeconfig that presents only `token` (no client certificate).
fn token_kubeconfig(cluster: &TestCluster, name: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem());
    let path = manifest(
        cluster,
        name,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            cluster.addr()
        ),
    );
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_issues_a_jwt_that_authenticates_until_its_service_account_goes() {
    let cluster = TestCluster::start().await;
    kubectl(&cluster, &["create", "serviceaccount", "builder"])
        .await
        .ok();
    let sa_uid = jsonpath(&cluster, &["sa", "builder"], "{.metadata.uid}").await;

    let token = kubectl(&cluster, &["create", "token", "builder"])
        .await
        .ok();
    let token = token.trim();
    let claims = jwt_payload(token);
    assert_eq!(claims["sub"], "system:serviceaccount:default:builder");
    assert_eq!(claims["iss"], support::SERVICE_ACCOUNT_ISSUER);
    assert_eq!(claims["aud"][0], support::SERVICE_ACCOUNT_ISSUER);
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], sa_uid);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The token alone gets the user in: listing pods needs an authenticated user.
    let as_sa = token_kubeconfig(&cluster, "sa.conf", token);
    kubectl(&cluster, &["--kubeconfig", &as_sa, "get", "pods"])
        .await
        .ok();
    // A token with a foreign audience is not for this API.
    let vault = kubectl(
        &cluster,
        &["create", "token", "builder", "--audience", "vault"],
    )
    .await
    .ok();
    assert_eq!(jwt_payload(vault.trim())["aud"][0], "vault");
    let as_vault = token_kubeconfig(&cluster, "vault.conf", vault.trim());
    let err = kubectl(&cluster, &["--kubeconfig", &as_vault, "get", "pods"])
        .await
        .err();
    assert!(err.contains("Unauthorized"), "{err}");

    // Once the ServiceAccount is deleted its tokens stop working.
    kubectl(&cluster, &["delete", "serviceaccount", "builder"])
        .await
        .ok();
    let err = kubectl(&cluster, &["--kubeconfig", &as_sa, "get", "pods"])
        .await
        .err();
    assert!(err.contains("Unauthorized"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_checks_duration_service_account_and_bound_pod() {
    let cluster = TestCluster::start().await;
    let err = kubectl(&cluster, &["create", "token", "ghost"]).await.err();
    assert!(
        err.contains(r#"serviceaccounts "ghost" not found"#),
        "{err}"
    );
    kubectl(&cluster, &["create", "serviceaccount", "runner"])
        .await
        .ok();
    let err = kubectl(&cluster, &["create", "token", "runner", "--duration", "5m"])
        .await
        .err();
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let token = kubectl(&cluster, &["create", "token", "runner", "--duration", "2h"])
        .await
        .ok();
    let claims = jwt_payload(token.trim());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7200
    );

    let bound = ["create", "token", "runner", "--bound-object-kind", "Pod"];
    let err = kubectl(
        &cluster,
        &[&bound[..], &["--bound-object-name", "job"]].concat(),
    )
    .await
    .err();
    assert!(err.contains(r#"pods "job" not found"#), "{err}");
    kubectl_stdin(
        &cluster,
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: job}\nspec:\n  serviceAccountName: runner\n  containers: [{name: c, image: busybox}]\n",
    )
    .await
    .ok();
    let pod_uid = jsonpath(&cluster, &["pod", "job"], "{.metadata.uid}").await;
    let token = kubectl(
        &cluster,
        &[&bound[..], &["--bound-object-name", "job"]].concat(),
    )
    .await
    .ok();
    let claims = jwt_payload(token.trim());
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "job");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], pod_uid);
    let as_pod = token_kubeconfig(&cluster, "pod.conf", token.trim());
    kubectl(&cluster, &["--kubeconfig", &as_pod, "get", "pods"])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_without_a_signing_key_is_not_found_as_upstream() {
    let cluster =
        TestCluster::start_with(&["--service-account-issuer=https://kubernetes.default.svc"]).await;
    kubectl(&cluster, &["create", "serviceaccount", "builder"])
        .await
        .ok();
    let err = kubectl(&cluster, &["create", "token", "builder"])
        .await
        .err();
    assert!(
        err.contains("the server could not find the requested resource"),
        "{err}"
    );
}

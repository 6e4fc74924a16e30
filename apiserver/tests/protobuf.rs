//! Real kubectl 1.32 sends built-in objects as Kubernetes protobuf
//! (`application/vnd.kubernetes.protobuf`): `create namespace|deployment|
//! secret|service` against an in-process etcd-lite member and apiserver must work,
//! and `kubectl get` must show what was created.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use clap::Parser;
use kube_apiserver::config::Flags;
use kube_apiserver::pki::{self, CertificateAuthority};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(30);

/// etcd-lite and the apiserver on loopback port 0, and an admin kubeconfig.
struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _etcd: etcd_lite::Member,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Polls `check` until it holds, or fails the test after `TIMEOUT`.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();

    let (client, client_addr) = bind().await;
    let (peer, peer_addr) = bind().await;
    let etcd_cfg = etcd_lite::Config::try_parse_from([
        "etcd-lite".to_string(),
        "--name=m0".into(),
        format!("--data-dir={}", dir.path().join("etcd").display()),
        format!("--listen-client-urls=http://{client_addr}"),
        format!("--advertise-client-urls=http://{client_addr}"),
        format!("--listen-peer-urls=http://{peer_addr}"),
        format!("--initial-advertise-peer-urls=http://{peer_addr}"),
        format!("--initial-cluster=m0=http://{peer_addr}"),
        "--heartbeat-interval=50".into(),
        "--election-timeout=300".into(),
    ])
    .unwrap()
    .validate()
    .unwrap();
    let etcd = etcd_lite::Member::start(
        etcd_cfg,
        etcd_lite::Listeners {
            client: vec![client],
            peer: vec![peer],
        },
    )
    .await
    .unwrap();
    let endpoint = format!("http://{client_addr}");
    wait_for("etcd-lite to elect itself", || {
        let endpoint = endpoint.clone();
        async move {
            match etcd_client::Client::connect([endpoint], None).await {
                Ok(mut c) => c.get("health", None).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;

    let ca = CertificateAuthority::new("kubernetes").unwrap();
    let serving = ca
        .issue_serving(
            "kube-apiserver",
            &["127.0.0.1".parse().unwrap()],
            &["localhost"],
        )
        .unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.path().join("ca.crt"),
        dir.path().join("apiserver.crt"),
        dir.path().join("apiserver.key"),
    );
    ca.write(&ca_file, &dir.path().join("ca.key")).unwrap();
    serving.write(&cert_file, &key_file).unwrap();
    let admin = ca
        .issue_client("kubernetes-admin", &["system:masters"])
        .unwrap();

    let (listener, api_addr) = bind().await;
    let flags = Flags::try_parse_from([
        "kube-apiserver".to_string(),
        format!("--etcd-servers={endpoint}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", api_addr.port()),
        format!("--tls-cert-file={}", cert_file.display()),
        format!("--tls-private-key-file={}", key_file.display()),
        format!("--client-ca-file={}", ca_file.display()),
        format!("--cert-dir={}", dir.path().join("certs").display()),
        "--anonymous-auth=false".into(),
    ])
    .unwrap();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        kube_apiserver::run(flags, listener, async {
            let _ = stop.await;
        })
        .await
        .unwrap();
    });

    let kubeconfig = dir.path().join("admin.conf");
    pki::write_kubeconfig(
        &kubeconfig,
        &format!("https://{api_addr}"),
        ca.cert_pem(),
        &admin.cert_pem,
        &admin.key_pem,
        "kubernetes-admin",
        "kubernetes",
    )
    .unwrap();
    Cluster {
        dir,
        kubeconfig,
        shutdown: Some(shutdown),
        _etcd: etcd,
    }
}

impl Cluster {
    /// Runs `/usr/bin/kubectl` with a private HOME and cache directory.
    async fn kubectl(&self, args: &[&str]) -> Output {
        let home = self.dir.path().join("home");
        let mut cmd = Command::new("kubectl");
        cmd.env("HOME", &home)
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(home.join(".kube/cache"))
            .args(["--request-timeout", "20s"])
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("kubectl is installed"))
            .await
            .unwrap()
    }

    /// `kubectl args`, which must succeed; its stdout, and its stderr (where
    /// `-v=8` logs the requests).
    async fn kubectl_ok(&self, args: &[&str]) -> (String, String) {
        let out = self.kubectl(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{}",
            tail(&stderr)
        );
        (stdout, stderr)
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What kubectl logs at -v=8 for a protobuf request body.
fn sent_protobuf(stderr: &str) -> bool {
    stderr.contains("Content-Type: application/vnd.kubernetes.protobuf")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_and_the_objects_are_stored() {
    let cluster = start_cluster().await;

    let (_, log) = cluster
        .kubectl_ok(&["create", "namespace", "demo", "-v=8"])
        .await;
    assert!(
        sent_protobuf(&log),
        "kubectl did not send protobuf:\n{}",
        tail(&log)
    );
    let (_, log) = cluster
        .kubectl_ok(&[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--port=8080",
            "-n",
            "demo",
            "-v=8",
        ])
        .await;
    assert!(sent_protobuf(&log), "{}", tail(&log));
    let (_, log) = cluster
        .kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=b",
            "-n",
            "demo",
            "-v=8",
        ])
        .await;
    assert!(sent_protobuf(&log), "{}", tail(&log));

    let (ns, _) = cluster
        .kubectl_ok(&["get", "namespace", "demo", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(ns, "Active");
    let (deploy, _) = cluster
        .kubectl_ok(&["get", "deployment", "web", "-n", "demo", "-o", "json"])
        .await;
    let deploy: serde_json::Value = serde_json::from_str(&deploy).unwrap();
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "web");
    let (secret, _) = cluster
        .kubectl_ok(&[
            "get",
            "secret",
            "s",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.a}",
        ])
        .await;
    assert_eq!(secret, "Yg==", "base64 of \"b\"");

    // nodePort 0 is always on the wire (a non-pointer int32); the
    // allocator must read it as "pick one".
    let (_, log) = cluster
        .kubectl_ok(&[
            "create",
            "service",
            "nodeport",
            "web",
            "--tcp=80:8080",
            "-n",
            "demo",
            "-v=8",
        ])
        .await;
    assert!(sent_protobuf(&log), "{}", tail(&log));
    let (svc, _) = cluster
        .kubectl_ok(&["get", "service", "web", "-n", "demo", "-o", "json"])
        .await;
    let svc: serde_json::Value = serde_json::from_str(&svc).unwrap();
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["targetPort"], 8080, "{svc:#}");
    let node_port = port["nodePort"].as_i64().unwrap_or(0);
    assert!((30000..=32767).contains(&node_port), "{svc:#}");

    let (names, _) = cluster
        .kubectl_ok(&["get", "deployments,secrets", "-n", "demo", "-o", "name"])
        .await;
    assert!(names.contains("deployment.apps/web"), "{names}");
    assert!(names.contains("secret/s"), "{names}");
}

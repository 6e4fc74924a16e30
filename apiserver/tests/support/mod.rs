//! A whole control plane in one test process, for tests that drive the
//! apiserver from the outside (gRPC client, REST, kubectl): a single-member
//! etcd-lite and the real `kube_apiserver::run` on 127.0.0.1:0 with a test
//! PKI (cluster CA, serving certificate for 127.0.0.1, an admin client
//! certificate in `system:masters`, and an admin kubeconfig).
//!
//! Entry point: [`TestCluster::start`]. Dropping the cluster stops both.
//! Other crates' tests include this file with
//! `#[path = "../../apiserver/tests/support/mod.rs"] mod support;`.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube_apiserver::pki::{self, CertificateAuthority, IssuedCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long the cluster may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd-lite + kube-apiserver pair.
/// The `--service-account-issuer` (and so the API audience) of test clusters.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub struct TestCluster {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    etcd_url: String,
    /// The apiserver's command line, kept for [`TestCluster::restart_apiserver`].
    args: Vec<String>,
    ca: CertificateAuthority,
    admin: IssuedCert,
    kubeconfig: PathBuf,
    stop_apiserver: Option<oneshot::Sender<()>>,
    apiserver: Option<ApiserverTask>,
    etcd: Option<etcd_lite::Member>,
}

impl TestCluster {
    /// Starts a cluster with the default flags.
    pub async fn start() -> TestCluster {
        TestCluster::start_with(&[]).await
    }

    /// Starts a cluster with extra kube-apiserver flags
    /// (e.g. `--default-watch-cache-size=10`).
    pub async fn start_with(extra_flags: &[&str]) -> TestCluster {
        TestCluster::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), extra_flags).await
    }

    /// Starts a cluster whose apiserver listens on `ip` (port 0) and is
    /// certified for it, e.g. the host side of a test bridge that network
    /// namespaces reach.
    pub async fn start_on(ip: IpAddr, extra_flags: &[&str]) -> TestCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let (etcd, etcd_addr) = start_etcd(dir.path()).await;
        let etcd_url = format!("http://{etcd_addr}");

        let ca = CertificateAuthority::new("kubernetes").unwrap();
        let serving = ca
            .issue_serving(
                "kube-apiserver",
                &[IpAddr::V4(Ipv4Addr::LOCALHOST), ip],
                &["localhost", "kubernetes", "kubernetes.default.svc"],
            )
            .unwrap();
        let admin = ca
            .issue_client("kubernetes-admin", &["system:masters"])
            .unwrap();
        let pki_dir = dir.path().join("pki");
        let (cert, key, ca_file) = (
            pki_dir.join("apiserver.crt"),
            pki_dir.join("apiserver.key"),
            pki_dir.join("ca.crt"),
        );
        serving.write(&cert, &key).unwrap();
        pki::write_pem(&ca_file, ca.cert_pem(), false).unwrap();

        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let kubeconfig = dir.path().join("admin.conf");
        pki::write_kubeconfig(
            &kubeconfig,
            &format!("https://{addr}"),
            ca.cert_pem(),
            &admin.cert_pem,
            &admin.key_pem,
            "kubernetes-admin",
            "kubernetes",
        )
        .unwrap();

        // Service-account signing key, as kubeadm's sa.key.
        let sa_key = pki_dir.join("sa.key");
        std::fs::write(
            &sa_key,
            kube_apiserver::serviceaccount::testing::rsa_private_key_pem(),
        )
        .unwrap();

        let mut args = vec![
            "kube-apiserver".to_string(),
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={ip}"),
            format!("--advertise-address={ip}"),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--client-ca-file={}", ca_file.display()),
            format!("--cert-dir={}", dir.path().join("cert-dir").display()),
        ];
        // Extra --service-account-* flags replace the default ones.
        if !extra_flags
            .iter()
            .any(|f| f.starts_with("--service-account-"))
        {
            args.push(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"));
            args.push(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ));
        }
        args.extend(extra_flags.iter().map(|s| s.to_string()));
        let (stop_apiserver, apiserver) = spawn_apiserver(&args, listener);
        let cluster = TestCluster {
            dir,
            addr,
            etcd_url,
            args,
            ca,
            admin,
            kubeconfig,
            stop_apiserver: Some(stop_apiserver),
            apiserver: Some(apiserver),
            etcd: Some(etcd),
        };
        cluster.wait_ready().await;
        cluster
    }

    /// The admin kubeconfig (embedded CA, client certificate and key).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://<ip>:<port>`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` of the etcd-lite member, for tests that
    /// look at (or compact) the keyspace directly.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Stops the apiserver and starts a fresh one, same flags and address,
    /// on the same etcd: what it knows afterwards it read from etcd.
    pub async fn restart_apiserver(&mut self) {
        if let Some(stop) = self.stop_apiserver.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.apiserver.take() {
            let stopped = tokio::time::timeout(START_TIMEOUT, h).await;
            assert!(stopped.is_ok(), "kube-apiserver did not stop in time");
        }
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let (stop, handle) = spawn_apiserver(&self.args, listener);
        self.stop_apiserver = Some(stop);
        self.apiserver = Some(handle);
        self.wait_ready().await;
    }

    /// PEM of the cluster CA, which signed the serving and client certificates.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The admin client certificate (CN kubernetes-admin, O system:masters).
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin.cert_pem
    }

    pub fn admin_key_pem(&self) -> &str {
        &self.admin.key_pem
    }

    pub fn admin(&self) -> &IssuedCert {
        &self.admin
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Polls `GET /readyz` with the admin certificate until it answers 200.
    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(h) = &self.apiserver {
                assert!(!h.is_finished(), "kube-apiserver stopped while starting");
            }
            if let Ok(Ok((200, _))) =
                tokio::time::timeout(Duration::from_secs(5), self.https_get("/readyz")).await
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "kube-apiserver not ready within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One HTTP/1.1 GET as the admin: (status code, body).
    pub async fn https_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert_der()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![self.admin.cert_der()], self.admin.key_der())
        .unwrap();
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP response"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
        Ok((code, body.to_string()))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_apiserver.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.apiserver.take() {
            h.abort();
        }
        // The member's tasks end with the runtime; its data dir is the tempdir.
        drop(self.etcd.take());
    }
}

type ApiserverTask = JoinHandle<Result<(), kube_apiserver::RunError>>;

fn spawn_apiserver(args: &[String], listener: TcpListener) -> (oneshot::Sender<()>, ApiserverTask) {
    let flags = kube_apiserver::config::Flags::try_parse_from(args).unwrap();
    let (stop_apiserver, stopped) = oneshot::channel::<()>();
    let apiserver = tokio::spawn(kube_apiserver::run(flags, listener, async {
        let _ = stopped.await;
    }));
    (stop_apiserver, apiserver)
}

/// A single-member etcd-lite on 127.0.0.1:0, data in `dir/etcd`.
async fn start_etcd(dir: &Path) -> (etcd_lite::Member, SocketAddr) {
    let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (caddr, paddr) = (client.local_addr().unwrap(), peer.local_addr().unwrap());
    let config = etcd_lite::Config::try_parse_from([
        "etcd-lite".to_string(),
        "--name=test".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls=http://{caddr}"),
        format!("--advertise-client-urls=http://{caddr}"),
        format!("--listen-peer-urls=http://{paddr}"),
        format!("--initial-advertise-peer-urls=http://{paddr}"),
        format!("--initial-cluster=test=http://{paddr}"),
        "--heartbeat-interval=50".into(),
        "--election-timeout=300".into(),
    ])
    .unwrap()
    .validate()
    .unwrap();
    let member = tokio::time::timeout(
        START_TIMEOUT,
        etcd_lite::Member::start(
            config,
            etcd_lite::Listeners {
                client: vec![client],
                peer: vec![peer],
            },
        ),
    )
    .await
    .expect("etcd-lite starts in time")
    .unwrap();
    (member, caddr)
}

/// Polls `check` until it holds; false at `timeout`. For conditions that
/// have no event to wait on.
pub async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The payload of a JWT, base64url-decoded.
pub fn jwt_payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

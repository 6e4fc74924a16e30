//! The secure port's TLS and authentication end to end: a small HTTP/1.1
//! server on 127.0.0.1:0 built from `tls::server_config` answers `/whoami`
//! with the identity `auth::Authenticator` gives each request, and rustls
//! clients (and real kubectl) connect with client certificates, tokens or
//! nothing. `deploy/pki.sh` is checked with openssl and kubectl.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kube_apiserver::auth::{self, Authenticator};
use kube_apiserver::pki::{self, CertificateAuthority, IssuedCert};
use kube_apiserver::tls::{self, TlsOptions};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A running echo server: its address and the handshake failures it saw.
struct EchoServer {
    addr: SocketAddr,
    handshake_errors: mpsc::UnboundedReceiver<String>,
}

/// Serves `/whoami` over TLS: `200 <name> <groups,...>` or the Status code.
async fn start_echo_server(config: Arc<ServerConfig>, authn: Authenticator) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    let authn = Arc::new(authn);
    let (errors_tx, handshake_errors) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let authn = authn.clone();
            let errors_tx = errors_tx.clone();
            tokio::spawn(async move {
                let mut stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = errors_tx.send(e.to_string());
                        return;
                    }
                };
                let head = match read_head(&mut stream).await {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = errors_tx.send(e.to_string());
                        return;
                    }
                };
                let authorization = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.trim().to_string());
                let cert = tls::peer_certificate(&stream);
                let (code, body) = match authn.authenticate(cert.as_ref(), authorization.as_deref())
                {
                    Ok(user) => (200, format!("{} {}", user.name, user.groups.join(","))),
                    Err(e) => (e.code, e.message),
                };
                let response = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    EchoServer {
        addr,
        handshake_errors,
    }
}

async fn read_head<S: AsyncReadExt + Unpin>(stream: &mut S) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || buf.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn client_config(trust: &CertificateDer<'static>, identity: Option<&IssuedCert>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert_der()], id.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// One `GET /whoami` over a fresh connection: (status code, body).
async fn whoami(
    addr: SocketAddr,
    server_name: &str,
    config: ClientConfig,
    authorization: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let auth_line = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /whoami HTTP/1.1\r\nHost: {server_name}\r\n{auth_line}Connection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        tls.read_to_string(&mut response).await?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {response:?}")))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
        Ok((code, body.to_string()))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}

/// A cluster CA, a serving cert for 127.0.0.1/localhost, and the files the
/// apiserver flags point at.
struct Pki {
    _dir: tempfile::TempDir,
    ca: CertificateAuthority,
    opts: TlsOptions,
    token_file: PathBuf,
}

fn cluster_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::new("kubernetes").unwrap();
    let serving = ca
        .issue_serving(
            "kube-apiserver",
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &["localhost", "kubernetes.default.svc"],
        )
        .unwrap();
    let (cert, key, ca_file) = (
        dir.path().join("apiserver.crt"),
        dir.path().join("apiserver.key"),
        dir.path().join("ca.crt"),
    );
    serving.write(&cert, &key).unwrap();
    pki::write_pem(&ca_file, ca.cert_pem(), false).unwrap();
    let token_file = dir.path().join("tokens.csv");
    std::fs::write(
        &token_file,
        "s3cret-token,alice,1001,\"developers,ops\"\nsched-token,system:kube-scheduler,2\n",
    )
    .unwrap();
    Pki {
        opts: TlsOptions {
            cert_file: Some(cert),
            key_file: Some(key),
            cert_dir: dir.path().join("unused"),
            client_ca_file: Some(ca_file),
            ..TlsOptions::default()
        },
        ca,
        token_file,
        _dir: dir,
    }
}

async fn start(pki: &Pki, anonymous: bool) -> EchoServer {
    let config = tls::server_config(&pki.opts).unwrap();
    let authn = Authenticator::new(Some(&pki.token_file), anonymous).unwrap();
    start_echo_server(config, authn).await
}

#[tokio::test]
async fn client_certificate_identifies_user_by_cn_and_groups_by_o() {
    let pki = cluster_pki();
    let server = start(&pki, false).await;
    let admin = pki
        .ca
        .issue_client("kubernetes-admin", &["system:masters"])
        .unwrap();
    let (code, body) = whoami(
        server.addr,
        "localhost",
        client_config(&pki.ca.cert_der(), Some(&admin)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "kubernetes-admin system:masters,system:authenticated");
}

#[tokio::test]
async fn bearer_token_identifies_the_token_files_user() {
    let pki = cluster_pki();
    let server = start(&pki, false).await;
    let (code, body) = whoami(
        server.addr,
        "127.0.0.1",
        client_config(&pki.ca.cert_der(), None),
        Some("Bearer s3cret-token"),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "alice developers,ops,system:authenticated");
}

#[tokio::test]
async fn no_credentials_is_anonymous_when_allowed_and_401_otherwise() {
    let pki = cluster_pki();
    let open = start(&pki, true).await;
    let (code, body) = whoami(
        open.addr,
        "localhost",
        client_config(&pki.ca.cert_der(), None),
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(body, "system:anonymous system:unauthenticated");

    let closed = start(&pki, false).await;
    let (code, body) = whoami(
        closed.addr,
        "localhost",
        client_config(&pki.ca.cert_der(), None),
        None,
    )
    .await
    .unwrap();
    assert_eq!((code, body.as_str()), (401, "Unauthorized"));
}

#[tokio::test]
async fn bad_token_is_401_even_with_anonymous_allowed() {
    let pki = cluster_pki();
    let server = start(&pki, true).await;
    let (code, _) = whoami(
        server.addr,
        "localhost",
        client_config(&pki.ca.cert_der(), None),
        Some("Bearer not-in-the-file"),
    )
    .await
    .unwrap();
    assert_eq!(code, 401);
}

#[tokio::test]
async fn certificate_from_another_ca_fails_the_handshake() {
    let pki = cluster_pki();
    let mut server = start(&pki, true).await;
    let stranger = CertificateAuthority::new("not-the-cluster-ca")
        .unwrap()
        .issue_client("mallory", &["system:masters"])
        .unwrap();
    let result = whoami(
        server.addr,
        "localhost",
        client_config(&pki.ca.cert_der(), Some(&stranger)),
        None,
    )
    .await;
    assert!(
        result.is_err(),
        "a foreign client certificate must not get a response: {result:?}"
    );
    let seen = tokio::time::timeout(TIMEOUT, server.handshake_errors.recv())
        .await
        .expect("the server reports the failed handshake")
        .unwrap();
    assert!(
        seen.contains("certificate") && seen.contains("UnknownIssuer"),
        "{seen}"
    );
}

#[tokio::test]
async fn alpn_negotiates_h2_for_grpc_clients() {
    let pki = cluster_pki();
    let server = start(&pki, true).await;
    let mut config = client_config(&pki.ca.cert_der(), None);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn self_signed_certificate_is_generated_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("run/kubernetes");
    let opts = TlsOptions {
        cert_dir: cert_dir.clone(),
        alternate_ips: vec!["10.96.0.1".parse().unwrap()],
        ..TlsOptions::default()
    };
    tls::server_config(&opts).unwrap();
    let cert_path = cert_dir.join(tls::SELF_SIGNED_CERT_FILE);
    let key_path = cert_dir.join(tls::SELF_SIGNED_KEY_FILE);
    let first = (
        std::fs::read(&cert_path).unwrap(),
        std::fs::read(&key_path).unwrap(),
    );
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(
        key_mode & 0o777,
        0o600,
        "the private key is not world-readable"
    );

    let config = tls::server_config(&opts).unwrap();
    let second = (
        std::fs::read(&cert_path).unwrap(),
        std::fs::read(&key_path).unwrap(),
    );
    assert_eq!(first, second, "a restart serves the same certificate");

    // Clients that trust the generated certificate reach the server under
    // every name it promises.
    let pem = std::fs::read(&cert_path).unwrap();
    let served: CertificateDer<'static> = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .unwrap()
        .unwrap();
    let server = start_echo_server(config, Authenticator::new(None, true).unwrap()).await;
    for name in [
        "127.0.0.1",
        "localhost",
        "10.96.0.1",
        "kubernetes.default.svc.cluster.local",
    ] {
        let (code, body) = whoami(server.addr, name, client_config(&served, None), None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(code, 200, "{name}: {body}");
    }
}

#[test]
fn malformed_token_file_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.csv");
    std::fs::write(
        &path,
        "t1,alice,1\n\nt2,bob,2,\"a,b\"\nt3-missing-uid,carol\n",
    )
    .unwrap();
    let err = Authenticator::new(Some(&path), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokens.csv") && err.contains("line 4"),
        "{err}"
    );
    let missing = Authenticator::new(Some(&dir.path().join("absent.csv")), false)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("absent.csv"), "{missing}");
}

/// Real kubectl reads a kubeconfig from `pki::write_kubeconfig`, trusts the
/// CA in it and authenticates with its client certificate.
#[tokio::test]
async fn kubectl_uses_a_written_kubeconfig() {
    let pki = cluster_pki();
    // kubectl offers h2; the echo server only speaks HTTP/1.1.
    let mut config = (*tls::server_config(&pki.opts).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let authn = Authenticator::new(Some(&pki.token_file), false).unwrap();
    let server = start_echo_server(Arc::new(config), authn).await;

    let admin = pki
        .ca
        .issue_client("kubernetes-admin", &["system:masters"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("admin.conf");
    pki::write_kubeconfig(
        &kubeconfig,
        &format!("https://{}", server.addr),
        pki.ca.cert_pem(),
        &admin.cert_pem,
        &admin.key_pem,
        "kubernetes-admin",
        "kubernetes",
    )
    .unwrap();

    let context = kubectl(&kubeconfig, &["config", "current-context"]);
    assert_eq!(context.trim(), "kubernetes-admin@kubernetes");
    let kubeconfig_for_task = kubeconfig.clone();
    let whoami = tokio::task::spawn_blocking(move || {
        kubectl(&kubeconfig_for_task, &["get", "--raw", "/whoami"])
    })
    .await
    .unwrap();
    assert_eq!(
        whoami.trim(),
        "kubernetes-admin system:masters,system:authenticated"
    );
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "20s"])
        .args(args)
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pki_sh_builds_a_kubeadm_layout_that_chains_to_its_ca() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/pki.sh");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kubernetes");
    let pki_dir = out.join("pki");
    run(Command::new("bash")
        .arg(&script)
        .args(["--node-name", "worker-1", "--service-cidr", "10.100.0.0/16"])
        .arg(&out));

    let ca = pki_dir.join("ca.crt");
    let verified = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(pki_dir.join("apiserver.crt")));
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    let sans = run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(pki_dir.join("apiserver.crt")));
    for san in [
        "IP Address:127.0.0.1",
        "IP Address:10.96.0.1",
        "IP Address:10.100.0.1",
        "DNS:kubernetes.default.svc.cluster.local",
    ] {
        assert!(sans.contains(san), "{san} missing from {sans}");
    }
    assert!(pki_dir.join("sa.key").exists() && pki_dir.join("sa.pub").exists());

    // admin.conf's embedded client certificate chains to the CA and carries
    // system:masters.
    let admin_conf = out.join("admin.conf");
    let contexts = kubectl(&admin_conf, &["config", "get-contexts", "-o", "name"]);
    assert_eq!(contexts.trim(), "kubernetes-admin@kubernetes");
    let view = kubectl(&admin_conf, &["config", "view"]);
    assert!(view.contains("kubernetes-admin@kubernetes"), "{view}");
    let cert_b64 = kubectl(
        &admin_conf,
        &[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.users[0].user.client-certificate-data}",
        ],
    );
    use base64::Engine;
    let admin_pem = base64::engine::general_purpose::STANDARD
        .decode(cert_b64.trim())
        .unwrap();
    let admin_crt = dir.path().join("admin.crt");
    std::fs::write(&admin_crt, &admin_pem).unwrap();
    let verified = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&admin_crt));
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    let subject = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&admin_crt));
    assert!(subject.contains("O = system:masters"), "{subject}");
    assert!(subject.contains("CN = kubernetes-admin"), "{subject}");

    let kubelet = kubectl(&out.join("kubelet.conf"), &["config", "current-context"]);
    assert_eq!(kubelet.trim(), "system:node:worker-1@kubernetes");

    // A second run keeps every key.
    let keys = ["ca.key", "apiserver.key", "sa.key"];
    let before: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| std::fs::read(pki_dir.join(k)).unwrap())
        .collect();
    let admin_before = std::fs::read(&admin_conf).unwrap();
    run(Command::new("bash").arg(&script).arg(&out));
    let after: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| std::fs::read(pki_dir.join(k)).unwrap())
        .collect();
    assert!(before == after, "pki.sh replaced an existing key");
    assert_eq!(std::fs::read(&admin_conf).unwrap(), admin_before);
}

#[test]
fn pki_sh_help_prints_usage() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/pki.sh");
    let usage = run(Command::new("bash").arg(&script).arg("-h"));
    assert!(usage.starts_with("Usage: pki.sh"), "{usage}");
}

#[test]
fn anonymous_is_forbidden_outside_health_and_discovery() {
    let user = Authenticator::new(None, true)
        .unwrap()
        .authenticate(None, None)
        .unwrap();
    let list = auth::RequestAttributes::Resource {
        verb: "list",
        api_group: "",
        resource: "pods",
        subresource: "",
        namespace: "default",
        name: "",
    };
    assert!(auth::authorize(&user, auth::is_health_or_discovery_path("/api/v1"), &list).is_ok());
    let err = auth::authorize(
        &user,
        auth::is_health_or_discovery_path("/api/v1/namespaces/default/pods"),
        &list,
    )
    .unwrap_err();
    assert_eq!(err.code, 403);
    assert_eq!(err.to_status()["reason"], "Forbidden");
}

//! One forwarded connection of `kubectl port-forward`: a TCP connection to
//! `127.0.0.1:<port>` inside the pod sandbox's network namespace, relayed
//! both ways. Instead of the runtime's streaming server, the kubelet opens
//! the socket itself: a short-lived thread enters the namespace (`setns`),
//! connects, hands the socket back and exits, so no runtime thread ever
//! leaves the node's namespace (a socket stays in the namespace it was
//! created in). Entry points: [`network_namespace`], [`connect`], [`relay`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// How long a connection to the pod's port may take (upstream's dialer in
/// the runtime has no shorter bound of its own).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upstream's texts (containerd's `portForward`), so kubectl shows the same
/// error line.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error("failed to execute portforward in network namespace {netns:?}: {source}")]
    EnterNetns {
        netns: String,
        source: std::io::Error,
    },
    #[error(
        "failed to execute portforward in network namespace {netns:?}: failed to connect to localhost:{port} inside namespace {sandbox:?}, IPv4: dial tcp4 127.0.0.1:{port}: connect: {reason}"
    )]
    Connect {
        netns: String,
        sandbox: String,
        port: u16,
        reason: String,
    },
}

/// The sandbox's network namespace file from the runtime's verbose sandbox
/// information: the network entry of the sandbox's OCI spec
/// (`info.runtimeSpec.linux.namespaces`), else the sandbox process's
/// `/proc/<pid>/ns/net`. `None` when neither is there (host network).
pub fn network_namespace(info: &HashMap<String, String>) -> Option<String> {
    let doc: Value = serde_json::from_str(info.get("info")?).ok()?;
    let from_spec = doc
        .pointer("/runtimeSpec/linux/namespaces")
        .and_then(Value::as_array)
        .and_then(|namespaces| {
            namespaces
                .iter()
                .find(|ns| ns["type"] == "network")?
                .get("path")?
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        });
    from_spec.or_else(|| {
        doc.get("pid")
            .and_then(Value::as_u64)
            .filter(|pid| *pid > 0)
            .map(|pid| format!("/proc/{pid}/ns/net"))
    })
}

/// Go's wording of a failed connect (`connection refused`, `i/o timeout`).
fn go_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "i/o timeout".into();
    }
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// Connects to `127.0.0.1:port` inside `netns` (in the kubelet's own
/// namespace when `None`: a host-network pod).
pub async fn connect(
    netns: Option<&Path>,
    sandbox: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, PortForwardError> {
    let netns_name = netns.map(|p| p.display().to_string()).unwrap_or_default();
    let enter_error = |source| PortForwardError::EnterNetns {
        netns: netns_name.clone(),
        source,
    };
    let ns_file = netns
        .map(std::fs::File::open)
        .transpose()
        .map_err(enter_error)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("portforward-netns".into())
        .spawn(move || {
            let result = (|| {
                if let Some(ns) = &ns_file {
                    setns(ns, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| ThreadError::EnterNetns(e.into()))?;
                }
                let stream = std::net::TcpStream::connect_timeout(&address, timeout)
                    .map_err(ThreadError::Connect)?;
                stream.set_nonblocking(true).map_err(ThreadError::Connect)?;
                Ok(stream)
            })();
            let _ = tx.send(result);
        })
        .map_err(enter_error)?;
    let connect_error = |e: std::io::Error| PortForwardError::Connect {
        netns: netns_name.clone(),
        sandbox: sandbox.to_string(),
        port,
        reason: go_reason(&e),
    };
    let result = rx.await.unwrap_or_else(|_| {
        Err(ThreadError::EnterNetns(std::io::Error::other(
            "the netns thread ended early",
        )))
    });
    match result {
        Ok(stream) => TcpStream::from_std(stream).map_err(connect_error),
        Err(ThreadError::EnterNetns(e)) => Err(enter_error(e)),
        Err(ThreadError::Connect(e)) => Err(connect_error(e)),
    }
}

/// Which step of the namespace thread failed.
enum ThreadError {
    EnterNetns(std::io::Error),
    Connect(std::io::Error),
}

/// Relays until the pod's side has closed and everything it sent went out
/// (then `to_client` is dropped, ending the caller's stream). The client's
/// end of input half-closes the connection to the pod, so a server that
/// answers after reading everything still answers.
pub async fn relay(
    stream: TcpStream,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    to_client: mpsc::Sender<Vec<u8>>,
) {
    let (mut reader, mut writer) = stream.into_split();
    tokio::spawn(async move {
        while let Some(data) = from_client.recv().await {
            if writer.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_client.send(buf[..n].to_vec()).await.is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(doc: serde_json::Value) -> HashMap<String, String> {
        HashMap::from([("info".to_string(), doc.to_string())])
    }

    #[test]
    fn the_network_namespace_comes_from_the_sandbox_spec() {
        let i = info(serde_json::json!({
            "pid": 42,
            "runtimeSpec": {"linux": {"namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/var/run/netns/cni-1234"},
            ]}},
        }));
        assert_eq!(
            network_namespace(&i).as_deref(),
            Some("/var/run/netns/cni-1234")
        );
    }

    #[test]
    fn without_a_path_in_the_spec_the_sandbox_process_namespace_is_used() {
        let i = info(serde_json::json!({
            "pid": 42,
            "runtimeSpec": {"linux": {"namespaces": [{"type": "network"}]}},
        }));
        assert_eq!(network_namespace(&i).as_deref(), Some("/proc/42/ns/net"));
        assert_eq!(network_namespace(&HashMap::new()), None);
    }

    #[tokio::test]
    async fn a_port_without_listener_is_refused_in_upstreams_words() {
        // A port that was free a moment ago: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect(None, "sandbox1", port, CONNECT_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "failed to execute portforward in network namespace \"\": failed to connect to localhost:{port} inside namespace \"sandbox1\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_the_clients_eof_reaches_the_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            conn.read_to_end(&mut request).await.unwrap();
            conn.write_all(b"echo:").await.unwrap();
            conn.write_all(&request).await.unwrap();
        });
        let stream = connect(None, "sb", port, CONNECT_TIMEOUT).await.unwrap();
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let relay = tokio::spawn(relay(stream, in_rx, out_tx));
        in_tx.send(b"ping".to_vec()).await.unwrap();
        drop(in_tx);
        let mut got = Vec::new();
        while let Some(chunk) = out_rx.recv().await {
            got.extend(chunk);
        }
        assert_eq!(got, b"echo:ping");
        relay.await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_namespace_file_is_reported() {
        let err = connect(
            Some(Path::new("/nonexistent/netns")),
            "sb",
            80,
            CONNECT_TIMEOUT,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, PortForwardError::EnterNetns { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }
}

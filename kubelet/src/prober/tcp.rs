//! The tcpSocket probe: success when a TCP connection to host:port opens
//! within the timeout. Entry point: [`probe`].

use std::time::Duration;

use tokio::net::TcpStream;

use super::ProbeResult;

/// Connects to `host:port` and closes the connection at once.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => ProbeResult::Success,
        Ok(Err(e)) => ProbeResult::Failure(format!("dial tcp {addr}: {}", dial_error(&e))),
        Err(_) => ProbeResult::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A connect error in the words users know from upstream's probes
/// (`connect: connection refused`).
pub(crate) fn dial_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let what = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::HostUnreachable => "no route to host",
        K::NetworkUnreachable => "network is unreachable",
        K::TimedOut => return "i/o timeout".into(),
        K::AddrNotAvailable => "cannot assign requested address",
        _ => return e.to_string(),
    };
    format!("connect: {what}")
}

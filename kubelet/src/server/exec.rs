//! One exec session against the runtime's streaming server: CRI `Exec`
//! hands out a single-use URL; this connects to it over WebSocket with the
//! channel protocol (`v4.channel.k8s.io`, falling back to the unversioned
//! `channel.k8s.io`) and relays stdin/resize one way and stdout/stderr/exit
//! status the other; used for sessions without stdin (with stdin,
//! [`super::exec_spdy`] can also tell the end of it). Entry point:
//! [`stream_exec`].

use ferrokube_api::remotecommand::{self as rc, ExitOutcome, TerminalSize};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the runtime's streaming URL {url:?} is not usable: {message}")]
    Url { url: String, message: String },
    #[error("connecting to the runtime's streaming server: {0}")]
    Connect(String),
    #[error("the runtime's exec stream failed: {0}")]
    Stream(String),
}

/// What the caller sends into a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    Resize(TerminalSize),
    /// No more stdin.
    CloseStdin,
}

/// What a session sends back; `Exit` is the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitOutcome),
}

fn ws_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_string()
    }
}

/// Runs the session at `url` until the command ends (then sends `Exit`) or
/// the caller hangs up (`input` closed and `output` dropped).
///
/// The v4 channel protocol cannot say "stdin closed", so `CloseStdin` is
/// not forwarded: a command that waits for end of input keeps waiting.
pub async fn stream_exec(
    url: &str,
    mut input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<ExecEvent>,
) -> Result<(), ExecError> {
    let mut req = ws_url(url)
        .into_client_request()
        .map_err(|e| ExecError::Url {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&format!("{}, {}", rc::V4_PROTOCOL, rc::V1_PROTOCOL))
            .expect("valid header"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| ExecError::Connect(e.to_string()))?;
    let (mut sink, mut stream) = ws.split();
    let mut input_open = true;
    let mut outcome = None;
    loop {
        tokio::select! {
            frame = input.recv(), if input_open => {
                let msg = match frame {
                    Some(ExecInput::Stdin(data)) => rc::encode(rc::STDIN, &data),
                    Some(ExecInput::Resize(size)) => rc::encode(rc::RESIZE, &size.to_json()),
                    Some(ExecInput::CloseStdin) => continue,
                    None => {
                        input_open = false;
                        continue;
                    }
                };
                sink.send(Message::Binary(msg.into()))
                    .await
                    .map_err(|e| ExecError::Stream(e.to_string()))?;
            }
            msg = stream.next() => {
                let data = match msg {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(ExecError::Stream(e.to_string())),
                };
                let Some((channel, data)) = rc::decode(&data) else { continue };
                let event = match channel {
                    _ if data.is_empty() => continue,
                    rc::STDOUT => ExecEvent::Stdout(data.to_vec()),
                    rc::STDERR => ExecEvent::Stderr(data.to_vec()),
                    rc::ERROR => {
                        outcome = Some(rc::read_status(data));
                        continue;
                    }
                    _ => continue,
                };
                if output.send(event).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    let _ = sink.close().await;
    // Servers before v4 close without a status when the command succeeded.
    let outcome = outcome.unwrap_or(ExitOutcome::Success);
    let _ = output.send(ExecEvent::Exit(outcome)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_urls_become_websocket_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:4321/exec/abc"),
            "ws://127.0.0.1:4321/exec/abc"
        );
        assert_eq!(ws_url("https://h/exec/x"), "wss://h/exec/x");
    }
}

//! `pods/log` and `pods/exec`, proxied to the pod's kubelet
//! ([`crate::kubelet`]). Logs stream back as chunked `text/plain`; exec
//! upgrades to WebSocket with the channel protocol kubectl speaks
//! (`v5.channel.k8s.io`, or `v4.channel.k8s.io`; see
//! [`ferrokube_api::remotecommand`]). Entry points: [`logs`], [`exec`].

use axum::body::Body;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use ferrokube_api::remotecommand::{self as rc, TerminalSize};
use ferrokube_proto::kubelet as pb;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use crate::error::ApiError;
use crate::kubelet;

/// Every `key=value` of the query, repeated keys kept (exec's `command`).
fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn flag(q: &[(String, String)], key: &str) -> bool {
    first(q, key).is_some_and(|v| v == "true" || v == "1")
}

fn integer(q: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    first(q, key)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("{key}: Invalid value: {v:?}: must be an integer"))
            })
        })
        .transpose()
}

/// `GET .../pods/<name>/log`: the container's log from its kubelet, with
/// upstream's PodLogOptions query parameters.
pub async fn logs(
    state: &AppState,
    namespace: &str,
    name: &str,
    parts: &Parts,
) -> Result<Response, ApiError> {
    let q = query_pairs(parts);
    let (pod, location) = state
        .kubelets
        .locate(&state.registry, namespace, name)
        .await?;
    let container = rc::container_for_request(&pod, first(&q, "container").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let req = pb::ContainerLogsRequest {
        namespace: namespace.to_string(),
        pod: name.to_string(),
        container,
        follow: flag(&q, "follow"),
        previous: flag(&q, "previous"),
        timestamps: flag(&q, "timestamps"),
        tail_lines: integer(&q, "tailLines")?,
        since_seconds: integer(&q, "sinceSeconds")?,
        since_time: first(&q, "sinceTime").unwrap_or_default().to_string(),
        limit_bytes: integer(&q, "limitBytes")?,
    };
    let mut client = state.kubelets.client(&location)?;
    let stream = client
        .container_logs(req)
        .await
        .map_err(|s| kubelet::api_error(&location, &s))?
        .into_inner();
    let body = tokio_stream::StreamExt::map_while(stream, |chunk| match chunk {
        Ok(c) => Some(Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(
            c.data,
        ))),
        Err(e) => {
            tracing::debug!(error = %e, "the kubelet's log stream ended with an error");
            None
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// `GET|POST .../pods/<name>/exec` with a WebSocket upgrade. The kubelet is
/// asked first, so a refusal (unknown container, container not running) is
/// an ordinary error response rather than a broken stream.
pub async fn exec(
    state: &AppState,
    namespace: &str,
    name: &str,
    parts: &mut Parts,
) -> Result<Response, ApiError> {
    let q = query_pairs(parts);
    let (pod, location) = state
        .kubelets
        .locate(&state.registry, namespace, name)
        .await?;
    let container = rc::container_for_request(&pod, first(&q, "container").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let (stdin, stdout, stderr, tty) = (
        flag(&q, "stdin"),
        flag(&q, "stdout"),
        flag(&q, "stderr"),
        flag(&q, "tty"),
    );
    if !(stdin || stdout || stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let is_websocket = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return Err(ApiError::bad_request(
            "Upgrade request required: pods/exec is served over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io); SPDY is not supported",
        ));
    }
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade: {}", e.body_text())))?;
    let (in_tx, in_rx) = mpsc::channel(16);
    let start = pb::ExecStart {
        namespace: namespace.to_string(),
        pod: name.to_string(),
        container,
        command: command.clone(),
        stdin,
        stdout,
        stderr,
        tty,
    };
    in_tx
        .send(pb::ExecInput {
            frame: Some(pb::exec_input::Frame::Start(start)),
        })
        .await
        .expect("the channel is open");
    let mut client = state.kubelets.client(&location)?;
    let output = client
        .exec(ReceiverStream::new(in_rx))
        .await
        .map_err(|s| kubelet::api_error(&location, &s))?
        .into_inner();
    let upgrade = upgrade.protocols([rc::V5_PROTOCOL, rc::V4_PROTOCOL]);
    let v5 = upgrade
        .selected_protocol()
        .is_some_and(|p| p == rc::V5_PROTOCOL);
    Ok(upgrade
        .on_upgrade(move |socket| relay_exec(socket, v5, command, in_tx, output))
        .into_response())
}

/// Relays one exec session between kubectl's WebSocket and the kubelet's
/// gRPC stream until the command's exit status has been sent.
async fn relay_exec(
    socket: WebSocket,
    v5: bool,
    command: Vec<String>,
    input: mpsc::Sender<pb::ExecInput>,
    mut output: tonic::Streaming<pb::ExecOutput>,
) {
    use pb::exec_input::Frame as In;
    use pb::exec_output::Frame as Out;
    let (mut sink, mut stream) = socket.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let frame = match rc::decode(&data) {
                Some((rc::STDIN, d)) => In::Stdin(d.to_vec()),
                Some((rc::RESIZE, d)) => match TerminalSize::parse(d) {
                    Some(size) => In::Resize(pb::TerminalSize {
                        width: size.width.into(),
                        height: size.height.into(),
                    }),
                    None => continue,
                },
                Some((rc::CLOSE, [rc::STDIN])) if v5 => In::CloseStdin(true),
                _ => continue,
            };
            if input
                .send(pb::ExecInput { frame: Some(frame) })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let status = loop {
        let frame = match output.message().await {
            Ok(Some(pb::ExecOutput { frame: Some(f) })) => f,
            Ok(Some(_)) => continue,
            Ok(None) => {
                break rc::error_status("the kubelet ended the exec stream without an exit status")
            }
            Err(e) => break rc::error_status(e.message()),
        };
        let msg = match frame {
            Out::Stdout(d) => rc::encode(rc::STDOUT, &d),
            Out::Stderr(d) => rc::encode(rc::STDERR, &d),
            Out::Exit(exit) if exit.message.is_empty() => {
                break rc::exit_status(&command, exit.code)
            }
            Out::Exit(exit) => break rc::error_status(&exit.message),
        };
        if sink.send(Message::Binary(msg.into())).await.is_err() {
            reader.abort();
            return;
        }
    };
    let status = serde_json::to_vec(&status).expect("JSON serializes");
    let _ = sink
        .send(Message::Binary(rc::encode(rc::ERROR, &status).into()))
        .await;
    // A normal closure (1000) is what ends kubectl's streams cleanly; a
    // close without a code reads as an error there.
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    reader.abort();
}

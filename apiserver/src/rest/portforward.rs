//! `pods/portforward`: kubectl's upgrade request, served as a SPDY/3.1
//! session ([`crate::portforward`]) whose connections go to the pod's
//! kubelet (`PortForward`). Two transports, as upstream: a WebSocket with
//! subprotocol `SPDY/3.1+portforward.k8s.io` (SPDY frames in binary
//! messages; kubectl 1.31+ tries it first), and a plain HTTP/1.1
//! `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version:
//! portforward.k8s.io` (kubectl's fallback). Entry point: [`portforward`].

use std::sync::Arc;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferrokube_proto::kubelet as pb;
use ferrokube_proto::kubelet::kubelet_client::KubeletClient as GrpcClient;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::AppState;
use crate::error::ApiError;
use crate::kubelet::KubeletLocation;
use crate::portforward::{self as session, Connection, Dialer, Upstream};

const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const SPDY_UPGRADE: &str = "SPDY/3.1";

/// Connections to one pod through its kubelet.
struct KubeletDialer {
    client: GrpcClient<Channel>,
    location: KubeletLocation,
    namespace: String,
    pod: String,
}

#[async_trait::async_trait]
impl Dialer for KubeletDialer {
    async fn dial(&self, port: u16) -> Result<Connection, String> {
        use pb::port_forward_input::Frame as In;
        use pb::port_forward_output::Frame as Out;
        let start = pb::PortForwardInput {
            frame: Some(In::Start(pb::PortForwardStart {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                port: port.into(),
            })),
        };
        let (to_pod, rx) = mpsc::channel::<Vec<u8>>(16);
        let input = futures::stream::once(async move { start }).chain(ReceiverStream::new(rx).map(
            |data| pb::PortForwardInput {
                frame: Some(In::Data(data)),
            },
        ));
        let mut client = self.client.clone();
        let output = client
            .port_forward(input)
            .await
            .map_err(|s| status_text(&self.location, &s))?
            .into_inner();
        let location = self.location.clone();
        let from_pod = output
            .scan(false, move |failed, item| {
                // A gRPC error ends the stream after being told once.
                if *failed {
                    return futures::future::ready(None);
                }
                let next = match item {
                    Ok(pb::PortForwardOutput {
                        frame: Some(Out::Data(d)),
                    }) => Some(Upstream::Data(d)),
                    Ok(pb::PortForwardOutput {
                        frame: Some(Out::Error(m)),
                    }) => Some(Upstream::Error(m)),
                    Ok(_) => Some(Upstream::Data(vec![])),
                    Err(s) => {
                        *failed = true;
                        Some(Upstream::Error(status_text(&location, &s)))
                    }
                };
                futures::future::ready(next)
            })
            .filter(|u| futures::future::ready(!matches!(u, Upstream::Data(d) if d.is_empty())))
            .boxed();
        Ok(Connection { to_pod, from_pod })
    }
}

/// The kubelet's refusal as kubectl should read it; an unreachable or
/// failing kubelet is named.
fn status_text(location: &KubeletLocation, status: &tonic::Status) -> String {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::Unimplemented => {
            status.message().to_string()
        }
        _ => format!(
            "error talking to the kubelet of node {} at {}: {}",
            location.node,
            location.address,
            status.message()
        ),
    }
}

fn header_has(headers: &HeaderMap, name: impl header::AsHeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// `GET|POST .../pods/<name>/portforward` with an upgrade. The pod is
/// looked up first, so an unknown or unscheduled pod is an ordinary error
/// response.
pub async fn portforward(
    state: &AppState,
    namespace: &str,
    name: &str,
    parts: &mut Parts,
) -> Result<Response, ApiError> {
    let (_pod, location) = state
        .kubelets
        .locate(&state.registry, namespace, name)
        .await?;
    let dialer: Arc<dyn Dialer> = Arc::new(KubeletDialer {
        client: state.kubelets.client(&location)?,
        location,
        namespace: namespace.to_string(),
        pod: name.to_string(),
    });
    let headers = &parts.headers;
    if header_has(headers, header::UPGRADE, "websocket") {
        if !header_has(
            headers,
            header::SEC_WEBSOCKET_PROTOCOL,
            session::WEBSOCKET_TUNNEL_PROTOCOL,
        ) {
            // kubectl falls back to SPDY on a failed upgrade.
            return Err(ApiError::bad_request(format!(
                "pods/portforward over WebSocket needs subprotocol {}",
                session::WEBSOCKET_TUNNEL_PROTOCOL
            )));
        }
        let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade: {}", e.body_text())))?
            .protocols([session::WEBSOCKET_TUNNEL_PROTOCOL]);
        return Ok(upgrade
            .on_upgrade(move |socket| serve_websocket(socket, dialer))
            .into_response());
    }
    if header_has(headers, header::UPGRADE, SPDY_UPGRADE) {
        if !header_has(headers, STREAM_PROTOCOL_HEADER, session::PROTOCOL_V1) {
            return Err(ApiError::forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {:?}, server supports [{:?}]",
                headers
                    .get_all(STREAM_PROTOCOL_HEADER)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>(),
                session::PROTOCOL_V1
            )));
        }
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => serve_upgraded(TokioIo::new(upgraded), dialer).await,
                Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
            }
        });
        let mut resp = Response::new(axum::body::Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
        h.insert(
            STREAM_PROTOCOL_HEADER,
            HeaderValue::from_static(session::PROTOCOL_V1),
        );
        return Ok(resp);
    }
    Err(ApiError::bad_request(
        "Upgrade request required: pods/portforward is served over WebSocket (SPDY/3.1+portforward.k8s.io) or SPDY/3.1",
    ))
}

/// The SPDY session in WebSocket binary messages.
async fn serve_websocket(socket: WebSocket, dialer: Arc<dyn Dialer>) {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            if in_tx.send(data.to_vec()).await.is_err() {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                return;
            }
        }
        // A normal closure reads as end of stream in kubectl's tunnel.
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    });
    session::serve(in_rx, out_tx, dialer).await;
    let _ = writer.await;
    reader.abort();
}

/// The SPDY session on an upgraded HTTP/1.1 connection.
async fn serve_upgraded<T>(io: T, dialer: Arc<dyn Dialer>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    session::serve(in_rx, out_tx, dialer).await;
    let _ = writer.await;
    reader.abort();
}

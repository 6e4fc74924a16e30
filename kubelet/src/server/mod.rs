//! The kubelet's port (10250, TLS): the streaming API the apiserver calls to
//! proxy `pods/log`, `pods/exec` and `pods/portforward`
//! (`proto/kubelet.proto`). Logs come from the CRI log files ([`logs`]);
//! exec goes through the runtime's streaming server ([`exec`], or
//! [`exec_spdy`] when there is stdin); port-forward
//! connects inside the sandbox's network namespace ([`portforward`]).
//! Entry points: [`bind`] then [`serve`].

pub mod exec;
pub mod exec_spdy;
pub mod logs;
pub mod portforward;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use ferrokube_client::{ObjectKey, Store};
use ferrokube_proto::kubelet as pb;
use ferrokube_proto::kubelet::kubelet_server::{Kubelet, KubeletServer};
use futures::{Stream, StreamExt};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::cri::Runtime;
use crate::pod_worker::{CONTAINER_NAME_LABEL, POD_UID_LABEL};

/// Upstream's default kubelet port.
pub const DEFAULT_PORT: u16 = 10250;

/// The kubelet port's settings: upstream's `--address`, `--port`,
/// `--tls-cert-file`, `--tls-private-key-file` and
/// `authentication.x509.clientCAFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub address: IpAddr,
    /// 0 picks a free port (tests); the bound port is what the Node
    /// advertises.
    pub port: u16,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// When set, callers must present a client certificate from this CA.
    pub client_ca_file: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            address: IpAddr::from([0, 0, 0, 0]),
            port: DEFAULT_PORT,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("serving the kubelet port: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Binds the kubelet port.
pub async fn bind(settings: &ServerSettings) -> Result<TcpListener, ServerError> {
    let address = SocketAddr::new(settings.address, settings.port);
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })
}

/// Serves the streaming API on `listener` until `shutdown`.
pub async fn serve<R: Runtime>(
    listener: TcpListener,
    tls: tonic::transport::ServerTlsConfig,
    service: KubeletService<R>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving the kubelet port");
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .add_service(KubeletServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// The streaming API over the pods bound to this node and the runtime.
pub struct KubeletService<R> {
    runtime: Arc<R>,
    pods: Store<Pod>,
}

impl<R: Runtime> KubeletService<R> {
    pub fn new(runtime: Arc<R>, pods: Store<Pod>) -> Self {
        KubeletService { runtime, pods }
    }

    fn pod(&self, namespace: &str, name: &str) -> Result<Arc<Pod>, Status> {
        self.pods
            .get(&ObjectKey::new(namespace, name))
            .ok_or_else(|| Status::not_found(format!("pod {namespace}/{name} is not on this node")))
    }

    /// The newest running attempt of `container`.
    async fn running_container(&self, pod: &Pod, container: &str) -> Result<String, Status> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut running: Vec<cri::Container> = self
            .runtime
            .list_containers(Some(crate::cri::containers_of_pod(&uid)))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .filter(|c| {
                c.labels.get(POD_UID_LABEL) == Some(&uid)
                    && c.labels.get(CONTAINER_NAME_LABEL).map(String::as_str) == Some(container)
                    && c.state == cri::ContainerState::ContainerRunning as i32
            })
            .collect();
        running.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        running.first().map(|c| c.id.clone()).ok_or_else(|| {
            Status::failed_precondition(format!("container not found ({container:?})"))
        })
    }
}

impl<R: Runtime> KubeletService<R> {
    /// The pod's ready sandbox and its network namespace (`None` for a
    /// host-network pod: the node's own namespace).
    async fn sandbox_network_namespace(
        &self,
        pod: &Pod,
    ) -> Result<(String, Option<String>), Status> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut ready: Vec<cri::PodSandbox> = self
            .runtime
            .list_pod_sandboxes(Some(crate::cri::pod_sandboxes_of(&uid)))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .filter(|s| {
                s.labels.get(POD_UID_LABEL) == Some(&uid)
                    && s.state == cri::PodSandboxState::SandboxReady as i32
            })
            .collect();
        ready.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let sandbox = ready.first().map(|s| s.id.clone()).ok_or_else(|| {
            Status::failed_precondition(format!("pod {name} has no running sandbox"))
        })?;
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if host_network {
            return Ok((sandbox, None));
        }
        let info = self
            .runtime
            .pod_sandbox_info(&sandbox)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let netns = portforward::network_namespace(&info).ok_or_else(|| {
            Status::internal(format!(
                "the runtime reports no network namespace for sandbox {sandbox}"
            ))
        })?;
        Ok((sandbox, Some(netns)))
    }
}

fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|c| c.name == container)
}

fn runtime_id(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// The runtime container whose log `kubectl logs [-p]` shows, from the pod
/// status the kubelet reported (upstream's `validateContainerLogStatus`).
pub fn log_container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let Some(status) = container_status(pod, container) else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
        ));
    };
    let state = status.state.clone().unwrap_or_default();
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let terminated = || format!("container {container:?} in pod {pod_name:?} is terminated");
    let id = if previous {
        last.ok_or_else(|| {
            format!("previous terminated container {container:?} in pod {pod_name:?} not found")
        })?
    } else if state.running.is_some() {
        status.container_id.clone().ok_or_else(terminated)?
    } else if let Some(t) = &state.terminated {
        match t.container_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => last.ok_or_else(terminated)?,
        }
    } else if let Some(id) = last {
        id
    } else {
        let reason = state
            .waiting
            .and_then(|w| w.reason)
            .unwrap_or_else(|| "ContainerCreating".into());
        let why = match reason.as_str() {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            _ => reason,
        };
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        ));
    };
    Ok(runtime_id(&id).to_string())
}

/// A followed container keeps its log open while it runs.
struct ContainerRunning<R> {
    runtime: Arc<R>,
    id: String,
}

#[async_trait::async_trait]
impl<R: Runtime> logs::Liveness for ContainerRunning<R> {
    async fn running(&self) -> bool {
        self.runtime
            .container_status(&self.id)
            .await
            .is_ok_and(|s| s.state == cri::ContainerState::ContainerRunning as i32)
    }
}

fn log_options(r: &pb::ContainerLogsRequest) -> Result<logs::LogOptions, Status> {
    let non_negative = |name: &str, v: Option<i64>| match v {
        Some(n) if n < 0 => Err(Status::invalid_argument(format!(
            "{name}: Invalid value: {n}: must be greater than or equal to 0"
        ))),
        other => Ok(other.map(|n| n as u64)),
    };
    let mut since = non_negative("sinceSeconds", r.since_seconds)?
        .map(|s| chrono::Utc::now() - chrono::Duration::seconds(s as i64));
    if !r.since_time.is_empty() {
        let t = chrono::DateTime::parse_from_rfc3339(&r.since_time).map_err(|e| {
            Status::invalid_argument(format!(
                "sinceTime: {:?} is not RFC 3339: {e}",
                r.since_time
            ))
        })?;
        since = Some(t.with_timezone(&chrono::Utc));
    }
    Ok(logs::LogOptions {
        tail_lines: non_negative("tailLines", r.tail_lines)?,
        since,
        timestamps: r.timestamps,
        limit_bytes: non_negative("limitBytes", r.limit_bytes)?,
    })
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<R: Runtime> Kubelet for KubeletService<R> {
    type ContainerLogsStream = BoxStream<pb::LogChunk>;

    async fn container_logs(
        &self,
        req: Request<pb::ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let r = req.into_inner();
        let pod = self.pod(&r.namespace, &r.pod)?;
        let container = ferrokube_api::remotecommand::container_for_request(&pod, &r.container)
            .map_err(Status::invalid_argument)?;
        let id =
            log_container_id(&pod, &container, r.previous).map_err(Status::invalid_argument)?;
        let opts = log_options(&r)?;
        let status = self
            .runtime
            .container_status(&id)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let path = PathBuf::from(status.log_path);
        let live = ContainerRunning {
            runtime: self.runtime.clone(),
            id,
        };
        let follow = r.follow;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
        let (out_tx, out_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let follow: Option<&dyn logs::Liveness> = follow.then_some(&live);
            if let Err(e) = logs::stream_log(&path, &opts, follow, &tx).await {
                tracing::debug!(error = %e, "container log stream failed");
                let _ = out_tx.send(Err(Status::internal(e.to_string()))).await;
            }
        });
        let chunks = ReceiverStream::new(rx).map(|data| Ok(pb::LogChunk { data }));
        let errors = ReceiverStream::new(out_rx);
        Ok(Response::new(Box::pin(futures::stream::select(
            chunks, errors,
        ))))
    }

    type ExecStream = BoxStream<pb::ExecOutput>;

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        use pb::exec_input::Frame as In;
        use pb::exec_output::Frame as Out;
        let mut input = req.into_inner();
        let start = match input.message().await?.and_then(|m| m.frame) {
            Some(In::Start(s)) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first exec frame must be start",
                ))
            }
        };
        let pod = self.pod(&start.namespace, &start.pod)?;
        let container = ferrokube_api::remotecommand::container_for_request(&pod, &start.container)
            .map_err(Status::invalid_argument)?;
        let id = self.running_container(&pod, &container).await?;
        let url = self
            .runtime
            .exec(cri::ExecRequest {
                container_id: id,
                cmd: start.command.clone(),
                tty: start.tty,
                stdin: start.stdin,
                stdout: start.stdout,
                stderr: start.stderr && !start.tty,
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let (in_tx, in_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(msg)) = input.message().await {
                let frame = match msg.frame {
                    Some(In::Stdin(data)) => exec::ExecInput::Stdin(data),
                    Some(In::Resize(s)) => {
                        exec::ExecInput::Resize(ferrokube_api::remotecommand::TerminalSize {
                            width: s.width.min(u16::MAX as u32) as u16,
                            height: s.height.min(u16::MAX as u32) as u16,
                        })
                    }
                    Some(In::CloseStdin(_)) => exec::ExecInput::CloseStdin,
                    _ => continue,
                };
                if in_tx.send(frame).await.is_err() {
                    break;
                }
            }
        });
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let (err_tx, err_rx) = mpsc::channel(1);
        // With stdin, SPDY: its end reaches the command (see exec_spdy).
        let channels = start.stdin.then_some(exec_spdy::Channels {
            stdin: start.stdin,
            stdout: start.stdout,
            stderr: start.stderr,
            tty: start.tty,
        });
        tokio::spawn(async move {
            let result = match channels {
                Some(channels) => exec_spdy::stream_exec(&url, channels, in_rx, ev_tx).await,
                None => exec::stream_exec(&url, in_rx, ev_tx).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "exec stream failed");
                let _ = err_tx
                    .send(exec::ExecEvent::Exit(
                        ferrokube_api::remotecommand::ExitOutcome::Error(e.to_string()),
                    ))
                    .await;
            }
        });
        let events =
            futures::stream::select(ReceiverStream::new(ev_rx), ReceiverStream::new(err_rx));
        let out = events.map(|ev| {
            use ferrokube_api::remotecommand::ExitOutcome;
            let frame = match ev {
                exec::ExecEvent::Stdout(d) => Out::Stdout(d),
                exec::ExecEvent::Stderr(d) => Out::Stderr(d),
                exec::ExecEvent::Exit(ExitOutcome::Success) => Out::Exit(pb::ExecExit::default()),
                exec::ExecEvent::Exit(ExitOutcome::ExitCode(code)) => Out::Exit(pb::ExecExit {
                    code,
                    message: String::new(),
                }),
                exec::ExecEvent::Exit(ExitOutcome::Error(message)) => {
                    Out::Exit(pb::ExecExit { code: 0, message })
                }
            };
            Ok(pb::ExecOutput { frame: Some(frame) })
        });
        Ok(Response::new(Box::pin(out)))
    }

    type PortForwardStream = BoxStream<pb::PortForwardOutput>;

    async fn port_forward(
        &self,
        req: Request<Streaming<pb::PortForwardInput>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        use pb::port_forward_input::Frame as In;
        use pb::port_forward_output::Frame as Out;
        let mut input = req.into_inner();
        let start = match input.message().await?.and_then(|m| m.frame) {
            Some(In::Start(s)) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first port-forward frame must be start",
                ))
            }
        };
        let pod = self.pod(&start.namespace, &start.pod)?;
        let port = u16::try_from(start.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Status::invalid_argument(format!("invalid port {}: must be 1-65535", start.port))
            })?;
        let (sandbox, netns) = self.sandbox_network_namespace(&pod).await?;
        let (out_tx, out_rx) = mpsc::channel(16);
        match portforward::connect(
            netns.as_deref().map(std::path::Path::new),
            &sandbox,
            port,
            portforward::CONNECT_TIMEOUT,
        )
        .await
        {
            Err(e) => {
                // Upstream's kubelet names the sandbox as the pod and has no uid there.
                let message = format!("error forwarding port {port} to pod {sandbox}, uid : {e}");
                tracing::debug!(%message, "port-forward failed");
                let _ = out_tx
                    .send(Ok(pb::PortForwardOutput {
                        frame: Some(Out::Error(message)),
                    }))
                    .await;
            }
            Ok(stream) => {
                let (in_tx, in_rx) = mpsc::channel(16);
                tokio::spawn(async move {
                    while let Ok(Some(msg)) = input.message().await {
                        if let Some(In::Data(data)) = msg.frame {
                            if in_tx.send(data).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                let (data_tx, mut data_rx) = mpsc::channel(16);
                tokio::spawn(portforward::relay(stream, in_rx, data_tx));
                tokio::spawn(async move {
                    while let Some(data) = data_rx.recv().await {
                        let frame = Some(Out::Data(data));
                        if out_tx
                            .send(Ok(pb::PortForwardOutput { frame }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

#[cfg(test)]
mod tests;

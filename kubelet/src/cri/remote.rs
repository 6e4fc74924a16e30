//! [`RemoteRuntime`]: the CRI v1 client (k8s-cri, tonic) over a unix socket.
//!
//! Every call is bounded as upstream's CRI client bounds it: by the
//! kubelet's `runtimeRequestTimeout`, plus the grace period for
//! StopContainer and the command's timeout for ExecSync (unbounded when
//! the command has none); PullImage is not bounded (a large image takes as
//! long as it takes). The deadline also travels as `grpc-timeout`, so the
//! runtime gives up on the call too.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Result, Runtime, RuntimeError};

/// Upstream's default `runtimeRequestTimeout`.
pub const DEFAULT_RUNTIME_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to containerd's CRI plugin; cheap to clone.
#[derive(Clone)]
pub struct RemoteRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// The bound on a call (`runtimeRequestTimeout`); see the module docs.
    request_timeout: Duration,
}

/// `msg` as a request whose deadline (if any) the runtime sees.
fn request<T>(msg: T, limit: Option<Duration>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(limit) = limit {
        req.set_timeout(limit);
    }
    req
}

/// Awaits one unary call for at most `limit` (unbounded with `None`).
async fn unary<T>(
    op: &'static str,
    limit: Option<Duration>,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let timed_out = |after| RuntimeError::Timeout { op, after };
    let resp = match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .map_err(|_| timed_out(limit))?,
        None => call.await,
    };
    match resp {
        Ok(r) => Ok(r.into_inner()),
        // The deadline passed on the runtime's side or in the channel.
        Err(s)
            if limit.is_some()
                && (s.code() == tonic::Code::DeadlineExceeded
                    || (s.code() == tonic::Code::Cancelled
                        && s.message().contains("Timeout expired"))) =>
        {
            Err(timed_out(limit.unwrap_or_default()))
        }
        Err(s) => Err(RuntimeError::call(op, s)),
    }
}

impl RemoteRuntime {
    /// Connects to the runtime's socket (lazily: the first call dials).
    pub fn connect(socket: &std::path::Path) -> Result<RemoteRuntime> {
        let path = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| RuntimeError::Connect {
                endpoint: socket.display().to_string(),
                message: e.to_string(),
            })?
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        Ok(RemoteRuntime {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(64 * 1024 * 1024),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            request_timeout: DEFAULT_RUNTIME_REQUEST_TIMEOUT,
        })
    }

    /// Bounds calls by `timeout` (`runtimeRequestTimeout`) instead of the
    /// default two minutes.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    fn limit(&self) -> Option<Duration> {
        Some(self.request_timeout)
    }
}

#[async_trait::async_trait]
impl Runtime for RemoteRuntime {
    async fn version(&self) -> Result<cri::VersionResponse> {
        let req = cri::VersionRequest {
            version: "v1".into(),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        unary("Version", limit, client.version(request(req, limit))).await
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.run_pod_sandbox(request(req, limit));
        Ok(unary("RunPodSandbox", limit, call).await?.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.stop_pod_sandbox(request(req, limit));
        unary("StopPodSandbox", limit, call).await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.remove_pod_sandbox(request(req, limit));
        unary("RemovePodSandbox", limit, call).await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.pod_sandbox_status(request(req, limit));
        unary("PodSandboxStatus", limit, call)
            .await?
            .status
            .ok_or(RuntimeError::Call {
                op: "PodSandboxStatus",
                message: format!("no status for sandbox {id}"),
            })
    }

    async fn pod_sandbox_info(
        &self,
        id: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.pod_sandbox_status(request(req, limit));
        Ok(unary("PodSandboxStatus", limit, call).await?.info)
    }

    async fn list_pod_sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let req = cri::ListPodSandboxRequest { filter };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.list_pod_sandbox(request(req, limit));
        Ok(unary("ListPodSandbox", limit, call).await?.items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.create_container(request(req, limit));
        Ok(unary("CreateContainer", limit, call).await?.container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.start_container(request(req, limit));
        unary("StartContainer", limit, call).await?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_seconds,
        };
        // The grace period on top: SIGKILL comes only after it.
        let grace = Duration::from_secs(timeout_seconds.max(0) as u64);
        let limit = Some(self.request_timeout + grace);
        let mut client = self.runtime.clone();
        let call = client.stop_container(request(req, limit));
        unary("StopContainer", limit, call).await?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.remove_container(request(req, limit));
        unary("RemoveContainer", limit, call).await?;
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.container_status(request(req, limit));
        unary("ContainerStatus", limit, call)
            .await?
            .status
            .ok_or(RuntimeError::Call {
                op: "ContainerStatus",
                message: format!("no status for container {id}"),
            })
    }

    async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        let req = cri::ListContainersRequest { filter };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.list_containers(request(req, limit));
        Ok(unary("ListContainers", limit, call).await?.containers)
    }

    async fn image_status(&self, image: &str) -> Result<Option<String>> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let limit = self.limit();
        let mut client = self.images.clone();
        let call = client.image_status(request(req, limit));
        Ok(unary("ImageStatus", limit, call).await?.image.map(|i| i.id))
    }

    async fn image_user(&self, image: &str) -> Result<super::ImageUser> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let limit = self.limit();
        let mut client = self.images.clone();
        let call = client.image_status(request(req, limit));
        let image = unary("ImageStatus", limit, call)
            .await?
            .image
            .unwrap_or_default();
        Ok(super::ImageUser {
            uid: image.uid.map(|u| u.value),
            username: image.username,
        })
    }

    async fn pull_image(&self, image: &str) -> Result<String> {
        let req = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        };
        // Not bounded, as upstream: a pull takes as long as the image needs.
        let mut client = self.images.clone();
        let call = client.pull_image(request(req, None));
        Ok(unary("PullImage", None, call).await?.image_ref)
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout_seconds,
        };
        // The command's own timeout on top; none means unbounded (upstream).
        let limit = (timeout_seconds > 0)
            .then(|| self.request_timeout + Duration::from_secs(timeout_seconds as u64));
        let mut client = self.runtime.clone();
        let call = client.exec_sync(request(req, limit));
        unary("ExecSync", limit, call).await
    }

    async fn exec(&self, req: cri::ExecRequest) -> Result<String> {
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.exec(request(req, limit));
        Ok(unary("Exec", limit, call).await?.url)
    }

    async fn port_forward(&self, sandbox_id: &str, port: i32) -> Result<String> {
        let req = cri::PortForwardRequest {
            pod_sandbox_id: sandbox_id.into(),
            port: vec![port],
        };
        let limit = self.limit();
        let mut client = self.runtime.clone();
        let call = client.port_forward(request(req, limit));
        Ok(unary("PortForward", limit, call).await?.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that accepts connections and never answers: a hung runtime.
    fn hung_runtime(dir: &std::path::Path) -> (std::path::PathBuf, tokio::net::UnixListener) {
        let path = dir.join("hung.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        (path, listener)
    }

    /// Holds every accepted connection open without a word.
    fn accept_silently(listener: tokio::net::UnixListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_runtime_call_fails_after_the_runtime_request_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (path, listener) = hung_runtime(dir.path());
        let _server = accept_silently(listener);
        let rt = RemoteRuntime::connect(&path)
            .unwrap()
            .with_request_timeout(Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        let err = rt.list_containers(None).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::Timeout { op: "ListContainers", after } if after == Duration::from_secs(3)),
            "{err:?}"
        );
        assert!(err.to_string().contains("ListContainers"), "{err}");
        assert!(err.to_string().contains("runtimeRequestTimeout"), "{err}");
        assert!(started.elapsed() >= Duration::from_secs(3));
        // StopContainer gets its grace period on top.
        let started = tokio::time::Instant::now();
        let err = rt.stop_container("c1", 10).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::Timeout { op: "StopContainer", after } if after == Duration::from_secs(13)),
            "{err:?}"
        );
        assert!(started.elapsed() >= Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn image_pulls_and_execs_without_a_timeout_are_not_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (path, listener) = hung_runtime(dir.path());
        let _server = accept_silently(listener);
        let rt = RemoteRuntime::connect(&path)
            .unwrap()
            .with_request_timeout(Duration::from_secs(1));
        let wait = Duration::from_secs(600);
        assert!(
            tokio::time::timeout(wait, rt.pull_image("busybox:1.36"))
                .await
                .is_err(),
            "PullImage still waits long after runtimeRequestTimeout"
        );
        assert!(
            tokio::time::timeout(wait, rt.exec_sync("c1", vec!["true".into()], 0))
                .await
                .is_err(),
            "ExecSync with no timeout still waits"
        );
        let err = rt
            .exec_sync("c1", vec!["true".into()], 5)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RuntimeError::Timeout { op: "ExecSync", after } if after == Duration::from_secs(6)),
            "{err:?}"
        );
    }
}

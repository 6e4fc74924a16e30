//! [`RemoteRuntime`]: the CRI v1 client (k8s-cri, tonic) over a unix socket.

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Result, Runtime, RuntimeError};

/// A connection to containerd's CRI plugin; cheap to clone.
#[derive(Clone)]
pub struct RemoteRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
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
        })
    }
}

#[async_trait::async_trait]
impl Runtime for RemoteRuntime {
    async fn version(&self) -> Result<cri::VersionResponse> {
        let req = cri::VersionRequest {
            version: "v1".into(),
        };
        let resp = self.runtime.clone().version(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("Version", s))?
            .into_inner())
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp = self.runtime.clone().run_pod_sandbox(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("RunPodSandbox", s))?
            .into_inner()
            .pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let resp = self.runtime.clone().stop_pod_sandbox(req).await;
        resp.map_err(|s| RuntimeError::call("StopPodSandbox", s))?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let resp = self.runtime.clone().remove_pod_sandbox(req).await;
        resp.map_err(|s| RuntimeError::call("RemovePodSandbox", s))?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let resp = self.runtime.clone().pod_sandbox_status(req).await;
        resp.map_err(|s| RuntimeError::call("PodSandboxStatus", s))?
            .into_inner()
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
        let resp = self.runtime.clone().pod_sandbox_status(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("PodSandboxStatus", s))?
            .into_inner()
            .info)
    }

    async fn list_pod_sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let req = cri::ListPodSandboxRequest { filter };
        let resp = self.runtime.clone().list_pod_sandbox(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("ListPodSandbox", s))?
            .into_inner()
            .items)
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
        let resp = self.runtime.clone().create_container(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("CreateContainer", s))?
            .into_inner()
            .container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        let resp = self.runtime.clone().start_container(req).await;
        resp.map_err(|s| RuntimeError::call("StartContainer", s))?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_seconds,
        };
        let resp = self.runtime.clone().stop_container(req).await;
        resp.map_err(|s| RuntimeError::call("StopContainer", s))?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        let resp = self.runtime.clone().remove_container(req).await;
        resp.map_err(|s| RuntimeError::call("RemoveContainer", s))?;
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let resp = self.runtime.clone().container_status(req).await;
        resp.map_err(|s| RuntimeError::call("ContainerStatus", s))?
            .into_inner()
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
        let resp = self.runtime.clone().list_containers(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("ListContainers", s))?
            .into_inner()
            .containers)
    }

    async fn image_status(&self, image: &str) -> Result<Option<String>> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let resp = self.images.clone().image_status(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("ImageStatus", s))?
            .into_inner()
            .image
            .map(|i| i.id))
    }

    async fn image_user(&self, image: &str) -> Result<super::ImageUser> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let resp = self.images.clone().image_status(req).await;
        let image = resp
            .map_err(|s| RuntimeError::call("ImageStatus", s))?
            .into_inner()
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
        let resp = self.images.clone().pull_image(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("PullImage", s))?
            .into_inner()
            .image_ref)
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
        let resp = self.runtime.clone().exec_sync(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("ExecSync", s))?
            .into_inner())
    }

    async fn exec(&self, req: cri::ExecRequest) -> Result<String> {
        let resp = self.runtime.clone().exec(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("Exec", s))?
            .into_inner()
            .url)
    }

    async fn port_forward(&self, sandbox_id: &str, port: i32) -> Result<String> {
        let req = cri::PortForwardRequest {
            pod_sandbox_id: sandbox_id.into(),
            port: vec![port],
        };
        let resp = self.runtime.clone().port_forward(req).await;
        Ok(resp
            .map_err(|s| RuntimeError::call("PortForward", s))?
            .into_inner()
            .url)
    }
}

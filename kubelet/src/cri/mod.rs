//! The container runtime boundary: the [`Runtime`] trait holds exactly the
//! CRI operations the kubelet uses; [`RemoteRuntime`] speaks CRI v1 to
//! containerd over a unix socket, [`FakeRuntime`] records calls in memory
//! for unit tests.
//!
//! To ensure correctness an implementation must: return sandboxes and
//! containers with the labels they were created with (the kubelet finds its
//! pods again by `io.kubernetes.pod.uid` after a restart); number attempts as
//! given in the metadata; and fail `pull_image` rather than invent an image.

mod fake;
mod remote;

pub(crate) use fake::now_ns;
pub use fake::FakeRuntime;
pub use remote::{RemoteRuntime, DEFAULT_RUNTIME_REQUEST_TIMEOUT};

use k8s_cri::v1 as cri;

use crate::pod_worker::POD_UID_LABEL;

/// A failed runtime call: which operation, and the runtime's message.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("connecting to the container runtime at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("CRI {op} failed: {message}")]
    Call { op: &'static str, message: String },
    #[error("CRI {op} did not answer within {after:?} (runtimeRequestTimeout)")]
    Timeout {
        op: &'static str,
        after: std::time::Duration,
    },
}

impl RuntimeError {
    pub(crate) fn call(op: &'static str, status: tonic::Status) -> RuntimeError {
        RuntimeError::Call {
            op,
            message: status.message().to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Selects one pod's sandboxes by the `io.kubernetes.pod.uid` label.
pub fn pod_sandboxes_of(pod_uid: &str) -> cri::PodSandboxFilter {
    cri::PodSandboxFilter {
        label_selector: [(POD_UID_LABEL.to_string(), pod_uid.to_string())].into(),
        ..Default::default()
    }
}

/// Selects one pod's containers (of every sandbox) by the
/// `io.kubernetes.pod.uid` label.
pub fn containers_of_pod(pod_uid: &str) -> cri::ContainerFilter {
    cri::ContainerFilter {
        label_selector: [(POD_UID_LABEL.to_string(), pod_uid.to_string())].into(),
        ..Default::default()
    }
}

/// Selects the containers of one sandbox.
pub fn containers_of_sandbox(sandbox_id: &str) -> cri::ContainerFilter {
    cri::ContainerFilter {
        pod_sandbox_id: sandbox_id.to_string(),
        ..Default::default()
    }
}

/// The user an image runs as (its config's `USER`), as CRI reports it: a
/// numeric `uid`, or else a `username`; neither means root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

/// The CRI operations the kubelet uses.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn version(&self) -> Result<cri::VersionResponse>;
    /// Creates and starts a sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus>;
    /// The runtime's verbose sandbox information (`PodSandboxStatus` with
    /// `verbose`; containerd puts a JSON document under `info` holding the
    /// sandbox's OCI spec and so its network namespace). Empty unless the
    /// runtime says more.
    async fn pod_sandbox_info(
        &self,
        id: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        let _ = id;
        Ok(Default::default())
    }
    /// The sandboxes `filter` selects (all with `None`).
    async fn list_pod_sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>>;
    /// Creates a container in `sandbox_id`; returns its id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops with SIGTERM, then SIGKILL after `timeout_seconds`.
    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus>;
    /// The containers `filter` selects (all with `None`).
    async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>>;
    /// The image's id (`sha256:...`) when present, `None` when missing.
    async fn image_status(&self, image: &str) -> Result<Option<String>>;
    /// The user `image` runs as (for `runAsNonRoot`). Unless a runtime
    /// says otherwise, an image runs as root.
    async fn image_user(&self, _image: &str) -> Result<ImageUser> {
        Ok(ImageUser::default())
    }
    /// Pulls an image; returns its reference.
    async fn pull_image(&self, image: &str) -> Result<String>;
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<cri::ExecSyncResponse>;
    /// Prepares a streaming exec; returns the URL of the runtime's
    /// streaming server to connect to (single use).
    async fn exec(&self, req: cri::ExecRequest) -> Result<String> {
        let _ = req;
        Err(RuntimeError::Call {
            op: "Exec",
            message: "this runtime has no streaming server".into(),
        })
    }
    /// Prepares a port-forward into a sandbox; returns the streaming URL.
    async fn port_forward(&self, sandbox_id: &str, port: i32) -> Result<String> {
        let _ = (sandbox_id, port);
        Err(RuntimeError::Call {
            op: "PortForward",
            message: "this runtime has no streaming server".into(),
        })
    }
}

//! [`FakeRuntime`]: an in-memory [`Runtime`] for unit tests. It records
//! every call in order and lets the test end containers (`exit_container`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;

use super::{Result, Runtime, RuntimeError};

#[derive(Default)]
struct State {
    next_id: u64,
    calls: Vec<String>,
    sandboxes: BTreeMap<String, cri::PodSandboxStatus>,
    containers: BTreeMap<String, (String, cri::ContainerStatus)>,
    images: BTreeSet<String>,
    /// Operations that fail once, then succeed (e.g. "RunPodSandbox").
    fail_once: BTreeSet<String>,
    /// Answers ExecSync (set with `on_exec`); none means exit code 0.
    exec: Option<ExecHandler>,
    /// How often each read-only call was made (`ListPodSandbox`,
    /// `ListContainers`, `ContainerStatus`, `PodSandboxStatus`), each list
    /// counted as `<op>` when unfiltered and `<op> filtered` otherwise.
    reads: BTreeMap<String, usize>,
}

/// Computes an ExecSync answer from the container id and the command.
type ExecHandler = Arc<dyn Fn(&str, &[String]) -> cri::ExecSyncResponse + Send + Sync>;

/// An in-memory runtime; clones share state.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

/// CRI label selectors: every pair must be among the labels.
fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

impl FakeRuntime {
    /// A runtime that holds `images`.
    pub fn with_images(images: &[&str]) -> FakeRuntime {
        let f = FakeRuntime::default();
        f.state.lock().unwrap().images = images.iter().map(|s| s.to_string()).collect();
        f
    }

    /// Every call so far, e.g. `RunPodSandbox web`, `CreateContainer app`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many times the read-only call `op` was made (see `State::reads`).
    pub fn reads(&self, op: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .reads
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    /// Makes the next call of `op` fail.
    pub fn fail_once(&self, op: &str) {
        self.state.lock().unwrap().fail_once.insert(op.into());
    }

    /// Answers every later ExecSync with `handler(container_id, cmd)`.
    pub fn on_exec(
        &self,
        handler: impl Fn(&str, &[String]) -> cri::ExecSyncResponse + Send + Sync + 'static,
    ) {
        self.state.lock().unwrap().exec = Some(Arc::new(handler));
    }

    /// Ends a running container with `exit_code`, as if its process exited.
    pub fn exit_container(&self, id: &str, exit_code: i32) {
        let mut s = self.state.lock().unwrap();
        if let Some((_, c)) = s.containers.get_mut(id) {
            c.state = cri::ContainerState::ContainerExited as i32;
            c.exit_code = exit_code;
            c.finished_at = now_ns();
            c.reason = if exit_code == 0 { "Completed" } else { "Error" }.into();
        }
    }

    /// Ids of the containers named `name`, oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.containers
            .iter()
            .filter(|(_, (_, c))| c.metadata.as_ref().is_some_and(|m| m.name == name))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn record(&self, s: &mut State, call: String, op: &str) -> Result<()> {
        s.calls.push(call);
        if s.fail_once.remove(op) {
            return Err(RuntimeError::Call {
                op: "fake",
                message: format!("{op} failed (injected)"),
            });
        }
        Ok(())
    }

    fn read(s: &mut State, op: &str) {
        *s.reads.entry(op.to_string()).or_default() += 1;
    }

    fn id(s: &mut State, prefix: &str) -> String {
        s.next_id += 1;
        format!("{prefix}{:04}", s.next_id)
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<cri::VersionResponse> {
        Ok(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.record(&mut s, format!("RunPodSandbox {name}"), "RunPodSandbox")?;
        let id = Self::id(&mut s, "sb");
        let ip = format!("10.244.0.{}", s.next_id % 250 + 2);
        s.sandboxes.insert(
            id.clone(),
            cri::PodSandboxStatus {
                id: id.clone(),
                metadata: config.metadata,
                state: cri::PodSandboxState::SandboxReady as i32,
                created_at: now_ns(),
                network: Some(cri::PodSandboxNetworkStatus {
                    ip,
                    additional_ips: vec![],
                }),
                labels: config.labels,
                annotations: config.annotations,
                ..Default::default()
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        self.record(&mut s, format!("StopPodSandbox {id}"), "StopPodSandbox")?;
        for (sb, c) in s.containers.values_mut() {
            if sb == id && c.state == cri::ContainerState::ContainerRunning as i32 {
                c.state = cri::ContainerState::ContainerExited as i32;
                c.exit_code = 137;
                c.finished_at = now_ns();
            }
        }
        if let Some(sb) = s.sandboxes.get_mut(id) {
            sb.state = cri::PodSandboxState::SandboxNotready as i32;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        self.record(&mut s, format!("RemovePodSandbox {id}"), "RemovePodSandbox")?;
        s.sandboxes.remove(id);
        s.containers.retain(|_, (sb, _)| sb != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let mut s = self.state.lock().unwrap();
        Self::read(&mut s, "PodSandboxStatus");
        s.sandboxes.get(id).cloned().ok_or(RuntimeError::Call {
            op: "PodSandboxStatus",
            message: format!("sandbox {id} not found"),
        })
    }

    async fn list_pod_sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let mut s = self.state.lock().unwrap();
        Self::read(
            &mut s,
            if filter.is_some() {
                "ListPodSandbox filtered"
            } else {
                "ListPodSandbox"
            },
        );
        let f = filter.unwrap_or_default();
        Ok(s.sandboxes
            .values()
            .filter(|sb| f.id.is_empty() || f.id == sb.id)
            .filter(|sb| f.state.as_ref().is_none_or(|v| v.state == sb.state))
            .filter(|sb| labels_match(&f.label_selector, &sb.labels))
            .map(|sb| cri::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.metadata.clone(),
                state: sb.state,
                created_at: sb.created_at,
                labels: sb.labels.clone(),
                annotations: sb.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        _sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.record(&mut s, format!("CreateContainer {name}"), "CreateContainer")?;
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(RuntimeError::Call {
                op: "CreateContainer",
                message: format!("sandbox {sandbox_id} not found"),
            });
        }
        let id = Self::id(&mut s, "c");
        let image = config.image.clone().unwrap_or_default();
        s.containers.insert(
            id.clone(),
            (
                sandbox_id.to_string(),
                cri::ContainerStatus {
                    id: id.clone(),
                    metadata: config.metadata,
                    state: cri::ContainerState::ContainerCreated as i32,
                    created_at: now_ns(),
                    image_ref: format!("sha256:{}", image.image),
                    image: Some(image),
                    labels: config.labels,
                    annotations: config.annotations,
                    ..Default::default()
                },
            ),
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let name = s
            .containers
            .get(id)
            .and_then(|(_, c)| c.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default();
        self.record(&mut s, format!("StartContainer {name}"), "StartContainer")?;
        let (_, c) = s.containers.get_mut(id).ok_or(RuntimeError::Call {
            op: "StartContainer",
            message: format!("container {id} not found"),
        })?;
        c.state = cri::ContainerState::ContainerRunning as i32;
        c.started_at = now_ns();
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        self.record(
            &mut s,
            format!("StopContainer {id} {timeout_seconds}"),
            "StopContainer",
        )?;
        if let Some((_, c)) = s.containers.get_mut(id) {
            if c.state == cri::ContainerState::ContainerRunning as i32 {
                c.state = cri::ContainerState::ContainerExited as i32;
                c.exit_code = 143;
                c.finished_at = now_ns();
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        self.record(&mut s, format!("RemoveContainer {id}"), "RemoveContainer")?;
        s.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let mut s = self.state.lock().unwrap();
        Self::read(&mut s, "ContainerStatus");
        s.containers
            .get(id)
            .map(|(_, c)| c.clone())
            .ok_or(RuntimeError::Call {
                op: "ContainerStatus",
                message: format!("container {id} not found"),
            })
    }

    async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        let mut s = self.state.lock().unwrap();
        Self::read(
            &mut s,
            if filter.is_some() {
                "ListContainers filtered"
            } else {
                "ListContainers"
            },
        );
        let f = filter.unwrap_or_default();
        Ok(s.containers
            .values()
            .filter(|(_, c)| f.id.is_empty() || f.id == c.id)
            .filter(|(sb, _)| f.pod_sandbox_id.is_empty() || &f.pod_sandbox_id == sb)
            .filter(|(_, c)| f.state.as_ref().is_none_or(|v| v.state == c.state))
            .filter(|(_, c)| labels_match(&f.label_selector, &c.labels))
            .map(|(sb, c)| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: sb.clone(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                image_id: String::new(),
            })
            .collect())
    }

    async fn image_status(&self, image: &str) -> Result<Option<String>> {
        let s = self.state.lock().unwrap();
        Ok(s.images.contains(image).then(|| format!("sha256:{image}")))
    }

    async fn pull_image(&self, image: &str) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("PullImage {image}"));
        Err(RuntimeError::Call {
            op: "PullImage",
            message: format!("{image}: no registry reachable"),
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        _timeout_seconds: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("ExecSync {id} {}", cmd.join(" ")));
        Ok(match &s.exec {
            Some(handler) => handler(id, &cmd),
            None => cri::ExecSyncResponse::default(),
        })
    }
}

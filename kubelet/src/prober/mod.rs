//! Container probes — liveness, readiness, startup — as upstream's prober
//! manager runs them: one worker per (pod, container, probe type), started
//! when the container runs and keyed by its container id, so a restarted
//! container starts over with fresh workers. Entry point: [`ProbeManager`]
//! (`sync_pod` after each pod sync, `results` for the pod's status).
//!
//! To ensure correctness:
//! - readiness counts as failed until its first success; liveness and
//!   startup count as succeeded until they fail (a container without a
//!   startup probe is started once it runs);
//! - while a startup probe has not succeeded, liveness and readiness probes
//!   do not run;
//! - a liveness or startup failure past `failureThreshold` stops the
//!   container (the pod worker then restarts it under the restart policy)
//!   and ends that container's workers.

pub mod exec;
pub mod grpc;
pub mod http;
pub mod tcp;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferrokube_client::{EventRecorder, EventSink};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use tokio::sync::Notify;

use crate::cri::Runtime;
use crate::status::{ContainersByName, ProbeResults, Probed};

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeType {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeType {
    /// As upstream's events say it: `Liveness probe failed: ...`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Liveness => "Liveness",
            ProbeType::Readiness => "Readiness",
            ProbeType::Startup => "Startup",
        }
    }

    fn probe_of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeType::Liveness => c.liveness_probe.as_ref(),
            ProbeType::Readiness => c.readiness_probe.as_ref(),
            ProbeType::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// One probe's outcome; a failure carries the message users see after
/// `<Type> probe failed: `, a warning (a success worth telling, e.g. an
/// httpGet redirect not followed) the one after `<Type> probe warning: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Warning(String),
    Failure(String),
}

/// A probe that cannot be run as specified (reported as `<Type> probe
/// errored: ...` and counted as a failure).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("couldn't find port {name:?} in container {container:?}")]
    PortNotFound { name: String, container: String },
    #[error("invalid port number: {0}")]
    InvalidPort(i64),
    #[error("the pod has no IP address to probe")]
    NoPodIp,
    #[error("the probe has no handler (exec, httpGet, tcpSocket or grpc)")]
    NoHandler,
}

/// An [`EventSink`] behind an `Arc`, so that the manager does not carry
/// the sink's type (the real one is the apiserver client).
#[derive(Clone)]
pub struct SharedSink(pub Arc<dyn EventSink>);

#[async_trait::async_trait]
impl EventSink for SharedSink {
    async fn create(
        &self,
        namespace: &str,
        event: Value,
    ) -> Result<Value, ferrokube_client::Error> {
        self.0.create(namespace, event).await
    }
    async fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, ferrokube_client::Error> {
        self.0.patch(namespace, name, patch).await
    }
}

/// What the workers share with the manager.
struct Shared<R> {
    runtime: Arc<R>,
    recorder: EventRecorder<SharedSink>,
    /// The last result that passed its threshold, by (container id, type);
    /// absent means "no result yet".
    results: Mutex<HashMap<(String, ProbeType), bool>>,
    /// Woken when a result changes or a container is killed.
    changed: Notify,
}

impl<R> Shared<R> {
    fn result(&self, container_id: &str, probe_type: ProbeType) -> Option<bool> {
        self.results
            .lock()
            .unwrap()
            .get(&(container_id.to_string(), probe_type))
            .copied()
    }

    /// Stores a result; true when it differs from the one before.
    fn set_result(&self, container_id: &str, probe_type: ProbeType, success: bool) -> bool {
        let previous = self
            .results
            .lock()
            .unwrap()
            .insert((container_id.to_string(), probe_type), success);
        previous != Some(success)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WorkerKey {
    pod_uid: String,
    container: String,
    probe_type: ProbeType,
}

/// A running worker; dropping it stops the worker.
struct WorkerHandle {
    container_id: String,
    task: tokio::task::AbortHandle,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the probes of the containers on this node and keeps their results.
pub struct ProbeManager<R> {
    shared: Arc<Shared<R>>,
    workers: Mutex<HashMap<WorkerKey, WorkerHandle>>,
}

impl<R: Runtime> ProbeManager<R> {
    /// `events` receives the `Unhealthy` and `Killing` Events, recorded as
    /// component `kubelet` on host `node_name`.
    pub fn new(runtime: Arc<R>, events: Arc<dyn EventSink>, node_name: &str) -> Self {
        ProbeManager {
            shared: Arc::new(Shared {
                runtime,
                recorder: EventRecorder::new(SharedSink(events), "kubelet").with_host(node_name),
                results: Mutex::new(HashMap::new()),
                changed: Notify::new(),
            }),
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts workers for the pod's running containers that have probes and
    /// stops those whose container stopped or was replaced. `containers` is
    /// the runtime's view of the pod's current sandbox (newest attempt first).
    pub fn sync_pod(&self, pod: &Pod, containers: &ContainersByName, pod_ip: Option<&str>) {
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut wanted = HashSet::new();
        let mut workers = self.workers.lock().unwrap();
        for c in &spec.containers {
            let Some(latest) = containers.get(&c.name).and_then(|v| v.first()) else {
                continue;
            };
            if latest.state != cri::ContainerState::ContainerRunning as i32 {
                continue;
            }
            for probe_type in [
                ProbeType::Startup,
                ProbeType::Liveness,
                ProbeType::Readiness,
            ] {
                let Some(probe) = probe_type.probe_of(c) else {
                    continue;
                };
                let key = WorkerKey {
                    pod_uid: pod_uid.clone(),
                    container: c.name.clone(),
                    probe_type,
                };
                wanted.insert(key.clone());
                if workers
                    .get(&key)
                    .is_some_and(|h| h.container_id == latest.id)
                {
                    continue;
                }
                let worker = worker::Worker {
                    shared: self.shared.clone(),
                    pod: pod.clone(),
                    container: c.clone(),
                    container_id: latest.id.clone(),
                    started_at_ns: latest.started_at,
                    probe_type,
                    probe: probe.clone(),
                    pod_ip: pod_ip.filter(|ip| !ip.is_empty()).map(str::to_string),
                };
                tracing::debug!(pod = %crate::pod_worker::pod_name(pod), container = %c.name, probe = probe_type.as_str(), id = %latest.id, "starting probe worker");
                let handle = WorkerHandle {
                    container_id: latest.id.clone(),
                    task: tokio::spawn(worker.run()).abort_handle(),
                };
                if let Some(old) = workers.insert(key, handle) {
                    self.forget_results(&old, probe_type);
                }
            }
        }
        let stale: Vec<WorkerKey> = workers
            .keys()
            .filter(|k| k.pod_uid == pod_uid && !wanted.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            if let Some(old) = workers.remove(&key) {
                self.forget_results(&old, key.probe_type);
            }
        }
    }

    /// What the probes say of the pod's containers (by container id), for
    /// [`crate::status::compute_pod_status`]. Containers without startup and
    /// readiness probes are left out: they are started and ready once they run.
    pub fn results(&self, pod: &Pod, containers: &ContainersByName) -> ProbeResults {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut out = ProbeResults::new();
        for c in &spec.containers {
            if c.startup_probe.is_none() && c.readiness_probe.is_none() {
                continue;
            }
            let Some(latest) = containers.get(&c.name).and_then(|v| v.first()) else {
                continue;
            };
            let started = c.startup_probe.is_none()
                || self.shared.result(&latest.id, ProbeType::Startup) == Some(true);
            let ready = started
                && (c.readiness_probe.is_none()
                    || self.shared.result(&latest.id, ProbeType::Readiness) == Some(true));
            out.insert(latest.id.clone(), Probed { started, ready });
        }
        out
    }

    /// Stops the workers of one pod (deleted or finished).
    pub fn remove_pod(&self, pod_uid: &str) {
        self.retain(|uid| uid != pod_uid);
    }

    /// Stops the workers of pods not in `live_uids`.
    pub fn retain_pods(&self, live_uids: &HashSet<String>) {
        self.retain(|uid| live_uids.contains(uid));
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut workers = self.workers.lock().unwrap();
        let gone: Vec<WorkerKey> = workers
            .keys()
            .filter(|k| !keep(&k.pod_uid))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = workers.remove(&key) {
                self.forget_results(&old, key.probe_type);
            }
        }
    }

    fn forget_results(&self, old: &WorkerHandle, probe_type: ProbeType) {
        self.shared
            .results
            .lock()
            .unwrap()
            .remove(&(old.container_id.clone(), probe_type));
    }

    /// Resolves when a probe result changed or a probe killed a container
    /// since the last call: time to sync the pods again.
    pub async fn changed(&self) {
        self.shared.changed.notified().await
    }
}

/// A probe port by number, or by the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, ProbeError> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match named.or_else(|| name.parse().ok()) {
                Some(n) => n,
                None => {
                    return Err(ProbeError::PortNotFound {
                        name: name.clone(),
                        container: container.name.clone(),
                    })
                }
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(ProbeError::InvalidPort(number))
}

#[cfg(test)]
mod tests;

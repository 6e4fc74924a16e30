//! [`PodWorker`]: makes the runtime match one pod's spec — sandbox, then
//! init containers in order, then containers, restarts under
//! CrashLoopBackOff, graceful kill on deletion — and computes the status to
//! report. Entry point: [`PodWorker::sync_pod`].
//!
//! It keeps no state that a restart would lose except backoff delays: the
//! runtime's labels (`io.kubernetes.pod.uid`, `io.kubernetes.container.name`)
//! and attempt numbers say which sandbox and containers belong to which pod,
//! so a restarted kubelet adopts running containers without touching them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};

use crate::backoff::CrashLoopBackOff;
use crate::cri::{containers_of_sandbox, Runtime, RuntimeError};
use crate::pleg::Pleg;
use crate::prober::ProbeManager;
use crate::status::{compute_pod_status, ContainersByName, ProbeResults, Waiting};
use crate::volumes::VolumeManager;

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// What one sync of a pod led to.
#[derive(Debug)]
pub enum SyncOutcome {
    /// The pod runs (or is starting); report this status.
    Status(Box<PodStatus>),
    /// The pod was being deleted and everything of it is now stopped and
    /// removed: the pod object can be deleted for good.
    Killed,
    /// The pod already finished; its containers stay stopped.
    Finished,
}

/// The status a sync reported; panics on any other outcome (tests only).
#[cfg(test)]
pub(crate) fn status_of(o: SyncOutcome) -> PodStatus {
    match o {
        SyncOutcome::Status(s) => *s,
        other => panic!("want a status, got {other:?}"),
    }
}

/// A pod the eviction manager chose (see [`crate::eviction::manager`]): its
/// next sync stops its containers within `grace_seconds` and reports it
/// Failed with reason `Evicted`; it never runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub grace_seconds: i64,
    /// Upstream's eviction message, for the status and its condition.
    pub message: String,
}

/// Node-wide settings the worker needs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub node_name: String,
    pub host_ip: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub pod_logs_dir: std::path::PathBuf,
}

pub struct PodWorker<R> {
    runtime: Arc<R>,
    settings: WorkerSettings,
    backoff: Mutex<CrashLoopBackOff>,
    /// Liveness, readiness and startup probes (none in tests that do not
    /// set them with [`PodWorker::with_probes`]).
    probes: Option<Arc<ProbeManager<R>>>,
    /// Pod volumes and the objects env and volumes read (`with_volume_manager`).
    volumes: Arc<VolumeManager>,
    cgroup_driver: crate::cgroups::CgroupDriver,
    /// The runtime's sandboxes and containers by pod, relisted for all pods
    /// at once (`Pleg::relist`); syncs read their pod's state from it.
    pleg: Arc<Pleg<R>>,
    /// Pods to evict, by UID, until they are gone from the API.
    evictions: Mutex<HashMap<String, Eviction>>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn now_ns() -> i64 {
    crate::cri::now_ns()
}

impl<R: Runtime> PodWorker<R> {
    pub fn new(runtime: Arc<R>, settings: WorkerSettings, backoff: CrashLoopBackOff) -> Self {
        PodWorker {
            settings,
            backoff: Mutex::new(backoff),
            probes: None,
            volumes: Arc::new(VolumeManager::disabled()),
            cgroup_driver: Default::default(),
            pleg: Arc::new(Pleg::new(runtime.clone())),
            evictions: Mutex::new(HashMap::new()),
            runtime,
        }
    }

    /// Runs the containers' probes with `probes`.
    pub fn with_probes(mut self, probes: Arc<ProbeManager<R>>) -> Self {
        self.probes = Some(probes);
        self
    }

    /// Sets where pod volumes live and where configMaps, secrets and
    /// services are read from (by default: nowhere).
    pub fn with_volume_manager(mut self, volumes: Arc<VolumeManager>) -> Self {
        self.volumes = volumes;
        self
    }

    pub fn cgroup_driver(&self) -> crate::cgroups::CgroupDriver {
        self.cgroup_driver
    }

    /// How pod cgroups are named (the kubelet's `cgroupDriver`).
    pub fn with_cgroup_driver(mut self, driver: crate::cgroups::CgroupDriver) -> Self {
        self.cgroup_driver = driver;
        self
    }

    pub fn runtime(&self) -> &Arc<R> {
        &self.runtime
    }

    /// The runtime cache syncs read from; the kubelet relists it.
    pub fn pleg(&self) -> &Arc<Pleg<R>> {
        &self.pleg
    }

    /// Marks the pod with `uid` for eviction; its next sync carries it out.
    pub fn evict(&self, uid: &str, eviction: Eviction) {
        self.evictions
            .lock()
            .unwrap()
            .insert(uid.to_string(), eviction);
    }

    /// Whether the pod with `uid` was marked for eviction.
    pub fn is_evicted(&self, uid: &str) -> bool {
        self.evictions.lock().unwrap().contains_key(uid)
    }

    pub fn forget_pods_except(&self, live: &std::collections::HashSet<String>) {
        self.evictions
            .lock()
            .unwrap()
            .retain(|uid, _| live.contains(uid));
        self.backoff.lock().unwrap().retain_pods(live);
        if let Some(probes) = &self.probes {
            probes.retain_pods(live);
        }
    }

    /// Brings the runtime in line with `pod` and returns what to report.
    ///
    /// It starts from the pod's cached runtime state (see [`Pleg`]), so a
    /// pod with nothing to do costs no runtime call; once it has changed
    /// the runtime, it lists its pod again and reports that.
    pub async fn sync_pod(&self, pod: &Pod) -> Result<SyncOutcome, RuntimeError> {
        let uid = uid(pod);
        // Probes end with the pod (deleted or finished).
        if let Some(probes) = &self.probes {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if pod.metadata.deletion_timestamp.is_some()
                || matches!(phase, Some("Succeeded" | "Failed"))
            {
                probes.remove_pod(&uid);
            }
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or(pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            // Killing goes by what the runtime has now, not by the cache.
            let state = self.pleg.refresh_pod(&uid).await?;
            if !state.is_empty() {
                self.kill_sandboxes(&state.sandboxes, grace).await?;
                self.pleg.refresh_pod(&uid).await?;
            }
            return Ok(SyncOutcome::Killed);
        }
        let state = self.pleg.pod_state(&uid).await?;
        let sandboxes = &state.sandboxes;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // An evicted pod's containers and sandboxes are removed, as
            // upstream's garbage collection removes evicted pods' content.
            if crate::status::is_evicted(pod) && !sandboxes.is_empty() {
                self.kill_sandboxes(sandboxes, 0).await?;
                self.pleg.refresh_pod(&uid).await?;
                return Ok(SyncOutcome::Finished);
            }
            let mut stopped = false;
            for sb in sandboxes {
                if sb.state == cri::PodSandboxState::SandboxReady as i32 {
                    self.runtime.stop_pod_sandbox(&sb.id).await?;
                    stopped = true;
                }
            }
            if stopped {
                self.pleg.refresh_pod(&uid).await?;
            }
            return Ok(SyncOutcome::Finished);
        }
        let eviction = self.evictions.lock().unwrap().get(&uid).cloned();
        if let Some(eviction) = eviction {
            return self.terminate_evicted(pod, &eviction).await;
        }
        // Volumes are ready (and projected ones refreshed) before the
        // sandbox and containers, as upstream's WaitForAttachAndMount.
        if let Err(e) = self.volumes.set_up_pod(pod).await {
            return Ok(self.volume_set_up_failed(pod, &e));
        }

        let mut waiting: HashMap<String, Waiting> = HashMap::new();
        // Whether this sync changed the runtime (and so lists its pod again).
        let mut acted = false;
        let ready = sandboxes
            .iter()
            .find(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
        let (sandbox_id, attempt, containers) = match ready {
            Some(sb) => (
                sb.id.clone(),
                sb.metadata.as_ref().map_or(0, |m| m.attempt),
                state.containers_of(&sb.id),
            ),
            None => {
                let attempt = sandboxes
                    .first()
                    .map_or(0, |s| s.metadata.as_ref().map_or(0, |m| m.attempt) + 1);
                let config = self.sandbox_config(pod, attempt);
                if let Err(e) = std::fs::create_dir_all(&config.log_directory) {
                    tracing::warn!(dir = %config.log_directory, error = %e, "creating the pod log directory");
                }
                match self.runtime.run_pod_sandbox(config).await {
                    Ok(id) => {
                        tracing::info!(pod = %pod_name(pod), sandbox = %id, attempt, "started pod sandbox");
                        acted = true;
                        // The previous sandbox (and its containers) is replaced.
                        self.kill_sandboxes(sandboxes, 2).await?;
                        // A new sandbox has no containers yet.
                        (id, attempt, ContainersByName::new())
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod_name(pod), error = %e, "creating the pod sandbox failed; will retry");
                        // Whatever a failed attempt left is seen by the next sync.
                        self.pleg.refresh_pod(&uid).await?;
                        let all = all_containers(pod);
                        for c in all {
                            waiting.insert(
                                c.name.clone(),
                                Waiting {
                                    reason: "ContainerCreating".into(),
                                    message: e.to_string(),
                                },
                            );
                        }
                        let status = compute_pod_status(
                            pod,
                            &HashMap::new(),
                            &waiting,
                            None,
                            &self.settings.host_ip,
                            &ProbeResults::new(),
                        );
                        return Ok(SyncOutcome::Status(Box::new(status)));
                    }
                }
            }
        };
        let sandbox_config = self.sandbox_config(pod, attempt);
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");

        let mut init_done = true;
        for c in spec.init_containers.iter().flatten() {
            let attempts = containers.get(&c.name).map_or(&[][..], |v| &v[..]);
            match attempts.first() {
                Some(l)
                    if l.state == cri::ContainerState::ContainerExited as i32
                        && l.exit_code == 0 =>
                {
                    continue
                }
                Some(l) if l.state == cri::ContainerState::ContainerExited as i32 => {
                    init_done = false;
                    if policy != "Never" {
                        acted |= self
                            .restart_with_backoff(
                                pod,
                                c,
                                &sandbox_id,
                                &sandbox_config,
                                attempts,
                                &mut waiting,
                            )
                            .await;
                    }
                    break;
                }
                Some(l) if l.state == cri::ContainerState::ContainerCreated as i32 => {
                    init_done = false;
                    self.start_or_wait(pod, c, &l.id, &mut waiting).await;
                    acted = true;
                    break;
                }
                Some(_) => {
                    init_done = false;
                    break;
                }
                None => {
                    init_done = false;
                    acted |= self
                        .start_container(pod, c, &sandbox_id, &sandbox_config, 0, &mut waiting)
                        .await;
                    break;
                }
            }
        }
        if init_done {
            for c in &spec.containers {
                let attempts = containers.get(&c.name).map_or(&[][..], |v| &v[..]);
                match attempts.first() {
                    None => {
                        acted |= self
                            .start_container(pod, c, &sandbox_id, &sandbox_config, 0, &mut waiting)
                            .await;
                    }
                    Some(l) if l.state == cri::ContainerState::ContainerExited as i32 => {
                        let restart =
                            policy == "Always" || (policy == "OnFailure" && l.exit_code != 0);
                        if restart {
                            acted |= self
                                .restart_with_backoff(
                                    pod,
                                    c,
                                    &sandbox_id,
                                    &sandbox_config,
                                    attempts,
                                    &mut waiting,
                                )
                                .await;
                        }
                    }
                    Some(l) if l.state == cri::ContainerState::ContainerCreated as i32 => {
                        self.start_or_wait(pod, c, &l.id, &mut waiting).await;
                        acted = true;
                    }
                    Some(_) => {}
                }
            }
        }

        let containers = if acted {
            self.pleg
                .refresh_pod(&uid)
                .await?
                .containers_of(&sandbox_id)
        } else {
            containers
        };
        let ip = if spec.host_network == Some(true) {
            Some(self.settings.host_ip.clone())
        } else {
            self.pleg.sandbox_ips(&sandbox_id).await?.into_iter().next()
        };
        let probed = match &self.probes {
            Some(probes) => {
                probes.sync_pod(pod, &containers, ip.as_deref());
                probes.results(pod, &containers)
            }
            None => ProbeResults::new(),
        };
        let status = compute_pod_status(
            pod,
            &containers,
            &waiting,
            ip.as_deref(),
            &self.settings.host_ip,
            &probed,
        );
        Ok(SyncOutcome::Status(Box::new(status)))
    }

    /// Stops the pod's containers (SIGKILL after the eviction's grace) and
    /// sandboxes and reports it Failed with reason `Evicted`: the last
    /// state of its containers, and a `DisruptionTarget` condition. Its
    /// content is removed once that status is in the API (the Finished
    /// path); until then a repeat finds nothing left running.
    async fn terminate_evicted(
        &self,
        pod: &Pod,
        eviction: &Eviction,
    ) -> Result<SyncOutcome, RuntimeError> {
        let uid = uid(pod);
        if let Some(probes) = &self.probes {
            probes.remove_pod(&uid);
        }
        let state = self.pleg.refresh_pod(&uid).await?;
        let stops = state
            .containers
            .iter()
            .filter(|(_, c)| c.state == cri::ContainerState::ContainerRunning as i32)
            .map(|(_, c)| self.runtime.stop_container(&c.id, eviction.grace_seconds));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        for sb in &state.sandboxes {
            if sb.state == cri::PodSandboxState::SandboxReady as i32 {
                self.runtime.stop_pod_sandbox(&sb.id).await?;
            }
        }
        let state = self.pleg.refresh_pod(&uid).await?;
        let containers = state
            .sandboxes
            .first()
            .map(|sb| state.containers_of(&sb.id))
            .unwrap_or_default();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let mut status = compute_pod_status(
            pod,
            &containers,
            &HashMap::new(),
            ip.as_deref(),
            &self.settings.host_ip,
            &ProbeResults::new(),
        );
        crate::status::mark_evicted(&mut status, &eviction.message);
        tracing::info!(pod = %pod_name(pod), grace_seconds = eviction.grace_seconds, "pod evicted: containers stopped");
        Ok(SyncOutcome::Status(Box::new(status)))
    }

    /// Restarts a dead container unless it is still backing off; true when
    /// it touched the runtime.
    async fn restart_with_backoff(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox_id: &str,
        sandbox_config: &cri::PodSandboxConfig,
        attempts: &[cri::ContainerStatus],
        waiting: &mut HashMap<String, Waiting>,
    ) -> bool {
        let latest = &attempts[0];
        let key = format!("{}/{}", uid(pod), c.name);
        let now = now_ns();
        let remaining = self
            .backoff
            .lock()
            .unwrap()
            .remaining(&key, latest.finished_at, now);
        if let Some(left) = remaining {
            let delay = self.backoff.lock().unwrap().delay(&key);
            waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {}s restarting failed container={} pod={}",
                        delay.as_secs(),
                        c.name,
                        pod_name(pod)
                    ),
                },
            );
            tracing::debug!(pod = %pod_name(pod), container = %c.name, ?left, "in CrashLoopBackOff");
            return false;
        }
        self.backoff.lock().unwrap().restarted(&key, now);
        // Keep only the newest dead attempt (for lastState); older ones go.
        for old in attempts.iter().skip(1) {
            let _ = self.runtime.remove_container(&old.id).await;
        }
        let attempt = latest.metadata.as_ref().map_or(0, |m| m.attempt) + 1;
        tracing::info!(pod = %pod_name(pod), container = %c.name, attempt, exit_code = latest.exit_code, "restarting container");
        self.start_container(pod, c, sandbox_id, sandbox_config, attempt, waiting)
            .await;
        true
    }

    async fn start_or_wait(
        &self,
        pod: &Pod,
        c: &Container,
        id: &str,
        waiting: &mut HashMap<String, Waiting>,
    ) {
        if let Err(e) = self.runtime.start_container(id).await {
            tracing::warn!(pod = %pod_name(pod), container = %c.name, error = %e, "starting container failed");
            waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "RunContainerError".into(),
                    message: e.to_string(),
                },
            );
        }
    }

    /// Ensures the image, creates and starts attempt `attempt` of `c`; true
    /// when it got as far as creating the container.
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox_id: &str,
        sandbox_config: &cri::PodSandboxConfig,
        attempt: u32,
        waiting: &mut HashMap<String, Waiting>,
    ) -> bool {
        let image = c.image.clone().unwrap_or_default();
        if let Err(w) = self.ensure_image(c, &image).await {
            tracing::warn!(pod = %pod_name(pod), container = %c.name, reason = %w.reason, message = %w.message, "image not available");
            waiting.insert(c.name.clone(), w);
            return false;
        }
        if let Err(w) = self.check_run_as_non_root(pod, c, &image).await {
            tracing::warn!(pod = %pod_name(pod), container = %c.name, message = %w.message, "container not created");
            waiting.insert(c.name.clone(), w);
            return false;
        }
        let config = match self
            .resolved_container_config(pod, c, attempt, sandbox_id)
            .await
        {
            Ok(config) => config,
            Err(message) => {
                tracing::warn!(pod = %pod_name(pod), container = %c.name, %message, "CreateContainerConfigError");
                waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message,
                    },
                );
                return false;
            }
        };
        let log_dir = std::path::Path::new(&sandbox_config.log_directory).join(&c.name);
        let _ = std::fs::create_dir_all(log_dir);
        let id = match self
            .runtime
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), container = %c.name, error = %e, "creating container failed");
                waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CreateContainerError".into(),
                        message: e.to_string(),
                    },
                );
                // A failed create may still have left a container behind.
                return true;
            }
        };
        match self.runtime.start_container(&id).await {
            Ok(()) => {
                tracing::info!(pod = %pod_name(pod), container = %c.name, id = %id, attempt, "started container")
            }
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), container = %c.name, error = %e, "starting container failed");
                waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "RunContainerError".into(),
                        message: e.to_string(),
                    },
                );
            }
        }
        true
    }

    /// `runAsNonRoot` against the image's user (asked of the runtime only
    /// when the container has `runAsNonRoot`).
    async fn check_run_as_non_root(
        &self,
        pod: &Pod,
        c: &Container,
        image: &str,
    ) -> Result<(), Waiting> {
        if !crate::security_context::requires_non_root(pod, c) {
            return Ok(());
        }
        let user = self.runtime.image_user(image).await.map_err(|e| Waiting {
            reason: "CreateContainerConfigError".into(),
            message: e.to_string(),
        })?;
        crate::security_context::verify_run_as_non_root(pod, c, &user).map_err(|message| Waiting {
            reason: "CreateContainerConfigError".into(),
            message,
        })
    }

    /// Images are pre-imported; a missing one is pulled only when the
    /// policy allows, and with no registry that fails visibly.
    async fn ensure_image(&self, c: &Container, image: &str) -> Result<(), Waiting> {
        let present = self
            .runtime
            .image_status(image)
            .await
            .map_err(|e| Waiting {
                reason: "ErrImagePull".into(),
                message: e.to_string(),
            })?;
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':') {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        match (present, policy.as_str()) {
            (Some(_), "IfNotPresent" | "Never") => Ok(()),
            (None, "Never") => Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: format!(
                    "container image {image:?} is not present with pull policy of Never"
                ),
            }),
            (present, _) => match self.runtime.pull_image(image).await {
                Ok(_) => Ok(()),
                // "Always" with the image already here: use what we have.
                Err(_) if present.is_some() => Ok(()),
                Err(e) => Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: e.to_string(),
                }),
            },
        }
    }

    /// Stops every container (SIGTERM, SIGKILL after `grace` s), then
    /// stops and removes the sandboxes.
    pub async fn kill_sandboxes(
        &self,
        sandboxes: &[cri::PodSandbox],
        grace: i64,
    ) -> Result<(), RuntimeError> {
        if sandboxes.is_empty() {
            return Ok(());
        }
        let listed = futures::future::try_join_all(sandboxes.iter().map(|s| {
            self.runtime
                .list_containers(Some(containers_of_sandbox(&s.id)))
        }))
        .await?;
        let stops = listed
            .iter()
            .flatten()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .map(|c| self.runtime.stop_container(&c.id, grace));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        for sb in sandboxes {
            self.runtime.stop_pod_sandbox(&sb.id).await?;
            self.runtime.remove_pod_sandbox(&sb.id).await?;
            tracing::info!(sandbox = %sb.id, pod = %sb.labels.get(POD_NAME_LABEL).cloned().unwrap_or_default(), "removed pod sandbox");
        }
        Ok(())
    }

    /// Removes the sandboxes (among `sandboxes`, a relist's) of pods that
    /// no longer exist (e.g. force-deleted).
    pub async fn kill_orphans(
        &self,
        sandboxes: &[cri::PodSandbox],
        live: &std::collections::HashSet<String>,
    ) -> Result<(), RuntimeError> {
        let orphans: Vec<_> = sandboxes
            .iter()
            .filter(|s| {
                s.labels
                    .get(POD_UID_LABEL)
                    .is_some_and(|u| !live.contains(u))
            })
            .cloned()
            .collect();
        self.kill_sandboxes(&orphans, 2).await
    }

    fn sandbox_config(&self, pod: &Pod, attempt: u32) -> cri::PodSandboxConfig {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let uid = uid(pod);
        let mut labels: HashMap<String, String> = pod
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        labels.insert(POD_NAME_LABEL.into(), name.clone());
        labels.insert(POD_NAMESPACE_LABEL.into(), namespace.clone());
        labels.insert(POD_UID_LABEL.into(), uid.clone());
        let host_network = spec.host_network == Some(true);
        let hostname = if host_network {
            String::new()
        } else {
            let h = spec.hostname.clone().unwrap_or_else(|| name.clone());
            h.chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches(['-', '.'])
                .to_string()
        };
        let port_mappings = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| cri::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri::Protocol::Udp as i32,
                    Some("SCTP") => cri::Protocol::Sctp as i32,
                    _ => cri::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or_default(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
            .collect();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace: namespace.clone(),
                attempt,
            }),
            hostname,
            log_directory: self
                .settings
                .pod_logs_dir
                .join(format!("{namespace}_{name}_{uid}"))
                .display()
                .to_string(),
            dns_config: self.dns_config(pod),
            port_mappings,
            labels,
            annotations: pod
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: crate::cgroups::pod_cgroup_parent(
                    self.cgroup_driver,
                    crate::status::qos_class(pod),
                    &uid,
                ),
                security_context: Some(crate::security_context::sandbox_security_context(
                    pod,
                    namespace_options(pod),
                )),
                sysctls: crate::security_context::sandbox_sysctls(pod),
                ..Default::default()
            }),
            windows: None,
        }
    }

    /// DNS per dnsPolicy: ClusterFirst uses clusterDNS and the search path
    /// `<ns>.svc.<domain> svc.<domain> <domain>`; Default (or no
    /// clusterDNS) leaves the runtime to copy the host's resolv.conf.
    pub fn dns_config(&self, pod: &Pod) -> Option<cri::DnsConfig> {
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
        let host_network = spec.host_network == Some(true);
        let cluster_first = match policy {
            "ClusterFirstWithHostNet" => true,
            "ClusterFirst" => !host_network,
            _ => false,
        };
        let mut dns = if cluster_first && !self.settings.cluster_dns.is_empty() {
            let d = &self.settings.cluster_domain;
            Some(cri::DnsConfig {
                servers: self.settings.cluster_dns.clone(),
                searches: vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
                options: vec!["ndots:5".into()],
            })
        } else if policy == "None" {
            Some(cri::DnsConfig::default())
        } else {
            None
        };
        if let Some(extra) = spec.dns_config {
            let d = dns.get_or_insert_with(Default::default);
            d.servers.extend(extra.nameservers.unwrap_or_default());
            d.searches.extend(extra.searches.unwrap_or_default());
            d.options
                .extend(
                    extra
                        .options
                        .unwrap_or_default()
                        .into_iter()
                        .map(|o| match o.value {
                            Some(v) => format!("{}:{v}", o.name.unwrap_or_default()),
                            None => o.name.unwrap_or_default(),
                        }),
                );
        }
        dns
    }

    fn container_config(&self, pod: &Pod, c: &Container, attempt: u32) -> cri::ContainerConfig {
        let mut labels: HashMap<String, String> = HashMap::new();
        labels.insert(
            POD_NAME_LABEL.into(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        labels.insert(
            POD_NAMESPACE_LABEL.into(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        );
        labels.insert(POD_UID_LABEL.into(), uid(pod));
        labels.insert(CONTAINER_NAME_LABEL.into(), c.name.clone());
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let annotations = HashMap::from([
            (
                "io.kubernetes.container.restartCount".to_string(),
                attempt.to_string(),
            ),
            (
                "io.kubernetes.pod.terminationGracePeriod".to_string(),
                grace.to_string(),
            ),
        ]);
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: c.name.clone(),
                attempt,
            }),
            image: Some(cri::ImageSpec {
                image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            // Filled in by resolved_container_config (pod_worker_env.rs).
            envs: Vec::new(),
            labels,
            annotations,
            log_path: format!("{}/{attempt}.log", c.name),
            stdin: c.stdin.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(container_resources(c)),
                security_context: Some(crate::security_context::container_security_context(
                    pod,
                    c,
                    namespace_options(pod),
                )),
            }),
            ..Default::default()
        }
    }
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .collect()
}

pub fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let node_or = |host: Option<bool>, other: cri::NamespaceMode| {
        if host == Some(true) {
            cri::NamespaceMode::Node as i32
        } else {
            other as i32
        }
    };
    let pid_default = if spec.share_process_namespace == Some(true) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: node_or(spec.host_network, cri::NamespaceMode::Pod),
        pid: node_or(spec.host_pid, pid_default),
        ipc: node_or(spec.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// cpu/memory requests and limits as cgroup settings: shares from the cpu
/// request, CFS quota from the cpu limit, memory.limit from the memory limit.
pub fn container_resources(c: &Container) -> cri::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let get = crate::admission::quantity;
    let cpu_limit = get(&r.limits, "cpu");
    let cpu_request = get(&r.requests, "cpu").or_else(|| cpu_limit.clone());
    let mut out = cri::LinuxContainerResources {
        cpu_shares: 2,
        ..Default::default()
    };
    if let Some(q) = cpu_request {
        out.cpu_shares = ((q.milli_value() * 1024) / 1000).max(2) as i64;
    }
    if let Some(q) = cpu_limit {
        out.cpu_period = 100_000;
        out.cpu_quota = ((q.milli_value() * 100_000) / 1000).max(1000) as i64;
    }
    if let Some(q) = get(&r.limits, "memory") {
        out.memory_limit_in_bytes = q.value() as i64;
    }
    out
}

#[path = "pod_worker_env.rs"]
mod env_and_mounts;

#[cfg(test)]
#[path = "pod_worker_tests.rs"]
pub(crate) mod tests;

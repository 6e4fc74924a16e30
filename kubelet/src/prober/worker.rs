//! One probe of one container: waits out `initialDelaySeconds` from the
//! container's start, then probes every `periodSeconds` with
//! `timeoutSeconds`, and publishes a result once `successThreshold` or
//! `failureThreshold` consecutive probes agree. Entry point: [`Worker::run`].

use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::EventType;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::http::{HttpTarget, Scheme};
use super::{resolve_port, ProbeError, ProbeResult, ProbeType, Shared};
use crate::cri::Runtime;
use crate::pod_worker::pod_name;

/// How a probe reaches the container.
enum Handler {
    Exec(Vec<String>),
    Http(HttpTarget),
    Tcp {
        host: String,
        port: u16,
    },
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
}

pub(super) struct Worker<R> {
    pub shared: Arc<Shared<R>>,
    pub pod: Pod,
    pub container: Container,
    pub container_id: String,
    /// When the container started (CRI, ns since the epoch).
    pub started_at_ns: i64,
    pub probe_type: ProbeType,
    pub probe: Probe,
    pub pod_ip: Option<String>,
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(0) as u64)
}

impl<R: Runtime> Worker<R> {
    pub async fn run(self) {
        let initial_delay = seconds(self.probe.initial_delay_seconds, 0);
        let running_for = Duration::from_nanos(
            crate::cri::now_ns()
                .saturating_sub(self.started_at_ns)
                .max(0) as u64,
        );
        tokio::time::sleep(initial_delay.saturating_sub(running_for)).await;
        let period = seconds(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The last raw result and how many probes in a row gave it.
        let mut last: Option<bool> = None;
        let mut run = 0;
        loop {
            tick.tick().await;
            if self.probe_type == ProbeType::Startup
                && self.shared.result(&self.container_id, ProbeType::Startup) == Some(true)
            {
                return;
            }
            // Liveness and readiness wait for the startup probe.
            if self.probe_type != ProbeType::Startup
                && self.container.startup_probe.is_some()
                && self.shared.result(&self.container_id, ProbeType::Startup) != Some(true)
            {
                continue;
            }
            let success = self.probe_once().await;
            if last == Some(success) {
                run += 1;
            } else {
                last = Some(success);
                run = 1;
            }
            let threshold = if success {
                self.probe.success_threshold.unwrap_or(1)
            } else {
                self.probe.failure_threshold.unwrap_or(3)
            };
            if run < threshold.max(1) {
                continue;
            }
            if self
                .shared
                .set_result(&self.container_id, self.probe_type, success)
            {
                tracing::info!(pod = %pod_name(&self.pod), container = %self.container.name, probe = self.probe_type.as_str(), success, "probe result changed");
                self.shared.changed.notify_one();
            }
            if !success && self.probe_type != ProbeType::Readiness {
                self.kill().await;
                return;
            }
        }
    }

    /// Probes once and records an `Unhealthy` Event when it fails (a
    /// `ProbeWarning` one when it succeeds with a warning, as upstream).
    async fn probe_once(&self) -> bool {
        let timeout = seconds(self.probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let kind = self.probe_type.as_str();
        let message = match self.handler() {
            Err(e) => format!("{kind} probe errored: {e}"),
            Ok(handler) => match self.run_handler(handler, timeout).await {
                ProbeResult::Success => return true,
                ProbeResult::Warning(output) => {
                    let message = format!("{kind} probe warning: {output}");
                    tracing::debug!(pod = %pod_name(&self.pod), container = %self.container.name, %message, "probe succeeded with a warning");
                    if let Err(e) = self
                        .shared
                        .recorder
                        .record(&self.pod, EventType::Warning, "ProbeWarning", &message)
                        .await
                    {
                        tracing::warn!(pod = %pod_name(&self.pod), error = %e, "recording the ProbeWarning event failed");
                    }
                    return true;
                }
                ProbeResult::Failure(output) => format!("{kind} probe failed: {output}"),
            },
        };
        tracing::debug!(pod = %pod_name(&self.pod), container = %self.container.name, %message, "probe failed");
        if let Err(e) = self
            .shared
            .recorder
            .record(&self.pod, EventType::Warning, "Unhealthy", &message)
            .await
        {
            tracing::warn!(pod = %pod_name(&self.pod), error = %e, "recording the Unhealthy event failed");
        }
        false
    }

    async fn run_handler(&self, handler: Handler, timeout: Duration) -> ProbeResult {
        match handler {
            Handler::Exec(command) => {
                super::exec::probe(
                    self.shared.runtime.as_ref(),
                    &self.container_id,
                    &command,
                    timeout,
                )
                .await
            }
            Handler::Http(target) => super::http::probe(&target, timeout).await,
            Handler::Tcp { host, port } => super::tcp::probe(&host, port, timeout).await,
            Handler::Grpc {
                host,
                port,
                service,
            } => super::grpc::probe(&host, port, &service, timeout).await,
        }
    }

    fn host(&self, given: Option<&String>) -> Result<String, ProbeError> {
        given
            .filter(|h| !h.is_empty())
            .or(self.pod_ip.as_ref())
            .cloned()
            .ok_or(ProbeError::NoPodIp)
    }

    fn handler(&self) -> Result<Handler, ProbeError> {
        let p = &self.probe;
        if let Some(exec) = &p.exec {
            return Ok(Handler::Exec(exec.command.clone().unwrap_or_default()));
        }
        if let Some(get) = &p.http_get {
            let path = get.path.clone().unwrap_or_default();
            let path = if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            };
            let scheme = if get
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"))
            {
                Scheme::Https
            } else {
                Scheme::Http
            };
            return Ok(Handler::Http(HttpTarget {
                scheme,
                host: self.host(get.host.as_ref())?,
                port: resolve_port(&get.port, &self.container)?,
                path,
                headers: get
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }));
        }
        if let Some(tcp) = &p.tcp_socket {
            return Ok(Handler::Tcp {
                host: self.host(tcp.host.as_ref())?,
                port: resolve_port(&tcp.port, &self.container)?,
            });
        }
        if let Some(grpc) = &p.grpc {
            let port = u16::try_from(grpc.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or(ProbeError::InvalidPort(i64::from(grpc.port)))?;
            return Ok(Handler::Grpc {
                host: self.host(None)?,
                port,
                service: grpc.service.clone().unwrap_or_default(),
            });
        }
        Err(ProbeError::NoHandler)
    }

    /// Stops the container after a liveness or startup failure; the pod
    /// worker restarts it under the pod's restart policy.
    async fn kill(&self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let grace = self
            .probe
            .termination_grace_period_seconds
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(30);
        let mut message = format!(
            "Container {} failed {} probe",
            self.container.name,
            self.probe_type.as_str().to_lowercase()
        );
        if spec.restart_policy.as_deref() != Some("Never") {
            message.push_str(", will be restarted");
        }
        tracing::info!(pod = %pod_name(&self.pod), container = %self.container.name, id = %self.container_id, grace, "{message}");
        if let Err(e) = self
            .shared
            .recorder
            .record(&self.pod, EventType::Normal, "Killing", &message)
            .await
        {
            tracing::warn!(pod = %pod_name(&self.pod), error = %e, "recording the Killing event failed");
        }
        if let Err(e) = self
            .shared
            .runtime
            .stop_container(&self.container_id, grace)
            .await
        {
            tracing::warn!(pod = %pod_name(&self.pod), container = %self.container.name, error = %e, "stopping the container after a failed probe");
        }
        self.shared.changed.notify_one();
    }
}

//! The eviction manager's control loop, as upstream's (pkg/kubelet/eviction
//! `managerImpl.synchronize`): every [`MONITORING_PERIOD`] it measures the
//! node, publishes the pressure conditions, and while a threshold is met —
//! a hard one at once, a soft one once met for its whole grace period —
//! evicts at most one pod, then waits for that pod to be cleaned up before
//! the next pass. Entry point: [`EvictionManager::run`]; the decisions are
//! the pure [`EvictionState::synchronize`] and [`choose`].
//!
//! Critical pods (static and mirror pods, system-critical priority) are
//! never evicted: they are ranked with the others, then skipped with a log
//! line, as upstream. A pod is evicted through its pod worker
//! ([`PodWorker::evict`]): the sync loop syncs it, which stops its
//! containers and reports it Failed with reason `Evicted`; being Failed in
//! the API, it never runs again, also after a kubelet restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_client::{EventRecorder, EventType, Store};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ranking::{eviction_message, rank, threshold_met_info, Candidate};
use super::usage::UsageReader;
use super::{EvictionSettings, Observations, Pressure, PressureTracker, Signal, Threshold};
use crate::api_handle::ApiHandle;
use crate::cri::Runtime;
use crate::pod_worker::{pod_name, Eviction, PodWorker};
use crate::static_pods::StaticPods;

/// How often the node is measured (upstream's `evictionMonitoringPeriod`;
/// not configurable upstream either).
pub const MONITORING_PERIOD: Duration = Duration::from_secs(10);
/// How long an evicted pod is waited for before the next pass (upstream's
/// `podCleanupTimeout`), checked every [`POD_CLEANUP_POLL`].
const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
const POD_CLEANUP_POLL: Duration = Duration::from_secs(1);
/// What a pod evicted for a hard threshold gets to stop (upstream's
/// `immediateEvictionGracePeriodSeconds`).
pub const IMMEDIATE_GRACE_SECONDS: i64 = 1;

/// What one pass found.
#[derive(Debug)]
pub struct Pass<'a> {
    /// The thresholds met now, grace periods aside.
    pub met: Vec<&'a Threshold>,
    /// The node conditions to report.
    pub pressure: Vec<Pressure>,
    /// The thresholds met for at least their grace period, memory first
    /// (upstream's `byEvictionPriority`): the first is reclaimed.
    pub reclaim: Vec<&'a Threshold>,
}

/// What the manager remembers between passes.
#[derive(Debug, Default)]
pub struct EvictionState {
    /// When each threshold met now (by its index in the settings) was
    /// first met without a break.
    first_observed: HashMap<usize, Instant>,
    pressure: PressureTracker,
}

impl EvictionState {
    /// One pass's decisions at `now` from what the node has.
    pub fn synchronize<'a>(
        &mut self,
        settings: &'a EvictionSettings,
        observations: &Observations,
        now: Instant,
    ) -> Pass<'a> {
        let met = settings.met(observations);
        let met_at: Vec<usize> = settings
            .thresholds
            .iter()
            .enumerate()
            .filter(|(_, t)| met.iter().any(|m| std::ptr::eq(*m, *t)))
            .map(|(i, _)| i)
            .collect();
        // A threshold no longer met starts its grace period over.
        self.first_observed.retain(|i, _| met_at.contains(i));
        for &i in &met_at {
            self.first_observed.entry(i).or_insert(now);
        }
        let pressure = self
            .pressure
            .update(&met, settings.pressure_transition_period, now);
        let mut reclaim: Vec<&Threshold> = met_at
            .iter()
            .filter(|i| {
                let t = &settings.thresholds[**i];
                let since = now.duration_since(self.first_observed[*i]);
                since >= t.grace_period.unwrap_or(Duration::ZERO)
            })
            .map(|&i| &settings.thresholds[i])
            .collect();
        reclaim.sort_by_key(|t| t.signal != Signal::MemoryAvailable);
        Pass {
            met,
            pressure,
            reclaim,
        }
    }
}

/// The grace period of a pod evicted for `threshold`: [`IMMEDIATE_GRACE_SECONDS`]
/// for a hard one; for a soft one `evictionMaxPodGracePeriod`, or the pod's
/// own `terminationGracePeriodSeconds` when shorter (upstream 1.32).
pub fn grace_period_seconds(threshold: &Threshold, settings: &EvictionSettings, pod: &Pod) -> i64 {
    if threshold.grace_period.is_none() {
        return IMMEDIATE_GRACE_SECONDS;
    }
    let max = settings.max_pod_grace_period_seconds;
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .map_or(max, |own| own.min(max))
}

/// The pod chosen for eviction and what its eviction says.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<'a> {
    pub pod: &'a Pod,
    pub eviction: Eviction,
}

/// Ranks `candidates` for the first threshold of `pass.reclaim` and picks
/// the first that is not critical; `None` when there is nothing to reclaim
/// or only critical pods.
pub fn choose<'a>(
    pass: &Pass,
    settings: &EvictionSettings,
    observations: &Observations,
    mut candidates: Vec<Candidate<'a>>,
) -> Option<Choice<'a>> {
    let threshold = pass.reclaim.first()?;
    let resource = threshold.signal.resource();
    rank(resource, &mut candidates);
    let info = threshold_met_info(resource, &pass.reclaim, observations);
    for c in &candidates {
        if crate::admission::is_critical(c.pod) {
            tracing::info!(pod = %pod_name(c.pod), "eviction manager: cannot evict a critical pod");
            continue;
        }
        return Some(Choice {
            pod: c.pod,
            eviction: Eviction {
                grace_seconds: grace_period_seconds(threshold, settings, c.pod),
                message: eviction_message(resource, info.clone(), c),
            },
        });
    }
    None
}

/// The eviction manager of one kubelet; see the module docs.
pub struct EvictionManager<R> {
    pub settings: EvictionSettings,
    /// `--root-dir`, whose filesystem is nodefs (and imagefs).
    pub root_dir: PathBuf,
    pub node_name: String,
    pub usage: UsageReader,
    pub worker: Arc<PodWorker<R>>,
    /// The API's pods bound to this node.
    pub store: Store<Pod>,
    pub statics: StaticPods,
    pub api: ApiHandle,
    pub events: EventRecorder<ApiHandle>,
    /// Where the UID of a pod to evict is sent for the sync loop to sync.
    pub evict: tokio::sync::mpsc::UnboundedSender<String>,
    /// Where the node's pressure is published after each pass (pod
    /// admission and the node status read it).
    pub pressure: tokio::sync::watch::Sender<Vec<Pressure>>,
}

impl<R: Runtime> EvictionManager<R> {
    /// Runs passes until aborted: after an eviction the next pass follows
    /// the evicted pod's clean-up, otherwise [`MONITORING_PERIOD`].
    pub async fn run(self) {
        let mut state = EvictionState::default();
        loop {
            match self.synchronize(&mut state).await {
                Some(evicted) => self.wait_for_cleanup(&evicted).await,
                None => tokio::time::sleep(MONITORING_PERIOD).await,
            }
        }
    }

    /// One pass; returns the pod evicted, if any.
    async fn synchronize(&self, state: &mut EvictionState) -> Option<Pod> {
        let observations = Observations::read(&self.root_dir);
        let pass = state.synchronize(&self.settings, &observations, Instant::now());
        for t in &pass.met {
            let (available, capacity) = observations.signals[&t.signal];
            let threshold = t.level.quantity(capacity);
            tracing::warn!(signal = t.signal.name(), available, capacity, %threshold, "eviction threshold met");
        }
        self.pressure.send_replace(pass.pressure.clone());
        let resource = pass.reclaim.first()?.signal.resource();
        if self.api.get().is_none() || !self.store.is_synced() {
            tracing::debug!("eviction manager: the API's pods are not known yet");
            return None;
        }
        tracing::info!(
            resource = resource.name(),
            "eviction manager: attempting to reclaim"
        );
        self.record_node_event(resource.name()).await;
        let pods = self.active_pods();
        if pods.is_empty() {
            tracing::warn!("eviction manager: eviction thresholds have been met, but no pods are active to evict");
            return None;
        }
        let mut candidates = Vec::with_capacity(pods.len());
        for pod in &pods {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let containers: Vec<(String, String)> = match self.worker.pleg().pod_state(uid).await {
                Ok(state) => state
                    .containers
                    .iter()
                    .map(|(_, c)| {
                        let name = c.metadata.as_ref().map(|m| m.name.clone());
                        (c.id.clone(), name.unwrap_or_default())
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            candidates.push(Candidate {
                pod,
                usage: self.usage.pod_usage(pod, &containers),
            });
        }
        let Some(choice) = choose(&pass, &self.settings, &observations, candidates) else {
            tracing::info!("eviction manager: unable to evict any pods from the node");
            return None;
        };
        let pod = choice.pod.clone();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        tracing::info!(pod = %pod_name(&pod), message = %choice.eviction.message, "eviction manager: evicting pod");
        if let Err(e) = self
            .events
            .record(
                &pod,
                EventType::Warning,
                crate::status::EVICTED,
                &choice.eviction.message,
            )
            .await
        {
            tracing::warn!(pod = %pod_name(&pod), error = %e, "recording the eviction event failed");
        }
        self.worker.evict(&uid, choice.eviction);
        let _ = self.evict.send(uid);
        Some(pod)
    }

    /// The pods that may be running here (upstream's active pods): the
    /// static pods and the API's pods that were admitted (they have a
    /// start time), are not finished, not being deleted and not already
    /// evicted. Mirror pods stand for static pods, which are listed
    /// themselves.
    fn active_pods(&self) -> Vec<Pod> {
        let api = self.store.list().into_iter().filter(|p| {
            let uid = p.metadata.uid.as_deref().unwrap_or_default();
            let status = p.status.as_ref();
            !crate::mirror_pod::is_mirror_pod(p)
                && p.metadata.deletion_timestamp.is_none()
                && status.is_some_and(|s| s.start_time.is_some())
                && !matches!(
                    status.and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
                && !self.worker.is_evicted(uid)
        });
        self.statics
            .pods()
            .into_iter()
            .chain(api.map(|p| (*p).clone()))
            .collect()
    }

    /// Upstream's node event for the resource being reclaimed.
    async fn record_node_event(&self, resource: &str) {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.node_name.clone()),
                // As upstream's node reference: the UID is the node's name.
                uid: Some(self.node_name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let message = format!("Attempting to reclaim {resource}");
        if let Err(e) = self
            .events
            .record(&node, EventType::Warning, "EvictionThresholdMet", &message)
            .await
        {
            tracing::debug!(error = %e, "recording the EvictionThresholdMet event failed");
        }
    }

    /// Waits until the evicted pod is Failed in the API or gone, at most
    /// [`POD_CLEANUP_TIMEOUT`].
    async fn wait_for_cleanup(&self, pod: &Pod) {
        let key = ferrokube_client::ObjectKey::new(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        let deadline = tokio::time::Instant::now() + POD_CLEANUP_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let cleaned_up = match self.store.get(&key) {
                None => true,
                Some(p) => p.metadata.uid != pod.metadata.uid || crate::status::is_evicted(&p),
            };
            if cleaned_up {
                tracing::info!(pod = %pod_name(pod), "eviction manager: evicted pod cleaned up");
                return;
            }
            tokio::time::sleep(POD_CLEANUP_POLL).await;
        }
        tracing::info!(pod = %pod_name(pod), "eviction manager: timed out waiting for the evicted pod to be cleaned up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::ranking::PodUsage;
    use crate::eviction::Level;
    use ferrokube_api::quantity::Quantity;
    use std::collections::BTreeMap;

    fn settings(hard: &[(&str, &str)], soft: &[(&str, &str, &str)]) -> EvictionSettings {
        let map = |kv: Vec<(&str, &str)>| -> BTreeMap<String, String> {
            kv.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        EvictionSettings::parse(
            Some(&map(hard.to_vec())),
            Some(&map(soft.iter().map(|(s, v, _)| (*s, *v)).collect())),
            Some(&map(soft.iter().map(|(s, _, g)| (*s, *g)).collect())),
            Some("5m"),
            Some(60),
        )
        .unwrap()
    }

    const GI: i128 = 1 << 30;

    fn memory(available: i128) -> Observations {
        Observations {
            signals: [(Signal::MemoryAvailable, (available, 8 * GI))].into(),
        }
    }

    fn pod(name: &str, priority: i32, grace: Option<i64>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {
                "priority": priority,
                "terminationGracePeriodSeconds": grace,
                "containers": [{"name": "app", "image": "i"}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_hard_threshold_reclaims_at_once() {
        let s = settings(&[("memory.available", "1Gi")], &[]);
        let mut state = EvictionState::default();
        let now = Instant::now();
        let pass = state.synchronize(&s, &memory(GI - 1), now);
        assert_eq!(pass.pressure, [Pressure::Memory]);
        assert_eq!(pass.reclaim.len(), 1);
        let pass = state.synchronize(&s, &memory(2 * GI), now + Duration::from_secs(10));
        assert!(pass.met.is_empty() && pass.reclaim.is_empty());
        // The condition outlasts the threshold by the transition period.
        assert_eq!(pass.pressure, [Pressure::Memory]);
    }

    #[test]
    fn a_soft_threshold_reports_pressure_at_once_and_reclaims_after_its_grace_period() {
        let s = settings(&[], &[("memory.available", "1Gi", "30s")]);
        let mut state = EvictionState::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let low = memory(GI / 2);
        let pass = state.synchronize(&s, &low, at(0));
        assert_eq!(pass.pressure, [Pressure::Memory]);
        assert!(pass.reclaim.is_empty());
        assert!(state.synchronize(&s, &low, at(29)).reclaim.is_empty());
        assert_eq!(state.synchronize(&s, &low, at(30)).reclaim.len(), 1);
        // A break starts the grace period over.
        assert!(state
            .synchronize(&s, &memory(2 * GI), at(40))
            .reclaim
            .is_empty());
        assert!(state.synchronize(&s, &low, at(50)).reclaim.is_empty());
        assert!(state.synchronize(&s, &low, at(79)).reclaim.is_empty());
        assert_eq!(state.synchronize(&s, &low, at(80)).reclaim.len(), 1);
    }

    #[test]
    fn memory_is_reclaimed_before_other_resources() {
        let s = settings(
            &[("pid.available", "100%"), ("memory.available", "1Gi")],
            &[],
        );
        let mut obs = memory(0);
        obs.signals.insert(Signal::PidAvailable, (10, 100));
        let pass = EvictionState::default().synchronize(&s, &obs, Instant::now());
        let signals: Vec<Signal> = pass.reclaim.iter().map(|t| t.signal).collect();
        assert_eq!(signals, [Signal::MemoryAvailable, Signal::PidAvailable]);
    }

    #[test]
    fn grace_is_immediate_for_hard_thresholds_and_bounded_for_soft_ones() {
        let s = settings(&[], &[]);
        let hard = Threshold {
            signal: Signal::MemoryAvailable,
            level: Level::Amount(Quantity::parse("1Gi").unwrap()),
            grace_period: None,
        };
        let soft = Threshold {
            grace_period: Some(Duration::from_secs(30)),
            ..hard.clone()
        };
        assert_eq!(grace_period_seconds(&hard, &s, &pod("p", 0, Some(600))), 1);
        // evictionMaxPodGracePeriod is 60 here.
        assert_eq!(grace_period_seconds(&soft, &s, &pod("p", 0, Some(600))), 60);
        assert_eq!(grace_period_seconds(&soft, &s, &pod("p", 0, Some(5))), 5);
        assert_eq!(grace_period_seconds(&soft, &s, &pod("p", 0, None)), 60);
    }

    #[test]
    fn critical_pods_are_skipped_and_the_next_in_rank_is_chosen() {
        let s = settings(&[("memory.available", "1Gi")], &[]);
        let obs = memory(GI / 2);
        let mut state = EvictionState::default();
        let pass = state.synchronize(&s, &obs, Instant::now());
        let critical = pod("critical", 2_000_000_000, None);
        let mut static_pod = pod("static", 0, None);
        static_pod.metadata.annotations = Some(
            [(
                "kubernetes.io/config.source".to_string(),
                "file".to_string(),
            )]
            .into(),
        );
        let ordinary = pod("ordinary", 100, Some(30));
        let usage = |bytes| {
            Some(PodUsage {
                memory_working_set: Some(bytes),
                ..Default::default()
            })
        };
        let candidates = vec![
            Candidate {
                pod: &ordinary,
                usage: usage(GI / 4),
            },
            Candidate {
                pod: &critical,
                usage: usage(GI),
            },
            Candidate {
                pod: &static_pod,
                usage: None,
            },
        ];
        let choice = choose(&pass, &s, &obs, candidates).unwrap();
        assert_eq!(choice.pod.metadata.name.as_deref(), Some("ordinary"));
        assert_eq!(choice.eviction.grace_seconds, IMMEDIATE_GRACE_SECONDS);
        assert_eq!(
            choice.eviction.message,
            "The node was low on resource: memory. Threshold quantity: 1Gi, available: 512Mi. "
        );
        let only_critical = vec![Candidate {
            pod: &critical,
            usage: usage(GI),
        }];
        assert_eq!(choose(&pass, &s, &obs, only_critical), None);
        // Nothing met: nothing chosen.
        let calm = state.synchronize(&s, &memory(2 * GI), Instant::now());
        let candidates = vec![Candidate {
            pod: &ordinary,
            usage: usage(GI),
        }];
        assert_eq!(choose(&calm, &s, &obs, candidates), None);
    }
}

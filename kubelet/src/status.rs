//! Pod status from what the runtime reports: phase, conditions, container
//! statuses, IPs and QoS class, computed without I/O so it can be tested.
//! Entry point: [`compute_pod_status`].

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Why a container is waiting rather than running (e.g. `CrashLoopBackOff`).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// The runtime's containers of one pod's current sandbox, by name, newest
/// attempt first.
pub type ContainersByName = HashMap<String, Vec<cri::ContainerStatus>>;

/// What a running container's probes say (see `crate::prober`): `started`
/// from its startup probe, `ready` from its readiness probe (and started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed {
    pub started: bool,
    pub ready: bool,
}

/// [`Probed`] by container id; a running container not listed has neither
/// a startup nor a readiness probe, so it is started and ready.
pub type ProbeResults = HashMap<String, Probed>;

/// A CRI timestamp (ns) as an API time, at the API's one-second precision
/// so that an unchanged status compares equal to the stored one.
pub fn time_from_ns(ns: i64) -> Option<Time> {
    (ns > 0).then(|| {
        Time(
            Utc.timestamp_opt(ns / 1_000_000_000, 0)
                .single()
                .unwrap_or_default(),
        )
    })
}

pub fn now_time() -> Time {
    Time(DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default())
}

fn is_running(c: &cri::ContainerStatus) -> bool {
    c.state == cri::ContainerState::ContainerRunning as i32
}

fn is_exited(c: &cri::ContainerStatus) -> bool {
    c.state == cri::ContainerState::ContainerExited as i32
}

fn terminated(c: &cri::ContainerStatus) -> ContainerState {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            reason: Some(reason),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time_from_ns(c.started_at),
            finished_at: time_from_ns(c.finished_at),
            container_id: Some(format!("containerd://{}", c.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: (!message.is_empty()).then(|| message.into()),
        }),
        ..Default::default()
    }
}

/// One container's status: the newest attempt gives state, the one before
/// (or the newest, when it is waiting to restart) gives lastState.
pub fn container_status(
    spec: &Container,
    attempts: &[cri::ContainerStatus],
    waiting_for: Option<&Waiting>,
) -> ContainerStatus {
    let latest = attempts.first();
    let (state, last) = match (waiting_for, latest) {
        (Some(w), Some(l)) if is_exited(l) => (waiting(&w.reason, &w.message), Some(l)),
        (Some(w), _) => (waiting(&w.reason, &w.message), attempts.get(1)),
        (None, Some(l)) if is_running(l) => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_from_ns(l.started_at),
                }),
                ..Default::default()
            },
            attempts.get(1),
        ),
        (None, Some(l)) if is_exited(l) => (terminated(l), attempts.get(1)),
        (None, _) => (waiting("ContainerCreating", ""), attempts.get(1)),
    };
    let running = latest.is_some_and(is_running) && waiting_for.is_none();
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("containerd://{}", l.id)),
        ready: running,
        started: Some(running),
        restart_count: latest.map_or(0, |l| l.metadata.as_ref().map_or(0, |m| m.attempt as i32)),
        state: Some(state),
        last_state: Some(
            last.filter(|c| is_exited(c))
                .map(terminated)
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

/// Upstream's QoS classes from requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let r = c.resources.clone().unwrap_or_default();
        let (req, lim) = (r.requests.unwrap_or_default(), r.limits.unwrap_or_default());
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (req.get(res), lim.get(res)) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The phase from the containers' states (upstream's `getPhase`).
fn phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    init_spec_count: usize,
    containers: &[ContainerStatus],
) -> &'static str {
    let init_failed = init.iter().any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    });
    if init_failed && restart_policy == "Never" {
        return "Failed";
    }
    let init_done = init.len() == init_spec_count
        && init.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        });
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let st = s.state.clone().unwrap_or_default();
        let restarting = st.waiting.is_some()
            && s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some());
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if restarting {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, old: &PodStatus) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_time);
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        last_transition_time: Some(transition),
        ..Default::default()
    }
}

/// The pod's status as the kubelet reports it.
pub fn compute_pod_status(
    pod: &Pod,
    containers: &ContainersByName,
    waiting_for: &HashMap<String, Waiting>,
    pod_ip: Option<&str>,
    host_ip: &str,
    probes: &ProbeResults,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let statuses = |specs: &[Container]| -> Vec<ContainerStatus> {
        specs
            .iter()
            .map(|c| {
                let attempts = containers.get(&c.name).map_or(&[][..], |v| &v[..]);
                let mut status = container_status(c, attempts, waiting_for.get(&c.name));
                if let Some(p) = attempts.first().and_then(|l| probes.get(&l.id)) {
                    status.ready &= p.ready;
                    status.started = status.started.map(|s| s && p.started);
                }
                status
            })
            .collect()
    };
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    // Init containers not yet created have no status to judge by.
    let init: Vec<ContainerStatus> = statuses(&init_specs)
        .into_iter()
        .zip(&init_specs)
        .filter(|(_, c)| containers.contains_key(&c.name))
        .map(|(s, _)| s)
        .collect();
    let main = statuses(&spec.containers);
    let phase = phase(policy, &init, init_specs.len(), &main);
    let initialized = init.len() == init_specs.len()
        && init.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        });
    let completed = phase == "Succeeded" || phase == "Failed";
    let all_ready = !main.is_empty() && main.iter().all(|s| s.ready);
    let not_ready_reason = if completed {
        Some("PodCompleted")
    } else if all_ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    let mut full_init = statuses(&init_specs);
    full_init.retain(|s| containers.contains_key(&s.name) || waiting_for.contains_key(&s.name));
    let ip = pod_ip.filter(|ip| !ip.is_empty()).map(str::to_string);
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![
            condition("PodScheduled", true, None, &old),
            condition(
                "Initialized",
                initialized,
                (!initialized).then_some("ContainersNotInitialized"),
                &old,
            ),
            condition(
                "ContainersReady",
                all_ready && !completed,
                not_ready_reason,
                &old,
            ),
            condition("Ready", all_ready && !completed, not_ready_reason, &old),
        ]),
        container_statuses: Some(main),
        init_container_statuses: (!init_specs.is_empty()).then_some(full_init),
        host_ip: Some(host_ip.into()),
        host_ips: Some(vec![HostIP { ip: host_ip.into() }]),
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![PodIP { ip }]),
        qos_class: Some(qos_class(pod).into()),
        start_time: old.start_time.clone().or_else(|| Some(now_time())),
        ..Default::default()
    }
}

/// Upstream's reason for a pod the kubelet evicted or refused under pressure.
pub const EVICTED: &str = "Evicted";

/// Whether the pod was evicted (upstream's `PodIsEvicted`): Failed with
/// reason `Evicted`.
pub fn is_evicted(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some(EVICTED)
    })
}

/// Turns a computed status into an evicted pod's, as upstream's kubelet
/// reports one: phase Failed, reason `Evicted`, the eviction message, not
/// ready (`PodCompleted`), and a `DisruptionTarget` condition with reason
/// `TerminationByKubelet`.
pub fn mark_evicted(status: &mut PodStatus, message: &str) {
    status.phase = Some("Failed".into());
    status.reason = Some(EVICTED.into());
    status.message = Some(message.into());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for c in conditions.iter_mut() {
        if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            c.status = "False".into();
            c.reason = Some("PodCompleted".into());
        }
    }
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(message.into()),
        last_transition_time: Some(now_time()),
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "app", "image": "busybox:1.36"}]}
        }))
        .unwrap()
    }

    fn cri_container(
        id: &str,
        attempt: u32,
        state: cri::ContainerState,
        exit: i32,
    ) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: id.into(),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt,
            }),
            state: state as i32,
            exit_code: exit,
            started_at: 1_000_000_000,
            finished_at: if state == cri::ContainerState::ContainerExited {
                2_000_000_000
            } else {
                0
            },
            image_ref: "sha256:abc".into(),
            ..Default::default()
        }
    }

    fn by_name(v: Vec<cri::ContainerStatus>) -> ContainersByName {
        HashMap::from([("app".to_string(), v)])
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a str {
        &s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .status
    }

    #[test]
    fn running_container_makes_a_ready_running_pod() {
        let cs = by_name(vec![cri_container(
            "c1",
            0,
            cri::ContainerState::ContainerRunning,
            0,
        )]);
        let s = compute_pod_status(
            &pod("Always"),
            &cs,
            &HashMap::new(),
            Some("10.244.0.5"),
            "10.0.0.1",
            &ProbeResults::new(),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(cond(&s, t), "True", "{t}");
        }
        let c = &s.container_statuses.unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.image_id, "sha256:abc");
        assert_eq!(c.container_id.as_deref(), Some("containerd://c1"));
    }

    #[test]
    fn crash_looping_container_is_waiting_with_last_state_and_restart_count() {
        let cs = by_name(vec![cri_container(
            "c2",
            2,
            cri::ContainerState::ContainerExited,
            1,
        )]);
        let w = HashMap::from([(
            "app".to_string(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 20s".into(),
            },
        )]);
        let s = compute_pod_status(
            &pod("Always"),
            &cs,
            &w,
            Some("10.244.0.5"),
            "10.0.0.1",
            &ProbeResults::new(),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready"), "False");
        let c = &s.container_statuses.unwrap()[0];
        assert_eq!(c.restart_count, 2);
        let st = c.state.as_ref().unwrap();
        assert_eq!(
            st.waiting.as_ref().unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
    }

    #[test]
    fn exited_containers_end_the_pod_by_restart_policy() {
        let ok = by_name(vec![cri_container(
            "c1",
            0,
            cri::ContainerState::ContainerExited,
            0,
        )]);
        let bad = by_name(vec![cri_container(
            "c1",
            0,
            cri::ContainerState::ContainerExited,
            3,
        )]);
        let none = HashMap::new();
        let phase = |p: &str, cs: &ContainersByName| {
            compute_pod_status(&pod(p), cs, &none, None, "h", &ProbeResults::new())
                .phase
                .unwrap()
        };
        assert_eq!(phase("Never", &ok), "Succeeded");
        assert_eq!(phase("Never", &bad), "Failed");
        assert_eq!(phase("OnFailure", &ok), "Succeeded");
        assert_eq!(phase("OnFailure", &bad), "Running");
        assert_eq!(phase("Always", &ok), "Running");
        let s = compute_pod_status(&pod("Never"), &ok, &none, None, "h", &ProbeResults::new());
        assert_eq!(
            s.conditions.unwrap()[3].reason.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn pod_without_containers_yet_is_pending_and_creating() {
        let s = compute_pod_status(
            &pod("Always"),
            &HashMap::new(),
            &HashMap::new(),
            None,
            "h",
            &ProbeResults::new(),
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let c = &s.container_statuses.unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let mut p = pod("Always");
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.resources = Some(
            serde_json::from_value(serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}}))
                .unwrap(),
        );
        assert_eq!(qos_class(&p), "Guaranteed");
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.resources =
            Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": "100m"}})).unwrap());
        assert_eq!(qos_class(&p), "Burstable");
    }
}

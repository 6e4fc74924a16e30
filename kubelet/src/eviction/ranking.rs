//! Which pod goes first when the node must reclaim a resource, and what its
//! eviction says, as upstream's ranking functions and `evictionMessage`
//! (pkg/kubelet/eviction/helpers.go), without I/O. Entry points: [`rank`]
//! and [`eviction_message`].
//!
//! Order, as upstream: for memory, pods using more than they request
//! first, then lower `spec.priority`, then the largest use above the
//! request; for process ids, lower priority, then the most processes; for
//! disk (bytes or inodes), pods using more than their ephemeral-storage
//! request first, then lower priority, then the largest use above the
//! request. A pod without stats goes before one with.

use std::cmp::Ordering;

use ferrokube_api::quantity::{Format, Quantity};
use k8s_openapi::api::core::v1::Pod;

use super::{Observations, Resource, Threshold};
use crate::admission::{container_request, pod_request};

/// One container's measured usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    /// Working set in bytes.
    pub memory_working_set: Option<i128>,
}

/// What a pod uses, as measured (see [`super::usage`]); what could not be
/// measured counts as nothing, as upstream counts missing stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodUsage {
    /// Working set of the pod cgroup, bytes.
    pub memory_working_set: Option<i128>,
    /// Tasks in the pod cgroup.
    pub processes: Option<i128>,
    /// Local ephemeral storage in bytes and inodes.
    pub disk_bytes: Option<i128>,
    pub disk_inodes: Option<i128>,
    pub containers: Vec<ContainerUsage>,
}

/// A pod that may be evicted and its usage (`None`: no stats were found).
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub pod: &'a Pod,
    pub usage: Option<PodUsage>,
}

/// `true` before `false`, as upstream's `cmpBool`.
fn true_first(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The pod's use of `resource` and the request it is measured against.
fn use_and_request(c: &Candidate, resource: Resource) -> Option<(i128, i128)> {
    let u = c.usage.as_ref()?;
    let (used, request) = match resource {
        Resource::Memory => (u.memory_working_set, pod_request(c.pod, "memory")),
        Resource::Pids => (u.processes, 0),
        Resource::EphemeralStorage => (u.disk_bytes, pod_request(c.pod, "ephemeral-storage")),
        Resource::Inodes => (u.disk_inodes, 0),
    };
    Some((used.unwrap_or(0), request))
}

/// Pods without stats first; otherwise `by` on (use, request) of each.
fn by_usage(
    a: &Candidate,
    b: &Candidate,
    resource: Resource,
    by: impl Fn((i128, i128), (i128, i128)) -> Ordering,
) -> Ordering {
    match (use_and_request(a, resource), use_and_request(b, resource)) {
        (Some(ua), Some(ub)) => by(ua, ub),
        (ua, ub) => true_first(ua.is_none(), ub.is_none()),
    }
}

fn exceeds_request(a: &Candidate, b: &Candidate, resource: Resource) -> Ordering {
    by_usage(a, b, resource, |(ua, ra), (ub, rb)| {
        true_first(ua > ra, ub > rb)
    })
}

/// The largest use above the request first. For inodes upstream subtracts
/// the ephemeral-storage request, a quirk kept here.
fn above_request(a: &Candidate, b: &Candidate, resource: Resource) -> Ordering {
    let storage = |c: &Candidate| pod_request(c.pod, "ephemeral-storage");
    by_usage(a, b, resource, |(ua, ra), (ub, rb)| {
        let (ra, rb) = match resource {
            Resource::Inodes => (storage(a), storage(b)),
            Resource::Pids => (0, 0),
            _ => (ra, rb),
        };
        (ub - rb).cmp(&(ua - ra))
    })
}

/// Orders `candidates` for eviction to reclaim `resource`, first to go first.
pub fn rank(resource: Resource, candidates: &mut [Candidate]) {
    let by_priority = |a: &Candidate, b: &Candidate| priority(a.pod).cmp(&priority(b.pod));
    candidates.sort_by(|a, b| match resource {
        Resource::Pids => by_priority(a, b).then_with(|| above_request(a, b, resource)),
        _ => exceeds_request(a, b, resource)
            .then_with(|| by_priority(a, b))
            .then_with(|| above_request(a, b, resource)),
    });
}

/// The threshold quantity and what was available, for the first of
/// `thresholds` that reclaims `resource` (upstream's `getThresholdMetInfo`).
pub fn threshold_met_info(
    resource: Resource,
    thresholds: &[&Threshold],
    observations: &Observations,
) -> Option<(Quantity, Quantity)> {
    thresholds
        .iter()
        .filter(|t| t.signal.resource() == resource)
        .find_map(|t| {
            let &(available, capacity) = observations.signals.get(&t.signal)?;
            Some((
                t.level.quantity(capacity),
                Quantity::new(available, t.signal.format()),
            ))
        })
}

/// The pod's status message and event text, in upstream's words: `The
/// node was low on resource: memory. Threshold quantity: 100Mi, available:
/// 20Ki. Container app was using 1200Ki, request is 16Mi, has larger
/// consumption of memory. ` Containers are named only for memory: upstream
/// names them for ephemeral storage only when it measured their writable
/// layer, which this kubelet does not.
pub fn eviction_message(
    resource: Resource,
    threshold: Option<(Quantity, Quantity)>,
    candidate: &Candidate,
) -> String {
    let mut message = format!("The node was low on resource: {}. ", resource.name());
    if let Some((quantity, available)) = threshold {
        message += &format!("Threshold quantity: {quantity}, available: {available}. ");
    }
    let (Some(usage), Some(spec)) = (&candidate.usage, &candidate.pod.spec) else {
        return message;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let Some(stats) = usage.containers.iter().find(|u| u.name == c.name) else {
            continue;
        };
        let used = match resource {
            Resource::Memory => stats.memory_working_set,
            _ => None,
        };
        let request = container_request(c, resource.name());
        let request_value = request.as_ref().map_or(0, Quantity::value);
        if let Some(used) = used.filter(|u| *u > request_value) {
            message += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {}. ",
                c.name,
                Quantity::new(used, Format::BinarySI),
                request.map_or_else(|| "0".to_string(), |q| q.to_string()),
                resource.name()
            );
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::{Level, Signal};

    fn pod(name: &str, priority: i32, memory_request: Option<&str>) -> Pod {
        let resources = match memory_request {
            Some(r) => serde_json::json!({"requests": {"memory": r}}),
            None => serde_json::json!({}),
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {
                "priority": priority,
                "containers": [{"name": "app", "image": "i", "resources": resources}]
            }
        }))
        .unwrap()
    }

    fn memory(bytes: i128) -> Option<PodUsage> {
        Some(PodUsage {
            memory_working_set: Some(bytes),
            containers: vec![ContainerUsage {
                name: "app".into(),
                memory_working_set: Some(bytes),
            }],
            ..Default::default()
        })
    }

    /// The pods as candidates with these usages, in order.
    fn candidates(pods: &[Pod], usages: Vec<Option<PodUsage>>) -> Vec<Candidate<'_>> {
        pods.iter()
            .zip(usages)
            .map(|(pod, usage)| Candidate { pod, usage })
            .collect()
    }

    fn names(c: &[Candidate]) -> Vec<String> {
        c.iter()
            .map(|c| c.pod.metadata.name.clone().unwrap())
            .collect()
    }

    const MI: i128 = 1 << 20;

    #[test]
    fn memory_ranks_pods_over_their_request_first_then_priority_then_excess() {
        let pods = [
            pod("within-low-priority", -10, Some("100Mi")),
            pod("over-high-priority", 1000, Some("10Mi")),
            pod("over-small", 0, Some("10Mi")),
            pod("over-large", 0, Some("10Mi")),
            pod("best-effort", 0, None),
        ];
        let mut c = candidates(
            &pods,
            vec![
                memory(50 * MI),
                memory(500 * MI),
                memory(20 * MI),
                memory(80 * MI),
                memory(30 * MI),
            ],
        );
        rank(Resource::Memory, &mut c);
        assert_eq!(
            names(&c),
            [
                // Over their request, priority 0: the largest excess first.
                "over-large",
                "best-effort",
                "over-small",
                "over-high-priority",
                // Within its request: last, whatever its priority.
                "within-low-priority",
            ]
        );
    }

    #[test]
    fn a_pod_without_stats_goes_first() {
        let pods = [pod("measured", 0, None), pod("unmeasured", 0, None)];
        let mut c = candidates(&pods, vec![memory(MI), None]);
        rank(Resource::Memory, &mut c);
        assert_eq!(names(&c), ["unmeasured", "measured"]);
    }

    #[test]
    fn pids_rank_by_priority_then_process_count() {
        let pods = [
            pod("few", 0, None),
            pod("many", 0, None),
            pod("low", -1, None),
        ];
        let procs = |n| {
            Some(PodUsage {
                processes: Some(n),
                ..Default::default()
            })
        };
        let mut c = candidates(&pods, vec![procs(2), procs(200), procs(1)]);
        rank(Resource::Pids, &mut c);
        assert_eq!(names(&c), ["low", "many", "few"]);
    }

    #[test]
    fn disk_ranks_pods_over_their_storage_request_first_then_priority_then_use() {
        let mut pods = [
            pod("small", 0, None),
            pod("large", 0, None),
            pod("requested", -5, None),
        ];
        pods[2].spec.as_mut().unwrap().containers[0].resources = Some(
            serde_json::from_value(serde_json::json!({"requests": {"ephemeral-storage": "1Gi"}}))
                .unwrap(),
        );
        let disk = |bytes| {
            Some(PodUsage {
                disk_bytes: Some(bytes),
                ..Default::default()
            })
        };
        let mut c = candidates(&pods, vec![disk(MI), disk(100 * MI), disk(500 * MI)]);
        rank(Resource::EphemeralStorage, &mut c);
        assert_eq!(names(&c), ["large", "small", "requested"]);
    }

    #[test]
    fn the_message_names_the_threshold_and_containers_over_their_request() {
        let threshold = Threshold {
            signal: Signal::MemoryAvailable,
            level: Level::Amount(Quantity::parse("100Ti").unwrap()),
            grace_period: None,
        };
        let observations = Observations {
            signals: [(Signal::MemoryAvailable, (20 << 30, 32 << 30))].into(),
        };
        let info = threshold_met_info(Resource::Memory, &[&threshold], &observations);
        let p = pod("sleeper", 0, Some("16Mi"));
        let mut usage = memory(1_228_800 + 17 * MI).unwrap();
        usage.containers[0].memory_working_set = Some(17 * MI + 1_228_800);
        let c = Candidate {
            pod: &p,
            usage: Some(usage),
        };
        assert_eq!(
            eviction_message(Resource::Memory, info.clone(), &c),
            "The node was low on resource: memory. Threshold quantity: 100Ti, available: 20Gi. \
             Container app was using 18608Ki, request is 16Mi, has larger consumption of memory. "
        );
        // Within its request, or without stats: no container named.
        let c = Candidate {
            pod: &p,
            usage: memory(MI),
        };
        assert_eq!(
            eviction_message(Resource::Memory, info.clone(), &c),
            "The node was low on resource: memory. Threshold quantity: 100Ti, available: 20Gi. "
        );
        let best_effort = pod("be", 0, None);
        let c = Candidate {
            pod: &best_effort,
            usage: memory(1_228_800),
        };
        assert!(eviction_message(Resource::Memory, info, &c).ends_with(
            "Container app was using 1200Ki, request is 0, has larger consumption of memory. "
        ));
        // A share of the capacity prints in bytes; counts print as counts.
        let pids = Threshold {
            signal: Signal::PidAvailable,
            level: Level::Fraction(0.5),
            grace_period: None,
        };
        let observations = Observations {
            signals: [(Signal::PidAvailable, (1000, 4_000_000))].into(),
        };
        let info = threshold_met_info(Resource::Pids, &[&threshold, &pids], &observations);
        let c = Candidate {
            pod: &p,
            usage: None,
        };
        assert_eq!(
            eviction_message(Resource::Pids, info, &c),
            "The node was low on resource: pids. Threshold quantity: 2000000, available: 1k. "
        );
    }
}

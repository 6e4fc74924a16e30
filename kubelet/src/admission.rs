//! Pod admission: a pod bound to this node runs only if it fits beside the
//! pods already admitted, as upstream's kubelet admits pods (its predicate
//! admit handler): they count against `maxPods`, and their cpu and memory
//! requests against what the node has. There is no scheduler in front of
//! the kubelet yet, so this is the only gate. A pod that does not fit is
//! rejected: phase Failed with reason `OutOf<resource>`, and it never starts.
//! Under node pressure, pods are refused as upstream's eviction manager
//! refuses them (reason `Evicted`): under MemoryPressure alone only
//! BestEffort pods that do not tolerate it, under any other pressure every
//! pod but critical ones.

use std::collections::BTreeMap;

use ferrokube_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::eviction::Pressure;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// What the node offers pods (its allocatable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub pods: i64,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// Why a pod was rejected, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `OutOfpods`, `OutOfcpu` or `OutOfmemory`: the pod status's reason
    /// and the Warning event's.
    pub reason: String,
    /// `Node didn't have enough resource: ...`; the status message is this
    /// after `Pod was rejected: `.
    pub message: String,
}

/// What a pod asks of the node: cpu in millicores and memory in bytes
/// (see [`pod_request`]).
pub fn pod_requests(pod: &Pod) -> (i64, i64) {
    (
        pod_request_scaled(pod, "cpu", Quantity::milli_value) as i64,
        pod_request_scaled(pod, "memory", Quantity::value) as i64,
    )
}

/// What a pod requests of `resource` in whole units (bytes for memory and
/// ephemeral-storage), as upstream's `GetResourceRequestQuantity`: init
/// containers run one at a time before the others, so a pod needs the
/// larger of its containers' sum and its largest init container.
pub fn pod_request(pod: &Pod, resource: &str) -> i128 {
    pod_request_scaled(pod, resource, Quantity::value)
}

fn pod_request_scaled(pod: &Pod, resource: &str, scaled: fn(&Quantity) -> i128) -> i128 {
    let Some(spec) = &pod.spec else {
        return 0;
    };
    let each = |c: &Container| container_request(c, resource).map_or(0, |q| scaled(&q));
    let sum: i128 = spec.containers.iter().map(each).sum();
    spec.init_containers
        .iter()
        .flatten()
        .map(each)
        .fold(sum, i128::max)
}

/// The quantity `key` of a requests or limits map, if set and valid.
pub fn quantity(map: &Option<BTreeMap<String, ApiQuantity>>, key: &str) -> Option<Quantity> {
    map.as_ref()
        .and_then(|m| m.get(key))
        .and_then(|q| Quantity::parse(&q.0).ok())
}

/// A container's request of `resource`; a limit stands in for a missing
/// request, as the API's defaulting does.
pub fn container_request(c: &Container, resource: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    quantity(&r.requests, resource).or_else(|| quantity(&r.limits, resource))
}

/// Whether `pod` fits beside the pods already `admitted` (those still
/// running or starting, static pods included).
pub fn admit<'a>(
    pod: &Pod,
    admitted: impl IntoIterator<Item = &'a Pod>,
    node: &Allocatable,
) -> Result<(), Rejection> {
    let (mut used_pods, mut used_cpu, mut used_memory) = (0, 0, 0);
    for p in admitted {
        let (cpu, memory) = pod_requests(p);
        used_pods += 1;
        used_cpu += cpu;
        used_memory += memory;
    }
    let insufficient = |resource: &str, requested: i64, used: i64, capacity: i64| {
        Rejection {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    }
    };
    if used_pods + 1 > node.pods {
        return Err(insufficient("pods", 1, used_pods, node.pods));
    }
    let (cpu, memory) = pod_requests(pod);
    if cpu > 0 && cpu > node.cpu_millis - used_cpu {
        return Err(insufficient("cpu", cpu, used_cpu, node.cpu_millis));
    }
    if memory > 0 && memory > node.memory_bytes - used_memory {
        return Err(insufficient(
            "memory",
            memory,
            used_memory,
            node.memory_bytes,
        ));
    }
    Ok(())
}

/// Upstream's system-critical priority: pods at or above it are admitted
/// under any pressure, as static pods are.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Whether `pod` may start while the node is under `pressure`.
pub fn admit_under_pressure(pod: &Pod, pressure: &[Pressure]) -> Result<(), Rejection> {
    if pressure.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if pressure == [Pressure::Memory]
        && (crate::status::qos_class(pod) != "BestEffort" || tolerates_memory_pressure(pod))
    {
        return Ok(());
    }
    let names: Vec<&str> = [
        (Pressure::Memory, "MemoryPressure"),
        (Pressure::Disk, "DiskPressure"),
        (Pressure::Pid, "PIDPressure"),
    ]
    .into_iter()
    .filter(|(p, _)| pressure.contains(p))
    .map(|(_, name)| name)
    .collect();
    Err(Rejection {
        reason: "Evicted".into(),
        message: format!("The node had condition: [{}]. ", names.join(" ")),
    })
}

/// Upstream's `IsCriticalPod`: static and mirror pods, and pods of
/// system-critical priority. They are admitted under any pressure and
/// never evicted.
pub fn is_critical(pod: &Pod) -> bool {
    let priority = pod.spec.as_ref().and_then(|s| s.priority);
    crate::static_pods::is_static_pod(pod)
        || crate::mirror_pod::is_mirror_pod(pod)
        || priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// Whether the pod tolerates `node.kubernetes.io/memory-pressure:NoSchedule`.
fn tolerates_memory_pressure(pod: &Pod) -> bool {
    const KEY: &str = "node.kubernetes.io/memory-pressure";
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .any(|t| {
            let key_matches = match t.key.as_deref() {
                None | Some("") => t.operator.as_deref() == Some("Exists"),
                Some(k) => k == KEY,
            };
            let value_matches = t.operator.as_deref() == Some("Exists")
                || t.value.as_deref().unwrap_or_default().is_empty();
            let effect_matches =
                matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
            key_matches && value_matches && effect_matches
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(requests: &[(&str, &str)], limits: &[(&str, &str)], init: Option<(&str, &str)>) -> Pod {
        let map = |kv: &[(&str, &str)]| {
            serde_json::Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect(),
            )
        };
        let mut spec = serde_json::json!({
            "containers": [
                {"name": "a", "image": "i", "resources": {"requests": map(requests), "limits": map(limits)}},
                {"name": "b", "image": "i", "resources": {"requests": map(requests)}},
            ]
        });
        if let Some((k, v)) = init {
            spec["initContainers"] = serde_json::json!([{"name": "init", "image": "i", "resources": {"requests": {k: v}}}]);
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    const NODE: Allocatable = Allocatable {
        pods: 3,
        cpu_millis: 2000,
        memory_bytes: 4 << 30,
    };

    #[test]
    fn requests_add_up_over_containers_and_init_containers_take_the_larger() {
        assert_eq!(
            pod_requests(&pod(&[("cpu", "250m"), ("memory", "64Mi")], &[], None)),
            (500, 128 << 20)
        );
        // A limit stands in for a missing request (container a only).
        assert_eq!(pod_requests(&pod(&[], &[("cpu", "1")], None)), (1000, 0));
        // An init container larger than the containers' sum sets the request.
        assert_eq!(
            pod_requests(&pod(&[("cpu", "100m")], &[], Some(("cpu", "1500m")))),
            (1500, 0)
        );
        assert_eq!(
            pod_requests(&pod(&[("cpu", "100m")], &[], Some(("cpu", "150m")))),
            (200, 0)
        );
    }

    #[test]
    fn the_pod_beyond_max_pods_is_rejected_with_upstreams_reason_and_message() {
        let best_effort = pod(&[], &[], None);
        let two = [best_effort.clone(), best_effort.clone()];
        assert_eq!(admit(&best_effort, &two, &NODE), Ok(()));
        let three = [
            best_effort.clone(),
            best_effort.clone(),
            best_effort.clone(),
        ];
        let rejected = admit(&best_effort, &three, &NODE).unwrap_err();
        assert_eq!(rejected.reason, "OutOfpods");
        assert_eq!(
            rejected.message,
            "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"
        );
    }

    #[test]
    fn cpu_and_memory_requests_count_against_what_is_left() {
        let half_cpu = pod(&[("cpu", "500m")], &[], None); // 1000m: two containers
        assert_eq!(admit(&half_cpu, [&half_cpu], &NODE), Ok(()));
        let rejected = admit(
            &half_cpu,
            [&half_cpu, &pod(&[("cpu", "1m")], &[], None)],
            &NODE,
        )
        .unwrap_err();
        assert_eq!(rejected.reason, "OutOfcpu");
        assert_eq!(
            rejected.message,
            "Node didn't have enough resource: cpu, requested: 1000, used: 1002, capacity: 2000"
        );
        let big = pod(&[("memory", "3Gi")], &[], None); // 6 GiB
        let rejected = admit(&big, [], &NODE).unwrap_err();
        assert_eq!(rejected.reason, "OutOfmemory");
        assert!(
            rejected.message.contains("requested: 6442450944"),
            "{}",
            rejected.message
        );
        // A pod asking for nothing only needs a pod slot, however full the node is.
        let full = pod(&[("cpu", "1"), ("memory", "2Gi")], &[], None);
        assert_eq!(admit(&pod(&[], &[], None), [&full], &NODE), Ok(()));
    }

    #[test]
    fn under_memory_pressure_only_best_effort_pods_are_refused_unless_they_tolerate_it() {
        let best_effort = pod(&[], &[], None);
        let burstable = pod(&[("memory", "10Mi")], &[], None);
        assert_eq!(admit_under_pressure(&best_effort, &[]), Ok(()));
        assert_eq!(
            admit_under_pressure(&burstable, &[Pressure::Memory]),
            Ok(())
        );
        let refused = admit_under_pressure(&best_effort, &[Pressure::Memory]).unwrap_err();
        assert_eq!(refused.reason, "Evicted");
        assert_eq!(
            refused.message,
            "The node had condition: [MemoryPressure]. "
        );
        let mut tolerant = best_effort.clone();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![serde_json::from_value(
            serde_json::json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        )
        .unwrap()]);
        assert_eq!(admit_under_pressure(&tolerant, &[Pressure::Memory]), Ok(()));
    }

    #[test]
    fn under_disk_or_pid_pressure_every_pod_but_critical_ones_is_refused() {
        let burstable = pod(&[("memory", "10Mi")], &[], None);
        let refused =
            admit_under_pressure(&burstable, &[Pressure::Memory, Pressure::Disk]).unwrap_err();
        assert_eq!(
            refused.message,
            "The node had condition: [MemoryPressure DiskPressure]. "
        );
        assert!(admit_under_pressure(&burstable, &[Pressure::Pid]).is_err());
        let mut critical = burstable.clone();
        critical.spec.as_mut().unwrap().priority = Some(SYSTEM_CRITICAL_PRIORITY);
        assert_eq!(admit_under_pressure(&critical, &[Pressure::Disk]), Ok(()));
    }
}

//! Printers for the core group (`v1`): pods, nodes, services, and the rest,
//! after upstream's `printPod`, `printNode`, `printService`….

use super::{
    age, arr, col, containers_and_images, created_at, format_labels, i, list_with_more, name,
    obj_len, parse_time, s, since, wide, Column, Printer, Row, RowFn, AGE, CONTAINERS_DESC,
    IMAGES_DESC, NAME,
};
use chrono::{DateTime, Utc};
use ferrokube_api::ResourceInfo;
use serde_json::{json, Value};

pub(crate) fn printer(res: &ResourceInfo) -> Option<Printer> {
    if !res.group.is_empty() {
        return None;
    }
    let (columns, row): (&'static [Column], RowFn) = match res.plural {
        "pods" => (POD_COLUMNS, pod_row),
        "namespaces" => (NAMESPACE_COLUMNS, namespace_row),
        "nodes" => (NODE_COLUMNS, node_row),
        "services" => (SERVICE_COLUMNS, service_row),
        "endpoints" => (ENDPOINTS_COLUMNS, endpoints_row),
        "configmaps" => (CONFIGMAP_COLUMNS, configmap_row),
        "secrets" => (SECRET_COLUMNS, secret_row),
        "serviceaccounts" => (SERVICEACCOUNT_COLUMNS, serviceaccount_row),
        "events" => (EVENT_COLUMNS, event_row),
        "replicationcontrollers" => (RC_COLUMNS, rc_row),
        "limitranges" => (CREATED_AT_COLUMNS, created_at_row),
        "resourcequotas" => (RESOURCEQUOTA_COLUMNS, resourcequota_row),
        _ => return None,
    };
    Some(Printer { columns, row })
}

// ---- pods ----

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", "podIP is the IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
];

/// An init container with `restartPolicy: Always` (a sidecar): counted as a
/// regular container once started.
fn is_restartable_init(spec: &Value, container_name: &str) -> bool {
    arr(spec, "/initContainers")
        .iter()
        .any(|c| s(c, "/name") == container_name && s(c, "/restartPolicy") == "Always")
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    arr(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == type_ && s(c, "/status") == "True")
}

/// Keeps the later of `latest` and this status's last termination time.
fn note_restart(latest: &mut Option<DateTime<Utc>>, status: &Value) {
    if let Some(t) = parse_time(s(status, "/lastState/terminated/finishedAt")) {
        if latest.is_none_or(|l| l < t) {
            *latest = Some(t);
        }
    }
}

fn exit_reason(prefix: &str, terminated: &Value) -> String {
    let signal = i(terminated, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", i(terminated, "/exitCode"))
    }
}

/// Upstream's `printPod`: READY, STATUS (phase refined by init and container
/// states, `Terminating` while deleting) and RESTARTS (`3 (2m ago)`).
pub(crate) fn pod_row(pod: &Value, now: DateTime<Utc>) -> Row {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let phase = s(pod, "/status/phase");
    let mut reason = if s(pod, "/status/reason").is_empty() {
        phase.to_string()
    } else {
        s(pod, "/status/reason").to_string()
    };
    if arr(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = arr(spec, "/initContainers");
    let mut total = arr(spec, "/containers").len();
    total += init_specs
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let mut initializing = false;
    for (idx, status) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let cname = s(status, "/name");
        let sidecar = is_restartable_init(spec, cname);
        restarts += i(status, "/restartCount");
        note_restart(&mut last_restart, status);
        if sidecar {
            sidecar_restarts += i(status, "/restartCount");
            note_restart(&mut last_sidecar_restart, status);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = s(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match s(t, "/reason") {
                "" => exit_reason("Init:", t),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{idx}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += i(status, "/restartCount");
            note_restart(&mut last_restart, status);
            let waiting_reason = s(status, "/state/waiting/reason");
            let terminated = status.pointer("/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match s(t, "/reason") {
                    "" => exit_reason("", t),
                    r => r.to_string(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", super::human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let none_if_empty = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let pod_ip = arr(pod, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip"))
        .unwrap_or("");
    let gates = arr(spec, "/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType");
                arr(pod, "/status/conditions")
                    .iter()
                    .find(|c| s(c, "/type") == t)
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    let conditions = match phase {
        "Succeeded" => Some(json!([{
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully."
        }])),
        "Failed" => Some(json!([{
            "type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed."
        }])),
        _ => None,
    };

    Row {
        cells: vec![
            json!(name(pod)),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            age(pod, now),
            json!(none_if_empty(pod_ip)),
            json!(none_if_empty(s(pod, "/spec/nodeName"))),
            json!(none_if_empty(s(pod, "/status/nominatedNodeName"))),
            json!(readiness_gates),
        ],
        conditions,
    }
}

// ---- namespaces ----

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace_row(ns: &Value, now: DateTime<Utc>) -> Row {
    vec![json!(name(ns)), json!(s(ns, "/status/phase")), age(ns, now)].into()
}

// ---- nodes ----

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP)."),
    wide("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP)."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

/// `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label,
/// sorted; `<none>` when there are none.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, type_: &str) -> String {
    arr(node, "/status/addresses")
        .iter()
        .find(|a| s(a, "/type") == type_)
        .map(|a| s(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

fn node_row(node: &Value, now: DateTime<Utc>) -> Row {
    let mut status: Vec<&str> = Vec::new();
    if let Some(c) = arr(node, "/status/conditions")
        .iter()
        .rfind(|c| s(c, "/type") == "Ready")
    {
        status.push(if s(c, "/status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(name(node)),
        json!(status.join(",")),
        json!(node_roles(node)),
        age(node, now),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(unknown(s(node, "/status/nodeInfo/osImage"))),
        json!(unknown(s(node, "/status/nodeInfo/kernelVersion"))),
        json!(unknown(s(node, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
    .into()
}

// ---- services ----

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

fn strings(v: &Value, path: &str) -> Vec<String> {
    arr(v, path)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn service_external_ip(svc: &Value) -> String {
    let external_ips = strings(svc, "/spec/externalIPs");
    match s(svc, "/spec/type") {
        "" | "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|ing| {
                    let ip = s(ing, "/ip");
                    let host = s(ing, "/hostname");
                    if !ip.is_empty() {
                        Some(ip.to_string())
                    } else if !host.is_empty() {
                        Some(host.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            ips.extend(external_ips);
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `80/TCP` or `80:30080/TCP` per port, joined by `,`; `<none>` when empty.
fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match s(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            let node_port = i(p, "/nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", i(p, "/port"))
            } else {
                format!("{}/{protocol}", i(p, "/port"))
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    }
}

fn service_row(svc: &Value, now: DateTime<Utc>) -> Row {
    let type_ = match s(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = strings(svc, "/spec/clusterIPs")
        .into_iter()
        .next()
        .or_else(|| Some(s(svc, "/spec/clusterIP").to_string()))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        json!(name(svc)),
        json!(type_),
        json!(cluster_ip),
        json!(service_external_ip(svc)),
        json!(service_ports(svc)),
        age(svc, now),
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
    .into()
}

// ---- endpoints ----

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."),
    AGE,
];

/// Upstream's `formatEndpoints`: `ip:port` pairs (or bare IPs for port-less
/// subsets), at most three, then `+ N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().map(|a| s(a, "/ip").to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                let ip = s(a, "/ip");
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                list.push(format!("{host}:{}", i(port, "/port")));
            }
        }
    }
    list_with_more(&list, count, 3, "")
}

fn endpoints_row(ep: &Value, now: DateTime<Utc>) -> Row {
    vec![json!(name(ep)), json!(format_endpoints(ep)), age(ep, now)].into()
}

// ---- configmaps, secrets, serviceaccounts ----

const CONFIGMAP_COLUMNS: &[Column] = &[NAME, col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."), AGE];

fn configmap_row(cm: &Value, now: DateTime<Utc>) -> Row {
    let data = obj_len(cm, "/data") + obj_len(cm, "/binaryData");
    vec![json!(name(cm)), json!(data), age(cm, now)].into()
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
    col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
    AGE,
];

fn secret_row(secret: &Value, now: DateTime<Utc>) -> Row {
    let type_ = match s(secret, "/type") {
        "" => "Opaque",
        t => t,
    };
    vec![
        json!(name(secret)),
        json!(type_),
        json!(obj_len(secret, "/data")),
        age(secret, now),
    ]
    .into()
}

const SERVICEACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret"),
    AGE,
];

fn serviceaccount_row(sa: &Value, now: DateTime<Utc>) -> Row {
    vec![
        json!(name(sa)),
        json!(arr(sa, "/secrets").len()),
        age(sa, now),
    ]
    .into()
}

// ---- events ----

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If the reference is to a portion of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: super::NAME_DESC,
        priority: 1,
    },
];

fn event_row(ev: &Value, now: DateTime<Utc>) -> Row {
    let first_seen = if !s(ev, "/firstTimestamp").is_empty() {
        since(s(ev, "/firstTimestamp"), now)
    } else {
        since(s(ev, "/eventTime"), now)
    };
    let mut last_seen = if !s(ev, "/lastTimestamp").is_empty() {
        since(s(ev, "/lastTimestamp"), now)
    } else {
        first_seen.clone()
    };
    let mut count = i(ev, "/count");
    if ev.get("series").is_some_and(|v| !v.is_null()) {
        last_seen = since(s(ev, "/series/lastObservedTime"), now);
        count = i(ev, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, "/involvedObject/kind").to_lowercase();
    let target = match s(ev, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(s(ev, "/source/component"), s(ev, "/reportingComponent"));
    let instance = first_non_empty(s(ev, "/source/host"), s(ev, "/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(target),
        json!(s(ev, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(ev, "/message").trim()),
        json!(first_seen),
        json!(count),
        json!(name(ev)),
    ]
    .into()
}

// ---- replicationcontrollers ----

const RC_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
    col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
    col("Ready", "integer", "The number of ready replicas for this replication controller."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn rc_row(rc: &Value, now: DateTime<Utc>) -> Row {
    let (containers, images) = containers_and_images(rc.pointer("/spec/template/spec"));
    vec![
        json!(name(rc)),
        json!(rc
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)),
        json!(i(rc, "/status/replicas")),
        json!(i(rc, "/status/readyReplicas")),
        age(rc, now),
        containers,
        images,
        json!(format_labels(rc.pointer("/spec/selector"))),
    ]
    .into()
}

// ---- limitranges, resourcequotas ----

pub(crate) const CREATED_AT_COLUMNS: &[Column] =
    &[NAME, col("Created At", "date", super::AGE_DESC)];

pub(crate) fn created_at_row(obj: &Value, _now: DateTime<Utc>) -> Row {
    vec![json!(name(obj)), created_at(obj)].into()
}

const RESOURCEQUOTA_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
];

/// `cpu: 500m/1, pods: 3/10` for requests, `limits.memory: 1Gi/2Gi` for limits.
fn resourcequota_row(rq: &Value, now: DateTime<Utc>) -> Row {
    let mut request = Vec::new();
    let mut limit = Vec::new();
    if let Some(hard) = rq.pointer("/status/hard").and_then(Value::as_object) {
        let mut names: Vec<&String> = hard.keys().collect();
        names.sort();
        for resource in names {
            let used = rq
                .pointer(&format!("/status/used/{}", resource.replace('/', "~1")))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let text = format!(
                "{resource}: {used}/{}",
                hard[resource.as_str()].as_str().unwrap_or("0")
            );
            if resource.starts_with("limits.") {
                limit.push(text);
            } else {
                request.push(text);
            }
        }
    }
    vec![
        json!(name(rq)),
        age(rq, now),
        json!(request.join(", ")),
        json!(limit.join(", ")),
    ]
    .into()
}

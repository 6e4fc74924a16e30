//! Pod defaults: `SetDefaults_PodSpec` and friends for pods and every pod
//! template, plus what only a Pod gets (requests from limits, priority,
//! initial status with its QoS class). Entry points: [`pod`], [`pod_spec`].

use serde_json::{json, Value};

use super::{default_at, default_str, each_mut, object_at};
use crate::registry::validation::quantity;

/// Volume sources upstream defaults a file mode on.
const MODE_SOURCES: [&str; 4] = ["configMap", "secret", "downwardAPI", "projected"];

/// Defaults of a Pod object: its spec, what upstream adds to pods but not
/// to templates, and the status a new pod starts with.
pub(super) fn pod(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    for key in ["containers", "initContainers"] {
        each_mut(spec, key, requests_from_limits);
    }
    default_at(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&json!(true)) {
        for key in ["containers", "initContainers"] {
            each_mut(spec, key, |c| {
                each_mut(c, "ports", |p| {
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        p["hostPort"] = p.get("containerPort").cloned().unwrap_or(json!(0));
                    }
                })
            });
        }
    }
    // What the Priority admission plugin resolves for pods without a class.
    default_at(spec, "priority", json!(0));
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    pod_spec(spec);

    let qos = qos_class(&obj["spec"]);
    let status = object_at(obj, "status");
    default_str(status, "phase", "Pending");
    default_str(status, "qosClass", qos);
}

/// A pod with limits but no requests requests what it limits (pods only:
/// templates keep what the user wrote).
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let requests = object_at(object_at(c, "resources"), "requests");
    for (k, v) in limits {
        default_at(requests, &k, v);
    }
}

/// Defaults of a pod spec, shared by Pods and every workload's template.
pub(super) fn pod_spec(spec: &mut Value) {
    default_str(spec, "restartPolicy", "Always");
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_at(spec, "terminationGracePeriodSeconds", json!(30));
    default_at(spec, "securityContext", json!({}));
    default_str(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        each_mut(spec, key, container);
    }
    each_mut(spec, "volumes", volume);
}

fn container(c: &mut Value) {
    if c.get("imagePullPolicy")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        c["imagePullPolicy"] = json!(pull_policy_for(image));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    default_at(c, "resources", json!({}));
    each_mut(c, "ports", |p| default_str(p, "protocol", "TCP"));
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(key).filter(|p| p.is_object()) {
            default_at(p, "timeoutSeconds", json!(1));
            default_at(p, "periodSeconds", json!(10));
            default_at(p, "successThreshold", json!(1));
            default_at(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").filter(|l| l.is_object()) {
        for key in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(key).filter(|h| h.is_object()) {
                handler(h);
            }
        }
    }
    each_mut(c, "env", |e| {
        if let Some(field_ref) = e.pointer_mut("/valueFrom/fieldRef") {
            default_str(field_ref, "apiVersion", "v1");
        }
    });
}

/// `Always` for `:latest` or an untagged image without a digest (the tag
/// that moves), otherwise `IfNotPresent` — upstream's `SetDefaults_Container`.
fn pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if digest.is_some() => "IfNotPresent",
        None => "Always",
    }
}

fn handler(h: &mut Value) {
    if let Some(get) = h.get_mut("httpGet").filter(|g| g.is_object()) {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
    if let Some(grpc) = h.get_mut("grpc").filter(|g| g.is_object()) {
        default_at(grpc, "service", json!(""));
    }
}

fn volume(v: &mut Value) {
    let has_source = v.as_object().is_some_and(|m| m.keys().any(|k| k != "name"));
    if !has_source {
        default_at(v, "emptyDir", json!({}));
    }
    for key in MODE_SOURCES {
        if let Some(src) = v.get_mut(key).filter(|s| s.is_object()) {
            default_at(src, "defaultMode", json!(420));
        }
    }
    if let Some(src) = v.get_mut("downwardAPI") {
        each_mut(src, "items", field_ref_version);
    }
    if let Some(src) = v.get_mut("projected") {
        each_mut(src, "sources", |s| {
            if let Some(d) = s.get_mut("downwardAPI") {
                each_mut(d, "items", field_ref_version);
            }
            if let Some(t) = s.get_mut("serviceAccountToken").filter(|t| t.is_object()) {
                default_at(t, "expirationSeconds", json!(3600));
            }
        });
    }
    if let Some(src) = v.get_mut("hostPath").filter(|s| s.is_object()) {
        default_at(src, "type", json!(""));
    }
}

fn field_ref_version(item: &mut Value) {
    if let Some(field_ref) = item.get_mut("fieldRef").filter(|f| f.is_object()) {
        default_str(field_ref, "apiVersion", "v1");
    }
}

/// Upstream's `ComputePodQOS`: only cpu and memory count; `Guaranteed` when
/// every container limits both and the summed requests equal the summed
/// limits, `BestEffort` when nothing is requested or limited, otherwise
/// `Burstable`. Ephemeral containers have no resources and do not count.
fn qos_class(spec: &Value) -> &'static str {
    use std::collections::BTreeMap;
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).into_iter().flatten());
    for c in containers {
        let positive = |kind: &str| -> Vec<(&'static str, i128)> {
            ["cpu", "memory"]
                .into_iter()
                .filter_map(|r| {
                    let q = c.pointer(&format!("/resources/{kind}/{r}"))?.as_str()?;
                    let n = quantity::parse(q).ok()?;
                    (n > 0).then_some((r, n))
                })
                .collect()
        };
        for (r, n) in positive("requests") {
            *requests.entry(r).or_default() += n;
        }
        let found = positive("limits");
        if found.len() < 2 {
            guaranteed = false;
        }
        for (r, n) in found {
            *limits.entry(r).or_default() += n;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(r, n)| limits.get(r) == Some(n))
    {
        return "Guaranteed";
    }
    "Burstable"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted_pod(spec: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "p"}, "spec": spec});
        pod(&mut obj);
        obj
    }

    #[test]
    fn pod_spec_defaults_match_kubectl_get_yaml() {
        let p = defaulted_pod(json!({"containers": [{"name": "c", "image": "nginx"}]}));
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            spec["containers"][0],
            json!({
                "name": "c",
                "image": "nginx",
                "imagePullPolicy": "Always",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            })
        );
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let p = defaulted_pod(json!({
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "priority": 1000,
            "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never"}],
        }));
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("nginx"), "Always");
        assert_eq!(pull_policy_for("nginx:latest"), "Always");
        assert_eq!(pull_policy_for("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy_for("localhost:5000/app"), "Always");
        assert_eq!(pull_policy_for("localhost:5000/app:v2"), "IfNotPresent");
        assert_eq!(pull_policy_for("nginx@sha256:abcd"), "IfNotPresent");
        assert_eq!(pull_policy_for("nginx:latest@sha256:abcd"), "Always");
    }

    #[test]
    fn ports_probes_env_and_volumes_get_defaults() {
        let p = defaulted_pod(json!({
            "containers": [{
                "name": "c", "image": "nginx:1",
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 5},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            }],
            "initContainers": [{"name": "i", "image": "busybox"}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "sec", "secret": {"secretName": "s"}},
                {"name": "scratch"},
                {"name": "info", "downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            ],
        }));
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({
                "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3,
            })
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(c["readinessProbe"]["grpc"]["service"], "");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            p["spec"]["initContainers"][0]["terminationMessagePolicy"],
            "File"
        );
        let v = &p["spec"]["volumes"];
        assert_eq!(v[0]["configMap"]["defaultMode"], 420);
        assert_eq!(v[1]["secret"]["defaultMode"], 420);
        assert_eq!(v[2], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(
            v[3]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
    }

    #[test]
    fn limits_become_requests_and_host_network_ports_get_host_ports() {
        let p = defaulted_pod(json!({
            "hostNetwork": true,
            "containers": [{"name": "c", "image": "a", "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}],
        }));
        let c = &p["spec"]["containers"][0];
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(c["ports"][0]["hostPort"], 8080);
        assert_eq!(p["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn qos_class_is_computed_as_upstream() {
        let with = |resources: Value| {
            qos_class(&json!({"containers": [{"name": "c", "resources": resources}]}))
        };
        assert_eq!(with(json!({})), "BestEffort");
        assert_eq!(with(json!({"requests": {"cpu": "0"}})), "BestEffort");
        assert_eq!(with(json!({"requests": {"cpu": "100m"}})), "Burstable");
        assert_eq!(
            with(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}})
            ),
            "Guaranteed"
        );
        assert_eq!(
            with(
                json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            ),
            "Burstable"
        );
        assert_eq!(
            with(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})),
            "Burstable"
        );
        // A pod's own defaulting copies limits into requests first.
        let p = defaulted_pod(json!({"containers": [{"name": "c", "image": "a",
            "resources": {"limits": {"cpu": "1", "memory": "128Mi"}}}]}));
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn existing_status_is_kept() {
        let mut obj = json!({"spec": {"containers": []}, "status": {"phase": "Running", "qosClass": "Guaranteed"}});
        pod(&mut obj);
        assert_eq!(
            obj["status"],
            json!({"phase": "Running", "qosClass": "Guaranteed"})
        );
    }
}

//! Upstream's defaulting for the fields users see: what `kubectl get -o
//! yaml` shows that the manifest did not say. Entry point: [`apply`].
//!
//! Defaulting runs on create and on every update, so every rule here only
//! fills what is absent and applying it twice changes nothing.

mod pod;

use ferrokube_api::ResourceInfo;
use serde_json::{json, Value};

/// Sets `obj[key]` unless it is already set (absent or `null` count as unset).
fn default_at(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        match map.get(key) {
            Some(v) if !v.is_null() => {}
            _ => {
                map.insert(key.to_string(), value);
            }
        }
    }
}

/// Like [`default_at`], but an empty string also counts as unset: required
/// string fields arrive as `""` when the manifest left them out.
fn default_str(obj: &mut Value, key: &str, value: &str) {
    if obj
        .get(key)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && obj.is_object()
    {
        obj[key] = json!(value);
    }
}

/// The object at `obj[key]`, created empty when absent.
fn object_at<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = json!({});
    }
    &mut obj[key]
}

/// Runs `f` on every element of the array `obj[key]`, if there is one.
fn each_mut(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

/// Applies the defaults of `res` to `obj`, on create and on every update.
pub fn apply(res: &ResourceInfo, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Namespace") => namespace(obj),
        ("", "Pod") => pod::pod(obj),
        ("", "ReplicationController") => replication_controller(obj),
        ("", "Service") => service(obj),
        ("", "Secret") => default_str(obj, "type", "Opaque"),
        ("", "Node") => node(obj),
        ("", "Endpoints") => each_mut(obj, "subsets", |s| {
            each_mut(s, "ports", |p| default_at(p, "protocol", json!("TCP")))
        }),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("scheduling.k8s.io", "PriorityClass") => {
            default_at(obj, "preemptionPolicy", json!("PreemptLowerPriority"))
        }
        ("discovery.k8s.io", "EndpointSlice") => each_mut(obj, "ports", |p| {
            default_at(p, "name", json!(""));
            default_at(p, "protocol", json!("TCP"));
        }),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => role_binding(obj),
        _ => {}
    }
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !obj["metadata"].get("labels").is_some_and(Value::is_object) {
        obj["metadata"]["labels"] = json!({});
    }
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    default_at(&mut obj["spec"], "finalizers", json!(["kubernetes"]));
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    default_at(&mut obj["status"], "phase", json!("Active"));
}

/// `spec.template.spec` of a workload, when the template has a spec.
fn template_pod_spec(spec: &mut Value) {
    if let Some(pod_spec) = spec.pointer_mut("/template/spec") {
        if pod_spec.is_object() {
            pod::pod_spec(pod_spec);
        }
    }
}

fn is_empty_map(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_none_or(|m| m.is_empty())
}

/// The legacy controller defaults its selector and its own labels to the
/// template's labels (`SetDefaults_ReplicationController`).
fn replication_controller(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    default_at(spec, "replicas", json!(1));
    let labels = spec.pointer("/template/metadata/labels").cloned();
    if let Some(labels) = labels.filter(|l| !is_empty_map(Some(l))) {
        if is_empty_map(spec.get("selector")) {
            spec["selector"] = labels.clone();
        }
        let meta = object_at(obj, "metadata");
        if is_empty_map(meta.get("labels")) {
            meta["labels"] = labels;
        }
    }
    template_pod_spec(object_at(obj, "spec"));
}

fn deployment(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    default_at(spec, "replicas", json!(1));
    let strategy = object_at(spec, "strategy");
    default_str(strategy, "type", "RollingUpdate");
    if strategy["type"] == "RollingUpdate" {
        let rolling = object_at(strategy, "rollingUpdate");
        default_at(rolling, "maxUnavailable", json!("25%"));
        default_at(rolling, "maxSurge", json!("25%"));
    }
    default_at(spec, "revisionHistoryLimit", json!(10));
    default_at(spec, "progressDeadlineSeconds", json!(600));
    template_pod_spec(spec);
}

fn replica_set(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    default_at(spec, "replicas", json!(1));
    template_pod_spec(spec);
}

fn stateful_set(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    default_at(spec, "replicas", json!(1));
    default_str(spec, "podManagementPolicy", "OrderedReady");
    let strategy = object_at(spec, "updateStrategy");
    default_str(strategy, "type", "RollingUpdate");
    if strategy["type"] == "RollingUpdate" {
        default_at(object_at(strategy, "rollingUpdate"), "partition", json!(0));
    }
    default_at(spec, "revisionHistoryLimit", json!(10));
    let retention = object_at(spec, "persistentVolumeClaimRetentionPolicy");
    default_str(retention, "whenDeleted", "Retain");
    default_str(retention, "whenScaled", "Retain");
    each_mut(spec, "volumeClaimTemplates", |pvc| {
        if let Some(s) = pvc.get_mut("spec").filter(|s| s.is_object()) {
            default_str(s, "volumeMode", "Filesystem");
        }
    });
    template_pod_spec(spec);
}

fn daemon_set(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    let strategy = object_at(spec, "updateStrategy");
    default_str(strategy, "type", "RollingUpdate");
    if strategy["type"] == "RollingUpdate" {
        let rolling = object_at(strategy, "rollingUpdate");
        default_at(rolling, "maxUnavailable", json!(1));
        default_at(rolling, "maxSurge", json!(0));
    }
    default_at(spec, "revisionHistoryLimit", json!(10));
    template_pod_spec(spec);
}

/// The labels upstream's Job strategy puts on the template to select its
/// pods: the first two carry the Job's name, the last two its uid.
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
const JOB_UID_LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];

fn job(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The Job's own labels default to the template's, as the user wrote
    // them: the generated selector labels are added afterwards upstream.
    let mut user_labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    user_labels.retain(|k, _| {
        !JOB_NAME_LABELS.contains(&k.as_str()) && !JOB_UID_LABELS.contains(&k.as_str())
    });
    if !user_labels.is_empty() {
        let meta = object_at(obj, "metadata");
        if is_empty_map(meta.get("labels")) {
            meta["labels"] = Value::Object(user_labels);
        }
    }

    let spec = object_at(obj, "spec");
    let completions_unset = spec.get("completions").is_none_or(Value::is_null);
    let parallelism_unset = spec.get("parallelism").is_none_or(Value::is_null);
    // A non-parallel Job may leave both unset; a work queue (parallelism
    // without completions) keeps completions unset.
    if completions_unset && parallelism_unset {
        spec["completions"] = json!(1);
    }
    default_at(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    default_at(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default_str(spec, "completionMode", "NonIndexed");
    default_at(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(Value::is_object);
    if has_failure_policy {
        each_mut(&mut spec["podFailurePolicy"], "rules", |rule| {
            each_mut(rule, "onPodConditions", |c| {
                default_str(c, "status", "True")
            })
        });
    }
    default_str(
        spec,
        "podReplacementPolicy",
        if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        },
    );
    if spec.get("manualSelector") != Some(&json!(true)) && !uid.is_empty() {
        let template = object_at(spec, "template");
        let labels = object_at(object_at(template, "metadata"), "labels");
        for key in JOB_NAME_LABELS {
            default_at(labels, key, json!(name));
        }
        for key in JOB_UID_LABELS {
            default_at(labels, key, json!(uid));
        }
        let match_labels = object_at(object_at(spec, "selector"), "matchLabels");
        default_at(match_labels, JOB_UID_LABELS[0], json!(uid));
    }
    template_pod_spec(spec);
}

fn cron_job(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    default_str(spec, "concurrencyPolicy", "Allow");
    default_at(spec, "suspend", json!(false));
    default_at(spec, "successfulJobsHistoryLimit", json!(3));
    default_at(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec.pointer_mut("/jobTemplate/spec") {
        template_pod_spec(job_spec);
    }
}

fn service(obj: &mut Value) {
    let has_selector = !is_empty_map(obj.pointer("/spec/selector"));
    let spec = object_at(obj, "spec");
    default_str(spec, "type", "ClusterIP");
    default_str(spec, "sessionAffinity", "None");
    if spec["sessionAffinity"] == "ClientIP" {
        let client_ip = object_at(object_at(spec, "sessionAffinityConfig"), "clientIP");
        default_at(client_ip, "timeoutSeconds", json!(10800));
    }
    each_mut(spec, "ports", |p| {
        default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset {
            p["targetPort"] = p.get("port").cloned().unwrap_or(json!(0));
        }
    });
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    if kind == "NodePort" || kind == "LoadBalancer" {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if kind == "LoadBalancer" {
        default_at(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if kind != "ExternalName" {
        default_str(spec, "internalTrafficPolicy", "Cluster");
        // A headless Service without a selector may list endpoints of any
        // family, so upstream asks for both; this cluster serves IPv4 only.
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        let policy = if headless && !has_selector {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        default_str(spec, "ipFamilyPolicy", policy);
        if spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
    }
}

/// Nodes get no spec defaults (in particular no taints) beyond keeping
/// `podCIDR` and `podCIDRs` in step, as upstream's v1 conversion does
/// (`podCIDRs` wins; a lone `podCIDR` becomes the list). A registering
/// kubelet that reports only capacity has all of it allocatable.
fn node(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
        let first = spec
            .pointer("/podCIDRs/0")
            .and_then(Value::as_str)
            .map(str::to_string);
        match first {
            Some(cidr) => spec["podCIDR"] = json!(cidr),
            None => {
                if let Some(cidr) = spec
                    .get("podCIDR")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                {
                    spec["podCIDRs"] = json!([cidr]);
                }
            }
        }
    }
    let Some(status) = obj.get_mut("status").filter(|s| s.is_object()) else {
        return;
    };
    if status.get("allocatable").is_none_or(Value::is_null) {
        if let Some(capacity) = status.get("capacity").cloned() {
            status["allocatable"] = capacity;
        }
    }
}

fn role_binding(obj: &mut Value) {
    default_str(
        object_at(obj, "roleRef"),
        "apiGroup",
        "rbac.authorization.k8s.io",
    );
    each_mut(obj, "subjects", |s| {
        let group = match s.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            _ => return,
        };
        default_str(s, "apiGroup", group);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_api::resources::find;

    fn applied(group: &str, plural: &str, mut obj: Value) -> Value {
        apply(find(group, "v1", plural).expect("served"), &mut obj);
        obj
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    #[test]
    fn namespace_gets_its_name_label_finalizer_and_active_phase() {
        let ns = applied("", "namespaces", json!({"metadata": {"name": "dev"}}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[test]
    fn deployment_defaults_match_upstream() {
        let d = applied(
            "apps",
            "deployments",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        // Pod-only defaults stay off templates, as upstream.
        assert!(pod.get("enableServiceLinks").is_none());
    }

    #[test]
    fn deployment_recreate_strategy_gets_no_rolling_parameters() {
        let d = applied(
            "apps",
            "deployments",
            json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}, "template": template()}}),
        );
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replica_set_and_replication_controller_default_replicas_and_rc_selector() {
        let rs = applied(
            "apps",
            "replicasets",
            json!({"spec": {"template": template()}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        let rc = applied(
            "",
            "replicationcontrollers",
            json!({"metadata": {"name": "rc"}, "spec": {"template": template()}}),
        );
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn stateful_set_defaults_match_upstream() {
        let s = applied(
            "apps",
            "statefulsets",
            json!({"spec": {"template": template(), "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
    }

    #[test]
    fn daemon_set_defaults_match_upstream() {
        let d = applied(
            "apps",
            "daemonsets",
            json!({"spec": {"template": template()}}),
        );
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            d["spec"]["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
    }

    fn job_object(spec: Value) -> Value {
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": spec})
    }

    #[test]
    fn job_defaults_and_generated_selector_match_upstream() {
        let mut t = template();
        t["spec"]["restartPolicy"] = json!("Never");
        let j = applied("batch", "jobs", job_object(json!({"template": t})));
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            spec["template"]["metadata"]["labels"],
            json!({
                "app": "web",
                "batch.kubernetes.io/controller-uid": "u-1",
                "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "u-1",
                "job-name": "pi",
            })
        );
        assert_eq!(j["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
        // Idempotent: an update applies the same defaults again.
        assert_eq!(applied("batch", "jobs", j.clone()), j);
    }

    #[test]
    fn job_with_parallelism_only_keeps_completions_unset() {
        let j = applied(
            "batch",
            "jobs",
            job_object(json!({"parallelism": 3, "template": template()})),
        );
        assert!(j["spec"].get("completions").is_none());
        assert_eq!(j["spec"]["parallelism"], 3);
    }

    #[test]
    fn job_with_manual_selector_gets_no_generated_labels() {
        let j = applied(
            "batch",
            "jobs",
            job_object(
                json!({"manualSelector": true, "selector": {"matchLabels": {"app": "web"}}, "template": template()}),
            ),
        );
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"app": "web"}})
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web"})
        );
    }

    #[test]
    fn cron_job_defaults_reach_the_job_template_pod_spec() {
        let c = applied(
            "batch",
            "cronjobs",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}}),
        );
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        // Job-level defaults are the Job's, not the template's.
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    }

    #[test]
    fn service_defaults_match_upstream() {
        let s = applied(
            "",
            "services",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert!(spec.get("allocateLoadBalancerNodePorts").is_none());
    }

    #[test]
    fn load_balancer_and_external_name_services_get_their_own_defaults() {
        let lb = applied(
            "",
            "services",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        let en = applied(
            "",
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "a.example"}}),
        );
        assert!(en["spec"].get("ipFamilies").is_none());
        assert!(en["spec"].get("internalTrafficPolicy").is_none());
        let affinity = applied(
            "",
            "services",
            json!({"spec": {"sessionAffinity": "ClientIP"}}),
        );
        assert_eq!(
            affinity["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
    }

    #[test]
    fn small_kinds_get_their_defaults() {
        assert_eq!(
            applied("", "secrets", json!({"type": ""}))["type"],
            "Opaque"
        );
        assert_eq!(
            applied("", "secrets", json!({"type": "kubernetes.io/tls"}))["type"],
            "kubernetes.io/tls"
        );
        assert_eq!(
            applied("scheduling.k8s.io", "priorityclasses", json!({"value": 10}))
                ["preemptionPolicy"],
            "PreemptLowerPriority"
        );
        let slice = applied(
            "discovery.k8s.io",
            "endpointslices",
            json!({"ports": [{"port": 80}]}),
        );
        assert_eq!(
            slice["ports"][0],
            json!({"name": "", "port": 80, "protocol": "TCP"})
        );
        let ep = applied(
            "",
            "endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let node = applied(
            "",
            "nodes",
            json!({"spec": {}, "status": {"capacity": {"cpu": "2"}}}),
        );
        assert_eq!(node["spec"], json!({}));
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
        let node = applied("", "nodes", json!({"spec": {"podCIDR": "10.244.1.0/24"}}));
        assert_eq!(
            node["spec"],
            json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]})
        );
        let node = applied(
            "",
            "nodes",
            json!({"spec": {"podCIDRs": ["10.244.2.0/24", "fd00::/64"]}}),
        );
        assert_eq!(node["spec"]["podCIDR"], "10.244.2.0/24");
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(applied("", "serviceaccounts", sa.clone()), sa);
        let role = json!({"rules": []});
        assert_eq!(
            applied("rbac.authorization.k8s.io", "roles", role.clone()),
            role
        );
    }

    #[test]
    fn role_binding_defaults_api_groups() {
        let rb = applied(
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({"roleRef": {"apiGroup": "", "kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(rb["subjects"][1].get("apiGroup").is_none());
    }
}

use super::*;
use chrono::TimeZone;
use ferrokube_api::resources::find;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 10, 12, 0, 0).unwrap()
}

fn cells(res: &ResourceInfo, obj: Value) -> Vec<Value> {
    let t = table(res, &[obj], IncludeObject::Metadata, now());
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

fn column_names(res: &ResourceInfo) -> Vec<(String, u64)> {
    column_definitions(res)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pods() -> &'static ResourceInfo {
    find("", "v1", "pods").unwrap()
}

#[test]
fn human_duration_matches_apimachinery() {
    let d = chrono::TimeDelta::seconds;
    assert_eq!(human_duration(d(-5)), "<invalid>");
    assert_eq!(human_duration(d(-1)), "0s");
    assert_eq!(human_duration(d(5)), "5s");
    assert_eq!(human_duration(d(119)), "119s");
    assert_eq!(human_duration(d(200)), "3m20s");
    assert_eq!(human_duration(d(300)), "5m");
    assert_eq!(human_duration(d(15 * 60 + 5)), "15m");
    assert_eq!(human_duration(d(5 * 3600 + 10 * 60)), "5h10m");
    assert_eq!(human_duration(d(20 * 3600)), "20h");
    assert_eq!(human_duration(d(51 * 3600)), "2d3h");
    assert_eq!(human_duration(d(45 * 86400)), "45d");
    assert_eq!(human_duration(d((365 * 2 + 10) * 86400)), "2y10d");
}

#[test]
fn pod_columns_are_upstreams_with_wide_ones_at_priority_one() {
    assert_eq!(
        column_names(pods()),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    assert_eq!(column_definitions(pods())[0]["format"], "name");
}

#[test]
fn running_pod_prints_like_kubectl() {
    let pod = json!({
        "metadata": {"name": "web-1", "namespace": "default",
                     "creationTimestamp": "2025-01-10T11:55:00Z", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
                                          "state": {"running": {"startedAt": "2025-01-10T11:55:03Z"}}}]}
    });
    let t = table(pods(), &[pod], IncludeObject::Metadata, now());
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web-1",
            "1/1",
            "Running",
            "0",
            "5m",
            "10.244.1.5",
            "node-a",
            "<none>",
            "<none>"
        ])
    );
    let obj = &t["rows"][0]["object"];
    assert_eq!(obj["kind"], "PartialObjectMetadata");
    assert_eq!(obj["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(obj["metadata"]["labels"]["app"], "web");
    assert!(obj.get("spec").is_none());
}

#[test]
fn crashlooping_pod_shows_reason_and_last_restart() {
    let pod = json!({
        "metadata": {"name": "bad", "creationTimestamp": "2025-01-10T11:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        "status": {"phase": "Running",
                   "containerStatuses": [{"name": "app", "ready": false, "restartCount": 5,
                       "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                    "finishedAt": "2025-01-10T11:55:00Z"}}}]}
    });
    let c = cells(pods(), pod);
    assert_eq!(c[1], "0/1");
    assert_eq!(c[2], "CrashLoopBackOff");
    assert_eq!(c[3], "5 (5m ago)");
    assert_eq!(c[4], "60m");
}

#[test]
fn pod_status_follows_init_containers_completion_and_deletion() {
    let init = json!({
        "metadata": {"name": "init", "creationTimestamp": "2025-01-10T11:59:50Z"},
        "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]},
        "status": {"phase": "Pending",
                   "initContainerStatuses": [{"name": "setup", "restartCount": 0,
                                              "state": {"running": {}}}],
                   "containerStatuses": [{"name": "app", "restartCount": 0,
                                          "state": {"waiting": {"reason": "PodInitializing"}}}]}
    });
    assert_eq!(cells(pods(), init)[2], "Init:0/1");

    let creating = json!({
        "metadata": {"name": "c"},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "app",
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    });
    let c = cells(pods(), creating);
    assert_eq!(c[2], "ContainerCreating");
    assert_eq!(c[4], "<unknown>");

    let done = json!({
        "metadata": {"name": "job-x"},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "app",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    });
    let t = table(pods(), &[done], IncludeObject::None, now());
    assert_eq!(t["rows"][0]["cells"][1], "0/1");
    assert_eq!(t["rows"][0]["cells"][2], "Completed");
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
    assert!(t["rows"][0].get("object").is_none());

    let deleting = json!({
        "metadata": {"name": "d", "deletionTimestamp": "2025-01-10T11:59:00Z"},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true,
            "state": {"running": {}}}]}
    });
    assert_eq!(cells(pods(), deleting)[2], "Terminating");
}

#[test]
fn nodeport_service_prints_ports_and_selector() {
    let svc = json!({
        "metadata": {"name": "web", "creationTimestamp": "2025-01-08T09:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                 "selector": {"app": "web", "tier": "front"},
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                           {"port": 53, "protocol": "UDP"}]}
    });
    let res = find("", "v1", "services").unwrap();
    assert_eq!(
        cells(res, svc),
        json!([
            "web",
            "NodePort",
            "10.96.0.20",
            "<none>",
            "80:30080/TCP,53/UDP",
            "2d3h",
            "app=web,tier=front"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
    let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"]}});
    assert_eq!(cells(res, lb)[3], "<pending>");
}

#[test]
fn deployment_prints_ready_up_to_date_available() {
    let deploy = json!({
        "metadata": {"name": "web", "creationTimestamp": "2025-01-10T10:00:00Z"},
        "spec": {"replicas": 3,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [
                     {"name": "nginx", "image": "nginx:1.27"},
                     {"name": "sidecar", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let res = find("apps", "v1", "deployments").unwrap();
    let names: Vec<String> = column_names(res).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        cells(res, deploy),
        json!([
            "web",
            "2/3",
            3,
            2,
            "120m",
            "nginx,sidecar",
            "nginx:1.27,busybox",
            "app=web"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
}

#[test]
fn node_status_roles_and_addresses() {
    let node = json!({
        "metadata": {"name": "cp-1", "creationTimestamp": "2025-01-01T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "",
                                "kubernetes.io/hostname": "cp-1"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "192.168.56.10"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12",
                                "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.6.20"}}
    });
    let c = cells(find("", "v1", "nodes").unwrap(), node);
    assert_eq!(
        c,
        json!([
            "cp-1",
            "Ready,SchedulingDisabled",
            "control-plane",
            "9d",
            "v1.32.0",
            "192.168.56.10",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0",
            "containerd://1.6.20"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
}

#[test]
fn job_status_completions_and_duration() {
    let job = json!({
        "metadata": {"name": "pi", "creationTimestamp": "2025-01-10T11:50:00Z"},
        "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"succeeded": 1, "startTime": "2025-01-10T11:50:00Z",
                   "completionTime": "2025-01-10T11:50:42Z",
                   "conditions": [{"type": "Complete", "status": "True"}]}
    });
    let c = cells(find("batch", "v1", "jobs").unwrap(), job);
    assert_eq!(
        &c[..5],
        &json!(["pi", "Complete", "1/1", "42s", "10m"])
            .as_array()
            .unwrap()[..]
    );
}

#[test]
fn events_and_default_columns() {
    let ev = json!({
        "metadata": {"name": "web-1.17a", "creationTimestamp": "2025-01-10T11:58:00Z"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "type": "Normal", "reason": "Pulled", "message": "Container image pulled ",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": "2025-01-10T11:58:00Z", "lastTimestamp": "2025-01-10T11:59:30Z", "count": 2
    });
    let c = cells(find("", "v1", "events").unwrap(), ev);
    assert_eq!(
        c,
        json!([
            "30s",
            "Normal",
            "Pulled",
            "pod/web-1",
            "spec.containers{web}",
            "kubelet, node-a",
            "Container image pulled",
            "2m",
            2,
            "web-1.17a"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2025-01-10T11:58:00Z"}});
    let c = cells(
        find("rbac.authorization.k8s.io", "v1", "roles").unwrap(),
        role,
    );
    assert_eq!(c, vec![json!("reader"), json!("2025-01-10T11:58:00Z")]);
}

#[test]
fn include_object_and_list_metadata() {
    assert_eq!(IncludeObject::from_query(None), Ok(IncludeObject::Metadata));
    assert_eq!(
        IncludeObject::from_query(Some("Object")),
        Ok(IncludeObject::Object)
    );
    assert!(IncludeObject::from_query(Some("All")).is_err());
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}});
    let res = find("", "v1", "configmaps").unwrap();
    let mut t = table(res, &[cm], IncludeObject::Object, now());
    assert_eq!(t["rows"][0]["cells"][1], 2);
    assert_eq!(t["rows"][0]["object"]["kind"], "ConfigMap");
    assert_eq!(t["rows"][0]["object"]["data"]["b"], "2");
    set_list_metadata(
        &mut t,
        &json!({"resourceVersion": "42", "continue": ""}),
        TableVersion::V1,
    );
    assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
}

#[test]
fn table_negotiation_reads_kubectl_get_accept() {
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    assert_eq!(negotiate_table(accept), Some(TableVersion::V1));
    assert_eq!(negotiate_table("application/json"), None);
    assert_eq!(negotiate_table(""), None);
    assert_eq!(
        TableVersion::V1.content_type(),
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
}

#[test]
fn watch_events_carry_headers_only_first() {
    let pod = json!({"metadata": {"name": "p", "resourceVersion": "7"},
                     "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
    let first = watch_event_table(pods(), "ADDED", &pod, IncludeObject::Metadata, now(), true);
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["metadata"]["resourceVersion"], "7");
    assert!(
        first["object"]["columnDefinitions"]
            .as_array()
            .unwrap()
            .len()
            == 9
    );
    assert_eq!(first["object"]["rows"][0]["cells"][2], "Pending");
    let later = watch_event_table(
        pods(),
        "MODIFIED",
        &pod,
        IncludeObject::Metadata,
        now(),
        false,
    );
    assert!(later["object"]["columnDefinitions"].is_null());
    assert_eq!(later["object"]["rows"].as_array().unwrap().len(), 1);
    let status = json!({"kind": "Status", "code": 410});
    let err = watch_event_table(
        pods(),
        "ERROR",
        &status,
        IncludeObject::Metadata,
        now(),
        false,
    );
    assert_eq!(err["object"], status);
}

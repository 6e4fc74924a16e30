//! Static pod manifests: parsing, defaulting, the hash, bad files, and the
//! directory view.

use super::*;

const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  priorityClassName: system-node-critical
  containers:
  - name: c
    image: busybox:1.36
    command: [sleep, '3600']
    ports: [{containerPort: 80}]
    resources:
      limits: {memory: 20Mi}
";

fn parse(path: &str, text: &str) -> Result<Pod, ManifestError> {
    parse_manifest(Path::new(path), text, "node-a")
}

#[test]
fn manifest_is_defaulted_like_upstreams_file_source() {
    let pod = parse("/etc/kubernetes/manifests/web.yaml", WEB).unwrap();
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("web-node-a"));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let uid = meta.uid.clone().unwrap();
    assert_eq!(uid.len(), 32);
    assert_eq!(config_hash(&pod), Some(uid.as_str()));
    assert!(is_static_pod(&pod));
    assert_eq!(annotation(&pod, CONFIG_SOURCE_ANNOTATION), Some("file"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node-a"));
    assert_eq!(spec.priority, Some(2_000_001_000));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let tolerations = spec.tolerations.as_ref().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.operator.as_deref() == Some("Exists")
            && t.effect.as_deref() == Some("NoExecute")
            && t.key.is_none()));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["memory"].0, "20Mi", "requests default to limits");
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
}

#[test]
fn json_manifests_are_read_too() {
    let text = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}"#;
    let pod = parse("/m/j.json", text).unwrap();
    assert_eq!(pod_name_of(&pod), "kube-system/j-node-a");
}

fn pod_name_of(pod: &Pod) -> String {
    crate::pod_worker::pod_name(pod)
}

#[test]
fn uid_depends_on_content_node_and_path_only() {
    let a = parse("/m/web.yaml", WEB).unwrap().metadata.uid;
    assert_eq!(a, parse("/m/web.yaml", WEB).unwrap().metadata.uid);
    let edited = WEB.replace("'3600'", "'60'");
    assert_ne!(a, parse("/m/web.yaml", &edited).unwrap().metadata.uid);
    assert_ne!(a, parse("/m/other.yaml", WEB).unwrap().metadata.uid);
    let other_node = parse_manifest(Path::new("/m/web.yaml"), WEB, "node-b").unwrap();
    assert_ne!(a, other_node.metadata.uid);
    // A uid written in the file is kept, as upstream does.
    let fixed = WEB.replace("name: web\n", "name: web\n  uid: fixed-uid\n");
    assert_eq!(
        parse("/m/web.yaml", &fixed)
            .unwrap()
            .metadata
            .uid
            .as_deref(),
        Some("fixed-uid")
    );
}

#[test]
fn bad_manifests_name_the_file_and_the_field() {
    let cases = [
        (
            WEB.replace("image: busybox:1.36", "image: [1]"),
            "spec.containers[0].image",
        ),
        (WEB.replace("kind: Pod", "kind: Deployment"), "kind"),
        (
            WEB.replace("apiVersion: v1", "apiVersion: apps/v1"),
            "apiVersion",
        ),
        (
            WEB.replace("  - name: c\n", "  - name: C_1\n"),
            "spec.containers[0].name",
        ),
        (
            WEB.replace("    image: busybox:1.36\n", ""),
            "spec.containers[0].image: Required value",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n".into(),
            "spec.containers: Required value",
        ),
        ("kind: Pod\n  bad indent: [\n".into(), "/m/bad.yaml"),
    ];
    for (text, want) in cases {
        let err = parse("/m/bad.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("/m/bad.yaml"), "{err}");
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

#[test]
fn directory_view_follows_added_edited_and_removed_files() {
    let dir = tempfile::tempdir().unwrap();
    let pods = StaticPods::default();
    assert!(!pods.is_synced());
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join(".web.yaml.swp"), "junk").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "junk").unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        WEB.replace("kind: Pod", "kind: Nope"),
    )
    .unwrap();
    let problems = pods.refresh(dir.path(), "node-a");
    assert!(pods.is_synced());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].to_string().contains("bad.yaml"));
    let first = pods.pods();
    assert_eq!(first.len(), 1, "the bad file does not stop the good one");
    let uid = first[0].metadata.uid.clone().unwrap();
    let seen = annotation(&first[0], CONFIG_SEEN_ANNOTATION)
        .unwrap()
        .to_string();

    // Unchanged: same pod, same seen time, the bad file is not reported again.
    pods.set_status(
        &uid,
        PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        },
    );
    assert!(pods.refresh(dir.path(), "node-a").is_empty());
    let again = pods.pods();
    assert_eq!(again[0].metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        annotation(&again[0], CONFIG_SEEN_ANNOTATION),
        Some(seen.as_str())
    );
    assert_eq!(
        again[0].status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );

    // Edited: a new pod (new uid) with a fresh status.
    std::fs::write(dir.path().join("web.yaml"), WEB.replace("'3600'", "'60'")).unwrap();
    pods.refresh(dir.path(), "node-a");
    let edited = pods.pods();
    assert_eq!(edited.len(), 1);
    assert_ne!(edited[0].metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        edited[0].status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    // A second file with the same pod name is refused by name.
    std::fs::write(dir.path().join("web2.yaml"), WEB).unwrap();
    let problems = pods.refresh(dir.path(), "node-a");
    assert_eq!(problems.len(), 1);
    assert!(
        matches!(&problems[0], ManifestError::Duplicate { .. }),
        "{problems:?}"
    );
    assert_eq!(pods.pods().len(), 1);

    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("web2.yaml")).unwrap();
    pods.refresh(dir.path(), "node-a");
    assert!(pods.pods().is_empty());
}

#[test]
fn missing_directory_means_no_static_pods() {
    let dir = tempfile::tempdir().unwrap();
    let pods = StaticPods::default();
    assert!(pods.refresh(&dir.path().join("nope"), "node-a").is_empty());
    assert!(pods.is_synced());
    assert!(pods.pods().is_empty());
}

#[tokio::test]
async fn removed_static_pods_lose_their_sandboxes_and_api_pods_keep_theirs() {
    use crate::backoff::CrashLoopBackOff;
    use crate::cri::FakeRuntime;
    use crate::cri::Runtime;
    use crate::pod_worker::{PodWorker, WorkerSettings};
    let rt = FakeRuntime::with_images(&["busybox:1.36"]);
    let worker = PodWorker::new(
        Arc::new(rt.clone()),
        WorkerSettings {
            node_name: "node-a".into(),
            host_ip: "10.0.0.1".into(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            pod_logs_dir: std::env::temp_dir().join("ferrokube-static-unit-logs"),
        },
        CrashLoopBackOff::new(Duration::from_secs(1), Duration::from_secs(10)),
    );
    let sp = parse("/m/web.yaml", WEB).unwrap();
    let api_pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api", "namespace": "default", "uid": "api-uid"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .unwrap();
    worker.sync_pod(&sp).await.unwrap();
    worker.sync_pod(&api_pod).await.unwrap();
    let sandboxes = || async {
        rt.list_pod_sandboxes(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32)
            .collect::<Vec<_>>()
    };
    assert_eq!(sandboxes().await.len(), 2);
    // The static pod is still defined: nothing goes.
    let live = HashSet::from([sp.metadata.uid.clone().unwrap()]);
    let all = rt.list_pod_sandboxes(None).await.unwrap();
    kill_removed_static_pods(&worker, &all, &live)
        .await
        .unwrap();
    assert_eq!(sandboxes().await.len(), 2);
    // Its file went: only its sandbox goes; the API pod's stays.
    kill_removed_static_pods(&worker, &all, &HashSet::new())
        .await
        .unwrap();
    let left = sandboxes().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].labels[crate::pod_worker::POD_UID_LABEL], "api-uid");
}

//! Pod volumes and container environments on a rig node (real kubelet,
//! containerd, runc): env from configMap, secret, fieldRef,
//! resourceFieldRef, envFrom and service links as the container prints
//! it; a configMap volume whose update reaches the running container; an
//! emptyDir shared by two containers; a `medium: Memory` emptyDir that is a
//! tmpfs of its sizeLimit; a secret volume on tmpfs with its defaultMode;
//! fsGroup giving a non-root user the volumes; missing configMaps as CreateContainerConfigError
//! and FailedMount; volumes removed with the pod. Root only.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrokube_client::{Client, DeleteParams};
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStateWaiting, Pod, Secret, Service};
use support::cluster::jwt_payload;
use support::{wait_for, Rig, TestNode};

const NS: &str = "default";

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// The lines a container of `pod` wrote, from its CRI log files.
fn container_log(node: &TestNode, pod: &Pod, container: &str) -> String {
    let (name, uid) = (
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap(),
    );
    node.container_logs(&format!("{NS}_{name}_{uid}"), container)
}

/// Unmounts what the kubelet mounted under a node's pod directories should
/// the test stop before the pods are gone (the node's directory is
/// removed with the rig, which a mount would prevent).
struct UnmountPodVolumes(PathBuf);

impl Drop for UnmountPodVolumes {
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in info.lines() {
            let Some(mount_point) = line.split(' ').nth(4) else {
                continue;
            };
            if Path::new(mount_point).starts_with(&self.0) {
                let _ = nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn waiting(pod: &Pod) -> Option<ContainerStateWaiting> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()
}

async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    client.get::<Pod>(NS, name).await.ok()
}

fn reader_pod(node: &str) -> Pod {
    let script = r#"
env | sort | sed 's/^/env: /'
echo "tmpfs: `grep ' /mem ' /proc/mounts`"
echo "df: `df -k /mem | tail -1`"
echo "secret: `cat /etc/secret/password` mode `stat -L -c %a /etc/secret/password`"
echo "secretfs: `grep ' /etc/secret ' /proc/mounts`"
touch /etc/cfg/new 2>/dev/null && echo cfg-writable || echo cfg-readonly
echo started > /shared/from-main
while true; do echo "key=`cat /etc/cfg/key`"; sleep 1; done
"#;
    obj(serde_json::json!({
        "metadata": {"name": "reader", "namespace": NS, "labels": {"app": "reader"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app-config"}},
                {"name": "shared", "emptyDir": {}},
                {"name": "secret", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
            ],
            "containers": [
                {
                    "name": "main", "image": "busybox:1.36",
                    "command": ["sh", "-c", script],
                    "resources": {"limits": {"memory": "64Mi"}},
                    "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"}],
                    "env": [
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "MEM_LIMIT_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                        {"name": "GREETING", "value": "hello-$(MODE)"}
                    ],
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/etc/cfg"},
                        {"name": "shared", "mountPath": "/shared"},
                        {"name": "secret", "mountPath": "/etc/secret"},
                        {"name": "mem", "mountPath": "/mem"},
                        {"name": "info", "mountPath": "/etc/info"}
                    ]
                },
                {
                    "name": "side", "image": "busybox:1.36",
                    "command": ["sh", "-c", "while [ ! -f /data/from-main ]; do sleep 0.2; done; echo \"side saw: `cat /data/from-main`\"; cat /etc/info/labels; echo; sleep 3600"],
                    "volumeMounts": [
                        {"name": "shared", "mountPath": "/data"},
                        {"name": "info", "mountPath": "/etc/info"}
                    ]
                }
            ]
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_and_env_reach_containers_and_follow_updates() {
    let options = support::RigOptions {
        // Projected volumes are refreshed every syncFrequency.
        kubelet_config: "syncFrequency: 2s\n".into(),
        ..Default::default()
    };
    let Some(rig) = Rig::start_with("vols", 1, options).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];
    let _unmount = UnmountPodVolumes(node.dir().join("root/pods"));

    client
        .create(
            NS,
            &obj::<ConfigMap>(serde_json::json!({
                "metadata": {"name": "app-config", "namespace": NS},
                "data": {"key": "v1", "mode": "fast"}
            })),
        )
        .await
        .unwrap();
    client
        .create(
            NS,
            &obj::<Secret>(serde_json::json!({
                "metadata": {"name": "app-secret", "namespace": NS},
                "data": {"password": "czNjcjN0"}
            })),
        )
        .await
        .unwrap();
    // A service that exists before the pod: its link variables are in the env.
    let svc: Service = client
        .create(
            NS,
            &obj::<Service>(serde_json::json!({
                "metadata": {"name": "backend-api", "namespace": NS},
                "spec": {"selector": {"app": "backend"}, "ports": [{"name": "http", "port": 8080}]}
            })),
        )
        .await
        .unwrap();
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();

    client.create(NS, &reader_pod(&node.name)).await.unwrap();
    let running = wait_for(Duration::from_secs(90), || async {
        get_pod(&client, "reader")
            .await
            .is_some_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
    })
    .await;
    let pod = get_pod(&client, "reader").await.unwrap();
    assert!(
        running,
        "reader is not Running: {:?}\nkubelet log:\n{}",
        pod.status,
        node.kubelet_log()
    );
    let pod_ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();

    // Everything the script prints before its loop is there once `key=` is.
    let printed = wait_for(Duration::from_secs(30), || async {
        container_log(node, &pod, "main").contains("key=v1")
    })
    .await;
    let log = container_log(node, &pod, "main");
    assert!(
        printed,
        "main did not print key=v1:\n{log}\nkubelet log:\n{}",
        node.kubelet_log()
    );
    for want in [
        "env: MODE=fast".to_string(),
        "env: PASSWORD=s3cr3t".to_string(),
        "env: POD_NAME=reader".to_string(),
        format!("env: POD_IP={pod_ip}"),
        format!("env: NODE_NAME={}", node.name),
        "env: MEM_LIMIT_MI=64".to_string(),
        "env: GREETING=hello-fast".to_string(),
        "env: CFG_key=v1".to_string(),
        "env: CFG_mode=fast".to_string(),
        format!("env: BACKEND_API_SERVICE_HOST={cluster_ip}"),
        "env: BACKEND_API_SERVICE_PORT=8080".to_string(),
        "env: BACKEND_API_SERVICE_PORT_HTTP=8080".to_string(),
        format!("env: BACKEND_API_PORT=tcp://{cluster_ip}:8080"),
        format!("env: BACKEND_API_PORT_8080_TCP_ADDR={cluster_ip}"),
    ] {
        assert!(
            log.lines().any(|l| l == want),
            "missing {want:?} in:\n{log}"
        );
    }
    // The Memory emptyDir is a tmpfs of its sizeLimit: 16Mi = 16384 KiB.
    let tmpfs = log.lines().find(|l| l.starts_with("tmpfs: ")).unwrap();
    assert!(tmpfs.contains(" /mem tmpfs "), "{tmpfs}");
    assert!(tmpfs.contains("size=16384k"), "{tmpfs}");
    let df = log.lines().find(|l| l.starts_with("df: ")).unwrap();
    assert_eq!(df.split_whitespace().nth(2), Some("16384"), "{df}");

    // Secrets sit on a tmpfs with their defaultMode; configMaps are read-only.
    assert!(log.contains("secret: s3cr3t mode 400"), "{log}");
    let secretfs = log.lines().find(|l| l.starts_with("secretfs: ")).unwrap();
    assert!(secretfs.contains(" /etc/secret tmpfs ro,"), "{secretfs}");
    assert!(log.lines().any(|l| l == "cfg-readonly"), "{log}");

    // The emptyDir is shared: the sidecar sees what main wrote; both see
    // the downward API labels.
    let side_saw = wait_for(Duration::from_secs(30), || async {
        container_log(node, &pod, "side").contains("side saw: started")
    })
    .await;
    let side_log = container_log(node, &pod, "side");
    assert!(side_saw, "sidecar log:\n{side_log}");
    assert!(side_log.contains("app=\"reader\""), "{side_log}");

    // An update of the configMap reaches the running container's file.
    let mut cm: ConfigMap = client.get(NS, "app-config").await.unwrap();
    cm.data.as_mut().unwrap().insert("key".into(), "v2".into());
    client.update(&cm).await.unwrap();
    let updated = wait_for(Duration::from_secs(60), || async {
        container_log(node, &pod, "main").contains("key=v2")
    })
    .await;
    assert!(
        updated,
        "the configMap update did not reach the pod:\n{}\nkubelet log:\n{}",
        container_log(node, &pod, "main"),
        node.kubelet_log()
    );
    let uid = pod.metadata.uid.clone().unwrap();
    let vol_root = node.dir().join("root/pods").join(&uid).join("volumes");
    let cfg_dir = vol_root.join("kubernetes.io~configmap/cfg");
    assert_eq!(
        std::fs::read_link(cfg_dir.join("key")).unwrap(),
        Path::new("..data/key")
    );
    assert!(std::fs::read_link(cfg_dir.join("..data"))
        .unwrap()
        .to_string_lossy()
        .starts_with("..20"));

    // A missing configMap: the env one keeps the container in
    // CreateContainerConfigError, the volume one keeps the pod creating.
    client
        .create(NS, &obj::<Pod>(serde_json::json!({
            "metadata": {"name": "no-config-env", "namespace": NS},
            "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["sleep", "3600"],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}]}
        })))
        .await
        .unwrap();
    client
        .create(NS, &obj::<Pod>(serde_json::json!({
            "metadata": {"name": "no-config-vol", "namespace": NS},
            "spec": {"nodeName": node.name,
                "volumes": [{"name": "cfg", "configMap": {"name": "absent"}}],
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}]}
        })))
        .await
        .unwrap();
    for (name, reason, message) in [
        (
            "no-config-env",
            "CreateContainerConfigError",
            "configmap \"absent\" not found",
        ),
        (
            "no-config-vol",
            "ContainerCreating",
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found",
        ),
    ] {
        let seen = wait_for(Duration::from_secs(30), || async {
            get_pod(&client, name)
                .await
                .and_then(|p| waiting(&p))
                .is_some_and(|w| {
                    w.reason.as_deref() == Some(reason) && w.message.as_deref() == Some(message)
                })
        })
        .await;
        let p = get_pod(&client, name).await.unwrap();
        assert!(seen, "{name}: {:?}", p.status);
        assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    }
    // kubectl shows the reason.
    let out = rig.kubectl(&["get", "pod", "no-config-env", "--no-headers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CreateContainerConfigError"), "{text}");

    // fsGroup: a non-root user reads a 0400 secret and writes the emptyDir
    // through the group the volumes now belong to.
    let script = "echo \"groups: `id -G`\"; echo \"secret: `cat /etc/secret/password`\"; \
        touch /data/made && echo \"made: `stat -c %g /data/made`\"; sleep 3600";
    let fs_pod: Pod = client
        .create(NS, &obj::<Pod>(serde_json::json!({
            "metadata": {"name": "fs-group", "namespace": NS},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                "volumes": [
                    {"name": "secret", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
                    {"name": "data", "emptyDir": {}}
                ],
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script],
                    "volumeMounts": [
                        {"name": "secret", "mountPath": "/etc/secret"},
                        {"name": "data", "mountPath": "/data"}
                    ]}]}
        })))
        .await
        .unwrap();
    let made = wait_for(Duration::from_secs(60), || async {
        container_log(node, &fs_pod, "main").contains("made: ")
    })
    .await;
    let fs_log = container_log(node, &fs_pod, "main");
    assert!(
        made,
        "fs-group pod log:\n{fs_log}\nkubelet log:\n{}",
        node.kubelet_log()
    );
    let groups = fs_log.lines().find(|l| l.starts_with("groups: ")).unwrap();
    assert!(groups.split_whitespace().any(|g| g == "2000"), "{groups}");
    assert!(fs_log.lines().any(|l| l == "secret: s3cr3t"), "{fs_log}");
    assert!(fs_log.lines().any(|l| l == "made: 2000"), "{fs_log}");

    // Once the pod is gone its volumes go too: tmpfs unmounted, directory removed.
    let mem_dir = vol_root.join("kubernetes.io~empty-dir/mem");
    let mounted = |p: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", p.display()))
    };
    assert!(mounted(&mem_dir), "tmpfs of the running pod is mounted");
    client
        .delete::<Pod>(NS, "reader", &DeleteParams::default())
        .await
        .unwrap();
    let pod_dir = node.dir().join("root/pods").join(&uid);
    let removed = wait_for(Duration::from_secs(60), || async {
        !pod_dir.exists() && !mounted(&mem_dir)
    })
    .await;
    assert!(
        removed,
        "pod dir still there: {}\nkubelet log:\n{}",
        pod_dir.exists(),
        node.kubelet_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projected_service_account_token_is_a_pod_bound_jwt_that_authenticates() {
    let Some(rig) = Rig::start("satok", 1).await else {
        return;
    };
    let client = rig.client().await;
    let node = &rig.nodes[0];
    let _unmount = UnmountPodVolumes(node.dir().join("root/pods"));

    // The pod's ServiceAccount does not exist yet: the volume cannot be set up.
    let pod: Pod = client
        .create(NS, &obj::<Pod>(serde_json::json!({
            "metadata": {"name": "token-reader", "namespace": NS},
            "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                "serviceAccountName": "builder",
                "volumes": [{"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
                ]}}],
                "containers": [{"name": "main", "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo \"token: `cat /var/run/secrets/tokens/token`\"; sleep 3600"],
                    "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/tokens"}]}]}
        })))
        .await
        .unwrap();
    let expected = "MountVolume.SetUp failed for volume \"token\" : failed to fetch token: serviceaccounts \"builder\" not found";
    let failing = wait_for(Duration::from_secs(30), || async {
        get_pod(&client, "token-reader")
            .await
            .and_then(|p| waiting(&p))
            .is_some_and(|w| w.message.as_deref() == Some(expected))
    })
    .await;
    let p = get_pod(&client, "token-reader").await.unwrap();
    assert!(
        failing,
        "{:?}\nkubelet log:\n{}",
        p.status,
        node.kubelet_log()
    );

    // Once it exists, the retried setup writes the token.
    let sa: k8s_openapi::api::core::v1::ServiceAccount = client
        .create(
            NS,
            &obj(serde_json::json!({"metadata": {"name": "builder", "namespace": NS}})),
        )
        .await
        .unwrap();
    let printed = wait_for(Duration::from_secs(90), || async {
        container_log(node, &pod, "main").contains("token: ey")
    })
    .await;
    let log = container_log(node, &pod, "main");
    assert!(
        printed,
        "token not printed:\n{log}\nkubelet log:\n{}",
        node.kubelet_log()
    );
    let uid = pod.metadata.uid.clone().unwrap();
    let file = node
        .dir()
        .join("root/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~projected/token/token");
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(
        log.lines().any(|l| l == format!("token: {token}")),
        "the container sees the file the kubelet wrote:\n{log}"
    );
    let claims = jwt_payload(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:default:builder");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "token-reader");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        sa.metadata.uid.unwrap().as_str()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The token authenticates: kubectl with only the token lists pods
    // (anonymous requests may not, a bad token is 401).
    let ca = rig.dir().join("ca.crt");
    std::fs::write(&ca, rig.cluster.ca_pem()).unwrap();
    let empty_kubeconfig = rig.dir().join("empty.conf");
    std::fs::write(&empty_kubeconfig, "").unwrap();
    let as_pod = |token: &str| {
        std::process::Command::new("kubectl")
            .arg(format!("--kubeconfig={}", empty_kubeconfig.display()))
            .arg(format!("--server=https://{}", rig.cluster.addr()))
            .arg(format!("--certificate-authority={}", ca.display()))
            .arg(format!("--token={token}"))
            .args(["get", "pods", "-o", "name"])
            .output()
            .expect("kubectl")
    };
    let out = as_pod(&token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod/token-reader"));
    // Deleting the pod it is bound to revokes it.
    client
        .delete::<Pod>(NS, "token-reader", &DeleteParams::default())
        .await
        .unwrap();
    let revoked = wait_for(Duration::from_secs(60), || async {
        let out = as_pod(&token);
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized")
    })
    .await;
    assert!(revoked, "the token still works after its pod is gone");
}

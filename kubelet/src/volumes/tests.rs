//! VolumeManager against FakeObjectSource and a temporary root directory.

use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::ConfigMap;

use super::*;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn config_map(value: &str) -> ConfigMap {
    obj(serde_json::json!({
        "metadata": {"name": "cfg", "namespace": "ns"},
        "data": {"key": value, "other": "o"}
    }))
}

fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    obj(serde_json::json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web"}},
        "spec": {
            "volumes": volumes,
            "containers": [{"name": "app", "image": "busybox", "volumeMounts": mounts}]
        }
    }))
}

struct Fixture {
    root: tempfile::TempDir,
    objects: FakeObjectSource,
}

impl Fixture {
    fn new() -> Self {
        let objects = FakeObjectSource::default();
        objects.insert_config_map(&config_map("v1"));
        objects.insert_secret(&obj(serde_json::json!({
            "metadata": {"name": "creds", "namespace": "ns"},
            "data": {"password": "czNjcjN0"}
        })));
        Fixture {
            root: tempfile::tempdir().unwrap(),
            objects,
        }
    }

    /// secret/downwardAPI/projected volumes as plain directories, so these
    /// tests need no right to mount.
    fn manager(&self, refresh: Duration) -> VolumeManager {
        self.manager_with_tmpfs(refresh).without_tmpfs()
    }

    fn manager_with_tmpfs(&self, refresh: Duration) -> VolumeManager {
        VolumeManager::new(
            self.root.path(),
            Arc::new(self.objects.clone()),
            "n1",
            refresh,
        )
    }

    fn volume(&self, plugin: &str, name: &str) -> PathBuf {
        self.root
            .path()
            .join("pods/uid-1/volumes")
            .join(plugin)
            .join(name)
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[tokio::test]
async fn config_map_volume_is_projected_and_refreshed_after_the_period() {
    let f = Fixture::new();
    let p = pod(
        serde_json::json!([{"name": "cfg", "configMap": {"name": "cfg"}}]),
        serde_json::json!([{"name": "cfg", "mountPath": "/etc/cfg"}]),
    );
    let dir = f.volume("kubernetes.io~configmap", "cfg");

    // A long period: a second sync does not re-read the configMap.
    let slow = f.manager(Duration::from_secs(3600));
    let vols = slow.set_up_pod(&p).await.unwrap();
    assert_eq!(vols["cfg"].host_path, dir);
    assert_eq!(read(&dir.join("key")), "v1");
    assert_eq!(
        std::fs::read_link(dir.join("key")).unwrap(),
        Path::new("..data/key")
    );
    f.objects.insert_config_map(&config_map("v2"));
    slow.set_up_pod(&p).await.unwrap();
    assert_eq!(read(&dir.join("key")), "v1");

    // Period passed: the update reaches the volume.
    let fast = f.manager(Duration::ZERO);
    fast.set_up_pod(&p).await.unwrap();
    assert_eq!(read(&dir.join("key")), "v2");

    // A configMap deleted later leaves the last content in place.
    f.objects.remove_config_map("ns", "cfg");
    fast.set_up_pod(&p).await.unwrap();
    assert_eq!(read(&dir.join("key")), "v2");
}

#[tokio::test]
async fn missing_config_map_fails_set_up_unless_optional() {
    let f = Fixture::new();
    let m = f.manager(Duration::ZERO);
    let p = pod(
        serde_json::json!([{"name": "cfg", "configMap": {"name": "absent"}}]),
        serde_json::json!([]),
    );
    let err = m.set_up_pod(&p).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found"
    );
    let p = pod(
        serde_json::json!([{"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}}]),
        serde_json::json!([]),
    );
    assert_eq!(
        m.set_up_pod(&p).await.unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: nope"
    );
    let p = pod(
        serde_json::json!([{"name": "cfg", "configMap": {"name": "absent", "optional": true}}]),
        serde_json::json!([]),
    );
    let vols = m.set_up_pod(&p).await.unwrap();
    let dir = &vols["cfg"].host_path;
    assert!(dir.join("..data").exists());
    assert!(std::fs::symlink_metadata(dir.join("key")).is_err());
}

#[tokio::test]
async fn secret_downward_api_and_empty_dir_volumes() {
    let f = Fixture::new();
    let m = f.manager(Duration::ZERO);
    let mut p = pod(
        serde_json::json!([
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "scratch", "emptyDir": {}}
        ]),
        serde_json::json!([]),
    );
    let vols = m.set_up_pod(&p).await.unwrap();
    let secret = f.volume("kubernetes.io~secret", "creds");
    assert_eq!(read(&secret.join("password")), "s3cr3t");
    assert_eq!(
        std::fs::metadata(secret.join("password"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    let info = f.volume("kubernetes.io~downward-api", "info");
    assert_eq!(read(&info.join("labels")), "app=\"web\"");
    assert_eq!(
        vols["scratch"].host_path,
        f.volume("kubernetes.io~empty-dir", "scratch")
    );
    assert!(vols["scratch"].host_path.is_dir());
    std::fs::write(vols["scratch"].host_path.join("kept"), "x").unwrap();

    // Labels change: the downward API file follows; emptyDir keeps its data.
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "front".into());
    m.set_up_pod(&p).await.unwrap();
    assert_eq!(read(&info.join("labels")), "app=\"web\"\ntier=\"front\"");
    assert_eq!(read(&vols["scratch"].host_path.join("kept")), "x");
}

#[tokio::test]
async fn host_path_type_failure_names_the_volume() {
    let f = Fixture::new();
    let m = f.manager(Duration::ZERO);
    let file = f.root.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let p = pod(
        serde_json::json!([{"name": "h", "hostPath": {"path": file, "type": "Directory"}}]),
        serde_json::json!([]),
    );
    assert_eq!(
        m.set_up_pod(&p).await.unwrap_err().to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory",
            file.display()
        )
    );
}

#[tokio::test]
async fn mounts_follow_volume_mounts() {
    let f = Fixture::new();
    let m = f.manager(Duration::ZERO);
    let host = f.root.path().join("host");
    let p = pod(
        serde_json::json!([
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "h", "hostPath": {"path": host, "type": "DirectoryOrCreate"}}
        ]),
        serde_json::json!([
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "cfg", "mountPath": "/etc/key", "subPath": "key"},
            {"name": "scratch", "mountPath": "/work", "subPathExpr": "$(POD)/logs"},
            {"name": "h", "mountPath": "/host", "readOnly": true, "mountPropagation": "HostToContainer"}
        ]),
    );
    let vols = m.set_up_pod(&p).await.unwrap();
    assert_eq!(m.pod_volumes(&p), vols);
    let c = &p.spec.as_ref().unwrap().containers[0];
    let env = vec![("POD".to_string(), "web".to_string())];
    let mounts = container_mounts(c, &vols, &env).unwrap();
    let cfg = f.volume("kubernetes.io~configmap", "cfg");
    let scratch = f.volume("kubernetes.io~empty-dir", "scratch");
    let got: Vec<(&str, String, bool)> = mounts
        .iter()
        .map(|m| (m.container_path.as_str(), m.host_path.clone(), m.readonly))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/etc/cfg", cfg.display().to_string(), true),
            ("/etc/key", cfg.join("key").display().to_string(), true),
            (
                "/work",
                scratch.join("web/logs").display().to_string(),
                false
            ),
            ("/host", host.display().to_string(), true),
        ]
    );
    assert!(scratch.join("web/logs").is_dir(), "subPath created");
    assert_eq!(
        mounts[3].propagation,
        cri::MountPropagation::PropagationHostToContainer as i32
    );

    let mut bad = c.clone();
    bad.volume_mounts = Some(obj(
        serde_json::json!([{"name": "nope", "mountPath": "/x"}]),
    ));
    assert_eq!(
        container_mounts(&bad, &vols, &env).unwrap_err().to_string(),
        "cannot find volume \"nope\" to mount into container \"app\""
    );
    bad.volume_mounts = Some(obj(serde_json::json!([
        {"name": "scratch", "mountPath": "/x", "subPath": "../../etc"}
    ])));
    assert!(matches!(
        container_mounts(&bad, &vols, &env),
        Err(MountError::InvalidSubPath { .. })
    ));
}

#[tokio::test]
async fn orphaned_pod_directories_are_removed_and_live_ones_kept() {
    let f = Fixture::new();
    let m = f.manager(Duration::ZERO);
    let p = pod(
        serde_json::json!([{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}]),
        serde_json::json!([]),
    );
    m.set_up_pod(&p).await.unwrap();
    let pod_dir = f.root.path().join("pods/uid-1");
    m.clean_up_orphaned_pods(&HashSet::from(["uid-1".to_string()]));
    assert!(pod_dir.exists());
    m.clean_up_orphaned_pods(&HashSet::new());
    assert!(!pod_dir.exists());
}

#[tokio::test]
async fn volume_kinds_need_a_root_dir_except_host_path() {
    let m = VolumeManager::disabled();
    let p = pod(
        serde_json::json!([{"name": "s", "emptyDir": {}}]),
        serde_json::json!([]),
    );
    assert!(matches!(
        m.set_up_pod(&p).await,
        Err(SetUpError {
            source: PluginError::NoRootDir,
            ..
        })
    ));
    let p = pod(serde_json::json!([]), serde_json::json!([]));
    assert!(m.set_up_pod(&p).await.unwrap().is_empty());
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mounted(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!(" {} ", dir.display())))
        .count()
}

/// Needs root (mount). A tmpfs of the volume's sizeLimit, and secrets on a
/// tmpfs of their own; unmounted and removed with the pod.
#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs_of_its_size_limit_until_torn_down() {
    if !is_root() {
        eprintln!("SKIPPED: mounting tmpfs needs root");
        return;
    }
    let f = Fixture::new();
    let m = f.manager_with_tmpfs(Duration::ZERO);
    let p = pod(
        serde_json::json!([
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "cfg", "configMap": {"name": "cfg"}}
        ]),
        serde_json::json!([]),
    );
    let vols = m.set_up_pod(&p).await.unwrap();
    let secret = vols["creds"].host_path.clone();
    assert_eq!(mounted(&secret), 1, "secret volume on tmpfs");
    assert_eq!(read(&secret.join("password")), "s3cr3t");
    assert_eq!(
        mounted(&vols["cfg"].host_path),
        0,
        "configMap volume on disk"
    );
    let dir = vols["mem"].host_path.clone();
    assert!(empty_dir::is_mount_point(&dir));
    let st = nix::sys::statvfs::statvfs(&dir).unwrap();
    assert_eq!(
        st.blocks() as u64 * st.fragment_size() as u64,
        8 * 1024 * 1024
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.contains(dir.to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - tmpfs "), "{line}");
    // A second sync does not stack more mounts, and keeps the secret.
    m.set_up_pod(&p).await.unwrap();
    assert_eq!(mounted(&dir), 1);
    assert_eq!(mounted(&secret), 1);
    assert_eq!(read(&secret.join("password")), "s3cr3t");
    m.clean_up_orphaned_pods(&HashSet::new());
    assert!(!dir.exists());
    assert_eq!(mounted(&dir), 0);
    assert_eq!(mounted(&secret), 0);
}

/// Needs root (chown to any group). fsGroup: the volumes belong to the
/// group; a refresh with nothing new writes nothing (the modes fsGroup adds
/// are part of what is expected).
#[tokio::test]
async fn fs_group_owns_empty_dir_and_projected_volumes() {
    if !is_root() {
        eprintln!("SKIPPED: giving files any group needs root");
        return;
    }
    let f = Fixture::new();
    let m = f.manager(Duration::ZERO);
    let mut p = pod(
        serde_json::json!([
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "scratch", "emptyDir": {}}
        ]),
        serde_json::json!([]),
    );
    p.spec.as_mut().unwrap().security_context = Some(obj(serde_json::json!({"fsGroup": 3456})));
    m.set_up_pod(&p).await.unwrap();
    let meta = |p: PathBuf| std::fs::metadata(p).unwrap();
    use std::os::unix::fs::MetadataExt;

    let scratch = f.volume("kubernetes.io~empty-dir", "scratch");
    assert_eq!(meta(scratch.clone()).gid(), 3456);
    assert_eq!(
        meta(scratch).mode() & 0o7777,
        0o2777,
        "setgid, open to all as upstream"
    );

    let secret = f.volume("kubernetes.io~secret", "creds");
    let password = meta(secret.join("password"));
    assert_eq!(password.gid(), 3456);
    assert_eq!(
        password.mode() & 0o7777,
        0o440,
        "defaultMode plus group read"
    );
    let data_dir = std::fs::canonicalize(secret.join("..data")).unwrap();

    // Nothing changed in the secret: the refresh leaves the same data directory.
    m.set_up_pod(&p).await.unwrap();
    assert_eq!(
        std::fs::canonicalize(secret.join("..data")).unwrap(),
        data_dir
    );
}

//! What a pod uses, read where upstream's cadvisor reads it. Entry point:
//! [`UsageReader::pod_usage`].
//!
//! Measured here:
//! - memory: the working set of the pod cgroup and of each container's
//!   cgroup in it, usage minus inactive file cache as cadvisor computes it
//!   (cgroup v1 `memory.usage_in_bytes` − `total_inactive_file`; cgroup v2
//!   `memory.current` − `inactive_file`);
//! - processes: `pids.current` of the pod cgroup;
//! - local ephemeral storage (bytes allocated and inodes, as `du`): the
//!   pod's log directory and its emptyDir volumes on disk.
//!
//! Not measured: containers' writable layers, which live in the runtime's
//! snapshotter; disk ranking therefore does not see what a pod writes into
//! its root filesystem, and eviction messages for disk name no container.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::ranking::{ContainerUsage, PodUsage};
use crate::cgroups::{pod_cgroup_parent, CgroupDriver};
use crate::volumes::VolumeKind;

/// Reads pod usage from the cgroup tree and the node's disk.
#[derive(Debug, Clone)]
pub struct UsageReader {
    /// Where the cgroup hierarchies are mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    pub driver: CgroupDriver,
    /// `podLogsDir`.
    pub pod_logs_dir: PathBuf,
    /// `<root-dir>/pods`.
    pub pods_dir: PathBuf,
}

/// The value of `key` in a `memory.stat` file.
fn stat(dir: &Path, key: &str) -> Option<i128> {
    std::fs::read_to_string(dir.join("memory.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn number(path: &Path) -> Option<i128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The working set of the cgroup at `dir`, v1 or v2.
fn working_set(dir: &Path) -> Option<i128> {
    let (usage, inactive) = match number(&dir.join("memory.usage_in_bytes")) {
        Some(usage) => (usage, stat(dir, "total_inactive_file")),
        None => (
            number(&dir.join("memory.current"))?,
            stat(dir, "inactive_file"),
        ),
    };
    Some((usage - inactive.unwrap_or(0)).max(0))
}

/// Bytes allocated and inodes under `path`, without following links.
fn disk_usage(path: &Path) -> (i128, i128) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    let (mut bytes, mut inodes) = (i128::from(meta.blocks()) * 512, 1);
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            let (b, i) = disk_usage(&entry.path());
            bytes += b;
            inodes += i;
        }
    }
    (bytes, inodes)
}

impl UsageReader {
    /// The directory of cgroup `rel` for `controller`: under its own
    /// hierarchy (v1, also in hybrid mode), or in the unified one (v2).
    fn cgroup_dir(&self, controller: &str, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if self.cgroup_root.join("cgroup.controllers").exists() {
            self.cgroup_root.join(rel)
        } else {
            self.cgroup_root.join(controller).join(rel)
        }
    }

    /// The cgroup of the container `id` inside its pod's, as containerd
    /// names it for each driver.
    fn container_dir(&self, pod_dir: &Path, id: &str) -> PathBuf {
        match self.driver {
            CgroupDriver::Cgroupfs => pod_dir.join(id),
            CgroupDriver::Systemd => pod_dir.join(format!("cri-containerd-{id}.scope")),
        }
    }

    /// `pod`'s usage; `containers` are its containers as (id, name). `None`
    /// when the pod has no memory cgroup (no stats, as upstream's summary
    /// without the pod).
    pub fn pod_usage(&self, pod: &Pod, containers: &[(String, String)]) -> Option<PodUsage> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let rel = pod_cgroup_parent(self.driver, crate::status::qos_class(pod), uid);
        let memory_dir = self.cgroup_dir("memory", &rel);
        let memory = working_set(&memory_dir)?;
        let containers = containers
            .iter()
            .map(|(id, name)| ContainerUsage {
                name: name.clone(),
                memory_working_set: working_set(&self.container_dir(&memory_dir, id)),
            })
            .collect();
        let processes = number(&self.cgroup_dir("pids", &rel).join("pids.current"));
        let (disk_bytes, disk_inodes) = self.local_storage(pod);
        Some(PodUsage {
            memory_working_set: Some(memory),
            processes,
            disk_bytes: Some(disk_bytes),
            disk_inodes: Some(disk_inodes),
            containers,
        })
    }

    /// The pod's log directory and its emptyDir volumes on disk.
    fn local_storage(&self, pod: &Pod) -> (i128, i128) {
        let meta = &pod.metadata;
        let uid = meta.uid.as_deref().unwrap_or_default();
        let logs = self.pod_logs_dir.join(format!(
            "{}_{}_{uid}",
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default()
        ));
        let volumes = self.pods_dir.join(uid).join("volumes");
        let empty_dirs = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter(|v| {
                v.empty_dir
                    .as_ref()
                    .is_some_and(|e| e.medium.as_deref() != Some("Memory"))
            })
            .map(|v| {
                volumes
                    .join(VolumeKind::EmptyDir.plugin_dir())
                    .join(&v.name)
            });
        std::iter::once(logs)
            .chain(empty_dirs)
            .map(|p| disk_usage(&p))
            .fold((0, 0), |(b, i), (db, di)| (b + db, i + di))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "containers": [{"name": "app", "image": "i", "resources": {"requests": {"memory": "1Mi"}}}],
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "ram", "emptyDir": {"medium": "Memory"}}
                ]
            }
        }))
        .unwrap()
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn reader(root: &Path, driver: CgroupDriver) -> UsageReader {
        UsageReader {
            cgroup_root: root.join("cgroup"),
            driver,
            pod_logs_dir: root.join("logs"),
            pods_dir: root.join("pods"),
        }
    }

    #[test]
    fn cgroup_v1_working_set_leaves_out_inactive_file_cache() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("cgroup/memory/kubepods/burstable/podu1");
        write(&memory.join("memory.usage_in_bytes"), "10485760\n");
        write(
            &memory.join("memory.stat"),
            "inactive_file 1\ntotal_inactive_file 2097152\n",
        );
        write(&memory.join("c1/memory.usage_in_bytes"), "4096\n");
        write(&memory.join("c1/memory.stat"), "total_inactive_file 0\n");
        write(
            &root
                .path()
                .join("cgroup/pids/kubepods/burstable/podu1/pids.current"),
            "3\n",
        );
        let usage = reader(root.path(), CgroupDriver::Cgroupfs)
            .pod_usage(
                &pod(),
                &[("c1".into(), "app".into()), ("c2".into(), "gone".into())],
            )
            .unwrap();
        assert_eq!(usage.memory_working_set, Some(8 << 20));
        assert_eq!(usage.processes, Some(3));
        assert_eq!(usage.containers[0].memory_working_set, Some(4096));
        assert_eq!(usage.containers[1].memory_working_set, None);
    }

    #[test]
    fn cgroup_v2_and_systemd_slices_are_found() {
        let root = tempfile::tempdir().unwrap();
        write(
            &root.path().join("cgroup/cgroup.controllers"),
            "memory pids\n",
        );
        let pod_dir = root
            .path()
            .join("cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu1.slice");
        write(&pod_dir.join("memory.current"), "3000\n");
        write(&pod_dir.join("memory.stat"), "anon 1\ninactive_file 1000\n");
        write(&pod_dir.join("pids.current"), "7\n");
        write(
            &pod_dir.join("cri-containerd-c1.scope/memory.current"),
            "500\n",
        );
        let usage = reader(root.path(), CgroupDriver::Systemd)
            .pod_usage(&pod(), &[("c1".into(), "app".into())])
            .unwrap();
        assert_eq!(usage.memory_working_set, Some(2000));
        assert_eq!(usage.processes, Some(7));
        assert_eq!(usage.containers[0].memory_working_set, Some(500));
    }

    #[test]
    fn a_pod_without_a_cgroup_has_no_stats_and_storage_counts_logs_and_disk_empty_dirs() {
        let root = tempfile::tempdir().unwrap();
        let r = reader(root.path(), CgroupDriver::Cgroupfs);
        assert_eq!(r.pod_usage(&pod(), &[]), None);
        let data = vec![b'x'; 64 * 1024];
        let logs = root.path().join("logs/ns_p_u1/app/0.log");
        let cache = root
            .path()
            .join("pods/u1/volumes/kubernetes.io~empty-dir/cache/f");
        let ram = root
            .path()
            .join("pods/u1/volumes/kubernetes.io~empty-dir/ram/f");
        for f in [&logs, &cache, &ram] {
            write(f, "");
            std::fs::write(f, &data).unwrap();
        }
        let (bytes, inodes) = r.local_storage(&pod());
        // The logs and the disk emptyDir, not the memory one.
        assert!((2 * 64 * 1024..4 * 64 * 1024).contains(&bytes), "{bytes}");
        // logs dir, app dir, 0.log; cache dir, f.
        assert_eq!(inodes, 5);
    }
}

//! Pod cgroups: where a pod's sandbox and containers live in the cgroup
//! tree, one level per QoS class under `kubepods`, as upstream's container
//! manager lays them out with `cgroupsPerQOS`. Entry point:
//! [`pod_cgroup_parent`], handed to the runtime as the sandbox's
//! `cgroup_parent`; [`remove_orphaned_pod_cgroups`] tidies up after pods
//! are gone.
//!
//! The runtime (runc) creates the directories when the first container
//! starts; memory and cpu limits are set per container, so a container over
//! its memory limit is OOM-killed in its own cgroup.

use std::collections::HashSet;
use std::path::Path;

/// How cgroups are named: upstream's `cgroupDriver`. It must match the
/// runtime's (containerd's `SystemdCgroup`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Plain paths: `/kubepods/burstable/pod<uid>`.
    #[default]
    Cgroupfs,
    /// systemd slices: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`.
    Systemd,
}

impl CgroupDriver {
    /// Parses the KubeletConfiguration value.
    pub fn parse(s: &str) -> Option<CgroupDriver> {
        match s {
            "cgroupfs" => Some(CgroupDriver::Cgroupfs),
            "systemd" => Some(CgroupDriver::Systemd),
            _ => None,
        }
    }
}

/// The root of all pod cgroups.
pub const KUBEPODS: &str = "kubepods";

/// The cgroup name of a pod as its parts (`["kubepods", "burstable",
/// "pod<uid>"]`): Guaranteed pods sit directly under `kubepods`.
fn pod_cgroup_name(qos_class: &str, uid: &str) -> Vec<String> {
    let mut parts = vec![KUBEPODS.to_string()];
    match qos_class {
        "Burstable" => parts.push("burstable".into()),
        "BestEffort" => parts.push("besteffort".into()),
        _ => {}
    }
    parts.push(format!("pod{uid}"));
    parts
}

/// The sandbox's `cgroup_parent` for a pod of `qos_class` (`Guaranteed`,
/// `Burstable`, `BestEffort`, as in `status.qosClass`).
pub fn pod_cgroup_parent(driver: CgroupDriver, qos_class: &str, uid: &str) -> String {
    let parts = pod_cgroup_name(qos_class, uid);
    match driver {
        CgroupDriver::Cgroupfs => format!("/{}", parts.join("/")),
        CgroupDriver::Systemd => {
            // upstream's ToSystemd: "-" inside a part is systemd's
            // hierarchy separator, so it becomes "_"; then every prefix is
            // a slice of its own (systemd's ExpandSlice).
            let escaped: Vec<String> = parts.iter().map(|p| p.replace('-', "_")).collect();
            let mut path = String::new();
            for i in 1..=escaped.len() {
                path.push('/');
                path.push_str(&escaped[..i].join("-"));
                path.push_str(".slice");
            }
            path
        }
    }
}

/// Removes the empty cgroup directories of pods not in `live` from every
/// hierarchy under `cgroup_root` (`/sys/fs/cgroup`), as upstream's
/// housekeeping does. The runtime removes a container's cgroup a moment
/// after the container goes, so this runs periodically rather than right
/// after a pod is killed. Only for the cgroupfs driver (systemd removes its
/// own slices); a cgroup still in use is never removed (`rmdir` refuses).
pub fn remove_orphaned_pod_cgroups(
    driver: CgroupDriver,
    cgroup_root: &Path,
    live: &HashSet<String>,
) {
    if driver != CgroupDriver::Cgroupfs {
        return;
    }
    let Ok(hierarchies) = std::fs::read_dir(cgroup_root) else {
        return;
    };
    for h in hierarchies.flatten() {
        let kubepods = h.path().join(KUBEPODS);
        for parent in [
            kubepods.clone(),
            kubepods.join("burstable"),
            kubepods.join("besteffort"),
        ] {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(uid) = name.strip_prefix("pod") else {
                    continue;
                };
                if live.contains(uid) {
                    continue;
                }
                let dir = entry.path();
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {
                        tracing::debug!(cgroup = %dir.display(), "removed orphaned pod cgroup")
                    }
                    Err(e) => {
                        tracing::trace!(cgroup = %dir.display(), error = %e, "pod cgroup not removed")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_parent_follows_the_qos_class() {
        let uid = "0a1b-2c";
        let parent = |qos| pod_cgroup_parent(CgroupDriver::Cgroupfs, qos, uid);
        assert_eq!(parent("Guaranteed"), "/kubepods/pod0a1b-2c");
        assert_eq!(parent("Burstable"), "/kubepods/burstable/pod0a1b-2c");
        assert_eq!(parent("BestEffort"), "/kubepods/besteffort/pod0a1b-2c");
    }

    #[test]
    fn systemd_parent_is_a_nested_slice_with_escaped_uid() {
        let parent = |qos| pod_cgroup_parent(CgroupDriver::Systemd, qos, "0a1b-2c");
        assert_eq!(
            parent("Burstable"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b_2c.slice"
        );
        assert_eq!(
            parent("BestEffort"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b_2c.slice"
        );
        assert_eq!(
            parent("Guaranteed"),
            "/kubepods.slice/kubepods-pod0a1b_2c.slice"
        );
    }

    #[test]
    fn orphaned_pod_cgroups_go_and_live_or_busy_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let gone = root.path().join("memory/kubepods/burstable/podu1");
        let guaranteed = root.path().join("cpu/kubepods/podu1");
        let busy = root.path().join("pids/kubepods/besteffort/podu2/container");
        let live = root.path().join("memory/kubepods/besteffort/podu3");
        for d in [&gone, &guaranteed, &busy, &live] {
            std::fs::create_dir_all(d).unwrap();
        }
        let live_uids = HashSet::from(["u3".to_string()]);
        remove_orphaned_pod_cgroups(CgroupDriver::Systemd, root.path(), &HashSet::new());
        assert!(gone.exists(), "systemd removes its own slices");
        remove_orphaned_pod_cgroups(CgroupDriver::Cgroupfs, root.path(), &live_uids);
        assert!(!gone.exists() && !guaranteed.exists());
        assert!(root.path().join("memory/kubepods/burstable").exists());
        assert!(busy.exists(), "a pod cgroup still in use stays");
        assert!(live.exists(), "a live pod's cgroup stays");
    }
}

//! emptyDir: a directory of the pod's own on the node's disk, or with
//! `medium: Memory` a tmpfs mounted there, of `sizeLimit` (bounded by what
//! the pod may use at all, as upstream). Unmounted and removed with the pod.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ferrokube_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use nix::mount::{MntFlags, MsFlags};

use super::PluginError;

/// Whether `dir` is the root of a mount (its device differs from its
/// parent's).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(m), Some(parent)) = (std::fs::metadata(dir), dir.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

fn bytes(q: &ApiQuantity) -> Option<i128> {
    Quantity::parse(&q.0)
        .ok()
        .map(|q| q.value())
        .filter(|b| *b > 0)
}

/// The tmpfs size: the smallest of the volume's `sizeLimit`, the pod's
/// memory limit (when every container has one) and the node's allocatable
/// memory; `None` leaves the kernel's default.
pub fn memory_size(
    source: &EmptyDirVolumeSource,
    pod: &Pod,
    node_memory: Option<&ApiQuantity>,
) -> Option<i128> {
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    let limits: Option<Vec<i128>> = containers
        .map(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .and_then(bytes)
        })
        .collect();
    let pod_limit = limits.filter(|l| !l.is_empty()).map(|l| l.iter().sum());
    [
        source.size_limit.as_ref().and_then(bytes),
        pod_limit,
        node_memory.and_then(bytes),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Creates the directory (mode 0777, as upstream), mounting a tmpfs on it
/// first for `medium: Memory` unless one is mounted already.
pub fn set_up(
    dir: &Path,
    source: &EmptyDirVolumeSource,
    size: Option<i128>,
) -> Result<(), PluginError> {
    let io = |step: &'static str| {
        move |e: std::io::Error| PluginError::Io {
            step,
            path: dir.to_path_buf(),
            source: e,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating"))?;
    match source.medium.as_deref().unwrap_or("") {
        "" => {}
        "Memory" => {
            if !is_mount_point(dir) {
                let options = size.map(|s| format!("size={s}"));
                nix::mount::mount(
                    Some("tmpfs"),
                    dir,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    options.as_deref(),
                )
                .map_err(|source| PluginError::Mount {
                    path: dir.to_path_buf(),
                    source,
                })?;
                tracing::info!(path = %dir.display(), size = ?size, "mounted tmpfs for emptyDir");
            }
        }
        other => return Err(PluginError::UnsupportedMedium(other.to_string())),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .map_err(io("setting the mode of"))
}

/// Unmounts a tmpfs on `dir`, if any; the caller removes the directory.
pub fn tear_down(dir: &Path) -> Result<(), PluginError> {
    if is_mount_point(dir) {
        nix::mount::umount2(dir, MntFlags::MNT_DETACH).map_err(|source| PluginError::Unmount {
            path: dir.to_path_buf(),
            source,
        })?;
        tracing::info!(path = %dir.display(), "unmounted emptyDir tmpfs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(limits: &[Option<&str>]) -> Pod {
        let containers: Vec<serde_json::Value> = limits
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                Some(l) => serde_json::json!({"name": format!("c{i}"), "resources": {"limits": {"memory": l}}}),
                None => serde_json::json!({"name": format!("c{i}")}),
            })
            .collect();
        serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
    }

    fn src(limit: Option<&str>) -> EmptyDirVolumeSource {
        EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: limit.map(|l| ApiQuantity(l.into())),
        }
    }

    #[test]
    fn memory_size_is_the_smallest_bound() {
        let node = ApiQuantity("1Gi".into());
        let mi = 1024 * 1024;
        assert_eq!(
            memory_size(&src(Some("64Mi")), &pod(&[None]), Some(&node)),
            Some(64 * mi)
        );
        assert_eq!(
            memory_size(&src(None), &pod(&[None]), Some(&node)),
            Some(1024 * mi)
        );
        assert_eq!(memory_size(&src(None), &pod(&[None]), None), None);
        // Every container limited: the pod's total bounds the volume.
        assert_eq!(
            memory_size(
                &src(Some("512Mi")),
                &pod(&[Some("100Mi"), Some("28Mi")]),
                Some(&node)
            ),
            Some(128 * mi)
        );
        // One container unlimited: the pod has no memory bound.
        assert_eq!(
            memory_size(
                &src(Some("512Mi")),
                &pod(&[Some("100Mi"), None]),
                Some(&node)
            ),
            Some(512 * mi)
        );
    }

    #[test]
    fn disk_medium_makes_a_world_writable_dir_and_other_media_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("kubernetes.io~empty-dir/cache");
        set_up(&dir, &EmptyDirVolumeSource::default(), None).unwrap();
        assert!(dir.is_dir());
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert!(!is_mount_point(&dir));
        let huge = EmptyDirVolumeSource {
            medium: Some("HugePages".into()),
            size_limit: None,
        };
        assert!(matches!(
            set_up(&dir, &huge, None),
            Err(PluginError::UnsupportedMedium(_))
        ));
    }
}

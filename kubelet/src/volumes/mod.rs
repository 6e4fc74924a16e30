//! Pod volumes: [`VolumeManager::set_up_pod`] makes every volume of a pod
//! ready before its containers are created, and on later syncs refreshes
//! the projected kinds (configMap, secret, downwardAPI, projected) at most
//! once per refresh period; [`container_mounts`] turns a container's
//! `volumeMounts` into CRI mounts; [`VolumeManager::clean_up_orphaned_pods`]
//! unmounts and removes what pods that are gone left behind.
//!
//! Volumes live where upstream puts them:
//! `<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>` (hostPath
//! volumes are the node path itself). One file per plugin; the projected
//! kinds are written by the [`atomic_writer`].

pub mod atomic_writer;
pub mod config_map;
pub mod downward_api;
pub mod empty_dir;
pub mod host_path;
pub mod ownership;
pub mod projected;
pub mod secret;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::fieldpath::FieldPathError;
use crate::object_source::{FakeObjectSource, ObjectError, ObjectSource};
use atomic_writer::{AtomicWriter, AtomicWriterError, Payload};

/// `defaultMode` when a volume sets none: 0644.
pub const DEFAULT_MODE: i32 = 0o644;

/// Why one volume could not be set up; the message follows upstream's
/// plugins.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Upstream's wording for a projected serviceAccountToken source.
    #[error("failed to fetch token: {0}")]
    Token(ObjectError),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("secret references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("{0}")]
    HostPathType(String),
    #[error(transparent)]
    FieldPath(#[from] FieldPathError),
    #[error(transparent)]
    Write(#[from] AtomicWriterError),
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting tmpfs at {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("unmounting {path}: {source}")]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("emptyDir medium {0:?} is not supported")]
    UnsupportedMedium(String),
    #[error("unsupported volume type")]
    UnsupportedSource,
    #[error("this kubelet keeps no pod volumes (no root directory)")]
    NoRootDir,
}

/// A pod volume that failed to set up: the pod's containers are not
/// created; they wait in `ContainerCreating` with this message (upstream's
/// `FailedMount` event text).
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
pub struct SetUpError {
    pub volume: String,
    #[source]
    pub source: PluginError,
}

/// A container's `volumeMounts` that cannot be honoured; the container
/// waits with `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MountError {
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    NoSuchVolume { volume: String, container: String },
    #[error("invalid subPath {sub_path:?} of volumeMount {mount_path:?}: must be a relative path without '..'")]
    InvalidSubPath {
        sub_path: String,
        mount_path: String,
    },
    #[error("creating subPath {path}: {message}")]
    SubPath { path: String, message: String },
}

/// The volume plugins, by their upstream directory names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl VolumeKind {
    pub fn of(v: &Volume) -> Option<VolumeKind> {
        Some(if v.empty_dir.is_some() {
            VolumeKind::EmptyDir
        } else if v.host_path.is_some() {
            VolumeKind::HostPath
        } else if v.config_map.is_some() {
            VolumeKind::ConfigMap
        } else if v.secret.is_some() {
            VolumeKind::Secret
        } else if v.downward_api.is_some() {
            VolumeKind::DownwardApi
        } else if v.projected.is_some() {
            VolumeKind::Projected
        } else {
            return None;
        })
    }

    /// `kubernetes.io~<plugin>` under the pod's `volumes` directory.
    pub fn plugin_dir(self) -> &'static str {
        match self {
            VolumeKind::EmptyDir => "kubernetes.io~empty-dir",
            VolumeKind::HostPath => "kubernetes.io~host-path",
            VolumeKind::ConfigMap => "kubernetes.io~configmap",
            VolumeKind::Secret => "kubernetes.io~secret",
            VolumeKind::DownwardApi => "kubernetes.io~downward-api",
            VolumeKind::Projected => "kubernetes.io~projected",
        }
    }

    /// configMap, secret, downwardAPI and projected volumes are written by
    /// the kubelet only: always mounted read-only, refreshed while the pod
    /// runs.
    pub fn is_projected(self) -> bool {
        matches!(
            self,
            VolumeKind::ConfigMap
                | VolumeKind::Secret
                | VolumeKind::DownwardApi
                | VolumeKind::Projected
        )
    }

    /// secret, downwardAPI and projected volumes sit on a tmpfs, as
    /// upstream's (secrets never reach the node's disk); configMaps on disk.
    pub fn is_memory_backed(self) -> bool {
        matches!(
            self,
            VolumeKind::Secret | VolumeKind::DownwardApi | VolumeKind::Projected
        )
    }
}

/// A volume ready to mount.
#[derive(Debug, Clone, PartialEq)]
pub struct MountedVolume {
    pub kind: VolumeKind,
    pub host_path: PathBuf,
}

/// A pod's volumes by name.
pub type PodVolumes = BTreeMap<String, MountedVolume>;

/// Sets up, refreshes and tears down pod volumes on this node.
pub struct VolumeManager {
    root_dir: Option<PathBuf>,
    objects: Arc<dyn ObjectSource>,
    node_name: String,
    refresh_period: Duration,
    /// Whether memory-backed kinds get their tmpfs (off only in unit tests
    /// that run without the right to mount).
    tmpfs: bool,
    /// When each pod's projected volumes were last refreshed.
    refreshed: Mutex<HashMap<String, Instant>>,
}

impl VolumeManager {
    /// Volumes under `<root_dir>/pods`, objects from `objects`, projected
    /// volumes refreshed at most every `refresh_period`.
    pub fn new(
        root_dir: impl Into<PathBuf>,
        objects: Arc<dyn ObjectSource>,
        node_name: &str,
        refresh_period: Duration,
    ) -> Self {
        VolumeManager {
            root_dir: Some(root_dir.into()),
            objects,
            node_name: node_name.to_string(),
            refresh_period,
            tmpfs: true,
            refreshed: Mutex::new(HashMap::new()),
        }
    }

    /// secret, downwardAPI and projected volumes as plain directories.
    pub fn without_tmpfs(mut self) -> Self {
        self.tmpfs = false;
        self
    }

    /// No root directory and no objects: pods without volumes (and with
    /// only hostPath ones) run; others fail to set up.
    pub fn disabled() -> Self {
        VolumeManager {
            root_dir: None,
            objects: Arc::new(FakeObjectSource::default()),
            node_name: String::new(),
            refresh_period: Duration::from_secs(60),
            tmpfs: false,
            refreshed: Mutex::new(HashMap::new()),
        }
    }

    pub fn objects(&self) -> &dyn ObjectSource {
        self.objects.as_ref()
    }

    /// `<root-dir>/pods`.
    pub fn pods_dir(&self) -> Option<PathBuf> {
        self.root_dir.as_ref().map(|r| r.join("pods"))
    }

    fn volume_dir(&self, uid: &str, kind: VolumeKind, name: &str) -> Result<PathBuf, PluginError> {
        let pods = self.pods_dir().ok_or(PluginError::NoRootDir)?;
        Ok(pods
            .join(uid)
            .join("volumes")
            .join(kind.plugin_dir())
            .join(name))
    }

    /// Where each of the pod's volumes is (or will be) on the node, without
    /// I/O: the same paths [`VolumeManager::set_up_pod`] returns.
    pub fn pod_volumes(&self, pod: &Pod) -> PodVolumes {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut out = PodVolumes::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(kind) = VolumeKind::of(v) else {
                continue;
            };
            let host_path = match &v.host_path {
                Some(src) => PathBuf::from(&src.path),
                None => match self.volume_dir(&uid, kind, &v.name) {
                    Ok(dir) => dir,
                    Err(_) => continue,
                },
            };
            out.insert(v.name.clone(), MountedVolume { kind, host_path });
        }
        out
    }

    async fn allocatable(&self) -> BTreeMap<String, Quantity> {
        match self.objects.node(&self.node_name).await {
            Ok(n) => n.status.and_then(|s| s.allocatable).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(node = %self.node_name, error = %e, "reading the node's allocatable");
                BTreeMap::new()
            }
        }
    }

    /// Makes every volume of `pod` ready. Volumes set up before stay as
    /// they are, except that projected ones are rewritten when the refresh
    /// period has passed; a failed refresh keeps the old content (logged).
    pub async fn set_up_pod(&self, pod: &Pod) -> Result<PodVolumes, SetUpError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = Instant::now();
        let refresh_due = self
            .refreshed
            .lock()
            .unwrap()
            .get(&uid)
            .is_none_or(|t| now.duration_since(*t) >= self.refresh_period);
        let mut out = PodVolumes::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let wrap = |source| SetUpError {
                volume: v.name.clone(),
                source,
            };
            let kind = VolumeKind::of(v).ok_or_else(|| wrap(PluginError::UnsupportedSource))?;
            let host_path = self
                .set_up_volume(pod, &uid, v, kind, refresh_due)
                .await
                .map_err(wrap)?;
            out.insert(v.name.clone(), MountedVolume { kind, host_path });
        }
        if refresh_due {
            self.refreshed.lock().unwrap().insert(uid, now);
        }
        Ok(out)
    }

    async fn set_up_volume(
        &self,
        pod: &Pod,
        uid: &str,
        v: &Volume,
        kind: VolumeKind,
        refresh_due: bool,
    ) -> Result<PathBuf, PluginError> {
        if let Some(src) = &v.host_path {
            host_path::set_up(src)?;
            return Ok(PathBuf::from(&src.path));
        }
        let dir = self.volume_dir(uid, kind, &v.name)?;
        if let Some(src) = &v.empty_dir {
            let size =
                if src.medium.as_deref() == Some("Memory") && !empty_dir::is_mount_point(&dir) {
                    let alloc = self.allocatable().await;
                    empty_dir::memory_size(src, pod, alloc.get("memory"))
                } else {
                    None
                };
            let created = !dir.exists();
            empty_dir::set_up(&dir, src, size)?;
            if let (true, Some(group)) = (created, fs_group(pod)) {
                ownership::set_volume_ownership(&dir, group, false)?;
            }
            return Ok(dir);
        }
        if self.tmpfs && kind.is_memory_backed() && !empty_dir::is_mount_point(&dir) {
            let memory = k8s_openapi::api::core::v1::EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: None,
            };
            let alloc = self.allocatable().await;
            let size = empty_dir::memory_size(&memory, pod, alloc.get("memory"));
            empty_dir::set_up(&dir, &memory, size)?;
        }
        let writer = AtomicWriter::new(&dir);
        if writer.is_written() && !refresh_due {
            return Ok(dir);
        }
        let group = fs_group(pod);
        let written = self.payload(pod, v).await.and_then(|mut p| {
            if group.is_some() {
                // The modes fsGroup gives, so that a rewrite sees no change in them.
                for file in p.values_mut() {
                    file.mode |= ownership::RO_MASK;
                }
            }
            Ok(writer.write(&p)?)
        });
        match written {
            Ok(changed) => {
                if changed {
                    tracing::info!(pod = %crate::pod_worker::pod_name(pod), volume = %v.name, path = %dir.display(), "wrote volume contents");
                    if let Some(group) = group {
                        ownership::set_volume_ownership(&dir, group, true)?;
                    }
                }
                Ok(dir)
            }
            Err(e) if writer.is_written() => {
                tracing::warn!(pod = %crate::pod_worker::pod_name(pod), volume = %v.name, error = %e, "refreshing the volume failed; it keeps its contents");
                Ok(dir)
            }
            Err(e) => Err(e),
        }
    }

    async fn payload(&self, pod: &Pod, v: &Volume) -> Result<Payload, PluginError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        if let Some(src) = &v.config_map {
            return config_map::payload(self.objects(), &ns, src).await;
        }
        if let Some(src) = &v.secret {
            return secret::payload(self.objects(), &ns, src).await;
        }
        if let Some(src) = &v.downward_api {
            let items = src.items.as_deref().unwrap_or_default();
            let alloc = match downward_api::needs_allocatable(items) {
                true => self.allocatable().await,
                false => BTreeMap::new(),
            };
            return downward_api::make_payload(
                items,
                pod,
                src.default_mode.unwrap_or(DEFAULT_MODE),
                &alloc,
            );
        }
        if let Some(src) = &v.projected {
            let alloc = match projected::needs_allocatable(src) {
                true => self.allocatable().await,
                false => BTreeMap::new(),
            };
            return projected::payload(self.objects(), pod, src, &alloc).await;
        }
        Err(PluginError::UnsupportedSource)
    }

    /// Unmounts and removes `<root-dir>/pods/<uid>` of every pod not in
    /// `live`. Call only once their containers are gone. A directory whose
    /// tmpfs cannot be unmounted is left for the next round.
    pub fn clean_up_orphaned_pods(&self, live: &HashSet<String>) {
        let Some(pods) = self.pods_dir() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&pods) else {
            return;
        };
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if live.contains(&uid) {
                continue;
            }
            let dir = e.path();
            match tear_down_pod_dir(&dir) {
                Ok(()) => {
                    self.refreshed.lock().unwrap().remove(&uid);
                    self.objects.forget_service_account_tokens(&uid);
                    tracing::info!(pod_uid = %uid, "removed the volumes of a pod that is gone");
                }
                Err(err) => {
                    tracing::warn!(pod_uid = %uid, error = %err, "tearing down the volumes of a pod that is gone")
                }
            }
        }
    }
}

/// The pod's `securityContext.fsGroup`, when it is a valid group id.
fn fs_group(pod: &Pod) -> Option<u32> {
    let group = pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(group).ok()
}

/// Unmounts every mount point under `<pod>/volumes/*/*`, then removes the
/// pod directory, never descending into a mount.
pub fn tear_down_pod_dir(pod_dir: &Path) -> Result<(), PluginError> {
    let volumes = pod_dir.join("volumes");
    if let Ok(plugins) = std::fs::read_dir(&volumes) {
        for plugin in plugins.flatten() {
            let Ok(vols) = std::fs::read_dir(plugin.path()) else {
                continue;
            };
            for vol in vols.flatten() {
                empty_dir::tear_down(&vol.path())?;
                if empty_dir::is_mount_point(&vol.path()) {
                    return Err(PluginError::Unmount {
                        path: vol.path(),
                        source: nix::Error::EBUSY,
                    });
                }
            }
        }
    }
    std::fs::remove_dir_all(pod_dir).map_err(|source| PluginError::Io {
        step: "removing",
        path: pod_dir.to_path_buf(),
        source,
    })
}

/// `subPath` must stay inside the volume: relative, no `..` element.
fn valid_sub_path(p: &str) -> bool {
    !p.starts_with('/') && !p.split('/').any(|s| s == "..")
}

/// The CRI mounts of `c`'s `volumeMounts`, in order. `env` is the
/// container's final environment, for `subPathExpr`. Projected kinds are
/// always read-only; a missing `subPath` of an emptyDir or hostPath volume
/// is created, as upstream.
pub fn container_mounts(
    c: &Container,
    volumes: &PodVolumes,
    env: &[(String, String)],
) -> Result<Vec<cri::Mount>, MountError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let vol = volumes
            .get(&m.name)
            .ok_or_else(|| MountError::NoSuchVolume {
                volume: m.name.clone(),
                container: c.name.clone(),
            })?;
        let sub_path = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(expr)) if !expr.is_empty() => crate::env::expand(expr, |n| {
                env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
            }),
            _ => String::new(),
        };
        if !valid_sub_path(&sub_path) {
            return Err(MountError::InvalidSubPath {
                sub_path,
                mount_path: m.mount_path.clone(),
            });
        }
        let mut host = vol.host_path.clone();
        if !sub_path.is_empty() {
            host = host.join(&sub_path);
            if !vol.kind.is_projected() && std::fs::symlink_metadata(&host).is_err() {
                std::fs::create_dir_all(&host).map_err(|e| MountError::SubPath {
                    path: host.display().to_string(),
                    message: e.to_string(),
                })?;
            }
        }
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            _ => cri::MountPropagation::PropagationPrivate,
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only == Some(true) || vol.kind.is_projected(),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

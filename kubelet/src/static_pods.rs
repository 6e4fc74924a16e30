//! Static pods: pods the kubelet runs from manifest files in `staticPodPath`
//! (`/etc/kubernetes/manifests`), with or without an apiserver — how a
//! kubeadm node starts its control plane. Entry points: [`StaticPods::run`]
//! (re-reads the directory every `fileCheckFrequency`) and
//! [`parse_manifest`] (one file → one defaulted Pod, as upstream's file
//! source makes it).
//!
//! A pod's uid is a hash of its manifest, the node and the file's path
//! (also the `kubernetes.io/config.hash` annotation): editing a file makes a
//! new pod that replaces the old one; removing it stops the pod. A bad file
//! is logged once with its path and the offending field; the others still run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The static pod's uid, which is a hash of its source.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// When the kubelet first saw the pod (RFC 3339).
pub const CONFIG_SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
/// Where the pod came from: `file` for static pods, `api` otherwise.
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// The value of [`CONFIG_SOURCE_ANNOTATION`] for a manifest file.
pub const FILE_SOURCE: &str = "file";

/// Priority values of the built-in PriorityClasses (upstream's
/// `scheduling.SystemCriticalPriority` and above).
const SYSTEM_CLUSTER_CRITICAL: i32 = 2_000_000_000;
const SYSTEM_NODE_CRITICAL: i32 = 2_000_001_000;

/// Why a manifest file was not turned into a pod. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading manifest file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest file {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("manifest file {path}: invalid pod: {causes}")]
    Invalid { path: PathBuf, causes: String },
    #[error("manifest file {path}: pod {pod} is already defined by {other}")]
    Duplicate {
        path: PathBuf,
        pod: String,
        other: PathBuf,
    },
}

/// Whether `pod` came from a manifest file.
pub fn is_static_pod(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE_ANNOTATION) == Some(FILE_SOURCE)
}

pub(crate) fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The static pod's hash (its uid), from `kubernetes.io/config.hash`.
pub fn config_hash(pod: &Pod) -> Option<&str> {
    annotation(pod, CONFIG_HASH_ANNOTATION)
}

/// Whether the directory entry is a manifest: `*.yaml`, `*.yml`, `*.json`,
/// not hidden (editors' swap and backup files are).
fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Parses one manifest (YAML or JSON, one Pod) and defaults it for
/// `node_name`; `path` names the source in the hash and in errors.
pub fn parse_manifest(path: &Path, text: &str, node_name: &str) -> Result<Pod, ManifestError> {
    let decode = |message: String| ManifestError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let value: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| decode(e.to_string()))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| decode(e.to_string()))?
    };
    if !value.is_object() {
        return Err(decode("want a Pod object".into()));
    }
    match value.get("kind").and_then(Value::as_str) {
        Some("Pod") => {}
        Some(other) => return Err(decode(format!("kind: want \"Pod\", got {other:?}"))),
        None => return Err(decode("kind: Required value: want \"Pod\"".into())),
    }
    match value.get("apiVersion").and_then(Value::as_str) {
        Some("v1") => {}
        other => {
            return Err(decode(format!(
                "apiVersion: want \"v1\", got {:?}",
                other.unwrap_or_default()
            )))
        }
    }
    let mut pod: Pod = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        decode(format!("{field}: {}", e.inner()))
    })?;
    apply_defaults(&mut pod, path, node_name);
    let causes = validate(&pod);
    if !causes.is_empty() {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            causes: format!("[{}]", causes.join(", ")),
        });
    }
    Ok(pod)
}

/// The pod's uid: a hash of the pod as written, the node and the file, so
/// the same manifest on two nodes (or in two files) makes two pods.
pub fn static_pod_uid(pod: &Pod, path: &Path, node_name: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(pod).expect("a Pod serializes"));
    hasher.update(format!("host:{node_name}"));
    hasher.update(format!("file:{}", path.display()));
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// upstream's `applyDefaults` for a file source plus the apiserver's pod
/// defaults, so the pod runs as it would had it been posted.
fn apply_defaults(pod: &mut Pod, path: &Path, node_name: &str) {
    let uid = match pod.metadata.uid.clone().filter(|u| !u.is_empty()) {
        Some(uid) => uid,
        None => static_pod_uid(pod, path, node_name),
    };
    let meta = &mut pod.metadata;
    meta.uid = Some(uid.clone());
    meta.name = Some(format!(
        "{}-{}",
        meta.name.clone().unwrap_or_default(),
        node_name.to_lowercase()
    ));
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some("default".into());
    }
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), uid);
    annotations.insert(CONFIG_SOURCE_ANNOTATION.into(), FILE_SOURCE.into());

    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.into());
    // Static pods stay through node problems: tolerate every NoExecute taint.
    let tolerate_all = Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate_all) {
        tolerations.push(tolerate_all);
    }
    if spec.priority.is_none() {
        spec.priority = match spec.priority_class_name.as_deref() {
            Some("system-node-critical") => Some(SYSTEM_NODE_CRITICAL),
            Some("system-cluster-critical") => Some(SYSTEM_CLUSTER_CRITICAL),
            _ => None,
        };
    }
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    let host_network = spec.host_network == Some(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let image = c.image.clone().unwrap_or_default();
        c.image_pull_policy.get_or_insert_with(|| {
            let last = image.rsplit('/').next().unwrap_or_default();
            if last.ends_with(":latest") || !(last.contains(':') || image.contains('@')) {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
        for p in c.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
            if host_network && p.host_port.unwrap_or(0) == 0 {
                p.host_port = Some(p.container_port);
            }
        }
        // A container that only limits requests what it limits.
        let resources = c.resources.get_or_insert_with(Default::default);
        if let Some(limits) = resources.limits.clone() {
            let requests = resources.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
}

/// upstream's `field.Error` texts for what would make the pod unrunnable
/// (the apiserver validates the rest when the mirror pod is created).
fn validate(pod: &Pod) -> Vec<String> {
    use ferrokube_api::validation as rules;
    let mut causes = Vec::new();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for msg in rules::is_dns1123_subdomain(name) {
        causes.push(format!("metadata.name: Invalid value: {name:?}: {msg}"));
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    for msg in rules::is_dns1123_label(ns) {
        causes.push(format!("metadata.namespace: Invalid value: {ns:?}: {msg}"));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.containers.is_empty() {
        causes.push("spec.containers: Required value".into());
    }
    let mut names = HashSet::new();
    for (key, list) in [
        (
            "initContainers",
            spec.init_containers.clone().unwrap_or_default(),
        ),
        ("containers", spec.containers.clone()),
    ] {
        for (i, c) in list.iter().enumerate() {
            let at = format!("spec.{key}[{i}]");
            if c.name.is_empty() {
                causes.push(format!("{at}.name: Required value"));
            } else {
                for msg in rules::is_dns1123_label(&c.name) {
                    causes.push(format!("{at}.name: Invalid value: {:?}: {msg}", c.name));
                }
                if !names.insert(c.name.clone()) {
                    causes.push(format!("{at}.name: Duplicate value: {:?}", c.name));
                }
            }
            if c.image.as_deref().unwrap_or_default().trim().is_empty() {
                causes.push(format!("{at}.image: Required value"));
            }
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if !["Always", "OnFailure", "Never"].contains(&policy) {
        causes.push(format!(
            "spec.restartPolicy: Unsupported value: {policy:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
        ));
    }
    causes
}

/// What the source knows of one manifest file: its last content and what
/// came of it (kept so that an unchanged file is neither re-parsed, nor
/// re-logged, nor given a new `config.seen`).
struct Manifest {
    text: String,
    parsed: Result<Pod, String>,
}

#[derive(Default)]
struct State {
    /// The directory was read at least once: pods missing from it are gone.
    synced: bool,
    manifests: BTreeMap<PathBuf, Manifest>,
    /// The last status the kubelet computed per static pod uid.
    statuses: HashMap<String, PodStatus>,
}

/// The static pods of this node: the file source's current view, shared
/// between the directory reader, the sync loop and the mirror pod sync.
#[derive(Clone, Default)]
pub struct StaticPods {
    state: Arc<Mutex<State>>,
}

impl StaticPods {
    /// Whether the manifest directory has been read (or there is none):
    /// only then may sandboxes of vanished static pods be removed.
    pub fn is_synced(&self) -> bool {
        self.state.lock().unwrap().synced
    }

    /// Marks the source as read with no directory configured.
    pub fn mark_synced(&self) {
        self.state.lock().unwrap().synced = true;
    }

    /// The current static pods, each with its last computed status. When
    /// two files define the same pod, the first file (by path) wins.
    pub fn pods(&self) -> Vec<Pod> {
        let state = self.state.lock().unwrap();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in state.manifests.values() {
            let Ok(pod) = &m.parsed else { continue };
            if !seen.insert(crate::pod_worker::pod_name(pod)) {
                continue;
            }
            let mut pod = pod.clone();
            if let Some(status) = pod
                .metadata
                .uid
                .as_ref()
                .and_then(|u| state.statuses.get(u))
            {
                pod.status = Some(status.clone());
            }
            out.push(pod);
        }
        out
    }

    /// Remembers the status the kubelet computed for static pod `uid`
    /// (unless its file went meanwhile).
    pub fn set_status(&self, uid: &str, status: PodStatus) {
        let mut state = self.state.lock().unwrap();
        let defined = state.manifests.values().any(|m| {
            m.parsed
                .as_ref()
                .is_ok_and(|p| p.metadata.uid.as_deref() == Some(uid))
        });
        if defined {
            state.statuses.insert(uid.to_string(), status);
        }
    }

    /// Re-reads `dir`: new and changed files are parsed (and logged), files
    /// that went are dropped. Returns the problems found this time, each
    /// file's problem only once until the file changes.
    pub fn refresh(&self, dir: &Path, node_name: &str) -> Vec<ManifestError> {
        let mut problems = Vec::new();
        let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let path = entry.path();
                    if !is_manifest_name(&name) || path.is_dir() {
                        continue;
                    }
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            files.insert(path, text);
                        }
                        // Gone between listing and reading: next round.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => problems.push(ManifestError::Read { path, source }),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %dir.display(), "static pod path does not exist");
            }
            Err(source) => {
                // Keep what runs: an unreadable directory is not an empty one.
                problems.push(ManifestError::Read {
                    path: dir.to_path_buf(),
                    source,
                });
                return problems;
            }
        }

        let mut state = self.state.lock().unwrap();
        let gone: Vec<PathBuf> = state
            .manifests
            .keys()
            .filter(|p| !files.contains_key(*p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(Manifest {
                parsed: Ok(pod), ..
            }) = state.manifests.remove(&path)
            {
                tracing::info!(pod = %crate::pod_worker::pod_name(&pod), file = %path.display(), "static pod removed");
                if let Some(uid) = &pod.metadata.uid {
                    state.statuses.remove(uid);
                }
            }
        }
        for (path, text) in files {
            if state.manifests.get(&path).is_some_and(|m| m.text == text) {
                continue;
            }
            let previous = state.manifests.remove(&path);
            if let Some(Manifest {
                parsed: Ok(old), ..
            }) = &previous
            {
                if let Some(uid) = &old.metadata.uid {
                    state.statuses.remove(uid);
                }
            }
            let parsed = match parse_manifest(&path, &text, node_name) {
                Ok(mut pod) => {
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(
                            CONFIG_SEEN_ANNOTATION.into(),
                            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        );
                    let name = crate::pod_worker::pod_name(&pod);
                    let other = state.manifests.iter().find(|(_, m)| {
                        m.parsed
                            .as_ref()
                            .is_ok_and(|p| crate::pod_worker::pod_name(p) == name)
                    });
                    if let Some((other, _)) = other {
                        let e = ManifestError::Duplicate {
                            path: path.clone(),
                            pod: name,
                            other: other.clone(),
                        };
                        let message = e.to_string();
                        problems.push(e);
                        Err(message)
                    } else {
                        let verb = if previous.is_some() {
                            "static pod changed"
                        } else {
                            "static pod added"
                        };
                        tracing::info!(pod = %name, uid = %pod.metadata.uid.clone().unwrap_or_default(), file = %path.display(), "{verb}");
                        Ok(pod)
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    problems.push(e);
                    Err(message)
                }
            };
            state.manifests.insert(path, Manifest { text, parsed });
        }
        state.synced = true;
        problems
    }

    /// Reads `dir` now and then every `every` until aborted, logging each
    /// bad file once.
    pub async fn run(self, dir: PathBuf, node_name: String, every: Duration) {
        tracing::info!(path = %dir.display(), "watching the static pod path");
        loop {
            for problem in self.refresh(&dir, &node_name) {
                tracing::warn!(error = %problem, "could not process manifest file");
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Removes the sandboxes (among `sandboxes`, a relist's) of static pods
/// that are no longer defined (the file went or changed). Used while the
/// API pods are not known yet; once they are, the kubelet's orphan removal
/// covers static pods too.
pub async fn kill_removed_static_pods<R: crate::cri::Runtime>(
    worker: &crate::pod_worker::PodWorker<R>,
    sandboxes: &[k8s_cri::v1::PodSandbox],
    live: &HashSet<String>,
) -> Result<(), crate::cri::RuntimeError> {
    let removed: Vec<_> = sandboxes
        .iter()
        .filter(|s| {
            s.annotations
                .get(CONFIG_SOURCE_ANNOTATION)
                .map(String::as_str)
                == Some(FILE_SOURCE)
        })
        .filter(|s| {
            s.labels
                .get(crate::pod_worker::POD_UID_LABEL)
                .is_some_and(|u| !live.contains(u))
        })
        .cloned()
        .collect();
    worker.kill_sandboxes(&removed, 2).await
}

#[cfg(test)]
#[path = "static_pods_tests.rs"]
mod tests;

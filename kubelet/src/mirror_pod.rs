//! Mirror pods: the read-only API copies of this node's static pods, so
//! `kubectl get pods` shows them. Entry points: [`plan`] (what to create,
//! recreate and delete, without I/O) and [`MirrorClient::sync`], which
//! carries it out once the apiserver answers.
//!
//! A mirror pod carries `kubernetes.io/config.mirror: <config hash>` and a
//! controller reference to its Node. It is never run as a pod of its own:
//! deleting it through the API does not stop the static pod, the kubelet
//! just makes a new mirror; a mirror whose hash no longer matches (the file
//! changed) is replaced; one without a static pod (the file went) is deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferrokube_client::{Client, DeleteParams, ObjectKey, Store};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::pod_worker::pod_name;
use crate::static_pods::{annotation, config_hash};

/// Marks a pod as the mirror of a static pod; the value is the static
/// pod's config hash.
pub const CONFIG_MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether `pod` is a mirror pod (the kubelet never runs those).
pub fn is_mirror_pod(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR_ANNOTATION).is_some()
}

/// Whether `mirror` is the current mirror of `static_pod`: same name and
/// the static pod's hash.
pub fn is_mirror_pod_of(mirror: &Pod, static_pod: &Pod) -> bool {
    pod_name(mirror) == pod_name(static_pod)
        && annotation(mirror, CONFIG_MIRROR_ANNOTATION).is_some()
        && annotation(mirror, CONFIG_MIRROR_ANNOTATION) == config_hash(static_pod)
}

/// The mirror pod to create for `static_pod` on node `node_name` (uid
/// `node_uid`): the same pod without uid and status, annotated with the
/// hash, owned by the Node.
pub fn mirror_pod(static_pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut pod = static_pod.clone();
    let hash = config_hash(static_pod).unwrap_or_default().to_string();
    let meta = &mut pod.metadata;
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(CONFIG_MIRROR_ANNOTATION.into(), hash);
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.into(),
        uid: node_uid.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    pod.status = None;
    pod
}

/// One change to the API's mirror pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorAction {
    /// No pod of that name: create the mirror of this static pod
    /// (`namespace/name`).
    Create { pod: String },
    /// The mirror is being deleted or mirrors an older version of the
    /// file: delete it (uid `old_uid`), then create the current one.
    Recreate { pod: String, old_uid: String },
    /// A mirror with no static pod behind it any more.
    Delete { pod: String, uid: String },
    /// A pod of that name exists and is not a mirror pod: leave it alone.
    Conflict { pod: String },
}

/// What makes the API's mirror pods match `static_pods`. `api_pods` are the
/// pods bound to this node as the apiserver has them.
pub fn plan(static_pods: &[Pod], api_pods: &[Arc<Pod>]) -> Vec<MirrorAction> {
    let by_name: HashMap<String, &Pod> = api_pods.iter().map(|p| (pod_name(p), &**p)).collect();
    let mut actions = Vec::new();
    let mut wanted = HashSet::new();
    for sp in static_pods {
        let name = pod_name(sp);
        wanted.insert(name.clone());
        match by_name.get(&name) {
            None => actions.push(MirrorAction::Create { pod: name }),
            Some(p) if !is_mirror_pod(p) => actions.push(MirrorAction::Conflict { pod: name }),
            Some(p) if p.metadata.deletion_timestamp.is_some() || !is_mirror_pod_of(p, sp) => {
                actions.push(MirrorAction::Recreate {
                    pod: name,
                    old_uid: p.metadata.uid.clone().unwrap_or_default(),
                })
            }
            Some(_) => {}
        }
    }
    for p in api_pods {
        let name = pod_name(p);
        if is_mirror_pod(p) && !wanted.contains(&name) {
            actions.push(MirrorAction::Delete {
                pod: name,
                uid: p.metadata.uid.clone().unwrap_or_default(),
            });
        }
    }
    actions
}

/// The live mirror of `static_pod` in `api_pods`, where its status goes.
pub fn current_mirror<'a>(static_pod: &Pod, api_pods: &'a [Arc<Pod>]) -> Option<&'a Pod> {
    api_pods
        .iter()
        .map(|p| &**p)
        .find(|p| p.metadata.deletion_timestamp.is_none() && is_mirror_pod_of(p, static_pod))
}

fn split(pod: &str) -> (&str, &str) {
    pod.split_once('/').unwrap_or(("default", pod))
}

/// Creates, replaces and deletes this node's mirror pods through the API.
pub struct MirrorClient {
    client: Client,
    node_name: String,
    node_uid: String,
    /// Names already warned about (a foreign pod in a static pod's place).
    conflicts: Mutex<HashSet<String>>,
}

impl MirrorClient {
    pub fn new(client: Client, node_name: String, node_uid: String) -> Self {
        MirrorClient {
            client,
            node_name,
            node_uid,
            conflicts: Mutex::default(),
        }
    }

    /// Brings the API's mirror pods in line with `static_pods`; `store`
    /// holds the pods bound to this node and learns of the writes at once.
    pub async fn sync(&self, static_pods: &[Pod], store: &Store<Pod>) {
        let api_pods = store.list();
        let by_name: HashMap<String, &Pod> = static_pods.iter().map(|p| (pod_name(p), p)).collect();
        for action in plan(static_pods, &api_pods) {
            match action {
                MirrorAction::Create { pod } => self.create(by_name[&pod], store).await,
                MirrorAction::Recreate { pod, old_uid } => {
                    if self.delete(&pod, &old_uid, store).await {
                        self.create(by_name[&pod], store).await;
                    }
                }
                MirrorAction::Delete { pod, uid } => {
                    if self.delete(&pod, &uid, store).await {
                        tracing::info!(pod = %pod, "deleted the mirror pod of a removed static pod");
                    }
                }
                MirrorAction::Conflict { pod } => {
                    if self.conflicts.lock().unwrap().insert(pod.clone()) {
                        tracing::warn!(pod = %pod, "a pod that is not a mirror pod has the static pod's name; no mirror pod is made");
                    }
                }
            }
        }
    }

    async fn create(&self, static_pod: &Pod, store: &Store<Pod>) {
        let mirror = mirror_pod(static_pod, &self.node_name, &self.node_uid);
        let ns = mirror.metadata.namespace.clone().unwrap_or_default();
        match self.client.create(&ns, &mirror).await {
            Ok(stored) => {
                tracing::info!(pod = %pod_name(&stored), uid = %stored.metadata.uid.clone().unwrap_or_default(), "created mirror pod");
                store.upsert(stored);
            }
            Err(e) if e.is_already_exists() => {
                tracing::debug!(pod = %pod_name(&mirror), "mirror pod already exists")
            }
            Err(e) => {
                tracing::warn!(pod = %pod_name(&mirror), error = %e, "creating the mirror pod failed")
            }
        }
    }

    /// Deletes mirror `pod` at once if it still has `uid`; whether it is
    /// gone now.
    async fn delete(&self, pod: &str, uid: &str, store: &Store<Pod>) -> bool {
        let (ns, name) = split(pod);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: uid.into(),
            ..Default::default()
        };
        match self.client.delete::<Pod>(ns, name, &params).await {
            Ok(ferrokube_client::Deleted::Gone(_)) => {
                tracing::info!(pod = %pod, uid = %uid, "deleted mirror pod");
                store.remove(&ObjectKey::new(ns, name));
                true
            }
            Ok(_) => false,
            Err(e) if e.is_not_found() => {
                store.remove(&ObjectKey::new(ns, name));
                true
            }
            Err(e) => {
                tracing::debug!(pod = %pod, error = %e, "deleting the mirror pod failed; next sync retries");
                false
            }
        }
    }
}

/// Writes `status` (computed for `static_pod`) to its mirror pod, if there
/// is one and its status differs.
/// Returns whether the mirror pod now holds `status` (false: no mirror
/// pod yet, or the write failed).
pub async fn update_mirror_status(
    client: &Client,
    store: &Store<Pod>,
    static_pod: &Pod,
    status: &PodStatus,
) -> bool {
    let api_pods = store.list();
    let Some(mirror) = current_mirror(static_pod, &api_pods) else {
        return false;
    };
    if mirror.status.as_ref() == Some(status) {
        return true;
    }
    let mut updated = mirror.clone();
    updated.status = Some(status.clone());
    match client.update_status(&updated).await {
        Ok(stored) => {
            if mirror.status.as_ref().and_then(|s| s.phase.clone()) != status.phase {
                tracing::info!(pod = %pod_name(static_pod), phase = ?status.phase, "static pod phase changed");
            }
            store.upsert(stored);
            true
        }
        Err(e) if e.is_conflict() || e.is_not_found() => {
            tracing::debug!(pod = %pod_name(static_pod), error = %e, "mirror pod status update raced; next sync retries");
            false
        }
        Err(e) => {
            tracing::warn!(pod = %pod_name(static_pod), error = %e, "mirror pod status update failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn static_pod(file: &str, command: &str) -> Pod {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    command: [{command}]\n"
        );
        crate::static_pods::parse_manifest(Path::new(file), &text, "node-a").unwrap()
    }

    fn api(pod: Pod, uid: &str) -> Arc<Pod> {
        let mut pod = pod;
        pod.metadata.uid = Some(uid.into());
        Arc::new(pod)
    }

    #[test]
    fn mirror_pod_is_annotated_with_the_hash_and_owned_by_the_node() {
        let sp = static_pod("/m/web.yaml", "sleep");
        let m = mirror_pod(&sp, "node-a", "node-uid");
        assert_eq!(m.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(m.metadata.uid, None);
        assert_eq!(
            annotation(&m, CONFIG_MIRROR_ANNOTATION),
            sp.metadata.uid.as_deref()
        );
        assert_eq!(annotation(&m, "kubernetes.io/config.source"), Some("file"));
        let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "node-a", "node-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert!(is_mirror_pod(&m) && is_mirror_pod_of(&m, &sp));
        assert!(!is_mirror_pod(&sp));
    }

    #[test]
    fn plan_creates_missing_mirrors_and_keeps_current_ones() {
        let sp = static_pod("/m/web.yaml", "sleep");
        assert_eq!(
            plan(std::slice::from_ref(&sp), &[]),
            [MirrorAction::Create {
                pod: "default/web-node-a".into()
            }]
        );
        let current = api(mirror_pod(&sp, "node-a", "n"), "m1");
        assert!(plan(std::slice::from_ref(&sp), std::slice::from_ref(&current)).is_empty());
        assert_eq!(
            current_mirror(&sp, std::slice::from_ref(&current))
                .and_then(|m| m.metadata.uid.clone()),
            Some("m1".into())
        );
    }

    #[test]
    fn plan_recreates_deleted_or_outdated_mirrors_and_deletes_orphans() {
        let old = static_pod("/m/web.yaml", "sleep");
        let new = static_pod("/m/web.yaml", "tail");
        assert_ne!(
            old.metadata.uid, new.metadata.uid,
            "an edit makes a new pod"
        );
        let outdated = api(mirror_pod(&old, "node-a", "n"), "m1");
        assert_eq!(
            plan(std::slice::from_ref(&new), std::slice::from_ref(&outdated)),
            [MirrorAction::Recreate {
                pod: "default/web-node-a".into(),
                old_uid: "m1".into()
            }]
        );
        let mut deleting = mirror_pod(&new, "node-a", "n");
        deleting.metadata.deletion_timestamp = Some(crate::status::now_time());
        let deleting = api(deleting, "m2");
        assert_eq!(
            plan(std::slice::from_ref(&new), std::slice::from_ref(&deleting)),
            [MirrorAction::Recreate {
                pod: "default/web-node-a".into(),
                old_uid: "m2".into()
            }]
        );
        assert_eq!(current_mirror(&new, &[deleting]), None);
        assert_eq!(
            plan(&[], &[outdated]),
            [MirrorAction::Delete {
                pod: "default/web-node-a".into(),
                uid: "m1".into()
            }]
        );
    }

    #[test]
    fn plan_leaves_foreign_pods_alone() {
        let sp = static_pod("/m/web.yaml", "sleep");
        let mut foreign = sp.clone();
        foreign.metadata.annotations = None;
        let foreign = api(foreign, "f1");
        assert_eq!(
            plan(std::slice::from_ref(&sp), std::slice::from_ref(&foreign)),
            [MirrorAction::Conflict {
                pod: "default/web-node-a".into()
            }]
        );
        assert!(
            plan(&[], &[foreign]).is_empty(),
            "only mirror pods are deleted"
        );
    }
}

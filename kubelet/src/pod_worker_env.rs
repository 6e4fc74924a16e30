//! The pod worker's use of volumes and env: the status of a pod whose
//! volumes cannot be set up, and a container's CRI config completed with
//! its resolved environment (`crate::env`), expanded command and args, and
//! volume mounts (`crate::volumes`).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::{all_containers, pod_name, PodWorker, SyncOutcome};
use crate::cri::Runtime;
use crate::env::{expand_command_and_args, make_environment, EnvInputs};
use crate::status::{compute_pod_status, Waiting};
use crate::volumes::{container_mounts, SetUpError};

impl<R: Runtime> PodWorker<R> {
    /// Every container waits in `ContainerCreating` with the mount failure
    /// as its message; nothing is created until the volumes are ready.
    pub(super) fn volume_set_up_failed(&self, pod: &Pod, e: &SetUpError) -> SyncOutcome {
        tracing::warn!(pod = %pod_name(pod), error = %e, "FailedMount");
        let waiting: HashMap<String, Waiting> = all_containers(pod)
            .into_iter()
            .map(|c| {
                (
                    c.name,
                    Waiting {
                        reason: "ContainerCreating".into(),
                        message: e.to_string(),
                    },
                )
            })
            .collect();
        let status = compute_pod_status(
            pod,
            &HashMap::new(),
            &waiting,
            None,
            &self.settings.host_ip,
            &crate::status::ProbeResults::new(),
        );
        SyncOutcome::Status(Box::new(status))
    }

    /// The sandbox's IPs (the node's with hostNetwork); empty when unknown.
    async fn pod_ips(&self, pod: &Pod, sandbox_id: &str) -> Vec<String> {
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return vec![self.settings.host_ip.clone()];
        }
        match self.pleg.sandbox_ips(sandbox_id).await {
            Ok(ips) => ips,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), error = %e, "reading the sandbox's IPs for the environment");
                Vec::new()
            }
        }
    }

    /// `container_config` plus env, expanded command/args and mounts. The
    /// error is the `CreateContainerConfigError` message.
    pub(super) async fn resolved_container_config(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sandbox_id: &str,
    ) -> Result<cri::ContainerConfig, String> {
        let pod_ips = self.pod_ips(pod, sandbox_id).await;
        let host_ips = [self.settings.host_ip.clone()];
        let env = make_environment(&EnvInputs {
            pod,
            container: c,
            node_name: &self.settings.node_name,
            host_ips: &host_ips,
            pod_ips: &pod_ips,
            objects: self.volumes.objects(),
        })
        .await
        .map_err(|e| e.to_string())?;
        let volumes = self.volumes.pod_volumes(pod);
        let mounts = container_mounts(c, &volumes, &env).map_err(|e| e.to_string())?;
        let (command, args) = expand_command_and_args(c, &env);
        let mut config = self.container_config(pod, c, attempt);
        config.command = command;
        config.args = args;
        config.envs = env
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect();
        config.mounts.extend(mounts);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::PodStatus;

    use super::super::WorkerSettings;
    use super::*;
    use crate::backoff::CrashLoopBackOff;
    use crate::cri::FakeRuntime;
    use crate::object_source::FakeObjectSource;
    use crate::pod_worker::status_of as status;
    use crate::volumes::VolumeManager;

    fn worker(
        rt: &FakeRuntime,
        objects: &FakeObjectSource,
        root: &std::path::Path,
    ) -> PodWorker<FakeRuntime> {
        PodWorker::new(
            Arc::new(rt.clone()),
            WorkerSettings {
                node_name: "n1".into(),
                host_ip: "10.0.0.1".into(),
                cluster_dns: vec![],
                cluster_domain: "cluster.local".into(),
                pod_logs_dir: root.join("logs"),
            },
            CrashLoopBackOff::new(Duration::from_secs(1), Duration::from_secs(300)),
        )
        .with_volume_manager(Arc::new(VolumeManager::new(
            root,
            Arc::new(objects.clone()),
            "n1",
            Duration::ZERO,
        )))
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn waiting_of(s: &PodStatus) -> (String, String) {
        let w = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .clone()
            .unwrap();
        (w.reason.unwrap_or_default(), w.message.unwrap_or_default())
    }

    #[tokio::test]
    async fn missing_config_map_env_keeps_the_container_waiting_until_it_exists() {
        let rt = FakeRuntime::with_images(&["busybox:1.36"]);
        let objects = FakeObjectSource::default();
        let root = tempfile::tempdir().unwrap();
        let w = worker(&rt, &objects, root.path());
        let p = pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}]}]}
        }));
        let s = status(w.sync_pod(&p).await.unwrap());
        assert_eq!(
            waiting_of(&s),
            (
                "CreateContainerConfigError".to_string(),
                "configmap \"cfg\" not found".to_string()
            )
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert!(rt.containers_named("app").is_empty());

        objects.insert_config_map(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cfg", "namespace": "default"}, "data": {"mode": "fast"}
            }))
            .unwrap(),
        );
        w.sync_pod(&p).await.unwrap();
        assert_eq!(rt.containers_named("app").len(), 1);
    }

    #[tokio::test]
    async fn failed_mount_keeps_the_pod_creating_without_a_sandbox() {
        let rt = FakeRuntime::with_images(&["busybox:1.36"]);
        let objects = FakeObjectSource::default();
        let root = tempfile::tempdir().unwrap();
        let w = worker(&rt, &objects, root.path());
        let p = pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                "containers": [{"name": "app", "image": "busybox:1.36",
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}]}
        }));
        let s = status(w.sync_pod(&p).await.unwrap());
        assert_eq!(
            waiting_of(&s),
            (
                "ContainerCreating".to_string(),
                "MountVolume.SetUp failed for volume \"cfg\" : configmap \"cfg\" not found"
                    .to_string()
            )
        );
        assert!(!rt.calls().iter().any(|c| c.starts_with("RunPodSandbox")));

        objects.insert_config_map(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}
            }))
            .unwrap(),
        );
        w.sync_pod(&p).await.unwrap();
        assert_eq!(rt.containers_named("app").len(), 1);
        let file = root
            .path()
            .join("pods/u1/volumes/kubernetes.io~configmap/cfg/k");
        assert_eq!(std::fs::read_to_string(file).unwrap(), "v");
    }
}

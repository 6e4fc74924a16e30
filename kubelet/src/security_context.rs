//! `securityContext` → CRI: the pod's and each container's security
//! settings as the runtime takes them (user, groups, privileged,
//! capabilities, read-only root filesystem, no_new_privs, sysctls), and the
//! `runAsNonRoot` check against the image's user. Entry points:
//! [`container_security_context`], [`sandbox_security_context`],
//! [`sandbox_sysctls`], [`verify_run_as_non_root`].
//!
//! As upstream's `determineEffectiveSecurityContext`: a container's
//! setting wins over the pod's; `fsGroup` and `supplementalGroups` are the
//! pod's and apply to every container.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use crate::cri::ImageUser;

fn pod_sc(pod: &Pod) -> PodSecurityContext {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default()
}

fn container_sc(c: &Container) -> SecurityContext {
    c.security_context.clone().unwrap_or_default()
}

/// `fsGroup` first, then `supplementalGroups`, as upstream orders them.
fn supplemental_groups(sc: &PodSecurityContext) -> Vec<i64> {
    sc.fs_group
        .into_iter()
        .chain(sc.supplemental_groups.iter().flatten().copied())
        .collect()
}

/// The effective `runAsUser`, `runAsGroup` and `runAsNonRoot` of `c`.
fn effective_user(pod: &Pod, c: &Container) -> (Option<i64>, Option<i64>, Option<bool>) {
    let (p, s) = (pod_sc(pod), container_sc(c));
    (
        s.run_as_user.or(p.run_as_user),
        s.run_as_group.or(p.run_as_group),
        s.run_as_non_root.or(p.run_as_non_root),
    )
}

/// The container's `LinuxContainerSecurityContext`; `namespaces` are the
/// pod's namespace options (host network/PID/IPC).
pub fn container_security_context(
    pod: &Pod,
    c: &Container,
    namespaces: cri::NamespaceOption,
) -> cri::LinuxContainerSecurityContext {
    let s = container_sc(c);
    let (run_as_user, run_as_group, _) = effective_user(pod, c);
    let capabilities = s.capabilities.as_ref().map(|caps| cri::Capability {
        add_capabilities: caps.add.clone().unwrap_or_default(),
        drop_capabilities: caps.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    cri::LinuxContainerSecurityContext {
        capabilities,
        privileged: s.privileged.unwrap_or(false),
        namespace_options: Some(namespaces),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: s.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(&pod_sc(pod)),
        // Unset means "as the runtime defaults", which allows escalation.
        no_new_privs: s.allow_privilege_escalation == Some(false),
        ..Default::default()
    }
}

/// Whether any container (init containers included) runs privileged: the
/// sandbox must then be privileged too.
fn has_privileged_container(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| container_sc(c).privileged == Some(true))
    })
}

/// The sandbox's `LinuxSandboxSecurityContext` from the pod's
/// securityContext.
pub fn sandbox_security_context(
    pod: &Pod,
    namespaces: cri::NamespaceOption,
) -> cri::LinuxSandboxSecurityContext {
    let p = pod_sc(pod);
    cri::LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces),
        run_as_user: p.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: p.run_as_group.map(|value| cri::Int64Value { value }),
        supplemental_groups: supplemental_groups(&p),
        privileged: has_privileged_container(pod),
        ..Default::default()
    }
}

/// `securityContext.sysctls`, set in the pod's namespaces by the runtime.
pub fn sandbox_sysctls(pod: &Pod) -> HashMap<String, String> {
    pod_sc(pod)
        .sysctls
        .into_iter()
        .flatten()
        .map(|s| (s.name, s.value))
        .collect()
}

/// Whether `c` must be checked against its image's user before it starts.
pub fn requires_non_root(pod: &Pod, c: &Container) -> bool {
    effective_user(pod, c).2 == Some(true)
}

/// upstream's `verifyRunAsNonRoot`: with `runAsNonRoot`, the container
/// must not run as uid 0 — by its `runAsUser`, or else by its image's user
/// (an image without a user runs as root; a user name cannot be checked).
/// The error is the container's `CreateContainerConfigError` message.
pub fn verify_run_as_non_root(pod: &Pod, c: &Container, image: &ImageUser) -> Result<(), String> {
    let (run_as_user, _, non_root) = effective_user(pod, c);
    if non_root != Some(true) {
        return Ok(());
    }
    let meta = &pod.metadata;
    let pod_desc = format!(
        "{}_{}({})",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or("default"),
        meta.uid.as_deref().unwrap_or_default()
    );
    if let Some(uid) = run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_desc:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    match (image.uid, image.username.as_str()) {
        (Some(0), _) | (None, "") => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_desc:?}, container: {})",
            c.name
        )),
        (None, name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: {pod_desc:?}, container: {})",
            c.name
        )),
        (Some(_), _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn secure_pod() -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "securityContext": {
                    "runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                    "supplementalGroups": [4000, 5000],
                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]
                },
                "containers": [
                    {"name": "app", "image": "busybox:1.36", "securityContext": {
                        "runAsUser": 1001, "readOnlyRootFilesystem": true,
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}
                    }},
                    {"name": "root", "image": "busybox:1.36", "securityContext": {"privileged": true}}
                ]
            }
        }))
    }

    fn container(p: &Pod, i: usize) -> Container {
        p.spec.as_ref().unwrap().containers[i].clone()
    }

    #[test]
    fn container_settings_win_over_the_pod_and_groups_come_from_the_pod() {
        let p = secure_pod();
        let sc = container_security_context(&p, &container(&p, 0), Default::default());
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(1001));
        assert_eq!(sc.run_as_group.map(|v| v.value), Some(3000));
        assert_eq!(sc.supplemental_groups, vec![2000, 4000, 5000]);
        assert!(sc.readonly_rootfs);
        assert!(sc.no_new_privs);
        assert!(!sc.privileged);
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(caps.drop_capabilities, ["ALL"]);

        let root = container_security_context(&p, &container(&p, 1), Default::default());
        assert!(root.privileged);
        assert_eq!(root.run_as_user.map(|v| v.value), Some(1000));
        assert!(!root.readonly_rootfs && !root.no_new_privs);
    }

    #[test]
    fn no_security_context_leaves_everything_to_the_runtime() {
        let p = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let sc = container_security_context(&p, &container(&p, 0), Default::default());
        assert_eq!(sc.run_as_user, None);
        assert_eq!(sc.run_as_group, None);
        assert!(sc.supplemental_groups.is_empty());
        assert!(!sc.privileged && !sc.readonly_rootfs && !sc.no_new_privs);
        assert_eq!(sc.capabilities, None);
        let sb = sandbox_security_context(&p, Default::default());
        assert!(!sb.privileged && sb.run_as_user.is_none());
        assert!(sandbox_sysctls(&p).is_empty());
    }

    #[test]
    fn sandbox_takes_pod_user_groups_sysctls_and_any_privileged_container() {
        let p = secure_pod();
        let sb = sandbox_security_context(&p, Default::default());
        assert_eq!(sb.run_as_user.map(|v| v.value), Some(1000));
        assert_eq!(sb.run_as_group.map(|v| v.value), Some(3000));
        assert_eq!(sb.supplemental_groups, vec![2000, 4000, 5000]);
        assert!(sb.privileged, "one container is privileged");
        assert_eq!(
            sandbox_sysctls(&p).get("net.ipv4.ip_unprivileged_port_start"),
            Some(&"80".to_string())
        );
    }

    #[test]
    fn run_as_non_root_is_checked_against_run_as_user_and_the_image_user() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"securityContext": {"runAsNonRoot": true},
                     "containers": [{"name": "c"}, {"name": "u0", "securityContext": {"runAsUser": 0}},
                                    {"name": "u5", "securityContext": {"runAsUser": 5}}]}
        }));
        let (c, u0, u5) = (container(&p, 0), container(&p, 1), container(&p, 2));
        assert!(requires_non_root(&p, &c));
        let root_image = ImageUser::default();
        assert_eq!(
            verify_run_as_non_root(&p, &c, &root_image).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        let named = ImageUser {
            uid: None,
            username: "nginx".into(),
        };
        assert!(verify_run_as_non_root(&p, &c, &named)
            .unwrap_err()
            .contains("image has non-numeric user (nginx)"));
        let numbered = ImageUser {
            uid: Some(101),
            username: String::new(),
        };
        assert_eq!(verify_run_as_non_root(&p, &c, &numbered), Ok(()));
        assert!(verify_run_as_non_root(&p, &u0, &numbered)
            .unwrap_err()
            .starts_with("container's runAsUser breaks non-root policy"));
        assert_eq!(verify_run_as_non_root(&p, &u5, &root_image), Ok(()));

        let relaxed = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        assert!(!requires_non_root(&relaxed, &container(&relaxed, 0)));
        assert_eq!(
            verify_run_as_non_root(&relaxed, &container(&relaxed, 0), &root_image),
            Ok(())
        );
    }
}

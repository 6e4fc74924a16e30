//! The table of resources the apiserver serves: group, version, kind, plural
//! and the discovery facts kubectl relies on (short names, categories, verbs,
//! subresources). Look one up with [`find`], [`find_by_kind`] or [`lookup`].

/// A group/version pair; the core group is the empty string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersion {
    pub group: &'static str,
    pub version: &'static str,
}

impl GroupVersion {
    /// `v1` for the core group, `apps/v1` otherwise: the `apiVersion` field.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix: `/api/v1` or `/apis/apps/v1`.
    pub fn path_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment and etcd key segment: `pods`, `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Served subresources, e.g. `status`, `scale`, `binding`.
    pub subresources: &'static [&'static str],
}

impl ResourceInfo {
    pub fn group_version(&self) -> GroupVersion {
        GroupVersion {
            group: self.group,
            version: self.version,
        }
    }

    pub fn api_version(&self) -> String {
        self.group_version().api_version()
    }

    /// `PodList`, the kind of a list response.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods` or `deployments.apps`: how upstream names a resource in
    /// messages such as `pods "web" not found`.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The etcd key prefix for all objects of this resource, ending in `/`.
    /// The layout is upstream's, so what users learned with `etcdctl get
    /// /registry --prefix --keys-only` holds here: `/registry/<plural>/`,
    /// with upstream's historical names for services, endpoints and nodes.
    pub fn key_prefix(&self) -> String {
        let segment = match (self.group, self.plural) {
            ("", "services") => "services/specs",
            ("", "endpoints") => "services/endpoints",
            ("", "nodes") => "minions",
            _ => self.plural,
        };
        format!("/registry/{segment}/")
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    grouped("", kind, plural, singular, namespaced)
}

const fn grouped(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    }
}

const fn with(
    mut r: ResourceInfo,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo {
    r.short_names = short_names;
    r.categories = categories;
    r.subresources = subresources;
    r
}

const ALL: &[&str] = &["all"];

/// Every served resource, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    ResourceInfo {
        verbs: NO_DELETECOLLECTION,
        ..with(
            core("Namespace", "namespaces", "namespace", false),
            &["ns"],
            &[],
            &["status", "finalize"],
        )
    },
    with(
        core("Pod", "pods", "pod", true),
        &["po"],
        ALL,
        &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "portforward",
        ],
    ),
    with(
        core("Node", "nodes", "node", false),
        &["no"],
        &[],
        &["status"],
    ),
    ResourceInfo {
        verbs: NO_DELETECOLLECTION,
        ..with(
            core("Service", "services", "service", true),
            &["svc"],
            ALL,
            &["status"],
        )
    },
    with(
        core("Endpoints", "endpoints", "endpoints", true),
        &["ep"],
        &[],
        &[],
    ),
    with(
        core("ConfigMap", "configmaps", "configmap", true),
        &["cm"],
        &[],
        &[],
    ),
    with(core("Secret", "secrets", "secret", true), &[], &[], &[]),
    with(
        core("ServiceAccount", "serviceaccounts", "serviceaccount", true),
        &["sa"],
        &[],
        &["token"],
    ),
    with(core("Event", "events", "event", true), &["ev"], &[], &[]),
    with(
        core(
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            true,
        ),
        &["rc"],
        ALL,
        &["status", "scale"],
    ),
    with(
        core("LimitRange", "limitranges", "limitrange", true),
        &["limits"],
        &[],
        &[],
    ),
    with(
        core("ResourceQuota", "resourcequotas", "resourcequota", true),
        &["quota"],
        &[],
        &["status"],
    ),
    // apps/v1
    with(
        grouped("apps", "Deployment", "deployments", "deployment", true),
        &["deploy"],
        ALL,
        &["status", "scale"],
    ),
    with(
        grouped("apps", "ReplicaSet", "replicasets", "replicaset", true),
        &["rs"],
        ALL,
        &["status", "scale"],
    ),
    with(
        grouped("apps", "StatefulSet", "statefulsets", "statefulset", true),
        &["sts"],
        ALL,
        &["status", "scale"],
    ),
    with(
        grouped("apps", "DaemonSet", "daemonsets", "daemonset", true),
        &["ds"],
        ALL,
        &["status"],
    ),
    with(
        grouped(
            "apps",
            "ControllerRevision",
            "controllerrevisions",
            "controllerrevision",
            true,
        ),
        &[],
        &[],
        &[],
    ),
    // batch/v1
    with(
        grouped("batch", "Job", "jobs", "job", true),
        &[],
        ALL,
        &["status"],
    ),
    with(
        grouped("batch", "CronJob", "cronjobs", "cronjob", true),
        &["cj"],
        ALL,
        &["status"],
    ),
    // rbac.authorization.k8s.io/v1
    grouped("rbac.authorization.k8s.io", "Role", "roles", "role", true),
    grouped(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
    ),
    grouped(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
    ),
    grouped(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
    ),
    // coordination.k8s.io/v1
    grouped("coordination.k8s.io", "Lease", "leases", "lease", true),
    // discovery.k8s.io/v1
    grouped(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
    ),
    // scheduling.k8s.io/v1
    with(
        grouped(
            "scheduling.k8s.io",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            false,
        ),
        &["pc"],
        &[],
        &[],
    ),
    // admissionregistration.k8s.io/v1
    with(
        grouped(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            false,
        ),
        &[],
        &["api-extensions"],
        &[],
    ),
    with(
        grouped(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            false,
        ),
        &[],
        &["api-extensions"],
        &[],
    ),
];

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn find_by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// A resource by any name a user may type: plural, singular, short name or
/// kind, case-insensitively, optionally qualified by group (`deploy.apps`).
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    let name = name.to_ascii_lowercase();
    let (name, group) = match name.split_once('.') {
        Some((n, g)) => (n.to_string(), Some(g.to_string())),
        None => (name, None),
    };
    RESOURCES.iter().find(|r| {
        group.as_deref().is_none_or(|g| r.group == g)
            && (r.plural == name
                || r.singular == name
                || r.kind.eq_ignore_ascii_case(&name)
                || r.short_names.contains(&name.as_str()))
    })
}

/// The group/versions served, in discovery order (core first).
pub fn group_versions() -> Vec<GroupVersion> {
    let mut out: Vec<GroupVersion> = Vec::new();
    for r in RESOURCES {
        let gv = r.group_version();
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plural_is_unique_within_its_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group_version() == b.group_version() && a.plural == b.plural),
                    "{} served twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn short_names_and_kinds_resolve_like_kubectl() {
        assert_eq!(lookup("po").unwrap().plural, "pods");
        assert_eq!(lookup("deploy").unwrap().group, "apps");
        assert_eq!(lookup("Deployment.apps").unwrap().plural, "deployments");
        assert_eq!(lookup("svc").unwrap().kind, "Service");
        assert!(lookup("widgets").is_none());
    }

    #[test]
    fn keys_and_paths_follow_upstream_layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key_prefix(), "/registry/pods/");
        assert_eq!(pods.group_version().path_prefix(), "/api/v1");
        let deploy = find_by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(deploy.key_prefix(), "/registry/deployments/");
        assert_eq!(
            lookup("svc").unwrap().key_prefix(),
            "/registry/services/specs/"
        );
        assert_eq!(deploy.qualified_resource(), "deployments.apps");
        assert_eq!(group_versions()[0].api_version(), "v1");
    }
}

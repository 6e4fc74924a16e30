//! Validation of the cluster's bookkeeping objects: Nodes, Leases, Events
//! and RBAC bindings. Entry points: `validate_*` per kind.

use serde_json::{json, Value};

use super::{invalid_shown, items, str_at};
use crate::error::Cause;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

pub(super) fn validate_node(spec: &Value, causes: &mut Vec<Cause>) {
    for (i, t) in items(spec, "taints").iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let key = str_at(t, "/key");
        if key.is_empty() {
            causes.push(Cause::required(format!("{path}.key")));
        } else {
            for msg in ferrokube_api::validation::is_qualified_name(key) {
                causes.push(Cause::invalid(format!("{path}.key"), &json!(key), &msg));
            }
        }
        let effect = str_at(t, "/effect");
        if effect.is_empty() {
            causes.push(Cause::required(format!("{path}.effect")));
        } else if !TAINT_EFFECTS.contains(&effect) {
            causes.push(Cause::not_supported(
                format!("{path}.effect"),
                &json!(effect),
                &TAINT_EFFECTS,
            ));
        }
    }
    if let Some(cidr) = spec
        .get("podCIDR")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        if !is_cidr(cidr) {
            causes.push(Cause::invalid(
                "spec.podCIDR",
                &json!(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}

/// The pod CIDR and provider ID are assigned once.
pub(super) fn validate_node_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let old_cidr = str_at(old, "/podCIDR");
    if !old_cidr.is_empty() && str_at(new, "/podCIDR") != old_cidr {
        causes.push(Cause::forbidden(
            "spec.podCIDR",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = str_at(old, "/providerID");
    if !old_provider.is_empty() && str_at(new, "/providerID") != old_provider {
        causes.push(Cause::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

pub(super) fn validate_lease(spec: &Value, causes: &mut Vec<Cause>) {
    if let Some(n) = spec.get("leaseDurationSeconds").and_then(Value::as_i64) {
        if n <= 0 {
            causes.push(Cause::invalid(
                "spec.leaseDurationSeconds",
                &json!(n),
                "must be greater than 0",
            ));
        }
    }
    super::nonnegative(spec, "leaseTransitions", "spec", causes);
}

/// Core v1 Events: the involved object lives in the Event's namespace.
pub(super) fn validate_event(obj: &Value, causes: &mut Vec<Cause>) {
    let ns = str_at(obj, "/metadata/namespace");
    let involved = str_at(obj, "/involvedObject/namespace");
    if !involved.is_empty() && involved != ns {
        causes.push(Cause::invalid(
            "involvedObject.namespace",
            &json!(involved),
            "does not match event.namespace",
        ));
    }
    if let Some(kind) = obj
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        if kind != "Normal" && kind != "Warning" {
            causes.push(Cause::not_supported(
                "type",
                &json!(kind),
                &["Normal", "Warning"],
            ));
        }
    }
}

pub(super) fn validate_role_binding(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let group = str_at(obj, "/roleRef/apiGroup");
    if group != RBAC_GROUP {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            &json!(group),
            &[RBAC_GROUP],
        ));
    }
    let role_kind = str_at(obj, "/roleRef/kind");
    let kinds: &[&str] = if kind == "ClusterRoleBinding" {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&role_kind) {
        causes.push(Cause::not_supported(
            "roleRef.kind",
            &json!(role_kind),
            kinds,
        ));
    }
    let name = str_at(obj, "/roleRef/name");
    if name.is_empty() {
        causes.push(Cause::required("roleRef.name"));
    } else {
        for msg in ferrokube_api::validation::is_valid_path_segment_name(name) {
            causes.push(Cause::invalid("roleRef.name", &json!(name), &msg));
        }
    }
    for (i, s) in items(obj, "subjects").iter().enumerate() {
        let path = format!("subjects[{i}]");
        if str_at(s, "/name").is_empty() {
            causes.push(Cause::required(format!("{path}.name")));
        }
        match str_at(s, "/kind") {
            "ServiceAccount" => {
                let g = str_at(s, "/apiGroup");
                if !g.is_empty() {
                    causes.push(Cause::not_supported(
                        format!("{path}.apiGroup"),
                        &json!(g),
                        &[""],
                    ));
                }
                if kind == "ClusterRoleBinding" && str_at(s, "/namespace").is_empty() {
                    causes.push(Cause::required(format!("{path}.namespace")));
                }
            }
            "User" | "Group" => {
                let g = str_at(s, "/apiGroup");
                if g != RBAC_GROUP {
                    causes.push(Cause::not_supported(
                        format!("{path}.apiGroup"),
                        &json!(g),
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => causes.push(Cause::not_supported(
                format!("{path}.kind"),
                &json!(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// A binding's role never changes: delete and recreate it instead.
pub(super) fn validate_role_ref_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if new.get("roleRef") != old.get("roleRef") {
        let shown = format!(
            "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
            str_at(new, "/roleRef/apiGroup"),
            str_at(new, "/roleRef/kind"),
            str_at(new, "/roleRef/name")
        );
        causes.push(invalid_shown("roleRef", &shown, "cannot change roleRef"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{messages, res};
    use super::super::{validate, validate_update};
    use super::*;
    use crate::registry::defaults;

    const RBAC: &str = "rbac.authorization.k8s.io";

    #[test]
    fn node_pod_cidr_is_assigned_once_and_taints_are_checked() {
        let old = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.1.0/24"}});
        let mut new = old.clone();
        new["spec"]["podCIDR"] = json!("10.244.2.0/24");
        assert_eq!(
            messages(validate_update(res("", "nodes"), &new, &old)),
            ["spec.podCIDR: Forbidden: node updates may not change podCIDR except from \"\" to valid"]
        );
        let unset = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(validate_update(res("", "nodes"), &old, &unset).is_empty());
        let tainted = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
        assert_eq!(
            messages(validate(res("", "nodes"), &tainted)),
            ["spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""]
        );
    }

    #[test]
    fn lease_and_event_basics() {
        let lease = json!({"metadata": {"name": "l", "namespace": "kube-system"}, "spec": {"leaseDurationSeconds": 0}});
        assert_eq!(
            messages(validate(res("coordination.k8s.io", "leases"), &lease)),
            ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        let event = json!({"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"namespace": "b"}, "type": "Normal"});
        assert_eq!(
            messages(validate(res("", "events"), &event)),
            ["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
        );
    }

    fn binding(plural: &str, role_ref: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "b", "namespace": "default"}, "roleRef": role_ref,
            "subjects": [{"kind": "User", "name": "alice"}]});
        defaults::apply(res(RBAC, plural), &mut obj);
        obj
    }

    #[test]
    fn role_ref_is_required_and_checked() {
        let empty = binding(
            "rolebindings",
            json!({"apiGroup": "", "kind": "", "name": ""}),
        );
        assert_eq!(
            messages(validate(res(RBAC, "rolebindings"), &empty)),
            [
                "roleRef.kind: Unsupported value: \"\": supported values: \"Role\", \"ClusterRole\"",
                "roleRef.name: Required value",
            ]
        );
        let crb = binding("clusterrolebindings", json!({"kind": "Role", "name": "r"}));
        assert_eq!(
            messages(validate(res(RBAC, "clusterrolebindings"), &crb)),
            ["roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""]
        );
    }

    #[test]
    fn role_ref_cannot_change() {
        let old = binding("rolebindings", json!({"kind": "Role", "name": "reader"}));
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("writer");
        assert_eq!(
            messages(validate_update(res(RBAC, "rolebindings"), &new, &old)),
            ["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"writer\"}: cannot change roleRef"]
        );
        new["subjects"] = json!([]);
        new["roleRef"]["name"] = json!("reader");
        assert!(validate_update(res(RBAC, "rolebindings"), &new, &old).is_empty());
    }
}

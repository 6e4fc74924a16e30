//! Pod spec validation (`ValidatePodSpec`), shared by Pods and every
//! workload template, and what a Pod update may change
//! (`ValidatePodUpdate`), including the mirror pod annotation that only a
//! kubelet sets, once. Entry points: [`validate_pod_spec`],
//! [`validate_pod_update`], [`validate_pod_specific_annotation_updates`].

use std::collections::{BTreeMap, BTreeSet};

use ferrokube_api::validation as rules;
use serde_json::{json, Value};

use super::{items, nonnegative, one_of, port_in_range, quantity, string_map};
use crate::error::Cause;

const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const PROBE_HANDLERS: [&str; 4] = ["exec", "httpGet", "tcpSocket", "grpc"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Upstream's message for an update that touches an immutable pod field.
pub(super) const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodSpec` of the spec at `path` (`spec`, `spec.template.spec`).
pub(super) fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let volumes = validate_volumes(spec, path, causes);
    let containers = items(spec, "containers");
    if containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    let host_network = spec.get("hostNetwork") == Some(&json!(true));
    for key in ["initContainers", "containers"] {
        for (i, c) in items(spec, key).iter().enumerate() {
            let ctx = ContainerContext {
                path: format!("{path}.{key}[{i}]"),
                init: key == "initContainers",
                host_network,
            };
            validate_container(c, &ctx, &volumes, &mut names, &mut port_names, causes);
        }
    }
    one_of(spec, "restartPolicy", path, &RESTART_POLICIES, causes);
    one_of(spec, "dnsPolicy", path, &DNS_POLICIES, causes);
    if spec.get("dnsPolicy").and_then(Value::as_str) == Some("None")
        && !spec.get("dnsConfig").is_some_and(Value::is_object)
    {
        causes.push(Cause::new(
            "FieldValueRequired",
            format!("{path}.dnsConfig"),
            "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            causes.push(Cause::invalid(
                format!("{path}.activeDeadlineSeconds"),
                &json!(n),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    let node_selector = string_map(spec.get("nodeSelector"));
    for e in rules::validate_labels(&node_selector, &format!("{path}.nodeSelector")) {
        causes.push(super::field_error(e));
    }
    for (i, t) in items(spec, "tolerations").iter().enumerate() {
        validate_toleration(t, &format!("{path}.tolerations[{i}]"), causes);
    }
}

/// The volume names of the spec, after checking each volume.
fn validate_volumes(spec: &Value, path: &str, causes: &mut Vec<Cause>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in items(spec, "volumes").iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{vpath}.name")));
        } else {
            for msg in rules::is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{vpath}.name"), &json!(name), &msg));
            }
            if !names.insert(name.to_string()) {
                causes.push(Cause::duplicate(format!("{vpath}.name"), &json!(name)));
            }
        }
        let sources: Vec<&String> = v
            .as_object()
            .map(|m| m.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        match sources.as_slice() {
            [] => causes.push(Cause::new(
                "FieldValueRequired",
                vpath.clone(),
                "Required value: must specify a volume type",
            )),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    causes.push(Cause::forbidden(
                        format!("{vpath}.{s}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
    }
    names
}

struct ContainerContext {
    path: String,
    init: bool,
    host_network: bool,
}

fn validate_container(
    c: &Value,
    ctx: &ContainerContext,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    causes: &mut Vec<Cause>,
) {
    let path = ctx.path.as_str();
    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(format!("{path}.name")));
    } else {
        for msg in rules::is_dns1123_label(name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), &msg));
        }
        if !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
        }
    }
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    if image.is_empty() {
        causes.push(Cause::required(format!("{path}.image")));
    } else if image.trim() != image {
        causes.push(Cause::invalid(
            format!("{path}.image"),
            &json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    one_of(c, "imagePullPolicy", path, &PULL_POLICIES, causes);
    for (i, p) in items(c, "ports").iter().enumerate() {
        validate_container_port(p, &format!("{path}.ports[{i}]"), ctx, port_names, causes);
    }
    for (i, e) in items(c, "env").iter().enumerate() {
        validate_env_var(e, &format!("{path}.env[{i}]"), causes);
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in items(c, "volumeMounts").iter().enumerate() {
        let mpath = format!("{path}.volumeMounts[{i}]");
        let vol = m.get("name").and_then(Value::as_str).unwrap_or_default();
        if vol.is_empty() {
            causes.push(Cause::required(format!("{mpath}.name")));
        } else if !volumes.contains(vol) {
            causes.push(Cause::new(
                "FieldValueNotFound",
                format!("{mpath}.name"),
                format!("Not found: {vol:?}"),
            ));
        }
        let mount_path = m
            .get("mountPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if mount_path.is_empty() {
            causes.push(Cause::required(format!("{mpath}.mountPath")));
        } else if !mount_paths.insert(mount_path) {
            causes.push(Cause::invalid(
                format!("{mpath}.mountPath"),
                &json!(mount_path),
                "must be unique",
            ));
        }
    }
    validate_resources(c.get("resources"), &format!("{path}.resources"), causes);
    // Init containers run to completion unless they are sidecars
    // (`restartPolicy: Always`), so only sidecars may be probed.
    let sidecar = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = c.get(key).filter(|p| p.is_object()) else {
            continue;
        };
        let ppath = format!("{path}.{key}");
        if ctx.init && !sidecar {
            causes.push(Cause::forbidden(
                ppath,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        validate_probe(probe, &ppath, key != "readinessProbe", causes);
    }
}

fn validate_container_port(
    p: &Value,
    path: &str,
    ctx: &ContainerContext,
    port_names: &mut BTreeSet<String>,
    causes: &mut Vec<Cause>,
) {
    if let Some(name) = p
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        for msg in port_name_errors(name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), msg));
        }
        if !port_names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
        }
    }
    let container_port = p.get("containerPort").cloned().unwrap_or(json!(0));
    port_in_range(&container_port, format!("{path}.containerPort"), causes);
    if let Some(host_port) = p.get("hostPort").filter(|h| h.as_i64().unwrap_or(0) != 0) {
        port_in_range(host_port, format!("{path}.hostPort"), causes);
        if ctx.host_network && *host_port != container_port {
            causes.push(Cause::invalid(
                format!("{path}.hostPort"),
                host_port,
                "must match `containerPort` when `hostNetwork` is true",
            ));
        }
    }
    one_of(p, "protocol", path, &PROTOCOLS, causes);
}

/// Upstream's `IsValidPortName`: an IANA service name.
pub(super) fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|b| b.is_ascii_alphabetic()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

fn validate_env_var(e: &Value, path: &str, causes: &mut Vec<Cause>) {
    let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(format!("{path}.name")));
    } else if !is_env_var_name(name) {
        causes.push(Cause::invalid(
            format!("{path}.name"),
            &json!(name),
            &rules::regex_error(
                "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
                "[-._a-zA-Z][-._a-zA-Z0-9]*",
                &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
            ),
        ));
    }
    let Some(from) = e.get("valueFrom").filter(|v| v.is_object()) else {
        return;
    };
    let vpath = format!("{path}.valueFrom");
    let sources = [
        "fieldRef",
        "resourceFieldRef",
        "configMapKeyRef",
        "secretKeyRef",
    ]
    .iter()
    .filter(|k| from.get(**k).is_some_and(Value::is_object))
    .count();
    if sources == 0 {
        causes.push(Cause::invalid(
            vpath.clone(),
            &json!(""),
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if sources > 1 {
        causes.push(Cause::invalid(
            vpath.clone(),
            &json!(""),
            "may not have more than one field specified at a time",
        ));
    }
    if e.get("value")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        causes.push(Cause::invalid(
            vpath,
            &json!(""),
            "may not be specified when `value` is not empty",
        ));
    }
}

fn is_env_var_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    name.bytes().all(ok) && !name.as_bytes()[0].is_ascii_digit()
}

/// Requests and limits are quantities, not negative, and requests stay
/// within limits.
fn validate_resources(resources: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(resources) = resources else { return };
    let mut parsed: BTreeMap<&str, BTreeMap<&str, (i128, &str)>> = BTreeMap::new();
    for kind in ["limits", "requests"] {
        let Some(list) = resources.get(kind).and_then(Value::as_object) else {
            continue;
        };
        for (name, q) in list {
            let field = format!("{path}.{kind}[{name}]");
            let text = q.as_str().unwrap_or_default();
            match quantity::parse(text) {
                Err(msg) => causes.push(Cause::invalid(field, &json!(text), msg)),
                Ok(n) if n < 0 => causes.push(Cause::invalid(
                    field,
                    &json!(text),
                    "must be greater than or equal to 0",
                )),
                Ok(n) => {
                    parsed.entry(kind).or_default().insert(name, (n, text));
                }
            }
        }
    }
    let (Some(limits), Some(requests)) = (parsed.get("limits"), parsed.get("requests")) else {
        return;
    };
    for (name, (request, shown)) in requests {
        if let Some((limit, limit_shown)) = limits.get(name) {
            if request > limit {
                causes.push(Cause::invalid(
                    format!("{path}.requests"),
                    &json!(shown),
                    &format!("must be less than or equal to {name} limit of {limit_shown}"),
                ));
            }
        }
    }
}

fn validate_probe(probe: &Value, path: &str, success_must_be_one: bool, causes: &mut Vec<Cause>) {
    let handlers: Vec<&str> = PROBE_HANDLERS
        .into_iter()
        .filter(|k| probe.get(*k).is_some_and(Value::is_object))
        .collect();
    match handlers.as_slice() {
        [] => causes.push(Cause::new(
            "FieldValueRequired",
            path,
            "Required value: must specify a handler type",
        )),
        [_] => {}
        [_, rest @ ..] => {
            for h in rest {
                causes.push(Cause::forbidden(
                    format!("{path}.{h}"),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe, key, path, causes);
    }
    if success_must_be_one {
        if let Some(n) = probe.get("successThreshold").and_then(Value::as_i64) {
            if n != 1 {
                causes.push(Cause::invalid(
                    format!("{path}.successThreshold"),
                    &json!(n),
                    "must be 1",
                ));
            }
        }
    }
    for h in ["httpGet", "tcpSocket", "grpc"] {
        if let Some(port) = probe.get(h).and_then(|a| a.get("port")) {
            let field = format!("{path}.{h}.port");
            match port {
                Value::String(name) => {
                    for msg in port_name_errors(name) {
                        causes.push(Cause::invalid(field.clone(), port, msg));
                    }
                }
                _ => port_in_range(port, field, causes),
            }
        }
    }
}

fn validate_toleration(t: &Value, path: &str, causes: &mut Vec<Cause>) {
    let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
    let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
    match operator {
        "" | "Equal" => {
            if key.is_empty() {
                causes.push(Cause::invalid(
                    format!("{path}.operator"),
                    &json!(operator),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
        }
        "Exists" => {
            if t.get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
            {
                causes.push(Cause::invalid(
                    format!("{path}.operator"),
                    &json!(t["value"]),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{path}.operator"),
            &json!(other),
            &["Equal", "Exists"],
        )),
    }
    if let Some(effect) = t
        .get("effect")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        if !TAINT_EFFECTS.contains(&effect) {
            causes.push(Cause::not_supported(
                format!("{path}.effect"),
                &json!(effect),
                &TAINT_EFFECTS,
            ));
        }
    }
}

/// The annotation a kubelet puts on the API copy (mirror pod) of a static pod;
/// its value is the static pod's config hash.
pub(super) const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// `ValidatePodSpecificAnnotations`: a mirror pod names its node.
pub(super) fn validate_pod_specific_annotations(pod: &Value, causes: &mut Vec<Cause>) {
    let annotations = string_map(pod.pointer("/metadata/annotations"));
    if let Some(value) = annotations.get(MIRROR_POD_ANNOTATION) {
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if node.is_empty() {
            causes.push(Cause::invalid(
                format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]"),
                &json!(value),
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
}

/// `ValidatePodSpecificAnnotationUpdates`: the mirror pod annotation can be
/// neither added, changed nor removed by an update — a pod is a mirror pod
/// from its creation by the kubelet to its deletion, or never.
pub(super) fn validate_pod_specific_annotation_updates(
    new: &Value,
    old: &Value,
    causes: &mut Vec<Cause>,
) {
    let new_annotations = string_map(new.pointer("/metadata/annotations"));
    let old_annotations = string_map(old.pointer("/metadata/annotations"));
    let field = format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]");
    match (
        old_annotations.get(MIRROR_POD_ANNOTATION),
        new_annotations.get(MIRROR_POD_ANNOTATION),
    ) {
        (Some(old), new) if new != Some(old) => causes.push(Cause::forbidden(
            field,
            "may not remove or update mirror pod annotation",
        )),
        (None, Some(_)) => {
            causes.push(Cause::forbidden(field, "may not add mirror pod annotation"))
        }
        _ => {}
    }
}

/// `ValidatePodUpdate`: only images, `activeDeadlineSeconds`, added
/// tolerations and a negative grace period raised to 1 may change. The
/// scheduler's binding (setting `nodeName` once) also comes through here.
pub(super) fn validate_pod_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let mut masked = new.clone();
    for key in ["containers", "initContainers"] {
        let old_items = items(old, key);
        if let Some(list) = masked.get_mut(key).and_then(Value::as_array_mut) {
            for (i, c) in list.iter_mut().enumerate() {
                if let (Some(old_image), Some(obj)) = (
                    old_items.get(i).and_then(|o| o.get("image")),
                    c.as_object_mut(),
                ) {
                    obj.insert("image".into(), old_image.clone());
                }
            }
        }
    }
    let Some(m) = masked.as_object_mut() else {
        return;
    };
    match old.get("activeDeadlineSeconds") {
        Some(v) => m.insert("activeDeadlineSeconds".into(), v.clone()),
        None => m.remove("activeDeadlineSeconds"),
    };
    let old_tolerations = items(old, "tolerations");
    let new_tolerations = items(new, "tolerations");
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        match old.get("tolerations") {
            Some(v) => m.insert("tolerations".into(), v.clone()),
            None => m.remove("tolerations"),
        };
    }
    let old_grace = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0)
        && new.get("terminationGracePeriodSeconds") == Some(&json!(1))
    {
        m.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
    }
    let old_node = old
        .get("nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if old_node.is_empty() {
        match old.get("nodeName") {
            Some(v) => m.insert("nodeName".into(), v.clone()),
            None => m.remove("nodeName"),
        };
    }
    if masked != *old {
        causes.push(Cause::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
    if let (Some(old_deadline), Some(new_deadline)) = (
        old.get("activeDeadlineSeconds").and_then(Value::as_i64),
        new.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        if new_deadline > old_deadline {
            causes.push(Cause::invalid(
                "spec.activeDeadlineSeconds",
                &json!(new_deadline),
                "must be less than or equal to previous value",
            ));
        }
    } else if old.get("activeDeadlineSeconds").is_some() {
        causes.push(Cause::invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{messages, res};
    use super::super::validate;
    use super::*;

    fn pod(spec: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec});
        crate::registry::defaults::apply(res("", "pods"), &mut obj);
        obj
    }

    fn pod_errors(spec: Value) -> Vec<String> {
        messages(validate(res("", "pods"), &pod(spec)))
    }

    #[test]
    fn a_valid_pod_passes() {
        let got = pod_errors(json!({
            "containers": [{"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "env": [{"name": "MY_VAR.x", "value": "1"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}},
                "livenessProbe": {"httpGet": {"port": "http"}}}],
            "volumes": [{"name": "data"}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        }));
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn containers_are_required_and_need_names_and_images() {
        assert_eq!(
            pod_errors(json!({"containers": []})),
            ["spec.containers: Required value"]
        );
        let got = pod_errors(
            json!({"containers": [{"name": "a", "image": ""}, {"name": "a", "image": "x"}, {"name": "B_", "image": "x"}]}),
        );
        assert_eq!(got[0], "spec.containers[0].image: Required value");
        assert_eq!(got[1], "spec.containers[1].name: Duplicate value: \"a\"");
        assert!(got[2].starts_with(
            "spec.containers[2].name: Invalid value: \"B_\": a lowercase RFC 1123 label"
        ));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn ports_protocols_and_policies_are_checked() {
        let got = pod_errors(json!({
            "restartPolicy": "Sometimes",
            "dnsPolicy": "Maybe",
            "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Often",
                "ports": [{"containerPort": 0}, {"containerPort": 70000, "protocol": "HTTP"}]}],
        }));
        assert_eq!(
            got,
            [
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Often\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Maybe\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn volumes_and_mounts_are_checked() {
        let got = pod_errors(json!({
            "containers": [{"name": "c", "image": "x", "volumeMounts": [
                {"name": "x", "mountPath": "/a"}, {"name": "v", "mountPath": "/a"}]}],
            "volumes": [
                {"name": "v", "emptyDir": {}},
                {"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}},
            ],
        }));
        assert_eq!(
            got,
            [
                "spec.volumes[1].name: Duplicate value: \"v\"",
                "spec.volumes[1].secret: Forbidden: may not specify more than 1 volume type",
                "spec.containers[0].volumeMounts[0].name: Not found: \"x\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
            ]
        );
    }

    #[test]
    fn env_names_resources_and_probes_are_checked() {
        let got = pod_errors(json!({"containers": [{"name": "c", "image": "x",
            "env": [{"name": "1BAD"}, {"name": ""}],
            "resources": {"requests": {"cpu": "2", "memory": "lots"}, "limits": {"cpu": "1"}},
            "livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}},
            "readinessProbe": {"periodSeconds": 1},
        }]}));
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[0], "spec.containers[0].env[0].name: Invalid value: \"1BAD\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')");
        assert_eq!(got[1], "spec.containers[0].env[1].name: Required value");
        assert!(got[2].starts_with("spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match"));
        assert_eq!(got[3], "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1");
        assert_eq!(got[4], "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type");
        assert_eq!(
            got[5],
            "spec.containers[0].readinessProbe: Required value: must specify a handler type"
        );
    }

    #[test]
    fn init_containers_share_names_and_may_not_be_probed() {
        let got = pod_errors(json!({
            "initContainers": [{"name": "c", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}}],
            "containers": [{"name": "c", "image": "x"}],
        }));
        assert_eq!(
            got,
            [
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.containers[0].name: Duplicate value: \"c\"",
            ]
        );
    }

    fn update_errors(old: Value, new: Value) -> Vec<String> {
        let (old, new) = (pod(old), pod(new));
        messages(super::super::validate_update(res("", "pods"), &new, &old))
    }

    #[test]
    fn pod_updates_may_change_only_images_deadline_and_added_tolerations() {
        let base = json!({"containers": [{"name": "c", "image": "nginx:1"}], "tolerations": [{"key": "a", "operator": "Exists"}]});
        let mut image = base.clone();
        image["containers"][0]["image"] = json!("nginx:2");
        image["tolerations"] =
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        image["activeDeadlineSeconds"] = json!(30);
        image["nodeName"] = json!("node-1");
        assert!(update_errors(base.clone(), image).is_empty());

        let mut ports = base.clone();
        ports["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        assert_eq!(
            update_errors(base.clone(), ports),
            [format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}")]
        );
        let mut removed = base.clone();
        removed["tolerations"] = json!([]);
        assert_eq!(update_errors(base, removed).len(), 1);
    }

    fn annotated(annotations: Value) -> Value {
        let mut p = pod(json!({"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}));
        p["metadata"]["annotations"] = annotations;
        p
    }

    #[test]
    fn mirror_pod_annotation_may_not_be_added_changed_or_removed() {
        let errors = |old: Value, new: Value| {
            messages(super::super::validate_update(
                res("", "pods"),
                &annotated(new),
                &annotated(old),
            ))
        };
        let field = "metadata.annotations[kubernetes.io/config.mirror]";
        assert_eq!(
            errors(json!({}), json!({MIRROR_POD_ANNOTATION: "h1"})),
            [format!(
                "{field}: Forbidden: may not add mirror pod annotation"
            )]
        );
        assert_eq!(
            errors(
                json!({MIRROR_POD_ANNOTATION: "h1"}),
                json!({MIRROR_POD_ANNOTATION: "h2"})
            ),
            [format!(
                "{field}: Forbidden: may not remove or update mirror pod annotation"
            )]
        );
        assert_eq!(
            errors(json!({MIRROR_POD_ANNOTATION: "h1"}), json!({"other": "x"})).len(),
            1
        );
        assert!(errors(
            json!({MIRROR_POD_ANNOTATION: "h1"}),
            json!({MIRROR_POD_ANNOTATION: "h1", "other": "x"})
        )
        .is_empty());
    }

    #[test]
    fn mirror_pod_must_name_its_node() {
        let mut p = annotated(json!({MIRROR_POD_ANNOTATION: "h1"}));
        assert!(messages(validate(res("", "pods"), &p)).is_empty());
        p["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(
            messages(validate(res("", "pods"), &p)),
            ["metadata.annotations[kubernetes.io/config.mirror]: Invalid value: \"h1\": must set spec.nodeName if mirror pod annotation is set"]
        );
    }

    #[test]
    fn grace_period_may_only_go_from_negative_to_one() {
        let old = json!({"terminationGracePeriodSeconds": -1, "containers": [{"name": "c", "image": "x"}]});
        let mut one = old.clone();
        one["terminationGracePeriodSeconds"] = json!(1);
        assert!(update_errors(old.clone(), one).is_empty());
        let mut five = old.clone();
        five["terminationGracePeriodSeconds"] = json!(5);
        assert_eq!(update_errors(old, five).len(), 1);
    }

    #[test]
    fn port_names_follow_iana_rules() {
        assert!(port_name_errors("http").is_empty());
        assert_eq!(
            port_name_errors("8080"),
            ["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            port_name_errors("a--b"),
            ["must not contain consecutive hyphens"]
        );
        assert_eq!(
            port_name_errors("averyveryverylongname"),
            ["must be no more than 15 characters"]
        );
    }
}

//! Service validation (`ValidateService`, `ValidateServiceUpdate`): type,
//! ports, and the cluster IP that may not move once allocated. Entry
//! points: [`validate`], [`validate_update`].

use std::collections::BTreeSet;

use ferrokube_api::validation as rules;
use serde_json::{json, Value};

use super::{invalid_shown, items, one_of, port_in_range, str_at};
use crate::error::Cause;

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

pub(super) fn validate(spec: &Value, causes: &mut Vec<Cause>) {
    let kind = str_at(spec, "/type");
    let cluster_ip = str_at(spec, "/clusterIP");
    let ports = items(spec, "ports");
    one_of(spec, "type", "spec", &TYPES, causes);
    if kind == "ExternalName" {
        let name = str_at(spec, "/externalName");
        if name.is_empty() {
            causes.push(Cause::required("spec.externalName"));
        } else {
            let trimmed = name.strip_suffix('.').unwrap_or(name);
            for msg in rules::is_dns1123_subdomain(trimmed) {
                causes.push(Cause::invalid("spec.externalName", &json!(name), &msg));
            }
        }
        if !cluster_ip.is_empty() {
            causes.push(Cause::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_empty() && cluster_ip != "None" {
        causes.push(Cause::required("spec.ports"));
    }
    if cluster_ip == "None" && (kind == "NodePort" || kind == "LoadBalancer") {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &json!("None"),
            &format!("may not be set to 'None' for {kind} services"),
        ));
    }
    if !cluster_ip.is_empty()
        && cluster_ip != "None"
        && cluster_ip.parse::<std::net::IpAddr>().is_err()
    {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &json!(cluster_ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }

    let mut names = BTreeSet::new();
    let mut ports_seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = str_at(p, "/name");
        if name.is_empty() {
            if ports.len() > 1 {
                causes.push(Cause::required(format!("{path}.name")));
            }
        } else {
            for msg in rules::is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{path}.name"), &json!(name), &msg));
            }
            if !names.insert(name) {
                causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
            }
        }
        let port = p.get("port").cloned().unwrap_or(json!(0));
        port_in_range(&port, format!("{path}.port"), causes);
        one_of(p, "protocol", &path, &PROTOCOLS, causes);
        let protocol = str_at(p, "/protocol");
        if !ports_seen.insert((port.as_i64().unwrap_or(0), protocol.to_string())) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                path.clone(),
                format!(
                    "Duplicate value: core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
                ),
            ));
        }
        match p.get("targetPort") {
            Some(Value::String(s)) => {
                for msg in super::pod::port_name_errors(s) {
                    causes.push(Cause::invalid(format!("{path}.targetPort"), &json!(s), msg));
                }
            }
            Some(t @ Value::Number(_)) => port_in_range(t, format!("{path}.targetPort"), causes),
            _ => {}
        }
        let node_port = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 && kind == "ClusterIP" {
            causes.push(Cause::forbidden(
                format!("{path}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        } else if node_port != 0 {
            port_in_range(&json!(node_port), format!("{path}.nodePort"), causes);
        }
    }

    if kind == "NodePort" || kind == "LoadBalancer" {
        one_of(
            spec,
            "externalTrafficPolicy",
            "spec",
            &["Cluster", "Local"],
            causes,
        );
    } else if TYPES.contains(&kind)
        && spec
            .get("externalTrafficPolicy")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty())
    {
        causes.push(Cause::invalid(
            "spec.externalTrafficPolicy",
            &spec["externalTrafficPolicy"],
            "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
        ));
    }
    one_of(
        spec,
        "sessionAffinity",
        "spec",
        &["ClientIP", "None"],
        causes,
    );
    if let Some(policy) = spec.get("internalTrafficPolicy").and_then(Value::as_str) {
        if !["Cluster", "Local"].contains(&policy) {
            causes.push(Cause::not_supported(
                "spec.internalTrafficPolicy",
                &json!(policy),
                &["Cluster", "Local"],
            ));
        }
    }
    let selector = super::string_map(spec.get("selector"));
    for e in rules::validate_labels(&selector, "spec.selector") {
        causes.push(super::field_error(e));
    }
}

/// A Service's cluster IP stays once allocated, unless the Service turns
/// into or out of an ExternalName one. An update that leaves it empty is
/// not refused here: it gets the allocated address back or a fresh one.
pub(super) fn validate_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let old_ip = str_at(old, "/clusterIP");
    let new_ip = str_at(new, "/clusterIP");
    let external = |s: &Value| str_at(s, "/type") == "ExternalName";
    if external(new) || external(old) {
        return;
    }
    if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &json!(new_ip),
            "may not change once set",
        ));
    }
    if let (Some(a), Some(b)) = (old.get("ipFamilies"), new.get("ipFamilies")) {
        let (a, b) = (a.as_array(), b.as_array());
        if let (Some(a), Some(b)) = (a, b) {
            if !a.is_empty() && !b.is_empty() && a[0] != b[0] {
                causes.push(invalid_shown(
                    "spec.ipFamilies[0]",
                    &format!("{:?}", b[0].as_str().unwrap_or_default()),
                    "may not change once set",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{messages, res};
    use super::super::{validate as validate_object, validate_update as validate_object_update};
    use crate::registry::defaults;
    use serde_json::{json, Value};

    fn service(spec: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        defaults::apply(res("", "services"), &mut obj);
        obj
    }

    fn errors(spec: Value) -> Vec<String> {
        messages(validate_object(res("", "services"), &service(spec)))
    }

    #[test]
    fn valid_services_pass() {
        assert!(errors(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})).is_empty());
        assert!(errors(json!({"clusterIP": "None", "selector": {"app": "web"}})).is_empty());
        assert!(
            errors(json!({"type": "ExternalName", "externalName": "db.example.com"})).is_empty()
        );
        assert!(errors(json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]})).is_empty());
    }

    #[test]
    fn ports_are_required_and_checked() {
        assert_eq!(errors(json!({})), ["spec.ports: Required value"]);
        let got = errors(json!({"ports": [
            {"port": 0},
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "http", "port": 80, "nodePort": 30000},
            {"name": "web", "port": 80},
        ]}));
        assert_eq!(
            got,
            [
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[2].name: Duplicate value: \"http\"",
                "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.ports[3]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
    }

    #[test]
    fn type_and_external_name_are_checked() {
        assert_eq!(
            errors(json!({"type": "Magic", "ports": [{"port": 80}]})),
            ["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
        );
        assert_eq!(
            errors(json!({"type": "ExternalName"})),
            ["spec.externalName: Required value"]
        );
    }

    #[test]
    fn cluster_ip_may_not_change_once_set() {
        let old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        assert_eq!(
            messages(validate_object_update(res("", "services"), &new, &old)),
            ["spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": may not change once set"]
        );
        new["spec"]["clusterIP"] = json!("10.96.0.10");
        new["spec"]["ports"][0]["port"] = json!(8080);
        assert!(validate_object_update(res("", "services"), &new, &old).is_empty());
    }
}

//! ConfigMap and Secret validation: keys that can be file names, no key
//! twice, the Secret type's required keys, and `immutable: true`. Entry
//! points: [`validate_config_map`], [`validate_secret`] and their updates.

use ferrokube_api::validation as rules;
use serde_json::{json, Value};

use super::str_at;
use crate::error::Cause;

/// The annotation a service-account token Secret names its account in.
const SERVICE_ACCOUNT_NAME: &str = "/metadata/annotations/kubernetes.io~1service-account.name";
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

/// Upstream's `IsConfigMapKey`: a file name in a volume, so `[-._a-zA-Z0-9]+`,
/// not `.` or `..`, at most 253 characters.
pub(super) fn config_map_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push(rules::max_len_error(253));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if key.is_empty() || !key.bytes().all(ok) {
        errs.push(rules::regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if key == "." {
        errs.push("must not be '.'".to_string());
    } else if key == ".." {
        errs.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

fn validate_keys(obj: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(map) = obj.get(field).and_then(Value::as_object) {
        for key in map.keys() {
            for msg in config_map_key_errors(key) {
                causes.push(Cause::invalid(format!("{field}[{key}]"), &json!(key), &msg));
            }
        }
    }
}

pub(super) fn validate_config_map(obj: &Value, causes: &mut Vec<Cause>) {
    validate_keys(obj, "data", causes);
    validate_keys(obj, "binaryData", causes);
    let binary = obj.get("binaryData").and_then(Value::as_object);
    if let (Some(data), Some(binary)) = (obj.get("data").and_then(Value::as_object), binary) {
        for key in data.keys().filter(|k| binary.contains_key(*k)) {
            causes.push(Cause::invalid(
                format!("data[{key}]"),
                &json!(key),
                "duplicate of key present in binaryData",
            ));
        }
    }
    let size: usize = ["data", "binaryData"]
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_object))
        .flat_map(|m| m.iter())
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > 1024 * 1024 {
        causes.push(Cause::new(
            "FieldValueTooLong",
            "",
            "Too long: must have at most 1048576 bytes",
        ));
    }
}

pub(super) fn validate_secret(obj: &Value, causes: &mut Vec<Cause>) {
    validate_keys(obj, "data", causes);
    let has_key = |k: &str| obj.get("data").and_then(|d| d.get(k)).is_some();
    let required = |k: &str, causes: &mut Vec<Cause>| {
        if !has_key(k) {
            causes.push(Cause::required(format!("data[{k}]")));
        }
    };
    match str_at(obj, "/type") {
        "kubernetes.io/tls" => {
            required("tls.crt", causes);
            required("tls.key", causes);
        }
        "kubernetes.io/dockerconfigjson" => required(".dockerconfigjson", causes),
        "kubernetes.io/dockercfg" => required(".dockercfg", causes),
        "kubernetes.io/service-account-token" if str_at(obj, SERVICE_ACCOUNT_NAME).is_empty() => {
            causes.push(Cause::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
            ));
        }
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            causes.push(Cause::new(
                "FieldValueRequired",
                "data[username]",
                "Required value: must contain at least one of username or password",
            ));
        }
        "kubernetes.io/ssh-auth" => required("ssh-privatekey", causes),
        _ => {}
    }
}

pub(super) fn validate_secret_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let (new_type, old_type) = (str_at(new, "/type"), str_at(old, "/type"));
    if new_type != old_type {
        causes.push(Cause::invalid(
            "type",
            &json!(new_type),
            "field is immutable",
        ));
    }
    validate_immutable_data(new, old, causes);
}

/// Once `immutable: true` is stored, the data and the flag stay as they are.
pub(super) fn validate_immutable_data(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if old.get("immutable") != Some(&json!(true)) {
        return;
    }
    if new.get("immutable") != Some(&json!(true)) {
        causes.push(Cause::forbidden("immutable", IMMUTABLE_SET));
    }
    for field in ["data", "binaryData", "stringData"] {
        if new.get(field) != old.get(field) {
            causes.push(Cause::forbidden(field, IMMUTABLE_SET));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{messages, res};
    use super::super::{validate, validate_update};
    use super::*;

    fn object(extra: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "c", "namespace": "default"}});
        for (k, v) in extra.as_object().unwrap() {
            obj[k] = v.clone();
        }
        obj
    }

    #[test]
    fn config_map_keys_must_be_file_names() {
        let cm = object(
            json!({"data": {"ok.key": "1", "bad key": "2", "..x": "3", "dup": "4"}, "binaryData": {"dup": "AA=="}}),
        );
        let got = messages(validate(res("", "configmaps"), &cm));
        assert_eq!(
            got,
            [
                "data[..x]: Invalid value: \"..x\": must not start with '..'",
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData",
            ]
        );
    }

    #[test]
    fn secret_types_need_their_keys() {
        let tls = object(json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "AA=="}}));
        assert_eq!(
            messages(validate(res("", "secrets"), &tls)),
            ["data[tls.key]: Required value"]
        );
        let opaque = object(json!({"type": "Opaque", "data": {"a_b": "AA=="}}));
        assert!(validate(res("", "secrets"), &opaque).is_empty());
    }

    #[test]
    fn secret_type_and_immutable_data_do_not_change() {
        let old = object(json!({"type": "Opaque", "immutable": true, "data": {"a": "AA=="}}));
        let mut new = old.clone();
        new["type"] = json!("kubernetes.io/tls");
        new["data"]["b"] = json!("AA==");
        assert_eq!(
            messages(validate_update(res("", "secrets"), &new, &old)),
            [
                "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        let old_cm = object(json!({"immutable": true, "data": {"a": "1"}}));
        let mut new_cm = old_cm.clone();
        new_cm["immutable"] = json!(false);
        assert_eq!(
            messages(validate_update(res("", "configmaps"), &new_cm, &old_cm)),
            ["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let mutable = object(json!({"data": {"a": "1"}}));
        let mut changed = mutable.clone();
        changed["data"]["a"] = json!("2");
        assert!(validate_update(res("", "configmaps"), &changed, &mutable).is_empty());
    }
}

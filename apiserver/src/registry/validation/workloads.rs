//! Workload validation: Deployments, ReplicaSets, StatefulSets, DaemonSets,
//! ReplicationControllers, Jobs and CronJobs — selector against template,
//! the template's pod spec, counts, and what an update may not change.
//! Entry points: `validate_*` per kind.

use ferrokube_api::k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use ferrokube_api::selector::label::LabelSelector;
use ferrokube_api::validation as rules;
use serde_json::{json, Value};

use super::{
    go_string_map, invalid_shown, nonnegative, one_of, pod, str_at, string_map,
    validate_labels_and_annotations,
};
use crate::error::Cause;

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";
const IMMUTABLE: &str = "field is immutable";

/// Deployment, ReplicaSet, StatefulSet and DaemonSet specs.
pub(super) fn validate_apps(kind: &str, spec: &Value, causes: &mut Vec<Cause>) {
    if kind != "DaemonSet" {
        nonnegative(spec, "replicas", "spec", causes);
    }
    nonnegative(spec, "minReadySeconds", "spec", causes);
    nonnegative(spec, "revisionHistoryLimit", "spec", causes);
    let what = match kind {
        "Deployment" => "deployment",
        "ReplicaSet" => "replicaset",
        "StatefulSet" => "statefulset",
        _ => "daemonset",
    };
    let selector = validate_selector(spec, what, causes);
    validate_template(spec, "spec.template", selector.as_ref(), causes);
    template_restart_policy_always(spec, causes);
    match kind {
        "Deployment" => validate_deployment_strategy(spec, causes),
        "StatefulSet" => {
            let service = str_at(spec, "/serviceName");
            if !service.is_empty() {
                for msg in rules::is_dns1123_label(service) {
                    causes.push(Cause::invalid("spec.serviceName", &json!(service), &msg));
                }
            }
            one_of(
                spec,
                "podManagementPolicy",
                "spec",
                &["OrderedReady", "Parallel"],
                causes,
            );
            one_of(
                &spec["updateStrategy"],
                "type",
                "spec.updateStrategy",
                &["RollingUpdate", "OnDelete"],
                causes,
            );
        }
        "DaemonSet" => one_of(
            &spec["updateStrategy"],
            "type",
            "spec.updateStrategy",
            &["RollingUpdate", "OnDelete"],
            causes,
        ),
        _ => {}
    }
}

fn validate_deployment_strategy(spec: &Value, causes: &mut Vec<Cause>) {
    let strategy = &spec["strategy"];
    one_of(
        strategy,
        "type",
        "spec.strategy",
        &["Recreate", "RollingUpdate"],
        causes,
    );
    if strategy["type"] == "Recreate" && strategy.get("rollingUpdate").is_some_and(|r| !r.is_null())
    {
        causes.push(Cause::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        ));
    }
    let rolling = &strategy["rollingUpdate"];
    let zero = |v: &Value| {
        matches!(v, Value::Number(n) if n.as_i64() == Some(0))
            || matches!(v, Value::String(s) if s == "0%" || s == "0")
    };
    if let (Some(u), Some(s)) = (rolling.get("maxUnavailable"), rolling.get("maxSurge")) {
        if zero(u) && zero(s) {
            causes.push(Cause::invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                u,
                "may not be 0 when `maxSurge` is 0",
            ));
        }
    }
}

/// `spec.selector` of an apps/v1 workload: required and not empty; the
/// parsed selector when usable.
fn validate_selector(spec: &Value, what: &str, causes: &mut Vec<Cause>) -> Option<LabelSelector> {
    let Some(raw) = spec.get("selector").filter(|s| !s.is_null()) else {
        causes.push(Cause::required("spec.selector"));
        return None;
    };
    let parsed = serde_json::from_value::<metav1::LabelSelector>(raw.clone())
        .ok()
        .and_then(|s| LabelSelector::from_metav1(&s).ok());
    match parsed {
        None => {
            causes.push(invalid_shown(
                "spec.selector",
                &go_label_selector(raw),
                "invalid label selector",
            ));
            None
        }
        Some(sel) if sel.is_empty() => {
            causes.push(invalid_shown(
                "spec.selector",
                &go_label_selector(raw),
                &format!("empty selector is invalid for {what}"),
            ));
            None
        }
        Some(sel) => Some(sel),
    }
}

/// The template at `path` (`spec.template`): metadata, that the selector
/// selects its labels, and its pod spec.
fn validate_template(
    spec: &Value,
    path: &str,
    selector: Option<&LabelSelector>,
    causes: &mut Vec<Cause>,
) {
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        causes.push(Cause::required(path));
        return;
    };
    validate_labels_and_annotations(
        template.get("metadata"),
        &format!("{path}.metadata"),
        causes,
    );
    let labels_value = template.pointer("/metadata/labels");
    if let Some(sel) = selector {
        if !sel.matches(&string_map(labels_value)) {
            causes.push(invalid_shown(
                format!("{path}.metadata.labels"),
                &go_string_map(labels_value),
                SELECTOR_MISMATCH,
            ));
        }
    }
    match template.get("spec").filter(|s| s.is_object()) {
        Some(pod_spec) => pod::validate_pod_spec(pod_spec, &format!("{path}.spec"), causes),
        None => causes.push(Cause::required(format!("{path}.spec.containers"))),
    }
}

/// Controllers that keep pods running accept only `Always`.
fn template_restart_policy_always(spec: &Value, causes: &mut Vec<Cause>) {
    let policy = str_at(spec, "/template/spec/restartPolicy");
    if !policy.is_empty() && policy != "Always" {
        causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(policy),
            &["Always"],
        ));
    }
}

/// The legacy controller's selector is a plain map.
pub(super) fn validate_replication_controller(spec: &Value, causes: &mut Vec<Cause>) {
    nonnegative(spec, "replicas", "spec", causes);
    nonnegative(spec, "minReadySeconds", "spec", causes);
    let selector = string_map(spec.get("selector"));
    if selector.is_empty() {
        causes.push(Cause::required("spec.selector"));
    }
    for e in rules::validate_labels(&selector, "spec.selector") {
        causes.push(super::field_error(e));
    }
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        causes.push(Cause::required("spec.template"));
        return;
    };
    validate_labels_and_annotations(template.get("metadata"), "spec.template.metadata", causes);
    let labels_value = template.pointer("/metadata/labels");
    let labels = string_map(labels_value);
    if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        causes.push(invalid_shown(
            "spec.template.metadata.labels",
            &go_string_map(labels_value),
            SELECTOR_MISMATCH,
        ));
    }
    match template.get("spec").filter(|s| s.is_object()) {
        Some(pod_spec) => pod::validate_pod_spec(pod_spec, "spec.template.spec", causes),
        None => causes.push(Cause::required("spec.template.spec.containers")),
    }
    template_restart_policy_always(spec, causes);
}

/// apps/v1 selectors never change after create.
pub(super) fn validate_apps_update(kind: &str, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if new.get("selector") != old.get("selector") {
        causes.push(invalid_shown(
            "spec.selector",
            &go_label_selector(new.get("selector").unwrap_or(&Value::Null)),
            IMMUTABLE,
        ));
    }
    if kind == "StatefulSet" {
        // What upstream lets a StatefulSet update touch.
        let mut masked = new.clone();
        let mutable = [
            "replicas",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "ordinals",
            "revisionHistoryLimit",
        ];
        if let (Some(m), Some(o)) = (masked.as_object_mut(), old.as_object()) {
            for key in mutable {
                match o.get(key) {
                    Some(v) => m.insert(key.to_string(), v.clone()),
                    None => m.remove(key),
                };
            }
        }
        if masked != *old {
            causes.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

/// A Job: counts, restart policy, and — unless `manualSelector` — the
/// selector the apiserver generated from the Job's uid.
pub(super) fn validate_job(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_job_spec(spec, "spec", causes);
    if spec.get("manualSelector") != Some(&json!(true)) {
        let uid = str_at(obj, "/metadata/uid");
        let selected = str_at(
            spec,
            "/selector/matchLabels/batch.kubernetes.io~1controller-uid",
        );
        if !uid.is_empty() && selected != uid {
            causes.push(invalid_shown(
                "spec.selector",
                &go_label_selector(&spec["selector"]),
                "`selector` not auto-generated",
            ));
        }
    }
}

fn validate_job_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec, key, path, causes);
    }
    if spec.get("activeDeadlineSeconds").and_then(Value::as_i64) == Some(0) {
        causes.push(Cause::invalid(
            format!("{path}.activeDeadlineSeconds"),
            &json!(0),
            "must be greater than 0",
        ));
    }
    if let Some(mode) = spec.get("completionMode").and_then(Value::as_str) {
        if mode != "NonIndexed" && mode != "Indexed" {
            causes.push(Cause::not_supported(
                format!("{path}.completionMode"),
                &json!(mode),
                &["NonIndexed", "Indexed"],
            ));
        }
    }
    if spec["completionMode"] == "Indexed" && spec.get("completions").is_none_or(Value::is_null) {
        causes.push(Cause::new(
            "FieldValueRequired",
            format!("{path}.completions"),
            "Required value: when completion mode is Indexed",
        ));
    }
    let selector = match spec.get("selector").filter(|s| !s.is_null()) {
        None => {
            causes.push(Cause::required(format!("{path}.selector")));
            None
        }
        Some(raw) => serde_json::from_value::<metav1::LabelSelector>(raw.clone())
            .ok()
            .and_then(|s| LabelSelector::from_metav1(&s).ok()),
    };
    validate_template(spec, &format!("{path}.template"), selector.as_ref(), causes);
    let policy_path = format!("{path}.template.spec.restartPolicy");
    match str_at(spec, "/template/spec/restartPolicy") {
        "" | "Always" => causes.push(Cause::new(
            "FieldValueRequired",
            policy_path,
            "Required value: valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {}
        other => causes.push(Cause::not_supported(
            policy_path,
            &json!(other),
            &["OnFailure", "Never"],
        )),
    }
}

/// A Job's selector and template are fixed once created.
pub(super) fn validate_job_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if new.get("selector") != old.get("selector") {
        causes.push(invalid_shown(
            "spec.selector",
            &go_label_selector(new.get("selector").unwrap_or(&Value::Null)),
            IMMUTABLE,
        ));
    }
    if new.get("template") != old.get("template") {
        causes.push(invalid_shown(
            "spec.template",
            "core.PodTemplateSpec{...}",
            IMMUTABLE,
        ));
    }
    if new.get("completions") != old.get("completions") && new["completionMode"] == "Indexed" {
        causes.push(Cause::invalid(
            "spec.completions",
            &new["completions"],
            IMMUTABLE,
        ));
    }
    if new.get("completionMode") != old.get("completionMode") {
        causes.push(Cause::invalid(
            "spec.completionMode",
            &new["completionMode"],
            IMMUTABLE,
        ));
    }
}

/// A CronJob: a schedule cron understands, and a valid Job template.
pub(super) fn validate_cron_job(spec: &Value, causes: &mut Vec<Cause>) {
    let schedule = str_at(spec, "/schedule");
    if schedule.is_empty() {
        causes.push(Cause::required("spec.schedule"));
    } else if let Err(msg) = parse_schedule(schedule) {
        causes.push(Cause::invalid("spec.schedule", &json!(schedule), &msg));
    }
    if schedule.contains("TZ=") || schedule.contains("CRON_TZ=") {
        causes.push(Cause::invalid(
            "spec.schedule",
            &json!(schedule),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    }
    one_of(
        spec,
        "concurrencyPolicy",
        "spec",
        &["Allow", "Forbid", "Replace"],
        causes,
    );
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(spec, key, "spec", causes);
    }
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
    // The selector is generated per Job, so a template need not carry one.
    let mut with_selector = job_spec.clone();
    if with_selector.get("selector").is_none_or(Value::is_null) && with_selector.is_object() {
        let labels = with_selector
            .pointer("/template/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        with_selector["selector"] = json!({"matchLabels": labels});
    }
    validate_job_spec(&with_selector, "spec.jobTemplate.spec", causes);
}

/// robfig/cron's standard parser as CronJobs use it: five fields or a
/// predefined `@descriptor`; the error texts are cron's.
fn parse_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if let Some(d) = s.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ if d.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {s}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {s}",
            fields.len()
        ));
    }
    const BOUNDS: [(u32, u32, &[&str]); 5] = [
        (0, 59, &[]),
        (0, 23, &[]),
        (1, 31, &[]),
        (
            1,
            12,
            &[
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ],
        ),
        (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
    ];
    for (field, (min, max, names)) in fields.iter().zip(BOUNDS) {
        for part in field.split(',') {
            parse_range(part, min, max, names)?;
        }
    }
    Ok(())
}

fn parse_range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + if min == 1 { 1 } else { 0 });
        }
        s.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })
    };
    let (start, end) = if range == "*" || range == "?" {
        (min, max)
    } else {
        match range.split_once('-') {
            Some((a, b)) => (value(a)?, value(b)?),
            None => {
                let v = value(range)?;
                (v, if step.is_some() { max } else { v })
            }
        }
    };
    if let Some(step) = step {
        let n = value(step)?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

/// Go's `%#v` of a `*metav1.LabelSelector`, as upstream prints a bad one.
fn go_label_selector(raw: &Value) -> String {
    if raw.is_null() {
        return "null".to_string();
    }
    let labels = raw.get("matchLabels").filter(|l| !l.is_null());
    let exprs = match raw.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let shown: Vec<String> = list
                .iter()
                .map(|e| {
                    let values: Vec<String> = e
                        .get("values")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                        .collect();
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:[]string{{{}}}}}",
                        str_at(e, "/key"),
                        str_at(e, "/operator"),
                        values.join(", ")
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", shown.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(labels)
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{messages, res};
    use super::super::{validate, validate_update};
    use super::*;
    use crate::registry::defaults;

    fn object(group: &str, plural: &str, spec: Value) -> Value {
        let mut obj =
            json!({"metadata": {"name": "w", "namespace": "default", "uid": "u-1"}, "spec": spec});
        defaults::apply(res(group, plural), &mut obj);
        obj
    }

    fn errors(group: &str, plural: &str, spec: Value) -> Vec<String> {
        messages(validate(res(group, plural), &object(group, plural, spec)))
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    #[test]
    fn valid_workloads_pass() {
        let spec = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "x": "y"}))});
        for plural in ["deployments", "replicasets", "statefulsets", "daemonsets"] {
            assert!(errors("apps", plural, spec.clone()).is_empty(), "{plural}");
        }
        let rc = json!({"template": template(json!({"app": "web"}))});
        assert!(errors("", "replicationcontrollers", rc).is_empty());
    }

    #[test]
    fn selector_is_required_and_must_match_the_template() {
        let got = errors(
            "apps",
            "deployments",
            json!({"template": template(json!({"app": "web"}))}),
        );
        assert_eq!(got, ["spec.selector: Required value"]);
        let got = errors(
            "apps",
            "deployments",
            json!({"replicas": -1, "selector": {"matchLabels": {"app": "db"}}, "template": template(json!({"app": "web"}))}),
        );
        assert_eq!(
            got,
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
        let got = errors(
            "apps",
            "replicasets",
            json!({"selector": {}, "template": template(json!({"app": "web"}))}),
        );
        assert_eq!(
            got,
            ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for replicaset"]
        );
    }

    #[test]
    fn templates_of_long_running_workloads_restart_always() {
        let mut t = template(json!({"app": "web"}));
        t["spec"]["restartPolicy"] = json!("Never");
        t["spec"]["containers"][0]["image"] = json!("");
        let got = errors(
            "apps",
            "daemonsets",
            json!({"selector": {"matchLabels": {"app": "web"}}, "template": t}),
        );
        assert_eq!(
            got,
            [
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn stateful_set_service_name_is_a_dns_label() {
        let got = errors(
            "apps",
            "statefulsets",
            json!({"serviceName": "Bad_Name", "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
        );
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with(
            "spec.serviceName: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
        ));
    }

    #[test]
    fn apps_selectors_are_immutable() {
        let spec = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "v": "2"}))});
        let old = object("apps", "deployments", spec.clone());
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        new["spec"]["replicas"] = json!(5);
        assert_eq!(
            messages(validate_update(res("apps", "deployments"), &new, &old)),
            ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
        let old = object("apps", "statefulsets", spec);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        assert!(validate_update(res("apps", "statefulsets"), &new, &old).is_empty());
        new["spec"]["serviceName"] = json!("other");
        assert_eq!(
            validate_update(res("apps", "statefulsets"), &new, &old).len(),
            1
        );
    }

    #[test]
    fn rc_selector_must_match_template_labels() {
        let got = errors(
            "",
            "replicationcontrollers",
            json!({"selector": {"app": "db"}, "template": template(json!({"app": "web"}))}),
        );
        assert_eq!(
            got,
            ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn jobs_need_a_terminating_restart_policy() {
        let got = errors("batch", "jobs", json!({"template": template(json!({}))}));
        assert_eq!(
            got,
            ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        let mut t = template(json!({}));
        t["spec"]["restartPolicy"] = json!("OnFailure");
        assert!(errors("batch", "jobs", json!({"template": t})).is_empty());
    }

    #[test]
    fn job_selector_must_be_the_generated_one_and_template_is_immutable() {
        let mut t = template(json!({}));
        t["spec"]["restartPolicy"] = json!("Never");
        let old = object("batch", "jobs", json!({"template": t}));
        let mut forged = old.clone();
        forged["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"] =
            json!("other");
        let got = messages(validate(res("batch", "jobs"), &forged));
        assert!(
            got.iter()
                .any(|m| m.ends_with("`selector` not auto-generated")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m.ends_with("`selector` does not match template `labels`")),
            "{got:?}"
        );

        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["spec"]["parallelism"] = json!(4);
        assert_eq!(
            messages(validate_update(res("batch", "jobs"), &new, &old)),
            ["spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"]
        );
    }

    #[test]
    fn cron_schedules_are_checked_like_cron() {
        let mut t = template(json!({}));
        t["spec"]["restartPolicy"] = json!("OnFailure");
        let cron = |schedule: &str| {
            errors(
                "batch",
                "cronjobs",
                json!({"schedule": schedule, "jobTemplate": {"spec": {"template": t.clone()}}}),
            )
        };
        for ok in [
            "*/5 * * * *",
            "0 0 1 jan,jul mon-fri",
            "@hourly",
            "0-30/10 9-17 * * 1-5",
        ] {
            assert!(cron(ok).is_empty(), "{ok}: {:?}", cron(ok));
        }
        assert_eq!(cron(""), ["spec.schedule: Required value"]);
        assert_eq!(
            cron("* * *"),
            ["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: * * *"]
        );
        assert_eq!(
            cron("61 * * * *"),
            ["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
        );
        assert_eq!(
            cron("@sometimes"),
            ["spec.schedule: Invalid value: \"@sometimes\": unrecognized descriptor: @sometimes"]
        );
    }
}

//! Field selectors as upstream's `k8s.io/apimachinery/pkg/fields` parses and
//! matches them, plus each kind's selectable fields as upstream's registries
//! expose them. Entry points: [`FieldSelector::parse`], [`field_set`],
//! [`validate_fields`].

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A parse or conversion failure; `Display` is upstream's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term had no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// An unescaped `,` or `=` in a value. Upstream prints the rune with `%v`,
    /// i.e. as its code point number.
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
    /// A field the kind's registry does not index (kinds with their own
    /// field-label conversion function).
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
    /// A field other than `metadata.name`/`metadata.namespace` on a kind
    /// without its own conversion function (upstream's default conversion).
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    NotAKnownFieldSelector(String),
}

/// `=`/`==` (equal) or `!=` (not equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field op value` term, value unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    /// A missing field reads as the empty string, as upstream's `fields.Set.Get`.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        let have = fields.get(&self.field).map(String::as_str).unwrap_or("");
        match self.operator {
            FieldOperator::Equals => have == self.value,
            FieldOperator::NotEquals => have != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A conjunction of field requirements in upstream's order (terms sorted as
/// strings before parsing). The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Upstream's `fields.ParseSelector`: terms split on unescaped `,`, each
    /// split at the first `!=`, `==` or `=`; values unescape `\\`, `\,`, `\=`.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms.iter().filter(|t| !t.is_empty()) {
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(FieldSelectorError::InvalidTerm {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: unescape_value(raw)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value `field` must equal, if some `field=value` term pins it; the
    /// apiserver uses this for `metadata.name` / `metadata.namespace` to read
    /// one etcd key or prefix instead of the whole resource.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(fields))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits on commas not preceded by a backslash escape; escapes are kept.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` are tried before `=` at each
/// position so `a==b` does not leave `=b` as the value.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

/// Upstream's `fields.EscapeValue`: `\` → `\\`, `,` → `\,`, `=` → `\=`.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Upstream's `fields.UnescapeValue`.
pub fn unescape_value(s: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(FieldSelectorError::InvalidEscapeSequence(format!("\\{c}")));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

/// The field labels a kind accepts beyond `metadata.name` and, for
/// namespaced kinds, `metadata.namespace` (upstream's `XToSelectableFields`).
/// `None` for kinds that only use the generic object-meta fields.
pub fn selectable_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Service" => &["spec.clusterIP", "spec.type"],
        "ReplicationController" | "ReplicaSet" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => return None,
    })
}

/// True for kinds upstream registers a field-label conversion function for;
/// others fall back to `DefaultMetaV1FieldSelectorConversion`.
fn has_conversion_func(kind: &str) -> bool {
    matches!(
        kind,
        "Pod"
            | "Node"
            | "ReplicationController"
            | "Event"
            | "Namespace"
            | "Secret"
            | "Service"
            | "ReplicaSet"
            | "Job"
    )
}

/// Upstream's field-label conversion for `kind`: which labels a list or
/// watch may select on. Pod's legacy `spec.host` is accepted (it means
/// `spec.nodeName`, see [`convert_field_label`]).
pub fn validate_fields(kind: &str, selector: &FieldSelector) -> Result<(), FieldSelectorError> {
    for r in selector.requirements() {
        convert_field_label(kind, &r.field)?;
    }
    Ok(())
}

/// Upstream's `ConvertFieldLabel`: the canonical label for `label`, or the
/// error the apiserver returns in a 400.
pub fn convert_field_label(kind: &str, label: &str) -> Result<&'static str, FieldSelectorError> {
    let known = |l: &str| -> Option<&'static str> {
        ["metadata.name", "metadata.namespace"]
            .into_iter()
            .chain(selectable_fields(kind).unwrap_or(&[]).iter().copied())
            .find(|f| *f == l)
    };
    if !has_conversion_func(kind) {
        return known(label)
            .ok_or_else(|| FieldSelectorError::NotAKnownFieldSelector(label.to_string()));
    }
    if kind == "Pod" && label == "spec.host" {
        return Ok("spec.nodeName");
    }
    // Upstream's Node and Namespace conversions omit metadata.namespace.
    if matches!(kind, "Node" | "Namespace") && label == "metadata.namespace" {
        return Err(FieldSelectorError::FieldLabelNotSupported(
            label.to_string(),
        ));
    }
    known(label).ok_or_else(|| FieldSelectorError::FieldLabelNotSupported(label.to_string()))
}

/// Rewrites legacy labels (Pod `spec.host`) to their canonical names after
/// [`validate_fields`] accepted the selector.
pub fn convert_fields(
    kind: &str,
    selector: &FieldSelector,
) -> Result<FieldSelector, FieldSelectorError> {
    let requirements = selector
        .requirements()
        .iter()
        .map(|r| {
            Ok(FieldRequirement {
                field: convert_field_label(kind, &r.field)?.to_string(),
                operator: r.operator,
                value: r.value.clone(),
            })
        })
        .collect::<Result<Vec<_>, FieldSelectorError>>()?;
    Ok(FieldSelector { requirements })
}

fn text(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn boolean(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "false".to_string(),
        }
    }
    v.as_bool().unwrap_or(false).to_string()
}

fn integer(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "0".to_string(),
        }
    }
    v.as_i64().unwrap_or(0).to_string()
}

/// The field set upstream's registry computes for an object of `kind` (its
/// `GetAttrs`): `metadata.name`, `metadata.namespace` for namespaced kinds,
/// plus the kind's [`selectable_fields`], formatted as Go prints them (absent
/// strings empty, booleans `true`/`false`, integers in decimal).
pub fn field_set(kind: &str, obj: &Value) -> BTreeMap<String, String> {
    let mut set = BTreeMap::new();
    set.insert(
        "metadata.name".to_string(),
        text(obj, &["metadata", "name"]),
    );
    let cluster_scoped = crate::resources::RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .is_some_and(|r| !r.namespaced);
    if !cluster_scoped {
        set.insert(
            "metadata.namespace".to_string(),
            text(obj, &["metadata", "namespace"]),
        );
    }
    let mut put = |k: &str, v: String| {
        set.insert(k.to_string(), v);
    };
    match kind {
        "Pod" => {
            for f in [
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.nominatedNodeName",
            ] {
                let path: Vec<&str> = f.split('.').collect();
                put(f, text(obj, &path));
            }
            put("spec.hostNetwork", boolean(obj, &["spec", "hostNetwork"]));
            // Upstream: podIP is the first of status.podIPs; podIPs lists them all.
            let ips: Vec<String> = obj
                .pointer("/status/podIPs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|ip| ip.get("ip").and_then(Value::as_str))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let first = ips
                .first()
                .cloned()
                .unwrap_or_else(|| text(obj, &["status", "podIP"]));
            put("status.podIP", first);
            // status.podIPs is an accepted label but upstream never fills it
            // in the field set, so selecting on it compares against "".
        }
        "Event" => {
            for f in [
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            ] {
                put(
                    &format!("involvedObject.{f}"),
                    text(obj, &["involvedObject", f]),
                );
            }
            put("reason", text(obj, &["reason"]));
            put("reportingComponent", text(obj, &["reportingComponent"]));
            put("source", text(obj, &["source", "component"]));
            put("type", text(obj, &["type"]));
        }
        "Secret" => put("type", text(obj, &["type"])),
        "Node" => put(
            "spec.unschedulable",
            boolean(obj, &["spec", "unschedulable"]),
        ),
        "Namespace" => put("status.phase", text(obj, &["status", "phase"])),
        "Service" => {
            put("spec.clusterIP", text(obj, &["spec", "clusterIP"]));
            put("spec.type", text(obj, &["spec", "type"]));
        }
        "ReplicationController" | "ReplicaSet" => {
            put("status.replicas", integer(obj, &["status", "replicas"]))
        }
        "Job" => put("status.successful", integer(obj, &["status", "succeeded"])),
        _ => {}
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_equality_terms_in_sorted_order() {
        let sel = FieldSelector::parse("status.phase!=Failed,metadata.name==web").unwrap();
        assert_eq!(sel.to_string(), "metadata.name=web,status.phase!=Failed");
        assert_eq!(sel.required_value("metadata.name"), Some("web"));
        assert_eq!(sel.required_value("status.phase"), None);
        assert!(sel.matches(&fields(&[
            ("metadata.name", "web"),
            ("status.phase", "Running")
        ])));
        assert!(!sel.matches(&fields(&[
            ("metadata.name", "web"),
            ("status.phase", "Failed")
        ])));
    }

    #[test]
    fn empty_selector_and_empty_terms_match_everything() {
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
        assert!(FieldSelector::parse("").unwrap().matches(&fields(&[])));
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let sel = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(sel.matches(&fields(&[])));
        let sel = FieldSelector::parse("spec.nodeName!=").unwrap();
        assert!(!sel.matches(&fields(&[])));
    }

    #[test]
    fn backslash_escapes_commas_and_equals() {
        let sel = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(sel.requirements()[0].value, r"a,b=c\d");
        assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c\\d");
    }

    #[test]
    fn errors_use_upstream_wording() {
        assert_eq!(
            FieldSelector::parse("a=b,c").unwrap_err().to_string(),
            "invalid selector: 'a=b,c'; can't understand 'c'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\c").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \c"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn unsupported_labels_use_upstream_wording() {
        let sel = FieldSelector::parse("spec.foo=x").unwrap();
        assert_eq!(
            validate_fields("Pod", &sel).unwrap_err().to_string(),
            "field label not supported: spec.foo"
        );
        assert_eq!(
            validate_fields("ConfigMap", &sel).unwrap_err().to_string(),
            "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        let ns = FieldSelector::parse("metadata.namespace=x").unwrap();
        assert!(validate_fields("ConfigMap", &ns).is_ok());
        assert!(validate_fields("Pod", &ns).is_ok());
        assert!(validate_fields("Node", &ns).is_err());
        for (kind, field) in [
            ("Pod", "spec.nodeName"),
            ("Pod", "status.podIP"),
            ("Event", "involvedObject.uid"),
            ("Secret", "type"),
            ("Node", "spec.unschedulable"),
            ("Namespace", "status.phase"),
            ("ReplicaSet", "status.replicas"),
            ("ReplicationController", "status.replicas"),
            ("Job", "status.successful"),
            ("Service", "spec.clusterIP"),
        ] {
            let sel = FieldSelector::parse(&format!("{field}=x")).unwrap();
            assert!(validate_fields(kind, &sel).is_ok(), "{kind} {field}");
        }
    }

    #[test]
    fn pod_spec_host_means_node_name() {
        let sel = FieldSelector::parse("spec.host=n1").unwrap();
        assert!(validate_fields("Pod", &sel).is_ok());
        let converted = convert_fields("Pod", &sel).unwrap();
        assert_eq!(converted.to_string(), "spec.nodeName=n1");
    }

    #[test]
    fn pod_field_set_matches_upstream_registry() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                       "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}
        });
        let set = field_set("Pod", &pod);
        assert_eq!(set["metadata.name"], "web");
        assert_eq!(set["metadata.namespace"], "default");
        assert_eq!(set["spec.nodeName"], "n1");
        assert_eq!(set["spec.hostNetwork"], "false");
        assert_eq!(set["status.podIP"], "10.0.0.5");
        assert!(!set.contains_key("status.podIPs"));
        assert_eq!(set["status.nominatedNodeName"], "");
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded").unwrap();
        assert!(sel.matches(&set));
    }

    #[test]
    fn other_kinds_field_sets() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let set = field_set("Node", &node);
        assert_eq!(set["spec.unschedulable"], "true");
        assert!(!set.contains_key("metadata.namespace"));
        let ev = json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "web"},
                        "reason": "Started", "source": {"component": "kubelet"}, "type": "Normal"});
        let set = field_set("Event", &ev);
        assert_eq!(set["involvedObject.kind"], "Pod");
        assert_eq!(set["involvedObject.uid"], "");
        assert_eq!(set["source"], "kubelet");
        assert_eq!(set["type"], "Normal");
        let rs = json!({"metadata": {"name": "r", "namespace": "d"}, "status": {"replicas": 3}});
        assert_eq!(field_set("ReplicaSet", &rs)["status.replicas"], "3");
        let job = json!({"metadata": {"name": "j", "namespace": "d"}, "status": {"succeeded": 2}});
        assert_eq!(field_set("Job", &job)["status.successful"], "2");
        let secret = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"});
        assert_eq!(field_set("Secret", &secret)["type"], "Opaque");
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}});
        assert_eq!(field_set("ConfigMap", &cm).len(), 2);
    }

    proptest! {
        #[test]
        fn escaped_values_round_trip(v in "[a-z,=\\\\]{0,12}") {
            let sel = FieldSelector::parse(&format!("metadata.name={}", escape_value(&v))).unwrap();
            prop_assert_eq!(&sel.requirements()[0].value, &v);
            let again = FieldSelector::parse(&sel.to_string()).unwrap();
            prop_assert_eq!(again, sel);
        }
    }
}

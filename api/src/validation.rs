//! Name, label and annotation validation with upstream's exact messages
//! (k8s.io/apimachinery `pkg/util/validation` and `pkg/api/validation`).
//! Entry points: the `is_*` predicates, [`validate_name`], [`validate_labels`],
//! [`validate_annotations`] and [`generate_name`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use rand::Rng;
use regex::Regex;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
/// Upstream's `LabelValueMaxLength`.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
/// Upstream's `DNS1123LabelMaxLength`.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;

const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
/// Upstream's `DNS1123SubdomainMaxLength`.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
/// Upstream's `DNS1035LabelMaxLength`.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;

/// Upstream's `TotalAnnotationSizeLimitB`: keys plus values, in bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * 1024;

/// The alphabet of upstream's `k8s.io/apimachinery/pkg/util/rand.String`:
/// no vowels (no accidental words) and no look-alikes (0/o, 1/l, 3/e).
pub const GENERATED_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const MAX_NAME_LENGTH: usize = 63;
const RANDOM_LENGTH: usize = 5;
/// Upstream's `MaxGeneratedNameLength`: the longest prefix kept by [`generate_name`].
pub const MAX_GENERATED_NAME_LENGTH: usize = MAX_NAME_LENGTH - RANDOM_LENGTH;

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^(?:{fmt})$")).expect("upstream's validation regexes compile")
}

static QUALIFIED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));
static DNS1123_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FMT));
static DNS1035_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL_FMT));

/// Upstream's `EmptyError`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream's `MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream's `RegexError`, including its quirk of a comma before each " or ".
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// A label key or annotation key: an optional DNS-1123 subdomain prefix and
/// `/`, then a name of at most 63 alphanumerics, `-`, `_` or `.`.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !QUALIFIED_NAME_RE.is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`
/// starting and ending with an alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !LABEL_VALUE_RE.is_match(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// RFC 1123 label: the rule for namespace names.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !DNS1123_LABEL_RE.is_match(value) {
        if DNS1123_SUBDOMAIN_RE.is_match(value) {
            // A valid subdomain but not a label: the length was checked, so dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// RFC 1123 subdomain: the rule for most object names.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// RFC 1035 label: the rule for service names (they become DNS labels and
/// environment variable names, so they must start with a letter).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !DNS1035_LABEL_RE.is_match(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Upstream's `path.IsValidPathSegmentName`: the rule for RBAC object names.
pub fn is_valid_path_segment_name(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    let mut errs = Vec::new();
    for illegal in ["/", "%"] {
        if value.contains(illegal) {
            errs.push(format!("may not contain '{illegal}'"));
        }
    }
    errs
}

/// Which rule a kind's `metadata.name` follows, as upstream's `ValidateXName`
/// functions choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`: Pod, Node, ConfigMap, Secret, Deployment and most others.
    Dns1123Subdomain,
    /// `NameIsDNSLabel`: Namespace.
    Dns1123Label,
    /// `NameIsDNS1035Label`: Service.
    Dns1035Label,
    /// `path.ValidatePathSegmentName`: Role, RoleBinding, ClusterRole, ClusterRoleBinding.
    PathSegment,
}

impl NameRule {
    /// Upstream's messages for `name` under this rule; empty when valid.
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => is_valid_path_segment_name(name),
        }
    }
}

/// The rule `kind`'s `metadata.name` follows. Kinds upstream validates with
/// `NameIsDNSSubdomain` (and kinds unknown here) get [`NameRule::Dns1123Subdomain`].
pub fn name_rule(kind: &str) -> NameRule {
    match kind {
        "Namespace" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Upstream's CronJob name limit: the controller appends `-<11 digit time>`
/// to name its Jobs, which must stay within a DNS-1035 label's 63 characters.
pub const CRONJOB_NAME_MAX_LENGTH: usize = DNS1035_LABEL_MAX_LENGTH - 11;

/// All messages for `kind`'s `metadata.name`, including kind-specific extras
/// (CronJob names at most 52 characters). Empty when valid.
pub fn validate_name(kind: &str, name: &str) -> Vec<String> {
    let mut errs = name_rule(kind).check(name);
    if kind == "CronJob" && name.len() > CRONJOB_NAME_MAX_LENGTH {
        errs.push(max_len_error(CRONJOB_NAME_MAX_LENGTH));
    }
    errs
}

/// Upstream's `field.ErrorType`s that these validators produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    /// `Invalid value`
    Invalid,
    /// `Too long`
    TooLong,
}

impl FieldErrorType {
    /// The text upstream prints, also the `reason` of a Status cause
    /// (`FieldValueInvalid`, `FieldValueTooLong`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::TooLong => "Too long",
        }
    }

    /// The `reason` of a `metav1.StatusCause`.
    pub fn cause_reason(self) -> &'static str {
        match self {
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::TooLong => "FieldValueTooLong",
        }
    }
}

/// One upstream `field.Error`: which field, the bad value, what was expected.
/// `Display` prints upstream's `Error()` text, e.g.
/// `metadata.labels: Invalid value: "a b": name part must consist of ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub error_type: FieldErrorType,
    /// The field path, e.g. `metadata.labels`.
    pub field: String,
    /// The offending value (a key or a value); empty for size errors.
    pub value: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error_type {
            FieldErrorType::Invalid => write!(
                f,
                "{}: {}: {}: {}",
                self.field,
                self.error_type.as_str(),
                go_quote(&self.value),
                self.message
            ),
            FieldErrorType::TooLong => {
                write!(
                    f,
                    "{}: {}: {}",
                    self.field,
                    self.error_type.as_str(),
                    self.message
                )
            }
        }
    }
}

/// Go's `%q` for the strings these validators see: double quotes with `"`,
/// `\` and control characters escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream's `ValidateLabels`: every key a qualified name, every value a
/// valid label value; errors are reported at `field_path` (e.g. `metadata.labels`).
pub fn validate_labels(labels: &BTreeMap<String, String>, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for message in is_qualified_name(k) {
            errs.push(invalid(field_path, k, message));
        }
        for message in is_valid_label_value(v) {
            errs.push(invalid(field_path, v, message));
        }
    }
    errs
}

/// Upstream's `ValidateAnnotations`: keys are qualified names compared
/// case-insensitively, and keys plus values stay within 256 KiB in total.
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    field_path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in annotations.keys() {
        for message in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid(field_path, k, message));
        }
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError {
            error_type: FieldErrorType::TooLong,
            field: field_path.to_string(),
            value: String::new(),
            message: format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes"),
        });
    }
    errs
}

fn invalid(field: &str, value: &str, message: String) -> FieldError {
    FieldError {
        error_type: FieldErrorType::Invalid,
        field: field.to_string(),
        value: value.to_string(),
        message,
    }
}

/// Upstream's `SimpleNameGenerator`: `prefix` (cut to 58 bytes) plus five
/// characters from [`GENERATED_NAME_ALPHABET`], so the result fits 63 characters.
pub fn generate_name(prefix: &str) -> String {
    generate_name_with(prefix, &mut rand::rng())
}

/// [`generate_name`] with a caller-supplied random source, for deterministic tests.
pub fn generate_name_with<R: Rng + ?Sized>(prefix: &str, rng: &mut R) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_NAME_LENGTH);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = String::with_capacity(cut + RANDOM_LENGTH);
    name.push_str(&prefix[..cut]);
    for _ in 0..RANDOM_LENGTH {
        let i = rng.random_range(0..GENERATED_NAME_ALPHABET.len());
        name.push(GENERATED_NAME_ALPHABET[i] as char);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUBDOMAIN_MSG: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

    #[test]
    fn subdomain_accepts_dotted_lowercase_names() {
        for ok in [
            "a",
            "example.com",
            "a-b.c-d",
            "0",
            "a.b.c",
            &"a".repeat(253),
        ] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
    }

    #[test]
    fn subdomain_rejects_with_upstream_message() {
        assert_eq!(is_dns1123_subdomain("Web"), vec![SUBDOMAIN_MSG]);
        assert_eq!(is_dns1123_subdomain("-a"), vec![SUBDOMAIN_MSG]);
        assert_eq!(is_dns1123_subdomain("a..b"), vec![SUBDOMAIN_MSG]);
        assert_eq!(is_dns1123_subdomain(""), vec![SUBDOMAIN_MSG]);
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
    }

    #[test]
    fn dns1123_label_reports_dots_separately() {
        assert!(is_dns1123_label("kube-system").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("A"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn dns1035_label_must_start_with_a_letter() {
        assert!(is_dns1035_label("web-1").is_empty());
        assert_eq!(
            is_dns1035_label("1web"),
            vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
        );
    }

    #[test]
    fn qualified_name_checks_prefix_and_name() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(is_qualified_name("My_Name.1").is_empty());
        assert_eq!(is_qualified_name("a_"), vec![NAME_PART_MSG]);
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("Example.com/a"),
            vec![format!("prefix part {SUBDOMAIN_MSG}")]
        );
        assert_eq!(
            is_qualified_name("a/"),
            vec![
                "name part must be non-empty".to_string(),
                NAME_PART_MSG.to_string()
            ]
        );
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        );
    }

    #[test]
    fn label_values_may_be_empty_but_not_long() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_3-x").is_empty());
        let long = "a".repeat(64);
        assert_eq!(
            is_valid_label_value(&long),
            vec!["must be no more than 63 characters"]
        );
        assert_eq!(
            is_valid_label_value("-a"),
            vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
        );
    }

    #[test]
    fn name_rules_follow_upstream_kinds() {
        assert_eq!(name_rule("Namespace"), NameRule::Dns1123Label);
        assert_eq!(name_rule("Service"), NameRule::Dns1035Label);
        assert_eq!(name_rule("Pod"), NameRule::Dns1123Subdomain);
        assert_eq!(name_rule("Deployment"), NameRule::Dns1123Subdomain);
        assert_eq!(name_rule("ClusterRole"), NameRule::PathSegment);
        assert!(validate_name("Pod", "web.v1").is_empty());
        assert!(!validate_name("Service", "web.v1").is_empty());
        assert!(validate_name("ClusterRole", "system:controller:x").is_empty());
        assert_eq!(validate_name("Role", ".."), vec!["may not be '..'"]);
        assert_eq!(
            validate_name("Role", "a/b%"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
        assert_eq!(
            validate_name("CronJob", &"a".repeat(53)),
            vec!["must be no more than 52 characters"]
        );
        assert!(validate_name("Job", &"a".repeat(53)).is_empty());
    }

    #[test]
    fn labels_report_key_and_value_at_the_field_path() {
        let labels = BTreeMap::from([
            ("ok".to_string(), "fine".to_string()),
            ("bad key".to_string(), "-v".to_string()),
        ]);
        let errs = validate_labels(&labels, "metadata.labels");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].value, "bad key");
        assert_eq!(errs[1].value, "-v");
        assert_eq!(
            errs[0].to_string(),
            format!("metadata.labels: Invalid value: \"bad key\": {NAME_PART_MSG}")
        );
    }

    #[test]
    fn annotation_keys_ignore_case_and_total_size_is_limited() {
        let ok = BTreeMap::from([(
            "Example.COM/Key".to_string(),
            "any value at all".to_string(),
        )]);
        assert!(validate_annotations(&ok, "metadata.annotations").is_empty());
        let big = BTreeMap::from([("k".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B))]);
        let errs = validate_annotations(&big, "metadata.annotations");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        let exact = BTreeMap::from([(
            "k".to_string(),
            "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B - 1),
        )]);
        assert!(validate_annotations(&exact, "metadata.annotations").is_empty());
    }

    #[test]
    fn generated_names_keep_the_prefix_and_fit_63() {
        let name = generate_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
        assert!(name[4..]
            .bytes()
            .all(|b| GENERATED_NAME_ALPHABET.contains(&b)));
        let long = generate_name(&"p".repeat(100));
        assert_eq!(long.len(), 63);
        assert!(long.starts_with(&"p".repeat(58)));
        assert!(is_dns1123_subdomain(&generate_name("ns-")).is_empty());
    }

    proptest! {
        #[test]
        fn generated_names_from_valid_prefixes_are_valid_labels(prefix in "[a-z]([-a-z0-9]{0,80}-)?") {
            let name = generate_name(&prefix);
            prop_assert!(name.len() <= 63);
            prop_assert!(is_dns1123_label(&name).is_empty(), "{}", name);
        }

        #[test]
        fn every_label_is_a_subdomain(s in "[a-z0-9.-]{0,70}") {
            if is_dns1123_label(&s).is_empty() {
                prop_assert!(is_dns1123_subdomain(&s).is_empty());
            }
        }
    }
}

//! The three PATCH content types: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386) and upstream's strategic merge patch for built-in kinds.
//! Entry points: [`apply_json_patch`], [`apply_merge_patch`],
//! [`apply_strategic_merge_patch`]; [`patch_meta`] answers which list fields
//! merge and by which key.
//!
//! The strategic merge is a port of the apply half of upstream's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` with the options the
//! apiserver uses (`MergeParallelList` and `IgnoreUnmatchedNulls` on), so
//! ordering, directive handling and error texts follow it. In particular,
//! without `$setElementOrder`, items only in the patch come *before* the
//! items only in the live object (upstream's `mergeSortedSlice` takes the
//! patch item whenever the two cannot be compared by live order).

use serde_json::{Map, Value};

/// Why a patch could not be applied; `Display` is upstream's text.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The JSON patch document did not decode as an RFC 6902 operation list.
    #[error("{0}")]
    DecodeJsonPatch(serde_json::Error),
    /// An RFC 6902 operation failed (missing path, failed `test` ...).
    #[error("{0}")]
    ApplyJsonPatch(json_patch::PatchError),
    /// The document or patch was not a JSON object (`mergepatch.ErrBadJSONDoc`).
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// Strategic merge patch on a kind without built-in patch metadata.
    #[error("strategic merge patch format is not supported")]
    UnsupportedStrategicMergePatchFormat,
    /// A list of lists (`mergepatch.ErrNoListOfLists`).
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A malformed `$deleteFromPrimitiveList/` directive.
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// A malformed `$retainKeys` directive, or a patched key missing from it.
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A malformed `$setElementOrder/` directive.
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// Any other upstream strategic-merge error, with its exact text
    /// (unknown `$patch` directive, element without its merge key, ...).
    #[error("{0}")]
    StrategicMerge(String),
}

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`). The
/// document is left untouched on error.
pub fn apply_json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_slice(patch).map_err(PatchError::DecodeJsonPatch)?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops.0).map_err(PatchError::ApplyJsonPatch)?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`):
/// objects merge recursively, `null` deletes, everything else replaces.
pub fn apply_merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// How a field takes part in a strategic merge (upstream's `patchStrategy`
/// and `patchMergeKey` struct tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatchMeta {
    /// `patchStrategy:"merge"`: lists merge (by `merge_key` for lists of
    /// objects, as a set for primitive lists). Without it lists are replaced.
    pub merge: bool,
    /// `patchStrategy:"retainKeys"`: a `$retainKeys` directive may clear
    /// the keys it does not list (union types such as a volume's source).
    pub retain_keys: bool,
    /// `patchMergeKey`: the field identifying an element of a merged list.
    pub merge_key: Option<&'static str>,
}

const fn merge_by(key: &'static str) -> PatchMeta {
    PatchMeta {
        merge: true,
        retain_keys: false,
        merge_key: Some(key),
    }
}

const fn merge_retain_by(key: &'static str) -> PatchMeta {
    PatchMeta {
        merge: true,
        retain_keys: true,
        merge_key: Some(key),
    }
}

const MERGE_PRIMITIVES: PatchMeta = PatchMeta {
    merge: true,
    retain_keys: false,
    merge_key: None,
};
const RETAIN_KEYS: PatchMeta = PatchMeta {
    merge: false,
    retain_keys: true,
    merge_key: None,
};
const NONE: PatchMeta = PatchMeta {
    merge: false,
    retain_keys: false,
    merge_key: None,
};

/// The Go types whose fields carry patch tags. `Other` is any type without
/// tagged fields below it: its lists are replaced and its maps merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Object(&'static str),
    ObjectMeta,
    PodTemplateSpec,
    JobTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    DeploymentSpec,
    /// ReplicaSet, StatefulSet, DaemonSet, ReplicationController and Job specs:
    /// their tagged fields are all under `template`.
    WorkloadSpec,
    CronJobSpec,
    ServiceSpec,
    NodeSpec,
    NodeStatus,
    /// A status whose only tagged field is `conditions`, merged by `type`.
    ConditionsStatus,
    Other,
}

/// Kinds [`apply_strategic_merge_patch`] knows: every built-in kind of the
/// resource table plus PodTemplate.
pub fn supports_strategic_merge(kind: &str) -> bool {
    builtin_kind(kind).is_some()
}

fn builtin_kind(kind: &str) -> Option<&'static str> {
    if kind == "PodTemplate" {
        return Some("PodTemplate");
    }
    crate::resources::RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .map(|r| r.kind)
}

impl Schema {
    /// The patch metadata of `field` in this type and the type of its value
    /// (of its elements, for lists).
    fn field(self, field: &str) -> (PatchMeta, Schema) {
        use Schema::*;
        match (self, field) {
            (Object(_), "metadata") => (NONE, ObjectMeta),
            (Object(kind), "spec") => (
                NONE,
                match kind {
                    "Pod" => PodSpec,
                    "Deployment" => DeploymentSpec,
                    "ReplicaSet"
                    | "StatefulSet"
                    | "DaemonSet"
                    | "ReplicationController"
                    | "Job" => WorkloadSpec,
                    "CronJob" => CronJobSpec,
                    "Service" => ServiceSpec,
                    "Node" => NodeSpec,
                    _ => Other,
                },
            ),
            (Object(kind), "status") => (
                NONE,
                match kind {
                    "Pod" => PodStatus,
                    "Node" => NodeStatus,
                    "Service"
                    | "Namespace"
                    | "Deployment"
                    | "ReplicaSet"
                    | "StatefulSet"
                    | "DaemonSet"
                    | "ReplicationController"
                    | "Job" => ConditionsStatus,
                    _ => Other,
                },
            ),
            (Object("PodTemplate"), "template") => (NONE, PodTemplateSpec),
            (Object("ServiceAccount"), "secrets") => (merge_by("name"), Other),
            (
                Object("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"),
                "webhooks",
            ) => (merge_by("name"), Other),
            (ObjectMeta, "finalizers") => (MERGE_PRIMITIVES, Other),
            (ObjectMeta, "ownerReferences") => (merge_by("uid"), Other),
            (PodTemplateSpec | JobTemplateSpec, "metadata") => (NONE, ObjectMeta),
            (PodTemplateSpec, "spec") => (NONE, PodSpec),
            (JobTemplateSpec, "spec") => (NONE, WorkloadSpec),
            (DeploymentSpec | WorkloadSpec, "template") => (NONE, PodTemplateSpec),
            (DeploymentSpec, "strategy") => (RETAIN_KEYS, Other),
            (CronJobSpec, "jobTemplate") => (NONE, JobTemplateSpec),
            (PodSpec, "volumes") => (merge_retain_by("name"), Other),
            (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
                (merge_by("name"), Container)
            }
            (PodSpec, "imagePullSecrets" | "schedulingGates") => (merge_by("name"), Other),
            (PodSpec, "resourceClaims") => (merge_retain_by("name"), Other),
            (PodSpec, "hostAliases") => (merge_by("ip"), Other),
            (PodSpec, "topologySpreadConstraints") => (merge_by("topologyKey"), Other),
            (Container, "ports") => (merge_by("containerPort"), Other),
            (Container, "env") => (merge_by("name"), Other),
            (Container, "volumeMounts") => (merge_by("mountPath"), Other),
            (Container, "volumeDevices") => (merge_by("devicePath"), Other),
            (PodStatus, "podIPs" | "hostIPs") => (merge_by("ip"), Other),
            (PodStatus, "resourceClaimStatuses") => (merge_retain_by("name"), Other),
            (PodStatus | NodeStatus | ConditionsStatus, "conditions") => (merge_by("type"), Other),
            (NodeStatus, "addresses") => (merge_by("type"), Other),
            (ServiceSpec, "ports") => (merge_by("port"), Other),
            (NodeSpec, "podCIDRs") => (MERGE_PRIMITIVES, Other),
            _ => (NONE, Other),
        }
    }
}

/// Patch metadata for the field at `path` in an object of `kind`. The path
/// names fields from the object root and skips list indices, e.g.
/// `["spec", "template", "spec", "containers", "ports"]` for a Deployment's
/// container ports (merged by `containerPort`). Unknown fields have no
/// metadata (replace lists, merge maps).
pub fn patch_meta(kind: &str, path: &[&str]) -> PatchMeta {
    let mut schema = builtin_kind(kind).map_or(Schema::Other, Schema::Object);
    let mut meta = NONE;
    for field in path {
        (meta, schema) = schema.field(field);
    }
    meta
}

/// Applies a strategic merge patch (`application/strategic-merge-patch+json`)
/// to an object of `kind`, as the apiserver's PATCH handler does:
/// maps merge, `null` deletes, lists merge by key where upstream's struct
/// tags say so and are replaced otherwise, and the directives `$patch`
/// (`replace`/`delete`, and `merge` rejected in lists), `$retainKeys`,
/// `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` apply.
pub fn apply_strategic_merge_patch(
    kind: &str,
    doc: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Some(kind) = builtin_kind(kind) else {
        return Err(PatchError::UnsupportedStrategicMergePatchFormat);
    };
    let (Value::Object(original), Value::Object(patch)) = (doc, patch) else {
        return Err(PatchError::BadJsonDoc);
    };
    merge_map(original.clone(), patch.clone(), Schema::Object(kind)).map(Value::Object)
}

fn smp_err(msg: String) -> PatchError {
    PatchError::StrategicMerge(msg)
}

/// Go's `%v` of a decoded JSON value: `map[k:v]`, `[a b]`, `<nil>`, floats as `%g`.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => go_float(n.as_f64().unwrap_or(0.0)),
        Value::Array(a) => go_fmt_list(a),
        Value::Object(m) => go_fmt_map(m),
    }
}

fn go_fmt_list(a: &[Value]) -> String {
    let items: Vec<String> = a.iter().map(go_fmt).collect();
    format!("[{}]", items.join(" "))
}

fn go_fmt_map(m: &Map<String, Value>) -> String {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
        .collect();
    format!("map[{}]", items.join(" "))
}

/// Go's `%v` for a float64: shortest digits, exponent form when the decimal
/// exponent is below -4 or at least 6 (`1e+06`).
fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Go's `reflect.TypeOf` name for a decoded JSON value.
fn go_type(v: Option<&Value>) -> &'static str {
    match v {
        None | Some(Value::Null) => "%!s(<nil>)",
        Some(Value::Bool(_)) => "bool",
        Some(Value::Number(_)) => "float64",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "[]interface {}",
        Some(Value::Object(_)) => "map[string]interface {}",
    }
}

const GO_MAP: &str = "map[string]interface {}";
const GO_SLICE: &str = "[]interface {}";

fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    smp_err(format!(
        "expected a {expected}, but received a {}",
        go_type(Some(actual))
    ))
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    smp_err(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt_map(m)
    ))
}

fn bad_patch_type(directive: &Value, m: &Map<String, Value>) -> PatchError {
    let t = match directive {
        Value::String(s) => s.clone(),
        other => format!("%!s({}={})", go_type(Some(other)), go_fmt(other)),
    };
    smp_err(format!("unknown patch type: {t} in map: {}", go_fmt_map(m)))
}

/// Go's reflect type identity for JSON values: the kind of value.
fn same_go_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE_MARKER);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order_lists(&mut original, &mut patch, schema)?;

    for (key, patch_v) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(k) => (k.to_string(), true),
                None => return Err(PatchError::BadPatchFormatForPrimitiveList),
            },
            None => (key, false),
        };
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let same_type = original.get(&key).map(|o| same_go_type(o, &patch_v));
        if same_type != Some(true) {
            if !is_delete_list {
                let mut v = patch_v;
                discard_nulls(&mut v);
                match remove_directives(v) {
                    Some(v) => {
                        original.insert(key, v);
                    }
                    None => {
                        original.remove(&key);
                    }
                }
            }
            continue;
        }
        let (meta, child) = schema.field(&key);
        let orig_v = original.remove(&key).unwrap_or(Value::Null);
        let merged = match (orig_v, patch_v) {
            (Value::Object(o), Value::Object(p)) => Value::Object(merge_map(o, p, child)?),
            (Value::Array(o), Value::Array(p)) => {
                if meta.merge {
                    Value::Array(merge_slice(o, p, meta.merge_key, child, is_delete_list)?)
                } else {
                    Value::Array(p)
                }
            }
            (_, p) => match remove_directives(p) {
                Some(v) => v,
                None => continue,
            },
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Upstream's `discardNullValuesFromPatch`: nulls mean "delete", which is
/// meaningless for a value the original did not have.
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Upstream's `removeDirectives`: drops maps carrying `$patch` (and so list
/// elements that are directives); `None` means drop the value itself.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `$retainKeys`: every patched key must be listed, and original keys not
/// listed are cleared.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadPatchFormatForRetainKeys);
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Upstream's `mergePatchIntoOriginal`: merges each list that has a
/// `$setElementOrder/<list>` directive and orders it as the directive says,
/// items not listed there (server-only) interleaved by their live order.
fn merge_set_element_order_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in keys {
        let order = patch.remove(&key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return Err(bad_arg_type(GO_SLICE, &order));
        };
        let Some(list_key) = key
            .strip_prefix(SET_ELEMENT_ORDER_PREFIX)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Err(PatchError::BadPatchFormatForSetElementOrderList);
        };
        let list_key = list_key.to_string();
        let original_list = match original.get(&list_key) {
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg_type(GO_SLICE, other)),
            None => None,
        };
        let patch_list = match patch.get(&list_key) {
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg_type(GO_SLICE, other)),
            None => None,
        };
        let (meta, elem) = schema.field(&list_key);
        let merge_key = meta.merge_key;
        validate_patch_with_set_order_list(
            patch_list.as_deref().unwrap_or(&[]),
            &order,
            merge_key,
        )?;
        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.clone(),
            (Some(o), Some(p)) => {
                if meta.merge {
                    merge_slice(o.clone(), p.clone(), merge_key, elem, false)?
                } else {
                    p.clone()
                }
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = partition(&merged, &order, merge_key)?;
        let original_items = original_list.unwrap_or_default();
        let is_map = slice_element_is_map(&original_items, patch_list.as_deref().unwrap_or(&[]))?;
        let both = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &original_items,
            merge_key.filter(|_| is_map),
        )?;
        original.insert(list_key.clone(), Value::Array(both));
        patch.remove(&list_key);
    }
    Ok(())
}

/// Upstream's `sliceElementType`, reduced to what the callers need: whether
/// the elements are maps, after checking they share one type and none is a list.
fn slice_element_is_map(a: &[Value], b: &[Value]) -> Result<bool, PatchError> {
    let mut prev: Option<&Value> = None;
    for v in a.iter().chain(b) {
        match prev {
            None => {
                if v.is_array() {
                    return Err(PatchError::NoListOfLists);
                }
                prev = Some(v);
            }
            Some(p) if !same_go_type(p, v) => {
                return Err(smp_err(format!(
                    "list element types are not identical: [{} {}]",
                    go_fmt_list(a),
                    go_fmt_list(b)
                )));
            }
            Some(_) => {}
        }
    }
    match prev {
        Some(v) => Ok(v.is_object()),
        None => Err(smp_err(
            "no elements in any of the given slices".to_string(),
        )),
    }
}

fn as_map(v: &Value) -> Result<&Map<String, Value>, PatchError> {
    v.as_object().ok_or_else(|| bad_arg_type(GO_MAP, v))
}

fn has_directive(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

fn is_delete_directive(v: &Value) -> bool {
    v.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some("delete")
}

fn validate_patch_with_set_order_list(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match merge_key {
        Some(_) => {
            for v in patch_list {
                as_map(v)?;
            }
            patch_list
                .iter()
                .filter(|v| !is_delete_directive(v))
                .collect()
        }
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if has_directive(non_delete[pi]) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(smp_err(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}\n",
            go_fmt_list(patch_list),
            go_fmt_list(order)
        )));
    }
    Ok(())
}

fn merge_key_value_equal(
    left: &Value,
    right: &Value,
    merge_key: Option<&str>,
) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let (l, r) = (as_map(left)?, as_map(right)?);
    let lv = l.get(key).ok_or_else(|| no_merge_key(l, key))?;
    let rv = r.get(key).ok_or_else(|| no_merge_key(r, key))?;
    Ok(lv == rv)
}

/// Upstream's `mergeSlice` for a list whose strategy is merge.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: Option<&'static str>,
    elem: Schema,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = slice_element_is_map(&original, &patch)?;
    let (original, patch, merged) = if !is_map {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        let merged = deduplicate_scalars(both);
        (original, patch, merged)
    } else {
        let Some(key) = merge_key else {
            return Err(smp_err(
                "cannot merge lists without merge key for type struct".to_string(),
            ));
        };
        let (original, patch) = merge_slice_with_special_elements(original, patch, key)?;
        let merged = merge_slice_without_special_elements(original.clone(), &patch, key, elem)?;
        (original, patch, merged)
    };
    let key = merge_key.filter(|_| is_map);
    let (patch_items, server_only) = partition(&merged, &patch, key)?;
    normalize_element_order(patch_items, server_only, &patch, &original, key)
}

/// Upstream's in-place deduplication, which moves the last element into
/// each removed duplicate's slot (the order is normalised afterwards).
fn deduplicate_scalars(mut s: Vec<Value>) -> Vec<Value> {
    if s.is_empty() {
        return s;
    }
    let mut length = s.len() - 1;
    let mut i = 0;
    while i < length {
        let mut j = i + 1;
        while j <= length {
            if s[i] == s[j] {
                s[j] = s[length].clone();
                s.truncate(length);
                length -= 1;
                continue;
            }
            j += 1;
        }
        i += 1;
    }
    s
}

/// Applies `$patch: delete` and `$patch: replace` list elements; returns
/// the new original and the patch without directive elements.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        let m = as_map(&v)?;
        match m.get(DIRECTIVE_MARKER) {
            None => plain.push(v),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let Some(value) = m.get(key) else {
                        return Err(no_merge_key(m, key));
                    };
                    let value = value.clone();
                    original.retain(|o| o.get(key) != Some(&value));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(smp_err(
                        "merging lists cannot yet be specified in the patch".to_string(),
                    ))
                }
                _ => return Err(bad_patch_type(directive, m)),
            },
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    Ok((original, plain))
}

fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    elem: Schema,
) -> Result<Vec<Value>, PatchError> {
    for v in patch {
        let m = as_map(v)?;
        let Some(value) = m.get(key) else {
            return Err(no_merge_key(m, key));
        };
        match original.iter().position(|o| o.get(key) == Some(value)) {
            Some(i) => {
                let o = match std::mem::take(&mut original[i]) {
                    Value::Object(o) => o,
                    other => return Err(bad_arg_type(GO_MAP, &other)),
                };
                original[i] = Value::Object(merge_map(o, m.clone(), elem)?);
            }
            None => original.push(v.clone()),
        }
    }
    Ok(original)
}

/// Splits `items` into those present in `by` (by merge key for maps) and the rest.
fn partition(
    items: &[Value],
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut rest = Vec::new();
    for v in items {
        let found = match merge_key {
            None => by.contains(v),
            Some(key) => {
                let m = as_map(v)?;
                let value = m.get(key).ok_or_else(|| no_merge_key(m, key))?;
                let mut found = false;
                for b in by {
                    if as_map(b)?.get(key) == Some(value) {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if found {
            present.push(v.clone());
        } else {
            rest.push(v.clone());
        }
    }
    Ok((present, rest))
}

/// Position of `v` in `list`, comparing merge-key values for maps.
fn index_of(list: &[Value], v: &Value, merge_key: Option<&str>) -> Option<usize> {
    match merge_key {
        None => list.iter().position(|x| x == v),
        Some(key) => {
            let want = v.get(key);
            list.iter().position(|x| x.get(key) == want)
        }
    }
}

/// Upstream's `normalizeElementOrder`: sort patch items by `patch_order`,
/// server-only items by `server_order`, then interleave them.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let patch = normalize_slice_order(patch, patch_order, merge_key)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key)?;
    Ok(merge_sorted_slice(
        server_only,
        patch,
        server_order,
        merge_key,
    ))
}

fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let (mut to_sort, to_delete) = match merge_key {
        Some(key) => {
            for v in to_sort.iter().chain(order) {
                let m = as_map(v)?;
                if !m.contains_key(key) {
                    return Err(no_merge_key(m, key));
                }
            }
            to_sort.into_iter().partition(|v| !is_delete_directive(v))
        }
        None => (to_sort, Vec::new()),
    };
    // Go's sort.SliceStable is an insertion sort on short slices; upstream's
    // comparator treats an unorderable pair as "less", reproduced here.
    let less =
        |a: &Value, b: &Value| match (index_of(order, a, merge_key), index_of(order, b, merge_key))
        {
            (Some(i), Some(j)) => i < j,
            _ => true,
        };
    for i in 1..to_sort.len() {
        let mut j = i;
        while j > 0 && less(&to_sort[j], &to_sort[j - 1]) {
            to_sort.swap(j, j - 1);
            j -= 1;
        }
    }
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// Upstream's `mergeSortedSlice`: takes a server-only item first only when
/// both items are in the live list and it comes earlier there.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => return out,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_of(server_order, l, merge_key), index_of(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn smp(kind: &str, doc: Value, patch: Value) -> Value {
        apply_strategic_merge_patch(kind, &doc, &patch).unwrap()
    }

    fn smp_err_text(kind: &str, doc: Value, patch: Value) -> String {
        apply_strategic_merge_patch(kind, &doc, &patch)
            .unwrap_err()
            .to_string()
    }

    fn names(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn json_patch_applies_rfc6902_and_leaves_doc_on_error() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        let out = apply_json_patch(
            &doc,
            br#"[{"op":"replace","path":"/a/b","value":2},{"op":"add","path":"/l/-","value":3}]"#,
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": 2}, "l": [1, 2, 3]}));
        assert!(apply_json_patch(&doc, br#"[{"op":"test","path":"/a/b","value":9}]"#).is_err());
        assert!(apply_json_patch(&doc, b"{not json").is_err());
        assert_eq!(doc, json!({"a": {"b": 1}, "l": [1, 2]}));
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let out = apply_merge_patch(&doc, &json!({"a": "z", "c": {"f": null}, "l": [3]})).unwrap();
        assert_eq!(out, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn containers_merge_by_name_and_new_ones_come_first() {
        let doc = deployment(
            json!([{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]),
        );
        let out = smp(
            "Deployment",
            doc,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "log", "image": "log:2"}, {"name": "proxy", "image": "envoy"}]}}}}),
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "app");
        assert_eq!(names(containers), vec!["app", "log", "proxy"]);
        assert_eq!(containers[1]["image"], "log:2");
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn new_items_precede_server_only_items_without_set_element_order() {
        let doc = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp("Pod", doc, json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(names(&out["spec"]["containers"]), vec!["c", "a", "b"]);
    }

    #[test]
    fn set_element_order_decides_the_order() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(
            "Pod",
            doc,
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                            "containers": [{"name": "c", "image": "x"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), vec!["a", "b", "c"]);
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "s"}]}});
        let out = smp(
            "Pod",
            doc,
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), vec!["b", "a", "s"]);
    }

    #[test]
    fn nested_lists_use_their_own_merge_keys() {
        let doc = json!({"spec": {"containers": [{"name": "a",
            "ports": [{"containerPort": 80, "name": "http"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}],
            "args": ["x", "y"]}]}});
        let out = smp(
            "Pod",
            doc,
            json!({"spec": {"containers": [{"name": "a",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "B", "value": "3"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
                "args": ["z"]}]}}),
        );
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}])
        );
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
        );
        assert_eq!(
            c["args"],
            json!(["z"]),
            "lists without a strategy are replaced"
        );
    }

    #[test]
    fn merge_key_table_covers_upstream_tags() {
        let pod_tpl = ["spec", "template", "spec"];
        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicationController",
        ] {
            let mut path = pod_tpl.to_vec();
            path.push("containers");
            assert_eq!(patch_meta(kind, &path).merge_key, Some("name"), "{kind}");
            path.push("env");
            assert_eq!(patch_meta(kind, &path).merge_key, Some("name"), "{kind}");
        }
        let cron = [
            "spec",
            "jobTemplate",
            "spec",
            "template",
            "spec",
            "initContainers",
            "ports",
        ];
        assert_eq!(
            patch_meta("CronJob", &cron).merge_key,
            Some("containerPort")
        );
        assert_eq!(
            patch_meta("Service", &["spec", "ports"]).merge_key,
            Some("port")
        );
        assert_eq!(
            patch_meta("Pod", &["spec", "volumes"]),
            merge_retain_by("name")
        );
        assert_eq!(
            patch_meta("Pod", &["spec", "hostAliases"]).merge_key,
            Some("ip")
        );
        assert_eq!(
            patch_meta("Pod", &["spec", "topologySpreadConstraints"]).merge_key,
            Some("topologyKey")
        );
        assert_eq!(
            patch_meta("Pod", &["status", "conditions"]).merge_key,
            Some("type")
        );
        assert_eq!(
            patch_meta("Node", &["status", "addresses"]).merge_key,
            Some("type")
        );
        assert_eq!(
            patch_meta("Secret", &["metadata", "ownerReferences"]).merge_key,
            Some("uid")
        );
        assert_eq!(
            patch_meta("ConfigMap", &["metadata", "finalizers"]),
            MERGE_PRIMITIVES
        );
        assert_eq!(patch_meta("Deployment", &["spec", "strategy"]), RETAIN_KEYS);
        assert_eq!(
            patch_meta("Pod", &["spec", "tolerations"]),
            PatchMeta::default()
        );
        assert_eq!(
            patch_meta("Pod", &["spec", "containers", "command"]),
            PatchMeta::default()
        );
    }

    #[test]
    fn null_deletes_and_unmatched_nulls_are_dropped() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let out = smp(
            "ConfigMap",
            doc,
            json!({"metadata": {"labels": {"a": null, "c": null}, "annotations": {"x": null, "y": "1"}}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}, "annotations": {"y": "1"}}})
        );
    }

    #[test]
    fn patch_replace_and_delete_directives_in_maps() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let out = smp(
            "ConfigMap",
            doc.clone(),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        let out = smp(
            "ConfigMap",
            doc.clone(),
            json!({"data": {"$patch": "delete"}}),
        );
        assert_eq!(out["data"], json!({}));
        assert_eq!(
            smp_err_text("ConfigMap", doc, json!({"data": {"$patch": "bogus"}})),
            "unknown patch type: bogus in map: map[$patch:bogus]"
        );
    }

    #[test]
    fn patch_directives_in_list_elements() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(
            "Pod",
            doc.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(names(&out["spec"]["containers"]), vec!["b"]);
        let out = smp(
            "Pod",
            doc.clone(),
            json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
        assert_eq!(
            smp_err_text(
                "Pod",
                doc.clone(),
                json!({"spec": {"containers": [{"$patch": "merge"}]}})
            ),
            "merging lists cannot yet be specified in the patch"
        );
        assert_eq!(
            smp_err_text(
                "Pod",
                doc.clone(),
                json!({"spec": {"containers": [{"$patch": "delete"}]}})
            ),
            "map: map[$patch:delete] does not contain declared merge key: name"
        );
        assert_eq!(
            smp_err_text(
                "Pod",
                doc,
                json!({"spec": {"containers": [{"image": "nginx"}]}})
            ),
            "map: map[image:nginx] does not contain declared merge key: name"
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(
            "ConfigMap",
            doc.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            "ConfigMap",
            doc.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            "ConfigMap",
            doc,
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "c", "b"], "finalizers": ["c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c", "b"]));
    }

    #[test]
    fn retain_keys_clears_unlisted_union_members() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(
            "Deployment",
            doc.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            smp_err_text(
                "Deployment",
                doc,
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}})
            ),
            "invalid patch format of retainKeys"
        );
        let pod = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        let out = smp(
            "Pod",
            pod,
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "configMap"], "configMap": {"name": "c"}}]}}),
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "v", "configMap": {"name": "c"}}])
        );
    }

    #[test]
    fn directives_are_removed_from_values_new_to_the_object() {
        let out = smp(
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": null}]}, {"name": "gone", "$patch": "delete"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "env": [{"name": "X"}]}])
        );
    }

    #[test]
    fn service_ports_and_conditions_merge() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]},
                         "status": {"conditions": [{"type": "A", "status": "True"}]}});
        let out = smp(
            "Service",
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]},
                   "status": {"conditions": [{"type": "A", "status": "False"}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "A", "status": "False"}])
        );
    }

    #[test]
    fn errors_for_bad_documents_and_kinds() {
        assert!(matches!(
            apply_strategic_merge_patch("Pod", &json!([]), &json!({})),
            Err(PatchError::BadJsonDoc)
        ));
        assert_eq!(
            smp_err_text("Widget", json!({}), json!({})),
            "strategic merge patch format is not supported"
        );
        assert_eq!(
            smp_err_text(
                "Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": ["a"]}})
            ),
            "list element types are not identical: [[map[name:a]] [a]]"
        );
        assert_eq!(
            smp_err_text(
                "Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "b"}], "$setElementOrder/containers": [{"name": "a"}]}})
            ),
            "The order in patch list:\n[map[name:b]]\n doesn't match $setElementOrder list:\n[map[name:a]]\n"
        );
    }

    #[test]
    fn go_formatting_matches_fmt_v() {
        assert_eq!(go_float(80.0), "80");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(
            go_fmt(&json!({"b": [1, true], "a": null})),
            "map[a:<nil> b:[1 true]]"
        );
    }

    proptest! {
        #[test]
        fn merged_containers_hold_each_name_once(
            live in proptest::collection::btree_set("[a-e]", 0..5),
            patched in proptest::collection::btree_set("[a-g]", 0..5),
        ) {
            let doc = json!({"spec": {"containers": live.iter().map(|n| json!({"name": n, "image": "old"})).collect::<Vec<_>>()}});
            let patch = json!({"spec": {"containers": patched.iter().map(|n| json!({"name": n, "image": "new"})).collect::<Vec<_>>()}});
            let out = smp("Pod", doc, patch);
            let got: std::collections::BTreeSet<String> = out["spec"]["containers"].as_array().unwrap()
                .iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
            let want: std::collections::BTreeSet<String> = live.union(&patched).cloned().collect();
            prop_assert_eq!(got.len(), out["spec"]["containers"].as_array().unwrap().len());
            prop_assert_eq!(got, want);
            for c in out["spec"]["containers"].as_array().unwrap() {
                let name = c["name"].as_str().unwrap();
                let image = if patched.contains(name) { "new" } else { "old" };
                prop_assert_eq!(c["image"].as_str().unwrap(), image);
            }
        }

        #[test]
        fn set_element_order_is_followed_exactly(order in Just(vec!["a","b","c","d"]).prop_shuffle()) {
            let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
            let patch = json!({"spec": {
                "$setElementOrder/containers": order.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
                "containers": [{"name": "d"}]}});
            let out = smp("Pod", doc, patch);
            prop_assert_eq!(names(&out["spec"]["containers"]), order);
        }
    }
}

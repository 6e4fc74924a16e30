//! Server-side printing: turns objects into a `meta.k8s.io/v1` `Table` with
//! upstream's columns, so `kubectl get` (which asks for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`) prints what it
//! prints against a real cluster. Entry points: [`negotiate_table`], then
//! [`table`] for get/list and [`watch_event_table`] for `kubectl get -w`.
//!
//! Columns and cell rules follow kubernetes `pkg/printers/internalversion/
//! printers.go`, one module per API group family ([`core`], [`apps`],
//! [`other`]); a resource without a printer gets upstream's default table
//! convertor (`Name`, `Created At`). The server always prints the wide
//! columns, as upstream does; they carry `priority: 1` and kubectl shows them
//! only for `-o wide`.
//!
//! ## For the router
//!
//! - `?includeObject=None|Metadata|Object` → [`IncludeObject::from_query`]
//!   (default `Metadata`: kubectl needs the namespace and labels of each row).
//! - A list's `metadata` (`resourceVersion`, `continue`,
//!   `remainingItemCount`) goes into the table with [`set_list_metadata`]; a
//!   single GET is a table with one row whose `metadata.resourceVersion` is
//!   the object's.
//! - Watch: every `ADDED`/`MODIFIED`/`DELETED` event's object becomes a
//!   one-row Table ([`watch_event_table`]); only the first event of a stream
//!   carries `columnDefinitions` (upstream sets `NoHeaders` after it and
//!   kubectl's printer reuses the last columns it saw). `ERROR` events keep
//!   their `Status` object; `BOOKMARK` events are passed through unchanged.
//! - Response `Content-Type`: [`TableVersion::content_type`].

mod apps;
mod core;
mod other;

use chrono::{DateTime, Utc};
use ferrokube_api::ResourceInfo;
use serde_json::{json, Map, Value};

/// `?includeObject=`: what each row's `object` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No `object` in rows.
    None,
    /// A `PartialObjectMetadata` (upstream's default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// An unknown `includeObject` value; the router answers 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "includeObject: unsupported value {0:?}: supported values: \"None\", \"Metadata\", \"Object\""
)]
pub struct UnknownIncludeObject(pub String);

impl IncludeObject {
    /// Parses the query parameter; absent or empty means `Metadata`.
    pub fn from_query(value: Option<&str>) -> Result<Self, UnknownIncludeObject> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(UnknownIncludeObject(other.to_string())),
        }
    }
}

/// Which `meta.k8s.io` version of `Table` the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableVersion {
    V1,
    V1Beta1,
}

impl TableVersion {
    pub fn api_version(&self) -> &'static str {
        match self {
            TableVersion::V1 => "meta.k8s.io/v1",
            TableVersion::V1Beta1 => "meta.k8s.io/v1beta1",
        }
    }

    /// The response `Content-Type` for a Table answer.
    pub fn content_type(&self) -> &'static str {
        match self {
            TableVersion::V1 => "application/json;as=Table;v=v1;g=meta.k8s.io",
            TableVersion::V1Beta1 => "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        }
    }
}

/// `Some(version)` when the `Accept` header's first usable JSON media range
/// asks for a `Table` (`application/json;as=Table;v=v1;g=meta.k8s.io`);
/// `None` means answer the plain object or list.
pub fn negotiate_table(accept: &str) -> Option<TableVersion> {
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(
            essence.as_str(),
            "application/json" | "application/*" | "*/*"
        ) {
            continue;
        }
        let (mut g, mut v, mut as_) = (None, None, None);
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "g" => g = Some(val.trim()),
                    "v" => v = Some(val.trim()),
                    "as" => as_ = Some(val.trim()),
                    _ => {}
                }
            }
        }
        match (g, v, as_) {
            (Some("meta.k8s.io"), Some("v1"), Some("Table")) => return Some(TableVersion::V1),
            (Some("meta.k8s.io"), Some("v1beta1"), Some("Table")) => {
                return Some(TableVersion::V1Beta1)
            }
            (None, None, None) => return None,
            _ => continue,
        }
    }
    None
}

/// One `columnDefinitions` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// `name` for the name column, otherwise empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(crate) const CONTAINERS_DESC: &str = "Names of each container in the template.";
pub(crate) const IMAGES_DESC: &str = "Images referenced by each container in the template.";

pub(crate) const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
pub(crate) const AGE: Column = col("Age", "string", AGE_DESC);

/// The cells of one row, and upstream's row conditions (pods only).
pub(crate) struct Row {
    pub cells: Vec<Value>,
    pub conditions: Option<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Self {
        Row {
            cells,
            conditions: None,
        }
    }
}

/// How one object becomes one row, given the time ages are measured against.
pub(crate) type RowFn = fn(&Value, DateTime<Utc>) -> Row;

/// A printer: its columns and how one object becomes one row.
pub(crate) struct Printer {
    pub columns: &'static [Column],
    pub row: RowFn,
}

/// Upstream's default table convertor, for resources without a printer.
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        priority: 0,
    },
];

pub(crate) fn default_row(obj: &Value, _now: DateTime<Utc>) -> Row {
    vec![json!(name(obj)), created_at(obj)].into()
}

fn printer_for(res: &ResourceInfo) -> Printer {
    core::printer(res)
        .or_else(|| apps::printer(res))
        .or_else(|| other::printer(res))
        .unwrap_or(Printer {
            columns: DEFAULT_COLUMNS,
            row: default_row,
        })
}

/// The `columnDefinitions` for `res`.
pub fn column_definitions(res: &ResourceInfo) -> Value {
    Value::Array(
        printer_for(res)
            .columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

fn row_object(res: &ResourceInfo, obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => {
            let mut o = obj.clone();
            if let Some(m) = o.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| json!(res.api_version()));
                m.entry("kind").or_insert_with(|| json!(res.kind));
            }
            Some(o)
        }
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

fn rows(
    res: &ResourceInfo,
    printer: &Printer,
    objects: &[Value],
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Vec<Value> {
    objects
        .iter()
        .map(|obj| {
            let row = (printer.row)(obj, now);
            let mut out = Map::new();
            out.insert("cells".into(), Value::Array(row.cells));
            if let Some(c) = row.conditions {
                out.insert("conditions".into(), c);
            }
            if let Some(o) = row_object(res, obj, include) {
                out.insert("object".into(), o);
            }
            Value::Object(out)
        })
        .collect()
}

/// A `meta.k8s.io/v1` `Table` of `objects` (upstream JSON objects of `res`),
/// with ages computed against `now`. `metadata` is empty; see
/// [`set_list_metadata`].
pub fn table(
    res: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let printer = printer_for(res);
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions(res),
        "rows": rows(res, &printer, objects, include_object, now),
    })
}

/// Copies a list's `resourceVersion`, `continue` and `remainingItemCount`
/// (or a single object's `resourceVersion`) into the table's `metadata`,
/// and sets the `apiVersion` the client asked for.
pub fn set_list_metadata(table: &mut Value, list_metadata: &Value, version: TableVersion) {
    let mut meta = Map::new();
    for key in ["resourceVersion", "continue", "remainingItemCount"] {
        if let Some(v) = list_metadata.get(key) {
            if !v.is_null() && v != "" {
                meta.insert(key.into(), v.clone());
            }
        }
    }
    if let Some(t) = table.as_object_mut() {
        t.insert("metadata".into(), Value::Object(meta));
        t.insert("apiVersion".into(), json!(version.api_version()));
    }
}

/// One watch event for a client that asked for tables: `{"type", "object"}`
/// where `object` is a one-row Table. Pass `with_headers = true` for the
/// first event of the stream only; later events omit `columnDefinitions`
/// (`null`, as upstream sends with `NoHeaders`). `ERROR` and `BOOKMARK`
/// events are returned unchanged.
pub fn watch_event_table(
    res: &ResourceInfo,
    event_type: &str,
    object: &Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
    with_headers: bool,
) -> Value {
    if event_type == "ERROR" || event_type == "BOOKMARK" {
        return json!({"type": event_type, "object": object});
    }
    let mut t = table(res, std::slice::from_ref(object), include_object, now);
    if let Some(m) = t.as_object_mut() {
        if let Some(rv) = object.pointer("/metadata/resourceVersion") {
            m.insert("metadata".into(), json!({"resourceVersion": rv}));
        }
        if !with_headers {
            m.insert("columnDefinitions".into(), Value::Null);
        }
    }
    json!({"type": event_type, "object": t})
}

// ---- helpers shared by the printers ----

/// The string at `path`, or "" (absent fields print as upstream's zero value).
pub(crate) fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, or 0.
pub(crate) fn i(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn arr<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    v.pointer(path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn obj_len(v: &Value, path: &str) -> usize {
    v.pointer(path)
        .and_then(Value::as_object)
        .map(Map::len)
        .unwrap_or(0)
}

pub(crate) fn name(obj: &Value) -> &str {
    s(obj, "/metadata/name")
}

pub(crate) fn parse_time(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Upstream's `translateTimestampSince`: `<unknown>` for a missing time,
/// otherwise the human duration since it.
pub(crate) fn since(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(since(s(obj, "/metadata/creationTimestamp"), now))
}

/// The `Created At` cell: the creation time in RFC3339, UTC.
pub(crate) fn created_at(obj: &Value) -> Value {
    match parse_time(s(obj, "/metadata/creationTimestamp")) {
        Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        None => json!("<unknown>"),
    }
}

/// apimachinery's `duration.HumanDuration`: `5s`, `3m20s`, `15m`, `5h10m`,
/// `2d3h`, `45d`, `2y10d`, with 2 seconds of tolerated clock skew.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

/// `labels.FormatLabels`: `a=b,c=d` sorted by key, `<none>` when empty.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`: requirements sorted by key
/// (`app=web,tier in (a,b),!legacy`), `<none>` when empty.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(sel) = selector.filter(|v| v.is_object()) else {
        return "<none>".to_string();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in arr(sel, "/matchExpressions") {
        let key = s(expr, "/key");
        let mut values: Vec<&str> = arr(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        let text = match s(expr, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".to_string(),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    if reqs.is_empty() {
        "<none>".to_string()
    } else {
        reqs.into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Container names and images of a pod template (`/spec/template/spec`), the
/// `Containers` and `Images` wide cells.
pub(crate) fn containers_and_images(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec
        .and_then(|p| p.get("containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// Up to `max` items joined by `,`, then ` + N more...`; `empty` when none.
pub(crate) fn list_with_more(items: &[String], total: usize, max: usize, empty: &str) -> String {
    let shown: Vec<&str> = items.iter().take(max).map(String::as_str).collect();
    let ret = shown.join(",");
    if total > max {
        return format!("{ret} + {} more...", total - max);
    }
    if ret.is_empty() {
        return empty.to_string();
    }
    ret
}

#[cfg(test)]
mod tests;

//! The one place where a failure becomes what clients see: a `metav1.Status`
//! with upstream's HTTP code, reason, message and field causes. REST renders
//! it as JSON, gRPC carries it in the status details.

use ferrokube_api::ResourceInfo;
use serde::Serialize;
use serde_json::{json, Value};

/// One field-level problem, as in `status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// Upstream's cause type: `FieldValueRequired`, `FieldValueInvalid`,
    /// `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueForbidden`,
    /// `FieldValueTooLong`, `FieldValueTypeInvalid`.
    #[serde(rename = "reason")]
    pub kind: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn new(kind: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause {
            kind: kind.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn required(field: impl Into<String>) -> Self {
        Cause::new("FieldValueRequired", field, "Required value")
    }
    /// `Invalid value: "x": why`, the message shape upstream prints.
    pub fn invalid(field: impl Into<String>, value: &Value, why: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {shown}: {why}"),
        )
    }
    pub fn forbidden(field: impl Into<String>, why: &str) -> Self {
        Cause::new("FieldValueForbidden", field, format!("Forbidden: {why}"))
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause::new(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: {value}: supported values: {}",
                quoted.join(", ")
            ),
        )
    }
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause::new(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {value}"),
        )
    }
    /// `field: message`, how upstream joins causes into the Status message.
    pub fn render(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// An API failure: everything needed to build the `metav1.Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
    /// Seconds a client should wait before retrying (429, 503, 504).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn about(mut self, res: &ResourceInfo, name: &str) -> Self {
        self.name = (!name.is_empty()).then(|| name.to_string());
        self.group = Some(res.group.to_string());
        self.kind = Some(res.plural.to_string());
        self
    }

    /// 404: `pods "web" not found`.
    pub fn not_found(res: &ResourceInfo, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", res.qualified_resource()),
        )
        .about(res, name)
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        let _ = path;
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409: `pods "web" already exists`.
    pub fn already_exists(res: &ResourceInfo, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", res.qualified_resource()),
        )
        .about(res, name)
    }

    /// 409 for a stale resourceVersion, with upstream's wording.
    pub fn conflict(res: &ResourceInfo, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                res.qualified_resource()
            ),
        )
        .about(res, name)
    }

    /// The conflict upstream reports when an update carries an old resourceVersion.
    pub fn stale(res: &ResourceInfo, name: &str) -> Self {
        ApiError::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422: `Pod "Web" is invalid: metadata.name: Invalid value: ...`.
    pub fn invalid(res: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let joined = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {joined}", res.kind),
        )
        .about(res, name);
        e.kind = Some(res.kind.to_string());
        e.causes = causes;
        e
    }

    /// 400 with a free-form message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401 for a request whose credentials do not check out.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 with upstream's `User "x" cannot verb resource ...` message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    /// 405 for a verb the resource does not serve.
    pub fn method_not_supported(res: &ResourceInfo, verb: &str) -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind {:?}",
                res.kind
            ),
        )
    }

    /// 406 for an Accept header we cannot serve.
    pub fn not_acceptable(accept: &str) -> Self {
        ApiError::new(
            406,
            "NotAcceptable",
            format!("the server was unable to respond with a content type that the client supports (accept: {accept})"),
        )
    }

    /// 410: a watch or continue token from before the last compaction.
    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// 413 for a body over the limit.
    pub fn too_large() -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// 415 for a body in a format we cannot read.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"),
        )
    }

    /// 500 for a failure of ours.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 while the storage is unreachable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    /// 504 when storage did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(504, "Timeout", message);
        e.retry_after = Some(1);
        e
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group {
            if !g.is_empty() {
                details.insert("group".into(), json!(g));
            }
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            details.insert("causes".into(), json!(self.causes));
        }
        if let Some(s) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(s));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_api::resources::find;

    #[test]
    fn not_found_reads_like_upstream() {
        let pods = find("", "v1", "pods").unwrap();
        let s = ApiError::not_found(pods, "web").to_status();
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pods");
        let deploy = find("apps", "v1", "deployments").unwrap();
        let s = ApiError::not_found(deploy, "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_joins_causes_like_upstream() {
        let pods = find("", "v1", "pods").unwrap();
        let e = ApiError::invalid(
            pods,
            "Web",
            vec![Cause::invalid(
                "metadata.name",
                &json!("Web"),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
            )],
        );
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Pod \"Web\" is invalid: metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
        );
        assert_eq!(
            e.to_status()["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
    }
}

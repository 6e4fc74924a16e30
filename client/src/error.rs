//! What a call can fail with: [`Error`], whose [`Error::Api`] rebuilds the
//! apiserver's `metav1.Status` (code, reason, message) from the gRPC status
//! details, so callers match on upstream's reasons (`NotFound`, `Conflict`,
//! `AlreadyExists`, `Expired`...).

use serde_json::Value;
use tonic::Code;

/// An error the apiserver answered with, as upstream's `metav1.Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({reason}, {code})")]
pub struct ApiError {
    /// The HTTP code REST would have answered with (404, 409, 410...).
    pub code: u16,
    /// Upstream's reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`,
    /// `Expired`, `Forbidden`...
    pub reason: String,
    pub message: String,
    /// The whole `metav1.Status` (details, causes, retryAfterSeconds).
    pub status: Value,
}

impl ApiError {
    /// Rebuilds the error from a gRPC status: from the `metav1.Status` JSON
    /// in its details, or, for statuses that did not come from the registry
    /// (transport, proxies), from the code alone.
    pub fn from_grpc(status: &tonic::Status) -> ApiError {
        if let Ok(v) = serde_json::from_slice::<Value>(status.details()) {
            if v.get("kind").and_then(Value::as_str) == Some("Status") {
                return ApiError {
                    code: v.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
                    reason: v
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    message: v
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or(status.message())
                        .to_string(),
                    status: v,
                };
            }
        }
        let (code, reason) = match status.code() {
            Code::InvalidArgument => (400, "BadRequest"),
            Code::Unauthenticated => (401, "Unauthorized"),
            Code::PermissionDenied => (403, "Forbidden"),
            Code::NotFound => (404, "NotFound"),
            Code::Unimplemented => (405, "MethodNotAllowed"),
            Code::AlreadyExists => (409, "AlreadyExists"),
            Code::Aborted => (409, "Conflict"),
            Code::OutOfRange => (410, "Expired"),
            Code::ResourceExhausted => (429, "TooManyRequests"),
            Code::Unavailable => (503, "ServiceUnavailable"),
            Code::DeadlineExceeded => (504, "Timeout"),
            _ => (500, "InternalError"),
        };
        ApiError {
            code,
            reason: reason.to_string(),
            message: status.message().to_string(),
            status: Value::Null,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Kubeconfig(#[from] crate::kubeconfig::KubeconfigError),
    #[error("connecting to {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("decoding a {kind} from the apiserver: {source}")]
    Decode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding a {kind} for the apiserver: {source}")]
    Encode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Api(ApiError::from_grpc(&s))
    }
}

impl Error {
    /// The API error's HTTP code, if the apiserver answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// Upstream's reason (`NotFound`, `Conflict`...), if the apiserver answered.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Api(e) => Some(&e.reason),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.reason() == Some("Conflict")
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason() == Some("AlreadyExists")
    }

    /// 410 Gone: the resourceVersion is older than the server's history.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_details_rebuild_the_exact_error() {
        let st = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "pods \"web\" not found", "reason": "NotFound", "code": 404,
            "details": {"name": "web", "kind": "pods"}});
        let status = tonic::Status::with_details(
            Code::NotFound,
            "pods \"web\" not found",
            serde_json::to_vec(&st).unwrap().into(),
        );
        let e = ApiError::from_grpc(&status);
        assert_eq!(e.code, 404);
        assert_eq!(e.reason, "NotFound");
        assert_eq!(e.status["details"]["name"], "web");
    }

    #[test]
    fn statuses_without_details_map_back_from_the_code() {
        let e = ApiError::from_grpc(&tonic::Status::aborted("stale"));
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        let e = ApiError::from_grpc(&tonic::Status::out_of_range("old"));
        assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
    }
}

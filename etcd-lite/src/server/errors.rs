//! The one table that maps every etcd-lite error to etcd's gRPC code and message
//! (etcd's `api/v3rpc/rpctypes`), so `etcdctl` prints exactly what it prints for etcd.

use tonic::{Code, Status};

use crate::mvcc::MvccError;
use crate::raft::ProposeError;
use crate::storage::EngineError;

/// Errors the etcd API returns, before they become a gRPC status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error(transparent)]
    Raft(#[from] ProposeError),
    #[error("request is too large")]
    RequestTooLarge,
    #[error("member not found")]
    MemberNotFound,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(&'static str),
    /// An operation this member's storage engine does not have.
    #[error("{0}")]
    Unsupported(String),
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unsupported { .. } => ApiError::Unsupported(e.to_string()),
            e => ApiError::Mvcc(e.into()),
        }
    }
}

fn etcd(code: Code, msg: &str) -> Status {
    Status::new(code, format!("etcdserver: {msg}"))
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match &e {
            ApiError::Mvcc(m) => match m {
                MvccError::Compacted | MvccError::FutureRevision => {
                    etcd(Code::OutOfRange, &m.to_string())
                }
                MvccError::EmptyKey
                | MvccError::KeyNotFound
                | MvccError::ValueProvided
                | MvccError::LeaseProvided
                | MvccError::TooManyOps
                | MvccError::DuplicateKey
                | MvccError::InvalidSortOption => etcd(Code::InvalidArgument, &m.to_string()),
                MvccError::LeaseNotFound => etcd(Code::NotFound, &m.to_string()),
                MvccError::LeaseExists => etcd(Code::FailedPrecondition, &m.to_string()),
                MvccError::LeaseTtlTooLarge => etcd(Code::OutOfRange, &m.to_string()),
                MvccError::Storage(_) | MvccError::Corrupt { .. } => {
                    etcd(Code::Internal, &m.to_string())
                }
            },
            ApiError::Raft(r) => match r {
                ProposeError::NoLeader
                | ProposeError::Timeout
                | ProposeError::LeaderChanged
                | ProposeError::Stopped(_) => etcd(Code::Unavailable, &r.to_string()),
                ProposeError::MemberExists | ProposeError::PeerUrlExists => {
                    etcd(Code::FailedPrecondition, &r.to_string())
                }
                ProposeError::MemberNotFound => etcd(Code::NotFound, &r.to_string()),
                ProposeError::NotEnoughStartedMembers => {
                    etcd(Code::FailedPrecondition, &r.to_string())
                }
            },
            ApiError::RequestTooLarge => etcd(Code::InvalidArgument, &e.to_string()),
            ApiError::MemberNotFound => etcd(Code::NotFound, &e.to_string()),
            ApiError::InvalidArgument(msg) => etcd(Code::InvalidArgument, msg),
            ApiError::Unimplemented(what) => {
                Status::unimplemented(format!("etcd-lite does not implement {what}"))
            }
            ApiError::Unsupported(msg) => Status::unimplemented(msg.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_etcds() {
        let s: Status = ApiError::Mvcc(MvccError::EmptyKey).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "etcdserver: key is not provided")
        );
        let s: Status = ApiError::Mvcc(MvccError::Compacted).into();
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            )
        );
        let s: Status = ApiError::RequestTooLarge.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "etcdserver: request is too large")
        );
        let s: Status = ApiError::Raft(ProposeError::NoLeader).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "etcdserver: no leader")
        );
        let s: Status = ApiError::Mvcc(MvccError::LeaseNotFound).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "etcdserver: requested lease not found")
        );
    }
}

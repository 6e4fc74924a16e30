//! Errors of the MVCC store. Their texts are etcd's; `server::errors` maps them to gRPC codes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("key is not provided")]
    EmptyKey,
    #[error("key not found")]
    KeyNotFound,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("too many operations in txn request")]
    TooManyOps,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("invalid sort option")]
    InvalidSortOption,
    /// The engine failed underneath; not a deterministic outcome, so never replicated as `Rejected`.
    #[error("storage: {0}")]
    Storage(String),
    /// Stored bytes did not decode; the data directory is damaged.
    #[error("corrupt {what} in storage: {detail}")]
    Corrupt {
        /// Not serialized (a `&'static str` cannot be deserialized); like
        /// `Storage`, this error is local and never replicated.
        #[serde(skip)]
        what: &'static str,
        detail: String,
    },
}

impl From<crate::storage::EngineError> for MvccError {
    fn from(e: crate::storage::EngineError) -> Self {
        MvccError::Storage(e.to_string())
    }
}

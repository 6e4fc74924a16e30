//! The replicated state machine's contents: etcd's MVCC keyspace, its leases and
//! the cluster's published member attributes, stored on an [`Engine`].
//!
//! Entry point: [`Store`]. Raft hands every committed [`Command`] to
//! [`Store::apply`], which is deterministic: the same commands in the same order
//! give the same revisions, values and responses on every member. Reads
//! ([`Store::range`], [`Store::history`]) never change anything.
//!
//! Semantics are etcd's (`server/storage/mvcc`): one store-wide revision that
//! every write transaction bumps by one; within a transaction each change gets a
//! sub-revision; each key has `create_revision`, `mod_revision` and `version`;
//! a delete writes a tombstone and ends the key's generation; compaction drops
//! every revision older than the compacted one except the latest live value of
//! each key.
//!
//! [`Engine`]: crate::storage::Engine

mod command;
mod compaction;
mod error;
mod index;
mod lease;
mod revision;
mod store;
#[cfg(test)]
pub(crate) mod testkit;
mod txn;

pub use self::command::{Applied, AppliedBody, Command, MemberAttributes};
pub use self::error::MvccError;
pub use self::lease::{LeaseInfo, MAX_LEASE_TTL};
pub use self::store::{KvHash, Store};
pub use self::txn::validate_txn;

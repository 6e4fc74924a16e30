//! etcd-lite's Raft layer, on openraft: the replicated log, the state machine
//! that applies it to the MVCC [`Store`](crate::mvcc::Store), the gRPC network
//! between members, and [`RaftNode`], the handle the etcd API uses to propose
//! writes and to serve linearizable reads.

// openraft's storage traits fix the error type (`StorageError`, ~200 bytes); the
// helpers here return the same type so `?` flows into those traits unchanged.
#![allow(clippy::result_large_err)]

mod forward;
mod log_store;
mod network;
mod node;
mod service;
mod state_machine;
mod wal;

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::log_store::LogStore;
pub use self::network::PeerNetwork;
pub use self::node::{LeaseCall, ProposeError, RaftNode, RaftStatus};
pub use self::service::PeerService;
pub use self::state_machine::{AppliedIndex, SmShared, StateMachine};

use crate::mvcc::{Applied, Command};

/// A member's identity in Raft's membership: its name and the URLs its peers reach it on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// What one Raft entry carries: commands proposed together, applied in order.
///
/// openraft 0.9 waits for each log append to be flushed before it appends the
/// next, so the leader packs the commands that arrive meanwhile into one entry.
///
/// The commands stay encoded from the moment the leader packs them until a
/// state machine applies them: the log, replication and the peer network
/// only copy (or share) the bytes, instead of decoding and re-encoding every
/// command at each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal(Bytes);

impl Proposal {
    pub fn new(commands: &[Command]) -> Proposal {
        Proposal(Bytes::from(encode(&commands)))
    }

    /// Decodes the commands (a malformed proposal means a corrupt log).
    pub fn commands(&self) -> Result<Vec<Command>, postcard::Error> {
        decode(&self.0)
    }
}

impl Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Proposal;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an encoded proposal")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Proposal, E> {
                Ok(Proposal(Bytes::copy_from_slice(bytes)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Proposal, E> {
                Ok(Proposal(Bytes::from(bytes)))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// The results of a [`Proposal`]'s commands, in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalResult(pub Vec<Applied>);

openraft::declare_raft_types!(
    /// The types etcd-lite instantiates openraft with.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, MemberNode>;
pub type StorageError = openraft::StorageError<u64>;

/// A membership change asked of the leader (etcd's MemberAdd / MemberRemove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    Add { id: u64, node: MemberNode },
    Remove { id: u64 },
}

/// Encodes a value for the wire or the disk.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encoding into a Vec cannot fail")
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Wraps an I/O-ish failure as an openraft storage error.
pub(crate) fn storage_io_error(
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
    err: impl std::error::Error + Send + Sync + 'static,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&err)).into()
}

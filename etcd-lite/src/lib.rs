//! etcd-lite: a Raft-replicated key-value store that speaks the etcd v3 API.
//!
//! Layers, bottom up: [`storage`] (the engine trait and its implementations),
//! [`mvcc`] (etcd's revisioned keyspace and leases: the state machine).

pub mod mvcc;
pub mod storage;

//! openraft's storage conformance suite, run on etcd-lite's log store (its
//! write-ahead log file) with the state machine on every storage engine.

// The suite's functions return openraft's `StorageError` (~200 bytes) as it is.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use etcd_lite::raft::{LogStore, StateMachine, TypeConfig};
use etcd_lite::storage::{self, EngineKind};
use etcd_lite::watch::WatchHub;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

/// Builds a fresh log store (a WAL) and state machine (on a new engine, batched
/// as a member's is) in a temp dir.
struct Builder(EngineKind);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = storage::open(
            self.0,
            &dir.path().join("engine"),
            Some(storage::Batching::default()),
        )
        .expect("open engine");
        let log = LogStore::open(&dir.path().join("wal"))?;
        let sm = StateMachine::open(engine, &dir.path().join("snap"), Arc::new(WatchHub::new()))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_redb() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(EngineKind::Redb))
}

#[test]
fn openraft_storage_suite_passes_on_sled() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(EngineKind::Sled))
}

#[test]
fn openraft_storage_suite_passes_on_memory() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(EngineKind::Memory))
}

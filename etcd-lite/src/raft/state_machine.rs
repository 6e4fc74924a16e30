//! The Raft state machine: applies committed entries to the MVCC [`Store`],
//! builds and installs snapshots, and publishes every change to the watch hub.
//!
//! Entry point: [`StateMachine::open`]; [`StateMachine::shared`] is what the etcd
//! API reads through.
//!
//! # To ensure correctness
//! - A run of entries' changes and the last applied log id go to the engine in
//!   one atomic batch, so after a crash the store is exactly the state after some
//!   applied index; openraft re-applies the committed entries after it from the
//!   log. Those batches are not flushed on their own (the log is the durable
//!   record): a snapshot flushes the store before it is saved, so the store is
//!   always durable at least up to the snapshot, and the log is purged only up
//!   to the snapshot.
//! - Applying and publishing a command's events happen under the store's write
//!   lock, so a watcher that reads history under the read lock and then registers
//!   never misses or repeats an event.
//! - A snapshot holds the store's spaces at exactly its `last_log_id`; it is built
//!   under the read lock, and written to disk (temp file, fsync, rename) before use.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftLogId, SnapshotMeta};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    decode, encode, storage_io_error, Entry, LogId, MemberNode, ProposalResult, StorageError,
    StoredMembership, TypeConfig,
};
use crate::mvcc::Store;
use crate::storage::{Durability, Engine, ScanRange, Space, WriteBatch};
use crate::watch::WatchHub;

const APPLIED: &[u8] = b"raft/applied";
const MEMBERSHIP: &[u8] = b"raft/membership";
/// The spaces that make up the state machine (the Raft log and vote are not part of it).
const SM_SPACES: [Space; 3] = [Space::Kv, Space::Lease, Space::Meta];
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// A follower waits on this to serve a read at a read index.
pub type AppliedIndex = watch::Receiver<u64>;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, MemberNode>,
    data: Vec<u8>,
}

/// The rows of a snapshot: every (space, key, value) of [`SM_SPACES`].
#[derive(Serialize, Deserialize)]
struct SnapshotRows {
    rows: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

fn space_code(space: Space) -> u8 {
    SM_SPACES
        .iter()
        .position(|s| *s == space)
        .expect("a state machine space") as u8
}

/// State shared by the state machine, its snapshot builder and the etcd API.
pub struct SmShared {
    store: RwLock<Store>,
    engine: Arc<dyn Engine>,
    applied: RwLock<(Option<LogId>, StoredMembership)>,
    applied_tx: watch::Sender<u64>,
    hub: Arc<WatchHub>,
    snapshot_dir: PathBuf,
}

impl SmShared {
    /// Read access to the store (ranges, history, leases).
    pub fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().expect("store lock poisoned")
    }

    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The last applied log index, watchable.
    pub fn applied_index(&self) -> AppliedIndex {
        self.applied_tx.subscribe()
    }

    pub fn membership(&self) -> StoredMembership {
        self.applied.read().expect("applied lock").1.clone()
    }
}

#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<SmShared>,
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    storage_io_error(ErrorSubject::StateMachine, verb, e)
}

impl StateMachine {
    /// Opens the store on `engine`; snapshots are kept in `snapshot_dir`.
    pub fn open(
        engine: Arc<dyn Engine>,
        snapshot_dir: &Path,
        hub: Arc<WatchHub>,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(snapshot_dir).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let store = Store::open(engine.clone()).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let applied = read_applied(&*engine)?;
        let (applied_tx, _) = watch::channel(applied.0.map_or(0, |l| l.index));
        Ok(StateMachine {
            shared: Arc::new(SmShared {
                store: RwLock::new(store),
                engine,
                applied: RwLock::new(applied),
                applied_tx,
                hub,
                snapshot_dir: snapshot_dir.to_path_buf(),
            }),
        })
    }

    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    fn snapshot_path(&self) -> PathBuf {
        self.shared.snapshot_dir.join(SNAPSHOT_FILE)
    }

    fn save_snapshot_file(&self, file: &SnapshotFile) -> Result<(), StorageError> {
        let path = self.snapshot_path();
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encode(file))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.shared.snapshot_dir)?.sync_all()
        };
        write().map_err(|e| storage_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }
}

fn read_applied(engine: &dyn Engine) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let get = |key: &[u8]| {
        engine
            .get(Space::Meta, key)
            .map_err(|e| sm_err(ErrorVerb::Read, e))
    };
    let applied = match get(APPLIED)? {
        Some(b) => decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?,
        None => None,
    };
    let membership = match get(MEMBERSHIP)? {
        Some(b) => decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.shared.applied.read().expect("applied lock").clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let shared = &self.shared;
        let mut store = shared.store.write().expect("store lock poisoned");
        let mut responses = Vec::new();
        let prev_kv_watched = |key: &[u8]| shared.hub.wants_prev_kv(key);
        // One engine write for the whole run of entries: the store serves values of
        // earlier entries from memory until `mark_written`.
        let mut batch = WriteBatch::new();
        let mut last = None;
        let mut membership = None;
        for entry in entries {
            let log_id = *entry.get_log_id();
            let mut results = Vec::new();
            match entry.payload {
                EntryPayload::Normal(proposal) => {
                    let commands = proposal
                        .commands()
                        .map_err(|e| sm_err(ErrorVerb::Read, e))?;
                    for cmd in &commands {
                        let applied = store
                            .apply(cmd, &mut batch, &prev_kv_watched)
                            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                        if !applied.events.is_empty() {
                            shared.hub.publish(&applied.events);
                        }
                        results.push(applied);
                    }
                }
                EntryPayload::Blank => {}
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                }
            };
            last = Some(log_id);
            responses.push(ProposalResult(results));
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        batch.put(Space::Meta, APPLIED, encode(&Some(last)));
        if let Some(m) = &membership {
            batch.put(Space::Meta, MEMBERSHIP, encode(m));
        }
        shared
            .engine
            .write(batch, Durability::Deferred)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        store.mark_written();
        {
            let mut applied_state = shared.applied.write().expect("applied lock");
            applied_state.0 = Some(last);
            if let Some(m) = membership {
                applied_state.1 = m;
            }
        }
        let last_index = Some(last.index);
        drop(store);
        if let Some(index) = last_index {
            shared.applied_tx.send_replace(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let rows: SnapshotRows =
            decode(&data).map_err(|e| storage_io_error(subject(), ErrorVerb::Read, e))?;
        let shared = &self.shared;
        {
            let mut store = shared.store.write().expect("store lock poisoned");
            let mut batch = WriteBatch::new();
            for space in SM_SPACES {
                batch.clear(space);
            }
            for (code, key, value) in rows.rows {
                let space = *SM_SPACES.get(code as usize).ok_or_else(|| {
                    storage_io_error(subject(), ErrorVerb::Read, BadSnapshot(code))
                })?;
                batch.put(space, key, value);
            }
            shared
                .engine
                .write(batch, Durability::Immediate)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            *store = Store::open(shared.engine.clone()).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            *shared.applied.write().expect("applied lock") =
                (meta.last_log_id, meta.last_membership.clone());
            shared.hub.resync();
        }
        shared
            .applied_tx
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot from the leader");
        self.save_snapshot_file(&SnapshotFile {
            meta: meta.clone(),
            data,
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let bytes = match std::fs::read(self.snapshot_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(storage_io_error(
                    ErrorSubject::Snapshot(None),
                    ErrorVerb::Read,
                    e,
                ))
            }
        };
        let file: SnapshotFile = decode(&bytes)
            .map_err(|e| storage_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("snapshot names unknown keyspace {0}")]
struct BadSnapshot(u8);

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = &self.shared;
        let (meta, data) = {
            // The read lock keeps `apply` out, so rows and applied state agree.
            let _store = shared.store.read().expect("store lock poisoned");
            // The log will be purged up to this snapshot: the store must not be behind it after a crash.
            shared
                .engine
                .flush()
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let (last_log_id, last_membership) =
                shared.applied.read().expect("applied lock").clone();
            let mut rows = Vec::new();
            for space in SM_SPACES {
                let scanned = shared
                    .engine
                    .scan(space, ScanRange::all(), false, 0)
                    .map_err(|e| sm_err(ErrorVerb::Read, e))?;
                rows.extend(scanned.into_iter().map(|(k, v)| (space_code(space), k, v)));
            }
            let snapshot_id = match last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, rows.len()),
                None => format!("empty-{}", rows.len()),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            };
            (meta, encode(&SnapshotRows { rows }))
        };
        self.save_snapshot_file(&SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

//! The Raft log on the storage engine, with group commit.
//!
//! Entry point: [`LogStore::open`]. Entries live in [`Space::RaftLog`] under their
//! big-endian index; the vote, the committed log id and the last purged log id
//! live in [`Space::RaftMeta`].
//!
//! # To ensure correctness
//! - Every change goes through one writer thread, in the order openraft asked for
//!   it; the writer folds whatever is queued into one engine batch and makes it
//!   durable with one fsync (group commit), then reports every append in it as
//!   flushed. An append is reported flushed only once it is durable.
//! - Entries are readable as soon as `append` returns (openraft may replicate them
//!   before they are durable locally): until the writer has stored them they are
//!   served from `pending`. An entry leaves `pending` only after it is in the engine.
//! - `save_vote`, `truncate` and `purge` return only once durable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogId, Vote};
use tokio::sync::oneshot;

use super::{decode, encode, storage_io_error, Entry, LogId, StorageError, TypeConfig};
use crate::storage::{Durability, Engine, EngineError, ScanRange, Space, WriteBatch};

const VOTE: &[u8] = b"raft/vote";
const COMMITTED: &[u8] = b"raft/committed";
const PURGED: &[u8] = b"raft/purged";

/// Most queued requests folded into one engine write.
const MAX_GROUP: usize = 1024;

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

enum Completion {
    Flushed(LogFlushed<TypeConfig>),
    Done(oneshot::Sender<Result<(), String>>),
    None,
}

struct WriteRequest {
    batch: WriteBatch,
    durable: bool,
    /// The entries this request stores: each leaves `pending` once written, unless a
    /// truncation has replaced it there by a newer entry with the same index.
    stored: Vec<Arc<Entry>>,
    completion: Completion,
}

/// Entries appended but not yet written by the writer thread.
type Pending = Arc<Mutex<BTreeMap<u64, Arc<Entry>>>>;

/// The Raft log storage; clones share state (the clone is the log reader).
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn Engine>,
    pending: Pending,
    writer: mpsc::Sender<WriteRequest>,
    /// The last purged log id, mirrored in memory (it is read on every `get_log_state`).
    purged: Arc<Mutex<Option<LogId>>>,
}

impl LogStore {
    /// Opens the log on `engine` and starts its writer thread (it stops when every clone is dropped).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StorageError> {
        let purged = read_meta::<LogId>(&*engine, PURGED)?;
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel::<WriteRequest>();
        let writer_engine = engine.clone();
        let writer_pending = pending.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(&*writer_engine, &writer_pending, rx))
            .map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        Ok(LogStore {
            engine,
            pending,
            writer: tx,
            purged: Arc::new(Mutex::new(purged)),
        })
    }

    async fn write_and_wait(
        &self,
        batch: WriteBatch,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        let req = WriteRequest {
            batch,
            durable: true,
            stored: Vec::new(),
            completion: Completion::Done(tx),
        };
        let writer_gone = || storage_io_error(subject.clone(), ErrorVerb::Write, WriterGone);
        self.writer.send(req).map_err(|_| writer_gone())?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(storage_io_error(
                subject,
                ErrorVerb::Write,
                WriteFailed(msg),
            )),
            Err(_) => Err(writer_gone()),
        }
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        if let Some((_, e)) = self.pending.lock().expect("pending lock").last_key_value() {
            return Ok(Some(*e.get_log_id()));
        }
        let last = self
            .engine
            .scan(Space::RaftLog, ScanRange::all(), true, 1)
            .map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        match last.first() {
            Some((_, bytes)) => Ok(Some(*decode_entry(bytes)?.get_log_id())),
            None => Ok(None),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the raft log writer thread has stopped")]
struct WriterGone;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WriteFailed(String);

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    decode(bytes).map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
}

fn read_meta<T: for<'de> serde::Deserialize<'de>>(
    engine: &dyn Engine,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    let subject = ErrorSubject::Store;
    match engine.get(Space::RaftMeta, key) {
        Ok(Some(bytes)) => decode(&bytes)
            .map(Some)
            .map_err(|e| storage_io_error(subject, ErrorVerb::Read, e)),
        Ok(None) => Ok(None),
        Err(e) => Err(storage_io_error(subject, ErrorVerb::Read, e)),
    }
}

/// Folds queued requests into one engine write, makes it durable once, then completes them.
fn writer_loop(engine: &dyn Engine, pending: &Pending, rx: mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.push(req),
                Err(_) => break,
            }
        }
        let mut batch = WriteBatch::new();
        let mut durable = false;
        for req in &mut group {
            batch.ops.append(&mut req.batch.ops);
            durable |= req.durable;
        }
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
        let result: Result<(), EngineError> = engine.write(batch, durability);
        if result.is_ok() {
            let mut pending = pending.lock().expect("pending lock");
            for entry in group.iter().flat_map(|req| &req.stored) {
                let index = entry.get_log_id().index;
                if pending.get(&index).is_some_and(|p| Arc::ptr_eq(p, entry)) {
                    pending.remove(&index);
                }
            }
        }
        for req in group {
            match req.completion {
                Completion::Flushed(cb) => cb.log_io_completed(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::other(e.to_string())),
                ),
                Completion::Done(tx) => {
                    let _ = tx.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                }
                Completion::None => {}
            }
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "raft log write failed; stopping the log writer");
            return;
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i + 1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        // Snapshot the pending entries first: whatever is not there any more is in the engine.
        let pending: Vec<Arc<Entry>> = {
            let pending = self.pending.lock().expect("pending lock");
            match end {
                Some(end) => pending.range(start..end).map(|(_, e)| e.clone()).collect(),
                None => pending.range(start..).map(|(_, e)| e.clone()).collect(),
            }
        };
        let first_pending = pending.first().map(|e| e.get_log_id().index);
        let disk_end = first_pending.or(end);
        let start_key = log_key(start);
        let end_key = disk_end.map(log_key);
        let mut entries = Vec::new();
        if disk_end.is_none_or(|e| e > start) {
            let rows = self
                .engine
                .scan(
                    Space::RaftLog,
                    ScanRange::new(&start_key, end_key.as_ref().map(|k| &k[..])),
                    false,
                    0,
                )
                .map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            for (_, bytes) in rows {
                entries.push(decode_entry(&bytes)?);
            }
        }
        entries.extend(pending.iter().map(|e| (**e).clone()));
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = *self.purged.lock().expect("purged lock");
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(Space::RaftMeta, VOTE, encode(vote));
        self.write_and_wait(batch, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        read_meta(&*self.engine, VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: losing it in a crash only means re-learning it from the leader.
        let mut batch = WriteBatch::new();
        batch.put(Space::RaftMeta, COMMITTED, encode(&committed));
        let req = WriteRequest {
            batch,
            durable: false,
            stored: Vec::new(),
            completion: Completion::None,
        };
        self.writer
            .send(req)
            .map_err(|_| storage_io_error(ErrorSubject::Store, ErrorVerb::Write, WriterGone))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(read_meta::<Option<LogId>>(&*self.engine, COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::new();
        let mut stored = Vec::new();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            for entry in entries {
                let index = entry.get_log_id().index;
                batch.put(Space::RaftLog, log_key(index), encode(&entry));
                let entry = Arc::new(entry);
                pending.insert(index, entry.clone());
                stored.push(entry);
            }
        }
        let req = WriteRequest {
            batch,
            durable: true,
            stored,
            completion: Completion::Flushed(callback),
        };
        self.writer
            .send(req)
            .map_err(|_| storage_io_error(ErrorSubject::Logs, ErrorVerb::Write, WriterGone))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.pending
            .lock()
            .expect("pending lock")
            .split_off(&log_id.index);
        let mut batch = WriteBatch::new();
        batch.delete_range(Space::RaftLog, log_key(log_id.index), log_key(u64::MAX));
        batch.delete(Space::RaftLog, log_key(u64::MAX));
        self.write_and_wait(batch, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(Space::RaftMeta, PURGED, encode(&log_id));
        batch.delete_range(Space::RaftLog, log_key(0), log_key(log_id.index + 1));
        self.write_and_wait(batch, ErrorSubject::Logs).await?;
        *self.purged.lock().expect("purged lock") = Some(log_id);
        Ok(())
    }
}

//! The Raft log on an append-only write-ahead log file, with group commit.
//!
//! Entry point: [`LogStore::open`]. The file, its format and its replay are in
//! [`super::wal`]; this module feeds it from openraft's log storage calls.
//!
//! # To ensure correctness
//! - Every change goes through one writer thread, in the order openraft asked for
//!   it; the writer folds whatever is queued into one write of the file and makes
//!   it durable with one `fdatasync` (group commit), then reports every append in
//!   it as flushed. An append is reported flushed only once it is durable.
//! - Entries are readable as soon as `append` returns (openraft may replicate them
//!   before they are durable locally): until the writer has stored them they are
//!   served from `pending`. An entry leaves `pending` only after it is in the
//!   WAL's index, so a reader finds it in one or the other.
//! - `save_vote`, `truncate` and `purge` return only once durable.
//! - The committed log id is written but not synced on its own; `read_committed`
//!   returns the last one saved.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogId, Vote};
use tokio::sync::oneshot;

use super::wal::{Record, Wal, WalReader};
use super::{storage_io_error, Entry, LogId, StorageError, TypeConfig};

/// Most queued requests folded into one write.
const MAX_GROUP: usize = 1024;

enum Completion {
    Flushed(LogFlushed<TypeConfig>),
    Done(oneshot::Sender<Result<(), String>>),
    None,
}

struct WriteRequest {
    /// What to write. Each entry leaves `pending` once written, unless a
    /// truncation has replaced it there by a newer entry with the same index.
    records: Vec<Record<Arc<Entry>>>,
    completion: Completion,
}

/// Entries appended but not yet written by the writer thread.
type Pending = Arc<Mutex<BTreeMap<u64, Arc<Entry>>>>;

/// The Raft log storage; clones share state (the clone is the log reader).
#[derive(Clone)]
pub struct LogStore {
    wal: WalReader,
    pending: Pending,
    /// The last committed log id saved; the WAL has it once the writer gets to it.
    committed: Arc<Mutex<Option<LogId>>>,
    writer: mpsc::Sender<WriteRequest>,
}

impl LogStore {
    /// Opens (creating if needed) the WAL in `dir`, replays it and starts its
    /// writer thread (it stops when every clone is dropped).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let wal =
            Wal::open(dir).map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let reader = wal.reader();
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel::<WriteRequest>();
        let writer_pending = pending.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(wal, &writer_pending, rx))
            .map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        Ok(LogStore {
            committed: Arc::new(Mutex::new(reader.committed())),
            wal: reader,
            pending,
            writer: tx,
        })
    }

    /// Queues `record` and waits until it is durable.
    async fn write_and_wait(
        &self,
        record: Record<Arc<Entry>>,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        let req = WriteRequest {
            records: vec![record],
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

    fn last_log_id(&self) -> Option<LogId> {
        // Pending first: an entry leaves it only once it is in the WAL's index.
        if let Some((_, e)) = self.pending.lock().expect("pending lock").last_key_value() {
            return Some(*e.get_log_id());
        }
        self.wal.last_log_id()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the raft log writer thread has stopped")]
struct WriterGone;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WriteFailed(String);

/// Folds queued requests into one WAL write, made durable once, then completes
/// them in order. Stops at the first failure: the file's state is then unknown.
fn writer_loop(mut wal: Wal, pending: &Pending, rx: mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.push(req),
                Err(_) => break,
            }
        }
        let records: Vec<Record<&Entry>> = group
            .iter()
            .flat_map(|req| req.records.iter().map(Record::as_ref))
            .collect();
        let purged = records.iter().any(|r| matches!(r, Record::Purge(_)));
        let result = wal.write(&records).map_err(|e| e.to_string());
        drop(records);
        if result.is_ok() {
            let mut pending = pending.lock().expect("pending lock");
            for req in &group {
                for record in &req.records {
                    let Record::Entry(entry) = record else {
                        continue;
                    };
                    let index = entry.get_log_id().index;
                    if pending.get(&index).is_some_and(|p| Arc::ptr_eq(p, entry)) {
                        pending.remove(&index);
                    }
                }
            }
        }
        for req in group {
            match req.completion {
                Completion::Flushed(cb) => {
                    cb.log_io_completed(result.clone().map_err(std::io::Error::other))
                }
                Completion::Done(tx) => {
                    let _ = tx.send(result.clone());
                }
                Completion::None => {}
            }
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "raft log write failed; stopping the log writer");
            return;
        }
        // On this thread, so that no write lands between copying the live
        // entries and switching to the new file.
        if purged {
            if let Err(e) = wal.rewrite_if_worthwhile() {
                tracing::error!(error = %e, "raft log rewrite failed; stopping the log writer");
                return;
            }
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
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        // Snapshot the pending entries first: whatever is not there any more is in the WAL.
        let pending: Vec<Arc<Entry>> = {
            let pending = self.pending.lock().expect("pending lock");
            match end {
                Some(end) => pending.range(start..end).map(|(_, e)| e.clone()).collect(),
                None => pending.range(start..).map(|(_, e)| e.clone()).collect(),
            }
        };
        let first_pending = pending.first().map(|e| e.get_log_id().index);
        let mut entries = self
            .wal
            .read_entries(start, first_pending.or(end))
            .map_err(|e| storage_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        entries.extend(pending.iter().map(|e| (**e).clone()));
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.wal.purged();
        let last_log_id = self.last_log_id().or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.write_and_wait(Record::Vote(*vote), ErrorSubject::Vote)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.wal.vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self.committed.lock().expect("committed lock") = committed;
        let req = WriteRequest {
            records: vec![Record::Committed(committed)],
            completion: Completion::None,
        };
        self.writer
            .send(req)
            .map_err(|_| storage_io_error(ErrorSubject::Store, ErrorVerb::Write, WriterGone))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*self.committed.lock().expect("committed lock"))
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
        let mut records = Vec::new();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            for entry in entries {
                let entry = Arc::new(entry);
                pending.insert(entry.get_log_id().index, entry.clone());
                records.push(Record::Entry(entry));
            }
        }
        let req = WriteRequest {
            records,
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
        self.write_and_wait(Record::Truncate(log_id.index), ErrorSubject::Logs)
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_and_wait(Record::Purge(log_id), ErrorSubject::Logs)
            .await
    }
}

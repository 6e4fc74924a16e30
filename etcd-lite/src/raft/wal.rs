//! The Raft log's write-ahead log: one append-only file, `raft.wal`, in the WAL
//! directory (`data_dir/member/wal`), made durable with `fdatasync`, as etcd does.
//!
//! Entry point: [`Wal::open`], which replays the file; the [`Wal`] then belongs to
//! the log store's writer thread, and [`WalReader`]s read what it has written.
//!
//! # File format
//! The file is a sequence of records, each `[u32 len][u32 crc][payload]`: `len`
//! is the payload's length and `crc` its CRC-32 (both little-endian); the
//! payload is a postcard-encoded [`Record`]. Replay applies the records in order:
//! - `Entry(e)` drops every entry at or after `e`'s index, then stores `e`;
//! - `Vote(v)` and `Committed(c)` replace the vote and the committed log id;
//! - `Truncate(i)` drops every entry at or after index `i`;
//! - `Purge(id)` drops every entry up to `id`'s index and records `id` as the
//!   last purged log id.
//!
//! # To ensure correctness
//! - A write is acknowledged only after `fdatasync` returned, and the next write
//!   starts only after that. So a torn or corrupt record (short, bad CRC, or not
//!   decodable) can only be in the last, unacknowledged write: replay stops at
//!   the first one and cuts the file there.
//! - The in-memory index (live entries' offsets, vote, committed, last purged)
//!   changes only after the write it describes is in the file, and the file
//!   handle and the offsets change together under one lock, so a reader never
//!   reads offsets of one file in another.
//! - The file is zero-filled ahead of the records (preallocation, as etcd's WAL
//!   segments are), by a background thread that never touches the region the
//!   writer writes: overwriting blocks that already exist makes `fdatasync` a
//!   single data write instead of data plus the inode's new size. Replay ends at
//!   the first zero header; a tail that is all zeros is that preallocation, not
//!   a torn write.
//! - A rewrite (compaction after a purge) writes the kept state to a temp file,
//!   fsyncs it, renames it over `raft.wal` and fsyncs the directory before the
//!   writer appends to the new file: after a crash either file is a complete log.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::{RaftLogId, Vote};
use serde::{Deserialize, Serialize};

use super::{decode, encode, Entry, LogId};

/// The log file inside the WAL directory.
pub(super) const WAL_FILE: &str = "raft.wal";
/// Where a rewrite builds the new file before renaming it over [`WAL_FILE`].
const REWRITE_FILE: &str = "raft.wal.rewrite";
/// Bytes of `[len][crc]` before each payload.
const HEADER_LEN: u64 = 8;
/// How much the file is zero-filled ahead of the records at a time...
const PREALLOCATE_BYTES: u64 = 8 << 20;
/// ...once fewer than this many preallocated bytes are left.
const PREALLOCATE_LOW_WATER: u64 = 4 << 20;
/// A rewrite is worth it once the dead prefix (purged entries and the records
/// around them) is more than half the file and at least this big...
const REWRITE_MIN_DEAD_BYTES: u64 = 64 << 10;
/// ...or, whatever the proportion, once it is this big.
const REWRITE_MAX_DEAD_BYTES: u64 = 64 << 20;

/// One change to the log, as stored in the file.
///
/// Generic over how the entry is held so the writer can encode entries it only
/// borrows; `Record<&Entry>` and `Record<Entry>` encode identically.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Record<E = Entry> {
    Entry(E),
    Vote(Vote<u64>),
    Committed(Option<LogId>),
    /// The first index removed.
    Truncate(u64),
    Purge(LogId),
}

impl<E: Borrow<Entry>> Record<E> {
    pub(super) fn as_ref(&self) -> Record<&Entry> {
        match self {
            Record::Entry(e) => Record::Entry(e.borrow()),
            Record::Vote(v) => Record::Vote(*v),
            Record::Committed(c) => Record::Committed(*c),
            Record::Truncate(i) => Record::Truncate(*i),
            Record::Purge(id) => Record::Purge(*id),
        }
    }

    /// Whether the record must be durable before it is acknowledged. The
    /// committed log id need not be: losing it in a crash only means
    /// re-learning it from the leader.
    pub(super) fn needs_sync(&self) -> bool {
        !matches!(self, Record::Committed(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum WalError {
    #[error("opening the Raft WAL {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("replaying the Raft WAL {path}: {source}")]
    Replay { path: PathBuf, source: io::Error },
    #[error("cutting the torn tail of the Raft WAL {path}: {source}")]
    CutTornTail { path: PathBuf, source: io::Error },
    #[error("appending to the Raft WAL: {0}")]
    Append(io::Error),
    #[error("syncing the Raft WAL: {0}")]
    Sync(io::Error),
    #[error("reading entry {index} from the Raft WAL: {source}")]
    ReadEntry { index: u64, source: io::Error },
    #[error("entry {index} in the Raft WAL is corrupt: {reason}")]
    CorruptEntry { index: u64, reason: String },
    #[error("installing the rewritten Raft WAL: {0}")]
    InstallRewrite(io::Error),
    #[error("preallocating the Raft WAL: {0}")]
    Preallocate(io::Error),
}

/// Where a live entry's record is in the file.
#[derive(Debug, Clone, Copy)]
struct Slot {
    log_id: LogId,
    /// Offset of the record's header.
    offset: u64,
    /// Length of the payload (the record is [`HEADER_LEN`] bytes longer).
    len: u32,
}

/// What the file holds, as replay and then the writer left it.
struct WalIndex {
    /// A handle on the current file, for reads (the writer writes through its own clone).
    file: Arc<File>,
    /// The live entries by index.
    entries: BTreeMap<u64, Slot>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

impl WalIndex {
    /// Applies one record that is in the file at `offset` with a payload of `len` bytes.
    fn apply(&mut self, record: Record<&Entry>, offset: u64, len: u32) {
        match record {
            Record::Entry(entry) => {
                let log_id = *entry.get_log_id();
                self.drop_from(log_id.index);
                self.entries.insert(
                    log_id.index,
                    Slot {
                        log_id,
                        offset,
                        len,
                    },
                );
            }
            Record::Vote(vote) => self.vote = Some(vote),
            Record::Committed(committed) => self.committed = committed,
            Record::Truncate(index) => self.drop_from(index),
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                self.purged = Some(log_id);
            }
        }
    }

    fn drop_from(&mut self, index: u64) {
        if self
            .entries
            .last_key_value()
            .is_some_and(|(&last, _)| last >= index)
        {
            self.entries.split_off(&index);
        }
    }
}

/// A cheap, cloneable view of what the WAL holds: the vote, the committed and
/// last purged log ids, and the live entries, read from the file.
#[derive(Clone)]
pub(super) struct WalReader(Arc<Mutex<WalIndex>>);

impl WalReader {
    fn lock(&self) -> std::sync::MutexGuard<'_, WalIndex> {
        self.0.lock().expect("WAL index lock")
    }

    pub(super) fn vote(&self) -> Option<Vote<u64>> {
        self.lock().vote
    }

    pub(super) fn committed(&self) -> Option<LogId> {
        self.lock().committed
    }

    pub(super) fn purged(&self) -> Option<LogId> {
        self.lock().purged
    }

    /// The log id of the last live entry in the file.
    pub(super) fn last_log_id(&self) -> Option<LogId> {
        self.lock().entries.last_key_value().map(|(_, s)| s.log_id)
    }

    /// The live entries in `[start, end)` (`end` `None`: to the last), in order.
    pub(super) fn read_entries(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Entry>, WalError> {
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        // Take the handle and the offsets together, then read without the lock:
        // after a rewrite the old handle still reads the old (unlinked) file.
        let (file, slots): (Arc<File>, Vec<Slot>) = {
            let index = self.lock();
            let slots = index
                .entries
                .range((Bound::Included(start), end))
                .map(|(_, s)| *s)
                .collect();
            (index.file.clone(), slots)
        };
        let mut buf = Vec::new();
        slots
            .iter()
            .map(|slot| read_entry(&file, slot, &mut buf))
            .collect()
    }
}

fn read_entry(file: &File, slot: &Slot, buf: &mut Vec<u8>) -> Result<Entry, WalError> {
    let index = slot.log_id.index;
    let corrupt = |reason: String| WalError::CorruptEntry { index, reason };
    buf.resize(HEADER_LEN as usize + slot.len as usize, 0);
    file.read_exact_at(buf, slot.offset)
        .map_err(|source| WalError::ReadEntry { index, source })?;
    let (header, payload) = buf.split_at(HEADER_LEN as usize);
    let (_, crc) = parse_header(header);
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("CRC mismatch".into()));
    }
    match decode::<Record>(payload) {
        Ok(Record::Entry(entry)) if entry.get_log_id() == &slot.log_id => Ok(entry),
        Ok(other) => Err(corrupt(format!(
            "expected entry {:?}, found {other:?}",
            slot.log_id
        ))),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

fn parse_header(header: &[u8]) -> (u32, u32) {
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    (word(0), word(4))
}

/// Appends `record`, framed, to `buf`; returns the payload's length.
fn frame(buf: &mut Vec<u8>, record: &Record<&Entry>) -> u32 {
    let payload = encode(record);
    // A Raft entry is bounded by the request size limit, far below 4 GiB.
    let len = u32::try_from(payload.len()).expect("a WAL record is under 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    len
}

/// The write side of the WAL: owned by one writer thread.
pub(super) struct Wal {
    dir: PathBuf,
    /// The current file (the same one readers see through the index).
    file: Arc<File>,
    /// The end of the records: where the next record goes.
    len: u64,
    /// The end of the zero-filled space at and after `len` (at least `len`).
    allocated: u64,
    /// Zero-fills `[allocated, returned end)` in the background; the writer
    /// stays below `allocated` while it runs.
    filler: Option<std::thread::JoinHandle<io::Result<u64>>>,
    reader: WalReader,
    /// Reused between writes.
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and replays it; a torn tail is cut.
    pub(super) fn open(dir: &Path) -> Result<Wal, WalError> {
        let path = dir.join(WAL_FILE);
        let open_err = |source| WalError::Open {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(open_err)?;
        // A rewrite that did not reach its rename left nothing that matters.
        match fs::remove_file(dir.join(REWRITE_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(open_err(e)),
            _ => {}
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_err)?;
        if !existed {
            // Make the new file's name (and the directory's) durable before anything is acknowledged in it.
            sync_dir(dir).map_err(open_err)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent).map_err(open_err)?;
            }
        }
        let file = Arc::new(file);
        let mut index = WalIndex {
            file: file.clone(),
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
        };
        let (valid_len, file_len) =
            replay(&file, &mut index).map_err(|source| WalError::Replay {
                path: path.clone(),
                source,
            })?;
        let zero_tail = valid_len < file_len
            && is_zero(&file, valid_len, file_len).map_err(|source| WalError::Replay {
                path: path.clone(),
                source,
            })?;
        let allocated = if valid_len == file_len || zero_tail {
            file_len
        } else {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid_len,
                cut_bytes = file_len - valid_len,
                "the Raft WAL ends in a torn or corrupt record (an unacknowledged write); cutting it"
            );
            let cut = || -> io::Result<()> {
                file.set_len(valid_len)?;
                file.sync_all()
            };
            cut().map_err(|source| WalError::CutTornTail {
                path: path.clone(),
                source,
            })?;
            valid_len
        };
        tracing::debug!(
            path = %path.display(),
            bytes = valid_len,
            entries = index.entries.len(),
            "replayed the Raft WAL"
        );
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            len: valid_len,
            allocated,
            filler: None,
            reader: WalReader(Arc::new(Mutex::new(index))),
            buf: Vec::new(),
        })
    }

    pub(super) fn reader(&self) -> WalReader {
        self.reader.clone()
    }

    /// Appends `records` with one write and, if any of them needs it, one
    /// `fdatasync`; then makes them visible to readers.
    pub(super) fn write(&mut self, records: &[Record<&Entry>]) -> Result<(), WalError> {
        self.buf.clear();
        let mut placed = Vec::with_capacity(records.len());
        for record in records {
            let offset = self.len + self.buf.len() as u64;
            placed.push((offset, frame(&mut self.buf, record)));
        }
        let end = self.len + self.buf.len() as u64;
        if end > self.allocated {
            // Past the zero-filled space: wait for the filler rather than write
            // where it writes. Past even that, the write simply grows the file.
            self.join_filler()?;
        }
        self.file
            .write_all_at(&self.buf, self.len)
            .map_err(WalError::Append)?;
        if records.iter().any(Record::needs_sync) {
            self.file.sync_data().map_err(WalError::Sync)?;
        }
        self.len = end;
        self.allocated = self.allocated.max(end);
        let mut index = self.reader.lock();
        for (record, (offset, len)) in records.iter().zip(placed) {
            index.apply(record.as_ref(), offset, len);
        }
        drop(index);
        self.preallocate_if_low();
        Ok(())
    }

    /// Starts zero-filling the next stretch when the preallocated space runs low.
    fn preallocate_if_low(&mut self) {
        if self.filler.is_some() || self.allocated - self.len >= PREALLOCATE_LOW_WATER {
            return;
        }
        let (file, from) = (self.file.clone(), self.allocated);
        let spawned = std::thread::Builder::new()
            .name("raft-wal-prealloc".into())
            .spawn(move || -> io::Result<u64> {
                let zeros = vec![0u8; 1 << 20];
                let mut at = from;
                while at < from + PREALLOCATE_BYTES {
                    file.write_all_at(&zeros, at)?;
                    at += zeros.len() as u64;
                }
                file.sync_all()?;
                Ok(at)
            });
        match spawned {
            Ok(handle) => self.filler = Some(handle),
            Err(e) => tracing::warn!(error = %e, "could not start preallocating the Raft WAL"),
        }
    }

    /// Waits for the background zero-fill, if any, and takes its space.
    fn join_filler(&mut self) -> Result<(), WalError> {
        let Some(handle) = self.filler.take() else {
            return Ok(());
        };
        let filled = handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the preallocation thread panicked")))
            .map_err(WalError::Preallocate)?;
        self.allocated = self.allocated.max(filled);
        Ok(())
    }

    /// Bytes before the first live entry: purged entries and the records among them.
    fn dead_prefix(&self) -> u64 {
        let first_live = self
            .reader
            .lock()
            .entries
            .first_key_value()
            .map(|(_, s)| s.offset);
        first_live.unwrap_or(self.len)
    }

    /// Rewrites the file without its dead prefix if that prefix is big enough to
    /// bother. Returns whether it did. A failure before the new file replaces the
    /// old one only costs the attempt (logged); an error is returned only when
    /// the WAL can no longer be trusted to be durable.
    pub(super) fn rewrite_if_worthwhile(&mut self) -> Result<bool, WalError> {
        let dead = self.dead_prefix();
        let worthwhile = (dead > self.len / 2 && dead >= REWRITE_MIN_DEAD_BYTES)
            || dead >= REWRITE_MAX_DEAD_BYTES;
        if !worthwhile {
            return Ok(false);
        }
        // The filler writes to the current file: let it finish before that changes.
        self.join_filler()?;
        let tmp = self.dir.join(REWRITE_FILE);
        let path = self.dir.join(WAL_FILE);
        let built = self
            .write_compacted(&tmp)
            .and_then(|built| fs::rename(&tmp, &path).map(|()| built));
        let (file, len, entries) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::warn!(error = %e, "rewriting the Raft WAL failed; keeping the old file");
                let _ = fs::remove_file(&tmp);
                return Ok(false);
            }
        };
        // Until the rename is durable a crash may bring back the old file, which
        // would not have what we append from now on: that is fatal if it fails.
        sync_dir(&self.dir).map_err(WalError::InstallRewrite)?;
        let file = Arc::new(file);
        {
            let mut index = self.reader.lock();
            index.file = file.clone();
            index.entries = entries;
        }
        tracing::info!(
            before_bytes = self.len,
            after_bytes = len,
            "rewrote the Raft WAL without its purged entries"
        );
        self.file = file;
        self.len = len;
        self.allocated = len;
        Ok(true)
    }

    /// Writes the vote, the committed and last purged log ids and the live
    /// entries to a new, synced file at `tmp`; returns it, its length and its index.
    fn write_compacted(&self, tmp: &Path) -> io::Result<(File, u64, BTreeMap<u64, Slot>)> {
        // Only this (the writer) thread changes the index, so this copy stays current.
        let (vote, committed, purged, slots) = {
            let index = self.reader.lock();
            let slots: Vec<Slot> = index.entries.values().copied().collect();
            (index.vote, index.committed, index.purged, slots)
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        let mut out = BufWriter::new(&file);
        let mut len = 0u64;
        let mut buf = Vec::new();
        let state = [
            vote.map(Record::Vote),
            committed.map(|c| Record::Committed(Some(c))),
            purged.map(Record::Purge),
        ];
        for record in state.into_iter().flatten() {
            buf.clear();
            frame(&mut buf, &record);
            out.write_all(&buf)?;
            len += buf.len() as u64;
        }
        // Entries are copied as they are, header and all.
        let mut entries = BTreeMap::new();
        for slot in slots {
            buf.resize(HEADER_LEN as usize + slot.len as usize, 0);
            self.file.read_exact_at(&mut buf, slot.offset)?;
            out.write_all(&buf)?;
            entries.insert(
                slot.log_id.index,
                Slot {
                    offset: len,
                    ..slot
                },
            );
            len += buf.len() as u64;
        }
        out.flush()?;
        drop(out);
        file.sync_all()?;
        Ok((file, len, entries))
    }
}

impl Drop for Wal {
    /// A filler left running could zero-fill what the next `Wal` on this file
    /// writes, so it is waited for.
    fn drop(&mut self) {
        if let Err(e) = self.join_filler() {
            tracing::warn!(error = %e, "preallocating the Raft WAL failed");
        }
    }
}

/// Applies every whole, intact record of `file` to `index`. Returns the length
/// of that valid prefix and the file's length.
fn replay(file: &File, index: &mut WalIndex) -> io::Result<(u64, u64)> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_LEN as usize];
    let mut payload = Vec::new();
    loop {
        let got = read_full(&mut reader, &mut header)?;
        if got < header.len() {
            break; // The end (got == 0), or a torn header.
        }
        let (len, crc) = parse_header(&header);
        if len == 0 {
            break; // Preallocated zeros (no record is empty), or a torn header.
        }
        let end = offset + HEADER_LEN + u64::from(len);
        if end > file_len {
            break; // A torn payload (or a corrupt length).
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            break;
        }
        let Ok(record) = decode::<Record>(&payload) else {
            break;
        };
        index.apply(record.as_ref(), offset, len);
        offset = end;
    }
    Ok((offset, file_len))
}

/// Whether `file` holds only zero bytes in `[from, to)`.
fn is_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::mvcc::{Command, MemberAttributes};
    use crate::raft::Proposal;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// An entry whose payload names its term and index, so a read can be checked.
    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Proposal::new(&[Command::PublishMember(
                MemberAttributes {
                    id: index,
                    name: format!("member-{term}-{index}-{}", "x".repeat(64)),
                    client_urls: vec![],
                },
            )])),
        }
    }

    fn append(wal: &mut Wal, entries: &[Entry]) {
        let records: Vec<Record<&Entry>> = entries.iter().map(Record::Entry).collect();
        wal.write(&records).expect("append");
    }

    fn write(wal: &mut Wal, record: Record<&Entry>) {
        wal.write(&[record]).expect("write");
    }

    /// The (term, index) of every live entry, after checking each one's payload.
    fn live(reader: &WalReader) -> Vec<(u64, u64)> {
        reader
            .read_entries(0, None)
            .expect("read entries")
            .into_iter()
            .map(|e| {
                let (term, index) = (e.log_id.leader_id.term, e.log_id.index);
                match e.payload {
                    EntryPayload::Normal(proposal) => match proposal.commands().unwrap().as_slice()
                    {
                        [Command::PublishMember(m)] => {
                            assert!(m.name.starts_with(&format!("member-{term}-{index}-")));
                        }
                        other => panic!("entry {index} has commands {other:?}"),
                    },
                    other => panic!("entry {index} has payload {other:?}"),
                }
                (term, index)
            })
            .collect()
    }

    fn file_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(WAL_FILE)).expect("wal file").len()
    }

    #[test]
    fn reopen_restores_entries_vote_committed_and_purge() {
        let dir = tempfile::tempdir().expect("temp dir");
        let vote = Vote::new_committed(2, 1);
        {
            let mut wal = Wal::open(dir.path()).expect("open");
            append(&mut wal, &(1..=10).map(|i| entry(1, i)).collect::<Vec<_>>());
            write(&mut wal, Record::Vote(vote));
            write(&mut wal, Record::Committed(Some(log_id(1, 6))));
            write(&mut wal, Record::Truncate(9));
            append(&mut wal, &[entry(2, 9)]);
            write(&mut wal, Record::Purge(log_id(1, 3)));
        }
        let wal = Wal::open(dir.path()).expect("reopen");
        let reader = wal.reader();
        assert_eq!(reader.vote(), Some(vote));
        assert_eq!(reader.committed(), Some(log_id(1, 6)));
        assert_eq!(reader.purged(), Some(log_id(1, 3)));
        assert_eq!(reader.last_log_id(), Some(log_id(2, 9)));
        let mut want: Vec<(u64, u64)> = (4..=8).map(|i| (1, i)).collect();
        want.push((2, 9));
        assert_eq!(live(&reader), want);
        assert_eq!(
            reader.read_entries(5, Some(7)).expect("range").len(),
            2,
            "a bounded range reads only its entries"
        );
    }

    #[test]
    fn an_entry_overwrites_the_entries_at_and_after_its_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut wal = Wal::open(dir.path()).expect("open");
            append(&mut wal, &(1..=5).map(|i| entry(1, i)).collect::<Vec<_>>());
            append(&mut wal, &[entry(2, 3)]);
        }
        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(live(&wal.reader()), vec![(1, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let len_before_last = {
            let mut wal = Wal::open(dir.path()).expect("open");
            for i in 1..=4 {
                append(&mut wal, &[entry(1, i)]);
            }
            let len = wal.len;
            append(&mut wal, &[entry(1, 5)]);
            (len, wal.len)
        };
        let (len_before_last, end) = len_before_last;
        // A crash in the middle of the last write.
        let path = dir.path().join(WAL_FILE);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open file");
        file.set_len(end - 3).expect("truncate");
        drop(file);

        let mut wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(
            live(&wal.reader()),
            (1..=4).map(|i| (1, i)).collect::<Vec<_>>()
        );
        assert_eq!(
            file_len(dir.path()),
            len_before_last,
            "the torn record is cut"
        );

        // Appending after the cut works, and survives another reopen.
        append(&mut wal, &[entry(2, 5)]);
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen again");
        assert_eq!(wal.reader().last_log_id(), Some(log_id(2, 5)));
    }

    #[test]
    fn a_corrupt_last_record_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let len_before_last = {
            let mut wal = Wal::open(dir.path()).expect("open");
            append(&mut wal, &(1..=4).map(|i| entry(1, i)).collect::<Vec<_>>());
            write(&mut wal, Record::Vote(Vote::new(1, 1)));
            let len = wal.len;
            write(&mut wal, Record::Vote(Vote::new(2, 1)));
            (len, wal.len)
        };
        let (len_before_last, end) = len_before_last;
        // Flip a byte in the last record's payload (the zero-filled space follows it).
        let path = dir.path().join(WAL_FILE);
        let mut bytes = fs::read(&path).expect("read file");
        let last = usize::try_from(end).unwrap() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).expect("write file");

        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(wal.reader().vote(), Some(Vote::new(1, 1)));
        assert_eq!(
            live(&wal.reader()),
            (1..=4).map(|i| (1, i)).collect::<Vec<_>>()
        );
        assert_eq!(
            file_len(dir.path()),
            len_before_last,
            "the corrupt record is cut"
        );
    }

    #[test]
    fn rewrite_after_purge_keeps_entries_readable_and_shrinks_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let vote = Vote::new_committed(3, 1);
        let mut wal = Wal::open(dir.path()).expect("open");
        let reader = wal.reader();
        for chunk in (1..=2000u64).collect::<Vec<_>>().chunks(100) {
            append(
                &mut wal,
                &chunk.iter().map(|&i| entry(1, i)).collect::<Vec<_>>(),
            );
            write(
                &mut wal,
                Record::Committed(Some(log_id(1, chunk[chunk.len() - 1]))),
            );
        }
        write(&mut wal, Record::Vote(vote));
        assert!(
            !wal.rewrite_if_worthwhile().expect("rewrite"),
            "nothing purged yet"
        );

        write(&mut wal, Record::Purge(log_id(1, 1900)));
        let before = file_len(dir.path());
        assert!(wal.rewrite_if_worthwhile().expect("rewrite"));
        let after = file_len(dir.path());
        assert!(after < before / 10, "{after} bytes after, {before} before");

        let want: Vec<(u64, u64)> = (1901..=2000).map(|i| (1, i)).collect();
        assert_eq!(live(&reader), want, "the same reader reads the new file");

        // Appends go to the new file, and reopening it gives the same state.
        append(&mut wal, &[entry(1, 2001)]);
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen");
        let reader = wal.reader();
        assert_eq!(reader.vote(), Some(vote));
        assert_eq!(reader.committed(), Some(log_id(1, 2000)));
        assert_eq!(reader.purged(), Some(log_id(1, 1900)));
        let mut want = want;
        want.push((1, 2001));
        assert_eq!(live(&reader), want);
    }

    #[test]
    fn records_land_in_zero_filled_space_and_reopen_finds_their_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let end = {
            let mut wal = Wal::open(dir.path()).expect("open");
            append(&mut wal, &[entry(1, 1)]);
            wal.join_filler().expect("preallocate");
            assert!(wal.allocated >= wal.len + PREALLOCATE_BYTES);
            let allocated = wal.allocated;
            for i in 2..=50 {
                append(&mut wal, &[entry(1, i)]);
            }
            assert_eq!(
                file_len(dir.path()),
                allocated,
                "the records went into the zeros"
            );
            wal.len
        };
        let mut wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(wal.len, end, "replay stops at the zeros");
        assert_eq!(wal.reader().last_log_id(), Some(log_id(1, 50)));
        assert!(file_len(dir.path()) > end, "the zero tail is kept, not cut");
        append(&mut wal, &[entry(2, 51)]);
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen again");
        assert_eq!(wal.reader().last_log_id(), Some(log_id(2, 51)));
    }
}

//! The sled engine: every [`Space`] lives in one sled tree under a one-byte
//! prefix, so a batch touching several spaces is a single atomic `apply_batch`.
//!
//! Entry point: [`SledEngine::open`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use super::{
    Durability, Engine, EngineError, EngineKind, Entries, Op, ScanRange, Space, WriteBatch,
};

const ENGINE: &str = "sled";

/// sled's page cache. Its default (1 GiB) would dominate the process's memory;
/// etcd-lite's working set is small and the OS page cache backs it anyway.
const CACHE_BYTES: u64 = 64 << 20;

/// How often sled's background thread flushes by itself. `Deferred` batches
/// usually reach the disk within this time, but only [`Engine::flush`] or an
/// `Immediate` write promises it.
const FLUSH_EVERY_MS: u64 = 500;

/// A sled database in `dir/sled`.
///
/// sled 0.34 makes writes durable only when the database is flushed (its own
/// background flush runs every [`FLUSH_EVERY_MS`]); so an `Immediate` write
/// flushes after applying its batch. On Linux sled's flush ends with
/// `sync_file_range`, which neither writes the file's metadata (its length,
/// as the log grows) nor flushes the disk's write cache, so [`Engine::flush`]
/// follows it with an `fdatasync` of the log file. Recovery replays sled's log
/// in order and stops at the first incomplete batch, which gives the *ordered*
/// (prefix) guarantee for `Deferred` writes.
///
/// Caveat: sled stores an item larger than a quarter of its 512 KiB log
/// segment (a key and value over about 128 KiB) in a separate "blob" file that
/// it never fsyncs. Such values survive a process crash but not necessarily a
/// power loss.
pub struct SledEngine {
    db: sled::Db,
    /// sled's log file (`dir/sled/db`), kept open to fsync it.
    log: File,
    /// Taken for writing by [`Engine::write`], so the keys a `DeleteRange` or
    /// `Clear` finds are still the keys when its batch is applied; taken for
    /// reading by [`Engine::scan`], because a sled iterator reads one key at a
    /// time and would otherwise see half of a concurrent batch.
    gate: RwLock<()>,
}

/// The byte that prefixes a space's keys. Part of the on-disk format: never
/// renumber. Consecutive, so `tag + 1` bounds a space from above.
fn tag(space: Space) -> u8 {
    match space {
        Space::RaftLog => 0,
        Space::RaftMeta => 1,
        Space::Kv => 2,
        Space::Lease => 3,
        Space::Meta => 4,
    }
}

fn prefixed(space: Space, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(tag(space));
    full.extend_from_slice(key);
    full
}

/// The first key after every key of `space`.
fn space_end(space: Space) -> Vec<u8> {
    vec![tag(space) + 1]
}

fn read_error(source: sled::Error) -> EngineError {
    EngineError::Read {
        engine: ENGINE,
        cause: Box::new(source),
    }
}

fn write_error(source: sled::Error) -> EngineError {
    EngineError::Write {
        engine: ENGINE,
        cause: Box::new(source),
    }
}

impl SledEngine {
    /// Opens (creating if needed) the database in `dir/sled`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let path: PathBuf = dir.join("sled");
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| EngineError::Open {
            engine: ENGINE,
            path: path.display().to_string(),
            cause: source,
        };
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(FLUSH_EVERY_MS));
        // sled's background flusher keeps the database's file lock until it
        // next wakes up after the last handle is dropped, so opening the same
        // directory right after a close (a restart within one process) waits
        // for it, at most a few flush periods.
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(4 * FLUSH_EVERY_MS);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.map_err(|e| open_error(Box::new(e)))?,
            }
        };
        let log = File::open(path.join("db")).map_err(|e| open_error(Box::new(e)))?;
        Ok(Self {
            db,
            log,
            gate: RwLock::new(()),
        })
    }

    /// Every key of the database (prefixed) in `[start, end)`.
    fn keys_in(&self, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>, EngineError> {
        self.db
            .range(start..end)
            .keys()
            .map(|key| key.map(|k| k.to_vec()).map_err(read_error))
            .collect()
    }

    /// Resolves `ops` into one final value (or removal) per key, in batch
    /// order, so a later op wins and a range delete also removes keys put
    /// earlier in the same batch. Must run under the write side of `gate`.
    fn resolve(&self, ops: Vec<Op>) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, EngineError> {
        let mut pending: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            let (start, end) = match op {
                Op::Put { space, key, value } => {
                    pending.insert(prefixed(space, &key), Some(value));
                    continue;
                }
                Op::Delete { space, key } => {
                    pending.insert(prefixed(space, &key), None);
                    continue;
                }
                Op::DeleteRange { space, start, end } => {
                    if end <= start {
                        continue;
                    }
                    (prefixed(space, &start), prefixed(space, &end))
                }
                Op::Clear { space } => (vec![tag(space)], space_end(space)),
            };
            for key in self.keys_in(&start, &end)? {
                pending.insert(key, None);
            }
            for value in pending.range_mut(start..end).map(|(_, v)| v) {
                *value = None;
            }
        }
        Ok(pending)
    }
}

impl Engine for SledEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sled
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let value = self.db.get(prefixed(space, key)).map_err(read_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        range: ScanRange<'_>,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, EngineError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let start = prefixed(space, range.start);
        let end = match range.end {
            Some(end) => prefixed(space, end),
            None => space_end(space),
        };
        let limit = super::scan_limit(limit);
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let iter = self.db.range(start..end);
        let iter: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        iter.take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(read_error)?;
                Ok((key[1..].to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// Applies the batch with one `apply_batch`; `Immediate` then flushes
    /// sled, which also makes every earlier `Deferred` batch durable.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError> {
        {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            let mut sled_batch = sled::Batch::default();
            for (key, value) in self.resolve(batch.ops)? {
                match value {
                    Some(value) => sled_batch.insert(key, value),
                    None => sled_batch.remove(key),
                }
            }
            self.db.apply_batch(sled_batch).map_err(write_error)?;
        }
        // Outside the gate: a flush covers every batch applied before it, so
        // concurrent `Immediate` writers share fsyncs instead of queueing.
        if durability == Durability::Immediate {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.db.flush().map_err(write_error)?;
        self.log.sync_data().map_err(|e| EngineError::Write {
            engine: ENGINE,
            cause: Box::new(e),
        })
    }

    /// sled's `size_on_disk`; 0 if it cannot be read.
    fn size_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn defragment(&self) -> Result<(), EngineError> {
        Err(EngineError::Unsupported {
            engine: ENGINE,
            what: "defragment",
            why: "sled rewrites its own segments as they empty and has no call for it",
        })
    }
}

/// A clean close keeps `Deferred` batches too: sled itself only promises
/// what a flush covered.
impl Drop for SledEngine {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "flushing sled on close failed; deferred writes may be lost");
        }
    }
}

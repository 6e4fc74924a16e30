//! The storage engine under etcd-lite: a small ordered key-value interface with
//! named keyspaces and atomic batches, implemented on sled, redb and in memory.
//!
//! Entry point: [`open`] picks an engine by [`EngineKind`]; everything above this
//! module (the MVCC keyspace, leases, the state machine's metadata) talks only
//! to [`Engine`]. The Raft log is not here: it has its own WAL (`raft/wal.rs`).
//!
//! # To ensure correctness
//! An implementation must guarantee:
//! - **Atomic batches**: [`Engine::write`] applies every op of a [`WriteBatch`] or
//!   none of them, also across a crash.
//! - **Ordered**: after a crash the engine holds a prefix of the batches written,
//!   in write order (a later batch is never visible without every earlier one).
//! - **Durable when asked**: once `write(batch, Durability::Immediate)` or
//!   [`Engine::flush`] returns, that batch and every earlier one survive a crash
//!   or power loss. `Durability::Deferred` batches may be lost on a crash, but
//!   only as a suffix (see *Ordered*).
//! - **Read your writes**: a read started after `write` returned sees the batch.
//! - Scans return keys in lexicographic byte order (reversed when asked).

mod batched;
#[cfg(test)]
mod conformance;
mod memory;
mod redb;
mod sled;

use std::path::Path;
use std::sync::Arc;

pub use self::batched::{Batched, Batching};
pub use self::memory::MemoryEngine;
pub use self::redb::RedbEngine;
pub use self::sled::SledEngine;

/// A keyspace inside the engine; each is an independent ordered map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// An ordered log keyed by big-endian index. The server keeps its Raft log
    /// in its WAL instead; the engine tests use this space for log-like writes.
    RaftLog,
    /// Small log metadata; like `RaftLog`, unused by the server.
    RaftMeta,
    /// MVCC revisions: key = revision (main, sub, tombstone mark), value = KeyValue.
    Kv,
    /// Leases: key = big-endian lease id.
    Lease,
    /// State-machine metadata: applied log id, membership, compacted revision, members.
    Meta,
}

impl Space {
    /// Every keyspace, in a fixed order.
    pub const ALL: [Space; 5] = [
        Space::RaftLog,
        Space::RaftMeta,
        Space::Kv,
        Space::Lease,
        Space::Meta,
    ];

    /// A stable name (a table or tree name on disk).
    pub fn name(self) -> &'static str {
        match self {
            Space::RaftLog => "raft_log",
            Space::RaftMeta => "raft_meta",
            Space::Kv => "kv",
            Space::Lease => "lease",
            Space::Meta => "meta",
        }
    }
}

/// One change in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
    /// Delete every key in `[start, end)`.
    DeleteRange {
        space: Space,
        start: Vec<u8>,
        end: Vec<u8>,
    },
    /// Delete every key of the space.
    Clear {
        space: Space,
    },
}

/// Changes applied atomically by [`Engine::write`], in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, space: Space, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put {
            space,
            key: key.into(),
            value: value.into(),
        });
    }
    pub fn delete(&mut self, space: Space, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete {
            space,
            key: key.into(),
        });
    }
    pub fn delete_range(
        &mut self,
        space: Space,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        self.ops.push(Op::DeleteRange {
            space,
            start: start.into(),
            end: end.into(),
        });
    }
    pub fn clear(&mut self, space: Space) {
        self.ops.push(Op::Clear { space });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Whether [`Engine::write`] must make the batch durable before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync (or the engine's equivalent) before returning.
    Immediate,
    /// Durable at the next `Immediate` write or [`Engine::flush`].
    Deferred,
}

/// The `(key, value)` pairs [`Engine::scan`] returns, in scan order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A key range for [`Engine::scan`]: `[start, end)`, `end = None` meaning "to the end".
#[derive(Debug, Clone, Copy)]
pub struct ScanRange<'a> {
    pub start: &'a [u8],
    pub end: Option<&'a [u8]>,
}

impl<'a> ScanRange<'a> {
    pub fn all() -> Self {
        ScanRange {
            start: &[],
            end: None,
        }
    }
    pub fn new(start: &'a [u8], end: Option<&'a [u8]>) -> Self {
        ScanRange { start, end }
    }

    /// Whether no key can fall in the range (`end <= start`).
    pub fn is_empty(&self) -> bool {
        self.end.is_some_and(|end| end <= self.start)
    }
}

/// [`Engine::scan`]'s `limit`, with 0 meaning "no limit".
pub(crate) fn scan_limit(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

/// The cause is part of the message (not a `source()`), so that one line in a
/// log says everything and an error chain does not say it twice.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("opening the {engine} engine at {path}: {cause}")]
    Open {
        engine: &'static str,
        path: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("reading from the {engine} engine: {cause}")]
    Read {
        engine: &'static str,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("writing to the {engine} engine: {cause}")]
    Write {
        engine: &'static str,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the {engine} engine cannot {what}: {why}")]
    Unsupported {
        engine: &'static str,
        what: &'static str,
        why: &'static str,
    },
}

/// The storage engine interface; see the module docs for the guarantees.
pub trait Engine: Send + Sync + 'static {
    /// The engine's name, as given to `--storage-engine`.
    fn kind(&self) -> EngineKind;

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Up to `limit` (0 = no limit) entries of `range`, ascending, or descending when `reverse`.
    fn scan(
        &self,
        space: Space,
        range: ScanRange<'_>,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, EngineError>;

    /// Applies `batch` atomically.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), EngineError>;

    /// Bytes the engine occupies on disk (in memory for the memory engine).
    fn size_bytes(&self) -> u64;

    /// Gives the free space inside the engine's files back to the file system
    /// (etcd's defragmentation), blocking reads and writes meanwhile.
    fn defragment(&self) -> Result<(), EngineError>;
}

/// Which engine backs a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Redb,
    Sled,
    Memory,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Sled => "sled",
            EngineKind::Memory => "memory",
        }
    }
}

/// Opens (creating if needed) the engine of `kind` under `dir`. With
/// `batching`, a disk engine's `Deferred` writes are batched in memory
/// ([`Batched`]); the memory engine has nothing to gain from that.
pub fn open(
    kind: EngineKind,
    dir: &Path,
    batching: Option<Batching>,
) -> Result<Arc<dyn Engine>, EngineError> {
    let engine: Arc<dyn Engine> = match kind {
        EngineKind::Memory => return Ok(Arc::new(MemoryEngine::new())),
        EngineKind::Redb => Arc::new(RedbEngine::open(dir)?),
        EngineKind::Sled => Arc::new(SledEngine::open(dir)?),
    };
    let Some(batching) = batching else {
        return Ok(engine);
    };
    let batched = Batched::wrap(engine, batching).map_err(|source| EngineError::Open {
        engine: kind.name(),
        path: dir.display().to_string(),
        cause: Box::new(source),
    })?;
    Ok(Arc::new(batched))
}

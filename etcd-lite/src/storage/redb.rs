//! The redb engine: one redb table per [`Space`] in the file `dir/redb`, one
//! write transaction per batch.
//!
//! Entry point: [`RedbEngine::open`].

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use redb::{ReadableDatabase, TableDefinition};

use super::{
    Durability, Engine, EngineError, EngineKind, Entries, Op, ScanRange, Space, WriteBatch,
};

const ENGINE: &str = "redb";

/// redb's page cache (its default is 1 GiB); a tenth of it buffers writes.
const CACHE_BYTES: usize = 64 << 20;

type Table<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// A redb database file.
///
/// Every batch is one write transaction, so it is atomic, and commits are
/// totally ordered. `Immediate` commits with `redb::Durability::Immediate`
/// (an fsync). `Deferred` commits with `redb::Durability::None`: the commit
/// is visible at once but reaches the disk only with the next durable commit,
/// which writes the whole state up to it. A crash therefore falls back to the
/// last durable commit and loses only the `Deferred` batches after it, a
/// suffix, as the *ordered* guarantee requires. (`Eventual` keeps that too,
/// but on Linux it is a full fsync, so it would buy nothing.) redb frees pages
/// only in durable commits, so a long run of non-durable commits would grow
/// the file without bound: every [`MAX_NON_DURABLE_COMMITS`]th `Deferred`
/// batch in a row is committed durably.
///
/// After a crash, opening the file repairs it, walking the whole database.
pub struct RedbEngine {
    /// Shared by reads and writes; [`Engine::defragment`] takes it alone, as
    /// redb compacts only with no transaction open.
    db: RwLock<redb::Database>,
    path: PathBuf,
    /// Non-durable commits since the last durable one.
    non_durable: AtomicUsize,
}

/// The longest run of non-durable commits. Each copies the B-tree pages it
/// touches (a few 4 KiB pages) without freeing the old ones, so this bounds
/// that garbage to about a MiB, for one fsync per run.
const MAX_NON_DURABLE_COMMITS: usize = 64;

fn table(space: Space) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(space.name())
}

fn read_error(source: impl Into<redb::Error>) -> EngineError {
    EngineError::Read {
        engine: ENGINE,
        cause: Box::new(source.into()),
    }
}

fn write_error(source: impl Into<redb::Error>) -> EngineError {
    EngineError::Write {
        engine: ENGINE,
        cause: Box::new(source.into()),
    }
}

impl RedbEngine {
    /// Opens (creating if needed) the database file `dir/redb`, repairing it
    /// if the last process stopped without closing it.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join("redb");
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| EngineError::Open {
            engine: ENGINE,
            path: path.display().to_string(),
            cause: source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(Box::new(e)))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::UpgradeRequired(version) => open_error(
                    format!(
                        "the file is in redb's format version {version}, which an older etcd-lite \
                         wrote and this one does not read; remove this member from the cluster \
                         and add it back with an empty --data-dir, and it catches up from the others"
                    )
                    .into(),
                ),
                e => open_error(Box::new(e)),
            })?;
        Ok(Self {
            db: RwLock::new(db),
            path,
            non_durable: AtomicUsize::new(0),
        })
    }

    /// Applies `ops` in order inside `txn`, opening each space's table once.
    fn apply(txn: &redb::WriteTransaction, ops: Vec<Op>) -> Result<(), EngineError> {
        let mut tables: [Option<Table<'_>>; Space::ALL.len()] = Default::default();
        for op in ops {
            let space = match &op {
                Op::Put { space, .. }
                | Op::Delete { space, .. }
                | Op::DeleteRange { space, .. }
                | Op::Clear { space } => *space,
            };
            let slot = &mut tables[space as usize];
            let table = match slot {
                Some(table) => table,
                None => slot.insert(txn.open_table(table(space)).map_err(write_error)?),
            };
            match op {
                Op::Put { key, value, .. } => {
                    table
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(write_error)?;
                }
                Op::Delete { key, .. } => {
                    table.remove(key.as_slice()).map_err(write_error)?;
                }
                Op::DeleteRange { start, end, .. } => {
                    if start < end {
                        table
                            .retain_in(start.as_slice()..end.as_slice(), |_, _| false)
                            .map_err(write_error)?;
                    }
                }
                Op::Clear { .. } => table.retain(|_, _| false).map_err(write_error)?,
            }
        }
        Ok(())
    }

    fn commit(&self, ops: Vec<Op>, durability: Durability) -> Result<(), EngineError> {
        let db = self.db.read().expect("redb database lock poisoned");
        let mut txn = db.begin_write().map_err(write_error)?;
        Self::apply(&txn, ops)?;
        // Counted while holding the write transaction, which is exclusive.
        let durable = durability == Durability::Immediate
            || self.non_durable.load(Ordering::Relaxed) + 1 >= MAX_NON_DURABLE_COMMITS;
        if durable {
            txn.set_durability(redb::Durability::Immediate)
                .map_err(write_error)?;
            self.non_durable.store(0, Ordering::Relaxed);
        } else {
            txn.set_durability(redb::Durability::None)
                .map_err(write_error)?;
            self.non_durable.fetch_add(1, Ordering::Relaxed);
        }
        txn.commit().map_err(write_error)
    }

    /// Runs `read` on the space's table; a table never written is empty.
    fn read<T>(
        &self,
        space: Space,
        empty: T,
        read: impl FnOnce(
            &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
        ) -> Result<T, redb::StorageError>,
    ) -> Result<T, EngineError> {
        let db = self.db.read().expect("redb database lock poisoned");
        let txn = db.begin_read().map_err(read_error)?;
        match txn.open_table(table(space)) {
            Ok(table) => read(&table).map_err(read_error),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(read_error(e)),
        }
    }
}

impl Engine for RedbEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Redb
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.read(space, None, |table| {
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
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
        let end = match range.end {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let limit = super::scan_limit(limit);
        self.read(space, Vec::new(), |table| {
            let iter = table.range::<&[u8]>((Bound::Included(range.start), end))?;
            let iter: Box<dyn Iterator<Item = _>> = if reverse {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
            iter.take(limit)
                .map(|entry| {
                    let (key, value) = entry?;
                    Ok((key.value().to_vec(), value.value().to_vec()))
                })
                .collect()
        })
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError> {
        self.commit(batch.ops, durability)
    }

    /// An empty durable commit: it persists every earlier `Deferred` commit.
    fn flush(&self) -> Result<(), EngineError> {
        self.commit(Vec::new(), Durability::Immediate)
    }

    /// The database file's length; 0 if it cannot be read.
    fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// redb's `compact`: moves pages towards the start of the file and cuts
    /// off the free space at its end. Reads and writes wait meanwhile.
    fn defragment(&self) -> Result<(), EngineError> {
        let mut db = self.db.write().expect("redb database lock poisoned");
        db.compact().map_err(write_error)?;
        // The commits `compact` makes are durable, so the counter starts over.
        self.non_durable.store(0, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn a_file_in_an_older_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        drop(RedbEngine::open(dir.path()).expect("creating the database"));
        // Both commit slots of the header (at 64 and 192) start with their format version.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("redb"))
            .expect("opening the file");
        for slot in [64, 192] {
            file.write_all_at(&[2], slot).expect("writing the version");
        }
        drop(file);
        let err = RedbEngine::open(dir.path())
            .err()
            .expect("an older format is refused")
            .to_string();
        assert!(err.contains("format version 2"), "{err}");
        assert!(err.contains("empty --data-dir"), "{err}");
    }

    #[test]
    fn defragment_shrinks_the_file_and_keeps_every_key() {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let engine = RedbEngine::open(dir.path()).expect("creating the database");
        let key = |i: u32| format!("key-{i:06}").into_bytes();
        for chunk in 0..20u32 {
            let mut batch = WriteBatch::new();
            for i in chunk * 1000..(chunk + 1) * 1000 {
                batch.put(Space::Kv, key(i), vec![b'v'; 512]);
            }
            engine.write(batch, Durability::Immediate).expect("writing");
        }
        // Delete all but every hundredth key: most pages become free space.
        let mut batch = WriteBatch::new();
        for i in (0..20_000).filter(|i| i % 100 != 0) {
            batch.delete(Space::Kv, key(i));
        }
        engine
            .write(batch, Durability::Immediate)
            .expect("deleting");
        let before = engine.size_bytes();

        engine.defragment().expect("defragmenting");

        let after = engine.size_bytes();
        assert!(after < before / 2, "{before} bytes before, {after} after");
        let kept = engine
            .scan(Space::Kv, ScanRange::all(), false, 0)
            .expect("scanning");
        let expected: Vec<Vec<u8>> = (0..20_000).step_by(100).map(key).collect();
        assert_eq!(
            kept.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            expected
        );
        // Still writable, and the file reopens.
        let mut batch = WriteBatch::new();
        batch.put(Space::Kv, b"after".to_vec(), b"defrag".to_vec());
        engine
            .write(batch, Durability::Deferred)
            .expect("writing after");
        drop(engine);
        let engine = RedbEngine::open(dir.path()).expect("reopening");
        assert_eq!(
            engine.get(Space::Kv, b"after").expect("reading"),
            Some(b"defrag".to_vec())
        );
        assert!(engine.get(Space::Kv, &key(100)).expect("reading").is_some());
    }
    #[test]
    fn defragment_runs_between_concurrent_writes_and_reads() {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let engine = std::sync::Arc::new(RedbEngine::open(dir.path()).expect("creating"));
        let writer = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let mut batch = WriteBatch::new();
                    batch.put(Space::Kv, i.to_be_bytes().to_vec(), vec![b'v'; 256]);
                    engine.write(batch, Durability::Deferred).expect("writing");
                    engine.get(Space::Kv, &i.to_be_bytes()).expect("reading");
                }
            })
        };
        for _ in 0..5 {
            engine
                .defragment()
                .expect("defragmenting while writes go on");
        }
        writer.join().expect("writer thread");
        let all = engine
            .scan(Space::Kv, ScanRange::all(), false, 0)
            .expect("scanning");
        assert_eq!(all.len(), 2000);
    }
}

//! Write-behind batching for the disk engines, as etcd batches its backend's
//! bbolt transaction: `Deferred` writes collect in memory and reach the
//! engine in one commit every `--backend-batch-interval` (a background
//! thread's tick) or as soon as `--backend-batch-limit` changes are pending,
//! whichever comes first. One engine commit per interval instead of one per
//! applied run of Raft entries is most of what a put costs the disk engines.
//!
//! Entry point: [`Batched::wrap`] (through [`super::open`]).
//!
//! # To ensure correctness
//! - The pending changes are the last value written per (space, key), `None`
//!   for a delete. `get` looks in them before the engine; `scan` commits them
//!   first, so both read every batch `write` accepted.
//! - A batch joins the pending changes whole, under the lock, and the pending
//!   changes go to the engine whole, as one engine batch. So the engine holds
//!   a prefix of the batches written after a crash (the *Ordered* guarantee),
//!   and no reader sees half a batch.
//! - A commit takes the pending changes under the lock but writes them to the
//!   engine without it: meanwhile reads find them in `committing` (after the
//!   new pending changes, before the engine), and writes go on into a fresh
//!   pending set. Commits run one at a time, in order.
//! - Range deletes and clears are not kept pending: a batch holding one goes
//!   to the engine at once, in one engine batch with the changes before it.
//! - `Immediate` writes and `flush` commit the pending changes with them,
//!   durably. Dropping commits what is pending; the engine's own close does
//!   the rest.
//! - A failed commit fails the whole engine, as etcd's backend stops on one:
//!   its changes are neither pending nor known to be stored, so every later
//!   call returns the error instead of answering from a state that lost them.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{
    Durability, Engine, EngineError, EngineKind, Entries, Op, ScanRange, Space, WriteBatch,
};

/// When pending writes are committed (etcd's `--backend-batch-interval` and
/// `--backend-batch-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The longest a write stays pending.
    pub interval: Duration,
    /// The most changes (puts and deletes) kept pending.
    pub limit: usize,
}

impl Default for Batching {
    /// etcd's defaults: 100 ms and 10,000 changes.
    fn default() -> Self {
        Batching {
            interval: Duration::from_millis(100),
            limit: 10_000,
        }
    }
}

/// Changes per space (by `Space as usize`): key to value, `None` for a delete.
type Changes = [BTreeMap<Vec<u8>, Option<Vec<u8>>>; Space::ALL.len()];

/// What readers and writers share; see the module docs.
#[derive(Default)]
struct State {
    /// The changes not yet handed to the engine.
    pending: Changes,
    /// Puts and deletes accepted into `pending` (overwrites count).
    changes: usize,
    /// The changes a commit is writing to the engine right now: read after
    /// `pending` and before the engine.
    committing: Option<Arc<Changes>>,
    /// Why the engine failed, once a commit has.
    failed: Option<String>,
}

/// `changes` as one engine batch, in key order per space.
fn to_batch(changes: &Changes) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (space, map) in Space::ALL.into_iter().zip(changes) {
        for (key, value) in map {
            match value {
                Some(value) => batch.put(space, key.clone(), value.clone()),
                None => batch.delete(space, key.clone()),
            }
        }
    }
    batch
}

struct Shared {
    engine: Arc<dyn Engine>,
    state: RwLock<State>,
    /// Held for a whole commit, so commits reach the engine one at a time, in order.
    committer: Mutex<()>,
    limit: usize,
    /// Set when the [`Batched`] is dropped; wakes the flusher thread.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("batched engine lock poisoned")
    }

    fn check(&self, state: &State) -> Result<(), EngineError> {
        match &state.failed {
            Some(reason) => Err(EngineError::Write {
                engine: self.engine.kind().name(),
                cause: format!("an earlier commit failed: {reason}").into(),
            }),
            None => Ok(()),
        }
    }

    /// Writes the pending changes, then `batch`, to the engine as one batch.
    ///
    /// The state lock is held only to take the pending changes and to clear
    /// them from `committing` afterwards, so writes and reads go on while the
    /// engine commits.
    fn commit(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError> {
        let _committer = self.committer.lock().expect("batched engine commit lock");
        let taken = {
            let mut state = self.state();
            self.check(&state)?;
            if state.changes == 0 && batch.is_empty() {
                drop(state);
                return match durability {
                    Durability::Immediate => self.engine.flush(),
                    Durability::Deferred => Ok(()),
                };
            }
            let taken = Arc::new(std::mem::take(&mut state.pending));
            state.changes = 0;
            state.committing = Some(Arc::clone(&taken));
            taken
        };
        let mut all = to_batch(&taken);
        all.ops.extend(batch.ops);
        let written = self.engine.write(all, durability);
        let mut state = self.state();
        state.committing = None;
        if let Err(error) = &written {
            tracing::error!(%error, "committing the batched writes failed; the engine stops");
            state.failed = Some(error.to_string());
        }
        written
    }

    /// The flusher thread: commits whatever is pending every `interval` until stopped.
    fn run_flusher(&self, interval: Duration) {
        let mut stop = self.stop.lock().expect("batched engine stop lock");
        loop {
            // Checked before waiting too: the drop may come before this thread runs.
            if *stop {
                return;
            }
            stop = self
                .wake
                .wait_timeout(stop, interval)
                .expect("batched engine stop lock")
                .0;
            if *stop {
                return;
            }
            drop(stop);
            // A failure is logged and kept in `failed`; the next call returns it.
            let _ = self.commit(WriteBatch::new(), Durability::Deferred);
            stop = self.stop.lock().expect("batched engine stop lock");
        }
    }
}

/// A disk engine with its `Deferred` writes batched in memory; see the module docs.
pub struct Batched {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Batched {
    /// Wraps `engine`, starting the thread that commits every `batching.interval`.
    pub fn wrap(engine: Arc<dyn Engine>, batching: Batching) -> std::io::Result<Batched> {
        let shared = Arc::new(Shared {
            engine,
            state: RwLock::default(),
            committer: Mutex::new(()),
            limit: batching.limit.max(1),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("backend-batch".into())
                .spawn(move || shared.run_flusher(batching.interval))?
        };
        Ok(Batched {
            shared,
            flusher: Some(flusher),
        })
    }
}

impl Engine for Batched {
    fn kind(&self) -> EngineKind {
        self.shared.engine.kind()
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        {
            let state = self
                .shared
                .state
                .read()
                .expect("batched engine lock poisoned");
            self.shared.check(&state)?;
            let committing = state.committing.as_deref();
            let found = std::iter::once(&state.pending)
                .chain(committing)
                .find_map(|changes| changes[space as usize].get(key));
            if let Some(value) = found {
                return Ok(value.clone());
            }
        }
        // Neither pending nor being committed now: the engine has the latest
        // committed value, or a write concurrent with this read is still
        // arriving (either is right).
        self.shared.engine.get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        range: ScanRange<'_>,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, EngineError> {
        self.shared
            .commit(WriteBatch::new(), Durability::Deferred)?;
        self.shared.engine.scan(space, range, reverse, limit)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError> {
        let ranged = batch
            .ops
            .iter()
            .any(|op| matches!(op, Op::DeleteRange { .. } | Op::Clear { .. }));
        if durability == Durability::Immediate || ranged {
            return self.shared.commit(batch, durability);
        }
        let full = {
            let mut state = self.shared.state();
            self.shared.check(&state)?;
            for op in batch.ops {
                let (space, key, value) = match op {
                    Op::Put { space, key, value } => (space, key, Some(value)),
                    Op::Delete { space, key } => (space, key, None),
                    Op::DeleteRange { .. } | Op::Clear { .. } => unreachable!("committed above"),
                };
                state.pending[space as usize].insert(key, value);
                state.changes += 1;
            }
            state.changes >= self.shared.limit
        };
        if full {
            self.shared
                .commit(WriteBatch::new(), Durability::Deferred)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.shared.commit(WriteBatch::new(), Durability::Immediate)
    }

    fn size_bytes(&self) -> u64 {
        self.shared.engine.size_bytes()
    }

    /// Commits the batches still in memory first, so that what they free
    /// (compacted revisions, deleted keys) is given back too.
    fn defragment(&self) -> Result<(), EngineError> {
        self.flush()?;
        self.shared.engine.defragment()
    }
}

impl Drop for Batched {
    fn drop(&mut self) {
        *self.shared.stop.lock().expect("batched engine stop lock") = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        if let Err(error) = self.shared.commit(WriteBatch::new(), Durability::Deferred) {
            tracing::warn!(%error, "committing the batched writes on close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    use super::super::MemoryEngine;
    use super::*;

    /// A memory engine that counts the batches it is given, and can be told
    /// to fail, or held (a write waits while a test holds `hold`).
    #[derive(Default)]
    struct Recording {
        inner: MemoryEngine,
        writes: AtomicUsize,
        durable: AtomicUsize,
        /// `writes` when `defragment` was last called.
        writes_at_defragment: AtomicUsize,
        fail: AtomicBool,
        hold: Mutex<()>,
    }

    impl Engine for Recording {
        fn kind(&self) -> EngineKind {
            EngineKind::Memory
        }
        fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
            self.inner.get(space, key)
        }
        fn scan(
            &self,
            space: Space,
            range: ScanRange<'_>,
            reverse: bool,
            limit: usize,
        ) -> Result<Entries, EngineError> {
            self.inner.scan(space, range, reverse, limit)
        }
        fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError> {
            let _held = self.hold.lock().expect("hold lock");
            if self.fail.load(Ordering::SeqCst) {
                return Err(EngineError::Write {
                    engine: "recording",
                    cause: "disk full".into(),
                });
            }
            self.writes.fetch_add(1, Ordering::SeqCst);
            if durability == Durability::Immediate {
                self.durable.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.write(batch, durability)
        }
        fn flush(&self) -> Result<(), EngineError> {
            self.durable.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn size_bytes(&self) -> u64 {
            0
        }
        fn defragment(&self) -> Result<(), EngineError> {
            let writes = self.writes.load(Ordering::SeqCst);
            self.writes_at_defragment.store(writes, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A batching long enough that only the limit, reads and flushes commit.
    const SLOW: Batching = Batching {
        interval: Duration::from_secs(3600),
        limit: 10_000,
    };

    fn wrap(batching: Batching) -> (Arc<Recording>, Batched) {
        let inner = Arc::new(Recording::default());
        let batched = Batched::wrap(inner.clone(), batching).expect("wrap");
        (inner, batched)
    }

    fn put(engine: &dyn Engine, key: &[u8], value: &[u8]) {
        let mut batch = WriteBatch::new();
        batch.put(Space::Kv, key, value);
        engine.write(batch, Durability::Deferred).expect("write");
    }

    fn delete(engine: &dyn Engine, key: &[u8]) {
        let mut batch = WriteBatch::new();
        batch.delete(Space::Kv, key);
        engine.write(batch, Durability::Deferred).expect("write");
    }

    #[test]
    fn pending_writes_are_read_before_they_reach_the_engine() {
        let (inner, batched) = wrap(SLOW);
        put(&inner.inner, b"old", b"stored");
        put(&batched, b"a", b"1");
        put(&batched, b"a", b"2");
        delete(&batched, b"old");
        assert_eq!(inner.writes.load(Ordering::SeqCst), 0);
        assert_eq!(batched.get(Space::Kv, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(batched.get(Space::Kv, b"old").unwrap(), None);
        assert_eq!(
            inner.get(Space::Kv, b"old").unwrap(),
            Some(b"stored".to_vec())
        );
        assert_eq!(
            batched.get(Space::Lease, b"a").unwrap(),
            None,
            "spaces apart"
        );
    }

    #[test]
    fn defragment_commits_the_pending_writes_first() {
        let (inner, batched) = wrap(SLOW);
        put(&batched, b"a", b"1");
        delete(&batched, b"a");
        batched.defragment().expect("defragment");
        assert_eq!(inner.writes_at_defragment.load(Ordering::SeqCst), 1);
        assert_eq!(inner.durable.load(Ordering::SeqCst), 1, "durable first");
    }

    #[test]
    fn a_scan_commits_the_pending_writes_first() {
        let (inner, batched) = wrap(SLOW);
        put(&batched, b"a", b"1");
        put(&batched, b"b", b"2");
        let entries = batched
            .scan(Space::Kv, ScanRange::all(), false, 0)
            .expect("scan");
        assert_eq!(entries.len(), 2);
        assert_eq!(inner.writes.load(Ordering::SeqCst), 1, "one engine batch");
        assert_eq!(inner.get(Space::Kv, b"b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn the_limit_commits_at_once() {
        let (inner, batched) = wrap(Batching { limit: 3, ..SLOW });
        put(&batched, b"a", b"1");
        put(&batched, b"a", b"2");
        assert_eq!(inner.writes.load(Ordering::SeqCst), 0);
        put(&batched, b"b", b"3");
        assert_eq!(inner.writes.load(Ordering::SeqCst), 1);
        assert_eq!(inner.get(Space::Kv, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(inner.durable.load(Ordering::SeqCst), 0, "not durable");
    }

    #[test]
    fn the_interval_commits_without_further_writes() {
        let (inner, batched) = wrap(Batching {
            interval: Duration::from_millis(20),
            limit: 10_000,
        });
        put(&batched, b"a", b"1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while inner.get(Space::Kv, b"a").unwrap().is_none() {
            assert!(Instant::now() < deadline, "the interval never committed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(inner.writes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn immediate_writes_and_flush_commit_durably_with_the_pending_ones() {
        let (inner, batched) = wrap(SLOW);
        put(&batched, b"a", b"1");
        let mut batch = WriteBatch::new();
        batch.put(Space::Meta, b"m", b"x");
        batched.write(batch, Durability::Immediate).expect("write");
        assert_eq!(inner.writes.load(Ordering::SeqCst), 1);
        assert_eq!(inner.durable.load(Ordering::SeqCst), 1);
        assert_eq!(inner.get(Space::Kv, b"a").unwrap(), Some(b"1".to_vec()));
        put(&batched, b"b", b"2");
        batched.flush().expect("flush");
        assert_eq!(inner.durable.load(Ordering::SeqCst), 2);
        assert_eq!(inner.get(Space::Kv, b"b").unwrap(), Some(b"2".to_vec()));
        batched.flush().expect("flush with nothing pending");
        assert_eq!(
            inner.durable.load(Ordering::SeqCst),
            3,
            "still flushes the engine"
        );
    }

    #[test]
    fn a_range_delete_goes_to_the_engine_with_the_writes_before_it() {
        let (inner, batched) = wrap(SLOW);
        put(&batched, b"a1", b"1");
        put(&batched, b"b", b"2");
        let mut batch = WriteBatch::new();
        batch.delete_range(Space::Kv, b"a", b"b");
        batched.write(batch, Durability::Deferred).expect("write");
        assert_eq!(inner.writes.load(Ordering::SeqCst), 1);
        assert_eq!(inner.get(Space::Kv, b"a1").unwrap(), None);
        assert_eq!(batched.get(Space::Kv, b"b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn writes_and_reads_go_on_while_a_commit_is_in_progress() {
        let (inner, batched) = wrap(SLOW);
        let batched = Arc::new(batched);
        put(&*batched, b"a", b"1");
        let held = inner.hold.lock().expect("hold lock");
        let flushing = {
            let batched = Arc::clone(&batched);
            std::thread::spawn(move || batched.flush())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while batched.shared.state.read().unwrap().committing.is_none() {
            assert!(Instant::now() < deadline, "the flush never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (done, finished) = std::sync::mpsc::channel();
        {
            let batched = Arc::clone(&batched);
            std::thread::spawn(move || {
                put(&*batched, b"b", b"2");
                let _ = done.send(());
            });
        }
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("a write waited for the engine's commit");
        assert_eq!(
            batched.get(Space::Kv, b"a").unwrap(),
            Some(b"1".to_vec()),
            "being committed"
        );
        assert_eq!(
            batched.get(Space::Kv, b"b").unwrap(),
            Some(b"2".to_vec()),
            "pending"
        );
        assert_eq!(inner.writes.load(Ordering::SeqCst), 0);
        drop(held);
        flushing.join().expect("flush thread").expect("flush");
        assert_eq!(inner.get(Space::Kv, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            inner.get(Space::Kv, b"b").unwrap(),
            None,
            "written after the flush began"
        );
        assert!(batched.shared.state.read().unwrap().committing.is_none());
    }

    #[test]
    fn dropping_commits_what_is_pending() {
        let (inner, batched) = wrap(SLOW);
        put(&batched, b"a", b"1");
        drop(batched);
        assert_eq!(inner.get(Space::Kv, b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn a_failed_commit_fails_every_later_call() {
        let (inner, batched) = wrap(SLOW);
        put(&batched, b"a", b"1");
        inner.fail.store(true, Ordering::SeqCst);
        let err = batched.flush().expect_err("the engine failed");
        assert!(err.to_string().contains("disk full"), "{err}");
        inner.fail.store(false, Ordering::SeqCst);
        let err = batched.get(Space::Kv, b"a").expect_err("failed engine");
        assert!(
            err.to_string().contains("an earlier commit failed: "),
            "{err}"
        );
        let mut batch = WriteBatch::new();
        batch.put(Space::Kv, b"b", b"2");
        assert!(batched.write(batch, Durability::Deferred).is_err());
        assert!(batched.scan(Space::Kv, ScanRange::all(), false, 0).is_err());
        assert_eq!(inner.get(Space::Kv, b"b").unwrap(), None);
    }
}

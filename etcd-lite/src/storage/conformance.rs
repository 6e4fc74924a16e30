//! The conformance suite every [`Engine`] must pass: the guarantees of the
//! module docs, run identically on each engine (crash behaviour is covered by
//! `tests/engine_crash.rs`).
//!
//! Entry point: the `conformance!` lines at the bottom; a new engine adds one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tempfile::TempDir;

use super::{
    open, Batching, Durability, Engine, EngineKind, Entries, ScanRange, Space, WriteBatch,
};

/// The engine factory: opens engines of one kind (batched or not) in a
/// private directory, and reopens them there.
struct Fixture {
    kind: EngineKind,
    batching: Option<Batching>,
    dir: TempDir,
}

/// Batching that commits every few changes and milliseconds, so commits
/// land between and during a test's writes and reads.
const TIGHT: Option<Batching> = Some(Batching {
    interval: std::time::Duration::from_millis(2),
    limit: 7,
});

impl Fixture {
    fn new(kind: EngineKind, batching: Option<Batching>) -> Self {
        Self {
            kind,
            batching,
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    fn open(&self) -> Arc<dyn Engine> {
        open(self.kind, self.dir.path(), self.batching).expect("opening the engine")
    }
}

fn write(engine: &dyn Engine, batch: WriteBatch) {
    engine
        .write(batch, Durability::Deferred)
        .expect("writing a batch");
}

fn put(engine: &dyn Engine, space: Space, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(space, key, value);
    write(engine, batch);
}

fn get(engine: &dyn Engine, space: Space, key: &[u8]) -> Option<Vec<u8>> {
    engine.get(space, key).expect("get")
}

fn scan(
    engine: &dyn Engine,
    space: Space,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    limit: usize,
) -> Entries {
    engine
        .scan(space, ScanRange::new(start, end), reverse, limit)
        .expect("scan")
}

fn keys(entries: Entries) -> Vec<Vec<u8>> {
    entries.into_iter().map(|(k, _)| k).collect()
}

fn all_keys(engine: &dyn Engine, space: Space) -> Vec<Vec<u8>> {
    keys(scan(engine, space, b"", None, false, 0))
}

fn owned(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

fn get_put_delete(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    assert_eq!(get(e, Space::Kv, b"a"), None);
    put(e, Space::Kv, b"a", b"1");
    assert_eq!(get(e, Space::Kv, b"a"), Some(b"1".to_vec()));
    put(e, Space::Kv, b"a", b"2");
    assert_eq!(get(e, Space::Kv, b"a"), Some(b"2".to_vec()));

    put(e, Space::Kv, b"empty", b"");
    assert_eq!(
        get(e, Space::Kv, b"empty"),
        Some(Vec::new()),
        "an empty value is not absence"
    );
    put(e, Space::Kv, b"", b"root");
    assert_eq!(
        get(e, Space::Kv, b""),
        Some(b"root".to_vec()),
        "the empty key is a key"
    );

    let mut batch = WriteBatch::new();
    batch.delete(Space::Kv, b"a");
    batch.delete(Space::Kv, b"never-written");
    write(e, batch);
    assert_eq!(get(e, Space::Kv, b"a"), None);
    assert_eq!(all_keys(e, Space::Kv), owned(&[b"", b"empty"]));
}

fn scans_are_ordered_bounded_and_limited(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    let sorted: [&[u8]; 8] = [b"", b"a", b"b", b"b\0", b"c", b"d", &[0xff], &[0xff, 0xff]];
    for i in [3, 7, 0, 5, 1, 6, 2, 4] {
        put(e, Space::Kv, sorted[i], format!("v{i}").as_bytes());
    }
    let entries = scan(e, Space::Kv, b"", None, false, 0);
    let expected: Entries = sorted
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_vec(), format!("v{i}").into_bytes()))
        .collect();
    assert_eq!(
        entries, expected,
        "a full scan returns every pair in byte order"
    );

    let reversed: Vec<Vec<u8>> = sorted.iter().rev().map(|k| k.to_vec()).collect();
    assert_eq!(keys(scan(e, Space::Kv, b"", None, true, 0)), reversed);
    assert_eq!(
        keys(scan(e, Space::Kv, b"", None, false, 3)),
        owned(&sorted[..3])
    );
    assert_eq!(
        keys(scan(e, Space::Kv, b"", None, true, 3)),
        reversed[..3].to_vec()
    );
    assert_eq!(
        keys(scan(e, Space::Kv, b"", None, false, 100)),
        owned(&sorted)
    );

    assert_eq!(
        keys(scan(e, Space::Kv, b"b", Some(b"d"), false, 0)),
        owned(&[b"b", b"b\0", b"c"])
    );
    assert_eq!(
        keys(scan(e, Space::Kv, b"b", Some(b"d"), true, 2)),
        owned(&[b"c", b"b\0"])
    );
    assert_eq!(
        keys(scan(e, Space::Kv, b"c", None, false, 0)),
        owned(&[b"c", b"d", &[0xff], &[0xff, 0xff]])
    );
    assert_eq!(
        keys(scan(e, Space::Kv, b"bb", None, true, 1)),
        owned(&[&[0xff, 0xff]])
    );

    assert!(
        scan(e, Space::Kv, b"c", Some(b"c"), false, 0).is_empty(),
        "end == start"
    );
    assert!(
        scan(e, Space::Kv, b"d", Some(b"a"), false, 0).is_empty(),
        "end < start"
    );
    assert!(
        scan(e, Space::Kv, b"d", Some(b"a"), true, 0).is_empty(),
        "end < start, reverse"
    );
    assert!(
        scan(e, Space::Kv, b"e", Some(b"f"), false, 0).is_empty(),
        "no key in range"
    );
    assert!(
        scan(e, Space::Lease, b"", None, false, 0).is_empty(),
        "a space never written"
    );
}

fn delete_range_removes_a_half_open_range(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    for k in [b"a", b"b", b"c", b"d"] {
        put(e, Space::Kv, k, b"v");
        put(e, Space::Lease, k, b"v");
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(Space::Kv, b"b", b"d");
    batch.delete_range(Space::Kv, b"d", b"a");
    batch.delete_range(Space::Kv, b"a", b"a");
    write(e, batch);
    assert_eq!(
        all_keys(e, Space::Kv),
        owned(&[b"a", b"d"]),
        "[b, d) gone, empty ranges no-ops"
    );
    assert_eq!(
        all_keys(e, Space::Lease).len(),
        4,
        "another space is untouched"
    );

    let mut batch = WriteBatch::new();
    batch.put(Space::Kv, b"c", b"v");
    batch.delete_range(Space::Kv, b"", b"z");
    batch.put(Space::Kv, b"x", b"v");
    write(e, batch);
    assert_eq!(
        all_keys(e, Space::Kv),
        owned(&[b"x"]),
        "a range delete removes keys put earlier in its batch, not later"
    );
}

fn clear_empties_only_its_space(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    for k in [b"a", b"b", &[0xff]] {
        put(e, Space::Kv, k, b"v");
        put(e, Space::Lease, k, b"v");
    }
    let mut batch = WriteBatch::new();
    batch.put(Space::Kv, b"c", b"v");
    batch.clear(Space::Kv);
    batch.put(Space::Kv, b"new", b"v");
    batch.clear(Space::Meta);
    write(e, batch);
    assert_eq!(all_keys(e, Space::Kv), owned(&[b"new"]));
    assert_eq!(all_keys(e, Space::Lease), owned(&[b"a", b"b", &[0xff]]));
    assert!(
        all_keys(e, Space::Meta).is_empty(),
        "clearing a space never written is a no-op"
    );
}

fn spaces_are_independent(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    for space in Space::ALL {
        for key in [&b""[..], b"k", &[0xff, 0xff]] {
            put(e, space, key, space.name().as_bytes());
        }
    }
    for space in Space::ALL {
        assert_eq!(get(e, space, b"k"), Some(space.name().as_bytes().to_vec()));
        let entries = scan(e, space, b"", None, false, 0);
        assert_eq!(entries.len(), 3, "{space:?} sees only its own keys");
        assert!(entries.iter().all(|(_, v)| v == space.name().as_bytes()));
        assert_eq!(
            keys(scan(e, space, b"", None, true, 1)),
            owned(&[&[0xff, 0xff]])
        );
    }
    let mut batch = WriteBatch::new();
    batch.delete(Space::Kv, b"k");
    batch.delete_range(Space::Lease, b"", &[0xff, 0xff, 0xff][..]);
    write(e, batch);
    assert!(all_keys(e, Space::Lease).is_empty());
    assert_eq!(all_keys(e, Space::Kv).len(), 2);
    for space in [Space::RaftLog, Space::RaftMeta, Space::Meta] {
        assert_eq!(all_keys(e, space).len(), 3, "{space:?} untouched");
    }
}

fn a_later_op_in_a_batch_wins(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    let mut batch = WriteBatch::new();
    batch.put(Space::Kv, b"k", b"1");
    batch.put(Space::Kv, b"k", b"2");
    batch.put(Space::Kv, b"gone", b"1");
    batch.delete(Space::Kv, b"gone");
    batch.delete(Space::Kv, b"back");
    batch.put(Space::Kv, b"back", b"3");
    batch.put(Space::Meta, b"k", b"meta");
    write(e, batch);
    assert_eq!(get(e, Space::Kv, b"k"), Some(b"2".to_vec()));
    assert_eq!(get(e, Space::Kv, b"gone"), None);
    assert_eq!(get(e, Space::Kv, b"back"), Some(b"3".to_vec()));
    assert_eq!(get(e, Space::Meta, b"k"), Some(b"meta".to_vec()));
}

/// Puts past a space's last key (new revisions are) mixed with overwrites,
/// deletes and repeats of a key, in one batch and across batches.
fn appended_keys_mix_with_overwrites_and_deletes(f: &Fixture) {
    let e = f.open();
    let e = &*e;
    let key = |n: u32| n.to_be_bytes().to_vec();
    let mut want = BTreeMap::new();
    let mut batch = WriteBatch::new();
    for n in 10..40 {
        batch.put(Space::Kv, key(n), key(n));
        want.insert(key(n), key(n));
    }
    write(e, batch);
    let mut batch = WriteBatch::new();
    for (n, value) in [
        (45, 1),
        (46, 2),
        (15, 3),
        (50, 4),
        (50, 5),
        (51, 6),
        (47, 7),
        (60, 8),
    ] {
        batch.put(Space::Kv, key(n), key(value));
        want.insert(key(n), key(value));
    }
    batch.delete(Space::Kv, key(46));
    want.remove(&key(46));
    batch.put(Space::Kv, key(70), key(9));
    want.insert(key(70), key(9));
    batch.put(Space::Meta, key(1), key(10));
    write(e, batch);
    let got = scan(e, Space::Kv, b"", None, false, 0);
    let want: Entries = want.into_iter().collect();
    assert_eq!(got, want);
    assert_eq!(get(e, Space::Meta, &key(1)), Some(key(10)));
}

fn empty_batches_and_flush_are_accepted(f: &Fixture) {
    let e = f.open();
    e.write(WriteBatch::new(), Durability::Immediate)
        .expect("empty immediate batch");
    e.write(WriteBatch::new(), Durability::Deferred)
        .expect("empty deferred batch");
    e.flush().expect("flush");
    assert!(all_keys(&*e, Space::Kv).is_empty());
}

/// A value of `len` bytes that differs from its neighbours.
fn big_value(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn big_values_round_trip(f: &Fixture) {
    const MIB: usize = 1 << 20;
    let e = f.open();
    let mut batch = WriteBatch::new();
    for i in 0..3u8 {
        batch.put(Space::RaftLog, [i], big_value(MIB, i));
    }
    e.write(batch, Durability::Immediate)
        .expect("writing 3 MiB");
    for i in 0..3u8 {
        assert_eq!(get(&*e, Space::RaftLog, &[i]), Some(big_value(MIB, i)));
    }
    let entries = scan(&*e, Space::RaftLog, &[1], None, true, 0);
    assert_eq!(
        entries,
        vec![(vec![2], big_value(MIB, 2)), (vec![1], big_value(MIB, 1))]
    );
    assert!(
        e.size_bytes() >= 3 * MIB as u64,
        "size_bytes counts the data"
    );
    put(&*e, Space::RaftLog, &[1], b"small");
    assert_eq!(get(&*e, Space::RaftLog, &[1]), Some(b"small".to_vec()));
}

/// Thousands of small `Deferred` batches in a row (a state machine applying a
/// backlog) must not bloat the store far beyond its data (~1 MiB here).
fn long_runs_of_deferred_writes_stay_compact(f: &Fixture) {
    let e = f.open();
    for i in 0..4000u32 {
        put(&*e, Space::Kv, &i.to_be_bytes(), &[7; 256]);
    }
    e.flush().expect("flush");
    let size = e.size_bytes();
    assert!(size < 16 << 20, "{size} bytes on disk for 1 MiB of data");
}

/// Scans run while a writer keeps rewriting, in one batch, two keys at the
/// ends of a range wide enough to span many tree nodes: every scan must see
/// both from the same batch.
fn scans_never_see_half_a_batch(f: &Fixture) {
    const BATCHES: u32 = 1000;
    let e = f.open();
    let mut filler = WriteBatch::new();
    for i in 0..2000u32 {
        filler.put(Space::Kv, format!("m{i:05}"), [0u8; 100]);
    }
    write(&*e, filler);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for n in 0..BATCHES {
                let mut batch = WriteBatch::new();
                batch.put(Space::Kv, b"a", n.to_be_bytes());
                batch.put(Space::Kv, b"z", n.to_be_bytes());
                write(&*e, batch);
            }
            done.store(true, Ordering::Release);
        });
        while !done.load(Ordering::Acquire) {
            let entries = scan(&*e, Space::Kv, b"", None, false, 0);
            if let [(a, first), .., (z, last)] = entries.as_slice() {
                if a == b"a" && z == b"z" {
                    assert_eq!(first, last, "a scan saw half of a batch");
                }
            }
        }
    });
    let last = (BATCHES - 1).to_be_bytes().to_vec();
    assert_eq!(get(&*e, Space::Kv, b"z"), Some(last));
}

fn data_survives_reopening(f: &Fixture) {
    let e = f.open();
    let mut batch = WriteBatch::new();
    batch.put(Space::RaftLog, 1u64.to_be_bytes(), b"entry-1");
    batch.put(Space::RaftLog, 2u64.to_be_bytes(), b"entry-2");
    batch.put(Space::Meta, b"applied", b"2");
    e.write(batch, Durability::Immediate)
        .expect("immediate write");
    let mut batch = WriteBatch::new();
    batch.put(Space::Kv, b"key", big_value(1 << 20, 7));
    batch.delete(Space::RaftLog, 1u64.to_be_bytes());
    e.write(batch, Durability::Deferred)
        .expect("deferred write");
    e.flush().expect("flush");
    drop(e);

    let e = f.open();
    assert_eq!(e.kind(), f.kind);
    assert_eq!(
        keys(scan(&*e, Space::RaftLog, b"", None, false, 0)),
        vec![2u64.to_be_bytes()]
    );
    assert_eq!(get(&*e, Space::Meta, b"applied"), Some(b"2".to_vec()));
    assert_eq!(get(&*e, Space::Kv, b"key"), Some(big_value(1 << 20, 7)));
}

fn deferred_writes_survive_a_clean_close(f: &Fixture) {
    let e = f.open();
    for i in 0..100u32 {
        put(&*e, Space::Kv, &i.to_be_bytes(), b"v");
    }
    drop(e);
    let e = f.open();
    assert_eq!(all_keys(&*e, Space::Kv).len(), 100);
}

/// What a batch of the model test does, before it becomes a [`WriteBatch`].
#[derive(Debug, Clone)]
enum ModelOp {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    DeleteRange(usize, Vec<u8>, Vec<u8>),
    Clear(usize),
}

/// Short keys over a small alphabet (with 0xff), so ops collide often.
fn model_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', 0xff]), 0..3)
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    // Three spaces are enough to catch leaks between neighbours.
    let space = 1..4usize;
    prop_oneof![
        6 => (space.clone(), model_key(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(s, k, v)| ModelOp::Put(s, k, v)),
        2 => (space.clone(), model_key()).prop_map(|(s, k)| ModelOp::Delete(s, k)),
        2 => (space.clone(), model_key(), model_key())
            .prop_map(|(s, a, b)| ModelOp::DeleteRange(s, a, b)),
        1 => space.prop_map(ModelOp::Clear),
    ]
}

/// Random batches applied to the engine and to a `BTreeMap` per space; after
/// every batch, random scans (both directions, with limits) must agree.
fn matches_a_btreemap_model(f: &Fixture) {
    let cases = if f.kind == EngineKind::Memory {
        256
    } else {
        32
    };
    let batches = prop::collection::vec(prop::collection::vec(model_op(), 0..6), 1..12);
    let probes = prop::collection::vec((model_key(), model_key(), any::<bool>(), 0..4usize), 4);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(batches, probes), |(batches, probes)| {
            let dir = tempfile::tempdir().expect("creating a temp dir");
            let engine = open(f.kind, dir.path(), f.batching).expect("opening the engine");
            let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 5] = Default::default();
            for ops in batches {
                let mut batch = WriteBatch::new();
                for op in ops {
                    match op {
                        ModelOp::Put(s, k, v) => {
                            model[s].insert(k.clone(), v.clone());
                            batch.put(Space::ALL[s], k, v);
                        }
                        ModelOp::Delete(s, k) => {
                            model[s].remove(&k);
                            batch.delete(Space::ALL[s], k);
                        }
                        ModelOp::DeleteRange(s, a, b) => {
                            model[s].retain(|k, _| !(a <= *k && *k < b));
                            batch.delete_range(Space::ALL[s], a, b);
                        }
                        ModelOp::Clear(s) => {
                            model[s].clear();
                            batch.clear(Space::ALL[s]);
                        }
                    }
                }
                engine
                    .write(batch, Durability::Deferred)
                    .expect("writing a batch");
                for (s, space) in Space::ALL.into_iter().enumerate() {
                    for (start, end, reverse, limit) in &probes {
                        let end = (!end.is_empty()).then_some(end.as_slice());
                        let got = engine
                            .scan(space, ScanRange::new(start, end), *reverse, *limit)
                            .expect("scan");
                        let in_range = model[s]
                            .iter()
                            .filter(|(k, _)| *k >= start && end.is_none_or(|e| k.as_slice() < e));
                        let in_range: Entries =
                            in_range.map(|(k, v)| (k.clone(), v.clone())).collect();
                        let mut want = in_range;
                        if *reverse {
                            want.reverse();
                        }
                        if *limit > 0 {
                            want.truncate(*limit);
                        }
                        prop_assert_eq!(got, want, "{:?} {:?}..{:?}", space, start, end);
                        prop_assert_eq!(
                            engine.get(space, start).expect("get"),
                            model[s].get(start).cloned()
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

macro_rules! conformance {
    ($engine:ident, $kind:ident, $batching:expr, [$($test:ident),* $(,)?]) => {
        mod $engine {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::Fixture::new(super::EngineKind::$kind, $batching));
                }
            )*
        }
    };
    ($engine:ident, $kind:ident, $batching:expr, every engine and [$($extra:ident),* $(,)?]) => {
        conformance!($engine, $kind, $batching, [
            get_put_delete,
            scans_are_ordered_bounded_and_limited,
            delete_range_removes_a_half_open_range,
            clear_empties_only_its_space,
            spaces_are_independent,
            a_later_op_in_a_batch_wins,
            appended_keys_mix_with_overwrites_and_deletes,
            empty_batches_and_flush_are_accepted,
            big_values_round_trip,
            long_runs_of_deferred_writes_stay_compact,
            scans_never_see_half_a_batch,
            matches_a_btreemap_model,
            $($extra,)*
        ]);
    };
}

conformance!(memory, Memory, None, every engine and []);
conformance!(sled, Sled, None, every engine and [
    data_survives_reopening,
    deferred_writes_survive_a_clean_close,
]);
conformance!(redb, Redb, None, every engine and [
    data_survives_reopening,
    deferred_writes_survive_a_clean_close,
]);
conformance!(sled_batched, Sled, super::TIGHT, every engine and [
    data_survives_reopening,
    deferred_writes_survive_a_clean_close,
]);
conformance!(redb_batched, Redb, super::TIGHT, every engine and [
    data_survives_reopening,
    deferred_writes_survive_a_clean_close,
]);
conformance!(redb_batched_by_default, Redb, Some(super::Batching::default()), every engine and [
    data_survives_reopening,
    deferred_writes_survive_a_clean_close,
]);

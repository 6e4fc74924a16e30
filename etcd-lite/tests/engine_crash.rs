//! Crash tests for the disk engines: a child process writes numbered batches
//! and reports each one `write` acknowledged; the test SIGKILLs it mid-stream,
//! reopens the engine, and checks that what survived is a gap-free prefix of
//! the batches holding every acknowledged `Immediate` one.
//!
//! Entry points: one test per engine; the child is the ignored test
//! [`crash_writer`], re-run from this same binary.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use std::sync::Arc;
use std::time::Duration;

use etcd_lite::storage::{
    open, Batching, Durability, Engine, EngineKind, ScanRange, Space, WriteBatch,
};

/// Set (to `<engine> <dir>`) only in the child: it makes [`crash_writer`] write.
const WRITER_ENV: &str = "ETCD_LITE_CRASH_WRITER";
/// The child's bound; the parent kills it long before.
const MAX_BATCHES: u64 = 100_000;
/// How many acknowledgements the parent waits for before each kill.
const KILL_AFTER: [usize; 4] = [5, 60, 250, 600];
/// Every this many batches, the Raft log is compacted with a range delete.
const COMPACT_EVERY: u64 = 100;
/// Log entries kept behind a compaction point.
const COMPACT_KEEP: u64 = 50;

/// Opens the engine a test names: `sled`, `redb`, or `redb-batched` (redb
/// with its deferred writes batched, committing every few batches or
/// milliseconds, so kills land between, inside and after commits).
fn open_named(name: &str, dir: &Path) -> Arc<dyn Engine> {
    let (kind, batching) = match name {
        "sled" => (EngineKind::Sled, None),
        "redb" => (EngineKind::Redb, None),
        "redb-batched" => (
            EngineKind::Redb,
            Some(Batching {
                interval: Duration::from_millis(3),
                limit: 40,
            }),
        ),
        other => panic!("no disk engine named {other:?}"),
    };
    open(kind, dir, batching).expect("opening the engine")
}

fn key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Batch `n`'s value: its length and bytes depend on `n`, so a torn or
/// misplaced value shows.
fn value(n: u64) -> Vec<u8> {
    let len = 16 + (n % 5) as usize * 700;
    (0..len)
        .map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

fn durability(n: u64) -> Durability {
    if n % 4 == 3 {
        Durability::Deferred
    } else {
        Durability::Immediate
    }
}

/// Batch `n` touches four spaces: it appends to `Kv` and `RaftLog`, moves the
/// single `Lease` key from `n - 1` to `n`, records `n` in `Meta`, and now and
/// then compacts the log.
fn batch(n: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(Space::Kv, key(n), value(n));
    batch.put(Space::RaftLog, key(n), value(n));
    if n > 0 {
        batch.delete(Space::Lease, key(n - 1));
    }
    batch.put(Space::Lease, key(n), b"");
    batch.put(Space::Meta, b"last", key(n));
    let first = first_log_entry(n);
    if n > 0 && first > first_log_entry(n - 1) {
        batch.delete_range(Space::RaftLog, key(0), key(first));
    }
    batch
}

/// The first log entry left after batch `last`.
fn first_log_entry(last: u64) -> u64 {
    let compacted_at = last - last % COMPACT_EVERY;
    if compacted_at >= COMPACT_EVERY {
        compacted_at - COMPACT_KEEP
    } else {
        0
    }
}

fn keys_of(engine: &dyn Engine, space: Space) -> Vec<u64> {
    let entries = engine
        .scan(space, ScanRange::all(), false, 0)
        .expect("scan");
    entries
        .into_iter()
        .map(|(k, _)| u64::from_be_bytes(k.try_into().expect("an 8-byte key")))
        .collect()
}

/// Checks that the engine holds exactly batches `0..=last` for some `last`,
/// each whole, and returns `last` (`None` when no batch survived).
fn recovered_prefix(engine: &dyn Engine) -> Option<u64> {
    let last = engine
        .get(Space::Meta, b"last")
        .expect("get")
        .map(|v| u64::from_be_bytes(v.try_into().expect("an 8-byte batch number")));
    let Some(last) = last else {
        for space in [Space::Kv, Space::RaftLog, Space::Lease] {
            assert!(
                keys_of(engine, space).is_empty(),
                "{space:?} has data but no batch is recorded"
            );
        }
        return None;
    };
    let kv = engine
        .scan(Space::Kv, ScanRange::all(), false, 0)
        .expect("scan");
    assert_eq!(
        kv.len() as u64,
        last + 1,
        "Kv holds batches 0..={last} and nothing else"
    );
    for (n, (k, v)) in (0..).zip(kv) {
        assert_eq!(k, key(n), "batch {n} is missing: a gap");
        assert!(v == value(n), "batch {n}'s value is torn");
    }
    assert_eq!(
        keys_of(engine, Space::Lease),
        vec![last],
        "the lease key moved with each batch"
    );
    let log: Vec<u64> = (first_log_entry(last)..=last).collect();
    assert_eq!(
        keys_of(engine, Space::RaftLog),
        log,
        "log entries after compaction"
    );
    Some(last)
}

/// The child: continues the numbered batches from what the engine holds and
/// prints `ack <durable|deferred> <n>` once each `write` has returned.
#[test]
#[ignore = "the writer half of the crash tests, started by them as a child process"]
fn crash_writer() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let (kind, dir) = spec.split_once(' ').expect("<engine> <dir>");
    let engine = open_named(kind, Path::new(dir));
    let next = recovered_prefix(&*engine).map_or(0, |last| last + 1);
    let mut out = std::io::stdout().lock();
    // libtest may have printed the test's name without a newline.
    writeln!(out).expect("stdout");
    for n in next..next + MAX_BATCHES {
        let durability = durability(n);
        engine.write(batch(n), durability).expect("writing a batch");
        let word = if durability == Durability::Immediate {
            "durable"
        } else {
            "deferred"
        };
        writeln!(out, "ack {word} {n}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// What the parent learnt from one child before killing it. The child may
/// have written (and even acknowledged) more by the time the kill lands.
struct Round {
    /// The highest batch acknowledged as durable.
    last_durable: Option<u64>,
}

/// Runs the writer on `dir` and SIGKILLs it after `kill_after` acknowledgements.
fn write_until_killed(kind: &str, dir: &Path, kill_after: usize) -> Round {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "crash_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, format!("{kind} {}", dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the writer");
    let stdout = child.stdout.take().expect("the writer's stdout");
    let mut round = Round { last_durable: None };
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reading the writer's stdout");
        let Some((_, ack)) = line.rsplit_once("ack ") else {
            continue;
        };
        let (word, n) = ack.split_once(' ').expect("ack <word> <n>");
        let n: u64 = n.parse().expect("a batch number");
        if word == "durable" {
            round.last_durable = Some(n);
        }
        acks += 1;
        if acks == kill_after {
            child.kill().expect("killing the writer");
            break;
        }
    }
    let status = child.wait().expect("waiting for the writer");
    assert_eq!(acks, kill_after, "the writer stopped early: {status}");
    round
}

/// Several write-kill-recover rounds on one directory: after each kill the
/// engine must hold a gap-free prefix of the batches that includes every
/// batch acknowledged as durable and everything recovered in earlier rounds.
fn survives_kills(kind: &str) {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let mut floor: Option<u64> = None;
    for kill_after in KILL_AFTER {
        let round = write_until_killed(kind, dir.path(), kill_after);
        let engine = open_named(kind, dir.path());
        let last = recovered_prefix(&*engine);
        drop(engine);
        assert!(
            last >= round.last_durable,
            "lost acknowledged durable batches: {last:?}"
        );
        assert!(last >= floor, "lost batches recovered in an earlier round");
        floor = last;
    }
}

#[test]
fn sled_keeps_every_acknowledged_batch_across_kills() {
    survives_kills("sled");
}

#[test]
fn redb_keeps_every_acknowledged_batch_across_kills() {
    survives_kills("redb");
}

#[test]
fn batched_redb_keeps_every_acknowledged_batch_across_kills() {
    survives_kills("redb-batched");
}

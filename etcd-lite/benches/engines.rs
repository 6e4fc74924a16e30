//! Micro-benchmark of the storage engines: durable and deferred writes,
//! point reads, 1000-key scans and the size on disk, for each engine.
//!
//! Run: `cargo bench -p etcd-lite --bench engines` (set `BENCH_DIR` to put
//! the data on a particular disk; the default is the system temp dir).

use std::time::{Duration, Instant};

use etcd_lite::storage::{open, Durability, Engine, EngineKind, ScanRange, Space, WriteBatch};

const VALUE_BYTES: usize = 256;
/// Each workload stops at its op count or after this long, whichever is first.
const TIME_BOX: Duration = Duration::from_secs(3);
const DURABLE_PUTS: u64 = 3_000;
const BATCHES_OF_64: u64 = 1_000;
const DEFERRED_PUTS: u64 = 100_000;
const GETS: u64 = 200_000;
const SCANS: u64 = 3_000;
const SCAN_KEYS: usize = 1_000;

/// One engine's figures.
struct Figures {
    kind: EngineKind,
    durable_put_per_s: f64,
    durable_put_p50_us: f64,
    durable_put_p99_us: f64,
    batch64_per_s: f64,
    deferred_put_per_s: f64,
    closing_flush_ms: f64,
    get_per_s: f64,
    scan_per_s: f64,
    keys: u64,
    logical_bytes: u64,
    size_bytes: u64,
}

/// A small deterministic generator, so runs read the same keys.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Writes `one_batch(i)` for i in 0.. until `max` batches or the time box,
/// returning the count and the latency of each batch.
fn timed_writes(
    engine: &dyn Engine,
    max: u64,
    durability: Durability,
    mut one_batch: impl FnMut(u64) -> WriteBatch,
) -> (u64, Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0;
    while n < max && start.elapsed() < TIME_BOX {
        let batch = one_batch(n);
        let t = Instant::now();
        engine.write(batch, durability).expect("write");
        latencies.push(t.elapsed());
        n += 1;
    }
    (n, start.elapsed(), latencies)
}

fn per_s(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn run(kind: EngineKind, dir: &std::path::Path) -> Figures {
    let engine = open(kind, dir, None).expect("opening the engine");
    let engine = &*engine;
    let value = vec![0x5a; VALUE_BYTES];
    let mut next_key = 0u64;
    let mut put_batch = |count: u64| {
        let mut batch = WriteBatch::new();
        for _ in 0..count {
            batch.put(Space::Kv, next_key.to_be_bytes(), value.clone());
            next_key += 1;
        }
        batch
    };

    let (n, elapsed, mut latencies) =
        timed_writes(engine, DURABLE_PUTS, Durability::Immediate, |_| {
            put_batch(1)
        });
    latencies.sort();
    let durable_put_per_s = per_s(n, elapsed);
    let durable_put_p50_us = percentile_us(&latencies, 0.50);
    let durable_put_p99_us = percentile_us(&latencies, 0.99);

    let (n, elapsed, _) = timed_writes(engine, BATCHES_OF_64, Durability::Immediate, |_| {
        put_batch(64)
    });
    let batch64_per_s = per_s(n, elapsed);

    let (n, elapsed, _) = timed_writes(engine, DEFERRED_PUTS, Durability::Deferred, |_| {
        put_batch(1)
    });
    let deferred_put_per_s = per_s(n, elapsed);
    let flush = Instant::now();
    engine.flush().expect("flush");
    let closing_flush_ms = flush.elapsed().as_secs_f64() * 1e3;

    let keys = next_key;
    let mut rng = Lcg(42);
    let start = Instant::now();
    let mut gets = 0;
    while gets < GETS && start.elapsed() < TIME_BOX {
        let key = rng.below(keys).to_be_bytes();
        assert!(engine.get(Space::Kv, &key).expect("get").is_some());
        gets += 1;
    }
    let get_per_s = per_s(gets, start.elapsed());

    let start = Instant::now();
    let mut scans = 0;
    while scans < SCANS && start.elapsed() < TIME_BOX {
        let from = rng
            .below(keys.saturating_sub(SCAN_KEYS as u64).max(1))
            .to_be_bytes();
        let entries = engine
            .scan(Space::Kv, ScanRange::new(&from, None), false, SCAN_KEYS)
            .expect("scan");
        assert_eq!(entries.len(), SCAN_KEYS.min(keys as usize));
        scans += 1;
    }
    let scan_per_s = per_s(scans, start.elapsed());

    Figures {
        kind,
        durable_put_per_s,
        durable_put_p50_us,
        durable_put_p99_us,
        batch64_per_s,
        deferred_put_per_s,
        closing_flush_ms,
        get_per_s,
        scan_per_s,
        keys,
        logical_bytes: keys * (8 + VALUE_BYTES as u64),
        size_bytes: engine.size_bytes(),
    }
}

fn main() {
    let base = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let mut rows = Vec::new();
    for kind in [EngineKind::Memory, EngineKind::Sled, EngineKind::Redb] {
        let dir = match &base {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .expect("creating a temp dir");
        eprintln!("benchmarking {} in {}", kind.name(), dir.path().display());
        rows.push(run(kind, dir.path()));
    }

    println!(
        "{VALUE_BYTES}-byte values; each workload stops at its op count or after {}s",
        TIME_BOX.as_secs()
    );
    println!(
        "| engine | durable put/s | durable put p50 / p99 (µs) | 64-put durable batch/s (puts/s) \
         | deferred put/s | flush after (ms) | get/s | 1000-key scan/s | keys | logical MiB | size MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} / {:.0} | {:.0} ({:.0}) | {:.0} | {:.1} | {:.0} | {:.0} | {} | {:.1} | {:.1} |",
            r.kind.name(),
            r.durable_put_per_s,
            r.durable_put_p50_us,
            r.durable_put_p99_us,
            r.batch64_per_s,
            r.batch64_per_s * 64.0,
            r.deferred_put_per_s,
            r.closing_flush_ms,
            r.get_per_s,
            r.scan_per_s,
            r.keys,
            mib(r.logical_bytes),
            mib(r.size_bytes),
        );
    }
}

//! Closed-loop load: [`run_phase`] drives N client tasks, each sending its
//! next request as soon as the previous one is answered, over a fixed set of
//! gRPC connections, until a time or operation budget is spent, and returns
//! throughput and a latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::KvClient;
use hdrhistogram::Histogram;

/// The request a phase sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `Put` of a random key in the key space with a fixed-size value.
    Put,
    /// Linearizable `Range` of one random key (the default consistency).
    Get,
}

/// When a phase ends.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Duration(Duration),
    /// Exactly this many requests, spread over the clients.
    Ops(u64),
}

/// What the request payloads look like.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Number of distinct keys (`/bench/00000000` ...).
    pub keys: u64,
    pub value: Vec<u8>,
}

impl Workload {
    pub fn key(&self, index: u64) -> String {
        format!("/bench/{:08}", index % self.keys)
    }
}

/// The outcome of one phase.
pub struct PhaseResult {
    /// Requests answered successfully.
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl PhaseResult {
    /// Nothing run yet: what [`PhaseResult::merge`] starts from.
    pub fn empty() -> PhaseResult {
        PhaseResult {
            ops: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency_us: new_histogram(),
        }
    }

    /// Adds another run of the same phase: counts and time add up, latencies pool.
    pub fn merge(&mut self, other: PhaseResult) -> Result<()> {
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latency_us
            .add(&other.latency_us)
            .context("merge latency histograms")
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs `clients` closed-loop tasks; task `i` uses connection
/// `i % connections.len()`.
pub async fn run_phase(
    connections: &[KvClient],
    clients: usize,
    operation: Operation,
    budget: Budget,
    workload: &Workload,
) -> Result<PhaseResult> {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = match budget {
        Budget::Duration(d) => Some(start + d),
        Budget::Ops(_) => None,
    };
    let limit = match budget {
        Budget::Ops(n) => n,
        Budget::Duration(_) => u64::MAX,
    };
    let mut tasks = Vec::with_capacity(clients);
    for task in 0..clients {
        let mut kv = connections[task % connections.len()].clone();
        let issued = Arc::clone(&issued);
        let workload = workload.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = XorShift::new(task as u64 + 1);
            // Each task's own tally; `elapsed` is the phase's, set below.
            let mut result = PhaseResult::empty();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || issued.fetch_add(1, Ordering::Relaxed) >= limit
                {
                    break;
                }
                let key = workload.key(rng.next());
                let sent = Instant::now();
                let outcome = match operation {
                    Operation::Put => kv.put(key, workload.value.clone(), None).await.map(|_| ()),
                    Operation::Get => kv.get(key, None).await.map(|_| ()),
                };
                match outcome {
                    Ok(()) => {
                        let micros = sent.elapsed().as_micros().max(1) as u64;
                        result.latency_us.saturating_record(micros);
                        result.ops += 1;
                    }
                    Err(e) => {
                        result.errors += 1;
                        result.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            result
        }));
    }
    let mut total = PhaseResult::empty();
    for task in tasks {
        total.merge(task.await.context("a client task panicked")?)?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Writes every key of the workload once, so reads find data and puts
/// overwrite (as in steady state) rather than create.
pub async fn prefill(connections: &[KvClient], clients: usize, workload: &Workload) -> Result<()> {
    let mut tasks = Vec::with_capacity(clients);
    for task in 0..clients {
        let mut kv = connections[task % connections.len()].clone();
        let workload = workload.clone();
        tasks.push(tokio::spawn(async move {
            let mut index = task as u64;
            while index < workload.keys {
                kv.put(workload.key(index), workload.value.clone(), None)
                    .await
                    .with_context(|| format!("prefill {}", workload.key(index)))?;
                index += clients as u64;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a prefill task panicked")??;
    }
    Ok(())
}

/// A tiny deterministic PRNG (xorshift64*): key choice only, no crypto.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

//! `etcd-bench`: the same closed-loop load against a 3-member etcd-lite
//! cluster and a 3-member Debian etcd 3.4 cluster, side by side on loopback.
//! Entry point: [`run`] with [`Args`]; [`report`] prints the tables.
//!
//! Both clusters stay up for the whole run. Each phase runs in rounds in which
//! the systems take turns (A B, B A, ...), each spending its share of the
//! phase's budget, so that a change in the machine's speed during the run
//! falls on both systems alike instead of on whichever ran at the time.
//!
//! Phases (etcd's own benchmark tool names them alike):
//! - `put, 1 client`: one client, one connection, to the leader;
//! - `put, N clients`: N client tasks over C connections, connection `i` to
//!   member `i % 3`, so followers forward to the leader as in real use;
//! - `get (linearizable), N clients`: same spread, default consistency.

pub mod apiserver;
pub mod cluster;
pub mod load;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use etcd_client::KvClient;

use cluster::{Cluster, ClusterSpec};
use load::{Budget, Operation, Workload};
use report::{Measured, PhaseRow, RssSampler, SystemReport, Tally};

/// How long a fresh cluster may take to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Per-request deadline; a request past it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// ferrokube's etcd-lite
    EtcdLite,
    /// Debian's etcd 3.4
    Etcd,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::EtcdLite => "etcd-lite",
            System::Etcd => "etcd 3.4",
        }
    }
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "etcd-bench",
    about = "Benchmark a 3-member etcd-lite cluster against a 3-member Debian etcd 3.4 \
             cluster on loopback: put with 1 client, put with many, linearizable get with many"
)]
pub struct Args {
    /// The etcd-lite binary [default: $CARGO_TARGET_DIR/release/etcd-lite,
    /// else target/release/etcd-lite]
    #[arg(long)]
    pub etcd_lite_bin: Option<PathBuf>,

    /// The etcd binary to compare with
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,

    /// Benchmark only this system
    #[arg(long, value_enum)]
    pub only: Option<System>,

    /// Seconds each system spends in a phase, over all its rounds
    #[arg(long, default_value_t = 12.0)]
    pub duration: f64,

    /// Requests per phase and system instead of a duration
    #[arg(long)]
    pub ops: Option<u64>,

    /// Rounds per phase: the systems take turns, each running its share of
    /// the phase, so that a change in the machine's speed falls on both
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,

    /// Concurrent client tasks in the many-client phases
    #[arg(long, default_value_t = 64)]
    pub clients: usize,

    /// gRPC connections the many-client phases share, spread over members
    #[arg(long, default_value_t = 8)]
    pub conns: usize,

    /// Bytes per value
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Distinct keys; all are written before the phases start
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,

    /// Members per cluster
    #[arg(long, default_value_t = 3)]
    pub members: usize,

    /// `--storage-engine` for etcd-lite (its default if not given)
    #[arg(long)]
    pub storage_engine: Option<String>,

    /// Where the temporary data directories go [default: the system's temp dir]
    #[arg(long)]
    pub data_root: Option<PathBuf>,

    /// Print the results as Markdown tables, for BENCHMARKS.md
    #[arg(long)]
    pub markdown: bool,
}

impl Args {
    fn etcd_lite_bin(&self) -> PathBuf {
        self.etcd_lite_bin.clone().unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"));
            target.join("release").join("etcd-lite")
        })
    }

    /// One round's share of a phase's budget (at least one request).
    fn slice_budget(&self) -> Budget {
        let rounds = self.rounds.max(1);
        match self.ops {
            Some(ops) => Budget::Ops(ops.div_ceil(rounds as u64).max(1)),
            None => Budget::Duration(Duration::from_secs_f64(self.duration / rounds as f64)),
        }
    }

    fn systems(&self) -> Vec<System> {
        match self.only {
            Some(system) => vec![system],
            None => vec![System::EtcdLite, System::Etcd],
        }
    }

    fn spec(&self, system: System) -> ClusterSpec {
        let (binary, extra_args) = match system {
            System::EtcdLite => (
                self.etcd_lite_bin(),
                self.storage_engine
                    .iter()
                    .map(|engine| format!("--storage-engine={engine}"))
                    .collect(),
            ),
            System::Etcd => (self.etcd_bin.clone(), Vec::new()),
        };
        ClusterSpec {
            binary,
            size: self.members,
            extra_args,
            data_root: self.data_root.clone(),
        }
    }
}

/// Benchmarks the selected systems side by side: both clusters stay up, and
/// each phase runs in `--rounds` rounds in which the systems take turns.
pub async fn run(args: &Args) -> Result<Vec<SystemReport>> {
    anyhow::ensure!(
        args.clients > 0 && args.conns > 0,
        "--clients and --conns must be > 0"
    );
    anyhow::ensure!(args.keys > 0, "--keys must be > 0");
    anyhow::ensure!(args.members > 0, "--members must be > 0");
    anyhow::ensure!(args.rounds > 0, "--rounds must be > 0");
    // Check every binary first, so a missing one fails before any run.
    for system in args.systems() {
        let binary = args.spec(system).binary;
        anyhow::ensure!(
            binary.is_file(),
            "{} binary {} not found{}",
            system.label(),
            binary.display(),
            match system {
                System::EtcdLite => " (build it: cargo build --release -p etcd-lite)",
                System::Etcd => " (install Debian's etcd-server)",
            }
        );
    }
    let mut targets = Vec::new();
    for system in args.systems() {
        targets.push(
            Target::start(args, system)
                .await
                .with_context(|| format!("starting {}", system.label()))?,
        );
    }
    let phases = [
        ("put, 1 client, leader".to_string(), Operation::Put, 1),
        (
            format!("put, {} clients, all members", args.clients),
            Operation::Put,
            args.clients,
        ),
        (
            format!("get linearizable, {} clients, all members", args.clients),
            Operation::Get,
            args.clients,
        ),
    ];
    let mut rows: Vec<Vec<PhaseRow>> = targets.iter().map(|_| Vec::new()).collect();
    for (name, operation, clients) in phases {
        let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
        for round in 0..args.rounds {
            for i in turn_order(round, targets.len()) {
                let target = &mut targets[i];
                eprintln!(
                    "{}: {name}, round {} of {} ...",
                    target.system.label(),
                    round + 1,
                    args.rounds
                );
                let slice = target
                    .run_slice(operation, clients, args.slice_budget())
                    .await
                    .with_context(|| format!("benchmarking {}", target.system.label()))?;
                tallies[i].add(slice)?;
            }
        }
        for ((target, tally), rows) in targets.iter().zip(tallies).zip(&mut rows) {
            let result = &tally.total.result;
            if let Some(error) = &result.first_error {
                eprintln!(
                    "{}: {name}: {} errors, first: {error}",
                    target.system.label(),
                    result.errors
                );
            }
            anyhow::ensure!(
                result.ops > 0,
                "{}: {name}: no request succeeded",
                target.system.label()
            );
            let row = PhaseRow::new(name.clone(), clients, &tally, target.cluster.rss_kib());
            eprintln!("{}: {}", target.system.label(), row.summary());
            rows.push(row);
        }
    }
    let mut reports = Vec::new();
    for (target, phases) in targets.into_iter().zip(rows) {
        let max_rss_kib = target.sampler.stop().await;
        reports.push(SystemReport {
            system: target.system.label().to_string(),
            phases,
            max_rss_kib,
        });
    }
    Ok(reports)
}

/// The order in which `systems` systems run in round `round`: first to last
/// in even rounds, last to first in odd ones, so that neither always goes
/// first (A B, B A, A B, ...).
fn turn_order(round: usize, systems: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..systems).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The member's Raft index (Maintenance Status), if it answers.
async fn raft_index(client: &mut etcd_client::Client) -> Option<u64> {
    client.status().await.ok().map(|s| s.raft_index())
}

/// One system under test: its running cluster and the clients that load it.
struct Target {
    system: System,
    cluster: Cluster,
    /// `--conns` connections, connection `i` to member `i % members`.
    spread: Vec<KvClient>,
    /// One connection to the leader.
    to_leader: Vec<KvClient>,
    leader_client: etcd_client::Client,
    workload: Workload,
    sampler: RssSampler,
}

impl Target {
    /// Starts the cluster, waits for its leader, connects and writes every key once.
    async fn start(args: &Args, system: System) -> Result<Target> {
        let spec = args.spec(system);
        eprintln!(
            "{}: starting {} members ({})",
            system.label(),
            spec.size,
            spec.binary.display()
        );
        let mut cluster = Cluster::start(&spec)?;
        let leader = cluster.wait_ready(READY_TIMEOUT).await?;
        eprintln!(
            "{}: ready, leader m{leader}, data in {}",
            system.label(),
            cluster.data_dir().display()
        );
        let endpoints = cluster.endpoints();
        let mut spread = Vec::with_capacity(args.conns);
        for i in 0..args.conns {
            let endpoint = &endpoints[i % endpoints.len()];
            spread.push(
                cluster::connect(endpoint, REQUEST_TIMEOUT)
                    .await?
                    .kv_client(),
            );
        }
        let leader_client = cluster::connect(&endpoints[leader], REQUEST_TIMEOUT).await?;
        let to_leader = vec![leader_client.kv_client()];
        let workload = Workload {
            keys: args.keys,
            value: vec![b'v'; args.value_size],
        };
        load::prefill(&spread, args.clients, &workload).await?;
        let sampler = RssSampler::start(&cluster);
        Ok(Target {
            system,
            cluster,
            spread,
            to_leader,
            leader_client,
            workload,
            sampler,
        })
    }

    /// Runs one round of a phase and measures what it cost.
    async fn run_slice(
        &mut self,
        operation: Operation,
        clients: usize,
        budget: Budget,
    ) -> Result<Measured> {
        let connections = if clients == 1 {
            &self.to_leader
        } else {
            &self.spread
        };
        let cpu_before = self.cluster.cpu_ms();
        let client_cpu_before = cluster::cpu_ms(std::process::id());
        let index_before = raft_index(&mut self.leader_client).await;
        let result =
            load::run_phase(connections, clients, operation, budget, &self.workload).await?;
        let cpu_ms = cpu_before
            .iter()
            .zip(self.cluster.cpu_ms())
            .map(|(before, after)| Some(after?.saturating_sub((*before)?)))
            .sum::<Option<u64>>();
        let client_cpu_ms = client_cpu_before
            .zip(cluster::cpu_ms(std::process::id()))
            .map(|(before, after)| after.saturating_sub(before));
        let raft_entries = match (index_before, raft_index(&mut self.leader_client).await) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        Ok(Measured {
            result,
            cpu_ms,
            client_cpu_ms,
            raft_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_take_turns_going_first() {
        assert_eq!(turn_order(0, 2), [0, 1]);
        assert_eq!(turn_order(1, 2), [1, 0]);
        assert_eq!(turn_order(2, 2), [0, 1]);
        assert_eq!(turn_order(3, 1), [0]);
    }

    #[test]
    fn the_budget_is_split_over_the_rounds() {
        let args = |extra: &[&str]| Args::parse_from(["etcd-bench"].iter().chain(extra).copied());
        match args(&["--duration=12", "--rounds=4"]).slice_budget() {
            Budget::Duration(d) => assert_eq!(d, Duration::from_secs(3)),
            other => panic!("{other:?}"),
        }
        match args(&["--ops=10", "--rounds=4"]).slice_budget() {
            Budget::Ops(n) => assert_eq!(n, 3),
            other => panic!("{other:?}"),
        }
    }
}

//! `etcd-bench`: the same closed-loop load against a 3-member etcd-lite
//! cluster and a 3-member Debian etcd 3.4 cluster, one after the other, on
//! loopback. Entry point: [`run`] with [`Args`]; [`report`] prints the table.
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
use report::{PhaseRow, SystemReport};

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

    /// Seconds per phase
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Requests per phase instead of a duration
    #[arg(long)]
    pub ops: Option<u64>,

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

    fn budget(&self) -> Budget {
        match self.ops {
            Some(ops) => Budget::Ops(ops),
            None => Budget::Duration(Duration::from_secs_f64(self.duration)),
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

/// Benchmarks each selected system in turn (one cluster alive at a time).
pub async fn run(args: &Args) -> Result<Vec<SystemReport>> {
    anyhow::ensure!(
        args.clients > 0 && args.conns > 0,
        "--clients and --conns must be > 0"
    );
    anyhow::ensure!(args.keys > 0, "--keys must be > 0");
    anyhow::ensure!(args.members > 0, "--members must be > 0");
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
    let mut reports = Vec::new();
    for system in args.systems() {
        reports.push(
            bench_system(args, system)
                .await
                .with_context(|| format!("benchmarking {}", system.label()))?,
        );
    }
    Ok(reports)
}

/// The member's Raft index (Maintenance Status), if it answers.
async fn raft_index(client: &mut etcd_client::Client) -> Option<u64> {
    client.status().await.ok().map(|s| s.raft_index())
}

async fn bench_system(args: &Args, system: System) -> Result<SystemReport> {
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
    let mut leader_client = cluster::connect(&endpoints[leader], REQUEST_TIMEOUT).await?;
    let to_leader: Vec<KvClient> = vec![leader_client.kv_client()];

    let workload = Workload {
        keys: args.keys,
        value: vec![b'v'; args.value_size],
    };
    load::prefill(&spread, args.clients, &workload).await?;

    let sampler = report::RssSampler::start(&cluster);
    let phases = [
        (
            "put, 1 client, leader".to_string(),
            Operation::Put,
            1,
            &to_leader,
        ),
        (
            format!("put, {} clients, all members", args.clients),
            Operation::Put,
            args.clients,
            &spread,
        ),
        (
            format!("get linearizable, {} clients, all members", args.clients),
            Operation::Get,
            args.clients,
            &spread,
        ),
    ];
    let mut rows = Vec::new();
    for (name, operation, clients, connections) in phases {
        eprintln!("{}: {name} ...", system.label());
        let cpu_before = cluster.cpu_ms();
        let client_cpu_before = cluster::cpu_ms(std::process::id());
        let index_before = raft_index(&mut leader_client).await;
        let result =
            load::run_phase(connections, clients, operation, args.budget(), &workload).await?;
        if let Some(error) = &result.first_error {
            eprintln!(
                "{}: {name}: {} errors, first: {error}",
                system.label(),
                result.errors
            );
        }
        anyhow::ensure!(result.ops > 0, "{name}: no request succeeded");
        let cpu_ms = cpu_before
            .iter()
            .zip(cluster.cpu_ms())
            .map(|(before, after)| Some(after?.saturating_sub((*before)?)))
            .sum::<Option<u64>>();
        let client_cpu_ms = client_cpu_before
            .zip(cluster::cpu_ms(std::process::id()))
            .map(|(before, after)| after.saturating_sub(before));
        let raft_entries = match (index_before, raft_index(&mut leader_client).await) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let row = PhaseRow::new(
            name,
            clients,
            &result,
            cluster.rss_kib(),
            cpu_ms,
            client_cpu_ms,
            raft_entries,
        );
        eprintln!("{}: {}", system.label(), row.summary());
        rows.push(row);
    }
    let max_rss_kib = sampler.stop().await;
    drop(cluster);
    Ok(SystemReport {
        system: system.label().to_string(),
        phases: rows,
        max_rss_kib,
    })
}

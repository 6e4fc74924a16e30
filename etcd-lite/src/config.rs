//! Command-line configuration, with etcd's flag names and defaults.
//!
//! Entry point: [`Config`] (parsed by clap) and [`Config::validate`], which turns
//! it into a [`MemberConfig`] or a [`ConfigError`] naming the offending flag.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::storage::{Batching, EngineKind};

/// etcd-lite: a Raft-replicated key-value store that speaks the etcd v3 API.
#[derive(Debug, Clone, Parser)]
#[command(name = "etcd-lite", version, about, long_about = None)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: ${name}.etcd].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peer-url,… [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_enum, default_value_t = ClusterState::New)]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Number of committed entries kept in the log after a snapshot, for slow followers to catch up.
    #[arg(long, default_value_t = 5_000)]
    pub snapshot_catchup_entries: u64,
    /// Interpret 'auto-compaction-retention' as hours ('periodic') or as a revision count ('revision').
    #[arg(long, value_enum, default_value_t = CompactionMode::Periodic)]
    pub auto_compaction_mode: CompactionMode,
    /// Auto compaction retention: '1h', '30m', a bare number of hours (periodic), or revisions to keep (revision). 0 disables.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Storage engine for the data directory.
    #[arg(long, value_enum, default_value_t = EngineKind::Redb)]
    pub storage_engine: EngineKind,
    /// BackendBatchInterval is the maximum time before commit the backend transaction (a duration like 100ms; empty or 0 means 100ms).
    #[arg(long, default_value = "")]
    pub backend_batch_interval: String,
    /// BackendBatchLimit is the maximum operations before commit the backend transaction (0 means 10000).
    #[arg(long, default_value_t = 0)]
    pub backend_batch_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

/// Automatic compaction, as etcd's `--auto-compaction-*` flags ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep this much history by time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A validated member configuration.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<SocketAddr>,
    pub advertise_peer_urls: Vec<String>,
    /// Name → peer URLs of the initial members.
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    pub cluster_state: ClusterState,
    pub cluster_token: String,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub auto_compaction: AutoCompaction,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub storage_engine: EngineKind,
    /// When the disk engines commit the state machine's writes.
    pub backend_batching: Batching,
}

/// Splits a comma-separated URL list, checking each is `http://host:port`.
fn url_list(flag: &'static str, value: &str) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        return Err(invalid(flag, value, "expected at least one URL"));
    }
    for url in &urls {
        host_port(flag, url)?;
    }
    Ok(urls)
}

/// The `host:port` of an `http://host:port` URL.
fn host_port<'a>(flag: &'static str, url: &'a str) -> Result<&'a str, ConfigError> {
    if url.starts_with("https://") || url.starts_with("unixs://") {
        return Err(invalid(
            flag,
            url,
            "TLS URLs are not supported; use http://",
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid(flag, url, "URL must start with http://"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(invalid(flag, url, "URL must not have a path"));
    }
    let port = hostport.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(hostport),
        _ => Err(invalid(
            flag,
            url,
            "URL must have a port (http://host:port)",
        )),
    }
}

/// Listen URLs resolve to socket addresses (`localhost` means loopback).
fn listen_addrs(flag: &'static str, value: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut addrs = Vec::new();
    for url in url_list(flag, value)? {
        let hostport = host_port(flag, &url)?;
        let hostport = match hostport.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => hostport.to_string(),
        };
        let addr = hostport.parse::<SocketAddr>().map_err(|_| {
            invalid(
                flag,
                &url,
                "listen URLs must name an IP address or localhost",
            )
        })?;
        addrs.push(addr);
    }
    Ok(addrs)
}

/// Parses a Go duration, as etcd's duration flags take them: a sequence of
/// decimal numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, such
/// as `100ms`, `1.5s` or `1h30m`; a bare `0` is zero. Negative durations are
/// refused.
fn go_duration(value: &str) -> Option<Duration> {
    if value == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = value;
    let mut secs = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let unit_at = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..unit_at].parse().ok()?;
        rest = &rest[unit_at..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        secs += number * scale;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses a Go duration such as `1h` or `30m`, or a bare number of hours (etcd's periodic retention).
fn retention_duration(value: &str) -> Result<Duration, ConfigError> {
    if let Ok(hours) = value.parse::<u64>() {
        return Ok(Duration::from_secs(hours * 3600));
    }
    go_duration(value).ok_or_else(|| {
        invalid(
            "auto-compaction-retention",
            value,
            "expected hours (e.g. 1) or a duration like 30m, 1h",
        )
    })
}

/// etcd's `--backend-batch-interval`: a Go duration; empty or zero means the default.
fn backend_batch_interval(value: &str) -> Result<Duration, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Batching::default().interval);
    }
    match go_duration(value) {
        Some(d) if d.is_zero() => Ok(Batching::default().interval),
        Some(d) => Ok(d),
        None => Err(invalid(
            "backend-batch-interval",
            value,
            "expected a duration like 100ms or 1s",
        )),
    }
}

impl Config {
    pub fn validate(&self) -> Result<MemberConfig, ConfigError> {
        if self.name.is_empty() {
            return Err(invalid("name", &self.name, "must not be empty"));
        }
        let advertise_peer_urls = url_list(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        let initial_cluster_text = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, advertise_peer_urls.join(",")));
        let mut initial_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in initial_cluster_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (name, url) = item.split_once('=').ok_or_else(|| {
                invalid(
                    "initial-cluster",
                    &initial_cluster_text,
                    format!("{item:?} is not name=url"),
                )
            })?;
            host_port("initial-cluster", url)?;
            initial_cluster
                .entry(name.to_string())
                .or_default()
                .push(url.to_string());
        }
        match initial_cluster.get(&self.name) {
            None => {
                return Err(invalid(
                    "initial-cluster",
                    &initial_cluster_text,
                    format!("it has no member named {:?} (--name)", self.name),
                ))
            }
            Some(urls) if urls.iter().collect::<std::collections::BTreeSet<_>>()
                != advertise_peer_urls.iter().collect() =>
            {
                return Err(invalid(
                    "initial-cluster",
                    &initial_cluster_text,
                    format!(
                        "member {:?} has peer URLs {urls:?} but --initial-advertise-peer-urls is {advertise_peer_urls:?}",
                        self.name
                    ),
                ))
            }
            Some(_) => {}
        }
        if self.heartbeat_interval == 0 {
            return Err(invalid("heartbeat-interval", "0", "must be positive"));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(invalid(
                "election-timeout",
                &self.election_timeout.to_string(),
                format!(
                    "must be at least 5 times --heartbeat-interval ({})",
                    self.heartbeat_interval
                ),
            ));
        }
        if self.max_request_bytes == 0 {
            return Err(invalid("max-request-bytes", "0", "must be positive"));
        }
        if self.max_txn_ops == 0 {
            return Err(invalid("max-txn-ops", "0", "must be positive"));
        }
        if self.snapshot_count == 0 {
            return Err(invalid("snapshot-count", "0", "must be positive"));
        }
        let retention = self.auto_compaction_retention.trim();
        let auto_compaction = match self.auto_compaction_mode {
            _ if retention == "0" => AutoCompaction::Off,
            CompactionMode::Periodic => AutoCompaction::Periodic(retention_duration(retention)?),
            CompactionMode::Revision => AutoCompaction::Revision(
                retention
                    .parse::<i64>()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| {
                        invalid(
                            "auto-compaction-retention",
                            retention,
                            "expected a positive number of revisions",
                        )
                    })?,
            ),
        };
        Ok(MemberConfig {
            name: self.name.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name))),
            listen_client_urls: listen_addrs("listen-client-urls", &self.listen_client_urls)?,
            advertise_client_urls: url_list("advertise-client-urls", &self.advertise_client_urls)?,
            listen_peer_urls: listen_addrs("listen-peer-urls", &self.listen_peer_urls)?,
            advertise_peer_urls,
            initial_cluster,
            cluster_state: self.initial_cluster_state,
            cluster_token: self.initial_cluster_token.clone(),
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            auto_compaction,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            storage_engine: self.storage_engine,
            backend_batching: Batching {
                interval: backend_batch_interval(&self.backend_batch_interval)?,
                limit: match self.backend_batch_limit {
                    0 => Batching::default().limit,
                    limit => limit,
                },
            },
        })
    }
}

/// A member's id: etcd derives it from the peer URLs and the cluster token, so every
/// member computes the same ids from the same `--initial-cluster`, and a member added
/// later with MemberAdd gets the id it will compute for itself when it starts.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Fnv1a::new();
    for u in urls {
        h.write(u.as_bytes());
        h.write(b"\n");
    }
    h.write(token.as_bytes());
    // 0 means "no member" on the wire.
    h.finish().max(1)
}

/// The cluster id: derived from the sorted initial member ids.
pub fn cluster_id(member_ids: impl IntoIterator<Item = u64>) -> u64 {
    let mut ids: Vec<u64> = member_ids.into_iter().collect();
    ids.sort_unstable();
    let mut h = Fnv1a::new();
    for id in ids {
        h.write(&id.to_be_bytes());
    }
    h.finish().max(1)
}

/// FNV-1a 64: stable across builds and platforms (ids are persisted and compared).
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<MemberConfig, String> {
        let mut argv = vec!["etcd-lite"];
        argv.extend_from_slice(args);
        let cfg = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_etcd() {
        let cfg = parse(&[]).unwrap();
        assert_eq!(cfg.name, "default");
        assert_eq!(cfg.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(cfg.max_request_bytes, 1_572_864);
        assert_eq!(cfg.max_txn_ops, 128);
        assert_eq!(
            cfg.listen_client_urls,
            vec!["127.0.0.1:2379".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            cfg.initial_cluster["default"],
            vec!["http://localhost:2380".to_string()]
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let err = parse(&["--listen-client-urls", "127.0.0.1:2379"]).unwrap_err();
        assert!(err.contains("--listen-client-urls"), "{err}");
        let err = parse(&["--initial-cluster", "a=http://127.0.0.1:1"]).unwrap_err();
        assert!(
            err.contains("--initial-cluster") && err.contains("default"),
            "{err}"
        );
        let err = parse(&["--max-request-bytes", "lots"]).unwrap_err();
        assert!(err.contains("--max-request-bytes"), "{err}");
        let err = parse(&["--initial-cluster-state", "old"]).unwrap_err();
        assert!(err.contains("--initial-cluster-state"), "{err}");
        let err = parse(&["--election-timeout", "100"]).unwrap_err();
        assert!(err.contains("--election-timeout"), "{err}");
        let err = parse(&["--auto-compaction-retention", "1x"]).unwrap_err();
        assert!(err.contains("--auto-compaction-retention"), "{err}");
        let err = parse(&["--listen-peer-urls", "https://127.0.0.1:2380"]).unwrap_err();
        assert!(err.contains("TLS"), "{err}");
    }

    #[test]
    fn auto_compaction_forms() {
        let c = parse(&["--auto-compaction-retention", "1h"]).unwrap();
        assert_eq!(
            c.auto_compaction,
            AutoCompaction::Periodic(Duration::from_secs(3600))
        );
        let c = parse(&["--auto-compaction-retention", "2"]).unwrap();
        assert_eq!(
            c.auto_compaction,
            AutoCompaction::Periodic(Duration::from_secs(7200))
        );
        let c = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
        ])
        .unwrap();
        assert_eq!(c.auto_compaction, AutoCompaction::Revision(1000));
        let c = parse(&["--auto-compaction-retention", "1h30m"]).unwrap();
        assert_eq!(
            c.auto_compaction,
            AutoCompaction::Periodic(Duration::from_secs(5400))
        );
    }

    #[test]
    fn backend_batching_takes_etcds_flags_and_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.backend_batching, Batching::default());
        assert_eq!(c.backend_batching.interval, Duration::from_millis(100));
        assert_eq!(c.backend_batching.limit, 10_000);
        let c = parse(&[
            "--backend-batch-interval",
            "1.5s",
            "--backend-batch-limit",
            "500",
        ])
        .unwrap();
        assert_eq!(c.backend_batching.interval, Duration::from_millis(1500));
        assert_eq!(c.backend_batching.limit, 500);
        let c = parse(&["--backend-batch-interval", "250us"]).unwrap();
        assert_eq!(c.backend_batching.interval, Duration::from_micros(250));
        let c = parse(&["--backend-batch-interval=0", "--backend-batch-limit=0"]).unwrap();
        assert_eq!(
            c.backend_batching,
            Batching::default(),
            "0 means the default"
        );
        for bad in ["100", "10 ms", "-1s", "1d", "ms", "1.2.3s"] {
            let err = parse(&[&format!("--backend-batch-interval={bad}")]).unwrap_err();
            assert!(
                err.contains("--backend-batch-interval") && err.contains("100ms"),
                "{bad}: {err}"
            );
        }
        let err = parse(&["--backend-batch-limit=-5"]).unwrap_err();
        assert!(err.contains("--backend-batch-limit"), "{err}");
    }

    #[test]
    fn member_ids_are_stable_and_order_independent() {
        let a = member_id(
            &[
                "http://127.0.0.1:2380".into(),
                "http://10.0.0.1:2380".into(),
            ],
            "t",
        );
        let b = member_id(
            &[
                "http://10.0.0.1:2380".into(),
                "http://127.0.0.1:2380".into(),
            ],
            "t",
        );
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "t"));
        assert_ne!(
            a,
            member_id(
                &[
                    "http://127.0.0.1:2380".into(),
                    "http://10.0.0.1:2380".into()
                ],
                "u"
            )
        );
    }
}

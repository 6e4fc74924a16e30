//! A running etcd-lite member: opens the data directory, starts Raft, serves the
//! etcd API on the client listeners and the peer protocol on the peer listeners,
//! and runs the background loops (lease expiry, watch catch-up, publishing its
//! attributes, auto-compaction).
//!
//! Entry point: [`Member::start`]; [`run`](crate::run) wraps it for the binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config as RaftConfig, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::config::{cluster_id, member_id, AutoCompaction, ClusterState, MemberConfig};
use crate::lessor::Lessor;
use crate::mvcc::{Command, MemberAttributes};
use crate::raft::{LogStore, MemberNode, PeerNetwork, PeerService, Raft, RaftNode, StateMachine};
use crate::server::EtcdServer;
use crate::storage::{self, EngineKind};
use crate::watch::WatchHub;

/// How often the leader looks for expired leases (etcd checks every 500 ms).
const LEASE_TICK: Duration = Duration::from_millis(500);
/// How often watchers that fell behind are caught up from history.
const WATCH_CATCH_UP_TICK: Duration = Duration::from_millis(10);
/// How long a stopping member waits for in-flight client requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How often the revision-mode compactor runs (etcd: every 5 minutes).
const REVISION_COMPACTION_TICK: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("data directory {path} was created with --storage-engine {found}, not {wanted}")]
    EngineMismatch {
        path: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error(transparent)]
    Engine(#[from] storage::EngineError),
    #[error("opening Raft storage: {0}")]
    RaftStorage(Box<openraft::StorageError<u64>>),
    #[error("invalid Raft configuration: {0}")]
    RaftConfig(String),
    #[error("starting Raft: {0}")]
    Raft(String),
}

impl From<openraft::StorageError<u64>> for StartError {
    fn from(e: openraft::StorageError<u64>) -> Self {
        StartError::RaftStorage(Box::new(e))
    }
}

/// The sockets a member serves on (bound by the caller, so tests can use port 0).
pub struct Listeners {
    pub client: Vec<TcpListener>,
    pub peer: Vec<TcpListener>,
}

pub struct Member {
    pub server: Arc<EtcdServer>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// The engine's directory inside the data dir; refuses a data dir made by another engine.
fn engine_dir(data_dir: &Path, kind: EngineKind) -> Result<std::path::PathBuf, StartError> {
    let member = data_dir.join("member");
    for other in [EngineKind::Redb, EngineKind::Sled] {
        if other != kind && member.join(other.name()).exists() {
            return Err(StartError::EngineMismatch {
                path: data_dir.display().to_string(),
                found: other.name(),
                wanted: kind.name(),
            });
        }
    }
    let dir = member.join(kind.name());
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}

impl Member {
    pub async fn start(cfg: MemberConfig, listeners: Listeners) -> Result<Member, StartError> {
        let dir = engine_dir(&cfg.data_dir, cfg.storage_engine)?;
        // The Raft log is an append-only WAL file beside the keyspace's engine.
        let wal_dir = cfg.data_dir.join("member").join("wal");
        if cfg.storage_engine == EngineKind::Memory {
            // The memory engine forgets the keyspace on exit; a log kept across
            // restarts would not match it, so the log starts afresh too.
            match std::fs::remove_dir_all(&wal_dir) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StartError::DataDir {
                        path: wal_dir.display().to_string(),
                        source,
                    })
                }
                _ => {}
            }
        }
        let engine = storage::open(cfg.storage_engine, &dir, Some(cfg.backend_batching))?;
        let hub = Arc::new(WatchHub::new());
        let log_store = LogStore::open(&wal_dir)?;
        let sm = StateMachine::open(
            engine.clone(),
            &cfg.data_dir.join("member").join("snap"),
            hub,
        )?;
        let shared = sm.shared();

        let id = member_id(&cfg.advertise_peer_urls, &cfg.cluster_token);
        let initial: BTreeMap<u64, MemberNode> = cfg
            .initial_cluster
            .iter()
            .map(|(name, urls)| {
                (
                    member_id(urls, &cfg.cluster_token),
                    MemberNode {
                        name: name.clone(),
                        peer_urls: urls.clone(),
                    },
                )
            })
            .collect();
        let cluster = cluster_id(initial.keys().copied());

        let heartbeat = cfg.heartbeat_interval.as_millis() as u64;
        let election = cfg.election_timeout.as_millis() as u64;
        let raft_config = RaftConfig {
            cluster_name: cfg.cluster_token.clone(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            install_snapshot_timeout: election.max(2000) * 5,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
            max_in_snapshot_log_to_keep: cfg.snapshot_catchup_entries,
            max_payload_entries: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::RaftConfig(e.to_string()))?;
        let network = PeerNetwork::new();
        let raft = Raft::new(id, Arc::new(raft_config), network.clone(), log_store, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            match cfg.cluster_state {
                ClusterState::New => {
                    // Every initial member proposes the same membership; openraft accepts that.
                    if let Err(e) = raft.initialize(initial.clone()).await {
                        tracing::debug!(error = %e, "cluster already initialized by a peer");
                    }
                    tracing::info!(
                        member = format!("{id:x}"),
                        cluster = format!("{cluster:x}"),
                        members = initial.len(),
                        "bootstrapping a new cluster"
                    );
                }
                ClusterState::Existing => {
                    tracing::info!(
                        member = format!("{id:x}"),
                        "joining an existing cluster; waiting for the leader"
                    );
                }
            }
        } else {
            tracing::info!(
                member = format!("{id:x}"),
                "restarting from the data directory"
            );
        }

        // Request timeout as etcd: 5 s plus two election timeouts.
        let request_timeout = Duration::from_secs(5) + cfg.election_timeout * 2;
        let lessor = Arc::new(Lessor::new());
        let node = RaftNode::new(id, raft, shared.clone(), network, request_timeout, lessor);
        let server = EtcdServer::new(
            node.clone(),
            id,
            cluster,
            cfg.max_request_bytes,
            cfg.max_txn_ops,
            cfg.cluster_token.clone(),
        );

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for listener in listeners.peer {
            let router = PeerService::routes(node.clone(), shutdown_rx.clone());
            tasks.spawn(serve(router, listener, shutdown_rx.clone()));
        }
        tasks.spawn(lease_loop(server.clone(), shutdown_rx.clone()));
        tasks.spawn(watch_catch_up_loop(server.clone(), shutdown_rx.clone()));
        let publish = publish_loop(
            server.clone(),
            MemberAttributes {
                id,
                name: cfg.name.clone(),
                client_urls: cfg.advertise_client_urls.clone(),
            },
            shutdown_rx.clone(),
        );
        // As etcd: clients are served once this member has published its name and
        // client URLs, so whoever reaches it finds it complete in the member list.
        let client_router = server.client_router();
        let client_shutdown = shutdown_rx.clone();
        tasks.spawn(async move {
            if publish.await {
                let serving = listeners.client.into_iter().map(|listener| {
                    serve(client_router.clone(), listener, client_shutdown.clone())
                });
                futures::future::join_all(serving).await;
            }
        });
        if cfg.auto_compaction != AutoCompaction::Off {
            tasks.spawn(compaction_loop(
                server.clone(),
                cfg.auto_compaction,
                shutdown_rx,
            ));
        }
        Ok(Member {
            server,
            shutdown,
            tasks,
        })
    }

    pub fn id(&self) -> u64 {
        self.server.member_id
    }

    pub fn node(&self) -> &Arc<RaftNode> {
        &self.server.node
    }

    /// Stops serving, stops Raft and makes everything durable. Clients get
    /// [`SHUTDOWN_GRACE`] to finish their requests; long-lived streams (watches,
    /// keep-alives) are then cut, as etcd does when it stops.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        if let Err(e) = self.server.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.server.sm().engine().flush() {
            tracing::error!(error = %e, "flushing storage at shutdown");
        }
        tracing::info!(member = format!("{:x}", self.server.member_id), "stopped");
    }
}

/// Completes once the member starts to stop.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve(
    router: tonic::service::Routes,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    // The builder's `tcp_nodelay` only applies to sockets tonic binds itself: set it
    // on accepted ones, or Nagle plus delayed ACKs stall small replies by ~40 ms.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "setting TCP_NODELAY");
            }
        })
    });
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_routes(router)
        .serve_with_incoming_shutdown(incoming, stopped(shutdown))
        .await;
    if let Err(e) = result {
        tracing::error!(?addr, error = %e, "gRPC server failed");
    }
}

/// Calls `step` every `period` until the member stops (a late tick is delayed, not bunched).
async fn every(period: Duration, shutdown: watch::Receiver<bool>, mut step: impl FnMut()) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => step(),
        }
    }
}

/// On the leader: revoke expired leases through Raft.
async fn lease_loop(server: Arc<EtcdServer>, shutdown: watch::Receiver<bool>) {
    every(LEASE_TICK, shutdown, || {
        let status = server.node.status();
        let leader_term = status.is_leader.then_some(status.term);
        let leases = server.sm().store().leases();
        let expired = server
            .node
            .lessor()
            .tick(&leases, leader_term, tokio::time::Instant::now());
        for id in expired {
            let server = server.clone();
            tokio::spawn(async move {
                tracing::info!(lease = format!("{id:x}"), "lease expired; revoking");
                if let Err(e) = server.propose(Command::LeaseRevoke { id }).await {
                    tracing::warn!(lease = format!("{id:x}"), error = %e, "revoking expired lease");
                    server.node.lessor().revoke_failed(id);
                }
            });
        }
    })
    .await
}

/// Replays history to watchers that fell behind.
async fn watch_catch_up_loop(server: Arc<EtcdServer>, shutdown: watch::Receiver<bool>) {
    every(WATCH_CATCH_UP_TICK, shutdown, || {
        let hub = server.sm().hub();
        if hub.has_unsynced() {
            let store = server.sm().store();
            hub.catch_up(&store);
        }
    })
    .await
}

/// Publishes this member's name and client URLs through Raft (etcd's `publish`),
/// unless they are already; returns false if the member stopped first.
async fn publish_loop(
    server: Arc<EtcdServer>,
    attrs: MemberAttributes,
    shutdown: watch::Receiver<bool>,
) -> bool {
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        let published = server
            .sm()
            .store()
            .members()
            .into_iter()
            .any(|m| m == attrs);
        if published {
            return true;
        }
        tokio::select! {
            _ = &mut stop => return false,
            result = server.propose(Command::PublishMember(attrs.clone())) => match result {
                Ok(_) => {
                    tracing::info!(name = %attrs.name, client_urls = ?attrs.client_urls, "published member attributes");
                    return true;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            },
        }
        tokio::select! {
            _ = &mut stop => return false,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// etcd's auto-compaction: periodic (keep a time window) or revision (keep N revisions); leader only.
async fn compaction_loop(
    server: Arc<EtcdServer>,
    mode: AutoCompaction,
    shutdown: watch::Receiver<bool>,
) {
    let (period, window) = match mode {
        AutoCompaction::Off => return,
        AutoCompaction::Periodic(retention) => {
            ((retention / 10).max(Duration::from_secs(1)), 10usize)
        }
        AutoCompaction::Revision(_) => (REVISION_COMPACTION_TICK, 0),
    };
    let mut tick = tokio::time::interval(period);
    // Revisions sampled every `period`; the oldest is `retention` old once the window is full.
    let mut samples = std::collections::VecDeque::new();
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let (current, compacted) = {
            let store = server.sm().store();
            (store.revision(), store.compact_revision())
        };
        let target = match mode {
            AutoCompaction::Revision(keep) => current - keep,
            _ => {
                samples.push_back(current);
                if samples.len() <= window {
                    continue;
                }
                samples.pop_front().unwrap_or(0)
            }
        };
        if target <= compacted || target <= 0 || !server.node.status().is_leader {
            continue;
        }
        match server.propose(Command::Compact { revision: target }).await {
            Ok(_) => tracing::info!(revision = target, "auto-compacted"),
            Err(e) => tracing::warn!(revision = target, error = %e, "auto-compaction"),
        }
    }
}

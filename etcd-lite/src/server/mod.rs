//! The etcd v3 gRPC API, served from a member's [`RaftNode`] and [`Store`].
//!
//! Entry point: [`EtcdServer`] (the state every service shares) and
//! [`EtcdServer::client_router`]. One file per etcd service: [`kv`], [`watch`],
//! [`lease`], [`cluster`], [`maintenance`]; [`errors`] holds the one table that
//! maps errors to etcd's gRPC codes and messages.
//!
//! [`Store`]: crate::mvcc::Store

pub mod cluster;
pub mod errors;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbMember, PbResponseHeader,
    PbWatchServer,
};
use prost::Message;
use tonic::service::Routes;

use self::errors::ApiError;
use crate::mvcc::{Applied, AppliedBody, Command, Store};
use crate::raft::{RaftNode, SmShared};

/// gRPC framing and envelope overhead allowed above `--max-request-bytes` (etcd's `grpcOverheadBytes`).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// What every etcd service of one member shares.
pub struct EtcdServer {
    pub node: Arc<RaftNode>,
    pub member_id: u64,
    pub cluster_id: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub cluster_token: String,
    /// Watch streams opened so far (a stream's id in the watch hub).
    watch_streams: AtomicU64,
}

impl EtcdServer {
    pub fn new(
        node: Arc<RaftNode>,
        member_id: u64,
        cluster_id: u64,
        max_request_bytes: usize,
        max_txn_ops: usize,
        cluster_token: String,
    ) -> Arc<Self> {
        Arc::new(EtcdServer {
            node,
            member_id,
            cluster_id,
            max_request_bytes,
            max_txn_ops,
            cluster_token,
            watch_streams: AtomicU64::new(0),
        })
    }

    pub fn sm(&self) -> &Arc<SmShared> {
        self.node.state_machine()
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> PbResponseHeader {
        PbResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.node.raft.metrics().borrow().current_term,
        }
    }

    /// A header at the store's current revision.
    pub fn current_header(&self) -> PbResponseHeader {
        let revision = self.sm().store().revision();
        self.header(revision)
    }

    pub(crate) fn next_watch_stream(&self) -> u64 {
        self.watch_streams.fetch_add(1, Ordering::Relaxed)
    }

    /// Refuses requests bigger than `--max-request-bytes`, as etcd does before proposing.
    pub fn check_size(&self, req: &impl Message) -> Result<(), ApiError> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(ApiError::RequestTooLarge);
        }
        Ok(())
    }

    /// Proposes a command; a deterministic refusal becomes its error.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, ApiError> {
        let applied = self.node.propose(cmd).await?;
        if let AppliedBody::Rejected(e) = &applied.body {
            return Err(ApiError::Mvcc(e.clone()));
        }
        Ok(applied)
    }

    /// Waits until a linearizable read may be served here, unless `serializable`.
    pub async fn read_barrier(&self, serializable: bool) -> Result<(), ApiError> {
        if !serializable {
            self.node.read_index().await?;
        }
        Ok(())
    }

    /// The cluster's members: Raft membership plus the attributes each member published.
    pub fn members(&self) -> Vec<PbMember> {
        let status = self.node.status();
        let published = self.sm().store().members();
        status
            .members
            .iter()
            .map(|(id, node)| {
                let attrs = published.iter().find(|m| m.id == *id);
                PbMember {
                    id: *id,
                    name: attrs
                        .map(|a| a.name.clone())
                        .unwrap_or_else(|| node.name.clone()),
                    peer_ur_ls: node.peer_urls.clone(),
                    client_ur_ls: attrs.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !status.voters.contains(id),
                }
            })
            .collect()
    }

    /// Every etcd service, ready to be served on the client URLs.
    pub fn client_router(self: &Arc<Self>) -> Routes {
        let max = self.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let mut routes = Routes::default();
        routes = routes
            .add_service(
                PbKvServer::new(kv::KvService::new(self.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                PbWatchServer::new(watch::WatchService::new(self.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                PbLeaseServer::new(lease::LeaseService::new(self.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                PbClusterServer::new(cluster::ClusterService::new(
                    self.clone(),
                    self.cluster_token.clone(),
                ))
                .max_decoding_message_size(max),
            )
            .add_service(
                PbMaintenanceServer::new(maintenance::MaintenanceService::new(self.clone()))
                    .max_decoding_message_size(max),
            );
        routes
    }
}

/// Reads under the store's read lock.
pub(crate) fn with_store<T>(server: &EtcdServer, f: impl FnOnce(&Store) -> T) -> T {
    let store = server.sm().store();
    f(&store)
}

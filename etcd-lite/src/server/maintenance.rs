//! The Maintenance service: Status, Defragment, HashKV and the (empty) alarm
//! list. Snapshot and Hash (a bbolt file and its hash), MoveLeader and
//! Downgrade are refused with a clear "not implemented" status.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse,
    PbMaintenanceService, PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest,
    PbSnapshotResponse, PbStatusRequest, PbStatusResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::errors::ApiError;
use super::EtcdServer;

/// The etcd API version this server speaks (what `etcdctl endpoint status` shows).
pub const SERVER_VERSION: &str = "3.4.0";

/// `AlarmRequest.action`: GET.
const ALARM_GET: i32 = 0;

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        MaintenanceService { server }
    }
}

/// Runs `work` on the blocking pool: it reads or rewrites the whole store.
async fn off_the_workers<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("{what}: {e}")))
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(
        &self,
        req: Request<PbAlarmRequest>,
    ) -> Result<Response<PbAlarmResponse>, Status> {
        // etcd-lite raises no alarms (it has no space quota), so the list is always empty.
        if req.into_inner().action != ALARM_GET {
            return Err(ApiError::Unimplemented("alarm activation").into());
        }
        Ok(Response::new(PbAlarmResponse {
            header: Some(self.server.current_header()),
            alarms: vec![],
        }))
    }

    async fn status(
        &self,
        _req: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        let status = self.server.node.status();
        let db_size = self.server.sm().engine().size_bytes() as i64;
        Ok(Response::new(PbStatusResponse {
            header: Some(self.server.current_header()),
            version: SERVER_VERSION.to_string(),
            db_size,
            leader: status.leader.unwrap_or(0),
            raft_index: status.last_log_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: vec![],
            db_size_in_use: db_size,
            is_learner: !status.voters.contains(&self.server.member_id),
            ..Default::default()
        }))
    }

    /// Defragments this member's storage engine (not the cluster's, as in etcd).
    async fn defragment(
        &self,
        _req: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        let engine = self.server.sm().engine().clone();
        let started = std::time::Instant::now();
        let before = engine.size_bytes();
        off_the_workers("defragmenting", move || engine.defragment())
            .await?
            .map_err(ApiError::from)?;
        let after = self.server.sm().engine().size_bytes();
        tracing::info!(
            before_bytes = before,
            after_bytes = after,
            took = ?started.elapsed(),
            "defragmented the storage engine"
        );
        Ok(Response::new(PbDefragmentResponse {
            header: Some(self.server.current_header()),
        }))
    }

    async fn hash(&self, _req: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        Err(ApiError::Unimplemented("Hash").into())
    }

    /// This member's hash of its keyspace history (`etcdctl endpoint hashkv`),
    /// computed off the async workers: it reads every stored revision.
    async fn hash_kv(
        &self,
        req: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        let rev = req.into_inner().revision;
        let sm = self.server.sm().clone();
        let hashed = off_the_workers("hashing the keyspace", move || sm.store().hash_kv(rev))
            .await?
            .map_err(ApiError::from)?;
        Ok(Response::new(PbHashKvResponse {
            header: Some(self.server.header(hashed.revision)),
            hash: hashed.hash,
            compact_revision: hashed.compact_revision,
            hash_revision: hashed.hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _req: Request<PbSnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        Err(ApiError::Unimplemented("Snapshot (etcdctl snapshot save)").into())
    }

    async fn move_leader(
        &self,
        _req: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(ApiError::Unimplemented("MoveLeader").into())
    }

    async fn downgrade(
        &self,
        _req: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(ApiError::Unimplemented("Downgrade").into())
    }
}

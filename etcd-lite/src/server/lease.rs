//! The Lease service: Grant and Revoke go through Raft; KeepAlive and TimeToLive
//! are answered by the leader's [`Lessor`](crate::lessor::Lessor), forwarded if need be.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse,
    PbLeaseLeasesRequest, PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse,
    PbLeaseService, PbLeaseStatus, PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::errors::ApiError;
use super::{with_store, EtcdServer};
use crate::mvcc::{AppliedBody, Command, MvccError, MAX_LEASE_TTL};

pub struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        LeaseService { server }
    }

    /// etcd's minimum TTL: 1.5 election timeouts, rounded up to whole seconds.
    fn min_ttl(&self) -> i64 {
        let election = self.server.node.raft.config().election_timeout_min;
        ((election * 3 / 2) as i64 + 999) / 1000
    }
}

/// A fresh lease id: positive and non-zero (etcd's ids are positive int64s).
fn new_lease_id() -> i64 {
    loop {
        let id = (rand::random::<u64>() >> 1) as i64;
        if id != 0 {
            return id;
        }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let req = req.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(ApiError::from(MvccError::LeaseTtlTooLarge).into());
        }
        let id = if req.id == 0 { new_lease_id() } else { req.id };
        let ttl = req.ttl.max(self.min_ttl());
        let applied = self.server.propose(Command::LeaseGrant { id, ttl }).await?;
        let AppliedBody::LeaseGranted { id, ttl } = applied.body else {
            return Err(ApiError::InvalidArgument(format!(
                "unexpected grant result {:?}",
                applied.body
            ))
            .into());
        };
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(self.server.header(applied.revision)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let applied = self
            .server
            .propose(Command::LeaseRevoke {
                id: req.into_inner().id,
            })
            .await?;
        Ok(Response::new(PbLeaseRevokeResponse {
            header: Some(self.server.header(applied.revision)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                let resp = match server.node.lease_keep_alive(req.id).await {
                    Ok(ttl) => Ok(PbLeaseKeepAliveResponse {
                        header: Some(server.current_header()),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(ApiError::from(e))),
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let ttl = self
            .server
            .node
            .lease_time_to_live(req.id)
            .await
            .map_err(ApiError::from)?;
        let lease = with_store(&self.server, |store| store.lease(req.id));
        let (granted_ttl, keys) = match (&lease, ttl) {
            (Some(l), ttl) if ttl >= 0 => (l.ttl, if req.keys { l.keys.clone() } else { vec![] }),
            _ => (0, vec![]),
        };
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: Some(self.server.current_header()),
            id: req.id,
            ttl: if lease.is_some() { ttl } else { -1 },
            granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _req: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let leases = with_store(&self.server, |store| store.leases());
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(self.server.current_header()),
            leases: leases
                .into_iter()
                .map(|l| PbLeaseStatus { id: l.id })
                .collect(),
        }))
    }
}

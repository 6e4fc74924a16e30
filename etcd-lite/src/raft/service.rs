//! The peer gRPC service: receives openraft's RPCs from other members, and the
//! proposals, read-index requests and membership changes they forward to us as leader.
//!
//! Entry point: [`PeerService::routes`].

use std::sync::Arc;

use ferrokube_proto::raft::leader_leases_server::{LeaderLeases, LeaderLeasesServer};
use ferrokube_proto::raft::raft_peer_server::{RaftPeer, RaftPeerServer};
use ferrokube_proto::raft::{
    ForwardedProposals, LeaseRequest, LeaseTtlResponse, MembershipRequest, MembershipResponse,
    ProposalResults, RaftPayload, ReadIndexRequest, ReadIndexResponse,
};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::forward::serve_stream;
use super::network::MAX_PEER_MESSAGE;
use super::node::{propose_error_status, LeaseCall};
use super::{decode, encode, MembershipChange, RaftNode};
use crate::member::stopped;

#[derive(Clone)]
pub struct PeerService {
    node: Arc<RaftNode>,
    /// Turns true when this member starts to stop. The peers' long-lived
    /// streams end then: they would otherwise keep the stopped member's store
    /// open for as long as the peer keeps them.
    stopping: watch::Receiver<bool>,
}

impl PeerService {
    /// The peer services of `node`, which stops when `stopping` turns true.
    pub fn routes(node: Arc<RaftNode>, stopping: watch::Receiver<bool>) -> Routes {
        let service = PeerService { node, stopping };
        Routes::new(
            RaftPeerServer::new(service.clone())
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        )
        .add_service(LeaderLeasesServer::new(service))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.node.request_timeout()
    }
}

fn bad_payload(e: postcard::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type AppendEntriesStream = BoxStream<'static, Result<RaftPayload, Status>>;

    /// Answers each request on the stream in turn, in the stream's own task.
    async fn append_entries(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::AppendEntriesStream>, Status> {
        let node = Arc::clone(&self.node);
        let requests = req.into_inner().take_until(stopped(self.stopping.clone()));
        let responses = requests.then(move |request| {
            let node = Arc::clone(&node);
            async move {
                let rpc = decode(&request?.data).map_err(bad_payload)?;
                let result = node.raft.append_entries(rpc).await;
                Ok(RaftPayload {
                    data: encode(&result),
                })
            }
        });
        Ok(Response::new(responses.boxed()))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad_payload)?;
        let result = self.node.raft.vote(rpc).await;
        Ok(Response::new(RaftPayload {
            data: encode(&result),
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad_payload)?;
        let result = self.node.raft.install_snapshot(rpc).await;
        Ok(Response::new(RaftPayload {
            data: encode(&result),
        }))
    }

    type ProposeStream = ReceiverStream<Result<ProposalResults, Status>>;

    async fn propose(
        &self,
        req: Request<Streaming<ForwardedProposals>>,
    ) -> Result<Response<Self::ProposeStream>, Status> {
        Ok(Response::new(serve_stream(
            Arc::clone(&self.node),
            req.into_inner(),
            stopped(self.stopping.clone()),
        )))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self
            .node
            .leader_read_index(self.deadline())
            .await
            .map_err(|e| propose_error_status(&e))?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn change_membership(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let change: MembershipChange = decode(&req.into_inner().change).map_err(bad_payload)?;
        self.node
            .change_membership_local(change, self.deadline())
            .await
            .map_err(|e| propose_error_status(&e))?;
        Ok(Response::new(MembershipResponse {}))
    }
}

#[tonic::async_trait]
impl LeaderLeases for PeerService {
    async fn keep_alive(
        &self,
        req: Request<LeaseRequest>,
    ) -> Result<Response<LeaseTtlResponse>, Status> {
        let ttl = self
            .node
            .lease_call_local(req.into_inner().id, LeaseCall::KeepAlive, self.deadline())
            .await
            .map_err(|e| propose_error_status(&e))?;
        Ok(Response::new(LeaseTtlResponse { ttl }))
    }

    async fn time_to_live(
        &self,
        req: Request<LeaseRequest>,
    ) -> Result<Response<LeaseTtlResponse>, Status> {
        let ttl = self
            .node
            .lease_call_local(req.into_inner().id, LeaseCall::TimeToLive, self.deadline())
            .await
            .map_err(|e| propose_error_status(&e))?;
        Ok(Response::new(LeaseTtlResponse { ttl }))
    }
}

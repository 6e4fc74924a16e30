//! The Cluster service: MemberList, MemberAdd and MemberRemove as Raft membership changes.

use std::sync::Arc;

use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest,
    PbMemberListResponse, PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest,
    PbMemberRemoveResponse, PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::errors::ApiError;
use super::EtcdServer;
use crate::config::member_id;
use crate::raft::{MemberNode, MembershipChange};

pub struct ClusterService {
    server: Arc<EtcdServer>,
    cluster_token: String,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>, cluster_token: String) -> Self {
        ClusterService {
            server,
            cluster_token,
        }
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(
        &self,
        req: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        let req = req.into_inner();
        if req.is_learner {
            return Err(ApiError::Unimplemented("learner members").into());
        }
        if req.peer_ur_ls.is_empty() {
            return Err(
                ApiError::InvalidArgument("member add needs at least one peer URL".into()).into(),
            );
        }
        // The same id the new member computes for itself from its flags.
        let id = member_id(&req.peer_ur_ls, &self.cluster_token);
        let node = MemberNode {
            name: String::new(),
            peer_urls: req.peer_ur_ls.clone(),
        };
        self.server
            .node
            .change_membership(MembershipChange::Add { id, node })
            .await
            .map_err(ApiError::from)?;
        tracing::info!(member = format!("{id:x}"), peer_urls = ?req.peer_ur_ls, "added member");
        Ok(Response::new(PbMemberAddResponse {
            header: Some(self.server.current_header()),
            member: Some(PbMember {
                id,
                peer_ur_ls: req.peer_ur_ls,
                ..Default::default()
            }),
            members: self.server.members(),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        self.server
            .node
            .change_membership(MembershipChange::Remove { id })
            .await
            .map_err(ApiError::from)?;
        tracing::info!(member = format!("{id:x}"), "removed member");
        Ok(Response::new(PbMemberRemoveResponse {
            header: Some(self.server.current_header()),
            members: self.server.members(),
        }))
    }

    async fn member_update(
        &self,
        _req: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(ApiError::Unimplemented("MemberUpdate (changing a member's peer URLs)").into())
    }

    async fn member_list(
        &self,
        req: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.server.read_barrier(false).await?;
        }
        Ok(Response::new(PbMemberListResponse {
            header: Some(self.server.current_header()),
            members: self.server.members(),
        }))
    }

    async fn member_promote(
        &self,
        _req: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(ApiError::Unimplemented("learner members (MemberPromote)").into())
    }
}

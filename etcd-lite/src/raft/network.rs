//! The Raft network: openraft's RPCs carried over gRPC (`proto/raft.proto`) to
//! the peer URL of the target member.
//!
//! Entry point: [`PeerNetwork`], openraft's network factory. Connections are
//! lazy and shared per member; a member that does not answer is reported
//! `Unreachable` so openraft backs off instead of spinning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrokube_proto::raft::raft_peer_client::RaftPeerClient;
use ferrokube_proto::raft::RaftPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::{decode, encode, MemberNode, TypeConfig};

/// Largest message a member sends or accepts from a peer (snapshot chunks, entry batches).
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// Opens a lazily-connected gRPC channel to a peer URL.
pub(crate) fn peer_channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}

pub(crate) fn peer_client(channel: Channel) -> RaftPeerClient<Channel> {
    RaftPeerClient::new(channel)
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE)
}

/// Creates [`PeerConnection`]s, reusing one channel per member.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<(u64, String), Channel>>>,
}

impl PeerNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// The channel to `node` (its first peer URL).
    pub(crate) fn channel(&self, id: u64, node: &MemberNode) -> Result<Channel, String> {
        let url = node
            .peer_urls
            .first()
            .ok_or_else(|| format!("member {id:x} has no peer URL"))?;
        let mut channels = self.channels.lock().expect("peer channels lock");
        if let Some(ch) = channels.get(&(id, url.clone())) {
            return Ok(ch.clone());
        }
        let ch = peer_channel(url).map_err(|e| format!("peer URL {url}: {e}"))?;
        channels.insert((id, url.clone()), ch.clone());
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConnection {
        PeerConnection {
            target,
            node: node.clone(),
            channel: self.channel(target, node),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    target: u64,
    node: MemberNode,
    channel: Result<Channel, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerError(String);

type RpcResult<T, E> = Result<T, RPCError<u64, MemberNode, RaftError<u64, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        kind: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self
            .channel
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&PeerError(e))))?;
        let mut client = peer_client(channel);
        let payload = RaftPayload { data: encode(req) };
        let fut = async {
            match kind {
                Rpc::AppendEntries => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let resp = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(_) => {
                let e = PeerError(format!("{kind:?} to member {:x} timed out", self.target));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(status)) => {
                let e = PeerError(format!(
                    "{kind:?} to member {:x}: {}",
                    self.target,
                    status.message()
                ));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        RPCError::Unreachable(Unreachable::new(&e))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
            Ok(Ok(resp)) => resp.into_inner(),
        };
        let result: Result<Resp, RaftError<u64, E>> =
            decode(&resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

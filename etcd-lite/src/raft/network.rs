//! The Raft network: openraft's RPCs carried over gRPC (`proto/raft.proto`) to
//! the peer URL of the target member.
//!
//! Entry point: [`PeerNetwork`], openraft's network factory. Connections are
//! lazy and shared per member; a member that does not answer is reported
//! `Unreachable` so openraft backs off instead of spinning.
//!
//! AppendEntries, the call on every write's path, travels on one long-lived
//! stream per replication session rather than as a call of its own: a message
//! on an open stream is one HTTP/2 frame each way, where a unary call also
//! opens and closes an HTTP/2 stream, with headers and trailers, and costs the
//! sender three socket writes instead of one.

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
use tokio::sync::mpsc;
use tokio::time::error::Elapsed;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

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
            entries: None,
        }
    }
}

/// openraft's view of one peer: the channel to it, and the AppendEntries
/// stream of this replication session once one is open.
pub struct PeerConnection {
    target: u64,
    node: MemberNode,
    channel: Result<Channel, String>,
    entries: Option<EntryStream>,
}

/// An open AppendEntries stream: each request sent gets one response, in order.
///
/// A call that does not get its response (a timeout, an error, or openraft
/// dropping the call) also drops the stream, so a late response can never be
/// taken for the next call's; the next call opens a new stream.
struct EntryStream {
    requests: mpsc::Sender<RaftPayload>,
    responses: Streaming<RaftPayload>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerError(String);

type RpcResult<T, E> = Result<T, RPCError<u64, MemberNode, RaftError<u64, E>>>;

impl PeerConnection {
    fn client(&self) -> Result<RaftPeerClient<Channel>, Status> {
        self.channel
            .clone()
            .map(peer_client)
            .map_err(Status::unavailable)
    }

    /// Sends one AppendEntries on this session's stream, opening it first if need be.
    async fn exchange_entries(&mut self, payload: RaftPayload) -> Result<RaftPayload, Status> {
        let mut stream = match self.entries.take() {
            Some(stream) => stream,
            None => {
                let (requests, outbound) = mpsc::channel(1);
                let responses = self
                    .client()?
                    .append_entries(ReceiverStream::new(outbound))
                    .await?
                    .into_inner();
                EntryStream {
                    requests,
                    responses,
                }
            }
        };
        if stream.requests.send(payload).await.is_err() {
            return Err(Status::unavailable("the AppendEntries stream ended"));
        }
        let response = stream
            .responses
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the peer ended the AppendEntries stream"))?;
        self.entries = Some(stream);
        Ok(response)
    }

    /// Decodes the peer's answer to one exchange (`Err(Elapsed)`: it did not
    /// come within openraft's deadline), mapping transport failures to the
    /// errors openraft backs off on.
    fn answer<Resp, E>(
        &self,
        kind: Rpc,
        outcome: Result<Result<RaftPayload, Status>, Elapsed>,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let resp = match outcome {
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
            Ok(Ok(resp)) => resp,
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
        let payload = RaftPayload { data: encode(&rpc) };
        let outcome = timeout(option.hard_ttl(), self.exchange_entries(payload)).await;
        self.answer(Rpc::AppendEntries, outcome)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let (client, payload) = (self.client(), RaftPayload { data: encode(&rpc) });
        let call = async { Ok(client?.install_snapshot(payload).await?.into_inner()) };
        let outcome = timeout(option.hard_ttl(), call).await;
        self.answer(Rpc::InstallSnapshot, outcome)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        let (client, payload) = (self.client(), RaftPayload { data: encode(&rpc) });
        let call = async { Ok(client?.vote(payload).await?.into_inner()) };
        let outcome = timeout(option.hard_ttl(), call).await;
        self.answer(Rpc::Vote, outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ferrokube_proto::raft::raft_peer_server::{RaftPeer, RaftPeerServer};
    use ferrokube_proto::raft::{
        ForwardedProposals, MembershipRequest, MembershipResponse, ProposalResults,
        ReadIndexRequest, ReadIndexResponse,
    };
    use futures::stream::{BoxStream, StreamExt};
    use openraft::Vote;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response};

    use super::*;

    /// A peer that answers each AppendEntries with `HigherVote(the request's
    /// vote)`, so a caller can tell whose answer it got; it answers term 1 late.
    #[derive(Default)]
    struct EchoPeer {
        streams_opened: Arc<AtomicUsize>,
    }

    type Answer<T> = Result<Response<T>, Status>;

    #[tonic::async_trait]
    impl RaftPeer for EchoPeer {
        type AppendEntriesStream = BoxStream<'static, Result<RaftPayload, Status>>;

        async fn append_entries(
            &self,
            req: Request<Streaming<RaftPayload>>,
        ) -> Answer<Self::AppendEntriesStream> {
            self.streams_opened.fetch_add(1, Ordering::SeqCst);
            let answers = req.into_inner().then(|request| async move {
                let rpc: AppendEntriesRequest<TypeConfig> =
                    decode(&request?.data).expect("an AppendEntriesRequest");
                if rpc.vote.leader_id.term == 1 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let answer: Result<_, RaftError<u64>> =
                    Ok(AppendEntriesResponse::<u64>::HigherVote(rpc.vote));
                Ok(RaftPayload {
                    data: encode(&answer),
                })
            });
            Ok(Response::new(answers.boxed()))
        }

        async fn vote(&self, _: Request<RaftPayload>) -> Answer<RaftPayload> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn install_snapshot(&self, _: Request<RaftPayload>) -> Answer<RaftPayload> {
            Err(Status::unimplemented("not in this test"))
        }

        type ProposeStream = BoxStream<'static, Result<ProposalResults, Status>>;

        async fn propose(
            &self,
            _: Request<Streaming<ForwardedProposals>>,
        ) -> Answer<Self::ProposeStream> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn read_index(&self, _: Request<ReadIndexRequest>) -> Answer<ReadIndexResponse> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn change_membership(
            &self,
            _: Request<MembershipRequest>,
        ) -> Answer<MembershipResponse> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    fn heartbeat(term: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        }
    }

    #[tokio::test]
    async fn a_call_that_times_out_never_hands_its_late_answer_to_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let peer = EchoPeer::default();
        let streams_opened = Arc::clone(&peer.streams_opened);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftPeerServer::new(peer))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let node = MemberNode {
            name: "peer".into(),
            peer_urls: vec![url],
        };
        let mut conn = PeerNetwork::new().new_client(2, &node).await;

        let late = conn
            .append_entries(heartbeat(1), RPCOption::new(Duration::from_millis(100)))
            .await;
        assert!(
            matches!(late, Err(RPCError::Unreachable(_))),
            "the late answer times out: {late:?}"
        );

        for term in [2, 3, 4] {
            let answer = conn
                .append_entries(heartbeat(term), RPCOption::new(Duration::from_secs(5)))
                .await
                .expect("an answer");
            assert_eq!(
                answer,
                AppendEntriesResponse::HigherVote(Vote::new_committed(term, 1)),
                "term {term} gets its own answer"
            );
        }
        assert_eq!(
            streams_opened.load(Ordering::SeqCst),
            2,
            "the timed-out stream is dropped; the next one carries every later call"
        );
    }
}

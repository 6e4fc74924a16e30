//! Forwarding writes to the leader: one long-lived gRPC stream per leader,
//! instead of one call per write.
//!
//! Entry point: [`Forwarder::forward`]. A member that is not the leader hands
//! each write to the stream's task, which sends whatever has queued up since
//! its last message in one message, and completes each write when the leader's
//! result for it comes back. As etcd's followers do with `MsgProp`, this keeps
//! a forwarded write's cost to a share of one stream message rather than an
//! HTTP/2 request of its own.
//!
//! # To ensure correctness
//! - A write that never left this member (the stream could not be opened, or it
//!   ended first) fails with [`ProposeError::LeaderChanged`]: it was not
//!   proposed, so the caller may retry it.
//! - A write that was handed to the stream but whose result did not come back
//!   fails with [`ProposeError::Timeout`]: the leader may have applied it.
//! - Ids are unique per stream; a stream that ended is never reused, and the
//!   next write to that leader opens a new one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use ferrokube_proto::raft::{ForwardedProposal, ForwardedProposals, ProposalResults};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::network::peer_client;
use super::node::ProposeError;
use super::{decode, encode};
use crate::mvcc::{Applied, Command};

/// Most writes packed into one stream message.
const MAX_MESSAGE_PROPOSALS: usize = 256;
/// Messages buffered towards the connection before the stream task waits.
const OUTBOUND_MESSAGES: usize = 16;

/// What a forwarded write's caller waits on.
pub(crate) type Reply = oneshot::Sender<Result<Applied, ProposeError>>;

/// The forwarding streams of one member, by leader id.
#[derive(Default)]
pub(crate) struct Forwarder {
    streams: Mutex<HashMap<u64, mpsc::UnboundedSender<(Command, Reply)>>>,
}

impl Forwarder {
    /// Queues `cmd` on the stream to `leader` (reached over `channel`), opening
    /// the stream if there is none or the last one ended; `reply` gets the outcome.
    pub(crate) fn forward(&self, leader: u64, channel: Channel, cmd: Command, reply: Reply) {
        let mut streams = self.streams.lock().expect("forward streams lock");
        let mut item = (cmd, reply);
        if let Some(queue) = streams.get(&leader) {
            match queue.send(item) {
                Ok(()) => return,
                // That stream has ended: open a new one below.
                Err(mpsc::error::SendError(back)) => item = back,
            }
        }
        let (queue, queued) = mpsc::unbounded_channel();
        queue.send(item).expect("the receiver is held right here");
        streams.insert(leader, queue);
        tokio::spawn(run_stream(channel, queued));
    }
}

/// Owns one stream to the leader: sends what queues up, completes what comes back.
async fn run_stream(channel: Channel, mut queued: mpsc::UnboundedReceiver<(Command, Reply)>) {
    let (outbound, outbound_rx) = mpsc::channel::<ForwardedProposals>(OUTBOUND_MESSAGES);
    let opened = peer_client(channel)
        .propose(ReceiverStream::new(outbound_rx))
        .await;
    let mut inbound = match opened {
        Ok(response) => response.into_inner(),
        Err(status) => {
            tracing::debug!(%status, "could not open the forwarding stream to the leader");
            queued.close();
            while let Some((_, reply)) = queued.recv().await {
                let _ = reply.send(Err(ProposeError::LeaderChanged));
            }
            return;
        }
    };
    let mut sent: HashMap<u64, Reply> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            first = queued.recv() => {
                let Some(first) = first else { break };
                let mut message = ForwardedProposals { proposals: Vec::new() };
                for (cmd, reply) in std::iter::once(first).chain(std::iter::from_fn(|| {
                    queued.try_recv().ok()
                }).take(MAX_MESSAGE_PROPOSALS - 1)) {
                    next_id += 1;
                    message.proposals.push(ForwardedProposal { id: next_id, command: encode(&cmd) });
                    sent.insert(next_id, reply);
                }
                if outbound.send(message).await.is_err() {
                    break;
                }
            }
            results = inbound.message() => match results {
                Ok(Some(ProposalResults { results })) => {
                    for r in results {
                        let Some(reply) = sent.remove(&r.id) else { continue };
                        let outcome = decode::<Result<Applied, ProposeError>>(&r.result)
                            .unwrap_or_else(|e| Err(ProposeError::Stopped(
                                format!("undecodable result from the leader: {e}"),
                            )));
                        let _ = reply.send(outcome);
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "the forwarding stream to the leader failed");
                    break;
                }
            },
        }
    }
    // Whatever was sent may have been applied; whatever is still queued was not.
    for (_, reply) in sent.drain() {
        let _ = reply.send(Err(ProposeError::Timeout));
    }
    queued.close();
    while let Some((_, reply)) = queued.recv().await {
        let _ = reply.send(Err(ProposeError::LeaderChanged));
    }
}

/// The leader's side: proposes each message's writes together and answers each
/// message once all of its writes have an outcome. Takes no more messages once
/// `stop` completes.
pub(crate) fn serve_stream(
    node: Arc<super::RaftNode>,
    inbound: tonic::Streaming<ForwardedProposals>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<Result<ProposalResults, tonic::Status>> {
    let (results, results_rx) = mpsc::channel(OUTBOUND_MESSAGES);
    tokio::spawn(async move {
        let inbound = inbound.take_until(stop);
        tokio::pin!(inbound);
        while let Some(Ok(message)) = inbound.next().await {
            let node = Arc::clone(&node);
            let results = results.clone();
            tokio::spawn(async move {
                let (ids, commands): (Vec<u64>, Vec<Result<Command, ProposeError>>) = message
                    .proposals
                    .into_iter()
                    .map(|p| {
                        let cmd = decode::<Command>(&p.command).map_err(|e| {
                            ProposeError::Stopped(format!("undecodable forwarded command: {e}"))
                        });
                        (p.id, cmd)
                    })
                    .unzip();
                let outcomes = node.propose_local_all(commands).await;
                let message = ProposalResults {
                    results: ids
                        .into_iter()
                        .zip(outcomes)
                        .map(|(id, outcome)| ferrokube_proto::raft::ProposalResult {
                            id,
                            result: encode(&outcome),
                        })
                        .collect(),
                };
                let _ = results.send(Ok(message)).await;
            });
        }
    });
    ReceiverStream::new(results_rx)
}

//! [`RaftNode`]: what the etcd API asks of Raft — propose a command and get its
//! applied result, confirm a read index, change membership, report status —
//! from any member, forwarding to the leader when this member is not it.
//!
//! Every call is bounded by the request timeout: with no leader, or without a
//! quorum, callers get [`ProposeError::NoLeader`] or [`ProposeError::Timeout`]
//! (etcd's "no leader" / "request timed out"), never a hang.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrokube_proto::raft::leader_leases_client::LeaderLeasesClient;
use ferrokube_proto::raft::{LeaseRequest, MembershipRequest, ReadIndexRequest};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::forward::Forwarder;
use super::network::{peer_client, PeerNetwork};
use super::state_machine::SmShared;
use super::{encode, MemberNode, MembershipChange, Proposal, Raft};
use crate::lessor::Lessor;
use crate::mvcc::{Applied, Command};

/// Why a proposal or read could not be served; `server::errors` maps these to etcd's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    #[error("no leader")]
    NoLeader,
    #[error("request timed out")]
    Timeout,
    #[error("leader changed")]
    LeaderChanged,
    #[error("member ID already exist")]
    MemberExists,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("member not found")]
    MemberNotFound,
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("raft stopped: {0}")]
    Stopped(String),
}

impl ProposeError {
    /// Encoding for the peer protocol: the forwarding member re-creates the same error.
    fn to_status(&self) -> tonic::Status {
        tonic::Status::unavailable(encode_error(self))
    }

    fn from_status(status: &tonic::Status) -> Self {
        decode_error(status.message()).unwrap_or(ProposeError::Timeout)
    }
}

fn encode_error(e: &ProposeError) -> String {
    let tag = match e {
        ProposeError::NoLeader => "no-leader",
        ProposeError::Timeout => "timeout",
        ProposeError::LeaderChanged => "leader-changed",
        ProposeError::MemberExists => "member-exists",
        ProposeError::PeerUrlExists => "peer-url-exists",
        ProposeError::MemberNotFound => "member-not-found",
        ProposeError::NotEnoughStartedMembers => "not-enough-started",
        ProposeError::Stopped(_) => "stopped",
    };
    format!("etcd-lite:{tag}")
}

fn decode_error(msg: &str) -> Option<ProposeError> {
    Some(match msg.strip_prefix("etcd-lite:")? {
        "no-leader" => ProposeError::NoLeader,
        "timeout" => ProposeError::Timeout,
        "leader-changed" => ProposeError::LeaderChanged,
        "member-exists" => ProposeError::MemberExists,
        "peer-url-exists" => ProposeError::PeerUrlExists,
        "member-not-found" => ProposeError::MemberNotFound,
        "not-enough-started" => ProposeError::NotEnoughStartedMembers,
        _ => ProposeError::Stopped("leader stopped".into()),
    })
}

/// The lease calls only the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCall {
    KeepAlive,
    TimeToLive,
}

/// Most commands packed into one Raft entry.
const MAX_PROPOSAL_COMMANDS: usize = 256;

/// Commands waiting to be proposed together (see [`RaftNode::propose_local`]).
#[derive(Default)]
struct ProposalBatch {
    in_flight: bool,
    waiting: Vec<(Command, oneshot::Sender<Result<Applied, ProposeError>>)>,
}

/// A status snapshot for the Maintenance API.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub is_leader: bool,
    pub members: BTreeMap<u64, MemberNode>,
    pub voters: BTreeSet<u64>,
}

/// Read-index requests that arrived while a round was in flight wait for the next
/// round, which starts after they arrived — so every read sees every write that
/// completed before it started, while 64 concurrent reads cost a few rounds, not 64.
#[derive(Default)]
struct ReadBatch {
    in_flight: bool,
    waiters: Vec<oneshot::Sender<Result<u64, ProposeError>>>,
}

pub struct RaftNode {
    pub id: u64,
    pub raft: Raft,
    sm: Arc<SmShared>,
    network: PeerNetwork,
    request_timeout: Duration,
    reads: Mutex<ReadBatch>,
    proposals: Mutex<ProposalBatch>,
    forwarder: Forwarder,
    lessor: Arc<Lessor>,
}

impl RaftNode {
    pub fn new(
        id: u64,
        raft: Raft,
        sm: Arc<SmShared>,
        network: PeerNetwork,
        request_timeout: Duration,
        lessor: Arc<Lessor>,
    ) -> Arc<Self> {
        Arc::new(RaftNode {
            id,
            raft,
            sm,
            network,
            request_timeout,
            reads: Mutex::default(),
            proposals: Mutex::default(),
            forwarder: Forwarder::default(),
            lessor,
        })
    }

    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// Renews a lease on the leader; returns its TTL, 0 if it does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, ProposeError> {
        self.lease_call(id, LeaseCall::KeepAlive).await
    }

    /// Seconds a lease has left according to the leader, -1 if it does not exist.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<i64, ProposeError> {
        self.lease_call(id, LeaseCall::TimeToLive).await
    }

    /// Answers a lease call as the leader, once its store has caught up (see
    /// [`Self::wait_applied_own_term`]).
    pub async fn lease_call_local(
        &self,
        id: i64,
        call: LeaseCall,
        deadline: Instant,
    ) -> Result<i64, ProposeError> {
        self.wait_applied_own_term(deadline).await?;
        let lease = self.sm.store().lease(id);
        let now = Instant::now();
        Ok(match call {
            LeaseCall::KeepAlive => self.lessor.renew(lease.as_ref(), now),
            LeaseCall::TimeToLive => self.lessor.remaining(lease.as_ref(), now),
        })
    }

    /// Waits, as leader, until this member has applied an entry of its own term
    /// (the blank entry a new leader appends first, or a later one). Only then
    /// does its store hold every write acknowledged before it was elected: a new
    /// leader has those entries in its log but may not have applied them yet.
    /// etcd's leader waits for its applied index the same way before it answers
    /// a lease call.
    async fn wait_applied_own_term(&self, deadline: Instant) -> Result<(), ProposeError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader {
                    return Err(ProposeError::LeaderChanged);
                }
                if m.last_applied
                    .is_some_and(|l| l.leader_id.term == m.current_term)
                {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Err(_) => return Err(ProposeError::Timeout),
                Ok(Err(_)) => return Err(ProposeError::Stopped("raft metrics closed".into())),
                Ok(Ok(())) => {}
            }
        }
    }

    async fn lease_call(&self, id: i64, call: LeaseCall) -> Result<i64, ProposeError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (leader, node) = self.leader(deadline).await?;
            let attempt = if leader == self.id {
                self.lease_call_local(id, call, deadline).await
            } else {
                let channel = self
                    .network
                    .channel(leader, &node)
                    .map_err(ProposeError::Stopped)?;
                let mut client = LeaderLeasesClient::new(channel);
                let fut = async {
                    match call {
                        LeaseCall::KeepAlive => client.keep_alive(LeaseRequest { id }).await,
                        LeaseCall::TimeToLive => client.time_to_live(LeaseRequest { id }).await,
                    }
                };
                match tokio::time::timeout_at(deadline, fut).await {
                    Err(_) => Err(ProposeError::Timeout),
                    Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                        Err(ProposeError::from_status(&status))
                    }
                    Ok(Err(_)) => Err(ProposeError::Timeout),
                    Ok(Ok(resp)) => Ok(resp.into_inner().ttl),
                }
            };
            match attempt {
                Err(ProposeError::LeaderChanged) => self.pause_before_retry(deadline).await?,
                other => return other,
            }
        }
    }

    pub fn state_machine(&self) -> &Arc<SmShared> {
        &self.sm
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        RaftStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            is_leader: m.state == ServerState::Leader,
            members: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            voters: membership.voter_ids().collect(),
        }
    }

    /// The current leader and its node, waiting (until `deadline`) for one to be known.
    async fn leader(&self, deadline: Instant) -> Result<(u64, MemberNode), ProposeError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if let Some(leader) = m.current_leader {
                    if let Some(node) = m.membership_config.membership().get_node(&leader) {
                        return Ok((leader, node.clone()));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Err(_) => return Err(ProposeError::NoLeader),
                Ok(Err(_)) => return Err(ProposeError::Stopped("raft metrics closed".into())),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Waits until the leader may have changed since the last attempt, bounded by `deadline`.
    async fn pause_before_retry(&self, deadline: Instant) -> Result<(), ProposeError> {
        let until = (Instant::now() + Duration::from_millis(50)).min(deadline);
        tokio::time::sleep_until(until).await;
        if Instant::now() >= deadline {
            return Err(ProposeError::Timeout);
        }
        Ok(())
    }

    /// Proposes `cmd` through the leader and returns its applied result.
    pub async fn propose(self: &Arc<Self>, cmd: Command) -> Result<Applied, ProposeError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (leader, node) = self.leader(deadline).await?;
            let attempt = if leader == self.id {
                self.propose_local(cmd.clone(), deadline).await
            } else {
                self.forward_propose(leader, &node, &cmd, deadline).await
            };
            match attempt {
                // Only a refusal before the entry was appended is safe to retry.
                Err(ProposeError::LeaderChanged) => self.pause_before_retry(deadline).await?,
                other => return other,
            }
        }
    }

    /// Proposes on this member, which must be the leader. Commands that arrive
    /// while a proposal is being written go together into the next one.
    pub async fn propose_local(
        self: &Arc<Self>,
        cmd: Command,
        deadline: Instant,
    ) -> Result<Applied, ProposeError> {
        let rx = self
            .enqueue(vec![cmd])
            .pop()
            .expect("one command, one receiver");
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) | Ok(Err(_)) => Err(ProposeError::Timeout),
            Ok(Ok(result)) => result,
        }
    }

    /// [`Self::propose_local`] for several commands at once (forwarded by
    /// another member), in order; a command that is already an error stays one.
    pub(crate) async fn propose_local_all(
        self: &Arc<Self>,
        cmds: Vec<Result<Command, ProposeError>>,
    ) -> Vec<Result<Applied, ProposeError>> {
        let deadline = Instant::now() + self.request_timeout;
        let valid: Vec<Command> = cmds
            .iter()
            .filter_map(|c| c.as_ref().ok().cloned())
            .collect();
        let mut receivers = self.enqueue(valid).into_iter();
        let mut outcomes = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            outcomes.push(match cmd {
                Err(e) => Err(e),
                Ok(_) => {
                    let rx = receivers.next().expect("one receiver per valid command");
                    match tokio::time::timeout_at(deadline, rx).await {
                        Err(_) | Ok(Err(_)) => Err(ProposeError::Timeout),
                        Ok(Ok(result)) => result,
                    }
                }
            });
        }
        outcomes
    }

    /// Adds commands to the next proposal, starting the writer if it is idle.
    ///
    /// The batch is written by its own task, so a caller that gives up does not
    /// abandon the commands of others.
    fn enqueue(
        self: &Arc<Self>,
        cmds: Vec<Command>,
    ) -> Vec<oneshot::Receiver<Result<Applied, ProposeError>>> {
        let mut receivers = Vec::with_capacity(cmds.len());
        let start = {
            let mut batch = self.proposals.lock().expect("proposal batch lock");
            for cmd in cmds {
                let (tx, rx) = oneshot::channel();
                batch.waiting.push((cmd, tx));
                receivers.push(rx);
            }
            !std::mem::replace(&mut batch.in_flight, true)
        };
        if start {
            let node = Arc::clone(self);
            tokio::spawn(async move { node.write_proposals().await });
        }
        receivers
    }

    /// Writes batched proposals, one Raft entry at a time, until none is waiting.
    async fn write_proposals(&self) {
        loop {
            let waiting = {
                let mut batch = self.proposals.lock().expect("proposal batch lock");
                if batch.waiting.is_empty() {
                    batch.in_flight = false;
                    return;
                }
                let take = batch.waiting.len().min(MAX_PROPOSAL_COMMANDS);
                batch.waiting.drain(..take).collect::<Vec<_>>()
            };
            let (commands, senders): (Vec<Command>, Vec<_>) = waiting.into_iter().unzip();
            let deadline = Instant::now() + self.request_timeout;
            let written =
                tokio::time::timeout_at(deadline, self.raft.client_write(Proposal::new(&commands)))
                    .await;
            match written {
                Ok(Ok(resp)) => {
                    for (tx, applied) in senders.into_iter().zip(resp.data.0) {
                        let _ = tx.send(Ok(applied));
                    }
                }
                Ok(Err(e)) => {
                    let err = write_error(e);
                    for tx in senders {
                        let _ = tx.send(Err(err.clone()));
                    }
                }
                Err(_) => {
                    for tx in senders {
                        let _ = tx.send(Err(ProposeError::Timeout));
                    }
                }
            }
        }
    }

    /// Hands `cmd` to the leader over this member's forwarding stream to it.
    async fn forward_propose(
        &self,
        leader: u64,
        node: &MemberNode,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<Applied, ProposeError> {
        let channel = self
            .network
            .channel(leader, node)
            .map_err(ProposeError::Stopped)?;
        let (tx, rx) = oneshot::channel();
        self.forwarder.forward(leader, channel, cmd.clone(), tx);
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) | Ok(Err(_)) => Err(ProposeError::Timeout),
            Ok(Ok(result)) => result,
        }
    }

    /// Confirms a read index with a quorum (through the leader) and waits until this
    /// member has applied up to it: afterwards a local read is linearizable.
    ///
    /// The round runs in its own task: a caller that gives up (its client went
    /// away) must not abandon a round other readers are waiting on.
    pub async fn read_index(self: &Arc<Self>) -> Result<(), ProposeError> {
        let deadline = Instant::now() + self.request_timeout;
        let (tx, rx) = oneshot::channel();
        let start_round = {
            let mut reads = self.reads.lock().expect("read batch lock");
            reads.waiters.push(tx);
            !std::mem::replace(&mut reads.in_flight, true)
        };
        if start_round {
            let node = Arc::clone(self);
            tokio::spawn(async move { node.run_read_rounds(deadline).await });
        }
        let index = match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => return Err(ProposeError::Timeout),
            Ok(Err(_)) => return Err(ProposeError::Timeout),
            Ok(Ok(r)) => r?,
        };
        let mut applied = self.sm.applied_index();
        let waited = tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ProposeError::Stopped("state machine closed".into())),
            Err(_) => Err(ProposeError::Timeout),
        }
    }

    /// Runs read-index rounds until no reader is waiting.
    async fn run_read_rounds(&self, deadline: Instant) {
        loop {
            let waiters = {
                let mut reads = self.reads.lock().expect("read batch lock");
                if reads.waiters.is_empty() {
                    reads.in_flight = false;
                    return;
                }
                std::mem::take(&mut reads.waiters)
            };
            let result = self
                .fetch_read_index(deadline.max(Instant::now() + self.request_timeout / 2))
                .await;
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    async fn fetch_read_index(&self, deadline: Instant) -> Result<u64, ProposeError> {
        let (leader, node) = self.leader(deadline).await?;
        if leader == self.id {
            return self.leader_read_index(deadline).await;
        }
        let channel = self
            .network
            .channel(leader, &node)
            .map_err(ProposeError::Stopped)?;
        let mut client = peer_client(channel);
        match tokio::time::timeout_at(deadline, client.read_index(ReadIndexRequest {})).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                Err(ProposeError::from_status(&status))
            }
            Ok(Err(_)) => Err(ProposeError::Timeout),
            Ok(Ok(resp)) => Ok(resp.into_inner().index),
        }
    }

    /// On the leader: confirm leadership with a quorum, return the index reads must wait for.
    pub async fn leader_read_index(&self, deadline: Instant) -> Result<u64, ProposeError> {
        loop {
            match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
                Err(_) => return Err(ProposeError::Timeout),
                Ok(Ok((read_log_id, _))) => return Ok(read_log_id.map_or(0, |l| l.index)),
                // No quorum answered this round: try again until the deadline, as etcd does.
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                    self.pause_before_retry(deadline).await?
                }
                Ok(Err(RaftError::APIError(_))) => return Err(ProposeError::LeaderChanged),
                Ok(Err(e)) => return Err(ProposeError::Stopped(e.to_string())),
            }
        }
    }

    /// Applies a membership change through the leader.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), ProposeError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (leader, node) = self.leader(deadline).await?;
            let attempt = if leader == self.id {
                self.change_membership_local(change.clone(), deadline).await
            } else {
                let channel = self
                    .network
                    .channel(leader, &node)
                    .map_err(ProposeError::Stopped)?;
                let mut client = peer_client(channel);
                let call = client.change_membership(MembershipRequest {
                    change: encode(&change),
                });
                match tokio::time::timeout_at(deadline, call).await {
                    Err(_) => Err(ProposeError::Timeout),
                    Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                        Err(ProposeError::from_status(&status))
                    }
                    Ok(Err(_)) => Err(ProposeError::Timeout),
                    Ok(Ok(_)) => Ok(()),
                }
            };
            match attempt {
                Err(ProposeError::LeaderChanged) => self.pause_before_retry(deadline).await?,
                other => return other,
            }
        }
    }

    pub async fn change_membership_local(
        &self,
        change: MembershipChange,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        let status = self.status();
        let result = match change {
            MembershipChange::Add { id, node } => {
                if status.members.contains_key(&id) {
                    return Err(ProposeError::MemberExists);
                }
                if status
                    .members
                    .values()
                    .any(|n| n.peer_urls.iter().any(|u| node.peer_urls.contains(u)))
                {
                    return Err(ProposeError::PeerUrlExists);
                }
                let add = async {
                    self.raft
                        .add_learner(id, node, false)
                        .await
                        .map_err(write_error)?;
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(write_error)
                };
                tokio::time::timeout_at(deadline, add).await
            }
            MembershipChange::Remove { id } => {
                if !status.members.contains_key(&id) {
                    return Err(ProposeError::MemberNotFound);
                }
                let remove = async {
                    self.raft
                        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                        .await
                        .map_err(write_error)
                };
                tokio::time::timeout_at(deadline, remove).await
            }
        };
        match result {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
        }
    }
}

fn write_error(e: RaftError<u64, ClientWriteError<u64, MemberNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::LeaderChanged,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            tracing::warn!(error = %e, "membership change refused");
            ProposeError::NotEnoughStartedMembers
        }
        RaftError::Fatal(e) => ProposeError::Stopped(e.to_string()),
    }
}

pub(crate) fn propose_error_status(e: &ProposeError) -> tonic::Status {
    e.to_status()
}

//! etcd-lite: a Raft-replicated key-value store that speaks the etcd v3 API.
//!
//! Layers, bottom up: [`storage`] (the engine trait and its implementations),
//! [`mvcc`] (etcd's revisioned keyspace and leases: the state machine),
//! [`raft`] (openraft: log, state machine, peer network), [`watch`] (the watch
//! hub), [`lessor`] (lease expiry), [`server`] (the etcd v3 gRPC services) and
//! [`member`] (one running member). [`run`] is what the binary calls.

pub mod config;
pub mod lessor;
pub mod member;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod storage;
pub mod watch;

use std::future::Future;

pub use self::config::{Config, MemberConfig};
pub use self::member::{Listeners, Member, StartError};

/// Runs a member until `shutdown` resolves, then stops it cleanly.
pub async fn run(
    cfg: MemberConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let member = Member::start(cfg, listeners).await?;
    shutdown.await;
    member.shutdown().await;
    Ok(())
}

//! The wire contract between ferrokube's daemons: generated tonic/prost code, no logic.
//!
//! `raft` is etcd-lite's peer protocol (member ↔ member). The etcd v3 client API
//! itself is not defined here: it comes from the `etcd-client` crate.

/// etcd-lite member ↔ member: Raft RPCs plus forwarding of proposals and read-index requests to the leader.
pub mod raft {
    tonic::include_proto!("ferrokube.raft.v1");
}

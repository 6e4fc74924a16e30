//! The wire contract between ferrokube's daemons: generated tonic/prost code, no logic.
//!
//! `raft` is etcd-lite's peer protocol (member ↔ member); `api` is the
//! apiserver's API for the components (`proto/api.proto` documents the error
//! mapping); `kubelet` is the kubelet's streaming API the apiserver calls
//! (`proto/kubelet.proto`). The etcd v3 client API itself is not defined here: it comes from
//! the `etcd-client` crate.

/// etcd-lite member ↔ member: Raft RPCs plus forwarding of proposals and read-index requests to the leader.
pub mod raft {
    tonic::include_proto!("ferrokube.raft.v1");
}

/// apiserver ↔ components: get/list/watch/create/update/patch/delete/bind over
/// the same JSON objects as REST, plus the logs/exec streaming shapes.
pub mod api {
    tonic::include_proto!("ferrokube.api.v1");
}

/// apiserver ↔ kubelet: container logs, exec and port-forward streams the
/// apiserver proxies for `pods/log`, `pods/exec` and `pods/portforward`.
pub mod kubelet {
    tonic::include_proto!("ferrokube.kubelet.v1");
    pub use super::api::{
        exec_input, exec_output, ExecExit, ExecInput, ExecOutput, ExecStart, LogChunk, TerminalSize,
    };
}

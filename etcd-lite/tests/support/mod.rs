//! Test support for driving whole clusters from the outside, as a user would:
//! [`Cluster::spawn`] starts real server processes (Debian's `etcd` or our
//! `etcd-lite`, with the same flags), [`Etcdctl`] runs Debian's `etcdctl`
//! against them, and [`wait_for`] replaces sleeps with bounded polling.

pub mod cluster;
pub mod compare;
pub mod etcdctl;
pub mod wait;

pub use cluster::{Binary, Cluster};
pub use etcdctl::Etcdctl;
pub use wait::wait_for;

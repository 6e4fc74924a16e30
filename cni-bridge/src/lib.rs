//! `cni-bridge`: a CNI 1.0/1.1 plugin that plugs pods into a node bridge with a
//! veth pair and allocates their addresses host-local style.
//! Entry point: [`plugin::run`], driven by the thin `main.rs`.

pub mod config;
pub mod error;
pub mod ipam;
pub mod iptables;
pub mod loopback;
pub mod netlink;
pub mod plugin;
pub mod result;
pub mod retire;

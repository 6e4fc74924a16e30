//! The `loopback` plugin type: brings `lo` up in the sandbox (ADD) and down
//! (DEL), like the reference `loopback` plugin. containerd's CRI plugin
//! always runs a `loopback` network before the pod network, so a node whose
//! CNI bin dir holds `loopback -> cni-bridge` needs no other plugin.
//! Entry point: [`run`].

use std::path::Path;

use serde_json::{json, Value};

use crate::config::{CniEnv, Command};
use crate::error::{CniError, ErrorCode};
use crate::netlink::{open_netns, Netlink, NetlinkError};

/// The loopback interface is always ifindex 1 in a network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

/// True when the config on stdin asks for the `loopback` type.
pub fn is_loopback(conf: &Value) -> bool {
    conf.get("type").and_then(Value::as_str) == Some("loopback")
}

/// Runs ADD, DEL or CHECK for the loopback type; `cni_version` is the
/// config's. DEL of a sandbox that is gone is success, as the spec asks.
pub fn run(env: &CniEnv, cni_version: &str) -> Result<Option<Value>, CniError> {
    let path = env.netns.as_deref().unwrap_or(Path::new(""));
    let ns = open_netns(path)?;
    match env.command {
        Command::Add => {
            let ns = ns.ok_or_else(|| {
                CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("CNI_NETNS: {} does not exist", path.display()),
                )
            })?;
            Netlink::in_netns(&ns, path)?.set_up(LOOPBACK_INDEX)?;
            let mut ip = json!({"address": "127.0.0.1/8", "interface": 0});
            if cni_version.starts_with("0.") {
                ip["version"] = json!("4");
            }
            Ok(Some(json!({
                "cniVersion": cni_version,
                "interfaces": [{"name": env.ifname, "mac": "00:00:00:00:00:00", "sandbox": path.display().to_string()}],
                "ips": [ip],
                "dns": {},
            })))
        }
        Command::Del => {
            let Some(ns) = ns else { return Ok(None) };
            match Netlink::in_netns(&ns, path) {
                Ok(sandbox) => sandbox.set_down(LOOPBACK_INDEX)?,
                Err(NetlinkError::EnterNetns { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(None)
        }
        Command::Check => {
            let ns = ns.ok_or_else(|| {
                CniError::new(
                    ErrorCode::UnknownContainer,
                    format!("CNI_NETNS: {} does not exist", path.display()),
                )
            })?;
            let lo = Netlink::in_netns(&ns, path)?.link("lo")?;
            if !lo.is_some_and(|l| l.up) {
                return Err(CniError::new(
                    ErrorCode::CheckMismatch,
                    format!("lo is down in {}", path.display()),
                ));
            }
            Ok(None)
        }
        Command::Status | Command::Gc | Command::Version => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loopback_type_is_loopback() {
        assert!(is_loopback(
            &json!({"type": "loopback", "name": "cni-loopback"})
        ));
        assert!(!is_loopback(&json!({"type": "cni-bridge"})));
        assert!(!is_loopback(&json!({})));
    }
}

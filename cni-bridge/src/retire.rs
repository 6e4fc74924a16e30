//! Retiring a veth on DEL: out of service at once, unregistered in the background.
//! Entry points: [`retired_name`] and [`spawn_unregister`] (used by DEL), and
//! [`unregister`], which the detached process runs.
//!
//! Why: unregistering a network device waits for an RCU barrier inside the
//! `RTM_DELLINK` call, 15–25 ms on a loaded node, far longer than everything
//! else DEL does. So DEL takes the veth out of service itself — in the pod,
//! the address is removed, the link set down and renamed away from `ifname`;
//! on the node, the link is set down, taken out of the bridge and renamed
//! away from its per-attachment name — and leaves the `RTM_DELLINK` to a
//! process it starts and does not wait for.
//!
//! To ensure correctness:
//! - After DEL returns, nothing forwards through the old veth (both ends are
//!   down and the node end is no bridge port), its address is free, and
//!   both of its names are free, so an ADD for the same sandbox, container
//!   and `ifname` can run at once.
//! - A retired link is named `cnidel<ifindex in hex>`. An ifindex is unique
//!   within a namespace, so the name never clashes with another retired
//!   link, and [`unregister`] deletes a link only if both index and name
//!   still match.
//! - If the background process never runs or is killed, nothing is lost
//!   but a down, renamed veth: the kernel deletes it with the pod's network
//!   namespace, which the runtime removes after DEL.

use std::process::{Command, Stdio};

use crate::netlink::{first_link, Netlink, NetlinkError, Request, ENODEV};

/// The first argument that turns the plugin binary into the unregister process.
pub const UNREGISTER_ARG: &str = "--unregister-retired-link";

const RETIRED_PREFIX: &str = "cnidel";

/// The name a retired link gets: unique per namespace, at most 14 bytes.
pub fn retired_name(index: u32) -> String {
    format!("{RETIRED_PREFIX}{index:x}")
}

/// Starts `cni-bridge --unregister-retired-link <index> <name>` in the
/// node's namespace, detached: its own process group, no inherited stdio
/// (the runtime reads the plugin's stdout until every writer has closed it),
/// and nobody waits for it. The kernel reparents it when the plugin exits.
pub fn spawn_unregister(index: u32) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    Command::new("/proc/self/exe")
        .arg(UNREGISTER_ARG)
        .arg(index.to_string())
        .arg(retired_name(index))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}

/// Why the unregister process failed (it has no one to report to but its exit code).
#[derive(Debug, thiserror::Error)]
pub enum UnregisterError {
    #[error("usage: {UNREGISTER_ARG} <ifindex> <name>")]
    Usage,
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The unregister process: deletes the link `index` of the calling
/// namespace if it is still called `name` (a retired name). Gone already is
/// success.
pub fn unregister(args: &[String]) -> Result<(), UnregisterError> {
    let [index, name] = args else {
        return Err(UnregisterError::Usage);
    };
    let index: u32 = index.parse().map_err(|_| UnregisterError::Usage)?;
    if !name.starts_with(RETIRED_PREFIX) {
        return Err(UnregisterError::Usage);
    }
    let host = Netlink::host()?;
    let answer = host.request(Request::get_link_by_index(index).tolerate(&[ENODEV]))?;
    match first_link(&answer) {
        Some(link) if link.name == *name => {
            host.request(Request::delete_link(index).tolerate(&[ENODEV]))?;
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_names_fit_the_interface_name_limit_and_differ_per_index() {
        assert_eq!(retired_name(7), "cnidel7");
        assert!(retired_name(u32::MAX).len() <= 15);
        assert_ne!(retired_name(10), retired_name(16));
    }

    #[test]
    fn the_unregister_process_refuses_bad_arguments_before_touching_anything() {
        assert!(matches!(unregister(&[]), Err(UnregisterError::Usage)));
        let not_retired = ["5".to_string(), "eth0".to_string()];
        assert!(matches!(
            unregister(&not_retired),
            Err(UnregisterError::Usage)
        ));
        let bad_index = ["x".to_string(), "cnidel5".to_string()];
        assert!(matches!(
            unregister(&bad_index),
            Err(UnregisterError::Usage)
        ));
    }
}

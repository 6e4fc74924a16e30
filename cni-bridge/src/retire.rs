//! Retiring a veth on DEL: out of service at once, unregistered in the background.
//! Entry points: [`retired_name`] and [`Unregisterer`], used by DEL.
//!
//! Why: unregistering a network device waits for an RCU barrier inside the
//! `RTM_DELLINK` call, 15–25 ms on a loaded node, far longer than everything
//! else DEL does. So DEL takes the veth out of service itself — in the pod,
//! the address is removed, the link set down and renamed away from `ifname`;
//! on the node, the link is set down, taken out of the bridge and renamed
//! away from its per-attachment name — and leaves the `RTM_DELLINK` to a
//! child process it forks and does not wait for. A fork, not a spawn of a
//! new program: the parent goes on at once, where a spawn would hold it until
//! the child had been scheduled and had called `exec`, which on a busy node
//! took milliseconds.
//!
//! To ensure correctness:
//! - After DEL returns, nothing forwards through the old veth (both ends are
//!   down and the node end is no bridge port), its address is free, and
//!   both of its names are free, so an ADD for the same sandbox, container
//!   and `ifname` can run at once.
//! - A retired link is named `cnidel<ifindex in hex>`. An ifindex is unique
//!   within a namespace, so the name never clashes with another retired
//!   link, and the child deletes a link only if both index and name still
//!   match.
//! - If the child never runs or is killed, nothing is lost
//!   but a down, renamed veth: the kernel deletes it with the pod's network
//!   namespace, which the runtime removes after DEL.

use std::fs::File;
use std::io::{Read, Write};

use nix::fcntl::OFlag;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid, ForkResult};

use crate::netlink::{first_link, Netlink, NetlinkError, Request, ENODEV};

const RETIRED_PREFIX: &str = "cnidel";

/// The name a retired link gets: unique per namespace, at most 14 bytes.
pub fn retired_name(index: u32) -> String {
    format!("{RETIRED_PREFIX}{index:x}")
}

/// A forked child, waiting to be told which retired link to unregister.
/// Dropping this without [`Unregisterer::hand_over`] lets it exit with
/// nothing done.
pub struct Unregisterer {
    orders: File,
}

impl Unregisterer {
    /// Forks the child. Called first thing in DEL, before any file is open:
    /// a forked child shares every inherited descriptor, and
    /// the runtime reads the plugin's stdout until every copy is closed, so
    /// the child first points stdin, stdout and stderr at /dev/null — and
    /// forking early gives it the whole of DEL to get scheduled and do so.
    /// It then leaves the runtime's session and reads its order from a pipe.
    /// Nobody waits for it: the kernel reparents it when the plugin exits.
    pub fn fork() -> std::io::Result<Self> {
        let devnull = File::options().read(true).write(true).open("/dev/null")?;
        // Close-on-exec, so no program DEL starts later holds the pipe open.
        let (orders_in, orders_out) = pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        // SAFETY: the plugin is single-threaded (it enters sandboxes with
        // `setns` on its one thread, see netlink), so the child inherits no
        // lock held by another thread; it only redirects its stdio, reads a pipe, opens a
        // socket, makes two netlink requests and exits.
        #[allow(unsafe_code)]
        let forked = unsafe { fork() }.map_err(std::io::Error::from)?;
        match forked {
            ForkResult::Parent { .. } => Ok(Self {
                orders: File::from(orders_out),
            }),
            ForkResult::Child => {
                drop(orders_out);
                let detached = dup2_stdin(&devnull)
                    .and_then(|()| dup2_stdout(&devnull))
                    .and_then(|()| dup2_stderr(&devnull))
                    .and_then(|()| setsid().map(drop));
                drop(devnull);
                let mut order = String::new();
                let read = File::from(orders_in).read_to_string(&mut order);
                let index = order.trim().parse::<u32>().ok();
                let code = match (detached, read, index) {
                    (Ok(()), Ok(_), Some(index)) => match unregister(index, &retired_name(index)) {
                        Ok(()) => 0,
                        Err(_) => 1,
                    },
                    // No order: the parent had nothing to retire, or failed.
                    (Ok(()), Ok(_), None) => 0,
                    _ => 1,
                };
                // Nothing was written to stdout before the fork, and it is /dev/null now.
                std::process::exit(code)
            }
        }
    }

    /// Tells the child to unregister the retired link `index` of the node's
    /// namespace, and returns at once.
    pub fn hand_over(mut self, index: u32) -> std::io::Result<()> {
        writeln!(self.orders, "{index}")
    }
}

/// Deletes the link `index` of the calling namespace if it is still called
/// `name` (a retired name), waiting for the kernel's unregister. Gone
/// already is success.
pub fn unregister(index: u32, name: &str) -> Result<(), NetlinkError> {
    let host = Netlink::host()?;
    let answer = host.request(Request::get_link_by_index(index).tolerate(&[ENODEV]))?;
    match first_link(&answer) {
        Some(link) if link.name == name && name.starts_with(RETIRED_PREFIX) => {
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
}

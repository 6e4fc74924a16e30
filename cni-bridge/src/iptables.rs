//! `ipMasq`: one nat chain per attachment, named like the reference plugin's
//! (`CNI-` + the first 24 hex digits of sha512(network name + container ID)).
//! Entry points: [`start_setup`] on ADD, [`start_teardown`] and
//! [`finish_teardown`] on DEL; each starts `iptables-restore` and lets the
//! plugin do its netlink work while it runs.
//!
//! The chain ACCEPTs traffic to the pod subnet and MASQUERADEs the rest
//! (except multicast); a POSTROUTING rule sends the pod's source address into
//! it. All changes go through one `iptables-restore --noflush` transaction, so
//! a half-written rule set is never visible.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use sha2::{Digest, Sha512};

/// Why an iptables step failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("iptables: running {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("iptables: {program} failed: {stderr}")]
    Failed {
        program: &'static str,
        stderr: String,
    },
}

/// The per-attachment chain name (28 characters, like the reference's `FormatChainName`).
pub fn chain_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("CNI-{}", &hex[..24])
}

fn comment(network: &str, container_id: &str) -> String {
    // Network names and container IDs are validated to [A-Za-z0-9_.-], so no quoting issues.
    format!("name: {network} id: {container_id}")
}

/// The `iptables-restore` input that installs the masquerade rules for one pod.
pub fn setup_rules(network: &str, container_id: &str, ip: Ipv4Addr, subnet: Ipv4Net) -> String {
    let chain = chain_name(network, container_id);
    let c = comment(network, container_id);
    format!(
        "*nat\n:{chain} - [0:0]\n\
         -A {chain} -d {subnet} -m comment --comment \"{c}\" -j ACCEPT\n\
         -A {chain} ! -d 224.0.0.0/4 -m comment --comment \"{c}\" -j MASQUERADE\n\
         -A POSTROUTING -s {ip}/32 -m comment --comment \"{c}\" -j {chain}\n\
         COMMIT\n"
    )
}

/// Given `iptables-save -t nat` output, the restore input that removes every
/// trace of `chain`, or `None` if there is nothing to remove.
pub fn teardown_rules(saved_nat: &str, chain: &str) -> Option<String> {
    let mut out = String::from("*nat\n");
    let mut found = false;
    for line in saved_nat.lines() {
        let jumps_to_chain = line
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "-j" && w[1] == chain);
        if let Some(rule) = line.strip_prefix("-A ") {
            if jumps_to_chain && !rule.starts_with(&format!("{chain} ")) {
                out.push_str("-D ");
                out.push_str(rule);
                out.push('\n');
                found = true;
            }
        } else if line.starts_with(&format!(":{chain} ")) {
            found = true;
        }
    }
    if !found {
        return None;
    }
    // Declaring the chain under --noflush flushes it (or creates it empty), so -X always succeeds.
    out.push_str(&format!(":{chain} - [0:0]\n-X {chain}\nCOMMIT\n"));
    Some(out)
}

/// An `iptables-restore` run that was started and not yet waited for, so
/// the caller can do other work meanwhile. Removing rules is slow on the
/// nf_tables backend: when `iptables-restore` closes its netlink socket, the
/// kernel waits for an RCU grace period to free the removed rules, which is
/// most of the time a teardown takes, and none of it is CPU work.
#[must_use = "a started restore must be waited for"]
pub struct Restore(std::process::Child);

const RESTORE: &str = "iptables-restore";

impl Restore {
    /// Starts `iptables-restore -w --noflush` with `input` on its stdin.
    pub fn start(input: &str) -> Result<Self, IptablesError> {
        let spawn = |source| IptablesError::Spawn {
            program: RESTORE,
            source,
        };
        let mut child = Command::new(RESTORE)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            // Dropping stdin at the end of this block sends EOF.
            if let Err(e) = stdin.write_all(input.as_bytes()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn(e));
            }
        }
        Ok(Self(child))
    }

    /// Waits for the run to end; its stderr is the error when it failed.
    pub fn wait(self) -> Result<(), IptablesError> {
        let out = self
            .0
            .wait_with_output()
            .map_err(|source| IptablesError::Spawn {
                program: RESTORE,
                source,
            })?;
        if !out.status.success() {
            return Err(IptablesError::Failed {
                program: RESTORE,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

fn restore(input: &str) -> Result<(), IptablesError> {
    Restore::start(input)?.wait()
}

/// ADD: starts installing the pod's masquerade chain and its POSTROUTING jump.
pub fn start_setup(
    network: &str,
    container_id: &str,
    ip: Ipv4Addr,
    subnet: Ipv4Net,
) -> Result<Restore, IptablesError> {
    Restore::start(&setup_rules(network, container_id, ip, subnet))
}

/// The restore input that removes exactly what [`setup_rules`] installed.
/// It fails as a whole if any of it is already gone.
pub fn known_teardown_rules(network: &str, container_id: &str, ip: Ipv4Addr) -> String {
    let chain = chain_name(network, container_id);
    let c = comment(network, container_id);
    format!(
        "*nat\n-D POSTROUTING -s {ip}/32 -m comment --comment \"{c}\" -j {chain}\n\
         :{chain} - [0:0]\n-X {chain}\nCOMMIT\n"
    )
}

/// DEL, first half: when the pod's address is known, starts the one
/// `iptables-restore` that removes exactly what ADD installed. `None` when
/// there is no single known address ([`finish_teardown`] then takes the slow
/// path) or the run could not be started.
pub fn start_teardown(network: &str, container_id: &str, ips: &[Ipv4Addr]) -> Option<Restore> {
    match ips {
        [ip] => Restore::start(&known_teardown_rules(network, container_id, *ip)).ok(),
        _ => None,
    }
}

/// DEL, second half: waits for [`start_teardown`]'s run. If there was none
/// or it failed (something was already gone, or the rules were changed by
/// hand), the slow path reads the nat table and removes whatever is left of
/// the pod's chain and every jump to it; a no-op when all is gone.
pub fn finish_teardown(
    started: Option<Restore>,
    network: &str,
    container_id: &str,
) -> Result<(), IptablesError> {
    if let Some(run) = started {
        if run.wait().is_ok() {
            return Ok(());
        }
    }
    const PROGRAM: &str = "iptables-save";
    let chain = chain_name(network, container_id);
    let out = Command::new(PROGRAM)
        .args(["-t", "nat"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| IptablesError::Spawn {
            program: PROGRAM,
            source,
        })?;
    if !out.status.success() {
        return Err(IptablesError::Failed {
            program: PROGRAM,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    match teardown_rules(&String::from_utf8_lossy(&out.stdout), &chain) {
        Some(input) => restore(&input),
        None => Ok(()),
    }
}

/// Removes the pod's chain and every jump to it, start to finish (GC, and
/// undoing a failed ADD).
pub fn teardown_masquerade(
    network: &str,
    container_id: &str,
    ips: &[Ipv4Addr],
) -> Result<(), IptablesError> {
    finish_teardown(
        start_teardown(network, container_id, ips),
        network,
        container_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_name_fits_iptables_limit_and_is_stable() {
        let a = chain_name("podnet", "abc");
        assert_eq!(a.len(), 28);
        assert!(a.starts_with("CNI-"));
        assert_eq!(a, chain_name("podnet", "abc"));
        assert_ne!(a, chain_name("podnet", "abd"));
    }

    #[test]
    fn the_fast_teardown_deletes_exactly_the_jump_that_setup_appended() {
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        let setup = setup_rules("n", "a", ip, "10.0.0.0/24".parse().unwrap());
        let jump = setup
            .lines()
            .find(|l| l.starts_with("-A POSTROUTING "))
            .unwrap();
        let teardown = known_teardown_rules("n", "a", ip);
        assert!(
            teardown.contains(&jump.replacen("-A", "-D", 1)),
            "{teardown}"
        );
    }

    #[test]
    fn teardown_removes_the_jump_and_the_chain_but_not_other_pods_rules() {
        let chain = chain_name("n", "a");
        let other = chain_name("n", "b");
        let saved = format!(
            "*nat\n:POSTROUTING ACCEPT [0:0]\n:{chain} - [0:0]\n:{other} - [0:0]\n\
             -A POSTROUTING -s 10.0.0.2/32 -m comment --comment \"name: n id: a\" -j {chain}\n\
             -A POSTROUTING -s 10.0.0.3/32 -m comment --comment \"name: n id: b\" -j {other}\n\
             -A {chain} -d 10.0.0.0/24 -j ACCEPT\nCOMMIT\n"
        );
        let input = teardown_rules(&saved, &chain).unwrap();
        assert!(input.contains(&format!(
            "-D POSTROUTING -s 10.0.0.2/32 -m comment --comment \"name: n id: a\" -j {chain}\n"
        )));
        assert!(input.contains(&format!("-X {chain}\n")));
        assert!(!input.contains(&other));
        assert_eq!(teardown_rules("*nat\nCOMMIT\n", &chain), None);
    }
}

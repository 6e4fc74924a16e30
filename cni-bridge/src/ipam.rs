//! Host-local-style address allocation on disk. Entry point: [`Store`].
//!
//! Layout under the network's data dir (the same as the reference host-local
//! plugin, so either can read the other's reservations):
//! - one file per reserved IP, named after the IP, holding `"<containerID>\r\n<ifname>"`;
//! - `last_reserved_ip.0`, where the next scan starts (round-robin, so a
//!   released address is not handed out again straight away);
//! - `lock`, flocked exclusively for the whole read-modify-write of any call.
//!
//! To ensure correctness:
//! - Every operation holds the exclusive lock from its first read to its last
//!   write, so concurrent ADDs in separate processes never get the same IP.
//! - A reservation is created with `O_CREAT|O_EXCL` and is visible to every
//!   later call once this one returns, so it survives plugin restarts. It is
//!   not fsynced, like host-local's: pods do not survive a machine crash
//!   either, and the runtime's GC frees whatever reservations a crash left
//!   behind. An fsync cost more than the rest of the allocation together.
//! - The gateway, the network and the broadcast addresses are never reserved.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::config::IpRange;

const LAST_RESERVED: &str = "last_reserved_ip.0";
const LINE_BREAK: &str = "\r\n";

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("ipam: creating data dir {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("ipam: locking {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ipam: reading reservations in {dir}: {source}")]
    Scan {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("ipam: writing reservation {path}: {source}")]
    Reserve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ipam: removing reservation {path}: {source}")]
    Release {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ipam: no free address left in {start}-{end}")]
    Exhausted { start: Ipv4Addr, end: Ipv4Addr },
}

/// One network's reservation directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The exclusive lock on a store; released when dropped.
struct Locked(#[allow(dead_code)] Flock<File>);

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Locked, IpamError> {
        fs::create_dir_all(&self.dir).map_err(|source| IpamError::CreateDir {
            dir: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| IpamError::Lock {
                path: path.clone(),
                source,
            })?;
        let flock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| IpamError::Lock {
                path,
                source: errno.into(),
            })?;
        Ok(Locked(flock))
    }

    /// Reserves an address for (container, ifname). If the pair already holds
    /// one (a retried ADD), that address is returned instead of a second one.
    pub fn allocate(
        &self,
        range: &IpRange,
        container_id: &str,
        ifname: &str,
    ) -> Result<Ipv4Addr, IpamError> {
        let _lock = self.lock()?;
        if let Some(ip) = self.owned_by(container_id, ifname)?.into_iter().next() {
            return Ok(ip);
        }
        let start = u32::from(range.start);
        let end = u32::from(range.end);
        let span = end - start + 1;
        let first = fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|last| (start..end).contains(last))
            .map_or(start, |last| last + 1);
        let network = u32::from(range.subnet.network());
        let broadcast = u32::from(range.subnet.broadcast());
        let gateway = u32::from(range.gateway);
        for i in 0..span {
            let n = start + (first - start + i) % span;
            if n == gateway || n == network || n == broadcast {
                continue;
            }
            let ip = Ipv4Addr::from(n);
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let body = format!("{container_id}{LINE_BREAK}{ifname}");
                    f.write_all(body.as_bytes())
                        .map_err(|source| IpamError::Reserve {
                            path: path.clone(),
                            source,
                        })?;
                    self.write_last_reserved(ip)?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(IpamError::Reserve { path, source }),
            }
        }
        Err(IpamError::Exhausted {
            start: range.start,
            end: range.end,
        })
    }

    /// Records where the next scan starts. Overwritten in place and then cut
    /// to length, never truncated to zero first: on ext4 a truncate-to-zero
    /// and rewrite makes `close` start writeback of the file.
    fn write_last_reserved(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.dir.join(LAST_RESERVED);
        let body = ip.to_string();
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(body.as_bytes())?;
                f.set_len(body.len() as u64)
            })
            .map_err(|source| IpamError::Reserve { path, source })
    }

    /// The addresses (container, ifname) holds, without changing anything.
    pub fn lookup(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        self.owned_by(container_id, ifname)
    }

    /// Frees every address (container, ifname) holds and returns them.
    /// Releasing nothing is not an error: DEL must be idempotent.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let ips = self.owned_by(container_id, ifname)?;
        for ip in &ips {
            self.remove(*ip)?;
        }
        Ok(ips)
    }

    /// GC: frees every reservation whose (container, ifname) is not in `valid`.
    pub fn retain(
        &self,
        valid: &[(String, String)],
    ) -> Result<Vec<(Ipv4Addr, String, String)>, IpamError> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for (ip, id, ifname) in self.reservations()? {
            if !valid
                .iter()
                .any(|(v_id, v_if)| *v_id == id && *v_if == ifname)
            {
                self.remove(ip)?;
                freed.push((ip, id, ifname));
            }
        }
        Ok(freed)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IpamError::Release { path, source }),
        }
    }

    fn owned_by(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        Ok(self
            .reservations()?
            .into_iter()
            .filter(|(_, id, ifn)| id == container_id && (ifn == ifname || ifn.is_empty()))
            .map(|(ip, _, _)| ip)
            .collect())
    }

    /// Every reservation file as (ip, containerID, ifname). Files from old
    /// host-local versions hold only the container ID; their ifname is "".
    fn reservations(&self) -> Result<Vec<(Ipv4Addr, String, String)>, IpamError> {
        let scan = |source| IpamError::Scan {
            dir: self.dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(scan)? {
            let entry = entry.map_err(scan)?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let body = match fs::read_to_string(entry.path()) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(scan(e)),
            };
            let mut lines = body.lines().map(str::trim);
            let id = lines.next().unwrap_or_default().to_string();
            let ifname = lines.next().unwrap_or_default().to_string();
            out.push((ip, id, ifname));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u8, end: u8) -> IpRange {
        IpRange {
            subnet: "10.5.0.0/24".parse().unwrap(),
            start: Ipv4Addr::new(10, 5, 0, start),
            end: Ipv4Addr::new(10, 5, 0, end),
            gateway: Ipv4Addr::new(10, 5, 0, 1),
        }
    }

    #[test]
    fn first_allocation_is_the_address_after_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(
            store.allocate(&range(1, 254), "c1", "eth0").unwrap(),
            Ipv4Addr::new(10, 5, 0, 2)
        );
        assert_eq!(
            store.allocate(&range(1, 254), "c2", "eth0").unwrap(),
            Ipv4Addr::new(10, 5, 0, 3)
        );
    }

    #[test]
    fn a_retried_add_gets_the_same_address_not_a_second_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let a = store.allocate(&range(1, 254), "c1", "eth0").unwrap();
        assert_eq!(store.allocate(&range(1, 254), "c1", "eth0").unwrap(), a);
        assert_eq!(store.lookup("c1", "eth0").unwrap(), vec![a]);
    }

    #[test]
    fn released_addresses_are_reused_only_after_the_pool_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let r = range(2, 4);
        let a = store.allocate(&r, "a", "eth0").unwrap();
        let _b = store.allocate(&r, "b", "eth0").unwrap();
        assert_eq!(store.release("a", "eth0").unwrap(), vec![a]);
        assert_eq!(
            store.allocate(&r, "c", "eth0").unwrap(),
            Ipv4Addr::new(10, 5, 0, 4)
        );
        assert_eq!(store.allocate(&r, "d", "eth0").unwrap(), a);
        assert!(matches!(
            store.allocate(&r, "e", "eth0"),
            Err(IpamError::Exhausted { .. })
        ));
    }

    #[test]
    fn release_of_an_unknown_attachment_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("never-created"));
        assert!(store.release("x", "eth0").unwrap().is_empty());
    }

    #[test]
    fn gc_frees_only_attachments_the_runtime_no_longer_lists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let keep = store.allocate(&range(1, 254), "keep", "eth0").unwrap();
        let gone = store.allocate(&range(1, 254), "gone", "eth0").unwrap();
        let freed = store.retain(&[("keep".into(), "eth0".into())]).unwrap();
        assert_eq!(freed, vec![(gone, "gone".to_string(), "eth0".to_string())]);
        assert_eq!(store.lookup("keep", "eth0").unwrap(), vec![keep]);
    }
}

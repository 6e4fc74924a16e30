//! A benchmarked cluster: N member processes of one server program on
//! loopback with temporary data directories, started with etcd's flags
//! ([`Cluster::start`]), ready once every member answers and agrees on a
//! leader ([`Cluster::wait_ready`]), killed when dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};

/// Lines of each member's log shown when a cluster fails to start.
const LOG_TAIL_LINES: usize = 30;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The server program; etcd-lite and etcd take the same flags.
    pub binary: PathBuf,
    pub size: usize,
    /// Flags given to every member after the common ones.
    pub extra_args: Vec<String>,
    /// Parent of the temporary data directory (the system's default if `None`).
    pub data_root: Option<PathBuf>,
}

struct Member {
    name: String,
    client_port: u16,
    log_path: PathBuf,
    child: Child,
}

/// Running members; dropping the cluster kills them and deletes their data.
pub struct Cluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(spec: &ClusterSpec) -> Result<Cluster> {
        if !spec.binary.exists() {
            bail!("server binary {} not found", spec.binary.display());
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("etcd-bench-");
        let dir = match &spec.data_root {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .context("create the cluster's data directory")?;

        let ports = free_ports(2 * spec.size)?;
        let initial_cluster = (0..spec.size)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members: Vec::with_capacity(spec.size),
            dir,
        };
        for i in 0..spec.size {
            let name = format!("m{i}");
            let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let log_path = cluster.dir.path().join(format!("{name}.log"));
            let log = File::create(&log_path).context("create a member log")?;
            let child = Command::new(&spec.binary)
                .arg(format!("--name={name}"))
                .arg(format!(
                    "--data-dir={}",
                    cluster.dir.path().join(&name).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=etcd-bench")
                .args(&spec.extra_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {}", spec.binary.display()))?;
            cluster.members.push(Member {
                name,
                client_port,
                log_path,
                child,
            });
        }
        Ok(cluster)
    }

    /// `http://127.0.0.1:PORT` of each member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Waits until every member reports the same leader and serves a
    /// linearizable read; returns the leader's index.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            match self.probe().await {
                Ok(leader) => return Ok(leader),
                Err(e) if Instant::now() >= deadline => {
                    bail!(
                        "cluster not ready after {timeout:?}: {e:#}\n{}",
                        self.log_tails()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn probe(&self) -> Result<usize> {
        let mut member_ids = Vec::with_capacity(self.len());
        let mut leaders = Vec::with_capacity(self.len());
        for endpoint in self.endpoints() {
            let mut client = connect(&endpoint, Duration::from_secs(2)).await?;
            let status = client.status().await?;
            client.get("etcd-bench/ready", None).await?;
            member_ids.push(status.header().map(|h| h.member_id()).unwrap_or(0));
            leaders.push(status.leader());
        }
        let leader = leaders[0];
        if leader == 0 || leaders.iter().any(|&l| l != leader) {
            bail!("members do not agree on a leader yet: {leaders:x?}");
        }
        member_ids
            .iter()
            .position(|&id| id == leader)
            .context("the leader is not one of the members")
    }

    fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            if let Some(status) = self.members[i].child.try_wait()? {
                bail!(
                    "member {} exited ({status}):\n{}",
                    self.members[i].name,
                    self.log_tails()
                );
            }
        }
        Ok(())
    }

    /// Resident set size of each member in KiB (`VmRSS`), `None` once gone.
    pub fn rss_kib(&self) -> Vec<Option<u64>> {
        self.pids().into_iter().map(rss_kib).collect()
    }

    /// CPU time (user + system, all threads) each member has used so far, in ms.
    pub fn cpu_ms(&self) -> Vec<Option<u64>> {
        self.pids().into_iter().map(cpu_ms).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- {} ({}) ---\n{}",
                    m.name,
                    m.log_path.display(),
                    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            // Already exited is fine: the point is that none outlives us.
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

/// One client connection (one HTTP/2 channel) to one endpoint. Each request
/// has a deadline, so a stuck server shows up as errors, not as a hang.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    Client::connect([endpoint], Some(options))
        .await
        .with_context(|| format!("connect to {endpoint}"))
}

/// `VmRSS` of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// CPU time (user + system, all threads) a process has used, in ms, from `/proc/PID/stat`.
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields resume after it,
    // starting with field 3 (state): utime and stime (fields 14 and 15) are 11 and 12.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(ticks * 1000 / u64::try_from(per_sec).ok()?)
}

/// `count` distinct loopback ports that were free a moment ago.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("find free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

//! A cluster of real server processes on loopback: [`Cluster::spawn`] starts
//! N members of either Debian's `etcd` 3.4 or our `etcd-lite` with the same
//! etcd flags, waits until `etcdctl endpoint health` passes, and kills every
//! member when dropped. [`Cluster::kill_member`] and [`Cluster::restart_member`]
//! crash a member and bring it back on the same data directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::etcdctl::Etcdctl;
use super::wait::wait_for;

/// How long a fresh cluster may take to elect a leader and answer a
/// linearizable read on every member.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Startup attempts; a retry only happens when a member lost a race for one of
/// the free ports picked for it.
const STARTUP_ATTEMPTS: usize = 3;

/// Lines of each member's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Which server program the cluster runs. Both take the same etcd flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// Our server, built by cargo for this test (`ETCD_LITE_BIN` overrides).
    EtcdLite,
    /// Debian's `etcd` 3.4, the reference (`ETCD_BIN` overrides `/usr/bin/etcd`).
    Etcd,
}

impl Binary {
    pub fn path(self) -> PathBuf {
        match self {
            Binary::Etcd => std::env::var_os("ETCD_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
            Binary::EtcdLite => {
                if let Some(path) = std::env::var_os("ETCD_LITE_BIN") {
                    return PathBuf::from(path);
                }
                match option_env!("CARGO_BIN_EXE_etcd-lite") {
                    Some(path) => PathBuf::from(path),
                    None => panic!(
                        "the etcd-lite package has no `etcd-lite` binary target yet, \
                         so cargo built none for this test (set ETCD_LITE_BIN to use another)"
                    ),
                }
            }
        }
    }

    /// Flags only this binary understands; `ETCD_LITE_TEST_STORAGE_ENGINE`
    /// runs the suite against a chosen engine, unless the test chose one
    /// itself with `--storage-engine=...` in `extra_args`.
    fn own_args(self, extra_args: &[&str]) -> Vec<String> {
        let engine_chosen_by_test = extra_args
            .iter()
            .any(|arg| arg.starts_with("--storage-engine"));
        match self {
            Binary::EtcdLite if engine_chosen_by_test => Vec::new(),
            Binary::EtcdLite => std::env::var("ETCD_LITE_TEST_STORAGE_ENGINE")
                .map(|engine| vec![format!("--storage-engine={engine}")])
                .unwrap_or_default(),
            Binary::Etcd => Vec::new(),
        }
    }
}

/// One running member process and where it listens.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Every flag it was started with, so a restart repeats them exactly.
    #[allow(dead_code)] // read only by test binaries that restart members
    args: Vec<String>,
    log_path: PathBuf,
    child: Child,
}

impl Member {
    /// `127.0.0.1:PORT`, the form `etcdctl --endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// Members of one cluster; every process is killed when this is dropped.
pub struct Cluster {
    pub binary: Binary,
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
}

/// Why a startup attempt failed.
enum StartupError {
    /// A member could not bind a port picked as free: try other ports.
    PortTaken(String),
}

impl Cluster {
    /// Starts `size` members with default settings and waits until healthy.
    pub fn spawn(binary: Binary, size: usize) -> Cluster {
        Cluster::spawn_with(binary, size, &[])
    }

    /// Like [`Cluster::spawn`], with extra flags given to every member
    /// (for example `--max-request-bytes=1048576`).
    pub fn spawn_with(binary: Binary, size: usize, extra_args: &[&str]) -> Cluster {
        let path = binary.path();
        assert!(
            path.exists(),
            "{binary:?} binary not found at {} (install etcd-server, or build etcd-lite)",
            path.display()
        );
        let mut last_error = String::new();
        for _ in 0..STARTUP_ATTEMPTS {
            match Cluster::try_spawn(binary, &path, size, extra_args) {
                Ok(cluster) => return cluster,
                Err(StartupError::PortTaken(log)) => last_error = log,
            }
        }
        panic!("could not start a {binary:?} cluster: ports kept being taken:\n{last_error}");
    }

    fn try_spawn(
        binary: Binary,
        path: &Path,
        size: usize,
        extra_args: &[&str],
    ) -> Result<Cluster, StartupError> {
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let token = format!(
            "ferrokube-test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-cluster-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        let ports = free_ports(2 * size);
        let names: Vec<String> = (0..size).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");

        let mut cluster = Cluster {
            binary,
            members: Vec::with_capacity(size),
            dir,
        };
        for (i, name) in names.into_iter().enumerate() {
            let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
            let data_dir = cluster.dir.path().join(format!("{name}.data"));
            let log_path = cluster.dir.path().join(format!("{name}.log"));
            let log = File::create(&log_path).expect("create a member log file");
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let args: Vec<String> = [
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_string(),
                format!("--initial-cluster-token={token}"),
                "--heartbeat-interval=100".to_string(),
                "--election-timeout=1000".to_string(),
            ]
            .into_iter()
            .chain(binary.own_args(extra_args))
            .chain(extra_args.iter().map(|arg| arg.to_string()))
            .collect();
            let child = spawn_member(path, &args, log);
            cluster.members.push(Member {
                name,
                client_port,
                peer_port,
                args,
                log_path,
                child,
            });
        }
        cluster.wait_until_healthy()?;
        Ok(cluster)
    }

    /// Waits until every member answers `etcdctl endpoint health`; a member
    /// that exits meanwhile fails the test with its log (or asks for a retry
    /// when it lost its port to another process).
    fn wait_until_healthy(&mut self) -> Result<(), StartupError> {
        let probe = Etcdctl::new(self.endpoints()).with_timeouts("1s", "2s");
        let mut outcome = Ok(());
        let what = format!(
            "a {}-member {:?} cluster to be healthy",
            self.len(),
            self.binary
        );
        wait_for(&what, STARTUP_TIMEOUT, || {
            for member in &mut self.members {
                if let Some(status) = member.child.try_wait().expect("poll a member process") {
                    let log = std::fs::read_to_string(&member.log_path).unwrap_or_default();
                    // etcd writes "address already in use", etcd-lite "Address ...".
                    if log.to_lowercase().contains("address already in use") {
                        outcome = Err(StartupError::PortTaken(log));
                        return Some(());
                    }
                    panic!(
                        "member {} exited during startup ({status}); its log:\n{}",
                        member.name,
                        tail(&log, LOG_TAIL_LINES)
                    );
                }
            }
            probe.run(&["endpoint", "health"]).success().then_some(())
        });
        outcome
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Every member's endpoint, comma separated, for `--endpoints`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcdctl` pointed at every member.
    pub fn etcdctl(&self) -> Etcdctl {
        Etcdctl::new(self.endpoints())
    }

    /// `etcdctl` pointed at member `index` alone.
    pub fn etcdctl_at(&self, index: usize) -> Etcdctl {
        Etcdctl::new(self.members[index].endpoint())
    }

    /// Index of the member that every member currently reports as leader,
    /// from `etcdctl endpoint status -w json`.
    pub fn leader_index(&self) -> usize {
        wait_for(
            "every member to report the same leader",
            STARTUP_TIMEOUT,
            || {
                let statuses = self.etcdctl().json(&["endpoint", "status"]);
                let statuses = statuses.as_array()?;
                let leader = statuses[0]["Status"]["leader"].as_u64()?;
                if statuses
                    .iter()
                    .any(|s| s["Status"]["leader"].as_u64() != Some(leader))
                {
                    return None;
                }
                statuses
                    .iter()
                    .position(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader))
            },
        )
    }

    /// Kills member `index` at once (SIGKILL), as a crash would.
    pub fn kill_member(&mut self, index: usize) {
        let child = &mut self.members[index].child;
        child.kill().expect("kill a member");
        child.wait().expect("reap a killed member");
    }

    /// Starts member `index` again after [`Cluster::kill_member`], with the
    /// same flags, name, ports and data directory, as an operator restarting
    /// a crashed process would; its output goes on in the same log. Returns
    /// once it accepts client connections (it may not have a leader yet).
    #[allow(dead_code)] // not every test binary restarts members
    pub fn restart_member(&mut self, index: usize) {
        let path = self.binary.path();
        let member = &mut self.members[index];
        assert!(
            member
                .child
                .try_wait()
                .expect("poll a member process")
                .is_some(),
            "member {} is still running; kill it before restarting it",
            member.name
        );
        let mut log = OpenOptions::new()
            .append(true)
            .open(&member.log_path)
            .expect("reopen a member log file");
        writeln!(log, "----- restarted by the test -----").expect("write a member log file");
        member.child = spawn_member(&path, &member.args, log);
        let what = format!("restarted member {} to accept clients", member.name);
        wait_for(&what, STARTUP_TIMEOUT, || {
            if let Some(status) = member.child.try_wait().expect("poll a member process") {
                let log = std::fs::read_to_string(&member.log_path).unwrap_or_default();
                panic!(
                    "member {} exited after a restart ({status}); its log:\n{}",
                    member.name,
                    tail(&log, LOG_TAIL_LINES)
                );
            }
            TcpStream::connect(("127.0.0.1", member.client_port))
                .is_ok()
                .then_some(())
        });
    }

    /// Index of some member that is not the leader, to exercise forwarding.
    pub fn follower_index(&self) -> usize {
        let leader = self.leader_index();
        (0..self.len())
            .find(|&i| i != leader)
            .expect("a cluster of one member has no follower")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            // Already gone is fine; anything else would leak a process.
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
        if std::thread::panicking() {
            for member in &self.members {
                let log = std::fs::read_to_string(&member.log_path).unwrap_or_default();
                eprintln!(
                    "----- last lines of {:?} member {} ({}) -----\n{}",
                    self.binary,
                    member.name,
                    member.endpoint(),
                    tail(&log, LOG_TAIL_LINES)
                );
            }
        }
    }
}

/// Starts one member process writing its output to `log`.
fn spawn_member(path: &Path, args: &[String], log: File) -> Child {
    Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", path.display()))
}

/// `count` distinct loopback ports that were free a moment ago: all are bound
/// at once (so they differ), then released for the members to take.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

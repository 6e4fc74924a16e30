//! Crash and restart of single members of a real 3-member `etcd-lite` cluster
//! while clients write: nothing acknowledged is lost, on either disk engine.
//!
//! Entry point: one test per engine, both running
//! [`acknowledged_writes_survive_sigkill_of_leader_and_follower`]. Members are
//! real processes ([`Cluster`]) killed with SIGKILL and restarted on their data
//! directories; clients are the `etcd-client` crate, driven by a tokio runtime
//! owned by the (synchronous) test thread.

// Each test binary compiles the whole support module but uses only part of it.
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use support::{wait_for, Binary, Cluster};
use tokio::runtime::Runtime;

/// Concurrent writers, each with its own client.
const WRITERS: usize = 8;
/// Acknowledged writes before the leader is killed, then again before a
/// follower is killed, then after both killed members are back.
const ACKS_PER_PHASE: [usize; 3] = [300, 300, 150];
/// Bounds on each writer, whatever happens to the cluster.
const MAX_PUTS_PER_WRITER: usize = 2_000;
const WRITE_PHASE_LIMIT: Duration = Duration::from_secs(40);
/// A put not answered by then counts as failed (it may still be applied later).
const PUT_TIMEOUT: Duration = Duration::from_secs(3);
/// A writer whose put failed waits this long before the next one, so it does
/// not spin while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long the cluster may take to reach the next state the test waits for
/// (a phase's acknowledgements, a leader, a member catching up).
const PHASE_TIMEOUT: Duration = Duration::from_secs(25);
/// A snapshot every 200 entries, after which the log is purged but for the
/// last 50: several of each happen per run, and a restarted member may need a
/// snapshot to catch up.
const SNAPSHOT_FLAGS: [&str; 2] = ["--snapshot-count=200", "--snapshot-catchup-entries=50"];
const PREFIX: &str = "crash/";

#[test]
fn acknowledged_writes_survive_sigkill_of_leader_and_follower_redb() {
    acknowledged_writes_survive_sigkill_of_leader_and_follower("redb");
}

#[test]
fn acknowledged_writes_survive_sigkill_of_leader_and_follower_sled() {
    acknowledged_writes_survive_sigkill_of_leader_and_follower("sled");
}

/// Writers put unique keys and remember each acknowledged one while the
/// leader is SIGKILLed, then a follower is SIGKILLed and restarted, then the
/// first member is restarted. Afterwards every member serves every
/// acknowledged key with its value, and all members agree on the revision and
/// contents. Finally the whole cluster is SIGKILLed and restarted: as no
/// member keeps anything in memory, the data can only come from the data
/// directories, and it must come back unchanged.
fn acknowledged_writes_survive_sigkill_of_leader_and_follower(engine: &str) {
    let engine_flag = format!("--storage-engine={engine}");
    let mut flags = vec![engine_flag.as_str()];
    flags.extend(SNAPSHOT_FLAGS);
    let mut cluster = Cluster::spawn_with(Binary::EtcdLite, 3, &flags);
    let rt = Runtime::new().expect("start a tokio runtime");
    let urls: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();

    let progress = Arc::new(Progress::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|task| {
            // Each writer lists every member, starting at a different one.
            let mut endpoints = urls.clone();
            endpoints.rotate_left(task % urls.len());
            rt.spawn(write_until_stopped(task, endpoints, progress.clone()))
        })
        .collect();

    progress.wait_for_more_acks(ACKS_PER_PHASE[0]);
    let first_killed = cluster.leader_index();
    cluster.kill_member(first_killed);
    progress.report(&format!("killed the leader, member {first_killed}"));

    progress.wait_for_more_acks(ACKS_PER_PHASE[1]);
    let survivors: Vec<usize> = (0..cluster.len()).filter(|&i| i != first_killed).collect();
    let new_leader = wait_for("the survivors to agree on a leader", PHASE_TIMEOUT, || {
        rt.block_on(leader_among(&urls, &survivors))
    });
    let second_killed = *survivors
        .iter()
        .find(|&&i| i != new_leader)
        .expect("two survivors");
    cluster.kill_member(second_killed);
    progress.report(&format!("killed a follower, member {second_killed}"));
    cluster.restart_member(second_killed);
    progress.report(&format!("restarted member {second_killed}"));
    cluster.restart_member(first_killed);
    progress.report(&format!("restarted member {first_killed}"));

    progress.wait_for_more_acks(ACKS_PER_PHASE[2]);
    progress.stop.store(true, Ordering::Relaxed);
    let acknowledged: BTreeSet<String> = rt
        .block_on(futures::future::join_all(writers))
        .into_iter()
        .flat_map(|writer| writer.expect("a writer task panicked"))
        .collect();

    let agreed = every_member_serves_and_agrees(&rt, &urls, &acknowledged);
    eprintln!(
        "{} acknowledged writes; every member serves them and agrees on revision {} with {} keys",
        acknowledged.len(),
        agreed.revision,
        agreed.kvs.len()
    );

    for i in 0..cluster.len() {
        cluster.kill_member(i);
    }
    for i in 0..cluster.len() {
        cluster.restart_member(i);
    }
    let after_restart = every_member_serves_and_agrees(&rt, &urls, &acknowledged);
    assert!(
        after_restart == agreed,
        "restarting the whole cluster changed the contents of {PREFIX} or the history: \
         revision {} with {} keys (history hash {:?}) before, \
         revision {} with {} keys (history hash {:?}) after",
        agreed.revision,
        agreed.kvs.len(),
        agreed.history_hash,
        after_restart.revision,
        after_restart.kvs.len(),
        after_restart.history_hash
    );
}

/// Waits until every member serves, from its own state (serializable reads),
/// every acknowledged key with the value written, then until linearizable
/// reads through every member return the same revision and contents under
/// [`PREFIX`], and every member hashes its stored history up to that
/// revision alike (HashKV); returns those.
fn every_member_serves_and_agrees(
    rt: &Runtime,
    urls: &[String],
    acknowledged: &BTreeSet<String>,
) -> Contents {
    for (i, url) in urls.iter().enumerate() {
        eventually(
            &format!("member {i} to serve every acknowledged write"),
            || {
                let contents = rt.block_on(read_prefix(url, Read::Serializable))?;
                let missing: Vec<&String> = acknowledged
                    .iter()
                    .filter(|key| !contents.kvs.contains_key(*key))
                    .collect();
                if let Some(first) = missing.first() {
                    return Err(format!(
                        "member {i} misses {} of {} acknowledged keys (first: {first})",
                        missing.len(),
                        acknowledged.len()
                    ));
                }
                Ok(())
            },
        );
    }
    let agreed = eventually("every member to agree on the contents", || {
        let mut reads = Vec::new();
        for url in urls {
            reads.push(rt.block_on(read_prefix(url, Read::Linearizable))?);
        }
        if reads.iter().any(|r| *r != reads[0]) {
            let revisions: Vec<i64> = reads.iter().map(|r| r.revision).collect();
            return Err(format!("members disagree (revisions {revisions:?})"));
        }
        Ok(reads.swap_remove(0))
    });
    let revision = agreed.revision;
    let history_hash = eventually("every member to hash its history alike", || {
        let mut hashes = Vec::new();
        for url in urls {
            hashes.push(rt.block_on(history_hash(url, revision))?);
        }
        if hashes.iter().any(|h| *h != hashes[0]) {
            return Err(format!("members' history hashes differ: {hashes:?}"));
        }
        Ok(hashes[0])
    });
    let agreed = Contents {
        history_hash: Some(history_hash),
        ..agreed
    };
    for key in acknowledged {
        let value = agreed.kvs.get(key).map(|(value, _)| value);
        assert_eq!(
            value,
            Some(&value_of(key)),
            "linearizable reads do not return {key} with its acknowledged value"
        );
    }
    agreed
}

/// Shared between the test thread and the writers.
#[derive(Default)]
struct Progress {
    acknowledged: AtomicUsize,
    stop: AtomicBool,
}

impl Progress {
    /// One line on stderr, shown when the test fails.
    fn report(&self, event: &str) {
        let acknowledged = self.acknowledged.load(Ordering::Relaxed);
        eprintln!("{event} after {acknowledged} acknowledged writes");
    }

    fn wait_for_more_acks(&self, more: usize) {
        let target = self.acknowledged.load(Ordering::Relaxed) + more;
        eventually(&format!("{target} acknowledged writes"), || {
            match self.acknowledged.load(Ordering::Relaxed) {
                done if done >= target => Ok(()),
                done => Err(format!("only {done} so far")),
            }
        });
    }
}

/// Puts `crash/<task>/<n>` for n = 0, 1, ... until told to stop (or a bound
/// is hit), and returns the keys whose put was acknowledged. Failed puts are
/// expected while members are down and are not retried under the same key.
async fn write_until_stopped(
    task: usize,
    endpoints: Vec<String>,
    progress: Arc<Progress>,
) -> Vec<String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(PUT_TIMEOUT);
    let mut client = Client::connect(endpoints, Some(options))
        .await
        .expect("connect a writer to the cluster");
    let deadline = Instant::now() + WRITE_PHASE_LIMIT;
    let mut acknowledged = Vec::new();
    for n in 0..MAX_PUTS_PER_WRITER {
        if progress.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        let key = format!("{PREFIX}{task}/{n:05}");
        match client.put(key.clone(), value_of(&key), None).await {
            Ok(_) => {
                acknowledged.push(key);
                progress.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
    acknowledged
}

fn value_of(key: &str) -> Vec<u8> {
    format!("value of {key}").into_bytes()
}

#[derive(Clone, Copy, Debug)]
enum Read {
    /// What the member itself has applied.
    Serializable,
    /// Confirmed with the leader: the cluster's current state.
    Linearizable,
}

/// Everything under [`PREFIX`] as one member answered, at one revision.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    revision: i64,
    /// key -> (value, mod revision)
    kvs: BTreeMap<String, (Vec<u8>, i64)>,
    /// The members' HashKV at `revision`, once they agree on it.
    history_hash: Option<u32>,
}

/// Longer than a member's own request timeout (5 s plus two election
/// timeouts), so a read that cannot be served ends with the member's error
/// rather than being cancelled by the client.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads [`PREFIX`] through the member at `url` alone.
async fn read_prefix(url: &str, read: Read) -> Result<Contents, String> {
    let mut client = connect(url).await?;
    let mut get = GetOptions::new().with_prefix();
    if let Read::Serializable = read {
        get = get.with_serializable();
    }
    let response = client
        .get(PREFIX, Some(get))
        .await
        .map_err(|e| format!("{read:?} get through {url}: {e}"))?;
    let revision = response
        .header()
        .ok_or_else(|| format!("{url} answered without a header"))?
        .revision();
    let kvs = response
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().expect("keys are UTF-8").to_string();
            (key, (kv.value().to_vec(), kv.mod_revision()))
        })
        .collect();
    Ok(Contents {
        revision,
        kvs,
        history_hash: None,
    })
}

/// A client of the member at `url` alone, with [`READ_TIMEOUT`] per request.
async fn connect(url: &str) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(READ_TIMEOUT);
    Client::connect([url], Some(options))
        .await
        .map_err(|e| format!("connect to {url}: {e}"))
}

/// The member's HashKV of its stored history up to `revision`.
async fn history_hash(url: &str, revision: i64) -> Result<u32, String> {
    let mut client = connect(url).await?;
    client
        .hash_kv(revision)
        .await
        .map(|r| r.hash())
        .map_err(|e| format!("hashkv through {url}: {e}"))
}

/// Index (into `urls`) of the member that every member in `members` reports
/// as leader, or `None` while they do not agree or cannot be reached.
async fn leader_among(urls: &[String], members: &[usize]) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leaders = BTreeSet::new();
    for &i in members {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut client = Client::connect([&urls[i]], Some(options)).await.ok()?;
        let status = client.status().await.ok()?;
        ids.push((i, status.header()?.member_id()));
        leaders.insert(status.leader());
    }
    if leaders.len() != 1 {
        return None;
    }
    let leader = leaders.pop_first()?;
    ids.into_iter()
        .find(|&(_, id)| id == leader)
        .map(|(i, _)| i)
}

/// [`wait_for`] a probe that explains why it is not done yet; on timeout the
/// panic carries the last explanation.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let outcome = wait_for(what, PHASE_TIMEOUT * 2, || match probe() {
        Ok(value) => Some(Ok(value)),
        Err(why) if Instant::now() >= deadline => Some(Err(why)),
        Err(_) => None,
    });
    outcome
        .unwrap_or_else(|why| panic!("timed out after {PHASE_TIMEOUT:?} waiting for {what}: {why}"))
}

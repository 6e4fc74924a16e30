//! In-process 3-member clusters on port 0: leader failover, quorum loss, catch-up
//! by snapshot, linearizable reads through followers, leases across a leader change.
//!
//! Members are real (`Member::start` with the default disk engine in temp dirs,
//! real gRPC on loopback); clients are the `etcd-client` crate.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use etcd_lite::{Config, Listeners, Member, MemberConfig};
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};

const ELECTION_MS: u64 = 500;

struct TestCluster {
    _dir: tempfile::TempDir,
    configs: Vec<MemberConfig>,
    members: Vec<Option<Member>>,
}

async fn bind_free() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A member's configuration, from the same flags the binary takes.
fn member_config(
    name: &str,
    data_dir: &std::path::Path,
    client: SocketAddr,
    peer: SocketAddr,
    initial_cluster: &str,
    state: &str,
    extra: &[&str],
) -> MemberConfig {
    let mut args: Vec<String> = vec![
        "etcd-lite".into(),
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls=http://{client}"),
        format!("--advertise-client-urls=http://{client}"),
        format!("--listen-peer-urls=http://{peer}"),
        format!("--initial-advertise-peer-urls=http://{peer}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        "--heartbeat-interval=50".into(),
        format!("--election-timeout={ELECTION_MS}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).unwrap().validate().unwrap()
}

impl TestCluster {
    async fn start(n: usize, extra: &[&str]) -> TestCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut peers = Vec::new();
        for i in 0..n {
            let (client, caddr) = bind_free().await;
            let (peer, paddr) = bind_free().await;
            listeners.push((client, caddr, peer, paddr));
            peers.push(format!("m{i}=http://{paddr}"));
        }
        let initial_cluster = peers.join(",");
        let mut configs = Vec::new();
        let mut starts = Vec::new();
        for (i, (client, caddr, peer, paddr)) in listeners.into_iter().enumerate() {
            let member_dir = dir.path().join(format!("m{i}"));
            let cfg = member_config(
                &format!("m{i}"),
                &member_dir,
                caddr,
                paddr,
                &initial_cluster,
                "new",
                extra,
            );
            configs.push(cfg.clone());
            starts.push(Member::start(
                cfg,
                Listeners {
                    client: vec![client],
                    peer: vec![peer],
                },
            ));
        }
        let members = futures::future::join_all(starts)
            .await
            .into_iter()
            .map(|m| Some(m.unwrap()))
            .collect();
        TestCluster {
            _dir: dir,
            configs,
            members,
        }
    }

    fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.configs[i].listen_client_urls[0])
    }

    async fn client(&self, i: usize) -> Client {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(15));
        Client::connect([self.endpoint(i)], Some(opts))
            .await
            .unwrap()
    }

    /// The index of the member every running member agrees is leader.
    async fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<(usize, &Member)> = self
                .members
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
                .collect();
            let leaders: BTreeSet<Option<u64>> = running
                .iter()
                .map(|(_, m)| m.node().status().leader)
                .collect();
            if leaders.len() == 1 {
                if let Some(Some(id)) = leaders.into_iter().next() {
                    if let Some((i, _)) = running.iter().find(|(_, m)| m.id() == id) {
                        return *i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self, i: usize) {
        self.members[i]
            .take()
            .expect("member running")
            .shutdown()
            .await;
    }

    async fn restart(&mut self, i: usize) {
        let cfg = self.configs[i].clone();
        let client = TcpListener::bind(cfg.listen_client_urls[0]).await.unwrap();
        let peer = TcpListener::bind(cfg.listen_peer_urls[0]).await.unwrap();
        let m = Member::start(
            cfg,
            Listeners {
                client: vec![client],
                peer: vec![peer],
            },
        )
        .await
        .unwrap();
        self.members[i] = Some(m);
    }

    async fn shutdown(mut self) {
        for i in 0..self.members.len() {
            if self.members[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// Polls `check` until it returns Some, or panics after `within`.
async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every key under `prefix` as member `i` has it (serializable: what that member applied).
async fn local_keys(c: &TestCluster, i: usize, prefix: &str) -> BTreeSet<String> {
    let mut client = c.client(i).await;
    let resp = client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect()
}

/// Waits until members `ids` hash their stored history up to `revision` alike
/// (a member may still be applying up to it) and returns that hash.
async fn agreed_history_hash(c: &TestCluster, ids: &[usize], revision: i64) -> u32 {
    wait_for(
        Duration::from_secs(10),
        "the members to hash their history alike",
        || async {
            let mut hashes = Vec::new();
            for &i in ids {
                match c.client(i).await.hash_kv(revision).await {
                    Ok(resp) => hashes.push(resp.hash()),
                    Err(_) => return None,
                }
            }
            hashes.windows(2).all(|w| w[0] == w[1]).then(|| hashes[0])
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_keeps_every_acknowledged_write_and_watch_order() {
    let mut c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A watch on a member that survives, from the first revision.
    let mut watch_client = c.client(survivor).await;
    let mut stream = watch_client
        .watch(
            "failover/",
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await
        .unwrap();

    // Writes go through a member that survives (forwarded to the leader).
    let mut writer = c.client(other).await;
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    while acked.len() < 100 {
        attempts += 1;
        let key = format!("failover/{attempts:05}");
        if writer.put(key.clone(), "v", None).await.is_ok() {
            acked.insert(key);
        }
        if acked.len() == 50 && c.members[leader].is_some() {
            tracing::info!("test: stopping the leader");
            c.stop(leader).await;
            tracing::info!("test: leader stopped");
        }
        assert!(
            attempts < 2000,
            "writes kept failing after the leader stopped"
        );
    }
    let new_leader = c.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);

    for i in [survivor, other] {
        let have = wait_for(
            Duration::from_secs(10),
            "acknowledged writes on every member",
            || async {
                let have = local_keys(&c, i, "failover/").await;
                acked.is_subset(&have).then_some(have)
            },
        )
        .await;
        assert!(
            acked.is_subset(&have),
            "member {i} lost acknowledged writes"
        );
    }
    // Beyond the keys: the survivors hold the same history, revision by revision.
    let revision = writer
        .get("failover/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    agreed_history_hash(&c, &[survivor, other], revision).await;

    // The watch saw every acknowledged key, in strictly increasing revisions.
    let mut seen = BTreeSet::new();
    let mut last_rev = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !acked.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = timeout(left, stream.message())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        for ev in msg.events() {
            let kv = ev.kv().unwrap();
            assert!(
                kv.mod_revision() > last_rev,
                "watch revisions went {last_rev} -> {}",
                kv.mod_revision()
            );
            last_rev = kv.mod_revision();
            assert_eq!(ev.event_type(), EventType::Put);
            assert!(
                seen.insert(kv.key_str().unwrap().to_string()),
                "duplicate event"
            );
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_quorum_makes_writes_unavailable_and_restarting_loses_nothing() {
    let mut c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut client = c.client(leader).await;
    for i in 0..20 {
        client.put(format!("q/{i}"), "before", None).await.unwrap();
    }
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;
    c.stop(a).await;
    c.stop(b).await;

    let err = timeout(Duration::from_secs(30), client.put("q/lost", "x", None))
        .await
        .expect("a write without quorum must fail in bounded time, not hang")
        .expect_err("a write without quorum must not be acknowledged");
    let etcd_client::Error::GRpcStatus(status) = err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    c.restart(a).await;
    c.restart(b).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut client = c.client(leader).await;
    client.put("q/after", "x", None).await.unwrap();
    for i in 0..3 {
        let have = wait_for(
            Duration::from_secs(10),
            "all writes after restart",
            || async {
                let have = local_keys(&c, i, "q/").await;
                have.contains("q/after").then_some(have)
            },
        )
        .await;
        for k in 0..20 {
            assert!(have.contains(&format!("q/{k}")), "member {i} lost q/{k}");
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_was_down_catches_up_by_snapshot() {
    let mut c =
        TestCluster::start(3, &["--snapshot-count=50", "--snapshot-catchup-entries=10"]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let lagging = (leader + 1) % 3;
    c.stop(lagging).await;
    let mut client = c.client(leader).await;
    for i in 0..300 {
        client
            .put(format!("snap/{i:04}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    // The leader has purged entries the lagging member misses, so only a snapshot helps.
    let leader_node = c.members[leader].as_ref().unwrap().node().clone();
    wait_for(
        Duration::from_secs(10),
        "the leader to purge its log",
        || async {
            let purged = leader_node.raft.metrics().borrow().purged;
            purged.is_some_and(|p| p.index > 10).then_some(())
        },
    )
    .await;
    c.restart(lagging).await;
    wait_for(
        Duration::from_secs(20),
        "the restarted member to catch up",
        || async {
            let have = local_keys(&c, lagging, "snap/").await;
            (have.len() == 300).then_some(())
        },
    )
    .await;
    // It serves the same data as the leader, values and revisions included.
    let mut lc = c.client(lagging).await;
    let theirs = lc
        .get("snap/0123", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    let ours = client.get("snap/0123", None).await.unwrap();
    assert_eq!(theirs.kvs()[0].value(), b"v123");
    assert_eq!(theirs.kvs()[0].mod_revision(), ours.kvs()[0].mod_revision());
    // And the whole history the snapshot carried is the leader's.
    let revision = ours.header().unwrap().revision();
    agreed_history_hash(&c, &[leader, lagging], revision).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_reads_on_a_follower_see_writes_made_through_another_member() {
    let c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let mut w = c.client(leader).await;
    let mut r = c.client(follower).await;
    for i in 0..50 {
        let value = format!("v{i}");
        w.put("lin/key", value.clone(), None).await.unwrap();
        let got = r.get("lin/key", None).await.unwrap();
        assert_eq!(
            got.kvs()[0].value(),
            value.as_bytes(),
            "stale linearizable read at step {i}"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_expiry_deletes_keys_also_after_a_leader_change() {
    let mut c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let mut client = c.client(follower).await;
    let lease = client.lease_grant(2, None).await.unwrap().id();
    client
        .put("lease/k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 2, "ttl {}", ttl.ttl());
    c.stop(leader).await;
    c.wait_leader(Duration::from_secs(10)).await;
    let endpoint = c.endpoint(follower);
    wait_for(Duration::from_secs(15), "the leased key to expire", || {
        let endpoint = endpoint.clone();
        async move {
            let mut client = Client::connect([endpoint], None).await.ok()?;
            let resp = client.get("lease/k", None).await.ok()?;
            resp.kvs().is_empty().then_some(())
        }
    })
    .await;
    let gone = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(gone.ttl(), -1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_add_then_start_existing_joins_and_member_remove_leaves() {
    let mut c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut client = c.client(leader).await;
    for i in 0..20 {
        client.put(format!("join/{i:02}"), "v", None).await.unwrap();
    }

    // etcdctl member add, then start the new member with --initial-cluster-state existing.
    let (client_l, caddr) = bind_free().await;
    let (peer_l, paddr) = bind_free().await;
    let peer_url = format!("http://{paddr}");
    let added = client.member_add([peer_url.as_str()], None).await.unwrap();
    let new_id = added.member().unwrap().id();
    let mut initial: Vec<String> = c
        .configs
        .iter()
        .map(|cfg| format!("{}={}", cfg.name, cfg.advertise_peer_urls[0]))
        .collect();
    initial.push(format!("m3={peer_url}"));
    let dir = c._dir.path().join("m3");
    let cfg = member_config(
        "m3",
        &dir,
        caddr,
        paddr,
        &initial.join(","),
        "existing",
        &[],
    );
    let m3 = Member::start(
        cfg.clone(),
        Listeners {
            client: vec![client_l],
            peer: vec![peer_l],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        m3.id(),
        new_id,
        "the new member computes the id MemberAdd gave it"
    );
    c.configs.push(cfg);
    c.members.push(Some(m3));

    wait_for(
        Duration::from_secs(15),
        "the new member to receive the data",
        || async { (local_keys(&c, 3, "join/").await.len() == 20).then_some(()) },
    )
    .await;
    let listed = wait_for(
        Duration::from_secs(10),
        "the new member to publish itself",
        || async {
            let mut cl = c.client(0).await;
            let list = cl.member_list().await.ok()?;
            let m = list.members().iter().find(|m| m.id() == new_id)?.clone();
            (m.name() == "m3").then_some(list)
        },
    )
    .await;
    assert_eq!(listed.members().len(), 4);
    // Writes through the new member are forwarded and replicated.
    let mut via_new = c.client(3).await;
    via_new.put("join/new", "x", None).await.unwrap();

    let removed = client.member_remove(new_id).await.unwrap();
    assert_eq!(removed.members().len(), 3);
    assert!(removed.members().iter().all(|m| m.id() != new_id));
    let err = client
        .member_remove(new_id)
        .await
        .expect_err("removing twice");
    assert!(err.to_string().contains("member not found"), "{err}");
    client.put("join/after-remove", "y", None).await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_linearizable_read_given_up_without_quorum_does_not_block_later_reads() {
    let mut c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut client = c.client(leader).await;
    client.put("giveup/k", "v", None).await.unwrap();
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;
    c.stop(a).await;
    c.stop(b).await;
    // The client gives up long before the member's request timeout.
    let read = timeout(Duration::from_millis(300), client.get("giveup/k", None)).await;
    assert!(
        read.is_err(),
        "a linearizable read without quorum must not succeed: {read:?}"
    );
    c.restart(a).await;
    c.restart(b).await;
    c.wait_leader(Duration::from_secs(10)).await;
    for i in 0..3 {
        let mut cl = c.client(i).await;
        let got = timeout(Duration::from_secs(10), cl.get("giveup/k", None))
            .await
            .expect("linearizable reads work again once quorum is back")
            .unwrap();
        assert_eq!(got.kvs()[0].value(), b"v", "member {i}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_a_follower_each_get_their_own_result() {
    let c = TestCluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let client = c.client(follower).await;
    // Enough at once that the follower packs several into one forwarded message.
    let writes = (0..200).map(|i| {
        let mut client = client.clone();
        async move {
            let resp = client
                .put(
                    format!("fwd/{i:03}"),
                    format!("v{i}"),
                    Some(PutOptions::new().with_prev_key()),
                )
                .await
                .unwrap();
            (
                i,
                resp.header().unwrap().revision(),
                resp.prev_key().is_some(),
            )
        }
    });
    let results = futures::future::join_all(writes).await;
    let revisions: BTreeSet<i64> = results.iter().map(|(_, rev, _)| *rev).collect();
    assert_eq!(
        revisions.len(),
        200,
        "every write has its own revision: {results:?}"
    );
    assert!(
        results.iter().all(|(_, _, prev)| !prev),
        "no key existed before"
    );

    // Each key holds its own value, at the revision its write was answered with.
    let mut reader = c.client(leader).await;
    let got = reader
        .get("fwd/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(got.kvs().len(), 200);
    for (i, rev, _) in &results {
        let kv = got
            .kvs()
            .iter()
            .find(|kv| kv.key() == format!("fwd/{i:03}").as_bytes())
            .unwrap();
        assert_eq!(kv.value(), format!("v{i}").as_bytes());
        assert_eq!(kv.mod_revision(), *rev, "fwd/{i:03}");
    }
    c.shutdown().await;
}

//! Debian's `etcdctl` 3.4 against a real 3-member cluster, asserting on what
//! a user sees: stdout, the `Error:` line, the exit status.
//!
//! Every scenario runs twice: in `mod etcd` against Debian's `etcd` 3.4 (the
//! reference, which proves the scenario itself is right) and in
//! `mod etcd_lite` against our server with the same flags. `mod compat` plays
//! one script against both and compares the normalized transcripts.

mod support;

use std::time::Duration;

use support::compare::{assert_same_transcript, Script};
use support::{wait_for, Binary, Cluster, Etcdctl};

/// How long a watch event or a replicated effect may take to show up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Generates one `#[test]` per scenario and binary.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod etcd {
            $(#[test] fn $scenario() { super::$scenario(super::Binary::Etcd) })*
        }
        mod etcd_lite {
            $(#[test] fn $scenario() { super::$scenario(super::Binary::EtcdLite) })*
        }
    };
}

scenarios!(
    put_get_prefix_and_del_through_a_follower,
    json_output_carries_revisions_and_get_reads_old_revisions,
    txn_from_stdin_takes_the_success_or_the_failure_branch,
    watch_replays_history_from_a_revision_then_streams_live_events,
    lease_grant_keepalive_timetolive_and_revoke,
    key_attached_to_an_expired_lease_is_deleted,
    compaction_makes_older_revisions_unreadable,
    defrag_gives_back_the_space_of_compacted_revisions,
    endpoint_hashkv_agrees_across_members_and_is_stable_per_revision,
    member_list_and_endpoint_status_agree_on_members_and_leader,
    endpoint_health_passes_and_cluster_serves_with_one_member_down,
    invalid_requests_get_etcds_errors,
);

fn put_get_prefix_and_del_through_a_follower(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let follower_index = cluster.follower_index();
    let follower = cluster.etcdctl_at(follower_index);

    assert_eq!(follower.ok(&["put", "/fruit/apple", "red"]), "OK\n");
    assert_eq!(follower.ok(&["put", "/fruit/banana", "yellow"]), "OK\n");
    assert_eq!(follower.ok(&["put", "/vegetable/kale", "green"]), "OK\n");
    assert_eq!(follower.ok(&["put", "/fruit/apple", "green"]), "OK\n");

    assert_eq!(
        follower.ok(&["get", "--prefix", "/fruit/"]),
        "/fruit/apple\ngreen\n/fruit/banana\nyellow\n"
    );
    assert_eq!(
        follower.ok(&["get", "--prefix", "/fruit/", "--keys-only"]),
        "/fruit/apple\n\n/fruit/banana\n\n"
    );
    assert_eq!(
        follower.ok(&["get", "--from-key", "/fruit/b", "--print-value-only"]),
        "yellow\ngreen\n"
    );
    assert_eq!(follower.ok(&["get", "/nothing/here"]), "");

    // A linearizable read on any member sees the acknowledged write.
    for i in 0..cluster.len() {
        assert_eq!(
            cluster
                .etcdctl_at(i)
                .ok(&["get", "/fruit/apple", "--print-value-only"]),
            "green\n",
            "member {i} missed an acknowledged write"
        );
    }
    // A serializable read is local, so it may lag, but it converges.
    for i in 0..cluster.len() {
        let member = cluster.etcdctl_at(i);
        wait_for("serializable reads to converge", EVENT_TIMEOUT, || {
            let value = member.ok(&[
                "get",
                "/fruit/apple",
                "--consistency=s",
                "--print-value-only",
            ]);
            (value == "green\n").then_some(())
        });
    }

    assert_eq!(follower.ok(&["del", "/fruit/apple"]), "1\n");
    assert_eq!(follower.ok(&["del", "/fruit/apple"]), "0\n");
    assert_eq!(follower.ok(&["del", "--prefix", "/fruit/"]), "1\n");
    assert_eq!(follower.ok(&["get", "--prefix", "/fruit/"]), "");
    assert_eq!(
        follower.ok(&["get", "--prefix", "/"]),
        "/vegetable/kale\ngreen\n"
    );
}

fn json_output_carries_revisions_and_get_reads_old_revisions(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();

    let first = revision(&etcdctl.json(&["put", "/k", "v1"]));
    let second = revision(&etcdctl.json(&["put", "/k", "v2"]));
    assert_eq!(second, first + 1, "each put advances the revision by one");

    let got = etcdctl.json(&["get", "/k"]);
    assert_eq!(revision(&got), second);
    assert_eq!(got["count"], 1);
    let kv = &got["kvs"][0];
    assert_eq!(kv["key"], base64("/k"));
    assert_eq!(kv["value"], base64("v2"));
    assert_eq!(kv["create_revision"], first);
    assert_eq!(kv["mod_revision"], second);
    assert_eq!(kv["version"], 2);

    assert_eq!(
        etcdctl.ok(&["get", "/k", &format!("--rev={first}")]),
        "/k\nv1\n"
    );
    assert_eq!(
        etcdctl.ok(&["get", "/k", &format!("--rev={second}")]),
        "/k\nv2\n"
    );

    let deleted = etcdctl.json(&["del", "/k"]);
    assert_eq!(deleted["deleted"], 1);
    assert_eq!(revision(&deleted), second + 1);
    // The key is gone now, but still readable as it was.
    assert_eq!(etcdctl.ok(&["get", "/k"]), "");
    assert_eq!(
        etcdctl.ok(&["get", "/k", &format!("--rev={second}")]),
        "/k\nv2\n"
    );
    // A recreated key starts a new life: version 1, new create revision.
    let recreated = revision(&etcdctl.json(&["put", "/k", "v3"]));
    let kv = &etcdctl.json(&["get", "/k"])["kvs"][0];
    assert_eq!(kv["create_revision"], recreated);
    assert_eq!(kv["version"], 1);
}

fn txn_from_stdin_takes_the_success_or_the_failure_branch(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl_at(cluster.follower_index());
    etcdctl.ok(&["put", "/txn/k", "v"]);

    let interactive = etcdctl.run_with_stdin(
        &["txn", "-i"],
        b"mod(\"/txn/k\") > \"0\"\n\nput /txn/then yes\nget /txn/k\n\nput /txn/else no\n\n",
    );
    assert!(interactive.success(), "{interactive:?}");
    assert_eq!(
        interactive.stdout,
        "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n\
         SUCCESS\n\nOK\n\n/txn/k\nv\n"
    );
    assert_eq!(
        etcdctl.ok(&["get", "--prefix", "/txn/"]),
        "/txn/k\nv\n/txn/then\nyes\n"
    );

    let failed = etcdctl.run_with_stdin(
        &["txn"],
        b"value(\"/txn/k\") = \"other\"\n\nput /txn/then again\n\nput /txn/else no\ndel /txn/then\n\n",
    );
    assert!(failed.success(), "{failed:?}");
    assert_eq!(failed.stdout, "FAILURE\n\nOK\n\n1\n");
    assert_eq!(
        etcdctl.ok(&["get", "--prefix", "/txn/"]),
        "/txn/else\nno\n/txn/k\nv\n"
    );

    // Create-if-absent, the idiom the apiserver uses for every create.
    let create = b"version(\"/txn/new\") = \"0\"\n\nput /txn/new first\n\nget /txn/new\n\n";
    let first = etcdctl.run_with_stdin(&["txn"], create);
    assert_eq!(first.stdout, "SUCCESS\n\nOK\n");
    let second = etcdctl.run_with_stdin(&["txn"], create);
    assert_eq!(second.stdout, "FAILURE\n\n/txn/new\nfirst\n");

    let json = etcdctl.run_with_stdin(&["txn", "-w", "json"], create);
    let json: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("txn JSON");
    assert_eq!(
        json["succeeded"],
        serde_json::Value::Null,
        "false is omitted"
    );
    let range = &json["responses"][0]["Response"]["ResponseRange"];
    assert_eq!(range["kvs"][0]["value"], base64("first"));
}

fn watch_replays_history_from_a_revision_then_streams_live_events(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();

    let start = revision(&etcdctl.json(&["put", "/w/a", "1"]));
    etcdctl.ok(&["put", "/w/a", "2"]);
    etcdctl.ok(&["put", "/other", "x"]);
    etcdctl.ok(&["del", "/w/a"]);

    let mut watch = etcdctl.spawn_watch(&["watch", "--prefix", "/w/", &format!("--rev={start}")]);
    assert_eq!(
        watch.expect_lines(9, EVENT_TIMEOUT),
        ["PUT", "/w/a", "1", "PUT", "/w/a", "2", "DELETE", "/w/a", ""]
    );

    // The watch is established (it delivered history): new writes stream live,
    // through a follower, and keys outside the prefix stay out.
    let follower = cluster.etcdctl_at(cluster.follower_index());
    follower.ok(&["put", "/outside", "y"]);
    follower.ok(&["put", "/w/b", "live"]);
    follower.ok(&["del", "/w/b"]);
    assert_eq!(
        watch.expect_lines(6, EVENT_TIMEOUT),
        ["PUT", "/w/b", "live", "DELETE", "/w/b", ""]
    );
    drop(watch);

    // A watch from "now" (no --rev) on a single key: once one of the probing
    // puts arrives, it is established and must see what follows.
    let mut live = follower.spawn_watch(&["watch", "/w/live"]);
    let mut probe = 0;
    wait_for(
        "a watch without --rev to be established",
        EVENT_TIMEOUT,
        || {
            probe += 1;
            etcdctl.ok(&["put", "/w/live", &format!("probe-{probe}")]);
            live.next_line(Duration::from_millis(200))
                .filter(|line| line == "PUT")
        },
    );
    etcdctl.ok(&["put", "/w/live", "final"]);
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("final") {
        seen.extend(live.expect_lines(1, EVENT_TIMEOUT));
    }
    assert_eq!(seen[seen.len() - 3..], ["PUT", "/w/live", "final"]);
}

fn lease_grant_keepalive_timetolive_and_revoke(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl_at(cluster.follower_index());

    let granted = etcdctl.ok(&["lease", "grant", "100"]);
    let id = lease_id(&granted);
    assert_eq!(granted, format!("lease {id} granted with TTL(100s)\n"));

    assert_eq!(
        etcdctl.ok(&["put", "--lease", &id, "/lease/k", "v"]),
        "OK\n"
    );
    assert_eq!(
        etcdctl.ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(100)\n")
    );

    let ttl = etcdctl.ok(&["lease", "timetolive", "--keys", &id]);
    let prefix = format!("lease {id} granted with TTL(100s), remaining(");
    let suffix = "s), attached keys([/lease/k])\n";
    assert!(
        ttl.starts_with(&prefix) && ttl.ends_with(suffix),
        "unexpected timetolive output: {ttl:?}"
    );
    let remaining: i64 = ttl[prefix.len()..ttl.len() - suffix.len()]
        .parse()
        .expect("remaining seconds");
    assert!((1..=100).contains(&remaining), "remaining {remaining}s");

    let listed = etcdctl.ok(&["lease", "list"]);
    assert!(
        listed.starts_with("found 1 leases\n") && listed.contains(&format!("\n{id}\n")),
        "{listed:?}"
    );

    assert_eq!(
        etcdctl.ok(&["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(
        etcdctl.ok(&["get", "/lease/k"]),
        "",
        "revoking deletes attached keys"
    );
    assert_eq!(
        etcdctl.ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    assert_eq!(
        etcdctl.fails(&["lease", "revoke", &id]),
        "Error: failed to revoke lease (etcdserver: requested lease not found)"
    );
    assert_eq!(
        etcdctl.fails(&["put", "--lease", &id, "/lease/k", "v"]),
        "Error: etcdserver: requested lease not found"
    );
    assert_eq!(etcdctl.ok(&["lease", "list"]), "found 0 leases\n");
}

fn key_attached_to_an_expired_lease_is_deleted(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();

    let id = lease_id(&etcdctl.ok(&["lease", "grant", "2"]));
    let put = revision(&etcdctl.json(&["put", "--lease", &id, "/ephemeral", "here"]));
    let mut watch = etcdctl.spawn_watch(&["watch", "/ephemeral", &format!("--rev={put}")]);
    assert_eq!(etcdctl.ok(&["get", "/ephemeral"]), "/ephemeral\nhere\n");

    // Nobody keeps it alive: the leader expires it and the deletion is
    // replicated, so every member stops serving the key.
    for i in 0..cluster.len() {
        let member = cluster.etcdctl_at(i);
        wait_for(
            "the expired lease's key to disappear",
            EVENT_TIMEOUT,
            || member.ok(&["get", "/ephemeral"]).is_empty().then_some(()),
        );
    }
    assert_eq!(
        watch.expect_lines(6, EVENT_TIMEOUT),
        ["PUT", "/ephemeral", "here", "DELETE", "/ephemeral", ""]
    );
    assert_eq!(
        etcdctl.ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
}

fn compaction_makes_older_revisions_unreadable(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl_at(cluster.follower_index());

    let r1 = revision(&etcdctl.json(&["put", "/c", "v1"]));
    let r2 = revision(&etcdctl.json(&["put", "/c", "v2"]));
    let r3 = revision(&etcdctl.json(&["put", "/c", "v3"]));

    assert_eq!(
        etcdctl.ok(&["compaction", &r2.to_string()]),
        format!("compacted revision {r2}\n")
    );
    assert_eq!(
        etcdctl.fails(&["get", "/c", &format!("--rev={r1}")]),
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        etcdctl.ok(&["get", "/c", &format!("--rev={r2}")]),
        "/c\nv2\n"
    );
    assert_eq!(etcdctl.ok(&["get", "/c"]), "/c\nv3\n");
    assert_eq!(
        etcdctl.fails(&["compaction", &r1.to_string()]),
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        etcdctl.fails(&["compaction", &(r3 + 100).to_string()]),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );

    // A watch that asks for compacted history is cancelled, and says why.
    let watch = etcdctl.spawn_watch(&["watch", "/c", &format!("--rev={r1}")]);
    let (status, stdout, stderr) = watch.wait_exit(EVENT_TIMEOUT);
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(
        stderr,
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n\
         Error: watch is canceled by the server\n"
    );
}

fn defrag_gives_back_the_space_of_compacted_revisions(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();

    // 400 values of 8 KiB, in four transactions, then deleted and compacted away.
    let value = "x".repeat(8 * 1024);
    for txn in 0..4 {
        let mut input = String::from("\n");
        for i in 0..100 {
            input.push_str(&format!("put /defrag/{txn}-{i:03} {value}\n"));
        }
        input.push_str("\n\n");
        let out = etcdctl.run_with_stdin(&["txn"], input.as_bytes());
        assert!(out.success(), "{:?}", out.stderr);
    }
    assert_eq!(etcdctl.ok(&["del", "--prefix", "/defrag/"]), "400\n");
    let rev = revision(&etcdctl.json(&["put", "/defrag-done", "yes"]));
    assert_eq!(
        etcdctl.ok(&["compaction", "--physical", &rev.to_string()]),
        format!("compacted revision {rev}\n")
    );
    let db_sizes = || -> Vec<u64> {
        let statuses = etcdctl.json(&["endpoint", "status"]);
        let statuses = statuses.as_array().expect("one status per endpoint");
        statuses
            .iter()
            .map(|s| s["Status"]["dbSize"].as_u64().expect("dbSize"))
            .collect()
    };
    let before = db_sizes();

    let sled = binary == Binary::EtcdLite
        && std::env::var("ETCD_LITE_TEST_STORAGE_ENGINE").as_deref() == Ok("sled");
    if sled {
        // sled has no defragmentation: each member says so, and nothing changes.
        let refused = etcdctl.run(&["defrag"]);
        assert!(!refused.success(), "{refused:?}");
        assert_eq!(
            refused
                .stderr
                .matches("Failed to defragment etcd member[")
                .count(),
            cluster.len(),
            "{}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("code = Unimplemented"),
            "{}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("the sled engine cannot defragment"),
            "{}",
            refused.stderr
        );
        assert_eq!(etcdctl.ok(&["get", "/defrag-done"]), "/defrag-done\nyes\n");
        return;
    }
    let out = etcdctl.ok(&["defrag"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cluster.len(), "{out}");
    for member in &cluster.members {
        let endpoint = member.endpoint();
        assert!(
            lines
                .iter()
                .any(|l| *l == format!("Finished defragmenting etcd member[{endpoint}]")),
            "no line for {endpoint} in:\n{out}"
        );
    }

    let after = db_sizes();
    assert!(
        before
            .iter()
            .zip(&after)
            .all(|(before, after)| after < before),
        "db sizes before {before:?}, after {after:?}"
    );
    // Nothing that was live is gone.
    assert_eq!(etcdctl.ok(&["get", "/defrag-done"]), "/defrag-done\nyes\n");
    assert_eq!(etcdctl.ok(&["get", "--prefix", "/defrag/"]), "");
}

fn endpoint_hashkv_agrees_across_members_and_is_stable_per_revision(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();
    // Each member's hash, once every member answers (a follower may not have
    // applied the revision yet) and all three agree.
    let hash = |extra: Option<String>| -> String {
        wait_for(
            "every member to report the same hash",
            EVENT_TIMEOUT,
            || {
                let mut args = vec!["endpoint".to_string(), "hashkv".to_string()];
                args.extend(extra.clone());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = etcdctl.run(&args);
                if !out.success() {
                    return None;
                }
                let hashes: Vec<&str> = out
                    .stdout
                    .lines()
                    .map(|line| line.split(", ").nth(1).expect("ENDPOINT, HASH"))
                    .collect();
                assert_eq!(hashes.len(), cluster.len(), "{}", out.stdout);
                hashes
                    .iter()
                    .all(|h| *h == hashes[0])
                    .then(|| hashes[0].to_string())
            },
        )
    };

    etcdctl.ok(&["put", "/h/a", "1"]);
    etcdctl.ok(&["put", "/h/b", "2"]);
    let rev = revision(&etcdctl.json(&["put", "/h/a", "3"]));
    let at_rev = hash(Some(format!("--rev={rev}")));
    assert!(at_rev.parse::<u32>().is_ok(), "{at_rev}");

    // A later write changes the hash of the present, not the one at `rev`.
    etcdctl.ok(&["put", "/h/c", "4"]);
    assert_ne!(hash(None), at_rev);
    assert_eq!(hash(Some(format!("--rev={rev}"))), at_rev);

    // History before a compaction can no longer be hashed.
    etcdctl.ok(&["compaction", "--physical", &rev.to_string()]);
    let compacted = etcdctl.run(&["endpoint", "hashkv", &format!("--rev={}", rev - 1)]);
    assert!(!compacted.success(), "{compacted:?}");
    assert!(
        compacted
            .stderr
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "{}",
        compacted.stderr
    );
}

fn member_list_and_endpoint_status_agree_on_members_and_leader(binary: Binary) {
    let cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();

    // Table form: "ID, started, NAME, PEER URL, CLIENT URL, IS LEARNER".
    let listed = etcdctl.ok(&["member", "list"]);
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split(", ").collect()).collect();
    assert_eq!(rows.len(), cluster.len(), "{listed}");
    for member in &cluster.members {
        let row = rows
            .iter()
            .find(|row| row[2] == member.name)
            .unwrap_or_else(|| panic!("member {} missing from:\n{listed}", member.name));
        assert_eq!(
            row[1..],
            [
                "started",
                member.name.as_str(),
                &member.peer_url(),
                &member.client_url(),
                "false"
            ]
        );
        assert!(
            u64::from_str_radix(row[0], 16).is_ok_and(|id| id != 0),
            "{row:?}"
        );
    }

    let members = etcdctl.json(&["member", "list"]);
    let ids: Vec<u64> = members["members"]
        .as_array()
        .expect("members array")
        .iter()
        .map(|m| m["ID"].as_u64().expect("member ID"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|&id| id != 0));
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);

    // Every member names the same leader, one of the members, and each
    // reports its own id and a non-empty Raft log.
    let statuses = etcdctl.json(&["endpoint", "status"]);
    let statuses = statuses.as_array().expect("one status per endpoint");
    assert_eq!(statuses.len(), 3);
    let leader = statuses[0]["Status"]["leader"].as_u64().expect("leader");
    assert!(ids.contains(&leader), "leader {leader:x} is not a member");
    let mut reporters = Vec::new();
    for status in statuses {
        let status = &status["Status"];
        assert_eq!(status["leader"].as_u64(), Some(leader));
        assert!(status["raftIndex"].as_u64().unwrap_or(0) > 0, "{status}");
        assert!(status["raftTerm"].as_u64().unwrap_or(0) > 0, "{status}");
        assert!(status["version"].as_str().is_some_and(|v| !v.is_empty()));
        reporters.push(status["header"]["member_id"].as_u64().expect("member_id"));
    }
    reporters.sort_unstable();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort_unstable();
    assert_eq!(reporters, sorted_ids);

    // The simple form: exactly one endpoint says it is the leader.
    let simple = etcdctl.ok(&["endpoint", "status"]);
    let leaders = simple
        .lines()
        .filter(|l| l.split(", ").nth(4) == Some("true"))
        .count();
    assert_eq!(leaders, 1, "{simple}");
    let table = etcdctl.ok(&["endpoint", "status", "-w", "table"]);
    assert!(table.contains("| IS LEADER |"), "{table}");
}

fn endpoint_health_passes_and_cluster_serves_with_one_member_down(binary: Binary) {
    let mut cluster = Cluster::spawn(binary, 3);
    let etcdctl = cluster.etcdctl();

    let health = etcdctl.run(&["endpoint", "health"]);
    assert!(health.success(), "{health:?}");
    for member in &cluster.members {
        let healthy = format!(
            "{} is healthy: successfully committed proposal",
            member.endpoint()
        );
        assert!(health.stderr.contains(&healthy), "{health:?}");
    }
    // --cluster finds the endpoints through MemberList's client URLs.
    let health = etcdctl.run(&["endpoint", "health", "--cluster"]);
    assert!(health.success(), "{health:?}");
    for member in &cluster.members {
        let healthy = format!("{} is healthy", member.client_url());
        assert!(health.stderr.contains(&healthy), "{health:?}");
    }

    // Two of three are a quorum: with the leader gone, the others elect a
    // new one and keep serving writes; the dead member is reported.
    etcdctl.ok(&["put", "/before", "1"]);
    let leader = cluster.leader_index();
    let dead_endpoint = cluster.members[leader].endpoint();
    cluster.kill_member(leader);
    let survivor = cluster.etcdctl_at((leader + 1) % 3);
    wait_for("the survivors to accept a write", EVENT_TIMEOUT, || {
        survivor
            .run(&["put", "/after", "2"])
            .success()
            .then_some(())
    });
    assert_eq!(
        survivor.ok(&["get", "/before", "--print-value-only"]),
        "1\n"
    );
    let health = etcdctl
        .clone()
        .with_timeouts("1s", "3s")
        .run(&["endpoint", "health"]);
    assert!(!health.success(), "{health:?}");
    assert!(
        health
            .stderr
            .contains(&format!("{dead_endpoint} is unhealthy")),
        "{health:?}"
    );
}

fn invalid_requests_get_etcds_errors(binary: Binary) {
    let cluster = Cluster::spawn_with(binary, 3, &["--max-request-bytes=1048576"]);
    let etcdctl = cluster.etcdctl();

    assert_eq!(
        etcdctl.fails(&["put", "", "x"]),
        "Error: etcdserver: key is not provided"
    );
    assert_eq!(
        etcdctl.fails(&["get", ""]),
        "Error: etcdserver: key is not provided"
    );
    assert_eq!(
        etcdctl.fails(&["get", "/k", "--rev=1000000"]),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(
        etcdctl.fails(&["put", "--lease=1234", "/k", "v"]),
        "Error: etcdserver: requested lease not found"
    );

    // Values come on stdin: they are too long for a command line.
    let too_large = etcdctl.run_with_stdin(&["put", "/big"], &vec![b'a'; 1_200_000]);
    assert!(!too_large.success());
    assert_eq!(
        too_large.error_line(),
        Some("Error: etcdserver: request is too large")
    );
    let fits = etcdctl.run_with_stdin(&["put", "/big"], &vec![b'a'; 1_000_000]);
    assert!(fits.success(), "{fits:?}");
    let read = etcdctl.ok(&["get", "/big", "--print-value-only"]);
    assert_eq!(read.len(), 1_000_001);

    // --max-txn-ops defaults to 128.
    let mut txn = String::from("\n");
    for i in 0..129 {
        txn.push_str(&format!("put /ops/{i} v\n"));
    }
    txn.push_str("\n\n");
    let many = etcdctl.run_with_stdin(&["txn"], txn.as_bytes());
    assert_eq!(
        many.error_line(),
        Some("Error: etcdserver: too many operations in txn request")
    );
    assert_eq!(
        etcdctl
            .run_with_stdin(&["txn"], b"\nput /dup 1\nput /dup 2\n\n\n")
            .error_line(),
        Some("Error: etcdserver: duplicate key given in txn request")
    );
    assert_eq!(
        etcdctl.ok(&["get", "--prefix", "/ops/"]),
        "",
        "a rejected txn writes nothing"
    );
}

/// The same script, played against one-member clusters of Debian's etcd and
/// of etcd-lite, must print the same thing up to ids, ports and revisions.
mod compat {
    use super::*;

    fn script() -> Script {
        Script::new()
            .capture_revision("first", &["put", "/cmp/a", "1"])
            .run(&["put", "/cmp/b", "2"])
            .capture_revision("second", &["put", "/cmp/a", "3"])
            .run(&["get", "--prefix", "/cmp/"])
            .run(&["get", "--prefix", "/cmp/", "-w", "json"])
            .run(&["get", "/cmp/a", "--rev={first}"])
            .run(&["get", "--prefix", "/cmp/", "--keys-only"])
            .run(&[
                "get",
                "--prefix",
                "/cmp/",
                "--limit=1",
                "--sort-by=MODIFY",
                "--order=DESCEND",
            ])
            .run(&["get", "--from-key", "/cmp/b"])
            .run(&["get", "--prefix", "/cmp/", "--limit=1", "-w", "json"])
            .run(&["get", "/cmp/a", "--rev=1000000"])
            .run_with_stdin(
                &["txn", "-i"],
                b"mod(\"/cmp/a\") > \"0\"\n\nput /cmp/t yes\nget /cmp/b\n\nput /cmp/f no\n\n",
            )
            .run_with_stdin(
                &["txn"],
                b"value(\"/cmp/a\") = \"x\"\n\nput /cmp/t 1\n\ndel /cmp/t\n\n",
            )
            .run_with_stdin(
                &["txn", "-w", "json"],
                b"version(\"/cmp/z\") = \"0\"\n\nput /cmp/z 1\n\n\n",
            )
            .run_with_stdin(&["txn"], b"\nput /cmp/d 1\ndel /cmp/d\n\n\n")
            .run(&["del", "/cmp/b"])
            .run(&["del", "/cmp/none"])
            .run(&["del", "--prefix", "/cmp/", "-w", "json"])
            .capture_lease("lease", &["lease", "grant", "60"])
            .run(&["put", "--lease={lease}", "/cmp/l", "v"])
            .run(&["lease", "timetolive", "--keys", "{lease}"])
            .run(&["lease", "timetolive", "{lease}", "-w", "json"])
            .run(&["lease", "keep-alive", "--once", "{lease}"])
            .run(&["lease", "list"])
            .run(&["lease", "revoke", "{lease}"])
            .run(&["get", "/cmp/l"])
            .run(&["lease", "timetolive", "{lease}"])
            .run(&["lease", "revoke", "{lease}"])
            .run(&["put", "--lease=1234", "/cmp/l", "v"])
            .run(&["put", "", "x"])
            .run_with_stdin(&["put", "/cmp/big"], &vec![b'a'; 1_200_000])
            .run(&["compaction", "{second}"])
            .run(&["get", "/cmp/a", "--rev={first}"])
            .run(&["compaction", "{first}"])
            .run(&["watch", "/cmp/a", "--rev={first}"])
            .run(&["member", "list"])
            .run(&["endpoint", "health"])
    }

    fn transcript(binary: Binary) -> Vec<support::compare::Outcome> {
        let cluster = Cluster::spawn_with(binary, 1, &["--max-request-bytes=1048576"]);
        script().play(&Etcdctl::new(cluster.endpoints()))
    }

    #[test]
    fn etcd_lite_prints_what_etcd_prints() {
        let reference = transcript(Binary::Etcd);
        let ours = transcript(Binary::EtcdLite);
        assert_same_transcript("etcd 3.4", &reference, "etcd-lite", &ours);
    }

    /// The normalization leaves nothing run-dependent: two etcd runs agree.
    #[test]
    fn etcd_transcripts_are_reproducible() {
        let first = transcript(Binary::Etcd);
        let second = transcript(Binary::Etcd);
        // Shown with --no-capture: the reference transcript etcd-lite must match.
        for step in &first {
            eprint!("{step}");
        }
        assert_same_transcript("etcd run 1", &first, "etcd run 2", &second);
    }
}

/// `header.revision` of an etcdctl JSON response.
fn revision(json: &serde_json::Value) -> i64 {
    json["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in {json}"))
}

/// The hex id in `lease ID granted with TTL(...)`.
fn lease_id(granted: &str) -> String {
    let id = granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease id in {granted:?}"));
    assert!(
        u64::from_str_radix(id, 16).is_ok(),
        "lease id {id:?} is not hex"
    );
    id.to_string()
}

/// Standard base64, as etcdctl prints keys and values in JSON.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

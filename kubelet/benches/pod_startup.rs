//! Pod startup latency on one node of the rig: 30 busybox pods are created
//! at once with the image present; each pod's latency is from its create
//! call to the moment a watch on the API shows it Running with every
//! container running. Prints p50, p99 and max, where the time went (from
//! the kubelet's log: create → sandbox up, sandbox → container started,
//! container started → Running seen through the API), the CPU time the
//! kubelet and the node's containerd used while the pods started and then
//! per second over 10 s with them all running (the steady relist cost), and
//! the kubelet's RSS with the 30 pods running.
//!
//! `cargo build --release -p ferrokube-cni-bridge && cargo bench -p kubelet --bench pod_startup -- [pods] [--interval-ms N]`
//! (default 30 pods, all at once; with `--interval-ms`, one every N ms, as
//! upstream's node density tests also run). Also prints how busy the whole
//! node's CPU was while the pods started, and how many tasks (processes and
//! threads) it created per pod. Needs root (the rig: a network namespace, containerd, runc).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use ferrokube_client::{WatchEvent, WatchParams};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use support::Rig;

const TIMEOUT: Duration = Duration::from_secs(120);
/// How long the steady cost (everything running, nothing changing) is sampled.
const STEADY_WINDOW: Duration = Duration::from_secs(10);

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn all_running(p: &Pod) -> bool {
    let Some(s) = &p.status else { return false };
    let n = p.spec.as_ref().map_or(0, |s| s.containers.len());
    s.phase.as_deref() == Some("Running")
        && s.container_statuses.as_ref().is_some_and(|cs| {
            cs.len() == n
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
        })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The whole node's CPU so far, from `/proc/stat`: (busy, all) in clock
/// ticks, busy being everything but idle and iowait; and the number of
/// tasks (processes and threads) created since boot.
fn node_cpu_and_forks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let forks = stat
        .lines()
        .find_map(|l| l.strip_prefix("processes "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (all - idle, all, forks)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut pods = 30;
    let mut interval = Duration::ZERO;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--interval-ms" => {
                let v = args
                    .next()
                    .expect("--interval-ms: a number of milliseconds");
                interval = Duration::from_millis(v.parse().expect("--interval-ms: a number"));
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            n => pods = n.parse().expect("pods: a number"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(pods, interval));
}

async fn run(pods: usize, interval: Duration) {
    let Some(rig) = Rig::start("bench", 1).await else {
        std::process::exit(1);
    };
    let node = &rig.nodes[0];
    let client = rig.client().await;
    let mut events = client
        .watch::<Pod>("default", &WatchParams::default())
        .await
        .unwrap();
    let kubelet_pid = node.kubelet_pid().expect("the kubelet runs");
    let containerd_pid: u32 = std::fs::read_to_string(node.containerd_dir().join("containerd.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("containerd.pid");
    let cpu = || (cpu_time(kubelet_pid), cpu_time(containerd_pid));
    let cpu_before = cpu();
    let node_before = node_cpu_and_forks();
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let creates = (0..pods).map(|i| {
        let client = client.clone();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("startup-{i}"), "namespace": "default"},
            "spec": {
                "nodeName": node.name,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]
            }
        }))
        .unwrap();
        async move {
            tokio::time::sleep_until(start + interval * i as u32).await;
            let (t, wall) = (Instant::now(), SystemTime::now());
            client.create("default", &pod).await.unwrap();
            (format!("startup-{i}"), (t, wall))
        }
    });
    // Created in the background, so that a pod seen running while later ones
    // are still being created (with --interval-ms) is timed when seen.
    let creating = tokio::spawn(futures::future::join_all(creates));
    let mut seen: HashMap<String, (Instant, SystemTime)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while seen.len() < pods {
        let Ok(ev) = tokio::time::timeout_at(deadline, events.next()).await else {
            let log = node.kubelet_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let waiting: Vec<String> = (0..pods)
                .map(|i| format!("startup-{i}"))
                .filter(|n| !seen.contains_key(n))
                .collect();
            panic!(
                "not running within {TIMEOUT:?}: {waiting:?}; kubelet log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        };
        let ev = ev.expect("watch open").unwrap();
        let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev else {
            continue;
        };
        if all_running(&p) {
            let name = p.metadata.name.clone().unwrap_or_default();
            seen.entry(name)
                .or_insert_with(|| (Instant::now(), SystemTime::now()));
        }
    }
    let created_at: HashMap<String, (Instant, SystemTime)> = creating
        .await
        .expect("creating the pods")
        .into_iter()
        .collect();
    let latencies: Vec<Duration> = seen
        .iter()
        .map(|(name, (at, _))| at.duration_since(created_at[name].0))
        .collect();
    let running_at: HashMap<String, SystemTime> = seen
        .iter()
        .map(|(name, (_, wall))| (name.clone(), *wall))
        .collect();
    let all = started.elapsed();
    let cpu_started = cpu();
    let node_started = node_cpu_and_forks();
    tokio::time::sleep(STEADY_WINDOW).await;
    let cpu_steady = cpu();
    let rss = node.kubelet_pid().map_or(0.0, rss_mib);
    let mut sorted = latencies;
    sorted.sort();
    if interval.is_zero() {
        println!("pod startup, {pods} pods created at once on one node (image present):");
    } else {
        println!(
            "pod startup, {pods} pods created one every {} on one node (image present):",
            ms(interval)
        );
    }
    println!(
        "  p50 {}  p99 {}  max {}  (all running after {})",
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.99)),
        ms(*sorted.last().unwrap()),
        ms(all)
    );
    let log = node.kubelet_log();
    let sandbox_up = first_log_times(&log, "started pod sandbox");
    let container_up = first_log_times(&log, "started container");
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for (name, (_, created)) in &created_at {
        let (Some(sb), Some(c), Some(run)) = (
            sandbox_up.get(name),
            container_up.get(name),
            running_at.get(name),
        ) else {
            continue;
        };
        let since = |a: &SystemTime, b: &SystemTime| b.duration_since(*a).unwrap_or_default();
        phases[0].push(since(created, sb));
        phases[1].push(since(sb, c));
        phases[2].push(since(c, run));
    }
    for (label, mut v) in [
        "create → sandbox up",
        "sandbox up → container started",
        "container started → Running seen",
    ]
    .into_iter()
    .zip(phases)
    {
        if v.is_empty() {
            continue;
        }
        v.sort();
        println!(
            "  {label}: p50 {}  p99 {}",
            ms(percentile(&v, 0.50)),
            ms(percentile(&v, 0.99))
        );
    }
    println!(
        "  CPU while starting: kubelet {}, containerd {}",
        ms(cpu_started.0 - cpu_before.0),
        ms(cpu_started.1 - cpu_before.1)
    );
    let (busy, total) = (
        node_started.0 - node_before.0,
        (node_started.1 - node_before.1).max(1),
    );
    let tick = 1.0 / clock_ticks_per_second();
    println!(
        "  whole node while starting: CPU busy {:.0} % ({:.0} CPU-ms per pod), {} tasks created (processes and threads; {:.1} per pod)",
        busy as f64 * 100.0 / total as f64,
        busy as f64 * tick * 1000.0 / pods as f64,
        node_started.2 - node_before.2,
        (node_started.2 - node_before.2) as f64 / pods as f64,
    );
    let per_second = |d: Duration| ms(d.div_f64(STEADY_WINDOW.as_secs_f64()));
    println!(
        "  CPU per second with {pods} pods running (over {STEADY_WINDOW:?}): kubelet {}, containerd {}",
        per_second(cpu_steady.0 - cpu_started.0),
        per_second(cpu_steady.1 - cpu_started.1)
    );
    println!("  kubelet RSS with {pods} pods running: {rss:.1} MiB");
}

/// When the kubelet first logged `message` for each bench pod, by pod name
/// (its log lines start with an RFC 3339 time and carry `pod=default/<name>`).
fn first_log_times(log: &str, message: &str) -> HashMap<String, SystemTime> {
    let mut out = HashMap::new();
    for line in log.lines() {
        let line = support::strip_ansi(line);
        if !line.contains(message) {
            continue;
        }
        let Some(time) = line
            .split_whitespace()
            .next()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let Some(pod) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pod=default/"))
        else {
            continue;
        };
        out.entry(pod.to_string())
            .or_insert_with(|| SystemTime::from(time));
    }
    out
}

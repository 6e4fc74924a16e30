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
//! `cargo build --release -p ferrokube-cni-bridge && cargo bench -p kubelet --bench pod_startup -- [pods]`
//! (default 30). Needs root (the rig: a network namespace, containerd, runc).

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

fn main() {
    let pods: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(30, |a| a.parse().expect("pods: a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(pods));
}

async fn run(pods: usize) {
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
    let started = Instant::now();
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
            let (t, wall) = (Instant::now(), SystemTime::now());
            client.create("default", &pod).await.unwrap();
            (format!("startup-{i}"), (t, wall))
        }
    });
    let created_at: HashMap<String, (Instant, SystemTime)> = futures::future::join_all(creates)
        .await
        .into_iter()
        .collect();
    let created: HashMap<String, Instant> = created_at
        .iter()
        .map(|(n, (t, _))| (n.clone(), *t))
        .collect();
    let mut running_at: HashMap<String, SystemTime> = HashMap::new();
    let mut latencies: HashMap<String, Duration> = HashMap::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while latencies.len() < pods {
        let Ok(ev) = tokio::time::timeout_at(deadline, events.next()).await else {
            let log = node.kubelet_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let waiting: Vec<&String> = created
                .keys()
                .filter(|n| !latencies.contains_key(*n))
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
        let name = p.metadata.name.clone().unwrap_or_default();
        if all_running(&p) && !latencies.contains_key(&name) {
            latencies.insert(name.clone(), created[&name].elapsed());
            running_at.insert(name.clone(), SystemTime::now());
        }
    }
    let all = started.elapsed();
    let cpu_started = cpu();
    tokio::time::sleep(STEADY_WINDOW).await;
    let cpu_steady = cpu();
    let rss = node.kubelet_pid().map_or(0.0, rss_mib);
    let mut sorted: Vec<Duration> = latencies.into_values().collect();
    sorted.sort();
    println!("pod startup, {pods} pods created at once on one node (image present):");
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
        let line = strip_ansi(line);
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

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

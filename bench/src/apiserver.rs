//! `apiserver-bench`: the kube-apiserver under load, through the REST API
//! kubectl uses (HTTPS, client certificates), on a 3-member etcd-lite
//! cluster: closed-loop create/get/list at several concurrencies, writes at
//! a fixed rate (the p99 goal), the time for many watchers to see one
//! write, and a LIST of many pods. Entry point: [`run`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterSpec};

/// Flags of `apiserver-bench`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "apiserver-bench",
    about = "kube-apiserver throughput and latency over REST"
)]
pub struct ApiArgs {
    /// Directory holding release builds of `kube-apiserver` and `etcd-lite`
    /// [default: $CARGO_TARGET_DIR/release, else target/release]
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,

    /// Seconds per closed-loop phase
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,

    /// Concurrencies of the closed-loop phases
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,

    /// Writes per second in the fixed-rate phase
    #[arg(long, default_value_t = 200)]
    pub rate: u64,

    /// Seconds of the fixed-rate phase
    #[arg(long, default_value_t = 10.0)]
    pub rate_duration: f64,

    /// Concurrent watchers in the fan-out phase
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,

    /// Writes observed by the watchers
    #[arg(long, default_value_t = 20)]
    pub watch_writes: usize,

    /// Pods in the large-LIST phase
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,

    /// Print Markdown tables for BENCHMARKS.md
    #[arg(long)]
    pub markdown: bool,
}

impl ApiArgs {
    fn bin(&self, name: &str) -> PathBuf {
        let dir = self.bin_dir.clone().unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
                .join("release")
        });
        dir.join(name)
    }
}

/// One measured phase.
pub struct Row {
    pub phase: String,
    pub ops: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub note: String,
}

fn row(
    phase: impl Into<String>,
    hist: &Histogram<u64>,
    seconds: f64,
    note: impl Into<String>,
) -> Row {
    let q = |x: f64| hist.value_at_quantile(x) as f64 / 1000.0;
    Row {
        phase: phase.into(),
        ops: hist.len(),
        seconds,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: hist.max() as f64 / 1000.0,
        note: note.into(),
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// The apiserver process and its etcd-lite cluster.
struct ControlPlane {
    _etcd: Cluster,
    apiserver: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }
}

impl ControlPlane {
    async fn start(
        args: &ApiArgs,
    ) -> Result<(ControlPlane, reqwest::Client, Vec<reqwest::Client>)> {
        let apiserver_bin = args.bin("kube-apiserver");
        if !apiserver_bin.exists() {
            bail!(
                "{} not found: run `cargo build --release -p kube-apiserver -p etcd-lite` first",
                apiserver_bin.display()
            );
        }
        let mut etcd = Cluster::start(&ClusterSpec {
            binary: args.bin("etcd-lite"),
            size: 3,
            extra_args: Vec::new(),
            data_root: None,
        })?;
        etcd.wait_ready(Duration::from_secs(30)).await?;
        let dir = tempfile::tempdir()?;
        let ca = kube_apiserver::pki::CertificateAuthority::new("kubernetes")?;
        let serving = ca.issue_serving(
            "kube-apiserver",
            &[std::net::IpAddr::from([127, 0, 0, 1])],
            &["localhost"],
        )?;
        let admin = ca.issue_client("kubernetes-admin", &["system:masters"])?;
        let (cert, key, ca_file) = (
            dir.path().join("apiserver.crt"),
            dir.path().join("apiserver.key"),
            dir.path().join("ca.crt"),
        );
        serving.write(&cert, &key)?;
        kube_apiserver::pki::write_pem(&ca_file, ca.cert_pem(), false)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let apiserver = Command::new(&apiserver_bin)
            .arg(format!("--etcd-servers={}", etcd.endpoints().join(",")))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--tls-cert-file={}", cert.display()))
            .arg(format!("--tls-private-key-file={}", key.display()))
            .arg(format!("--client-ca-file={}", ca_file.display()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start kube-apiserver")?;
        let base = format!("https://127.0.0.1:{port}");
        let identity = format!("{}{}", admin.cert_pem, admin.key_pem);
        let client = |h2: bool| -> Result<reqwest::Client> {
            let mut b = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())?)
                .identity(reqwest::Identity::from_pem(identity.as_bytes())?)
                .pool_max_idle_per_host(256);
            if !h2 {
                b = b.http1_only();
            }
            Ok(b.build()?)
        };
        let main = client(false)?;
        // Watchers spread over HTTP/2 connections, 100 streams each.
        let watch_clients = (0..args.watchers.div_ceil(100).max(1))
            .map(|_| client(true))
            .collect::<Result<Vec<_>>>()?;
        let plane = ControlPlane {
            _etcd: etcd,
            apiserver,
            base,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = main.get(format!("{}/readyz", plane.base)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(plane.dir.path().join("apiserver.log"))
                    .unwrap_or_default();
                bail!("kube-apiserver did not become ready:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((plane, main, watch_clients))
    }
}

async fn send(req: reqwest::RequestBuilder) -> Result<Value> {
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        bail!("{status}: {}", body["message"]);
    }
    Ok(body)
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"key": "x".repeat(256)}})
}

/// Runs `op(i)` from `clients` tasks for `duration`; latencies in µs.
async fn closed_loop<F, Fut>(
    clients: usize,
    duration: Duration,
    op: F,
) -> Result<(Histogram<u64>, f64)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let op = op.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            while start.elapsed() < duration {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                op(i).await?;
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut total = histogram();
    for t in tasks {
        total.add(t.await??)?;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

/// Runs the whole benchmark.
pub async fn run(args: &ApiArgs) -> Result<Vec<Row>> {
    let (plane, client, watch_clients) = ControlPlane::start(args).await?;
    let base = plane.base.clone();
    let mut rows = Vec::new();
    let duration = Duration::from_secs_f64(args.duration);
    let ns = |n: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
    for n in ["bench", "watch", "list"] {
        send(
            client
                .post(format!("{base}/api/v1/namespaces"))
                .json(&ns(n)),
        )
        .await?;
    }
    let cms = format!("{base}/api/v1/namespaces/bench/configmaps");

    for &c in &args.concurrency {
        eprintln!("create, {c} clients");
        let (h, s) = {
            let (client, cms) = (client.clone(), cms.clone());
            closed_loop(c, duration, move |i| {
                let req = client.post(&cms).json(&configmap(&format!("c{c}-{i}")));
                async move { send(req).await.map(|_| ()) }
            })
            .await?
        };
        rows.push(row(format!("create configmap, {c} clients"), &h, s, ""));
        eprintln!("get, {c} clients");
        let created = h.len().max(1);
        let (h, s) = {
            let (client, cms) = (client.clone(), cms.clone());
            closed_loop(c, duration, move |i| {
                let req = client.get(format!("{cms}/c{c}-{}", i % created));
                async move { send(req).await.map(|_| ()) }
            })
            .await?
        };
        rows.push(row(format!("get configmap, {c} clients"), &h, s, ""));
    }
    // LIST of one namespace holding 100 objects.
    for i in 0..100 {
        send(
            client
                .post(format!("{base}/api/v1/namespaces/list/configmaps"))
                .json(&configmap(&format!("l{i}"))),
        )
        .await?;
    }
    for &c in &args.concurrency {
        eprintln!("list, {c} clients");
        let (h, s) = {
            let client = client.clone();
            let url = format!("{base}/api/v1/namespaces/list/configmaps");
            closed_loop(c, duration, move |_| {
                let req = client.get(&url);
                async move { send(req).await.map(|_| ()) }
            })
            .await?
        };
        rows.push(row(
            format!("list 100 configmaps, {c} clients"),
            &h,
            s,
            "consistent read from etcd",
        ));
    }

    // Writes at a fixed rate, latency from the scheduled start (no
    // coordinated omission).
    eprintln!("{} writes/s for {} s", args.rate, args.rate_duration);
    let total = (args.rate as f64 * args.rate_duration) as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let req = client.post(&cms).json(&configmap(&format!("rate-{i}")));
        tasks.push(tokio::spawn(async move {
            send(req).await.map(|_| due.elapsed())
        }));
    }
    let mut h = histogram();
    for t in tasks {
        h.record(t.await??.as_micros().max(1) as u64)?;
    }
    rows.push(row(
        format!("create at {} req/s", args.rate),
        &h,
        start.elapsed().as_secs_f64(),
        "goal: p99 < 25 ms",
    ));

    rows.push(watch_fan_out(args, &client, &watch_clients, &base).await?);
    rows.extend(large_list(args, &client, &base).await?);
    drop(plane);
    Ok(rows)
}

/// `watchers` watches on one namespace; each write's latency is the time
/// until the last watcher has its event.
async fn watch_fan_out(
    args: &ApiArgs,
    client: &reqwest::Client,
    watch_clients: &[reqwest::Client],
    base: &str,
) -> Result<Row> {
    eprintln!("{} watchers", args.watchers);
    let url = format!("{base}/api/v1/namespaces/watch/configmaps");
    let list = send(client.get(&url)).await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for w in 0..args.watchers {
        let c = watch_clients[w % watch_clients.len()].clone();
        let url = format!("{url}?watch=true&resourceVersion={rv}");
        let (tx, ready_tx) = (tx.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let resp = c.get(&url).send().await?;
            let _ = ready_tx.send(());
            let mut body = resp.bytes_stream();
            let mut buf = Vec::new();
            while let Some(chunk) = body.next().await {
                buf.extend_from_slice(&chunk?);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev: Value = serde_json::from_slice(&line)?;
                    let name = ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send((name, Instant::now()));
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    drop(tx);
    for _ in 0..args.watchers {
        ready_rx.recv().await.context("a watcher failed to start")?;
    }
    let mut h = histogram();
    let mut all = histogram();
    for i in 0..args.watch_writes {
        let name = format!("w{i}");
        let t = Instant::now();
        send(client.post(&url).json(&configmap(&name))).await?;
        let mut seen = 0;
        let deadline = t + Duration::from_secs(30);
        while seen < args.watchers {
            let (n, at) = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .context("watchers did not see the write within 30 s")?
                .context("watch streams ended")?;
            if n == name {
                seen += 1;
                all.record(at.duration_since(t).as_micros().max(1) as u64)?;
                if seen == args.watchers {
                    h.record(at.duration_since(t).as_micros().max(1) as u64)?;
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    let each = all.value_at_quantile(0.99) as f64 / 1000.0;
    Ok(row(
        format!("{} watchers see a write (last one)", args.watchers),
        &h,
        0.0,
        format!("p99 over every watcher's delivery: {each:.1} ms; goal: < 100 ms"),
    ))
}

/// Creates `pods` pods, then times a consistent LIST and a LIST from the
/// watch cache (`resourceVersion=0`).
async fn large_list(args: &ApiArgs, client: &reqwest::Client, base: &str) -> Result<Vec<Row>> {
    eprintln!("creating {} pods", args.pods);
    let url = format!("{base}/api/v1/namespaces/list/pods");
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..args.pods {
        let permit = sem.clone().acquire_owned().await?;
        let req = client.post(&url).json(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
        }));
        tasks.push(tokio::spawn(async move {
            let r = send(req).await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut rows = Vec::new();
    for (label, query) in [
        ("from etcd", ""),
        ("from the watch cache", "?resourceVersion=0"),
    ] {
        let mut h = histogram();
        let mut bytes = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let resp = client.get(format!("{url}{query}")).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            if !status.is_success() {
                bail!(
                    "LIST failed with {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            h.record(t.elapsed().as_micros().max(1) as u64)?;
            bytes = body.len();
            let v: Value = serde_json::from_slice(&body)?;
            let n = v["items"].as_array().map(Vec::len).unwrap_or(0);
            if n != args.pods {
                bail!("LIST returned {n} pods, expected {}", args.pods);
            }
        }
        rows.push(row(
            format!("LIST {} pods, {label}", args.pods),
            &h,
            0.0,
            format!("{:.1} MiB per response", bytes as f64 / (1024.0 * 1024.0)),
        ));
    }
    Ok(rows)
}

/// Renders the rows as a Markdown table (or aligned text).
pub fn render(rows: &[Row], markdown: bool, command: &str) -> String {
    let mut out = String::new();
    if markdown {
        out.push_str(&format!("Command: `{command}`\n\n"));
        out.push_str("| phase | requests | req/s | p50 ms | p99 ms | max ms | note |\n|---|---|---|---|---|---|---|\n");
    }
    for r in rows {
        let rate = if r.seconds > 0.0 {
            format!("{:.0}", r.ops as f64 / r.seconds)
        } else {
            "-".into()
        };
        if markdown {
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |\n",
                r.phase, r.ops, rate, r.p50_ms, r.p99_ms, r.max_ms, r.note
            ));
        } else {
            out.push_str(&format!(
                "{:<45} {:>7} req  {:>7} req/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  {}\n",
                r.phase, r.ops, rate, r.p50_ms, r.p99_ms, r.max_ms, r.note
            ));
        }
    }
    out
}

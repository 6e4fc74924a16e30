//! ADD and DEL latency of `cni-bridge` against the reference bridge plugin
//! (`/usr/lib/cni/bridge` + `/usr/lib/cni/host-local`) on the same config, in
//! one run, inside a node network namespace this benchmark creates.
//!
//! `cargo bench-cni-bridge -- [cycles]` (default 200) measures the static build
//! nodes run (alias in `.cargo/config.toml`); `cargo bench -p
//! ferrokube-cni-bridge --bench add_del` the plain dynamically linked one.
//! Each measured time is one plugin process, spawn to exit, as a runtime sees it.
//! Ours and the reference alternate cycle by cycle so background noise hits both.
//! Needs root. Traffic: none; only links, addresses, routes and nat rules inside
//! the benchmark's own namespaces.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};

const OURS: &str = env!("CARGO_BIN_EXE_cni-bridge");
const REFERENCE: &str = "/usr/lib/cni/bridge";
const WARMUP: usize = 3;

struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "ip netns add {name}");
        Self(name)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Plugin {
    label: &'static str,
    binary: &'static str,
    conf: Value,
    pod: Netns,
    add: Vec<Duration>,
    del: Vec<Duration>,
    failures: Vec<String>,
}

impl Plugin {
    /// One plugin process; returns its wall time, or its stdout on failure.
    fn call(&self, command: &str, id: &str) -> Result<Duration, String> {
        let start = Instant::now();
        let mut child = Command::new(self.binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", self.pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.conf.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if out.status.success() {
            Ok(took)
        } else {
            Err(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    }

    fn cycle(&mut self, id: &str, record: bool) {
        match self.call("ADD", id) {
            Ok(t) if record => self.add.push(t),
            Ok(_) => {}
            Err(e) => self.failures.push(format!("ADD {id}: {e}")),
        }
        match self.call("DEL", id) {
            Ok(t) if record => self.del.push(t),
            Ok(_) => {}
            Err(e) => self.failures.push(format!("DEL {id}: {e}")),
        }
    }
}

fn conf(plugin_type: &str, bridge: &str, subnet: &str, data_dir: &str, ip_masq: bool) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": format!("bench-{bridge}"),
        "type": plugin_type,
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": ip_masq,
        "hairpinMode": true,
        "ipam": { "type": "host-local", "subnet": subnet, "dataDir": data_dir },
    })
}

/// Whether an ELF executable asks for a dynamic loader (has a `PT_INTERP`
/// program header): start-up cost differs a lot between the two.
fn linkage(path: &str) -> &'static str {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return "unreadable";
    };
    let field = |at: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(at..at + len)?;
        Some(bytes.iter().rev().fold(0, |v, b| v << 8 | u64::from(*b)))
    };
    // ELF64 little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    let (Some(phoff), Some(entsize), Some(count)) =
        (field(0x20, 8), field(0x36, 2), field(0x38, 2))
    else {
        return "not an ELF64 file";
    };
    let interp =
        (0..count).any(|i| field((phoff + i * entsize) as usize, 4) == Some(u64::from(PT_INTERP)));
    if interp {
        "dynamically linked"
    } else {
        "statically linked"
    }
}

fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn main() {
    let cycles: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    if !std::path::Path::new(REFERENCE).exists() {
        eprintln!("{REFERENCE} is not installed; nothing to compare against");
        return;
    }
    let pid = std::process::id();
    let node = Netns::new(format!("cnibench-node-{pid}"));
    // Every plugin process this benchmark spawns inherits the node namespace.
    let node_fd = File::open(node.path()).expect("open node netns");
    setns(&node_fd, CloneFlags::CLONE_NEWNET).expect("enter node netns");
    let _ = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    let data = std::env::temp_dir().join(format!("cnibench-{pid}"));

    println!("cni-bridge ADD/DEL latency, {cycles} cycles per plugin and config, after {WARMUP} warm-up cycles");
    for binary in [OURS, REFERENCE] {
        println!("- {binary}: {}", linkage(binary));
    }
    println!();
    println!("| config | plugin | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (i, ip_masq) in [false, true].into_iter().enumerate() {
        let config = if ip_masq { "ipMasq" } else { "no ipMasq" };
        let dir = |name: &str| data.join(format!("{name}{i}")).display().to_string();
        let mut ours = Plugin {
            label: "cni-bridge",
            binary: OURS,
            conf: conf(
                "cni-bridge",
                &format!("ours{i}"),
                &format!("10.60.{i}.0/24"),
                &dir("ours"),
                ip_masq,
            ),
            pod: Netns::new(format!("cnibench-ours-{pid}")),
            add: Vec::new(),
            del: Vec::new(),
            failures: Vec::new(),
        };
        let mut reference = Plugin {
            label: "reference bridge 1.1.1",
            binary: REFERENCE,
            conf: conf(
                "bridge",
                &format!("ref{i}"),
                &format!("10.61.{i}.0/24"),
                &dir("ref"),
                ip_masq,
            ),
            pod: Netns::new(format!("cnibench-ref-{pid}")),
            add: Vec::new(),
            del: Vec::new(),
            failures: Vec::new(),
        };
        // Warm-up absorbs the reference's known failure on the first ADD to a fresh bridge.
        for n in 0..WARMUP {
            ours.cycle(&format!("warm{n}"), false);
            reference.cycle(&format!("warm{n}"), false);
        }
        let warmup_failures = (ours.failures.len(), reference.failures.len());
        ours.failures.clear();
        reference.failures.clear();
        for n in 0..cycles {
            let id = format!("pod{n:05}");
            ours.cycle(&id, true);
            reference.cycle(&id, true);
        }
        for p in [&reference, &ours] {
            println!(
                "| {config} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                p.label,
                percentile_ms(&p.add, 50.0),
                percentile_ms(&p.add, 99.0),
                percentile_ms(&p.del, 50.0),
                percentile_ms(&p.del, 99.0),
            );
        }
        ratios.push((
            config,
            percentile_ms(&reference.add, 50.0) / percentile_ms(&ours.add, 50.0),
            percentile_ms(&reference.del, 50.0) / percentile_ms(&ours.del, 50.0),
            percentile_ms(&reference.add, 99.0) / percentile_ms(&ours.add, 99.0),
            percentile_ms(&reference.del, 99.0) / percentile_ms(&ours.del, 99.0),
        ));
        for p in [&ours, &reference] {
            if !p.failures.is_empty() {
                println!(
                    "\n{}: {} failed calls, first: {}",
                    p.label,
                    p.failures.len(),
                    p.failures[0]
                );
            }
        }
        if warmup_failures != (0, 0) {
            eprintln!(
                "warm-up failures ({config}): ours {}, reference {}",
                warmup_failures.0, warmup_failures.1
            );
        }
    }
    println!();
    println!(
        "| config | ADD speed-up p50 | DEL speed-up p50 | ADD speed-up p99 | DEL speed-up p99 |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (config, add50, del50, add99, del99) in ratios {
        println!("| {config} | {add50:.1}x | {del50:.1}x | {add99:.1}x | {del99:.1}x |");
    }
    let _ = std::fs::remove_dir_all(&data);
}

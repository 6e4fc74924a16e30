//! The `cni-bridge` binary driven exactly as a runtime drives it (CNI env +
//! config on stdin), inside network namespaces each test creates and removes.
//! The plugin runs inside a test-created "node" namespace, so the bridge,
//! veths and iptables rules never touch the host. Needs root.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_cni-bridge");
const REFERENCE_BRIDGE: &str = "/usr/lib/cni/bridge";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace created with `ip netns add`, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!(
            "cnit-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sh("ip", &["netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs a command inside this namespace and returns its stdout.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.exec(args).stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a plugin run printed and how it exited.
#[derive(Debug)]
struct Run {
    ok: bool,
    json: Option<Value>,
}

impl Run {
    fn result(self) -> Value {
        assert!(self.ok, "plugin failed: {:?}", self.json);
        self.json.expect("result JSON")
    }

    fn error_code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {:?}", self.json);
        self.json
            .as_ref()
            .and_then(|j| j["code"].as_u64())
            .expect("error JSON with a code")
    }

    fn error_msg(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j["msg"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// A node namespace with its own IPAM data dir; the plugin runs inside it.
struct Node {
    ns: Netns,
    data: tempfile::TempDir,
}

impl Node {
    fn new(tag: &str) -> Self {
        let ns = Netns::new(tag);
        sh("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        Self {
            ns,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "podnet",
            "type": "cni-bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {
                "type": "host-local",
                "subnet": "10.88.0.0/24",
                "dataDir": self.data.path(),
            }
        })
    }

    fn run_with(&self, binary: &str, env: &[(&str, &str)], conf: &Value) -> Run {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path()))
            .arg(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        Run {
            ok: out.status.success(),
            json: (!stdout.trim().is_empty())
                .then(|| serde_json::from_str(&stdout).expect("stdout is JSON")),
        }
    }

    fn cni(&self, command: &str, id: &str, netns: Option<&str>, conf: &Value) -> Run {
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        if let Some(n) = netns {
            env.push(("CNI_NETNS", n));
        }
        self.run_with(PLUGIN, &env, conf)
    }

    fn add(&self, id: &str, pod: &Netns) -> Value {
        self.cni("ADD", id, Some(&pod.path()), &self.conf())
            .result()
    }

    fn del(&self, id: &str, pod: &Netns) -> Run {
        self.cni("DEL", id, Some(&pod.path()), &self.conf())
    }
}

fn pod_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address");
    addr.split('/').next().unwrap().to_string()
}

#[test]
fn add_gives_eth0_the_first_address_after_the_gateway_a_default_route_and_loopback_up() {
    let node = Node::new("add");
    let pod = Netns::new("pod");
    let result = node.add("c1", &pod);

    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["ips"][0]["address"], "10.88.0.2/24");
    assert_eq!(result["ips"][0]["gateway"], "10.88.0.1");
    assert_eq!(result["ips"][0]["interface"], 2);
    assert_eq!(result["interfaces"][2]["name"], "eth0");
    assert_eq!(result["interfaces"][2]["sandbox"], pod.path());
    assert_eq!(result["interfaces"][0]["name"], "cni0");

    let addrs = pod.stdout(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("10.88.0.2/24"), "{addrs}");
    let routes = pod.stdout(&["ip", "route"]);
    assert!(
        routes.contains("default via 10.88.0.1 dev eth0"),
        "{routes}"
    );
    let lo = pod.stdout(&["ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let bridge = node
        .ns
        .stdout(&["ip", "-4", "-o", "addr", "show", "dev", "cni0"]);
    assert!(
        bridge.contains("10.88.0.1/24"),
        "gateway on the bridge: {bridge}"
    );
}

/// The MAC address `ip` shows for `link` inside `ns`.
fn mac_of(ns: &Netns, link: &str) -> String {
    let shown = ns.stdout(&["ip", "-o", "link", "show", link]);
    let mut words = shown.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC for {link}: {shown}"))
        .to_string()
}

#[test]
fn result_interfaces_name_the_links_with_the_macs_the_kernel_shows() {
    let node = Node::new("macs");
    // Two pods: the bridge takes its lowest port's MAC, so the second ADD
    // may change it, and its result must say so.
    let pods = [Netns::new("pm1"), Netns::new("pm2")];
    for (id, pod) in ["m1", "m2"].into_iter().zip(&pods) {
        let result = node.add(id, pod);
        let interfaces = result["interfaces"].as_array().expect("interfaces");
        assert_eq!(interfaces.len(), 3, "{result}");
        let [bridge, host_end, pod_end] = [0, 1, 2].map(|i| &interfaces[i]);
        assert_eq!(bridge["name"], "cni0");
        assert_eq!(bridge["mac"], mac_of(&node.ns, "cni0"), "{result}");
        let veth = host_end["name"].as_str().expect("host veth name");
        assert!(veth.starts_with("veth"), "{result}");
        assert_eq!(host_end["mac"], mac_of(&node.ns, veth), "{result}");
        assert_eq!(pod_end["name"], "eth0");
        assert_eq!(pod_end["mac"], mac_of(pod, "eth0"), "{result}");
        let master = node.ns.stdout(&["ip", "-o", "link", "show", veth]);
        assert!(master.contains("master cni0"), "{master}");
    }
}

#[test]
fn two_pods_on_one_bridge_get_distinct_addresses_and_reach_each_other() {
    let node = Node::new("ping");
    let (a, b) = (Netns::new("pa"), Netns::new("pb"));
    let ip_a = pod_ip(&node.add("ca", &a));
    let ip_b = pod_ip(&node.add("cb", &b));
    assert_ne!(ip_a, ip_b);
    let ping = a.exec(&["busybox", "ping", "-c", "1", "-W", "1", &ip_b]);
    assert!(
        ping.status.success(),
        "a -> b: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let ping = b.exec(&["busybox", "ping", "-c", "1", "-W", "1", &ip_a]);
    assert!(
        ping.status.success(),
        "b -> a: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
}

#[test]
fn del_releases_the_address_and_is_idempotent_even_without_the_netns() {
    let node = Node::new("del");
    let pod = Netns::new("pod");
    let first = pod_ip(&node.add("c1", &pod));
    assert!(node.del("c1", &pod).ok);
    assert!(pod
        .stdout(&["ip", "-o", "link"])
        .lines()
        .all(|l| !l.contains("eth0")));
    assert!(node.del("c1", &pod).ok, "second DEL must succeed");

    // Fill the rest of the pool so the round-robin comes back to the released address.
    let conf = {
        let mut c = node.conf();
        c["ipam"]["rangeEnd"] = json!("10.88.0.3");
        c
    };
    let pod2 = Netns::new("pod2");
    let second = pod_ip(&node.cni("ADD", "c2", Some(&pod2.path()), &conf).result());
    assert_ne!(second, first);
    let pod3 = Netns::new("pod3");
    let third = pod_ip(&node.cni("ADD", "c3", Some(&pod3.path()), &conf).result());
    assert_eq!(third, first, "the released address is handed out again");

    // The runtime deleted the sandbox before DEL: still success, and the address is freed.
    let gone = pod3.path();
    drop(pod3);
    assert!(node.cni("DEL", "c3", Some(&gone), &conf).ok);
    assert!(
        node.cni("DEL", "c3", None, &conf).ok,
        "DEL without CNI_NETNS"
    );
    assert!(!node.data.path().join("podnet").join(&first).exists());
}

#[test]
fn twenty_concurrent_adds_get_twenty_distinct_addresses() {
    let node = Node::new("conc");
    let pods: Vec<Netns> = (0..20).map(|_| Netns::new("pc")).collect();
    let ips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let node = &node;
                s.spawn(move || pod_ip(&node.add(&format!("conc{i}"), pod)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<_> = ips.iter().collect();
    assert_eq!(distinct.len(), 20, "{ips:?}");
    assert!(
        !distinct.contains(&"10.88.0.1".to_string()),
        "gateway handed out"
    );
}

#[test]
fn reservations_survive_the_plugin_process_and_are_seen_by_the_next_one() {
    let node = Node::new("persist");
    let (a, b) = (Netns::new("pa"), Netns::new("pb"));
    let ip_a = pod_ip(&node.add("ca", &a));
    // A new process (each run is one) reads the reservation from disk.
    let ip_b = pod_ip(&node.add("cb", &b));
    assert_ne!(ip_a, ip_b);
    let file = node.data.path().join("podnet").join(&ip_a);
    let owner = std::fs::read_to_string(&file).expect("reservation file");
    assert_eq!(owner, "ca\r\neth0", "host-local's on-disk format");
    // CHECK in yet another process finds the reservation without a prevResult.
    assert!(node.cni("CHECK", "ca", Some(&a.path()), &node.conf()).ok);
}

#[test]
fn bad_configs_are_refused_with_the_spec_code_and_the_field_and_change_nothing() {
    let node = Node::new("bad");
    let pod = Netns::new("pod");
    let base = node.conf();
    let with = |ptr: &str, v: Value| {
        let mut c = base.clone();
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        c.pointer_mut(parent).unwrap_or_else(|| panic!("{ptr}"))[key] = v;
        c
    };
    let cases: Vec<(Value, u64, &str)> = vec![
        (with("/cniVersion", json!("0.2.0")), 1, "cniVersion"),
        (
            with("/ipam/subnet", json!("10.88.0.0/99")),
            7,
            "ipam.subnet",
        ),
        (with("/ipam/subnet", json!("fd00::/64")), 2, "ipam.subnet"),
        (
            with("/ipam/gateway", json!("192.168.1.1")),
            7,
            "ipam.gateway",
        ),
        (with("/ipam/type", json!("dhcp")), 2, "ipam.type"),
        (with("/mtu", json!(12)), 7, "mtu"),
        (with("/isGateway", json!("yes")), 7, "isGateway"),
        (
            with("/bridge", json!("bridge-name-far-too-long")),
            7,
            "bridge",
        ),
    ];
    for (conf, code, field) in cases {
        let run = node.cni("ADD", "c1", Some(&pod.path()), &conf);
        assert_eq!(run.error_code(), code, "{field}: {:?}", run.json);
        assert!(
            run.error_msg().contains(field),
            "{field}: {}",
            run.error_msg()
        );
        assert!(run.json.as_ref().unwrap()["cniVersion"].is_string());
    }
    let not_json = node.run_with(
        PLUGIN,
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", &pod.path()),
        ],
        &json!("{"),
    );
    assert_eq!(not_json.error_code(), 7, "a JSON string is not an object");
    let missing_env = node.run_with(PLUGIN, &[("CNI_COMMAND", "ADD")], &base);
    assert_eq!(missing_env.error_code(), 4);
    assert!(
        missing_env.error_msg().contains("CNI_CONTAINERID"),
        "{}",
        missing_env.error_msg()
    );
    let missing_netns = node.cni("ADD", "c1", Some("/var/run/netns/does-not-exist"), &base);
    assert_eq!(missing_netns.error_code(), 4);
    assert!(missing_netns.error_msg().contains("CNI_NETNS"));

    let links = node.ns.stdout(&["ip", "-o", "link"]);
    assert!(
        !links.contains("cni0"),
        "a refused ADD must not create the bridge: {links}"
    );
}

#[test]
fn stdin_that_is_not_json_is_a_decode_failure() {
    let node = Node::new("dec");
    let mut child = Command::new(PLUGIN)
        .env_clear()
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not json at all")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["code"], 6);
    drop(node);
}

#[test]
fn ip_masq_rules_appear_on_add_and_disappear_on_del() {
    let node = Node::new("masq");
    let pod = Netns::new("pod");
    let mut conf = node.conf();
    conf["ipMasq"] = json!(true);
    let ip = pod_ip(&node.cni("ADD", "cm", Some(&pod.path()), &conf).result());
    let rules = node.ns.stdout(&["iptables", "-t", "nat", "-S"]);
    assert!(
        rules.contains(&format!("-A POSTROUTING -s {ip}/32")),
        "{rules}"
    );
    assert!(
        rules.contains("-d 10.88.0.0/24") && rules.contains("-j ACCEPT"),
        "{rules}"
    );
    assert!(
        rules.contains("! -d 224.0.0.0/4") && rules.contains("-j MASQUERADE"),
        "{rules}"
    );

    assert!(node.cni("DEL", "cm", Some(&pod.path()), &conf).ok);
    let rules = node.ns.stdout(&["iptables", "-t", "nat", "-S"]);
    assert!(!rules.contains("CNI-"), "rules left behind: {rules}");
    assert!(
        node.cni("DEL", "cm", Some(&pod.path()), &conf).ok,
        "second DEL with rules gone"
    );
}

#[test]
fn check_passes_after_add_and_fails_once_the_veth_is_gone() {
    let node = Node::new("check");
    let pod = Netns::new("pod");
    let mut conf = node.conf();
    let result = node.cni("ADD", "ck", Some(&pod.path()), &conf).result();
    conf["prevResult"] = result.clone();
    assert!(node.cni("CHECK", "ck", Some(&pod.path()), &conf).ok);

    let host_veth = result["interfaces"][1]["name"].as_str().unwrap();
    sh("ip", &["-n", &node.ns.name, "link", "del", host_veth]);
    let run = node.cni("CHECK", "ck", Some(&pod.path()), &conf);
    assert_eq!(run.error_code(), 100, "{:?}", run.json);
    assert!(run.error_msg().contains(host_veth), "{}", run.error_msg());
}

#[test]
fn version_status_and_gc_follow_the_1_1_spec() {
    let node = Node::new("misc");
    let version = node.run_with(
        PLUGIN,
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.0.0"}),
    );
    let version = version.result();
    assert_eq!(version["cniVersion"], "1.0.0");
    let supported: Vec<&str> = version["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(supported, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);

    let mut conf = node.conf();
    conf["cniVersion"] = json!("1.1.0");
    let status = node.run_with(PLUGIN, &[("CNI_COMMAND", "STATUS")], &conf);
    assert!(status.ok && status.json.is_none(), "{status:?}");

    let (keep, stale) = (Netns::new("keep"), Netns::new("stale"));
    let keep_ip = pod_ip(&node.cni("ADD", "keep", Some(&keep.path()), &conf).result());
    let stale_result = node
        .cni("ADD", "stale", Some(&stale.path()), &conf)
        .result();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert!(node.run_with(PLUGIN, &[("CNI_COMMAND", "GC")], &conf).ok);
    let dir = node.data.path().join("podnet");
    assert!(dir.join(&keep_ip).exists(), "GC kept the valid attachment");
    assert!(
        !dir.join(pod_ip(&stale_result)).exists(),
        "GC freed the stale reservation"
    );
    let stale_veth = stale_result["interfaces"][1]["name"].as_str().unwrap();
    let links = node.ns.stdout(&["ip", "-o", "link"]);
    assert!(
        !links.contains(stale_veth),
        "GC removed the stale veth: {links}"
    );
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn reference_bridge_plugin_gives_a_result_of_the_same_shape() {
    if !std::path::Path::new(REFERENCE_BRIDGE).exists() {
        eprintln!("skipping: {REFERENCE_BRIDGE} not installed");
        return;
    }
    let ours_node = Node::new("shape");
    let ours = ours_node.add("c1", &Netns::new("pod"));

    let ref_node = Node::new("ref");
    let mut conf = ref_node.conf();
    conf["type"] = json!("bridge");
    let ref_pod = Netns::new("refpod");
    let ref_path = ref_pod.path();
    let env = vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", ref_path.as_str()),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let mut run = ref_node.run_with(REFERENCE_BRIDGE, &env, &conf);
    if !run.ok {
        // Debian's 1.1.1 fails the first ADD on a fresh bridge ("could not set
        // bridge's mac"); clean up and try once more, as a runtime would.
        let mut del = env.clone();
        del[0] = ("CNI_COMMAND", "DEL");
        let _ = ref_node.run_with(REFERENCE_BRIDGE, &del, &conf);
        run = ref_node.run_with(REFERENCE_BRIDGE, &env, &conf);
    }
    let reference = run.result();

    assert_eq!(keys(&ours), keys(&reference), "top-level keys");
    for field in ["interfaces", "ips", "routes"] {
        let (o, r) = (
            ours[field].as_array().unwrap(),
            reference[field].as_array().unwrap(),
        );
        assert_eq!(o.len(), r.len(), "{field}: {ours} vs {reference}");
        for (a, b) in o.iter().zip(r) {
            assert_eq!(keys(a), keys(b), "{field} entry keys: {a} vs {b}");
        }
    }
    assert_eq!(ours["ips"][0]["address"], reference["ips"][0]["address"]);
    assert_eq!(ours["ips"][0]["gateway"], reference["ips"][0]["gateway"]);
    assert_eq!(ours["routes"], reference["routes"]);
}

/// containerd runs a `loopback` network before the pod network; invoked
/// under that type the plugin brings `lo` up and answers as the reference
/// `loopback` plugin does.
#[test]
fn loopback_type_brings_lo_up_and_down_and_del_tolerates_a_missing_netns() {
    let node = Node::new("lo");
    let pod = Netns::new("lo-pod");
    assert!(pod
        .stdout(&["ip", "link", "show", "lo"])
        .contains("state DOWN"));
    let conf = json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"});
    let env = |cmd| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "lo1"),
            ("CNI_IFNAME", "lo"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]
    };
    let path = pod.path();
    let mut add = env("ADD");
    add.push(("CNI_NETNS", &path));
    let ours = node.run_with(PLUGIN, &add, &conf).result();
    assert_eq!(ours["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(ours["interfaces"][0]["name"], "lo");
    assert!(pod
        .stdout(&["ip", "link", "show", "lo"])
        .contains("LOOPBACK,UP"));
    assert!(pod
        .exec(&["busybox", "ping", "-c1", "-W1", "127.0.0.1"])
        .status
        .success());

    // Same shape as the reference plugin's answer for the same config.
    let reference = Netns::new("lo-ref");
    let ref_path = reference.path();
    let mut ref_add = env("ADD");
    ref_add.push(("CNI_NETNS", &ref_path));
    let theirs = node
        .run_with("/usr/lib/cni/loopback", &ref_add, &conf)
        .result();
    assert_eq!(theirs["ips"][0]["address"], ours["ips"][0]["address"]);
    assert_eq!(
        theirs["interfaces"][0]["name"],
        ours["interfaces"][0]["name"]
    );

    let mut check = env("CHECK");
    check.push(("CNI_NETNS", &path));
    assert!(node.run_with(PLUGIN, &check, &conf).ok);
    let mut del = env("DEL");
    del.push(("CNI_NETNS", &path));
    assert!(node.run_with(PLUGIN, &del, &conf).ok);
    assert!(pod
        .stdout(&["ip", "link", "show", "lo"])
        .contains("state DOWN"));
    let mut gone = env("DEL");
    gone.push(("CNI_NETNS", "/var/run/netns/no-such-netns"));
    assert!(node.run_with(PLUGIN, &gone, &conf).ok);
}

/// Links of a namespace as (name, up, has an IPv4 address), from `ip -o`.
fn links(ns: &Netns) -> Vec<(String, bool, bool)> {
    let addrs = ns.stdout(&["ip", "-4", "-o", "addr"]);
    ns.stdout(&["ip", "-o", "link"])
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?.split('@').next()?.to_string();
            let flags = l.split('<').nth(1)?.split('>').next()?;
            let up = flags.split(',').any(|f| f == "UP");
            let addressed = addrs
                .lines()
                .any(|a| a.split_whitespace().nth(1) == Some(name.as_str()));
            Some((name, up, addressed))
        })
        .collect()
}

/// Polls `condition` every 20 ms for at most `limit`; true once it held.
fn eventually(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn readd_right_after_del_with_the_same_netns_container_and_ifname_succeeds() {
    let node = Node::new("readd");
    let pod = Netns::new("pod");
    let first = node.add("c1", &pod);
    let veth = first["interfaces"][1]["name"].as_str().unwrap().to_string();
    assert!(node.del("c1", &pod).ok);
    // No wait: the old veth may still be being unregistered in the background.
    let second = node.add("c1", &pod);
    assert_eq!(second["interfaces"][1]["name"], veth.as_str());
    assert_eq!(second["interfaces"][2]["name"], "eth0");
    let addrs = pod.stdout(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains(pod_ip(&second).as_str()),
        "eth0 carries the new address: {addrs}"
    );
    // And once more with another container in the same sandbox.
    assert!(node.del("c1", &pod).ok);
    let third = node.add("c2", &pod);
    let routes = pod.stdout(&["ip", "route"]);
    assert!(
        routes.contains("default via 10.88.0.1 dev eth0"),
        "{routes}"
    );
    assert!(node.del("c2", &pod).ok);
    drop(third);
}

#[test]
fn after_del_the_pod_is_unreachable_at_once_and_its_veth_is_gone_shortly_after() {
    let node = Node::new("gone");
    let (a, b) = (Netns::new("pa"), Netns::new("pb"));
    let ip_a = pod_ip(&node.add("ca", &a));
    let result_b = node.add("cb", &b);
    let ip_b = pod_ip(&result_b);
    let veth_b = result_b["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let ping = |from: &Netns, to: &str| {
        from.exec(&["busybox", "ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    };
    assert!(ping(&a, &ip_b), "b is reachable before DEL");

    assert!(node.del("cb", &b).ok);
    // Checked before any wait: what DEL itself guarantees.
    let pod_links = links(&b);
    assert!(
        pod_links.iter().all(|(name, _, _)| name != "eth0"),
        "eth0 is free in the sandbox: {pod_links:?}"
    );
    assert!(
        pod_links
            .iter()
            .all(|(name, up, addressed)| name == "lo" || (!up && !addressed)),
        "whatever is left of the veth in the sandbox is down and has no address: {pod_links:?}"
    );
    let node_links = links(&node.ns);
    assert!(
        node_links.iter().all(|(name, _, _)| *name != veth_b),
        "the node end's name is free: {node_links:?}"
    );
    assert!(
        node_links
            .iter()
            .filter(|(name, _, _)| name.starts_with("cnidel"))
            .all(|(_, up, _)| !up),
        "a retired node end is down: {node_links:?}"
    );
    assert!(!ping(&a, &ip_b), "b is unreachable right after DEL");
    assert!(ping(&b_replacement(&node), &ip_a), "the bridge still works");

    let gone = eventually(std::time::Duration::from_secs(10), || {
        links(&b).iter().all(|(name, _, _)| name == "lo")
            && links(&node.ns)
                .iter()
                .all(|(name, _, _)| !name.starts_with("cnidel") && *name != veth_b)
    });
    assert!(
        gone,
        "the veth was unregistered: node {:?}, sandbox {:?}",
        links(&node.ns),
        links(&b)
    );
}

/// A fresh pod on the node, to show the bridge forwards for the pods that remain.
fn b_replacement(node: &Node) -> Netns {
    let pod = Netns::new("pc");
    node.add("cc", &pod);
    pod
}

#[test]
fn check_after_del_names_the_missing_interface_and_a_second_del_still_succeeds() {
    let node = Node::new("chkdel");
    let pod = Netns::new("pod");
    let mut conf = node.conf();
    let result = node.cni("ADD", "cd", Some(&pod.path()), &conf).result();
    let veth = result["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(node.cni("DEL", "cd", Some(&pod.path()), &conf).ok);

    conf["prevResult"] = result;
    let check = node.cni("CHECK", "cd", Some(&pod.path()), &conf);
    assert_eq!(check.error_code(), 100, "{:?}", check.json);
    assert!(check.error_msg().contains(&veth), "{}", check.error_msg());

    assert!(node.cni("DEL", "cd", Some(&pod.path()), &conf).ok);
    let gone = pod.path();
    drop(pod);
    assert!(
        node.cni("DEL", "cd", Some(&gone), &conf).ok,
        "DEL after the sandbox is gone"
    );
}

//! The CNI commands: ADD, DEL, CHECK, VERSION, STATUS and GC.
//! Entry point: [`run`], which `main.rs` calls with the environment and stdin.
//!
//! To ensure correctness:
//! - Nothing on the node changes before the environment and the whole
//!   configuration have been validated.
//! - A failed ADD undoes what it did (veth, reservation, masquerade rules).
//! - DEL never fails because something is already gone: a missing netns, a
//!   missing veth and a missing reservation are all success.
//! - When DEL returns, the attachment is out of service and its names and
//!   address are free; only the kernel's unregister of the veth may still be
//!   running, in a background process (see [`crate::retire`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::Value;
use sha2::{Digest, Sha512};

use crate::config::{CniEnv, Command, NetConf, SUPPORTED_VERSIONS};
use crate::error::{CniError, ErrorCode};
use crate::ipam::Store;
use crate::iptables;
use crate::loopback::{self, LOOPBACK_INDEX};
use crate::netlink::{
    first_link, open_netns, Link, Netlink, NetlinkError, Request, EADDRNOTAVAIL, EEXIST, ENODEV,
};
use crate::result::{version_json, CniResult, Interface, IpConfig};
use crate::retire;

/// A failed command: the error plus the version its JSON must be stamped with.
#[derive(Debug)]
pub struct Failure {
    pub error: CniError,
    pub cni_version: String,
}

impl Failure {
    pub fn to_json(&self) -> Value {
        self.error.to_json(&self.cni_version)
    }
}

fn latest() -> String {
    SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string()
}

/// Runs one CNI command. `Ok(Some(json))` is printed to stdout; `Ok(None)`
/// means success with no output (DEL, CHECK, STATUS, GC).
pub fn run(vars: &HashMap<String, String>, stdin: &[u8]) -> Result<Option<Value>, Failure> {
    // Best effort: the error JSON echoes the config's version when it has a supported one.
    let asked_version = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()));
    let fail = |error: CniError| Failure {
        error,
        cni_version: asked_version.clone().unwrap_or_else(latest),
    };
    let env = CniEnv::from_vars(vars).map_err(|e| fail(e.into()))?;
    if env.command == Command::Version {
        return Ok(Some(version_json(
            &asked_version.clone().unwrap_or_else(latest),
        )));
    }
    let loopback = serde_json::from_slice::<Value>(stdin)
        .ok()
        .filter(loopback::is_loopback);
    let conf = match loopback {
        Some(_) => None,
        None => Some(NetConf::parse(stdin).map_err(|e| fail(e.into()))?),
    };
    let outcome = match &conf {
        None => {
            let version = asked_version.clone().unwrap_or_else(latest);
            loopback::run(&env, &version)
        }
        Some(conf) => match env.command {
            Command::Add => add(&env, conf).map(Some),
            Command::Del => del(&env, conf).map(|()| None),
            Command::Check => check(&env, conf).map(|()| None),
            Command::Gc => gc(conf).map(|()| None),
            Command::Status | Command::Version => Ok(None),
        },
    };
    outcome.map_err(fail)
}

/// The node-side veth name: stable per (network, container, ifname), so DEL
/// and GC find it without entering the sandbox. 11 hex digits keep it within
/// the 15-byte interface name limit.
pub fn host_veth_name(network: &str, container_id: &str, ifname: &str) -> String {
    let digest = Sha512::digest(format!("{network}\0{container_id}\0{ifname}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("veth{}", &hex[..11])
}

fn enable_ip_forward() -> Result<(), CniError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let io = |e: std::io::Error| CniError::new(ErrorCode::IoFailure, format!("{PATH}: {e}"));
    if std::fs::read_to_string(PATH).map_err(io)?.trim() != "1" {
        std::fs::write(PATH, "1").map_err(io)?;
    }
    Ok(())
}

fn add(env: &CniEnv, conf: &NetConf) -> Result<Value, CniError> {
    let netns_path = env.netns.as_deref().unwrap_or(Path::new(""));
    let sandbox_ns = open_netns(netns_path)?.ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_NETNS: {} does not exist", netns_path.display()),
        )
    })?;
    let range = &conf.ipam.range;
    let gateway = if conf.is_gateway {
        Some(
            Ipv4Net::new(range.gateway, range.subnet.prefix_len()).map_err(|e| {
                CniError::new(
                    ErrorCode::InvalidNetworkConfig,
                    format!("ipam.gateway: {e}"),
                )
            })?,
        )
    } else {
        None
    };
    let host = Netlink::host()?;
    let bridge = host.ensure_bridge(&conf.bridge, conf.mtu, conf.promisc_mode)?;

    let store = Store::new(&conf.ipam.data_dir);
    let ip = store.allocate(range, &env.container_id, &env.ifname)?;
    let veth = host_veth_name(&conf.name, &env.container_id, &env.ifname);
    let sandbox = Sandbox {
        ns: &sandbox_ns,
        path: netns_path,
    };
    // The rules only match the pod's address, so they can go in while the veth is made.
    let mut masq = conf
        .ip_masq
        .then(|| iptables::start_setup(&conf.name, &env.container_id, ip, range.subnet));
    match attach(
        env, conf, &host, &bridge, gateway, sandbox, &veth, ip, &mut masq,
    ) {
        Ok(result) => Ok(result.to_json()),
        Err(e) => {
            // Undo in reverse order; the original error is what the runtime needs to see.
            if let Some(Ok(setup)) = masq.take() {
                let _ = setup.wait();
            }
            if conf.ip_masq {
                let _ = iptables::teardown_masquerade(&conf.name, &env.container_id, &[ip]);
            }
            let _ = host.delete_link(&veth);
            let _ = store.release(&env.container_id, &env.ifname);
            Err(e)
        }
    }
}

/// The pod's network namespace: the open file and the path it came from.
struct Sandbox<'a> {
    ns: &'a std::fs::File,
    path: &'a Path,
}

/// Plugs the pod in with two batches of netlink requests, one per
/// namespace, so ADD costs two round trips beyond finding the bridge.
#[allow(clippy::too_many_arguments)]
fn attach(
    env: &CniEnv,
    conf: &NetConf,
    host: &Netlink,
    bridge: &Link,
    gateway: Option<Ipv4Net>,
    sandbox: Sandbox<'_>,
    veth: &str,
    ip: Ipv4Addr,
    masq: &mut Option<Result<iptables::Restore, iptables::IptablesError>>,
) -> Result<CniResult, CniError> {
    let range = &conf.ipam.range;
    let mut node_side = Vec::new();
    if let Some(gw) = gateway {
        node_side.push(Request::add_address(bridge.index, gw).tolerate(&[EEXIST]));
    }
    node_side.push(Request::new_veth(
        veth,
        &env.ifname,
        sandbox.ns,
        bridge.index,
        conf.mtu,
    ));
    let veth_answer = node_side.len() - 1;
    if conf.hairpin_mode {
        node_side.push(Request::set_hairpin(veth, true));
    }
    // The bridge takes the lowest port MAC, so it is read after the port was added.
    node_side.push(Request::get_link_by_index(bridge.index));
    let mut answers = host.batch(node_side).map_err(|e| match e {
        NetlinkError::Request {
            step: "create veth",
            ..
        } if e.errno() == Some(EEXIST) => NetlinkError::InterfaceExists {
            name: format!("{veth} or {}", env.ifname),
            place: "the node or the sandbox",
        },
        e => e,
    })?;
    let bridge_now = answers.pop().as_deref().and_then(first_link);
    // The kernel's echo of the creation; kernels before 6.3 do not echo.
    let host_end = match first_link(&answers[veth_answer]).filter(|l| l.name == veth) {
        Some(link) => Some(link),
        None => host.link(veth)?,
    };
    let (Some(bridge_now), Some(host_end)) = (bridge_now, host_end) else {
        return Err(CniError::new(
            ErrorCode::IoFailure,
            format!(
                "veth {veth} or bridge {} vanished after creation",
                conf.bridge
            ),
        ));
    };
    let pod_index = host_end.peer_index.ok_or_else(|| {
        CniError::new(ErrorCode::IoFailure, format!("veth {veth} reports no peer"))
    })?;
    if gateway.is_some() {
        enable_ip_forward()?;
    }

    let address = Ipv4Net::new(ip, range.subnet.prefix_len())
        .map_err(|e| CniError::new(ErrorCode::InvalidNetworkConfig, format!("ipam.subnet: {e}")))?;
    let mut routes: Vec<(Ipv4Net, Option<Ipv4Addr>)> =
        conf.ipam.routes.iter().map(|r| (r.dst, r.gw)).collect();
    let default_route = Ipv4Net::default();
    if conf.is_default_gateway && !routes.iter().any(|(dst, _)| *dst == default_route) {
        routes.push((default_route, Some(range.gateway)));
    }
    let mut pod_side = vec![
        Request::set_state(LOOPBACK_INDEX, true, None),
        Request::add_address(pod_index, address).tolerate(&[EEXIST]),
    ];
    // Read while down: once up, reading it makes the kernel settle its carrier change first.
    let pod_end_answer = pod_side.len();
    pod_side.push(Request::get_link_by_index(pod_index));
    // Up before routes: a gateway is only reachable once the link's subnet route exists.
    pod_side.push(Request::set_state(pod_index, true, None));
    for (dst, gw) in &routes {
        pod_side.push(
            Request::add_route(*dst, gw.unwrap_or(range.gateway), pod_index).tolerate(&[EEXIST]),
        );
    }
    let pod = Netlink::in_netns(sandbox.ns, sandbox.path)?;
    let pod_end = first_link(&pod.batch(pod_side)?[pod_end_answer])
        .filter(|l| l.name == env.ifname)
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::IoFailure,
                format!("{} vanished from the sandbox", env.ifname),
            )
        })?;

    if let Some(setup) = masq.take() {
        setup?.wait()?;
    }

    Ok(CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: bridge_now.name,
                mac: bridge_now.mac,
                sandbox: None,
            },
            Interface {
                name: host_end.name,
                mac: host_end.mac,
                sandbox: None,
            },
            Interface {
                name: env.ifname.clone(),
                mac: pod_end.mac,
                sandbox: Some(sandbox.path.display().to_string()),
            },
        ],
        ips: vec![IpConfig {
            address,
            gateway: Some(range.gateway),
            interface: 2,
        }],
        routes,
        dns: conf.dns.clone(),
    })
}

/// Detaches the pod. The veth is retired (see [`crate::retire`]): out of
/// service and renamed before DEL returns, unregistered by a background
/// process, because the kernel's unregister takes far longer than the rest
/// of DEL.
fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    // First, while the process has no open files (see retire).
    let unregisterer = retire::Unregisterer::fork();
    let host = Netlink::host()?;
    let veth = host_veth_name(&conf.name, &env.container_id, &env.ifname);
    let store = Store::new(&conf.ipam.data_dir);
    let ips = store.lookup(&env.container_id, &env.ifname)?;
    // Removing rules waits on the kernel, not on the CPU; the veth is retired meanwhile.
    let masq = conf
        .ip_masq
        .then(|| iptables::start_teardown(&conf.name, &env.container_id, &ips));
    let retired = retire_veth(env, conf, &host, unregisterer, &veth, &ips);
    if let Some(started) = masq {
        iptables::finish_teardown(started, &conf.name, &env.container_id)?;
    }
    retired?;
    // Released last, so the address cannot be handed out while the old veth still holds it.
    store.release(&env.container_id, &env.ifname)?;
    Ok(())
}

/// Takes the veth out of service on both sides and hands its unregister to
/// a background child.
fn retire_veth(
    env: &CniEnv,
    conf: &NetConf,
    host: &Netlink,
    unregisterer: std::io::Result<retire::Unregisterer>,
    veth: &str,
    ips: &[Ipv4Addr],
) -> Result<(), CniError> {
    let host_end = host.link(veth)?;
    let sandbox = match env.netns.as_deref() {
        // A sandbox that is gone (deleted, unmounted) counts as done.
        Some(path) => match open_netns(path)?.map(|ns| Netlink::in_netns(&ns, path)) {
            Some(Ok(s)) => Some(s),
            // Not a network namespace (any more): nothing to retire in it.
            Some(Err(NetlinkError::EnterNetns { .. })) | None => None,
            Some(Err(e)) => return Err(e.into()),
        },
        None => None,
    };
    if let Some(sandbox) = &sandbox {
        retire_in_sandbox(sandbox, &env.ifname, host_end.as_ref(), ips, conf)?;
    }
    if let Some(host_end) = &host_end {
        // Down is enough to stop forwarding: the bridge disables a port
        // whose device is down. Leaving the bridge waits for an RCU grace
        // period, so that is left to the unregister.
        host.batch(vec![
            Request::set_state(host_end.index, false, None),
            Request::rename(host_end.index, &retire::retired_name(host_end.index)),
        ])?;
        let handed_over = unregisterer.and_then(|u| u.hand_over(host_end.index));
        if handed_over.is_err() {
            // No background child: unregister here, slower but complete.
            host.request(Request::delete_link(host_end.index).tolerate(&[ENODEV]))?;
        }
    }
    Ok(())
}

/// The sandbox half of DEL. When `ifname` is the peer of the node's veth,
/// it is set down, loses its addresses and is renamed away, so `ifname` is
/// free again. When the node's veth is missing, `ifname` is deleted here.
fn retire_in_sandbox(
    sandbox: &Netlink,
    ifname: &str,
    host_end: Option<&Link>,
    ips: &[Ipv4Addr],
    conf: &NetConf,
) -> Result<(), CniError> {
    let Some(pod_end) = sandbox.link(ifname)? else {
        return Ok(());
    };
    match host_end {
        Some(h) if h.peer_index == Some(pod_end.index) => {
            let prefix = conf.ipam.range.subnet.prefix_len();
            let mut requests = vec![Request::set_state(pod_end.index, false, None)];
            for ip in ips {
                if let Ok(addr) = Ipv4Net::new(*ip, prefix) {
                    requests.push(
                        Request::delete_address(pod_end.index, addr).tolerate(&[EADDRNOTAVAIL]),
                    );
                }
            }
            requests.push(Request::rename(
                pod_end.index,
                &retire::retired_name(pod_end.index),
            ));
            sandbox.batch(requests)?;
        }
        // Some other link of the sandbox's own: not ours to touch.
        Some(_) => {}
        None => {
            sandbox.delete_link(ifname)?;
        }
    }
    Ok(())
}

fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    if matches!(conf.cni_version.as_str(), "0.3.0" | "0.3.1") {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!(
                "cniVersion: CHECK needs 0.4.0 or later, got {}",
                conf.cni_version
            ),
        ));
    }
    let mismatch = |msg: String| CniError::new(ErrorCode::CheckMismatch, msg);
    let path = env.netns.as_deref().unwrap_or(Path::new(""));
    let ns = open_netns(path)?.ok_or_else(|| {
        CniError::new(
            ErrorCode::UnknownContainer,
            format!("CNI_NETNS: {} does not exist", path.display()),
        )
    })?;

    // Expected addresses: the ADD result the runtime passes back, else our reservations.
    let mut expected: Vec<Ipv4Net> = conf
        .prev_result
        .as_ref()
        .and_then(|r| r.get("ips"))
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str()?.parse::<Ipv4Net>().ok())
                .collect()
        })
        .unwrap_or_default();
    if expected.is_empty() {
        let prefix = conf.ipam.range.subnet.prefix_len();
        expected = Store::new(&conf.ipam.data_dir)
            .lookup(&env.container_id, &env.ifname)?
            .into_iter()
            .filter_map(|ip| Ipv4Net::new(ip, prefix).ok())
            .collect();
    }
    if expected.is_empty() {
        return Err(mismatch(format!(
            "no address is reserved for container {} ifname {}",
            env.container_id, env.ifname
        )));
    }

    let host = Netlink::host()?;
    if host.link(&conf.bridge)?.is_none() {
        return Err(mismatch(format!("bridge {} does not exist", conf.bridge)));
    }
    let veth = host_veth_name(&conf.name, &env.container_id, &env.ifname);
    if host.link(&veth)?.is_none() {
        return Err(mismatch(format!("host veth {veth} does not exist")));
    }
    let sandbox = Netlink::in_netns(&ns, path)?;
    let pod_end = sandbox.link(&env.ifname)?.ok_or_else(|| {
        mismatch(format!(
            "interface {} does not exist in {}",
            env.ifname,
            path.display()
        ))
    })?;
    let present = sandbox.addresses(pod_end.index)?;
    for want in expected {
        if !present.contains(&want) {
            return Err(mismatch(format!("{} lacks address {want}", env.ifname)));
        }
    }
    Ok(())
}

fn gc(conf: &NetConf) -> Result<(), CniError> {
    let Some(valid) = &conf.valid_attachments else {
        // Without the runtime's list we cannot tell what is stale; free nothing.
        return Ok(());
    };
    let freed = Store::new(&conf.ipam.data_dir).retain(valid)?;
    if freed.is_empty() {
        return Ok(());
    }
    let host = Netlink::host()?;
    for (ip, container_id, ifname) in freed {
        host.delete_link(&host_veth_name(&conf.name, &container_id, &ifname))?;
        if conf.ip_masq {
            iptables::teardown_masquerade(&conf.name, &container_id, &[ip])?;
        }
    }
    Ok(())
}

//! The node's CNI network config: a conflist for its podCIDR written into
//! `--cni-conf-dir`, which containerd reads when it sets up a sandbox.
//! Entry point: [`write_conflist`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The conflist's file name; containerd takes the first file in name order.
pub const CONFLIST_NAME: &str = "10-ferrokube.conflist";
/// Where, under the kubelet's `--root-dir`, pod address reservations live.
pub const IPAM_DIR: &str = "cni/networks";
/// The node bridge pods are plugged into.
pub const BRIDGE_NAME: &str = "cni0";

/// Parses `a.b.c.d/n` (IPv4).
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

/// True when `ip` is inside `cidr`.
pub fn contains(cidr: &str, ip: &str) -> bool {
    let (Some((net, len)), Ok(ip)) = (parse_cidr(cidr), ip.parse::<Ipv4Addr>()) else {
        return false;
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(net) & mask == u32::from(ip) & mask
}

/// The conflist for `pod_cidr`, with `plugin_type` as the main plugin
/// (`cni-bridge`; the reference `bridge` accepts the same fields). Address
/// reservations live in `ipam_dir` (the plugin adds the network's name),
/// one per node: nodes that share a host — the network-namespace cluster —
/// must not share them.
pub fn conflist(pod_cidr: &str, plugin_type: &str, ipam_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "ferrokube",
        "plugins": [{
            "type": plugin_type,
            "bridge": BRIDGE_NAME,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "dataDir": ipam_dir,
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    })
}

/// Writes the conflist atomically (temp file + rename); returns its path.
pub fn write_conflist(
    dir: &Path,
    pod_cidr: &str,
    plugin_type: &str,
    ipam_dir: &Path,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(CONFLIST_NAME);
    let tmp = dir.join(format!(".{CONFLIST_NAME}.tmp"));
    let body = serde_json::to_vec_pretty(&conflist(pod_cidr, plugin_type, ipam_dir)).expect("JSON");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_names_the_pod_cidr_and_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_conflist(
            dir.path(),
            "10.244.1.0/24",
            "cni-bridge",
            Path::new("/var/lib/kubelet/cni/networks"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["type"], "cni-bridge");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(
            v["plugins"][0]["ipam"]["dataDir"],
            "/var/lib/kubelet/cni/networks"
        );
    }

    #[test]
    fn cidr_containment() {
        assert!(contains("10.244.1.0/24", "10.244.1.7"));
        assert!(!contains("10.244.1.0/24", "10.244.2.7"));
        assert!(parse_cidr("10.0.0.0").is_none());
    }
}

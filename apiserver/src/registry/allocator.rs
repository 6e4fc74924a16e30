//! Service ClusterIPs from `--service-cluster-ip-range` and NodePorts from
//! `--service-node-port-range`. Each allocated address or port is a key
//! under `/registry/ranges/...` naming its Service, claimed in the same etcd
//! transaction that writes the Service, so two Services can never hold the
//! same one — not across concurrent requests, not across restarts.
//! Entry point: [`ServiceAllocator::plan`].

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use crate::error::Cause;
use crate::storage::Storage;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// A parsed IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Result<Ipv4Cidr, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// The `n`th address of the range (0 is the network address).
    pub fn nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(n as u32))
    }

    /// Usable service addresses: all but the network and broadcast addresses.
    fn usable(&self) -> (u64, u64) {
        if self.size() <= 2 {
            (0, self.size() - 1)
        } else {
            (1, self.size() - 2)
        }
    }
}

/// Parses `30000-32767`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range {s:?}: expected <first>-<last>, e.g. 30000-32767");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Allocation for Services.
#[derive(Clone)]
pub struct ServiceAllocator {
    pub range: Ipv4Cidr,
    pub ports: (u16, u16),
}

/// The keys a Service write claims and releases.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub reserve: Vec<String>,
    pub release: Vec<String>,
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

fn port_key(port: i64) -> String {
    format!("{PORT_PREFIX}{port}")
}

fn service_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

fn wants_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
        && svc.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

/// The keys a stored Service holds.
pub fn held_keys(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
    {
        keys.push(ip_key(ip));
    }
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
            keys.push(port_key(np));
        }
    }
    keys
}

impl ServiceAllocator {
    /// The first usable address: the `kubernetes` Service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        self.range.nth(self.range.usable().0)
    }

    /// Fills in `spec.clusterIP(s)` and `nodePort`s on a Service being
    /// created or updated (`old` is the stored one), and returns the keys to
    /// claim and release. Requested addresses and ports outside the ranges
    /// are refused with upstream's messages; taken ones fail at write time.
    pub async fn plan(
        &self,
        storage: &Storage,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<Plan, Vec<Cause>> {
        let mut plan = Plan::default();
        let old_keys: HashSet<String> =
            old.map(held_keys).unwrap_or_default().into_iter().collect();
        let mut causes = Vec::new();

        if wants_cluster_ip(svc) {
            let requested = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let ip = match requested {
                Some(s) => match s.parse::<Ipv4Addr>() {
                    Ok(ip) if self.range.contains(ip) => Some(ip),
                    _ => {
                        causes.push(Cause::invalid(
                            "spec.clusterIPs",
                            &json!([s]),
                            &format!(
                                "failed to allocate IP {s}: the provided IP ({s}) is not in the valid range. The range of valid IPs is {}/{}",
                                self.range.network, self.range.prefix
                            ),
                        ));
                        None
                    }
                },
                None => match self
                    .random_free(
                        storage,
                        IP_PREFIX,
                        |i| ip_key(self.range.nth(i)),
                        self.range.usable(),
                    )
                    .await
                {
                    Some(n) => Some(self.range.nth(n)),
                    None => {
                        causes.push(Cause::invalid(
                            "spec.clusterIPs",
                            &json!([]),
                            "failed to allocate IP: range is full",
                        ));
                        None
                    }
                },
            };
            if let Some(ip) = ip {
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        } else if service_type(svc) == "ExternalName" {
            if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        } else {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }

        let node_ports = wants_node_ports(svc);
        let mut taken_here = HashSet::new();
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                if !node_ports {
                    if let Some(o) = p.as_object_mut() {
                        o.remove("nodePort");
                    }
                    continue;
                }
                match p
                    .get("nodePort")
                    .and_then(Value::as_i64)
                    .filter(|n| *n != 0)
                {
                    Some(n) if n < self.ports.0 as i64 || n > self.ports.1 as i64 => {
                        causes.push(Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &json!(n),
                            &format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                self.ports.0, self.ports.1
                            ),
                        ));
                    }
                    Some(n) => {
                        if !taken_here.insert(n) {
                            causes.push(Cause::duplicate(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(n),
                            ));
                        }
                    }
                    None => {
                        let range = (self.ports.0 as u64, self.ports.1 as u64);
                        let mut found = None;
                        for _ in 0..16 {
                            let Some(n) = self
                                .random_free(storage, PORT_PREFIX, |n| port_key(n as i64), range)
                                .await
                            else {
                                break;
                            };
                            if taken_here.insert(n as i64) {
                                found = Some(n as i64);
                                break;
                            }
                        }
                        match found {
                            Some(n) => p["nodePort"] = json!(n),
                            None => causes.push(Cause::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(0),
                                "failed to allocate a nodePort: range is full",
                            )),
                        }
                    }
                }
            }
        }
        if !causes.is_empty() {
            return Err(causes);
        }
        let new_keys: HashSet<String> = held_keys(svc).into_iter().collect();
        plan.reserve = new_keys.difference(&old_keys).cloned().collect();
        plan.release = old_keys.difference(&new_keys).cloned().collect();
        plan.reserve.sort();
        plan.release.sort();
        Ok(plan)
    }

    /// A random member of `[lo, hi]` whose key is not claimed yet, or None
    /// when the range is full. A concurrent claim of the same member is
    /// caught by the write's transaction and retried by the caller.
    async fn random_free(
        &self,
        storage: &Storage,
        prefix: &str,
        key: impl Fn(u64) -> String,
        (lo, hi): (u64, u64),
    ) -> Option<u64> {
        let taken: HashSet<String> = storage.keys(prefix).await.ok()?.into_iter().collect();
        let size = hi - lo + 1;
        if taken.len() as u64 >= size {
            return None;
        }
        let start = rand::rng().random_range(0..size);
        (0..size)
            .map(|i| lo + (start + i) % size)
            .find(|n| !taken.contains(&key(*n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_ranges_parse_like_upstream_defaults() {
        let r = Ipv4Cidr::parse("10.96.0.0/12").unwrap();
        let a = ServiceAllocator {
            range: r,
            ports: parse_port_range("30000-32767").unwrap(),
        };
        assert_eq!(a.first_ip(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(r.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert!(Ipv4Cidr::parse("10.96.0.0").is_err());
        assert!(parse_port_range("32767-30000").is_err());
    }

    #[test]
    fn held_keys_name_the_ip_and_node_ports() {
        let svc = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        assert_eq!(
            held_keys(&svc),
            vec![
                "/registry/ranges/serviceips/10.96.0.10".to_string(),
                "/registry/ranges/servicenodeports/30080".to_string()
            ]
        );
    }
}

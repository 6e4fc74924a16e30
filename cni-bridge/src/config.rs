//! The network configuration (JSON on stdin) and the `CNI_*` environment,
//! parsed and validated up front so a bad input fails before anything on the
//! node changes. Entry points: [`NetConf::parse`] and [`CniEnv::from_vars`].

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::Deserialize;

/// The spec versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Where reservations live when `ipam.dataDir` is not given (host-local's default root).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// Why the configuration or the environment was refused; each variant names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("network configuration is not valid JSON: {0}")]
    Decode(String),
    #[error("cniVersion {version:?} is not supported; supported versions: {}", SUPPORTED_VERSIONS.join(", "))]
    UnsupportedVersion { version: String },
    #[error("{field}: missing; {expected}")]
    Missing {
        field: &'static str,
        expected: &'static str,
    },
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{field}: {problem}")]
    Unsupported { field: String, problem: String },
    #[error("{var}: required for {command} but not set")]
    MissingEnv { var: &'static str, command: String },
    #[error("{var}: {problem}")]
    InvalidEnv { var: &'static str, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The CNI operation requested by `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// The `CNI_*` environment variables the runtime sets for each call.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl CniEnv {
    /// Reads the environment; which variables are required depends on the command.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND") {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(ConfigError::InvalidEnv {
                    var: "CNI_COMMAND",
                    problem: format!(
                        "unknown command {other:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC"
                    ),
                })
            }
            None => {
                return Err(ConfigError::MissingEnv {
                    var: "CNI_COMMAND",
                    command: "any".into(),
                })
            }
        };
        let attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let cmd = format!("{command:?}").to_uppercase();
        let require = |var: &'static str| -> Result<String, ConfigError> {
            get(var)
                .map(str::to_string)
                .ok_or_else(|| ConfigError::MissingEnv {
                    var,
                    command: cmd.clone(),
                })
        };
        let container_id = if attachment {
            require("CNI_CONTAINERID")?
        } else {
            String::new()
        };
        if attachment && !valid_container_id(&container_id) {
            return Err(ConfigError::InvalidEnv {
                var: "CNI_CONTAINERID",
                problem: format!(
                    "{container_id:?} must start with an alphanumeric and hold only alphanumerics, '_', '.', '-'"
                ),
            });
        }
        let ifname = if attachment {
            require("CNI_IFNAME")?
        } else {
            String::new()
        };
        if attachment {
            if let Err(problem) = validate_ifname(&ifname) {
                return Err(ConfigError::InvalidEnv {
                    var: "CNI_IFNAME",
                    problem,
                });
            }
        }
        let netns = match command {
            Command::Add | Command::Check => Some(PathBuf::from(require("CNI_NETNS")?)),
            _ => get("CNI_NETNS").map(PathBuf::from),
        };
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args: get("CNI_ARGS").unwrap_or_default().to_string(),
            path: get("CNI_PATH").unwrap_or_default().to_string(),
        })
    }
}

fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Linux interface names: 1..=15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?} must be 1 to 15 characters long"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!("{name:?} must not contain '/', ':' or whitespace"));
    }
    Ok(())
}

/// One static route for the pod: `gw` defaults to the range's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gw: Option<Ipv4Addr>,
}

/// The address pool: `start..=end` inside `subnet`, never handing out `gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    pub subnet: Ipv4Net,
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

/// The built-in host-local-style IPAM section.
#[derive(Debug, Clone)]
pub struct IpamConf {
    pub range: IpRange,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
}

/// A validated network configuration for the `cni-bridge` plugin.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub ip_masq: bool,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
    pub mtu: Option<u32>,
    pub ipam: IpamConf,
    pub dns: serde_json::Value,
    pub prev_result: Option<serde_json::Value>,
    /// GC (1.1): attachments the runtime still knows, as (containerID, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    _plugin_type: Option<String>,
    bridge: Option<String>,
    is_gateway: Option<bool>,
    is_default_gateway: Option<bool>,
    ip_masq: Option<bool>,
    hairpin_mode: Option<bool>,
    promisc_mode: Option<bool>,
    mtu: Option<u32>,
    vlan: Option<u32>,
    ipam: Option<RawIpam>,
    dns: Option<serde_json::Value>,
    prev_result: Option<serde_json::Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    ipam_type: Option<String>,
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    routes: Option<Vec<RawRoute>>,
    data_dir: Option<String>,
    ranges: Option<Vec<Vec<RawRange>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: Option<String>,
    gw: Option<String>,
}

impl NetConf {
    /// Parses and validates stdin. Type errors name the JSON path (`ipam.subnet`).
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Decode(e.to_string()))?;
        let raw: RawConf = serde_path_to_error::deserialize(&value).map_err(|e| {
            let field = e.path().to_string();
            invalid(field, e.into_inner().to_string())
        })?;

        let cni_version = raw.cni_version.ok_or(ConfigError::Missing {
            field: "cniVersion",
            expected: "one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
        })?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(ConfigError::UnsupportedVersion {
                version: cni_version,
            });
        }
        let name = raw.name.ok_or(ConfigError::Missing {
            field: "name",
            expected: "the network name, e.g. \"podnet\"",
        })?;
        if !valid_container_id(&name) {
            return Err(invalid(
                "name",
                format!("{name:?} must start with an alphanumeric and hold only alphanumerics, '_', '.', '-'"),
            ));
        }
        let bridge = raw.bridge.unwrap_or_else(|| "cni0".to_string());
        validate_ifname(&bridge).map_err(|p| invalid("bridge", p))?;
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m),
            Some(m) => return Err(invalid("mtu", format!("{m} is outside 68..=65535"))),
        };
        if raw.vlan.is_some_and(|v| v != 0) {
            return Err(ConfigError::Unsupported {
                field: "vlan".into(),
                problem: "VLAN tagging is not supported by cni-bridge".into(),
            });
        }
        let is_default_gateway = raw.is_default_gateway.unwrap_or(false);
        let ipam = parse_ipam(raw.ipam, &name)?;
        let valid_attachments = raw
            .valid_attachments
            .map(|v| v.into_iter().map(|a| (a.container_id, a.ifname)).collect());
        Ok(Self {
            cni_version,
            name,
            bridge,
            // isDefaultGateway implies isGateway, as in the reference plugin.
            is_gateway: raw.is_gateway.unwrap_or(false) || is_default_gateway,
            is_default_gateway,
            ip_masq: raw.ip_masq.unwrap_or(false),
            hairpin_mode: raw.hairpin_mode.unwrap_or(false),
            promisc_mode: raw.promisc_mode.unwrap_or(false),
            mtu,
            ipam,
            dns: raw.dns.unwrap_or_else(|| serde_json::json!({})),
            prev_result: raw.prev_result,
            valid_attachments,
        })
    }

    /// Whether the requested version's result carries `"version": "4"` on each IP.
    pub fn pre_1_0(&self) -> bool {
        self.cni_version.starts_with("0.")
    }
}

fn parse_ip(field: &str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    if s.contains(':') {
        return Err(ConfigError::Unsupported {
            field: field.to_string(),
            problem: format!("{s:?} is IPv6; cni-bridge allocates IPv4 only"),
        });
    }
    s.parse()
        .map_err(|_| invalid(field, format!("{s:?} is not an IPv4 address")))
}

fn parse_cidr(field: &str, s: &str) -> Result<Ipv4Net, ConfigError> {
    if s.contains(':') {
        return Err(ConfigError::Unsupported {
            field: field.to_string(),
            problem: format!("{s:?} is IPv6; cni-bridge allocates IPv4 only"),
        });
    }
    s.parse::<Ipv4Net>()
        .map_err(|_| invalid(field, format!("{s:?} is not a CIDR like 10.22.0.0/16")))
}

fn parse_ipam(raw: Option<RawIpam>, net_name: &str) -> Result<IpamConf, ConfigError> {
    let raw = raw.ok_or(ConfigError::Missing {
        field: "ipam",
        expected: "an object with at least \"subnet\"",
    })?;
    match raw.ipam_type.as_deref() {
        None | Some("host-local") | Some("cni-bridge") => {}
        Some(other) => {
            return Err(ConfigError::Unsupported {
                field: "ipam.type".into(),
                problem: format!(
                "{other:?}: cni-bridge has built-in host-local IPAM; use \"host-local\" or omit it"
            ),
            })
        }
    }
    let (prefix, range) = match (raw.subnet, raw.ranges) {
        (Some(subnet), None) => (
            "ipam",
            RawRange {
                subnet: Some(subnet),
                range_start: raw.range_start,
                range_end: raw.range_end,
                gateway: raw.gateway,
            },
        ),
        (None, Some(mut sets)) => {
            if sets.len() != 1 || sets[0].len() != 1 {
                return Err(ConfigError::Unsupported {
                    field: "ipam.ranges".into(),
                    problem: "exactly one range set holding one range is supported".into(),
                });
            }
            ("ipam.ranges[0][0]", sets.remove(0).remove(0))
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "ipam.ranges",
                "give either ipam.subnet or ipam.ranges, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::Missing {
                field: "ipam.subnet",
                expected: "a CIDR like 10.22.0.0/16",
            })
        }
    };
    let f = |name: &str| format!("{prefix}.{name}");
    let subnet_s = range.subnet.ok_or(ConfigError::Missing {
        field: "ipam.subnet",
        expected: "a CIDR like 10.22.0.0/16",
    })?;
    let subnet = parse_cidr(&f("subnet"), &subnet_s)?;
    if subnet.prefix_len() > 30 {
        return Err(invalid(
            f("subnet"),
            format!("{subnet} has no room for a gateway and a pod"),
        ));
    }
    let subnet = subnet.trunc();
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    let in_subnet = |field: String, ip: Ipv4Addr| -> Result<Ipv4Addr, ConfigError> {
        let n = u32::from(ip);
        if n < first || n > last {
            return Err(invalid(
                field,
                format!("{ip} is not a usable address of {subnet}"),
            ));
        }
        Ok(ip)
    };
    let gateway = match range.gateway {
        Some(g) => in_subnet(f("gateway"), parse_ip(&f("gateway"), &g)?)?,
        None => Ipv4Addr::from(first),
    };
    let start = match range.range_start {
        Some(s) => in_subnet(f("rangeStart"), parse_ip(&f("rangeStart"), &s)?)?,
        None => Ipv4Addr::from(first),
    };
    let end = match range.range_end {
        Some(s) => in_subnet(f("rangeEnd"), parse_ip(&f("rangeEnd"), &s)?)?,
        None => Ipv4Addr::from(last),
    };
    if start > end {
        return Err(invalid(
            f("rangeEnd"),
            format!("{end} comes before rangeStart {start}"),
        ));
    }
    let mut routes = Vec::new();
    for (i, r) in raw.routes.unwrap_or_default().into_iter().enumerate() {
        let dst_field = format!("ipam.routes[{i}].dst");
        let dst = r
            .dst
            .ok_or_else(|| invalid(dst_field.clone(), "missing; a CIDR"))?;
        let dst = parse_cidr(&dst_field, &dst)?;
        let gw = match r.gw {
            Some(g) => Some(parse_ip(&format!("ipam.routes[{i}].gw"), &g)?),
            None => None,
        };
        routes.push(Route { dst, gw });
    }
    let data_dir =
        PathBuf::from(raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.to_string())).join(net_name);
    Ok(IpamConf {
        range: IpRange {
            subnet,
            start,
            end,
            gateway,
        },
        routes,
        data_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> Result<NetConf, ConfigError> {
        NetConf::parse(json.as_bytes())
    }

    #[test]
    fn defaults_put_the_gateway_first_and_the_pool_after_it() {
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"cni-bridge","ipam":{"subnet":"10.9.0.0/24"}}"#)
            .unwrap();
        assert_eq!(c.bridge, "cni0");
        assert_eq!(c.ipam.range.gateway, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(c.ipam.range.start, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(c.ipam.range.end, Ipv4Addr::new(10, 9, 0, 254));
        assert_eq!(c.ipam.data_dir, PathBuf::from("/var/lib/cni/networks/n"));
    }

    #[test]
    fn every_rejection_names_the_offending_field() {
        let cases = [
            (
                r#"{"cniVersion":"9.9.9","name":"n","ipam":{"subnet":"10.0.0.0/24"}}"#,
                "cniVersion",
            ),
            (
                r#"{"cniVersion":"1.0.0","ipam":{"subnet":"10.0.0.0/24"}}"#,
                "name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, "ipam"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"nope"}}"#,
                "ipam.subnet",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24","gateway":"10.1.0.1"}}"#,
                "ipam.gateway",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.3"}}"#,
                "ipam.rangeEnd",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","mtu":5,"ipam":{"subnet":"10.0.0.0/24"}}"#,
                "mtu",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","mtu":"big","ipam":{"subnet":"10.0.0.0/24"}}"#,
                "mtu",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","bridge":"a-very-long-bridge-name","ipam":{"subnet":"10.0.0.0/24"}}"#,
                "bridge",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24","routes":[{"dst":"x"}]}}"#,
                "ipam.routes[0].dst",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"dhcp","subnet":"10.0.0.0/24"}}"#,
                "ipam.type",
            ),
        ];
        for (json, field) in cases {
            let err = conf(json).expect_err(json).to_string();
            assert!(
                err.starts_with(field) || err.contains(field),
                "{json}: {err} should name {field}"
            );
        }
    }

    #[test]
    fn env_requires_netns_for_add_but_not_for_del() {
        let mut vars: HashMap<String, String> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let err = CniEnv::from_vars(&vars).unwrap_err().to_string();
        assert!(err.contains("CNI_NETNS"), "{err}");
        vars.insert("CNI_COMMAND".into(), "DEL".into());
        assert!(CniEnv::from_vars(&vars).unwrap().netns.is_none());
    }
}

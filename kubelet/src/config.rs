//! The kubelet's configuration: upstream's command-line flags ([`Flags`])
//! plus the `--config` KubeletConfiguration file ([`KubeletConfiguration`]),
//! merged and checked into one [`Config`]. Entry point: [`Flags::into_config`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Why the configuration was rejected; nothing starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the kubelet config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubelet config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("kubelet config field {field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("flag {flag}: {message}")]
    InvalidFlag { flag: &'static str, message: String },
}

/// Upstream kubelet flags (the subset this kubelet implements).
#[derive(Debug, Clone, Parser)]
#[command(name = "kubelet", about = "The ferrokube node agent")]
pub struct Flags {
    /// KubeletConfiguration YAML file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// kubeconfig with the node's client certificate.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The node's name instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Extra labels `k=v,k2=v2` the Node registers with.
    #[arg(long, default_value = "")]
    pub node_labels: String,
    /// Taints `key=value:Effect,...` the Node registers with.
    #[arg(long, default_value = "")]
    pub register_with_taints: String,
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    pub container_runtime_endpoint: String,
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// Test rigs only: the CNI plugin type written into the conflist.
    #[arg(long, default_value = "cni-bridge", hide = true)]
    pub cni_plugin_type: String,
    /// The IP address the kubelet port listens on (all interfaces by default).
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// The kubelet port (logs, exec, port-forward for the apiserver).
    #[arg(long)]
    pub port: Option<u16>,
    /// x509 certificate for the kubelet port; without it (and the key) a
    /// self-signed pair is generated in `<root-dir>/pki`.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Bound on every runtime call except image pulls, e.g. `2m` (overrides
    /// `runtimeRequestTimeout`; default 2m).
    #[arg(long)]
    pub runtime_request_timeout: Option<String>,
}

/// `authentication` of the KubeletConfiguration (only `x509.clientCAFile`
/// is acted on; the other upstream fields are accepted).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletAuthentication {
    pub x509: Option<KubeletX509Authentication>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletX509Authentication {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

/// The `--config` file (kubelet.config.k8s.io/v1beta1). Unknown fields are
/// rejected by name rather than ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub static_pod_path: Option<String>,
    pub file_check_frequency: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub max_pods: Option<i64>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    pub node_status_update_frequency: Option<String>,
    pub sync_frequency: Option<String>,
    pub runtime_request_timeout: Option<String>,
    pub cgroup_driver: Option<String>,
    pub pod_logs_dir: Option<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub authentication: Option<KubeletAuthentication>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
    pub eviction_soft: Option<BTreeMap<String, String>>,
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    pub eviction_pressure_transition_period: Option<String>,
    pub eviction_max_pod_grace_period: Option<i32>,
}

/// Everything `run` needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub node_labels: Vec<(String, String)>,
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    /// Path of the runtime's unix socket.
    pub runtime_endpoint: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub cni_plugin_type: String,
    pub static_pod_path: Option<PathBuf>,
    /// How often `static_pod_path` is re-read (`fileCheckFrequency`).
    pub file_check_frequency: Duration,
    /// How pod cgroups are named (`cgroupDriver`); must match the runtime's.
    pub cgroup_driver: crate::cgroups::CgroupDriver,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub max_pods: i64,
    pub pod_cidr: Option<String>,
    pub node_status_update_frequency: Duration,
    /// How often every pod is synced even when nothing about it changed
    /// (and projected volumes refreshed); the runtime itself is relisted
    /// every second ([`crate::RELIST_PERIOD`]) or this, if shorter.
    pub sync_frequency: Duration,
    /// Bound on runtime calls (`runtimeRequestTimeout`; see
    /// [`crate::cri::RemoteRuntime`] for which calls get more or none).
    pub runtime_request_timeout: Duration,
    /// First CrashLoopBackOff delay; doubles up to [`Config::backoff_max`].
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub lease_duration_seconds: i32,
    /// Eviction thresholds, which drive the node's pressure conditions.
    pub eviction: crate::eviction::EvictionSettings,
    /// The kubelet port (streaming API for the apiserver).
    pub server: crate::server::ServerSettings,
}

impl Flags {
    /// Reads `--config` (if any) and merges it with the flags.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => KubeletConfiguration::default(),
        };
        build(self, file)
    }
}

/// Parses a KubeletConfiguration file.
pub fn load_file(path: &Path) -> Result<KubeletConfiguration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

/// Parses KubeletConfiguration YAML text; `path` only names it in errors.
pub fn parse_file(path: &Path, text: &str) -> Result<KubeletConfiguration, ConfigError> {
    let cfg: KubeletConfiguration =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if let Some(kind) = &cfg.kind {
        if kind != "KubeletConfiguration" {
            return Err(ConfigError::InvalidField {
                field: "kind",
                message: format!("got {kind:?}, want \"KubeletConfiguration\""),
            });
        }
    }
    Ok(cfg)
}

/// Parses upstream durations: `10s`, `1m`, `1m30s`, `500ms`, `2h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return None,
        };
    }
    Some(total)
}

fn duration_field(
    field: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match parse_duration(v) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(ConfigError::InvalidField {
                field,
                message: format!("{v:?} is not a positive duration like \"10s\" or \"1m\""),
            }),
        },
    }
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
            _ => Err(ConfigError::InvalidFlag {
                flag: "--node-labels",
                message: format!("{p:?} is not key=value"),
            }),
        })
        .collect()
}

fn parse_taints(s: &str) -> Result<Vec<k8s_openapi::api::core::v1::Taint>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let bad = |why: &str| ConfigError::InvalidFlag {
                flag: "--register-with-taints",
                message: format!("{p:?}: {why}"),
            };
            let (kv, effect) = p
                .trim()
                .rsplit_once(':')
                .ok_or_else(|| bad("want key[=value]:Effect"))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                return Err(bad(
                    "effect must be NoSchedule, PreferNoSchedule or NoExecute",
                ));
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            if key.is_empty() {
                return Err(bad("empty key"));
            }
            Ok(k8s_openapi::api::core::v1::Taint {
                key: key.into(),
                value,
                effect: effect.into(),
                time_added: None,
            })
        })
        .collect()
}

/// Merges flags and file into a checked [`Config`].
pub fn build(flags: Flags, file: KubeletConfiguration) -> Result<Config, ConfigError> {
    let server = server_settings(&flags, &file)?;
    let cgroup_driver = match &file.cgroup_driver {
        None => crate::cgroups::CgroupDriver::default(),
        Some(driver) => crate::cgroups::CgroupDriver::parse(driver).ok_or_else(|| {
            ConfigError::InvalidField {
                field: "cgroupDriver",
                message: format!("{driver:?} is not supported; want \"cgroupfs\" or \"systemd\""),
            }
        })?,
    };
    let max_pods = file.max_pods.unwrap_or(110);
    if max_pods <= 0 {
        return Err(ConfigError::InvalidField {
            field: "maxPods",
            message: format!("{max_pods} must be positive"),
        });
    }
    let cluster_dns = file
        .cluster_dns
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse().map_err(|_| ConfigError::InvalidField {
                field: "clusterDNS",
                message: format!("{s:?} is not an IP address"),
            })
        })
        .collect::<Result<Vec<IpAddr>, _>>()?;
    if let Some(cidr) = &file.pod_cidr {
        if crate::cni::parse_cidr(cidr).is_none() {
            return Err(ConfigError::InvalidField {
                field: "podCIDR",
                message: format!("{cidr:?} is not an IPv4 CIDR like 10.244.1.0/24"),
            });
        }
    }
    let endpoint = &flags.container_runtime_endpoint;
    let runtime_endpoint = match endpoint.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        _ => {
            return Err(ConfigError::InvalidFlag {
                flag: "--container-runtime-endpoint",
                message: format!("{endpoint:?} is not unix:///absolute/path"),
            })
        }
    };
    let runtime_request_timeout = match &flags.runtime_request_timeout {
        Some(v) => match parse_duration(v) {
            Some(d) if !d.is_zero() => d,
            _ => {
                return Err(ConfigError::InvalidFlag {
                    flag: "--runtime-request-timeout",
                    message: format!("{v:?} is not a positive duration like \"2m\" or \"30s\""),
                })
            }
        },
        None => duration_field(
            "runtimeRequestTimeout",
            file.runtime_request_timeout.as_deref(),
            crate::cri::DEFAULT_RUNTIME_REQUEST_TIMEOUT,
        )?,
    };
    let node_name = match flags.hostname_override {
        Some(n) if !n.is_empty() => n.to_lowercase(),
        _ => hostname().to_lowercase(),
    };
    Ok(Config {
        server,
        kubeconfig: flags.kubeconfig,
        node_name,
        node_ip: flags.node_ip,
        node_labels: parse_labels(&flags.node_labels)?,
        taints: parse_taints(&flags.register_with_taints)?,
        pod_logs_dir: file
            .pod_logs_dir
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/log/pods")),
        root_dir: flags.root_dir,
        runtime_endpoint,
        cni_conf_dir: flags.cni_conf_dir,
        cni_bin_dir: flags.cni_bin_dir,
        cni_plugin_type: flags.cni_plugin_type,
        static_pod_path: file.static_pod_path.map(PathBuf::from),
        // upstream's default is 20s with inotify besides; this kubelet
        // only polls, so it looks more often.
        file_check_frequency: duration_field(
            "fileCheckFrequency",
            file.file_check_frequency.as_deref(),
            Duration::from_secs(5),
        )?,
        cgroup_driver,
        cluster_dns,
        cluster_domain: file
            .cluster_domain
            .unwrap_or_else(|| "cluster.local".into()),
        max_pods,
        pod_cidr: file.pod_cidr,
        node_status_update_frequency: duration_field(
            "nodeStatusUpdateFrequency",
            file.node_status_update_frequency.as_deref(),
            Duration::from_secs(10),
        )?,
        // upstream's default; the relist runs every second regardless.
        sync_frequency: duration_field(
            "syncFrequency",
            file.sync_frequency.as_deref(),
            Duration::from_secs(60),
        )?,
        runtime_request_timeout,
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(300),
        lease_duration_seconds: 40,
        eviction: crate::eviction::EvictionSettings::parse(
            file.eviction_hard.as_ref(),
            file.eviction_soft.as_ref(),
            file.eviction_soft_grace_period.as_ref(),
            file.eviction_pressure_transition_period.as_deref(),
            file.eviction_max_pod_grace_period,
        )?,
    })
}

/// The kubelet port's settings: flags win over the file, as upstream.
fn server_settings(
    flags: &Flags,
    file: &KubeletConfiguration,
) -> Result<crate::server::ServerSettings, ConfigError> {
    let file_address = match &file.address {
        Some(a) => Some(a.parse().map_err(|_| ConfigError::InvalidField {
            field: "address",
            message: format!("{a:?} is not an IP address"),
        })?),
        None => None,
    };
    let defaults = crate::server::ServerSettings::default();
    Ok(crate::server::ServerSettings {
        address: flags.address.or(file_address).unwrap_or(defaults.address),
        port: flags.port.or(file.port).unwrap_or(defaults.port),
        tls_cert_file: flags
            .tls_cert_file
            .clone()
            .or_else(|| file.tls_cert_file.as_ref().map(PathBuf::from)),
        tls_private_key_file: flags
            .tls_private_key_file
            .clone()
            .or_else(|| file.tls_private_key_file.as_ref().map(PathBuf::from)),
        client_ca_file: file
            .authentication
            .as_ref()
            .and_then(|a| a.x509.as_ref())
            .and_then(|x| x.client_ca_file.as_ref())
            .filter(|f| !f.is_empty())
            .map(PathBuf::from),
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(extra: &[&str]) -> Flags {
        let mut args = vec!["kubelet", "--kubeconfig=/k"];
        args.extend_from_slice(extra);
        Flags::try_parse_from(args).unwrap()
    }

    #[test]
    fn config_file_fields_are_read() {
        let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nclusterDomain: example.local\nmaxPods: 20\npodCIDR: 10.244.3.0/24\nnodeStatusUpdateFrequency: 5s\nsyncFrequency: 1m\ncgroupDriver: cgroupfs\nstaticPodPath: /etc/kubernetes/manifests\n";
        let file = parse_file(Path::new("k.yaml"), text).unwrap();
        let c = build(flags(&["--hostname-override=Node-A"]), file).unwrap();
        assert_eq!(c.node_name, "node-a");
        assert_eq!(c.cluster_dns, vec!["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.cluster_domain, "example.local");
        assert_eq!(c.max_pods, 20);
        assert_eq!(c.pod_cidr.as_deref(), Some("10.244.3.0/24"));
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(5));
        assert_eq!(c.sync_frequency, Duration::from_secs(60));
        assert_eq!(
            c.runtime_endpoint,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(c.cgroup_driver, crate::cgroups::CgroupDriver::Cgroupfs);
        assert_eq!(c.file_check_frequency, Duration::from_secs(5));
        let file = parse_file(
            Path::new("k.yaml"),
            "cgroupDriver: systemd\nfileCheckFrequency: 1s\n",
        )
        .unwrap();
        let c = build(flags(&[]), file).unwrap();
        assert_eq!(c.cgroup_driver, crate::cgroups::CgroupDriver::Systemd);
        assert_eq!(c.file_check_frequency, Duration::from_secs(1));
    }

    #[test]
    fn unknown_config_field_is_rejected_by_name() {
        let err = parse_file(Path::new("k.yaml"), "maxPods: 3\nstaticPodPth: /x\n").unwrap_err();
        assert!(err.to_string().contains("staticPodPth"), "{err}");
    }

    #[test]
    fn invalid_config_fields_are_rejected_by_name() {
        for (text, field) in [
            ("cgroupDriver: openrc\n", "cgroupDriver"),
            ("fileCheckFrequency: 0s\n", "fileCheckFrequency"),
            ("maxPods: 0\n", "maxPods"),
            ("clusterDNS: [not-an-ip]\n", "clusterDNS"),
            ("podCIDR: 10.244.0.0\n", "podCIDR"),
            ("syncFrequency: soon\n", "syncFrequency"),
            ("runtimeRequestTimeout: 0s\n", "runtimeRequestTimeout"),
            ("runtimeRequestTimeout: -1m\n", "runtimeRequestTimeout"),
            (
                "runtimeRequestTimeout: 2 minutes\n",
                "runtimeRequestTimeout",
            ),
        ] {
            let file = parse_file(Path::new("k.yaml"), text).unwrap();
            let err = build(flags(&[]), file).unwrap_err();
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
        let err = parse_file(Path::new("k.yaml"), "maxPods: many\n").unwrap_err();
        assert!(err.to_string().contains("maxPods"), "{err}");
    }

    #[test]
    fn bad_flags_are_rejected_by_name() {
        let file = KubeletConfiguration::default();
        let err = build(
            flags(&["--container-runtime-endpoint=tcp://x"]),
            file.clone(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--container-runtime-endpoint"));
        let err = build(
            flags(&["--register-with-taints=a=b:Sometimes"]),
            file.clone(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--register-with-taints"));
        let c = build(
            flags(&[
                "--node-labels=a=b,c=d",
                "--register-with-taints=dedicated=x:NoSchedule",
            ]),
            file,
        )
        .unwrap();
        assert_eq!(
            c.node_labels,
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert_eq!(c.taints[0].key, "dedicated");
        assert_eq!(c.taints[0].effect, "NoSchedule");
    }

    #[test]
    fn kubelet_port_settings_come_from_flags_then_file() {
        let text = "port: 10260\ntlsCertFile: /pki/k.crt\ntlsPrivateKeyFile: /pki/k.key\nauthentication:\n  x509:\n    clientCAFile: /pki/ca.crt\n  anonymous:\n    enabled: false\n";
        let file = parse_file(Path::new("k.yaml"), text).unwrap();
        let c = build(flags(&[]), file.clone()).unwrap();
        assert_eq!(c.server.port, 10260);
        assert_eq!(c.server.tls_cert_file, Some(PathBuf::from("/pki/k.crt")));
        assert_eq!(c.server.client_ca_file, Some(PathBuf::from("/pki/ca.crt")));
        let c = build(flags(&["--port=0", "--address=10.0.0.1"]), file).unwrap();
        assert_eq!(c.server.port, 0);
        assert_eq!(c.server.address, "10.0.0.1".parse::<IpAddr>().unwrap());
        let c = build(flags(&[]), KubeletConfiguration::default()).unwrap();
        assert_eq!(c.server.port, 10250);
        assert_eq!(c.server.client_ca_file, None);
    }

    #[test]
    fn runtime_request_timeout_defaults_to_two_minutes_and_the_flag_wins_over_the_file() {
        let c = build(flags(&[]), KubeletConfiguration::default()).unwrap();
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
        let file = parse_file(Path::new("k.yaml"), "runtimeRequestTimeout: 30s\n").unwrap();
        let c = build(flags(&[]), file.clone()).unwrap();
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(30));
        let c = build(flags(&["--runtime-request-timeout=1m30s"]), file.clone()).unwrap();
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(90));
        for bad in ["0s", "soon", ""] {
            let err = build(
                flags(&[&format!("--runtime-request-timeout={bad}")]),
                file.clone(),
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("--runtime-request-timeout"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn durations_parse_like_upstream() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
    }
}

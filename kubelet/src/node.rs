//! The Node object this kubelet owns: registration ([`NodeStatusManager::register`]),
//! the periodic status update with the Ready condition, and the Lease
//! heartbeat in `kube-node-lease` ([`NodeStatusManager::renew_lease`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::Utc;
use ferrokube_client::Client;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};

use crate::config::Config;
use crate::eviction::Pressure;

/// The namespace node Leases live in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// What `nodeInfo.kubeletVersion` reports.
pub const KUBELET_VERSION: &str = "v1.32.0-ferrokube";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        source: ferrokube_client::Error,
    },
    #[error("updating the status of node {node}: {source}")]
    UpdateStatus {
        node: String,
        source: ferrokube_client::Error,
    },
    #[error("renewing the lease of node {node}: {source}")]
    RenewLease {
        node: String,
        source: ferrokube_client::Error,
    },
}

/// What the host and runtime report, gathered once per status update.
#[derive(Debug, Clone, Default)]
pub struct MachineInfo {
    pub cpus: usize,
    pub memory_kib: u64,
    pub os_image: String,
    pub kernel_version: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl MachineInfo {
    /// Reads /proc and /etc/os-release.
    pub fn read() -> MachineInfo {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        MachineInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib,
            os_image,
            kernel_version: read("/proc/sys/kernel/osrelease").trim().into(),
            machine_id: read("/etc/machine-id").trim().into(),
            boot_id: read("/proc/sys/kernel/random/boot_id").trim().into(),
        }
    }
}

/// The node's InternalIP: `--node-ip`, else the source address of the
/// default route (found without sending anything), else loopback.
pub fn node_ip(config: &Config) -> IpAddr {
    if let Some(ip) = config.node_ip {
        return ip;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The labels a kubelet registers its node with (upstream's well-known ones
/// plus `--node-labels`).
pub fn node_labels(config: &Config) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
    ]);
    labels.extend(config.node_labels.iter().cloned());
    labels
}

/// The Node as first registered.
pub fn initial_node(config: &Config) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(node_labels(config)),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            // Without a node IPAM controller the configured podCIDR is the
            // node's; other nodes route to it from here (host-gw).
            pod_cidr: config.pod_cidr.clone(),
            pod_cidrs: config.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: None,
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    old: &[NodeCondition],
) -> NodeCondition {
    let now = Time(Utc::now());
    let transition = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(transition),
    }
}

/// A pressure condition with upstream's reasons and messages.
fn pressure_condition(p: Pressure, now: &[Pressure], old: &[NodeCondition]) -> NodeCondition {
    let (type_, when_true, when_false) = match p {
        Pressure::Memory => (
            "MemoryPressure",
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        Pressure::Disk => (
            "DiskPressure",
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        Pressure::Pid => (
            "PIDPressure",
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
    };
    if now.contains(&p) {
        condition(type_, "True", when_true.0, when_true.1, old)
    } else {
        condition(type_, "False", when_false.0, when_false.1, old)
    }
}

/// The status a kubelet reports: capacity/allocatable, conditions,
/// addresses, nodeInfo. `ready_problem` is why the node is not Ready.
pub fn node_status(
    config: &Config,
    machine: &MachineInfo,
    ip: IpAddr,
    runtime_version: &str,
    ready_problem: Option<&str>,
    pressure: &[Pressure],
    old: Option<&NodeStatus>,
) -> NodeStatus {
    let old_conditions = old.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(machine.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", machine.memory_kib)),
        ),
        ("pods".to_string(), Quantity(config.max_pods.to_string())),
    ]);
    let ready = match ready_problem {
        None => condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            &old_conditions,
        ),
        Some(why) => condition("Ready", "False", "KubeletNotReady", why, &old_conditions),
    };
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            pressure_condition(Pressure::Memory, pressure, &old_conditions),
            pressure_condition(Pressure::Disk, pressure, &old_conditions),
            pressure_condition(Pressure::Pid, pressure, &old_conditions),
            ready,
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: runtime_version.into(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.machine_id.clone(),
        }),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.server.port),
            }),
        }),
        ..old.cloned().unwrap_or_default()
    }
}

/// Registers the node and keeps its status and Lease fresh.
pub struct NodeStatusManager {
    client: Client,
    config: Config,
    machine: MachineInfo,
    ip: IpAddr,
    /// The node's pressure as the eviction manager last measured it.
    pressure: tokio::sync::watch::Receiver<Vec<Pressure>>,
}

impl NodeStatusManager {
    pub fn new(
        client: Client,
        config: Config,
        pressure: tokio::sync::watch::Receiver<Vec<Pressure>>,
    ) -> Self {
        let ip = node_ip(&config);
        NodeStatusManager {
            client,
            config,
            machine: MachineInfo::read(),
            ip,
            pressure,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn node_ip(&self) -> IpAddr {
        self.ip
    }

    /// Creates the Node, or adopts the one already registered under this
    /// name (a restarted kubelet). Returns the stored Node.
    pub async fn register(&self) -> Result<Node, NodeError> {
        let name = &self.config.node_name;
        let err = |source| NodeError::Register {
            node: name.clone(),
            source,
        };
        match self.client.create("", &initial_node(&self.config)).await {
            Ok(node) => {
                tracing::info!(node = %name, "registered node");
                Ok(node)
            }
            Err(e) if e.is_already_exists() => {
                tracing::info!(node = %name, "node already registered; adopting it");
                self.client.get::<Node>("", name).await.map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Posts the current status; returns the Node as stored.
    pub async fn update_status(
        &self,
        runtime_version: &str,
        ready_problem: Option<&str>,
    ) -> Result<Node, NodeError> {
        let name = &self.config.node_name;
        let err = |source| NodeError::UpdateStatus {
            node: name.clone(),
            source,
        };
        let pressure = self.pressure.borrow().clone();
        let mut node: Node = self.client.get("", name).await.map_err(err)?;
        node.status = Some(node_status(
            &self.config,
            &self.machine,
            self.ip,
            runtime_version,
            ready_problem,
            &pressure,
            node.status.as_ref(),
        ));
        self.client.update_status(&node).await.map_err(err)
    }

    /// Renews (or creates) `kube-node-lease/<node>`.
    pub async fn renew_lease(&self, node_uid: &str) -> Result<Lease, NodeError> {
        let name = &self.config.node_name;
        let err = |source| NodeError::RenewLease {
            node: name.clone(),
            source,
        };
        let now = MicroTime(Utc::now());
        match self.client.get::<Lease>(LEASE_NAMESPACE, name).await {
            Ok(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.renew_time = Some(now);
                spec.holder_identity = Some(name.clone());
                spec.lease_duration_seconds = Some(self.config.lease_duration_seconds);
                self.client.update(&lease).await.map_err(err)
            }
            Err(e) if e.is_not_found() => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: (!node_uid.is_empty()).then(|| {
                            vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: name.clone(),
                                uid: node_uid.into(),
                                ..Default::default()
                            }]
                        }),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(self.config.lease_duration_seconds),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                self.client
                    .create(LEASE_NAMESPACE, &lease)
                    .await
                    .map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config() -> Config {
        let flags = crate::config::Flags::try_parse_from([
            "kubelet",
            "--kubeconfig=/k",
            "--hostname-override=n1",
            "--node-labels=tier=gold",
        ])
        .unwrap();
        crate::config::build(flags, Default::default()).unwrap()
    }

    #[test]
    fn pressure_conditions_carry_upstreams_reasons() {
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let s = node_status(
            &config(),
            &MachineInfo::default(),
            ip,
            "",
            None,
            &[Pressure::Disk, Pressure::Pid],
            None,
        );
        let conds = s.conditions.unwrap();
        let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get("MemoryPressure").status, "False");
        let disk = get("DiskPressure");
        assert_eq!(
            (disk.status.as_str(), disk.reason.as_deref()),
            ("True", Some("KubeletHasDiskPressure"))
        );
        let pid = get("PIDPressure");
        assert_eq!(
            (pid.status.as_str(), pid.message.as_deref()),
            ("True", Some("kubelet has insufficient PID available"))
        );
    }

    #[test]
    fn node_status_reports_capacity_conditions_and_info() {
        let machine = MachineInfo {
            cpus: 4,
            memory_kib: 2048,
            os_image: "Debian".into(),
            ..Default::default()
        };
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let s = node_status(
            &config(),
            &machine,
            ip,
            "containerd://1.6.20",
            None,
            &[],
            None,
        );
        let cap = s.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "2048Ki");
        assert_eq!(cap["pods"].0, "110");
        let conds = s.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(conds.iter().find(|c| c.type_ == t).unwrap().status, "False");
        }
        assert_eq!(s.addresses.unwrap()[0].address, "10.0.0.5");
        let port = s
            .daemon_endpoints
            .as_ref()
            .unwrap()
            .kubelet_endpoint
            .as_ref()
            .unwrap()
            .port;
        assert_eq!(port, 10250);
        let info = s.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.os_image, "Debian");

        let not_ready = node_status(&config(), &machine, ip, "", Some("runtime down"), &[], None);
        let ready = not_ready
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_deref()),
            ("False", Some("runtime down"))
        );
    }

    #[test]
    fn node_labels_include_well_known_and_flag_labels() {
        let labels = node_labels(&config());
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert!(labels.contains_key("kubernetes.io/arch"));
        assert_eq!(labels["tier"], "gold");
    }
}

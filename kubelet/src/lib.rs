//! The kubelet: registers its Node, heartbeats the node Lease, runs the
//! Pods bound to it through the container runtime (CRI) and reports their
//! status. Entry point: [`run`] (or [`run_with`] for a given client and
//! runtime).

pub mod backoff;
pub mod cni;
pub mod config;
pub mod cri;
pub mod env;
pub mod fieldpath;
pub mod node;
pub mod object_source;
pub mod pod_worker;
pub mod prober;
pub mod routes;
pub mod server;
pub mod status;
pub mod volumes;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrokube_client::{Client, DeleteParams, ObjectKey, Reflector, Store};
use k8s_openapi::api::core::v1::Pod;

pub use config::{Config, Flags};
use cri::Runtime;
use pod_worker::{PodWorker, SyncOutcome, WorkerSettings};

/// How often the node Lease is renewed.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the host-gw routes to other nodes' pod CIDRs are reconciled.
pub const ROUTE_SYNC_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the apiserver: {0}")]
    Connect(#[from] ferrokube_client::Error),
    #[error(transparent)]
    Runtime(#[from] cri::RuntimeError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

/// Connects to the apiserver (`--kubeconfig`) and the runtime
/// (`--container-runtime-endpoint`), then runs until `shutdown`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let client = Client::connect(&config.kubeconfig).await?;
    let runtime = Arc::new(cri::RemoteRuntime::connect(&config.runtime_endpoint)?);
    run_with(config, client, runtime, shutdown).await
}

fn runtime_version(v: &k8s_cri::v1::VersionResponse) -> String {
    format!("{}://{}", v.runtime_name, v.runtime_version)
}

/// Runs the kubelet with the given client and runtime until `shutdown`.
/// Containers keep running after shutdown; a new kubelet adopts them.
pub async fn run_with<R: Runtime>(
    mut config: Config,
    client: Client,
    runtime: Arc<R>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let version = runtime.version().await?;
    tracing::info!(runtime = %runtime_version(&version), node = %config.node_name, "connected to the container runtime");
    // The kubelet port is bound first: the Node advertises the bound port.
    let kubelet_port = server::bind(&config.server).await?;
    if let Ok(addr) = kubelet_port.local_addr() {
        config.server.port = addr.port();
    }
    let nodes = Arc::new(node::NodeStatusManager::new(client.clone(), config.clone()));
    let registered = nodes.register().await?;
    let node_uid = registered.metadata.uid.clone().unwrap_or_default();
    let host_ip = nodes.node_ip().to_string();

    let mut tasks = tokio::task::JoinSet::new();
    // Node status: the Ready condition follows the runtime and the CNI config.
    {
        let (nodes, runtime, config) = (nodes.clone(), runtime.clone(), config.clone());
        tasks.spawn(async move {
            let mut cni_written: Option<String> = None;
            loop {
                let node: Option<k8s_openapi::api::core::v1::Node> =
                    nodes_get(&nodes, &config).await;
                let cidr = node
                    .and_then(|n| n.spec.and_then(|s| s.pod_cidr))
                    .or_else(|| config.pod_cidr.clone());
                let mut problem = None;
                match &cidr {
                    Some(c) if cni_written.as_ref() != Some(c) => {
                        match cni::write_conflist(&config.cni_conf_dir, c, &config.cni_plugin_type) {
                            Ok(path) => {
                                tracing::info!(pod_cidr = %c, path = %path.display(), "wrote the CNI config");
                                cni_written = Some(c.clone());
                            }
                            Err(e) => problem = Some(format!("network not ready: writing the CNI config: {e}")),
                        }
                    }
                    Some(_) => {}
                    None => problem = Some("network not ready: the node has no podCIDR".to_string()),
                }
                let version = match runtime.version().await {
                    Ok(v) => runtime_version(&v),
                    Err(e) => {
                        problem = Some(format!("container runtime is down: {e}"));
                        String::new()
                    }
                };
                if let Err(e) = nodes.update_status(&version, problem.as_deref()).await {
                    tracing::warn!(error = %e, "node status update failed");
                }
                tokio::time::sleep(config.node_status_update_frequency).await;
            }
        });
    }
    // Lease heartbeat.
    {
        let nodes = nodes.clone();
        tasks.spawn(async move {
            loop {
                match nodes.renew_lease(&node_uid).await {
                    Ok(_) => tracing::debug!("renewed the node lease"),
                    Err(e) => tracing::warn!(error = %e, "node lease renewal failed"),
                }
                tokio::time::sleep(LEASE_RENEW_INTERVAL).await;
            }
        });
    }
    // Routes to the other nodes' pod CIDRs (host-gw).
    {
        let nodes: Store<k8s_openapi::api::core::v1::Node> = Store::new();
        tasks.spawn(Reflector::new(client.clone(), "", nodes.clone()).run());
        let node_name = config.node_name.clone();
        tasks.spawn(async move {
            let routes = match routes::HostGwRoutes::new() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "host-gw routes disabled");
                    return;
                }
            };
            loop {
                if nodes.is_synced() {
                    let all: Vec<_> = nodes.list().iter().map(|n| (**n).clone()).collect();
                    let want = routes::desired_routes(&all, &node_name);
                    if let Err(e) = routes.sync(&want).await {
                        tracing::warn!(error = %e, "syncing host-gw routes failed");
                    }
                }
                tokio::time::sleep(ROUTE_SYNC_INTERVAL).await;
            }
        });
    }
    // The pods bound to this node.
    let store: Store<Pod> = Store::new();
    let reflector = Reflector::new(client.clone(), "", store.clone())
        .with_selectors("", &format!("spec.nodeName={}", config.node_name));
    tasks.spawn(reflector.run());
    // The kubelet port: logs and exec for the apiserver.
    {
        let tls = server::tls::server_tls_config(
            &config.server,
            &config.root_dir,
            &config.node_name,
            nodes.node_ip(),
        )
        .map_err(server::ServerError::from)?;
        let service = server::KubeletService::new(runtime.clone(), store.clone());
        tasks.spawn(async move {
            if let Err(e) = server::serve(kubelet_port, tls, service, std::future::pending()).await
            {
                tracing::error!(error = %e, "the kubelet port stopped");
            }
        });
    }

    // Pod volumes under <root-dir>/pods; projected ones refreshed every syncFrequency.
    let volumes = Arc::new(volumes::VolumeManager::new(
        &config.root_dir,
        Arc::new(object_source::ApiObjectSource::new(client.clone())),
        &config.node_name,
        config.sync_frequency,
    ));
    let probes = Arc::new(prober::ProbeManager::new(
        runtime.clone(),
        Arc::new(client.clone()),
        &config.node_name,
    ));
    let worker = PodWorker::new(
        runtime.clone(),
        WorkerSettings {
            node_name: config.node_name.clone(),
            host_ip,
            cluster_dns: config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            cluster_domain: config.cluster_domain.clone(),
            pod_logs_dir: config.pod_logs_dir.clone(),
        },
        backoff::CrashLoopBackOff::new(config.backoff_initial, config.backoff_max),
    );
    let worker = Arc::new(
        worker
            .with_probes(probes.clone())
            .with_volume_manager(volumes.clone()),
    );
    {
        let (store, client) = (store.clone(), client.clone());
        let sync_every = config.sync_frequency.min(Duration::from_secs(1));
        tasks.spawn(async move {
            let in_flight: Arc<Mutex<HashSet<String>>> = Default::default();
            let mut tick = tokio::time::interval(sync_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A probe result that changed is reported without waiting for the tick.
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = probes.changed() => {}
                }
                if !store.is_synced() {
                    continue;
                }
                let pods = store.list();
                let live: HashSet<String> =
                    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                worker.forget_pods_except(&live);
                if !in_flight.lock().unwrap().contains("") {
                    in_flight.lock().unwrap().insert(String::new());
                    let (worker, in_flight, live) =
                        (worker.clone(), in_flight.clone(), live.clone());
                    let (volumes, store) = (volumes.clone(), store.clone());
                    tokio::spawn(async move {
                        if let Err(e) = worker.kill_orphans(&live).await {
                            tracing::warn!(error = %e, "removing orphaned sandboxes failed");
                        } else {
                            // Their containers are gone: unmount and remove their volumes,
                            // keeping pods that reached the store meanwhile.
                            let mut keep = live;
                            keep.extend(
                                store
                                    .list()
                                    .into_iter()
                                    .filter_map(|p| p.metadata.uid.clone()),
                            );
                            volumes.clean_up_orphaned_pods(&keep);
                        }
                        in_flight.lock().unwrap().remove("");
                    });
                }
                for pod in pods {
                    let Some(uid) = pod.metadata.uid.clone() else {
                        continue;
                    };
                    if !in_flight.lock().unwrap().insert(uid.clone()) {
                        continue;
                    }
                    let (worker, in_flight, client, store) = (
                        worker.clone(),
                        in_flight.clone(),
                        client.clone(),
                        store.clone(),
                    );
                    tokio::spawn(async move {
                        sync_one(&worker, &client, &store, &pod).await;
                        in_flight.lock().unwrap().remove(&uid);
                    });
                }
            }
        });
    }

    shutdown.await;
    tracing::info!("kubelet shutting down; containers keep running");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn nodes_get(
    nodes: &node::NodeStatusManager,
    config: &Config,
) -> Option<k8s_openapi::api::core::v1::Node> {
    nodes.client().get("", &config.node_name).await.ok()
}

/// One pod's sync and the API writes it calls for.
async fn sync_one<R: Runtime>(
    worker: &PodWorker<R>,
    client: &Client,
    store: &Store<Pod>,
    pod: &Pod,
) {
    let name = pod_worker::pod_name(pod);
    match worker.sync_pod(pod).await {
        Ok(SyncOutcome::Status(status)) => {
            if pod.status.as_ref() == Some(&*status) {
                return;
            }
            let mut updated = pod.clone();
            let phase = status.phase.clone();
            updated.status = Some(*status);
            match client.update_status(&updated).await {
                Ok(stored) => {
                    if pod.status.as_ref().and_then(|s| s.phase.clone()) != phase {
                        tracing::info!(pod = %name, phase = ?phase, "pod phase changed");
                    }
                    store.upsert(stored);
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {
                    tracing::debug!(pod = %name, error = %e, "status update raced; next sync retries")
                }
                Err(e) => tracing::warn!(pod = %name, error = %e, "pod status update failed"),
            }
        }
        Ok(SyncOutcome::Killed) => {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                precondition_uid: pod.metadata.uid.clone().unwrap_or_default(),
                ..Default::default()
            };
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match client.delete::<Pod>(&ns, &pod_name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %name, "pod terminated and deleted");
                    store.remove(&ObjectKey::new(&ns, &pod_name));
                }
                Err(e) if e.is_not_found() => store.remove(&ObjectKey::new(&ns, &pod_name)),
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "deleting the terminated pod failed")
                }
            }
        }
        Ok(SyncOutcome::Finished) => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "pod sync failed; will retry"),
    }
}

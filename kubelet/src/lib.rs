//! The kubelet: runs the static pods of its manifest directory from the
//! start, then — once the apiserver answers — registers its Node,
//! heartbeats the node Lease, mirrors the static pods into the API and runs
//! the Pods bound to it, all through the container runtime (CRI), reporting
//! their status. Entry point: [`run`] (or [`run_with`] for a given client
//! and runtime).

pub mod admission;
pub mod api_handle;
pub mod backoff;
pub mod cgroups;
pub mod cni;
pub mod config;
pub mod cri;
pub mod env;
pub mod eviction;
pub mod fieldpath;
pub mod mirror_pod;
pub mod node;
pub mod object_source;
pub mod pleg;
pub mod pod_worker;
pub mod prober;
pub mod routes;
pub mod security_context;
pub mod server;
pub mod static_pods;
pub mod status;
pub mod token_manager;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::{
    Client, DeleteParams, EventRecorder, EventType, ObjectKey, Reflector, Store,
};
use k8s_openapi::api::core::v1::Pod;

use api_handle::ApiHandle;
pub use config::{Config, Flags};
use cri::Runtime;
use pod_worker::{PodWorker, SyncOutcome, WorkerSettings};
use static_pods::StaticPods;

/// How often the node Lease is renewed.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the host-gw routes to other nodes' pod CIDRs are reconciled.
pub const ROUTE_SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// How often the runtime is relisted for all pods (upstream's PLEG relist
/// period).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// The longest wait between attempts to reach the apiserver.
const API_RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runtime(#[from] cri::RuntimeError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

/// Connects to the runtime (`--container-runtime-endpoint`) and runs until
/// `shutdown`. The apiserver (`--kubeconfig`) is dialled in the background
/// until it answers: static pods do not wait for it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let runtime = Arc::new(
        cri::RemoteRuntime::connect(&config.runtime_endpoint)?
            .with_request_timeout(config.runtime_request_timeout),
    );
    let kubeconfig = config.kubeconfig.clone();
    run_with_connector(
        config,
        connect_until_reachable(kubeconfig),
        runtime,
        shutdown,
    )
    .await
}

/// Dials the apiserver until it answers, waiting longer after each failure.
async fn connect_until_reachable(kubeconfig: PathBuf) -> Client {
    let mut delay = Duration::from_secs(1);
    loop {
        match Client::connect(&kubeconfig).await {
            Ok(client) => return client,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "apiserver not reachable; static pods run meanwhile");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(API_RETRY_MAX);
            }
        }
    }
}

fn runtime_version(v: &k8s_cri::v1::VersionResponse) -> String {
    format!("{}://{}", v.runtime_name, v.runtime_version)
}

/// Runs the kubelet with the given client and runtime until `shutdown`.
/// Containers keep running after shutdown; a new kubelet adopts them.
pub async fn run_with<R: Runtime>(
    config: Config,
    client: Client,
    runtime: Arc<R>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_with_connector(config, async move { client }, runtime, shutdown).await
}

/// Runs the kubelet until `shutdown`; `connect` yields the apiserver client
/// whenever it is reachable. Static pods start at once; everything that
/// needs the API starts when `connect` is done.
pub async fn run_with_connector<R: Runtime>(
    mut config: Config,
    connect: impl Future<Output = Client> + Send + 'static,
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
    let kubelet_tls = server::tls::server_tls_config(
        &config.server,
        &config.root_dir,
        &config.node_name,
        node::node_ip(&config),
    )
    .map_err(server::ServerError::from)?;
    let host_ip = node::node_ip(&config).to_string();
    // The apiserver client, once reached; volumes and probe events wait for it.
    let api = ApiHandle::default();
    // Pod volumes under <root-dir>/pods; projected ones refreshed every syncFrequency.
    let volumes = Arc::new(volumes::VolumeManager::new(
        &config.root_dir,
        Arc::new(object_source::ApiObjectSource::new(api.clone())),
        &config.node_name,
        config.sync_frequency,
    ));
    let probes = Arc::new(prober::ProbeManager::new(
        runtime.clone(),
        Arc::new(api.clone()),
        &config.node_name,
    ));
    let worker = Arc::new(
        PodWorker::new(
            runtime.clone(),
            WorkerSettings {
                node_name: config.node_name.clone(),
                host_ip,
                cluster_dns: config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                cluster_domain: config.cluster_domain.clone(),
                pod_logs_dir: config.pod_logs_dir.clone(),
            },
            backoff::CrashLoopBackOff::new(config.backoff_initial, config.backoff_max),
        )
        .with_cgroup_driver(config.cgroup_driver)
        .with_probes(probes.clone())
        .with_volume_manager(volumes.clone()),
    );

    let mut tasks = tokio::task::JoinSet::new();
    // Static pods: read from the manifest directory, API or not.
    let statics = StaticPods::default();
    match &config.static_pod_path {
        Some(dir) => {
            tasks.spawn(statics.clone().run(
                dir.clone(),
                config.node_name.clone(),
                config.file_check_frequency,
            ));
        }
        None => statics.mark_synced(),
    }
    // Everything that needs the apiserver, once it answers.
    let store: Store<Pod> = Store::new();
    // The kubelet port: logs and exec for the apiserver.
    {
        let service = server::KubeletService::new(runtime.clone(), store.clone());
        tasks.spawn(async move {
            let stopped =
                server::serve(kubelet_port, kubelet_tls, service, std::future::pending()).await;
            if let Err(e) = stopped {
                tracing::error!(error = %e, "the kubelet port stopped");
            }
        });
    }
    // The eviction manager: measures the node's pressure (for the node
    // status and pod admission) and evicts pods under it through the sync
    // loop.
    let (pressure_tx, pressure_rx) = tokio::sync::watch::channel(Vec::new());
    let (evict_tx, evict_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tasks.spawn(
        eviction::manager::EvictionManager {
            settings: config.eviction.clone(),
            root_dir: config.root_dir.clone(),
            node_name: config.node_name.clone(),
            usage: eviction::usage::UsageReader {
                cgroup_root: PathBuf::from("/sys/fs/cgroup"),
                driver: config.cgroup_driver,
                pod_logs_dir: config.pod_logs_dir.clone(),
                pods_dir: config.root_dir.join("pods"),
            },
            worker: worker.clone(),
            store: store.clone(),
            statics: statics.clone(),
            api: api.clone(),
            events: EventRecorder::new(api.clone(), "kubelet").with_host(&config.node_name),
            evict: evict_tx,
            pressure: pressure_tx,
        }
        .run(),
    );
    tasks.spawn(run_api_side(
        config.clone(),
        connect,
        runtime.clone(),
        store.clone(),
        api.clone(),
        statics.clone(),
        pressure_rx.clone(),
    ));
    // The pods: static ones always, API ones once their list is in.
    let relist_every = config.sync_frequency.min(RELIST_PERIOD);
    let machine = node::MachineInfo::read();
    let gate = Gate {
        node: admission::Allocatable {
            pods: config.max_pods,
            cpu_millis: machine.cpus as i64 * 1000,
            memory_bytes: machine.memory_kib as i64 * 1024,
        },
        pressure: pressure_rx,
        events: EventRecorder::new(api.clone(), "kubelet").with_host(&config.node_name),
    };
    tasks.spawn(sync_loop(
        worker,
        volumes,
        probes,
        store,
        api,
        statics,
        gate,
        evict_rx,
        relist_every,
        config.sync_frequency,
    ));

    shutdown.await;
    tracing::info!("kubelet shutting down; containers keep running");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Waits for the apiserver, registers the Node (retrying), then keeps the
/// node status, the Lease, the pods bound to this node (into `store`) and
/// the mirror pods up to date until aborted. `api` is set once the Node is
/// registered.
async fn run_api_side<R: Runtime>(
    config: Config,
    connect: impl Future<Output = Client> + Send + 'static,
    runtime: Arc<R>,
    store: Store<Pod>,
    api: ApiHandle,
    statics: StaticPods,
    pressure: tokio::sync::watch::Receiver<Vec<eviction::Pressure>>,
) {
    let client = connect.await;
    tracing::info!("connected to the apiserver");
    let nodes = Arc::new(node::NodeStatusManager::new(
        client.clone(),
        config.clone(),
        pressure,
    ));
    let mut delay = Duration::from_secs(1);
    let registered = loop {
        match nodes.register().await {
            Ok(node) => break node,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "node registration failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(API_RETRY_MAX);
            }
        }
    };
    let node_uid = registered.metadata.uid.clone().unwrap_or_default();

    // Dropped (and so aborted) with this task.
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
                        let ipam_dir = config.root_dir.join(cni::IPAM_DIR);
                        match cni::write_conflist(&config.cni_conf_dir, c, &config.cni_plugin_type, &ipam_dir) {
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
        let (nodes, node_uid) = (nodes.clone(), node_uid.clone());
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
    // The pods bound to this node (mirror pods among them).
    let reflector = Reflector::new(client.clone(), "", store.clone())
        .with_selectors("", &format!("spec.nodeName={}", config.node_name));
    tasks.spawn(reflector.run());
    // Mirror pods of the static pods.
    {
        let mirrors =
            mirror_pod::MirrorClient::new(client.clone(), config.node_name.clone(), node_uid);
        let (store, statics) = (store.clone(), statics.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if statics.is_synced() && store.is_synced() {
                    mirrors.sync(&statics.pods(), &store).await;
                }
            }
        });
    }
    api.set(client);
    while tasks.join_next().await.is_some() {}
}

/// Which pods a turn of the sync loop syncs.
#[derive(Debug)]
enum Wanted {
    /// Every pod: the periodic resync, or a probe result changed.
    All,
    /// These pods (by UID), besides those the API changed.
    Some(HashSet<String>),
}

/// A sync task's end: the pod's UID and whether the pod is steady (see
/// [`is_steady`]); unsteady pods are synced again after every relist.
type SyncDone = (String, bool);

/// Pod admission's inputs: what the node offers, and where a rejection is
/// told (see [`admission`]).
struct Gate {
    node: admission::Allocatable,
    pressure: tokio::sync::watch::Receiver<Vec<eviction::Pressure>>,
    events: EventRecorder<ApiHandle>,
}

/// Runs the pods. Every `relist_every` the runtime is relisted once for all
/// pods ([`pleg::Pleg::relist`]); the pods whose containers changed state,
/// and those not yet steady, are synced then. A pod the API changed is
/// synced at once (a static pod when its mirror pod changed); every pod is synced when a probe result changed and
/// every `resync_every` (`syncFrequency`, which also refreshes projected
/// volumes). Static pods run from the start, API pods once their list is
/// in (mirror pods excepted: their static pod is what runs). After each
/// relist, sandboxes of pods that are gone are removed — only among static
/// pods until the API's pods are known, so a restarted kubelet keeps them
/// running. One sync per pod at a time; a pod wanted while its sync runs is
/// synced again when it ends. A new API pod is admitted (oldest first, see
/// [`admission`]) before its first sync; a rejected one is never synced.
/// A pod whose UID comes through `evictions` is synced at once: its sync
/// carries out the eviction ([`PodWorker::evict`]).
#[allow(clippy::too_many_arguments)]
async fn sync_loop<R: Runtime>(
    worker: Arc<PodWorker<R>>,
    volumes: Arc<volumes::VolumeManager>,
    probes: Arc<prober::ProbeManager<R>>,
    store: Store<Pod>,
    api: ApiHandle,
    statics: StaticPods,
    gate: Gate,
    mut evictions: tokio::sync::mpsc::UnboundedReceiver<String>,
    relist_every: Duration,
    resync_every: Duration,
) {
    let gate = Arc::new(gate);
    let mut tick = tokio::time::interval(relist_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut api_changes = store.subscribe();
    let (relisted_tx, mut relisted_rx) = tokio::sync::mpsc::unbounded_channel::<HashSet<String>>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<SyncDone>();
    let mut relisting = false;
    let mut last_resync = tokio::time::Instant::now();
    // Pods whose sync runs now, and those wanted again meanwhile.
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut again: HashSet<String> = HashSet::new();
    // Pods whose last sync left them unsteady (or failed).
    let mut unsteady: HashSet<String> = HashSet::new();
    // The resourceVersion each API pod was last synced at; the static pods
    // synced at least once.
    let mut synced_at: HashMap<String, String> = HashMap::new();
    let mut statics_seen: HashSet<String> = HashSet::new();
    // The mirror pod (uid/resourceVersion) each static pod was synced with.
    let mut mirrors_seen: HashMap<String, String> = HashMap::new();
    // API pods admitted to run here, and those rejected (their Failed
    // status written or on its way).
    let mut admitted: HashSet<String> = HashSet::new();
    let mut rejected: HashSet<String> = HashSet::new();
    loop {
        let mut relist_now = false;
        let wanted = tokio::select! {
            _ = tick.tick() => {
                relist_now = true;
                if last_resync.elapsed() >= resync_every {
                    last_resync = tokio::time::Instant::now();
                    Wanted::All
                } else {
                    Wanted::Some(HashSet::new())
                }
            }
            _ = probes.changed() => Wanted::All,
            _ = api_changes.changed() => Wanted::Some(HashSet::new()),
            Some(uid) = evictions.recv() => Wanted::Some(HashSet::from([uid])),
            Some(changed) = relisted_rx.recv() => {
                relisting = false;
                let mut want = changed;
                want.extend(unsteady.iter().cloned());
                Wanted::Some(want)
            }
            Some((uid, steady)) = done_rx.recv() => {
                in_flight.remove(&uid);
                if steady {
                    unsteady.remove(&uid);
                } else {
                    unsteady.insert(uid.clone());
                    // A rejection that could not be written is decided again.
                    rejected.remove(&uid);
                }
                let mut want = HashSet::new();
                if again.remove(&uid) {
                    want.insert(uid);
                }
                Wanted::Some(want)
            }
        };
        let client = api.get().cloned().filter(|_| store.is_synced());
        let static_pods = statics.pods();
        let all_api_pods: Vec<Arc<Pod>> = match &client {
            Some(_) => store.list(),
            None => Vec::new(),
        };
        let api_pods: Vec<Arc<Pod>> = all_api_pods
            .iter()
            .filter(|p| !mirror_pod::is_mirror_pod(p))
            .cloned()
            .collect();
        let static_live: HashSet<String> = static_pods
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let mut live = static_live.clone();
        live.extend(api_pods.iter().filter_map(|p| p.metadata.uid.clone()));
        if client.is_some() {
            worker.forget_pods_except(&live);
            synced_at.retain(|uid, _| live.contains(uid));
            unsteady.retain(|uid| live.contains(uid));
            again.retain(|uid| live.contains(uid));
            admitted.retain(|uid| live.contains(uid));
            rejected.retain(|uid| live.contains(uid));
        }
        statics_seen.retain(|uid| static_live.contains(uid));
        mirrors_seen.retain(|uid, _| static_live.contains(uid));
        if relist_now && !relisting {
            relisting = true;
            tokio::spawn(relist_and_clean_up(
                worker.clone(),
                volumes.clone(),
                store.clone(),
                statics.clone(),
                live,
                static_live.clone(),
                client.is_some(),
                relisted_tx.clone(),
            ));
        }
        let wants = |uid: &str| match &wanted {
            Wanted::All => true,
            Wanted::Some(set) => set.contains(uid),
        };
        let running_statics = static_pods.clone();
        for pod in static_pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            // A new or changed mirror pod (e.g. recreated after a delete)
            // is shown the static pod's status by its sync.
            let mirror = mirror_pod::current_mirror(&pod, &all_api_pods).map(|m| {
                let meta = &m.metadata;
                format!(
                    "{}/{}",
                    meta.uid.as_deref().unwrap_or_default(),
                    meta.resource_version.as_deref().unwrap_or_default()
                )
            });
            let mirror_changed = mirror.is_some() && mirrors_seen.get(&uid) != mirror.as_ref();
            if !wants(&uid) && statics_seen.contains(&uid) && !mirror_changed {
                continue;
            }
            if in_flight.contains(&uid) {
                again.insert(uid);
                continue;
            }
            statics_seen.insert(uid.clone());
            if let Some(mirror) = mirror {
                mirrors_seen.insert(uid.clone(), mirror);
            }
            in_flight.insert(uid.clone());
            let (worker, client, store, statics, done) = (
                worker.clone(),
                client.clone(),
                store.clone(),
                statics.clone(),
                done_tx.clone(),
            );
            tokio::spawn(async move {
                let steady = sync_static(&worker, &statics, client.as_ref(), &store, &pod).await;
                let _ = done.send((uid, steady));
            });
        }
        let Some(client) = client else {
            continue;
        };
        // Admitted in creation order, as upstream: the older pod gets the room.
        let mut api_pods = api_pods;
        api_pods.sort_by(|a, b| {
            let key = |p: &Pod| {
                (
                    p.metadata.creation_timestamp.clone(),
                    p.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        // Pods admitted before (also by a kubelet before a restart) count
        // first, whatever their age: creation times tie within a second.
        for pod in &api_pods {
            if let Some(uid) = &pod.metadata.uid {
                if !needs_admission(pod) && !rejected.contains(uid) {
                    admitted.insert(uid.clone());
                }
            }
        }
        for pod in &api_pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            if rejected.contains(&uid) {
                continue;
            }
            if !admitted.contains(&uid) {
                // New here: it must fit.
                let active = api_pods
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .uid
                            .as_ref()
                            .is_some_and(|u| admitted.contains(u))
                            && !is_terminal(p)
                    })
                    .map(|p| &**p)
                    .chain(running_statics.iter());
                let pressure = gate.pressure.borrow().clone();
                let verdict = admission::admit_under_pressure(pod, &pressure)
                    .and_then(|()| admission::admit(pod, active, &gate.node));
                if let Err(rejection) = verdict {
                    rejected.insert(uid.clone());
                    in_flight.insert(uid.clone());
                    let (client, store, gate, done, pod) = (
                        client.clone(),
                        store.clone(),
                        gate.clone(),
                        done_tx.clone(),
                        pod.clone(),
                    );
                    tokio::spawn(async move {
                        let written = reject(&client, &store, &gate, &pod, rejection).await;
                        let _ = done.send((uid, written));
                    });
                    continue;
                }
                admitted.insert(uid.clone());
            }
            let version = pod.metadata.resource_version.clone().unwrap_or_default();
            if !wants(&uid) && synced_at.get(&uid) == Some(&version) {
                continue;
            }
            if in_flight.contains(&uid) {
                again.insert(uid);
                continue;
            }
            synced_at.insert(uid.clone(), version);
            in_flight.insert(uid.clone());
            let (worker, client, store, done, pod) = (
                worker.clone(),
                client.clone(),
                store.clone(),
                done_tx.clone(),
                pod.clone(),
            );
            tokio::spawn(async move {
                let steady = sync_one(&worker, &client, &store, &pod).await;
                let _ = done.send((uid, steady));
            });
        }
    }
}

/// One relist ([`pleg::Pleg::relist`]), then the removal of what belongs
/// to pods that are gone: with `all_known` (the API's pods are in) every
/// pod not in `live` nor arrived meanwhile — its sandboxes, cgroups and
/// volumes; otherwise only static pods no longer defined. Sends the pods
/// whose containers changed.
#[allow(clippy::too_many_arguments)]
async fn relist_and_clean_up<R: Runtime>(
    worker: Arc<PodWorker<R>>,
    volumes: Arc<volumes::VolumeManager>,
    store: Store<Pod>,
    statics: StaticPods,
    mut live: HashSet<String>,
    static_live: HashSet<String>,
    all_known: bool,
    relisted: tokio::sync::mpsc::UnboundedSender<HashSet<String>>,
) {
    let relist = match worker.pleg().relist().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "relisting the container runtime failed");
            let _ = relisted.send(HashSet::new());
            return;
        }
    };
    if statics.is_synced() {
        let removed = if all_known {
            // Pods that arrived since `live` was taken are not orphans.
            live.extend(store.list().iter().filter_map(|p| p.metadata.uid.clone()));
            live.extend(statics.pods().iter().filter_map(|p| p.metadata.uid.clone()));
            let removed = worker.kill_orphans(&relist.sandboxes, &live).await;
            cgroups::remove_orphaned_pod_cgroups(
                worker.cgroup_driver(),
                std::path::Path::new("/sys/fs/cgroup"),
                &live,
            );
            if removed.is_ok() {
                // Their containers are gone: unmount and remove their volumes,
                // keeping pods that arrived meanwhile.
                let mut keep = live;
                keep.extend(store.list().iter().filter_map(|p| p.metadata.uid.clone()));
                keep.extend(statics.pods().iter().filter_map(|p| p.metadata.uid.clone()));
                volumes.clean_up_orphaned_pods(&keep);
            }
            removed
        } else {
            static_pods::kill_removed_static_pods(&worker, &relist.sandboxes, &static_live).await
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing orphaned sandboxes failed");
        }
    }
    let _ = relisted.send(relist.changed);
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether `pod` is new to the node and must be admitted before it runs.
/// One that finished, is being deleted, or was admitted already (it has a
/// `startTime`, also from a kubelet before a restart) is not.
fn needs_admission(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
        && pod.status.as_ref().is_none_or(|s| s.start_time.is_none())
}

/// Rejects `pod`, as upstream's kubelet: a Warning event, then phase Failed
/// with the rejection's reason. Returns whether the status was written.
async fn reject(
    client: &Client,
    store: &Store<Pod>,
    gate: &Gate,
    pod: &Pod,
    rejection: admission::Rejection,
) -> bool {
    let name = pod_worker::pod_name(pod);
    tracing::warn!(pod = %name, reason = %rejection.reason, message = %rejection.message, "pod rejected");
    if let Err(e) = gate
        .events
        .record(
            pod,
            EventType::Warning,
            &rejection.reason,
            &rejection.message,
        )
        .await
    {
        tracing::warn!(pod = %name, error = %e, "recording the rejection event failed");
    }
    let mut updated = pod.clone();
    updated.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Failed".into()),
        reason: Some(rejection.reason),
        message: Some(format!("Pod was rejected: {}", rejection.message)),
        ..Default::default()
    });
    match client.update_status(&updated).await {
        Ok(stored) => {
            store.upsert(stored);
            true
        }
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "writing the rejected pod's status failed");
            false
        }
    }
}

/// Whether a pod needs no sync until something changes: past Pending and
/// no container waiting (to be created, started, or restarted after its
/// back-off).
fn is_steady(status: &k8s_openapi::api::core::v1::PodStatus) -> bool {
    let no_waiting = |cs: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        cs.iter()
            .flatten()
            .all(|c| c.state.as_ref().is_none_or(|s| s.waiting.is_none()))
    };
    status.phase.as_deref().is_some_and(|p| p != "Pending")
        && no_waiting(&status.container_statuses)
        && no_waiting(&status.init_container_statuses)
}

/// One static pod's sync: its status is kept locally and, when the API is
/// there, written to its mirror pod. Returns whether the pod is steady
/// with its status on its mirror pod.
async fn sync_static<R: Runtime>(
    worker: &PodWorker<R>,
    statics: &StaticPods,
    client: Option<&Client>,
    store: &Store<Pod>,
    pod: &Pod,
) -> bool {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match worker.sync_pod(pod).await {
        Ok(SyncOutcome::Status(status)) => {
            let mirrored = match client {
                Some(client) => mirror_pod::update_mirror_status(client, store, pod, &status).await,
                None => false,
            };
            let steady = mirrored && is_steady(&status);
            statics.set_status(&uid, *status);
            steady
        }
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(pod = %pod_worker::pod_name(pod), error = %e, "static pod sync failed; will retry");
            false
        }
    }
}

async fn nodes_get(
    nodes: &node::NodeStatusManager,
    config: &Config,
) -> Option<k8s_openapi::api::core::v1::Node> {
    nodes.client().get("", &config.node_name).await.ok()
}

/// One pod's sync and the API writes it calls for. Returns whether the pod
/// is steady with its status written ([`is_steady`]).
async fn sync_one<R: Runtime>(
    worker: &PodWorker<R>,
    client: &Client,
    store: &Store<Pod>,
    pod: &Pod,
) -> bool {
    let name = pod_worker::pod_name(pod);
    match worker.sync_pod(pod).await {
        Ok(SyncOutcome::Status(status)) => {
            let steady = is_steady(&status);
            if pod.status.as_ref() == Some(&*status) {
                return steady;
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
                    steady
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {
                    tracing::debug!(pod = %name, error = %e, "status update raced; next sync retries");
                    false
                }
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "pod status update failed");
                    false
                }
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
                    true
                }
                Err(e) if e.is_not_found() => {
                    store.remove(&ObjectKey::new(&ns, &pod_name));
                    true
                }
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "deleting the terminated pod failed");
                    false
                }
            }
        }
        Ok(SyncOutcome::Finished) => true,
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "pod sync failed; will retry");
            false
        }
    }
}

//! [`Pleg`], the pod lifecycle event generator, as upstream's generic PLEG:
//! one relist asks the runtime for every sandbox and every container once,
//! groups them by pod UID and compares each pod with what was cached for
//! it; only the pods whose sandboxes or containers changed state are
//! reported, and only their new or changed containers are asked for their
//! full status. Pod syncs read their pod's runtime state from the cache
//! instead of listing the runtime themselves; a sync that changed the
//! runtime refreshes its own pod with lists filtered on the pod's UID.
//! Entry points: [`Pleg::relist`], [`Pleg::pod_state`],
//! [`Pleg::refresh_pod`].
//!
//! To ensure correctness:
//! - every listing (relist or refresh) takes a sequence number before it
//!   asks the runtime, and a cached pod is only ever replaced by a listing
//!   that began after the one it came from: a relist that began before a
//!   worker's refresh never puts the older state back;
//! - a container's full status is reused only while its id and listed state
//!   are unchanged (a CRI container status does not change otherwise);
//! - a pod absent from the cache once a relist has completed has nothing in
//!   the runtime: every sync that creates something refreshes its pod.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;

use crate::cri::{containers_of_pod, pod_sandboxes_of, Runtime, RuntimeError};
use crate::pod_worker::{CONTAINER_NAME_LABEL, POD_UID_LABEL};
use crate::status::ContainersByName;

/// One pod's sandboxes and containers as the runtime last reported them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRuntimeState {
    /// The pod's sandboxes, newest attempt first.
    pub sandboxes: Vec<cri::PodSandbox>,
    /// The pod's containers in every sandbox, with their full status, as
    /// (sandbox id, status), ordered by container id.
    pub containers: Vec<(String, cri::ContainerStatus)>,
}

impl PodRuntimeState {
    /// The containers of `sandbox_id` by name, newest attempt first.
    pub fn containers_of(&self, sandbox_id: &str) -> ContainersByName {
        let mut by_name: ContainersByName = HashMap::new();
        for (sb, c) in &self.containers {
            if sb != sandbox_id {
                continue;
            }
            let name = c
                .labels
                .get(CONTAINER_NAME_LABEL)
                .cloned()
                .unwrap_or_else(|| {
                    c.metadata
                        .as_ref()
                        .map(|m| m.name.clone())
                        .unwrap_or_default()
                });
            by_name.entry(name).or_default().push(c.clone());
        }
        for v in by_name.values_mut() {
            v.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map_or(0, |m| m.attempt)));
        }
        by_name
    }

    /// True when nothing of the pod is in the runtime.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

/// A pod's sandboxes and containers as sorted (id, state) pairs.
type States<'a> = (Vec<(&'a str, i32)>, Vec<(&'a str, i32)>);

/// What a listing says about one pod before container statuses are asked
/// for: its sandboxes and its containers as listed.
#[derive(Debug, Default)]
struct Listed {
    sandboxes: Vec<cri::PodSandbox>,
    containers: Vec<cri::Container>,
}

impl Listed {
    /// The (id, state) pairs a relist compares: a pod changed when these did.
    fn states(&self) -> States<'_> {
        let mut sb: Vec<_> = self
            .sandboxes
            .iter()
            .map(|s| (s.id.as_str(), s.state))
            .collect();
        let mut cs: Vec<_> = self
            .containers
            .iter()
            .map(|c| (c.id.as_str(), c.state))
            .collect();
        sb.sort_unstable();
        cs.sort_unstable();
        (sb, cs)
    }
}

fn cached_states(state: &PodRuntimeState) -> States<'_> {
    let mut sb: Vec<_> = state
        .sandboxes
        .iter()
        .map(|s| (s.id.as_str(), s.state))
        .collect();
    let mut cs: Vec<_> = state
        .containers
        .iter()
        .map(|(_, c)| (c.id.as_str(), c.state))
        .collect();
    sb.sort_unstable();
    cs.sort_unstable();
    (sb, cs)
}

/// Everything the runtime has, as one relist saw it.
struct Listing {
    /// Taken before the runtime was asked (see the module docs).
    seq: u64,
    sandboxes: Vec<cri::PodSandbox>,
    containers: Vec<cri::Container>,
}

/// A cached pod and the listing it came from.
struct Entry {
    state: Arc<PodRuntimeState>,
    seq: u64,
}

#[derive(Default)]
struct Cache {
    pods: HashMap<String, Entry>,
    /// Sandbox IPs (primary first) by sandbox id (fixed for a sandbox's life).
    sandbox_ips: HashMap<String, Vec<String>>,
    /// Whether a relist has completed: from then on a pod missing from
    /// `pods` has nothing in the runtime.
    relisted: bool,
}

/// What one relist found.
#[derive(Debug, Default)]
pub struct Relist {
    /// UIDs of the pods whose sandboxes or containers changed state since
    /// the state cached for them (appeared, changed, or went away).
    pub changed: HashSet<String>,
    /// Every sandbox in the runtime, of any pod (orphan removal uses them).
    pub sandboxes: Vec<cri::PodSandbox>,
}

/// The shared runtime cache and its relist; see the module docs.
pub struct Pleg<R> {
    runtime: Arc<R>,
    next_seq: AtomicU64,
    cache: Mutex<Cache>,
}

fn pod_uid_of(labels: &HashMap<String, String>) -> Option<&str> {
    labels.get(POD_UID_LABEL).map(String::as_str)
}

impl<R: Runtime> Pleg<R> {
    pub fn new(runtime: Arc<R>) -> Self {
        Pleg {
            runtime,
            next_seq: AtomicU64::new(1),
            cache: Mutex::new(Cache::default()),
        }
    }

    fn take_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Lists every sandbox and container once, refreshes the cached pods
    /// whose states changed and reports them.
    pub async fn relist(&self) -> Result<Relist, RuntimeError> {
        let listing = self.list_all().await?;
        Ok(self.apply(listing).await)
    }

    /// The relist's one pair of unfiltered lists, numbered before asking.
    async fn list_all(&self) -> Result<Listing, RuntimeError> {
        let seq = self.take_seq();
        let (sandboxes, containers) = futures::try_join!(
            self.runtime.list_pod_sandboxes(None),
            self.runtime.list_containers(None)
        )?;
        Ok(Listing {
            seq,
            sandboxes,
            containers,
        })
    }

    /// Compares a listing with the cache and caches the pods that changed
    /// (unless a newer listing of the pod is cached already).
    async fn apply(&self, listing: Listing) -> Relist {
        let Listing {
            seq,
            sandboxes,
            containers,
        } = listing;
        let mut listed: HashMap<String, Listed> = HashMap::new();
        let sandbox_pod: HashMap<&str, &str> = sandboxes
            .iter()
            .filter_map(|s| Some((s.id.as_str(), pod_uid_of(&s.labels)?)))
            .collect();
        for c in &containers {
            let uid = pod_uid_of(&c.labels)
                .or_else(|| sandbox_pod.get(c.pod_sandbox_id.as_str()).copied());
            if let Some(uid) = uid {
                listed
                    .entry(uid.to_string())
                    .or_default()
                    .containers
                    .push(c.clone());
            }
        }
        for s in &sandboxes {
            if let Some(uid) = pod_uid_of(&s.labels) {
                listed
                    .entry(uid.to_string())
                    .or_default()
                    .sandboxes
                    .push(s.clone());
            }
        }
        // Which pods changed, against what is cached now.
        let previous: HashMap<String, Arc<PodRuntimeState>> = {
            let cache = self.cache.lock().unwrap();
            cache
                .pods
                .iter()
                .map(|(uid, e)| (uid.clone(), e.state.clone()))
                .collect()
        };
        let changed_listed: Vec<(String, Listed)> = listed
            .into_iter()
            .filter(|(uid, l)| {
                previous
                    .get(uid)
                    .is_none_or(|p| cached_states(p) != l.states())
            })
            .collect();
        // Full statuses only for the changed pods' new or changed containers.
        let built = futures::future::join_all(changed_listed.into_iter().map(|(uid, l)| {
            let previous = previous.get(&uid).cloned();
            async move {
                let state = self.with_statuses(l, previous.as_deref()).await;
                (uid, state)
            }
        }))
        .await;
        let listed_uids: HashSet<&str> = sandboxes
            .iter()
            .filter_map(|s| pod_uid_of(&s.labels))
            .chain(containers.iter().filter_map(|c| pod_uid_of(&c.labels)))
            .collect();

        let mut changed = HashSet::new();
        let mut cache = self.cache.lock().unwrap();
        for (uid, state) in built {
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    // E.g. removed between the list and its status: the
                    // next relist sees it as it is then.
                    tracing::debug!(pod_uid = %uid, error = %e, "relist: container status failed");
                    continue;
                }
            };
            if cache.pods.get(&uid).is_some_and(|e| e.seq > seq) {
                continue;
            }
            cache.pods.insert(
                uid.clone(),
                Entry {
                    state: Arc::new(state),
                    seq,
                },
            );
            changed.insert(uid);
        }
        let gone: Vec<String> = cache
            .pods
            .iter()
            .filter(|(uid, e)| e.seq < seq && !listed_uids.contains(uid.as_str()))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            if cache.pods.remove(&uid).is_some_and(|e| !e.state.is_empty()) {
                changed.insert(uid);
            }
        }
        let known: HashSet<String> = cache
            .pods
            .values()
            .flat_map(|e| e.state.sandboxes.iter().map(|s| s.id.clone()))
            .collect();
        cache.sandbox_ips.retain(|id, _| known.contains(id));
        cache.relisted = true;
        drop(cache);
        Relist { changed, sandboxes }
    }

    /// The pod's runtime state as last listed, without asking the runtime
    /// once a relist has completed (before that, its pod is listed).
    pub async fn pod_state(&self, pod_uid: &str) -> Result<Arc<PodRuntimeState>, RuntimeError> {
        {
            let cache = self.cache.lock().unwrap();
            if let Some(e) = cache.pods.get(pod_uid) {
                return Ok(e.state.clone());
            }
            if cache.relisted {
                return Ok(Arc::default());
            }
        }
        self.refresh_pod(pod_uid).await
    }

    /// Lists the pod's sandboxes and containers now (filtered on its UID)
    /// and caches the result: what a sync reports after changing the
    /// runtime.
    pub async fn refresh_pod(&self, pod_uid: &str) -> Result<Arc<PodRuntimeState>, RuntimeError> {
        let seq = self.take_seq();
        let (sandboxes, containers) = futures::try_join!(
            self.runtime
                .list_pod_sandboxes(Some(pod_sandboxes_of(pod_uid))),
            self.runtime
                .list_containers(Some(containers_of_pod(pod_uid)))
        )?;
        let previous = self
            .cache
            .lock()
            .unwrap()
            .pods
            .get(pod_uid)
            .map(|e| e.state.clone());
        let state = Arc::new(
            self.with_statuses(
                Listed {
                    sandboxes,
                    containers,
                },
                previous.as_deref(),
            )
            .await?,
        );
        let mut cache = self.cache.lock().unwrap();
        if cache.pods.get(pod_uid).is_none_or(|e| e.seq < seq) {
            cache.pods.insert(
                pod_uid.to_string(),
                Entry {
                    state: state.clone(),
                    seq,
                },
            );
        }
        Ok(state)
    }

    /// A sandbox's IPs, primary first (asked of the runtime once per
    /// sandbox: the pod's status and its containers' environment share it).
    pub async fn sandbox_ips(&self, sandbox_id: &str) -> Result<Vec<String>, RuntimeError> {
        if let Some(ips) = self.cache.lock().unwrap().sandbox_ips.get(sandbox_id) {
            return Ok(ips.clone());
        }
        let ips: Vec<String> = self
            .runtime
            .pod_sandbox_status(sandbox_id)
            .await?
            .network
            .map(|n| {
                std::iter::once(n.ip)
                    .chain(n.additional_ips.into_iter().map(|i| i.ip))
                    .filter(|ip| !ip.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !ips.is_empty() {
            self.cache
                .lock()
                .unwrap()
                .sandbox_ips
                .insert(sandbox_id.to_string(), ips.clone());
        }
        Ok(ips)
    }

    /// The listed sandboxes (newest attempt first) and containers, each
    /// with its full status: reused from `previous` while the container's
    /// listed state is the same, asked of the runtime otherwise.
    async fn with_statuses(
        &self,
        mut listed: Listed,
        previous: Option<&PodRuntimeState>,
    ) -> Result<PodRuntimeState, RuntimeError> {
        let known: HashMap<&str, &cri::ContainerStatus> = previous
            .into_iter()
            .flat_map(|p| p.containers.iter().map(|(_, c)| (c.id.as_str(), c)))
            .collect();
        listed.containers.sort_by(|a, b| a.id.cmp(&b.id));
        let statuses = futures::future::try_join_all(listed.containers.iter().map(|c| {
            let cached = known
                .get(c.id.as_str())
                .filter(|s| s.state == c.state)
                .map(|s| (*s).clone());
            async move {
                let status = match cached {
                    Some(s) => s,
                    None => self.runtime.container_status(&c.id).await?,
                };
                Ok::<_, RuntimeError>((c.pod_sandbox_id.clone(), status))
            }
        }))
        .await?;
        listed
            .sandboxes
            .sort_by_key(|s| std::cmp::Reverse(s.metadata.as_ref().map_or(0, |m| m.attempt)));
        Ok(PodRuntimeState {
            sandboxes: listed.sandboxes,
            containers: statuses,
        })
    }
}

#[cfg(test)]
#[path = "pleg_tests.rs"]
mod tests;

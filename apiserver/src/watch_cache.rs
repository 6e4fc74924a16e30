//! One watch cache per resource: a single etcd watch feeds the current
//! objects and a window of recent events, from which every client watch is
//! served. Entry point: [`WatchCache::start`], then [`WatchCache::subscribe`].
//!
//! Invariants: events are appended in revision order; every event with a
//! revision greater than `oldest` is in the window, so a watch from revision
//! `r >= oldest` misses nothing, and a watch from `r < oldest` is refused
//! (410 Gone) instead of silently skipping events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::storage::{Change, Storage, StorageError, Stored};

/// The type of a watch event, as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object, with the object as clients see it
/// (`metadata.resourceVersion` set to the change's revision).
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub key: String,
    pub object: Arc<Value>,
    /// The object before the change (for Modified and Deleted).
    pub prev: Option<Arc<Value>>,
    pub revision: i64,
}

/// Sets `metadata.resourceVersion`, the one field etcd owns.
pub fn with_resource_version(mut v: Value, revision: i64) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    v
}

/// A stored object as clients see it.
pub fn visible(stored: Stored) -> Value {
    with_resource_version(stored.value, stored.mod_revision)
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Everything up to this revision has been applied.
    revision: i64,
    /// Every event after this revision is in `history`.
    oldest: i64,
    events: broadcast::Sender<Arc<CacheEvent>>,
    /// False until the first list completes.
    ready: bool,
}

/// The cache of one resource.
pub struct WatchCache {
    prefix: String,
    capacity: usize,
    state: Mutex<State>,
    revision: watch::Sender<i64>,
    /// Set when a reader waits for a revision the cache has not seen: the
    /// cache then asks etcd for a progress notification.
    progress_wanted: tokio::sync::Notify,
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The requested revision left the window (upstream's 410 Gone).
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: i64, oldest: i64 },
    /// The cache did not reach the requested revision in time.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge { requested: i64, current: i64 },
}

/// A client watch's starting point: events to replay, then the live feed.
pub struct Subscription {
    pub initial: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// Live events at or below this revision were already replayed.
    pub revision: i64,
}

/// Where a client watch starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Synthetic ADDED events for the current state, then changes
    /// (resourceVersion "0" or unset).
    Now,
    /// Changes after this revision.
    After(i64),
}

const LIVE_BUFFER: usize = 8192;

impl WatchCache {
    /// Starts the cache of everything under `prefix`: lists, then watches,
    /// and relists when its etcd watch is cancelled by compaction.
    pub fn start(storage: Storage, prefix: String, capacity: usize) -> Arc<WatchCache> {
        let (events, _) = broadcast::channel(LIVE_BUFFER);
        let cache = Arc::new(WatchCache {
            prefix,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                revision: 0,
                oldest: 0,
                events,
                ready: false,
            }),
            revision: watch::channel(0).0,
            progress_wanted: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let Some(cache) = weak.upgrade() else { return };
                match cache.run(&storage).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(prefix = %cache.prefix, error = %e, "watch cache lost its etcd watch; relisting");
                    }
                }
                drop(cache);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        cache
    }

    /// Lists, then applies watch events until the watch fails.
    async fn run(&self, storage: &Storage) -> Result<(), StorageError> {
        let mut objects = BTreeMap::new();
        let mut start = String::new();
        let mut revision = 0;
        loop {
            let page = storage.list(&self.prefix, &start, revision, 1000).await?;
            revision = page.revision;
            for item in page.items {
                start = format!("{}\0", item.key);
                objects.insert(item.key.clone(), Arc::new(visible(item)));
            }
            if !page.more {
                break;
            }
        }
        {
            let mut state = self.state.lock().expect("watch cache lock");
            state.objects = objects;
            state.history.clear();
            state.revision = revision;
            state.oldest = revision;
            state.ready = true;
            // Watchers of the previous generation may have missed events:
            // closing their feed ends their watch, and they resume or relist.
            state.events = broadcast::channel(LIVE_BUFFER).0;
        }
        self.revision.send_replace(revision);
        let (mut progress, changes) = storage.watch(&self.prefix, revision + 1).await?;
        let mut changes = Box::pin(changes);
        loop {
            tokio::select! {
                batch = changes.next() => {
                    let Some(batch) = batch else { break };
                    for change in batch? {
                        self.apply(change);
                    }
                }
                _ = self.progress_wanted.notified() => progress.request().await?,
            }
        }
        Err(StorageError::Etcd(etcd_client::Error::WatchError(
            "watch ended".into(),
        )))
    }

    fn apply(&self, change: Change) {
        let mut state = self.state.lock().expect("watch cache lock");
        let event = match change {
            Change::Progress(rev) => {
                if rev > state.revision {
                    state.revision = rev;
                    drop(state);
                    self.revision.send_replace(rev);
                }
                return;
            }
            Change::Put { current, .. } => {
                let key = current.key.clone();
                let revision = current.mod_revision;
                let object = Arc::new(visible(current));
                let prev = state.objects.insert(key.clone(), object.clone());
                CacheEvent {
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    key,
                    object,
                    prev,
                    revision,
                }
            }
            Change::Delete { key, revision, .. } => {
                let Some(prev) = state.objects.remove(&key) else {
                    return;
                };
                let object = Arc::new(with_resource_version((*prev).clone(), revision));
                CacheEvent {
                    kind: EventType::Deleted,
                    key,
                    object,
                    prev: Some(prev),
                    revision,
                }
            }
        };
        let event = Arc::new(event);
        state.revision = event.revision;
        state.history.push_back(event.clone());
        while state.history.len() > self.capacity {
            if let Some(old) = state.history.pop_front() {
                state.oldest = old.revision;
            }
        }
        let _ = state.events.send(event.clone());
        drop(state);
        self.revision.send_replace(event.revision);
    }

    /// Waits until the cache has applied everything up to `revision`.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> Result<(), WatchError> {
        let mut rx = self.revision.subscribe();
        if *rx.borrow() < revision {
            self.progress_wanted.notify_one();
        }
        let reached = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WatchError::TooLarge {
                requested: revision,
                current: *self.revision.borrow(),
            }),
        }
    }

    /// The revision the cache has applied up to.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// The current objects under `prefix` (a sub-prefix of the cache's,
    /// e.g. one namespace) and the revision they are current at.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<Value>>, i64) {
        let state = self.state.lock().expect("watch cache lock");
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.revision)
    }

    /// One object as the cache last saw it.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.state
            .lock()
            .expect("watch cache lock")
            .objects
            .get(key)
            .cloned()
    }

    /// Starts a client watch. The replayed events and the live feed join
    /// without a gap: both are taken under the same lock.
    pub fn subscribe(&self, start: Start) -> Result<Subscription, WatchError> {
        let state = self.state.lock().expect("watch cache lock");
        let live = state.events.subscribe();
        match start {
            Start::Now => {
                let initial = state
                    .objects
                    .iter()
                    .map(|(key, obj)| {
                        Arc::new(CacheEvent {
                            kind: EventType::Added,
                            key: key.clone(),
                            object: obj.clone(),
                            prev: None,
                            revision: state.revision,
                        })
                    })
                    .collect();
                Ok(Subscription {
                    initial,
                    live,
                    revision: state.revision,
                })
            }
            Start::After(rev) => {
                if rev < state.oldest {
                    return Err(WatchError::TooOld {
                        requested: rev,
                        oldest: state.oldest,
                    });
                }
                let initial = state
                    .history
                    .iter()
                    .filter(|e| e.revision > rev)
                    .cloned()
                    .collect();
                Ok(Subscription {
                    initial,
                    live,
                    revision: state.revision.max(rev),
                })
            }
        }
    }

    /// True once the first list has completed.
    pub fn is_ready(&self) -> bool {
        self.state.lock().expect("watch cache lock").ready
    }
}

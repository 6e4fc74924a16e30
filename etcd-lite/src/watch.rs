//! The watch hub (etcd's "watchable store"): fans every applied change out to the
//! watchers whose key range it touches, replaying history first for watchers
//! that start in the past and for watchers that fell behind.
//!
//! Entry point: [`WatchHub`]. The state machine calls [`WatchHub::publish`] after
//! applying each command; the Watch gRPC stream calls [`WatchHub::watch`] and
//! [`WatchHub::cancel`]; a background task calls [`WatchHub::catch_up`].
//!
//! # To ensure correctness
//! - A watcher is *synced* (gets events as they are published) or *unsynced*
//!   (its channel was full, or it was created/resynced and history remains):
//!   unsynced watchers are caught up from the store's history by `catch_up`.
//! - Every watcher keeps `next_rev`, the first revision it has not been sent; it
//!   is sent each revision at most once and in order, so nothing is duplicated
//!   or skipped — including across a snapshot install or a leader change,
//!   because events come from the local applied log, not from the leader.
//! - `publish` runs under the store's write lock and `watch`/`catch_up` under its
//!   read lock (the caller holds it), so history reads and live events never
//!   interleave: lock order is store, then hub.

use std::collections::HashMap;
use std::sync::Mutex;

use etcd_client::proto::PbEvent;
use tokio::sync::mpsc;

use crate::mvcc::{MvccError, Store};

/// Events of more revisions than this are sent in several messages when replaying history.
const HISTORY_CHUNK: usize = 1000;

/// `WatchCreateRequest.filters` values (etcd's `FilterType`).
pub const FILTER_NOPUT: i32 = 0;
pub const FILTER_NODELETE: i32 = 1;
/// `mvccpb.Event.type` values.
const EVENT_PUT: i32 = 0;
const EVENT_DELETE: i32 = 1;

/// What a watcher asked for.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0 = from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchSpec {
    fn matches(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else if self.range_end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }

    fn filter(&self, event: &PbEvent) -> Option<PbEvent> {
        let kv = event.kv.as_ref()?;
        if !self.matches(&kv.key)
            || (self.no_put && event.r#type == EVENT_PUT)
            || (self.no_delete && event.r#type == EVENT_DELETE)
        {
            return None;
        }
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        Some(event)
    }
}

/// What the hub sends to a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    /// Events for one watcher, in revision order; `revision` is the store revision they bring it to.
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<PbEvent>,
    },
    /// The watcher's start revision was compacted; it is removed.
    Compacted {
        watch_id: i64,
        compact_revision: i64,
    },
}

/// Identifies a watcher across streams: (stream, watch id).
pub type WatcherKey = (u64, i64);

struct Watcher {
    spec: WatchSpec,
    next_rev: i64,
    synced: bool,
    tx: mpsc::Sender<WatchMessage>,
}

#[derive(Default)]
pub struct WatchHub {
    watchers: Mutex<HashMap<WatcherKey, Watcher>>,
}

fn revision_of(event: &PbEvent) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

impl WatchHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a watcher. Call with the store's read lock held (`store` is the guard).
    /// Its history, if it starts in the past, is sent by [`Self::catch_up`].
    pub fn watch(
        &self,
        store: &Store,
        key: WatcherKey,
        spec: WatchSpec,
        tx: mpsc::Sender<WatchMessage>,
    ) {
        let current = store.revision();
        let next_rev = if spec.start_revision <= 0 {
            current + 1
        } else {
            spec.start_revision
        };
        let synced = next_rev > current;
        let watcher = Watcher {
            spec,
            next_rev,
            synced,
            tx,
        };
        let mut watchers = self.watchers.lock().expect("watch hub lock");
        watchers.insert(key, watcher);
        if !synced {
            // Send what fits now; the rest follows in catch_up.
            Self::replay(store, key, watchers.get_mut(&key).expect("just inserted"));
            if let Some(w) = watchers.get(&key) {
                if w.tx.is_closed() {
                    watchers.remove(&key);
                }
            }
        }
    }

    /// Removes a watcher; returns whether it existed.
    pub fn cancel(&self, key: WatcherKey) -> bool {
        self.watchers
            .lock()
            .expect("watch hub lock")
            .remove(&key)
            .is_some()
    }

    /// Removes every watcher of a stream.
    pub fn cancel_stream(&self, stream: u64) {
        self.watchers
            .lock()
            .expect("watch hub lock")
            .retain(|(s, _), _| *s != stream);
    }

    /// Whether every watcher of `stream` has been sent everything up to the current revision.
    pub fn stream_synced(&self, stream: u64) -> bool {
        let watchers = self.watchers.lock().expect("watch hub lock");
        watchers
            .iter()
            .filter(|((s, _), _)| *s == stream)
            .all(|(_, w)| w.synced)
    }

    /// Sends one command's events (all of one revision) to the synced watchers.
    /// Called by the state machine under the store's write lock.
    pub fn publish(&self, events: &[PbEvent]) {
        let Some(revision) = events.last().map(revision_of) else {
            return;
        };
        let mut watchers = self.watchers.lock().expect("watch hub lock");
        watchers.retain(|(_, watch_id), w| {
            if !w.synced || revision < w.next_rev {
                return true;
            }
            let matched: Vec<PbEvent> = events.iter().filter_map(|e| w.spec.filter(e)).collect();
            if matched.is_empty() {
                w.next_rev = revision + 1;
                return true;
            }
            let msg = WatchMessage::Events {
                watch_id: *watch_id,
                revision,
                events: matched,
            };
            match w.tx.try_send(msg) {
                Ok(()) => {
                    w.next_rev = revision + 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.synced = false;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Marks every watcher unsynced, after the store was replaced by a snapshot.
    pub fn resync(&self, _store: &Store) {
        for w in self.watchers.lock().expect("watch hub lock").values_mut() {
            w.synced = false;
        }
    }

    /// Whether some watcher needs history replayed.
    pub fn has_unsynced(&self) -> bool {
        self.watchers
            .lock()
            .expect("watch hub lock")
            .values()
            .any(|w| !w.synced)
    }

    /// Replays history to unsynced watchers. Call with the store's read lock held.
    pub fn catch_up(&self, store: &Store) {
        let mut watchers = self.watchers.lock().expect("watch hub lock");
        let keys: Vec<WatcherKey> = watchers
            .iter()
            .filter(|(_, w)| !w.synced)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let w = watchers.get_mut(&key).expect("listed above");
            if !Self::replay(store, key, w) {
                watchers.remove(&key);
            }
        }
    }

    /// Sends `w` the history from its `next_rev` up to the store's revision, as far as
    /// its channel takes it; marks it synced when done. Returns false if it must be removed.
    fn replay(store: &Store, (_, watch_id): WatcherKey, w: &mut Watcher) -> bool {
        let current = store.revision();
        while w.next_rev <= current {
            if w.tx.capacity() == 0 {
                return !w.tx.is_closed();
            }
            let spec = &w.spec;
            let history = store.history(
                &spec.key,
                &spec.range_end,
                w.next_rev,
                current,
                true,
                HISTORY_CHUNK,
            );
            let events = match history {
                Ok(events) => events,
                Err(MvccError::Compacted) => {
                    let msg = WatchMessage::Compacted {
                        watch_id,
                        compact_revision: store.compact_revision(),
                    };
                    // A full channel would lose this: keep the watcher until it fits.
                    return matches!(w.tx.try_send(msg), Err(mpsc::error::TrySendError::Full(_)));
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading watch history");
                    return true;
                }
            };
            let last = events.last().map(revision_of);
            // Everything up to `current` was read when the chunk was not cut short.
            let upto = match last {
                Some(rev) if events.len() >= HISTORY_CHUNK => rev,
                _ => current,
            };
            let matched: Vec<PbEvent> = events.iter().filter_map(|e| w.spec.filter(e)).collect();
            if !matched.is_empty() {
                let msg = WatchMessage::Events {
                    watch_id,
                    revision: upto,
                    events: matched,
                };
                match w.tx.try_send(msg) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => return true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            w.next_rev = upto + 1;
        }
        w.synced = true;
        true
    }
}

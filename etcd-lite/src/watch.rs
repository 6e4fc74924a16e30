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
        // Send what history fits now; the rest follows in catch_up.
        if !synced && !Self::replay(store, key, watchers.get_mut(&key).expect("just inserted")) {
            watchers.remove(&key);
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

    /// Whether a watcher that asked for `prev_kv` watches `key`: the state
    /// machine reads a change's previous value only then. Called under the
    /// store's write lock, like [`Self::publish`], so no watcher can register
    /// in between.
    pub fn wants_prev_kv(&self, key: &[u8]) -> bool {
        self.watchers
            .lock()
            .expect("watch hub lock")
            .values()
            .any(|w| w.spec.prev_kv && w.spec.matches(key))
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
    pub fn resync(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::testkit::{put_op, txn, Harness};
    use crate::mvcc::Command;

    fn spec(key: &str, range_end: &str, start_revision: i64) -> WatchSpec {
        WatchSpec {
            key: key.into(),
            range_end: range_end.into(),
            start_revision,
            prev_kv: false,
            no_put: false,
            no_delete: false,
        }
    }

    /// Applies a put and publishes its events, as the state machine does.
    fn put(h: &mut Harness, hub: &WatchHub, key: &str, value: &str) {
        let cmd = Command::Txn(txn(vec![], vec![put_op(key, value)], vec![]));
        let applied = h.apply_watched(cmd, &|key| hub.wants_prev_kv(key));
        hub.publish(&applied.events);
    }

    /// (key, mod_revision, type) of every event received so far.
    fn drain(rx: &mut mpsc::Receiver<WatchMessage>) -> Vec<(String, i64, i32)> {
        let mut out = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                WatchMessage::Events { events, .. } => {
                    for e in events {
                        let kv = e.kv.unwrap();
                        out.push((
                            String::from_utf8(kv.key).unwrap(),
                            kv.mod_revision,
                            e.r#type,
                        ));
                    }
                }
                WatchMessage::Compacted { .. } => panic!("unexpected compaction"),
            }
        }
        out
    }

    #[test]
    fn live_events_carry_prev_kv_for_the_watchers_that_asked() {
        let mut h = Harness::new();
        let hub = WatchHub::new();
        put(&mut h, &hub, "a", "1");
        put(&mut h, &hub, "b", "1");
        let (tx, mut with_prev) = mpsc::channel(16);
        hub.watch(
            &h.store,
            (0, 0),
            WatchSpec {
                prev_kv: true,
                ..spec("a", "", 0)
            },
            tx,
        );
        let (tx, mut without) = mpsc::channel(16);
        hub.watch(&h.store, (0, 1), spec("a", "c", 0), tx);
        assert!(hub.wants_prev_kv(b"a"));
        assert!(
            !hub.wants_prev_kv(b"b"),
            "b is watched, but not with prev_kv"
        );
        put(&mut h, &hub, "a", "2");
        put(&mut h, &hub, "b", "2");
        let prevs = |rx: &mut mpsc::Receiver<WatchMessage>| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
            let mut out = Vec::new();
            while let Ok(WatchMessage::Events { events, .. }) = rx.try_recv() {
                for e in events {
                    out.push((e.kv.unwrap().key, e.prev_kv.map(|p| p.value)));
                }
            }
            out
        };
        assert_eq!(
            prevs(&mut with_prev),
            vec![(b"a".to_vec(), Some(b"1".to_vec()))]
        );
        assert_eq!(
            prevs(&mut without),
            vec![(b"a".to_vec(), None), (b"b".to_vec(), None)]
        );
    }

    #[test]
    fn a_watch_from_the_past_replays_history_then_gets_live_events_in_order() {
        let mut h = Harness::new();
        let hub = WatchHub::new();
        put(&mut h, &hub, "a", "1"); // rev 2
        put(&mut h, &hub, "b", "1"); // rev 3
        put(&mut h, &hub, "a", "2"); // rev 4
        let (tx, mut rx) = mpsc::channel(16);
        hub.watch(&h.store, (0, 0), spec("a", "", 2), tx);
        put(&mut h, &hub, "a", "3"); // rev 5
        put(&mut h, &hub, "b", "2"); // rev 6
        let got = drain(&mut rx);
        assert_eq!(
            got,
            vec![("a".into(), 2, 0), ("a".into(), 4, 0), ("a".into(), 5, 0)]
        );
    }

    #[test]
    fn filters_and_prefix_ranges_select_events() {
        let mut h = Harness::new();
        let hub = WatchHub::new();
        let (tx, mut rx) = mpsc::channel(16);
        let mut s = spec("p/", "p0", 0);
        s.no_delete = true;
        hub.watch(&h.store, (0, 1), s, tx);
        put(&mut h, &hub, "p/x", "1");
        put(&mut h, &hub, "q", "1");
        let deleted = h.delete("p/x", "");
        hub.publish(&deleted.events);
        put(&mut h, &hub, "p/y", "1");
        let keys: Vec<String> = drain(&mut rx).into_iter().map(|e| e.0).collect();
        assert_eq!(keys, vec!["p/x".to_string(), "p/y".to_string()]);
    }

    #[test]
    fn a_watcher_whose_channel_fills_catches_up_without_gaps_or_duplicates() {
        let mut h = Harness::new();
        let hub = WatchHub::new();
        let (tx, mut rx) = mpsc::channel(2);
        hub.watch(&h.store, (0, 0), spec("k", "", 0), tx);
        for i in 0..10 {
            put(&mut h, &hub, "k", &i.to_string());
        }
        assert!(
            hub.has_unsynced(),
            "a full channel must leave the watcher unsynced"
        );
        let mut revs = Vec::new();
        for _ in 0..20 {
            revs.extend(drain(&mut rx).into_iter().map(|e| e.1));
            hub.catch_up(&h.store);
        }
        revs.extend(drain(&mut rx).into_iter().map(|e| e.1));
        assert_eq!(revs, (2..=11).collect::<Vec<i64>>());
        assert!(!hub.has_unsynced());
    }

    #[test]
    fn a_watch_from_a_compacted_revision_is_cancelled_with_the_compact_revision() {
        let mut h = Harness::new();
        let hub = WatchHub::new();
        for i in 0..5 {
            put(&mut h, &hub, "k", &i.to_string());
        }
        h.apply(Command::Compact { revision: 4 });
        let (tx, mut rx) = mpsc::channel(16);
        hub.watch(&h.store, (3, 7), spec("k", "", 2), tx);
        assert_eq!(
            rx.try_recv().unwrap(),
            WatchMessage::Compacted {
                watch_id: 7,
                compact_revision: 4
            }
        );
        assert!(!hub.cancel((3, 7)), "the compacted watcher is removed");
    }

    #[test]
    fn cancelled_watchers_get_nothing_more() {
        let mut h = Harness::new();
        let hub = WatchHub::new();
        let (tx, mut rx) = mpsc::channel(16);
        hub.watch(&h.store, (1, 0), spec("k", "", 0), tx);
        put(&mut h, &hub, "k", "1");
        assert!(hub.cancel((1, 0)));
        put(&mut h, &hub, "k", "2");
        assert_eq!(drain(&mut rx).len(), 1);
    }
}

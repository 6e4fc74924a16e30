//! The MVCC store (etcd's `mvcc.store` with its applier on top): the state
//! machine that Raft drives.
//!
//! Entry point: [`Store`]. [`Store::open`] rebuilds the in-memory state from the
//! engine; [`Store::apply`] turns one committed [`Command`] into engine changes
//! plus a response; [`Store::range`] and [`Store::history`] read.
//!
//! Writes of one command go into the caller's [`WriteBatch`]; the caller writes
//! that batch (with its own keys, such as the applied log index) atomically, so
//! the engine always holds the state after a whole number of commands.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use etcd_client::proto::{PbEvent, PbKeyValue, PbRangeRequest, PbRangeResponse};
use prost::Message;

use super::index::{KeyRange, TreeIndex};
use super::lease::Lessor;
use super::revision::{Revision, REV_BYTES_LEN};
use super::{Applied, AppliedBody, Command, MemberAttributes, MvccError};
use crate::storage::{Engine, Op, ScanRange, Space, WriteBatch};

/// Meta key of the current store revision (8-byte big-endian).
pub(super) const CURRENT_REV_KEY: &[u8] = b"mvcc/current_rev";
/// Meta key of the compacted revision (8-byte big-endian); absent until the first compaction.
pub(super) const COMPACT_REV_KEY: &[u8] = b"mvcc/compact_rev";
/// Meta prefix of published member attributes, followed by the member id in hex.
const MEMBER_PREFIX: &[u8] = b"member/";

/// How many entries [`Store::open`] and [`Store::history`] read per engine scan.
const SCAN_CHUNK: usize = 1024;

/// The `sort_order` values of `RangeRequest` (rpc.proto).
pub(super) mod sort_order {
    pub const NONE: i32 = 0;
    pub const ASCEND: i32 = 1;
    pub const DESCEND: i32 = 2;
}

/// The `sort_target` values of `RangeRequest` (rpc.proto).
pub(super) mod sort_target {
    pub const KEY: i32 = 0;
    pub const VERSION: i32 = 1;
    pub const CREATE: i32 = 2;
    pub const MOD: i32 = 3;
    pub const VALUE: i32 = 4;
}

/// The `type` values of `Event` (kv.proto).
pub(super) mod event_type {
    pub const PUT: i32 = 0;
    pub const DELETE: i32 = 1;
}

/// An `i64` stored as 8 big-endian bytes.
pub(super) struct StoredI64;

impl StoredI64 {
    pub fn encode(n: i64) -> [u8; 8] {
        n.to_be_bytes()
    }

    pub fn decode(what: &'static str, bytes: &[u8]) -> Result<i64, MvccError> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| MvccError::Corrupt {
            what,
            detail: format!("expected 8 bytes, found {}", bytes.len()),
        })?;
        Ok(i64::from_be_bytes(bytes))
    }
}

pub(super) fn decode_kv(bytes: &[u8]) -> Result<PbKeyValue, MvccError> {
    PbKeyValue::decode(bytes).map_err(|e| MvccError::Corrupt {
        what: "key-value",
        detail: e.to_string(),
    })
}

/// Whether `err` is a refusal every member reaches alike (replicated as
/// [`AppliedBody::Rejected`]) rather than a local storage failure.
pub(super) fn is_deterministic(err: &MvccError) -> bool {
    !matches!(err, MvccError::Storage(_) | MvccError::Corrupt { .. })
}

/// What [`Store::hash_kv`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The last compaction's revision (-1 before the first), as etcd reports it.
    pub compact_revision: i64,
    /// The store's revision when it was computed.
    pub revision: i64,
    /// The revision the hash covers history up to.
    pub hash_revision: i64,
}

/// etcd's MVCC keyspace, leases and published members, over an [`Engine`].
///
/// # To ensure correctness
/// - **Deterministic**: [`Store::apply`] depends only on the commands applied
///   before (in order) and never on time, randomness or hash order.
/// - **Write-through**: after `apply` returns, the caller writes its batch to
///   the engine before the next `apply`, `range` or `history`; `apply` reads
///   earlier commands' values from the engine.
/// - **Rebuildable**: everything in memory (index, leases, members, current and
///   compacted revision) is derived from the engine, so `open` on the same
///   engine gives a store that answers every read the same way.
pub struct Store {
    pub(super) engine: Arc<dyn Engine>,
    pub(super) index: TreeIndex,
    /// The revision of the latest write transaction; 1 for an empty store.
    pub(super) current_rev: i64,
    /// The latest compaction's revision; -1 before the first one (as etcd).
    pub(super) compact_rev: i64,
    pub(super) lessor: Lessor,
    pub(super) members: BTreeMap<u64, MemberAttributes>,
    /// Encoded values put by applied commands whose batch the caller has not yet
    /// written to the engine (see [`Store::mark_written`]), by revision key.
    unwritten: HashMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    /// Loads from the engine, rebuilding the key index from [`Space::Kv`] in
    /// revision order (etcd's `store.restore`).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Store, MvccError> {
        let meta_i64 = |key: &[u8], what| -> Result<Option<i64>, MvccError> {
            engine
                .get(Space::Meta, key)?
                .map(|v| StoredI64::decode(what, &v))
                .transpose()
        };
        let stored_current = meta_i64(CURRENT_REV_KEY, "current revision")?;
        let compact_rev = meta_i64(COMPACT_REV_KEY, "compacted revision")?.unwrap_or(-1);

        let mut index = TreeIndex::default();
        let mut last_main = 1;
        scan_revisions(engine.as_ref(), &[], None, |key, value| {
            let (rev, tombstone) = Revision::from_key(key)?;
            let kv = decode_kv(value)?;
            if tombstone {
                index.restore_tombstone(&kv.key, rev);
            } else {
                index.restore_put(&kv.key, rev, kv.create_revision, kv.version, kv.lease);
            }
            last_main = rev.main;
            Ok(ControlFlow::Continue(()))
        })?;

        let mut members = BTreeMap::new();
        let member_end = b"member0"; // '0' follows '/'
        for (_, value) in engine.scan(
            Space::Meta,
            ScanRange::new(MEMBER_PREFIX, Some(member_end)),
            false,
            0,
        )? {
            let m: MemberAttributes =
                postcard::from_bytes(&value).map_err(|e| MvccError::Corrupt {
                    what: "member attributes",
                    detail: e.to_string(),
                })?;
            members.insert(m.id, m);
        }

        let current_rev = stored_current
            .unwrap_or(1)
            .max(last_main)
            .max(compact_rev)
            .max(1);
        let mut store = Store {
            engine,
            index,
            current_rev,
            compact_rev,
            lessor: Lessor::default(),
            members,
            unwritten: HashMap::new(),
        };
        store.load_leases()?;
        Ok(store)
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The current store revision (1 for an empty store, as etcd).
    pub fn revision(&self) -> i64 {
        self.current_rev
    }

    /// The latest compaction's revision, 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.max(0)
    }

    /// Published member attributes, ascending by member id.
    pub fn members(&self) -> Vec<MemberAttributes> {
        self.members.values().cloned().collect()
    }

    /// Applies one committed command; see the type's docs for the contract.
    /// Deterministic refusals come back as `Ok` with [`AppliedBody::Rejected`]
    /// and change nothing; `Err` means the engine failed.
    ///
    /// The caller may also let batches of several commands accumulate and write
    /// them at once, as long as it calls [`Store::mark_written`] after writing and
    /// does not read through [`Store::range`] or [`Store::history`] in between:
    /// values of earlier commands are then served from memory.
    ///
    /// `prev_kv_watched(key)` says whether some watcher wants the previous
    /// value of a change to `key`: only then (or when the request itself asks
    /// for it) is that value read, as etcd reads it only for such watchers.
    /// Other events carry no `prev_kv`.
    pub fn apply(
        &mut self,
        cmd: &Command,
        batch: &mut WriteBatch,
        prev_kv_watched: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Applied, MvccError> {
        let first_op = batch.ops.len();
        let applied = self.apply_command(cmd, batch, prev_kv_watched)?;
        for op in &batch.ops[first_op..] {
            if let Op::Put {
                space: Space::Kv,
                key,
                value,
            } = op
            {
                if key.len() == REV_BYTES_LEN {
                    self.unwritten.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(applied)
    }

    /// The caller has written every batch `apply` filled so far to the engine.
    pub fn mark_written(&mut self) {
        self.unwritten.clear();
    }

    fn apply_command(
        &mut self,
        cmd: &Command,
        batch: &mut WriteBatch,
        prev_kv_watched: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Applied, MvccError> {
        match cmd {
            Command::Txn(req) => self.apply_txn(req, batch, prev_kv_watched),
            Command::Compact { revision } => Ok(self.apply_compact(*revision, batch)),
            Command::LeaseGrant { id, ttl } => Ok(self.apply_lease_grant(*id, *ttl, batch)),
            Command::LeaseRevoke { id } => self.apply_lease_revoke(*id, batch, prev_kv_watched),
            Command::PublishMember(attrs) => Ok(self.apply_publish_member(attrs, batch)),
        }
    }

    pub(super) fn rejected(&self, err: MvccError) -> Applied {
        Applied {
            revision: self.current_rev,
            body: AppliedBody::Rejected(err),
            events: Vec::new(),
        }
    }

    fn apply_publish_member(
        &mut self,
        attrs: &MemberAttributes,
        batch: &mut WriteBatch,
    ) -> Applied {
        let mut key = MEMBER_PREFIX.to_vec();
        key.extend_from_slice(format!("{:016x}", attrs.id).as_bytes());
        let value = postcard::to_stdvec(attrs).expect("member attributes always serialize");
        batch.put(Space::Meta, key, value);
        self.members.insert(attrs.id, attrs.clone());
        Applied {
            revision: self.current_rev,
            body: AppliedBody::MemberPublished,
            events: Vec::new(),
        }
    }

    /// etcd Range at the current revision; the header is left `None`.
    pub fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, MvccError> {
        super::txn::check_range_request(req)?;
        self.range_at(req, self.current_rev, &[])
    }

    /// The value stored at `rev`. `pending` holds the changes of the write
    /// transaction in progress, whose main revision is `current_rev + 1` and
    /// which are not in the engine yet.
    pub(super) fn read_kv(
        &self,
        rev: Revision,
        pending: &[PbKeyValue],
    ) -> Result<PbKeyValue, MvccError> {
        if rev.main == self.current_rev + 1 {
            if let Some(kv) = pending.get(rev.sub as usize) {
                return Ok(kv.clone());
            }
        }
        let key = rev.to_bytes();
        if let Some(bytes) = self.unwritten.get(key.as_slice()) {
            return decode_kv(bytes);
        }
        match self.engine.get(Space::Kv, &key)? {
            Some(bytes) => decode_kv(&bytes),
            None => Err(MvccError::Corrupt {
                what: "key-value",
                detail: format!(
                    "revision {}.{} is indexed but not stored",
                    rev.main, rev.sub
                ),
            }),
        }
    }

    /// etcd's applier `Range` over `rangeKeys`, reading as of `cur_rev`
    /// (inside a write transaction that already wrote, `current_rev + 1`).
    ///
    /// As in etcd 3.4: `count` is the number of keys in range at the revision,
    /// before the min/max filters and the limit; `more` says the limit cut the
    /// result; order NONE with a target other than KEY sorts ascending. Ties
    /// keep key order (a stable sort).
    pub(super) fn range_at(
        &self,
        req: &PbRangeRequest,
        cur_rev: i64,
        pending: &[PbKeyValue],
    ) -> Result<PbRangeResponse, MvccError> {
        if req.revision > cur_rev {
            return Err(MvccError::FutureRevision);
        }
        let rev = if req.revision <= 0 {
            cur_rev
        } else {
            req.revision
        };
        if rev < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        let revs = self
            .index
            .revisions(KeyRange::new(&req.key, &req.range_end), rev);
        let count = revs.len() as i64;
        if req.count_only || revs.is_empty() {
            return Ok(PbRangeResponse {
                count,
                ..Default::default()
            });
        }

        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let mut order = req.sort_order;
        if req.sort_target != sort_target::KEY && order == sort_order::NONE {
            order = sort_order::ASCEND;
        }
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let read = |kr: &super::index::KeyRev| self.read_kv(kr.modified, pending);

        let mut kvs: Vec<PbKeyValue>;
        let mut more = false;
        if !filtered && req.sort_target == sort_target::KEY && order != sort_order::DESCEND {
            // Already in key order: read only what is returned.
            let take = if limit == 0 {
                revs.len()
            } else {
                limit.min(revs.len())
            };
            more = take < revs.len();
            kvs = revs[..take]
                .iter()
                .map(|(_, kr)| read(kr))
                .collect::<Result<_, _>>()?;
        } else if !filtered && req.sort_target == sort_target::KEY {
            let take = if limit == 0 {
                revs.len()
            } else {
                limit.min(revs.len())
            };
            more = take < revs.len();
            kvs = revs
                .iter()
                .rev()
                .take(take)
                .map(|(_, kr)| read(kr))
                .collect::<Result<_, _>>()?;
        } else {
            kvs = revs
                .iter()
                .map(|(_, kr)| read(kr))
                .collect::<Result<_, _>>()?;
            kvs.retain(|kv| {
                (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
            });
            sort_kvs(&mut kvs, order, req.sort_target);
            if limit > 0 && kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        Ok(PbRangeResponse {
            header: None,
            kvs,
            more,
            count,
        })
    }

    /// Watch history: the events on keys in `[key, range_end)` (etcd range_end
    /// rules) with `start_rev <= mod_revision <= end_rev`, ascending by
    /// revision, at most `limit` (0 = all) of them without splitting a
    /// revision — except that the first revision is returned whole even when
    /// it alone has more than `limit` events, so that a caller always advances.
    ///
    /// Like etcd's watchable store, this scans the stored revisions; `prev_kv`
    /// is the key's value at `mod_revision - 1`, left out when that revision
    /// is compacted. A tombstone at exactly the compacted revision is gone, as
    /// in etcd.
    pub fn history(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_rev: i64,
        end_rev: i64,
        with_prev_kv: bool,
        limit: usize,
    ) -> Result<Vec<PbEvent>, MvccError> {
        if start_rev < self.compact_revision() {
            return Err(MvccError::Compacted);
        }
        let start_rev = start_rev.max(1);
        let end_rev = end_rev.min(self.current_rev);
        let mut events = Vec::new();
        if start_rev > end_rev {
            return Ok(events);
        }
        let range = KeyRange::new(key, range_end);
        let end = Revision::start_key(end_rev + 1);
        let start = Revision::start_key(start_rev);
        // Events of the revision being read, added to `events` once it is whole.
        let mut group: Vec<PbEvent> = Vec::new();
        let mut group_rev = 0;
        let fits = |events: &Vec<PbEvent>, group: &Vec<PbEvent>| {
            limit == 0 || events.is_empty() || events.len() + group.len() <= limit
        };
        let mut full = false;
        scan_revisions(
            self.engine.as_ref(),
            &start,
            Some(&end),
            |stored_key, value| {
                let (rev, tombstone) = Revision::from_key(stored_key)?;
                let mut kv = decode_kv(value)?;
                if !range.contains(&kv.key) {
                    return Ok(ControlFlow::Continue(()));
                }
                if rev.main != group_rev {
                    if !fits(&events, &group) {
                        full = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    events.append(&mut group);
                    if limit > 0 && events.len() >= limit {
                        full = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    group_rev = rev.main;
                }
                let r#type = if tombstone {
                    kv.mod_revision = rev.main;
                    event_type::DELETE
                } else {
                    event_type::PUT
                };
                let is_create = !tombstone && kv.create_revision == kv.mod_revision;
                let prev_kv = if with_prev_kv && !is_create {
                    self.value_at(&kv.key, rev.main - 1)?
                } else {
                    None
                };
                group.push(PbEvent {
                    r#type,
                    kv: Some(kv),
                    prev_kv,
                });
                Ok(ControlFlow::Continue(()))
            },
        )?;
        if !full && fits(&events, &group) {
            events.append(&mut group);
        }
        Ok(events)
    }

    /// etcd's `HashKV`: a CRC-32 of every stored revision up to `rev` (the
    /// current one when 0), key and value as stored, in revision order. It
    /// covers what a compaction kept, so members that applied the same log
    /// agree on it, and a later write does not change the hash at `rev`.
    /// (The figure is etcd-lite's own: etcd stores revisions in another form.)
    ///
    /// Refused as etcd refuses it: `Compacted` when `rev` is at or below the
    /// compacted revision, `FutureRevision` when above the current one.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, MvccError> {
        if rev > 0 && rev <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRevision);
        }
        let rev = if rev == 0 { self.current_rev } else { rev };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(Space::Kv.name().as_bytes());
        let end = Revision::start_key(rev + 1);
        scan_revisions(self.engine.as_ref(), &[], Some(&end), |key, value| {
            hasher.update(key);
            hasher.update(value);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(KvHash {
            hash: hasher.finalize(),
            compact_revision: self.compact_rev,
            revision: self.current_rev,
            hash_revision: rev,
        })
    }

    /// The value of `key` at `rev`, None when it had none or `rev` is compacted.
    fn value_at(&self, key: &[u8], rev: i64) -> Result<Option<PbKeyValue>, MvccError> {
        if rev < self.compact_rev {
            return Ok(None);
        }
        match self.index.get(key, rev) {
            Some(kr) => self.read_kv(kr.modified, &[]).map(Some),
            None => Ok(None),
        }
    }
}

/// Calls `visit` with each stored revision in `[start, end)` (to the last one
/// when `end` is `None`), key and value as stored, in revision order, reading
/// the engine [`SCAN_CHUNK`] entries at a time, until `visit` breaks.
fn scan_revisions(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, MvccError>,
) -> Result<(), MvccError> {
    let mut start = start.to_vec();
    loop {
        let chunk = engine.scan(Space::Kv, ScanRange::new(&start, end), false, SCAN_CHUNK)?;
        for (key, value) in &chunk {
            if visit(key, value)?.is_break() {
                return Ok(());
            }
        }
        match chunk.last() {
            Some((key, _)) if chunk.len() == SCAN_CHUNK => {
                start = key.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// Sorts as etcd's applier does for `order` ASCEND or DESCEND, stably.
fn sort_kvs(kvs: &mut [PbKeyValue], order: i32, target: i32) {
    let cmp = |a: &PbKeyValue, b: &PbKeyValue| match target {
        sort_target::VERSION => a.version.cmp(&b.version),
        sort_target::CREATE => a.create_revision.cmp(&b.create_revision),
        sort_target::MOD => a.mod_revision.cmp(&b.mod_revision),
        sort_target::VALUE => a.value.cmp(&b.value),
        _ => a.key.cmp(&b.key),
    };
    match order {
        sort_order::ASCEND => kvs.sort_by(cmp),
        sort_order::DESCEND => kvs.sort_by(|a, b| cmp(b, a)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{PbDeleteRequest, PbPutRequest, PbRangeRequest, PbTxnOpRequest};

    use super::super::testkit::*;
    use super::super::{AppliedBody, Command, MemberAttributes, MvccError};
    use super::{event_type, sort_order, sort_target};

    fn seed_abc(h: &mut Harness) {
        h.put("a", "1"); // rev 2
        h.put("b", "22"); // rev 3
        h.put("c", "3"); // rev 4
        h.put("a", "111"); // rev 5: a has version 2
    }

    #[test]
    fn empty_store_is_at_revision_one_and_each_write_bumps_once() {
        let mut h = Harness::new();
        assert_eq!(h.store.revision(), 1);
        assert_eq!(h.store.compact_revision(), 0);
        assert_eq!(h.put("a", "1").revision, 2);
        let applied = h.txn(txn(
            vec![],
            vec![put_op("b", "1"), put_op("c", "1")],
            vec![],
        ));
        assert_eq!(applied.revision, 3, "one txn, one revision");
        assert_eq!(h.get("b").unwrap().mod_revision, 3);
        assert_eq!(h.get("c").unwrap().mod_revision, 3);
    }

    #[test]
    fn versions_count_puts_and_restart_after_delete() {
        let mut h = Harness::new();
        h.put("k", "v1"); // 2
        h.put("k", "v2"); // 3
        let kv = h.get("k").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        assert_eq!(h.delete("k", "").revision, 4);
        assert!(h.get("k").is_none());
        h.put("k", "again"); // 5
        let kv = h.get("k").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    }

    #[test]
    fn changes_that_change_nothing_do_not_bump_the_revision() {
        let mut h = Harness::new();
        h.put("a", "1");
        let applied = h.delete("zzz", "");
        assert_eq!(applied.revision, 2);
        assert!(applied.events.is_empty());
        let applied = h.txn(txn(vec![], vec![range_op("a", "")], vec![]));
        assert_eq!(applied.revision, 2, "a read-only txn does not bump");
        assert_eq!(h.store.revision(), 2);
    }

    #[test]
    fn applied_events_carry_prev_kv_and_delete_revision() {
        let mut h = Harness::new();
        let watched = |key: &[u8]| key == b"a";
        let applied = h.apply_watched(
            Command::Txn(txn(vec![], vec![put_op("a", "1")], vec![])),
            &watched,
        );
        assert_eq!(applied.events.len(), 1);
        assert_eq!(applied.events[0].r#type, event_type::PUT);
        assert!(
            applied.events[0].prev_kv.is_none(),
            "a create has no previous value"
        );
        let applied = h.apply_watched(
            Command::Txn(txn(vec![], vec![put_op("a", "2")], vec![])),
            &watched,
        );
        assert_eq!(value(applied.events[0].prev_kv.as_ref().unwrap()), "1");
        let applied = h.apply_watched(
            Command::Txn(txn(vec![], vec![delete_op("a", "")], vec![])),
            &watched,
        );
        let e = &applied.events[0];
        assert_eq!(e.r#type, event_type::DELETE);
        let kv = e.kv.as_ref().unwrap();
        assert_eq!(
            (kv.key.as_slice(), kv.mod_revision, kv.version),
            (&b"a"[..], 4, 0)
        );
        assert_eq!(value(e.prev_kv.as_ref().unwrap()), "2");
    }

    #[test]
    fn previous_values_are_read_only_for_watched_keys_or_requests_that_need_them() {
        let mut h = Harness::new();
        let watched = |key: &[u8]| key == b"w";
        for key in ["w", "u"] {
            h.put(key, "1");
            let applied = h.apply_watched(
                Command::Txn(txn(vec![], vec![put_op(key, "2")], vec![])),
                &watched,
            );
            let prev = applied.events[0].prev_kv.as_ref().map(value);
            let expected = (key == "w").then(|| "1".to_string());
            assert_eq!(prev, expected, "event of a put to {key}");
            let delete = PbDeleteRequest {
                key: key.into(),
                ..Default::default()
            };
            let applied = h.apply_watched(
                Command::Txn(txn(
                    vec![],
                    vec![op(PbTxnOpRequest::RequestDeleteRange(delete))],
                    vec![],
                )),
                &watched,
            );
            let prev = applied.events[0].prev_kv.as_ref().map(value);
            let expected = (key == "w").then(|| "2".to_string());
            assert_eq!(prev, expected, "event of a delete of {key}");
        }
        // Unwatched, but the request asks: its response and event both get it.
        h.put("u", "3");
        let applied = h.put_req(PbPutRequest {
            key: b"u".to_vec(),
            value: b"4".to_vec(),
            prev_kv: true,
            ..Default::default()
        });
        assert_eq!(value(applied.events[0].prev_kv.as_ref().unwrap()), "3");
        assert_eq!(h.get("u").map(|kv| value(&kv)), Some("4".into()));
    }

    #[test]
    fn range_at_a_past_revision_sees_the_values_of_then() {
        let mut h = Harness::new();
        seed_abc(&mut h);
        h.delete("b", ""); // 6
        let at = |rev| h.store.range(&range_req("a", "d", rev)).unwrap();
        assert_eq!(keys(&at(3).kvs), ["a", "b"]);
        assert_eq!(value(&at(4).kvs[0]), "1");
        assert_eq!(value(&at(5).kvs[0]), "111");
        assert_eq!(keys(&at(6).kvs), ["a", "c"]);
        assert_eq!(keys(&at(0).kvs), ["a", "c"]);
        assert_eq!(at(1).kvs.len(), 0);
        assert_eq!(
            h.store.range(&range_req("a", "", 7)).unwrap_err(),
            MvccError::FutureRevision
        );
    }

    #[test]
    fn range_limit_sets_more_and_count_is_the_total() {
        let mut h = Harness::new();
        seed_abc(&mut h);
        let mut req = range_req("a", "\0", 0);
        req.limit = 2;
        let resp = h.store.range(&req).unwrap();
        assert_eq!(keys(&resp.kvs), ["a", "b"]);
        assert!(resp.more);
        assert_eq!(resp.count, 3);
        req.limit = 3;
        let resp = h.store.range(&req).unwrap();
        assert!(!resp.more);
        assert_eq!(resp.count, 3);
    }

    #[test]
    fn range_sorts_like_etcd() {
        let mut h = Harness::new();
        seed_abc(&mut h); // versions: a=2, b=1, c=1; values a=111, b=22, c=3
        let sorted = |order, target, limit| {
            let mut req = range_req("a", "\0", 0);
            (req.sort_order, req.sort_target, req.limit) = (order, target, limit);
            let resp = h.store.range(&req).unwrap();
            (keys(&resp.kvs), resp.more, resp.count)
        };
        let s = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sorted(sort_order::DESCEND, sort_target::KEY, 0).0,
            s(&["c", "b", "a"])
        );
        assert_eq!(
            sorted(sort_order::DESCEND, sort_target::KEY, 2),
            (s(&["c", "b"]), true, 3)
        );
        // NONE with a target other than KEY sorts ascending; ties keep key order.
        assert_eq!(
            sorted(sort_order::NONE, sort_target::VERSION, 0).0,
            s(&["b", "c", "a"])
        );
        assert_eq!(
            sorted(sort_order::DESCEND, sort_target::VERSION, 0).0,
            s(&["a", "b", "c"])
        );
        assert_eq!(
            sorted(sort_order::ASCEND, sort_target::CREATE, 0).0,
            s(&["a", "b", "c"])
        );
        assert_eq!(
            sorted(sort_order::DESCEND, sort_target::MOD, 1),
            (s(&["a"]), true, 3)
        );
        assert_eq!(
            sorted(sort_order::ASCEND, sort_target::VALUE, 0).0,
            s(&["a", "b", "c"])
        );
        assert_eq!(
            sorted(sort_order::DESCEND, sort_target::VALUE, 0).0,
            s(&["c", "b", "a"])
        );
    }

    #[test]
    fn range_keys_only_and_count_only() {
        let mut h = Harness::new();
        seed_abc(&mut h);
        let mut req = range_req("a", "\0", 0);
        req.keys_only = true;
        let resp = h.store.range(&req).unwrap();
        assert_eq!(keys(&resp.kvs), ["a", "b", "c"]);
        assert!(resp
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version > 0));
        req.count_only = true;
        req.limit = 1;
        let resp = h.store.range(&req).unwrap();
        assert!(resp.kvs.is_empty());
        assert!(!resp.more);
        assert_eq!(resp.count, 3);
    }

    #[test]
    fn range_revision_filters_prune_results_but_not_count() {
        let mut h = Harness::new();
        seed_abc(&mut h); // a: create 2 mod 5; b: 3/3; c: 4/4
        let filtered = |f: &dyn Fn(&mut PbRangeRequest)| {
            let mut req = range_req("a", "\0", 0);
            f(&mut req);
            let resp = h.store.range(&req).unwrap();
            (keys(&resp.kvs), resp.count, resp.more)
        };
        assert_eq!(filtered(&|r| r.min_mod_revision = 4).0, ["a", "c"]);
        assert_eq!(filtered(&|r| r.max_mod_revision = 4).0, ["b", "c"]);
        assert_eq!(filtered(&|r| r.min_create_revision = 3).0, ["b", "c"]);
        assert_eq!(
            filtered(&|r| r.max_create_revision = 3),
            (vec!["a".into(), "b".into()], 3, false)
        );
        let (k, count, more) = filtered(&|r| {
            r.min_create_revision = 3;
            r.limit = 1;
        });
        assert_eq!((k, count, more), (vec!["b".to_string()], 3, true));
    }

    #[test]
    fn range_end_rules_follow_etcd() {
        let mut h = Harness::new();
        seed_abc(&mut h);
        assert_eq!(
            keys(&h.all_at(0).unwrap().kvs),
            ["a", "b", "c"],
            "\\0 to \\0 is everything"
        );
        assert_eq!(
            keys(&h.store.range(&range_req("b", "\0", 0)).unwrap().kvs),
            ["b", "c"]
        );
        assert_eq!(
            keys(&h.store.range(&range_req("b", "", 0)).unwrap().kvs),
            ["b"]
        );
        assert!(h
            .store
            .range(&range_req("c", "a", 0))
            .unwrap()
            .kvs
            .is_empty());
        assert_eq!(
            h.store.range(&range_req("", "", 0)).unwrap_err(),
            MvccError::EmptyKey
        );
        let mut req = range_req("a", "", 0);
        req.sort_target = 9;
        assert_eq!(
            h.store.range(&req).unwrap_err(),
            MvccError::InvalidSortOption
        );
    }

    #[test]
    fn history_lists_events_in_revision_order_with_prev_kv() {
        let mut h = Harness::new();
        seed_abc(&mut h);
        h.txn(txn(
            vec![],
            vec![delete_op("b", ""), put_op("d", "4")],
            vec![],
        )); // 6
        let events = h.store.history(b"a", b"\0", 1, i64::MAX, true, 0).unwrap();
        assert_eq!(
            event_summary(&events),
            [
                (event_type::PUT, "a".into(), 2),
                (event_type::PUT, "b".into(), 3),
                (event_type::PUT, "c".into(), 4),
                (event_type::PUT, "a".into(), 5),
                (event_type::DELETE, "b".into(), 6),
                (event_type::PUT, "d".into(), 6),
            ]
        );
        assert!(events[0].prev_kv.is_none());
        assert_eq!(value(events[3].prev_kv.as_ref().unwrap()), "1");
        assert_eq!(value(events[4].prev_kv.as_ref().unwrap()), "22");
        let events = h.store.history(b"a", b"", 3, 5, false, 0).unwrap();
        assert_eq!(event_summary(&events), [(event_type::PUT, "a".into(), 5)]);
        assert!(events[0].prev_kv.is_none(), "prev_kv only when asked");
    }

    #[test]
    fn history_limit_never_splits_a_revision() {
        let mut h = Harness::new();
        h.put("a", "1"); // 2
        h.txn(txn(
            vec![],
            vec![put_op("b", "1"), put_op("c", "1")],
            vec![],
        )); // 3
        h.put("d", "1"); // 4
        let revs = |limit| {
            let events = h.store.history(b"a", b"\0", 2, 10, false, limit).unwrap();
            events
                .iter()
                .map(|e| e.kv.as_ref().unwrap().mod_revision)
                .collect::<Vec<_>>()
        };
        assert_eq!(revs(1), [2]);
        assert_eq!(revs(2), [2], "revision 3 has two events: it does not fit");
        assert_eq!(revs(3), [2, 3, 3]);
        assert_eq!(revs(0), [2, 3, 3, 4]);
        let events = h.store.history(b"a", b"\0", 3, 10, false, 1).unwrap();
        assert_eq!(
            events.len(),
            2,
            "a first revision larger than the limit comes whole"
        );
    }

    #[test]
    fn members_are_upserted_and_survive_reopen() {
        let mut h = Harness::new();
        let m = |id, name: &str| MemberAttributes {
            id,
            name: name.into(),
            client_urls: vec![format!("http://{name}:2379")],
        };
        let applied = h.apply(Command::PublishMember(m(2, "two")));
        assert_eq!(
            (applied.revision, applied.body),
            (1, AppliedBody::MemberPublished)
        );
        h.apply(Command::PublishMember(m(1, "one")));
        h.apply(Command::PublishMember(m(2, "deux")));
        assert_eq!(h.store.members(), [m(1, "one"), m(2, "deux")]);
        assert_eq!(h.reopen().members(), [m(1, "one"), m(2, "deux")]);
        assert_eq!(
            h.store.revision(),
            1,
            "publishing does not bump the revision"
        );
    }

    #[test]
    fn reopen_restores_revision_when_the_latest_change_was_a_delete() {
        let mut h = Harness::new();
        h.put("a", "1");
        h.put("b", "1");
        h.delete("b", "");
        let store = h.reopen();
        assert_eq!(store.revision(), 4);
        assert_eq!(store.range(&range_req("b", "", 0)).unwrap().kvs, vec![]);
        assert_eq!(store.range(&range_req("b", "", 3)).unwrap().kvs.len(), 1);
    }

    #[test]
    fn reopen_gives_identical_ranges_and_history() {
        let mut h = Harness::new();
        h.apply(Command::LeaseGrant { id: 7, ttl: 30 });
        for i in 0..40 {
            let key = format!("k{}", i % 7);
            match i % 5 {
                0 => h.delete(&key, ""),
                1 => h.txn(txn(
                    vec![],
                    vec![put_lease_op(&key, &i.to_string(), 7)],
                    vec![],
                )),
                _ => h.put(&key, &i.to_string()),
            };
            if i == 25 {
                h.apply(Command::Compact { revision: 20 });
            }
        }
        let store = h.reopen();
        assert_eq!(store.revision(), h.store.revision());
        assert_eq!(store.compact_revision(), 20);
        assert_eq!(
            store.index, h.store.index,
            "the rebuilt key index is the same"
        );
        assert_eq!(store.leases(), h.store.leases());
        for rev in 20..=h.store.revision() {
            let req = range_req("\0", "\0", rev);
            assert_eq!(store.range(&req), h.store.range(&req), "range at {rev}");
        }
        assert_eq!(
            store.history(b"\0", b"\0", 20, i64::MAX, true, 0),
            h.store.history(b"\0", b"\0", 20, i64::MAX, true, 0)
        );
        assert_eq!(
            store.range(&range_req("k1", "", 19)).unwrap_err(),
            MvccError::Compacted
        );
    }
}

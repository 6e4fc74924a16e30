//! Transactions (etcd's `storeTxnWrite` and the applier's `Txn`): request
//! checks, compares, and the write transaction every change goes through.
//!
//! Entry points: [`validate_txn`] (the gRPC layer's shape checks, also re-run by
//! apply) and `Store::apply_txn`, which follows etcd's applier step by step:
//! 1. evaluate every compare on the chosen path against the state before the
//!    transaction (nested transactions' compares too);
//! 2. check the chosen puts (lease exists, key exists for `ignore_*`) and
//!    ranges (revision not future nor compacted), refusing the whole
//!    transaction before anything changes;
//! 3. run the ops in a [`TxnWrite`]: all changes share main revision
//!    `current + 1`, with sub-revisions 0, 1, 2…; reads see earlier writes.
//!
//! A [`TxnWrite`] keeps an undo log, so that an op refused half-way (which etcd
//! would treat as fatal) leaves the store exactly as it was.

use std::collections::HashSet;

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbEvent, PbKeyValue, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbResponseHeader, PbResponseOp, PbTargetUnion, PbTxnOpRequest,
    PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use prost::Message;

use super::index::{KeyRange, PutUndo};
use super::revision::Revision;
use super::store::{
    event_type, is_deterministic, sort_order, sort_target, Store, StoredI64, CURRENT_REV_KEY,
};
use super::{Applied, AppliedBody, MvccError};
use crate::storage::{Space, WriteBatch};

/// The `Compare.result` values (rpc.proto).
mod compare_result {
    pub const EQUAL: i32 = 0;
    pub const GREATER: i32 = 1;
    pub const LESS: i32 = 2;
    pub const NOT_EQUAL: i32 = 3;
}

/// The `Compare.target` values (rpc.proto).
mod compare_target {
    pub const VERSION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const MOD: i32 = 2;
    pub const VALUE: i32 = 3;
    pub const LEASE: i32 = 4;
}

/// Checks a transaction's shape as etcd's gRPC layer does before proposing it
/// (`checkTxnRequest`, then `checkIntervals` on both branches):
/// - [`MvccError::TooManyOps`]: more than `max_ops` compares, success or failure
///   ops (a nested transaction gets what its parent left);
/// - [`MvccError::EmptyKey`]: a compare, range, put or delete without key;
/// - [`MvccError::ValueProvided`] / [`MvccError::LeaseProvided`]: `ignore_value`
///   with a value, `ignore_lease` with a lease;
/// - [`MvccError::InvalidSortOption`]: a range with an unknown sort order or target;
/// - [`MvccError::KeyNotFound`]: an empty op (etcd's answer to it);
/// - [`MvccError::DuplicateKey`]: one branch puts a key twice, or puts a key a
///   delete of the same branch covers, nested transactions included (a key put
///   in both branches of a nested transaction is fine: only one runs).
///
/// As in etcd 3.4, a delete whose `range_end` is `"\0"` is taken literally
/// here (it covers no key), so it never conflicts with a put.
pub fn validate_txn(req: &PbTxnRequest, max_ops: usize) -> Result<(), MvccError> {
    check_txn_request(req, max_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_request(req: &PbTxnRequest, max_ops: usize) -> Result<(), MvccError> {
    let opc = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if opc > max_ops {
        return Err(MvccError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_request_op(op, max_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &PbTxnRequestOp, max_ops: usize) -> Result<(), MvccError> {
    match &op.request {
        Some(PbTxnOpRequest::RequestRange(r)) => check_range_request(r),
        Some(PbTxnOpRequest::RequestPut(p)) => check_put_request(p),
        Some(PbTxnOpRequest::RequestDeleteRange(d)) if d.key.is_empty() => Err(MvccError::EmptyKey),
        Some(PbTxnOpRequest::RequestDeleteRange(_)) => Ok(()),
        Some(PbTxnOpRequest::RequestTxn(t)) => check_txn_request(t, max_ops),
        None => Err(MvccError::KeyNotFound),
    }
}

/// etcd's `checkRangeRequest`.
pub(super) fn check_range_request(r: &PbRangeRequest) -> Result<(), MvccError> {
    if r.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if !(sort_order::NONE..=sort_order::DESCEND).contains(&r.sort_order)
        || !(sort_target::KEY..=sort_target::VALUE).contains(&r.sort_target)
    {
        return Err(MvccError::InvalidSortOption);
    }
    Ok(())
}

fn check_put_request(p: &PbPutRequest) -> Result<(), MvccError> {
    if p.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// A deleted interval as etcd's `checkIntervals` sees it.
enum Deleted<'a> {
    Point(&'a [u8]),
    /// `[begin, end)` compared as plain strings, except that an empty `begin`
    /// is "infinity" (etcd's affine comparison), so it covers nothing.
    Range(&'a [u8], &'a [u8]),
}

impl Deleted<'_> {
    fn covers(&self, k: &[u8]) -> bool {
        match *self {
            Deleted::Point(p) => p == k,
            Deleted::Range(begin, end) => !begin.is_empty() && begin <= k && k < end,
        }
    }
}

type Intervals<'a> = (HashSet<&'a [u8]>, Vec<Deleted<'a>>);

/// etcd's `checkIntervals`: the keys put and the ranges deleted by `ops`
/// (nested transactions included), or DuplicateKey.
fn check_intervals(ops: &[PbTxnRequestOp]) -> Result<Intervals<'_>, MvccError> {
    let mut dels: Vec<Deleted<'_>> = Vec::new();
    for op in ops {
        if let Some(PbTxnOpRequest::RequestDeleteRange(d)) = &op.request {
            dels.push(if d.range_end.is_empty() {
                Deleted::Point(&d.key)
            } else {
                Deleted::Range(&d.key, &d.range_end)
            });
        }
    }
    let covered = |dels: &[Deleted<'_>], k: &[u8]| dels.iter().any(|d| d.covers(k));

    let mut puts: HashSet<&[u8]> = HashSet::new();
    for op in ops {
        let Some(PbTxnOpRequest::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || covered(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k);
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || covered(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in ops {
        let Some(PbTxnOpRequest::RequestPut(p)) = &op.request else {
            continue;
        };
        let k = p.key.as_slice();
        if puts.contains(k) || covered(&dels, k) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(k);
    }
    Ok((puts, dels))
}

/// Whether every op of both branches is a Range (etcd's `isTxnReadonly`;
/// a nested transaction counts as a write).
fn is_txn_readonly(req: &PbTxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(op.request, Some(PbTxnOpRequest::RequestRange(_))))
}

/// What a compare looks at on one key; a missing key compares as all zeros.
#[derive(Default)]
struct Compared {
    version: i64,
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
    value: Vec<u8>,
}

/// etcd's `compareKV`.
fn compare_kv(c: &PbCompare, kv: &Compared) -> bool {
    let ordering = match c.target {
        compare_target::VALUE => {
            let want: &[u8] = match &c.target_union {
                Some(PbTargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        compare_target::CREATE => {
            let want = match c.target_union {
                Some(PbTargetUnion::CreateRevision(n)) => n,
                _ => 0,
            };
            kv.create_revision.cmp(&want)
        }
        compare_target::MOD => {
            let want = match c.target_union {
                Some(PbTargetUnion::ModRevision(n)) => n,
                _ => 0,
            };
            kv.mod_revision.cmp(&want)
        }
        compare_target::VERSION => {
            let want = match c.target_union {
                Some(PbTargetUnion::Version(n)) => n,
                _ => 0,
            };
            kv.version.cmp(&want)
        }
        compare_target::LEASE => {
            let want = match c.target_union {
                Some(PbTargetUnion::Lease(n)) => n,
                _ => 0,
            };
            kv.lease.cmp(&want)
        }
        _ => std::cmp::Ordering::Equal,
    };
    match c.result {
        compare_result::EQUAL => ordering.is_eq(),
        compare_result::NOT_EQUAL => ordering.is_ne(),
        compare_result::GREATER => ordering.is_gt(),
        compare_result::LESS => ordering.is_lt(),
        _ => true,
    }
}

impl Store {
    /// etcd's `applyCompare` at the current revision: every key in the range
    /// must satisfy the compare; with no key, a VALUE compare fails and the
    /// others compare against zero.
    fn apply_compare(&self, c: &PbCompare) -> Result<bool, MvccError> {
        let revs = self
            .index
            .revisions(KeyRange::new(&c.key, &c.range_end), self.current_rev);
        if revs.is_empty() {
            return Ok(c.target != compare_target::VALUE && compare_kv(c, &Compared::default()));
        }
        for (key, kr) in revs {
            let compared = if c.target == compare_target::VALUE {
                let kv = self.read_kv(kr.modified, &[])?;
                Compared {
                    value: kv.value,
                    ..Default::default()
                }
            } else {
                // At the current revision the index knows all but the value.
                Compared {
                    version: kr.version,
                    create_revision: kr.created,
                    mod_revision: kr.modified.main,
                    lease: self.index.key_index(key).map_or(0, |ki| ki.lease),
                    value: Vec::new(),
                }
            };
            if !compare_kv(c, &compared) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// etcd's `compareToPath`: the outcome of this transaction's compares, then
    /// of each nested transaction on the chosen branch, depth first. All are
    /// evaluated before any op runs.
    fn compare_to_path(&self, req: &PbTxnRequest, path: &mut Vec<bool>) -> Result<(), MvccError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.apply_compare(c)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            if let Some(PbTxnOpRequest::RequestTxn(t)) = &op.request {
                self.compare_to_path(t, path)?;
            }
        }
        Ok(())
    }

    /// etcd's `checkPut` against the state before the transaction.
    fn check_put(&self, op: &PbTxnRequestOp) -> Result<(), MvccError> {
        let Some(PbTxnOpRequest::RequestPut(p)) = &op.request else {
            return Ok(());
        };
        if (p.ignore_value || p.ignore_lease) && self.index.get(&p.key, self.current_rev).is_none()
        {
            return Err(MvccError::KeyNotFound);
        }
        if p.lease != 0 && !self.lessor.contains(p.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        Ok(())
    }

    /// etcd's `checkRange`.
    fn check_range(&self, op: &PbTxnRequestOp) -> Result<(), MvccError> {
        let Some(PbTxnOpRequest::RequestRange(r)) = &op.request else {
            return Ok(());
        };
        match r.revision {
            0 => Ok(()),
            rev if rev > self.current_rev => Err(MvccError::FutureRevision),
            rev if rev < self.compact_rev => Err(MvccError::Compacted),
            _ => Ok(()),
        }
    }

    /// Applies a transaction: see the module docs for the steps.
    pub(super) fn apply_txn(
        &mut self,
        req: &PbTxnRequest,
        batch: &mut WriteBatch,
        prev_kv_watched: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Applied, MvccError> {
        if let Err(err) = validate_txn(req, usize::MAX) {
            return Ok(self.rejected(err));
        }
        let mut path = Vec::new();
        self.compare_to_path(req, &mut path)?;
        let mut checked = if is_txn_readonly(req) {
            Ok(0)
        } else {
            check_requests(req, &path, &mut |op| self.check_put(op))
        };
        if checked.is_ok() {
            checked = check_requests(req, &path, &mut |op| self.check_range(op));
        }
        if let Err(err) = checked {
            return Ok(self.rejected(err));
        }

        let mut tw = TxnWrite::begin(self, batch, prev_kv_watched);
        match tw.apply_ops(req, &path) {
            Ok((resp, _)) => {
                let events = tw.commit();
                Ok(Applied {
                    revision: self.current_rev,
                    body: AppliedBody::Txn(resp),
                    events,
                })
            }
            Err(err) => {
                tw.abort();
                if is_deterministic(&err) {
                    Ok(self.rejected(err))
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// etcd's `checkRequests`: runs `check` on every non-transaction op of the
/// chosen branches; returns how many nested transactions it went through.
fn check_requests(
    req: &PbTxnRequest,
    path: &[bool],
    check: &mut dyn FnMut(&PbTxnRequestOp) -> Result<(), MvccError>,
) -> Result<usize, MvccError> {
    let ops = if path[0] { &req.success } else { &req.failure };
    let mut rest = &path[1..];
    let mut txns = 0;
    for op in ops {
        if let Some(PbTxnOpRequest::RequestTxn(t)) = &op.request {
            let nested = check_requests(t, rest, check)?;
            rest = &rest[nested + 1..];
            txns += nested + 1;
            continue;
        }
        check(op)?;
    }
    Ok(txns)
}

/// One step of a [`TxnWrite`], for undoing it.
enum Undo {
    Put(Vec<u8>, PutUndo),
    Tombstone(Vec<u8>, PutUndo),
    Attach(i64, Vec<u8>),
    Detach(i64, Vec<u8>),
}

/// A write transaction (etcd's `storeTxnWrite`): every change gets revision
/// `(begin_rev + 1, n)` for the n-th change, is indexed at once (so later ops
/// read it) and goes into the batch; [`TxnWrite::commit`] bumps the store
/// revision if anything changed, [`TxnWrite::abort`] undoes everything.
pub(super) struct TxnWrite<'s> {
    store: &'s mut Store,
    batch: &'s mut WriteBatch,
    batch_len: usize,
    begin_rev: i64,
    /// The n-th change: the new value, or for a delete just the key with
    /// `mod_revision` set and `create_revision` 0 (how etcd tells them apart).
    changes: Vec<PbKeyValue>,
    /// The value each change replaced, if the key was live and it was read
    /// (see `prev_kv_watched`).
    prev_kvs: Vec<Option<PbKeyValue>>,
    /// Whether a watcher wants the previous value of a change to this key.
    prev_kv_watched: &'s dyn Fn(&[u8]) -> bool,
    undo: Vec<Undo>,
}

impl<'s> TxnWrite<'s> {
    pub fn begin(
        store: &'s mut Store,
        batch: &'s mut WriteBatch,
        prev_kv_watched: &'s dyn Fn(&[u8]) -> bool,
    ) -> Self {
        let begin_rev = store.current_rev;
        let batch_len = batch.ops.len();
        TxnWrite {
            store,
            batch,
            batch_len,
            begin_rev,
            changes: Vec::new(),
            prev_kvs: Vec::new(),
            prev_kv_watched,
            undo: Vec::new(),
        }
    }

    /// The revision reads see: the next one once this transaction wrote.
    fn read_rev(&self) -> i64 {
        self.begin_rev + i64::from(!self.changes.is_empty())
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.begin_rev + 1, self.changes.len() as i64)
    }

    fn header(revision: i64) -> Option<PbResponseHeader> {
        Some(PbResponseHeader {
            revision,
            ..Default::default()
        })
    }

    fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, MvccError> {
        let cur_rev = self.read_rev();
        let mut resp = self.store.range_at(req, cur_rev, &self.changes)?;
        resp.header = Self::header(cur_rev);
        Ok(resp)
    }

    /// etcd's applier `Put` then `storeTxnWrite.put`.
    fn put(&mut self, req: &PbPutRequest) -> Result<PbPutResponse, MvccError> {
        // One look-up for the visible revision and the lease it carries.
        let (found, old_lease) = match self.store.index.key_index(&req.key) {
            Some(ki) => match ki.get(self.read_rev()) {
                Some(kr) => (Some(kr), ki.lease),
                None => (None, 0),
            },
            None => (None, 0),
        };
        // The index has everything else a put needs; the value only these
        // (and only a live key has one, so a new key asks no watcher).
        let needs_prev = || {
            req.prev_kv || req.ignore_value || req.ignore_lease || (self.prev_kv_watched)(&req.key)
        };
        let prev = match found {
            Some(kr) if needs_prev() => Some(self.store.read_kv(kr.modified, &self.changes)?),
            _ => None,
        };
        if (req.ignore_value || req.ignore_lease) && found.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        if lease != 0 && !self.store.lessor.contains(lease) {
            return Err(MvccError::LeaseNotFound);
        }

        let rev = self.next_rev();
        let kv = PbKeyValue {
            key: req.key.clone(),
            value,
            create_revision: found.map_or(rev.main, |kr| kr.created),
            mod_revision: rev.main,
            version: found.map_or(0, |kr| kr.version) + 1,
            lease,
        };
        self.batch
            .put(Space::Kv, rev.to_key(false), kv.encode_to_vec());
        let undo = self.store.index.put(&req.key, rev, lease);
        self.undo.push(Undo::Put(req.key.clone(), undo));
        if old_lease != 0 {
            self.store.lessor.detach(old_lease, &req.key);
            self.undo.push(Undo::Detach(old_lease, req.key.clone()));
        }
        if lease != 0 {
            self.store.lessor.attach(lease, &req.key);
            self.undo.push(Undo::Attach(lease, req.key.clone()));
        }
        self.changes.push(kv);
        let prev_kv = if req.prev_kv { prev.clone() } else { None };
        self.prev_kvs.push(prev);
        Ok(PbPutResponse {
            header: Self::header(rev.main),
            prev_kv,
        })
    }

    /// etcd's applier `DeleteRange` then `storeTxnWrite.deleteRange`.
    pub fn delete_range(&mut self, req: &PbDeleteRequest) -> Result<PbDeleteResponse, MvccError> {
        let read_rev = self.read_rev();
        let doomed: Vec<(Vec<u8>, Revision)> = self
            .store
            .index
            .revisions(KeyRange::new(&req.key, &req.range_end), read_rev)
            .into_iter()
            .map(|(k, kr)| (k.to_vec(), kr.modified))
            .collect();
        let mut resp = PbDeleteResponse {
            deleted: doomed.len() as i64,
            ..Default::default()
        };
        for (key, modified) in doomed {
            let prev = if req.prev_kv || (self.prev_kv_watched)(&key) {
                Some(self.store.read_kv(modified, &self.changes)?)
            } else {
                None
            };
            let rev = self.next_rev();
            let tombstone = PbKeyValue {
                key,
                mod_revision: rev.main,
                ..Default::default()
            };
            self.batch
                .put(Space::Kv, rev.to_key(true), tombstone.encode_to_vec());
            let old_lease = self
                .store
                .index
                .key_index(&tombstone.key)
                .map_or(0, |ki| ki.lease);
            let undo = self
                .store
                .index
                .tombstone(&tombstone.key, rev)
                .expect("deleting a live key");
            self.undo.push(Undo::Tombstone(tombstone.key.clone(), undo));
            if old_lease != 0 {
                self.store.lessor.detach(old_lease, &tombstone.key);
                self.undo
                    .push(Undo::Detach(old_lease, tombstone.key.clone()));
            }
            self.changes.push(tombstone);
            if let Some(prev) = prev.as_ref().filter(|_| req.prev_kv) {
                resp.prev_kvs.push(prev.clone());
            }
            self.prev_kvs.push(prev);
        }
        let revision = if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.begin_rev + 1
        };
        resp.header = Self::header(revision);
        Ok(resp)
    }

    /// etcd's `applyTxn`: runs the ops of the branch `path[0]` chose; returns
    /// the response and how many nested transactions it ran.
    fn apply_ops(
        &mut self,
        req: &PbTxnRequest,
        path: &[bool],
    ) -> Result<(PbTxnResponse, usize), MvccError> {
        let succeeded = path[0];
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut rest = &path[1..];
        let mut txns = 0;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => {
                    Some(PbTxnOpResponse::ResponseRange(self.range(r)?))
                }
                Some(PbTxnOpRequest::RequestPut(p)) => {
                    Some(PbTxnOpResponse::ResponsePut(self.put(p)?))
                }
                Some(PbTxnOpRequest::RequestDeleteRange(d)) => {
                    Some(PbTxnOpResponse::ResponseDeleteRange(self.delete_range(d)?))
                }
                Some(PbTxnOpRequest::RequestTxn(t)) => {
                    let (mut nested, n) = self.apply_ops(t, rest)?;
                    // etcd gives nested responses an empty header.
                    nested.header = Some(PbResponseHeader::default());
                    rest = &rest[n + 1..];
                    txns += n + 1;
                    Some(PbTxnOpResponse::ResponseTxn(nested))
                }
                None => None,
            };
            responses.push(PbResponseOp { response });
        }
        Ok((
            PbTxnResponse {
                header: None,
                succeeded,
                responses,
            },
            txns,
        ))
    }

    /// Ends the transaction: bumps the store revision if anything changed and
    /// returns the changes as events.
    pub fn commit(self) -> Vec<PbEvent> {
        if self.changes.is_empty() {
            return Vec::new();
        }
        self.store.current_rev = self.begin_rev + 1;
        self.batch.put(
            Space::Meta,
            CURRENT_REV_KEY,
            StoredI64::encode(self.store.current_rev),
        );
        self.changes
            .into_iter()
            .zip(self.prev_kvs)
            .map(|(kv, prev_kv)| {
                let r#type = if kv.create_revision == 0 {
                    event_type::DELETE
                } else {
                    event_type::PUT
                };
                PbEvent {
                    r#type,
                    kv: Some(kv),
                    prev_kv,
                }
            })
            .collect()
    }

    /// Undoes every change: index, lease attachments and batch are as before `begin`.
    pub fn abort(self) {
        for step in self.undo.into_iter().rev() {
            match step {
                Undo::Put(key, undo) => self.store.index.undo_put(&key, undo),
                Undo::Tombstone(key, undo) => self.store.index.undo_tombstone(&key, undo),
                Undo::Attach(lease, key) => self.store.lessor.detach(lease, &key),
                Undo::Detach(lease, key) => self.store.lessor.attach(lease, &key),
            }
        }
        self.batch.ops.truncate(self.batch_len);
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{
        PbDeleteRequest, PbPutRequest, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest,
    };

    use super::super::testkit::*;
    use super::super::{Command, MvccError};
    use super::{compare_result as r, compare_target as t, validate_txn};

    fn put_with(f: impl FnOnce(&mut PbPutRequest)) -> etcd_client::proto::PbTxnRequestOp {
        let mut p = PbPutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        f(&mut p);
        op(PbTxnOpRequest::RequestPut(p))
    }

    #[test]
    fn validate_txn_refuses_bad_shapes_like_etcd() {
        let ok = |req: PbTxnRequest| validate_txn(&req, 128);
        let two_puts = txn(vec![], vec![put_op("a", "1"), put_op("b", "1")], vec![]);
        assert_eq!(validate_txn(&two_puts, 1), Err(MvccError::TooManyOps));
        assert_eq!(validate_txn(&two_puts, 2), Ok(()));
        let nested = txn(
            vec![],
            vec![put_op("x", ""), txn_op(two_puts.clone())],
            vec![],
        );
        assert_eq!(
            validate_txn(&nested, 3),
            Err(MvccError::TooManyOps),
            "nested gets 3 - 2"
        );
        assert_eq!(validate_txn(&nested, 4), Ok(()));

        let cmp = compare("", "", t::VERSION, r::EQUAL, PbTargetUnion::Version(0));
        assert_eq!(ok(txn(vec![cmp], vec![], vec![])), Err(MvccError::EmptyKey));
        assert_eq!(
            ok(txn(vec![], vec![put_op("", "v")], vec![])),
            Err(MvccError::EmptyKey)
        );
        assert_eq!(
            ok(txn(vec![], vec![], vec![delete_op("", "")])),
            Err(MvccError::EmptyKey)
        );
        assert_eq!(
            ok(txn(vec![], vec![range_op("", "")], vec![])),
            Err(MvccError::EmptyKey)
        );
        let ignore_value = put_with(|p| (p.ignore_value, p.value) = (true, b"v".to_vec()));
        assert_eq!(
            ok(txn(vec![], vec![ignore_value], vec![])),
            Err(MvccError::ValueProvided)
        );
        let ignore_lease = put_with(|p| (p.ignore_lease, p.lease) = (true, 5));
        assert_eq!(
            ok(txn(vec![], vec![ignore_lease], vec![])),
            Err(MvccError::LeaseProvided)
        );
        let empty = etcd_client::proto::PbTxnRequestOp { request: None };
        assert_eq!(
            ok(txn(vec![], vec![empty], vec![])),
            Err(MvccError::KeyNotFound)
        );
    }

    #[test]
    fn validate_txn_refuses_a_key_changed_twice_in_one_branch() {
        let dup = |success| validate_txn(&txn(vec![], success, vec![]), 128);
        assert_eq!(
            dup(vec![put_op("a", "1"), put_op("a", "2")]),
            Err(MvccError::DuplicateKey)
        );
        assert_eq!(
            dup(vec![put_op("a", "1"), delete_op("a", "")]),
            Err(MvccError::DuplicateKey)
        );
        assert_eq!(
            dup(vec![delete_op("a", "c"), put_op("b", "1")]),
            Err(MvccError::DuplicateKey)
        );
        assert_eq!(
            dup(vec![delete_op("a", "c"), put_op("c", "1")]),
            Ok(()),
            "range end excluded"
        );
        assert_eq!(
            dup(vec![delete_op("a", ""), delete_op("a", "")]),
            Ok(()),
            "deletes may overlap"
        );
        // etcd 3.4 compares the "\0" range end literally: no conflict.
        assert_eq!(dup(vec![delete_op("a", "\0"), put_op("b", "1")]), Ok(()));

        let nested_put = txn_op(txn(vec![], vec![put_op("a", "1")], vec![]));
        assert_eq!(
            dup(vec![nested_put.clone(), put_op("a", "2")]),
            Err(MvccError::DuplicateKey)
        );
        assert_eq!(
            dup(vec![delete_op("a", ""), nested_put]),
            Err(MvccError::DuplicateKey)
        );
        let both_branches = txn_op(txn(vec![], vec![put_op("a", "1")], vec![put_op("a", "2")]));
        assert_eq!(
            dup(vec![both_branches.clone()]),
            Ok(()),
            "only one branch runs"
        );
        assert_eq!(
            dup(vec![both_branches, put_op("a", "3")]),
            Err(MvccError::DuplicateKey)
        );
        // Success and failure are separate branches.
        let req = txn(vec![], vec![put_op("a", "1")], vec![put_op("a", "2")]);
        assert_eq!(validate_txn(&req, 128), Ok(()));
    }

    #[test]
    fn compares_check_every_target_and_result() {
        let mut h = Harness::new();
        h.apply(Command::LeaseGrant { id: 9, ttl: 10 });
        h.put("a", "m"); // 2
        h.txn(txn(vec![], vec![put_lease_op("a", "m", 9)], vec![])); // 3: a version 2, lease 9
        let check = |h: &mut Harness, c| txn_resp(&h.txn(txn(vec![c], vec![], vec![]))).succeeded;
        use PbTargetUnion as U;
        let cases = [
            (t::VALUE, r::EQUAL, U::Value(b"m".to_vec()), true),
            (t::VALUE, r::GREATER, U::Value(b"a".to_vec()), true),
            (t::VALUE, r::LESS, U::Value(b"a".to_vec()), false),
            (t::VALUE, r::NOT_EQUAL, U::Value(b"m".to_vec()), false),
            (t::VERSION, r::EQUAL, U::Version(2), true),
            (t::VERSION, r::GREATER, U::Version(1), true),
            (t::CREATE, r::EQUAL, U::CreateRevision(2), true),
            (t::CREATE, r::LESS, U::CreateRevision(2), false),
            (t::MOD, r::EQUAL, U::ModRevision(3), true),
            (t::MOD, r::LESS, U::ModRevision(4), true),
            (t::LEASE, r::EQUAL, U::Lease(9), true),
            (t::LEASE, r::NOT_EQUAL, U::Lease(0), true),
            // A union that does not match the target compares against zero.
            (t::MOD, r::GREATER, U::Version(100), true),
        ];
        for (target, result, union, want) in cases {
            let c = compare("a", "", target, result, union.clone());
            assert_eq!(check(&mut h, c), want, "{target} {result} {union:?}");
        }
    }

    #[test]
    fn compares_on_a_missing_key_use_zero_and_value_fails() {
        let mut h = Harness::new();
        let check = |h: &mut Harness, c| txn_resp(&h.txn(txn(vec![c], vec![], vec![]))).succeeded;
        use PbTargetUnion as U;
        assert!(check(
            &mut h,
            compare("x", "", t::CREATE, r::EQUAL, U::CreateRevision(0))
        ));
        assert!(check(
            &mut h,
            compare("x", "", t::VERSION, r::EQUAL, U::Version(0))
        ));
        assert!(check(
            &mut h,
            compare("x", "", t::LEASE, r::EQUAL, U::Lease(0))
        ));
        assert!(!check(
            &mut h,
            compare("x", "", t::VALUE, r::EQUAL, U::Value(vec![]))
        ));
        assert!(!check(
            &mut h,
            compare("x", "", t::VALUE, r::NOT_EQUAL, U::Value(b"v".to_vec()))
        ));
    }

    #[test]
    fn range_compares_need_every_key_to_match() {
        let mut h = Harness::new();
        h.put("p/a", "1");
        h.put("p/b", "1");
        h.put("q", "2");
        let check = |h: &mut Harness, c| txn_resp(&h.txn(txn(vec![c], vec![], vec![]))).succeeded;
        let v = |s: &str| PbTargetUnion::Value(s.as_bytes().to_vec());
        assert!(check(
            &mut h,
            compare("p/", "p0", t::VALUE, r::EQUAL, v("1"))
        ));
        assert!(
            !check(&mut h, compare("p/", "\0", t::VALUE, r::EQUAL, v("1"))),
            "q differs"
        );
        let old = PbTargetUnion::ModRevision(4);
        assert!(check(&mut h, compare("p/", "p0", t::MOD, r::LESS, old)));
        assert!(
            !check(&mut h, compare("r", "\0", t::VALUE, r::EQUAL, v(""))),
            "no key: fails"
        );
    }

    #[test]
    fn failed_compare_runs_the_failure_branch() {
        let mut h = Harness::new();
        h.put("a", "1");
        let cmp = compare(
            "a",
            "",
            t::VALUE,
            r::EQUAL,
            PbTargetUnion::Value(b"2".to_vec()),
        );
        let applied = h.txn(txn(
            vec![cmp.clone()],
            vec![put_op("s", "1")],
            vec![put_op("f", "1")],
        ));
        assert!(!txn_resp(&applied).succeeded);
        assert_eq!(applied.revision, 3);
        assert!(h.get("f").is_some() && h.get("s").is_none());
        let applied = h.txn(txn(vec![cmp], vec![put_op("s", "1")], vec![]));
        assert!(!txn_resp(&applied).succeeded);
        assert_eq!(
            applied.revision, 3,
            "a failed compare with no failure ops changes nothing"
        );
        assert!(applied.events.is_empty());
    }

    #[test]
    fn reads_in_a_txn_see_its_own_earlier_writes() {
        let mut h = Harness::new();
        h.put("a", "old"); // 2
        let applied = h.txn(txn(
            vec![],
            vec![
                range_op("a", ""),
                put_op("a", "new"),
                range_op("a", ""),
                // A "\0" range end does not count as covering "a" (etcd 3.4's check).
                delete_op("a", "\0"),
            ],
            vec![],
        ));
        let resp = txn_resp(&applied);
        let before = range_resp(resp, 0);
        assert_eq!(value(&before.kvs[0]), "old");
        assert_eq!(before.header.as_ref().unwrap().revision, 2);
        let after = range_resp(resp, 2);
        assert_eq!(value(&after.kvs[0]), "new");
        assert_eq!(after.kvs[0].mod_revision, 3);
        assert_eq!(
            after.header.as_ref().unwrap().revision,
            3,
            "read at rev + 1 once it wrote"
        );
        let Some(PbTxnOpResponse::ResponseDeleteRange(d)) = &resp.responses[3].response else {
            panic!("delete response")
        };
        assert_eq!(d.deleted, 1);
        assert_eq!(
            value(&d.prev_kvs[0]),
            "new",
            "the delete saw the put of the same txn"
        );
        assert_eq!(applied.revision, 3);
        assert!(h.get("a").is_none());
        assert_eq!(h.store.range(&range_req("a", "", 2)).unwrap().kvs.len(), 1);
    }

    #[test]
    fn writes_of_one_txn_share_a_revision_with_ordered_sub_revisions() {
        let mut h = Harness::new();
        h.put("z", "1"); // 2
        let applied = h.txn(txn(
            vec![],
            vec![put_op("b", "1"), delete_op("z", ""), put_op("a", "1")],
            vec![],
        ));
        assert_eq!(applied.revision, 3);
        assert_eq!(
            event_summary(&applied.events),
            [(0, "b".into(), 3), (1, "z".into(), 3), (0, "a".into(), 3)]
        );
        let history = h.store.history(b"\0", b"\0", 3, 3, false, 0).unwrap();
        assert_eq!(event_summary(&history), event_summary(&applied.events));
        let resp = txn_resp(&applied);
        let Some(PbTxnOpResponse::ResponsePut(p)) = &resp.responses[0].response else {
            panic!("put response")
        };
        assert_eq!(p.header.as_ref().unwrap().revision, 3);
        assert!(resp.header.is_none(), "the server fills the top header");
    }

    #[test]
    fn nested_txn_compares_see_the_state_before_the_txn() {
        let mut h = Harness::new();
        let absent = compare("a", "", t::VERSION, r::EQUAL, PbTargetUnion::Version(0));
        let nested = txn(
            vec![absent],
            vec![put_op("then", "1")],
            vec![put_op("else", "1")],
        );
        let applied = h.txn(txn(vec![], vec![put_op("a", "1"), txn_op(nested)], vec![]));
        assert!(
            h.get("then").is_some(),
            "the nested compare did not see the outer put"
        );
        assert!(h.get("else").is_none());
        let resp = txn_resp(&applied);
        let Some(PbTxnOpResponse::ResponseTxn(n)) = &resp.responses[1].response else {
            panic!("nested txn response")
        };
        assert!(n.succeeded);
        assert_eq!(
            n.header,
            Some(Default::default()),
            "etcd leaves nested headers empty"
        );
        assert_eq!(applied.revision, 2);
        assert_eq!(applied.events.len(), 2);
    }

    #[test]
    fn deeply_nested_txns_follow_their_own_paths() {
        let mut h = Harness::new();
        h.put("x", "1");
        let is_x = |v: &str| compare("x", "", t::VALUE, r::EQUAL, PbTargetUnion::Value(v.into()));
        let inner_a = txn(
            vec![is_x("1")],
            vec![put_op("a1", "")],
            vec![put_op("a2", "")],
        );
        let inner_b = txn(
            vec![is_x("2")],
            vec![put_op("b1", "")],
            vec![put_op("b2", "")],
        );
        let outer = txn(vec![], vec![txn_op(inner_a)], vec![]);
        let req = txn(
            vec![is_x("1")],
            vec![txn_op(outer), txn_op(inner_b)],
            vec![],
        );
        h.txn(req);
        let present: Vec<_> = ["a1", "a2", "b1", "b2"]
            .into_iter()
            .filter(|k| h.get(k).is_some())
            .collect();
        assert_eq!(present, ["a1", "b2"]);
    }

    #[test]
    fn a_refused_op_rejects_the_whole_txn_with_nothing_changed() {
        let mut h = Harness::new();
        h.put("a", "1");
        let before = h.store.revision();
        let applied = h.txn(txn(
            vec![],
            vec![put_op("b", "1"), put_lease_op("c", "1", 42)],
            vec![],
        ));
        assert_eq!(rejection(&applied), Some(&MvccError::LeaseNotFound));
        assert_eq!(applied.revision, before);
        assert!(applied.events.is_empty());
        assert!(h.get("b").is_none());
        let ignore = put_with(|p| (p.key, p.ignore_value) = (b"nope".to_vec(), true));
        let applied = h.txn(txn(vec![], vec![put_op("b", "1"), ignore], vec![]));
        assert_eq!(rejection(&applied), Some(&MvccError::KeyNotFound));
        let applied = h.txn(txn(vec![], vec![put_op("", "1")], vec![]));
        assert_eq!(
            rejection(&applied),
            Some(&MvccError::EmptyKey),
            "apply re-checks the shape"
        );
        let mut future = range_req("a", "", 99);
        future.limit = 1;
        let applied = h.txn(txn(
            vec![],
            vec![put_op("b", "1"), op(PbTxnOpRequest::RequestRange(future))],
            vec![],
        ));
        assert_eq!(rejection(&applied), Some(&MvccError::FutureRevision));
        assert_eq!(h.store.revision(), before);
        assert_eq!(h.stored_revisions(), 1);
    }

    #[test]
    fn an_op_refused_mid_txn_is_undone() {
        // Passes etcd's checks (the "\0" range end is not seen as covering
        // "a", and "a" exists before the txn) but fails once "a" is deleted.
        let mut h = Harness::new();
        h.apply(Command::LeaseGrant { id: 1, ttl: 10 });
        h.txn(txn(vec![], vec![put_lease_op("a", "1", 1)], vec![]));
        let index_before = h.store.index.clone();
        let leases_before = h.store.leases();
        let ignore = put_with(|p| (p.key, p.ignore_value) = (b"a".to_vec(), true));
        let req = txn(
            vec![],
            vec![put_op("0", "x"), delete_op("\x01", "\0"), ignore],
            vec![],
        );
        let applied = h.txn(req);
        assert_eq!(rejection(&applied), Some(&MvccError::KeyNotFound));
        assert_eq!(h.store.index, index_before);
        assert_eq!(h.store.leases(), leases_before);
        assert_eq!(h.store.revision(), 2);
    }

    #[test]
    fn put_ignore_value_and_ignore_lease_keep_the_current_ones() {
        let mut h = Harness::new();
        h.apply(Command::LeaseGrant { id: 5, ttl: 10 });
        h.txn(txn(vec![], vec![put_lease_op("k", "v", 5)], vec![]));
        h.put_req(PbPutRequest {
            key: b"k".to_vec(),
            ignore_value: true,
            lease: 0,
            ..Default::default()
        });
        let kv = h.get("k").unwrap();
        assert_eq!((value(&kv), kv.lease, kv.version), ("v".into(), 0, 2));
        h.txn(txn(vec![], vec![put_lease_op("k", "v", 5)], vec![]));
        h.put_req(PbPutRequest {
            key: b"k".to_vec(),
            value: b"w".to_vec(),
            ignore_lease: true,
            ..Default::default()
        });
        let kv = h.get("k").unwrap();
        assert_eq!((value(&kv), kv.lease), ("w".into(), 5));
        let applied = h.put_req(PbPutRequest {
            key: b"k".to_vec(),
            value: b"x".to_vec(),
            prev_kv: true,
            ..Default::default()
        });
        let Some(PbTxnOpResponse::ResponsePut(p)) = &txn_resp(&applied).responses[0].response
        else {
            panic!("put response")
        };
        assert_eq!(value(p.prev_kv.as_ref().unwrap()), "w");
        let applied = h.put_req(PbPutRequest {
            key: b"absent".to_vec(),
            ignore_lease: true,
            ..Default::default()
        });
        assert_eq!(rejection(&applied), Some(&MvccError::KeyNotFound));
    }

    #[test]
    fn delete_range_counts_and_returns_prev_kvs() {
        let mut h = Harness::new();
        for k in ["a", "b", "c", "d"] {
            h.put(k, k);
        }
        let req = PbDeleteRequest {
            key: b"b".to_vec(),
            range_end: b"d".to_vec(),
            prev_kv: false,
        };
        let applied = h.txn(txn(
            vec![],
            vec![op(PbTxnOpRequest::RequestDeleteRange(req))],
            vec![],
        ));
        let Some(PbTxnOpResponse::ResponseDeleteRange(d)) =
            &txn_resp(&applied).responses[0].response
        else {
            panic!("delete response")
        };
        assert_eq!(d.deleted, 2);
        assert!(d.prev_kvs.is_empty(), "prev_kvs only when asked");
        assert_eq!(d.header.as_ref().unwrap().revision, 6);
        assert_eq!(keys(&h.all_at(0).unwrap().kvs), ["a", "d"]);
        let applied = h.delete("a", "\0");
        assert_eq!(
            event_summary(&applied.events),
            [(1, "a".into(), 7), (1, "d".into(), 7)]
        );
        assert_eq!(h.all_at(0).unwrap().count, 0);
    }
}

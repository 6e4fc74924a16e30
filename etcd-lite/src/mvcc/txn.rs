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

        let mut tw = TxnWrite::begin(self, batch);
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
    /// The value each change replaced, if the key was live.
    prev_kvs: Vec<Option<PbKeyValue>>,
    undo: Vec<Undo>,
}

impl<'s> TxnWrite<'s> {
    pub fn begin(store: &'s mut Store, batch: &'s mut WriteBatch) -> Self {
        let begin_rev = store.current_rev;
        let batch_len = batch.ops.len();
        TxnWrite {
            store,
            batch,
            batch_len,
            begin_rev,
            changes: Vec::new(),
            prev_kvs: Vec::new(),
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
        let found = self.store.index.get(&req.key, self.read_rev());
        let prev = match found {
            Some(kr) => Some(self.store.read_kv(kr.modified, &self.changes)?),
            None => None,
        };
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
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
        let old_lease = match self.store.index.key_index(&req.key) {
            Some(ki) if found.is_some() => ki.lease,
            _ => 0,
        };
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
            let prev = self.store.read_kv(modified, &self.changes)?;
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
            if req.prev_kv {
                resp.prev_kvs.push(prev.clone());
            }
            self.prev_kvs.push(Some(prev));
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

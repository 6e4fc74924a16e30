//! Test helpers: a [`Harness`] that applies commands the way the Raft layer
//! will (apply, then write the batch), and builders for etcd requests.

use std::sync::Arc;

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbEvent, PbKeyValue, PbPutRequest, PbRangeRequest, PbRangeResponse,
    PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};

use super::{Applied, AppliedBody, Command, MvccError, Store};
use crate::storage::{Durability, Engine, MemoryEngine, ScanRange, Space, WriteBatch};

/// A store on a memory engine, written through after every command.
pub struct Harness {
    pub store: Store,
    pub engine: Arc<MemoryEngine>,
}

impl Harness {
    pub fn new() -> Self {
        let engine = Arc::new(MemoryEngine::new());
        let store = Store::open(engine.clone()).expect("open empty store");
        Harness { store, engine }
    }

    /// Applies `cmd` and writes its batch, as the Raft layer does, with no
    /// watcher wanting `prev_kv` (so previous values are read only when the
    /// request needs them).
    pub fn apply(&mut self, cmd: Command) -> Applied {
        self.apply_watched(cmd, &|_| false)
    }

    /// [`Self::apply`] with the given answer to "does a watcher want this key's `prev_kv`".
    pub fn apply_watched(
        &mut self,
        cmd: Command,
        prev_kv_watched: &dyn Fn(&[u8]) -> bool,
    ) -> Applied {
        let mut batch = WriteBatch::new();
        let applied = self
            .store
            .apply(&cmd, &mut batch, prev_kv_watched)
            .expect("apply");
        if matches!(applied.body, AppliedBody::Rejected(_)) {
            assert!(
                batch.is_empty(),
                "a rejected command must not write: {batch:?}"
            );
        }
        self.engine
            .write(batch, Durability::Deferred)
            .expect("write batch");
        applied
    }

    pub fn txn(&mut self, req: PbTxnRequest) -> Applied {
        self.apply(Command::Txn(req))
    }

    pub fn put(&mut self, key: &str, value: &str) -> Applied {
        self.txn(txn(vec![], vec![put_op(key, value)], vec![]))
    }

    pub fn put_req(&mut self, req: PbPutRequest) -> Applied {
        self.txn(txn(
            vec![],
            vec![op(PbTxnOpRequest::RequestPut(req))],
            vec![],
        ))
    }

    pub fn delete(&mut self, key: &str, range_end: &str) -> Applied {
        self.txn(txn(vec![], vec![delete_op(key, range_end)], vec![]))
    }

    pub fn get(&self, key: &str) -> Option<PbKeyValue> {
        self.store
            .range(&range_req(key, "", 0))
            .expect("range")
            .kvs
            .into_iter()
            .next()
    }

    /// Every key at `revision` (0 = current).
    pub fn all_at(&self, revision: i64) -> Result<PbRangeResponse, MvccError> {
        self.store.range(&range_req("\0", "\0", revision))
    }

    /// A second store opened on the same engine.
    pub fn reopen(&self) -> Store {
        Store::open(self.engine.clone()).expect("reopen")
    }

    /// How many revisions the engine holds.
    pub fn stored_revisions(&self) -> usize {
        self.engine
            .scan(Space::Kv, ScanRange::all(), false, 0)
            .unwrap()
            .len()
    }
}

pub fn op(request: PbTxnOpRequest) -> PbTxnRequestOp {
    PbTxnRequestOp {
        request: Some(request),
    }
}

pub fn put_op(key: &str, value: &str) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestPut(PbPutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }))
}

pub fn put_lease_op(key: &str, value: &str, lease: i64) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestPut(PbPutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }))
}

pub fn delete_op(key: &str, range_end: &str) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: true,
    }))
}

pub fn range_req(key: &str, range_end: &str, revision: i64) -> PbRangeRequest {
    PbRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        revision,
        ..Default::default()
    }
}

pub fn range_op(key: &str, range_end: &str) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestRange(range_req(key, range_end, 0)))
}

pub fn txn_op(req: PbTxnRequest) -> PbTxnRequestOp {
    op(PbTxnOpRequest::RequestTxn(req))
}

pub fn txn(
    compare: Vec<PbCompare>,
    success: Vec<PbTxnRequestOp>,
    failure: Vec<PbTxnRequestOp>,
) -> PbTxnRequest {
    PbTxnRequest {
        compare,
        success,
        failure,
    }
}

/// A compare; `target` and `result` use rpc.proto's numbers.
pub fn compare(
    key: &str,
    range_end: &str,
    target: i32,
    result: i32,
    union: PbTargetUnion,
) -> PbCompare {
    PbCompare {
        result,
        target,
        key: key.into(),
        range_end: range_end.into(),
        target_union: Some(union),
    }
}

pub fn txn_resp(applied: &Applied) -> &PbTxnResponse {
    match &applied.body {
        AppliedBody::Txn(resp) => resp,
        other => panic!("expected a txn response, got {other:?}"),
    }
}

pub fn rejection(applied: &Applied) -> Option<&MvccError> {
    match &applied.body {
        AppliedBody::Rejected(err) => Some(err),
        _ => None,
    }
}

/// The range response of op `i` of a txn response.
pub fn range_resp(resp: &PbTxnResponse, i: usize) -> &PbRangeResponse {
    match &resp.responses[i].response {
        Some(PbTxnOpResponse::ResponseRange(r)) => r,
        other => panic!("expected a range response, got {other:?}"),
    }
}

pub fn keys(kvs: &[PbKeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

pub fn value(kv: &PbKeyValue) -> String {
    String::from_utf8_lossy(&kv.value).into_owned()
}

/// (type, key, mod_revision) of each event, for compact assertions.
pub fn event_summary(events: &[PbEvent]) -> Vec<(i32, String, i64)> {
    events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().expect("event kv");
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

//! Leases (etcd's `lessor`, minus the clock): which leases exist, their granted
//! TTL, and which keys are attached to each.
//!
//! Entry points: [`Store::lease`] and [`Store::leases`] to read; the
//! `LeaseGrant`/`LeaseRevoke` commands through [`Store::apply`]. Expiry is not
//! decided here: the leader's lease keeper proposes `LeaseRevoke` when a lease
//! runs out, so every member deletes the same keys at the same revision.
//!
//! A lease is stored in [`Space::Lease`] under its id (8-byte big-endian) with
//! its TTL (8-byte big-endian) as value. Attachments are not stored: they are
//! the `lease` field of each key's latest value, rebuilt on [`Store::open`].
//!
//! [`Space::Lease`]: crate::storage::Space::Lease
//! [`Store::apply`]: super::Store::apply
//! [`Store::open`]: super::Store::open

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::proto::PbDeleteRequest;

use super::store::{Store, StoredI64};
use super::txn::TxnWrite;
use super::{Applied, AppliedBody, MvccError};
use crate::storage::{ScanRange, Space, WriteBatch};

/// The largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A lease as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// The TTL it was granted with, in seconds.
    pub ttl: i64,
    /// Attached keys, ascending.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// Every lease and its attached keys.
///
/// Invariant: a key is attached to at most one lease, the `lease` of its latest
/// live value; deleting the key or overwriting it detaches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lessor {
    leases: BTreeMap<i64, Lease>,
}

impl Lessor {
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    fn grant(&mut self, id: i64, ttl: i64) {
        self.leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
            },
        );
    }

    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
        }
    }

    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }

    fn info(id: i64, lease: &Lease) -> LeaseInfo {
        LeaseInfo {
            id,
            ttl: lease.ttl,
            keys: lease.keys.iter().cloned().collect(),
        }
    }
}

/// The stored key of lease `id`.
fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

impl Store {
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        self.lessor.leases.get(&id).map(|l| Lessor::info(id, l))
    }

    /// Every lease, ascending by id.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.lessor
            .leases
            .iter()
            .map(|(id, l)| Lessor::info(*id, l))
            .collect()
    }

    /// Loads the stored leases; keys are attached afterwards from the index.
    pub(super) fn load_leases(&mut self) -> Result<(), MvccError> {
        for (key, value) in self.engine.scan(Space::Lease, ScanRange::all(), false, 0)? {
            let id = StoredI64::decode("lease id", &key)?;
            let ttl = StoredI64::decode("lease ttl", &value)?;
            self.lessor.grant(id, ttl);
        }
        let attached: Vec<(Vec<u8>, i64)> = self
            .index
            .leased_keys()
            .map(|(k, id)| (k.clone(), id))
            .collect();
        for (key, id) in attached {
            self.lessor.attach(id, &key);
        }
        Ok(())
    }

    /// etcd's `lessor.Grant`, checks in etcd's order.
    pub(super) fn apply_lease_grant(
        &mut self,
        id: i64,
        ttl: i64,
        batch: &mut WriteBatch,
    ) -> Applied {
        if id == 0 {
            return self.rejected(MvccError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return self.rejected(MvccError::LeaseTtlTooLarge);
        }
        if self.lessor.contains(id) {
            return self.rejected(MvccError::LeaseExists);
        }
        self.lessor.grant(id, ttl);
        batch.put(Space::Lease, lease_key(id), StoredI64::encode(ttl));
        Applied {
            revision: self.current_rev,
            body: AppliedBody::LeaseGranted { id, ttl },
            events: Vec::new(),
        }
    }

    /// etcd's `lessor.Revoke`: deletes the attached keys, in key order, as one
    /// write transaction (one revision, one DELETE event per key), then the lease.
    pub(super) fn apply_lease_revoke(
        &mut self,
        id: i64,
        batch: &mut WriteBatch,
        prev_kv_watched: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Applied, MvccError> {
        let Some(lease) = self.lessor.leases.get(&id) else {
            return Ok(self.rejected(MvccError::LeaseNotFound));
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let mut tw = TxnWrite::begin(self, batch, prev_kv_watched);
        for key in keys {
            let req = PbDeleteRequest {
                key,
                ..Default::default()
            };
            if let Err(err) = tw.delete_range(&req) {
                tw.abort();
                return Err(err);
            }
        }
        let events = tw.commit();
        self.lessor.leases.remove(&id);
        batch.delete(Space::Lease, lease_key(id));
        Ok(Applied {
            revision: self.current_rev,
            body: AppliedBody::LeaseRevoked,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{AppliedBody, Command, MvccError};
    use super::{LeaseInfo, MAX_LEASE_TTL};

    fn grant(h: &mut Harness, id: i64) {
        let applied = h.apply(Command::LeaseGrant { id, ttl: 60 });
        assert_eq!(applied.body, AppliedBody::LeaseGranted { id, ttl: 60 });
    }

    fn attached(h: &Harness, id: i64) -> Vec<String> {
        let keys = h.store.lease(id).expect("lease").keys;
        keys.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn grant_refuses_like_etcd_and_does_not_bump_the_revision() {
        let mut h = Harness::new();
        let refused = |h: &mut Harness, id, ttl| {
            rejection(&h.apply(Command::LeaseGrant { id, ttl })).cloned()
        };
        assert_eq!(refused(&mut h, 0, 10), Some(MvccError::LeaseNotFound));
        assert_eq!(
            refused(&mut h, 1, MAX_LEASE_TTL + 1),
            Some(MvccError::LeaseTtlTooLarge)
        );
        assert_eq!(refused(&mut h, 1, MAX_LEASE_TTL), None);
        assert_eq!(refused(&mut h, 1, 10), Some(MvccError::LeaseExists));
        assert_eq!(
            h.store.lease(1),
            Some(LeaseInfo {
                id: 1,
                ttl: MAX_LEASE_TTL,
                keys: vec![]
            })
        );
        assert_eq!(h.store.revision(), 1);
    }

    #[test]
    fn keys_attach_to_their_latest_lease_only() {
        let mut h = Harness::new();
        grant(&mut h, 1);
        grant(&mut h, 2);
        h.txn(txn(
            vec![],
            vec![put_lease_op("a", "", 1), put_lease_op("b", "", 1)],
            vec![],
        ));
        assert_eq!(attached(&h, 1), ["a", "b"]);
        h.txn(txn(vec![], vec![put_lease_op("a", "", 2)], vec![]));
        assert_eq!(
            (attached(&h, 1), attached(&h, 2)),
            (vec!["b".into()], vec!["a".into()])
        );
        h.put("a", "no lease");
        assert!(attached(&h, 2).is_empty(), "a put without lease detaches");
        h.delete("b", "");
        assert!(attached(&h, 1).is_empty(), "a delete detaches");
        let applied = h.txn(txn(vec![], vec![put_lease_op("c", "", 3)], vec![]));
        assert_eq!(rejection(&applied), Some(&MvccError::LeaseNotFound));
    }

    #[test]
    fn revoke_deletes_every_attached_key_in_one_revision() {
        let mut h = Harness::new();
        grant(&mut h, 1);
        grant(&mut h, 2);
        h.txn(txn(
            vec![],
            vec![put_lease_op("z", "1", 1), put_lease_op("m", "2", 1)],
            vec![],
        )); // 2
        h.txn(txn(vec![], vec![put_lease_op("other", "3", 2)], vec![])); // 3
        let applied = h.apply_watched(Command::LeaseRevoke { id: 1 }, &|_| true);
        assert_eq!(applied.body, AppliedBody::LeaseRevoked);
        assert_eq!(applied.revision, 4);
        assert_eq!(
            event_summary(&applied.events),
            [(1, "m".into(), 4), (1, "z".into(), 4)]
        );
        assert_eq!(value(applied.events[1].prev_kv.as_ref().unwrap()), "1");
        assert!(h.store.lease(1).is_none());
        assert_eq!(keys(&h.all_at(0).unwrap().kvs), ["other"]);
        assert_eq!(
            h.reopen().leases().len(),
            1,
            "the lease is gone from the engine too"
        );

        let applied = h.apply(Command::LeaseRevoke { id: 1 });
        assert_eq!(rejection(&applied), Some(&MvccError::LeaseNotFound));
        grant(&mut h, 3);
        let applied = h.apply(Command::LeaseRevoke { id: 3 });
        assert_eq!(
            applied.revision, 4,
            "revoking a lease without keys does not bump"
        );
    }

    #[test]
    fn attachments_are_rebuilt_on_reopen() {
        let mut h = Harness::new();
        grant(&mut h, 1);
        grant(&mut h, 2);
        h.txn(txn(
            vec![],
            vec![put_lease_op("a", "", 1), put_lease_op("b", "", 1)],
            vec![],
        ));
        h.txn(txn(vec![], vec![put_lease_op("b", "", 2)], vec![]));
        h.txn(txn(vec![], vec![put_lease_op("c", "", 2)], vec![]));
        h.delete("c", "");
        let store = h.reopen();
        assert_eq!(store.leases(), h.store.leases());
        assert_eq!(store.lease(1).unwrap().keys, vec![b"a".to_vec()]);
        assert_eq!(store.lease(2).unwrap().keys, vec![b"b".to_vec()]);
    }
}

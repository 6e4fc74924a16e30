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
    ) -> Result<Applied, MvccError> {
        let Some(lease) = self.lessor.leases.get(&id) else {
            return Ok(self.rejected(MvccError::LeaseNotFound));
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let mut tw = TxnWrite::begin(self, batch);
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

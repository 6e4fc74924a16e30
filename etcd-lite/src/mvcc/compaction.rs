//! Compaction (etcd's `kvstore_compaction`): forgetting history older than a
//! revision.
//!
//! Entry point: the `Compact` command through [`Store::apply`]. Unlike etcd,
//! which deletes from its backend in the background, the whole compaction goes
//! into the command's batch, so the engine never holds a half-compacted state.
//!
//! [`Store::apply`]: super::Store::apply

use super::store::{Store, StoredI64, COMPACT_REV_KEY};
use super::{Applied, AppliedBody, MvccError};
use crate::storage::{Space, WriteBatch};

impl Store {
    /// Compacts at `rev`: every revision `<= rev` is dropped from the index and
    /// the engine except, per key, the latest one `<= rev` when it is a live
    /// value. Reads at `rev` or later are unchanged; reads before it fail with
    /// [`MvccError::Compacted`].
    ///
    /// Refused (as etcd, in this order) with `Compacted` when `rev` is not
    /// above the last compaction, `FutureRevision` when above the current one.
    pub(super) fn apply_compact(&mut self, rev: i64, batch: &mut WriteBatch) -> Applied {
        if rev <= self.compact_rev {
            return self.rejected(MvccError::Compacted);
        }
        if rev > self.current_rev {
            return self.rejected(MvccError::FutureRevision);
        }
        for (dropped, tombstone) in self.index.compact(rev) {
            batch.delete(Space::Kv, dropped.to_key(tombstone));
        }
        self.compact_rev = rev;
        batch.put(Space::Meta, COMPACT_REV_KEY, StoredI64::encode(rev));
        Applied {
            revision: self.current_rev,
            body: AppliedBody::Compacted,
            events: Vec::new(),
        }
    }
}

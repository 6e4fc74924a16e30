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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{AppliedBody, Command, MvccError};

    /// a: put 2, put 3, put 5; b: put 4, delete 6; c: put 7.
    fn history() -> Harness {
        let mut h = Harness::new();
        h.put("a", "a2");
        h.put("a", "a3");
        h.put("b", "b4");
        h.put("a", "a5");
        h.delete("b", "");
        h.put("c", "c7");
        h
    }

    #[test]
    fn hash_kv_is_stable_per_revision_and_shared_by_stores_with_one_history() {
        let mut h = history();
        let at7 = h.store.hash_kv(7).expect("hash at 7");
        assert_eq!(at7.hash_revision, 7);
        assert_eq!(h.store.hash_kv(0).expect("hash now"), at7, "0 is now");
        assert_ne!(h.store.hash_kv(6).expect("hash at 6").hash, at7.hash);

        h.put("d", "d8");
        assert_eq!(h.store.hash_kv(7).expect("hash at 7").hash, at7.hash);
        let now = h.store.hash_kv(0).expect("hash now");
        assert_ne!(now.hash, at7.hash);
        assert_eq!((now.revision, now.hash_revision), (8, 8));

        // Another store that applied the same history agrees; one that did not, does not.
        let mut same = history();
        same.put("d", "d8");
        assert_eq!(same.store.hash_kv(0).expect("hash").hash, now.hash);
        let mut other = history();
        other.put("d", "other");
        assert_ne!(other.store.hash_kv(0).expect("hash").hash, now.hash);

        // A compaction changes what is stored before it, and so the hash, alike on both.
        assert_eq!(h.store.hash_kv(0).unwrap().compact_revision, -1);
        h.apply(Command::Compact { revision: 5 });
        same.apply(Command::Compact { revision: 5 });
        let compacted = h.store.hash_kv(0).expect("hash after compaction");
        assert_eq!(compacted.compact_revision, 5);
        assert_eq!(same.store.hash_kv(0).unwrap().hash, compacted.hash);
        assert_eq!(h.store.hash_kv(5), Err(MvccError::Compacted));
        assert_eq!(h.store.hash_kv(4), Err(MvccError::Compacted));
        assert_eq!(h.store.hash_kv(10), Err(MvccError::FutureRevision));
        assert!(h.store.hash_kv(6).is_ok());
    }

    #[test]
    fn compact_refuses_future_and_already_compacted_revisions() {
        let mut h = history();
        let compact = |h: &mut Harness, revision| h.apply(Command::Compact { revision });
        assert_eq!(
            rejection(&compact(&mut h, 8)),
            Some(&MvccError::FutureRevision)
        );
        let applied = compact(&mut h, 4);
        assert_eq!(
            (applied.body, applied.revision),
            (AppliedBody::Compacted, 7)
        );
        assert_eq!(h.store.compact_revision(), 4);
        assert_eq!(rejection(&compact(&mut h, 4)), Some(&MvccError::Compacted));
        assert_eq!(rejection(&compact(&mut h, 3)), Some(&MvccError::Compacted));
        assert_eq!(
            h.store.revision(),
            7,
            "compaction does not bump the revision"
        );
    }

    #[test]
    fn reads_at_or_after_the_compact_revision_are_unchanged() {
        let mut h = history();
        let before: Vec<_> = (4..=7).map(|rev| h.all_at(rev).unwrap()).collect();
        h.apply(Command::Compact { revision: 4 });
        for (rev, want) in (4..=7).zip(&before) {
            assert_eq!(&h.all_at(rev).unwrap(), want, "range at {rev}");
        }
        assert_eq!(h.all_at(3).unwrap_err(), MvccError::Compacted);
        let kv = h.store.range(&range_req("a", "", 4)).unwrap().kvs.remove(0);
        assert_eq!(
            (value(&kv), kv.version, kv.create_revision),
            ("a3".into(), 2, 2)
        );
        // a2 is gone; a3 (latest <= 4), b4, a5, b's tombstone 6 and c7 stay.
        assert_eq!(h.stored_revisions(), 5);
    }

    #[test]
    fn compaction_drops_keys_whose_tombstone_is_compacted() {
        let mut h = history();
        h.apply(Command::Compact { revision: 6 });
        assert_eq!(h.stored_revisions(), 2, "a5 and c7");
        assert!(h.store.index.key_index(b"b").is_none());
        assert_eq!(keys(&h.all_at(6).unwrap().kvs), ["a"]);
        let store = h.reopen();
        assert_eq!(store.index, h.store.index);
        assert_eq!((store.revision(), store.compact_revision()), (7, 6));
    }

    #[test]
    fn compacting_everything_keeps_the_revision_across_reopen() {
        let mut h = Harness::new();
        h.put("a", "1");
        h.delete("a", "");
        h.apply(Command::Compact { revision: 3 });
        assert_eq!(h.stored_revisions(), 0);
        let store = h.reopen();
        assert_eq!((store.revision(), store.compact_revision()), (3, 3));
        h.store = store;
        assert_eq!(h.put("b", "1").revision, 4);
    }

    #[test]
    fn history_before_the_compact_revision_is_compacted() {
        let mut h = history();
        h.apply(Command::Compact { revision: 5 });
        let all = |start| h.store.history(b"\0", b"\0", start, i64::MAX, true, 0);
        assert_eq!(all(4).unwrap_err(), MvccError::Compacted);
        let events = all(5).unwrap();
        assert_eq!(
            event_summary(&events),
            [(0, "a".into(), 5), (1, "b".into(), 6), (0, "c".into(), 7)]
        );
        assert!(
            events[0].prev_kv.is_none(),
            "the value before 5 is compacted"
        );
        assert_eq!(value(events[1].prev_kv.as_ref().unwrap()), "b4");
    }
}

//! The in-memory key index (etcd's `treeIndex` of `keyIndex`es): for every key,
//! which revisions hold its values, grouped into generations.
//!
//! Entry point: [`TreeIndex`]. Values live in the engine under their revision;
//! the index only answers "which revision of key K was visible at revision R",
//! so every read is an index lookup followed by point reads of the engine.
//!
//! A key's history is a list of [`Generation`]s. A generation starts with the
//! put that creates the key and ends with its tombstone (the delete). The last
//! generation is the open one: empty when the key is currently deleted. For
//! example `put(1);put(2);delete(3);put(4)` gives `{1,2,3(t)} {4}`.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

/// A key range in etcd's `key`/`range_end` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    /// `range_end` empty: just `key`.
    Single(&'a [u8]),
    /// `range_end` is `"\0"`: every key `>= key`.
    From(&'a [u8]),
    /// `[key, range_end)`; empty when `range_end <= key`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::From(key) => k >= key,
            KeyRange::Between(key, end) => k >= key && k < end,
        }
    }
}

/// Where a key stood at some revision: the revision of its visible value, the
/// main revision that created its generation, and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRev {
    pub modified: Revision,
    pub created: i64,
    pub version: i64,
}

/// One life of a key, from the put that created it to its tombstone.
///
/// Invariants: `revs` ascend; every generation but the last is non-empty and
/// ends with its tombstone; `ver` counts every revision ever appended (also
/// those later dropped by compaction), so the version of `revs[i]` is
/// `ver - (revs.len() - 1 - i)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    pub ver: i64,
    pub created: i64,
    pub revs: Vec<Revision>,
}

/// The revisions of one key (etcd's `keyIndex`).
///
/// Invariant: at least one generation; the key is absent from the index
/// exactly when it would be `[{empty}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    /// The latest revision appended; every new one must be greater.
    pub modified: Revision,
    pub generations: Vec<Generation>,
    /// The lease of the key's latest value, 0 when none or deleted. Kept here so
    /// that puts and deletes can detach the old lease without reading the value.
    pub lease: i64,
}

impl KeyIndex {
    fn new() -> Self {
        KeyIndex {
            modified: Revision::default(),
            generations: vec![Generation::default()],
            lease: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// Whether the key has a value at the latest revision.
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }

    fn put(&mut self, rev: Revision, lease: i64) {
        debug_assert!(
            rev > self.modified,
            "put {rev:?} not after {:?}",
            self.modified
        );
        let g = self
            .generations
            .last_mut()
            .expect("a key index has a generation");
        if g.revs.is_empty() {
            g.created = rev.main;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
        self.lease = lease;
    }

    /// The generation that holds the key's value at `rev`, or None when the
    /// key did not exist then (before its creation or after its tombstone).
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && end.main <= rev {
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }

    /// The key's visible revision at `at_rev` (etcd's `keyIndex.get`).
    pub fn get(&self, at_rev: i64) -> Option<KeyRev> {
        let g = self.find_generation(at_rev)?;
        let n = g
            .revs
            .partition_point(|r| r.main <= at_rev)
            .checked_sub(1)?;
        Some(KeyRev {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - 1 - n) as i64,
        })
    }

    /// Drops every revision `<= at_rev` except the latest one of the
    /// generation alive at `at_rev`, and drops that one too when it is a
    /// tombstone (etcd's `keyIndex.compact`). Reports each dropped revision
    /// and whether it was a tombstone.
    fn compact(&mut self, at_rev: i64, removed: &mut Vec<(Revision, bool)>) {
        let last = self.generations.len() - 1;
        // The first generation that is still alive at `at_rev` or created after it.
        let mut gen_idx = 0;
        while gen_idx < last {
            let tomb = self.generations[gen_idx]
                .revs
                .last()
                .expect("closed generation")
                .main;
            if tomb > at_rev {
                break;
            }
            gen_idx += 1;
        }
        for g in &self.generations[..gen_idx] {
            let n = g.revs.len();
            removed.extend(g.revs.iter().enumerate().map(|(i, r)| (*r, i == n - 1)));
        }
        let g = &mut self.generations[gen_idx];
        if !g.revs.is_empty() {
            let keep = g.revs.partition_point(|r| r.main <= at_rev).checked_sub(1);
            if let Some(keep) = keep {
                removed.extend(g.revs.drain(..keep).map(|r| (r, false)));
            }
            // Only the tombstone is left: the generation ended at or before `at_rev`.
            if g.revs.len() == 1 && gen_idx != last {
                removed.push((g.revs[0], true));
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
    }
}

/// What [`TreeIndex::put`] changed, so that a refused transaction can undo it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PutUndo {
    new_key: bool,
    prev_modified: Revision,
    prev_lease: i64,
}

/// Every key's [`KeyIndex`], ordered by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    pub fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    /// The visible revision of `key` at `at_rev`.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyRev> {
        self.keys.get(key)?.get(at_rev)
    }

    /// Every key index whose key is in `range`, ascending.
    pub fn key_indexes<'s>(
        &'s self,
        range: KeyRange<'_>,
    ) -> Box<dyn Iterator<Item = (&'s Vec<u8>, &'s KeyIndex)> + 's> {
        match range {
            KeyRange::Single(key) => Box::new(self.keys.get_key_value(key).into_iter()),
            KeyRange::From(key) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(key), Bound::Unbounded)),
            ),
            KeyRange::Between(key, end) if key < end => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(key), Bound::Excluded(end))),
            ),
            KeyRange::Between(..) => Box::new(std::iter::empty()),
        }
    }

    /// The keys in `range` that have a value at `at_rev`, with that value's
    /// revision, ascending by key (etcd's `treeIndex.Revisions`).
    pub fn revisions<'s>(&'s self, range: KeyRange<'_>, at_rev: i64) -> Vec<(&'s [u8], KeyRev)> {
        self.key_indexes(range)
            .filter_map(|(k, ki)| ki.get(at_rev).map(|r| (k.as_slice(), r)))
            .collect()
    }

    /// Records a put of `key` at `rev`, carrying `lease`.
    pub fn put(&mut self, key: &[u8], rev: Revision, lease: i64) -> PutUndo {
        let (ki, new_key) = match self.keys.get_mut(key) {
            Some(ki) => (ki, false),
            None => (
                self.keys.entry(key.to_vec()).or_insert_with(KeyIndex::new),
                true,
            ),
        };
        let undo = PutUndo {
            new_key,
            prev_modified: ki.modified,
            prev_lease: ki.lease,
        };
        ki.put(rev, lease);
        undo
    }

    /// Records the deletion of `key` at `rev`: appends the tombstone and opens
    /// an empty generation. None (and no change) when the key is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Option<PutUndo> {
        let ki = self.keys.get_mut(key).filter(|ki| ki.is_live())?;
        let undo = PutUndo {
            new_key: false,
            prev_modified: ki.modified,
            prev_lease: ki.lease,
        };
        ki.put(rev, 0);
        ki.generations.push(Generation::default());
        Some(undo)
    }

    /// Reverts the latest [`TreeIndex::put`] of `key`.
    pub fn undo_put(&mut self, key: &[u8], undo: PutUndo) {
        if undo.new_key {
            self.keys.remove(key);
            return;
        }
        let ki = self
            .keys
            .get_mut(key)
            .expect("undo of a put on an indexed key");
        let g = ki
            .generations
            .last_mut()
            .expect("a key index has a generation");
        g.revs.pop();
        g.ver -= 1;
        ki.modified = undo.prev_modified;
        ki.lease = undo.prev_lease;
    }

    /// Reverts the latest [`TreeIndex::tombstone`] of `key`.
    pub fn undo_tombstone(&mut self, key: &[u8], undo: PutUndo) {
        let ki = self
            .keys
            .get_mut(key)
            .expect("undo of a tombstone on an indexed key");
        ki.generations.pop();
        self.undo_put(key, undo);
    }

    /// Rebuilds a key's entry from a stored live value, in revision order
    /// (etcd's `restoreIntoIndex`): a key seen for the first time starts from
    /// the value's own create revision and version, since compaction may have
    /// dropped its earlier revisions.
    pub fn restore_put(
        &mut self,
        key: &[u8],
        rev: Revision,
        created: i64,
        version: i64,
        lease: i64,
    ) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev, lease),
            None => {
                let g = Generation {
                    ver: version,
                    created,
                    revs: vec![rev],
                };
                self.keys.insert(
                    key.to_vec(),
                    KeyIndex {
                        modified: rev,
                        generations: vec![g],
                        lease,
                    },
                );
            }
        }
    }

    /// Rebuilds a stored tombstone; one of a key never seen live is skipped, as in etcd.
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        let _ = self.tombstone(key, rev);
    }

    /// Compacts every key at `at_rev`, removing keys left with no revision;
    /// returns the dropped revisions (with their tombstone flag) so that the
    /// caller deletes them from the engine.
    pub fn compact(&mut self, at_rev: i64) -> Vec<(Revision, bool)> {
        let mut removed = Vec::new();
        self.keys.retain(|_, ki| {
            ki.compact(at_rev, &mut removed);
            !ki.is_empty()
        });
        removed
    }

    /// Keys and their latest lease, for the keys whose latest value has one.
    pub fn leased_keys(&self) -> impl Iterator<Item = (&Vec<u8>, i64)> {
        self.keys
            .iter()
            .filter(|(_, ki)| ki.is_live() && ki.lease != 0)
            .map(|(k, ki)| (k, ki.lease))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put(1);put(2);tombstone(3);put(4);tombstone(5) on "foo", etcd's example.
    fn etcd_example() -> TreeIndex {
        let mut ti = TreeIndex::default();
        ti.put(b"foo", rev(1), 0);
        ti.put(b"foo", rev(2), 0);
        ti.tombstone(b"foo", rev(3)).unwrap();
        ti.put(b"foo", rev(4), 0);
        ti.tombstone(b"foo", rev(5)).unwrap();
        ti
    }

    #[test]
    fn get_sees_the_generation_alive_at_the_revision() {
        let ti = etcd_example();
        let at = |r| {
            ti.get(b"foo", r)
                .map(|kr| (kr.modified.main, kr.created, kr.version))
        };
        assert_eq!(at(0), None);
        assert_eq!(at(1), Some((1, 1, 1)));
        assert_eq!(at(2), Some((2, 1, 2)));
        assert_eq!(at(3), None, "deleted at 3");
        assert_eq!(at(4), Some((4, 4, 1)), "re-created: version restarts");
        assert_eq!(at(5), None);
        assert_eq!(at(100), None);
    }

    #[test]
    fn tombstone_of_a_deleted_key_changes_nothing() {
        let mut ti = etcd_example();
        let before = ti.clone();
        assert!(ti.tombstone(b"foo", rev(6)).is_none());
        assert!(ti.tombstone(b"bar", rev(6)).is_none());
        assert_eq!(ti, before);
    }

    #[test]
    fn compact_follows_etcd_key_index_example() {
        let mut ti = etcd_example();
        let removed = ti.compact(2);
        assert_eq!(removed, vec![(rev(1), false)]);
        let gens = &ti.key_index(b"foo").unwrap().generations;
        assert_eq!(gens[0].revs, vec![rev(2), rev(3)]);
        assert_eq!(gens[0].ver, 3, "versions survive compaction");

        let removed = ti.compact(4);
        assert_eq!(removed, vec![(rev(2), false), (rev(3), true)]);
        assert_eq!(
            ti.key_index(b"foo").unwrap().generations[0].revs,
            vec![rev(4), rev(5)]
        );

        let removed = ti.compact(5);
        assert_eq!(removed, vec![(rev(4), false), (rev(5), true)]);
        assert_eq!(
            ti.len(),
            0,
            "a key whose last tombstone is compacted leaves the index"
        );
    }

    #[test]
    fn compact_keeps_latest_value_at_or_below_compact_revision() {
        let mut ti = TreeIndex::default();
        for main in 1..=5 {
            ti.put(b"k", rev(main), 0);
        }
        assert_eq!(ti.compact(3), vec![(rev(1), false), (rev(2), false)]);
        assert_eq!(ti.get(b"k", 3).unwrap().version, 3);
        assert_eq!(ti.get(b"k", 5).unwrap().version, 5);
        assert_eq!(ti.compact(10), vec![(rev(3), false), (rev(4), false)]);
        assert_eq!(ti.get(b"k", 10).unwrap().modified, rev(5));
    }

    #[test]
    fn undo_restores_the_index_exactly() {
        let mut ti = etcd_example();
        ti.put(b"foo", rev(6), 7);
        let before = ti.clone();
        let u1 = ti.put(b"new", Revision::new(8, 0), 0);
        let u2 = ti.tombstone(b"foo", Revision::new(8, 1)).unwrap();
        let u3 = ti.put(b"foo", Revision::new(8, 2), 0);
        ti.undo_put(b"foo", u3);
        ti.undo_tombstone(b"foo", u2);
        ti.undo_put(b"new", u1);
        assert_eq!(ti, before);
    }

    #[test]
    fn key_range_follows_etcd_range_end_rules() {
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        assert!(KeyRange::new(b"a", b"\0").contains(b"zzz"));
        assert!(!KeyRange::new(b"b", b"\0").contains(b"a"));
        assert!(KeyRange::new(b"a", b"b").contains(b"az"));
        assert!(!KeyRange::new(b"a", b"b").contains(b"b"));
        let mut ti = TreeIndex::default();
        ti.put(b"a", rev(1), 0);
        ti.put(b"b", rev(2), 0);
        assert_eq!(ti.revisions(KeyRange::new(b"b", b"a"), 2), vec![]);
        assert_eq!(ti.revisions(KeyRange::new(b"\0", b"\0"), 2).len(), 2);
    }
}

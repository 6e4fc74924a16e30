//! Revisions and their on-disk form: the key of every entry in [`Space::Kv`].
//!
//! Entry point: [`Revision`]. As in etcd, a revision is a pair `(main, sub)`:
//! `main` is the store revision of the write transaction, `sub` the position of
//! the change inside it. Stored keys are `main` and `sub` as 8-byte big-endian
//! integers (so byte order is revision order), followed by [`TOMBSTONE_MARK`]
//! when the revision deletes its key.
//!
//! [`Space::Kv`]: crate::storage::Space::Kv

use super::MvccError;

/// Length of a stored revision key without the tombstone mark.
pub(crate) const REV_BYTES_LEN: usize = 16;

/// Appended to a revision key when the revision is a tombstone (etcd's `'t'`).
pub(crate) const TOMBSTONE_MARK: u8 = b't';

/// A position in the store's history; ordered by `main`, then `sub`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The stored key of a live (non-tombstone) revision.
    pub fn to_bytes(self) -> [u8; REV_BYTES_LEN] {
        let mut out = [0u8; REV_BYTES_LEN];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        out
    }

    /// The stored key of this revision, with the tombstone mark when `tombstone`.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(REV_BYTES_LEN + 1);
        key.extend_from_slice(&self.to_bytes());
        if tombstone {
            key.push(TOMBSTONE_MARK);
        }
        key
    }

    /// The smallest stored key of main revision `main`: scans from here see
    /// every revision `>= (main, 0)`.
    pub fn start_key(main: i64) -> [u8; REV_BYTES_LEN] {
        Revision::new(main.max(0), 0).to_bytes()
    }

    /// Parses a stored key into the revision and whether it is a tombstone.
    pub fn from_key(key: &[u8]) -> Result<(Revision, bool), MvccError> {
        let tombstone = match key.len() {
            REV_BYTES_LEN => false,
            n if n == REV_BYTES_LEN + 1 && key[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => {
                return Err(MvccError::Corrupt {
                    what: "revision key",
                    detail: format!("unexpected key {key:02x?}"),
                })
            }
        };
        let main = u64::from_be_bytes(key[..8].try_into().expect("8 bytes")) as i64;
        let sub = u64::from_be_bytes(key[8..16].try_into().expect("8 bytes")) as i64;
        Ok((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_like_revisions() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 3),
            Revision::new(i64::MAX, 0),
        ];
        for pair in revs.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_key(false) < pair[1].to_key(false));
            assert!(pair[0].to_key(true) < pair[1].to_key(false));
        }
    }

    #[test]
    fn revision_key_round_trips_with_tombstone_mark() {
        let rev = Revision::new(42, 7);
        assert_eq!(
            Revision::from_key(&rev.to_key(false)).unwrap(),
            (rev, false)
        );
        assert_eq!(Revision::from_key(&rev.to_key(true)).unwrap(), (rev, true));
        assert!(Revision::from_key(b"short").is_err());
        let mut bad = rev.to_key(false);
        bad.push(b'x');
        assert!(Revision::from_key(&bad).is_err());
    }
}

//! The lessor: when leases expire. Lease *existence* is replicated state (in the
//! MVCC store); *expiry times* are the leader's alone, as in etcd.
//!
//! Entry point: [`Lessor`]. The leader's tick loop calls [`Lessor::tick`] and
//! proposes a `LeaseRevoke` for each lease it returns; keep-alives reach the
//! leader (forwarded if need be) and call [`Lessor::renew`].
//!
//! # To ensure correctness
//! - A new leader does not know the old leader's clocks: on promotion every lease
//!   gets its full TTL again (etcd's `Promote`), so no lease expires early because
//!   of a leader change; it may live up to one TTL longer.
//! - Revocation goes through the Raft log, so every member deletes the lease's
//!   keys at the same revision.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::mvcc::LeaseInfo;

#[derive(Default)]
struct State {
    expiry: HashMap<i64, Instant>,
    /// The term this member last led in; a different term means a fresh promotion.
    leading_term: Option<u64>,
    /// Revocations proposed and not yet applied.
    revoking: HashSet<i64>,
}

#[derive(Default)]
pub struct Lessor {
    state: Mutex<State>,
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

impl Lessor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Syncs with the store's leases; on the leader returns the expired leases to revoke.
    pub fn tick(&self, leases: &[LeaseInfo], leader_term: Option<u64>, now: Instant) -> Vec<i64> {
        let mut s = self.state.lock().expect("lessor lock");
        let Some(term) = leader_term else {
            s.leading_term = None;
            s.expiry.clear();
            s.revoking.clear();
            return Vec::new();
        };
        if s.leading_term != Some(term) {
            s.leading_term = Some(term);
            s.expiry.clear();
            s.revoking.clear();
        }
        let live: HashSet<i64> = leases.iter().map(|l| l.id).collect();
        s.expiry.retain(|id, _| live.contains(id));
        s.revoking.retain(|id| live.contains(id));
        let mut expired = Vec::new();
        for lease in leases {
            let at = *s
                .expiry
                .entry(lease.id)
                .or_insert_with(|| now + ttl_duration(lease.ttl));
            if at <= now && !s.revoking.contains(&lease.id) {
                expired.push(lease.id);
            }
        }
        s.revoking.extend(expired.iter().copied());
        expired
    }

    /// A revocation failed (e.g. lost leadership); try again at the next tick.
    pub fn revoke_failed(&self, id: i64) {
        self.state.lock().expect("lessor lock").revoking.remove(&id);
    }

    /// Renews `lease` (None: it does not exist); returns the TTL granted, 0 if not found.
    pub fn renew(&self, lease: Option<&LeaseInfo>, now: Instant) -> i64 {
        let Some(lease) = lease else { return 0 };
        let mut s = self.state.lock().expect("lessor lock");
        if s.revoking.contains(&lease.id) {
            // Already expired and being revoked: too late, as in etcd.
            return 0;
        }
        s.expiry.insert(lease.id, now + ttl_duration(lease.ttl));
        lease.ttl
    }

    /// Whole seconds `lease` has left (rounded up), -1 if it does not exist.
    pub fn remaining(&self, lease: Option<&LeaseInfo>, now: Instant) -> i64 {
        let Some(lease) = lease else { return -1 };
        let s = self.state.lock().expect("lessor lock");
        match s.expiry.get(&lease.id) {
            Some(at) => {
                let left = at.saturating_duration_since(now);
                left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
            }
            None => lease.ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: i64, ttl: i64) -> LeaseInfo {
        LeaseInfo {
            id,
            ttl,
            keys: vec![],
        }
    }

    #[test]
    fn leases_expire_after_their_ttl_on_the_leader_only() {
        let lessor = Lessor::new();
        let leases = [lease(1, 5), lease(2, 10)];
        let t0 = Instant::now();
        assert!(lessor.tick(&leases, Some(1), t0).is_empty());
        assert!(lessor
            .tick(&leases, Some(1), t0 + Duration::from_secs(4))
            .is_empty());
        assert_eq!(
            lessor.tick(&leases, Some(1), t0 + Duration::from_secs(5)),
            vec![1]
        );
        // Proposed once, not again while the revocation is in flight.
        assert!(lessor
            .tick(&leases, Some(1), t0 + Duration::from_secs(6))
            .is_empty());
        // A follower never revokes.
        assert!(lessor
            .tick(&leases, None, t0 + Duration::from_secs(60))
            .is_empty());
    }

    #[test]
    fn keepalive_extends_and_promotion_resets() {
        let lessor = Lessor::new();
        let leases = [lease(7, 5)];
        let t0 = Instant::now();
        lessor.tick(&leases, Some(1), t0);
        assert_eq!(
            lessor.renew(Some(&leases[0]), t0 + Duration::from_secs(4)),
            5
        );
        assert!(lessor
            .tick(&leases, Some(1), t0 + Duration::from_secs(8))
            .is_empty());
        assert_eq!(
            lessor.remaining(Some(&leases[0]), t0 + Duration::from_secs(8)),
            1
        );
        // A new term (this member was re-elected) gives every lease its full TTL again.
        assert!(lessor
            .tick(&leases, Some(2), t0 + Duration::from_secs(20))
            .is_empty());
        assert_eq!(
            lessor.remaining(Some(&leases[0]), t0 + Duration::from_secs(20)),
            5
        );
        assert_eq!(lessor.renew(None, t0), 0);
        assert_eq!(lessor.remaining(None, t0), -1);
    }
}

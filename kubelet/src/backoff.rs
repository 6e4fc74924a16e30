//! CrashLoopBackOff: how long a container that died waits before the
//! kubelet restarts it. Upstream's rule: the first restart is immediate,
//! then 10 s, doubling up to 5 min; an entry untouched for twice the maximum
//! starts over. Entry point: [`CrashLoopBackOff::remaining`].

use std::collections::HashMap;
use std::time::Duration;

/// Per-container restart delays, keyed by `<pod uid>/<container name>`.
#[derive(Debug)]
pub struct CrashLoopBackOff {
    initial: Duration,
    max: Duration,
    /// Current delay and when it was last raised (ns since the epoch).
    entries: HashMap<String, (Duration, i64)>,
}

impl CrashLoopBackOff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        CrashLoopBackOff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// How much longer a container that finished at `finished_at` must
    /// wait before a restart, if at all.
    pub fn remaining(&self, key: &str, finished_at_ns: i64, now_ns: i64) -> Option<Duration> {
        let (delay, _) = self.entries.get(key)?;
        let elapsed = Duration::from_nanos(now_ns.saturating_sub(finished_at_ns).max(0) as u64);
        (elapsed < *delay).then(|| *delay - elapsed)
    }

    /// The current delay for `key` (zero before the first restart).
    pub fn delay(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.0)
    }

    /// Records a restart at `now`: the next one waits longer.
    pub fn restarted(&mut self, key: &str, now_ns: i64) {
        let expired = |last: i64| {
            Duration::from_nanos(now_ns.saturating_sub(last).max(0) as u64) > self.max * 2
        };
        let next = match self.entries.get(key) {
            Some((d, last)) if !expired(*last) => (*d * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(key.to_string(), (next, now_ns));
    }

    /// Forgets the pods not in `live_uids` (their keys start with the uid).
    pub fn retain_pods(&mut self, live_uids: &std::collections::HashSet<String>) {
        self.entries
            .retain(|k, _| k.split('/').next().is_some_and(|u| live_uids.contains(u)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let mut b = CrashLoopBackOff::new(Duration::from_secs(10), Duration::from_secs(300));
        let k = "uid/app";
        assert_eq!(b.remaining(k, 0, 0), None, "first restart is immediate");
        let mut seen = vec![];
        let mut now = 0;
        for _ in 0..7 {
            b.restarted(k, now);
            seen.push(b.delay(k).as_secs());
            now += S;
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn container_waits_out_its_delay_from_when_it_finished() {
        let mut b = CrashLoopBackOff::new(Duration::from_secs(10), Duration::from_secs(300));
        b.restarted("u/c", 0);
        assert_eq!(
            b.remaining("u/c", 5 * S, 8 * S),
            Some(Duration::from_secs(7))
        );
        assert_eq!(b.remaining("u/c", 5 * S, 15 * S), None);
    }

    #[test]
    fn backoff_starts_over_after_a_long_quiet_time() {
        let mut b = CrashLoopBackOff::new(Duration::from_secs(10), Duration::from_secs(300));
        b.restarted("u/c", 0);
        b.restarted("u/c", S);
        assert_eq!(b.delay("u/c"), Duration::from_secs(20));
        b.restarted("u/c", 1000 * S);
        assert_eq!(b.delay("u/c"), Duration::from_secs(10));
    }
}

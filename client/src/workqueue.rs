//! [`WorkQueue`]: client-go's rate-limited work queue for controllers.
//! Entry points: [`WorkQueue::add`], [`WorkQueue::get`], [`WorkQueue::done`],
//! [`WorkQueue::add_rate_limited`], [`WorkQueue::forget`].
//!
//! To ensure correctness:
//! - a key added while it waits in the queue is queued once (de-duplication);
//! - a key is handed to at most one worker at a time: a key added while it is
//!   being processed is queued again only when that worker calls `done`;
//! - `add_rate_limited` waits the larger of the key's exponential backoff
//!   (5 ms doubling per failure, capped at 1000 s) and the overall token
//!   bucket (10 per second, bursts of 100), as client-go's
//!   `DefaultControllerRateLimiter`; `forget` resets the key's backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The first retry's delay for a failing key.
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest delay for a failing key.
pub const MAX_DELAY: Duration = Duration::from_secs(1000);
/// The overall rate limit: tokens per second and bucket size.
const BUCKET_QPS: f64 = 10.0;
const BUCKET_BURST: f64 = 100.0;

struct State<T> {
    queue: VecDeque<T>,
    /// Keys that need processing (queued, or re-added while processing).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    bucket_tokens: f64,
    bucket_refilled: Instant,
    shutting_down: bool,
}

/// A de-duplicating, rate-limited queue of keys; clones share the queue.
pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    notify: Arc<Notify>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new() -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                bucket_tokens: BUCKET_BURST,
                bucket_refilled: Instant::now(),
                shutting_down: false,
            })),
            notify: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let mut s = self.lock();
        if s.shutting_down || !s.dirty.insert(item.clone()) {
            return;
        }
        if s.processing.contains(&item) {
            // Re-queued by `done`.
            return;
        }
        s.queue.push_back(item);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `item` after `delay`.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        // The deadline counts from now, not from when the task first runs.
        let at = Instant::now() + delay;
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            queue.add(item);
        });
    }

    /// Queues `item` after its backoff; each call counts as one more failure.
    pub fn add_rate_limited(&self, item: T) {
        let delay = self.when(&item);
        self.add_after(item, delay);
    }

    /// The delay `add_rate_limited` uses now, counting one more failure.
    fn when(&self, item: &T) -> Duration {
        let mut s = self.lock();
        let failures = s.failures.entry(item.clone()).or_insert(0);
        let exp = *failures;
        *failures += 1;
        let per_item = BASE_DELAY
            .checked_mul(1u32.checked_shl(exp).unwrap_or(u32::MAX))
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY);
        // Token bucket: refill, then reserve one token (possibly in debt).
        let now = Instant::now();
        let elapsed = now.duration_since(s.bucket_refilled).as_secs_f64();
        s.bucket_refilled = now;
        s.bucket_tokens = (s.bucket_tokens + elapsed * BUCKET_QPS).min(BUCKET_BURST) - 1.0;
        let overall = if s.bucket_tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.bucket_tokens / BUCKET_QPS)
        };
        per_item.max(overall)
    }

    /// Resets `item`'s backoff (call after it was processed successfully).
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How many times `item` failed since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// Waits for the next key; `None` once the queue is shut down and empty.
    /// The caller must call [`done`](Self::done) with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on to another worker.
                        self.notify.notify_one();
                    }
                    return Some(item);
                }
                if s.shutting_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `item` processed; re-queues it if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting keys; `get` drains what is queued, then returns `None`.
    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_while_queued_is_processed_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_is_requeued_after_done_not_before() {
        let q = WorkQueue::new();
        q.add("a");
        let got = q.get().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "no second worker may get a key in flight");
        q.done(&got);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_from_5ms_to_1000s() {
        let q = WorkQueue::<&str>::new();
        let delays: Vec<Duration> = (0..4).map(|_| q.when(&"a")).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40].map(Duration::from_millis).to_vec(),
            "doubling per failure"
        );
        for _ in 0..40 {
            q.when(&"b");
        }
        assert_eq!(q.when(&"b"), MAX_DELAY);
        assert_eq!(q.num_requeues(&"a"), 4);
        q.forget(&"a");
        assert_eq!(q.when(&"a"), BASE_DELAY, "forget resets the backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_keys_arrive_after_their_delay() {
        let q = WorkQueue::new();
        q.add_rate_limited("a"); // 5 ms
        q.add_rate_limited("a"); // 10 ms, but "a" is queued once
        tokio::time::advance(Duration::from_millis(6)).await;
        let got = tokio::time::timeout(Duration::from_millis(1), q.get()).await;
        assert_eq!(got.ok().flatten(), Some("a"));
        q.done(&"a");
        tokio::time::advance(Duration::from_millis(5)).await;
        tokio::task::yield_now().await;
        assert_eq!(q.len(), 1, "the second add arrives at 10 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn the_overall_bucket_limits_bursts_beyond_100() {
        let q = WorkQueue::<u32>::new();
        let delays: Vec<Duration> = (0..101).map(|i| q.when(&i)).collect();
        assert!(delays[..100].iter().all(|d| *d == BASE_DELAY));
        assert_eq!(delays[100], Duration::from_millis(100), "one token at 10/s");
    }

    #[tokio::test]
    async fn shut_down_drains_then_ends_waiting_workers() {
        let q = WorkQueue::new();
        q.add(1);
        let worker = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(i) = q.get().await {
                    seen.push(i);
                    q.done(&i);
                }
                seen
            })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        q.add(2);
        let seen = tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, [1]);
    }
}

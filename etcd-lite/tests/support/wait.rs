//! Bounded polling: the only way tests wait for the system to reach a state.

use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, and returns that value.
///
/// Panics with `what` once `timeout` has passed, so a test that waits for
/// something that never happens fails with a message instead of hanging.
/// The poll interval starts small and grows, capped at 250 ms.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            panic!("timed out after {elapsed:?} waiting for {what}");
        }
        std::thread::sleep(interval.min(timeout - elapsed));
        interval = (interval * 2).min(Duration::from_millis(250));
    }
}

//! Per-object retry delays after failed reconciles: client-go's
//! `ItemExponentialFailureRateLimiter` (base × 2^failures, capped), which every upstream
//! controller's work queue applies to a key whose sync failed, and forgets once it succeeds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// client-go's default controller limiter's per-item part: 5 ms doubling to 1000 s.
    pub fn controller_default() -> Backoff {
        Backoff::new(Duration::from_millis(5), Duration::from_secs(1000))
    }

    /// How long to wait before retrying `key`, which just failed once more.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = self
            .base
            .checked_mul(2u32.saturating_pow(*n))
            .map_or(self.cap, |d| d.min(self.cap));
        *n = n.saturating_add(1);
        delay
    }

    /// `key` succeeded: its next failure starts from the base delay again.
    pub fn forget(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_failure_up_to_the_cap_and_reset_on_success() {
        let b = Backoff::new(Duration::from_millis(5), Duration::from_secs(60));
        let ms = |d: Duration| d.as_millis();
        let delays: Vec<u128> = (0..5).map(|_| ms(b.next("a"))).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80]);
        // Keys are independent.
        assert_eq!(ms(b.next("b")), 5);
        for _ in 0..40 {
            b.next("a");
        }
        assert_eq!(b.next("a"), Duration::from_secs(60));
        b.forget("a");
        assert_eq!(ms(b.next("a")), 5);
    }
}

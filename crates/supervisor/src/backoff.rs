//! The delay between attempts of something that keeps failing: exponential, capped, and
//! started over once an attempt has run long enough to count as healthy. The parameters
//! are client-go's reflector ones (kube-runtime's `DefaultBackoff`): 800 ms doubling to
//! 30 s, reset after 120 s. Unlike those, no jitter: the loops that use this are one per
//! process (a restarted component, an in-process store watch), so there is no herd of
//! clients to spread out; the agents' API watchers keep kube-runtime's jittered backoff.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(
            Duration::from_millis(800),
            Duration::from_secs(30),
            Duration::from_secs(120),
        )
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            reset_after,
            next: initial,
        }
    }

    /// The wait before the next attempt, given how long the attempt that just failed ran:
    /// one that ran for `reset_after` or more was healthy, so the waits start over.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.reset_after {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_healthy_run() {
        // (how long the failed attempt ran, expected wait)
        let cases: &[(u64, u64)] = &[
            (0, 800),
            (10, 1_600),
            (10, 3_200),
            (10, 6_400),
            (10, 12_800),
            (10, 25_600),
            (10, 30_000),
            (10, 30_000),
            (119_999, 30_000),
            (120_000, 800),
            (10, 1_600),
        ];
        let mut b = Backoff::default();
        for (i, (ran, want)) in cases.iter().enumerate() {
            assert_eq!(b.next_delay(MS(*ran)), MS(*want), "attempt {i}");
        }
    }
}

//! Bounded logging of a connection that keeps failing (the API server, the store): a loop
//! retrying with backoff would otherwise write a line per attempt for as long as the other
//! side is down. One [`Outage`] per connection a loop holds:
//!
//! ```text
//!  ok ─ ok ─ ✗ ──── ✗ ─ ✗ ─ ✗ ── … ── ✗ ─────── … ── ✓ ─ ok ─ ok
//!            │                  │                  │
//!            "X failed"         "X still failing"  "X recovered"  
//!            (first failure)    (at most one line  (one line, with the
//!                                per REPEAT_EVERY)  count and duration)
//! ```
//!
//! The decisions ([`Outage::on_failure`], [`Outage::on_success`]) are pure functions of
//! the time given; [`Outage::failed`] and [`Outage::succeeded`] add the clock and the
//! `tracing` line.

use std::fmt::Display;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// At most one "still failing" line per this long while a connection stays down.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// A line to write about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The first failure after it worked (or since the start).
    Failed,
    /// Still down: `failures` attempts have failed over `down_for`.
    StillFailing { failures: u64, down_for: Duration },
    /// Back after `failures` failed attempts over `down_for`.
    Reconnected { failures: u64, down_for: Duration },
}

#[derive(Debug, Clone)]
struct Down {
    since: Instant,
    failures: u64,
    last_line: Instant,
}

/// The state of one connection, as far as logging goes.
#[derive(Debug, Clone)]
pub struct Outage {
    what: &'static str,
    down: Option<Down>,
}

impl Outage {
    /// `what` names the connection in the lines, e.g. "pod watch", "node lease".
    pub fn new(what: &'static str) -> Outage {
        Outage { what, down: None }
    }

    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }

    /// An attempt failed at `now`: the line to write, if any.
    pub fn on_failure(&mut self, now: Instant) -> Option<Line> {
        let Some(down) = &mut self.down else {
            self.down = Some(Down {
                since: now,
                failures: 1,
                last_line: now,
            });
            return Some(Line::Failed);
        };
        down.failures += 1;
        if now.duration_since(down.last_line) < REPEAT_EVERY {
            return None;
        }
        down.last_line = now;
        Some(Line::StillFailing {
            failures: down.failures,
            down_for: now.duration_since(down.since),
        })
    }

    /// An attempt worked at `now`: the line to write, if it had been down.
    pub fn on_success(&mut self, now: Instant) -> Option<Line> {
        let down = self.down.take()?;
        Some(Line::Reconnected {
            failures: down.failures,
            down_for: now.duration_since(down.since),
        })
    }

    /// Records a failure and logs it if [`Outage::on_failure`] says so.
    pub fn failed(&mut self, error: &dyn Display) {
        let what = self.what;
        match self.on_failure(Instant::now()) {
            Some(Line::Failed) => {
                warn!(%error, "{what} failed; retrying (repeats are logged at most once a minute)")
            }
            Some(Line::StillFailing { failures, down_for }) => warn!(
                %error,
                failures,
                down_for_s = down_for.as_secs(),
                "{what} still failing"
            ),
            _ => {}
        }
    }

    /// Records a success and logs the recovery after an outage.
    pub fn succeeded(&mut self) {
        let what = self.what;
        if let Some(Line::Reconnected { failures, down_for }) = self.on_success(Instant::now()) {
            info!(
                failures,
                down_for_s = down_for.as_secs(),
                "{what} recovered"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Step {
        Fail(u64),
        Ok(u64),
    }
    use Step::*;

    #[test]
    fn one_line_at_first_then_at_most_one_a_minute_then_one_on_reconnect() {
        let s = Duration::from_secs;
        // (step at second t, expected line)
        let cases: Vec<(Step, Option<Line>)> = vec![
            (Ok(0), None),
            (Fail(1), Some(Line::Failed)),
            (Fail(2), None),
            (Fail(30), None),
            (Fail(60), None),
            (
                Fail(61),
                Some(Line::StillFailing {
                    failures: 5,
                    down_for: s(60),
                }),
            ),
            (Fail(120), None),
            (
                Fail(121),
                Some(Line::StillFailing {
                    failures: 7,
                    down_for: s(120),
                }),
            ),
            (
                Ok(125),
                Some(Line::Reconnected {
                    failures: 7,
                    down_for: s(124),
                }),
            ),
            (Ok(126), None),
            // A new outage starts over with its own first line.
            (Fail(127), Some(Line::Failed)),
            (
                Ok(128),
                Some(Line::Reconnected {
                    failures: 1,
                    down_for: s(1),
                }),
            ),
        ];
        let start = Instant::now();
        let mut o = Outage::new("test");
        for (i, (step, want)) in cases.into_iter().enumerate() {
            let got = match step {
                Fail(t) => o.on_failure(start + s(t)),
                Ok(t) => o.on_success(start + s(t)),
            };
            assert_eq!(got, want, "step {i}");
        }
    }

    #[test]
    fn a_thousand_failures_in_twenty_seconds_make_one_line() {
        let start = Instant::now();
        let mut o = Outage::new("test");
        let lines = (0..1000)
            .filter_map(|i| o.on_failure(start + Duration::from_millis(i * 20)))
            .count();
        assert_eq!(lines, 1);
        assert!(o.is_down());
    }
}

//! Upstream's `pkg/controller/nodelifecycle/scheduler`: the rate-limited timed queue the
//! node lifecycle controller puts nodes on before tainting them `NoExecute`, one queue per
//! zone, and the token bucket that limits it (client-go's `flowcontrol` token bucket with
//! burst 1, or one that never admits anything when the rate is 0).
//!
//! ```text
//!  add(node) ─▶ queued (process at: now)        once per node until remove(node): a node
//!  try(f), every 100 ms: while the limiter admits and the head is due:
//!        f(head) = Done        ─▶ out of the queue, still remembered (no second add)
//!        f(head) = Retry(wait) ─▶ processed again at now + wait
//!  remove(node) ─▶ forgotten: the next add queues it again
//! ```
//!
//! Pure: every call takes the time, so tests drive the clock.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;

/// Upstream's `EvictionRateLimiterBurst`.
pub const EVICTION_RATE_LIMITER_BURST: f64 = 1.0;
/// How often the NoExecute tainting pass runs (upstream's `NodeEvictionPeriod`).
pub const NODE_EVICTION_PERIOD: Duration = Duration::from_millis(100);

/// client-go's token bucket (`NewTokenBucketRateLimiter(qps, burst)`), full at start; a
/// rate of 0 or less admits nothing (`NewFakeNeverRateLimiter`).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    pub fn new(qps: f64) -> TokenBucket {
        TokenBucket {
            qps,
            tokens: EVICTION_RATE_LIMITER_BURST,
            last: None,
        }
    }

    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// Takes a token if one is there.
    pub fn try_accept(&mut self, now: Timestamp) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        if let Some(last) = self.last {
            let elapsed = now.duration_since(last).as_secs_f64().max(0.0);
            self.tokens = (self.tokens + elapsed * self.qps).min(EVICTION_RATE_LIMITER_BURST);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A queued node (upstream's `TimedValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedValue {
    pub value: String,
    pub uid: String,
    pub added_at: Timestamp,
    pub process_at: Timestamp,
}

/// What the function given to [`RateLimitedTimedQueue::try_process`] made of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retry(Duration),
}

/// Upstream's `RateLimitedTimedQueue` over a `UniqueQueue`.
#[derive(Debug, Clone)]
pub struct RateLimitedTimedQueue {
    /// Ordered by `process_at` on every change (the queues hold a handful of nodes).
    queue: Vec<TimedValue>,
    /// Every value added and not removed, processed or not.
    set: BTreeSet<String>,
    limiter: TokenBucket,
}

impl RateLimitedTimedQueue {
    pub fn new(qps: f64) -> RateLimitedTimedQueue {
        RateLimitedTimedQueue {
            queue: Vec::new(),
            set: BTreeSet::new(),
            limiter: TokenBucket::new(qps),
        }
    }

    /// Queues `value` unless it is already known; whether it was added.
    pub fn add(&mut self, value: &str, uid: &str, now: Timestamp) -> bool {
        if !self.set.insert(value.to_string()) {
            return false;
        }
        self.queue.push(TimedValue {
            value: value.to_string(),
            uid: uid.to_string(),
            added_at: now,
            process_at: now,
        });
        self.sort();
        true
    }

    /// Forgets `value`, queued or processed; whether it was known.
    pub fn remove(&mut self, value: &str) -> bool {
        self.queue.retain(|v| v.value != value);
        self.set.remove(value)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The values still waiting, in processing order.
    pub fn queued(&self) -> impl Iterator<Item = &TimedValue> {
        self.queue.iter()
    }

    /// Upstream's `Try`: processes due values in order while the limiter admits them (the
    /// limiter is asked before the head's time is looked at, as upstream's).
    pub fn try_process(&mut self, now: Timestamp, mut f: impl FnMut(&TimedValue) -> Outcome) {
        while let Some(head) = self.queue.first().cloned() {
            if !self.limiter.try_accept(now) {
                break;
            }
            if now < head.process_at {
                break;
            }
            match f(&head) {
                Outcome::Done => {
                    self.queue.remove(0);
                }
                Outcome::Retry(wait) => {
                    self.queue[0].process_at = now + wait + Duration::from_nanos(1);
                    self.sort();
                }
            }
        }
    }

    /// Upstream's `SwapLimiter`: a new rate; when the old limiter had no token left the new
    /// one starts empty too (right for a burst of 1).
    pub fn swap_limiter(&mut self, qps: f64, now: Timestamp) {
        if self.limiter.qps() == qps {
            return;
        }
        let mut limiter = TokenBucket::new(qps);
        if qps > 0.0 && !self.limiter.try_accept(now) {
            limiter.try_accept(now);
        }
        self.limiter = limiter;
    }

    pub fn qps(&self) -> f64 {
        self.limiter.qps()
    }

    fn sort(&mut self) {
        self.queue.sort_by_key(|v| v.process_at);
    }
}

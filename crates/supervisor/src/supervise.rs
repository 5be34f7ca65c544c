//! The one place a process's long-running components run. Each is registered under a name
//! with what to do when it fails, and [`Supervisor::run`] drives them all:
//!
//! ```text
//!  spawn ─▶ running ─┬─ shutdown cancelled ─▶ stops (its token is cancelled) ─▶ gone
//!                    └─ fails, panics, or returns on its own:
//!                         OnFailure::Restart ─▶ one warning ─▶ waits its Backoff ─▶ running
//!                         OnFailure::Exit    ─▶ shutdown cancelled for all ─▶ the others stop
//!                                               ─▶ run() returns that Failure
//!  shutdown cancelled ─▶ every component stops; any still running after SHUTDOWN_GRACE is
//!                        aborted (named in one warning) ─▶ run() returns
//! ```
//!
//! A component returning while the process is not shutting down counts as a failure: a
//! loop that quietly ended is how a process becomes half alive.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backoff::Backoff;

/// How long components get to stop once shutdown is cancelled before they are aborted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a component's failure does to the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Start it again after a backoff (800 ms doubling to 30 s, reset after 2 min healthy).
    Restart,
    /// Stop everything: the process cannot do its job without it.
    Exit,
}

/// The failure of a component that takes the process down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub component: String,
    pub error: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.component, self.error)
    }
}

impl std::error::Error for Failure {}

/// What a component's future may end with: nothing (a loop that only ends at shutdown) or
/// a `Result` whose error says why it stopped.
pub trait Outcome {
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E> Outcome for Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| error_chain(&*e.into()))
    }
}

/// An error and its sources on one line, each source left out when the message already
/// holds it (error types commonly print their source in their own message).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Start = Box<dyn FnMut(CancellationToken) -> BoxFuture + Send>;

struct Slot {
    name: String,
    policy: OnFailure,
    start: Start,
    backoff: Backoff,
    /// When the current attempt began running (after its backoff wait).
    started: Instant,
}

/// A set of named components sharing one shutdown token.
pub struct Supervisor {
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), String>>,
    slots: HashMap<Id, Slot>,
}

impl Supervisor {
    /// Components stop when `shutdown` is cancelled; the supervisor cancels it itself when
    /// an [`OnFailure::Exit`] component fails.
    pub fn new(shutdown: CancellationToken) -> Supervisor {
        Supervisor {
            shutdown,
            tasks: JoinSet::new(),
            slots: HashMap::new(),
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Registers a component restarted with backoff whenever it fails. `start` makes one
    /// attempt's future from the token it must stop on (it is called again per restart).
    pub fn spawn_restarting<F, Fut>(&mut self, name: impl Into<String>, start: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        self.spawn(name.into(), OnFailure::Restart, start);
    }

    /// Registers a component whose failure takes the process down.
    pub fn spawn_essential<F, Fut>(&mut self, name: impl Into<String>, start: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        // Never restarted, so called once; the Option turns the FnOnce into the FnMut a
        // slot holds.
        let mut start = Some(start);
        self.spawn(name.into(), OnFailure::Exit, move |token| {
            let start = start.take();
            async move {
                match start {
                    Some(start) => start(token).await.into_result(),
                    None => Err("started twice".to_string()),
                }
            }
        });
    }

    fn spawn<F, Fut>(&mut self, name: String, policy: OnFailure, mut start: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        let start: Start = Box::new(move |token| {
            let fut = start(token);
            Box::pin(async move { fut.await.into_result() })
        });
        let slot = Slot {
            name,
            policy,
            start,
            backoff: Backoff::default(),
            started: Instant::now(),
        };
        self.launch(slot, Duration::ZERO);
    }

    fn launch(&mut self, mut slot: Slot, delay: Duration) {
        let token = self.shutdown.child_token();
        let attempt = (slot.start)(token.clone());
        slot.started = Instant::now() + delay;
        let span = tracing::info_span!("component", name = %slot.name);
        let handle = self.tasks.spawn(tracing::Instrument::instrument(
            async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                attempt.await
            },
            span,
        ));
        self.slots.insert(handle.id(), slot);
    }

    /// Runs the components until shutdown (then waits for them, at most [`SHUTDOWN_GRACE`])
    /// or until an [`OnFailure::Exit`] component fails, whose failure is returned once the
    /// others have stopped.
    pub async fn run(mut self) -> Result<(), Failure> {
        let mut failure = None;
        let mut draining = false;
        let mut grace_ends: Option<tokio::time::Instant> = None;
        loop {
            let grace = async {
                match grace_ends {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = self.tasks.join_next_with_id() => {
                    let Some(joined) = joined else { break };
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, result),
                        Err(e) => (e.id(), Err(join_error(e))),
                    };
                    let Some(slot) = self.slots.remove(&id) else { continue };
                    if self.shutdown.is_cancelled() {
                        if let Err(error) = result {
                            warn!(component = %slot.name, %error, "component failed while stopping");
                        }
                        continue;
                    }
                    let error = result.err().unwrap_or_else(|| "stopped unexpectedly".into());
                    self.failed(slot, error, &mut failure);
                }
                _ = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    grace_ends = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                _ = grace => {
                    let mut names: Vec<&str> =
                        self.slots.values().map(|s| s.name.as_str()).collect();
                    names.sort_unstable();
                    warn!(components = ?names, "still running after the shutdown grace period; aborting");
                    self.tasks.abort_all();
                    grace_ends = None;
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    fn failed(&mut self, mut slot: Slot, error: String, failure: &mut Option<Failure>) {
        match slot.policy {
            OnFailure::Exit => {
                // No line here: the caller reports the failure, once.
                *failure = Some(Failure {
                    component: slot.name,
                    error,
                });
                self.shutdown.cancel();
            }
            OnFailure::Restart => {
                let delay = slot.backoff.next_delay(slot.started.elapsed());
                warn!(
                    component = %slot.name,
                    %error,
                    restart_in_ms = delay.as_millis() as u64,
                    "component failed; restarting"
                );
                self.launch(slot, delay);
            }
        }
    }
}

fn join_error(e: JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".into();
    }
    let panic = e.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".into());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// An error that prints its source inside its own message, as thiserror's `{0}` does.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "outer: {}", self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// One that does not.
    #[derive(Debug)]
    struct Terse(std::io::Error);

    impl fmt::Display for Terse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("terse")
        }
    }

    impl std::error::Error for Terse {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(
            Err::<(), _>(e).into_result(),
            Err("outer: inner".to_string())
        );
        let e = Terse(std::io::Error::other("inner"));
        assert_eq!(
            Err::<(), _>(e).into_result(),
            Err("terse: inner".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_component_is_restarted_with_backoff() {
        let attempts = Arc::new(AtomicU32::new(0));
        let shutdown = CancellationToken::new();
        let mut sup = Supervisor::new(shutdown.clone());
        let a = attempts.clone();
        let started = tokio::time::Instant::now();
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = times.clone();
        sup.spawn_restarting("flaky", move |token: CancellationToken| {
            let (a, t) = (a.clone(), t.clone());
            async move {
                t.lock().unwrap().push(started.elapsed());
                let n = a.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    return Err(std::io::Error::other("boom"));
                }
                token.cancelled().await;
                Ok(())
            }
        });
        let run = tokio::spawn(sup.run());
        while attempts.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        assert_eq!(run.await.unwrap(), Ok(()));
        let times = times.lock().unwrap().clone();
        // Started at once, then after 0.8 s, 1.6 s and 3.2 s more.
        let ms: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 800, 2400, 5600]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_essential_failure_stops_the_others_and_is_returned() {
        let shutdown = CancellationToken::new();
        let mut sup = Supervisor::new(shutdown.clone());
        let stopped = Arc::new(AtomicU32::new(0));
        let s = stopped.clone();
        sup.spawn_restarting("bystander", move |token: CancellationToken| {
            let s = s.clone();
            async move {
                token.cancelled().await;
                s.fetch_add(1, Ordering::SeqCst);
            }
        });
        sup.spawn_essential("agent", |_token| async {
            Err::<(), _>(std::io::Error::other("disk gone"))
        });
        let failure = sup.run().await.unwrap_err();
        assert_eq!(failure.to_string(), "agent failed: disk gone");
        assert!(shutdown.is_cancelled());
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn returning_early_or_panicking_counts_as_failing() {
        let shutdown = CancellationToken::new();
        let mut sup = Supervisor::new(shutdown.clone());
        sup.spawn_essential("quitter", |_token| async {});
        assert_eq!(
            sup.run().await.unwrap_err().to_string(),
            "quitter failed: stopped unexpectedly"
        );

        let mut sup = Supervisor::new(CancellationToken::new());
        sup.spawn_essential("crasher", |_token| async {
            if true {
                panic!("bad state");
            }
        });
        assert_eq!(
            sup.run().await.unwrap_err().to_string(),
            "crasher failed: panicked: bad state"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_ignoring_shutdown_is_aborted_after_the_grace_period() {
        let shutdown = CancellationToken::new();
        let mut sup = Supervisor::new(shutdown.clone());
        sup.spawn_restarting("stubborn", |_token| std::future::pending::<()>());
        sup.spawn_restarting("polite", |token: CancellationToken| async move {
            token.cancelled().await
        });
        let begun = tokio::time::Instant::now();
        shutdown.cancel();
        assert_eq!(sup.run().await, Ok(()));
        assert_eq!(begun.elapsed(), SHUTDOWN_GRACE);
    }
}

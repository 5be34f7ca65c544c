//! Leader election for peapod's control-plane components, after client-go's
//! `tools/leaderelection` on a `coordination.k8s.io/v1` Lease (`resourcelock.LeaseLock`).
//!
//! Owns: the decision a candidate takes on each look at the Lease ([`decide`], pure, with the
//! record it then writes, [`next_record`]), when a leader has lost its lease
//! ([`still_leading`]), and the loop that campaigns, runs the component while it leads and
//! stops it when the lease is lost ([`run`]), with the `LeaderElection` events upstream
//! records.
//!
//! Does not own: what runs under the lease (the scheduler, the controllers: the binary wires
//! them), the Lease kind itself (the API server's).
//!
//! May depend on: `k8s-openapi`, `kube` (client only), `record` (events), tokio. Nothing else
//! from the workspace.
//!
//! Defaults are client-go's, as kube-scheduler and kube-controller-manager use them: a lease
//! of 15 s, a renew deadline of 10 s, a retry period of 2 s. The identity is
//! `<hostname>_<uuid>` ([`identity`]), as both components make it.
//!
//! ```text
//!  candidate                       the Lease                         leader
//!  ─────────                       ─────────                         ──────
//!  GET ─▶ absent ─▶ CREATE (holder=me, acquireTime=renewTime=now, transitions 0)
//!     ─▶ holder=me ─▶ UPDATE renewTime ───────────────────────────▶ leading
//!     ─▶ holder empty (released) ─▶ UPDATE holder=me, transitions+1 ─▶ leading
//!     ─▶ held by X: its record noted with OUR clock's time when it last changed;
//!          unchanged for leaseDurationSeconds ─▶ UPDATE holder=me, acquireTime=now,
//!          transitions+1 (resourceVersion-guarded: of two racers one gets 409 and waits)
//!          still changing ─▶ wait retryPeriod (2 s, jittered up to 4.4 s) or until the
//!          lease seen expires, whichever is sooner, GET again
//!  leading: every retryPeriod UPDATE renewTime
//!     ─▶ no successful renewal for renewDeadline (10 s) ─▶ lost: the component is
//!        cancelled and awaited, then back to candidate
//!     ─▶ someone else holds it (we were too slow) ─▶ lost at once
//!     ─▶ shutdown ─▶ the component stops, then a release is attempted (holder empty,
//!        leaseDurationSeconds 1: client-go's ReleaseOnCancel) so a successor need not
//!        wait out 15 s; best effort, bounded to 2 s (the API server it goes through may
//!        be stopping too)
//! ```
//!
//! Expiry is judged on the candidate's own monotonic clock, never by comparing `renewTime`
//! with the local wall clock: servers' clocks may disagree, and client-go does the same.
//!
//! A sole candidate (a server on the embedded sqlite store, which no other server can share)
//! takes a lease held by someone else at once: that holder can only be this server's own
//! previous process, so a restart does not wait out its lease.

mod decide;
mod run;

pub use decide::{decide, next_record, observe, still_leading, Action, Observed, Record};
pub use run::{run, Error};

use std::time::Duration;

/// client-go's and kube-scheduler's `--leader-elect-lease-duration`.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// `--leader-elect-renew-deadline`.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// `--leader-elect-retry-period`.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// One candidate for one Lease.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Lease's namespace (`kube-system`).
    pub namespace: String,
    /// The Lease's name (`kube-scheduler`, `kube-controller-manager`).
    pub name: String,
    /// This candidate's `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// No other candidate can exist (see the crate doc).
    pub sole_candidate: bool,
    /// `source.component` of the `LeaderElection` events (`default-scheduler`,
    /// `kube-controller-manager`).
    pub event_component: String,
}

impl Config {
    /// A candidate for `kube-system/<name>` with client-go's defaults.
    pub fn new(name: &str, identity: &str, event_component: &str) -> Config {
        Config {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: LEASE_DURATION,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
            sole_candidate: false,
            event_component: event_component.into(),
        }
    }
}

/// `<hostname>_<uuid>`: upstream's identity, unique per process even when two candidates
/// share a host (as the HA tests' servers do).
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

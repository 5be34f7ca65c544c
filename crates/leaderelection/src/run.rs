//! The I/O shell: reads and writes the Lease, campaigns, runs the component while leading
//! and stops it when the lease is lost (see the timeline in the crate doc).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use record::{EventType, Recorder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::decide::{
    decide, next_record, observe, released, still_leading, Action, Observed, Record,
};
use crate::Config;

/// Why leading ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component failed while this candidate led; the lease is kept, so a restart
    /// (the supervisor's) leads again at once.
    #[error("{0}")]
    Component(String),
}

/// What one look at the Lease ended with.
enum Attempt {
    /// We hold it now (created, renewed or taken over).
    Held,
    /// Someone else does (its lease, as we see it, expiring in the given time), or a racer
    /// wrote first (409: None).
    NotHeld(Option<Duration>),
}

struct Candidate {
    api: Api<Lease>,
    cfg: Config,
    observed: Option<Observed>,
    /// The Lease as last read or written, for events and the release.
    lease: Option<Lease>,
}

fn record_of(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity.unwrap_or_default(),
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        acquire_time: spec.acquire_time.map(|t| t.0),
        renew_time: spec.renew_time.map(|t| t.0),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn spec_of(record: &Record, old: Option<&LeaseSpec>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(record.holder.clone()).filter(|h| !h.is_empty()),
        lease_duration_seconds: Some(record.lease_duration_seconds),
        acquire_time: record.acquire_time.map(MicroTime),
        renew_time: record.renew_time.map(MicroTime),
        lease_transitions: Some(record.transitions),
        ..old.cloned().unwrap_or_default()
    }
}

impl Candidate {
    /// client-go's `tryAcquireOrRenew`: one GET and at most one write.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let current = self.api.get_opt(&self.cfg.name).await?;
        let record = current.as_ref().map(record_of);
        let now = Instant::now();
        self.observed = observe(now, record.as_ref(), self.observed.take());
        let action = decide(
            now,
            self.observed.as_ref(),
            &self.cfg.identity,
            self.cfg.sole_candidate,
        );
        let Some(next) = next_record(
            &action,
            record.as_ref(),
            &self.cfg.identity,
            self.cfg.lease_duration,
            jiff::Timestamp::now(),
        ) else {
            let mut expiry = None;
            if let Action::Wait { holder, expires_in } = &action {
                debug!(lease = %self.key(), %holder, ?expires_in, "lease is held by another candidate");
                expiry = Some(*expires_in);
            }
            self.lease = current;
            return Ok(Attempt::NotHeld(expiry));
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec_of(&next, None)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec_of(&next, lease.spec.as_ref()));
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                self.observed = Some(Observed {
                    record: record_of(&lease),
                    at: Instant::now(),
                });
                self.lease = Some(lease);
                Ok(Attempt::Held)
            }
            // Another candidate wrote between our read and write: it won this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::NotHeld(None)),
            Err(e) => Err(e),
        }
    }

    /// One attempt bounded in time, so a hanging request cannot outlive the renew deadline.
    async fn attempt(&mut self) -> Result<Attempt, String> {
        let limit = self.cfg.renew_deadline / 2;
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.cfg.namespace, self.cfg.name)
    }

    /// Gives the lease up on shutdown (client-go's `ReleaseOnCancel`), if we still hold it.
    async fn release(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let record = record_of(&lease);
        if record.holder != self.cfg.identity {
            return;
        }
        lease.spec = Some(spec_of(
            &released(&record, jiff::Timestamp::now()),
            lease.spec.as_ref(),
        ));
        let params = PostParams::default();
        let write = self.api.replace(&self.cfg.name, &params, &lease);
        match tokio::time::timeout(Duration::from_secs(2), write).await {
            Ok(Ok(_)) => info!(lease = %self.key(), "released the lease"),
            Ok(Err(e)) => warn!(lease = %self.key(), error = %e, "releasing the lease"),
            Err(_) => warn!(lease = %self.key(), "releasing the lease: no answer"),
        }
    }
}

/// How long after the expiry it computed a waiting candidate looks again.
const EXPIRY_SLACK: Duration = Duration::from_millis(50);

/// client-go's `JitterUntil` with factor 1.2: a wait between `period` and 2.2 × `period`,
/// so candidates that started together do not keep colliding.
fn jittered(period: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let fraction = f64::from(nanos % 1_000_000) / 1_000_000.0;
    period + period.mul_f64(1.2 * fraction)
}

/// Campaigns for the lease in `cfg`, runs `lead` while holding it and cancels it when the
/// lease is lost (then campaigns again), until `shutdown`. On shutdown the component stops
/// first, then the lease is released. A component that fails while leading ends `run` with
/// [`Error::Component`].
pub async fn run<F, Fut, E>(
    client: kube::Client,
    cfg: Config,
    shutdown: CancellationToken,
    mut lead: F,
) -> Result<(), Error>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let source = record::Source {
        component: cfg.event_component.clone(),
        host: None,
        reporting_controller: cfg.event_component.clone(),
        reporting_instance: cfg.identity.clone(),
    };
    let (recorder, sink) = Recorder::new(client.clone(), source);
    // Events outlive the loop by a little: the sink stops with the process's shutdown.
    tokio::spawn(sink.run(shutdown.clone()));
    let mut me = Candidate {
        api: Api::namespaced(client, &cfg.namespace),
        cfg,
        observed: None,
        lease: None,
    };
    let key = me.key();
    loop {
        info!(lease = %key, identity = %me.cfg.identity, "attempting to acquire leader lease");
        loop {
            let mut wait = jittered(me.cfg.retry_period);
            match me.attempt().await {
                Ok(Attempt::Held) => break,
                // Departure from client-go, which looks again only after the jittered
                // period: wake when the lease seen expires if that is sooner, so failover
                // does not wait up to 4.4 s more than the lease.
                Ok(Attempt::NotHeld(Some(expiry))) => {
                    wait = wait.min(expiry + EXPIRY_SLACK);
                }
                Ok(Attempt::NotHeld(None)) => {}
                Err(e) => warn!(lease = %key, error = %e, "error retrieving resource lock"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        info!(lease = %key, identity = %me.cfg.identity, "successfully acquired lease");
        event(&recorder, &me, "became leader");
        let token = shutdown.child_token();
        let component = lead(token.clone());
        tokio::pin!(component);
        let mut last_renew = Instant::now();
        let lost = loop {
            tokio::select! {
                result = &mut component => {
                    if shutdown.is_cancelled() {
                        me.release().await;
                        return Ok(());
                    }
                    return result.map_err(|e| Error::Component(e.to_string()));
                }
                _ = tokio::time::sleep(me.cfg.retry_period) => {}
            }
            match me.attempt().await {
                Ok(Attempt::Held) => last_renew = Instant::now(),
                Ok(Attempt::NotHeld(_)) => {
                    break "the lease is held by another candidate".to_string()
                }
                Err(e) => warn!(lease = %key, error = %e, "renewing the lease"),
            }
            if !still_leading(Instant::now(), last_renew, me.cfg.renew_deadline) {
                break format!(
                    "failed to renew lease {key}: no renewal within {:?}",
                    me.cfg.renew_deadline
                );
            }
        };
        warn!(lease = %key, reason = %lost, "leaderelection lost; stopping the component");
        token.cancel();
        if let Err(e) = component.await {
            debug!(lease = %key, error = %e, "the component ended with an error after losing the lease");
        }
        event(&recorder, &me, "stopped leading");
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// client-go's `LeaseLock.RecordEvent`: a Normal `LeaderElection` event on the Lease,
/// `<identity> <what>`.
fn event(recorder: &Recorder, me: &Candidate, what: &str) {
    let Some(lease) = &me.lease else { return };
    recorder.event(
        &record::object_reference(lease),
        EventType::Normal,
        "LeaderElection",
        format!("{} {what}", me.cfg.identity),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_client_gos_bounds() {
        let p = Duration::from_secs(2);
        for _ in 0..100 {
            let j = jittered(p);
            assert!(j >= p && j <= p.mul_f64(2.2), "{j:?}");
        }
    }

    #[test]
    fn records_round_trip_through_the_lease_spec() {
        let r = Record {
            holder: "h_1".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(jiff::Timestamp::UNIX_EPOCH),
            renew_time: Some(jiff::Timestamp::UNIX_EPOCH + Duration::from_secs(3)),
            transitions: 2,
        };
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(spec_of(&r, None)),
        };
        assert_eq!(record_of(&lease), r);
        // Released: no holderIdentity at all.
        let gone = released(&r, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(spec_of(&gone, None).holder_identity, None);
    }
}

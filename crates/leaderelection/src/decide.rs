//! The pure part of leader election: what a candidate does on each look at the Lease, the
//! record it then writes, and when a leader has lost (client-go's `tryAcquireOrRenew` and
//! `renew` without the I/O).

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

/// The election fields of a Lease's spec (client-go's `LeaderElectionRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Empty when nobody holds it (released).
    pub holder: String,
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub transitions: i32,
}

/// A record as this candidate last saw it change, on its own monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub record: Record,
    pub at: Instant,
}

/// What to do with the Lease just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// There is none: create it with us as holder.
    Create,
    /// We hold it: write a fresh `renewTime`.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds a live lease: look again after the retry period.
    Wait {
        holder: String,
        expires_in: Duration,
    },
}

/// The observation after reading `current`: a record that changed since `last` restarts the
/// clock at `now`; an unchanged one keeps the time it was first seen so.
pub fn observe(now: Instant, current: Option<&Record>, last: Option<Observed>) -> Option<Observed> {
    let current = current?;
    match last {
        Some(last) if last.record == *current => Some(last),
        _ => Some(Observed {
            record: current.clone(),
            at: now,
        }),
    }
}

/// client-go's decision: a holder's lease is valid until `leaseDurationSeconds` after we
/// last saw its record change. `sole` (no other candidate can exist) takes any other holder's
/// lease at once.
pub fn decide(now: Instant, observed: Option<&Observed>, me: &str, sole: bool) -> Action {
    let Some(observed) = observed else {
        return Action::Create;
    };
    let record = &observed.record;
    if record.holder == me {
        return Action::Renew;
    }
    if record.holder.is_empty() || sole {
        return Action::TakeOver;
    }
    let duration = Duration::from_secs(u64::try_from(record.lease_duration_seconds).unwrap_or(0));
    let expires = observed.at + duration;
    if now >= expires {
        Action::TakeOver
    } else {
        Action::Wait {
            holder: record.holder.clone(),
            expires_in: expires - now,
        }
    }
}

/// The record `action` writes at wall-clock `now` (`Wait` writes nothing: None).
pub fn next_record(
    action: &Action,
    current: Option<&Record>,
    me: &str,
    lease_duration: Duration,
    now: Timestamp,
) -> Option<Record> {
    let seconds = i32::try_from(lease_duration.as_secs()).unwrap_or(i32::MAX);
    let fresh = |transitions| Record {
        holder: me.to_string(),
        lease_duration_seconds: seconds,
        acquire_time: Some(now),
        renew_time: Some(now),
        transitions,
    };
    match action {
        Action::Create => Some(fresh(0)),
        Action::Renew => {
            let old = current.cloned().unwrap_or_default();
            Some(Record {
                holder: me.to_string(),
                lease_duration_seconds: seconds,
                acquire_time: old.acquire_time.or(Some(now)),
                renew_time: Some(now),
                transitions: old.transitions,
            })
        }
        Action::TakeOver => Some(fresh(
            current.map_or(0, |c| c.transitions.saturating_add(1)),
        )),
        Action::Wait { .. } => None,
    }
}

/// Whether a leader whose last successful renewal was at `last_renew` still leads: not once
/// `renew_deadline` has passed without one.
pub fn still_leading(now: Instant, last_renew: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(last_renew) < renew_deadline
}

/// The record of a release on shutdown (client-go's `ReleaseOnCancel`): no holder, a lease
/// of one second, the transitions kept.
pub fn released(current: &Record, now: Timestamp) -> Record {
    Record {
        holder: String::new(),
        lease_duration_seconds: 1,
        acquire_time: Some(now),
        renew_time: Some(now),
        transitions: current.transitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: &str, secs: i32, transitions: i32) -> Record {
        Record {
            holder: holder.into(),
            lease_duration_seconds: secs,
            acquire_time: Some(Timestamp::UNIX_EPOCH),
            renew_time: Some(Timestamp::UNIX_EPOCH),
            transitions,
        }
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let seen = |r: Record, at: Instant| Some(Observed { record: r, at });
        // (name, now, observation, sole, expected)
        let cases: Vec<(&str, Instant, Option<Observed>, bool, Action)> = vec![
            ("no lease", t0, None, false, Action::Create),
            (
                "ours",
                t0 + s(100),
                seen(rec("me", 15, 2), t0),
                false,
                Action::Renew,
            ),
            (
                "released",
                t0,
                seen(rec("", 1, 2), t0),
                false,
                Action::TakeOver,
            ),
            (
                "other, just seen",
                t0,
                seen(rec("x", 15, 0), t0),
                false,
                Action::Wait {
                    holder: "x".into(),
                    expires_in: s(15),
                },
            ),
            (
                "other, unchanged 14 s",
                t0 + s(14),
                seen(rec("x", 15, 0), t0),
                false,
                Action::Wait {
                    holder: "x".into(),
                    expires_in: s(1),
                },
            ),
            (
                "other, unchanged 15 s",
                t0 + s(15),
                seen(rec("x", 15, 0), t0),
                false,
                Action::TakeOver,
            ),
            (
                "other, its own duration counts",
                t0 + s(5),
                seen(rec("x", 5, 0), t0),
                false,
                Action::TakeOver,
            ),
            (
                "other, sole candidate",
                t0,
                seen(rec("x", 15, 0), t0),
                true,
                Action::TakeOver,
            ),
        ];
        for (name, now, observed, sole, want) in cases {
            assert_eq!(decide(now, observed.as_ref(), "me", sole), want, "{name}");
        }
    }

    #[test]
    fn a_changing_record_restarts_the_clock() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let first = observe(t0, Some(&rec("x", 15, 0)), None);
        // Unchanged: the time it was first seen stays.
        let same = observe(t0 + s(10), Some(&rec("x", 15, 0)), first.clone());
        assert_eq!(same.as_ref().map(|o| o.at), Some(t0));
        assert_eq!(
            decide(t0 + s(15), same.as_ref(), "me", false),
            Action::TakeOver
        );
        // Renewed by its holder (renewTime moved): valid for another 15 s from now.
        let mut renewed = rec("x", 15, 0);
        renewed.renew_time = Some(Timestamp::UNIX_EPOCH + s(12));
        let after = observe(t0 + s(12), Some(&renewed), first);
        assert_eq!(after.as_ref().map(|o| o.at), Some(t0 + s(12)));
        assert!(matches!(
            decide(t0 + s(20), after.as_ref(), "me", false),
            Action::Wait { .. }
        ));
        assert_eq!(observe(t0, None, after), None);
    }

    #[test]
    fn records_written() {
        let now = Timestamp::UNIX_EPOCH + Duration::from_secs(1000);
        let d = LEASE;
        let old = rec("x", 15, 3);
        let created = next_record(&Action::Create, None, "me", d, now);
        assert_eq!(
            created,
            Some(Record {
                holder: "me".into(),
                lease_duration_seconds: 15,
                acquire_time: Some(now),
                renew_time: Some(now),
                transitions: 0,
            })
        );
        let taken = next_record(&Action::TakeOver, Some(&old), "me", d, now);
        assert_eq!(
            taken.as_ref().map(|r| (r.transitions, r.acquire_time)),
            Some((4, Some(now)))
        );
        // A renewal keeps acquireTime and the transitions.
        let mine = rec("me", 15, 4);
        let renewed = next_record(&Action::Renew, Some(&mine), "me", d, now);
        assert_eq!(
            renewed
                .as_ref()
                .map(|r| (r.transitions, r.acquire_time, r.renew_time)),
            Some((4, Some(Timestamp::UNIX_EPOCH), Some(now)))
        );
        let wait = Action::Wait {
            holder: "x".into(),
            expires_in: Duration::ZERO,
        };
        assert_eq!(next_record(&wait, Some(&old), "me", d, now), None);
        let gone = released(&mine, now);
        assert_eq!(
            (
                gone.holder.as_str(),
                gone.lease_duration_seconds,
                gone.transitions
            ),
            ("", 1, 4)
        );
    }

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn renew_deadline() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        for (after, leading) in [(0, true), (9, true), (10, false), (30, false)] {
            assert_eq!(
                still_leading(t0 + Duration::from_secs(after), t0, deadline),
                leading,
                "{after} s after the last renewal"
            );
        }
    }
}

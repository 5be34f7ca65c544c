//! Table-driven tests of the correlator: each case is a sequence of events at given times
//! and what the recorder writes for each.

use super::*;
use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// An event as a recorder makes it: `object` is the pod's name (its uid follows it),
/// `at` seconds after the epoch.
fn event(object: &str, field_path: Option<&str>, reason: &str, message: &str, at: i64) -> Event {
    let t = ts(at);
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(object, t)),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(object.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{object}")),
            field_path: field_path.map(str::to_string),
            ..ObjectReference::default()
        },
        type_: Some("Warning".into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some("node-1".into()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some("node-1".into()),
        count: Some(1),
        first_timestamp: Some(Time(t)),
        last_timestamp: Some(Time(t)),
        ..Event::default()
    }
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What the recorder does with one event, reduced to what a test compares.
#[derive(Debug, PartialEq)]
enum Did {
    /// Create an event named after the event made at `made_at` (its own name), count 1.
    Create { made_at: i64, message: String },
    /// Patch the event made at `made_at` to `count`, with `message`.
    Patch {
        made_at: i64,
        count: i32,
        message: String,
    },
    /// Dropped by the spam filter.
    Skip,
}

fn create(made_at: i64, message: &str) -> Did {
    Did::Create {
        made_at,
        message: message.into(),
    }
}

fn patch(made_at: i64, count: i32, message: &str) -> Did {
    Did::Patch {
        made_at,
        count,
        message: message.into(),
    }
}

/// Feeds `events` through a correlator (the server accepting every write as is) and
/// describes each outcome.
fn run(config: Config, events: Vec<Event>) -> Vec<Did> {
    let mut c = Correlator::new(config);
    let mut out = Vec::new();
    for ev in events {
        let at = ev
            .last_timestamp
            .clone()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let Some(done) = c.correlate(ev, at) else {
            out.push(Did::Skip);
            continue;
        };
        let name = done.event.metadata.name.clone().unwrap_or_default();
        let made_at = i64::from_str_radix(name.rsplit('.').next().unwrap_or("0"), 16)
            .map(|nanos| nanos / 1_000_000_000 - 1_700_000_000)
            .unwrap_or(-1);
        let message = done.event.message.clone().unwrap_or_default();
        out.push(match &done.patch {
            None => {
                assert_eq!(done.event.count, Some(1), "a create writes count 1");
                create(made_at, &message)
            }
            Some(p) => {
                assert_eq!(p["count"], json!(done.event.count));
                assert_eq!(p["message"], json!(message));
                assert_eq!(p["lastTimestamp"], json!(done.event.last_timestamp));
                assert_eq!(p.as_object().map(|o| o.len()), Some(3), "{p}");
                patch(made_at, done.event.count.unwrap_or(0), &message)
            }
        });
        c.update_state(&done.event);
    }
    out
}

#[test]
fn identical_events_become_one_counted_event() {
    let cases: Vec<(&str, Vec<Event>, Vec<Did>)> = vec![
        (
            "a repeat patches the first event's count, keeping its name",
            vec![
                event("p", None, "BackOff", "m", 0),
                event("p", None, "BackOff", "m", 5),
                event("p", None, "BackOff", "m", 9),
            ],
            vec![create(0, "m"), patch(0, 2, "m"), patch(0, 3, "m")],
        ),
        (
            "another message, reason, container or pod is another event",
            vec![
                event("p", None, "BackOff", "m", 0),
                event("p", None, "BackOff", "n", 1),
                event("p", None, "Failed", "m", 2),
                event("p", Some("spec.containers{app}"), "BackOff", "m", 3),
                event("q", None, "BackOff", "m", 4),
                event("p", None, "BackOff", "m", 5),
            ],
            vec![
                create(0, "m"),
                create(1, "n"),
                create(2, "m"),
                create(3, "m"),
                create(4, "m"),
                patch(0, 2, "m"),
            ],
        ),
        (
            // The logger has no window of its own: an hour later it still counts on.
            "repeats count however far apart",
            vec![
                event("p", None, "BackOff", "m", 0),
                event("p", None, "BackOff", "m", 3600),
            ],
            vec![create(0, "m"), patch(0, 2, "m")],
        ),
    ];
    for (name, events, want) in cases {
        assert_eq!(run(Config::default(), events), want, "{name}");
    }
}

#[test]
fn similar_events_are_aggregated_from_the_tenth_message() {
    let distinct = |prefix: &str, n: usize, at: i64| -> Vec<Event> {
        (0..n)
            .map(|i| {
                event(
                    "p",
                    None,
                    "Unhealthy",
                    &format!("{prefix}{i}"),
                    at + i as i64,
                )
            })
            .collect()
    };
    let combined = |m: &str| format!("{AGGREGATE_PREFIX}{m}");

    // Nine distinct messages are written as they are; the tenth starts an aggregate event,
    // which the eleventh continues (a patch carrying the newest message).
    let mut want: Vec<Did> = (0..9).map(|i| create(i, &format!("m{i}"))).collect();
    want.push(create(9, &combined("m9")));
    want.push(patch(9, 2, &combined("m10")));
    assert_eq!(run(Config::default(), distinct("m", 11, 0)), want);

    // More than ten minutes after the last similar event, counting starts over.
    let mut events = distinct("m", 9, 0);
    events.extend(distinct("n", 2, 8 + 601));
    let got = run(Config::default(), events);
    assert_eq!(got[9], create(609, "n0"));
    assert_eq!(got[10], create(610, "n1"));
    // ...but not at exactly ten minutes.
    let mut events = distinct("m", 9, 0);
    events.push(event("p", None, "Unhealthy", "n0", 8 + 600));
    assert_eq!(
        run(Config::default(), events)[9],
        create(608, &combined("n0"))
    );

    // Other reasons are other groups.
    let mut events = distinct("m", 9, 0);
    events.push(event("p", None, "Killing", "k", 20));
    assert_eq!(run(Config::default(), events)[9], create(20, "k"));
}

#[test]
fn the_spam_filter_allows_a_burst_then_one_event_per_five_minutes() {
    let same = |at: i64| event("p", None, "BackOff", "m", at);
    let mut events: Vec<Event> = (0..26).map(|_| same(0)).collect();
    events.push(same(100)); // no token yet
    events.push(same(300)); // one token refilled
    events.push(same(301));
    events.push(event("q", None, "BackOff", "m", 301)); // another object: its own budget
    let got = run(Config::default(), events);
    assert_eq!(got[0], create(0, "m"));
    assert_eq!(got[24], patch(0, 25, "m"));
    assert_eq!(got[25], Did::Skip);
    assert_eq!(got[26], Did::Skip);
    // The dropped repeats were still counted, as upstream counts them.
    assert_eq!(got[27], patch(0, 28, "m"));
    assert_eq!(got[28], Did::Skip);
    assert_eq!(got[29], create(301, "m"));
}

#[test]
fn the_server_answer_is_what_repeats_patch() {
    let mut c = Correlator::new(Config::default());
    let first = c
        .correlate(event("p", None, "BackOff", "m", 0), ts(0))
        .map(|d| d.event);
    let mut written = first.unwrap_or_default();
    written.metadata.resource_version = Some("42".into());
    c.update_state(&written);
    let again = c.correlate(event("p", None, "BackOff", "m", 1), ts(1));
    let again = again.map(|d| d.event).unwrap_or_default();
    assert_eq!(again.metadata.resource_version.as_deref(), Some("42"));
    assert_eq!(again.metadata.name, written.metadata.name);
    assert_eq!(again.first_timestamp, Some(Time(ts(0))));
    assert_eq!(again.last_timestamp, Some(Time(ts(1))));
}

#[test]
fn caches_are_bounded() {
    let config = Config {
        cache_size: 2,
        ..Config::default()
    };
    // Three different events: the first is forgotten, so its repeat is written afresh.
    let events = vec![
        event("a", None, "R", "m", 0),
        event("b", None, "R", "m", 1),
        event("c", None, "R", "m", 2),
        event("a", None, "R", "m", 3),
    ];
    assert_eq!(run(config, events)[3], create(3, "m"));
}

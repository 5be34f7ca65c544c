//! Cron schedules as CronJobs write them: upstream's `robfig/cron/v3` `ParseStandard`
//! (five fields, `@hourly`-style descriptors, `@every <duration>`, an optional
//! `TZ=`/`CRON_TZ=` prefix) with its error messages, and the next activation time after an
//! instant in a time zone (`SpecSchedule.Next`).
//!
//! Owns: parsing and "next schedule time". Does not own: which time zone a CronJob uses or
//! how many missed times the controller looks back over (the CronJob controller's).
//!
//! Time zones come from the system's tz database (`/usr/share/zoneinfo`, through jiff), as
//! Go's `time.LoadLocation` reads it.

use jiff::civil::{self, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parse failure, worded as robfig/cron words it (the text of a CronJob's
/// `spec.schedule: Invalid value` cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

/// One schedule field's allowed values (bit `n` set: value `n` allowed) and whether it was
/// written as `*`/`?` (which changes how day-of-month and day-of-week combine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(&self, n: i8) -> bool {
        n >= 0 && self.bits & (1u64 << n) != 0
    }
}

/// A five-field schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSchedule {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

/// What a schedule string means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Minute, hour, day of month, month, day of week (a descriptor is one of these).
    Spec(SpecSchedule),
    /// `@every <duration>`: whole seconds, at least one.
    Every { seconds: i64 },
}

/// A parsed schedule and the time zone its `TZ=`/`CRON_TZ=` prefix named, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub schedule: Schedule,
    pub time_zone: Option<String>,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// `cron.ParseStandard`.
pub fn parse(spec: &str) -> Result<Parsed, CronError> {
    if spec.is_empty() {
        return Err(CronError("empty spec string".into()));
    }
    let mut rest = spec;
    let mut time_zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        // robfig slices from '=' to the first space; a prefix with no space is a bad
        // location in Go too (an empty name at worst).
        let eq = spec.find('=').unwrap_or(0);
        let end = spec.find(' ').unwrap_or(spec.len()).max(eq + 1);
        let name = &spec[eq + 1..end];
        if let Err(e) = load_location(name) {
            return Err(CronError(format!("provided bad location {name}: {e}")));
        }
        time_zone = Some(name.to_string());
        rest = spec[end..].trim();
    }
    let schedule = if rest.starts_with('@') {
        parse_descriptor(rest)?
    } else {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            )));
        }
        Schedule::Spec(SpecSchedule {
            minute: get_field(fields[0], &MINUTES)?,
            hour: get_field(fields[1], &HOURS)?,
            dom: get_field(fields[2], &DOM)?,
            month: get_field(fields[3], &MONTHS)?,
            dow: get_field(fields[4], &DOW)?,
        })
    };
    Ok(Parsed {
        schedule,
        time_zone,
    })
}

/// Go's `time.LoadLocation` against the system tz database; the error is Go's wording.
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => return Ok(TimeZone::UTC),
        _ => {}
    }
    // Go refuses names that could escape the zoneinfo directory.
    if name.contains("..") || name.starts_with('/') || name.contains('\\') {
        return Err("time: invalid location name".to_string());
    }
    TimeZone::get(name).map_err(|_| format!("unknown time zone {name}"))
}

fn parse_descriptor(d: &str) -> Result<Schedule, CronError> {
    let five = |s: &str| -> Result<Schedule, CronError> {
        let f: Vec<&str> = s.split(' ').collect();
        Ok(Schedule::Spec(SpecSchedule {
            minute: get_field(f[0], &MINUTES)?,
            hour: get_field(f[1], &HOURS)?,
            dom: get_field(f[2], &DOM)?,
            month: get_field(f[3], &MONTHS)?,
            dow: get_field(f[4], &DOW)?,
        }))
    };
    match d {
        "@yearly" | "@annually" => five("0 0 1 1 *"),
        "@monthly" => five("0 0 1 * *"),
        "@weekly" => five("0 0 * * 0"),
        "@daily" | "@midnight" => five("0 0 * * *"),
        "@hourly" => five("0 * * * *"),
        _ => {
            if let Some(dur) = d.strip_prefix("@every ") {
                let nanos = parse_go_duration(dur)
                    .map_err(|e| CronError(format!("failed to parse duration {d}: {e}")))?;
                // `cron.Every`: under a second is a second; sub-second parts are dropped.
                let seconds = (nanos / 1_000_000_000).max(1) as i64;
                Ok(Schedule::Every { seconds })
            } else {
                Err(CronError(format!("unrecognized descriptor: {d}")))
            }
        }
    }
}

/// `getField`: comma-separated ranges.
fn get_field(field: &str, b: &Bounds) -> Result<Field, CronError> {
    let mut out = Field {
        bits: 0,
        star: false,
    };
    for expr in field.split(',').filter(|s| !s.is_empty()) {
        let (bits, star) = get_range(expr, b)?;
        out.bits |= bits;
        out.star |= star;
    }
    Ok(out)
}

/// `getRange`: `*`, `?`, `N`, `N-M`, each optionally `/step`, with robfig's messages.
fn get_range(expr: &str, b: &Bounds) -> Result<(u64, bool), CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut star);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        start = b.min;
        end = b.max;
        star = true;
    } else {
        star = false;
        start = parse_int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return Err(CronError(format!("too many hyphens: {expr}"))),
        };
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = b.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(CronError(format!("too many slashes: {expr}"))),
    };
    if start < b.min {
        return Err(CronError(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        )));
    }
    if end > b.max {
        return Err(CronError(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        )));
    }
    if start > end {
        return Err(CronError(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(CronError(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    let mut bits = 0u64;
    let mut i = start;
    while i <= end {
        bits |= 1u64 << i;
        i += step;
    }
    Ok((bits, star))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, CronError> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, n)) = b.names.iter().find(|(name, _)| *name == lower) {
        return Ok(*n);
    }
    must_parse_int(expr)
}

/// `mustParseInt` with Go's `strconv.Atoi` wording.
fn must_parse_int(expr: &str) -> Result<u32, CronError> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    let syntax = || {
        CronError(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax",
            crate::field::go_quote(expr)
        ))
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(syntax());
    }
    let n: i64 = expr.parse().map_err(|_| {
        CronError(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: value out of range",
            crate::field::go_quote(expr)
        ))
    })?;
    if n < 0 {
        return Err(CronError(format!(
            "negative number ({n}) not allowed: {expr}"
        )));
    }
    // Anything this large is out of every field's bounds; keep the range check's wording.
    Ok(u32::try_from(n).unwrap_or(u32::MAX).min(1000))
}

/// Go's `time.ParseDuration`, in nanoseconds (non-negative durations only matter here).
fn parse_go_duration(s: &str) -> Result<u128, String> {
    let orig = s;
    let quoted = crate::field::go_quote(orig);
    let invalid = || format!("time: invalid duration {quoted}");
    let mut s = s;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_len = s
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if num_len == 0 {
            return Err(invalid());
        }
        let num: f64 = s[..num_len].parse().map_err(|_| invalid())?;
        s = &s[num_len..];
        let unit_len = s
            .bytes()
            .take_while(|c| !(c.is_ascii_digit() || *c == b'.'))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    crate::field::go_quote(unit)
                ))
            }
        };
        total += num * scale;
    }
    if neg {
        return Ok(0);
    }
    Ok(total as u128)
}

impl SpecSchedule {
    /// robfig's `dayMatches`: when either day field is `*`, both must match; otherwise
    /// either may.
    fn day_matches(&self, d: civil::Date) -> bool {
        let dom = self.dom.has(d.day());
        let dow = self.dow.has(d.weekday().to_sunday_zero_offset());
        if self.dom.star || self.dow.star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

impl Schedule {
    /// The first activation strictly after `after`, in `tz` (`Schedule.Next`); `None` when
    /// there is none within five years (robfig's give-up point: `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every { seconds } => {
                let base = Timestamp::from_second(after.as_second()).ok()?;
                base.checked_add(seconds.seconds()).ok()
            }
            Schedule::Spec(s) => s.next(after, tz),
        }
    }

    /// Every activation in `(after, until]`, oldest first, at most `limit` of them (the
    /// CronJob controller counts missed starts and gives up past 100).
    pub fn times_between(
        &self,
        after: Timestamp,
        until: Timestamp,
        tz: &TimeZone,
        limit: usize,
    ) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next(t, tz) {
                Some(n) if n <= until => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}

impl SpecSchedule {
    fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        // Start at the next whole minute.
        let mut c: DateTime = local
            .date()
            .at(local.hour(), local.minute(), 0, 0)
            .checked_add(1.minute())
            .ok()?;
        let give_up = local.year() + 5;
        while c.year() <= give_up {
            if !self.month.has(c.month()) {
                c = c
                    .date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(c.date()) {
                c = c.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if !self.hour.has(c.hour()) {
                c = c.date().at(c.hour(), 0, 0, 0).checked_add(1.hour()).ok()?;
                continue;
            }
            if !self.minute.has(c.minute()) {
                c = c.checked_add(1.minute()).ok()?;
                continue;
            }
            // A civil time skipped by a DST gap maps later; one repeated by a fold maps to
            // its first instance. Either way it must lie after `after`.
            let ts = c.to_zoned(tz.clone()).ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            c = c.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        parse(spec).err().map(|e| e.0).unwrap_or_default()
    }

    #[test]
    fn accepts_what_parse_standard_accepts() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 1 *",
            "0-30/10 9-17 * * mon-fri",
            "0 0 ? * SUN",
            "5 4 * jan,jul *",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@every 1h30m",
            "TZ=UTC 0 * * * *",
            "CRON_TZ=Europe/Paris 0 9 * * *",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
    }

    #[test]
    fn errors_are_robfigs() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "* * * * * *",
                "expected exactly 5 fields, found 6: [* * * * * *]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "@every x",
                "failed to parse duration @every x: time: invalid duration \"x\"",
            ),
            (
                "TZ=Mars/Base 0 * * * *",
                "provided bad location Mars/Base: unknown time zone Mars/Base",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(err(spec), want, "{spec}");
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn next_times() {
        let utc = TimeZone::UTC;
        let cases = [
            ("* * * * *", "2026-12-07T12:00:30Z", "2026-12-07T12:01:00Z"),
            (
                "*/15 * * * *",
                "2026-12-07T12:00:00Z",
                "2026-12-07T12:15:00Z",
            ),
            ("@hourly", "2026-12-07T12:59:59Z", "2026-12-07T13:00:00Z"),
            ("0 0 1 1 *", "2026-12-07T12:00:00Z", "2027-01-01T00:00:00Z"),
            // Both day fields restricted: either matches (Tuesday the 8th comes first).
            (
                "0 0 13 * tue",
                "2026-12-07T12:00:00Z",
                "2026-12-08T00:00:00Z",
            ),
            // Day of week `*`: the day of month alone.
            ("0 0 13 * *", "2026-12-07T12:00:00Z", "2026-12-13T00:00:00Z"),
            (
                "30 2 29 2 *",
                "2026-12-07T12:00:00Z",
                "2028-02-29T02:30:00Z",
            ),
            (
                "@every 90s",
                "2026-12-07T12:00:00.5Z",
                "2026-12-07T12:01:30Z",
            ),
        ];
        for (spec, after, want) in cases {
            let p = parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(p.schedule.next(ts(after), &utc), Some(ts(want)), "{spec}");
        }
        let never = parse("0 0 30 2 *").map(|p| p.schedule.next(ts("2026-01-01T00:00:00Z"), &utc));
        assert_eq!(never, Ok(None));
    }

    #[test]
    fn next_in_a_time_zone_and_across_dst() {
        let Ok(paris) = load_location("Europe/Paris") else {
            return; // no tz database on this machine
        };
        let p = parse("0 9 * * *").map(|p| p.schedule);
        let next = p
            .as_ref()
            .ok()
            .and_then(|s| s.next(ts("2026-12-07T12:00:00Z"), &paris));
        assert_eq!(next, Some(ts("2026-12-08T08:00:00Z")));
        // 02:30 does not exist on 2026-03-29 in Paris; the job runs at 03:30 CEST.
        let p = parse("30 2 * * *").map(|p| p.schedule);
        let next = p
            .as_ref()
            .ok()
            .and_then(|s| s.next(ts("2026-03-29T00:00:00Z"), &paris));
        assert_eq!(next, Some(ts("2026-03-29T01:30:00Z")));
    }

    #[test]
    fn times_between_counts_missed_starts() {
        let p = parse("*/10 * * * *").map(|p| p.schedule);
        let got = p
            .map(|s| {
                s.times_between(
                    ts("2026-12-07T12:00:00Z"),
                    ts("2026-12-07T12:35:00Z"),
                    &TimeZone::UTC,
                    100,
                )
            })
            .unwrap_or_default();
        assert_eq!(
            got,
            vec![
                ts("2026-12-07T12:10:00Z"),
                ts("2026-12-07T12:20:00Z"),
                ts("2026-12-07T12:30:00Z")
            ]
        );
    }
}

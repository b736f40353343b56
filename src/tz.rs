//! Which time zone this machine is in, and the one conversion between
//! instants and its wall clock that schedules, `list`, the daemon and
//! retention all use.
//!
//! A [`Zone`] is a value: [`Zone::system`] reads it from where cron and the
//! C library do (the `TZ` variable as a zone name, `:name`, a TZif path or a
//! POSIX rule; else `/etc/localtime`), and only the CLI calls it, once; the
//! stages receive the zone and never look at the environment.
//!
//! The zone rules come from jiff, which reads the system's own zoneinfo
//! files. chrono's `Local` is not used: chrono 0.4's `Local` returns the two
//! candidates of a repeated wall-clock time in the wrong order and takes
//! the first second of a spring-forward gap as a real time, which is exactly
//! where a schedule's DST rule lives (SPEC §1.1).
//!
//! Instants stay chrono `DateTime<Utc>` and wall-clock times chrono
//! `NaiveDateTime`, as in the rest of strata; this module is where they meet
//! the zone's rules.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeDelta, Utc};
use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Why the machine's zone could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot tell the time zone ({source_of_zone}): {message}")]
pub struct ZoneError {
    source_of_zone: String,
    message: String,
}

/// A time zone: the machine's, a named one, or UTC.
#[derive(Clone, PartialEq, Eq)]
pub struct Zone {
    tz: TimeZone,
}

/// A wall-clock time placed on a zone's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The time occurs once.
    Unique(DateTime<Utc>),
    /// The time falls into a spring-forward gap: it never occurs. `end` is
    /// the first instant after the gap, when the clocks jump.
    Gap {
        /// The moment the clocks jump forward.
        end: DateTime<Utc>,
    },
    /// The time occurs twice, at a fall-back change.
    Fold {
        /// Its first occurrence (the earlier offset).
        earlier: DateTime<Utc>,
        /// Its second occurrence.
        later: DateTime<Utc>,
        /// The moment the clocks go back: the second pass of the repeated
        /// wall-clock times starts here.
        shift: DateTime<Utc>,
    },
}

impl Default for Zone {
    /// UTC.
    fn default() -> Zone {
        Zone::utc()
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name())
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone { tz: TimeZone::UTC }
    }

    /// The machine's zone, as cron and the C library find it: `TZ` when it
    /// is set (an IANA name, `:name`, a path to a TZif file, or a POSIX
    /// rule such as `CET-1CEST,M3.5.0,M10.5.0/3`; empty means UTC), else
    /// `/etc/localtime`. Reads the environment: call it at the edge.
    pub fn system() -> Result<Zone, ZoneError> {
        TimeZone::try_system()
            .map(|tz| Zone { tz })
            .map_err(|e| ZoneError {
                source_of_zone: match std::env::var_os("TZ") {
                    Some(tz) => format!("TZ={}", tz.to_string_lossy()),
                    None => "/etc/localtime".to_string(),
                },
                message: e.to_string(),
            })
    }

    /// A zone of the system's zoneinfo database by IANA name
    /// (`Europe/Berlin`).
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        TimeZone::get(name)
            .map(|tz| Zone { tz })
            .map_err(|e| ZoneError {
                source_of_zone: name.to_string(),
                message: e.to_string(),
            })
    }

    /// The zone's IANA name when it has one (`Europe/Berlin`, `UTC`), else
    /// `local` (a TZif file without a name, or a POSIX rule).
    pub fn name(&self) -> &str {
        self.tz.iana_name().unwrap_or("local")
    }

    /// The zone's IANA name, when it has one: what Kubernetes' `timeZone`
    /// and Nomad's `time_zone` take. `None` for a TZif file that is not a
    /// link into the zoneinfo database, or a POSIX rule in `TZ`.
    pub fn iana_name(&self) -> Option<&str> {
        self.tz.iana_name()
    }

    /// The offset from UTC in effect at `t`, in seconds east.
    pub fn offset_seconds(&self, t: &DateTime<Utc>) -> i64 {
        i64::from(self.tz.to_offset(timestamp(t)).seconds())
    }

    /// The wall-clock time at `t`.
    pub fn local(&self, t: &DateTime<Utc>) -> NaiveDateTime {
        let offset = self.offset_seconds(t);
        t.naive_utc()
            .checked_add_signed(TimeDelta::seconds(offset))
            .unwrap_or_else(|| t.naive_utc())
    }

    /// `t` with the zone's offset at `t`, for printing (RFC 3339 shows the
    /// offset that was in effect, so a time after a change shows the new
    /// one).
    pub fn at(&self, t: &DateTime<Utc>) -> DateTime<FixedOffset> {
        // Real zones stay within ±15 hours; an offset chrono cannot hold
        // (a POSIX rule can say 25 hours) is shown as UTC rather than fail.
        let offset = i32::try_from(self.offset_seconds(t))
            .ok()
            .and_then(FixedOffset::east_opt)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        t.with_timezone(&offset)
    }

    /// `t` as a person reads it here: `2026-10-25 02:30:00 +02:00`. The
    /// offset tells the two passes of a repeated hour apart.
    pub fn format(&self, t: &DateTime<Utc>) -> String {
        self.at(t).format("%Y-%m-%d %H:%M:%S %:z").to_string()
    }

    /// Where the wall-clock time `local` falls on the zone's timeline; `None`
    /// outside the years -9999 to 9999.
    pub fn place(&self, local: &NaiveDateTime) -> Option<Placed> {
        let civil = civil(local)?;
        let wall = local.and_utc();
        let minus = |offset: jiff::tz::Offset| {
            wall.checked_sub_signed(TimeDelta::seconds(offset.seconds().into()))
        };
        Some(match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => Placed::Unique(minus(offset)?),
            AmbiguousOffset::Gap { after, .. } => {
                // `local - after` is before the jump, `local - before` at or
                // after it: the jump is the first transition after the first.
                let end = self.next_transition(&minus(after)?)?;
                Placed::Gap { end }
            }
            AmbiguousOffset::Fold { before, after } => {
                let earlier = minus(before)?;
                let later = minus(after)?;
                let shift = self.next_transition(&earlier)?;
                Placed::Fold {
                    earlier,
                    later,
                    shift,
                }
            }
        })
    }

    /// The first change of offset (or of the zone's rules) strictly after
    /// `t`, if there is one.
    pub fn next_transition(&self, t: &DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.tz
            .following(timestamp(t))
            .next()
            .and_then(|tr| instant(tr.timestamp()))
    }

    /// The latest change at or before `t`, if there is one.
    pub fn last_transition(&self, t: &DateTime<Utc>) -> Option<DateTime<Utc>> {
        // jiff's `preceding` is strict: ask from just after `t`.
        let just_after = t.checked_add_signed(TimeDelta::nanoseconds(1))?;
        self.tz
            .preceding(timestamp(&just_after))
            .next()
            .and_then(|tr| instant(tr.timestamp()))
    }
}

/// `t` as a jiff timestamp, clamped to jiff's range (years -9999 to 9999).
fn timestamp(t: &DateTime<Utc>) -> Timestamp {
    Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or(
        if t.timestamp() < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        },
    )
}

fn instant(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().try_into().ok()?)
}

fn civil(t: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::{Datelike, Timelike};
    jiff::civil::DateTime::new(
        i16::try_from(t.year()).ok()?,
        t.month() as i8,
        t.day() as i8,
        t.hour() as i8,
        t.minute() as i8,
        t.second().min(59) as i8,
        0,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn places_gaps_and_folds_in_order() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(
            berlin.place(&wall("2026-03-29 01:59:59")),
            Some(Placed::Unique(utc("2026-03-29T00:59:59Z")))
        );
        // The first second of the gap does not exist (chrono's `Local`
        // says it does).
        for missing in ["2026-03-29 02:00:00", "2026-03-29 02:59:59"] {
            assert_eq!(
                berlin.place(&wall(missing)),
                Some(Placed::Gap {
                    end: utc("2026-03-29T01:00:00Z")
                }),
                "{missing}"
            );
        }
        assert_eq!(
            berlin.place(&wall("2026-03-29 03:00:00")),
            Some(Placed::Unique(utc("2026-03-29T01:00:00Z")))
        );
        // The earlier occurrence first (chrono's `Local` swaps them).
        assert_eq!(
            berlin.place(&wall("2026-10-25 02:30:00")),
            Some(Placed::Fold {
                earlier: utc("2026-10-25T00:30:00Z"),
                later: utc("2026-10-25T01:30:00Z"),
                shift: utc("2026-10-25T01:00:00Z"),
            })
        );
        // 03:00 on the autumn day is not ambiguous.
        assert_eq!(
            berlin.place(&wall("2026-10-25 03:00:00")),
            Some(Placed::Unique(utc("2026-10-25T02:00:00Z")))
        );
    }

    #[test]
    fn half_hour_changes() {
        let lord_howe = Zone::named("Australia/Lord_Howe").unwrap();
        assert_eq!(
            lord_howe.place(&wall("2026-10-04 02:15:00")),
            Some(Placed::Gap {
                end: utc("2026-10-03T15:30:00Z")
            })
        );
        assert_eq!(
            lord_howe.place(&wall("2026-04-05 01:45:00")),
            Some(Placed::Fold {
                earlier: utc("2026-04-04T14:45:00Z"),
                later: utc("2026-04-04T15:15:00Z"),
                shift: utc("2026-04-04T15:00:00Z"),
            })
        );
    }

    #[test]
    fn offsets_transitions_and_display() {
        let ny = Zone::named("America/New_York").unwrap();
        let t = utc("2026-11-01T05:30:00Z");
        assert_eq!(ny.offset_seconds(&t), -4 * 3600);
        assert_eq!(ny.local(&t), wall("2026-11-01 01:30:00"));
        assert_eq!(ny.format(&t), "2026-11-01 01:30:00 -04:00");
        assert_eq!(
            ny.at(&utc("2026-11-01T06:30:00Z")).to_rfc3339(),
            "2026-11-01T01:30:00-05:00"
        );
        let shift = utc("2026-11-01T06:00:00Z");
        assert_eq!(ny.next_transition(&t), Some(shift));
        assert_eq!(ny.last_transition(&shift), Some(shift));
        assert!(ny.last_transition(&t).unwrap() < t);
        assert_eq!(Zone::utc().next_transition(&t), None);
        assert_eq!(Zone::utc().name(), "UTC");
        assert_eq!(ny.name(), "America/New_York");
    }

    #[test]
    fn out_of_range_never_panics() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let far = NaiveDateTime::MAX;
        assert_eq!(berlin.place(&far), None);
        let _ = berlin.local(&DateTime::<Utc>::MAX_UTC);
        let _ = berlin.format(&DateTime::<Utc>::MIN_UTC);
        let _ = berlin.format(&DateTime::<Utc>::MAX_UTC);
        let _ = berlin.place(&NaiveDateTime::MIN);
        let _ = berlin.next_transition(&DateTime::<Utc>::MAX_UTC);
        let _ = berlin.last_transition(&DateTime::<Utc>::MIN_UTC);
        assert!(Zone::named("Not/AZone").is_err());
    }
}

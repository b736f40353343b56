//! Random 5-field schedules × random instants around DST changes, checked
//! against an independent model of crontab(5) and cron(8) written here, not
//! against strata's own code.
//!
//! The model is cron's main loop as cronie's `cron.c` runs it, one real
//! minute at a time: it reads the wall clock (UTC plus the zone's offset at
//! that instant) and
//! - fires a *wildcard* job (minute or hour field starts with `*`) when the
//!   wall-clock minute it reads matches;
//! - fires a *fixed-time* job when any wall-clock minute it has not seen
//!   before (after the latest one it has seen, up to the one it reads now)
//!   matches: after a jump forward the skipped minutes count at once, and
//!   after the clocks go back nothing new is seen until they pass the old
//!   time again.
//!
//! The fields' meaning (ranges, steps, lists, names, `7` as Sunday, ranges
//! that wrap, day of month OR day of week when both are restricted) is
//! computed from the generated structure, not by parsing the text.
//!
//! Zones: Berlin and New York (one hour), Lord Howe (half an hour) and
//! Chatham (changes at 02:45 and 03:45), every change from 2025 to 2027.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use proptest::prelude::*;
use strata::schedule::Schedule;
use strata::tz::Zone;

const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
];

/// Half the window around a change, in minutes.
const HALF_WINDOW: i64 = 26 * 60;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

// ---------------------------------------------------------------- fields

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Minute,
    Hour,
    Dom,
    Month,
    Dow,
}

impl Kind {
    fn bounds(self) -> (u32, u32) {
        match self {
            Kind::Minute => (0, 59),
            Kind::Hour => (0, 23),
            Kind::Dom => (1, 31),
            Kind::Month => (1, 12),
            Kind::Dow => (0, 7),
        }
    }
}

/// One item of a field's list.
#[derive(Debug, Clone)]
enum Item {
    Star,
    StarStep(u32),
    Value(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
}

/// A field: its items and, per item, whether numbers are written as names.
#[derive(Debug, Clone)]
struct FieldSpec {
    kind: Kind,
    items: Vec<Item>,
    names: bool,
}

impl FieldSpec {
    fn number(&self, v: u32) -> String {
        match (self.kind, self.names) {
            (Kind::Month, true) => MONTHS[v as usize - 1].to_string(),
            (Kind::Dow, true) => DAYS[(v % 7) as usize].to_string(),
            _ => v.to_string(),
        }
    }

    fn text(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| match *item {
                Item::Star => "*".to_string(),
                Item::StarStep(n) => format!("*/{n}"),
                Item::Value(a) => self.number(a),
                Item::Range(a, b) => format!("{}-{}", self.number(a), self.number(b)),
                Item::RangeStep(a, b, n) => {
                    format!("{}-{}/{n}", self.number(a), self.number(b))
                }
            })
            .collect();
        items.join(",")
    }

    /// crontab(5): the field "starts with `*`".
    fn starts_with_star(&self) -> bool {
        matches!(self.items[0], Item::Star | Item::StarStep(_))
    }

    /// The values the field matches (days of week as 0-6).
    fn values(&self) -> BTreeSet<u32> {
        let (min, max) = self.kind.bounds();
        let mut out = BTreeSet::new();
        for item in &self.items {
            let (run, step): (Vec<u32>, u32) = match *item {
                Item::Star => ((min..=max).collect(), 1),
                Item::StarStep(n) => ((min..=max).collect(), n),
                Item::Value(a) => (vec![a], 1),
                Item::Range(a, b) => (self.run(a, b), 1),
                Item::RangeStep(a, b, n) => (self.run(a, b), n),
            };
            out.extend(run.into_iter().step_by(step as usize));
        }
        if self.kind == Kind::Dow {
            out = out.into_iter().map(|d| d % 7).collect();
        }
        out
    }

    /// `a-b`, wrapping past the end of the field when `a > b` (Sunday as
    /// 7 at the start of a day-of-week range is 0).
    fn run(&self, a: u32, b: u32) -> Vec<u32> {
        let (min, max) = self.kind.bounds();
        let (a, first, last) = match self.kind {
            Kind::Dow => (if a == 7 { 0 } else { a }, 0, 6),
            _ => (a, min, max),
        };
        if a <= b {
            (a..=b).collect()
        } else {
            (a..=last).chain(first..=b).collect()
        }
    }
}

/// A generated crontab(5) line's time fields.
#[derive(Debug, Clone)]
struct Cron {
    fields: [FieldSpec; 5],
}

impl Cron {
    fn text(&self) -> String {
        let parts: Vec<String> = self.fields.iter().map(FieldSpec::text).collect();
        parts.join(" ")
    }

    fn wildcard(&self) -> bool {
        self.fields[0].starts_with_star() || self.fields[1].starts_with_star()
    }
}

/// The model's compiled matcher.
struct Matcher {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    doms: BTreeSet<u32>,
    months: BTreeSet<u32>,
    dows: BTreeSet<u32>,
    either_day: bool,
}

impl Matcher {
    fn new(cron: &Cron) -> Matcher {
        let [m, h, dom, mon, dow] = &cron.fields;
        Matcher {
            minutes: m.values(),
            hours: h.values(),
            doms: dom.values(),
            months: mon.values(),
            dows: dow.values(),
            either_day: !dom.starts_with_star() && !dow.starts_with_star(),
        }
    }

    fn matches(&self, wall: &NaiveDateTime) -> bool {
        let dom = self.doms.contains(&wall.day());
        let dow = self.dows.contains(&wall.weekday().num_days_from_sunday());
        let day = if self.either_day {
            dom || dow
        } else {
            dom && dow
        };
        day && self.minutes.contains(&wall.minute())
            && self.hours.contains(&wall.hour())
            && self.months.contains(&wall.month())
    }
}

// ---------------------------------------------------------------- the model

/// The wall-clock minute at the instant `minute` (Unix minutes), from the
/// zone's offset at that instant.
fn wall_minute(tz: &jiff::tz::TimeZone, minute: i64) -> i64 {
    let ts = jiff::Timestamp::from_second(minute * 60).unwrap();
    let offset = i64::from(tz.to_offset(ts).seconds());
    assert_eq!(offset % 60, 0, "offsets in whole minutes");
    minute + offset / 60
}

fn civil(wall_minute: i64) -> NaiveDateTime {
    DateTime::from_timestamp(wall_minute * 60, 0)
        .unwrap()
        .naive_utc()
}

/// cron(8)'s fires in the minutes `(start, end]` (Unix minutes).
fn model_fires(cron: &Cron, tz: &jiff::tz::TimeZone, start: i64, end: i64) -> Vec<i64> {
    let m = Matcher::new(cron);
    let wildcard = cron.wildcard();
    let mut seen = wall_minute(tz, start);
    let mut out = Vec::new();
    for minute in start + 1..=end {
        let wall = wall_minute(tz, minute);
        let fires = if wildcard {
            m.matches(&civil(wall))
        } else {
            (seen + 1..=wall).any(|w| m.matches(&civil(w)))
        };
        if fires {
            out.push(minute);
        }
        seen = seen.max(wall);
    }
    out
}

// ---------------------------------------------------------------- generators

fn item(kind: Kind) -> impl Strategy<Value = Item> {
    let (min, max) = kind.bounds();
    let hi = if kind == Kind::Dow { 7 } else { max };
    prop_oneof![
        1 => (2..=(max / 2).max(2)).prop_map(Item::StarStep),
        3 => (min..=hi).prop_map(Item::Value),
        2 => (min..=hi, min..=hi).prop_map(|(a, b)| Item::Range(a, b)),
        1 => (min..=hi, min..=hi, 2..=6u32).prop_map(|(a, b, n)| Item::RangeStep(a, b, n)),
    ]
}

/// Minutes and hours: every form, biased towards the hours where clocks
/// change (1-4).
fn time_field(kind: Kind) -> impl Strategy<Value = FieldSpec> {
    let hour_value = prop_oneof![
        (1..=4u32).prop_map(Item::Value),
        (1..=3u32).prop_map(|a| Item::Range(a, a + 1))
    ];
    let first = prop_oneof![
        2 => Just(Item::Star),
        2 => item(kind).boxed(),
        if kind == Kind::Hour { 3 } else { 0 } => hour_value.boxed(),
    ];
    (first, prop::collection::vec(item(kind), 0..3)).prop_map(move |(first, rest)| {
        let mut items = vec![first];
        items.extend(rest);
        FieldSpec {
            kind,
            items,
            names: false,
        }
    })
}

/// Day fields: mostly `*`, so that most schedules fire in a window.
fn day_field(kind: Kind) -> impl Strategy<Value = FieldSpec> {
    let names = matches!(kind, Kind::Month | Kind::Dow);
    prop_oneof![
        4 => Just(vec![Item::Star]),
        1 => prop::collection::vec(item(kind), 1..3),
    ]
    .prop_flat_map(move |items| {
        (
            Just(items),
            if names {
                prop::bool::ANY.boxed()
            } else {
                Just(false).boxed()
            },
        )
    })
    .prop_map(move |(items, named)| FieldSpec {
        kind,
        // Names only for plain numbers in range of the names.
        names: named
            && items
                .iter()
                .all(|i| !matches!(i, Item::Star | Item::StarStep(_)))
            && !(kind == Kind::Dow
                && items.iter().any(|i| {
                    matches!(
                        i,
                        Item::Value(7)
                            | Item::Range(7, _)
                            | Item::Range(_, 7)
                            | Item::RangeStep(7, _, _)
                            | Item::RangeStep(_, 7, _)
                    )
                })),
        items,
    })
}

fn cron() -> impl Strategy<Value = Cron> {
    (
        time_field(Kind::Minute),
        time_field(Kind::Hour),
        day_field(Kind::Dom),
        day_field(Kind::Month),
        day_field(Kind::Dow),
    )
        .prop_map(|(m, h, dom, mon, dow)| Cron {
            fields: [m, h, dom, mon, dow],
        })
}

/// Every change of offset from 2025 to 2027 in each zone: (zone, Unix
/// minute of the change).
fn changes() -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    let from = jiff::Timestamp::from_second(1_735_689_600).unwrap(); // 2025-01-01
    let to = 1_830_297_600; // 2028-01-01
    for name in ZONES {
        let tz = jiff::tz::TimeZone::get(name).unwrap();
        for t in tz.following(from) {
            let s = t.timestamp().as_second();
            if s >= to {
                break;
            }
            out.push((name, s / 60));
        }
    }
    assert!(
        out.len() >= 20,
        "expected DST changes in {ZONES:?}: {out:?}"
    );
    out
}

fn instant(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn schedules_fire_when_cron_fires_them(
        cron in cron(),
        change in 0usize..1000,
        probes in prop::collection::vec(0i64..2 * HALF_WINDOW * 60, 8),
    ) {
        let all = changes();
        let (name, at_change) = all[change % all.len()];
        let tz = jiff::tz::TimeZone::get(name).unwrap();
        let zone = Zone::named(name).unwrap();
        let text = cron.text();
        let schedule = Schedule::parse(&text)
            .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        prop_assert_eq!(schedule.is_wildcard(), cron.wildcard(), "{}", text);

        let (start, end) = (at_change - HALF_WINDOW, at_change + HALF_WINDOW);
        let want: Vec<DateTime<Utc>> =
            model_fires(&cron, &tz, start, end).into_iter().map(instant).collect();

        // Every fire in the window, one after the other.
        let mut got = Vec::new();
        let mut t = instant(start);
        while let Some(next) = schedule.next_after(&t, &zone).filter(|n| *n <= instant(end)) {
            got.push(next);
            t = next;
            prop_assert!(got.len() <= want.len(), "{}: more fires than cron in {}", text, name);
        }
        let show = |v: &[DateTime<Utc>]| -> Vec<String> {
            v.iter().map(|t| zone.at(t).to_rfc3339()).collect()
        };
        prop_assert_eq!(show(&got), show(&want), "{} in {}", text, name);

        // From random instants (any second): the next fire, and the latest
        // one since the window's start.
        for probe in probes {
            let p = instant(start) + chrono::TimeDelta::seconds(probe);
            let next = schedule.next_after(&p, &zone);
            match want.iter().find(|f| **f > p) {
                Some(f) => prop_assert_eq!(next, Some(*f), "{} after {}", text, zone.at(&p)),
                None => prop_assert!(next.is_none_or(|n| n > instant(end)), "{} after {}", text, zone.at(&p)),
            }
            let last = schedule.last_fire_between(&instant(start), &p, &zone);
            prop_assert_eq!(last, want.iter().rev().find(|f| **f <= p).copied(), "{} up to {}", text, zone.at(&p));
        }
    }
}

/// The model itself, on the cases the issue names (so that a wrong model
/// cannot make the property vacuous).
#[test]
fn the_model_reads_crontab_and_cron_as_documented() {
    let field = |kind, items: Vec<Item>| FieldSpec {
        kind,
        items,
        names: false,
    };
    let daily_0230 = Cron {
        fields: [
            field(Kind::Minute, vec![Item::Value(30)]),
            field(Kind::Hour, vec![Item::Value(2)]),
            field(Kind::Dom, vec![Item::Star]),
            field(Kind::Month, vec![Item::Star]),
            field(Kind::Dow, vec![Item::Star]),
        ],
    };
    assert_eq!(daily_0230.text(), "30 2 * * *");
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let show = |v: Vec<i64>| -> Vec<String> {
        v.into_iter()
            .map(|m| {
                let ts = jiff::Timestamp::from_second(m * 60).unwrap();
                ts.to_zoned_datetime(berlin.clone())
                    .strftime("%F %T%:z")
                    .to_string()
            })
            .collect()
    };
    // 2026-10-25 01:00Z: the repeated 02:30 fires once, the first time.
    let autumn = 1_792_890_000 / 60;
    assert_eq!(
        show(model_fires(
            &daily_0230,
            &berlin,
            autumn - 120,
            autumn + 120
        )),
        ["2026-10-25 02:30:00+02:00"]
    );
    // 2026-03-29 01:00Z: the missing 02:30 fires when the gap ends.
    let spring = 1_774_746_000 / 60;
    assert_eq!(
        show(model_fires(
            &daily_0230,
            &berlin,
            spring - 120,
            spring + 120
        )),
        ["2026-03-29 03:00:00+02:00"]
    );
    // `30 * * * *` is a wildcard job: both passes, nothing in the gap.
    let mut hourly = daily_0230.clone();
    hourly.fields[1] = field(Kind::Hour, vec![Item::Star]);
    assert!(hourly.wildcard());
    assert_eq!(
        show(model_fires(&hourly, &berlin, autumn - 60, autumn + 60)),
        ["2026-10-25 02:30:00+02:00", "2026-10-25 02:30:00+01:00"]
    );
    assert_eq!(
        show(model_fires(&hourly, &berlin, spring - 60, spring + 60)),
        ["2026-03-29 01:30:00+01:00", "2026-03-29 03:30:00+02:00"]
    );
    // SAT-SUN wraps; 7 is Sunday; FRI-MON with a step counts along the run.
    let dow = |items| {
        field(Kind::Dow, items)
            .values()
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(dow(vec![Item::Range(6, 0)]), [0, 6]);
    assert_eq!(dow(vec![Item::Value(7)]), [0]);
    assert_eq!(dow(vec![Item::RangeStep(5, 1, 2)]), [0, 5]);
}

//! Special days and event windows, sans-IO: which day type a local date
//! has (a dated special day, a public holiday, or an ordinary day), and
//! which announced event window holds a door at an instant.
//!
//! Everything here comes from the rules file, so every size is bounded
//! and checked where it is read (the `MAX_*` constants below, documented
//! in `docs/rules.md`): a bad value is an error naming file, line and key.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::RulesError;

/// At most this many `special_days` entries in a snapshot.
pub const MAX_SPECIAL_DAYS: usize = 1000;
/// A special-day range covers at most this many days.
pub const MAX_SPAN_DAYS: i32 = 366;
/// At most this many `event_windows` in a snapshot.
pub const MAX_EVENT_WINDOWS: usize = 1000;
/// An event window lasts at most this long (wall-clock hours).
pub const MAX_WINDOW_HOURS: i64 = 7 * 24;
/// A special day's or event window's name is at most this many bytes.
pub const MAX_NAME: usize = 200;
/// A day type name: 1 to this many characters of `a-z 0-9 _ -`.
pub const MAX_DAY_TYPE: usize = 32;
/// A schedule lists intervals for at most this many day types …
pub const MAX_DAY_TYPES: usize = 32;
/// … each with at most this many intervals.
pub const MAX_DAY_TYPE_INTERVALS: usize = 16;

/// The day type of a date in the `holidays` list.
pub const HOLIDAY: &str = "holiday";

/// The name of a kind of day (`holiday`, `event`, `holiday_b`, …): 1 to
/// [`MAX_DAY_TYPE`] characters of `a-z`, `0-9`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DayType(String);

impl DayType {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DayType {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, RulesError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_DAY_TYPE
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RulesError::Syntax(format!(
                "day type {s:?} must be 1 to {MAX_DAY_TYPE} characters of a-z, 0-9, _ and -"
            )))
        }
    }
}

impl fmt::Display for DayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DayType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A name for people (a special day's, an event window's): at most
/// [`MAX_NAME`] bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() > MAX_NAME || s.chars().any(char::is_control) {
            return Err(serde::de::Error::custom(format!(
                "name must be at most {MAX_NAME} bytes without control characters"
            )));
        }
        Ok(Self(s))
    }
}

/// One date or an inclusive range of dates: `2026-12-12` or
/// `2026-12-24/2027-01-01` (at most [`MAX_SPAN_DAYS`] days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dates {
    /// The first day.
    pub first: Date,
    /// The last day (inclusive).
    pub last: Date,
}

impl Dates {
    /// Whether `date` is one of these days.
    pub fn contains(self, date: Date) -> bool {
        self.first <= date && date <= self.last
    }
}

impl FromStr for Dates {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, RulesError> {
        let bad = |why: &str| RulesError::Syntax(format!("dates {s:?}: {why}"));
        let date = |t: &str| {
            t.trim()
                .parse::<Date>()
                .map_err(|_| bad("not YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD"))
        };
        let (first, last) = match s.split_once('/') {
            Some((a, b)) => (date(a)?, date(b)?),
            None => (date(s)?, date(s)?),
        };
        if last < first {
            return Err(bad("the range ends before it starts"));
        }
        let days = first.until(last).map_or(i32::MAX, |span| span.get_days());
        if days >= MAX_SPAN_DAYS {
            return Err(bad(&format!("a range covers at most {MAX_SPAN_DAYS} days")));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for Dates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}/{}", self.first, self.last)
        }
    }
}

impl Serialize for Dates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A dated special day (or range of days) and its day type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialDay {
    /// `2026-12-12` or `2026-12-24/2027-01-01`.
    pub dates: Dates,
    /// Which intervals schedules use on these days.
    pub day_type: DayType,
    /// Shown in explanations (`portier snapshot decide`, the why box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Label>,
}

/// A local wall-clock window: `2026-12-12T19:00/23:00`, or with a full
/// end for a window over midnight: `2026-12-12T22:00/2026-12-13T02:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start (local wall-clock time).
    pub start: DateTime,
    /// End, exclusive (local wall-clock time).
    pub end: DateTime,
}

impl FromStr for Window {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, RulesError> {
        let bad = |why: &str| RulesError::Syntax(format!("window {s:?}: {why}"));
        let form = "not YYYY-MM-DDTHH:MM/HH:MM or YYYY-MM-DDTHH:MM/YYYY-MM-DDTHH:MM";
        let (a, b) = s.split_once('/').ok_or_else(|| bad(form))?;
        if !a.contains('T') {
            return Err(bad(form));
        }
        let start: DateTime = a.trim().parse().map_err(|_| bad(form))?;
        let end: DateTime = if b.contains('T') {
            b.trim().parse().map_err(|_| bad(form))?
        } else {
            let time = b.trim().parse().map_err(|_| bad(form))?;
            start.date().to_datetime(time)
        };
        // Minutes only, like the schedules.
        if [start, end]
            .iter()
            .any(|t| t.second() != 0 || t.subsec_nanosecond() != 0)
        {
            return Err(bad(form));
        }
        if end <= start {
            return Err(bad(
                "the end is not after the start (a window over midnight needs a full end date)",
            ));
        }
        if end.duration_since(start) > jiff::SignedDuration::from_hours(MAX_WINDOW_HOURS) {
            return Err(bad(&format!(
                "a window lasts at most {MAX_WINDOW_HOURS} hours"
            )));
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |t: DateTime| format!("{:02}:{:02}", t.hour(), t.minute());
        if self.end.date() == self.start.date() {
            write!(
                f,
                "{}T{}/{}",
                self.start.date(),
                hm(self.start),
                hm(self.end)
            )
        } else {
            write!(
                f,
                "{}T{}/{}T{}",
                self.start.date(),
                hm(self.start),
                self.end.date(),
                hm(self.end)
            )
        }
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A one-off window in which a door group is in a mode (`unlocked`,
/// `free_rotation`), e.g. for an announced group meeting. It outranks the
/// weekly `door_mode_schedules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventWindow {
    /// When (local wall-clock time in the snapshot's time zone).
    pub window: Window,
    /// The doors.
    pub door_group: String,
    /// The mode, passed to the doors like a `door_mode_schedules` mode.
    pub mode: String,
    /// Shown in explanations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Label>,
}

/// What kind of day a local date is, for explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayKind<'a> {
    /// The day type: a special day's, `holiday` for a date of the
    /// `holidays` list, `None` for an ordinary day.
    pub day_type: Option<&'a str>,
    /// The special day's name, when it has one.
    pub name: Option<&'a str>,
}

/// The special days and holidays of a snapshot, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    /// Special days sorted by first date, without overlaps.
    special: Vec<SpecialDay>,
    /// Sorted, deduplicated.
    holidays: Vec<Date>,
}

impl Calendar {
    /// Index special days and holidays; overlapping special days are
    /// refused, naming both.
    pub fn new(special_days: &[SpecialDay], holidays: &[Date]) -> Result<Self, RulesError> {
        if special_days.len() > MAX_SPECIAL_DAYS {
            return Err(RulesError::At {
                key: "special_days".into(),
                value: "special_days".into(),
                message: format!("{} entries, at most {MAX_SPECIAL_DAYS}", special_days.len()),
            });
        }
        let mut special = special_days.to_vec();
        special.sort_by_key(|d| (d.dates.first, d.dates.last));
        for pair in special.windows(2) {
            if pair[1].dates.first <= pair[0].dates.last {
                return Err(RulesError::At {
                    key: "special_days".into(),
                    value: pair[1].dates.to_string(),
                    message: format!(
                        "special days {} and {} overlap",
                        pair[0].dates, pair[1].dates
                    ),
                });
            }
        }
        let mut holidays = holidays.to_vec();
        holidays.sort();
        holidays.dedup();
        Ok(Self { special, holidays })
    }

    /// The day type of `date`: a special day's (which takes precedence
    /// over the `holidays` list), `holiday` for a listed holiday, `None`
    /// for an ordinary day.
    pub fn day_type(&self, date: Date) -> Option<&str> {
        self.kind(date).day_type
    }

    /// The day type and the special day's name of `date`.
    pub fn kind(&self, date: Date) -> DayKind<'_> {
        let after = self.special.partition_point(|d| d.dates.first <= date);
        if let Some(d) = after.checked_sub(1).map(|i| &self.special[i])
            && d.dates.contains(date)
        {
            return DayKind {
                day_type: Some(d.day_type.as_str()),
                name: d.name.as_ref().map(Label::as_str),
            };
        }
        DayKind {
            day_type: self
                .holidays
                .binary_search(&date)
                .is_ok()
                .then_some(HOLIDAY),
            name: None,
        }
    }
}

/// An event window resolved to instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// First instant inside.
    pub start: Timestamp,
    /// First instant after.
    pub end: Timestamp,
    /// Index into the snapshot's `event_windows`.
    pub index: usize,
}

/// The event windows of a snapshot as instants, sorted by start.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    resolved: Vec<Resolved>,
}

impl Windows {
    /// Resolve every window's wall-clock start and end in `tz`. A time in
    /// a DST gap is moved forward by the gap (02:30 on a spring-forward
    /// night is 03:30 summer time); a time in a fold is its first
    /// occurrence (the earlier instant), as jiff's `compatible` rule does.
    pub fn new(windows: &[EventWindow], tz: &TimeZone) -> Result<Self, RulesError> {
        if windows.len() > MAX_EVENT_WINDOWS {
            return Err(RulesError::At {
                key: "event_windows".into(),
                value: "event_windows".into(),
                message: format!("{} entries, at most {MAX_EVENT_WINDOWS}", windows.len()),
            });
        }
        let instant = |w: &EventWindow, t: DateTime| {
            tz.to_ambiguous_timestamp(t)
                .compatible()
                .map_err(|e| RulesError::At {
                    key: "event_windows".into(),
                    value: w.window.to_string(),
                    message: format!("window {} is not a time in this zone: {e}", w.window),
                })
        };
        let mut resolved = Vec::with_capacity(windows.len());
        for (index, w) in windows.iter().enumerate() {
            let (start, end) = (instant(w, w.window.start)?, instant(w, w.window.end)?);
            if end <= start {
                // Only a window inside one DST gap can end up empty.
                return Err(RulesError::At {
                    key: "event_windows".into(),
                    value: w.window.to_string(),
                    message: format!("window {} lies inside a DST gap", w.window),
                });
            }
            resolved.push(Resolved { start, end, index });
        }
        resolved.sort_by_key(|r| (r.start, r.index));
        Ok(Self { resolved })
    }

    /// The windows in force at `now`, the latest start first (a shorter
    /// window announced inside a longer one wins; at the same start, the
    /// later entry of the file).
    pub fn at(&self, now: Timestamp) -> impl Iterator<Item = &Resolved> {
        let upto = self.resolved.partition_point(|r| r.start <= now);
        let earliest = now
            .checked_sub(jiff::SignedDuration::from_hours(MAX_WINDOW_HOURS + 2))
            .unwrap_or(Timestamp::MIN);
        self.resolved[..upto]
            .iter()
            .rev()
            .take_while(move |r| r.start >= earliest)
            .filter(move |r| now < r.end)
    }
}

impl std::borrow::Borrow<str> for DayType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::{SourceError, parse_rules};
    use super::super::{Header, ModeSource};
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const BASE: &str = r#"
gateway_id = "gw1"
building = "b1"
time_zone = "Europe/Amsterdam"
holidays = ["2026-12-25", "2027-04-27"]
special_days = [
  { dates = "2026-12-24/2027-01-01", day_type = "holiday_b", name = "Christmas break" },
  { dates = "2026-12-12", day_type = "event", name = "Winter concert" },
  { dates = "2027-03-28", day_type = "event" },
  { dates = "2026-10-25", day_type = "event" },
]

[schedules.office]
working_days_only = true
mon = ["08:00-18:00"]
tue = ["08:00-18:00"]
wed = ["08:00-18:00"]
thu = ["08:00-18:00"]
fri = ["08:00-18:00"]

[schedules.sports]
mon = ["17:00-22:00"]
sat = ["09:00-17:00"]
[schedules.sports.day_types]
holiday_b = ["08:00-22:00"]
holiday = ["10:00-14:00"]
event = ["22:00-02:00", "01:30-03:30"]

[schedules.evenings]
thu = ["22:00-02:00"]

[doors.hall]
[doors.gym]
[door_groups]
all = ["hall", "gym"]
gym = ["gym"]

[[event_windows]]
window = "2026-12-12T19:00/23:00"
door_group = "all"
mode = "unlocked"
name = "Winter concert"

[[event_windows]]
window = "2026-12-31T22:00/2027-01-01T02:00"
door_group = "gym"
mode = "unlocked"

[[event_windows]]
window = "2026-12-12T20:00/21:00"
door_group = "gym"
mode = "card_only"

[[event_windows]]
window = "2027-03-28T02:30/04:00"
door_group = "gym"
mode = "unlocked"

[[event_windows]]
window = "2026-10-25T02:30/03:30"
door_group = "gym"
mode = "unlocked"

[[door_mode_schedules]]
door = "hall"
schedule = "office"
mode = "unlocked"
first_person_in = true

[[door_mode_schedules]]
door = "gym"
schedule = "sports"
mode = "unlocked"
"#;

    fn header_of(text: &str) -> Result<Header, SourceError> {
        let s = parse_rules(
            "rules.toml",
            text,
            1,
            ts("2026-10-01T00:00:00Z"),
            ts("2028-01-01T00:00:00Z"),
        )?;
        Ok(Header::new(s).unwrap())
    }

    fn header() -> Header {
        header_of(BASE).unwrap()
    }

    fn err(text: &str) -> String {
        header_of(text).unwrap_err().to_string()
    }

    #[test]
    fn day_types_come_from_special_days_then_holidays() {
        let h = header();
        let day = |s: &str| {
            let (_, k) = h.day_of(ts(s));
            (k.day_type, k.name)
        };
        assert_eq!(
            day("2026-12-12T12:00:00Z"),
            (Some("event"), Some("Winter concert"))
        );
        // 2026-12-25 is in both lists: the special day wins.
        assert_eq!(
            day("2026-12-25T12:00:00Z"),
            (Some("holiday_b"), Some("Christmas break"))
        );
        assert_eq!(day("2027-04-27T12:00:00Z"), (Some("holiday"), None));
        assert_eq!(day("2026-12-11T12:00:00Z"), (None, None));
        // The range's edges, in local time: 23:30Z on 23 Dec is 00:30 on
        // the 24th in Amsterdam; 23:00Z on 1 Jan is already the 2nd.
        assert_eq!(day("2026-12-23T23:30:00Z").0, Some("holiday_b"));
        assert_eq!(day("2026-12-23T22:59:00Z").0, None);
        assert_eq!(day("2027-01-01T22:59:00Z").0, Some("holiday_b"));
        assert_eq!(day("2027-01-01T23:00:00Z").0, None);
    }

    #[test]
    fn a_schedule_uses_its_day_type_intervals_or_else_its_weekdays() {
        let h = header();
        let sports = |s: &str| h.schedule_open("sports", ts(s));
        let office = |s: &str| h.schedule_open("office", ts(s));
        // Monday 28 Dec 2026 is holiday_b: 08:00-22:00 instead of 17:00-22:00.
        assert!(sports("2026-12-28T08:30:00Z")); // 09:30 local
        assert!(!sports("2026-12-28T06:59:00Z")); // 07:59 local
        assert!(!sports("2026-12-28T21:00:00Z")); // 22:00 local
        // The office schedule does not name holiday_b and is working days
        // only: a special day is not a working day.
        assert!(!office("2026-12-28T09:00:00Z"));
        // Monday 4 Jan 2027 is ordinary again.
        assert!(office("2027-01-04T09:00:00Z"));
        assert!(!sports("2027-01-04T09:00:00Z"));
        assert!(sports("2027-01-04T17:00:00Z")); // 18:00 local
        // Tuesday 27 Apr 2027, a listed holiday: sports' `holiday` list.
        assert!(sports("2027-04-27T09:00:00Z")); // 11:00 CEST
        assert!(!sports("2027-04-27T12:00:00Z")); // 14:00 CEST
        assert!(!office("2027-04-27T09:00:00Z"));
    }

    #[test]
    fn a_schedule_without_the_day_type_keeps_its_weekdays_unless_working_days_only() {
        let h = header();
        // Thursday 24 Dec is holiday_b; `evenings` does not name it and is
        // not working-days-only: its Thursday interval still opens.
        assert!(h.schedule_open("evenings", ts("2026-12-24T22:00:00Z"))); // 23:00
        assert!(h.schedule_open("evenings", ts("2026-12-25T00:30:00Z"))); // Fri 01:30
        assert!(!h.schedule_open("evenings", ts("2026-12-25T01:00:00Z"))); // 02:00
    }

    #[test]
    fn a_midnight_interval_belongs_to_the_day_it_starts_on_across_the_year_end() {
        let h = header();
        let sports = |s: &str| h.schedule_open("sports", ts(s));
        // Saturday 2 Jan 2027 is ordinary: 09:00-17:00 only. Friday 1 Jan
        // is holiday_b (08:00-22:00) and nothing spans into the 2nd.
        assert!(sports("2027-01-01T20:59:00Z")); // Fri 21:59
        assert!(!sports("2027-01-01T21:00:00Z")); // Fri 22:00
        assert!(!sports("2027-01-01T23:30:00Z")); // Sat 00:30
        assert!(sports("2027-01-02T08:00:00Z")); // Sat 09:00
        // Saturday 12 Dec 2026 is an event day: 22:00-02:00 starts on the
        // 12th and runs into Sunday the 13th (an ordinary Sunday).
        assert!(sports("2026-12-12T21:00:00Z")); // Sat 22:00
        assert!(sports("2026-12-13T00:59:00Z")); // Sun 01:59
        assert!(!sports("2026-12-13T01:00:00Z")); // Sun 02:00
        // … and the Saturday weekday interval does not apply that day.
        assert!(!sports("2026-12-12T09:00:00Z")); // Sat 10:00
    }

    #[test]
    fn special_day_intervals_across_dst() {
        let h = header();
        let sports = |s: &str| h.schedule_open("sports", ts(s));
        // 2027-03-28 (event): 01:30-03:30 local, 02:00-03:00 does not
        // exist. Open 01:30-01:59 CET and 03:00-03:29 CEST.
        assert!(!sports("2027-03-28T00:29:59Z"));
        assert!(sports("2027-03-28T00:30:00Z"));
        assert!(sports("2027-03-28T01:00:00Z")); // 03:00 CEST
        assert!(!sports("2027-03-28T01:30:00Z")); // 03:30 CEST
        // 2026-10-25 (event): 02:00-02:59 happens twice; both are open.
        assert!(sports("2026-10-25T00:30:00Z")); // 02:30 CEST
        assert!(sports("2026-10-25T01:30:00Z")); // 02:30 CET
        assert!(!sports("2026-10-25T02:30:00Z")); // 03:30 CET
    }

    #[test]
    fn an_event_window_outranks_the_weekly_door_mode_schedule() {
        let h = header();
        let mode = |door: &str, s: &str| h.door_mode(door, ts(s));
        // Saturday 12 Dec, 19:00-23:00 local: the hall is unlocked.
        assert_eq!(mode("hall", "2026-12-12T17:59:00Z"), None);
        assert_eq!(mode("hall", "2026-12-12T18:00:00Z"), Some("unlocked"));
        assert_eq!(mode("hall", "2026-12-12T21:59:00Z"), Some("unlocked"));
        assert_eq!(mode("hall", "2026-12-12T22:00:00Z"), None);
        // The gym: a shorter window inside (20:00-21:00, card_only) wins.
        assert_eq!(mode("gym", "2026-12-12T19:30:00Z"), Some("card_only"));
        assert_eq!(mode("gym", "2026-12-12T20:00:00Z"), Some("unlocked"));
        assert!(matches!(
            h.scheduled_mode("gym", ts("2026-12-12T19:30:00Z"))
                .unwrap()
                .source,
            ModeSource::EventWindow(2)
        ));
        // A window over the year end.
        assert_eq!(mode("gym", "2026-12-31T20:59:00Z"), Some("unlocked")); // sports (holiday_b)
        assert!(h.event_window("gym", ts("2026-12-31T21:00:00Z")).is_some());
        assert!(h.event_window("gym", ts("2027-01-01T00:59:00Z")).is_some());
        assert!(h.event_window("gym", ts("2027-01-01T01:00:00Z")).is_none());
        assert_eq!(
            h.event_window("hall", ts("2026-12-12T18:00:00Z"))
                .and_then(|w| w.name.as_ref())
                .map(Label::as_str),
            Some("Winter concert")
        );
    }

    #[test]
    fn event_windows_in_a_dst_gap_or_fold() {
        let h = header();
        let w = |s: &str| h.event_window("gym", ts(s)).is_some();
        // 2027-03-28T02:30 does not exist: the window starts at 03:30 CEST
        // (01:30Z) and ends at 04:00 CEST (02:00Z).
        assert!(!w("2027-03-28T01:29:59Z"));
        assert!(w("2027-03-28T01:30:00Z"));
        assert!(!w("2027-03-28T02:00:00Z"));
        // 2026-10-25T02:30 happens twice: the window starts at the first
        // (00:30Z, CEST) and ends at 03:30 CET (02:30Z): two real hours.
        assert!(!w("2026-10-25T00:29:59Z"));
        assert!(w("2026-10-25T00:30:00Z"));
        assert!(w("2026-10-25T02:29:59Z"));
        assert!(!w("2026-10-25T02:30:00Z"));
    }

    #[test]
    fn first_person_in_is_on_its_schedule_entry_only() {
        let h = header();
        // Monday 30 Nov 2026, 09:00 local.
        let at = ts("2026-11-30T08:00:00Z");
        assert_eq!(h.door_mode("hall", at), Some("unlocked"));
        assert_eq!(
            h.first_person_in_day("hall", at),
            Some("2026-11-30".parse().unwrap())
        );
        assert_eq!(
            h.first_person_in_day("gym", ts("2026-11-30T17:00:00Z")),
            None
        );
        // An event window does not wait for anyone.
        assert_eq!(
            h.first_person_in_day("hall", ts("2026-12-12T18:00:00Z")),
            None
        );
        // Outside the schedule there is nothing to wait for.
        assert_eq!(
            h.first_person_in_day("hall", ts("2026-11-30T18:00:00Z")),
            None
        );
    }

    #[test]
    fn a_snapshot_without_the_new_fields_decides_as_before() {
        // The new fields are left out when empty or false, so an old
        // snapshot's header encodes to the same bytes.
        let old = BASE.split("special_days").next().unwrap().to_owned()
            + "[schedules.office]\nmon = [\"08:00-18:00\"]\n[doors.hall]\n\
               [[door_mode_schedules]]\ndoor = \"hall\"\nschedule = \"office\"\nmode = \"unlocked\"\n";
        let h = header_of(&old).unwrap();
        let cbor = serde_cbor::to_vec(&h.snapshot().without_credentials()).unwrap();
        let text = String::from_utf8_lossy(&cbor);
        for new in [
            "special_days",
            "event_windows",
            "day_types",
            "first_person_in",
        ] {
            assert!(!text.contains(new), "{new} written for an old snapshot");
        }
        assert_eq!(
            h.door_mode("hall", ts("2026-11-30T08:00:00Z")),
            Some("unlocked")
        );
        assert_eq!(
            h.first_person_in_day("hall", ts("2026-11-30T08:00:00Z")),
            None
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let overlap = BASE.replace(
            "{ dates = \"2026-12-12\", day_type = \"event\", name = \"Winter concert\" },",
            "{ dates = \"2026-12-30\", day_type = \"event\" },",
        );
        let e = err(&overlap);
        assert!(
            e.starts_with("rules.toml:8: key `special_days`: ")
                && e.contains("2026-12-24/2027-01-01")
                && e.contains("2026-12-30"),
            "{e}"
        );
        let e = err(&BASE.replace("2027-04-27\"]", "2027-04-27\"]\nspecial_days_x = 1"));
        assert!(e.contains("rules.toml:6"), "{e}");
        let e = err(&BASE.replace(
            "day_type = \"event\" },\n  { dates = \"2026-10-25\"",
            "day_type = \"Event!\" },\n  { dates = \"2026-10-25\"",
        ));
        assert!(
            e.starts_with("rules.toml:9:") && e.contains("day type"),
            "{e}"
        );
        let e = err(&BASE.replace("2026-12-24/2027-01-01", "2026-12-24/2028-01-01"));
        assert!(e.starts_with("rules.toml:7:") && e.contains("366"), "{e}");
        let e = err(&BASE.replace("2026-12-12T19:00/23:00", "2026-12-12T23:00/01:00"));
        assert!(
            e.starts_with("rules.toml:39: key `window`: ") && e.contains("full end date"),
            "{e}"
        );
        let e = err(&BASE.replace(
            "2026-12-12T20:00/21:00",
            "2026-12-12T20:00/2026-12-20T21:00",
        ));
        assert!(
            e.starts_with("rules.toml:50:") && e.contains("168 hours"),
            "{e}"
        );
        let e = err(&BASE.replace(
            "door_group = \"gym\"\nmode = \"card_only\"",
            "door_group = \"pool\"\nmode = \"card_only\"",
        ));
        assert!(
            e.starts_with("rules.toml:51: key `event_windows`: ") && e.contains("pool"),
            "{e}"
        );
        let long = format!("name = \"{}\"", "x".repeat(MAX_NAME + 1));
        let e = err(&BASE.replace("name = \"Winter concert\"\n", &format!("{long}\n")));
        assert!(
            e.starts_with("rules.toml:42: key `name`: ") && e.contains("200"),
            "{e}"
        );
        let many = (0..=MAX_DAY_TYPE_INTERVALS)
            .map(|_| "\"01:00-02:00\"")
            .collect::<Vec<_>>()
            .join(", ");
        let e = err(&BASE.replace(
            "holiday = [\"10:00-14:00\"]",
            &format!("holiday = [{many}]"),
        ));
        assert!(
            e.starts_with("rules.toml:26: key `schedules.sports.day_types`: "),
            "{e}"
        );
        let many = (0..=MAX_EVENT_WINDOWS)
            .map(|_| "[[event_windows]]\nwindow = \"2027-01-05T10:00/11:00\"\ndoor_group = \"gym\"\nmode = \"unlocked\"\n")
            .collect::<String>();
        let e = err(&format!("{BASE}{many}"));
        assert!(
            e.starts_with("rules.toml:38: key `event_windows`: ") && e.contains("at most 1000"),
            "{e}"
        );
        let e = err(&BASE.replace("first_person_in = true", "first_person_in = \"yes\""));
        assert!(e.contains("first_person_in"), "{e}");
    }

    /// The weekly rule as it was before special days (the oracle): a
    /// schedule without `day_types`, with holidays only, must answer
    /// exactly as it did.
    fn open_before(s: &super::super::Schedule, holidays: &[Date], date: Date, minute: u16) -> bool {
        use jiff::civil::Weekday;
        if s.always {
            return true;
        }
        let day = |d: Date| match d.weekday() {
            Weekday::Monday => &s.mon,
            Weekday::Tuesday => &s.tue,
            Weekday::Wednesday => &s.wed,
            Weekday::Thursday => &s.thu,
            Weekday::Friday => &s.fri,
            Weekday::Saturday => &s.sat,
            Weekday::Sunday => &s.sun,
        };
        let usable = |d: Date| {
            !s.working_days_only
                || (!matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
                    && holidays.binary_search(&d).is_err())
        };
        let spans = |i: &super::super::Interval| i.end <= i.start;
        if usable(date)
            && day(date).iter().any(|i| {
                if spans(i) {
                    minute >= i.start
                } else {
                    i.start <= minute && minute < i.end
                }
            })
        {
            return true;
        }
        date.yesterday()
            .is_ok_and(|y| usable(y) && day(y).iter().any(|i| spans(i) && minute < i.end))
    }

    proptest::proptest! {
        #[test]
        fn without_special_days_a_schedule_answers_as_before(
            working in proptest::bool::ANY,
            intervals in proptest::collection::vec((0u16..1440, 0u16..=1440), 0..4),
            weekdays in proptest::collection::vec(0usize..7, 0..4),
            holiday_offsets in proptest::collection::vec(0i64..14, 0..4),
            day in 0i64..14,
            minute in 0u16..1440,
        ) {
            let mut s = super::super::Schedule {
                working_days_only: working,
                ..Default::default()
            };
            for ((start, end), w) in intervals.iter().zip(weekdays.iter().cycle()) {
                let i = super::super::Interval { start: *start, end: *end };
                [&mut s.mon, &mut s.tue, &mut s.wed, &mut s.thu, &mut s.fri, &mut s.sat, &mut s.sun][*w].push(i);
            }
            let base: Date = "2026-12-21".parse().unwrap();
            let at = |n: i64| base.checked_add(jiff::Span::new().days(n)).unwrap();
            let mut holidays: Vec<Date> = holiday_offsets.iter().map(|n| at(*n)).collect();
            holidays.sort();
            holidays.dedup();
            let calendar = Calendar::new(&[], &holidays).unwrap();
            proptest::prop_assert_eq!(
                s.is_open(&calendar, at(day), minute),
                open_before(&s, &holidays, at(day), minute)
            );
        }
    }

    #[test]
    fn dates_and_windows_read_back_as_written() {
        for text in ["2026-12-12", "2026-12-24/2027-01-01"] {
            assert_eq!(text.parse::<Dates>().unwrap().to_string(), text);
        }
        for text in [
            "2026-12-12T19:00/23:00",
            "2026-12-31T22:00/2027-01-01T02:00",
        ] {
            assert_eq!(text.parse::<Window>().unwrap().to_string(), text);
        }
        for bad in [
            "2026-12-12T19:00:30/23:00",
            "2026-12-12T19:00",
            "2026-12-12/23:00",
            "2026-12-12T19:00/19:00",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
        assert!("2026-12-12/2026-12-11".parse::<Dates>().is_err());
        assert!("holiday b".parse::<DayType>().is_err());
        assert!("x".repeat(MAX_DAY_TYPE + 1).parse::<DayType>().is_err());
    }
}

//! Signed rule snapshots and the offline decision engine (sans-IO).
//!
//! This module owns the rule model ([`Snapshot`] and its parts), the decision
//! function ([`decide`] / [`decide_with`]), Wiegand decoding ([`wiegand`]),
//! the signed envelope, verification and deltas ([`envelope`]) and the
//! human-readable TOML rules format ([`source`]). It never touches files,
//! sockets, sled or the clock: bytes and `now` come in, values go out.
//!
//! Guarantees: a [`VerifiedSnapshot`] can only be made by
//! [`envelope::verify_snapshot`] or [`envelope::apply_delta`]; [`decide`]
//! checks in the documented order (see `docs/rules.md`) and never panics.

pub mod areas;
pub mod calendar;
pub mod envelope;
pub mod fuzz;
pub mod record;
pub mod source;
pub mod wiegand;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::ids::DoorId;

pub use calendar::{Calendar, DayKind, DayType, EventWindow, SpecialDay};
pub use envelope::{
    Delta, DeltaError, SignedBlob, TrustedKeys, VerifiedDelta, VerifiedRecords, VerifiedSnapshot,
    VerifyError, apply_delta, verify_delta, verify_snapshot, verify_snapshot_records,
};

/// The snapshot schema this build understands (2: credentials as a
/// section of compact records, signature over the payload digest).
pub const SCHEMA: u32 = 2;

/// Errors of the rule model (validation and lookups).
#[derive(Debug, Error)]
pub enum RulesError {
    /// The time zone name is not known to the time zone database.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    /// A reference points at something that does not exist.
    #[error("{0}")]
    Reference(String),
    /// An interval or key could not be parsed.
    #[error("{0}")]
    Syntax(String),
    /// The credential store failed.
    #[error("credential lookup failed: {0}")]
    Lookup(String),
    /// A value of the file does not hold together with the rest; `value`
    /// is its text, so that the rules file's line can be found.
    #[error("{key}: {message}")]
    At {
        /// The key (`special_days`, `event_windows`, …).
        key: String,
        /// The offending value as written (without quotes).
        value: String,
        /// What is wrong.
        message: String,
    },
}

/// The identity of a card: a Wiegand format with its fields, or raw bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum CredentialKey {
    /// HID H10301, 26 bits: 8-bit facility, 16-bit number.
    H10301 {
        /// Facility code.
        facility: u32,
        /// Card number.
        number: u64,
    },
    /// HID Corporate 1000, 35 bits: 12-bit company, 20-bit number.
    #[serde(rename = "corporate1000")]
    Corporate1000 {
        /// Company code.
        company: u32,
        /// Card number.
        number: u64,
    },
    /// HID H10304, 37 bits: 16-bit facility, 19-bit number.
    H10304 {
        /// Facility code.
        facility: u32,
        /// Card number.
        number: u64,
    },
    /// Any other length: `HEX/BITS`, left-aligned, unused bits zero.
    Raw {
        /// Canonical `HEX/BITS` text.
        data: String,
    },
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::H10301 { facility, number } => write!(f, "h10301:{facility}:{number}"),
            Self::Corporate1000 { company, number } => {
                write!(f, "corporate1000:{company}:{number}")
            }
            Self::H10304 { facility, number } => write!(f, "h10304:{facility}:{number}"),
            Self::Raw { data } => write!(f, "raw:{data}"),
        }
    }
}

impl FromStr for CredentialKey {
    type Err = RulesError;
    /// Parses the [`Display`](fmt::Display) form, e.g. `h10301:42:1001`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RulesError::Syntax(format!("bad credential key {s:?}"));
        let (fmt_, rest) = s.split_once(':').ok_or_else(bad)?;
        if fmt_ == "raw" {
            let (bytes, bits) = wiegand::parse_raw(rest).map_err(|_| bad())?;
            return Ok(Self::Raw {
                data: wiegand::raw_text(&bytes, bits),
            });
        }
        let (a, b) = rest.split_once(':').ok_or_else(bad)?;
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u64 = b.parse().map_err(|_| bad())?;
        match fmt_ {
            "h10301" => Ok(Self::H10301 {
                facility: a,
                number: b,
            }),
            "corporate1000" => Ok(Self::Corporate1000 {
                company: a,
                number: b,
            }),
            "h10304" => Ok(Self::H10304 {
                facility: a,
                number: b,
            }),
            _ => Err(bad()),
        }
    }
}

/// Why a credential is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// Reported lost.
    Lost,
    /// Reported stolen.
    Stolen,
    /// Blocked as a penalty.
    Penalty,
}

/// A PIN check: `sha256` is the lowercase hex SHA-256 of `"{salt}:{pin}"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHash {
    /// Per-credential salt (any text).
    pub salt: String,
    /// Hex SHA-256 of `salt:pin`.
    pub sha256: String,
}

impl PinHash {
    /// Hash a PIN with a salt.
    pub fn new(salt: &str, pin: &str) -> Self {
        Self {
            salt: salt.to_owned(),
            sha256: hex::encode(Sha256::digest(format!("{salt}:{pin}").as_bytes())),
        }
    }
    /// Whether `pin` matches (compares all bytes, no early exit).
    pub fn matches(&self, pin: &str) -> bool {
        let got = hex::encode(Sha256::digest(format!("{}:{pin}", self.salt).as_bytes()));
        let want = self.sha256.to_ascii_lowercase();
        got.len() == want.len()
            && got
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0
    }
}

/// The duress rule of a snapshot: which PINs, typed instead of the
/// holder's own, open the door as usual and raise a silent `duress` alarm.
/// Only cards with a PIN can signal duress (the PIN is what is typed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuressRule {
    /// The holder's PIN with its last digit one higher (9 wraps to 0).
    #[serde(default)]
    pub pin_plus_one: bool,
    /// Duress codes for every card with a PIN, hashed as PINs are (at
    /// most [`MAX_DURESS_CODES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<PinHash>,
}

/// At most this many duress codes in a snapshot.
pub const MAX_DURESS_CODES: usize = 16;

impl DuressRule {
    /// Whether `entered`, typed for a credential whose PIN is `pin`, is a
    /// duress PIN. The holder's own PIN never is.
    pub fn is_duress(&self, pin: &PinHash, entered: &str) -> bool {
        if pin.matches(entered) {
            return false;
        }
        (self.pin_plus_one && one_lower(entered).is_some_and(|own| pin.matches(&own)))
            || self.codes.iter().any(|c| c.matches(entered))
    }
}

/// `entered` with its last digit one lower (0 wraps to 9): the holder's
/// PIN when `entered` is its plus-one duress form.
fn one_lower(entered: &str) -> Option<String> {
    if !entered.is_ascii() {
        return None;
    }
    let (head, last) = entered.split_at(entered.len().checked_sub(1)?);
    let d = last.chars().next()?.to_digit(10)?;
    Some(format!("{head}{}", (d + 9) % 10))
}

/// One card holder's rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The card.
    pub key: CredentialKey,
    /// Name shown in events and presence lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Names of access levels.
    #[serde(default)]
    pub access_levels: Vec<String>,
    /// Not valid before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Timestamp>,
    /// Not valid after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    /// Blocked, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<BlockReason>,
    /// PIN required when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinHash>,
    /// The door stays unlocked longer (accessibility).
    #[serde(default)]
    pub extended_unlock: bool,
    /// Admitted during lockdown.
    #[serde(default)]
    pub lockdown_exempt: bool,
}

/// A wall-clock interval `HH:MM-HH:MM`; `end <= start` spans midnight into
/// the next day; `00:00-24:00` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Start, minutes after midnight.
    pub start: u16,
    /// End (exclusive), minutes after midnight, up to 1440.
    pub end: u16,
}

impl Interval {
    fn spans_midnight(self) -> bool {
        self.end <= self.start
    }
}

impl FromStr for Interval {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, RulesError> {
        let bad = || RulesError::Syntax(format!("interval {s:?} is not HH:MM-HH:MM"));
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (hm(a).ok_or_else(bad)?, hm(b).ok_or_else(bad)?);
        if start == 1440 {
            return Err(bad());
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A weekly schedule of wall-clock intervals in the snapshot's time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Open at all times (the weekday lists are ignored).
    #[serde(default)]
    pub always: bool,
    /// Intervals only start on working days (Monday–Friday, not a holiday).
    #[serde(default)]
    pub working_days_only: bool,
    /// Monday.
    #[serde(default)]
    pub mon: Vec<Interval>,
    /// Tuesday.
    #[serde(default)]
    pub tue: Vec<Interval>,
    /// Wednesday.
    #[serde(default)]
    pub wed: Vec<Interval>,
    /// Thursday.
    #[serde(default)]
    pub thu: Vec<Interval>,
    /// Friday.
    #[serde(default)]
    pub fri: Vec<Interval>,
    /// Saturday.
    #[serde(default)]
    pub sat: Vec<Interval>,
    /// Sunday.
    #[serde(default)]
    pub sun: Vec<Interval>,
    /// Intervals per day type (`holiday`, `event`, …): on a special day
    /// (or holiday) of a type listed here these intervals are used instead
    /// of the weekday's, whatever `working_days_only` says.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub day_types: BTreeMap<DayType, Vec<Interval>>,
}

impl Schedule {
    fn day(&self, w: Weekday) -> &[Interval] {
        match w {
            Weekday::Monday => &self.mon,
            Weekday::Tuesday => &self.tue,
            Weekday::Wednesday => &self.wed,
            Weekday::Thursday => &self.thu,
            Weekday::Friday => &self.fri,
            Weekday::Saturday => &self.sat,
            Weekday::Sunday => &self.sun,
        }
    }

    /// The intervals that start on local `date`: the date's day type's,
    /// when the schedule lists it; none on a day that is not a working day
    /// (a weekend, a holiday or any special day) with `working_days_only`;
    /// the weekday's otherwise.
    pub fn intervals_on(&self, calendar: &Calendar, date: Date) -> &[Interval] {
        let day_type = calendar.day_type(date);
        if let Some(list) = day_type.and_then(|t| self.day_types.get(t)) {
            return list;
        }
        let weekend = matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday);
        if self.working_days_only && (weekend || day_type.is_some()) {
            return &[];
        }
        self.day(date.weekday())
    }

    /// Whether the schedule is open at local wall-clock `date` + `minute`.
    /// An interval spanning midnight belongs to the day it starts on.
    pub fn is_open(&self, calendar: &Calendar, date: Date, minute: u16) -> bool {
        if self.always {
            return true;
        }
        let today = self.intervals_on(calendar, date).iter().any(|i| {
            if i.spans_midnight() {
                minute >= i.start
            } else {
                i.start <= minute && minute < i.end
            }
        });
        today
            || date.yesterday().is_ok_and(|y| {
                self.intervals_on(calendar, y)
                    .iter()
                    .any(|i| i.spans_midnight() && minute < i.end)
            })
    }
}

/// A door as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Door {
    /// Door class, e.g. `revolving` or `standard` (selects `max_age`).
    #[serde(default = "standard_class")]
    pub class: String,
}

fn standard_class() -> String {
    "standard".to_owned()
}

/// One entry of an access level: a door group during a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelEntry {
    /// Door group name.
    pub door_group: String,
    /// Schedule name.
    pub schedule: String,
}

/// A scheduled door mode (e.g. `free_rotation` during office hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorModeSchedule {
    /// Door id.
    pub door: String,
    /// Schedule name.
    pub schedule: String,
    /// Mode name, passed to the door (e.g. `free_rotation`, `unlocked`).
    pub mode: String,
    /// The mode starts only after a credential is granted at the door
    /// while the schedule is open, that local day (*first person in*);
    /// until then the door stays in card mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_person_in: bool,
}

/// What to do when the rules are older than a door class allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTooOld {
    /// Keep deciding; grants carry `rules_too_old = true`.
    KeepDeciding,
    /// Deny everything with `rules_too_old`.
    FailSecure,
}

/// Maximum rule age for a door class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxAge {
    /// Hours after `issued_at`.
    pub hours: u64,
    /// Policy when exceeded.
    pub on_too_old: OnTooOld,
}

/// A full rule snapshot for one gateway. Also the shape of the TOML rules
/// file, which leaves out `schema`, `version`, `issued_at` and `expires_at`
/// (they come from the command line; see [`source::parse_rules`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Schema number ([`SCHEMA`]); 0 when absent, which no build reads.
    #[serde(default)]
    pub schema: u32,
    /// Gateway this snapshot is for.
    pub gateway_id: String,
    /// Building this snapshot is for.
    pub building: String,
    /// Monotonic version.
    #[serde(default)]
    pub version: u64,
    /// When central issued it.
    #[serde(default)]
    pub issued_at: Timestamp,
    /// Not accepted after this instant (the epoch when absent: expired).
    #[serde(default)]
    pub expires_at: Timestamp,
    /// IANA time zone of the building, e.g. `Europe/Amsterdam`.
    pub time_zone: String,
    /// Named schedules.
    #[serde(default)]
    pub schedules: BTreeMap<String, Schedule>,
    /// Public holidays (local dates; not working days; day type
    /// `holiday`).
    #[serde(default)]
    pub holidays: Vec<Date>,
    /// Dated special days with a day type (not working days).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_days: Vec<SpecialDay>,
    /// One-off windows in which a door group is in a mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_windows: Vec<EventWindow>,
    /// Doors by id.
    #[serde(default)]
    pub doors: BTreeMap<String, Door>,
    /// Door groups: name → door ids.
    #[serde(default)]
    pub door_groups: BTreeMap<String, Vec<String>>,
    /// Access levels: name → (door group × schedule) entries.
    #[serde(default)]
    pub access_levels: BTreeMap<String, Vec<LevelEntry>>,
    /// Credentials. On the wire they travel as a record section beside the
    /// header (see [`envelope`]), never in this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    /// Scheduled door modes.
    #[serde(default)]
    pub door_mode_schedules: Vec<DoorModeSchedule>,
    /// Maximum rule age per door class.
    #[serde(default)]
    pub max_age: BTreeMap<String, MaxAge>,
    /// Areas by name (`[areas.NAME]`), see [`areas`]. Left out of the
    /// bytes when empty, so snapshots without areas sign as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub areas: BTreeMap<String, areas::Area>,
    /// Anti-passback forgiveness and exemptions (`[antipassback]`).
    #[serde(default, skip_serializing_if = "areas::AntiPassbackRules::is_empty")]
    pub antipassback: areas::AntiPassbackRules,
    /// The duress rule (none: no PIN signals duress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duress: Option<DuressRule>,
}

impl Snapshot {
    /// A copy of everything but the credentials (the wire header).
    pub fn without_credentials(&self) -> Snapshot {
        Snapshot {
            schema: self.schema,
            gateway_id: self.gateway_id.clone(),
            building: self.building.clone(),
            version: self.version,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            time_zone: self.time_zone.clone(),
            schedules: self.schedules.clone(),
            holidays: self.holidays.clone(),
            special_days: self.special_days.clone(),
            event_windows: self.event_windows.clone(),
            doors: self.doors.clone(),
            door_groups: self.door_groups.clone(),
            access_levels: self.access_levels.clone(),
            credentials: Vec::new(),
            door_mode_schedules: self.door_mode_schedules.clone(),
            max_age: self.max_age.clone(),
            areas: self.areas.clone(),
            antipassback: self.antipassback.clone(),
            duress: self.duress.clone(),
        }
    }
}

/// Everything of a snapshot except its credentials, checked and ready to
/// decide with (time zone resolved, holidays sorted).
#[derive(Debug, Clone)]
pub struct Header {
    snapshot: Snapshot,
    tz: TimeZone,
    calendar: Calendar,
    windows: calendar::Windows,
    /// Access level names in order; records refer to levels by index.
    levels: Vec<String>,
    /// The areas, checked.
    area_book: areas::AreaBook,
}

impl Header {
    /// Check references and resolve the time zone. `snapshot.credentials`
    /// is cleared (they live in a [`CredentialLookup`]).
    pub fn new(mut snapshot: Snapshot) -> Result<Self, RulesError> {
        snapshot.credentials = Vec::new();
        snapshot.holidays.sort();
        snapshot.holidays.dedup();
        let tz = TimeZone::get(&snapshot.time_zone)
            .map_err(|_| RulesError::TimeZone(snapshot.time_zone.clone()))?;
        let s = &snapshot;
        let missing = |what: &str, name: &str, at: &str| {
            Err(RulesError::Reference(format!(
                "{at}: unknown {what} {name:?}"
            )))
        };
        for (g, doors) in &s.door_groups {
            for d in doors {
                if !s.doors.contains_key(d) {
                    return missing("door", d, &format!("door_groups.{g}"));
                }
            }
        }
        for (l, entries) in &s.access_levels {
            for e in entries {
                if !s.door_groups.contains_key(&e.door_group) {
                    return missing("door group", &e.door_group, &format!("access_levels.{l}"));
                }
                if !s.schedules.contains_key(&e.schedule) {
                    return missing("schedule", &e.schedule, &format!("access_levels.{l}"));
                }
            }
        }
        for m in &s.door_mode_schedules {
            if !s.doors.contains_key(&m.door) {
                return missing("door", &m.door, "door_mode_schedules");
            }
            if !s.schedules.contains_key(&m.schedule) {
                return missing("schedule", &m.schedule, "door_mode_schedules");
            }
        }
        if let Some(d) = &s.duress
            && d.codes.len() > MAX_DURESS_CODES
        {
            return Err(RulesError::At {
                key: "duress.codes".into(),
                value: "codes".into(),
                message: format!("{} codes, at most {MAX_DURESS_CODES}", d.codes.len()),
            });
        }
        for (name, schedule) in &s.schedules {
            check_day_types(name, schedule)?;
        }
        for w in &s.event_windows {
            if !s.door_groups.contains_key(&w.door_group) {
                return Err(RulesError::At {
                    key: "event_windows".into(),
                    value: w.door_group.clone(),
                    message: format!("window {}: unknown door group {:?}", w.window, w.door_group),
                });
            }
            if w.mode.is_empty() || w.mode.len() > MAX_MODE {
                return Err(RulesError::At {
                    key: "event_windows".into(),
                    value: w.mode.clone(),
                    message: format!("window {}: mode must be 1 to {MAX_MODE} bytes", w.window),
                });
            }
        }
        let calendar = Calendar::new(&s.special_days, &s.holidays)?;
        let windows = calendar::Windows::new(&s.event_windows, &tz)?;
        let levels = snapshot.access_levels.keys().cloned().collect();
        let area_book = areas::AreaBook::new(&snapshot.areas, &snapshot.antipassback)?;
        Ok(Self {
            snapshot,
            tz,
            calendar,
            windows,
            levels,
            area_book,
        })
    }

    /// Access level names, sorted: record level `i` is `level_names()[i]`.
    pub fn level_names(&self) -> &[String] {
        &self.levels
    }

    /// The snapshot fields (credentials empty).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Check a credential's references against this header.
    pub fn check_credential(&self, c: &Credential) -> Result<(), RulesError> {
        for l in &c.access_levels {
            if !self.snapshot.access_levels.contains_key(l) {
                return Err(RulesError::Reference(format!(
                    "credential {}: unknown access level {l:?}",
                    c.key
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn set_times(&mut self, version: u64, issued_at: Timestamp, expires_at: Timestamp) {
        self.snapshot.version = version;
        self.snapshot.issued_at = issued_at;
        self.snapshot.expires_at = expires_at;
    }

    /// Whether schedule `name` is open at `now` (wall clock in the building's
    /// time zone; see `docs/rules.md` for DST).
    pub fn schedule_open(&self, name: &str, now: Timestamp) -> bool {
        let Some(s) = self.snapshot.schedules.get(name) else {
            return false;
        };
        let local = self.tz.to_datetime(now);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        s.is_open(&self.calendar, local.date(), minute)
    }

    /// The local date at `now` and what kind of day it is (for
    /// explanations: `portier snapshot decide`, the why box).
    pub fn day_of(&self, now: Timestamp) -> (Date, DayKind<'_>) {
        let date = self.tz.to_datetime(now).date();
        (date, self.calendar.kind(date))
    }

    /// The scheduled mode of `door` at `now` and where it comes from: an
    /// event window in force for one of the door's groups (the latest
    /// started), else the first open `door_mode_schedules` entry.
    pub fn scheduled_mode(&self, door: &str, now: Timestamp) -> Option<ScheduledMode<'_>> {
        let s = &self.snapshot;
        let window = self.windows.at(now).find(|r| {
            s.door_groups
                .get(&s.event_windows[r.index].door_group)
                .is_some_and(|g| g.iter().any(|d| d == door))
        });
        if let Some(r) = window {
            return Some(ScheduledMode {
                mode: &s.event_windows[r.index].mode,
                source: ModeSource::EventWindow(r.index),
            });
        }
        s.door_mode_schedules
            .iter()
            .enumerate()
            .find(|(_, m)| m.door == door && self.schedule_open(&m.schedule, now))
            .map(|(entry, m)| ScheduledMode {
                mode: &m.mode,
                source: ModeSource::Schedule {
                    entry,
                    first_person_in: m.first_person_in,
                },
            })
    }

    /// The scheduled mode of `door` at `now`, if any (see
    /// [`Header::scheduled_mode`]).
    pub fn door_mode(&self, door: &str, now: Timestamp) -> Option<&str> {
        self.scheduled_mode(door, now).map(|m| m.mode)
    }

    /// When the scheduled mode of `door` at `now` waits for the first
    /// person in: the local date it waits on (a grant that day, inside the
    /// window, starts it).
    pub fn first_person_in_day(&self, door: &str, now: Timestamp) -> Option<Date> {
        match self.scheduled_mode(door, now)?.source {
            ModeSource::Schedule {
                first_person_in: true,
                ..
            } => Some(self.tz.to_datetime(now).date()),
            _ => None,
        }
    }

    /// The event window holding `door` at `now`, if one does.
    pub fn event_window(&self, door: &str, now: Timestamp) -> Option<&EventWindow> {
        match self.scheduled_mode(door, now)?.source {
            ModeSource::EventWindow(i) => self.snapshot.event_windows.get(i),
            ModeSource::Schedule { .. } => None,
        }
    }

    /// Whether `entered` is a duress PIN for a credential with `pin`.
    pub fn is_duress(&self, pin: &PinHash, entered: &str) -> bool {
        self.snapshot
            .duress
            .as_ref()
            .is_some_and(|d| d.is_duress(pin, entered))
    }

    /// The areas and anti-passback rules.
    pub fn areas(&self) -> &areas::AreaBook {
        &self.area_book
    }

    /// The latest anti-passback forgiveness at or before `now`.
    pub fn last_forgiveness(&self, now: Timestamp) -> Option<Timestamp> {
        self.area_book.last_forgiveness(&self.tz, now)
    }

    /// The rules are older than `door`'s class allows at `now`; returns the
    /// policy when so.
    pub fn too_old(&self, door: &str, now: Timestamp) -> Option<OnTooOld> {
        let class = &self.snapshot.doors.get(door)?.class;
        let max = self.snapshot.max_age.get(class)?;
        let age = now
            .as_second()
            .saturating_sub(self.snapshot.issued_at.as_second());
        (age > 0 && age as u64 > max.hours.saturating_mul(3600)).then_some(max.on_too_old)
    }
}

/// A door mode name is at most this many bytes.
pub const MAX_MODE: usize = 32;

/// Check a schedule's per-day-type intervals against the bounds.
fn check_day_types(name: &str, schedule: &Schedule) -> Result<(), RulesError> {
    use calendar::{MAX_DAY_TYPE_INTERVALS, MAX_DAY_TYPES};
    let at = |value: String, message: String| RulesError::At {
        key: format!("schedules.{name}.day_types"),
        value,
        message,
    };
    if schedule.day_types.len() > MAX_DAY_TYPES {
        return Err(at(
            "day_types".into(),
            format!("at most {MAX_DAY_TYPES} day types"),
        ));
    }
    for (day_type, list) in &schedule.day_types {
        if list.len() > MAX_DAY_TYPE_INTERVALS {
            return Err(at(
                day_type.to_string(),
                format!("{day_type}: at most {MAX_DAY_TYPE_INTERVALS} intervals"),
            ));
        }
    }
    Ok(())
}

/// A scheduled door mode and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledMode<'a> {
    /// The mode name.
    pub mode: &'a str,
    /// Its source.
    pub source: ModeSource,
}

/// Which part of the rules set a scheduled mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    /// `event_windows[i]`.
    EventWindow(usize),
    /// `door_mode_schedules[entry]`.
    Schedule {
        /// The entry's index.
        entry: usize,
        /// It waits for the first person in.
        first_person_in: bool,
    },
}

/// Where the decision engine finds credentials: an in-memory map or the
/// sled store.
pub trait CredentialLookup {
    /// The credential with this key, if any.
    fn credential(&self, key: &CredentialKey) -> Result<Option<Credential>, RulesError>;
}

impl CredentialLookup for BTreeMap<CredentialKey, Credential> {
    fn credential(&self, key: &CredentialKey) -> Result<Option<Credential>, RulesError> {
        Ok(self.get(key).cloned())
    }
}

/// The card as the reader reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Card {
    /// Raw bits, first bit in the high bit of the first byte.
    Raw {
        /// Bytes.
        bytes: Vec<u8>,
        /// Bit count.
        bits: u16,
    },
    /// Already decoded.
    Key(CredentialKey),
}

/// One decision request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Door id.
    pub door: DoorId,
    /// The card read.
    pub card: Card,
    /// PIN typed, if any.
    pub pin: Option<String>,
}

impl Request {
    /// The question for an already decoded credential at `door`.
    pub fn for_key(door: &DoorId, key: &CredentialKey, pin: Option<&str>) -> Self {
        Self {
            door: door.clone(),
            card: Card::Key(key.clone()),
            pin: pin.map(str::to_owned),
        }
    }
}

/// Why access was denied. Names are part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No such credential.
    UnknownCredential,
    /// Blocked (lost, stolen, penalty).
    Blocked,
    /// Before `valid_from`.
    NotYetValid,
    /// After `valid_until`.
    Expired,
    /// No access level covers the door.
    NoAccess,
    /// A level covers the door, but not now.
    OutsideSchedule,
    /// Lockdown and not exempt.
    Lockdown,
    /// Card bits could not be decoded (length or parity).
    BadFormat,
    /// Rules too old and the door class fails secure.
    RulesTooOld,
    /// The credential needs a PIN and none was given.
    PinRequired,
    /// The PIN is wrong.
    WrongPin,
    /// The rules on disk were signed by a key that is no longer trusted
    /// (removed from `[trust]` after a leak): they are kept but not used,
    /// and every door fails secure until a snapshot signed by a trusted
    /// key arrives. Never produced by [`decide`]; the store answers it.
    RulesUntrusted,
    /// The card is known to be inside the area it tries to enter, or
    /// outside the area it tries to leave, and the area's anti-passback
    /// is `hard` or `timed`. Never produced by [`decide`]: the gateway
    /// core checks it (`site::areas`).
    Antipassback,
    /// Another door of the door's interlock (airlock) stayed open or
    /// released for longer than the grant may wait. The core's check.
    Interlock,
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DenyReason {
    /// The contract name, e.g. `outside_schedule`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCredential => "unknown_credential",
            Self::Blocked => "blocked",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::NoAccess => "no_access",
            Self::OutsideSchedule => "outside_schedule",
            Self::Lockdown => "lockdown",
            Self::BadFormat => "bad_format",
            Self::RulesTooOld => "rules_too_old",
            Self::PinRequired => "pin_required",
            Self::WrongPin => "wrong_pin",
            Self::RulesUntrusted => "rules_untrusted",
            Self::Antipassback => "antipassback",
            Self::Interlock => "interlock",
        }
    }

    /// The reason in words, for people: the one wording of the admin
    /// page, the API's `reason_text`, the log and `portier status`.
    pub fn words(self) -> &'static str {
        match self {
            Self::UnknownCredential => "card not known to this building",
            Self::Blocked => "card blocked (lost, stolen or penalty)",
            Self::NotYetValid => "authorisation not valid yet",
            Self::Expired => "authorisation expired",
            Self::NoAccess => "no access to this door",
            Self::OutsideSchedule => "access to this door, but not at this time",
            Self::Lockdown => "door in lockdown",
            Self::BadFormat => "card data unreadable (format or parity)",
            Self::RulesTooOld => "gateway rules too old to decide",
            Self::PinRequired => "PIN required",
            Self::WrongPin => "wrong PIN",
            Self::RulesUntrusted => "gateway rules signed by a key no longer trusted",
            Self::Antipassback => {
                "anti-passback: the card is already inside this area (or not known to have \
                 entered the area it leaves)"
            }
            Self::Interlock => "interlock: another door of the airlock stayed open or released",
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let them in.
    Grant {
        /// Who.
        credential: CredentialKey,
        /// Keep the door unlocked longer.
        extended_unlock: bool,
        /// Admitted although in lockdown.
        lockdown_exempt: bool,
        /// Name for events.
        display_name: Option<String>,
        /// The rules are older than the door class allows (keep_deciding).
        rules_too_old: bool,
    },
    /// Keep them out.
    Deny(DenyReason),
}

/// Decide on a verified in-memory snapshot.
pub fn decide(rules: &VerifiedSnapshot, req: &Request, now: Timestamp) -> Decision {
    match decide_with(rules.header(), rules.credentials(), req, now) {
        Ok(d) => d,
        // The in-memory lookup never fails; deny anyway rather than panic.
        Err(_) => Decision::Deny(DenyReason::UnknownCredential),
    }
}

/// Decide with a header and any credential source (e.g. the sled store).
/// Checks, in order: bad_format, rules_too_old, unknown_credential, blocked,
/// not_yet_valid, expired, no_access, outside_schedule, pin_required /
/// wrong_pin. What the gateway knows beyond the rules (lockdown) is the
/// core's to check (`site::decision`).
pub fn decide_with<L: CredentialLookup + ?Sized>(
    header: &Header,
    creds: &L,
    req: &Request,
    now: Timestamp,
) -> Result<Decision, RulesError> {
    use DenyReason as R;
    let deny = |r| Ok(Decision::Deny(r));
    let key = match &req.card {
        Card::Raw { bytes, bits } => match wiegand::decode(bytes, *bits) {
            Ok(k) => k,
            Err(_) => return deny(R::BadFormat),
        },
        Card::Key(k) => k.clone(),
    };
    let too_old = header.too_old(&req.door, now);
    if too_old == Some(OnTooOld::FailSecure) {
        return deny(R::RulesTooOld);
    }
    let Some(c) = creds.credential(&key)? else {
        return deny(R::UnknownCredential);
    };
    if c.blocked.is_some() {
        return deny(R::Blocked);
    }
    if c.valid_from.is_some_and(|t| now < t) {
        return deny(R::NotYetValid);
    }
    if c.valid_until.is_some_and(|t| now > t) {
        return deny(R::Expired);
    }
    let s = &header.snapshot;
    let mut covering = c
        .access_levels
        .iter()
        .filter_map(|l| s.access_levels.get(l))
        .flatten()
        .filter(|e| {
            s.door_groups
                .get(&e.door_group)
                .is_some_and(|g| g.iter().any(|d| req.door == *d))
        })
        .peekable();
    if covering.peek().is_none() {
        return deny(R::NoAccess);
    }
    if !covering.any(|e| header.schedule_open(&e.schedule, now)) {
        return deny(R::OutsideSchedule);
    }
    if let Some(pin) = &c.pin {
        match &req.pin {
            None => return deny(R::PinRequired),
            // A duress PIN opens as the holder's own does; the core
            // raises the silent alarm (`Rules::duress`).
            Some(p) if !pin.matches(p) && !header.is_duress(pin, p) => return deny(R::WrongPin),
            Some(_) => {}
        }
    }
    Ok(Decision::Grant {
        credential: c.key,
        extended_unlock: c.extended_unlock,
        lockdown_exempt: c.lockdown_exempt,
        display_name: c.display_name,
        rules_too_old: too_old.is_some(),
    })
}

#[cfg(test)]
pub(crate) mod tests;

//! `[[bus]]`, `[[bus.pd]]` and `[[door]]`: the hardware of one building and
//! how each door is wired to PD inputs and outputs.
//!
//! Parsing keeps the span of every name and reference so a wrong one is
//! reported with its line; [`Site::check`] does every cross-check (unique
//! names and addresses, references, a key for every PD or an explicit
//! `plaintext = true`) before anything is opened.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use super::port::Rs485Mode;
use crate::door::{Direction, FailMode, RevolvingConfig, StandardConfig};
use crate::osdp::message::LedColor;
use crate::site::building::FireAlarmWiring;
use crate::site::outputs::{FeedbackStyle, FeedbackTable, StrikeWiring};
use crate::site::{DoorKind, DoorWiring, InputRef, OutputRef, PdRef, ReaderRef};

/// One RS-485 bus (`[[bus]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Bus name (events, status page).
    pub name: Spanned<String>,
    /// Serial device, e.g. `/dev/ttyUSB0` or `/dev/serial/by-id/…`.
    pub port: PathBuf,
    /// Baud rate (9600, 19200, 38400, 57600, 115200, 230400).
    #[serde(default = "default_baud")]
    pub baud: Spanned<u32>,
    /// `adapter` (the USB adapter switches direction) or `kernel` (RTS).
    #[serde(default)]
    pub rs485: Rs485Setting,
    /// Drop our own bytes when the adapter echoes them.
    #[serde(default)]
    pub suppress_echo: bool,
    /// Minimum time between two polls of one idle PD.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u64,
    /// The PDs on this bus.
    #[serde(default, rename = "pd")]
    pub pds: Vec<PdEntry>,
}

fn default_baud() -> Spanned<u32> {
    Spanned::new(0..0, 115_200)
}

fn default_poll_interval() -> u64 {
    20
}

/// Direction control of a bus.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rs485Setting {
    /// The adapter switches by itself.
    #[default]
    Adapter,
    /// The kernel's RS-485 mode.
    Kernel,
}

impl From<Rs485Setting> for Rs485Mode {
    fn from(s: Rs485Setting) -> Self {
        match s {
            Rs485Setting::Adapter => Rs485Mode::Adapter,
            Rs485Setting::Kernel => Rs485Mode::Kernel,
        }
    }
}

/// What a PD is.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PdRole {
    /// A card reader (may also have inputs and outputs).
    Reader,
    /// An I/O module (door contacts, exit buttons, relays).
    Io,
}

/// One PD (`[[bus.pd]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdEntry {
    /// Unique name in this config (doors refer to it).
    pub name: Spanned<String>,
    /// OSDP address 0..=126.
    pub address: Spanned<u8>,
    /// Reader or I/O module.
    pub role: PdRole,
    /// SCBK file (32 hex digits, from `portier reader install-key`);
    /// spanned so a refused key names its line.
    pub key_file: Option<Spanned<PathBuf>>,
    /// Run without Secure Channel. Must be said explicitly; bench use only.
    #[serde(default)]
    pub plaintext: bool,
}

/// A reader of a door.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderEntry {
    /// PD name.
    pub pd: Spanned<String>,
    /// Reader number on that PD.
    #[serde(default)]
    pub reader: u8,
    /// `in` (entering) or `out` (leaving).
    pub direction: DirectionSetting,
}

/// Which way a reader faces.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSetting {
    /// Entering.
    In,
    /// Leaving.
    Out,
}

impl From<DirectionSetting> for Direction {
    fn from(d: DirectionSetting) -> Self {
        match d {
            DirectionSetting::In => Direction::In,
            DirectionSetting::Out => Direction::Out,
        }
    }
}

/// A PD output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputEntry {
    /// PD name.
    pub pd: Spanned<String>,
    /// Output number.
    pub output: u8,
    /// Energise to unlock (strike, the default for fail-secure doors) or to
    /// lock (maglock, the default for fail-safe doors).
    pub energize_to_unlock: Option<bool>,
}

/// A PD input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEntry {
    /// PD name.
    pub pd: Spanned<String>,
    /// Input number.
    pub input: u8,
    /// Active (door open, button pressed, rotation pulse) when the input
    /// reads 1. `false` for normally-closed contacts wired to read 0.
    #[serde(default = "yes")]
    pub active_high: bool,
}

fn yes() -> bool {
    true
}

/// A fire-alarm input from the fire panel (`[[fire_alarm]]`): while it is
/// active, the doors it names are released (`emergency_unlocked`,
/// `emergency_free`) above every other authority, lockdown included.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireAlarmEntry {
    /// Its name in events and on the status page (1..=64 bytes).
    pub id: Spanned<String>,
    /// Where the fire panel's contact is wired (`active_high = false` for
    /// a normally-closed contact: then a cut wire reads as an alarm).
    pub input: InputEntry,
    /// The escape doors it releases (door ids, at least one).
    pub releases: Vec<Spanned<String>>,
}

/// At most this many `[[fire_alarm]]` inputs (a building has a handful of
/// fire panel zones; the bound keeps the standing state small).
pub const MAX_FIRE_ALARMS: usize = 32;

/// Door kind.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DoorKindSetting {
    /// A swing door with strike or maglock.
    Standard,
    /// A revolving door (or turnstile).
    Revolving,
}

/// Power-loss behaviour of a door's lock.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailSetting {
    /// Locked without power.
    #[default]
    Secure,
    /// Released without power (fire regulations).
    Safe,
}

/// One door (`[[door]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorEntry {
    /// Door id, as in the rules.
    pub id: Spanned<String>,
    /// `standard` or `revolving`.
    pub kind: DoorKindSetting,
    /// Readers with their direction.
    #[serde(default)]
    pub readers: Vec<ReaderEntry>,
    /// Standard door: the lock output.
    pub strike: Option<OutputEntry>,
    /// Revolving door: the output that lets it turn inwards.
    pub release_in: Option<OutputEntry>,
    /// Revolving door: the output that lets it turn outwards.
    pub release_out: Option<OutputEntry>,
    /// Door contact (active = open).
    pub contact: Option<InputEntry>,
    /// Exit button (active = pressed).
    pub exit_button: Option<InputEntry>,
    /// Revolving door: passage-in pulse.
    pub rotation_in: Option<InputEntry>,
    /// Revolving door: passage-out pulse.
    pub rotation_out: Option<InputEntry>,
    /// Strike release for a grant or REX, seconds.
    #[serde(default = "default_unlock")]
    pub unlock_seconds: u64,
    /// The same for credentials flagged for extended unlock.
    #[serde(default = "default_extended_unlock")]
    pub extended_unlock_seconds: u64,
    /// Held open this long: pre-alarm.
    #[serde(default = "default_pre_alarm")]
    pub held_open_pre_alarm_seconds: u64,
    /// Held open this long: alarm.
    #[serde(default = "default_alarm")]
    pub held_open_alarm_seconds: u64,
    /// `secure` (locked without power) or `safe`.
    #[serde(default)]
    pub fail: FailSetting,
    /// Revolving door: a served grant expires after this without rotation.
    #[serde(default = "default_grant_timeout")]
    pub grant_timeout_seconds: u64,
    /// The area an `in` passage enters (see `config::areas`).
    #[serde(default)]
    pub area_in: Option<Spanned<String>>,
    /// The area an `out` passage lands in; absent: out of every area.
    #[serde(default)]
    pub area_out: Option<Spanned<String>>,
}

fn default_unlock() -> u64 {
    5
}
fn default_extended_unlock() -> u64 {
    15
}
fn default_pre_alarm() -> u64 {
    20
}
fn default_alarm() -> u64 {
    30
}
fn default_grant_timeout() -> u64 {
    10
}

/// A semantic error with the byte offset it points at (the caller turns
/// that into a line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteError {
    /// Byte offset in the config text.
    pub at: usize,
    /// Dotted key, e.g. `door.strike.pd`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err<T>(at: &Spanned<T>, key: &str, message: impl Into<String>) -> SiteError {
    SiteError {
        at: at.span().start,
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Where a PD is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdPlace {
    /// Its reference (bus + address).
    pub pd: PdRef,
    /// Its role.
    pub role: PdRole,
}

/// The hardware sections, checked.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// Buses.
    pub buses: Vec<BusConfig>,
    /// Doors.
    pub doors: Vec<DoorEntry>,
    /// Fire-alarm inputs.
    pub fire_alarms: Vec<FireAlarmEntry>,
}

const BAUDS: [u32; 6] = [9600, 19200, 38400, 57600, 115_200, 230_400];

impl Site {
    /// Cross-check names, addresses and references. Returns the PD
    /// directory by name.
    pub fn check(&self) -> Result<HashMap<String, PdPlace>, SiteError> {
        let mut bus_names = HashSet::new();
        let mut pds = HashMap::new();
        for bus in &self.buses {
            if !bus_names.insert(bus.name.get_ref().clone()) {
                return Err(err(&bus.name, "bus.name", "duplicate bus name"));
            }
            if !BAUDS.contains(bus.baud.get_ref()) {
                return Err(err(
                    &bus.baud,
                    "bus.baud",
                    format!(
                        "{} is not an OSDP baud rate ({BAUDS:?})",
                        bus.baud.get_ref()
                    ),
                ));
            }
            let mut addresses = HashSet::new();
            for pd in &bus.pds {
                let address = *pd.address.get_ref();
                if address > 126 {
                    return Err(err(&pd.address, "bus.pd.address", "must be 0..=126"));
                }
                if !addresses.insert(address) {
                    return Err(err(
                        &pd.address,
                        "bus.pd.address",
                        format!("address {address} used twice on bus {}", bus.name.get_ref()),
                    ));
                }
                match (&pd.key_file, pd.plaintext) {
                    (None, false) => {
                        return Err(err(
                            &pd.name,
                            "bus.pd.key_file",
                            "no key_file: give the PD's SCBK file (`portier reader install-key`), \
                             or set `plaintext = true` for a bench reader without Secure Channel",
                        ));
                    }
                    (Some(_), true) => {
                        return Err(err(
                            &pd.name,
                            "bus.pd.plaintext",
                            "both key_file and plaintext = true: a keyed PD always uses Secure Channel",
                        ));
                    }
                    _ => {}
                }
                let place = PdPlace {
                    pd: PdRef {
                        bus: bus.name.get_ref().into(),
                        address,
                    },
                    role: pd.role,
                };
                if pds.insert(pd.name.get_ref().clone(), place).is_some() {
                    return Err(err(&pd.name, "bus.pd.name", "duplicate PD name"));
                }
            }
        }
        let mut door_ids = HashSet::new();
        for door in &self.doors {
            if !door_ids.insert(door.id.get_ref().clone()) {
                return Err(err(&door.id, "door.id", "duplicate door id"));
            }
            for r in &door.readers {
                lookup(&pds, &r.pd, "door.readers.pd")?;
            }
            let refs = [
                (&door.strike, "door.strike.pd"),
                (&door.release_in, "door.release_in.pd"),
                (&door.release_out, "door.release_out.pd"),
            ];
            for (o, key) in refs {
                if let Some(o) = o {
                    lookup(&pds, &o.pd, key)?;
                }
            }
            let inputs = [
                (&door.contact, "door.contact.pd"),
                (&door.exit_button, "door.exit_button.pd"),
                (&door.rotation_in, "door.rotation_in.pd"),
                (&door.rotation_out, "door.rotation_out.pd"),
            ];
            for (i, key) in inputs {
                if let Some(i) = i {
                    lookup(&pds, &i.pd, key)?;
                }
            }
            match door.kind {
                DoorKindSetting::Standard => {
                    if door.strike.is_none() {
                        return Err(err(
                            &door.id,
                            "door.strike",
                            "a standard door needs `strike`",
                        ));
                    }
                    if door.release_in.is_some()
                        || door.release_out.is_some()
                        || door.rotation_in.is_some()
                        || door.rotation_out.is_some()
                    {
                        return Err(err(
                            &door.id,
                            "door.kind",
                            "release_in/release_out/rotation_in/rotation_out are for revolving doors",
                        ));
                    }
                }
                DoorKindSetting::Revolving => {
                    if door.release_in.is_none() && door.release_out.is_none() {
                        return Err(err(
                            &door.id,
                            "door.release_in",
                            "a revolving door needs `release_in` and/or `release_out`",
                        ));
                    }
                    if door.strike.is_some() || door.contact.is_some() || door.exit_button.is_some()
                    {
                        return Err(err(
                            &door.id,
                            "door.kind",
                            "strike/contact/exit_button are for standard doors; \
                             a revolving door has release_in/release_out and rotation inputs",
                        ));
                    }
                }
            }
            if door.unlock_seconds == 0 || door.unlock_seconds > 3600 {
                return Err(err(&door.id, "door.unlock_seconds", "must be 1..=3600"));
            }
            if door.held_open_alarm_seconds < door.held_open_pre_alarm_seconds {
                return Err(err(
                    &door.id,
                    "door.held_open_alarm_seconds",
                    "must not be shorter than held_open_pre_alarm_seconds",
                ));
            }
        }
        self.check_fire_alarms(&pds, &door_ids)?;
        Ok(pds)
    }

    /// Names unique and bounded, the input on a known PD and not a door's,
    /// every released door known.
    fn check_fire_alarms(
        &self,
        pds: &HashMap<String, PdPlace>,
        door_ids: &HashSet<String>,
    ) -> Result<(), SiteError> {
        if let Some(extra) = self.fire_alarms.get(MAX_FIRE_ALARMS) {
            return Err(err(
                &extra.id,
                "fire_alarm",
                format!("at most {MAX_FIRE_ALARMS} fire-alarm inputs"),
            ));
        }
        let door_inputs: HashSet<(&str, u8)> = self
            .doors
            .iter()
            .flat_map(|d| [&d.contact, &d.exit_button, &d.rotation_in, &d.rotation_out])
            .flatten()
            .map(|i| (i.pd.get_ref().as_str(), i.input))
            .collect();
        let mut ids = HashSet::new();
        for alarm in &self.fire_alarms {
            let id = alarm.id.get_ref();
            if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
                return Err(err(
                    &alarm.id,
                    "fire_alarm.id",
                    "must be 1..=64 bytes without control characters",
                ));
            }
            if !ids.insert(id.as_str()) {
                return Err(err(&alarm.id, "fire_alarm.id", "duplicate fire-alarm id"));
            }
            lookup(pds, &alarm.input.pd, "fire_alarm.input.pd")?;
            if door_inputs.contains(&(alarm.input.pd.get_ref().as_str(), alarm.input.input)) {
                return Err(err(
                    &alarm.input.pd,
                    "fire_alarm.input",
                    format!(
                        "input {} of {:?} is already a door's input",
                        alarm.input.input,
                        alarm.input.pd.get_ref()
                    ),
                ));
            }
            if alarm.releases.is_empty() {
                return Err(err(
                    &alarm.id,
                    "fire_alarm.releases",
                    "name the escape doors it releases (at least one)",
                ));
            }
            for door in &alarm.releases {
                if !door_ids.contains(door.get_ref()) {
                    return Err(err(
                        door,
                        "fire_alarm.releases",
                        format!("no door {:?}", door.get_ref()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fire-alarm inputs as the building core wants them (call after
    /// [`Site::check`]).
    pub fn fire_alarm_wiring(&self, pds: &HashMap<String, PdPlace>) -> Vec<FireAlarmWiring> {
        self.fire_alarms
            .iter()
            .map(|a| FireAlarmWiring {
                id: a.id.get_ref().as_str().into(),
                input: InputRef {
                    pd: pds[a.input.pd.get_ref()].pd.clone(),
                    input: a.input.input,
                    active_high: a.input.active_high,
                },
                releases: a
                    .releases
                    .iter()
                    .map(|d| d.get_ref().as_str().into())
                    .collect(),
            })
            .collect()
    }

    /// The doors as the building core wants them (call after [`Site::check`]).
    pub fn wiring(&self, pds: &HashMap<String, PdPlace>) -> Vec<DoorWiring> {
        self.doors.iter().map(|d| door_wiring(d, pds)).collect()
    }
}

fn lookup<'a>(
    pds: &'a HashMap<String, PdPlace>,
    name: &Spanned<String>,
    key: &str,
) -> Result<&'a PdPlace, SiteError> {
    pds.get(name.get_ref()).ok_or_else(|| {
        let mut known: Vec<&str> = pds.keys().map(String::as_str).collect();
        known.sort_unstable();
        err(
            name,
            key,
            format!(
                "no PD named {:?} (known: {})",
                name.get_ref(),
                known.join(", ")
            ),
        )
    })
}

fn door_wiring(d: &DoorEntry, pds: &HashMap<String, PdPlace>) -> DoorWiring {
    let pd = |name: &Spanned<String>| pds[name.get_ref()].pd.clone();
    let fail_mode = match d.fail {
        FailSetting::Secure => FailMode::FailSecure,
        FailSetting::Safe => FailMode::FailSafe,
    };
    let output = |o: &OutputEntry| OutputRef {
        pd: pd(&o.pd),
        wiring: StrikeWiring {
            output: o.output,
            energize_to_unlock: o
                .energize_to_unlock
                .unwrap_or(fail_mode == FailMode::FailSecure),
        },
    };
    let input = |i: &InputEntry| InputRef {
        pd: pd(&i.pd),
        input: i.input,
        active_high: i.active_high,
    };
    let kind = match d.kind {
        DoorKindSetting::Standard => DoorKind::Standard(StandardConfig {
            strike_time: Duration::from_secs(d.unlock_seconds),
            extended_strike_time: Duration::from_secs(d.extended_unlock_seconds),
            held_open_pre_alarm: Duration::from_secs(d.held_open_pre_alarm_seconds),
            held_open_alarm: Duration::from_secs(d.held_open_alarm_seconds),
            fail_mode,
        }),
        DoorKindSetting::Revolving => DoorKind::Revolving(RevolvingConfig {
            grant_timeout: Duration::from_secs(d.grant_timeout_seconds),
        }),
    };
    let lock = match d.kind {
        DoorKindSetting::Standard => d.strike.as_ref().map(output),
        DoorKindSetting::Revolving => d.release_in.as_ref().map(output),
    };
    DoorWiring {
        id: d.id.get_ref().into(),
        kind,
        readers: d
            .readers
            .iter()
            .map(|r| ReaderRef {
                id: reader_id(r).into(),
                pd: pd(&r.pd),
                reader: r.reader,
                direction: r.direction.into(),
            })
            .collect(),
        lock,
        release_out: d.release_out.as_ref().map(output),
        contact: d.contact.as_ref().map(input),
        exit_button: d.exit_button.as_ref().map(input),
        rotation_in: d.rotation_in.as_ref().map(input),
        rotation_out: d.rotation_out.as_ref().map(input),
    }
}

/// A reader's id in events: the PD name, plus the reader number when it is
/// not the PD's first reader.
fn reader_id(r: &ReaderEntry) -> String {
    match r.reader {
        0 => r.pd.get_ref().clone(),
        n => format!("{}:{n}", r.pd.get_ref()),
    }
}

/// `[feedback]`: reader LED and buzzer patterns. Every pattern and every
/// key is optional; what is left out keeps its default (see
/// `config/portier.example.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Access granted.
    pub grant: Option<FeedbackEntry>,
    /// Access denied.
    pub deny: Option<FeedbackEntry>,
    /// Rules older than the door class allows.
    pub rules_too_old: Option<FeedbackEntry>,
    /// Lockdown.
    pub lockdown: Option<FeedbackEntry>,
    /// Door held open (pre-alarm).
    pub held_open: Option<FeedbackEntry>,
    /// The card needs its PIN (waiting for the keypad).
    pub pin_wanted: Option<FeedbackEntry>,
}

/// One pattern; times in milliseconds (rounded up to OSDP's 100 ms).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackEntry {
    /// LED colour: off, red, green, amber, blue, magenta, cyan, white.
    pub color: Option<ColorSetting>,
    /// LED on time per blink.
    pub led_on_ms: Option<u32>,
    /// LED off time per blink (0: steady).
    pub led_off_ms: Option<u32>,
    /// How long the pattern shows.
    pub duration_ms: Option<u32>,
    /// Beep length.
    pub beep_on_ms: Option<u32>,
    /// Pause between beeps.
    pub beep_off_ms: Option<u32>,
    /// Number of beeps.
    pub beeps: Option<u8>,
}

/// LED colours by name.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ColorSetting {
    Off,
    Red,
    Green,
    Amber,
    Blue,
    Magenta,
    Cyan,
    White,
}

impl From<ColorSetting> for LedColor {
    fn from(c: ColorSetting) -> Self {
        match c {
            ColorSetting::Off => LedColor::Off,
            ColorSetting::Red => LedColor::Red,
            ColorSetting::Green => LedColor::Green,
            ColorSetting::Amber => LedColor::Amber,
            ColorSetting::Blue => LedColor::Blue,
            ColorSetting::Magenta => LedColor::Magenta,
            ColorSetting::Cyan => LedColor::Cyan,
            ColorSetting::White => LedColor::White,
        }
    }
}

fn units<T: TryFrom<u32>>(ms: u32, max: T) -> T {
    T::try_from(ms.div_ceil(100)).unwrap_or(max)
}

impl FeedbackEntry {
    fn over(&self, base: FeedbackStyle) -> FeedbackStyle {
        FeedbackStyle {
            color: self.color.map_or(base.color, LedColor::from),
            led_on: self.led_on_ms.map_or(base.led_on, |v| units(v, u8::MAX)),
            led_off: self.led_off_ms.map_or(base.led_off, |v| units(v, u8::MAX)),
            duration: self
                .duration_ms
                .map_or(base.duration, |v| units(v, u16::MAX)),
            beep_on: self.beep_on_ms.map_or(base.beep_on, |v| units(v, u8::MAX)),
            beep_off: self
                .beep_off_ms
                .map_or(base.beep_off, |v| units(v, u8::MAX)),
            beeps: self.beeps.unwrap_or(base.beeps),
        }
    }
}

/// Why a `[feedback]` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FeedbackError {
    /// Two events would show the same LED and beep pattern: people at the
    /// door could not tell, say, a grant from a denial.
    #[error(
        "patterns `{first}` and `{second}` look and sound the same; people must be able to tell them apart"
    )]
    Indistinct {
        /// One event's name (`grant`, `deny`, …).
        first: &'static str,
        /// The other's.
        second: &'static str,
    },
}

impl FeedbackConfig {
    /// The table: defaults with this config's changes. Refuses patterns that
    /// people could not tell apart (grant, deny, rules too old, lockdown).
    pub fn table(&self) -> Result<FeedbackTable, FeedbackError> {
        let d = FeedbackTable::default();
        let pick = |e: &Option<FeedbackEntry>, base| e.as_ref().map_or(base, |e| e.over(base));
        let table = FeedbackTable {
            grant: pick(&self.grant, d.grant),
            deny: pick(&self.deny, d.deny),
            rules_too_old: pick(&self.rules_too_old, d.rules_too_old),
            lockdown: pick(&self.lockdown, d.lockdown),
            held_open: pick(&self.held_open, d.held_open),
            pin_wanted: pick(&self.pin_wanted, d.pin_wanted),
        };
        match table.indistinct() {
            Some((first, second)) => Err(FeedbackError::Indistinct { first, second }),
            None => Ok(table),
        }
    }
}

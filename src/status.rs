//! The gateway's health at one instant, as plain data: what the admin page
//! shows, what `/api/v1/status` returns, what `portier status` prints and
//! what the MQTT `status` topic will carry.
//!
//! Guarantees: everything here is plain `serde` data (JSON field names are
//! part of the contract with technicians' tools: snake_case, added to but
//! never renamed); ages are computed by whoever builds the snapshot, at
//! [`GatewayStatus::now`], so a reader never needs a clock to interpret it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::Event;

/// One snapshot of the gateway's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Identity, version, clock.
    pub gateway: GatewayStatus,
    /// The rule snapshot in force; `None` before the first one is applied
    /// and while the rules on disk are untrusted.
    pub rules: Option<RulesStatus>,
    /// Rules on disk signed by a key that is no longer trusted: not used,
    /// every card is denied (`rules_untrusted`) until a snapshot signed by
    /// a trusted key arrives. Absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_untrusted: Option<UntrustedRules>,
    /// Every configured RS-485 bus with its PDs.
    pub buses: Vec<BusStatus>,
    /// Every configured door.
    pub doors: Vec<DoorStatus>,
    /// The link to the central system.
    pub uplink: UplinkStatus,
    /// The most recent events, newest last.
    pub recent_events: Vec<Event>,
    /// Who is inside: the muster list (every granted passage moves a
    /// card's line; at a door with areas into or out of its area).
    pub presence: Vec<PresenceEntry>,
    /// The fire-alarm inputs active now (`[[fire_alarm]] id`): their escape
    /// doors are released. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fire_alarms: Vec<String>,
    /// Duress alarms since the daemon started.
    #[serde(default)]
    pub duress_since_start: u64,
    /// The interlocks (airlocks); absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interlocks: Vec<InterlockStatus>,
}

/// One interlock group (airlock) and its doors now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterlockStatus {
    /// Its name.
    pub id: String,
    /// Its doors.
    pub doors: Vec<String>,
    /// The doors released or open now (two or more only in a fire alarm
    /// or by an operator's release).
    pub busy: Vec<String>,
    /// Grants and exit requests waiting for the others to close.
    pub waiting: usize,
}

/// Identity, software version and clock of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Gateway id.
    pub id: String,
    /// Building name.
    pub building: String,
    /// Software version (`CARGO_PKG_VERSION` of the daemon).
    pub version: String,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The gateway's wall clock when this snapshot was taken.
    pub now: Timestamp,
    /// IANA time zone the schedules use, e.g. `Europe/Amsterdam`.
    pub time_zone: String,
    /// Whether the gateway can prove its time (`docs/rules.md`, "Time").
    #[serde(default)]
    pub time: TimeStatus,
}

/// What the gateway knows of the time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeStatus {
    /// The system clock is believed (no unconfirmed step, inside the
    /// interval).
    pub trusted: bool,
    /// And a live beacon or an operator bounds it from above: scheduled
    /// releases may start.
    pub confirmed: bool,
    /// The interval's lower edge, when known.
    pub earliest: Option<Timestamp>,
    /// The interval's upper edge, when known.
    pub latest: Option<Timestamp>,
}

/// The rule snapshot in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesStatus {
    /// Snapshot version (monotonic).
    pub version: u64,
    /// When the central system issued it.
    pub issued_at: Timestamp,
    /// Seconds between `issued_at` and now.
    pub age_secs: u64,
    /// Key id of the central key that signed it.
    pub signer_key_id: String,
    /// Number of credentials it holds.
    pub credentials: u64,
    /// Older than some door class allows: those doors deny (`rules_too_old`)
    /// or warn.
    pub too_old: bool,
}

/// Rules kept on disk but not used, because their signer is no longer
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UntrustedRules {
    /// Their version, when known.
    pub version: Option<u64>,
    /// Key id of the signer that is no longer trusted.
    pub signer_key_id: String,
}

/// One RS-485 bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusStatus {
    /// Bus name from the config.
    pub name: String,
    /// Serial device.
    pub device: String,
    /// The PDs on it.
    pub pds: Vec<PdStatus>,
}

/// One OSDP peripheral device (reader or I/O module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdStatus {
    /// OSDP address.
    pub address: u8,
    /// Role from the config (`reader`, `io`).
    pub role: String,
    /// Online (answering polls, and in Secure Channel when a key is set).
    pub online: bool,
    /// Secure Channel active.
    pub secure_channel: bool,
    /// Milliseconds since its last valid reply; `None` if it never answered.
    pub last_reply_age_ms: Option<u64>,
    /// Why it is offline, when it is.
    pub offline_reason: Option<String>,
    /// Tamper switch active.
    pub tamper: bool,
    /// Power failure reported.
    pub power_failure: bool,
    /// Identity report, once received.
    pub identity: Option<PdIdentity>,
    /// Capability report (OSDP `PDCAP`), once received.
    #[serde(default)]
    pub capabilities: Vec<CapabilityStatus>,
    /// When it last answered (the gateway's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// A firmware update in progress: the reader is offline for the
    /// update and its door falls back to its wiring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateProgress>,
}

/// A file transfer to a PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateProgress {
    /// Bytes the PD has confirmed.
    pub confirmed: u32,
    /// The file's size.
    pub total: u32,
}

/// One capability a PD reports (OSDP `PDCAP` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityStatus {
    /// Function code (OSDP v2.2 Annex B).
    pub function: u8,
    /// Its name, e.g. `communication_security`.
    pub name: String,
    /// Compliance level.
    pub compliance: u8,
    /// Number of items.
    pub count: u8,
}

impl CapabilityStatus {
    /// A PDCAP record with its function's name.
    pub fn new(function: u8, compliance: u8, count: u8) -> Self {
        Self {
            function,
            name: capability_name(function).to_owned(),
            compliance,
            count,
        }
    }
}

/// The name of a PDCAP function code (OSDP v2.2 Annex B), `unknown` for
/// codes the spec does not define.
pub fn capability_name(function: u8) -> &'static str {
    match function {
        1 => "contact_status_monitoring",
        2 => "output_control",
        3 => "card_data_format",
        4 => "reader_led_control",
        5 => "reader_audible_output",
        6 => "reader_text_output",
        7 => "time_keeping",
        8 => "check_character_support",
        9 => "communication_security",
        10 => "receive_buffer_size",
        11 => "largest_combined_message_size",
        12 => "smart_card_support",
        13 => "readers",
        14 => "biometrics",
        15 => "secure_pin_entry",
        16 => "osdp_version",
        _ => "unknown",
    }
}

/// One reader in the fleet inventory (the MQTT `status` message's
/// `readers`, central's `readers` table): who made it, what it runs, what
/// it can do, and how it is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderInventory {
    /// Bus name from the config.
    pub bus: String,
    /// OSDP address.
    pub address: u8,
    /// Its name from the config.
    pub name: String,
    /// Identity report (PDID), once received.
    pub identity: Option<PdIdentity>,
    /// Capability report (PDCAP).
    #[serde(default)]
    pub capabilities: Vec<CapabilityStatus>,
    /// Online now.
    pub online: bool,
    /// In Secure Channel now.
    pub secure_channel: bool,
    /// When it last answered, as of this report.
    pub last_seen: Option<Timestamp>,
    /// Offline for a firmware update.
    #[serde(default)]
    pub updating: bool,
}

/// What a PD said about itself (OSDP `PDID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdIdentity {
    /// IEEE OUI of the vendor, as 6 hex digits.
    pub vendor: String,
    /// Model number.
    pub model: u8,
    /// Model version (hardware revision).
    #[serde(default)]
    pub version: u8,
    /// Serial number.
    pub serial: u32,
    /// Firmware version `major.minor.build`.
    pub firmware: String,
}

/// The kind of a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorKindName {
    /// A swing door with a strike or maglock.
    Standard,
    /// A revolving door.
    Revolving,
}

/// One door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorStatus {
    /// Door id (as in the rules).
    pub id: String,
    /// Standard or revolving.
    pub kind: DoorKindName,
    /// Standing mode: `card_only`, `unlocked`, `lockdown` (standard);
    /// `locked`, `cardholders_only`, `free_rotation`, `emergency_free`
    /// (revolving).
    pub mode: String,
    /// A timed override in force (`unlocked` / `locked` / `free_rotation`)
    /// and when it ends.
    pub override_state: Option<OverrideStatus>,
    /// Strike (or rotation) locked.
    pub locked: bool,
    /// Door contact reports open.
    pub open: bool,
    /// Opened without grant or exit request, not yet closed.
    pub forced: bool,
    /// Held open too long.
    pub held_open: bool,
    /// The rules' door-mode schedule says open (unlocked) now; `None` when
    /// the door has no such schedule.
    pub schedule_open: Option<bool>,
}

/// A timed override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideStatus {
    /// What the door does meanwhile.
    pub state: String,
    /// When it reverts by itself.
    pub until: Timestamp,
}

/// The MQTT uplink to the central system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkStatus {
    /// An uplink is configured.
    pub configured: bool,
    /// Connected to the broker now.
    pub connected: bool,
    /// Broker URL.
    pub broker: Option<String>,
    /// When the central system last acknowledged events.
    pub last_ack_at: Option<Timestamp>,
    /// Highest sequence number acknowledged.
    pub last_ack_seq: Option<u64>,
    /// Events not yet acknowledged.
    pub backlog: u64,
    /// Age in seconds of the oldest unacknowledged event.
    pub oldest_backlog_age_secs: Option<u64>,
}

/// Someone inside the building.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// Credential key.
    pub credential: String,
    /// Display name, if the rules carry one.
    pub name: Option<String>,
    /// When they entered the area they are in.
    pub since: Timestamp,
    /// The innermost area they are in (absent: the building of a door
    /// without areas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// The last door they went through, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
}

/// `/api/v1/occupancy`: who is inside, and when that was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupancy {
    /// The gateway's wall clock.
    pub now: Timestamp,
    /// The area asked for (`?area=`; its inner areas included); absent:
    /// everyone on the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Who is inside.
    pub inside: Vec<PresenceEntry>,
}

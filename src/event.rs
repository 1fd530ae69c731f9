//! What an event says. Serialised as CBOR in the journal and, later, on the
//! uplink; variant and field names are part of the contract with the
//! central system (snake_case, tagged by `type`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::action::{ActionRecord, FileDigest, Outcome, RecordedAction};
use crate::door::{ActiveMode, Direction, StandingMode};
use crate::ids::{AreaId, BusId, DoorId, InputId, ReaderId};
use crate::osdp::SecurityAlarm;
use crate::rules::DenyReason;

/// Which stage of a held-open door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldStage {
    /// The warning before the alarm (the reader beeps).
    PreAlarm,
    /// The door is held open past its alarm time.
    Alarm,
}

impl HeldStage {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreAlarm => "pre_alarm",
            Self::Alarm => "alarm",
        }
    }
}

/// A Secure Channel alarm as the contract names it. The old journal
/// spelling (Rust `Debug` text) is still read, so a backlog written by an
/// earlier version is not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmCode {
    /// The PD refused or ignored the challenge.
    #[serde(alias = "HandshakeRefused")]
    HandshakeRefused,
    /// The PD's cryptogram did not match: wrong key.
    #[serde(alias = "WrongKey")]
    WrongKey,
    /// The PD's initial R-MAC did not match.
    #[serde(alias = "BadInitialRmac")]
    BadInitialRmac,
    /// A plaintext reply inside the session.
    #[serde(alias = "PlaintextInSession")]
    PlaintextInSession,
    /// A reply failed its MAC.
    #[serde(alias = "BadMac")]
    BadMac,
    /// The PD refused a new key in install mode.
    KeySetRefused,
    /// A code this version does not know (read from an older journal).
    #[serde(other)]
    Other,
}

impl From<&SecurityAlarm> for AlarmCode {
    fn from(alarm: &SecurityAlarm) -> Self {
        match alarm {
            SecurityAlarm::HandshakeRefused => Self::HandshakeRefused,
            SecurityAlarm::WrongKey => Self::WrongKey,
            SecurityAlarm::BadInitialRmac => Self::BadInitialRmac,
            SecurityAlarm::PlaintextInSession => Self::PlaintextInSession,
            SecurityAlarm::BadMac => Self::BadMac,
            SecurityAlarm::KeySetRefused(_) => Self::KeySetRefused,
        }
    }
}

impl std::fmt::Display for AlarmCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The serde name is the one word for it everywhere.
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

impl std::fmt::Display for OfflineCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoReply => "no_reply",
            Self::SecurityAlarm => "security_alarm",
            Self::Other => "other",
        })
    }
}

impl std::fmt::Display for HeldStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a PD went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineCause {
    /// It stopped answering.
    NoReply,
    /// A Secure Channel alarm (see the event's `alarm`).
    SecurityAlarm,
    /// A reason this version does not know (read from an older journal).
    #[serde(other)]
    Other,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Per-gateway sequence number, never reused.
    pub seq: u64,
    /// Wall-clock time of the happening.
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Why the system clock is not believed, reported once per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Untrusted {
    /// It stepped against the monotonic clock without confirmation.
    Stepped,
    /// It reads behind the signed floor.
    Behind,
    /// At the first reading it is implausibly far ahead of the floor.
    Ahead,
    /// It lies outside the interval a beacon gave.
    OutsideInterval,
}

impl Untrusted {
    /// The contract name (`clock_untrusted.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stepped => "stepped",
            Self::Behind => "behind",
            Self::Ahead => "ahead",
            Self::OutsideInterval => "outside_interval",
        }
    }
}

/// Why a scheduled release was withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// The clock is believed but no signed time confirmed it yet.
    TimeUnconfirmed,
    /// The clock is not believed.
    ClockUntrusted,
    /// An airlock: another door of the door's interlock group is open or
    /// released (tried again every minute).
    Interlocked,
}

impl Withheld {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TimeUnconfirmed => "time_unconfirmed",
            Self::ClockUntrusted => "clock_untrusted",
            Self::Interlocked => "interlocked",
        }
    }
}

/// How a login on the admin port ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginResult {
    /// Logged in.
    Ok,
    /// Wrong user name or password.
    Failed,
    /// Refused unchecked: locked out.
    LockedOut,
}

impl LoginResult {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::LockedOut => "locked_out",
        }
    }
}

/// The contract names in text.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Untrusted, Withheld, LoginResult);

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A credential was granted at a door.
    AccessGranted {
        /// Door id.
        door: DoorId,
        /// Reader id.
        reader: ReaderId,
        /// Credential key.
        credential: String,
    },
    /// A credential was denied, with the contract's reason code.
    AccessDenied {
        /// Door id.
        door: DoorId,
        /// Reader id.
        reader: ReaderId,
        /// Credential key, when the card could be read.
        credential: Option<String>,
        /// Deny reason (`expired`, `blocked`, …).
        reason: DenyReason,
    },
    /// The exit button released a door.
    ExitRequest {
        /// Door id.
        door: DoorId,
    },
    /// A door opened without grant or exit request.
    DoorForced {
        /// Door id.
        door: DoorId,
    },
    /// A door stayed open too long.
    DoorHeldOpen {
        /// Door id.
        door: DoorId,
        /// `pre_alarm` or `alarm`.
        stage: HeldStage,
    },
    /// A door closed again.
    DoorClosed {
        /// Door id.
        door: DoorId,
    },
    /// A door's mode changed (schedule, override, lockdown, remote command).
    DoorModeChanged {
        /// Door id.
        door: DoorId,
        /// The new mode.
        mode: ActiveMode,
    },
    /// Someone entered or left: outside office hours at any door with
    /// readers both ways, and every passage at a door with areas.
    Presence {
        /// Credential key.
        credential: String,
        /// Display name, when the rules give one.
        name: Option<String>,
        /// `in` or `out`.
        direction: Direction,
        /// The area entered or left (absent: the building of a door
        /// without areas, and in events written before areas).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        area: Option<AreaId>,
        /// The door, at a door with areas.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        door: Option<DoorId>,
        /// Where a departure lands: the door's outer area (`out` only;
        /// absent: out of every area). Central's muster list needs it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outer: Option<AreaId>,
    },
    /// A PD came online.
    PdOnline {
        /// Bus name.
        bus: BusId,
        /// PD address.
        address: u8,
        /// Secure Channel active.
        secure: bool,
    },
    /// A PD went offline.
    PdOffline {
        /// Bus name.
        bus: BusId,
        /// PD address.
        address: u8,
        /// Why.
        reason: OfflineCause,
        /// The Secure Channel alarm, when that was why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alarm: Option<AlarmCode>,
    },
    /// Tamper or power status of a PD changed.
    PdStatus {
        /// Bus name.
        bus: BusId,
        /// PD address.
        address: u8,
        /// Tamper switch active.
        tamper: bool,
        /// Power failure.
        power_failure: bool,
    },
    /// A Secure Channel alarm (wrong key, bad MAC, …).
    SecurityAlarm {
        /// Bus name.
        bus: BusId,
        /// PD address.
        address: u8,
        /// What happened.
        alarm: AlarmCode,
    },
    /// The daemon started.
    DaemonStarted {
        /// Software version.
        version: String,
        /// Rules version in force, if any.
        rules_version: Option<u64>,
    },
    /// A remote door action (central command, admin page, test hook)
    /// and what came of it.
    RemoteAction(ActionRecord),
    /// A signed command was refused before acting (bad signature, expired,
    /// replayed, another gateway's).
    CommandRefused {
        /// Its id, when it could be read.
        id: Option<String>,
        /// Why.
        reason: String,
    },
    /// The system clock reads earlier than a time already trusted; the
    /// trusted time is used for validity until the clock catches up.
    ClockWentBack {
        /// What the system clock said.
        seen: jiff::Timestamp,
        /// The latest trusted time.
        trusted: jiff::Timestamp,
    },
    /// The system clock reads implausibly far beyond the signed time
    /// floor; the floor (advanced by the monotonic clock) is used.
    ClockImplausible {
        /// What the system clock said.
        seen: jiff::Timestamp,
        /// The time used instead.
        trusted: jiff::Timestamp,
    },
    /// The system clock stepped against the monotonic clock (followed when
    /// plausible; recorded so that a glitch is visible).
    ClockJumped {
        /// What the system clock said.
        seen: jiff::Timestamp,
        /// What it would have said without the step.
        expected: jiff::Timestamp,
    },
    /// The system clock is not believed from now on (`reason`: `stepped`
    /// against the monotonic clock without confirmation, `behind` the
    /// signed floor, implausibly `ahead` at start, `outside_interval` a
    /// beacon gave): the gateway goes on with `used` (the last believed
    /// time advanced by the monotonic clock), decides cards at both edges
    /// of `[earliest, latest]` and starts no scheduled release.
    ClockUntrusted {
        /// Why.
        reason: Untrusted,
        /// What the system clock said.
        seen: jiff::Timestamp,
        /// The time used instead.
        used: jiff::Timestamp,
        /// The interval's lower edge, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        earliest: Option<jiff::Timestamp>,
        /// The interval's upper edge, when a beacon gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latest: Option<jiff::Timestamp>,
    },
    /// The system clock is believed again (a `clock_untrusted` episode
    /// ended: corrected, or confirmed by a beacon or an operator).
    ClockTrusted {
        /// What the system clock said.
        seen: jiff::Timestamp,
    },
    /// A time beacon was refused (bad signature, unknown key, another
    /// gateway's): a forged time is an attack on the doors.
    TimeBeaconRefused {
        /// Why.
        reason: String,
    },
    /// An operator vouched for the gateway's clock on the admin page.
    ClockConfirmed {
        /// Who (`admin:<user>`, `control-socket`).
        by: String,
        /// The time they confirmed.
        time: jiff::Timestamp,
    },
    /// A signed issue time lay beyond what the gateway's time allows
    /// (`issued_in_future`): it did not move the trusted floor.
    SignedTimeRefused {
        /// The issue time.
        issued_at: jiff::Timestamp,
    },
    /// A scheduled release (unlocked, free rotation) did not start because
    /// the time is not confirmed (`time_unconfirmed`: no beacon yet;
    /// `clock_untrusted`): the door stays in card mode until it is.
    DoorModeWithheld {
        /// Door id.
        door: DoorId,
        /// The scheduled mode.
        mode: StandingMode,
        /// Why.
        reason: Withheld,
    },
    /// A scheduled mode with `first_person_in` is due, and the door
    /// stays in card mode until a credential is granted there (once per
    /// window).
    FirstPersonInAwaited {
        /// Door id.
        door: DoorId,
        /// The scheduled mode that waits.
        mode: String,
    },
    /// The first person in: a credential granted at the door inside its
    /// `first_person_in` window; the scheduled mode starts (at a proven
    /// time, as every scheduled release).
    FirstPersonIn {
        /// Door id.
        door: DoorId,
        /// Who was granted.
        credential: String,
        /// The scheduled mode that starts.
        mode: String,
    },
    /// The state directory's disk reached the reserve kept for alarms:
    /// doors go on deciding, routine events are dropped (counted) and
    /// alarms use the reserve.
    DiskFull {
        /// Bytes still available.
        available: u64,
        /// The reserve.
        reserve: u64,
    },
    /// Space is back above the reserve after a [`EventKind::DiskFull`].
    DiskSpaceRecovered {
        /// Routine events dropped while it was low.
        dropped: u64,
    },
    /// The journal reached its budget: routine events are being dropped
    /// (counted); alarms and security events are still kept.
    JournalFull {
        /// Routine events dropped so far.
        dropped: u64,
    },
    /// Central acknowledged a sequence number beyond the highest this
    /// gateway sent on the link: nothing is deleted for it (a confused or
    /// hostile central must not empty the journal).
    AckOutOfRange {
        /// The sequence number central acknowledged.
        acked: u64,
        /// The highest sequence number sent.
        sent: u64,
    },
    /// A journal record could not be decoded; the uplink skipped it and
    /// sends on (it is deleted with the next acknowledgement past it).
    JournalRecordSkipped {
        /// Its sequence number (on the wire the stand-in event carries the
        /// same `seq`; the alarm journaled locally gets its own).
        record: u64,
        /// The decoder's complaint.
        error: String,
    },
    /// A message from the broker was larger than its topic allows and was
    /// refused unread.
    UplinkMessageRefused {
        /// The topic it came on.
        topic: String,
        /// Its size, bytes.
        bytes: u64,
        /// The topic's limit, bytes.
        limit: u64,
    },
    /// An event whose encoding exceeded the journal's size cap
    /// (`MAX_EVENT_BYTES`) even after its texts were capped: a bug, kept
    /// visible; the event itself is not written.
    EventOversized {
        /// The `type` of the event that was too large.
        kind: String,
        /// Its encoded size, bytes.
        bytes: u64,
    },
    /// The rules store was rebuilt from its last-good signed files at
    /// start (its sled database was damaged or empty).
    RulesRecovered {
        /// What was wrong.
        reason: String,
        /// Where the damaged database was moved, kept for forensics.
        moved_aside: Option<String>,
        /// Version in force after the rebuild.
        version: Option<u64>,
    },
    /// A rules snapshot or delta was applied.
    RulesApplied {
        /// Version now in force.
        version: u64,
    },
    /// A rules snapshot or delta was refused.
    RulesRefused {
        /// Why.
        reason: String,
    },
    /// The local admin port started: where, and the SHA-256 fingerprint of
    /// its certificate (to check the browser's warning against).
    AdminStarted {
        /// Listen address.
        listen: String,
        /// `AB:CD:…`.
        fingerprint: String,
        /// The self-signed certificate was generated on this start.
        cert_generated: bool,
    },
    /// A login attempt on the local admin port (page or API).
    AdminLogin {
        /// User name as typed.
        user: String,
        /// Client address.
        client: String,
        /// How it ended.
        result: LoginResult,
    },
    /// Failed logins on the local admin port from one client address,
    /// summed: the first failure from an address is journaled at once, the
    /// rest of its minute as one record when the minute ends, so no stream
    /// of unauthenticated requests adds more than a bounded amount per
    /// minute (`docs/admin.md`).
    AdminLoginFailed {
        /// Client address (`other` when more addresses failed in one
        /// minute than are counted apart).
        client: String,
        /// The last user name tried (capped, escaped).
        user: String,
        /// Failed attempts summed here.
        count: u64,
        /// Of those, refused unchecked: locked out, or every password
        /// check busy.
        refused: u64,
        /// When the first of them came.
        since: jiff::Timestamp,
    },
    /// An operator's door action on the local admin port.
    AdminAction {
        /// Who (user or token name).
        user: String,
        /// Client address.
        client: String,
        /// Door id.
        door: String,
        /// What, e.g. `unlock 5s`, `override unlocked until …`,
        /// `release one passage in`.
        action: String,
        /// `ok`, or why it was refused.
        result: String,
    },
    /// Alarm: the rules on disk were signed by a key that is no longer
    /// trusted (e.g. removed after a leak). They are kept but not used:
    /// every card is denied (`rules_untrusted`) until a snapshot signed by
    /// a trusted key is applied.
    RulesUntrusted {
        /// Key id of the signer that is no longer trusted.
        key_id: String,
        /// Version of the rules that are not used.
        version: Option<u64>,
    },
    /// Alarm: the local admin port could not start (e.g. its users file is
    /// unreadable by the service user); the doors work on without it.
    AdminUnavailable {
        /// The file at fault, when a file is.
        file: Option<String>,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Alarm: a fire-alarm input went active (its escape doors released
    /// above every other authority) or cleared (they return to their modes).
    FireAlarm {
        /// The input (`[[fire_alarm]] id`).
        input: InputId,
        /// Active (alarm) or cleared.
        active: bool,
        /// The escape doors it releases.
        releases: Vec<DoorId>,
    },
    /// Alarm: the PD carrying a fire-alarm input went offline; the input's
    /// last known level is kept (`active`) until the PD reports again.
    FireAlarmInputOffline {
        /// The input.
        input: InputId,
        /// The level kept meanwhile.
        active: bool,
    },
    /// Silent alarm: a cardholder entered a duress PIN. The door opened as
    /// usual (an `access_granted` follows); this goes to central first.
    Duress {
        /// Door id.
        door: DoorId,
        /// Reader id.
        reader: ReaderId,
        /// Credential key.
        credential: String,
    },
    /// A passage against a card's known location (`site::areas`): granted
    /// under `soft` anti-passback, denied under `hard` or `timed` (the
    /// `access_denied` with reason `antipassback` follows).
    Antipassback {
        /// Door id.
        door: DoorId,
        /// Credential key.
        credential: String,
        /// The area whose anti-passback it breaks.
        area: AreaId,
        /// `already_inside` or `not_inside`.
        breach: Breach,
        /// Granted (`soft`) or denied.
        granted: bool,
    },
    /// The daily anti-passback forgiveness: every location before `at` is
    /// no longer held against a card (the muster list still shows it).
    AntipassbackForgiven {
        /// The forgiveness time (`at` is the event's own time).
        forgiven_at: jiff::Timestamp,
    },
    /// An exit button press at a door of an interlock (airlock) waited
    /// for the other doors to close and lock, in vain: not released.
    ExitRequestDenied {
        /// Door id.
        door: DoorId,
        /// Why (`interlock`).
        reason: DenyReason,
    },
    /// Cards the rules no longer know were taken off the muster list
    /// (they leave every area).
    LocationsDropped {
        /// How many.
        count: u64,
    },
    /// A reader's firmware update began: the file's SHA-256 matched the
    /// signed command and its first fragment is on its way.
    ReaderUpdateStarted {
        /// The central command's id.
        command: Option<String>,
        /// The reader (PD name).
        reader: ReaderId,
        /// The file's size.
        bytes: u64,
        /// The file's SHA-256.
        sha256: FileDigest,
    },
    /// A firmware update advanced: said at each tenth of the file (at most
    /// nine times per attempt).
    ReaderUpdateProgress {
        /// The central command's id.
        command: Option<String>,
        /// The reader.
        reader: ReaderId,
        /// Bytes the reader confirmed.
        confirmed: u64,
        /// The file's size.
        total: u64,
        /// Which attempt (a reader lost mid-file is sent it again from
        /// byte 0, up to 3 attempts).
        attempt: u32,
    },
    /// The reader took the whole file.
    ReaderUpdateFinished {
        /// The central command's id.
        command: Option<String>,
        /// The reader.
        reader: ReaderId,
        /// The file's size.
        bytes: u64,
        /// From the first fragment to the reader's last confirmation.
        millis: u64,
        /// The reader restarts to apply it.
        reboot: bool,
    },
    /// A firmware update was refused or ended without the reader taking
    /// the file.
    ReaderUpdateFailed {
        /// The central command's id.
        command: Option<String>,
        /// The reader.
        reader: ReaderId,
        /// Why.
        reason: UpkeepFailure,
        /// More, in words.
        detail: String,
    },
    /// A key rotation began: the reader is online in Secure Channel; the
    /// new key is written and sent next (a refusal of those steps follows
    /// as `reader_key_rotation_failed`).
    ReaderKeyRotationStarted {
        /// The central command's id.
        command: Option<String>,
        /// The reader.
        reader: ReaderId,
    },
    /// A reader's Secure Channel key was rotated: the reader proved the
    /// new key in a new session and the old one is retired. `command` is
    /// absent when a rotation cut short earlier is found done at bring-up.
    ReaderKeyRotated {
        /// The central command's id.
        command: Option<String>,
        /// The reader.
        reader: ReaderId,
    },
    /// A key rotation was refused or did not finish; `detail` says what
    /// the key files keep (always a key the reader holds).
    ReaderKeyRotationFailed {
        /// The central command's id.
        command: Option<String>,
        /// The reader.
        reader: ReaderId,
        /// Why.
        reason: UpkeepFailure,
        /// More, in words.
        detail: String,
    },
}

/// Why a reader's update or key rotation did not happen
/// ([`crate::upkeep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpkeepFailure {
    /// No PD of that name in the gateway's config.
    UnknownReader,
    /// A key rotation of a reader without Secure Channel (plaintext).
    NoSecureChannel,
    /// Another update or rotation runs on the reader's bus.
    Busy,
    /// The file is empty or larger than the gateway takes.
    FileTooLarge,
    /// The file's SHA-256 or size is not the signed command's: not a byte
    /// was sent.
    HashMismatch,
    /// The reader reports another vendor than the command names.
    WrongVendor,
    /// The reader reports another model than the command names.
    WrongModel,
    /// The command names a vendor or model and the reader never reported
    /// its identity.
    IdentityUnknown,
    /// The file did not arrive before the command expired.
    FileNotReceived,
    /// The reader was not online before the command expired.
    ReaderOffline,
    /// The reader was lost during the transfer, three times, or during
    /// the rotation.
    ReaderLost,
    /// The reader refused the file or the key (status, NAK, odd reply).
    RefusedByReader,
    /// No confirmation from the reader for two minutes.
    Stalled,
    /// The bus refused the request.
    Bus,
    /// The key file could not be written or read.
    KeyFile,
    /// The reader acknowledged the new key but proved the old one.
    OldKeyKept,
}

impl UpkeepFailure {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownReader => "unknown_reader",
            Self::NoSecureChannel => "no_secure_channel",
            Self::Busy => "busy",
            Self::FileTooLarge => "file_too_large",
            Self::HashMismatch => "hash_mismatch",
            Self::WrongVendor => "wrong_vendor",
            Self::WrongModel => "wrong_model",
            Self::IdentityUnknown => "identity_unknown",
            Self::FileNotReceived => "file_not_received",
            Self::ReaderOffline => "reader_offline",
            Self::ReaderLost => "reader_lost",
            Self::RefusedByReader => "refused_by_reader",
            Self::Stalled => "stalled",
            Self::Bus => "bus",
            Self::KeyFile => "key_file",
            Self::OldKeyKept => "old_key_kept",
        }
    }
}

/// How a passage breaks anti-passback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// The card is known to be inside the area it enters.
    AlreadyInside,
    /// The card is known to be outside the area it leaves.
    NotInside,
}

impl Breach {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyInside => "already_inside",
            Self::NotInside => "not_inside",
        }
    }
}

/// The event types central's `alarms` view lists (besides tamper/power
/// `pd_status`, offline gateways, quarantined records and journal changes,
/// which the view adds itself): the one list, which a test holds the
/// newest migration's view to.
pub const ALARM_TYPES: &[&str] = &[
    "door_forced",
    "door_held_open",
    "pd_offline",
    "security_alarm",
    "clock_went_back",
    "clock_implausible",
    "clock_untrusted",
    "signed_time_refused",
    "time_beacon_refused",
    "door_mode_withheld",
    "disk_full",
    "rules_refused",
    "rules_untrusted",
    "journal_full",
    "journal_record_skipped",
    "event_oversized",
    "uplink_message_refused",
    "ack_out_of_range",
    "admin_login_failed",
    "admin_unavailable",
    "duress",
    "command_refused",
    "fire_alarm",
    "fire_alarm_input_offline",
    "reader_update_failed",
    "reader_key_rotation_failed",
];

/// At most this many ids in one event's list (a fire alarm's doors).
const MAX_LISTED: usize = 64;

fn ids_listed(ids: &[DoorId]) -> String {
    ids.iter()
        .map(DoorId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event types a gateway publishes ahead of its backlog on
/// `<prefix>/urgent` ([`EventKind::is_urgent`]); central keeps only these
/// from that topic (`urgent_events`).
pub const URGENT_TYPES: &[&str] = &["duress", "fire_alarm"];

/// How an event should strike a reader of the page: the one judgement,
/// beside the one wording ([`EventKind::describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Routine.
    Plain,
    /// Good news (a grant, a reader online, rules applied).
    Good,
    /// Worth a look (a mode change, a refused login, a kept alarm).
    Notice,
    /// An alarm or a denial.
    Bad,
}

impl EventKind {
    /// How the event should strike a reader.
    pub fn tone(&self) -> Tone {
        match self {
            Self::AccessGranted { .. } | Self::RulesApplied { .. } => Tone::Good,
            Self::PdOnline { secure: true, .. } => Tone::Good,
            Self::PdOnline { secure: false, .. } | Self::DoorModeChanged { .. } => Tone::Notice,
            Self::AccessDenied { .. }
            | Self::Antipassback { .. }
            | Self::ExitRequestDenied { .. }
            | Self::DoorForced { .. }
            | Self::DoorHeldOpen { .. }
            | Self::PdOffline { .. }
            | Self::SecurityAlarm { .. }
            | Self::RulesRefused { .. }
            | Self::FireAlarm { active: true, .. }
            | Self::FireAlarmInputOffline { .. }
            | Self::Duress { .. }
            | Self::ReaderUpdateFailed { .. }
            | Self::ReaderKeyRotationFailed { .. } => Tone::Bad,
            Self::ReaderUpdateFinished { .. } | Self::ReaderKeyRotated { .. } => Tone::Good,
            Self::PdStatus {
                tamper,
                power_failure,
                ..
            } => {
                if *tamper || *power_failure {
                    Tone::Bad
                } else {
                    Tone::Good
                }
            }
            Self::AdminLogin { result, .. } if *result != LoginResult::Ok => Tone::Notice,
            Self::AdminAction { result, .. } if result == "ok" => Tone::Notice,
            Self::AdminAction { .. } => Tone::Bad,
            Self::ExitRequest { .. }
            | Self::DoorClosed { .. }
            | Self::Presence { .. }
            | Self::AdminStarted { .. }
            | Self::AdminLogin { .. } => Tone::Plain,
            other if other.must_keep() => Tone::Notice,
            _ => Tone::Plain,
        }
    }

    /// Events central must see before the backlog: published at once,
    /// beside the journal's order (which delivers them again in turn).
    pub fn is_urgent(&self) -> bool {
        matches!(
            self,
            Self::Duress { .. } | Self::FireAlarm { active: true, .. }
        )
    }

    /// Alarms and security events, which a full journal still keeps.
    pub fn must_keep(&self) -> bool {
        !matches!(
            self,
            Self::AccessGranted { .. }
                | Self::ExitRequest { .. }
                | Self::DoorClosed { .. }
                | Self::DoorModeChanged { .. }
                | Self::FirstPersonInAwaited { .. }
                | Self::ReaderUpdateProgress { .. }
                | Self::PdOnline { .. }
                | Self::DaemonStarted { .. }
                | Self::RulesApplied { .. }
        )
    }

    /// The event with every text from outside capped and its control
    /// characters escaped ([`crate::text`]): what the journal writes.
    pub fn bounded(self) -> Self {
        use crate::text::{ID, NAME, TEXT, bounded_owned as cap};
        let id = |s: String| cap(s, ID);
        let text = |s: String| cap(s, TEXT);
        let door = |d: DoorId| DoorId::from(cap(d.into(), ID));
        let reader = |r: ReaderId| ReaderId::from(cap(r.into(), ID));
        let bus = |b: BusId| BusId::from(cap(b.into(), ID));
        let input = |i: InputId| InputId::from(cap(i.into(), ID));
        match self {
            Self::AccessGranted {
                door: d,
                reader: r,
                credential,
            } => Self::AccessGranted {
                door: door(d),
                reader: reader(r),
                credential: text(credential),
            },
            Self::AccessDenied {
                door: d,
                reader: r,
                credential,
                reason,
            } => Self::AccessDenied {
                door: door(d),
                reader: reader(r),
                credential: credential.map(text),
                reason,
            },
            Self::ExitRequest { door: d } => Self::ExitRequest { door: door(d) },
            Self::DoorForced { door: d } => Self::DoorForced { door: door(d) },
            Self::DoorHeldOpen { door: d, stage } => Self::DoorHeldOpen {
                door: door(d),
                stage,
            },
            Self::DoorClosed { door: d } => Self::DoorClosed { door: door(d) },
            Self::DoorModeChanged { door: d, mode } => Self::DoorModeChanged {
                door: door(d),
                mode,
            },
            Self::Presence {
                credential,
                name,
                direction,
                area,
                door: d,
                outer,
            } => Self::Presence {
                credential: text(credential),
                name: name.map(|n| cap(n, ID)),
                direction,
                area: area.map(|a| AreaId::from(cap(a.into(), ID))),
                door: d.map(door),
                outer: outer.map(|a| AreaId::from(cap(a.into(), ID))),
            },
            Self::Antipassback {
                door: d,
                credential,
                area,
                breach,
                granted,
            } => Self::Antipassback {
                door: door(d),
                credential: text(credential),
                area: AreaId::from(cap(area.into(), ID)),
                breach,
                granted,
            },
            Self::ExitRequestDenied { door: d, reason } => Self::ExitRequestDenied {
                door: door(d),
                reason,
            },
            Self::PdOnline {
                bus: b,
                address,
                secure,
            } => Self::PdOnline {
                bus: bus(b),
                address,
                secure,
            },
            Self::PdOffline {
                bus: b,
                address,
                reason,
                alarm,
            } => Self::PdOffline {
                bus: bus(b),
                address,
                reason,
                alarm,
            },
            Self::PdStatus {
                bus: b,
                address,
                tamper,
                power_failure,
            } => Self::PdStatus {
                bus: bus(b),
                address,
                tamper,
                power_failure,
            },
            Self::SecurityAlarm {
                bus: b,
                address,
                alarm,
            } => Self::SecurityAlarm {
                bus: bus(b),
                address,
                alarm,
            },
            Self::DaemonStarted {
                version,
                rules_version,
            } => Self::DaemonStarted {
                version: id(version),
                rules_version,
            },
            Self::RemoteAction(r) => Self::RemoteAction(ActionRecord {
                source: id(r.source),
                command: r.command.map(id),
                action: match r.action {
                    RecordedAction::Text(t) => RecordedAction::Text(text(t)),
                    // A long door list would make the whole record too big
                    // and cost who did it and the outcome: past the text
                    // cap the action is kept as its text, capped.
                    RecordedAction::Action(a) => {
                        let json = serde_json::to_string(&a).unwrap_or_default();
                        if json.len() > TEXT {
                            RecordedAction::Text(text(json))
                        } else {
                            RecordedAction::Action(a)
                        }
                    }
                },
                refusal: r.refusal.map(text),
                ..r
            }),
            Self::CommandRefused { id: i, reason } => Self::CommandRefused {
                id: i.map(id),
                reason: text(reason),
            },
            Self::JournalRecordSkipped { record, error } => Self::JournalRecordSkipped {
                record,
                error: text(error),
            },
            Self::UplinkMessageRefused {
                topic,
                bytes,
                limit,
            } => Self::UplinkMessageRefused {
                topic: id(topic),
                bytes,
                limit,
            },
            Self::RulesRecovered {
                reason,
                moved_aside,
                version,
            } => Self::RulesRecovered {
                reason: text(reason),
                moved_aside: moved_aside.map(text),
                version,
            },
            Self::RulesRefused { reason } => Self::RulesRefused {
                reason: text(reason),
            },
            Self::AdminStarted {
                listen,
                fingerprint,
                cert_generated,
            } => Self::AdminStarted {
                listen: id(listen),
                fingerprint: id(fingerprint),
                cert_generated,
            },
            Self::AdminLogin {
                user,
                client,
                result,
            } => Self::AdminLogin {
                user: cap(user, NAME),
                client: cap(client, NAME),
                result,
            },
            Self::AdminLoginFailed {
                client,
                user,
                count,
                refused,
                since,
            } => Self::AdminLoginFailed {
                client: cap(client, NAME),
                user: cap(user, NAME),
                count,
                refused,
                since,
            },
            Self::AdminAction {
                user,
                client,
                door: d,
                action,
                result,
            } => Self::AdminAction {
                user: cap(user, NAME),
                client: cap(client, NAME),
                door: id(d),
                action: text(action),
                result: text(result),
            },
            Self::RulesUntrusted { key_id, version } => Self::RulesUntrusted {
                key_id: id(key_id),
                version,
            },
            Self::ClockUntrusted {
                reason,
                seen,
                used,
                earliest,
                latest,
            } => Self::ClockUntrusted {
                reason,
                seen,
                used,
                earliest,
                latest,
            },
            Self::ClockConfirmed { by, time } => Self::ClockConfirmed { by: id(by), time },
            Self::TimeBeaconRefused { reason } => Self::TimeBeaconRefused {
                reason: text(reason),
            },
            Self::DoorModeWithheld {
                door: d,
                mode,
                reason,
            } => Self::DoorModeWithheld {
                door: door(d),
                mode,
                reason,
            },
            Self::AdminUnavailable { file, reason } => Self::AdminUnavailable {
                file: file.map(text),
                reason: text(reason),
            },
            Self::FireAlarm {
                input: i,
                active,
                releases,
            } => Self::FireAlarm {
                input: input(i),
                active,
                releases: releases.into_iter().take(MAX_LISTED).map(door).collect(),
            },
            Self::FireAlarmInputOffline { input: i, active } => Self::FireAlarmInputOffline {
                input: input(i),
                active,
            },
            Self::Duress {
                door: d,
                reader: r,
                credential,
            } => Self::Duress {
                door: door(d),
                reader: reader(r),
                credential: text(credential),
            },
            Self::FirstPersonInAwaited { door: d, mode } => Self::FirstPersonInAwaited {
                door: door(d),
                mode: id(mode),
            },
            Self::FirstPersonIn {
                door: d,
                credential,
                mode,
            } => Self::FirstPersonIn {
                door: door(d),
                credential: text(credential),
                mode: id(mode),
            },
            Self::ReaderUpdateStarted {
                command,
                reader: r,
                bytes,
                sha256,
            } => Self::ReaderUpdateStarted {
                command: command.map(id),
                reader: reader(r),
                bytes,
                sha256,
            },
            Self::ReaderUpdateProgress {
                command,
                reader: r,
                confirmed,
                total,
                attempt,
            } => Self::ReaderUpdateProgress {
                command: command.map(id),
                reader: reader(r),
                confirmed,
                total,
                attempt,
            },
            Self::ReaderUpdateFinished {
                command,
                reader: r,
                bytes,
                millis,
                reboot,
            } => Self::ReaderUpdateFinished {
                command: command.map(id),
                reader: reader(r),
                bytes,
                millis,
                reboot,
            },
            Self::ReaderUpdateFailed {
                command,
                reader: r,
                reason,
                detail,
            } => Self::ReaderUpdateFailed {
                command: command.map(id),
                reader: reader(r),
                reason,
                detail: text(detail),
            },
            Self::ReaderKeyRotated { command, reader: r } => Self::ReaderKeyRotated {
                command: command.map(id),
                reader: reader(r),
            },
            Self::ReaderKeyRotationStarted { command, reader: r } => {
                Self::ReaderKeyRotationStarted {
                    command: command.map(id),
                    reader: reader(r),
                }
            }
            Self::ReaderKeyRotationFailed {
                command,
                reader: r,
                reason,
                detail,
            } => Self::ReaderKeyRotationFailed {
                command: command.map(id),
                reader: reader(r),
                reason,
                detail: text(detail),
            },
            // No text in these.
            kind @ (Self::AntipassbackForgiven { .. }
            | Self::LocationsDropped { .. }
            | Self::ClockWentBack { .. }
            | Self::ClockTrusted { .. }
            | Self::SignedTimeRefused { .. }
            | Self::ClockImplausible { .. }
            | Self::ClockJumped { .. }
            | Self::DiskFull { .. }
            | Self::DiskSpaceRecovered { .. }
            | Self::JournalFull { .. }
            | Self::AckOutOfRange { .. }
            | Self::EventOversized { .. }
            | Self::RulesApplied { .. }) => kind,
        }
    }

    /// One sentence for people: the one wording of an event, for the admin
    /// page, the log, `portier status` and the demo.
    pub fn describe(&self) -> String {
        match self {
            Self::AccessGranted {
                door,
                reader,
                credential,
            } => format!("{door}: {credential} granted at {reader}"),
            Self::AccessDenied {
                door,
                reader,
                credential,
                reason,
            } => format!(
                "{door}: {} denied at {reader} — {}",
                credential.as_deref().unwrap_or("unreadable card"),
                reason.words()
            ),
            Self::ExitRequest { door } => format!("{door}: exit button, strike released"),
            Self::DoorForced { door } => format!("{door}: DOOR FORCED (opened without grant)"),
            Self::DoorHeldOpen { door, stage } => {
                format!("{door}: door held open ({})", stage.as_str())
            }
            Self::DoorClosed { door } => format!("{door}: door closed"),
            Self::DoorModeChanged { door, mode } => format!("{door}: mode now {mode}"),
            Self::Presence {
                credential,
                name,
                direction,
                area: None,
                ..
            } => format!(
                "presence: {} ({credential}) went {} after hours",
                name.as_deref().unwrap_or("someone"),
                direction
            ),
            Self::Presence {
                credential,
                name,
                direction,
                area: Some(area),
                door,
                ..
            } => format!(
                "presence: {} ({credential}) {} {area}{}",
                name.as_deref().unwrap_or("someone"),
                match direction {
                    Direction::In => "entered",
                    Direction::Out => "left",
                },
                door.as_ref()
                    .map(|d| format!(" at {d}"))
                    .unwrap_or_default()
            ),
            Self::Antipassback {
                door,
                credential,
                area,
                breach,
                granted,
            } => format!(
                "{door}: ANTI-PASSBACK {credential}: {} {area} ({})",
                match breach {
                    Breach::AlreadyInside => "already inside",
                    Breach::NotInside => "not known to be inside",
                },
                if *granted { "granted, soft" } else { "denied" }
            ),
            Self::AntipassbackForgiven { forgiven_at } => {
                format!("anti-passback forgiveness: locations before {forgiven_at} forgiven")
            }
            Self::ExitRequestDenied { door, reason } => {
                format!("{door}: exit button not honoured — {}", reason.words())
            }
            Self::LocationsDropped { count } => {
                format!("muster list: {count} cards no longer in the rules left every area")
            }
            Self::ReaderUpdateStarted {
                reader,
                bytes,
                sha256,
                ..
            } => format!("{reader}: firmware update started ({bytes} bytes, sha256 {sha256})"),
            Self::ReaderUpdateProgress {
                reader,
                confirmed,
                total,
                attempt,
                ..
            } => format!(
                "{reader}: firmware update {}% ({confirmed}/{total} bytes, attempt {attempt})",
                confirmed.saturating_mul(100) / (*total).max(1)
            ),
            Self::ReaderUpdateFinished {
                reader,
                bytes,
                millis,
                reboot,
                ..
            } => format!(
                "{reader}: firmware update finished ({bytes} bytes in {:.1} s){}",
                *millis as f64 / 1000.0,
                if *reboot { ", the reader restarts" } else { "" }
            ),
            Self::ReaderUpdateFailed {
                reader,
                reason,
                detail,
                ..
            } => format!(
                "{reader}: FIRMWARE UPDATE FAILED ({}): {detail}",
                reason.as_str()
            ),
            Self::ReaderKeyRotated { reader, .. } => {
                format!("{reader}: Secure Channel key rotated, the old key retired")
            }
            Self::ReaderKeyRotationStarted { reader, .. } => {
                format!("{reader}: key rotation started (KEYSET in Secure Channel)")
            }
            Self::ReaderKeyRotationFailed {
                reader,
                reason,
                detail,
                ..
            } => format!(
                "{reader}: KEY ROTATION FAILED ({}): {detail}",
                reason.as_str()
            ),
            Self::PdOnline {
                bus,
                address,
                secure,
            } => format!(
                "{bus}/{address}: reader online{}",
                if *secure {
                    " (Secure Channel)"
                } else {
                    " (PLAINTEXT)"
                }
            ),
            Self::PdOffline {
                bus,
                address,
                reason,
                alarm,
            } => match alarm {
                Some(alarm) => format!("{bus}/{address}: reader OFFLINE (security alarm: {alarm})"),
                None => format!("{bus}/{address}: reader OFFLINE ({reason})"),
            },
            Self::PdStatus {
                bus,
                address,
                tamper,
                power_failure,
            } => format!("{bus}/{address}: tamper {tamper}, power failure {power_failure}"),
            Self::SecurityAlarm {
                bus,
                address,
                alarm,
            } => format!("{bus}/{address}: SECURITY ALARM {alarm}"),
            Self::DaemonStarted {
                version,
                rules_version,
            } => match rules_version {
                Some(v) => format!("portier {version} started with rules version {v}"),
                None => format!("portier {version} started WITHOUT rules: every card is denied"),
            },
            Self::RemoteAction(r) => {
                let outcome = match (r.outcome, &r.refusal) {
                    (Outcome::Accepted, _) => "accepted".to_owned(),
                    (Outcome::Refused, Some(why)) => format!("REFUSED: {why}"),
                    (Outcome::Refused, None) => "REFUSED".to_owned(),
                };
                let (source, action) = (&r.source, &r.action);
                match &r.command {
                    Some(id) => format!("command {id} from {source}: {action} — {outcome}"),
                    None => format!("remote action from {source}: {action} — {outcome}"),
                }
            }
            Self::CommandRefused { id, reason } => format!(
                "command {} REFUSED: {reason}",
                id.as_deref().unwrap_or("(unreadable)")
            ),
            Self::ClockWentBack { seen, trusted } => {
                format!("CLOCK went back: system says {seen}, latest trusted time {trusted}")
            }
            Self::ClockImplausible { seen, trusted } => {
                format!("CLOCK implausible: system says {seen}, using {trusted}")
            }
            Self::ClockJumped { seen, expected } => {
                format!("CLOCK stepped: system says {seen}, expected about {expected}")
            }
            Self::ClockUntrusted {
                reason, seen, used, ..
            } => format!(
                "CLOCK UNTRUSTED ({reason}): system says {seen}, using {used}; no scheduled release starts"
            ),
            Self::ClockTrusted { seen } => format!("clock trusted again at {seen}"),
            Self::ClockConfirmed { by, time } => format!("clock confirmed by {by} at {time}"),
            Self::TimeBeaconRefused { reason } => format!("TIME BEACON REFUSED: {reason}"),
            Self::SignedTimeRefused { issued_at } => {
                format!("SIGNED TIME from the future refused: issued {issued_at}")
            }
            Self::FirstPersonInAwaited { door, mode } => {
                format!(
                    "{door}: scheduled {mode} waits for the first person in (card mode until a grant)"
                )
            }
            Self::FirstPersonIn {
                door,
                credential,
                mode,
            } => format!("{door}: first person in ({credential}): scheduled {mode} starts"),
            Self::DoorModeWithheld { door, mode, reason } => {
                format!(
                    "{door}: scheduled {mode} WITHHELD ({reason}): card mode until the time is confirmed"
                )
            }
            Self::DiskFull { available, reserve } => format!(
                "DISK FULL: {available} bytes left, under the {reserve}-byte reserve for alarms; routine events are dropped"
            ),
            Self::DiskSpaceRecovered { dropped } => {
                format!("disk space back; {dropped} routine events were dropped while it was low")
            }
            Self::JournalFull { dropped } => {
                format!("JOURNAL FULL: {dropped} routine events dropped so far (alarms are kept)")
            }
            Self::AckOutOfRange { acked, sent } => format!(
                "UPLINK: central acknowledged {acked}, beyond the highest sent ({sent}); nothing deleted"
            ),
            Self::JournalRecordSkipped { record, error } => {
                format!("JOURNAL record {record} undecodable, skipped by the uplink: {error}")
            }
            Self::UplinkMessageRefused {
                topic,
                bytes,
                limit,
            } => format!("UPLINK message on {topic} refused: {bytes} bytes, limit {limit}"),
            Self::EventOversized { kind, bytes } => {
                format!("EVENT {kind} of {bytes} bytes over the journal's cap, not written")
            }
            Self::RulesApplied { version } => format!("rules version {version} in force"),
            Self::RulesRecovered {
                reason, version, ..
            } => format!(
                "RULES STORE REBUILT from its last-good files ({reason}); version {}",
                version.map_or("none".into(), |v| v.to_string())
            ),
            Self::RulesRefused { reason } => format!("rules refused: {reason}"),
            Self::AdminStarted {
                listen,
                fingerprint,
                ..
            } => format!("admin page on {listen}, certificate {fingerprint}"),
            Self::AdminLogin {
                user,
                client,
                result,
            } => format!("admin login {user} from {client}: {result}"),
            Self::AdminLoginFailed {
                client,
                user,
                count,
                refused,
                ..
            } => format!(
                "admin login FAILED {count}× from {client} (last as {user}; {refused} refused unchecked)"
            ),
            Self::AdminAction {
                user,
                door,
                action,
                result,
                ..
            } => format!("admin {user} at {door}: {action}: {result}"),
            Self::RulesUntrusted { key_id, version } => format!(
                "RULES UNTRUSTED: version {} is signed by key {key_id}, which is no longer \
                 trusted; every card is denied until a snapshot signed by a trusted key arrives",
                version.map_or("?".into(), |v| v.to_string())
            ),
            Self::AdminUnavailable { reason, .. } => {
                format!("ADMIN PORT OFF: {reason}")
            }
            Self::FireAlarm {
                input,
                active: true,
                releases,
            } => format!(
                "FIRE ALARM {input}: escape doors released ({})",
                ids_listed(releases)
            ),
            Self::FireAlarm {
                input, releases, ..
            } => format!(
                "fire alarm {input} cleared: {} back to their modes",
                ids_listed(releases)
            ),
            Self::FireAlarmInputOffline { input, active } => format!(
                "FIRE ALARM INPUT {input} UNSEEN: its reader is offline; kept {}",
                if *active {
                    "active (doors released)"
                } else {
                    "inactive"
                }
            ),
            Self::Duress {
                door,
                reader,
                credential,
            } => format!("{door}: DURESS PIN by {credential} at {reader}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_of(kind: &EventKind) -> String {
        serde_json::to_value(kind).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Urgent events are alarms that a full journal and the disk reserve
    /// keep, central lists them, and `URGENT_TYPES` names each.
    #[test]
    fn urgent_events_are_kept_alarms() {
        let urgent = [
            EventKind::Duress {
                door: "d".into(),
                reader: "r".into(),
                credential: "h10301:42:1".into(),
            },
            EventKind::FireAlarm {
                input: "fire".into(),
                active: true,
                releases: vec!["d".into()],
            },
        ];
        for kind in &urgent {
            let name = type_of(kind);
            assert!(kind.is_urgent(), "{name}");
            assert!(kind.must_keep(), "{name}");
            assert!(ALARM_TYPES.contains(&name.as_str()), "{name}");
            assert!(URGENT_TYPES.contains(&name.as_str()), "{name}");
            assert_eq!(kind.tone(), Tone::Bad, "{name}");
        }
        let cleared = EventKind::FireAlarm {
            input: "fire".into(),
            active: false,
            releases: vec![],
        };
        assert!(!cleared.is_urgent() && cleared.must_keep());
        let offline = EventKind::FireAlarmInputOffline {
            input: "fire".into(),
            active: true,
        };
        assert!(offline.must_keep() && ALARM_TYPES.contains(&type_of(&offline).as_str()));
    }
}

#[cfg(test)]
mod area_event_tests {
    use super::*;

    /// The area events travel in an [`Event`] (whose own fields are
    /// `seq`, `at` and `type`) and come back the same, in JSON and CBOR;
    /// a presence event written before areas still reads.
    #[test]
    fn area_events_round_trip_and_old_presence_reads() {
        let at: Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let kinds = [
            EventKind::Presence {
                credential: "h10301:42:1002".into(),
                name: None,
                direction: Direction::In,
                area: Some("lab-wing".into()),
                door: Some("lab-1".into()),
                outer: None,
            },
            EventKind::Presence {
                credential: "h10301:42:1002".into(),
                name: Some("Student".into()),
                direction: Direction::Out,
                area: Some("lab-wing".into()),
                door: Some("lab-1".into()),
                outer: Some("building".into()),
            },
            EventKind::Antipassback {
                door: "lab-1".into(),
                credential: "h10301:42:1002".into(),
                area: "lab-wing".into(),
                breach: Breach::AlreadyInside,
                granted: false,
            },
            EventKind::AntipassbackForgiven { forgiven_at: at },
            EventKind::ExitRequestDenied {
                door: "lab-1-inner".into(),
                reason: DenyReason::Interlock,
            },
            EventKind::LocationsDropped { count: 3 },
            EventKind::ReaderUpdateStarted {
                command: Some("c1".into()),
                reader: "entrance-reader".into(),
                bytes: 1024,
                sha256: FileDigest::of(b"firmware"),
            },
            EventKind::ReaderUpdateProgress {
                command: Some("c1".into()),
                reader: "entrance-reader".into(),
                confirmed: 512,
                total: 1024,
                attempt: 1,
            },
            EventKind::ReaderUpdateFinished {
                command: Some("c1".into()),
                reader: "entrance-reader".into(),
                bytes: 1024,
                millis: 1500,
                reboot: true,
            },
            EventKind::ReaderUpdateFailed {
                command: None,
                reader: "entrance-reader".into(),
                reason: UpkeepFailure::HashMismatch,
                detail: "x".into(),
            },
            EventKind::ReaderKeyRotated {
                command: None,
                reader: "entrance-reader".into(),
            },
            EventKind::ReaderKeyRotationStarted {
                command: Some("c2".into()),
                reader: "entrance-reader".into(),
            },
            EventKind::ReaderKeyRotationFailed {
                command: Some("c2".into()),
                reader: "entrance-reader".into(),
                reason: UpkeepFailure::OldKeyKept,
                detail: "x".into(),
            },
        ];
        for kind in kinds {
            let e = Event { seq: 7, at, kind };
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e, "{json}");
            let cbor = serde_cbor::to_vec(&e).unwrap();
            assert_eq!(serde_cbor::from_slice::<Event>(&cbor).unwrap(), e);
        }
        let old = r#"{"seq":1,"at":"2026-12-01T03:00:00Z","type":"presence","credential":"c","name":null,"direction":"out"}"#;
        let e: Event = serde_json::from_str(old).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Presence {
                area: None,
                door: None,
                ..
            }
        ));
    }
}

//! What an event says. Serialised as CBOR in the journal and, later, on the
//! uplink; variant and field names are part of the contract with the
//! central system (snake_case, tagged by `type`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A credential was granted at a door.
    AccessGranted {
        /// Door id.
        door: String,
        /// Reader id.
        reader: String,
        /// Credential key.
        credential: String,
    },
    /// A credential was denied, with the contract's reason code.
    AccessDenied {
        /// Door id.
        door: String,
        /// Reader id.
        reader: String,
        /// Credential key, when the card could be read.
        credential: Option<String>,
        /// Deny reason (`expired`, `blocked`, …).
        reason: String,
    },
    /// The exit button released a door.
    ExitRequest {
        /// Door id.
        door: String,
    },
    /// A door opened without grant or exit request.
    DoorForced {
        /// Door id.
        door: String,
    },
    /// A door stayed open too long.
    DoorHeldOpen {
        /// Door id.
        door: String,
        /// `pre_alarm` or `alarm`.
        stage: String,
    },
    /// A door closed again.
    DoorClosed {
        /// Door id.
        door: String,
    },
    /// A door's mode changed (schedule, override, lockdown, remote command).
    DoorModeChanged {
        /// Door id.
        door: String,
        /// The new mode.
        mode: String,
    },
    /// Someone entered or left outside office hours.
    Presence {
        /// Credential key.
        credential: String,
        /// Display name, when the rules give one.
        name: Option<String>,
        /// `in` or `out`.
        direction: String,
    },
    /// A PD came online.
    PdOnline {
        /// Bus name.
        bus: String,
        /// PD address.
        address: u8,
        /// Secure Channel active.
        secure: bool,
    },
    /// A PD went offline.
    PdOffline {
        /// Bus name.
        bus: String,
        /// PD address.
        address: u8,
        /// Why.
        reason: String,
    },
    /// Tamper or power status of a PD changed.
    PdStatus {
        /// Bus name.
        bus: String,
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
        bus: String,
        /// PD address.
        address: u8,
        /// What happened.
        alarm: String,
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
        /// `ok`, `failed` or `locked_out`.
        result: String,
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
}

//! Door state machines, sans-IO: a standard door ([`standard`]), a revolving
//! door ([`revolving`]) and the after-hours presence list ([`presence`]).
//!
//! What this module owns: for each door, the strike or rotation output it
//! should drive, the feedback pattern a reader should show, the door events
//! (entry, forced, held open, passages, mode changes) and the door's mode,
//! including timed overrides that revert by themselves. What it does not
//! own: the grant/deny decision (the rules engine makes it and hands the
//! result in), wall-clock schedules (the owner turns them into mode-set
//! inputs), OSDP framing, persistence, and the clock.
//!
//! # Driving a machine
//! Like `quinn-proto` and `str0m`: the owner calls `handle(now, input)` for
//! each input and `handle_timeout(now)` when the instant from
//! `poll_timeout()` has passed, and after **every** call drains
//! `poll_action()` until it returns `None`. Time only ever arrives as a
//! `now: Instant` argument; nothing here reads a clock, spawns, blocks or
//! does I/O, so the same inputs always give the same actions.
//!
//! # Safety invariant (IEC 60839-11-1)
//! A door is released only by a cause that is meant to release it: an access
//! grant, an exit request (REX), an unlocked mode (scheduled unlock, a free
//! rotation mode) or an explicit override/remote release. Nothing else
//! releases a door: no error, no lost uplink, no offline reader and no missing
//! input makes a machine emit a release. A timeout only ever locks, expires a
//! grant, or reverts a timed override to the mode in force before it. What a
//! door does when the *daemon itself* is absent is the wiring's business,
//! declared by [`standard::FailMode`].

use serde::{Deserialize, Serialize};

pub mod mode;
pub mod presence;
pub mod revolving;
pub mod standard;

pub use mode::{ActiveMode, DoorClass, StandingMode, UnknownMode};
pub use presence::{MAX_INSIDE, Occupant, Passage, Presence, PresenceChange, PresenceEvent};
pub use revolving::{
    PassageCause, PassageCounters, RevolvingAction, RevolvingConfig, RevolvingDoor, RevolvingEvent,
    RevolvingInput, RevolvingMode, Rotation,
};
pub use standard::{
    DenyReason, DoorAction, DoorEvent, DoorInput, FailMode, Mode, Override, OverrideRefusal,
    OverrideState, StandardConfig, StandardDoor, Strike,
};

/// The identity of a credential (card or person) as the rules engine names
/// it; the door only copies it into events and the presence list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialId(pub String);

impl From<&crate::rules::CredentialKey> for CredentialId {
    fn from(key: &crate::rules::CredentialKey) -> Self {
        Self(key.to_string())
    }
}

impl From<&str> for CredentialId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl std::fmt::Display for CredentialId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Direction of a passage through a door, seen from the building.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Into the building (or the controlled area).
    In,
    /// Out of it.
    Out,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::In => "in",
            Self::Out => "out",
        })
    }
}

/// A reader feedback pattern; the daemon maps each to LED colours and
/// buzzer tones for the reader at hand (OSDP `LED` / `BUZ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feedback {
    /// Access granted: the door is released for this credential.
    Grant,
    /// Access denied.
    Deny,
    /// Refused because the door is in lockdown (or fully locked).
    Lockdown,
    /// Refused because the gateway's rules are too old to decide on.
    RulesTooOld,
    /// The door has been held open past its pre-alarm time: warn locally.
    HeldOpenWarning,
    /// The card needs its PIN: type it and `#`.
    PinWanted,
    /// Stop any continuous pattern (the held-open warning); back to idle.
    Idle,
}

//! The standing state of a building: everything that decides what a door
//! does after a restart. The gateway core hands it out with the records of
//! the same input, the driver writes both in one flush, and the next start
//! begins from it before any PD is driven — so a restart never lifts a
//! lockdown, ends an override early, or forgets who is inside.
//!
//! Times are wall-clock (`Timestamp`): monotonic instants mean nothing
//! after a restart. Items that expired while the gateway was down revert
//! on restore, with their events.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::door::{Presence, StandingMode};
use crate::ids::DoorId;

/// Layout version of [`StandingState`]; the driver refuses a state of
/// another version rather than guess (defaults would lift a lockdown).
pub const VERSION: u32 = 1;

/// A point on one boot's monotonic clock: which boot (the kernel's boot
/// id, 32 hex digits) and how long after it began, milliseconds. A restart
/// on the same boot knows exactly how much time passed since, whatever the
/// wall clock says; after a reboot it means nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStamp {
    /// The boot id.
    pub boot: String,
    /// Milliseconds since that boot began.
    pub ms: u64,
}

/// A remote mode and its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedMode {
    /// The mode (its contract name on disk: `unlocked`, `free_rotation`, …).
    pub mode: StandingMode,
    /// When it reverts.
    pub until: Timestamp,
    /// The same end on this boot's monotonic clock, when known: how a
    /// restart shows that a release has not ended, whatever the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_until: Option<BootStamp>,
}

/// What a timed override holds a door in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBy {
    /// A standard door released (remote unlock, admin unlock).
    Unlocked,
    /// A standard door held locked.
    Locked,
    /// A revolving door in free rotation.
    FreeRotation,
}

/// A timed override and its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedOverride {
    /// What it holds the door in.
    pub state: HeldBy,
    /// When it reverts.
    pub until: Timestamp,
    /// The same end on this boot's monotonic clock, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_until: Option<BootStamp>,
}

/// The last live time beacon: its signed time and when it came on this
/// boot's monotonic clock (see [`super::clock`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeAnchor {
    /// The beacon's time.
    pub at: Timestamp,
    /// When it came.
    pub came: BootStamp,
}

/// The standing state of one building.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingState {
    /// [`VERSION`].
    pub version: u32,
    /// Doors in lockdown (until an explicit release).
    pub lockdown: BTreeSet<DoorId>,
    /// Remote modes with their expiry.
    pub remote_modes: BTreeMap<DoorId, TimedMode>,
    /// Timed overrides and free-rotation releases with their expiry.
    pub overrides: BTreeMap<DoorId, TimedOverride>,
    /// Who is inside.
    pub presence: Presence,
    /// The signed time floor (see [`super::clock`]).
    pub trusted_floor: Option<Timestamp>,
    /// The last live time beacon (kept over a restart on the same boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_anchor: Option<TimeAnchor>,
}

impl Default for StandingState {
    fn default() -> Self {
        Self {
            version: VERSION,
            lockdown: BTreeSet::new(),
            remote_modes: BTreeMap::new(),
            overrides: BTreeMap::new(),
            presence: Presence::new(),
            trusted_floor: None,
            time_anchor: None,
        }
    }
}

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
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::door::{Presence, StandingMode};
use crate::ids::{DoorId, InputId};

/// Layout version of [`StandingState`] written by this release. Every
/// earlier layout is read and upgraded by [`decode`], one numbered step at
/// a time; a newer one (a downgrade) is refused rather than guessed at —
/// defaults could lift a lockdown.
///
/// | layout | written by | change |
/// |---|---|---|
/// | 1 | up to f2b96d4 | lockdown, remote modes, overrides, presence, time floor and anchor |
/// | 2 | up to c4d5025 | `fire_alarms`: the building's fire-alarm inputs last seen active |
/// | 3 | up to 29438b6 | `first_in`: doors whose *first person in* was granted, with the local day |
/// | 4 | this release | `forgiven_at`: the last anti-passback forgiveness; presence lines carry their `area` and `door` (absent in earlier lines: the building) |
pub const VERSION: u32 = 4;

/// Why a standing state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    /// The bytes are not a standing state of the layout they claim.
    #[error("unreadable (layout {layout}): {source}")]
    Unreadable {
        /// The layout the bytes claim.
        layout: u32,
        /// What the decoder said.
        #[source]
        source: serde_cbor::Error,
    },
    /// Written by a newer release.
    #[error(
        "layout {found} written by a newer Portier version (this one reads 1 to {reads}); \
         run the version that wrote it"
    )]
    Newer {
        /// The layout found.
        found: u32,
        /// The newest layout this release reads.
        reads: u32,
    },
    /// A layout number no release wrote: damage.
    #[error("layout {0} was never written by any Portier version: the state is damaged")]
    NoSuchLayout(u32),
    /// The state could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(#[source] serde_cbor::Error),
}

/// The bytes kept in the journal for `state` (always the current layout).
pub fn encode(state: &StandingState) -> Result<Vec<u8>, StandingError> {
    if state.version == VERSION {
        // The common case: no copy of a long presence list.
        return serde_cbor::to_vec(state).map_err(StandingError::Encode);
    }
    let current = StandingState {
        version: VERSION,
        ..state.clone()
    };
    serde_cbor::to_vec(&current).map_err(StandingError::Encode)
}

/// Read a standing state of any layout up to [`VERSION`], upgraded to the
/// current one.
pub fn decode(bytes: &[u8]) -> Result<StandingState, StandingError> {
    /// Every layout starts with its number.
    #[derive(Deserialize)]
    struct Layout {
        version: u32,
    }
    let unreadable = |layout| move |source| StandingError::Unreadable { layout, source };
    let layout = serde_cbor::from_slice::<Layout>(bytes)
        .map_err(unreadable(0))?
        .version;
    match layout {
        1 => serde_cbor::from_slice::<layout_1::StandingState>(bytes)
            .map(layout_1::upgrade)
            .map(layout_2::upgrade)
            .map(layout_3::upgrade)
            .map_err(unreadable(1)),
        2 => serde_cbor::from_slice::<layout_2::StandingState>(bytes)
            .map(layout_2::upgrade)
            .map(layout_3::upgrade)
            .map_err(unreadable(2)),
        3 => serde_cbor::from_slice::<layout_3::StandingState>(bytes)
            .map(layout_3::upgrade)
            .map_err(unreadable(3)),
        VERSION => serde_cbor::from_slice(bytes).map_err(unreadable(VERSION)),
        found if found > VERSION => Err(StandingError::Newer {
            found,
            reads: VERSION,
        }),
        // Layout 0 never existed; what claims it is damage.
        other => Err(StandingError::NoSuchLayout(other)),
    }
}

/// Layout 1, frozen as the release at f2b96d4 wrote it. Its parts share
/// today's types only while their bytes are unchanged; a part that changes
/// gets its frozen copy here.
mod layout_1 {
    use std::collections::{BTreeMap, BTreeSet};

    use jiff::Timestamp;
    use serde::Deserialize;

    use super::{TimeAnchor, TimedMode, TimedOverride};
    use crate::door::Presence;
    use crate::ids::DoorId;

    #[derive(Deserialize)]
    pub(super) struct StandingState {
        lockdown: BTreeSet<DoorId>,
        remote_modes: BTreeMap<DoorId, TimedMode>,
        overrides: BTreeMap<DoorId, TimedOverride>,
        presence: Presence,
        trusted_floor: Option<Timestamp>,
        #[serde(default)]
        time_anchor: Option<TimeAnchor>,
    }

    /// 1 → 2: no fire alarm was known to be active.
    pub(super) fn upgrade(s: StandingState) -> super::layout_2::StandingState {
        super::layout_2::StandingState {
            lockdown: s.lockdown,
            remote_modes: s.remote_modes,
            overrides: s.overrides,
            presence: s.presence,
            trusted_floor: s.trusted_floor,
            time_anchor: s.time_anchor,
            fire_alarms: BTreeSet::new(),
        }
    }
}

/// Layout 2, frozen as the release at c4d5025 wrote it. Its presence lines
/// read as today's (the `area` and `door` of a line are optional and
/// absent there: the building).
mod layout_2 {
    use std::collections::{BTreeMap, BTreeSet};

    use jiff::Timestamp;
    use serde::Deserialize;

    use super::{TimeAnchor, TimedMode, TimedOverride};
    use crate::door::Presence;
    use crate::ids::{DoorId, InputId};

    #[derive(Deserialize)]
    pub(super) struct StandingState {
        pub(super) lockdown: BTreeSet<DoorId>,
        pub(super) remote_modes: BTreeMap<DoorId, TimedMode>,
        pub(super) overrides: BTreeMap<DoorId, TimedOverride>,
        pub(super) presence: Presence,
        pub(super) trusted_floor: Option<Timestamp>,
        #[serde(default)]
        pub(super) time_anchor: Option<TimeAnchor>,
        pub(super) fire_alarms: BTreeSet<InputId>,
    }

    /// 2 → 3: no door's first person in was known (every
    /// `first_person_in` mode waits for a grant again).
    pub(super) fn upgrade(s: StandingState) -> super::layout_3::StandingState {
        super::layout_3::StandingState {
            lockdown: s.lockdown,
            remote_modes: s.remote_modes,
            overrides: s.overrides,
            presence: s.presence,
            trusted_floor: s.trusted_floor,
            time_anchor: s.time_anchor,
            fire_alarms: s.fire_alarms,
            first_in: BTreeMap::new(),
        }
    }
}

/// Layout 3, frozen as the release at 29438b6 wrote it (its presence lines
/// read as today's, in the building).
mod layout_3 {
    use std::collections::{BTreeMap, BTreeSet};

    use jiff::Timestamp;
    use serde::Deserialize;

    use super::{FirstIn, TimeAnchor, TimedMode, TimedOverride};
    use crate::door::Presence;
    use crate::ids::{DoorId, InputId};

    #[derive(Deserialize)]
    pub(super) struct StandingState {
        pub(super) lockdown: BTreeSet<DoorId>,
        pub(super) remote_modes: BTreeMap<DoorId, TimedMode>,
        pub(super) overrides: BTreeMap<DoorId, TimedOverride>,
        pub(super) presence: Presence,
        pub(super) trusted_floor: Option<Timestamp>,
        #[serde(default)]
        pub(super) time_anchor: Option<TimeAnchor>,
        pub(super) fire_alarms: BTreeSet<InputId>,
        pub(super) first_in: BTreeMap<DoorId, FirstIn>,
    }

    /// 3 → 4: no forgiveness has happened yet (every location counts
    /// until the first one the rules schedule).
    pub(super) fn upgrade(s: StandingState) -> super::StandingState {
        super::StandingState {
            version: super::VERSION,
            lockdown: s.lockdown,
            remote_modes: s.remote_modes,
            overrides: s.overrides,
            presence: s.presence,
            trusted_floor: s.trusted_floor,
            time_anchor: s.time_anchor,
            fire_alarms: s.fire_alarms,
            first_in: s.first_in,
            forgiven_at: None,
        }
    }
}

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

/// A door's *first person in*: the grant that let a `first_person_in`
/// scheduled mode start. It holds only on its local day and while the
/// schedule stays open from `at` on (the core checks both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstIn {
    /// The local date of the grant (the rules' time zone).
    pub day: Date,
    /// When (trusted time).
    pub at: Timestamp,
    /// Who was granted (credential key text).
    pub credential: String,
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
    /// The fire-alarm inputs last seen active (by input id): their doors
    /// stay released after a restart until the input reads inactive.
    pub fire_alarms: BTreeSet<InputId>,
    /// Doors whose `first_person_in` scheduled mode was started by a
    /// grant, with that grant.
    pub first_in: BTreeMap<DoorId, FirstIn>,
    /// The last anti-passback forgiveness: locations from before it are
    /// not held against a card (`site::areas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgiven_at: Option<Timestamp>,
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
            fire_alarms: BTreeSet::new(),
            first_in: BTreeMap::new(),
            forgiven_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standing state the release at f2b96d4 wrote (layout 1) loads,
    /// upgraded, with everything that decides a door kept.
    #[test]
    fn the_previous_release_s_state_loads() {
        let bytes = include_bytes!("../../tests/fixtures/v0.5/standing-state.cbor");
        let s = decode(bytes).unwrap();
        assert_eq!(s.version, VERSION);
        assert!(s.lockdown.contains("lab-door"));
        let main = &s.remote_modes[&DoorId::from("main-entrance")];
        assert_eq!(main.mode, "free_rotation");
        assert_eq!(main.boot_until.as_ref().map(|b| b.ms), Some(123_456));
        assert_eq!(
            s.overrides[&DoorId::from("side-door")].state,
            HeldBy::Unlocked
        );
        assert_eq!(
            s.overrides[&DoorId::from("back-door")].state,
            HeldBy::Locked
        );
        assert_eq!(s.presence.count(), 2);
        assert!(s.trusted_floor.is_some() && s.time_anchor.is_some());
        assert!(s.fire_alarms.is_empty());
        // Written again, it is the current layout and reads back the same.
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    /// Layout 2 (with an active fire alarm) loads as the current layout:
    /// nothing dropped, no first person in known, no forgiveness yet.
    #[test]
    fn the_layout_2_state_loads() {
        let bytes = include_bytes!("../../tests/fixtures/layout-2/standing-state.cbor");
        let s = decode(bytes).unwrap();
        assert_eq!(s.version, VERSION);
        assert!(s.lockdown.contains("lab-door"));
        assert_eq!(
            s.remote_modes[&DoorId::from("main-entrance")].mode,
            "free_rotation"
        );
        assert_eq!(
            s.overrides[&DoorId::from("side-door")].state,
            HeldBy::Unlocked
        );
        assert_eq!(s.presence.count(), 2);
        assert!(s.trusted_floor.is_some() && s.time_anchor.is_some());
        assert!(s.fire_alarms.contains(&InputId::from("fire-panel")));
        assert!(s.first_in.is_empty());
        assert_eq!(s.forgiven_at, None);
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    /// Another layout-2 state (c4d5025, two people inside, one named):
    /// its presence lines load in the building, with no area or door.
    #[test]
    fn layout_2_presence_lines_load_in_the_building() {
        let bytes = include_bytes!("../../tests/fixtures/v0.6/standing-state.cbor");
        let s = decode(bytes).unwrap();
        assert_eq!(s.version, VERSION);
        assert!(s.fire_alarms.contains("fire-panel"));
        assert_eq!(s.presence.count(), 2);
        let ada = s.presence.get(&"h10301:42:1001".into()).unwrap();
        assert_eq!(ada.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!((ada.area.as_ref(), ada.door.as_ref()), (None, None));
        assert_eq!(s.forgiven_at, None);
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    /// Layout 3 (29438b6: a first person in, two people inside) loads as
    /// the current layout: the first person in kept, the people in the
    /// building, no forgiveness yet.
    #[test]
    fn the_layout_3_state_loads() {
        let bytes = include_bytes!("../../tests/fixtures/layout-3/standing-state.cbor");
        let s = decode(bytes).unwrap();
        assert_eq!(s.version, VERSION);
        assert!(s.lockdown.contains("lab-door"));
        let first = &s.first_in[&DoorId::from("sports-entrance")];
        assert_eq!(first.credential, "h10301:42:1001");
        assert_eq!(first.day, "2026-12-07".parse().unwrap());
        assert_eq!(s.presence.count(), 2);
        assert!(
            s.presence
                .inside()
                .all(|(_, o)| o.area.is_none() && o.door.is_none())
        );
        assert_eq!(s.forgiven_at, None);
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn a_first_person_in_survives_encoding() {
        let mut s = StandingState::default();
        s.first_in.insert(
            "sports-entrance".into(),
            FirstIn {
                day: "2026-12-07".parse().unwrap(),
                at: "2026-12-07T07:02:00Z".parse().unwrap(),
                credential: "h10301:42:1001".into(),
            },
        );
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn a_newer_layout_is_refused_and_damage_is_not_defaults() {
        let s = StandingState {
            version: VERSION + 1,
            ..Default::default()
        };
        let newer = serde_cbor::to_vec(&s).unwrap();
        assert!(matches!(
            decode(&newer),
            Err(StandingError::Newer { found, .. }) if found == VERSION + 1
        ));
        assert!(matches!(
            decode(b"\xa1\x67version\x01"),
            Err(StandingError::Unreadable { layout: 1, .. })
        ));
        assert!(decode(b"junk").is_err());
    }
}

//! Remote door actions (security's control room through the central
//! system, the admin page, the test hook), sans-IO: checked against the
//! building's doors and turned into door inputs and mode-planner changes.
//!
//! Every action is bounded in time except lockdown, which security lifts
//! explicitly: a momentary unlock, a mode set or a free rotation reverts by
//! itself at its end, also when the uplink is down.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::building::BuildingInput;
use super::modes::{DoorClass, ModePlanner};
pub use crate::action::RemoteAction;
use crate::door::{DoorInput, Override, OverrideState, RevolvingInput};
use crate::ids::DoorId;

/// The longest a timed remote action may last (a day).
pub const MAX_SECONDS: u64 = 24 * 3600;

/// Why a remote action was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RemoteError {
    /// No such door here.
    #[error("unknown door {:?}", .0.as_str())]
    UnknownDoor(DoorId),
    /// The action does not apply to this kind of door.
    #[error("{action} does not apply to door {door:?} (a {kind} door)")]
    WrongKind {
        /// Action name.
        action: &'static str,
        /// Door id.
        door: DoorId,
        /// Its kind.
        kind: &'static str,
    },
    /// A duration of zero or over a day.
    #[error("seconds must be 1..={MAX_SECONDS}, not {0}")]
    BadDuration(u64),
    /// A mode name that does not fit the door.
    #[error(transparent)]
    Mode(#[from] super::modes::UnknownMode),
    /// A timed release of a door in lockdown: lockdown wins over overrides
    /// (see `site::modes::PRECEDENCE`); security lifts it first.
    #[error("door {:?} is in lockdown: release the lockdown first", .0.as_str())]
    InLockdown(DoorId),
    /// A release of an airlock door while another door of its interlock
    /// is open or released (`site::interlock`): at most one at a time.
    #[error(
        "door {:?} is in an airlock whose other door is open or released: \
         try again when it is closed and locked",
        .0.as_str()
    )]
    Interlocked(DoorId),
}

impl RemoteAction {
    /// Check the action and turn it into door inputs; lockdowns and mode
    /// sets go to the planner (the owner then applies its changes).
    pub fn plan(
        &self,
        planner: &mut ModePlanner,
        now: Instant,
    ) -> Result<Vec<BuildingInput>, RemoteError> {
        let class = |door: &str| {
            planner
                .class(door)
                .ok_or_else(|| RemoteError::UnknownDoor(door.into()))
        };
        let span = |seconds: u64| {
            if (1..=MAX_SECONDS).contains(&seconds) {
                Ok(Duration::from_secs(seconds))
            } else {
                Err(RemoteError::BadDuration(seconds))
            }
        };
        let wrong = |door: &DoorId, kind| RemoteError::WrongKind {
            action: self.name(),
            door: door.clone(),
            kind,
        };
        Ok(match self {
            Self::Unlock { door, seconds } | Self::FreeRotation { door, seconds } => {
                let until = now + span(*seconds)?;
                class(door)?;
                if planner.is_locked_down(door) {
                    return Err(RemoteError::InLockdown(door.clone()));
                }
                match (class(door)?, self) {
                    (DoorClass::Standard, Self::Unlock { .. }) => vec![BuildingInput::Door {
                        door: door.clone(),
                        input: DoorInput::SetOverride(Override {
                            state: OverrideState::Unlocked,
                            until,
                        }),
                    }],
                    (DoorClass::Standard, _) => return Err(wrong(door, "standard")),
                    (DoorClass::Revolving, _) => vec![BuildingInput::Revolving {
                        door: door.clone(),
                        input: RevolvingInput::ReleaseFreeRotation { until },
                    }],
                }
            }
            Self::SetMode {
                door,
                mode,
                seconds,
            } => {
                let until = now + span(*seconds)?;
                let mode = class(door)?.parse_mode(mode.as_str())?;
                planner.set_remote(door, mode, until);
                Vec::new()
            }
            Self::ReleasePassage { door, direction } => match class(door)? {
                DoorClass::Revolving => vec![BuildingInput::Revolving {
                    door: door.clone(),
                    input: RevolvingInput::ReleaseOnePassage {
                        direction: *direction,
                    },
                }],
                DoorClass::Standard => return Err(wrong(door, "standard")),
            },
            Self::Lockdown { doors } | Self::ReleaseLockdown { doors } => {
                for d in doors {
                    class(d)?;
                }
                planner.set_lockdown(doors, matches!(self, Self::Lockdown { .. }));
                Vec::new()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::{Mode, RevolvingMode};
    use crate::site::modes::StandingMode;

    fn planner() -> ModePlanner {
        ModePlanner::new([
            ("rev".into(), DoorClass::Revolving),
            ("side".into(), DoorClass::Standard),
        ])
    }

    fn parse(json: &str) -> RemoteAction {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn unlock_is_a_timed_override() {
        let mut p = planner();
        let now = crate::test_clock::epoch();
        let a = parse(r#"{"action":"unlock","door":"side","seconds":8}"#);
        let inputs = a.plan(&mut p, now).unwrap();
        let [BuildingInput::Door { door, input }] = inputs.as_slice() else {
            panic!("{inputs:?}")
        };
        assert_eq!(door, "side");
        assert_eq!(
            input,
            &DoorInput::SetOverride(Override {
                state: OverrideState::Unlocked,
                until: now + Duration::from_secs(8)
            })
        );
    }

    #[test]
    fn refusals_say_why() {
        let mut p = planner();
        let now = crate::test_clock::epoch();
        let cases = [
            (
                r#"{"action":"unlock","door":"nope","seconds":8}"#,
                "unknown door",
            ),
            (
                r#"{"action":"unlock","door":"side","seconds":0}"#,
                "seconds must be",
            ),
            (
                r#"{"action":"release_passage","door":"side","direction":"in"}"#,
                "does not apply",
            ),
            (
                r#"{"action":"set_mode","door":"rev","mode":"unlocked","seconds":60}"#,
                "not a mode",
            ),
            (r#"{"action":"lockdown","doors":["x"]}"#, "unknown door"),
        ];
        for (json, want) in cases {
            let e = parse(json).plan(&mut p, now).unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
        assert!(p.changes(now).iter().all(|(_, m)| !matches!(
            m,
            StandingMode::Standard(Mode::Lockdown) | StandingMode::Revolving(RevolvingMode::Locked)
        )));
    }

    #[test]
    fn lockdown_goes_to_the_planner() {
        let mut p = planner();
        let now = crate::test_clock::epoch();
        p.changes(now);
        assert!(
            parse(r#"{"action":"lockdown"}"#)
                .plan(&mut p, now)
                .unwrap()
                .is_empty()
        );
        assert!(p.is_locked_down("side") && p.is_locked_down("rev"));
        assert_eq!(p.changes(now).len(), 2);
        parse(r#"{"action":"release_lockdown","doors":["side"]}"#)
            .plan(&mut p, now)
            .unwrap();
        assert_eq!(
            p.changes(now),
            vec![("side".into(), StandingMode::Standard(Mode::CardOnly))]
        );
    }
}

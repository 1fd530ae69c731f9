//! The one mode enum: a door's standing mode by its contract name
//! (`card_only`, `unlocked`, `lockdown`; `locked`, `cardholders_only`,
//! `free_rotation`, `emergency_free`). Rules, remote actions, the standing
//! state, events and the page all carry [`StandingMode`]; the names are
//! unique across door kinds, so a name alone says which kind it fits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use super::{Mode, RevolvingMode};

/// A standing mode of either door kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingMode {
    /// Standard door.
    Standard(Mode),
    /// Revolving door.
    Revolving(RevolvingMode),
}

impl StandingMode {
    /// Whether the mode releases the door for anyone (no card asked for
    /// it): such a mode from a schedule starts only at a confirmed time.
    pub fn releases(self) -> bool {
        matches!(
            self,
            Self::Standard(Mode::ScheduledUnlock | Mode::Emergency)
                | Self::Revolving(RevolvingMode::FreeRotation | RevolvingMode::EmergencyFree)
        )
    }

    /// The name used in rules, commands and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard(Mode::CardOnly) => "card_only",
            Self::Standard(Mode::ScheduledUnlock) => "unlocked",
            Self::Standard(Mode::Lockdown) => "lockdown",
            Self::Standard(Mode::Emergency) => "emergency_unlocked",
            Self::Revolving(RevolvingMode::Locked) => "locked",
            Self::Revolving(RevolvingMode::CardholdersOnly) => "cardholders_only",
            Self::Revolving(RevolvingMode::FreeRotation) => "free_rotation",
            Self::Revolving(RevolvingMode::EmergencyFree) => "emergency_free",
        }
    }
}

/// A mode name that does not fit the door.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("mode {mode:?} is not a mode of a {kind} door (one of: {allowed})")]
pub struct UnknownMode {
    /// The name given.
    pub mode: String,
    /// `standard` or `revolving`.
    pub kind: &'static str,
    /// The names that would do.
    pub allowed: &'static str,
}

/// Kind of door, for parsing mode names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorClass {
    /// Swing door.
    Standard,
    /// Revolving door.
    Revolving,
}

impl DoorClass {
    /// Parse a mode name that may be set on this kind of door (by the
    /// rules' schedule or a remote action). `emergency_unlocked` is not
    /// one: only a fire alarm puts a standard door in it.
    pub fn parse_mode(self, name: &str) -> Result<StandingMode, UnknownMode> {
        match (self, name) {
            (Self::Standard, "card_only") => Ok(StandingMode::Standard(Mode::CardOnly)),
            (Self::Standard, "unlocked") => Ok(StandingMode::Standard(Mode::ScheduledUnlock)),
            (Self::Standard, "lockdown") => Ok(StandingMode::Standard(Mode::Lockdown)),
            (Self::Revolving, "locked") => Ok(StandingMode::Revolving(RevolvingMode::Locked)),
            (Self::Revolving, "cardholders_only") => {
                Ok(StandingMode::Revolving(RevolvingMode::CardholdersOnly))
            }
            (Self::Revolving, "free_rotation") => {
                Ok(StandingMode::Revolving(RevolvingMode::FreeRotation))
            }
            (Self::Revolving, "emergency_free") => {
                Ok(StandingMode::Revolving(RevolvingMode::EmergencyFree))
            }
            (Self::Standard, _) => Err(UnknownMode {
                mode: name.to_owned(),
                kind: "standard",
                allowed: "card_only, unlocked, lockdown",
            }),
            (Self::Revolving, _) => Err(UnknownMode {
                mode: name.to_owned(),
                kind: "revolving",
                allowed: "locked, cardholders_only, free_rotation, emergency_free",
            }),
        }
    }

    pub(crate) fn default_mode(self) -> StandingMode {
        match self {
            Self::Standard => StandingMode::Standard(Mode::CardOnly),
            Self::Revolving => StandingMode::Revolving(RevolvingMode::CardholdersOnly),
        }
    }

    pub(crate) fn lockdown_mode(self) -> StandingMode {
        match self {
            Self::Standard => StandingMode::Standard(Mode::Lockdown),
            Self::Revolving => StandingMode::Revolving(RevolvingMode::Locked),
        }
    }

    /// The mode a fire alarm puts the door in: released for escape.
    pub(crate) fn emergency_mode(self) -> StandingMode {
        match self {
            Self::Standard => StandingMode::Standard(Mode::Emergency),
            Self::Revolving => StandingMode::Revolving(RevolvingMode::EmergencyFree),
        }
    }
}

/// Every standing mode, for parsing by name.
const ALL: [StandingMode; 8] = [
    StandingMode::Standard(Mode::CardOnly),
    StandingMode::Standard(Mode::ScheduledUnlock),
    StandingMode::Standard(Mode::Lockdown),
    StandingMode::Standard(Mode::Emergency),
    StandingMode::Revolving(RevolvingMode::Locked),
    StandingMode::Revolving(RevolvingMode::CardholdersOnly),
    StandingMode::Revolving(RevolvingMode::FreeRotation),
    StandingMode::Revolving(RevolvingMode::EmergencyFree),
];

impl StandingMode {
    /// The mode of this contract name, of whichever door kind.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The kind of door the mode belongs to.
    pub fn class(self) -> DoorClass {
        match self {
            Self::Standard(_) => DoorClass::Standard,
            Self::Revolving(_) => DoorClass::Revolving,
        }
    }
}

/// A name that is no door mode at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "mode {0:?} is not a door mode (one of: card_only, unlocked, lockdown, \
     emergency_unlocked, locked, cardholders_only, free_rotation, emergency_free)"
)]
pub struct NotAMode(pub String);

impl std::str::FromStr for StandingMode {
    type Err = NotAMode;

    fn from_str(name: &str) -> Result<Self, NotAMode> {
        Self::from_name(name).ok_or_else(|| NotAMode(name.to_owned()))
    }
}

impl std::fmt::Display for StandingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// On the wire and on disk a mode is its contract name.
impl Serialize for StandingMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StandingMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The mode a door is in now, as events report it: its standing mode, or
/// a timed override holding a standard door (`override_unlocked`,
/// `override_locked`) until it reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveMode {
    /// The standing mode.
    Standing(StandingMode),
    /// A timed override.
    Override(super::OverrideState),
}

impl ActiveMode {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standing(m) => m.as_str(),
            Self::Override(super::OverrideState::Unlocked) => "override_unlocked",
            Self::Override(super::OverrideState::Locked) => "override_locked",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "override_unlocked" => Some(Self::Override(super::OverrideState::Unlocked)),
            "override_locked" => Some(Self::Override(super::OverrideState::Locked)),
            other => StandingMode::from_name(other).map(Self::Standing),
        }
    }
}

impl From<StandingMode> for ActiveMode {
    fn from(m: StandingMode) -> Self {
        Self::Standing(m)
    }
}

impl std::fmt::Display for ActiveMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ActiveMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActiveMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("mode {name:?} is not a door mode")))
    }
}

/// A mode equals its contract name.
macro_rules! eq_by_name {
    ($t:ty) => {
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
eq_by_name!(StandingMode);
eq_by_name!(ActiveMode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_fits_one_kind() {
        for m in ALL {
            assert_eq!(StandingMode::from_name(m.as_str()), Some(m));
            if m != StandingMode::Standard(Mode::Emergency) {
                assert_eq!(m.class().parse_mode(m.as_str()), Ok(m));
            }
            let cbor = serde_cbor::to_vec(&m).unwrap();
            assert_eq!(cbor, serde_cbor::to_vec(&m.as_str()).unwrap());
            assert_eq!(serde_cbor::from_slice::<StandingMode>(&cbor).unwrap(), m);
        }
        assert!(
            serde_cbor::from_slice::<StandingMode>(&serde_cbor::to_vec(&"open").unwrap()).is_err()
        );
        // Only a fire alarm sets it.
        assert!(
            DoorClass::Standard
                .parse_mode("emergency_unlocked")
                .is_err()
        );
    }
}

//! A remote action on doors and what came of it, as the contract carries
//! them: CBOR structures in commands, control-socket requests and the
//! `remote_action` event. The checks and their effect on the doors are the
//! core's (`site::remote`); the types live here so that events can carry
//! them.

use serde::{Deserialize, Serialize};

use crate::door::{Direction, StandingMode};
use crate::ids::{DoorId, ReaderId};

/// A remote action on doors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RemoteAction {
    /// Release a standard door for `seconds` (a revolving door: free
    /// rotation for `seconds`).
    Unlock {
        /// Door id.
        door: DoorId,
        /// How long.
        seconds: u64,
    },
    /// Put a door in a standing mode for `seconds`, then revert.
    SetMode {
        /// Door id.
        door: DoorId,
        /// The mode (by name on the wire: `card_only`, `unlocked`,
        /// `lockdown`; `locked`, `cardholders_only`, `free_rotation`,
        /// `emergency_free`).
        mode: StandingMode,
        /// How long.
        seconds: u64,
    },
    /// Let one person through a revolving door.
    ReleasePassage {
        /// Door id.
        door: DoorId,
        /// Which way.
        direction: Direction,
    },
    /// Free rotation of a revolving door for `seconds`.
    FreeRotation {
        /// Door id.
        door: DoorId,
        /// How long.
        seconds: u64,
    },
    /// Lock down these doors (all when empty) until released.
    Lockdown {
        /// Door ids; empty = the whole building.
        #[serde(default)]
        doors: Vec<DoorId>,
    },
    /// Lift a lockdown of these doors (all when empty).
    ReleaseLockdown {
        /// Door ids; empty = the whole building.
        #[serde(default)]
        doors: Vec<DoorId>,
    },
}

impl RemoteAction {
    /// A short name for events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unlock { .. } => "unlock",
            Self::SetMode { .. } => "set_mode",
            Self::ReleasePassage { .. } => "release_passage",
            Self::FreeRotation { .. } => "free_rotation",
            Self::Lockdown { .. } => "lockdown",
            Self::ReleaseLockdown { .. } => "release_lockdown",
        }
    }
}

/// What a signed command asks: an action on doors, or the upkeep of a
/// reader. On the wire both are one map tagged by `action`: the tag picks
/// the enum, so commands signed before reader actions existed read as
/// before and a malformed one is refused with its own enum's complaint
/// ("missing field `seconds`", "unknown variant …").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CommandAction {
    /// An action on doors (the daemon loop's).
    Door(RemoteAction),
    /// A reader's firmware or key (the upkeep task's, [`crate::upkeep`]).
    Reader(ReaderAction),
}

/// Upkeep of one reader (a PD by its configured name), asked by central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReaderAction {
    /// Send a firmware file to the reader over OSDP file transfer. The
    /// file travels apart, on `<prefix>/firmware`; only bytes whose
    /// SHA-256 is `sha256` are ever sent.
    ReaderUpdate {
        /// The PD's name in the gateway's config.
        reader: ReaderId,
        /// The file's SHA-256.
        sha256: FileDigest,
        /// The file's size in bytes.
        bytes: u64,
        /// OSDP file type (1: the PD's firmware, by convention).
        #[serde(default = "default_file_type")]
        file_type: u8,
        /// Refuse unless the reader reports this vendor (6 hex digits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vendor: Option<String>,
        /// Refuse unless the reader reports this model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<u8>,
    },
    /// Give the reader a new random Secure Channel key (the gateway makes
    /// it; it never leaves the gateway).
    RotateKey {
        /// The PD's name in the gateway's config.
        reader: ReaderId,
    },
}

fn default_file_type() -> u8 {
    1
}

impl ReaderAction {
    /// The reader it is for.
    pub fn reader(&self) -> &ReaderId {
        match self {
            Self::ReaderUpdate { reader, .. } | Self::RotateKey { reader } => reader,
        }
    }
}

impl<'de> Deserialize<'de> for CommandAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // A command's action is a small map of texts and numbers.
        let value = serde_json::Value::deserialize(d)?;
        let tag = value.get("action").and_then(serde_json::Value::as_str);
        if matches!(tag, Some("reader_update" | "rotate_key")) {
            ReaderAction::deserialize(value)
                .map(Self::Reader)
                .map_err(D::Error::custom)
        } else {
            RemoteAction::deserialize(value)
                .map(Self::Door)
                .map_err(D::Error::custom)
        }
    }
}

impl From<RemoteAction> for CommandAction {
    fn from(a: RemoteAction) -> Self {
        Self::Door(a)
    }
}

impl From<ReaderAction> for CommandAction {
    fn from(a: ReaderAction) -> Self {
        Self::Reader(a)
    }
}

/// A SHA-256 digest; 64 hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileDigest(pub [u8; 32]);

impl FileDigest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(data).into())
    }
}

impl std::fmt::Display for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileDigest({self})")
    }
}

/// A digest that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sha256: 64 hex digits expected, got {0:?}")]
pub struct DigestError(String);

impl std::str::FromStr for FileDigest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DigestError(crate::text::bounded(s, 80).into_owned());
        let bytes = hex::decode(s.trim()).map_err(|_| bad())?;
        Ok(Self(bytes.try_into().map_err(|_| bad())?))
    }
}

impl Serialize for FileDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a remote action was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acted on.
    Accepted,
    /// Refused; the record's `refusal` says why.
    Refused,
}

/// The action as journaled: the structure, or — for a record written
/// before actions were structures, whose JSON text no longer parses (cut
/// at the text cap) — that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedAction {
    /// The action.
    Action(RemoteAction),
    /// An old record's text.
    Text(String),
}

/// A remote action and what came of it (the `remote_action` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RecordOnDisk")]
pub struct ActionRecord {
    /// Who asked (`central`, `admin:<user>`, `control`).
    pub source: String,
    /// The central command's id, for a signed command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The action.
    pub action: RecordedAction,
    /// Carried out or refused.
    pub outcome: Outcome,
    /// Why it was refused, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// What journals hold: today's structure, or the layout of releases up to
/// f2b96d4 (the action as JSON text, the outcome `accepted` or
/// `refused: <why>`). Both are read; only the structure is written.
#[derive(Deserialize)]
struct RecordOnDisk {
    source: String,
    #[serde(default)]
    command: Option<String>,
    action: RecordedAction,
    outcome: String,
    #[serde(default)]
    refusal: Option<String>,
}

impl From<RecordOnDisk> for ActionRecord {
    fn from(d: RecordOnDisk) -> Self {
        let action = match d.action {
            RecordedAction::Text(text) => serde_json::from_str(&text)
                .map_or(RecordedAction::Text(text), RecordedAction::Action),
            action => action,
        };
        let (outcome, refusal) = match d.outcome.as_str() {
            "accepted" => (Outcome::Accepted, d.refusal),
            other => (
                Outcome::Refused,
                d.refusal.or_else(|| {
                    other
                        .strip_prefix("refused: ")
                        .map(str::to_owned)
                        .filter(|why| !why.is_empty())
                }),
            ),
        };
        Self {
            source: d.source,
            command: d.command,
            action,
            outcome,
            refusal,
        }
    }
}

impl ActionRecord {
    /// The record of `action` from `source`, with its result.
    pub fn new<E: std::fmt::Display>(
        source: String,
        command: Option<String>,
        action: RemoteAction,
        result: Result<(), &E>,
    ) -> Self {
        let (outcome, refusal) = match result {
            Ok(()) => (Outcome::Accepted, None),
            Err(e) => (Outcome::Refused, Some(e.to_string())),
        };
        Self {
            source,
            command,
            action: RecordedAction::Action(action),
            outcome,
            refusal,
        }
    }
}

impl std::fmt::Display for RecordedAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Action(a) => f.write_str(&serde_json::to_string(a).unwrap_or_default()),
            Self::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};

    fn record(e: &Event) -> &ActionRecord {
        match &e.kind {
            EventKind::RemoteAction(r) => r,
            other => panic!("not a remote action: {other:?}"),
        }
    }

    /// Events the release at f2b96d4 journaled (action as JSON text,
    /// outcome `refused: <why>`) still read, as structures.
    #[test]
    fn the_previous_release_s_records_read_as_structures() {
        let text = include_str!("../tests/fixtures/v0.5/remote-action-events.cbor.hex");
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_cbor::from_slice(&hex::decode(l).unwrap()).unwrap())
            .collect();
        let accepted = record(&events[0]);
        assert_eq!(accepted.command.as_deref(), Some("cmd-42"));
        assert_eq!(accepted.outcome, Outcome::Accepted);
        assert_eq!(
            accepted.action,
            RecordedAction::Action(RemoteAction::SetMode {
                door: "main-entrance".into(),
                mode: "free_rotation".parse().unwrap(),
                seconds: 3600,
            })
        );
        let refused = record(&events[1]);
        assert_eq!(refused.outcome, Outcome::Refused);
        assert_eq!(
            refused.refusal.as_deref(),
            Some(r#"unknown door "nowhere""#)
        );
        assert!(matches!(
            refused.action,
            RecordedAction::Action(RemoteAction::Unlock { seconds: 5, .. })
        ));
    }

    /// What is written now is a structure on the wire, and reads back.
    #[test]
    fn records_round_trip_and_old_text_that_no_longer_parses_is_kept() {
        let r = ActionRecord::new(
            "admin:op".into(),
            None,
            RemoteAction::Lockdown { doors: vec![] },
            Err(&"no"),
        );
        let e = Event {
            seq: 1,
            at: jiff::Timestamp::UNIX_EPOCH,
            kind: EventKind::RemoteAction(r.clone()),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["action"]["action"], "lockdown");
        assert_eq!(json["outcome"], "refused");
        assert_eq!(json["refusal"], "no");
        let back: Event = serde_cbor::from_slice(&serde_cbor::to_vec(&e).unwrap()).unwrap();
        assert_eq!(record(&back), &r);
        let cut: ActionRecord = serde_json::from_value(serde_json::json!({
            "source": "central", "action": "{\"action\":\"lockd", "outcome": "accepted"
        }))
        .unwrap();
        assert_eq!(
            cut.action,
            RecordedAction::Text("{\"action\":\"lockd".into())
        );
    }

    /// Commands of both kinds read back from CBOR as written; a malformed
    /// one says what is wrong with it.
    #[test]
    fn command_actions_read_by_their_tag_with_their_own_errors() {
        let actions: Vec<CommandAction> = vec![
            RemoteAction::Unlock {
                door: "side-entrance".into(),
                seconds: 5,
            }
            .into(),
            RemoteAction::Lockdown { doors: vec![] }.into(),
            ReaderAction::ReaderUpdate {
                reader: "entrance-reader".into(),
                sha256: FileDigest::of(b"fw"),
                bytes: 2,
                file_type: 1,
                vendor: Some("b2a100".into()),
                model: Some(1),
            }
            .into(),
            ReaderAction::RotateKey {
                reader: "side-reader".into(),
            }
            .into(),
        ];
        for a in actions {
            let cbor = serde_cbor::to_vec(&a).unwrap();
            assert_eq!(serde_cbor::from_slice::<CommandAction>(&cbor).unwrap(), a);
        }
        let error = |json: &str| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let cbor = serde_cbor::to_vec(&value).unwrap();
            serde_cbor::from_slice::<CommandAction>(&cbor)
                .unwrap_err()
                .to_string()
        };
        assert!(error(r#"{"action":"unlock","door":"d"}"#).contains("missing field `seconds`"));
        assert!(error(r#"{"action":"unlok","door":"d","seconds":5}"#).contains("unknown variant"));
        assert!(
            error(r#"{"action":"reader_update","reader":"r","sha256":"00","bytes":1}"#)
                .contains("64 hex digits")
        );
        assert!(error(r#"{"action":"rotate_key"}"#).contains("missing field `reader`"));
    }

    /// A lockdown of many doors keeps its record: who, the outcome and the
    /// action's text, capped, instead of an oversized stand-in.
    #[test]
    fn a_long_door_list_is_kept_as_capped_text() {
        let doors = (0..400)
            .map(|i| DoorId::from(format!("door-{i:04}")))
            .collect();
        let r = ActionRecord::new::<&str>(
            "central".into(),
            Some("cmd-1".into()),
            RemoteAction::Lockdown { doors },
            Ok(()),
        );
        let EventKind::RemoteAction(kept) = EventKind::RemoteAction(r).bounded() else {
            panic!("not a remote action");
        };
        assert_eq!(kept.outcome, Outcome::Accepted);
        assert_eq!(kept.command.as_deref(), Some("cmd-1"));
        let RecordedAction::Text(t) = &kept.action else {
            panic!("the long action was kept whole: {:?}", kept.action);
        };
        assert!(t.len() <= crate::text::TEXT, "{}", t.len());
        assert!(t.starts_with(r#"{"action":"lockdown""#), "{t}");
        let e = Event {
            seq: 1,
            at: jiff::Timestamp::UNIX_EPOCH,
            kind: EventKind::RemoteAction(kept),
        };
        // Well under the journal's 4 KiB per event.
        assert!(serde_cbor::to_vec(&e).unwrap().len() < 1024);
    }
}

//! What the admin port needs from the daemon: [`AdminBackend`], and the
//! plain request/answer types that cross it.
//!
//! The admin port only reads status, asks questions and forwards door
//! actions; it owns no door, no rules and no journal. The daemon implements
//! this trait over its own state (and tests over a fake), so the HTTP layer
//! can be tested without serial ports.

use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::{Event, EventKind};
use crate::rules::{Card, DenyReason};
use crate::site::Verdict;
use crate::status::{Occupancy, Status};

/// A boxed, `Send` future (the trait is used as `dyn AdminBackend`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the backend could not answer or act.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// No such door. HTTP 404.
    #[error("no door {0:?}")]
    UnknownDoor(String),
    /// The door (or the daemon) refuses this action now, e.g. a lockdown is
    /// in force or the door kind does not support it. HTTP 409.
    #[error("refused: {0}")]
    Refused(String),
    /// The daemon cannot answer now (journal I/O error, shutting down).
    /// HTTP 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// "Why was this card denied?": the decision the rules in force would give
/// for `card` at `door` at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhyQuery {
    /// Door id.
    pub door: String,
    /// The card, as typed (`FC:NUMBER`, `HEX/BITS` or a credential key),
    /// parsed by [`parse_card_text`].
    pub card: Card,
    /// The instant to decide at (the admin port passes its clock's now).
    pub at: Timestamp,
}

/// The answer to a [`WhyQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhyAnswer {
    /// `grant` or `deny`.
    pub decision: WhyDecision,
    /// The contract's reason code when denied (`outside_schedule`, …).
    pub reason: Option<DenyReason>,
    /// The credential key the card decodes to, when it decodes.
    pub credential: Option<String>,
    /// The holder's display name, when the rules carry one.
    pub name: Option<String>,
    /// The rules version the decision was made with; `None` when no rules
    /// are in force.
    pub rules_version: Option<u64>,
    /// The instant decided at.
    pub at: Timestamp,
    /// The reason in this case's words, when the core has them (an
    /// anti-passback deny: "the card is already inside lab-wing").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The day type at that instant (a special day's, `holiday`), `None`
    /// on an ordinary day or without rules: which schedule intervals
    /// applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_type: Option<String>,
    /// The special day's name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_name: Option<String>,
}

/// What the door would do with the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhyDecision {
    /// Let them in.
    Grant,
    /// Keep them out.
    Deny,
}

/// A timed override state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideChoice {
    /// Released until the override ends (revolving door: free rotation).
    Unlocked,
    /// Locked, card only, until the override ends.
    Locked,
}

/// Which way a revolving-door passage goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassageDirection {
    /// Into the building.
    In,
    /// Out of it.
    Out,
}

/// An operator's door action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DoorCommand {
    /// Release the strike for this many seconds, then relock.
    Unlock {
        /// 1..=[`MAX_UNLOCK_SECS`].
        seconds: u32,
    },
    /// Hold the door unlocked or locked for this many minutes, then revert
    /// to its standing mode by itself.
    Override {
        /// Unlocked or locked.
        state: OverrideChoice,
        /// 1..=[`MAX_OVERRIDE_MINUTES`].
        minutes: u32,
    },
    /// Revolving door: let one person through this way.
    ReleasePassage {
        /// Which way.
        direction: PassageDirection,
    },
}

/// Longest momentary unlock the admin port forwards.
pub const MAX_UNLOCK_SECS: u32 = 300;
/// Longest override the admin port forwards (24 h).
pub const MAX_OVERRIDE_MINUTES: u32 = 24 * 60;

/// A door command out of the admin port's bounds (the words are shown to
/// the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OutOfBounds {
    /// A momentary unlock of 0 s or over [`MAX_UNLOCK_SECS`].
    #[error("unlock time must be 1 to {MAX_UNLOCK_SECS} seconds")]
    UnlockTime,
    /// An override of 0 min or over [`MAX_OVERRIDE_MINUTES`].
    #[error("override must last 1 to {MAX_OVERRIDE_MINUTES} minutes")]
    OverrideTime,
}

/// Card text a technician typed that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardTextError {
    /// Not one of the forms.
    #[error(
        "card {0:?}: expected FACILITY:NUMBER (42:1001), HEX/BITS (9501f480/26) or a credential key (h10301:42:1001)"
    )]
    Form(String),
    /// `HEX/BITS` that does not parse.
    #[error("card {text:?}: {source}")]
    Raw {
        /// What was typed.
        text: String,
        /// Why.
        #[source]
        source: crate::rules::wiegand::WiegandError,
    },
}

impl DoorCommand {
    /// Check the bounds.
    pub fn check(&self) -> Result<(), OutOfBounds> {
        match *self {
            Self::Unlock { seconds } if !(1..=MAX_UNLOCK_SECS).contains(&seconds) => {
                Err(OutOfBounds::UnlockTime)
            }
            Self::Override { minutes, .. } if !(1..=MAX_OVERRIDE_MINUTES).contains(&minutes) => {
                Err(OutOfBounds::OverrideTime)
            }
            _ => Ok(()),
        }
    }

    /// Short words for events and confirmations, e.g. `unlock 5 s`.
    pub fn describe(&self) -> String {
        match self {
            Self::Unlock { seconds } => format!("unlock {seconds} s"),
            Self::Override {
                state: OverrideChoice::Unlocked,
                minutes,
            } => format!("override unlocked {minutes} min"),
            Self::Override {
                state: OverrideChoice::Locked,
                minutes,
            } => format!("override locked {minutes} min"),
            Self::ReleasePassage {
                direction: PassageDirection::In,
            } => "release one passage in".to_owned(),
            Self::ReleasePassage {
                direction: PassageDirection::Out,
            } => "release one passage out".to_owned(),
        }
    }
}

/// A door action request, with who asked (for the daemon's own records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorActionRequest {
    /// Door id.
    pub door: String,
    /// What to do.
    pub command: DoorCommand,
    /// User or token name of the operator.
    pub by: String,
    /// When it was asked (the admin port's clock).
    pub at: Timestamp,
}

/// What the daemon did with an accepted action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// Door id.
    pub door: String,
    /// What was done, in words (`strike released for 5 s`).
    pub done: String,
    /// When the effect ends by itself, if it does.
    pub until: Option<Timestamp>,
}

/// What the admin port asks of the daemon. Implementations must be cheap to
/// call concurrently; every method is called from request handlers.
pub trait AdminBackend: Send + Sync + 'static {
    /// A status snapshot now.
    fn status(&self) -> BoxFuture<'_, Result<Status, BackendError>>;

    /// Up to `limit` journal events with sequence numbers above `after`, in
    /// order.
    fn events(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>>;

    /// Who is inside.
    /// Who is inside `area` (its inner areas included), or everyone.
    fn occupancy(&self, area: Option<String>) -> BoxFuture<'_, Result<Occupancy, BackendError>>;

    /// The decision the rules in force give for a card at a door.
    fn why(&self, query: WhyQuery) -> BoxFuture<'_, Result<WhyAnswer, BackendError>>;

    /// Carry out an operator's door action. Called only for operators, with
    /// a [`DoorCommand::check`]ed command. The admin port journals the
    /// outcome itself through [`AdminBackend::record`].
    fn door_action(
        &self,
        request: DoorActionRequest,
    ) -> BoxFuture<'_, Result<ActionOutcome, BackendError>>;

    /// Append an event (admin logins and actions) to the journal. Returns
    /// once it is durable.
    fn record(&self, event: EventKind) -> BoxFuture<'_, Result<(), BackendError>>;

    /// An operator vouches for the gateway's clock (`by`: `admin:<user>`):
    /// scheduled releases withheld for want of a confirmed time may start.
    /// Journaled by the daemon as `clock_confirmed` with who.
    fn confirm_time(&self, by: String) -> BoxFuture<'_, Result<(), BackendError>> {
        let _ = by;
        Box::pin(async { Err(BackendError::Unavailable("no clock here".into())) })
    }
}

/// The answer for a verdict of the one decision path
/// (`site::decision::decide`): the credential the card decodes to, the
/// holder's name on a grant, and the reason on a deny.
pub fn why_answer(verdict: &Verdict, rules_version: Option<u64>, at: Timestamp) -> WhyAnswer {
    match verdict {
        Verdict::Grant {
            credential, name, ..
        } => WhyAnswer {
            decision: WhyDecision::Grant,
            reason: None,
            credential: Some(credential.to_string()),
            name: name.clone(),
            rules_version,
            at,
            detail: None,
            day_type: None,
            day_name: None,
        },
        Verdict::Deny { credential, reason } => WhyAnswer {
            decision: WhyDecision::Deny,
            reason: Some(*reason),
            credential: credential.as_ref().map(ToString::to_string),
            name: None,
            rules_version,
            at,
            detail: None,
            day_type: None,
            day_name: None,
        },
    }
}

/// Parse card text as a technician types it: `FC:NUMBER` (H10301, e.g.
/// `42:1001`), `HEX/BITS` as the reader sends it (e.g. `9501f480/26`), or
/// a credential key (`h10301:42:1001`, `corporate1000:…`, `raw:…`).
pub fn parse_card_text(text: &str) -> Result<Card, CardTextError> {
    use crate::rules::{CredentialKey, wiegand};
    let t = text.trim();
    let bad = || CardTextError::Form(t.to_owned());
    if t.contains('/') {
        let (bytes, bits) = wiegand::parse_raw(t).map_err(|source| CardTextError::Raw {
            text: t.to_owned(),
            source,
        })?;
        return Ok(Card::Raw { bytes, bits });
    }
    match t.split(':').count() {
        2 => {
            let (f, n) = t.split_once(':').ok_or_else(bad)?;
            let facility = f.trim().parse().map_err(|_| bad())?;
            let number = n.trim().parse().map_err(|_| bad())?;
            Ok(Card::Key(CredentialKey::H10301 { facility, number }))
        }
        3 => t.parse().map(Card::Key).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::CredentialKey;

    #[test]
    fn card_text_forms() {
        assert_eq!(
            parse_card_text(" 42:1001 ").unwrap(),
            Card::Key(CredentialKey::H10301 {
                facility: 42,
                number: 1001
            })
        );
        assert_eq!(
            parse_card_text("9501f480/26").unwrap(),
            Card::Raw {
                bytes: vec![0x95, 0x01, 0xf4, 0x80],
                bits: 26
            }
        );
        assert_eq!(
            parse_card_text("h10304:7:9").unwrap(),
            Card::Key(CredentialKey::H10304 {
                facility: 7,
                number: 9
            })
        );
        for bad in ["", "42", "x:1", "1:2:3:4", "zz/26", "h10301:1"] {
            assert!(parse_card_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_from_verdicts() {
        use crate::rules::DenyReason;
        let at = Timestamp::UNIX_EPOCH;
        let ada = CredentialKey::H10301 {
            facility: 42,
            number: 1001,
        };
        let deny = Verdict::Deny {
            credential: Some(ada.clone()),
            reason: DenyReason::Expired,
        };
        let a = why_answer(&deny, Some(7), at);
        assert_eq!(a.decision, WhyDecision::Deny);
        assert_eq!(a.reason, Some(DenyReason::Expired));
        assert_eq!(a.credential.as_deref(), Some("h10301:42:1001"));
        let grant = Verdict::Grant {
            credential: ada,
            extended: false,
            lockdown_exempt: false,
            name: Some("Ada".into()),
        };
        let a = why_answer(&grant, Some(7), at);
        assert_eq!(
            (a.decision, a.name.as_deref()),
            (WhyDecision::Grant, Some("Ada"))
        );
    }

    #[test]
    fn command_bounds() {
        assert!(DoorCommand::Unlock { seconds: 0 }.check().is_err());
        assert!(DoorCommand::Unlock { seconds: 301 }.check().is_err());
        assert!(DoorCommand::Unlock { seconds: 5 }.check().is_ok());
        let o = |minutes| DoorCommand::Override {
            state: OverrideChoice::Unlocked,
            minutes,
        };
        assert!(o(0).check().is_err());
        assert!(o(1441).check().is_err());
        assert!(o(30).check().is_ok());
    }
}

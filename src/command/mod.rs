//! Signed remote commands from the central system (security's control
//! room), sans-IO: the command model, signing (integrator side) and the
//! checks a gateway makes before acting, in this order, each with its own
//! error: known key, signature, shape, gateway, issue time not in the
//! future, not expired, lifetime bounded, not seen before.
//!
//! The seen-id set is the caller's (the driver keeps it in sled so it
//! survives restarts); it only needs ids until their command expires,
//! which is why a command's lifetime is bounded ([`MAX_LIFETIME`]).

pub mod beacon;

use ed25519_dalek::SigningKey;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::action::CommandAction;
use crate::rules::envelope::{SignedBlob, TrustedKeys, VerifyError};
#[cfg(test)]
use crate::site::remote::RemoteAction;

/// Domain tag of command signatures: a command can never pass as a
/// snapshot or a delta, nor the other way round.
pub const COMMAND_CONTEXT: &[u8] = b"portier/v1/command\0";

/// Longest accepted `expires_at - issued_at`.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(24);

/// How far in the future `issued_at` may be (clock skew between central
/// and gateway).
pub const MAX_SKEW: SignedDuration = SignedDuration::from_secs(120);

/// Longest command id accepted, bytes.
pub const MAX_ID_BYTES: usize = crate::text::ID;

/// A remote command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Unique id (the central system's); results reference it.
    pub id: String,
    /// The gateway it is for.
    pub gateway: String,
    /// When central issued it.
    pub issued_at: Timestamp,
    /// Not acted on at or after this instant.
    pub expires_at: Timestamp,
    /// What to do: an action on doors or a reader's upkeep.
    pub action: CommandAction,
}

/// Why a command was refused. The `Display` text goes into the refusal
/// event.
#[derive(Debug, Error)]
pub enum CommandError {
    /// Envelope, key or signature.
    #[error(transparent)]
    Envelope(#[from] VerifyError),
    /// The payload is not a command.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// For another gateway.
    #[error("command {id} is for gateway {got:?}, this is {want:?}")]
    WrongGateway {
        /// Command id.
        id: String,
        /// Its gateway.
        got: String,
        /// Ours.
        want: String,
    },
    /// Issued in the future (beyond [`MAX_SKEW`]).
    #[error("issued_in_future: command {id} issued at {issued_at}, in the future (now {now})")]
    FromTheFuture {
        /// Command id.
        id: String,
        /// Its issue time.
        issued_at: Timestamp,
        /// Our time.
        now: Timestamp,
    },
    /// Expired.
    #[error("command {id} expired at {expires_at}")]
    Expired {
        /// Command id.
        id: String,
        /// Its expiry.
        expires_at: Timestamp,
    },
    /// Lifetime over [`MAX_LIFETIME`] or negative.
    #[error("command {id} lives from {issued_at} to {expires_at}: at most 24 h")]
    Lifetime {
        /// Command id.
        id: String,
        /// Issue time.
        issued_at: Timestamp,
        /// Expiry.
        expires_at: Timestamp,
    },
    /// Seen before (a replay, or QoS 1 delivering twice).
    #[error("command {0} already seen: replay refused")]
    Replay(String),
}

impl CommandError {
    /// The command id, when the command could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Envelope(_) | Self::Malformed(_) => None,
            Self::WrongGateway { id, .. }
            | Self::FromTheFuture { id, .. }
            | Self::Expired { id, .. }
            | Self::Lifetime { id, .. } => Some(id),
            Self::Replay(id) => Some(id),
        }
    }
}

/// Sign a command (integrator tool and tests).
pub fn sign_command(key: &SigningKey, command: &Command) -> Vec<u8> {
    let payload = serde_cbor::to_vec(command).expect("a command always encodes");
    SignedBlob::sign(key, COMMAND_CONTEXT, payload).to_cbor()
}

/// Check a signed command for `gateway` at `now`; `seen` says whether an id
/// was already accepted. The caller records the id before acting.
pub fn verify_command(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
    now: Timestamp,
    seen: impl FnOnce(&str) -> bool,
) -> Result<Command, CommandError> {
    let blob = keys.check(bytes, COMMAND_CONTEXT)?;
    let c: Command =
        serde_cbor::from_slice(blob.payload).map_err(|e| CommandError::Malformed(e.to_string()))?;
    // The id is journaled and kept in the replay store: a signed command
    // is trusted to act, not to be small.
    if c.id.is_empty() || c.id.len() > MAX_ID_BYTES || c.id.chars().any(char::is_control) {
        return Err(CommandError::Malformed(format!(
            "command id of {} bytes: 1..={MAX_ID_BYTES} printable bytes expected",
            c.id.len()
        )));
    }
    if c.gateway != gateway {
        return Err(CommandError::WrongGateway {
            id: c.id,
            got: c.gateway,
            want: gateway.to_owned(),
        });
    }
    if c.issued_at > now + MAX_SKEW {
        return Err(CommandError::FromTheFuture {
            id: c.id,
            issued_at: c.issued_at,
            now,
        });
    }
    if now >= c.expires_at {
        return Err(CommandError::Expired {
            id: c.id,
            expires_at: c.expires_at,
        });
    }
    let lifetime = c.expires_at.duration_since(c.issued_at);
    if lifetime.is_negative() || lifetime > MAX_LIFETIME {
        return Err(CommandError::Lifetime {
            id: c.id,
            issued_at: c.issued_at,
            expires_at: c.expires_at,
        });
    }
    if seen(&c.id) {
        return Err(CommandError::Replay(c.id));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::envelope::{SNAPSHOT_CONTEXT, SignedBlob};

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trusted() -> TrustedKeys {
        let mut k = TrustedKeys::new();
        k.add(key(1).verifying_key());
        k
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn command(id: &str) -> Command {
        Command {
            id: id.into(),
            gateway: "gw1".into(),
            issued_at: t("2026-11-23T22:00:00Z"),
            expires_at: t("2026-11-23T22:05:00Z"),
            action: RemoteAction::Unlock {
                door: "side-entrance".into(),
                seconds: 5,
            }
            .into(),
        }
    }

    fn verify(bytes: &[u8], now: &str) -> Result<Command, CommandError> {
        verify_command(bytes, &trusted(), "gw1", t(now), |id| id == "old")
    }

    #[test]
    fn a_good_command_passes() {
        let c = command("c1");
        let got = verify(&sign_command(&key(1), &c), "2026-11-23T22:01:00Z").unwrap();
        assert_eq!(got, c);
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let now = "2026-11-23T22:01:00Z";
        let check = |bytes: Vec<u8>, now: &str, want: &str| {
            let e = verify(&bytes, now).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        };
        check(b"not cbor".to_vec(), now, "malformed blob");
        check(sign_command(&key(2), &command("c")), now, "unknown key");
        let mut tampered = SignedBlob::from_cbor(&sign_command(&key(1), &command("c"))).unwrap();
        tampered.payload[5] ^= 1;
        check(tampered.to_cbor(), now, "bad signature");
        // A snapshot-signed blob is not a command, even with a command inside.
        let payload = serde_cbor::to_vec(&command("c")).unwrap();
        check(
            SignedBlob::sign(&key(1), SNAPSHOT_CONTEXT, payload).to_cbor(),
            now,
            "bad signature",
        );
        let other = SignedBlob::sign(&key(1), COMMAND_CONTEXT, b"\xa0".to_vec()).to_cbor();
        check(other, now, "malformed command");
        let mut c = command("c");
        c.gateway = "gw2".into();
        check(sign_command(&key(1), &c), now, "for gateway \"gw2\"");
        check(
            sign_command(&key(1), &command("c")),
            "2026-11-23T21:57:00Z",
            "in the future",
        );
        check(
            sign_command(&key(1), &command("c")),
            "2026-11-23T22:05:00Z",
            "expired",
        );
        let mut c = command("c");
        c.expires_at = t("2026-11-25T22:00:00Z");
        check(sign_command(&key(1), &c), now, "at most 24 h");
        check(sign_command(&key(1), &command("old")), now, "already seen");
    }
}

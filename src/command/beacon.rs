//! Signed time beacons from central, sans-IO: the one message that says
//! how late it is with an upper bound (see `crate::site::clock`). Central
//! signs `{gateway, at}` with its key under its own domain tag and
//! publishes it on `<prefix>/time` every half minute (QoS 0, so a broker
//! never queues a stale one for a disconnected gateway) and retained (a
//! gateway that connects gets the last one at once, flagged as retained:
//! then it only bounds "now" from below).

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rules::envelope::{SignedBlob, TrustedKeys, VerifyError};

/// Domain tag of beacon signatures: a beacon can never pass as a command,
/// a snapshot or a delta, nor the other way round.
pub const BEACON_CONTEXT: &[u8] = b"portier/v1/time\0";

/// Beacons for every gateway name this one instead of a gateway id.
pub const EVERY_GATEWAY: &str = "*";

/// A time beacon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    /// The gateway it is for, or [`EVERY_GATEWAY`].
    pub gateway: String,
    /// Central's time when it signed.
    pub at: Timestamp,
}

/// Why a beacon was refused.
#[derive(Debug, Error)]
pub enum BeaconError {
    /// Envelope, key or signature.
    #[error(transparent)]
    Envelope(#[from] VerifyError),
    /// The payload is not a beacon.
    #[error("malformed time beacon: {0}")]
    Malformed(String),
    /// For another gateway.
    #[error("time beacon for gateway {got:?}, this is {want:?}")]
    WrongGateway {
        /// The beacon's gateway.
        got: String,
        /// This gateway.
        want: String,
    },
}

/// Sign a beacon (central).
pub fn sign_beacon(key: &SigningKey, beacon: &Beacon) -> Vec<u8> {
    let payload = serde_cbor::to_vec(beacon).expect("a beacon always encodes");
    SignedBlob::sign(key, BEACON_CONTEXT, payload).to_cbor()
}

/// Check a signed beacon for `gateway`: known key, signature, shape,
/// gateway. Its time is not compared with anything here: it is what the
/// gateway's interval is built from.
pub fn verify_beacon(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
) -> Result<Timestamp, BeaconError> {
    let blob = keys.check(bytes, BEACON_CONTEXT)?;
    let b: Beacon =
        serde_cbor::from_slice(blob.payload).map_err(|e| BeaconError::Malformed(e.to_string()))?;
    if b.gateway != gateway && b.gateway != EVERY_GATEWAY {
        return Err(BeaconError::WrongGateway {
            got: b.gateway,
            want: gateway.to_owned(),
        });
    }
    Ok(b.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{COMMAND_CONTEXT, Command, sign_command};

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn beacons_verify_for_their_gateway_or_every_gateway_only() {
        let mut keys = TrustedKeys::new();
        keys.add(key(1).verifying_key());
        let at: Timestamp = "2026-12-05T08:00:00Z".parse().unwrap();
        let mine = sign_beacon(
            &key(1),
            &Beacon {
                gateway: "gw1".into(),
                at,
            },
        );
        assert_eq!(verify_beacon(&mine, &keys, "gw1").unwrap(), at);
        assert!(matches!(
            verify_beacon(&mine, &keys, "gw2"),
            Err(BeaconError::WrongGateway { .. })
        ));
        let all = sign_beacon(
            &key(1),
            &Beacon {
                gateway: EVERY_GATEWAY.into(),
                at,
            },
        );
        assert_eq!(verify_beacon(&all, &keys, "gw2").unwrap(), at);
        let stranger = sign_beacon(
            &key(2),
            &Beacon {
                gateway: "gw1".into(),
                at,
            },
        );
        assert!(verify_beacon(&stranger, &keys, "gw1").is_err());
        // A command's signature never passes for a beacon.
        let cmd = Command {
            id: "c".into(),
            gateway: "gw1".into(),
            issued_at: at,
            expires_at: at,
            action: crate::site::remote::RemoteAction::ReleaseLockdown { doors: vec![] }.into(),
        };
        let signed = sign_command(&key(1), &cmd);
        assert!(verify_beacon(&signed, &keys, "gw1").is_err());
        let _ = COMMAND_CONTEXT;
    }
}

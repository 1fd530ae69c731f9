//! Self-healing rules: the full snapshot central would have a gateway
//! hold, rebuilt from what central published — the last snapshot and the
//! deltas after it, each checked against central's own key — at a new
//! version, signed again. Used when a gateway refused a delta ("a full
//! snapshot is needed") or reconnected behind what was published
//! (`driver`'s rules keeper decides; `docs/central.md`, *Self-healing*).
//!
//! Sans-IO: blobs and times in, the signed blob out.

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use thiserror::Error;

use crate::rules::Snapshot;
use crate::rules::envelope::{
    SNAPSHOT_CONTEXT, TrustedKeys, VerifyError, decode_snapshot_payload, reverify_stored_delta,
    sign_snapshot,
};

/// Why no snapshot could be rebuilt.
#[derive(Debug, Error)]
pub enum RepairError {
    /// Central holds no signed snapshot for the gateway (published before
    /// schema 6 kept them): an operator must `push` again.
    #[error("central holds no snapshot it published to this gateway: `portier central push` again")]
    NoSnapshot,
    /// A stored blob does not verify with central's key (the signing key
    /// was changed since): an operator must `push` again.
    #[error("a stored publication does not verify with the signing key: {0}")]
    Stored(#[from] VerifyError),
}

/// What a rebuild gives.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// The snapshot (its version, times and credentials).
    pub snapshot: Snapshot,
    /// It, signed.
    pub blob: Vec<u8>,
}

/// The last snapshot (`snapshot`, as published) with every later delta
/// (`deltas`, in version order) applied — blocks and unblocks, upserts,
/// removals, as the gateway applies them — at `version`, valid from
/// `issued` to `expires`, signed with `key`.
pub fn rebuild(
    key: &SigningKey,
    snapshot: Option<&[u8]>,
    deltas: &[Vec<u8>],
    version: u64,
    issued: Timestamp,
    expires: Timestamp,
) -> Result<Rebuilt, RepairError> {
    let snapshot = snapshot.ok_or(RepairError::NoSnapshot)?;
    let mut keys = TrustedKeys::new();
    keys.add(key.verifying_key());
    let checked = keys.check(snapshot, SNAPSHOT_CONTEXT)?;
    let mut snap = decode_snapshot_payload(checked.payload)?;
    for bytes in deltas {
        // Stored publications may have expired: their signature and target
        // are what counts (the new snapshot gets new times).
        let delta = reverify_stored_delta(bytes, &keys, &snap.gateway_id, &snap.building)?;
        let d = delta.delta();
        for b in &d.blocks {
            if let Some(c) = snap.credentials.iter_mut().find(|c| c.key == b.card) {
                c.blocked = Some(b.reason);
            }
        }
        for k in &d.unblocks {
            if let Some(c) = snap.credentials.iter_mut().find(|c| c.key == *k) {
                c.blocked = None;
            }
        }
        for u in &d.upserts {
            match snap.credentials.iter_mut().find(|c| c.key == u.key) {
                Some(c) => *c = u.clone(),
                None => snap.credentials.push(u.clone()),
            }
        }
        snap.credentials.retain(|c| !d.removals.contains(&c.key));
    }
    snap.version = version;
    snap.issued_at = issued;
    snap.expires_at = expires;
    let blob = sign_snapshot(key, &snap)?;
    Ok(Rebuilt {
        snapshot: snap,
        blob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::envelope::{Block, Delta, sign_delta, verify_snapshot};
    use crate::rules::{BlockReason, CredentialKey};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_rebuilt_snapshot_is_the_last_one_with_the_deltas_applied() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let text = include_str!("../../config/rules.example.toml");
        let issued = t("2026-12-01T00:00:00Z");
        let expires = t("2026-12-31T00:00:00Z");
        let mut snap =
            crate::rules::source::parse_rules("rules.toml", text, 5, issued, expires).unwrap();
        snap.gateway_id = "gw-1".into();
        let first = snap.credentials[0].key.clone();
        let second = snap.credentials[1].key.clone();
        let blob = sign_snapshot(&key, &snap).unwrap();
        let delta = |version: u64, blocks: Vec<CredentialKey>, unblocks: Vec<CredentialKey>| {
            sign_delta(
                &key,
                &Delta {
                    base_version: version - 1,
                    version,
                    issued_at: issued,
                    expires_at: expires,
                    gateway_id: "gw-1".into(),
                    building: snap.building.clone(),
                    blocks: blocks
                        .into_iter()
                        .map(|card| Block {
                            card,
                            reason: BlockReason::Stolen,
                        })
                        .collect(),
                    unblocks,
                    upserts: Vec::new(),
                    removals: Vec::new(),
                },
            )
            .unwrap()
        };
        let deltas = vec![
            delta(6, vec![first.clone(), second.clone()], vec![]),
            delta(7, vec![], vec![second.clone()]),
        ];
        let now = t("2026-12-05T00:00:00Z");
        let later = t("2027-01-04T00:00:00Z");
        let r = rebuild(&key, Some(&blob), &deltas, 8, now, later).unwrap();
        let mut keys = TrustedKeys::new();
        keys.add(key.verifying_key());
        let v = verify_snapshot(
            &r.blob,
            &keys,
            "gw-1",
            &snap.building,
            now,
            Some((7, [0; 32])),
        )
        .unwrap();
        assert_eq!(v.version(), 8);
        assert_eq!(v.credentials()[&first].blocked, Some(BlockReason::Stolen));
        assert_eq!(v.credentials()[&second].blocked, None);
        assert_eq!(v.credentials().len(), snap.credentials.len());
        // Nothing stored, or a blob of another key: refused, never guessed.
        assert!(matches!(
            rebuild(&key, None, &[], 8, now, later),
            Err(RepairError::NoSnapshot)
        ));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(rebuild(&other, Some(&blob), &[], 8, now, later).is_err());
    }
}

//! The signed envelope: [`SignedBlob`] (CBOR), trusted keys with rotation,
//! snapshot and delta verification, and delta application.
//!
//! Guarantees: nothing is decoded into rules before its signature checks;
//! verification runs in a fixed order with one error variant per step
//! (see [`verify_snapshot`]); malformed input is an error, never a panic.
//! Signatures cover a domain-separation prefix plus the payload, so a signed
//! delta can never be replayed as a snapshot or the other way round.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{BlockReason, Credential, CredentialKey, Header, RulesError, SCHEMA, Snapshot};

/// Signature context of a full snapshot.
pub const SNAPSHOT_CONTEXT: &[u8] = b"portier/v1/snapshot\0";
/// Signature context of a delta.
pub const DELTA_CONTEXT: &[u8] = b"portier/v1/delta\0";

/// A signed payload as carried over MQTT and stored on disk (CBOR map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBlob {
    /// Hex of the first 8 bytes of the signer's public key.
    pub key_id: String,
    /// Ed25519 signature (64 bytes) over context ‖ payload.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// CBOR of a [`Snapshot`] or [`Delta`].
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl SignedBlob {
    /// Decode from CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, VerifyError> {
        serde_cbor::from_slice(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))
    }
    /// Encode as CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        // Serialising a struct of a string and two byte strings cannot fail.
        serde_cbor::to_vec(self).expect("CBOR encoding of SignedBlob")
    }
    /// Sign a payload with `context`.
    pub fn sign(key: &SigningKey, context: &[u8], payload: Vec<u8>) -> Self {
        let mut msg = context.to_vec();
        msg.extend_from_slice(&payload);
        Self {
            key_id: key_id(&key.verifying_key()),
            signature: key.sign(&msg).to_bytes().to_vec(),
            payload,
        }
    }
}

/// Key id of a public key: hex of its first 8 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

/// Sign a snapshot into blob bytes.
pub fn sign_snapshot(key: &SigningKey, snapshot: &Snapshot) -> Result<Vec<u8>, VerifyError> {
    let payload =
        serde_cbor::to_vec(snapshot).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    Ok(SignedBlob::sign(key, SNAPSHOT_CONTEXT, payload).to_cbor())
}

/// Sign a delta into blob bytes.
pub fn sign_delta(key: &SigningKey, delta: &Delta) -> Result<Vec<u8>, VerifyError> {
    let payload = serde_cbor::to_vec(delta).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    Ok(SignedBlob::sign(key, DELTA_CONTEXT, payload).to_cbor())
}

/// The central public keys this gateway trusts (several during rotation).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }
    /// Trust a key.
    pub fn add(&mut self, key: VerifyingKey) {
        self.keys.insert(key_id(&key), key);
    }
    /// Trust a key given as 32 raw bytes.
    pub fn add_bytes(&mut self, bytes: &[u8; 32]) -> Result<(), VerifyError> {
        let k = VerifyingKey::from_bytes(bytes).map_err(|_| VerifyError::BadKey)?;
        self.add(k);
        Ok(())
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// No keys at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Check the blob's signature under `context`; returns the blob.
    pub fn check(&self, bytes: &[u8], context: &[u8]) -> Result<SignedBlob, VerifyError> {
        let blob = SignedBlob::from_cbor(bytes)?;
        let key = self
            .keys
            .get(&blob.key_id)
            .ok_or_else(|| VerifyError::UnknownKey(blob.key_id.clone()))?;
        let sig: [u8; 64] = blob
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| VerifyError::BadSignature)?;
        let mut msg = context.to_vec();
        msg.extend_from_slice(&blob.payload);
        key.verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(blob)
    }
}

/// Why a snapshot or delta was refused.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// Not CBOR of the expected shape.
    #[error("malformed blob: {0}")]
    Malformed(String),
    /// A public key is not a valid ed25519 point.
    #[error("invalid public key")]
    BadKey,
    /// Signed by a key we do not trust.
    #[error("signed by unknown key {0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// For another gateway or building.
    #[error(
        "for gateway {got_gateway:?} in {got_building:?}, this is {want_gateway:?} in {want_building:?}"
    )]
    WrongGateway {
        /// Gateway in the blob.
        got_gateway: String,
        /// Building in the blob.
        got_building: String,
        /// Our gateway.
        want_gateway: String,
        /// Our building.
        want_building: String,
    },
    /// A schema this build does not know.
    #[error("unsupported schema {0} (this build reads {SCHEMA})")]
    UnsupportedSchema(u32),
    /// Past `expires_at`.
    #[error("expired at {0}")]
    Expired(Timestamp),
    /// Lower than the highest version accepted.
    #[error("rollback refused: version {got} is lower than accepted version {have}")]
    Rollback {
        /// Offered.
        got: u64,
        /// Already accepted.
        have: u64,
    },
    /// Same version as accepted, different content.
    #[error("version {0} reused with different content")]
    VersionReused(u64),
    /// Content does not hold together (unknown time zone, dangling name).
    #[error("invalid rules: {0}")]
    Invalid(#[from] RulesError),
}

/// A snapshot whose signature, target, schema, expiry and version were
/// checked. Only this module constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedSnapshot {
    header: Header,
    credentials: BTreeMap<CredentialKey, Credential>,
    digest: [u8; 32],
    key_id: String,
    _sealed: (),
}

impl VerifiedSnapshot {
    /// Rules without credentials.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Credentials by key.
    pub fn credentials(&self) -> &BTreeMap<CredentialKey, Credential> {
        &self.credentials
    }
    /// Version in force (of the snapshot or last delta).
    pub fn version(&self) -> u64 {
        self.header.snapshot.version
    }
    /// SHA-256 of the last accepted payload (snapshot or delta).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
    /// Key id that signed the last accepted payload.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// Split into header and credentials (for storage).
    pub fn into_parts(self) -> (Header, BTreeMap<CredentialKey, Credential>) {
        (self.header, self.credentials)
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    schema: u32,
    gateway_id: String,
    building: String,
}

fn check_target(p: &Probe, gateway: &str, building: &str) -> Result<(), VerifyError> {
    if p.gateway_id != gateway || p.building != building {
        return Err(VerifyError::WrongGateway {
            got_gateway: p.gateway_id.clone(),
            got_building: p.building.clone(),
            want_gateway: gateway.to_owned(),
            want_building: building.to_owned(),
        });
    }
    Ok(())
}

fn malformed(e: serde_cbor::Error) -> VerifyError {
    VerifyError::Malformed(e.to_string())
}

/// Verify a signed snapshot. Checks, in this order, each with its own
/// error: CBOR shape (`Malformed`), `UnknownKey`, `BadSignature`,
/// `WrongGateway` (gateway or building), `UnsupportedSchema`, `Expired`,
/// `Rollback` (version lower than `last_accepted`), `VersionReused` (same
/// version, different payload digest; same digest is accepted again), and
/// finally the content's consistency (`Invalid`).
pub fn verify_snapshot(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
    now: Timestamp,
    last_accepted: Option<(u64, [u8; 32])>,
) -> Result<VerifiedSnapshot, VerifyError> {
    let blob = keys.check(bytes, SNAPSHOT_CONTEXT)?;
    let probe: Probe = serde_cbor::from_slice(&blob.payload).map_err(malformed)?;
    check_target(&probe, gateway, building)?;
    if probe.schema != SCHEMA {
        return Err(VerifyError::UnsupportedSchema(probe.schema));
    }
    let snap: Snapshot = serde_cbor::from_slice(&blob.payload).map_err(malformed)?;
    if now > snap.expires_at {
        return Err(VerifyError::Expired(snap.expires_at));
    }
    let digest: [u8; 32] = Sha256::digest(&blob.payload).into();
    check_version(snap.version, digest, last_accepted)?;
    let mut credentials = BTreeMap::new();
    let mut snap = snap;
    let creds = std::mem::take(&mut snap.credentials);
    let header = Header::new(snap)?;
    for c in creds {
        header.check_credential(&c)?;
        credentials.insert(c.key.clone(), c);
    }
    Ok(VerifiedSnapshot {
        header,
        credentials,
        digest,
        key_id: blob.key_id,
        _sealed: (),
    })
}

fn check_version(
    version: u64,
    digest: [u8; 32],
    last: Option<(u64, [u8; 32])>,
) -> Result<(), VerifyError> {
    if let Some((have, have_digest)) = last {
        if version < have {
            return Err(VerifyError::Rollback { got: version, have });
        }
        if version == have && digest != have_digest {
            return Err(VerifyError::VersionReused(version));
        }
    }
    Ok(())
}

/// A block in a delta: the card and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The card.
    pub card: CredentialKey,
    /// Why.
    pub reason: BlockReason,
}

/// A signed change set on top of snapshot (or delta) version `base_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The version this applies to.
    pub base_version: u64,
    /// The version after applying.
    pub version: u64,
    /// When issued (becomes the rules' `issued_at`).
    pub issued_at: Timestamp,
    /// Not accepted after; becomes the rules' `expires_at`.
    pub expires_at: Timestamp,
    /// Target gateway.
    pub gateway_id: String,
    /// Target building.
    pub building: String,
    /// Cards to block (applied first).
    #[serde(default)]
    pub blocks: Vec<Block>,
    /// Cards to unblock.
    #[serde(default)]
    pub unblocks: Vec<CredentialKey>,
    /// Credentials added or replaced.
    #[serde(default)]
    pub upserts: Vec<Credential>,
    /// Credentials removed.
    #[serde(default)]
    pub removals: Vec<CredentialKey>,
}

/// A delta whose signature, target and expiry were checked.
#[derive(Debug, Clone)]
pub struct VerifiedDelta {
    delta: Delta,
    digest: [u8; 32],
    key_id: String,
    _sealed: (),
}

impl VerifiedDelta {
    /// The change set.
    pub fn delta(&self) -> &Delta {
        &self.delta
    }
    /// SHA-256 of the payload.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
    /// Whether blob bytes look like a delta (have `base_version`); a routing
    /// hint only, nothing is trusted from it.
    pub fn looks_like_delta(bytes: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct P {
            base_version: Option<u64>,
        }
        SignedBlob::from_cbor(bytes)
            .ok()
            .and_then(|b| serde_cbor::from_slice::<P>(&b.payload).ok())
            .is_some_and(|p| p.base_version.is_some())
    }
}

/// Verify a signed delta: CBOR shape, `UnknownKey`, `BadSignature`,
/// `WrongGateway`, `Expired`. The version chain is checked by
/// [`apply_delta`].
pub fn verify_delta(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
    now: Timestamp,
) -> Result<VerifiedDelta, VerifyError> {
    let blob = keys.check(bytes, DELTA_CONTEXT)?;
    let probe: Probe = serde_cbor::from_slice(&blob.payload).map_err(malformed)?;
    check_target(&probe, gateway, building)?;
    let delta: Delta = serde_cbor::from_slice(&blob.payload).map_err(malformed)?;
    if now > delta.expires_at {
        return Err(VerifyError::Expired(delta.expires_at));
    }
    Ok(VerifiedDelta {
        digest: Sha256::digest(&blob.payload).into(),
        delta,
        key_id: blob.key_id,
        _sealed: (),
    })
}

/// Why a delta could not be applied.
#[derive(Debug, Error)]
pub enum DeltaError {
    /// The delta is for another base version.
    #[error(
        "delta needs base version {need} but version {have} is in force; a full snapshot is needed"
    )]
    BaseMismatch {
        /// Version in force.
        have: u64,
        /// Version the delta needs.
        need: u64,
    },
    /// The delta does not raise the version.
    #[error("delta version {version} is not above its base {base}")]
    NotNewer {
        /// Base.
        base: u64,
        /// Delta version.
        version: u64,
    },
    /// An upsert references an unknown access level.
    #[error("invalid delta: {0}")]
    Invalid(#[from] RulesError),
}

/// Check a delta's version chain against `have` (the version in force).
pub fn check_delta_base(have: u64, delta: &Delta) -> Result<(), DeltaError> {
    if delta.base_version != have {
        return Err(DeltaError::BaseMismatch {
            have,
            need: delta.base_version,
        });
    }
    if delta.version <= delta.base_version {
        return Err(DeltaError::NotNewer {
            base: delta.base_version,
            version: delta.version,
        });
    }
    Ok(())
}

/// Apply a verified delta: blocks and unblocks first, then upserts and
/// removals. The delta last applied, delivered again, is a no-op. Blocks of unknown cards are ignored (they are denied anyway).
pub fn apply_delta(
    snap: &VerifiedSnapshot,
    delta: &VerifiedDelta,
) -> Result<VerifiedSnapshot, DeltaError> {
    let d = &delta.delta;
    if d.version == snap.version() && delta.digest == snap.digest {
        // The same delta delivered again (MQTT QoS 1): nothing to do.
        return Ok(snap.clone());
    }
    check_delta_base(snap.version(), d)?;
    for c in &d.upserts {
        snap.header.check_credential(c)?;
    }
    let mut next = snap.clone();
    for b in &d.blocks {
        if let Some(c) = next.credentials.get_mut(&b.card) {
            c.blocked = Some(b.reason);
        }
    }
    for k in &d.unblocks {
        if let Some(c) = next.credentials.get_mut(k) {
            c.blocked = None;
        }
    }
    for c in &d.upserts {
        next.credentials.insert(c.key.clone(), c.clone());
    }
    for k in &d.removals {
        next.credentials.remove(k);
    }
    next.header.set_times(d.version, d.issued_at, d.expires_at);
    next.digest = delta.digest;
    next.key_id = delta.key_id.clone();
    Ok(next)
}

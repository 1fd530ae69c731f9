//! The signed envelope: [`SignedBlob`] (CBOR), trusted keys with rotation,
//! snapshot and delta verification, and delta application.
//!
//! Guarantees: nothing is decoded into rules before its signature checks;
//! verification runs in a fixed order with one error variant per step
//! (see [`verify_snapshot`]); malformed input is an error, never a panic.
//! Signatures cover a domain-separation prefix plus the SHA-256 digest of
//! the payload, so a signed delta can never be replayed as a snapshot or the
//! other way round, and the digest that rollback protection compares is the
//! one hash pass over a large payload.
//!
//! A snapshot payload is CBOR `{ header, records }`: the header is a
//! [`Snapshot`] without credentials, `records` one byte string of compact
//! credential records ([`super::record`]), checked in place and never
//! materialised on the store's path ([`verify_snapshot_records`]).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::record::{self, Records};
use super::{BlockReason, Credential, CredentialKey, Header, RulesError, SCHEMA, Snapshot};

/// Signature context of a full snapshot.
pub const SNAPSHOT_CONTEXT: &[u8] = b"portier/v2/snapshot\0";
/// Signature context of a delta.
pub const DELTA_CONTEXT: &[u8] = b"portier/v2/delta\0";

/// A signed payload as carried over MQTT and stored on disk (CBOR map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBlob {
    /// Hex of the first 8 bytes of the signer's public key.
    pub key_id: String,
    /// Ed25519 signature (64 bytes) over context ‖ SHA-256(payload).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// CBOR of a snapshot payload or a [`Delta`].
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A [`SignedBlob`] borrowed from its bytes (no copy of a large payload).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SignedBlobRef<'a> {
    /// Hex of the first 8 bytes of the signer's public key.
    pub key_id: &'a str,
    /// Ed25519 signature bytes.
    #[serde(with = "serde_bytes")]
    pub signature: &'a [u8],
    /// The signed payload.
    #[serde(with = "serde_bytes")]
    pub payload: &'a [u8],
}

impl<'a> SignedBlobRef<'a> {
    /// Decode from CBOR, borrowing.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, VerifyError> {
        serde_cbor::from_slice(bytes).map_err(malformed)
    }
}

fn signed_message(context: &[u8], digest: &[u8; 32]) -> Vec<u8> {
    [context, digest].concat()
}

impl SignedBlob {
    /// Decode from CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, VerifyError> {
        serde_cbor::from_slice(bytes).map_err(malformed)
    }
    /// Encode as CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        // Serialising a struct of a string and two byte strings cannot fail.
        serde_cbor::to_vec(self).expect("CBOR encoding of SignedBlob")
    }
    /// Sign a payload with `context`.
    pub fn sign(key: &SigningKey, context: &[u8], payload: Vec<u8>) -> Self {
        let digest: [u8; 32] = Sha256::digest(&payload).into();
        Self {
            key_id: key_id(&key.verifying_key()),
            signature: key
                .sign(&signed_message(context, &digest))
                .to_bytes()
                .to_vec(),
            payload,
        }
    }
}

/// Key id of a public key: hex of its first 8 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

#[derive(Serialize)]
struct PayloadOut<'a> {
    header: &'a Snapshot,
    #[serde(with = "serde_bytes")]
    records: &'a [u8],
}

#[derive(Deserialize)]
struct PayloadIn<'a> {
    header: Snapshot,
    #[serde(borrow, with = "serde_bytes")]
    records: &'a [u8],
}

/// Encode a snapshot as a payload: header CBOR plus the sorted record
/// section. Duplicate cards and unknown access levels are refused.
pub fn encode_snapshot_payload(snapshot: &Snapshot) -> Result<Vec<u8>, VerifyError> {
    let header = snapshot.without_credentials();
    let levels: Vec<String> = snapshot.access_levels.keys().cloned().collect();
    let records = record::encode_section(&snapshot.credentials, &levels)?;
    serde_cbor::to_vec(&PayloadOut {
        header: &header,
        records: &records,
    })
    .map_err(malformed)
}

/// Decode a snapshot payload into the full model (credentials
/// materialised); for tools and small snapshots. Nothing is verified.
pub fn decode_snapshot_payload(payload: &[u8]) -> Result<Snapshot, VerifyError> {
    let p: PayloadIn<'_> = serde_cbor::from_slice(payload).map_err(malformed)?;
    let mut snap = p.header;
    let levels: Vec<String> = snap.access_levels.keys().cloned().collect();
    snap.credentials = Records::new(p.records)
        .map(|r| r.and_then(|r| r.decode(&levels)))
        .collect::<Result<_, _>>()?;
    Ok(snap)
}

/// Sign a snapshot into blob bytes.
pub fn sign_snapshot(key: &SigningKey, snapshot: &Snapshot) -> Result<Vec<u8>, VerifyError> {
    let payload = encode_snapshot_payload(snapshot)?;
    Ok(SignedBlob::sign(key, SNAPSHOT_CONTEXT, payload).to_cbor())
}

/// Sign a delta into blob bytes.
pub fn sign_delta(key: &SigningKey, delta: &Delta) -> Result<Vec<u8>, VerifyError> {
    let payload = serde_cbor::to_vec(delta).map_err(malformed)?;
    Ok(SignedBlob::sign(key, DELTA_CONTEXT, payload).to_cbor())
}

/// The central public keys this gateway trusts (several during rotation).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

/// A blob whose signature checked: the payload, borrowed, and its digest.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    /// Who signed.
    pub key_id: &'a str,
    /// The signed payload.
    pub payload: &'a [u8],
    /// SHA-256 of the payload.
    pub digest: [u8; 32],
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

    /// Check the blob's signature under `context`; returns the payload.
    pub fn check<'a>(&self, bytes: &'a [u8], context: &[u8]) -> Result<Checked<'a>, VerifyError> {
        let blob = SignedBlobRef::parse(bytes)?;
        let key = self
            .keys
            .get(blob.key_id)
            .ok_or_else(|| VerifyError::UnknownKey(blob.key_id.to_owned()))?;
        let sig: [u8; 64] = blob
            .signature
            .try_into()
            .map_err(|_| VerifyError::BadSignature)?;
        let digest: [u8; 32] = Sha256::digest(blob.payload).into();
        key.verify_strict(
            &signed_message(context, &digest),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| VerifyError::BadSignature)?;
        Ok(Checked {
            key_id: blob.key_id,
            payload: blob.payload,
            digest,
        })
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
    /// Issued later than the gateway's time allows (its upper edge plus
    /// the skew): a wrong central clock must not move the gateway's time.
    #[error("issued_in_future: issued at {issued_at}, the gateway's time allows up to {limit}")]
    IssuedInFuture {
        /// The issue time.
        issued_at: Timestamp,
        /// The latest issue time the gateway accepts now.
        limit: Timestamp,
    },
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
    /// Content does not hold together (unknown time zone, dangling name,
    /// a bad or unsorted credential record).
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
    /// Split into header and credentials.
    pub fn into_parts(self) -> (Header, BTreeMap<CredentialKey, Credential>) {
        (self.header, self.credentials)
    }
}

/// A verified snapshot whose credentials stay as checked record bytes,
/// borrowed from the blob (the store's path: nothing is materialised).
#[derive(Debug)]
pub struct VerifiedRecords<'a> {
    header: Header,
    records: &'a [u8],
    count: u64,
    digest: [u8; 32],
    key_id: String,
    _sealed: (),
}

impl<'a> VerifiedRecords<'a> {
    /// Rules without credentials.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The checked record section: sorted by key, well-formed, levels known.
    pub fn records(&self) -> &'a [u8] {
        self.records
    }
    /// Number of credentials.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Snapshot version.
    pub fn version(&self) -> u64 {
        self.header.snapshot.version
    }
    /// SHA-256 of the payload.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
    /// Key id that signed it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// Materialise the credentials (tools, tests, small snapshots).
    pub fn into_snapshot(self) -> Result<VerifiedSnapshot, VerifyError> {
        let levels = self.header.level_names();
        let mut credentials = BTreeMap::new();
        for r in Records::new(self.records) {
            let c = r?.decode(levels)?;
            credentials.insert(c.key.clone(), c);
        }
        Ok(VerifiedSnapshot {
            header: self.header,
            credentials,
            digest: self.digest,
            key_id: self.key_id,
            _sealed: (),
        })
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    schema: u32,
    gateway_id: String,
    building: String,
}

#[derive(Deserialize)]
struct PayloadProbe {
    header: Probe,
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

/// Verify a signed snapshot and materialise its credentials. Checks, in
/// this order, each with its own error: CBOR shape (`Malformed`),
/// `UnknownKey`, `BadSignature`, `WrongGateway` (gateway or building),
/// `UnsupportedSchema`, `Expired`, `Rollback` (version lower than
/// `last_accepted`), `VersionReused` (same version, different payload
/// digest; same digest is accepted again), and finally the content's
/// consistency (`Invalid`).
pub fn verify_snapshot(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
    now: Timestamp,
    last_accepted: Option<(u64, [u8; 32])>,
) -> Result<VerifiedSnapshot, VerifyError> {
    verify_snapshot_records(bytes, keys, gateway, building, now, last_accepted)?.into_snapshot()
}

/// [`verify_snapshot`] without materialising credentials: the records are
/// checked in place (shape, order, levels) and stay borrowed from `bytes`.
pub fn verify_snapshot_records<'a>(
    bytes: &'a [u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
    now: Timestamp,
    last_accepted: Option<(u64, [u8; 32])>,
) -> Result<VerifiedRecords<'a>, VerifyError> {
    verify_records(bytes, keys, gateway, building, Some((now, last_accepted)))
}

/// Re-verify a snapshot the store accepted before (its last-good file):
/// signature, target, schema and content, but neither expiry (old rules
/// keep deciding, limited by `max_age`) nor version (it may be below a
/// later delta's).
pub(crate) fn reverify_stored_snapshot<'a>(
    bytes: &'a [u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
) -> Result<VerifiedRecords<'a>, VerifyError> {
    verify_records(bytes, keys, gateway, building, None)
}

type Freshness = Option<(Timestamp, Option<(u64, [u8; 32])>)>;

fn verify_records<'a>(
    bytes: &'a [u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
    fresh: Freshness,
) -> Result<VerifiedRecords<'a>, VerifyError> {
    let checked = keys.check(bytes, SNAPSHOT_CONTEXT)?;
    let probe: PayloadProbe = serde_cbor::from_slice(checked.payload).map_err(malformed)?;
    check_target(&probe.header, gateway, building)?;
    if probe.header.schema != SCHEMA {
        return Err(VerifyError::UnsupportedSchema(probe.header.schema));
    }
    let p: PayloadIn<'a> = serde_cbor::from_slice(checked.payload).map_err(malformed)?;
    if !p.header.credentials.is_empty() {
        return Err(VerifyError::Malformed(
            "credentials belong in the record section".into(),
        ));
    }
    if let Some((now, last)) = fresh {
        if now > p.header.expires_at {
            return Err(VerifyError::Expired(p.header.expires_at));
        }
        check_version(p.header.version, checked.digest, last)?;
    }
    let header = Header::new(p.header)?;
    let count = record::check_section(p.records, header.level_names().len())?;
    Ok(VerifiedRecords {
        header,
        records: p.records,
        count,
        digest: checked.digest,
        key_id: checked.key_id.to_owned(),
        _sealed: (),
    })
}

/// Rollback protection: `version` below the highest accepted is refused,
/// the same version only with the same payload digest.
pub fn check_version(
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
        SignedBlobRef::parse(bytes)
            .ok()
            .and_then(|b| serde_cbor::from_slice::<P>(b.payload).ok())
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
    verify_delta_at(bytes, keys, gateway, building, Some(now))
}

/// Re-verify a delta the store accepted before (no expiry check).
pub(crate) fn reverify_stored_delta(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
) -> Result<VerifiedDelta, VerifyError> {
    verify_delta_at(bytes, keys, gateway, building, None)
}

fn verify_delta_at(
    bytes: &[u8],
    keys: &TrustedKeys,
    gateway: &str,
    building: &str,
    now: Option<Timestamp>,
) -> Result<VerifiedDelta, VerifyError> {
    let checked = keys.check(bytes, DELTA_CONTEXT)?;
    let probe: Probe = serde_cbor::from_slice(checked.payload).map_err(malformed)?;
    check_target(&probe, gateway, building)?;
    let delta: Delta = serde_cbor::from_slice(checked.payload).map_err(malformed)?;
    if let Some(now) = now
        && now > delta.expires_at
    {
        return Err(VerifyError::Expired(delta.expires_at));
    }
    Ok(VerifiedDelta {
        digest: checked.digest,
        delta,
        key_id: checked.key_id.to_owned(),
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

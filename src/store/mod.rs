//! Durable rule storage in sled: the snapshot in force, its credentials
//! indexed by card for O(log n) lookup, the signed bytes it came from, and
//! rollback protection.
//!
//! Layout: tree `meta` holds `current` (generation, version, digest, the
//! snapshot header) and `highest` (highest version ever accepted and its
//! digest; only ever raised). Tree `blob` holds the signed snapshot and the
//! applied deltas of the current generation. Tree `creds-<generation>` maps
//! the credential key's text to its CBOR credential.
//!
//! Guarantees: a full snapshot is written into a fresh generation tree and
//! flushed before one atomic `meta` transaction flips `current` and
//! `highest`; only then is the old tree dropped. A delta is one atomic
//! transaction over the credential, blob and meta trees. A crash at any
//! point leaves the old or the new rules entirely in force. On open the
//! stored signed bytes are re-verified against the trusted keys, and
//! leftovers of an interrupted apply are removed. Opening waits up to about
//! a second for sled's file lock, then fails (another process owns the store).

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

use crate::rules::envelope::{
    DELTA_CONTEXT, SNAPSHOT_CONTEXT, check_delta_base, verify_delta, verify_snapshot,
};
use crate::rules::{
    Credential, CredentialKey, CredentialLookup, Decision, DeltaError, Header, Request, RulesError,
    Snapshot, TrustedKeys, VerifyError, decide_with,
};

/// sled page cache size.
pub const CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

const CURRENT: &[u8] = b"current";
const HIGHEST: &[u8] = b"highest";
const BATCH: usize = 20_000;

/// Storage errors.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A blob was refused.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A delta did not fit.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// Stored data is inconsistent or does not verify.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// No rules have been applied yet.
    #[error("no rules in force")]
    Empty,
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Self::Sled(e),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CurrentRecord {
    generation: u64,
    version: u64,
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
    deltas: u32,
    credentials: u64,
    header: Snapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HighestRecord {
    version: u64,
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
}

fn cbor<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_cbor::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn uncbor<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, StoreError> {
    serde_cbor::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn tree_name(generation: u64) -> String {
    format!("creds-{generation}")
}

fn snapshot_key(generation: u64) -> Vec<u8> {
    format!("{generation:020}/snapshot").into_bytes()
}

fn delta_key(generation: u64, n: u32) -> Vec<u8> {
    format!("{generation:020}/delta/{n:010}").into_bytes()
}

fn digest32(v: &[u8]) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("digest is not 32 bytes".into()))
}

fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    Ok(crate::storage::open_db(dir, CACHE_CAPACITY)?)
}

struct Current {
    record: CurrentRecord,
    header: Arc<Header>,
    creds: sled::Tree,
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Version now in force.
    pub version: u64,
    /// Generation now in force.
    pub generation: u64,
    /// Credentials now in force.
    pub credentials: u64,
    /// The same blob was already in force; nothing changed.
    pub unchanged: bool,
}

/// The rule store of one gateway.
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    blob: sled::Tree,
    keys: TrustedKeys,
    gateway: String,
    building: String,
    /// The rules in force: swapped whole, so a decision sees one
    /// generation from start to end while an apply builds the next.
    current: RwLock<Option<Arc<Current>>>,
    /// Serialises appliers (decisions never take it).
    applying: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("gateway", &self.gateway)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the store in `dir`, clean up after an interrupted
    /// apply, and re-verify the signed bytes in force.
    pub fn open(
        dir: &Path,
        keys: TrustedKeys,
        gateway: &str,
        building: &str,
    ) -> Result<Self, StoreError> {
        let db = open_db(dir)?;
        let meta = db.open_tree("meta")?;
        let blob = db.open_tree("blob")?;
        let mut store = Self {
            db,
            meta,
            blob,
            keys,
            gateway: gateway.to_owned(),
            building: building.to_owned(),
            current: RwLock::new(None),
            applying: Mutex::new(()),
        };
        store.load()?;
        store.cleanup()?;
        Ok(store)
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let Some(raw) = self.meta.get(CURRENT)? else {
            return Ok(());
        };
        let record: CurrentRecord = uncbor(&raw)?;
        let g = record.generation;
        let snap = self
            .blob
            .get(snapshot_key(g))?
            .ok_or_else(|| StoreError::Corrupt(format!("generation {g} has no snapshot blob")))?;
        let mut last = self.keys.check(&snap, SNAPSHOT_CONTEXT)?;
        for n in 0..record.deltas {
            let d = self
                .blob
                .get(delta_key(g, n))?
                .ok_or_else(|| StoreError::Corrupt(format!("delta {n} missing")))?;
            last = self.keys.check(&d, DELTA_CONTEXT)?;
        }
        let digest: [u8; 32] = Sha256::digest(&last.payload).into();
        if digest[..] != record.digest[..] {
            return Err(StoreError::Corrupt(
                "stored blobs do not match the rules in force".into(),
            ));
        }
        let names = self.db.tree_names();
        if !names.iter().any(|n| n == tree_name(g).as_bytes()) {
            return Err(StoreError::Corrupt(format!(
                "credential tree of generation {g} missing"
            )));
        }
        let header = Header::new(record.header.clone()).map_err(VerifyError::from)?;
        let creds = self.db.open_tree(tree_name(g))?;
        self.set_current(Current {
            record,
            header: Arc::new(header),
            creds,
        });
        Ok(())
    }

    /// Drop credential trees and blobs of other generations (leftovers of an
    /// interrupted apply or of the previous generation).
    fn cleanup(&self) -> Result<(), StoreError> {
        let keep = self.current().map(|c| c.record.generation);
        for name in self.db.tree_names() {
            if let Some(g) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix("creds-"))
                .and_then(|g| g.parse::<u64>().ok())
                && Some(g) != keep
            {
                self.db.drop_tree(&name)?;
            }
        }
        let prefix = keep.map(|g| format!("{g:020}/"));
        for item in self.blob.iter().keys() {
            let k = item?;
            if prefix.as_ref().is_none_or(|p| !k.starts_with(p.as_bytes())) {
                self.blob.remove(k)?;
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// Highest version ever accepted and its payload digest.
    pub fn highest(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        match self.meta.get(HIGHEST)? {
            None => Ok(None),
            Some(raw) => {
                let h: HighestRecord = uncbor(&raw)?;
                Ok(Some((h.version, digest32(&h.digest)?)))
            }
        }
    }

    /// Version in force.
    pub fn version(&self) -> Option<u64> {
        self.current().map(|c| c.record.version)
    }

    /// Generation in force.
    pub fn generation(&self) -> Option<u64> {
        self.current().map(|c| c.record.generation)
    }

    /// Credentials in force, as recorded when applied.
    pub fn credential_count(&self) -> Option<u64> {
        self.current().map(|c| c.record.credentials)
    }

    /// Rules in force (without credentials).
    pub fn header(&self) -> Option<Arc<Header>> {
        self.current().map(|c| c.header.clone())
    }

    /// Count the credential tree (O(n)); must equal [`Self::credential_count`].
    pub fn count_stored_credentials(&self) -> Result<u64, StoreError> {
        let c = self.current().ok_or(StoreError::Empty)?;
        Ok(c.creds.len() as u64)
    }

    /// Verify and apply a signed full snapshot.
    ///
    /// Takes `&self`: decisions go on against the rules in force while the
    /// new generation is written; they switch over in one pointer swap.
    pub fn apply_snapshot(&self, bytes: &[u8], now: Timestamp) -> Result<Applied, StoreError> {
        let _applying = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let highest = self.highest()?;
        let v = verify_snapshot(
            bytes,
            &self.keys,
            &self.gateway,
            &self.building,
            now,
            highest,
        )?;
        let current = self.current();
        if let Some(c) = &current
            && c.record.version == v.version()
            && c.record.digest[..] == v.digest()[..]
        {
            return Ok(Applied {
                version: c.record.version,
                generation: c.record.generation,
                credentials: c.record.credentials,
                unchanged: true,
            });
        }
        let old = current.as_ref().map(|c| c.record.generation);
        let generation = old.map_or(1, |g| g + 1);
        let name = tree_name(generation);
        self.db.drop_tree(name.as_bytes())?;
        let creds = self.db.open_tree(&name)?;
        let version = v.version();
        let digest = v.digest();
        let (header, credentials) = v.into_parts();
        let count = credentials.len() as u64;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for (k, c) in &credentials {
            batch.insert(k.to_string().into_bytes(), cbor(c)?);
            n += 1;
            if n % BATCH == 0 {
                creds.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        creds.apply_batch(batch)?;
        self.blob.insert(snapshot_key(generation), bytes)?;
        self.db.flush()?;
        let record = CurrentRecord {
            generation,
            version,
            digest: digest.to_vec(),
            deltas: 0,
            credentials: count,
            header: header.snapshot().clone(),
        };
        self.flip(&record)?;
        self.set_current(Current {
            record,
            header: Arc::new(header),
            creds,
        });
        if let Some(g) = old {
            self.db.drop_tree(tree_name(g).as_bytes())?;
            self.blob.remove(snapshot_key(g))?;
            self.cleanup()?;
        }
        Ok(Applied {
            version,
            generation,
            credentials: count,
            unchanged: false,
        })
    }

    fn flip(&self, record: &CurrentRecord) -> Result<(), StoreError> {
        let cur = cbor(record)?;
        let hi = cbor(&HighestRecord {
            version: record.version,
            digest: record.digest.clone(),
        })?;
        self.meta
            .transaction(|t| {
                t.insert(CURRENT, cur.as_slice())?;
                t.insert(HIGHEST, hi.as_slice())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        self.meta.flush()?;
        Ok(())
    }

    /// Verify and apply a signed delta on top of the version in force, in
    /// one atomic transaction (blocks and unblocks first).
    pub fn apply_delta(&self, bytes: &[u8], now: Timestamp) -> Result<Applied, StoreError> {
        let _applying = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let d = verify_delta(bytes, &self.keys, &self.gateway, &self.building, now)?;
        let cur = self.current().ok_or(StoreError::Empty)?;
        let delta = d.delta();
        if delta.version == cur.record.version && cur.record.digest[..] == d.digest()[..] {
            // The same delta delivered again (MQTT QoS 1): nothing to do.
            return Ok(Applied {
                version: cur.record.version,
                generation: cur.record.generation,
                credentials: cur.record.credentials,
                unchanged: true,
            });
        }
        check_delta_base(cur.record.version, delta)?;
        if let Some((hv, _)) = self.highest()?
            && delta.version <= hv
        {
            return Err(VerifyError::Rollback {
                got: delta.version,
                have: hv,
            }
            .into());
        }
        let mut upserts = Vec::with_capacity(delta.upserts.len());
        for c in &delta.upserts {
            cur.header.check_credential(c).map_err(DeltaError::from)?;
            upserts.push((c.key.to_string().into_bytes(), cbor(c)?));
        }
        let mut header = (*cur.header).clone();
        header.set_times(delta.version, delta.issued_at, delta.expires_at);
        let mut record = cur.record.clone();
        record.version = delta.version;
        record.digest = d.digest().to_vec();
        record.deltas += 1;
        record.header = header.snapshot().clone();
        let dkey = delta_key(record.generation, cur.record.deltas);
        let creds = cur.creds.clone();
        let count = (&creds, &self.meta, &self.blob)
            .transaction(|(c, m, b)| {
                let abort = |e: StoreError| ConflictableTransactionError::Abort(e);
                let mut count = cur.record.credentials as i64;
                let modify =
                    |k: &CredentialKey,
                     f: &dyn Fn(&mut Credential)|
                     -> Result<(), ConflictableTransactionError<StoreError>> {
                        let key = k.to_string().into_bytes();
                        if let Some(raw) = c.get(&key)? {
                            let mut cred: Credential = uncbor(&raw).map_err(abort)?;
                            f(&mut cred);
                            c.insert(key, cbor(&cred).map_err(abort)?)?;
                        }
                        Ok(())
                    };
                for blk in &delta.blocks {
                    modify(&blk.card, &|cr| cr.blocked = Some(blk.reason))?;
                }
                for k in &delta.unblocks {
                    modify(k, &|cr| cr.blocked = None)?;
                }
                for (k, v) in &upserts {
                    if c.insert(k.as_slice(), v.as_slice())?.is_none() {
                        count += 1;
                    }
                }
                for k in &delta.removals {
                    if c.remove(k.to_string().into_bytes())?.is_some() {
                        count -= 1;
                    }
                }
                let mut rec = record.clone();
                rec.credentials = count.max(0) as u64;
                m.insert(CURRENT, cbor(&rec).map_err(abort)?)?;
                let hi = HighestRecord {
                    version: rec.version,
                    digest: rec.digest.clone(),
                };
                m.insert(HIGHEST, cbor(&hi).map_err(abort)?)?;
                b.insert(dkey.as_slice(), bytes)?;
                Ok(rec.credentials)
            })
            .map_err(StoreError::from)?;
        self.db.flush()?;
        record.credentials = count;
        let generation = record.generation;
        let version = record.version;
        self.set_current(Current {
            record,
            header: Arc::new(header),
            creds,
        });
        Ok(Applied {
            version,
            generation,
            credentials: count,
            unchanged: false,
        })
    }

    /// Decide against the rules in force.
    ///
    /// A decision that started on a generation an apply has just replaced
    /// (and dropped) is decided again on the new one.
    pub fn decide(&self, req: &Request, now: Timestamp) -> Result<Decision, StoreError> {
        let c = self.current().ok_or(StoreError::Empty)?;
        match decide_with(&c.header, &*c, req, now) {
            Ok(d) => Ok(d),
            Err(e) => match self.current() {
                Some(next) if next.record.generation != c.record.generation => {
                    decide_with(&next.header, &*next, req, now)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                }
                _ => Err(StoreError::Corrupt(e.to_string())),
            },
        }
    }

    fn current(&self) -> Option<Arc<Current>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_current(&self, current: Current) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(current));
    }
}

/// One generation's credentials, looked up in its own tree (never a mix of
/// generations within one decision).
impl CredentialLookup for Current {
    fn credential(&self, key: &CredentialKey) -> Result<Option<Credential>, RulesError> {
        let c = self;
        match c.creds.get(key.to_string().as_bytes()) {
            Ok(None) => Ok(None),
            Ok(Some(raw)) => serde_cbor::from_slice(&raw)
                .map(Some)
                .map_err(|e| RulesError::Lookup(e.to_string())),
            Err(e) => Err(RulesError::Lookup(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;

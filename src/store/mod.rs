//! Durable rule storage: the snapshot in force, its credentials indexed by
//! card for O(log n) lookup, the signed bytes it came from, and rollback
//! protection.
//!
//! Layout of the store directory:
//! * `sled/`: tree `meta` holds `current` (generation, version, digest, the
//!   snapshot header, counts) and `highest`; tree `pages-G` maps the last
//!   key of each run of about 4 KiB of credential records (the snapshot's
//!   own record bytes, see [`crate::rules::record`]) to the run; tree
//!   `overlay-G` holds what deltas changed (key → record, empty =
//!   removed), consulted first.
//! * `snapshot-G.bin` and `deltas-G.log`: the last-good signed blobs;
//!   `highest`: the highest version ever accepted (see [`files`]).
//!
//! Guarantees: a full snapshot is written into fresh trees and flushed,
//! then its blob file and `highest` are made durable, and only then does
//! one atomic `meta` transaction flip `current`; the old generation is
//! dropped after. A delta is appended to the delta log, then applied in one
//! transaction over the overlay and `meta`. A crash at any point leaves the
//! old or the new rules entirely in force. On open the signed bytes in
//! force are re-verified; if sled reports corruption or its state does not
//! match the files, the sled directory is moved aside and the rules are
//! rebuilt from the last-good files, and [`Store::recovery`] says so.

mod files;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, UnabortableTransactionError,
};
use thiserror::Error;

use crate::rules::envelope::{
    DELTA_CONTEXT, SNAPSHOT_CONTEXT, VerifiedRecords, check_delta_base, check_version,
    reverify_stored_delta, reverify_stored_snapshot, verify_delta, verify_snapshot_records,
};
use crate::rules::record::{self, Record, Records};
use crate::rules::{
    BlockReason, Credential, CredentialKey, CredentialLookup, Decision, DeltaError, DenyReason,
    Header, Request, RulesError, Snapshot, TrustedKeys, VerifiedDelta, VerifyError, decide_with,
};

/// sled page cache size.
pub const CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

const SLED_DIR: &str = "sled";
const CURRENT: &[u8] = b"current";
const HIGHEST: &[u8] = b"highest";
/// Bytes of records per sled value: large enough that 1 M credentials are
/// ~9 000 sled inserts, small enough that a lookup scans ~100 records.
const PAGE_BYTES: usize = 4096;
const PAGES_PER_BATCH: usize = 64;

/// Storage errors.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A store file could not be read or written.
    #[error("store file: {0}")]
    Io(#[from] std::io::Error),
    /// A blob was refused.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A delta did not fit.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// Stored data is inconsistent.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// No rules have been applied yet.
    #[error("no rules in force")]
    Empty,
    /// The rules on disk are signed by a key that is no longer trusted;
    /// only a full snapshot signed by a trusted key can replace them (a
    /// delta has nothing trusted to build on).
    #[error(
        "the rules on disk are signed by key {key_id}, which is no longer trusted: \
         a full snapshot signed by a trusted key is needed"
    )]
    Untrusted {
        /// The signer that is no longer trusted.
        key_id: String,
    },
}

impl StoreError {
    /// Whether the sled state is damaged (rebuild from the files), as
    /// opposed to a refusal, a lock held by another process or an I/O error
    /// that moving the database aside would not cure.
    fn is_corruption(&self) -> bool {
        use std::io::ErrorKind::{InvalidData, UnexpectedEof};
        match self {
            Self::Corrupt(_) => true,
            // `Unsupported` is what sled says about an unreadable `conf`.
            Self::Sled(
                sled::Error::Corruption { .. }
                | sled::Error::ReportableBug(_)
                | sled::Error::Unsupported(_),
            ) => true,
            Self::Sled(sled::Error::Io(e)) => matches!(e.kind(), UnexpectedEof | InvalidData),
            _ => false,
        }
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Self::Sled(e),
        }
    }
}

impl From<RulesError> for StoreError {
    fn from(e: RulesError) -> Self {
        Self::Corrupt(e.to_string())
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
    /// Entries of `pages-G` as written (a cheap consistency check at open).
    pages: u64,
    header: Snapshot,
    /// Key id of the central key that signed the snapshot in force.
    #[serde(default)]
    signer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HighestRecord {
    version: u64,
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
}

type Highest = Option<(u64, [u8; 32])>;

fn cbor<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_cbor::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn uncbor<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, StoreError> {
    serde_cbor::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn pages_name(generation: u64) -> String {
    format!("pages-{generation}")
}

fn overlay_name(generation: u64) -> String {
    format!("overlay-{generation}")
}

fn digest32(v: &[u8]) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("digest is not 32 bytes".into()))
}

/// The higher of two highest-version records (never lowered).
fn raise(a: Highest, b: Highest) -> Highest {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 > x.0 { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// The record of `key` in a pages tree: the first run whose last key is
/// not below it.
fn page_lookup(pages: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match pages.range(key..).next() {
        None => Ok(None),
        Some(item) => {
            let (_, page) = item?;
            Ok(record::find(&page, key)?.map(|r| r.bytes().to_vec()))
        }
    }
}

struct Current {
    record: CurrentRecord,
    header: Arc<Header>,
    pages: sled::Tree,
    overlay: sled::Tree,
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

/// The store was rebuilt from its last-good files at open (for the
/// daemon's journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// What was wrong with the sled state.
    pub reason: String,
    /// Where the damaged sled directory was moved, kept for forensics.
    pub moved_aside: Option<PathBuf>,
    /// Version in force after the rebuild.
    pub version: Option<u64>,
}

/// Whether the rules on disk may be used for decisions.
///
/// Removing a leaked key from `[trust]` must not stop the gateway: the
/// daemon has to stay up to receive the snapshot that fixes it. So rules
/// signed by a key that is no longer trusted are kept on disk (for
/// forensics, and so `highest` keeps guarding against rollback) but never
/// used: every card is denied with `rules_untrusted`, no door-mode
/// schedule from them applies, and the next full snapshot signed by a
/// trusted key replaces them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "trust", rename_all = "snake_case")]
pub enum RulesTrust {
    /// No rules on disk, or rules whose every blob in force verifies
    /// against the trusted keys.
    Trusted,
    /// The rules on disk (the snapshot or a delta in force) were signed by
    /// a key that is no longer trusted.
    Untrusted {
        /// Key id of that signer.
        key_id: String,
        /// Version of the rules on disk, when known.
        version: Option<u64>,
    },
}

/// Rules on disk that are not used (see [`RulesTrust::Untrusted`]).
#[derive(Debug, Clone)]
struct Untrusted {
    key_id: String,
    version: Option<u64>,
    /// Their generation: its trees and files are kept until a trusted
    /// snapshot replaces them.
    generation: u64,
}

/// The rule store of one gateway.
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    keys: TrustedKeys,
    gateway: String,
    building: String,
    /// The rules in force: swapped whole, so a decision sees one
    /// generation from start to end while an apply builds the next.
    current: RwLock<Option<Arc<Current>>>,
    highest: Mutex<Highest>,
    /// Serialises appliers (decisions never take it).
    applying: Mutex<()>,
    recovery: Option<Recovery>,
    /// Rules on disk signed by a key no longer trusted; cleared when a
    /// trusted snapshot is applied.
    untrusted: Mutex<Option<Untrusted>>,
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
    /// Open (or create) the store in `dir`, re-verify the signed bytes in
    /// force, and clean up after an interrupted apply. A damaged sled
    /// database is moved aside and rebuilt from the last-good files (see
    /// [`Self::recovery`]). Rules signed by a key that is no longer
    /// trusted open as [`RulesTrust::Untrusted`] (kept, not used; see
    /// [`Self::trust`]), never as an error. A lock held by another
    /// process, a bad signature or an I/O error is an error.
    pub fn open(
        dir: &Path,
        keys: TrustedKeys,
        gateway: &str,
        building: &str,
    ) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        let file_highest = files::read_highest(dir)?;
        let sled_dir = dir.join(SLED_DIR);
        let make = |db: sled::Db| -> Result<Self, StoreError> {
            Ok(Self {
                dir: dir.to_owned(),
                meta: db.open_tree("meta")?,
                db,
                keys: keys.clone(),
                gateway: gateway.to_owned(),
                building: building.to_owned(),
                current: RwLock::new(None),
                highest: Mutex::new(None),
                applying: Mutex::new(()),
                recovery: None,
                untrusted: Mutex::new(None),
            })
        };
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut st = make(crate::storage::open_db(&sled_dir, CACHE_CAPACITY)?)?;
            st.load()?;
            Ok::<_, StoreError>(st)
        }))
        .unwrap_or_else(|_| Err(StoreError::Corrupt("sled panicked while opening".into())));
        let mut st = match first {
            Ok(st) => st,
            Err(e) if e.is_corruption() => {
                let aside = files::move_aside(dir, SLED_DIR)?;
                let mut st = make(crate::storage::open_db(&sled_dir, CACHE_CAPACITY)?)?;
                *st.highest.get_mut().unwrap_or_else(|e| e.into_inner()) = file_highest;
                st.rebuild(e.to_string(), Some(aside))?;
                st
            }
            Err(e) => return Err(e),
        };
        let h = st.highest_now();
        st.set_highest(raise(h, file_highest));
        if st.current().is_none()
            && st.recovery.is_none()
            && st.untrusted_now().is_none()
            && !files::generations(dir)?.is_empty()
        {
            st.rebuild(
                "sled has no rules in force but a last-good snapshot file exists".into(),
                None,
            )?;
        }
        st.cleanup()?;
        Ok(st)
    }

    /// Read `current` and `highest`, re-verify the signed files in force
    /// against them, and check the trees exist.
    fn load(&mut self) -> Result<(), StoreError> {
        if let Some(raw) = self.meta.get(HIGHEST)? {
            let h: HighestRecord = uncbor(&raw)?;
            self.set_highest(Some((h.version, digest32(&h.digest)?)));
        }
        let Some(raw) = self.meta.get(CURRENT)? else {
            return Ok(());
        };
        let record: CurrentRecord = uncbor(&raw)?;
        let g = record.generation;
        let path = files::snapshot_path(&self.dir, g);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Corrupt(format!(
                    "last-good snapshot {} of generation {g} missing",
                    path.display()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let deltas = files::read_deltas(&self.dir, g)?;
        let want = record.deltas as usize;
        if deltas.len() < want {
            return Err(StoreError::Corrupt(format!(
                "delta log holds {} of the {want} deltas in force",
                deltas.len()
            )));
        }
        let blobs = std::iter::once((bytes.as_slice(), SNAPSHOT_CONTEXT)).chain(
            deltas[..want]
                .iter()
                .map(|(d, _)| (d.as_slice(), DELTA_CONTEXT)),
        );
        if let Some(key_id) = self.unknown_signer(blobs) {
            self.set_untrusted(key_id, Some(record.version), g);
            return Ok(());
        }
        let mut digest = self.keys.check(&bytes, SNAPSHOT_CONTEXT)?.digest;
        drop(bytes);
        for (d, _) in &deltas[..want] {
            digest = self.keys.check(d, DELTA_CONTEXT)?.digest;
        }
        if digest[..] != record.digest[..] {
            return Err(StoreError::Corrupt(
                "last-good files do not match the rules in force".into(),
            ));
        }
        let names = self.db.tree_names();
        if !names.iter().any(|n| n == pages_name(g).as_bytes()) {
            return Err(StoreError::Corrupt(format!(
                "credential pages of generation {g} missing"
            )));
        }
        let pages = self.db.open_tree(pages_name(g))?;
        if pages.len() as u64 != record.pages {
            return Err(StoreError::Corrupt(format!(
                "generation {g} has {} credential pages, {} were written",
                pages.len(),
                record.pages
            )));
        }
        let header = Header::new(record.header.clone()).map_err(VerifyError::from)?;
        self.set_current(Current {
            overlay: self.db.open_tree(overlay_name(g))?,
            record,
            header: Arc::new(header),
            pages,
        });
        Ok(())
    }

    /// Rebuild the rules from the newest last-good snapshot file and its
    /// delta log (re-verified; expiry is not re-checked, as at any open).
    fn rebuild(&mut self, reason: String, moved_aside: Option<PathBuf>) -> Result<(), StoreError> {
        let Some(&g) = files::generations(&self.dir)?.last() else {
            return Err(StoreError::Corrupt(format!(
                "{reason}; no last-good snapshot file to rebuild from"
            )));
        };
        let deltas = files::read_deltas(&self.dir, g)?;
        {
            let bytes = fs::read(files::snapshot_path(&self.dir, g))?;
            // A delta signed by a removed key may carry a block: rebuilding
            // without it would let a blocked card in. Trust all or nothing.
            let blobs = std::iter::once((bytes.as_slice(), SNAPSHOT_CONTEXT))
                .chain(deltas.iter().map(|(d, _)| (d.as_slice(), DELTA_CONTEXT)));
            if let Some(key_id) = self.unknown_signer(blobs) {
                self.set_untrusted(key_id, None, g);
                self.recovery = Some(Recovery {
                    reason,
                    moved_aside,
                    version: None,
                });
                return Ok(());
            }
            let v = reverify_stored_snapshot(&bytes, &self.keys, &self.gateway, &self.building)?;
            let (pages, n) = self.import(g, v.records())?;
            self.make_current(g, &v, pages, n)?;
        }
        let mut applied = 0;
        for (d, _) in deltas {
            let Ok(vd) = reverify_stored_delta(&d, &self.keys, &self.gateway, &self.building)
            else {
                break;
            };
            if self.apply_verified(&vd, &d, true).is_err() {
                break;
            }
            applied += 1;
        }
        files::truncate_deltas(&self.dir, g, applied)?;
        self.recovery = Some(Recovery {
            reason,
            moved_aside,
            version: self.version(),
        });
        Ok(())
    }

    /// Drop trees and files of other generations (leftovers of an
    /// interrupted apply or of the previous generation), and cut the delta
    /// log to the deltas in force.
    fn cleanup(&self) -> Result<(), StoreError> {
        let keep = self
            .generation()
            .or_else(|| self.untrusted_now().map(|u| u.generation));
        for name in self.db.tree_names() {
            if let Some(g) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix("pages-").or(n.strip_prefix("overlay-")))
                .and_then(|g| g.parse::<u64>().ok())
                && Some(g) != keep
            {
                self.db.drop_tree(&name)?;
            }
        }
        self.db.flush()?;
        files::remove_other_generations(&self.dir, keep)?;
        if let Some(c) = self.current() {
            files::truncate_deltas(&self.dir, c.record.generation, c.record.deltas as usize)?;
        }
        Ok(())
    }

    /// What the daemon must say at start about the rules store: logs the
    /// state (version in force, none, untrusted, rebuilt) and returns the
    /// alarm events to journal with `daemon_started` (`rules_recovered`,
    /// `rules_untrusted`). Call once, right after [`Self::open`].
    pub fn startup_report(&self) -> Vec<crate::event::EventKind> {
        use crate::event::EventKind;
        let mut alarms = Vec::new();
        if let Some(r) = self.recovery() {
            tracing::error!(
                reason = r.reason,
                "rules store rebuilt from its last-good files"
            );
            alarms.push(EventKind::RulesRecovered {
                reason: r.reason.clone(),
                moved_aside: r.moved_aside.as_ref().map(|p| p.display().to_string()),
                version: r.version,
            });
        }
        match (self.version(), self.trust()) {
            (_, RulesTrust::Untrusted { key_id, version }) => {
                tracing::error!(
                    key_id,
                    version,
                    dir = %self.dir.display(),
                    "the rules on disk are signed by key {key_id}, which is not in [trust] any \
                     more: they are kept but not used, every card is denied (rules_untrusted) \
                     until central sends a snapshot signed by a trusted key (or a technician runs \
                     `portier snapshot apply`)"
                );
                alarms.push(EventKind::RulesUntrusted { key_id, version });
            }
            (Some(v), RulesTrust::Trusted) => tracing::info!(version = v, "rules in force"),
            (None, RulesTrust::Trusted) => tracing::warn!(
                "no rules yet: every card is denied (rules_too_old) until a snapshot is applied"
            ),
        }
        alarms
    }

    /// Whether this open rebuilt the rules from the last-good files, and why.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// Whether the rules on disk are used. The daemon journals
    /// [`RulesTrust::Untrusted`] as a `rules_untrusted` alarm at start and
    /// shows it on the admin page; decisions meanwhile deny with
    /// [`DenyReason::RulesUntrusted`](crate::rules::DenyReason::RulesUntrusted).
    pub fn trust(&self) -> RulesTrust {
        match self.untrusted_now() {
            None => RulesTrust::Trusted,
            Some(u) => RulesTrust::Untrusted {
                key_id: u.key_id,
                version: u.version,
            },
        }
    }

    fn untrusted_now(&self) -> Option<Untrusted> {
        self.untrusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_untrusted(&self, key_id: String, version: Option<u64>, generation: u64) {
        *self.untrusted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Untrusted {
            key_id,
            version,
            generation,
        });
    }

    /// The key id of the first blob signed by a key not in the trust list
    /// (other faults are left to the full verification that follows).
    fn unknown_signer<'a>(
        &self,
        blobs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Option<String> {
        blobs
            .into_iter()
            .find_map(|(blob, context)| match self.keys.check(blob, context) {
                Err(VerifyError::UnknownKey(k)) => Some(k),
                _ => None,
            })
    }

    /// Highest version ever accepted and its payload digest.
    pub fn highest(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        Ok(self.highest_now())
    }

    fn highest_now(&self) -> Highest {
        *self.highest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_highest(&self, h: Highest) {
        *self.highest.lock().unwrap_or_else(|e| e.into_inner()) = h;
    }

    fn current(&self) -> Option<Arc<Current>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swap in a generation; returns the one it replaced.
    fn set_current(&self, current: Current) -> Option<Arc<Current>> {
        self.current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(Arc::new(current))
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

    /// Key id of the central key that signed the snapshot in force.
    pub fn signer_key_id(&self) -> Option<String> {
        self.current().map(|c| c.record.signer.clone())
    }

    /// One credential of the rules in force (`None` without rules).
    pub fn credential(&self, key: &CredentialKey) -> Result<Option<Credential>, StoreError> {
        let Some(c) = self.current() else {
            return Ok(None);
        };
        c.credential(key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Rules in force (without credentials).
    pub fn header(&self) -> Option<Arc<Header>> {
        self.current().map(|c| c.header.clone())
    }

    /// Count the stored credentials (O(n)); must equal
    /// [`Self::credential_count`].
    pub fn count_stored_credentials(&self) -> Result<u64, StoreError> {
        let c = self.current().ok_or(StoreError::Empty)?;
        let mut n: i64 = 0;
        for page in c.pages.iter().values() {
            for r in Records::new(&page?) {
                r?;
                n += 1;
            }
        }
        for item in c.overlay.iter() {
            let (k, v) = item?;
            match (page_lookup(&c.pages, &k)?.is_some(), v.is_empty()) {
                (true, true) => n -= 1,
                (false, false) => n += 1,
                _ => {}
            }
        }
        Ok(n.max(0) as u64)
    }

    /// Write a checked record section into fresh trees of `generation` and
    /// flush; returns the pages tree and its entry count.
    fn import(&self, generation: u64, records: &[u8]) -> Result<(sled::Tree, u64), StoreError> {
        self.db.drop_tree(pages_name(generation).as_bytes())?;
        self.db.drop_tree(overlay_name(generation).as_bytes())?;
        let pages = self.db.open_tree(pages_name(generation))?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for (last, page) in record::pages(records, PAGE_BYTES) {
            batch.insert(last, page);
            n += 1;
            if n % PAGES_PER_BATCH as u64 == 0 {
                pages.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        pages.apply_batch(batch)?;
        self.db.flush()?;
        Ok((pages, n))
    }

    /// Flip `current` to an imported generation (one transaction with
    /// `highest`, flushed) and drop the previous generation.
    fn make_current(
        &self,
        generation: u64,
        v: &VerifiedRecords<'_>,
        pages: sled::Tree,
        page_count: u64,
    ) -> Result<(), StoreError> {
        let record = CurrentRecord {
            generation,
            version: v.version(),
            digest: v.digest().to_vec(),
            deltas: 0,
            credentials: v.count(),
            pages: page_count,
            header: v.header().snapshot().clone(),
            signer: v.key_id().to_owned(),
        };
        let highest = raise(self.highest_now(), Some((v.version(), v.digest())));
        let cur = cbor(&record)?;
        let hi = cbor(&highest.map(|(version, d)| HighestRecord {
            version,
            digest: d.to_vec(),
        }))?;
        self.meta
            .transaction(|t| {
                t.insert(CURRENT, cur.as_slice())?;
                t.insert(HIGHEST, hi.as_slice())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        self.db.flush()?;
        self.set_highest(highest);
        let old = self.set_current(Current {
            overlay: self.db.open_tree(overlay_name(generation))?,
            record,
            header: Arc::new(v.header().clone()),
            pages,
        });
        if let Some(o) = old.map(|c| c.record.generation)
            && o != generation
        {
            self.db.drop_tree(pages_name(o).as_bytes())?;
            self.db.drop_tree(overlay_name(o).as_bytes())?;
            files::remove_other_generations(&self.dir, Some(generation))?;
        }
        Ok(())
    }

    /// Verify and apply a signed full snapshot. `now` is the gateway's
    /// trusted time: the snapshot must not have expired by then nor have
    /// been issued more than [`crate::site::clock::SIGNED_SKEW`] after it
    /// (`issued_in_future`: a snapshot built with a wrong clock would move
    /// the gateway's time floor for good).
    ///
    /// Takes `&self`: decisions go on against the rules in force while the
    /// new generation is written; they switch over in one pointer swap.
    pub fn apply_snapshot(&self, bytes: &[u8], now: Timestamp) -> Result<Applied, StoreError> {
        let _applying = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let v = verify_snapshot_records(
            bytes,
            &self.keys,
            &self.gateway,
            &self.building,
            now,
            self.highest_now(),
        )?;
        not_from_the_future(v.header().snapshot().issued_at, now)?;
        if let Some(c) = self.current()
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
        let untrusted = self.untrusted_now();
        let generation = self
            .generation()
            .max(untrusted.as_ref().map(|u| u.generation))
            .map_or(1, |g| g + 1);
        let (pages, n) = self.import(generation, v.records())?;
        let highest = raise(self.highest_now(), Some((v.version(), v.digest())));
        if highest != self.highest_now()
            && let Some(h) = highest
        {
            files::write_highest(&self.dir, h)?;
        }
        files::write_snapshot(&self.dir, generation, bytes)?;
        self.make_current(generation, &v, pages, n)?;
        if let Some(u) = untrusted {
            // Trusted rules are in force (durably): the untrusted ones go.
            *self.untrusted.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.db.drop_tree(pages_name(u.generation).as_bytes())?;
            self.db.drop_tree(overlay_name(u.generation).as_bytes())?;
            files::remove_other_generations(&self.dir, Some(generation))?;
        }
        Ok(Applied {
            version: v.version(),
            generation,
            credentials: v.count(),
            unchanged: false,
        })
    }

    /// Verify and apply a signed delta on top of the version in force, in
    /// one atomic transaction (blocks and unblocks first).
    pub fn apply_delta(&self, bytes: &[u8], now: Timestamp) -> Result<Applied, StoreError> {
        let _applying = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let d = verify_delta(bytes, &self.keys, &self.gateway, &self.building, now)?;
        not_from_the_future(d.delta().issued_at, now)?;
        if let Some(u) = self.untrusted_now() {
            return Err(StoreError::Untrusted { key_id: u.key_id });
        }
        self.apply_verified(&d, bytes, false)
    }

    /// Apply a verified delta. `replay` is a rebuild from the delta log:
    /// the blob is already logged, and the highest version may be above it.
    fn apply_verified(
        &self,
        d: &VerifiedDelta,
        bytes: &[u8],
        replay: bool,
    ) -> Result<Applied, StoreError> {
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
        if !replay {
            check_version(delta.version, d.digest(), self.highest_now())?;
        }
        let levels = cur.header.level_names();
        let key = |k: &CredentialKey| record::key_bytes(k).map_err(DeltaError::from);
        let mut upserts = Vec::with_capacity(delta.upserts.len());
        for c in &delta.upserts {
            let mut r = Vec::new();
            record::encode(c, levels, &mut r).map_err(DeltaError::from)?;
            upserts.push((key(&c.key)?, r));
        }
        let mut blocks: Vec<(Vec<u8>, Option<BlockReason>)> = Vec::new();
        for b in &delta.blocks {
            blocks.push((key(&b.card)?, Some(b.reason)));
        }
        for k in &delta.unblocks {
            blocks.push((key(k)?, None));
        }
        let removals = delta
            .removals
            .iter()
            .map(key)
            .collect::<Result<Vec<_>, _>>()?;
        let mut header = (*cur.header).clone();
        header.set_times(delta.version, delta.issued_at, delta.expires_at);
        let mut record = cur.record.clone();
        record.version = delta.version;
        record.digest = d.digest().to_vec();
        record.deltas += 1;
        record.header = header.snapshot().clone();
        let highest = raise(self.highest_now(), Some((delta.version, d.digest())));
        if !replay {
            files::append_delta(&self.dir, record.generation, bytes)?;
            if highest != self.highest_now()
                && let Some(h) = highest
            {
                files::write_highest(&self.dir, h)?;
            }
        }
        let hi = cbor(&highest.map(|(version, d)| HighestRecord {
            version,
            digest: d.to_vec(),
        }))?;
        let (pages, overlay) = (cur.pages.clone(), cur.overlay.clone());
        // The pages never change after import; read them before the
        // transaction (a plain read inside a sled transaction deadlocks).
        let mut base: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
        for k in blocks
            .iter()
            .map(|b| &b.0)
            .chain(upserts.iter().map(|u| &u.0))
            .chain(&removals)
        {
            base.insert(k.clone(), page_lookup(&pages, k)?);
        }
        let count = (&overlay, &self.meta)
            .transaction(|(o, m)| {
                let abort = ConflictableTransactionError::Abort;
                let lookup = |k: &[u8]| -> Result<Option<Vec<u8>>, UnabortableTransactionError> {
                    match o.get(k)? {
                        Some(v) if v.is_empty() => Ok(None),
                        Some(v) => Ok(Some(v.to_vec())),
                        None => Ok(base.get(k).cloned().flatten()),
                    }
                };
                let mut count = record.credentials as i64;
                for (k, reason) in &blocks {
                    if let Some(r) = lookup(k)? {
                        let new = Record::parse(&r)
                            .and_then(|r| r.with_blocked(*reason))
                            .map_err(|e| abort(e.into()))?;
                        o.insert(k.as_slice(), new)?;
                    }
                }
                for (k, r) in &upserts {
                    if lookup(k)?.is_none() {
                        count += 1;
                    }
                    o.insert(k.as_slice(), r.as_slice())?;
                }
                for k in &removals {
                    if lookup(k)?.is_some() {
                        count -= 1;
                        o.insert(k.as_slice(), &[][..])?;
                    }
                }
                let mut rec = record.clone();
                rec.credentials = count.max(0) as u64;
                m.insert(CURRENT, cbor(&rec).map_err(abort)?)?;
                m.insert(HIGHEST, hi.as_slice())?;
                Ok(rec.credentials)
            })
            .map_err(StoreError::from)?;
        self.db.flush()?;
        record.credentials = count;
        let (generation, version) = (record.generation, record.version);
        self.set_highest(highest);
        self.set_current(Current {
            record,
            header: Arc::new(header),
            pages,
            overlay,
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
    /// Rules signed by a key that is no longer trusted deny every card with
    /// `rules_untrusted` (fail secure, whatever the door class).
    pub fn decide(&self, req: &Request, now: Timestamp) -> Result<Decision, StoreError> {
        let Some(c) = self.current() else {
            if self.untrusted_now().is_some() {
                return Ok(Decision::Deny(DenyReason::RulesUntrusted));
            }
            return Err(StoreError::Empty);
        };
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
}

/// One generation's credentials (pages, then its delta overlay): never a
/// mix of generations within one decision.
impl CredentialLookup for Current {
    fn credential(&self, key: &CredentialKey) -> Result<Option<Credential>, RulesError> {
        let c = self;
        // A key that has no byte form (malformed raw text) is stored nowhere.
        let Ok(k) = record::key_bytes(key) else {
            return Ok(None);
        };
        let failed = |e: sled::Error| RulesError::Lookup(e.to_string());
        let levels = c.header.level_names();
        if let Some(v) = c.overlay.get(&k).map_err(failed)? {
            if v.is_empty() {
                return Ok(None);
            }
            return Record::parse(&v)?.decode(levels).map(Some);
        }
        match c.pages.range(k.as_slice()..).next() {
            None => Ok(None),
            Some(item) => {
                let (_, page) = item.map_err(failed)?;
                record::find(&page, &k)?
                    .map(|r| r.decode(levels))
                    .transpose()
            }
        }
    }
}

/// Refuse a signed issue time beyond `now` plus the skew.
fn not_from_the_future(issued_at: Timestamp, now: Timestamp) -> Result<(), StoreError> {
    let skew = crate::site::clock::SIGNED_SKEW;
    let limit = now.checked_add(skew).unwrap_or(now);
    if issued_at > limit {
        return Err(VerifyError::IssuedInFuture { issued_at, limit }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;

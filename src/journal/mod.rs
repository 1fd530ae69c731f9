//! The event journal: every happening at the gateway, with a per-gateway
//! sequence number that is never reused, appended durably to sled before
//! the action counts as done. The only code that writes events to sled.
//!
//! Opening it yields three roles, so "one writer" is a type, not a habit:
//! [`JournalWriter`] (the daemon; not `Clone`, appending takes `&mut self`,
//! so sequence numbers cannot race), [`JournalReader`] (`Clone`: the uplink,
//! the status page, `/metrics`, the events API) and [`JournalAcker`] (the
//! uplink; deletes what central acknowledged).
//!
//! Guarantees:
//! - sequence numbers are strictly increasing and never reused, also after
//!   events are deleted (acknowledged centrally) and across restarts: the
//!   high-water mark is stored in the same transaction as the events;
//! - the kept events are exactly the sequence numbers `oldest..next_seq`
//!   (appends add at the top, acknowledgements delete from the bottom,
//!   the budget drops events before they are numbered), so the count is
//!   `next_seq - oldest`. Both bounds and the dropped counter live in
//!   `journal.meta`, written in the same transaction as the events they
//!   describe, and in memory as atomics: no call on the hot paths (card →
//!   relay, uplink drain, status page, `/metrics`) scans the tree, and
//!   reads start at `oldest` (sled 0.34 does not merge the empty leaves
//!   that deleted events leave behind; a read from sequence 1 would walk
//!   them all);
//! - [`JournalWriter::append`] returns only after the batch is flushed to
//!   disk (group commit: one flush per batch, not per event);
//! - a crash leaves a prefix of what was appended, never a gap;
//! - deletions on acknowledgement are not flushed by themselves (the next
//!   append or sled's periodic flush makes them durable): a crash may bring
//!   acknowledged events back, and they are sent again — central stores by
//!   `(gateway, seq)`, duplicates are allowed, gaps are not;
//! - the journal holds at most its budget of events (default 10 M): when
//!   it is full, routine events (grants, exits, door closed, mode changes,
//!   PD online, start-ups, rules applied) are dropped and counted, and one
//!   `journal_full` alarm is recorded per episode and every 10 000 drops;
//!   alarms and security events (denials, forced and held doors, tamper,
//!   offline PDs, Secure Channel alarms, refused commands and rules,
//!   remote actions, presence, clock alarms) are always kept.

pub use crate::event::{Event, EventKind, reason_in_words};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

/// Journal failures.
#[derive(Debug, Error)]
pub enum JournalError {
    /// sled failed (disk full, I/O error, corruption).
    #[error("event store: {0}")]
    Store(#[from] sled::Error),
    /// A stored event could not be decoded.
    #[error("event {seq}: undecodable record: {source}")]
    Corrupt {
        /// Sequence number of the record.
        seq: u64,
        /// Decoder error.
        source: serde_cbor::Error,
    },
    /// An event could not be encoded (a bug, not bad input).
    #[error("encoding an event: {0}")]
    Encode(serde_cbor::Error),
}

const EVENTS_TREE: &str = "journal.events";
const META_TREE: &str = "journal.meta";
const NEXT_SEQ: &[u8] = b"next_seq";
const OLDEST: &[u8] = b"oldest";
const DROPPED: &[u8] = b"dropped";

/// Default budget: 10 M events (about 2.4 GB of sled on disk, measured:
/// BENCHMARKS.md, "The journal at scale").
pub const DEFAULT_MAX_EVENTS: u64 = 10_000_000;

/// How often, in dropped events, a full journal records another alarm.
const FULL_ALARM_EVERY: u64 = 10_000;

/// Deletions per transaction: an acknowledgement after a long outage can
/// cover a whole window; each chunk is consistent on its own.
const DELETE_CHUNK: u64 = 10_000;

/// The journal of one sled database, opened once: hand the writer to the
/// daemon and the reader and acker to the uplink (clone the reader for the
/// status page and the events API).
#[derive(Debug)]
pub struct Journal {
    /// Appends (the daemon).
    pub writer: JournalWriter,
    /// Reads (anyone).
    pub reader: JournalReader,
    /// Deletes what central acknowledged (the uplink).
    pub acker: JournalAcker,
}

/// The bounds of the kept events and the dropped counter, as committed.
#[derive(Debug)]
struct Bounds {
    /// The sequence number the next event gets.
    next_seq: AtomicU64,
    /// The oldest kept sequence number (`== next_seq` when empty).
    oldest: AtomicU64,
    /// Routine events dropped because the journal was full.
    dropped: AtomicU64,
}

impl Journal {
    /// Open (or create) the journal in `db`. Call it once per database:
    /// the writer it returns is the only one.
    pub fn open(db: &sled::Db) -> Result<Self, JournalError> {
        let events = db.open_tree(EVENTS_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        // A journal written before `oldest` was kept: derive the bounds
        // from the tree once and store them.
        let next_seq = match read_u64(&meta, NEXT_SEQ)? {
            Some(n) => n,
            None => events.last()?.map_or(1, |(k, _)| key_seq(&k) + 1),
        };
        let oldest = match read_u64(&meta, OLDEST)? {
            Some(o) => o,
            None => {
                let o = events.first()?.map_or(next_seq, |(k, _)| key_seq(&k));
                meta.insert(OLDEST, &o.to_be_bytes()[..])?;
                o
            }
        };
        let dropped = read_u64(&meta, DROPPED)?.unwrap_or(0);
        let bounds = Arc::new(Bounds {
            next_seq: AtomicU64::new(next_seq),
            oldest: AtomicU64::new(oldest.min(next_seq)),
            dropped: AtomicU64::new(dropped),
        });
        let reader = JournalReader {
            events: events.clone(),
            bounds: bounds.clone(),
        };
        Ok(Self {
            writer: JournalWriter {
                db: db.clone(),
                events: events.clone(),
                meta: meta.clone(),
                bounds: bounds.clone(),
                max_events: DEFAULT_MAX_EVENTS,
                full: false,
            },
            acker: JournalAcker {
                events,
                meta,
                bounds,
            },
            reader,
        })
    }
}

/// Appends events. Not `Clone`: one writer per journal.
#[derive(Debug)]
pub struct JournalWriter {
    db: sled::Db,
    events: sled::Tree,
    meta: sled::Tree,
    bounds: Arc<Bounds>,
    max_events: u64,
    /// Whether the journal was full at the last append (an episode).
    full: bool,
}

impl JournalWriter {
    /// Hold at most `max_events` (see the module docs for what is dropped).
    pub fn with_budget(mut self, max_events: u64) -> Self {
        self.max_events = max_events.max(1);
        self
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.bounds.next_seq.load(Ordering::Acquire)
    }

    /// Apply the budget: with no room, keep what must be kept, count the
    /// rest, and add the `journal_full` alarm when an episode starts or
    /// every [`FULL_ALARM_EVERY`] drops. Returns the kinds to append and
    /// the new dropped total, if it moved.
    fn budget(&mut self, mut kinds: Vec<EventKind>) -> (Vec<EventKind>, Option<u64>) {
        let kept = self.next_seq() - self.bounds.oldest.load(Ordering::Acquire);
        let room = self.max_events.saturating_sub(kept);
        if kinds.len() as u64 <= room {
            self.full = false;
            return (kinds, None);
        }
        let before = kinds.len();
        let mut kept_routine = room;
        kinds.retain(|k| {
            if k.must_keep() {
                true
            } else if kept_routine > 0 {
                kept_routine -= 1;
                true
            } else {
                false
            }
        });
        let dropped_now = (before - kinds.len()) as u64;
        if dropped_now == 0 {
            return (kinds, None);
        }
        let was = self.bounds.dropped.load(Ordering::Acquire);
        let total = was.saturating_add(dropped_now);
        if !self.full || was / FULL_ALARM_EVERY != total / FULL_ALARM_EVERY {
            kinds.push(EventKind::JournalFull { dropped: total });
        }
        self.full = true;
        (kinds, Some(total))
    }

    /// Append events, numbered in order, and flush before returning them.
    /// The cost does not grow with the number of events kept.
    pub fn append(
        &mut self,
        at: Timestamp,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<Event>, JournalError> {
        let (kinds, dropped) = self.budget(kinds);
        if kinds.is_empty() {
            if let Some(total) = dropped {
                self.meta.insert(DROPPED, &total.to_be_bytes()[..])?;
                self.bounds.dropped.store(total, Ordering::Release);
            }
            return Ok(Vec::new());
        }
        let first = self.next_seq();
        let events: Vec<Event> = kinds
            .into_iter()
            .zip(first..)
            .map(|(kind, seq)| Event { seq, at, kind })
            .collect();
        let encoded = events
            .iter()
            .map(|e| serde_cbor::to_vec(e).map(|bytes| (e.seq.to_be_bytes(), bytes)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(JournalError::Encode)?;
        let next = first + events.len() as u64;
        (&self.events, &self.meta)
            .transaction(|(events, meta)| {
                for (key, value) in &encoded {
                    events.insert(&key[..], value.as_slice())?;
                }
                meta.insert(NEXT_SEQ, &next.to_be_bytes()[..])?;
                if let Some(total) = dropped {
                    meta.insert(DROPPED, &total.to_be_bytes()[..])?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(store_error)?;
        self.db.flush()?;
        self.bounds.next_seq.store(next, Ordering::Release);
        if let Some(total) = dropped {
            self.bounds.dropped.store(total, Ordering::Release);
        }
        Ok(events)
    }
}

/// One stored record, not yet decoded: the uplink sends its bytes as they
/// are (they are the CBOR of an [`Event`]) after checking they decode.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// The CBOR of the event, as stored.
    pub bytes: sled::IVec,
}

impl Record {
    /// The event.
    pub fn decode(&self) -> Result<Event, JournalError> {
        serde_cbor::from_slice(&self.bytes).map_err(|source| JournalError::Corrupt {
            seq: self.seq,
            source,
        })
    }
}

/// Reads the journal. Cheap to clone; every call is O(1) or
/// O(log n + returned), never a scan of what is kept.
#[derive(Debug, Clone)]
pub struct JournalReader {
    events: sled::Tree,
    bounds: Arc<Bounds>,
}

impl JournalReader {
    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.bounds.next_seq.load(Ordering::Acquire)
    }

    /// The oldest kept sequence number, if any event is kept.
    pub fn oldest(&self) -> Option<u64> {
        let oldest = self.bounds.oldest.load(Ordering::Acquire);
        (oldest < self.next_seq()).then_some(oldest)
    }

    /// Everything up to this sequence number was acknowledged centrally
    /// (or never existed): the oldest kept minus one.
    pub fn acked(&self) -> u64 {
        self.bounds
            .oldest
            .load(Ordering::Acquire)
            .min(self.next_seq())
            .saturating_sub(1)
    }

    /// Number of events kept.
    pub fn len(&self) -> u64 {
        let next = self.next_seq();
        next.saturating_sub(self.bounds.oldest.load(Ordering::Acquire))
    }

    /// Whether no events are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Routine events dropped so far because the journal was full.
    pub fn dropped(&self) -> u64 {
        self.bounds.dropped.load(Ordering::Acquire)
    }

    /// The oldest kept event (the backlog's age), if any.
    pub fn oldest_event(&self) -> Result<Option<Event>, JournalError> {
        self.records(0, 1)?.first().map(Record::decode).transpose()
    }

    /// Up to `limit` stored records with a sequence number above `after`,
    /// in order, undecoded.
    pub fn records(&self, after: u64, limit: usize) -> Result<Vec<Record>, JournalError> {
        let from = after
            .saturating_add(1)
            .max(self.bounds.oldest.load(Ordering::Acquire));
        self.events
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (key, bytes) = item?;
                Ok(Record {
                    seq: key_seq(&key),
                    bytes,
                })
            })
            .collect()
    }

    /// Up to `limit` events with a sequence number above `after`, in order.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Event>, JournalError> {
        self.records(after, limit)?
            .iter()
            .map(Record::decode)
            .collect()
    }
}

/// Deletes what central acknowledged. Not `Clone`: the uplink owns it.
#[derive(Debug)]
pub struct JournalAcker {
    events: sled::Tree,
    meta: sled::Tree,
    bounds: Arc<Bounds>,
}

impl JournalAcker {
    /// Delete every event up to and including `seq` (acknowledged
    /// centrally), clamped to what was appended: sequence numbers are not
    /// reused afterwards, and an acknowledgement beyond the last event
    /// deletes nothing that does not exist yet. Returns how many events
    /// were deleted. Keys are computed from the bounds, not scanned.
    pub fn delete_through(&mut self, seq: u64) -> Result<u64, JournalError> {
        let next = self.bounds.next_seq.load(Ordering::Acquire);
        let through = seq.min(next.saturating_sub(1));
        let mut oldest = self.bounds.oldest.load(Ordering::Acquire);
        let start = oldest;
        while oldest <= through {
            let end = through.min(oldest.saturating_add(DELETE_CHUNK - 1));
            let after = end + 1;
            (&self.events, &self.meta)
                .transaction(|(events, meta)| {
                    for s in oldest..=end {
                        events.remove(&s.to_be_bytes()[..])?;
                    }
                    meta.insert(OLDEST, &after.to_be_bytes()[..])?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(store_error)?;
            self.bounds.oldest.store(after, Ordering::Release);
            oldest = after;
        }
        Ok(oldest - start)
    }
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>, JournalError> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

/// Event keys are the big-endian sequence number (sorted like numbers).
fn key_seq(key: &[u8]) -> u64 {
    <[u8; 8]>::try_from(key).map_or(0, u64::from_be_bytes)
}

fn store_error(e: TransactionError<()>) -> JournalError {
    match e {
        TransactionError::Storage(err) => JournalError::Store(err),
        TransactionError::Abort(()) => JournalError::Store(sled::Error::Unsupported(
            "journal transaction aborted".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::open_db(dir.path(), 8 << 20).unwrap();
        (dir, db)
    }

    fn at() -> Timestamp {
        "2026-11-23T18:30:00Z".parse().unwrap()
    }

    fn granted(door: &str) -> EventKind {
        EventKind::AccessGranted {
            door: door.into(),
            reader: "side-entrance-in".into(),
            credential: "h10301:42:1001".into(),
        }
    }

    #[test]
    fn appends_in_order_and_reads_back() {
        let (_dir, db) = db();
        let Journal {
            mut writer, reader, ..
        } = Journal::open(&db).unwrap();
        let a = writer
            .append(at(), vec![granted("a"), granted("b")])
            .unwrap();
        let b = writer
            .append(at(), vec![EventKind::DoorForced { door: "c".into() }])
            .unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b[0].seq, 3);
        let all = reader.after(0, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].kind, EventKind::DoorForced { door: "c".into() });
        assert_eq!(reader.after(1, 1).unwrap()[0].seq, 2);
        assert_eq!((reader.len(), reader.oldest()), (3, Some(1)));
    }

    #[test]
    fn sequence_numbers_are_never_reused_after_deletion_and_restart() {
        let (dir, db) = db();
        let Journal {
            mut writer,
            reader,
            mut acker,
        } = Journal::open(&db).unwrap();
        writer
            .append(at(), vec![granted("a"), granted("b"), granted("c")])
            .unwrap();
        assert_eq!(acker.delete_through(3).unwrap(), 3);
        assert!(reader.is_empty());
        assert_eq!((reader.acked(), reader.oldest()), (3, None));
        drop((writer, reader, acker));
        drop(db);
        let db = crate::storage::open_db(dir.path(), 8 << 20).unwrap();
        let mut journal = Journal::open(&db).unwrap();
        assert_eq!(journal.reader.acked(), 3);
        let next = journal.writer.append(at(), vec![granted("d")]).unwrap();
        assert_eq!(next[0].seq, 4);
    }

    #[test]
    fn the_count_follows_appends_and_acks_and_survives_a_reopen() {
        let (dir, db) = db();
        let mut j = Journal::open(&db).unwrap();
        for _ in 0..5 {
            j.writer
                .append(at(), (0..10).map(|i| granted(&i.to_string())).collect())
                .unwrap();
        }
        assert_eq!(j.reader.len(), 50);
        assert_eq!(j.acker.delete_through(12).unwrap(), 12);
        assert_eq!(j.acker.delete_through(12).unwrap(), 0, "twice is once");
        assert_eq!(j.acker.delete_through(5).unwrap(), 0, "acks never go back");
        assert_eq!((j.reader.len(), j.reader.oldest()), (38, Some(13)));
        assert_eq!(j.reader.oldest_event().unwrap().unwrap().seq, 13);
        // Beyond the last event: clamped, the next events are kept.
        assert_eq!(j.acker.delete_through(u64::MAX).unwrap(), 38);
        assert!(j.reader.is_empty());
        j.writer.append(at(), vec![granted("x")]).unwrap();
        assert_eq!((j.reader.len(), j.reader.oldest()), (1, Some(51)));
        drop(j);
        drop(db);
        let db = crate::storage::open_db(dir.path(), 8 << 20).unwrap();
        let j = Journal::open(&db).unwrap();
        assert_eq!((j.reader.len(), j.reader.oldest()), (1, Some(51)));
        assert_eq!(j.writer.next_seq(), 52);
    }

    #[test]
    fn a_journal_without_stored_bounds_gets_them_from_its_tree() {
        let (_dir, db) = db();
        let events = db.open_tree(EVENTS_TREE).unwrap();
        for seq in 7u64..=9 {
            let e = Event {
                seq,
                at: at(),
                kind: granted("a"),
            };
            events
                .insert(seq.to_be_bytes(), serde_cbor::to_vec(&e).unwrap())
                .unwrap();
        }
        let j = Journal::open(&db).unwrap();
        assert_eq!((j.reader.len(), j.reader.oldest()), (3, Some(7)));
        assert_eq!(j.writer.next_seq(), 10);
    }

    #[test]
    fn an_undecodable_record_is_reported_with_its_seq() {
        let (_dir, db) = db();
        let mut j = Journal::open(&db).unwrap();
        j.writer
            .append(at(), vec![granted("a"), granted("b")])
            .unwrap();
        db.open_tree(EVENTS_TREE)
            .unwrap()
            .insert(1u64.to_be_bytes(), &b"\xff\x00"[..])
            .unwrap();
        let records = j.reader.records(0, 10).unwrap();
        assert_eq!(records.len(), 2);
        assert!(matches!(
            records[0].decode(),
            Err(JournalError::Corrupt { seq: 1, .. })
        ));
        assert_eq!(records[1].decode().unwrap().seq, 2);
    }

    #[test]
    fn a_full_journal_keeps_alarms_and_counts_what_it_drops() {
        let (_dir, db) = db();
        let Journal {
            writer,
            reader,
            mut acker,
        } = Journal::open(&db).unwrap();
        let mut journal = writer.with_budget(5);
        journal
            .append(at(), (0..4).map(|i| granted(&i.to_string())).collect())
            .unwrap();
        let forced = EventKind::DoorForced {
            door: "side".into(),
        };
        let kept = journal
            .append(at(), vec![granted("x"), granted("y"), forced.clone()])
            .unwrap();
        let kinds: Vec<EventKind> = kept.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                granted("x"),
                forced.clone(),
                EventKind::JournalFull { dropped: 1 }
            ]
        );
        // Still full: more drops, no second alarm for the same episode.
        let kept = journal
            .append(at(), vec![granted("z"), forced.clone()])
            .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(reader.dropped(), 2);
        // Central acknowledged everything: room again, nothing dropped.
        acker.delete_through(u64::MAX - 1).unwrap();
        assert_eq!(journal.append(at(), vec![granted("w")]).unwrap().len(), 1);
    }
}

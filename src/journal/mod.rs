//! The event journal: every happening at the gateway, with a per-gateway
//! sequence number that is never reused, appended durably to sled before
//! the action counts as done. The only code that writes events to sled.
//!
//! Guarantees:
//! - sequence numbers are strictly increasing and never reused, also after
//!   events are deleted (acknowledged centrally) and across restarts: the
//!   high-water mark is stored in the same transaction as the events;
//! - [`Journal::append`] returns only after the batch is flushed to disk
//!   (group commit: one flush per batch, not per event);
//! - a crash leaves a prefix of what was appended, never a gap;
//! - the journal holds at most its budget of events (default 10 M): when
//!   it is full, routine events (grants, exits, door closed, mode changes,
//!   PD online, start-ups, rules applied) are dropped and counted, and one
//!   `journal_full` alarm is recorded per episode and every 10 000 drops;
//!   alarms and security events (denials, forced and held doors, tamper,
//!   offline PDs, Secure Channel alarms, refused commands and rules,
//!   remote actions, presence, clock alarms) are always kept.

pub use crate::event::{Event, EventKind, reason_in_words};

use jiff::Timestamp;
use sled::Transactional;
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
const DROPPED: &[u8] = b"dropped";

/// Default budget: 10 M events (about 2–3 GB of sled on disk).
pub const DEFAULT_MAX_EVENTS: u64 = 10_000_000;

/// How often, in dropped events, a full journal records another alarm.
const FULL_ALARM_EVERY: u64 = 10_000;

/// The durable, ordered event log of this gateway. One writer: appending
/// takes `&mut self`, so sequence numbers cannot race.
#[derive(Debug)]
pub struct Journal {
    db: sled::Db,
    events: sled::Tree,
    meta: sled::Tree,
    max_events: u64,
    /// Whether the journal was full at the last append (an episode).
    full: bool,
}

impl Journal {
    /// Open (or create) the journal in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, JournalError> {
        Ok(Self {
            db: db.clone(),
            events: db.open_tree(EVENTS_TREE)?,
            meta: db.open_tree(META_TREE)?,
            max_events: DEFAULT_MAX_EVENTS,
            full: false,
        })
    }

    /// Hold at most `max_events` (see the module docs for what is dropped).
    pub fn with_budget(mut self, max_events: u64) -> Self {
        self.max_events = max_events.max(1);
        self
    }

    /// Routine events dropped so far because the journal was full.
    pub fn dropped(&self) -> Result<u64, JournalError> {
        Ok(self
            .meta
            .get(DROPPED)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Apply the budget: with no room, keep what must be kept, count the
    /// rest, and add the `journal_full` alarm when an episode starts or
    /// every [`FULL_ALARM_EVERY`] drops.
    fn budget(&mut self, mut kinds: Vec<EventKind>) -> Result<Vec<EventKind>, JournalError> {
        let room = self.max_events.saturating_sub(self.events.len() as u64);
        if kinds.len() as u64 <= room {
            self.full = false;
            return Ok(kinds);
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
            return Ok(kinds);
        }
        let was = self.dropped()?;
        let total = was + dropped_now;
        self.meta.insert(DROPPED, &total.to_be_bytes()[..])?;
        if !self.full || was / FULL_ALARM_EVERY != total / FULL_ALARM_EVERY {
            kinds.push(EventKind::JournalFull { dropped: total });
        }
        self.full = true;
        Ok(kinds)
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> Result<u64, JournalError> {
        let stored = self
            .meta
            .get(NEXT_SEQ)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        // Belt and braces: never below the last stored event + 1.
        let after_last = self
            .events
            .last()?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map_or(1, |k| u64::from_be_bytes(k) + 1);
        Ok(stored.max(after_last))
    }

    /// Append events, numbered in order, and flush before returning them.
    pub fn append(
        &mut self,
        at: Timestamp,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<Event>, JournalError> {
        let kinds = self.budget(kinds)?;
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.next_seq()?;
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
        let next = (first + events.len() as u64).to_be_bytes();
        (&self.events, &self.meta)
            .transaction(|(events, meta)| {
                for (key, value) in &encoded {
                    events.insert(&key[..], value.as_slice())?;
                }
                meta.insert(NEXT_SEQ, &next[..])?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(err) => JournalError::Store(err),
                sled::transaction::TransactionError::Abort(()) => JournalError::Store(
                    sled::Error::Unsupported("journal transaction aborted".into()),
                ),
            })?;
        self.db.flush()?;
        Ok(events)
    }

    /// Up to `limit` events with a sequence number above `after`, in order.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Event>, JournalError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.events
            .range(start..)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                let seq = <[u8; 8]>::try_from(key.as_ref()).map_or(0, u64::from_be_bytes);
                serde_cbor::from_slice(&value)
                    .map_err(|source| JournalError::Corrupt { seq, source })
            })
            .collect()
    }

    /// Delete every event up to and including `seq` (acknowledged centrally).
    /// Sequence numbers are not reused afterwards.
    pub fn delete_through(&mut self, seq: u64) -> Result<usize, JournalError> {
        let mut batch = sled::Batch::default();
        let mut count = 0;
        for item in self.events.range(..=seq.to_be_bytes()) {
            let (key, _) = item?;
            batch.remove(key);
            count += 1;
        }
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        Ok(count)
    }

    /// Number of events kept.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no events are kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
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
        let mut journal = Journal::open(&db).unwrap();
        let a = journal
            .append(at(), vec![granted("a"), granted("b")])
            .unwrap();
        let b = journal
            .append(at(), vec![EventKind::DoorForced { door: "c".into() }])
            .unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b[0].seq, 3);
        let all = journal.after(0, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].kind, EventKind::DoorForced { door: "c".into() });
        assert_eq!(journal.after(1, 1).unwrap()[0].seq, 2);
    }

    #[test]
    fn sequence_numbers_are_never_reused_after_deletion_and_restart() {
        let (dir, db) = db();
        let mut journal = Journal::open(&db).unwrap();
        journal
            .append(at(), vec![granted("a"), granted("b"), granted("c")])
            .unwrap();
        assert_eq!(journal.delete_through(3).unwrap(), 3);
        assert!(journal.is_empty());
        drop(journal);
        drop(db);
        let db = crate::storage::open_db(dir.path(), 8 << 20).unwrap();
        let mut journal = Journal::open(&db).unwrap();
        let next = journal.append(at(), vec![granted("d")]).unwrap();
        assert_eq!(next[0].seq, 4);
    }

    #[test]
    fn a_full_journal_keeps_alarms_and_counts_what_it_drops() {
        let (_dir, db) = db();
        let mut journal = Journal::open(&db).unwrap().with_budget(5);
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
        assert_eq!(journal.dropped().unwrap(), 2);
        // Central acknowledged everything: room again, nothing dropped.
        journal.delete_through(u64::MAX - 1).unwrap();
        assert_eq!(journal.append(at(), vec![granted("w")]).unwrap().len(), 1);
    }
}

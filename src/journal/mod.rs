//! The event journal: every happening at the gateway, with a per-gateway
//! sequence number that is never reused, made durable before the action
//! counts as done. The only code that writes events.
//!
//! Storage: a directory of append-only segment files ([`segment`]) of
//! checksummed frames ([`frame`]), one frame per commit, flushed with one
//! `fdatasync`. A commit may carry an opaque *state* (the site's standing
//! state: lockdown, overrides, presence), so that the state and the events
//! that explain it are on disk together or not at all. Every segment opens
//! with the latest state and the dropped counter, so opening reads only
//! the newest segment: the cost of starting does not grow with the
//! backlog. Segments are deleted whole once central acknowledged them.
//! (Earlier versions kept the journal in two sled trees: [`legacy`] moves such a
//! journal over, events, state and counters, once.)
//!
//! Opening it yields three roles, so "one writer" is a type, not a habit:
//! [`JournalWriter`] (the daemon; not `Clone`, appending takes `&mut self`,
//! so sequence numbers cannot race), [`JournalReader`] (`Clone`: the uplink,
//! the status page, `/metrics`, the events API) and [`JournalAcker`] (the
//! uplink; forgets what central acknowledged). A lock file keeps a second
//! process out of the directory.
//!
//! Guarantees:
//! - sequence numbers are strictly increasing and never reused, also after
//!   segments are deleted and across restarts (each frame names its first
//!   sequence number; a segment's file name names its first);
//! - the kept events are exactly `oldest..next_seq`; the count, the bounds
//!   and the dropped counter are in memory as atomics: no call on the hot
//!   paths (card → relay, uplink drain, status page, `/metrics`) scans;
//!   finding a sequence number is a binary search over segments and over a
//!   sparse index of each, then a read of about 64 KiB;
//! - [`JournalWriter::commit`] returns only after its frame is on disk;
//! - a crash leaves a prefix of the commits, never a gap: a torn last
//!   frame fails its checksum and is cut off at the next open; a new
//!   segment appears (by rename) only with its first frame on disk;
//! - numbers never go back at open, whatever the disk says: not below any
//!   segment's name nor below what central acknowledged; a damaged commit
//!   after the last readable state stops the open ([`JournalError::StateUnreadable`])
//!   rather than start from an older state;
//! - acknowledgements are written without a flush: a crash may bring
//!   acknowledged events back, and they are sent again — central stores by
//!   `(gateway, seq)`, duplicates are allowed, gaps are not;
//! - bytes that fail their checksum inside a committed segment (disk
//!   damage) are reported per sequence number by [`Record::decode`], so the
//!   uplink sends a stand-in instead of stopping or leaving a gap;
//! - the journal holds at most its budget of events (default 10 M): when
//!   it is full, routine events (grants, exits, door closed, mode changes,
//!   PD online, start-ups, rules applied) are dropped and counted, and one
//!   `journal_full` alarm is recorded per episode and every 10 000 drops;
//!   alarms and security events (denials, forced and held doors, tamper,
//!   offline PDs, Secure Channel alarms, refused commands and rules,
//!   remote actions, presence, clock alarms) are always kept.

mod frame;
pub mod fuzz;
mod id;
pub mod legacy;
mod segment;

use crate::event::{Event, EventKind};
pub use id::{BadJournalId, JournalId};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use thiserror::Error;

use segment::Segment;

/// Journal failures.
#[derive(Debug, Error)]
pub enum JournalError {
    /// The file system failed (disk full, I/O error).
    #[error("event journal in {dir}: {source}")]
    Io {
        /// The journal directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process holds the journal.
    #[error(
        "event journal in {0}: locked by another process (is another portier running on this state directory?)"
    )]
    Locked(PathBuf),
    /// A stored event cannot be read.
    #[error("event {seq}: unreadable record: {reason}")]
    Corrupt {
        /// Sequence number of the record.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// An event could not be encoded (a bug, not bad input).
    #[error("encoding an event: {0}")]
    Encode(serde_cbor::Error),
    /// The newest commits are damaged on disk and one of them may have
    /// carried the standing state: starting from an older state (or none)
    /// could lift a lockdown, so the journal does not open.
    #[error(
        "event journal in {0}: the standing state (lockdown, overrides, presence) cannot be read: \
         the newest commits in {1} are damaged. Move the journal directory aside to start without \
         it (lockdown and overrides are then forgotten; the events waiting stay in the moved \
         directory: `portier journal drain --config FILE DIR` delivers them to central)"
    )]
    StateUnreadable(PathBuf, PathBuf),
    /// The journal's `id` file exists but cannot be read: a new id would
    /// make central take the kept events for another journal's (and never
    /// acknowledge them past the gap below them), so the journal does
    /// not open.
    #[error(
        "event journal in {dir}: its id file cannot be read ({source}); restore it (32 hex \
         digits: `portier central status --json` shows the gateway's journal) or move the \
         journal directory aside and deliver it with `portier journal drain`"
    )]
    IdUnreadable {
        /// The journal directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// `portier journal drain` was pointed at a directory without journal
    /// segments.
    #[error("{0}: no event journal here (no segment files)")]
    NotAJournal(PathBuf),
    /// A sled journal of an earlier version could not be moved over.
    #[error("moving the sled journal of an earlier version over: {0}")]
    Legacy(#[from] sled::Error),
}

/// Default budget: 10 M events (about 1.2 GB on disk, measured:
/// BENCHMARKS.md, "The journal at scale").
pub const DEFAULT_MAX_EVENTS: u64 = 10_000_000;

/// Default segment size: small enough that deleting acknowledged events
/// frees disk soon and that opening reads little, large enough that a 10 M
/// backlog is a hundred files, not thousands.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;

/// Largest encoded event the journal writes (CBOR bytes). Every text from
/// outside is capped before ([`EventKind::bounded`]), so no event comes
/// near it; one that does anyway is replaced by an `event_oversized`
/// stand-in rather than written, so that no single event can fill a
/// frame, a batch or central's row.
pub const MAX_EVENT_BYTES: usize = 4096;

/// Most bytes of records one read returns (the record that reaches it
/// included): events are capped at [`MAX_EVENT_BYTES`] now, but a journal
/// written by an earlier version may hold larger ones, and no read may
/// hold them all in memory at once.
const READ_BYTES: usize = 4 << 20;

/// How often, in dropped events, a full journal records another alarm.
const FULL_ALARM_EVERY: u64 = 10_000;

const LOCK_FILE: &str = "LOCK";
/// The acknowledged sequence number: `u64le` and its CRC-32.
const ACKED_FILE: &str = "acked";

/// The journal in one directory, opened once: hand the writer to the
/// daemon and the reader and acker to the uplink (clone the reader for the
/// status page and the events API).
#[derive(Debug)]
pub struct Journal {
    /// Appends (the daemon).
    pub writer: JournalWriter,
    /// Reads (anyone).
    pub reader: JournalReader,
    /// Forgets what central acknowledged (the uplink).
    pub acker: JournalAcker,
    /// The state last committed whole (see [`JournalWriter::commit`]),
    /// if any.
    pub state: Option<Vec<u8>>,
    /// The changes committed after it, in order, for its owner to apply
    /// ([`JournalWriter::commit_state`]).
    pub state_changes: Vec<Vec<u8>>,
}

/// What a commit writes of the standing state: the whole of it, or one
/// change to it (applied by its owner after the whole and the changes
/// before it). The journal does not read either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// The whole state; the changes before it are forgotten.
    Whole(Vec<u8>),
    /// A change on top of the state and the changes so far.
    Change(Vec<u8>),
}

/// What the roles share: the bounds and the segment table.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// The journal's identity ([`JournalId`]).
    id: JournalId,
    /// The sequence number the next event gets.
    next_seq: AtomicU64,
    /// The oldest kept sequence number (`== next_seq` when empty).
    oldest: AtomicU64,
    /// Routine events dropped because the journal was full.
    dropped: AtomicU64,
    /// The segments, oldest first; the last one is written.
    segments: RwLock<Vec<Arc<Segment>>>,
    /// Held for the journal's life: the directory's lock.
    _lock: File,
}

impl Shared {
    fn io(&self, source: std::io::Error) -> JournalError {
        JournalError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What opening found in the newest segment.
struct Tail {
    next_seq: u64,
    dropped: u64,
    state: Option<Vec<u8>>,
    changes: Vec<Vec<u8>>,
    end: u64,
}

impl Journal {
    /// Open (or create) the journal in `dir`. Reads the newest segment
    /// only; cuts off a torn last frame. A new journal gets a random
    /// [`JournalId`], written before its first segment.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        Self::open_with(dir, false)
    }

    /// Open a journal that was moved aside, to deliver what it holds
    /// (`portier journal drain`): it must exist (nothing is created), and
    /// a standing state that cannot be read does not stop it (the drain
    /// sends events and never reads the state; [`Journal::state`] is then
    /// `None`). Events in damaged commits come back damaged from the
    /// reader, as always.
    pub fn open_to_drain(dir: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        if !dir.is_dir() || segment::list(dir).map_err(io)?.is_empty() {
            return Err(JournalError::NotAJournal(dir.to_path_buf()));
        }
        Self::open_with(dir, true)
    }

    /// This journal's identity.
    pub fn id(&self) -> JournalId {
        self.reader.id()
    }

    fn open_with(dir: &Path, drain: bool) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // A roll-over (or an id) interrupted before its rename: never
        // committed.
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(&path).map_err(io)?;
            }
        }
        let mut found = segment::list(dir).map_err(io)?;
        let id = match id::read(dir) {
            Ok(Some(id)) => id,
            // Written by an earlier version: central has its events under
            // the nil id.
            Ok(None) if !found.is_empty() => JournalId::NIL,
            // A new journal: its id is on disk before its first segment,
            // so a journal with segments and no id is always an old one.
            Ok(None) => {
                let id = JournalId::random();
                id::write(dir, id).map_err(io)?;
                id
            }
            Err(source) => {
                return Err(JournalError::IdUnreadable {
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        };
        let tail = loop {
            let Some((first, path)) = found.last() else {
                break None;
            };
            match read_tail(*first, path).map_err(io)? {
                TailRead::Tail(t) => break Some(t),
                // A drain sends events and never reads the state.
                TailRead::StateUnknown(Some(t)) if drain => break Some(t),
                TailRead::StateUnknown(None) if drain => {
                    tracing::warn!(path = %path.display(), "journal drain: a segment without a whole head is left out");
                    found.pop();
                }
                // A segment is renamed into place only after its first
                // frame is on disk: none whole here is damage, and the
                // state it carried is not known.
                TailRead::StateUnknown(_) => {
                    return Err(JournalError::StateUnreadable(
                        dir.to_path_buf(),
                        path.clone(),
                    ));
                }
            }
        };
        // A drain never reads the state (it may be what was damaged).
        let tail = tail.map(|mut t| {
            if drain {
                t.state = None;
                t.changes.clear();
            }
            t
        });
        let (tail_next, dropped, state, state_changes, tail_end) = match tail {
            Some(t) => (t.next_seq, t.dropped, t.state, t.changes, t.end),
            None => (1, 0, None, Vec::new(), 0),
        };
        let acked = read_acked(dir).unwrap_or(0);
        // Numbers never go back: not below the newest segment's name (the
        // tail starts there), nor below what central acknowledged,
        // whatever a damaged tail says.
        let next_seq = tail_next.max(acked.saturating_add(1));
        let first_kept = found.first().map_or(next_seq, |(first, _)| *first);
        let oldest = acked.saturating_add(1).max(first_kept).min(next_seq);
        let count = found.len();
        let mut segments = Vec::with_capacity(count);
        for (i, (first, path)) in found.into_iter().enumerate() {
            let end = if i + 1 == count {
                tail_end
            } else {
                std::fs::metadata(&path).map_err(io)?.len()
            };
            segments.push(Arc::new(Segment::open(first, path, end).map_err(io)?));
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            id,
            next_seq: AtomicU64::new(next_seq),
            oldest: AtomicU64::new(oldest),
            dropped: AtomicU64::new(dropped),
            segments: RwLock::new(segments),
            _lock: lock,
        });
        let active = match shared.segments().last() {
            Some(seg) => Some(Active {
                salt: seg.salt(),
                file: OpenOptions::new().write(true).open(&seg.path).map_err(io)?,
                segment: seg.clone(),
                end: seg.end(),
            }),
            None => None,
        };
        let mut acker = JournalAcker {
            shared: shared.clone(),
        };
        // Segments acknowledged before a crash that could not be deleted.
        acker.forget_acknowledged_segments();
        Ok(Self {
            writer: JournalWriter {
                shared: shared.clone(),
                active,
                state: state.clone(),
                state_change_bytes: state_changes.iter().map(Vec::len).sum(),
                state_changes: state_changes.clone(),
                max_events: DEFAULT_MAX_EVENTS,
                segment_bytes: DEFAULT_SEGMENT_BYTES,
                full: false,
                buf: Vec::new(),
            },
            reader: JournalReader {
                shared: shared.clone(),
            },
            acker,
            state,
            state_changes,
        })
    }
}

/// What opening found in the newest segment.
enum TailRead {
    /// Its bounds, counter and state (a torn last frame cut off).
    Tail(Tail),
    /// A damaged commit after the last readable state: the state is not
    /// known. The bounds as far as they could be read, unless not even the
    /// segment's head is whole.
    StateUnknown(Option<Tail>),
}

/// Read the whole newest segment: its last number, dropped counter and
/// state; cut a torn last frame off. Every segment's first frame carries
/// the state, so the state is known unless a damaged commit comes after
/// the last one that could be read.
fn read_tail(first: u64, path: &Path) -> std::io::Result<TailRead> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len < segment::HEAD {
        return Ok(TailRead::StateUnknown(None));
    }
    let salt = segment::read_head(&file, path)?;
    let mut tail = Tail {
        next_seq: first,
        dropped: 0,
        state: None,
        changes: Vec::new(),
        end: segment::HEAD,
    };
    let mut state_known = false;
    let stop = segment::scan(
        &file,
        &salt,
        tail.end,
        len,
        |offset, flen, frame, stepped_over| {
            if let Some(d) = stepped_over {
                tracing::error!(
                    path = %path.display(),
                    offset = d.offset,
                    reason = d.reason,
                    "journal: a damaged commit inside the newest segment; its events are reported as unreadable"
                );
                state_known = false;
            }
            // Never backwards, whatever a damaged file says: numbers are not reused.
            tail.next_seq = tail.next_seq.max(frame.next_seq());
            tail.end = offset + flen;
            if let Some(d) = frame.dropped {
                tail.dropped = d;
            }
            if let Some(s) = frame.state {
                tail.state = (!s.is_empty()).then(|| s.to_vec());
                tail.changes.clear();
                state_known = true;
            }
            tail.changes.extend(frame.changes().map(<[u8]>::to_vec));
            true
        },
    )?;
    match stop {
        segment::Scan::Bad {
            offset,
            reason,
            torn: true,
        } => {
            // Nothing after it: the commit being written when the process
            // or the power went (its flush never returned).
            tracing::warn!(
                path = %path.display(),
                offset,
                cut = len - offset,
                reason,
                "journal: cutting off a torn last commit (a crash while writing it)"
            );
            file.set_len(offset)?;
            file.sync_all()?;
        }
        segment::Scan::Bad {
            offset,
            reason,
            torn: false,
        } => {
            // A committed frame is damaged and nothing whole follows: it
            // may have carried the latest state. Nothing is cut.
            tracing::error!(
                path = %path.display(),
                offset,
                reason,
                "journal: a damaged commit at the end of the newest segment, followed by a later write"
            );
            return Ok(TailRead::StateUnknown(Some(tail)));
        }
        segment::Scan::Clean(_) => {}
    }
    Ok(if state_known {
        TailRead::Tail(tail)
    } else {
        TailRead::StateUnknown(Some(tail))
    })
}

/// A fresh salt for a new segment.
fn new_salt() -> frame::Salt {
    let mut salt = frame::Salt::default();
    crate::clock::os_entropy(&mut salt);
    salt
}

fn read_acked(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join(ACKED_FILE)).ok()?;
    let seq: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let crc: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    (crc32fast::hash(&seq) == u32::from_le_bytes(crc)).then(|| u64::from_le_bytes(seq))
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    segment: Arc<Segment>,
    file: File,
    /// Its checksum salt.
    salt: frame::Salt,
    /// Bytes committed (what readers may see).
    end: u64,
}

/// Appends events. Not `Clone`: one writer per journal.
#[derive(Debug)]
pub struct JournalWriter {
    shared: Arc<Shared>,
    active: Option<Active>,
    /// The state committed last whole and the changes after it, repeated
    /// at the head of every segment.
    state: Option<Vec<u8>>,
    state_changes: Vec<Vec<u8>>,
    /// Their bytes, summed.
    state_change_bytes: usize,
    max_events: u64,
    segment_bytes: u64,
    /// Whether the journal was full at the last append (an episode).
    full: bool,
    /// The frame being built (kept to reuse its allocation).
    buf: Vec<u8>,
}

impl JournalWriter {
    /// Hold at most `max_events` (see the module docs for what is dropped).
    pub fn with_budget(mut self, max_events: u64) -> Self {
        self.max_events = max_events.max(1);
        self
    }

    /// Start a new segment file after about this many bytes (tests use
    /// small segments to cross their edges).
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Acquire)
    }

    /// Apply the budget: with no room, keep what must be kept, count the
    /// rest, and add the `journal_full` alarm when an episode starts or
    /// every [`FULL_ALARM_EVERY`] drops. Returns the kinds to append and
    /// the new dropped total, if it moved.
    fn budget(&mut self, mut kinds: Vec<EventKind>) -> (Vec<EventKind>, Option<u64>) {
        if kinds.is_empty() {
            // A state alone: no news about the episode either way.
            return (kinds, None);
        }
        let kept = self.next_seq() - self.shared.oldest.load(Ordering::Acquire);
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
        let was = self.shared.dropped.load(Ordering::Acquire);
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
        self.commit(at, kinds, None)
    }

    /// Append events and, when given, a new whole state: see
    /// [`JournalWriter::commit_state`].
    pub fn commit(
        &mut self,
        at: Timestamp,
        kinds: Vec<EventKind>,
        state: Option<Vec<u8>>,
    ) -> Result<Vec<Event>, JournalError> {
        self.commit_state(at, kinds, state.map(StateWrite::Whole))
    }

    /// Bytes of the state last written whole.
    pub fn state_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, Vec::len)
    }

    /// Bytes of the state changes kept since the last whole state: the
    /// owner writes the state whole again when they grow past what the
    /// whole would cost, so a segment's head stays bounded. Kept as a
    /// count: a passage must not walk the changes.
    pub fn state_change_bytes(&self) -> usize {
        self.state_change_bytes
    }

    /// Append events and, when given, the state whole or a change to it,
    /// in one frame and one flush: after a crash both are there or
    /// neither is. The state is opaque here (the daemon's standing state);
    /// [`Journal::state`] and [`Journal::state_changes`] give it back at
    /// the next open.
    pub fn commit_state(
        &mut self,
        at: Timestamp,
        kinds: Vec<EventKind>,
        state: Option<StateWrite>,
    ) -> Result<Vec<Event>, JournalError> {
        let (kinds, dropped) = self.budget(kinds);
        if kinds.is_empty() && dropped.is_none() && state.is_none() {
            return Ok(Vec::new());
        }
        let first = self.next_seq();
        let mut events: Vec<Event> = kinds
            .into_iter()
            .zip(first..)
            .map(|(kind, seq)| Event {
                seq,
                at,
                kind: kind.bounded(),
            })
            .collect();
        let encoded = events
            .iter_mut()
            .map(|e| encode_capped(e, MAX_EVENT_BYTES))
            .collect::<Result<Vec<_>, _>>()?;
        self.write_frame(first, &encoded, dropped, state.as_ref())?;
        // Only now: a state whose frame failed is not repeated at the head
        // of the next segment.
        match state {
            Some(StateWrite::Whole(whole)) => {
                self.state = Some(whole);
                self.state_changes.clear();
                self.state_change_bytes = 0;
            }
            Some(StateWrite::Change(change)) => {
                self.state_change_bytes += change.len();
                self.state_changes.push(change);
            }
            None => {}
        }
        Ok(events)
    }

    /// Write events stored by an earlier version, with their own numbers,
    /// `first..` in order ([`legacy`] only).
    fn import(
        &mut self,
        first: u64,
        events: &[Vec<u8>],
        dropped: Option<u64>,
        state: Option<Vec<u8>>,
    ) -> Result<(), JournalError> {
        if self.active.is_none() {
            self.shared.next_seq.store(first, Ordering::Release);
            self.shared.oldest.store(first, Ordering::Release);
        }
        let state = state.map(StateWrite::Whole);
        self.write_frame(first, events, dropped, state.as_ref())?;
        if let Some(StateWrite::Whole(whole)) = state {
            self.state = Some(whole);
            self.state_changes.clear();
            self.state_change_bytes = 0;
        }
        Ok(())
    }

    /// One frame, one write, one `fdatasync`; then readers may see it. A
    /// failed write is cut off again; what a failed cut-off leaves past
    /// the committed end is overwritten by the next frame (writes are
    /// positional) or cut at the next open.
    fn write_frame(
        &mut self,
        first: u64,
        events: &[Vec<u8>],
        dropped: Option<u64>,
        new_state: Option<&StateWrite>,
    ) -> Result<(), JournalError> {
        let refuse = |why: &str| {
            self.shared.io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                why.to_owned(),
            ))
        };
        let Some(next) = first.checked_add(events.len() as u64) else {
            return Err(refuse(
                "sequence numbers exhausted (a damaged journal claims 2^64 events)",
            ));
        };
        if self.active.is_some() && first < self.next_seq() {
            return Err(refuse("a commit would reuse sequence numbers"));
        }
        // A new segment when the active one is full; never two segments
        // with the same first number (a state-only frame adds no event).
        let roll = match &self.active {
            None => true,
            Some(a) => a.end >= self.segment_bytes && a.segment.first_seq < first,
        };
        let dropped_total = dropped.unwrap_or_else(|| self.shared.dropped.load(Ordering::Acquire));
        let salt = match &self.active {
            Some(a) if !roll => a.salt,
            _ => new_salt(),
        };
        self.buf.clear();
        if roll {
            self.buf.extend_from_slice(segment::MAGIC);
            self.buf.extend_from_slice(&salt);
        }
        // Every segment opens with the state (empty: none yet) and the
        // changes since it, and the counter, so that opening the journal
        // reads only the newest segment and knows when a damaged commit
        // hid the state.
        let kept = || self.state.as_deref().unwrap_or_default();
        let mut changes: Vec<&[u8]> = Vec::new();
        let state = match new_state {
            Some(StateWrite::Whole(s)) => Some(s.as_slice()),
            Some(StateWrite::Change(c)) => {
                if roll {
                    changes.extend(self.state_changes.iter().map(Vec::as_slice));
                }
                changes.push(c);
                roll.then(kept)
            }
            None if roll => {
                changes.extend(self.state_changes.iter().map(Vec::as_slice));
                Some(kept())
            }
            None => None,
        };
        frame::encode(
            &mut self.buf,
            &salt,
            frame::FrameOut {
                first_seq: first,
                dropped: if roll { Some(dropped_total) } else { dropped },
                state,
                changes: &changes,
            },
            events.iter().map(Vec::as_slice),
        );
        let body = self.buf.len() - if roll { segment::HEAD as usize } else { 0 };
        if body > frame::HEADER + frame::MAX_BODY {
            return Err(refuse("a commit larger than a frame may be (64 MiB)"));
        }
        if roll {
            self.roll(first, salt)?;
        } else if let Some(active) = &mut self.active {
            let written = active
                .file
                .write_all_at(&self.buf, active.end)
                .and_then(|()| active.file.sync_data());
            if let Err(e) = written {
                if let Err(cut) = active.file.set_len(active.end) {
                    tracing::error!(error = %cut, "journal: a failed write could not be cut off");
                }
                return Err(self.shared.io(e));
            }
            active.end += self.buf.len() as u64;
            active.segment.set_end(active.end);
        }
        self.shared.next_seq.store(next, Ordering::Release);
        if let Some(total) = dropped {
            self.shared.dropped.store(total, Ordering::Release);
        }
        Ok(())
    }

    /// Create the segment starting at `first` holding the frame in `buf`:
    /// written and flushed under a temporary name, then renamed into place
    /// and the directory flushed, so a segment file is never seen without
    /// its first frame. Written there from now on.
    fn roll(&mut self, first: u64, salt: frame::Salt) -> Result<(), JournalError> {
        let path = self.shared.dir.join(segment::file_name(first));
        let tmp = path.with_extension("seg.tmp");
        let created = (|| {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?;
            file.write_all(&self.buf)?;
            file.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            if let Err(e) = File::open(&self.shared.dir).and_then(|d| d.sync_all()) {
                // Renamed but not durably: not committed, so not kept.
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            Ok(file)
        })();
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(self.shared.io(e));
            }
        };
        let end = self.buf.len() as u64;
        let segment = Arc::new(Segment::open(first, path, end).map_err(|e| self.shared.io(e))?);
        self.shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(segment.clone());
        self.active = Some(Active {
            segment,
            file,
            salt,
            end,
        });
        Ok(())
    }
}

/// The CBOR of `event`, or of its `event_oversized` stand-in (which then
/// replaces it) when the encoding exceeds `cap` bytes.
fn encode_capped(event: &mut Event, cap: usize) -> Result<Vec<u8>, JournalError> {
    let bytes = serde_cbor::to_vec(&*event).map_err(JournalError::Encode)?;
    if bytes.len() <= cap {
        return Ok(bytes);
    }
    let kind = serde_json::to_value(&event.kind)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default();
    tracing::error!(
        kind,
        bytes = bytes.len(),
        cap,
        "journal: event over the size cap replaced"
    );
    event.kind = EventKind::EventOversized {
        kind: crate::text::bounded_owned(kind, crate::text::ID),
        bytes: bytes.len() as u64,
    };
    serde_cbor::to_vec(&*event).map_err(JournalError::Encode)
}

/// One stored record, not yet decoded: the uplink sends its bytes as they
/// are (they are the CBOR of an [`Event`]) after checking they decode.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// The CBOR of the event, as stored (empty when damaged).
    pub bytes: Vec<u8>,
    /// Why the record could not be read from disk, if it could not.
    damage: Option<Arc<str>>,
}

impl Record {
    /// The event.
    pub fn decode(&self) -> Result<Event, JournalError> {
        if let Some(reason) = &self.damage {
            return Err(JournalError::Corrupt {
                seq: self.seq,
                reason: reason.to_string(),
            });
        }
        serde_cbor::from_slice(&self.bytes).map_err(|e| JournalError::Corrupt {
            seq: self.seq,
            reason: e.to_string(),
        })
    }
}

/// Reads the journal. Cheap to clone; every call is O(1) or
/// O(log n + returned), never a scan of what is kept.
#[derive(Debug, Clone)]
pub struct JournalReader {
    shared: Arc<Shared>,
}

impl JournalReader {
    /// The journal's identity: its sequence numbers are unique under it.
    pub fn id(&self) -> JournalId {
        self.shared.id
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Acquire)
    }

    /// The oldest kept sequence number, if any event is kept.
    pub fn oldest(&self) -> Option<u64> {
        let oldest = self.shared.oldest.load(Ordering::Acquire);
        (oldest < self.next_seq()).then_some(oldest)
    }

    /// Everything up to this sequence number was acknowledged centrally
    /// (or never existed): the oldest kept minus one.
    pub fn acked(&self) -> u64 {
        self.shared
            .oldest
            .load(Ordering::Acquire)
            .min(self.next_seq())
            .saturating_sub(1)
    }

    /// Number of events kept.
    pub fn len(&self) -> u64 {
        let next = self.next_seq();
        next.saturating_sub(self.shared.oldest.load(Ordering::Acquire))
    }

    /// Whether no events are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Routine events dropped so far because the journal was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Acquire)
    }

    /// The oldest kept event (the backlog's age), if any.
    pub fn oldest_event(&self) -> Result<Option<Event>, JournalError> {
        self.records(0, 1)?.first().map(Record::decode).transpose()
    }

    /// Up to `limit` kept (not yet acknowledged) records with a sequence
    /// number above `after`, in order and without gaps, undecoded: what
    /// the uplink sends. A record that cannot be read from disk comes back
    /// damaged ([`Record::decode`] says why).
    pub fn records(&self, after: u64, limit: usize) -> Result<Vec<Record>, JournalError> {
        self.records_within(after, limit, READ_BYTES)
    }

    /// [`Reader::records`], ending once `max_bytes` of records are read
    /// (the record that reaches it included, so at least one comes back):
    /// the uplink's batches are bounded in bytes as well as in count.
    pub fn records_within(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, JournalError> {
        let from = after
            .saturating_add(1)
            .max(self.shared.oldest.load(Ordering::Acquire));
        self.read_from(from, limit, max_bytes)
    }

    /// Up to `limit` readable events with a sequence number above `after`,
    /// in order, acknowledged or not while their segment is still on disk: the
    /// recent history the status page, the events API and the control
    /// socket show (with central connected, events are acknowledged within
    /// moments; the segment being written always keeps the latest ones).
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Event>, JournalError> {
        let retained = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .map_or(u64::MAX, |s| s.first_seq);
        let oldest = self.shared.oldest.load(Ordering::Acquire);
        let from = after.saturating_add(1).max(retained.min(oldest));
        // What cannot be read is left out here: the uplink reports it
        // (`journal_record_skipped`); a page must not go blank for it.
        Ok(self
            .read_from(from, limit, READ_BYTES)?
            .iter()
            .filter_map(|r| r.decode().ok())
            .collect())
    }

    fn read_from(
        &self,
        mut from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, JournalError> {
        let until = self.next_seq();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if from >= until || limit == 0 {
            return Ok(out);
        }
        let segments = self.shared.segments();
        let mut i = segments
            .partition_point(|s| s.first_seq <= from)
            .saturating_sub(1);
        while out.len() < limit && bytes < max_bytes && from < until && i < segments.len() {
            let segment = &segments[i];
            let segment_until = segments
                .get(i + 1)
                .map_or(until, |next| next.first_seq.min(until));
            from = from.max(segment.first_seq);
            if from < segment_until {
                let read = segment
                    .read(from, segment_until, limit - out.len(), max_bytes - bytes)
                    .map_err(|e| self.shared.io(e))?;
                bytes = bytes.saturating_add(read.bytes);
                for (seq, event) in read.events {
                    let (bytes, damage) = match event {
                        Ok(bytes) => (bytes, None),
                        Err(d) => (Vec::new(), Some(damage_reason(&d, segment))),
                    };
                    out.push(Record { seq, bytes, damage });
                    from = seq + 1;
                }
                if out.len() < limit && bytes < max_bytes && from < segment_until {
                    // The segment cannot give the rest: say so per record.
                    let reason: Arc<str> = match read.damage {
                        Some(d) => damage_reason(&d, segment),
                        None => format!("missing from {}", segment.path.display()).into(),
                    };
                    while out.len() < limit && from < segment_until {
                        out.push(Record {
                            seq: from,
                            bytes: Vec::new(),
                            damage: Some(reason.clone()),
                        });
                        from += 1;
                    }
                }
            }
            i += 1;
        }
        Ok(out)
    }
}

fn damage_reason(damage: &segment::Damage, segment: &Segment) -> Arc<str> {
    format!(
        "{} at byte {} of {}",
        damage.reason,
        damage.offset,
        segment.path.display()
    )
    .into()
}

/// Forgets what central acknowledged. Not `Clone`: the uplink owns it.
#[derive(Debug)]
pub struct JournalAcker {
    shared: Arc<Shared>,
}

impl JournalAcker {
    /// Forget every event up to and including `seq` (acknowledged
    /// centrally), clamped to what was appended: sequence numbers are not
    /// reused afterwards, and an acknowledgement beyond the last event
    /// forgets nothing that does not exist yet. Returns how many events
    /// were forgotten. Segment files go once all they hold is forgotten.
    pub fn delete_through(&mut self, seq: u64) -> Result<u64, JournalError> {
        let next = self.shared.next_seq.load(Ordering::Acquire);
        let through = seq.min(next.saturating_sub(1));
        let oldest = self.shared.oldest.load(Ordering::Acquire);
        if through < oldest {
            return Ok(0);
        }
        let after = through + 1;
        self.shared.oldest.store(after, Ordering::Release);
        // Not flushed: a crash at worst brings acknowledged events back.
        let mut record = through.to_le_bytes().to_vec();
        record.extend_from_slice(&crc32fast::hash(&through.to_le_bytes()).to_le_bytes());
        let written = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.shared.dir.join(ACKED_FILE))
            .and_then(|f| f.write_all_at(&record, 0));
        // Deleting does not need the record (the next open takes the
        // oldest segment's name as the floor), and frees space on a disk
        // too full to write it.
        self.forget_acknowledged_segments();
        written.map_err(|e| self.shared.io(e))?;
        Ok(after - oldest)
    }

    /// Delete the segments whose every event is acknowledged (never the
    /// one being written). A file that cannot be deleted now is found and
    /// deleted at the next open.
    fn forget_acknowledged_segments(&mut self) {
        let oldest = self.shared.oldest.load(Ordering::Acquire);
        let doomed: Vec<Arc<Segment>> = {
            let mut segments = self
                .shared
                .segments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let n = segments
                .windows(2)
                .take_while(|pair| pair[1].first_seq <= oldest)
                .count();
            segments.drain(..n).collect()
        };
        for segment in doomed {
            // Readers holding it still read through their open handle.
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::error!(path = %segment.path.display(), error = %e, "journal: acknowledged segment not deleted");
            }
        }
    }
}

#[cfg(test)]
mod tests;
